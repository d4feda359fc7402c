//! Model folders on disk.
//!
//! - **Hugging Face layout** (`config.json` + `model.safetensors`): read by [`crate::load_hf`],
//!   written by [`export_hf`] so `transformers` `AutoModelForCausalLM.from_pretrained` loads it.
//!   BERT and T5 are written by [`crate::export_bert_hf`] and [`crate::export_t5_hf`]
//!   (`hf_bert.rs`, `hf_t5.rs`) through the same `write_hf`.
//! - **manabi layout** (`model.toml` + `model.bpk`, burn's burnpack format through burn-store,
//!   which keeps parameter ids so optimizer state re-attaches on resume): what the trainer
//!   saves; [`save_native`] / [`load_native`].
//!
//! [`load_model`] tells them apart, so every `--model` takes either. A `tokenizer.json`
//! beside the weights travels with them.

use std::path::Path;

use burn::module::Module;
use burn::prelude::*;
use burn::store::{BurnpackStore, ModuleSnapshot};
use safetensors::tensor::{Dtype, TensorView};

use crate::config::{Family, ModelConfig};
use crate::decoder::{DecoderLm, Norm};
use crate::error::{ModelError, Result};

fn file_err(path: &Path, e: impl std::fmt::Display) -> ModelError {
    ModelError::File {
        path: path.to_path_buf(),
        message: e.to_string(),
    }
}

/// Loads a decoder from a model folder in either layout, or a run folder's newest
/// checkpoint ([`crate::open::locate`]).
pub fn load_model(dir: impl AsRef<Path>, device: &Device) -> Result<DecoderLm> {
    let m = crate::open::locate(dir.as_ref())?;
    match m.layout {
        crate::open::Layout::Native => load_native(&m.dir, device),
        crate::open::Layout::HuggingFace => crate::hf::load_hf(&m.dir, device),
    }
}

/// Writes `model.toml` and `model.bpk` (burnpack, burn's names and parameter ids) into `dir`.
pub fn save_native(model: &DecoderLm, dir: impl AsRef<Path>) -> Result<()> {
    save_module(model, model.config(), dir.as_ref())
}

/// Reads a folder written by [`save_native`].
pub fn load_native(dir: impl AsRef<Path>, device: &Device) -> Result<DecoderLm> {
    let dir = dir.as_ref();
    load_module(dir, device, |cfg, device| {
        if matches!(cfg.family, Family::Bert | Family::T5) {
            return Err(ModelError::not_a_decoder(cfg, dir));
        }
        Ok(DecoderLm::new(cfg, device))
    })
}

/// Writes any model in the manabi layout: `cfg` as `model.toml`, the parameters as
/// `model.bpk` (burnpack keeps parameter ids, so optimizer state re-attaches on load).
pub fn save_module<M: Module>(model: &M, cfg: &ModelConfig, dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| file_err(dir, e))?;
    let text = toml::to_string_pretty(cfg).map_err(|e| file_err(dir, e))?;
    manabi_tokenize::write_atomic(&dir.join("model.toml"), text.as_bytes())?;
    let path = dir.join("model.bpk");
    let mut store = BurnpackStore::from_file(&path)
        .auto_extension(false)
        .overwrite(true);
    model.save_into(&mut store).map_err(|e| file_err(&path, e))
}

/// Reads a folder written by [`save_module`]: `build` makes the model from the config,
/// then every parameter must come from `model.bpk` (missing or extra ones are listed).
pub fn load_module<M: Module>(
    dir: &Path,
    device: &Device,
    build: impl FnOnce(&ModelConfig, &Device) -> Result<M>,
) -> Result<M> {
    let cfg_path = dir.join("model.toml");
    let cfg = crate::open::read_model_toml(dir)?;
    // A model.toml that describes a model far larger than model.bpk (≥ 2 bytes a
    // parameter) is refused before memory is allocated for it.
    let weights = dir.join("model.bpk");
    let bytes = std::fs::metadata(&weights)
        .map_err(|e| file_err(&weights, e))?
        .len() as f64;
    let described = cfg.approx_params();
    if described > 4.0 * bytes / 2.0 + 1e6 {
        return Err(ModelError::File {
            path: cfg_path,
            message: format!(
                "describes a model of about {described:.3e} parameters but model.bpk has \
                 {bytes:.3e} bytes: model.toml does not belong to these weights"
            ),
        });
    }
    let mut model = build(&cfg, device)?;
    load_weights(&mut model, &weights)?;
    Ok(model)
}

