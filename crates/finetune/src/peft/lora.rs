//! LoRA (Hu et al. 2021; rsLoRA, Kalajdzievski 2023; DoRA, Liu et al. 2024) as burn
//! reparameterizations of the target weights, chosen and sized as Python `peft` does
//! (`select.rs`: `target_modules`, `layers_to_transform` / `layers_pattern`, per-module
//! `rank_pattern` / `alpha_pattern`), merged and unmerged, and the PEFT on-disk format
//! both ways (`format.rs`).
//!
//! burn stores a weight `[in, out]` and its factors `a: [in, r]`, `b: [r, out]`; PEFT's
//! `lora_A` is `[r, in]` and `lora_B` `[out, r]`. A plain LoRA is burn's `LoraAdapter`
//! (`W + s·a·b`, so `materialize` merges it and `fused::lora_linear` can drop out its
//! input); DoRA is [`dora::DoraAdapter`]. burn's `apply_lora` gives every target one
//! rank; [`apply`] attaches burn's adapter with each module's own rank and scale in one
//! pass (a second `apply_lora` would freeze the first one's factors).

pub mod dora;
mod format;
mod select;

use std::collections::HashMap;

use burn::module::{Lora, LoraAdapter, Module, ModuleMapper, Param, ParamId, Reparameterizer};
use burn::nn::Linear;
use burn::prelude::*;
use burn::tensor::TensorData;
use manabi_model::DecoderLm;
use manabi_model::hf_names::{HfModule, decoder_linears};

use crate::error::{FinetuneError, Result};
use crate::peft::config::PeftConfig;

pub use dora::DoraAdapter;
pub(crate) use format::{F32Tensors, load_peft_with, read_f32, write_safetensors};
pub use format::{load_peft, save_peft};

/// The HF modules `targets` select (PEFT semantics: a target names a module in full, or
/// the end of its name after a dot); an unknown target is an error listing the names
/// this model has.
pub fn target_modules(model: &DecoderLm, targets: &[String]) -> Result<Vec<HfModule>> {
    select::named_modules(model, targets).map_err(config_error)
}

fn config_error(e: select::SelectError) -> FinetuneError {
    FinetuneError::config(format!("peft.{}", e.key), e.message)
}

/// The rows of a row-major `[rows, cols]` matrix whose rows are a fused module's output
/// (parts of widths `outs` interleaved in `groups`, GPT-NeoX's `query_key_value`),
/// reordered: `to_fused` lays the parts' rows one after the other into the fused order,
/// otherwise the fused rows are laid back part after part.
pub(crate) fn reorder_fused_rows(
    m: &[f32],
    cols: usize,
    outs: &[usize],
    groups: usize,
    to_fused: bool,
) -> Vec<f32> {
    let order = manabi_model::hf_names::fuse_order(outs, groups);
    let mut out = vec![0f32; m.len()];
    for (fused, &concat) in order.iter().enumerate() {
        let (from, to) = if to_fused {
            (concat, fused)
        } else {
            (fused, concat)
        };
        out[to * cols..(to + 1) * cols].copy_from_slice(&m[from * cols..(from + 1) * cols]);
    }
    out
}

/// Attaches adapters to the modules `cfg` selects, each with its rank and scale (LoRA,
/// or DoRA with `use_dora`), and freezes everything else. DoRA has no dropout path:
/// `dropout` acts on plain LoRA only (recipes refuse DoRA with dropout).
pub fn apply(model: DecoderLm, cfg: &PeftConfig) -> Result<DecoderLm> {
    let plan: HashMap<ParamId, (usize, f64)> = select::select(&model, cfg)
        .map_err(config_error)?
        .into_iter()
        .map(|t| (t.linear.weight.id, (t.rank, t.scale)))
        .collect();
    let model = if cfg.use_dora {
        model.apply_reparameterization(dora::AttachDora { plan })
    } else {
        model.apply_reparameterization(AttachLora { plan })
    };
    Ok(model.with_lora_dropout(cfg.dropout))
}

/// Attaches burn LoRA adapters to the weights in `plan` (id → rank, scale), each with its
/// own rank — what `apply_lora` does for one rank — and freezes every other parameter.
pub(crate) struct AttachLora {
    pub plan: HashMap<ParamId, (usize, f64)>,
}

impl Reparameterizer for AttachLora {
    type Reparam = LoraAdapter;

    fn reparameterize<const D: usize>(
        &mut self,
        path: &str,
        param: Param<Tensor<D>>,
    ) -> (Param<Tensor<D>>, Option<LoraAdapter>) {
        let Some(&(rank, scale)) = self.plan.get(&param.id).filter(|_| D == 2) else {
            return (param.set_require_grad(false), None);
        };
        let (base, lora) = Lora::new(rank, 1.0).reparameterize(path, param);
        (
            base,
            lora.map(|mut ad| {
                ad.scale = scale;
                ad
            }),
        )
    }
}

