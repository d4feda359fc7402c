//! Rotary position embeddings (Su et al. 2021) in the "rotate half" convention of
//! Hugging Face LLaMA: the first and second halves of the rotated dimensions form the
//! pairs. Partial rotary rotates only the first `rotary_dim` dimensions of each head.
//! RoPE scaling (`linear`, `llama3`, `yarn`, `dynamic`, `longrope`) changes the inverse
//! frequencies, and YaRN and LongRoPE scale cos and sin by their attention factor.
//! `dynamic` and `longrope` depend on the length of the sequence each pass reads,
//! `max(position) + 1`, as transformers recomputes them on every call: keys already in a
//! KV cache keep the rotation they were made with, there as here.

use burn::prelude::*;

use crate::config::RopeScaling;

/// The `rotary_dim / 2` inverse frequencies `theta^(-2i / rotary_dim)`, scaled by
/// `scaling` for a sequence of `seq_len` tokens (computed in `f64`, rounded to `f32`
/// once).
pub fn inv_freq(
    rotary_dim: usize,
    theta: f64,
    scaling: Option<&RopeScaling>,
    seq_len: usize,
) -> Vec<f32> {
    let mut inv: Vec<f64> = (0..rotary_dim / 2)
        .map(|i| theta.powf(-((2 * i) as f64) / rotary_dim as f64))
        .collect();
    if let Some(s) = scaling {
        s.apply(&mut inv, theta, seq_len);
    }
    inv.into_iter().map(|f| f as f32).collect()
}

/// cos and sin for `positions`.
///
/// # Shapes
/// - positions: `[batch, seq]`
/// - returns cos, sin: `[batch, 1, seq, rotary_dim]`
pub fn cos_sin(
    positions: Tensor<2, Int>,
    rotary_dim: usize,
    theta: f64,
    scaling: Option<&RopeScaling>,
) -> (Tensor<4>, Tensor<4>) {
    let device = positions.device();
    let [batch, seq] = positions.dims();
    let half = rotary_dim / 2;
    // Only `dynamic` and `longrope` read the length (reading it waits for the positions).
    let seq_len = match scaling.is_some_and(RopeScaling::depends_on_length) {
        true => {
            let max: i64 = positions.clone().max().into_scalar();
            usize::try_from(max + 1).unwrap_or(0)
        }
        false => seq,
    };
    let inv = inv_freq(rotary_dim, theta, scaling, seq_len);
    let inv = Tensor::<1>::from_floats(inv.as_slice(), &device).reshape([1, 1, half]);
    let pos = positions.float().reshape([batch, seq, 1]);
    let freqs = pos * inv; // [batch, seq, half]
    let emb = Tensor::cat(vec![freqs.clone(), freqs], 2).reshape([batch, 1, seq, rotary_dim]);
    match scaling.map(RopeScaling::attention_factor) {
        Some(a) if a != 1.0 => (emb.clone().cos() * a, emb.sin() * a),
        _ => (emb.clone().cos(), emb.sin()),
    }
}

/// Rotates the first `rotary_dim` dimensions of `x`.
///
/// # Shapes
/// - x: `[batch, heads, seq, head_dim]`, or token-major `[batch, seq, heads, head_dim]`
/// - cos, sin: broadcastable to `x`'s first three axes × `rotary_dim`: `[batch, 1, seq,
///   rotary_dim]`, or `[batch, seq, 1, rotary_dim]` for the token-major layout
pub fn apply(x: Tensor<4>, cos: &Tensor<4>, sin: &Tensor<4>) -> Tensor<4> {
    let [b, h, t, hd] = x.dims();
    let rd = cos.dims()[3];
    let rot = x.clone().slice([0..b, 0..h, 0..t, 0..rd]);
    let half = rd / 2;
    let x1 = rot.clone().slice([0..b, 0..h, 0..t, 0..half]);
    let x2 = rot.clone().slice([0..b, 0..h, 0..t, half..rd]);
    let rotated = Tensor::cat(vec![x2.neg(), x1], 3);
    let out = rot * cos.clone() + rotated * sin.clone();
    if rd == hd {
        out
    } else {
        Tensor::cat(vec![out, x.slice([0..b, 0..h, 0..t, rd..hd])], 3)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::RopeScalingKind;

    #[test]
    fn scaling_keeps_divides_and_smooths_the_bands_as_transformers_does() {
        // theta 50000, 16 dimensions: wavelengths 6.3 (kept: < 32 / 4), 24.3 (smoothed)
        // and 93.9 on (divided by 8). Values from transformers' `_compute_llama3_parameters`.
        let llama3 = RopeScaling {
            kind: RopeScalingKind::Llama3,
            factor: 8.0,
            low_freq_factor: Some(1.0),
            high_freq_factor: Some(4.0),
            original_max_position_embeddings: Some(32),
            ..Default::default()
        };
        let plain = inv_freq(16, 50_000.0, None, 1);
        let got = inv_freq(16, 50_000.0, Some(&llama3), 1);
        assert_eq!(got[0], plain[0]);
        assert!(
            (f64::from(got[1]) - 0.056_237_742_304_801_94).abs() < 1e-8,
            "{got:?}"
        );
        for (&g, &p) in got.iter().zip(&plain).skip(2) {
            assert!((g - p / 8.0).abs() <= p * 1e-6, "{got:?}");
        }
        let linear = RopeScaling {
            kind: RopeScalingKind::Linear,
            factor: 2.0,
            low_freq_factor: None,
            high_freq_factor: None,
            original_max_position_embeddings: None,
            ..Default::default()
        };
        let got = inv_freq(16, 10_000.0, Some(&linear), 1);
        assert_eq!(got[0], 0.5);
        assert!((got[2] - 0.05).abs() < 1e-9, "{got:?}");
    }
}
