//! Rotary position embeddings (Su et al. 2021) in the "rotate half" convention of
//! Hugging Face LLaMA: the first and second halves of the rotated dimensions form the
//! pairs. Partial rotary rotates only the first `rotary_dim` dimensions of each head.

use burn::prelude::*;

/// cos and sin for `positions`.
///
/// # Shapes
/// - positions: `[batch, seq]`
/// - returns cos, sin: `[batch, 1, seq, rotary_dim]`
pub fn cos_sin(positions: Tensor<2, Int>, rotary_dim: usize, theta: f64) -> (Tensor<4>, Tensor<4>) {
    let device = positions.device();
    let [batch, seq] = positions.dims();
    let half = rotary_dim / 2;
    // inv_freq[i] = theta^(-2i / rotary_dim)
    let inv: Vec<f32> = (0..half)
        .map(|i| (theta.powf(-((2 * i) as f64) / rotary_dim as f64)) as f32)
        .collect();
    let inv = Tensor::<1>::from_floats(inv.as_slice(), &device).reshape([1, 1, half]);
    let pos = positions.float().reshape([batch, seq, 1]);
    let freqs = pos * inv; // [batch, seq, half]
    let emb = Tensor::cat(vec![freqs.clone(), freqs], 2).reshape([batch, 1, seq, rotary_dim]);
    (emb.clone().cos(), emb.sin())
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