/// The float type of every parameter, in visiting order.
struct Dtypes(Vec<burn::tensor::DType>);

impl burn::module::ModuleVisitor for Dtypes {
    fn visit_float<const D: usize>(&mut self, param: &burn::module::Param<Tensor<D>>) {
        self.0.push(param.base().dtype());
    }
}

/// Each parameter cast back to the float type [`Dtypes`] recorded for it (same visiting
/// order), its gradient setting kept.
struct CastBack(std::vec::IntoIter<burn::tensor::DType>);

impl burn::module::ModuleMapper for CastBack {
    fn map_float<const D: usize>(
        &mut self,
        param: burn::module::Param<Tensor<D>>,
    ) -> burn::module::Param<Tensor<D>> {
        match self.0.next() {
            Some(want) if param.base().dtype() != want => param.map(|t| {
                let grad = t.is_require_grad();
                t.detach().cast(want).set_require_grad(grad)
            }),
            _ => param,
        }
    }
}

/// Loads every parameter of `model` from the burnpack file `path` (parameter ids
/// included); missing or extra tensors are listed by name.
pub fn load_weights<M: Module>(model: &mut M, path: &Path) -> Result<()> {
    if !path.exists() {
        return Err(file_err(path, "not found"));
    }
    let mut store = BurnpackStore::from_file(path)
        .auto_extension(false)
        .allow_partial(true);
    // The model decides each parameter's float type: a run that kept its frozen base in
    // bf16 stored it so, and a folder read into an f32 model is f32 again (a later stage
    // may train it), while resuming that run into its bf16 model keeps bf16.
    let mut dtypes = Dtypes(Vec::new());
    model.visit(&mut dtypes);
    let result = model.load_from(&mut store).map_err(|e| file_err(path, e))?;
    if let Some(err) = result.errors.first() {
        return Err(file_err(path, err));
    }
    if !result.missing.is_empty() || !result.unused.is_empty() {
        return Err(ModelError::Tensors {
            path: path.to_path_buf(),
            missing: result.missing.into_iter().map(|(p, _)| p).collect(),
            unexpected: result.unused,
        });
    }
    *model = model.clone().map(&mut CastBack(dtypes.0.into_iter()));
    Ok(())
}

/// One tensor for the safetensors writer: little-endian f32 bytes in row-major order.
pub(crate) struct Out {
    pub(crate) name: String,
    pub(crate) shape: Vec<usize>,
    pub(crate) bytes: Vec<u8>,
}

/// `t` under `name`, as f32.
pub(crate) fn out<const D: usize>(name: impl Into<String>, t: Tensor<D>) -> Result<Out> {
    let shape = t.dims().to_vec();
    let values: Vec<f32> = t
        .into_data()
        .convert::<f32>()
        .try_into_vec()
        .map_err(|e| ModelError::Input(e.to_string()))?;
    Ok(Out {
        name: name.into(),
        shape,
        bytes: values.iter().flat_map(|v| v.to_le_bytes()).collect(),
    })
}

fn norm(prefix: &str, n: &Norm, into: &mut Vec<Out>) -> Result<()> {
    match n {
        Norm::Layer(l) => {
            into.push(out(format!("{prefix}.weight"), l.gamma.val())?);
            if let Some(b) = &l.beta {
                into.push(out(format!("{prefix}.bias"), b.val())?);
            }
        }
        Norm::Rms(r) => into.push(out(format!("{prefix}.weight"), r.gamma.val())?),
    }
    Ok(())
}

/// A `Linear`'s bias, or zeros for a model built without biases: Hugging Face GPT-2
/// always has them, and zeros compute the same thing.
fn bias_or_zeros(l: &burn::nn::Linear) -> Tensor<1> {
    match &l.bias {
        Some(b) => b.val(),
        None => {
            let w = l.weight.val();
            Tensor::zeros([w.dims()[1]], &w.device())
        }
    }
}

/// Writes `config.json` + `model.safetensors` in the Hugging Face layout of the model's
/// family (plus `tokenizer.json`, and its `manabi-pretokenize.json` sidecar if it has one,
/// when `tokenizer` is given).
pub fn export_hf(model: &DecoderLm, dir: impl AsRef<Path>, tokenizer: Option<&Path>) -> Result<()> {
    export_hf_sharded(model, dir, tokenizer, DEFAULT_MAX_SHARD_BYTES)
}

