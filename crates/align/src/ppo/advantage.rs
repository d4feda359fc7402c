//! The arithmetic of PPO's rewards: per-token KL estimates, GAE, whitening and the
//! adaptive KL controller.

use super::KlEstimator;

/// GAE(γ, λ) over one response: `rewards[t]` and `values[t]` of its tokens; returns
/// (advantages, returns). The state after the last token is terminal (value 0).
pub fn gae(rewards: &[f64], values: &[f64], gamma: f64, lam: f64) -> (Vec<f64>, Vec<f64>) {
    let n = rewards.len();
    let mut adv = vec![0.0; n];
    let mut last = 0.0;
    for t in (0..n).rev() {
        let next = if t + 1 < n { values[t + 1] } else { 0.0 };
        let delta = rewards[t] + gamma * next - values[t];
        last = delta + gamma * lam * last;
        adv[t] = last;
    }
    let ret = adv.iter().zip(values).map(|(a, v)| a + v).collect();
    (adv, ret)
}

/// Whitens `x` (TRL's `masked_whiten` over the valid tokens): divided by the unbiased
/// standard deviation, and centred when `shift_mean`.
pub fn whiten(x: &mut [f64], shift_mean: bool) {
    let n = x.len();
    if n < 2 {
        return;
    }
    let mean = x.iter().sum::<f64>() / n as f64;
    let var = x.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1) as f64;
    let scale = 1.0 / (var + 1e-8).sqrt();
    for v in x.iter_mut() {
        *v = if shift_mean {
            (*v - mean) * scale
        } else {
            (*v - mean) * scale + mean
        };
    }
}

/// The adaptive KL controller's next coefficient after a rollout of `n` responses whose
/// mean KL was `kl`: `β · (1 + clip(kl / target − 1, ±0.2) · n / horizon)`.
pub fn adapt_kl(beta: f64, kl: f64, target: f64, n: usize, horizon: f64) -> f64 {
    let err = (kl / target - 1.0).clamp(-0.2, 0.2);
    beta * (1.0 + err * n as f64 / horizon)
}

/// Per-token KL of sampled tokens (`logp`, `ref_logp` of the same token).
pub(crate) fn kl_token(est: KlEstimator, logp: f64, ref_logp: f64) -> f64 {
    match est {
        KlEstimator::K1 => logp - ref_logp,
        KlEstimator::K3 => {
            let d = ref_logp - logp;
            d.exp() - d - 1.0
        }
    }
}
