//! The PEFT LoRA format both ways: `adapter_config.json` + `adapter_model.safetensors`
//! with keys `base_model.model.<hf module>.lora_A.weight` (`[r, in]`), `lora_B.weight`
//! (`[out, r]`) and, for DoRA, `lora_magnitude_vector` (`[out]`).
//!
//! GPT-2's `c_attn` (and Phi-3's `qkv_proj`, GPT-NeoX's `query_key_value`, Phi-3's
//! `gate_up_proj`) is one HF module and several `Linear`s here. A PEFT adapter on it
//! shares A across the parts: loading gives each part that A and its slice of B (and of
//! DoRA's magnitude). Exporting parts trained apart writes one adapter of their summed
//! rank with A stacked and B block-diagonal, the same update exactly, with `rank_pattern`
//! and `alpha_pattern` saying so; such a block-diagonal adapter loads back as the parts.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use burn::module::{Module, ParamId};
use burn::prelude::*;
use burn::tensor::TensorData;
use manabi_model::hf_names::{HfModule, decoder_linears};
use manabi_model::{DecoderLm, Family};
use safetensors::tensor::{Dtype, TensorView};

use super::select::{self, SelectError, alpha_of};
use super::{SetById, adapter_of, apply, reorder_fused_rows};
use crate::error::{FinetuneError, Result};
use crate::peft::adapter_config::{
    ADAPTER_CONFIG, AdapterConfig, InitWeights, LayerIndices, StringOrList, not_loaded,
};
use crate::peft::config::{Method, Patterns, PeftConfig};

/// Tensors of a safetensors file by name: shape and f32 values.
pub(crate) type F32Tensors = BTreeMap<String, (Vec<usize>, Vec<f32>)>;

fn key(hf: &str, which: &str) -> String {
    match which {
        "magnitude" => format!("base_model.model.{hf}.lora_magnitude_vector"),
        ab => format!("base_model.model.{hf}.lora_{ab}.weight"),
    }
}

fn to_vec<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    t.into_data()
        .convert::<f32>()
        .try_into_vec()
        .unwrap_or_default()
}

/// One adapted `Linear` for export: its HF module, factors (burn's layout), scale and
/// DoRA magnitude.
struct Part {
    module: HfModule,
    a: Tensor<2>, // [in, r]
    b: Tensor<2>, // [r, out]
    scale: f64,
    magnitude: Option<Tensor<1>>, // [out]
}

