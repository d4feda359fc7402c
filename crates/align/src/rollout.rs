//! What the RL recipes (GRPO, PPO) share about sampled responses: prompt + response rows
//! packed with next-token targets on the response only, and the per-token log-probs of
//! those targets under a policy.

use burn::prelude::*;
use burn::tensor::activation::log_softmax;
use manabi_model::{DecoderLm, IGNORE_INDEX};

/// Prompt + response rows, right-padded with `pad`: `(inputs, targets, seq)`, each
/// `[rows·seq]`; a row's target at position `i` is token `i + 1` when it belongs to the
/// response, else [`IGNORE_INDEX`].
pub fn pack(rows: &[(&[u32], &[u32])], pad: u32) -> (Vec<u32>, Vec<i64>, usize) {
    let seq = rows
        .iter()
        .map(|(p, c)| p.len() + c.len() - 1)
        .max()
        .unwrap_or(1)
        .max(1);
    let mut inputs = Vec::with_capacity(rows.len() * seq);
    let mut targets = Vec::with_capacity(rows.len() * seq);
    for (p, c) in rows {
        let all: Vec<u32> = p.iter().chain(c.iter()).copied().collect();
        let n = all.len() - 1;
        inputs.extend_from_slice(&all[..n]);
        targets.extend((1..=n).map(|i| {
            if i >= p.len() {
                all[i] as i64
            } else {
                IGNORE_INDEX
            }
        }));
        inputs.extend(std::iter::repeat_n(pad, seq - n));
        targets.extend(std::iter::repeat_n(IGNORE_INDEX, seq - n));
    }
    (inputs, targets, seq)
}

/// `[n, seq]` ids of packed `inputs`.
pub fn int_ids(inputs: &[u32], n: usize, seq: usize, device: &Device) -> Tensor<2, Int> {
    let ids: Vec<i64> = inputs.iter().map(|&x| x as i64).collect();
    Tensor::<1, Int>::from_ints(ids.as_slice(), device).reshape([n, seq])
}

/// Log-softmax of the policy's logits at `temperature` (1 = the logits as they are).
///
/// # Shapes
/// returns `[n, seq, vocab]`
pub fn log_probs(model: &DecoderLm, ids: Tensor<2, Int>, temperature: f32) -> Tensor<3> {
    let logits = model.forward(ids);
    if temperature == 1.0 {
        return log_softmax(logits, 2);
    }
    log_softmax(logits / temperature as f64, 2)
}

/// Log-probs of `targets` from `[n, seq, vocab]` log-softmax (0 where ignored).
///
/// # Shapes
/// returns `[n, seq]`
pub fn gather_targets(logp: Tensor<3>, targets: &[i64]) -> Tensor<2> {
    let [n, seq, _] = logp.dims();
    let device = logp.device();
    let idx: Vec<i64> = targets.iter().map(|&t| t.max(0)).collect();
    let idx = Tensor::<1, Int>::from_ints(idx.as_slice(), &device).reshape([n, seq, 1]);
    logp.gather(2, idx).reshape([n, seq])
}

/// Per-token log-probs of packed rows' targets under `model` at `temperature`.
///
/// # Shapes
/// returns `[n, seq]`
pub fn token_logps(
    model: &DecoderLm,
    (inputs, targets): (&[u32], &[i64]),
    (n, seq): (usize, usize),
    temperature: f32,
    device: &Device,
) -> Tensor<2> {
    gather_targets(
        log_probs(model, int_ids(inputs, n, seq, device), temperature),
        targets,
    )
}

/// A `[n, seq]` tensor's values.
pub fn to_vec(t: Tensor<2>) -> Vec<f32> {
    t.into_data()
        .convert::<f32>()
        .try_into_vec()
        .unwrap_or_default()
}
