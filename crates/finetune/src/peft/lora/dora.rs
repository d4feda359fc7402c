//! DoRA (Liu et al. 2024, "DoRA: Weight-Decomposed Low-Rank Adaptation"): the adapted
//! weight is a learned magnitude per output times the direction of the LoRA-updated
//! weight, `W' = m · (W + s·A·B) / ‖W + s·A·B‖`, the norm taken per output over the input
//! (`peft/tuners/lora/dora.py`, `DoraLinearLayer.get_weight_norm`). A burn
//! reparameterization of the weight, as burn's own LoRA is, so the model code is
//! unchanged and `materialize` merges it. The norm is detached, as peft does (the paper's
//! §4.3): it gets no gradient. The bias is not scaled (peft subtracts it first).
//!
//! A fused module's outputs are independent rows, so GPT-2's `c_attn` as three `Linear`s
//! (each with its slice of the magnitude) computes what peft's one module does.

use std::collections::HashMap;

use burn::module::{Lora, Module, Param, ParamId, Reparameterization, Reparameterizer};
use burn::prelude::*;

/// A DoRA adapter on a `[in, out]` weight.
#[derive(Module, Debug)]
pub struct DoraAdapter {
    /// Down-projection factor `[in, r]`, as burn's `LoraAdapter::a`.
    pub a: Param<Tensor<2>>,
    /// Up-projection factor `[r, out]`, zeros at initialisation.
    pub b: Param<Tensor<2>>,
    /// The magnitude per output `[out]` (peft's `lora_magnitude_vector`), the base
    /// weight's norms at initialisation.
    pub magnitude: Param<Tensor<1>>,
    /// The factor `a·b` is scaled by (α / r, or α / √r with rsLoRA).
    pub scale: f64,
}

/// The norm of each output's weights: `[in, out]` → `[out]`.
pub fn column_norm(w: Tensor<2>) -> Tensor<1> {
    let out = w.dims()[1];
    w.powi_scalar(2).sum_dim(0).sqrt().reshape([out])
}

impl DoraAdapter {
    /// The LoRA-updated weight `W + s·a·b` of the base `W` (`[in, out]`), not yet
    /// normalised.
    pub fn updated(&self, base: Tensor<2>) -> Tensor<2> {
        let delta = self.a.val().matmul(self.b.val()).mul_scalar(self.scale);
        let base = if base.dtype().is_float() && base.dtype() != delta.dtype() {
            base.cast(delta.dtype())
        } else {
            base
        };
        base + delta
    }

    /// The effective weight `m · (W + s·a·b) / ‖W + s·a·b‖` of the base `W` (`[in, out]`).
    pub fn weight(&self, base: Tensor<2>) -> Tensor<2> {
        let w = self.updated(base);
        let norm = column_norm(w.clone()).detach(); // [out]
        let out = norm.dims()[0];
        let factor = (self.magnitude.val() / norm).reshape([1, out]);
        w * factor
    }
}

impl Reparameterization for DoraAdapter {
    const NAME: &'static str = "dora";

    fn apply<const D: usize>(&self, base: Tensor<D>) -> Tensor<D> {
        let shape = base.shape();
        let dims = base.dims();
        let out = dims[D - 1];
        let rows = dims.iter().product::<usize>() / out.max(1);
        self.weight(base.reshape([rows, out])).reshape(shape)
    }
}

/// Attaches DoRA adapters to the weights in `plan` (id → rank, scale) — the factors
/// drawn as burn's LoRA draws them, the magnitude the weight's norms — and freezes every
/// other parameter.
pub(crate) struct AttachDora {
    pub plan: HashMap<ParamId, (usize, f64)>,
}

impl Reparameterizer for AttachDora {
    type Reparam = DoraAdapter;

    fn reparameterize<const D: usize>(
        &mut self,
        path: &str,
        param: Param<Tensor<D>>,
    ) -> (Param<Tensor<D>>, Option<DoraAdapter>) {
        let Some(&(rank, scale)) = self.plan.get(&param.id).filter(|_| D == 2) else {
            return (param.set_require_grad(false), None);
        };
        let (base, lora) = Lora::new(rank, 1.0).reparameterize(path, param);
        let Some(lora) = lora else {
            return (base, None);
        };
        let w = base.base();
        let out = w.dims()[D - 1];
        let rows = w.dims().iter().product::<usize>() / out.max(1);
        let magnitude = column_norm(w.reshape([rows, out])).detach();
        let adapter = DoraAdapter {
            a: lora.a,
            b: lora.b,
            magnitude: Param::from_tensor(magnitude),
            scale,
        };
        (base, Some(adapter))
    }
}