/// Writes `model`'s LoRA (or DoRA) adapters in the PEFT format into `dir`.
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
    let mut modules: BTreeMap<String, Vec<Part>> = BTreeMap::new();
    for (module, lin) in decoder_linears(model) {
        if let Some(ad) = adapter_of(lin) {
            modules.entry(module.hf.clone()).or_default().push(Part {
                module,
                a: ad.a.val(),
                b: ad.b.val(),
                scale: ad.scale,
                magnitude: ad.magnitude.map(|m| m.val()),
            });
        }
    }
    if modules.is_empty() {
        return Err(FinetuneError::io(
            dir,
            "the model has no LoRA adapters to export",
        ));
    }
    let mut tensors: Vec<(String, Vec<usize>, Vec<f32>)> = Vec::new();
    // (hf module, its rank, its α) as written.
    let mut sizes: Vec<(String, f64, f64)> = Vec::new();
    for (hf, parts) in &modules {
        // One module, or the parts of a fused one: A [Σr, in] stacked, B [Σout, Σr]
        // block-diagonal, all at the first part's scale (another part's scale goes into
        // its block of B).
        let scale = parts[0].scale;
        let i = parts[0].a.dims()[0];
        let ranks: Vec<usize> = parts.iter().map(|p| p.a.dims()[1]).collect();
        let outs: Vec<usize> = parts.iter().map(|p| p.b.dims()[1]).collect();
        let (big, total_out) = (ranks.iter().sum::<usize>(), outs.iter().sum::<usize>());
        let mut a = Vec::with_capacity(big * i);
        let mut b = vec![0f32; total_out * big];
        let mut magnitude = Vec::new();
        let (mut row0, mut col0) = (0, 0);
        for (k, p) in parts.iter().enumerate() {
            a.extend(to_vec(p.a.clone().transpose()));
            let ratio = (p.scale / scale) as f32;
            let bt = to_vec(p.b.clone().transpose()); // [out_k, r_k]
            for row in 0..outs[k] {
                for c in 0..ranks[k] {
                    b[(row0 + row) * big + col0 + c] = bt[row * ranks[k] + c] * ratio;
                }
            }
            if let Some(m) = &p.magnitude {
                magnitude.extend(to_vec(m.clone()));
            }
            row0 += outs[k];
            col0 += ranks[k];
        }
        let groups = parts[0].module.groups;
        if groups > 1 {
            // Interleaved fused rows (GPT-NeoX) in their HF order.
            b = reorder_fused_rows(&b, big, &outs, groups, true);
            if !magnitude.is_empty() {
                magnitude = reorder_fused_rows(&magnitude, 1, &outs, groups, true);
            }
        }
        tensors.push((key(hf, "A"), vec![big, i], a));
        tensors.push((key(hf, "B"), vec![total_out, big], b));
        if !magnitude.is_empty() {
            tensors.push((key(hf, "magnitude"), vec![total_out], magnitude));
        }
        sizes.push((hf.clone(), big as f64, alpha_of(scale, big, cfg.rslora)));
    }
    let ranks: Vec<(&str, f64)> = sizes.iter().map(|(h, r, _)| (h.as_str(), *r)).collect();
    let alphas: Vec<(&str, f64)> = sizes.iter().map(|(h, _, a)| (h.as_str(), *a)).collect();
    // Ranks are whole; an α within rounding of a whole number is written as one.
    let rank_pattern = Patterns(
        pattern_entries(&ranks, cfg.r as f64)
            .into_iter()
            .map(|(k, v)| (k, v.round() as usize))
            .collect(),
    );
    let alpha_pattern = Patterns(
        pattern_entries(&alphas, cfg.alpha)
            .into_iter()
            .map(|(k, v)| (k, if close(v, v.round()) { v.round() } else { v }))
            .collect(),
    );
    let (targets, layers, layers_pattern) = export_targets(model, cfg, &modules);
    let use_dora = modules.values().flatten().any(|p| p.magnitude.is_some());
    let layers = match layers.is_empty() {
        true => None,
        false => Some(LayerIndices::List(layers)),
    };
    let layers_pattern = match layers_pattern.len() {
        0 => None,
        1 => Some(StringOrList::String(layers_pattern[0].clone())),
        _ => Some(StringOrList::List(layers_pattern)),
    };
    let config = AdapterConfig {
        peft_type: Some("LORA".into()),
        task_type: Some("CAUSAL_LM".into()),
        r: Some(cfg.r),
        lora_alpha: Some(cfg.alpha),
        lora_dropout: Some(cfg.dropout),
        target_modules: Some(StringOrList::List(targets)),
        layers_to_transform: Some(layers),
        layers_pattern: Some(layers_pattern),
        use_rslora: Some(cfg.rslora),
        use_dora: Some(use_dora),
        fan_in_fan_out: Some(model.config().family == Family::Gpt2),
        bias: Some("none".into()),
        rank_pattern: Some(rank_pattern),
        alpha_pattern: Some(alpha_pattern),
        init_lora_weights: Some(InitWeights::Bool(true)),
        inference_mode: Some(true),
        modules_to_save: Some(None),
        base_model_name_or_path: Some(None),
        ..AdapterConfig::default()
    };
    config.write(dir)?;
    write_safetensors(&dir.join("adapter_model.safetensors"), &tensors)
}