/// Shard size above which an export is split (transformers' `save_pretrained` default
/// in 4.x, `"5GB"`).
pub const DEFAULT_MAX_SHARD_BYTES: u64 = 5_000_000_000;

/// [`export_hf`] with shards of at most `max_shard_bytes` (a tensor larger than that
/// gets a shard of its own): `model-00001-of-0000N.safetensors` and
/// `model.safetensors.index.json` when the weights do not fit in one.
pub fn export_hf_sharded(
    model: &DecoderLm,
    dir: impl AsRef<Path>,
    tokenizer: Option<&Path>,
    max_shard_bytes: u64,
) -> Result<()> {
    let dir = dir.as_ref();
    let t = decoder_hf_tensors(model, dir)?;
    write_hf_with(
        dir,
        &t,
        &model.config().to_hf_json(),
        tokenizer,
        max_shard_bytes,
    )
}

/// The tensors of a decoder under its Hugging Face names (`lm_head.weight` last, when
/// untied). `dir` only names the export in errors.
pub(crate) fn decoder_hf_tensors(model: &DecoderLm, dir: &Path) -> Result<Vec<Out>> {
    let cfg = model.config();
    // Never drop trained parameters silently: bottleneck adapters have no HF layout.
    // (LoRA factors need no check: `val()` reads each weight with its update merged.)
    if let Some(i) = model
        .layers
        .iter()
        .position(|b| b.attn_adapter.is_some() || b.mlp_adapter.is_some())
    {
        return Err(ModelError::Input(format!(
            "layers.{i} has bottleneck adapters, which a Hugging Face {} model cannot hold; \
             keep the manabi checkpoint (it loads with its adapters) or fine-tune with LoRA",
            cfg.family
        )));
    }
    if model.virtual_tokens() > 0 {
        return Err(ModelError::Input(format!(
            "the model has a soft prompt or a prefix ({} virtual tokens), which a Hugging Face {} model cannot hold; \
             export the adapter in the PEFT format (`--format peft`) and load it with PeftModel",
            model.virtual_tokens(),
            cfg.family
        )));
    }
    let mut t = Vec::new();
    match cfg.family {
        Family::Gpt2 | Family::Llama => {
            // A switch the `model_type` cannot hold is an error, not a silent drop.
            cfg.check_hf_layout()?;
            let n = crate::hf_names::decoder_names(cfg);
            let root = n.root;
            // Gemma stores RMSNorm weights as `w` of a `1 + w` scale (exact: γ − 1 has
            // no rounding for γ in [0.5, 2]).
            let shifted;
            let model = if n.unit_offset_norms {
                let mut m = model.clone();
                crate::hf::offset_norms(&mut m, -1.0);
                shifted = m;
                &shifted
            } else {
                model
            };
            t.push(out(
                format!("{root}.{}.weight", n.embed),
                model.embed_tokens.weight.val(),
            )?);
            if let Some(pe) = &model.embed_positions {
                t.push(out(
                    format!("{root}.{}.weight", n.positions),
                    pe.weight.val(),
                )?);
            }
            for (i, b) in model.layers.iter().enumerate() {
                let p = format!("{root}.{}.{i}", n.layers);
                if let Some(x) = &b.attn_norm {
                    norm(&format!("{p}.{}", n.attn_norm), x, &mut t)?;
                }
                if let Some(x) = &b.mlp_norm {
                    norm(&format!("{p}.{}", n.mlp_norm), x, &mut t)?;
                }
                let (post_attn, post_mlp) = n.post_norms;
                if let Some(x) = &b.post_attn_norm {
                    norm(&format!("{p}.{post_attn}"), x, &mut t)?;
                }
                if let Some(x) = &b.post_mlp_norm {
                    norm(&format!("{p}.{post_mlp}"), x, &mut t)?;
                }
                for (key, q) in [(false, &b.attn.q_norm), (true, &b.attn.k_norm)] {
                    if let Some(q) = q {
                        let names = crate::hf_names::qk_norm_tensors(cfg, &p, key);
                        let parts = q.gamma.val().chunk(names.len(), 0);
                        for (name, part) in names.into_iter().zip(parts) {
                            t.push(out(name, part)?);
                        }
                    }
                }
            }
            norm(
                &format!("{root}.{}", n.final_norm),
                &model.final_norm,
                &mut t,
            )?;
        }
        Family::Bert | Family::T5 => return Err(ModelError::not_a_decoder(cfg, dir)),
    }
    t.extend(linear_tensors(model)?);
    Ok(t)
}