/// The adapter on one `Linear`, LoRA or DoRA: its factors (burn's layout), scale, and
/// DoRA's magnitude.
pub(crate) struct Adapter<'a> {
    pub a: &'a Param<Tensor<2>>,
    pub b: &'a Param<Tensor<2>>,
    pub scale: f64,
    pub magnitude: Option<&'a Param<Tensor<1>>>,
}

pub(crate) fn adapter_of(lin: &Linear) -> Option<Adapter<'_>> {
    if let Some(ad) = lin.weight.adapter() {
        return Some(Adapter {
            a: &ad.a,
            b: &ad.b,
            scale: ad.scale,
            magnitude: None,
        });
    }
    lin.weight
        .reparameterization::<DoraAdapter>()
        .map(|d| Adapter {
            a: &d.a,
            b: &d.b,
            scale: d.scale,
            magnitude: Some(&d.magnitude),
        })
}

/// The adapters a merged model was made with, for [`unmerge`]: each adapted `Linear`'s
/// manabi path and its factors and scale (burn's layout, `a: [in, r]`, `b: [r, out]`).
#[derive(Debug, Clone)]
pub struct MergedAdapters {
    /// The LoRA settings (targets, ranks, α).
    pub config: PeftConfig,
    /// `(path, a, b, scale)` per adapted `Linear`.
    pub parts: Vec<(String, Tensor<2>, Tensor<2>, f64)>,
    /// DoRA: `(path, magnitude, ‖W + s·a·b‖)` per adapted `Linear` (`[out]` each), what
    /// the merged weight was scaled by (peft caches the norm the same way to unmerge).
    pub magnitudes: Vec<(String, Tensor<1>, Tensor<1>)>,
}

/// PEFT's `merge_adapter`, undoable: the model with every LoRA (or DoRA) update folded
/// into its weight (plain `Linear`s, as fast as the base), and the adapters to
/// [`unmerge`] it with.
pub fn merge(model: &DecoderLm, cfg: &PeftConfig) -> (DecoderLm, MergedAdapters) {
    let mut parts = Vec::new();
    let mut magnitudes = Vec::new();
    for (m, lin) in decoder_linears(model) {
        let Some(ad) = adapter_of(lin) else {
            continue;
        };
        parts.push((m.path.clone(), ad.a.val(), ad.b.val(), ad.scale));
        if let Some(d) = lin.weight.reparameterization::<DoraAdapter>() {
            let norm = dora::column_norm(d.updated(lin.weight.base()));
            magnitudes.push((m.path.clone(), d.magnitude.val(), norm));
        }
    }
    (
        model.clone().materialize(),
        MergedAdapters {
            config: cfg.clone(),
            parts,
            magnitudes,
        },
    )
}

/// PEFT's `unmerge_adapter`: the adapted model back from a merged one — each target's
/// base weight is the merged weight (times ‖W + s·a·b‖ / m for DoRA) minus `scale · a·b`,
/// with the adapter re-attached (trainable, as after `apply`). A merged model of another
/// base is refused by path.
pub fn unmerge(merged: DecoderLm, adapters: &MergedAdapters) -> Result<DecoderLm> {
    let model = apply(merged, &adapters.config)?;
    let mut values = HashMap::new();
    let linears = decoder_linears(&model);
    for (path, a, b, scale) in &adapters.parts {
        let Some((_, lin)) = linears.iter().find(|(m, _)| &m.path == path) else {
            return Err(FinetuneError::config(
                "peft.targets",
                format!("the merged model has no adapted `{path}`"),
            ));
        };
        let Some(ad) = adapter_of(lin) else {
            return Err(FinetuneError::config(
                "peft.targets",
                format!("`{path}` is not a LoRA target of these settings"),
            ));
        };
        let mut w = lin.weight.base();
        let dora = adapters.magnitudes.iter().find(|(p, _, _)| p == path);
        if let (Some((_, m, norm)), Some(mag)) = (dora, ad.magnitude) {
            let out = m.dims()[0];
            w = w * (norm.clone() / m.clone()).reshape([1, out]);
            values.insert(mag.id, m.clone().into_data());
        }
        let base = w - a.clone().matmul(b.clone()).mul_scalar(*scale);
        values.insert(lin.weight.id, base.into_data());
        values.insert(ad.a.id, a.clone().into_data());
        values.insert(ad.b.id, b.clone().into_data());
    }
    Ok(model.map(&mut SetById(values)))
}

/// Sets parameters by id to given values, keeping ids and gradient settings.
pub(crate) struct SetById(pub(crate) HashMap<ParamId, TensorData>);

impl ModuleMapper for SetById {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        let Some(data) = self.0.remove(&param.id) else {
            return param;
        };
        param.map(|t| {
            let grad = t.is_require_grad();
            Tensor::from_data(data, &t.device()).set_require_grad(grad)
        })
    }
}