/// `target_modules`, `layers_to_transform` and `layers_pattern` that make peft adapt
/// exactly the exported modules: the short names with `cfg`'s layer settings when they
/// select those, otherwise every module by its full name.
fn export_targets(
    model: &DecoderLm,
    cfg: &PeftConfig,
    modules: &BTreeMap<String, Vec<Part>>,
) -> (Vec<String>, Vec<usize>, Vec<String>) {
    let exported: Vec<String> = modules.keys().cloned().collect();
    let mut shorts: Vec<String> = modules
        .values()
        .map(|p| p[0].module.short().to_string())
        .collect();
    shorts.sort();
    shorts.dedup();
    let candidate = PeftConfig {
        targets: shorts.clone(),
        rank_pattern: Patterns::default(),
        alpha_pattern: Patterns::default(),
        ..cfg.clone()
    };
    let fits = select::select(model, &candidate).is_ok_and(|ts| {
        let mut hf: Vec<String> = ts.into_iter().map(|t| t.module.hf).collect();
        hf.sort();
        hf.dedup();
        hf == exported
    });
    match fits {
        true => (
            shorts,
            candidate.layers_to_transform,
            candidate.layers_pattern,
        ),
        false => (exported, Vec::new(), Vec::new()),
    }
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-9 * b.abs().max(1.0)
}

