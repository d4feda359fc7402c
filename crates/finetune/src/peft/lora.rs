//! LoRA through burn's `apply_lora`, restricted to the target modules, and the PEFT
//! on-disk format both ways: `adapter_config.json` + `adapter_model.safetensors` with
//! keys `base_model.model.<hf module>.lora_A.weight` (`[r, in]`) and `lora_B.weight`
//! (`[out, r]`); burn stores `a: [in, r]`, `b: [r, out]`, hence the transposes.
//!
//! GPT-2's `c_attn` is one HF module (Q | K | V) and three `Linear`s here. A PEFT LoRA on
//! it shares A across Q, K and V: loading gives each part that A and its slice of B.
//! Exporting three independently trained parts writes one adapter of rank 3r with A
//! stacked and B block-diagonal, the same update exactly, with `rank_pattern` and
//! `alpha_pattern` saying so.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use burn::module::{Lora, Module, ModuleMapper, Param, ParamGroup, ParamId};
use burn::prelude::*;
use burn::tensor::TensorData;
use manabi_model::hf_names::{HfModule, decoder_linears};
use manabi_model::{DecoderLm, Family};
use safetensors::tensor::{Dtype, TensorView};
use serde_json::json;

use crate::error::{FinetuneError, Result};
use crate::peft::config::{Method, PeftConfig};

/// The HF modules `targets` select (PEFT semantics: a target names the last component
/// of a module, or a full module name); an unknown target is an error listing the
/// names this model has.
pub fn target_modules(model: &DecoderLm, targets: &[String]) -> Result<Vec<HfModule>> {
    let all: Vec<HfModule> = decoder_linears(model).into_iter().map(|(m, _)| m).collect();
    for t in targets {
        if !all.iter().any(|m| m.short() == t || m.hf == *t) {
            let mut names: Vec<&str> = all.iter().map(HfModule::short).collect();
            names.sort();
            names.dedup();
            return Err(FinetuneError::config(
                "peft.targets",
                format!(
                    "unknown target module `{t}`; this {} model has: {}",
                    family_name(model),
                    names.join(", ")
                ),
            ));
        }
    }
    Ok(all
        .into_iter()
        .filter(|m| targets.iter().any(|t| m.short() == t || m.hf == *t))
        .collect())
}

fn family_name(model: &DecoderLm) -> String {
    let cfg = model.config();
    match &cfg.hf_model_type {
        Some(t) => t.clone(),
        None => cfg.family.to_string(),
    }
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

/// Attaches rank-`r` adapters to the target modules and freezes everything else.
pub fn apply(model: DecoderLm, cfg: &PeftConfig) -> Result<DecoderLm> {
    let targets = target_modules(&model, &cfg.targets)?;
    let ids: Vec<ParamId> = decoder_linears(&model)
        .into_iter()
        .filter(|(m, _)| targets.contains(m))
        .map(|(_, lin)| lin.weight.id)
        .collect();
    // burn scales by alpha / rank; rsLoRA's alpha / sqrt(r) is the same with another alpha.
    let alpha = cfg.lora_scale() * cfg.r as f64;
    Ok(model
        .apply_lora(Lora::new(cfg.r, alpha).set_param_group(ParamGroup::from_ids(ids)))
        .with_lora_dropout(cfg.dropout))
}

/// The adapters a merged model was made with, for [`unmerge`]: each adapted `Linear`'s
/// manabi path and its factors and scale (burn's layout, `a: [in, r]`, `b: [r, out]`).
#[derive(Debug, Clone)]
pub struct MergedAdapters {
    /// The LoRA settings (targets, rank, α).
    pub config: PeftConfig,
    /// `(path, a, b, scale)` per adapted `Linear`.
    pub parts: Vec<(String, Tensor<2>, Tensor<2>, f64)>,
}

/// PEFT's `merge_adapter`, undoable: the model with every LoRA update folded into its
/// weight (plain `Linear`s, as fast as the base), and the adapters to [`unmerge`] it with.
pub fn merge(model: &DecoderLm, cfg: &PeftConfig) -> (DecoderLm, MergedAdapters) {
    let parts = decoder_linears(model)
        .into_iter()
        .filter_map(|(m, lin)| {
            lin.weight
                .adapter()
                .map(|ad| (m.path.clone(), ad.a.val(), ad.b.val(), ad.scale))
        })
        .collect();
    (
        model.clone().materialize(),
        MergedAdapters {
            config: cfg.clone(),
            parts,
        },
    )
}

/// PEFT's `unmerge_adapter`: the adapted model back from a merged one — each target's
/// base weight is the merged weight minus `scale · a·b`, with the adapter re-attached
/// (trainable, as after `apply`). A merged model of another base is refused by path.
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
        let Some(ad) = lin.weight.adapter() else {
            return Err(FinetuneError::config(
                "peft.targets",
                format!("`{path}` is not a LoRA target of these settings"),
            ));
        };
        let base = lin.weight.base() - a.clone().matmul(b.clone()).mul_scalar(*scale);
        values.insert(lin.weight.id, base.into_data());
        values.insert(ad.a.id, a.clone().into_data());
        values.insert(ad.b.id, b.clone().into_data());
    }
    Ok(model.map(&mut SetById(values)))
}

