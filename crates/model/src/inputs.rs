//! Checks of caller-given token and mask tensors for the encoder models (BERT, T5): a
//! wrong shape or an id outside a table is an error, never a panic inside burn.

use burn::prelude::*;

use crate::error::{ModelError, Result};

/// Large negative value for masked scores: finite, so a fully masked row stays a number.
pub(crate) const MASKED: f32 = -1e30;

/// Checks that every id of `ids` is below `limit`; `what` names the tensor in errors.
///
/// # Shapes
/// ids: `[batch, seq]`, both at least 1
pub(crate) fn check_ids(ids: &Tensor<2, Int>, limit: usize, what: &str) -> Result<()> {
    let [b, t] = ids.dims();
    if b == 0 || t == 0 {
        return Err(ModelError::Input(format!("{what} is empty ({b}×{t})")));
    }
    let (min, max): (i64, i64) = (
        ids.clone().min().into_scalar(),
        ids.clone().max().into_scalar(),
    );
    if min < 0 || max as u64 >= limit as u64 {
        let bad = if min < 0 { min } else { max };
        return Err(ModelError::Input(format!(
            "{what} contains {bad}, outside 0..{limit}"
        )));
    }
    Ok(())
}

/// Checks that the dims of an optional `[batch, seq]` tensor are `dims`.
pub(crate) fn check_dims(got: Option<[usize; 2]>, dims: [usize; 2], what: &str) -> Result<()> {
    match got {
        Some(d) if d != dims => Err(ModelError::Input(format!(
            "{what} has shape {d:?}, expected {dims:?} (that of the input ids)"
        ))),
        _ => Ok(()),
    }
}

/// An additive key mask from a 1 (keep) / 0 (padding) mask.
///
/// # Shapes
/// `[batch, seq]` -> `[batch, 1, 1, seq]`
pub(crate) fn key_bias(mask: &Tensor<2>) -> Tensor<4> {
    let [b, t] = mask.dims();
    // 1 -> 0, 0 -> MASKED
    ((mask.clone().neg() + 1.0) * MASKED).reshape([b, 1, 1, t])
}