/// `rank_pattern` / `alpha_pattern` entries giving each module (full HF name) its value
/// where it differs from `default`: one key per short name (`c_attn`) when all modules of
/// that name agree, else each module's full name as an escaped regex; in sorted key
/// order. Keys of different short names never match the same module, so their order
/// does not matter.
fn pattern_entries(modules: &[(&str, f64)], default: f64) -> BTreeMap<String, f64> {
    let mut by_short: BTreeMap<&str, Vec<(&str, f64)>> = BTreeMap::new();
    for &(hf, v) in modules {
        let short = hf.rsplit('.').next().unwrap_or(hf);
        by_short.entry(short).or_default().push((hf, v));
    }
    let mut out = BTreeMap::new();
    for (short, ms) in by_short {
        let first = ms[0].1;
        if ms.iter().all(|(_, v)| close(*v, first)) {
            if !close(first, default) {
                out.insert(short.to_string(), first);
            }
            continue;
        }
        for (hf, v) in ms {
            if !close(v, default) {
                out.insert(regex_lite::escape(hf), v);
            }
        }
    }
    out
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

/// Loads a PEFT LoRA (or DoRA) adapter folder onto `model` (the plain base it was trained
/// on). Returns the adapted model and the settings it was loaded with (a block-diagonal
/// fused module read as its parts: `rank_pattern` / `alpha_pattern` entries for them come
/// first). Tensors that do not fit the base are errors naming the tensor and both shapes.
pub fn load_peft(model: DecoderLm, dir: &Path) -> Result<(DecoderLm, PeftConfig)> {
    let config = AdapterConfig::read(dir)?;
    load_peft_with(model, &config, dir)
}

/// [`load_peft`] with the folder's `adapter_config.json` already read into `config`.
pub(crate) fn load_peft_with(
    model: DecoderLm,
    config: &AdapterConfig,
    dir: &Path,
) -> Result<(DecoderLm, PeftConfig)> {
    let cfg_path = dir.join(ADAPTER_CONFIG);
    let cfg = lora_config_of(config).map_err(|message| FinetuneError::Adapter {
        path: cfg_path.clone(),
        message,
    })?;
    let weights_path = dir.join("adapter_model.safetensors");
    let tensors = read_f32(&weights_path)?;
    let cfg = fit_to_tensors(&model, cfg, &tensors, &cfg_path, &weights_path)?;
    let model = load_lora_weights(apply(model, &cfg)?, tensors, &weights_path)?;
    Ok((model, cfg))
}

/// The LoRA settings of PEFT's `adapter_config.json`; what manabi cannot represent
/// exactly (regex targets, trained biases) is refused. `rank_pattern` and
/// `alpha_pattern` keep the order of the file (peft takes the first key that matches).
fn lora_config_of(c: &AdapterConfig) -> std::result::Result<PeftConfig, String> {
    match c.peft_type.as_deref() {
        Some("LORA") => {}
        Some(other) => return Err(not_loaded(other)),
        None => return Err("`peft_type` missing or not a string".into()),
    }
    let r =
        c.r.filter(|&r| r > 0)
            .ok_or_else(|| "`r` missing or not a positive integer".to_string())?;
    let alpha = c
        .lora_alpha
        .ok_or_else(|| "`lora_alpha` missing or not a number".to_string())?;
    let targets: Vec<String> = match &c.target_modules {
        Some(StringOrList::List(names)) => names.clone(),
        Some(StringOrList::String(s)) => {
            return Err(format!(
                "target_modules as a regex (\"{s}\") is not supported; list the modules"
            ));
        }
        None => return Err("`target_modules` missing".into()),
    };
    if c.lora_bias == Some(true) {
        return Err("`lora_bias` adapters are not supported".into());
    }
    if c.bias.as_deref().is_some_and(|b| b != "none") {
        return Err("adapters that also train biases (`bias` ≠ \"none\") are not supported".into());
    }
    Ok(PeftConfig {
        method: Method::Lora,
        r,
        alpha,
        dropout: c.lora_dropout.unwrap_or(0.0),
        targets,
        rslora: c.use_rslora.unwrap_or(false),
        use_dora: c.use_dora.unwrap_or(false),
        layers_to_transform: c.layers_to_transform(),
        layers_pattern: c.layers_pattern(),
        rank_pattern: c.rank_pattern.clone().unwrap_or_default(),
        alpha_pattern: c.alpha_pattern.clone().unwrap_or_default(),
        ..PeftConfig::default()
    })
}

/// Whether `b` (`[Σout, Σr]`, parts laid one after the other) is zero outside the blocks
/// of part k: rows of its output, columns of its rank.
fn block_diagonal(b: &[f32], outs: &[usize], ranks: &[usize]) -> bool {
    let big: usize = ranks.iter().sum();
    let (mut row0, mut col0) = (0, 0);
    for (&o, &r) in outs.iter().zip(ranks) {
        for row in row0..row0 + o {
            let line = &b[row * big..(row + 1) * big];
            let outside = line[..col0].iter().chain(&line[col0 + r..]);
            if outside.into_iter().any(|&x| x != 0.0) {
                return false;
            }
        }
        row0 += o;
        col0 += r;
    }
    true
}

/// `cfg` (as peft reads it) checked against the tensors before any adapter is built —
/// every adapted module's `lora_A` there, with the rank the settings give it — and with
/// every fused module whose B is block-diagonal read as its parts: each of rank R / n at
/// the module's scale, by `rank_pattern` / `alpha_pattern` entries put first (one per
/// short name when all its modules split alike, else per module). Others keep rank R
/// each, sharing A.
fn fit_to_tensors(
    model: &DecoderLm,
    cfg: PeftConfig,
    tensors: &F32Tensors,
    cfg_path: &Path,
    weights_path: &Path,
) -> Result<PeftConfig> {
    let targets = select::select(model, &cfg).map_err(|e: SelectError| FinetuneError::Adapter {
        path: cfg_path.to_path_buf(),
        message: format!("`{}`: {}", e.peft_key(), e.message),
    })?;
    for t in &targets {
        let (ka, kb) = (key(&t.module.hf, "A"), key(&t.module.hf, "B"));
        let (Some((sa, _)), true) = (tensors.get(&ka), tensors.contains_key(&kb)) else {
            return Err(FinetuneError::Adapter {
                path: weights_path.to_path_buf(),
                message: format!("missing tensors `{ka}` / `{kb}`"),
            });
        };
        if sa.len() != 2 || sa[0] != t.rank {
            return Err(FinetuneError::Adapter {
                path: weights_path.to_path_buf(),
                message: format!(
                    "tensor `{ka}` has shape {sa:?}, but adapter_config.json gives `{}` rank {} (r / rank_pattern)",
                    t.module.hf, t.rank
                ),
            });
        }
    }
    // Fused module → (rank, scale, part widths, interleaving).
    let mut fused: BTreeMap<&str, (usize, f64, Vec<usize>, usize)> = BTreeMap::new();
    for t in targets.iter().filter(|t| t.module.part.is_some()) {
        let e = fused.entry(t.module.hf.as_str()).or_insert((
            t.rank,
            t.scale,
            Vec::new(),
            t.module.groups,
        ));
        e.2.push(t.linear.weight.base().dims()[1]);
    }
    let mut split: BTreeMap<&str, (usize, f64)> = BTreeMap::new();
    for (hf, (rank, scale, outs, groups)) in &fused {
        let n = outs.len();
        let Some((shape, b)) = tensors.get(&key(hf, "B")) else {
            continue;
        };
        let total: usize = outs.iter().sum();
        if rank % n != 0 || shape[..] != [total, *rank] {
            continue; // shared A, or a shape the weights reader names
        }
        let b = match *groups > 1 {
            true => reorder_fused_rows(b, *rank, outs, *groups, false),
            false => b.clone(),
        };
        if block_diagonal(&b, outs, &vec![rank / n; n]) {
            let part = rank / n;
            split.insert(*hf, (part, alpha_of(*scale, part, cfg.rslora)));
        }
    }
    if split.is_empty() {
        return Ok(cfg);
    }
    // The adapted modules of each short name, to key the entries by it where they all split alike.
    let mut by_short: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for t in &targets {
        let names = by_short.entry(t.module.short()).or_default();
        if !names.contains(&t.module.hf.as_str()) {
            names.push(&t.module.hf);
        }
    }
    let (mut ranks, mut alphas) = (Vec::new(), Vec::new());
    for (short, names) in by_short {
        let values: Vec<Option<&(usize, f64)>> = names.iter().map(|h| split.get(h)).collect();
        let uniform = values[0].is_some_and(|first| {
            values
                .iter()
                .all(|v| v.is_some_and(|v| v.0 == first.0 && close(v.1, first.1)))
        });
        match uniform {
            true => {
                let (r, a) = *values[0].unwrap_or(&(0, 0.0));
                ranks.push((short.to_string(), r));
                alphas.push((short.to_string(), a));
            }
            false => {
                for (hf, v) in names.iter().zip(values) {
                    if let Some(&(r, a)) = v {
                        ranks.push((regex_lite::escape(hf), r));
                        alphas.push((regex_lite::escape(hf), a));
                    }
                }
            }
        }
    }
    ranks.extend(cfg.rank_pattern.0.iter().cloned());
    alphas.extend(cfg.alpha_pattern.0.iter().cloned());
    Ok(PeftConfig {
        rank_pattern: Patterns(ranks),
        alpha_pattern: Patterns(alphas),
        ..cfg
    })
}

/// One adapted part of an HF module: the ids of `a`, `b` and DoRA's magnitude, in and
/// out widths, rank.
struct LoadPart {
    a: ParamId,
    b: ParamId,
    magnitude: Option<ParamId>,
    i: usize,
    o: usize,
    r: usize,
}

/// Reads PEFT's `lora_A` / `lora_B` (and `lora_magnitude_vector`) per HF module into the
/// adapters of `model`, split over fused modules when A is shared (every part of rank
/// R) or B block-diagonal (parts of rank R / n); shapes of another base are refused.
fn load_lora_weights(
    model: DecoderLm,
    mut tensors: F32Tensors,
    weights_path: &Path,
) -> Result<DecoderLm> {
    let shape_err = |name: &str, want: Vec<usize>, found: &[usize]| FinetuneError::Adapter {
        path: weights_path.to_path_buf(),
        message: format!(
            "tensor `{name}` has shape {found:?}, this base needs {want:?} (an adapter for another base model?)"
        ),
    };
    let mut values: HashMap<ParamId, TensorData> = HashMap::new();
    let mut by_module: BTreeMap<String, (Vec<LoadPart>, usize)> = BTreeMap::new();
    for (module, lin) in decoder_linears(&model) {
        if let Some(ad) = adapter_of(lin) {
            let [i, o] = lin.weight.base().dims();
            let entry = by_module
                .entry(module.hf.clone())
                .or_insert((Vec::new(), module.groups));
            entry.0.push(LoadPart {
                a: ad.a.id,
                b: ad.b.id,
                magnitude: ad.magnitude.map(|m| m.id),
                i,
                o,
                r: ad.a.val().dims()[1],
            });
        }
    }
    for (hf, (parts, groups)) in &by_module {
        let (ka, kb) = (key(hf, "A"), key(hf, "B"));
        let (Some((sa, a)), Some((sb, mut b))) = (tensors.remove(&ka), tensors.remove(&kb)) else {
            return Err(FinetuneError::Adapter {
                path: weights_path.to_path_buf(),
                message: format!("missing tensors `{ka}` / `{kb}`"),
            });
        };
        let (i, r) = (parts[0].i, parts[0].r);
        let outs: Vec<usize> = parts.iter().map(|p| p.o).collect();
        let total_out: usize = outs.iter().sum();
        if sa.len() != 2 || sa[1] != i {
            return Err(shape_err(&ka, vec![r, i], &sa));
        }
        let big = sa[0];
        if sb != [total_out, big] {
            return Err(shape_err(&kb, vec![total_out, big], &sb));
        }
        if *groups > 1 {
            // Interleaved fused rows (GPT-NeoX) laid part after part, as B is split below.
            b = reorder_fused_rows(&b, big, &outs, *groups, false);
        }
        // A shared by every part (each of rank R), or stacked per part with B
        // block-diagonal (ranks summing to R).
        let shared = parts.iter().all(|p| p.r == big);
        let ranks: Vec<usize> = parts.iter().map(|p| p.r).collect();
        if !shared && ranks.iter().sum::<usize>() != big {
            return Err(shape_err(&ka, vec![r, i], &sa));
        }
        if !shared && !block_diagonal(&b, &outs, &ranks) {
            return Err(FinetuneError::Adapter {
                path: weights_path.to_path_buf(),
                message: format!(
                    "tensor `{kb}`: rank {big} on a fused module is read only when block-diagonal"
                ),
            });
        }
        let magnitude = match parts[0].magnitude {
            None => None,
            Some(_) => {
                let km = key(hf, "magnitude");
                let Some((sm, m)) = tensors.remove(&km) else {
                    return Err(FinetuneError::Adapter {
                        path: weights_path.to_path_buf(),
                        message: format!("missing tensor `{km}` of this DoRA adapter"),
                    });
                };
                if sm.iter().product::<usize>() != total_out {
                    return Err(shape_err(&km, vec![total_out], &sm));
                }
                Some(match *groups > 1 {
                    true => reorder_fused_rows(&m, 1, &outs, *groups, false),
                    false => m,
                })
            }
        };
        let (mut row0, mut col0) = (0, 0);
        for p in parts {
            let cols = if shared { 0..big } else { col0..col0 + p.r };
            // burn a: [in, r] = A[cols]ᵀ
            let mut at = vec![0f32; i * p.r];
            for (c, rr) in cols.clone().enumerate() {
                for x in 0..i {
                    at[x * p.r + c] = a[rr * i + x];
                }
            }
            // burn b: [r, out_k] = B[row0..row0+o, cols]ᵀ
            let mut bt = vec![0f32; p.r * p.o];
            for (c, col) in cols.enumerate() {
                for y in 0..p.o {
                    bt[c * p.o + y] = b[(row0 + y) * big + col];
                }
            }
            values.insert(p.a, TensorData::new(at, [i, p.r]));
            values.insert(p.b, TensorData::new(bt, [p.r, p.o]));
            if let (Some(id), Some(m)) = (p.magnitude, &magnitude) {
                values.insert(id, TensorData::new(m[row0..row0 + p.o].to_vec(), [p.o]));
            }
            row0 += p.o;
            col0 += p.r;
        }
    }
    if !tensors.is_empty() {
        let names: Vec<String> = tensors.into_keys().collect();
        return Err(FinetuneError::Adapter {
            path: weights_path.to_path_buf(),
            message: format!(
                "tensors for modules this base does not have or that target_modules does not list: {}",
                names.join(", ")
            ),
        });
    }
    Ok(model.map(&mut SetById(values)))
}
