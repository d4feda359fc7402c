//! Causal language modelling loss: summed next-token cross-entropy over the targets
//! that count (`IGNORE_INDEX` is ignored); the trainer divides by the token count of the whole
//! optimizer step, so accumulation over micro-batches equals one large batch.

use burn::prelude::*;
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
    // Without the `[batch·seq, vocab]` logits where the model allows it (chunked).
    model.loss_sum(batch.input_tensor(device), &opts, &batch.targets)
}

/// Summed cross-entropy of `logits` against `targets` (negative = ignored, as
/// [`manabi_model::IGNORE_INDEX`]).
///
/// # Shapes
/// logits `[batch, seq, vocab]`, targets `[batch·seq]` -> `[1]`
pub fn ce_sum(logits: Tensor<3>, targets: &[i64]) -> Tensor<1> {
    let [b, t, v] = logits.dims();
    // log-softmax, pick and mask as one fused op (with its backward) where the device has it.
    manabi_model::fused::cross_entropy_sum(logits.reshape([b * t, v]), targets)
}