/// One adapted `Linear`: its HF module and the factors in burn's layout.
struct Factors {
    module: HfModule,
    a: Tensor<2>, // [in, r]
    b: Tensor<2>, // [r, out]
}

fn factors(model: &DecoderLm) -> Vec<Factors> {
    decoder_linears(model)
        .into_iter()
        .filter_map(|(module, lin)| {
            lin.weight.adapter().map(|ad| Factors {
                module,
                a: ad.a.val(),
                b: ad.b.val(),
            })
        })
        .collect()
}

fn to_vec(t: Tensor<2>) -> Vec<f32> {
    t.into_data()
        .convert::<f32>()
        .try_into_vec()
        .unwrap_or_default()
}

/// Writes `model`'s LoRA adapters in the PEFT format into `dir`.
pub fn save_peft(model: &DecoderLm, cfg: &PeftConfig, dir: &Path) -> Result<()> {
    if cfg.method != Method::Lora {
        return Err(FinetuneError::config(
            "peft.method",
            format!(
                "`{}` has no PEFT format here; export merged weights instead",
                cfg.method
            ),
        ));
    }
    let all = factors(model);
    if all.is_empty() {
        return Err(FinetuneError::io(
            dir,
            "the model has no LoRA adapters to export",
        ));
    }
    let r = cfg.r;
    // Fused modules whose parts train separately become one block-diagonal adapter.
    let mut fused: BTreeMap<String, Vec<&Factors>> = BTreeMap::new();
    let mut tensors: Vec<(String, Vec<usize>, Vec<f32>)> = Vec::new();
    let key = |hf: &str, which: &str| format!("base_model.model.{hf}.lora_{which}.weight");
    for f in &all {
        if f.module.part.is_some() {
            fused.entry(f.module.hf.clone()).or_default().push(f);
            continue;
        }
        let [i, rr] = f.a.dims();
        let o = f.b.dims()[1];
        tensors.push((
            key(&f.module.hf, "A"),
            vec![rr, i],
            to_vec(f.a.clone().transpose()),
        ));
        tensors.push((
            key(&f.module.hf, "B"),
            vec![o, rr],
            to_vec(f.b.clone().transpose()),
        ));
    }
    let mut rank_pattern = serde_json::Map::new();
    let mut alpha_pattern = serde_json::Map::new();
    for (hf, parts) in &fused {
        let n = parts.len();
        let [i, _] = parts[0].a.dims();
        let outs: Vec<usize> = parts.iter().map(|p| p.b.dims()[1]).collect();
        let total_out: usize = outs.iter().sum();
        // A: [n·r, in] stacked; B: [Σout, n·r] block-diagonal.
        let mut a = Vec::with_capacity(n * r * i);
        let mut b = vec![0f32; total_out * n * r];
        let mut row0 = 0;
        for (k, p) in parts.iter().enumerate() {
            a.extend(to_vec(p.a.clone().transpose()));
            let bt = to_vec(p.b.clone().transpose()); // [out_k, r]
            for row in 0..outs[k] {
                for c in 0..r {
                    b[(row0 + row) * n * r + k * r + c] = bt[row * r + c];
                }
            }
            row0 += outs[k];
        }
        let groups = parts[0].module.groups;
        if groups > 1 {
            b = reorder_fused_rows(&b, n * r, &outs, groups, true);
        }
        tensors.push((key(hf, "A"), vec![n * r, i], a));
        tensors.push((key(hf, "B"), vec![total_out, n * r], b));
        let short = hf.rsplit('.').next().unwrap_or(hf).to_string();
        let scale = cfg.lora_scale();
        let big = (n * r) as f64;
        let alpha = if cfg.rslora {
            scale * big.sqrt()
        } else {
            scale * big
        };
        rank_pattern.insert(short.clone(), json!(n * r));
        alpha_pattern.insert(short, json!(alpha));
    }
    let mut targets: Vec<String> = all.iter().map(|f| f.module.short().to_string()).collect();
    targets.sort();
    targets.dedup();
    let config = json!({
        "peft_type": "LORA",
        "task_type": "CAUSAL_LM",
        "r": r,
        "lora_alpha": cfg.alpha,
        "lora_dropout": cfg.dropout,
        "target_modules": targets,
        "use_rslora": cfg.rslora,
        "fan_in_fan_out": model.config().family == Family::Gpt2,
        "bias": "none",
        "rank_pattern": rank_pattern,
        "alpha_pattern": alpha_pattern,
        "init_lora_weights": true,
        "inference_mode": true,
        "modules_to_save": null,
        "base_model_name_or_path": null,
    });
    std::fs::create_dir_all(dir).map_err(|e| FinetuneError::io(dir, e))?;
    let cfg_path = dir.join("adapter_config.json");
    let text =
        serde_json::to_string_pretty(&config).map_err(|e| FinetuneError::io(&cfg_path, e))?;
    manabi_tokenize::write_atomic(&cfg_path, text.as_bytes())?;
    write_safetensors(&dir.join("adapter_model.safetensors"), &tensors)
}

