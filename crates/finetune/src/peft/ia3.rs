//! IA³ (Liu et al. 2022): learned vectors that rescale activations — the outputs of the
//! target modules (`k_proj`, `v_proj`), the inputs of the feed-forward ones
//! (`down_proj`). Written as a burn reparameterization of the weight (`W · diag(l)`),
//! so the model code is unchanged and `materialize` merges it. PEFT format both ways:
//! `base_model.model.<hf>.ia3_l`, shape `[out, 1]`, or `[1, in]` for feed-forward modules.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use burn::module::{Module, Param, ParamId, Reparameterization, Reparameterizer};
use burn::prelude::*;
use burn::tensor::TensorData;
use manabi_model::DecoderLm;
use manabi_model::hf_names::{HfModule, decoder_linears};

use crate::error::{FinetuneError, Result};
use crate::peft::adapter_config::{AdapterConfig, StringOrList};
use crate::peft::config::{Method, PeftConfig};
use crate::peft::lora::{F32Tensors, SetById, read_f32, target_modules, write_safetensors};

/// One IA³ vector on a `[in, out]` weight: scales its rows (`axis = 0`, the input of a
/// feed-forward module) or its columns (`axis = 1`, the output).
#[derive(Module, Debug)]
pub struct Ia3Scale {
    /// The learned scale, ones at initialisation.
    pub l: Param<Tensor<1>>,
    /// 0 = input, 1 = output.
    #[module(skip)]
    pub axis: usize,
}

impl Reparameterization for Ia3Scale {
    const NAME: &'static str = "ia3";

    fn apply<const D: usize>(&self, base: Tensor<D>) -> Tensor<D> {
        let dims = base.dims();
        let mut shape = [1usize; D];
        shape[self.axis] = dims[self.axis];
        base * self.l.val().reshape(shape)
    }
}

/// Attaches IA³ vectors to the weights whose ids are in `targets` (with their axis) and
/// freezes every other parameter.
struct Attach {
    targets: HashMap<ParamId, usize>,
}

impl Reparameterizer for Attach {
    type Reparam = Ia3Scale;

    fn reparameterize<const D: usize>(
        &mut self,
        _path: &str,
        param: Param<Tensor<D>>,
    ) -> (Param<Tensor<D>>, Option<Ia3Scale>) {
        let axis = self.targets.get(&param.id).copied();
        let base = param.set_require_grad(false);
        match axis {
            Some(axis) if D == 2 => {
                let t = base.base();
                let n = t.dims()[axis];
                let l = Param::from_tensor(Tensor::<1>::ones([n], &t.device()));
                (base, Some(Ia3Scale { l, axis }))
            }
            _ => (base, None),
        }
    }
}

fn is_feedforward(m: &HfModule, ff: &[String]) -> bool {
    ff.iter().any(|f| m.short() == f || m.hf == *f)
}

/// Attaches IA³ to the target modules; `cfg.feedforward` names the ones whose input is
/// scaled.
pub fn apply(model: DecoderLm, cfg: &PeftConfig) -> Result<DecoderLm> {
    let targets = target_modules(&model, &cfg.targets)?;
    if let Some(f) = cfg.feedforward.iter().find(|f| !cfg.targets.contains(f)) {
        return Err(FinetuneError::config(
            "peft.feedforward",
            format!("`{f}` is not among peft.targets"),
        ));
    }
    // PEFT scales a module's output with its bias, `(Wx + b)·l`; the reparameterised
    // weight here scales `Wx` only, so a biased output target would compute another model.
    if let Some((m, _)) = decoder_linears(&model).into_iter().find(|(m, lin)| {
        targets.contains(m) && !is_feedforward(m, &cfg.feedforward) && lin.bias.is_some()
    }) {
        return Err(FinetuneError::config(
            "peft.targets",
            format!(
                "IA³ on `{}`, which has a bias, is not supported (PEFT scales the bias too); \
                 list it in peft.feedforward, choose unbiased modules, or use LoRA",
                m.short()
            ),
        ));
    }
    let ids: HashMap<ParamId, usize> = decoder_linears(&model)
        .into_iter()
        .filter(|(m, _)| targets.contains(m))
        .map(|(m, lin)| {
            (
                lin.weight.id,
                usize::from(!is_feedforward(&m, &cfg.feedforward)),
            )
        })
        .collect();
    Ok(model.apply_reparameterization(Attach { targets: ids }))
}

fn values(t: Tensor<1>) -> Vec<f32> {
    t.into_data()
        .convert::<f32>()
        .try_into_vec()
        .unwrap_or_default()
}

