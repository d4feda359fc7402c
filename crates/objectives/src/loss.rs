//! Causal language modelling loss: summed next-token cross-entropy over the targets
//! that count (`IGNORE_INDEX` is ignored); the trainer divides by the token count of the whole
//! optimizer step, so accumulation over micro-batches equals one large batch.

use burn::prelude::*;
use burn::tensor::activation::log_softmax;
use manabi_model::{DecoderLm, ForwardOptions};

use crate::data::LmBatch;

/// Sum of −log p(target) over counted targets, as a one-element tensor (differentiable).
///
/// # Shapes
/// logits `[batch, seq, vocab]`, targets `[batch·seq]` -> `[1]`
pub fn clm_loss_sum(model: &DecoderLm, batch: &LmBatch, device: &Device) -> Tensor<1> {
    let opts = ForwardOptions {
        positions: batch.position_tensor(device),
        key_mask: None,
        attn_mask: batch.mask_tensor(device),
    };
    let logits = model.forward_with(batch.input_tensor(device), &opts, None);
    ce_sum(logits, &batch.targets, device)
}

/// Summed cross-entropy of `logits` against `targets` (negative = ignored, as
/// [`manabi_model::IGNORE_INDEX`]).
///
/// # Shapes
/// logits `[batch, seq, vocab]`, targets `[batch·seq]` -> `[1]`
pub fn ce_sum(logits: Tensor<3>, targets: &[i64], device: &Device) -> Tensor<1> {
    let [b, t, v] = logits.dims();
    let logp = log_softmax(logits.reshape([b * t, v]), 1); // [b·t, vocab]
    let idx: Vec<i64> = targets.iter().map(|&x| x.max(0)).collect();
    let keep: Vec<f32> = targets
        .iter()
        .map(|&x| if x >= 0 { 1.0 } else { 0.0 })
        .collect();
    let idx = Tensor::<1, Int>::from_ints(idx.as_slice(), device).reshape([b * t, 1]);
    let keep = Tensor::<1>::from_floats(keep.as_slice(), device);
    let picked = logp.gather(1, idx).reshape([b * t]); // [b·t]
    (picked * keep).sum().neg()
}