pub(crate) fn write_safetensors(
    path: &Path,
    tensors: &[(String, Vec<usize>, Vec<f32>)],
) -> Result<()> {
    let bytes: Vec<Vec<u8>> = tensors
        .iter()
        .map(|(_, _, v)| v.iter().flat_map(|x| x.to_le_bytes()).collect())
        .collect();
    let views = tensors
        .iter()
        .zip(&bytes)
        .map(|((name, shape, _), b)| {
            TensorView::new(Dtype::F32, shape.clone(), b)
                .map(|v| (name.clone(), v))
                .map_err(|e| FinetuneError::io(path, e))
        })
        .collect::<Result<Vec<_>>>()?;
    let data = safetensors::serialize(views, None).map_err(|e| FinetuneError::io(path, e))?;
    manabi_tokenize::write_atomic(path, &data)?;
    Ok(())
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

/// Tensors of a safetensors file by name: shape and f32 values.
pub(crate) type F32Tensors = BTreeMap<String, (Vec<usize>, Vec<f32>)>;

/// One adapted part of an HF module: its module, the ids of `a` and `b`, in and out widths.
type Part = (HfModule, ParamId, ParamId, usize, usize);

pub(crate) fn read_f32(path: &Path) -> Result<F32Tensors> {
    let bytes = std::fs::read(path).map_err(|e| FinetuneError::io(path, e))?;
    let st = safetensors::SafeTensors::deserialize(&bytes).map_err(|e| FinetuneError::Adapter {
        path: path.to_path_buf(),
        message: format!("not a safetensors file: {e}"),
    })?;
    let mut out = BTreeMap::new();
    for (name, view) in st.tensors() {
        if view.dtype() != Dtype::F32 {
            return Err(FinetuneError::Adapter {
                path: path.to_path_buf(),
                message: format!(
                    "tensor `{name}` is {}; only f32 adapters are read",
                    format!("{:?}", view.dtype()).to_lowercase()
                ),
            });
        }
        let v: Vec<f32> = view
            .data()
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        out.insert(name, (view.shape().to_vec(), v));
    }
    Ok(out)
}

/// Loads a PEFT LoRA adapter folder onto `model` (the plain base it was trained on).
/// Returns the adapted model and the settings it was loaded with. Tensors that do not
/// fit the base are errors naming the tensor and both shapes.
pub fn load_peft(model: DecoderLm, dir: &Path) -> Result<(DecoderLm, PeftConfig)> {
    let cfg = read_lora_config(dir)?;
    let model = load_lora_weights(apply(model, &cfg)?, &cfg, dir)?;
    Ok((model, cfg))
}

/// The LoRA settings of PEFT's `adapter_config.json` in `dir`; what manabi cannot
/// represent exactly (regex targets, DoRA, trained biases, per-module scales) is refused.
fn read_lora_config(dir: &Path) -> Result<PeftConfig> {
    let cfg_path = dir.join("adapter_config.json");
    let text = std::fs::read_to_string(&cfg_path).map_err(|e| FinetuneError::io(&cfg_path, e))?;
    let v: serde_json::Value = serde_json::from_str(&text).map_err(|e| FinetuneError::Adapter {
        path: cfg_path.clone(),
        message: format!("not valid JSON: {e}"),
    })?;
    let bad = |m: String| FinetuneError::Adapter {
        path: cfg_path.clone(),
        message: m,
    };
    match v["peft_type"].as_str() {
        Some("LORA") => {}
        Some(other) => {
            return Err(bad(format!(
                "peft_type \"{other}\": only LORA adapters are loaded"
            )));
        }
        None => return Err(bad("`peft_type` missing or not a string".into())),
    }
    let r = v["r"]
        .as_u64()
        .ok_or_else(|| bad("`r` missing or not an integer".into()))? as usize;
    let alpha = v["lora_alpha"]
        .as_f64()
        .ok_or_else(|| bad("`lora_alpha` missing or not a number".into()))?;
    let rslora = v["use_rslora"].as_bool().unwrap_or(false);
    let targets: Vec<String> = match &v["target_modules"] {
        serde_json::Value::Array(a) => a
            .iter()
            .filter_map(|x| x.as_str().map(String::from))
            .collect(),
        serde_json::Value::String(s) => {
            return Err(bad(format!(
                "target_modules as a regex (\"{s}\") is not supported; list the modules"
            )));
        }
        _ => return Err(bad("`target_modules` missing".into())),
    };
    for flag in ["use_dora", "lora_bias"] {
        if v[flag].as_bool() == Some(true) {
            return Err(bad(format!("`{flag}` adapters are not supported")));
        }
    }
    let patterns_agree = v["alpha_pattern"].as_object().is_none_or(|alphas| {
        alphas.iter().all(|(k, a)| {
            let rank = v["rank_pattern"][k].as_f64().unwrap_or(r as f64);
            let scale = |alpha: f64, rank: f64| {
                if rslora {
                    alpha / rank.sqrt()
                } else {
                    alpha / rank
                }
            };
            a.as_f64()
                .is_some_and(|a| (scale(a, rank) - scale(alpha, r as f64)).abs() < 1e-9)
        })
    });
    if !patterns_agree {
        return Err(bad(
            "`alpha_pattern` gives some modules another scale, which is not supported".into(),
        ));
    }
    if v["bias"].as_str().is_some_and(|b| b != "none") {
        return Err(bad(
            "adapters that also train biases (`bias` ≠ \"none\") are not supported".into(),
        ));
    }
    Ok(PeftConfig {
        method: Method::Lora,
        r,
        alpha,
        dropout: v["lora_dropout"].as_f64().unwrap_or(0.0),
        targets,
        rslora,
        ..PeftConfig::default()
    })
}

/// Reads `adapter_model.safetensors` of `dir` into the adapters of `model` (built with
/// `cfg`): PEFT's `lora_A` / `lora_B` per HF module, split over fused modules (GPT-2's
/// `c_attn`) when A is shared or B block-diagonal; shapes of another base are refused.
fn load_lora_weights(model: DecoderLm, cfg: &PeftConfig, dir: &Path) -> Result<DecoderLm> {
    let r = cfg.r;
    let weights_path = dir.join("adapter_model.safetensors");
    let mut tensors = read_f32(&weights_path)?;
    let shape_err = |name: &str, want: Vec<usize>, found: &[usize]| FinetuneError::Adapter {
        path: weights_path.clone(),
        message: format!(
            "tensor `{name}` has shape {found:?}, this base needs {want:?} (an adapter for another base model?)"
        ),
    };
    let mut values: HashMap<ParamId, TensorData> = HashMap::new();
    let mut by_module: BTreeMap<String, Vec<Part>> = BTreeMap::new();
    for (module, lin) in decoder_linears(&model) {
        if let Some(ad) = lin.weight.adapter() {
            let [i, o] = lin.weight.base().dims();
            by_module
                .entry(module.hf.clone())
                .or_default()
                .push((module, ad.a.id, ad.b.id, i, o));
        }
    }
    for (hf, parts) in &by_module {
        let ka = format!("base_model.model.{hf}.lora_A.weight");
        let kb = format!("base_model.model.{hf}.lora_B.weight");
        let (Some((sa, a)), Some((sb, mut b))) = (tensors.remove(&ka), tensors.remove(&kb)) else {
            return Err(FinetuneError::Adapter {
                path: weights_path.clone(),
                message: format!("missing tensors `{ka}` / `{kb}`"),
            });
        };
        let i = parts[0].3;
        let total_out: usize = parts.iter().map(|p| p.4).sum();
        let n = parts.len();
        if sa.len() != 2 || sa[1] != i {
            return Err(shape_err(&ka, vec![r, i], &sa));
        }
        let big = sa[0];
        if sb != [total_out, big] {
            return Err(shape_err(&kb, vec![total_out, big], &sb));
        }
        let groups = parts[0].0.groups;
        if groups > 1 {
            // Interleaved fused rows (GPT-NeoX) laid part after part, as B is split below.
            let outs: Vec<usize> = parts.iter().map(|p| p.4).collect();
            b = reorder_fused_rows(&b, big, &outs, groups, false);
        }
        // A shared by every part (rank r), or stacked per part with B block-diagonal (rank n·r).
        let shared = big == r;
        if !shared && big != n * r {
            return Err(shape_err(&ka, vec![r, i], &sa));
        }
        let mut row0 = 0;
        for (k, (_, a_id, b_id, _, o)) in parts.iter().enumerate() {
            let rows = if shared { 0..r } else { k * r..(k + 1) * r };
            // burn a: [in, r] = A[rows]ᵀ
            let mut at = vec![0f32; i * r];
            for (c, rr) in rows.clone().enumerate() {
                for x in 0..i {
                    at[x * r + c] = a[rr * i + x];
                }
            }
            // burn b: [r, out_k] = B[row0..row0+o, cols]ᵀ
            let mut bt = vec![0f32; r * o];
            for (c, col) in rows.enumerate() {
                for y in 0..*o {
                    bt[c * o + y] = b[(row0 + y) * big + col];
                }
            }
            if !shared {
                // Off-diagonal blocks must be zero for the split to be exact.
                let off = (0..*o).any(|y| {
                    (0..big).any(|col| {
                        !(k * r..(k + 1) * r).contains(&col) && b[(row0 + y) * big + col] != 0.0
                    })
                });
                if off {
                    return Err(FinetuneError::Adapter {
                        path: weights_path.clone(),
                        message: format!(
                            "tensor `{kb}`: rank {big} on a fused module is read only when block-diagonal"
                        ),
                    });
                }
            }
            values.insert(*a_id, TensorData::new(at, [i, r]));
            values.insert(*b_id, TensorData::new(bt, [r, *o]));
            row0 += o;
        }
    }
    if !tensors.is_empty() {
        let names: Vec<String> = tensors.into_keys().collect();
        return Err(FinetuneError::Adapter {
            path: weights_path,
            message: format!(
                "tensors for modules this base does not have or that target_modules does not list: {}",
                names.join(", ")
            ),
        });
    }
    Ok(model.map(&mut SetById(values)))
}