/// Every `Linear` of `model` under its Hugging Face name, from the name table
/// ([`crate::hf_names::decoder_linears`]): the slices of a fused module (GPT-2's
/// `c_attn` = Q | K | V) concatenated along the output, `nn.Linear` weights transposed
/// to `[out, in]`, `Conv1D` weights kept `[in, out]` and their biases always written
/// (zeros for a model built without: Hugging Face GPT-2 has them).
fn linear_tensors(model: &DecoderLm) -> Result<Vec<Out>> {
    let table = crate::hf_names::decoder_linears(model);
    let mut t = Vec::new();
    let mut i = 0;
    while i < table.len() {
        let module = &table[i].0;
        let n = module.part.map_or(1, |(_, n)| n);
        let parts: Vec<&burn::nn::Linear> = table[i..i + n].iter().map(|(_, l)| *l).collect();
        let mut weight = Tensor::cat(parts.iter().map(|l| l.weight.val()).collect(), 1);
        // Interleaved fused modules (GPT-NeoX's per-head q | k | v) gather their rows.
        let order = (module.groups > 1).then(|| {
            let outs: Vec<usize> = parts.iter().map(|l| l.weight.dims()[1]).collect();
            let order = crate::hf_names::fuse_order(&outs, module.groups);
            let order: Vec<i64> = order.into_iter().map(|i| i as i64).collect();
            Tensor::<1, Int>::from_ints(order.as_slice(), &weight.device())
        });
        if let Some(idx) = &order {
            weight = weight.select(1, idx.clone());
        }
        let conv1d = module.layout == crate::hf_names::HfLayout::Conv1d;
        let weight = if conv1d { weight } else { weight.transpose() };
        t.push(out(format!("{}.weight", module.hf), weight)?);
        if conv1d || parts.iter().any(|l| l.bias.is_some()) {
            let biases = parts.iter().map(|l| bias_or_zeros(l)).collect();
            let mut bias = Tensor::cat(biases, 0);
            if let Some(idx) = order {
                bias = bias.select(0, idx);
            }
            t.push(out(format!("{}.bias", module.hf), bias)?);
        }
        i += n;
    }
    Ok(t)
}

/// Writes `tensors` as `model.safetensors` (f32, metadata `format: pt` as transformers
/// writes it), `config` as `config.json` with the tensors' type recorded (`dtype`, which
/// transformers ≥ 4.56 reads, and `torch_dtype` for older readers: `float32`), and
/// copies `tokenizer` to `tokenizer.json`. Each file is written atomically.
pub(crate) fn write_hf(
    dir: &Path,
    tensors: &[Out],
    config: &serde_json::Value,
    tokenizer: Option<&Path>,
) -> Result<()> {
    write_hf_with(dir, tensors, config, tokenizer, DEFAULT_MAX_SHARD_BYTES)
}

/// Tensors in order, cut into shards of at most `max` bytes of data each (a larger tensor
/// alone in its own).
fn shards(tensors: &[Out], max: u64) -> Vec<&[Out]> {
    let mut out = Vec::new();
    let (mut start, mut size) = (0, 0u64);
    for (i, t) in tensors.iter().enumerate() {
        let b = t.bytes.len() as u64;
        if i > start && size + b > max {
            out.push(&tensors[start..i]);
            (start, size) = (i, 0);
        }
        size += b;
    }
    if start < tensors.len() {
        out.push(&tensors[start..]);
    }
    out
}