/// Writes `model`'s IA³ vectors in the PEFT format into `dir`.
pub fn save_peft(model: &DecoderLm, cfg: &PeftConfig, dir: &Path) -> Result<()> {
    let mut by_module: BTreeMap<String, (bool, Vec<f32>, Vec<usize>, usize)> = BTreeMap::new();
    for (m, lin) in decoder_linears(model) {
        let Some(s) = lin.weight.reparameterization::<Ia3Scale>() else {
            continue;
        };
        let entry = by_module.entry(m.hf.clone()).or_insert((
            s.axis == 0,
            Vec::new(),
            Vec::new(),
            m.groups,
        ));
        // Fused parts (GPT-2's c_attn) concatenate along the output, in order.
        let v = values(s.l.val());
        entry.2.push(v.len());
        entry.1.extend(v);
    }
    if by_module.is_empty() {
        return Err(FinetuneError::io(
            dir,
            "the model has no IA³ vectors to export",
        ));
    }
    let tensors: Vec<(String, Vec<usize>, Vec<f32>)> = by_module
        .into_iter()
        .map(|(hf, (ff, v, outs, groups))| {
            // Interleaved fused outputs (GPT-NeoX's query_key_value) in their HF order.
            let v = match !ff && groups > 1 {
                true => crate::peft::lora::reorder_fused_rows(&v, 1, &outs, groups, true),
                false => v,
            };
            let shape = if ff {
                vec![1, v.len()]
            } else {
                vec![v.len(), 1]
            };
            (format!("base_model.model.{hf}.ia3_l"), shape, v)
        })
        .collect();
    let config = AdapterConfig {
        peft_type: Some("IA3".into()),
        task_type: Some("CAUSAL_LM".into()),
        target_modules: Some(StringOrList::List(cfg.targets.clone())),
        feedforward_modules: Some(StringOrList::List(cfg.feedforward.clone())),
        fan_in_fan_out: Some(model.config().family == manabi_model::Family::Gpt2),
        init_ia3_weights: Some(true),
        inference_mode: Some(true),
        modules_to_save: Some(None),
        base_model_name_or_path: Some(None),
        ..AdapterConfig::default()
    };
    config.write(dir)?;
    write_safetensors(&dir.join("adapter_model.safetensors"), &tensors)
}

/// Loads a PEFT IA³ adapter (config already read into `cfg`) onto `model`.
pub fn load(model: DecoderLm, cfg: &PeftConfig, dir: &Path) -> Result<DecoderLm> {
    let path = dir.join("adapter_model.safetensors");
    let mut tensors: F32Tensors = read_f32(&path)?;
    let model = apply(model, cfg)?;
    // Per HF module: its parts (vector id, length), interleaving, and whether it is
    // feed-forward.
    type Module = (Vec<(ParamId, usize)>, usize, bool);
    let mut groups: BTreeMap<String, Module> = BTreeMap::new();
    for (m, lin) in decoder_linears(&model) {
        if let Some(s) = lin.weight.reparameterization::<Ia3Scale>() {
            let n = s.l.val().dims()[0];
            let entry = groups
                .entry(m.hf.clone())
                .or_insert((Vec::new(), m.groups, s.axis == 0));
            entry.0.push((s.l.id, n));
        }
    }
    let mut values: HashMap<ParamId, TensorData> = HashMap::new();
    for (hf, (parts, interleave, ff)) in groups {
        let key = format!("base_model.model.{hf}.ia3_l");
        let Some((shape, v)) = tensors.remove(&key) else {
            return Err(FinetuneError::Adapter {
                path: path.clone(),
                message: format!("missing tensor `{key}`"),
            });
        };
        let total: usize = parts.iter().map(|p| p.1).sum();
        if shape.iter().product::<usize>() != total || shape.len() != 2 {
            return Err(FinetuneError::Adapter {
                path: path.clone(),
                message: format!(
                    "tensor `{key}` has shape {shape:?}, this base needs {total} values (an adapter for another base model?)"
                ),
            });
        }
        let v = match !ff && interleave > 1 {
            true => {
                let outs: Vec<usize> = parts.iter().map(|p| p.1).collect();
                crate::peft::lora::reorder_fused_rows(&v, 1, &outs, interleave, false)
            }
            false => v,
        };
        let mut at = 0;
        for (id, n) in parts {
            values.insert(id, TensorData::new(v[at..at + n].to_vec(), [n]));
            at += n;
        }
    }
    if !tensors.is_empty() {
        let names: Vec<String> = tensors.into_keys().collect();
        return Err(FinetuneError::Adapter {
            path,
            message: format!(
                "tensors for modules this base does not have: {}",
                names.join(", ")
            ),
        });
    }
    Ok(model.map(&mut SetById(values)))
}

/// The settings of an IA³ `adapter_config.json` (module lists only: a regex is refused).
pub fn config_of(config: &AdapterConfig) -> std::result::Result<PeftConfig, String> {
    Ok(PeftConfig {
        method: Method::Ia3,
        targets: module_list("target_modules", &config.target_modules)?,
        feedforward: module_list("feedforward_modules", &config.feedforward_modules)?,
        ..PeftConfig::default()
    })
}

/// The module names of `key` (none when absent or `null`).
fn module_list(
    key: &str,
    value: &Option<StringOrList>,
) -> std::result::Result<Vec<String>, String> {
    match value {
        Some(StringOrList::List(names)) => Ok(names.clone()),
        None => Ok(Vec::new()),
        Some(StringOrList::String(_)) => Err(format!("`{key}` must be a list of module names")),
    }
}