/// One safetensors file of `tensors` (f32, metadata `format: pt`).
fn serialize(tensors: &[Out]) -> Result<Vec<u8>> {
    let views: Vec<(String, TensorView<'_>)> = tensors
        .iter()
        .map(|o| {
            TensorView::new(Dtype::F32, o.shape.clone(), &o.bytes)
                .map(|v| (o.name.clone(), v))
                .map_err(|e| ModelError::Input(e.to_string()))
        })
        .collect::<Result<_>>()?;
    let meta = std::collections::HashMap::from([("format".to_string(), "pt".to_string())]);
    safetensors::serialize(views, Some(meta)).map_err(|e| ModelError::Input(e.to_string()))
}

/// Writes the weights as one `model.safetensors`, or as shards with
/// `model.safetensors.index.json` (transformers' names and index layout) when they exceed
/// `max_shard_bytes`; weight files of an earlier export in the other layout are removed,
/// so a folder never holds both.
fn write_weights(dir: &Path, tensors: &[Out], max_shard_bytes: u64) -> Result<()> {
    let parts = shards(tensors, max_shard_bytes.max(1));
    let stale = |keep: &dyn Fn(&str) -> bool| -> Result<()> {
        for entry in std::fs::read_dir(dir).map_err(|e| file_err(dir, e))? {
            let path = entry.map_err(|e| file_err(dir, e))?.path();
            let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
            let weights = name == "model.safetensors"
                || name == "model.safetensors.index.json"
                || (name.starts_with("model-") && name.ends_with(".safetensors"));
            if weights && !keep(name) {
                std::fs::remove_file(&path).map_err(|e| file_err(&path, e))?;
            }
        }
        Ok(())
    };
    if parts.len() <= 1 {
        manabi_tokenize::write_atomic(&dir.join("model.safetensors"), &serialize(tensors)?)?;
        return stale(&|n| n == "model.safetensors");
    }
    let n = parts.len();
    let names: Vec<String> = (1..=n)
        .map(|i| format!("model-{i:05}-of-{n:05}.safetensors"))
        .collect();
    // The shards are written aside first, so a crash never leaves an index naming a mix
    // of old and new shards: the old index goes, the shards move in, the new index is
    // written (a reader in between finds no sharded layout, an error, not other weights),
    // and only then are stale files removed.
    let aside = dir.join(".shards.tmp");
    if aside.exists() {
        std::fs::remove_dir_all(&aside).map_err(|e| file_err(&aside, e))?;
    }
    let mut weight_map = serde_json::Map::new();
    for (part, file) in parts.iter().zip(&names) {
        manabi_tokenize::write_atomic(&aside.join(file), &serialize(part)?)?;
        for t in *part {
            weight_map.insert(t.name.clone(), file.clone().into());
        }
    }
    let total: usize = tensors.iter().map(|t| t.bytes.len()).sum();
    let index = serde_json::json!({
        "metadata": {"total_size": total},
        "weight_map": weight_map,
    });
    let text =
        serde_json::to_string_pretty(&index).map_err(|e| ModelError::Input(e.to_string()))?;
    let index_path = dir.join("model.safetensors.index.json");
    if index_path.exists() {
        std::fs::remove_file(&index_path).map_err(|e| file_err(&index_path, e))?;
    }
    for file in &names {
        std::fs::rename(aside.join(file), dir.join(file))
            .map_err(|e| file_err(&dir.join(file), e))?;
    }
    std::fs::remove_dir(&aside).map_err(|e| file_err(&aside, e))?;
    manabi_tokenize::write_atomic(&index_path, text.as_bytes())?;
    stale(&|name| name == "model.safetensors.index.json" || names.iter().any(|f| f == name))
}

/// [`write_hf`] with shards of at most `max_shard_bytes`.
pub(crate) fn write_hf_with(
    dir: &Path,
    tensors: &[Out],
    config: &serde_json::Value,
    tokenizer: Option<&Path>,
    max_shard_bytes: u64,
) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| file_err(dir, e))?;
    write_weights(dir, tensors, max_shard_bytes)?;
    let mut config = config.clone();
    if let Some(obj) = config.as_object_mut() {
        for key in ["dtype", "torch_dtype"] {
            obj.insert(key.into(), serde_json::Value::from("float32"));
        }
    }
    let json =
        serde_json::to_string_pretty(&config).map_err(|e| ModelError::Input(e.to_string()))?;
    manabi_tokenize::write_atomic(&dir.join("config.json"), json.as_bytes())?;
    if let Some(tok) = tokenizer {
        let (text, sidecar) = manabi_tokenize::tokenizer_files(tok)?;
        manabi_tokenize::write_atomic(&dir.join("tokenizer.json"), &text)?;
        // A morphological-splitting sidecar belongs with its tokenizer.json (one beside a
        // stored file is copied byte for byte: it records that file's hash).
        let out = dir.join(manabi_tokenize::sidecar::SIDECAR_FILE);
        match sidecar {
            Some(bytes) => manabi_tokenize::write_atomic(&out, &bytes)?,
            None => {
                if out.exists() {
                    std::fs::remove_file(&out).map_err(|e| file_err(&out, e))?;
                }
            }
        }
    }
    Ok(())
}
