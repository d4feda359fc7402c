//! Hugging Face checkpoints in: `config.json` + `model.safetensors` (or a sharded
//! `model.safetensors.index.json`), read through burn-store. One name table per family.
//!
//! Layouts: GPT-2 stores `Conv1D` weights as `[in, out]` (burn's `Linear` layout) with
//! Q, K and V fused in `c_attn`; the RoPE decoders store `nn.Linear` weights as
//! `[out, in]`, which are transposed, some with fused modules (Phi-3's `qkv_proj` and
//! `gate_up_proj`, GPT-NeoX's per-head `query_key_value`), split by the name table. Pickle files are never read. The BERT and T5 tables are in `hf_bert.rs` and
//! `hf_t5.rs`; they share [`Weights`] from here.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};

use burn::module::{Module, ModuleMapper, Param, ParamId};
use burn::nn::Linear;
use burn::prelude::*;
use burn::tensor::{DType, TensorData};

use crate::config::{Family, ModelConfig};
use crate::decoder::{DecoderLm, Norm};
use crate::error::{ModelError, Result};
use crate::hf_names::HfLayout;

/// Tensors of a checkpoint by name, tracking which were used.
pub(crate) struct Weights {
    path: PathBuf,
    tensors: BTreeMap<String, TensorData>,
    used: BTreeSet<String>,
    missing: Vec<String>,
    /// Prepended to every name asked for (`transformer.`, `model.`, `bert.`).
    pub(crate) prefix: String,
    device: Device,
}

/// Reads every tensor of the safetensors `file` into `tensors` as `f32`, through a
/// memory map: each tensor is copied (converted) out of the map, and its pages are then
/// given back, so the process holds the checkpoint's bytes about once, not the file's
/// and the tensors' both (the peak of loading a 2 GB model fell from 2× to about 1× its
/// bytes).
fn read_safetensors(file: &Path, tensors: &mut BTreeMap<String, TensorData>) -> Result<()> {
    use safetensors::Dtype as St;
    let handle = std::fs::File::open(file).map_err(|e| file_err(file, e))?;
    // SAFETY: the map is read-only and private, and only read through `st`'s slices
    // while `map` lives. A file truncated by another program while it is read faults
    // (SIGBUS), as reading any mapped file would; manabi itself never writes a
    // checkpoint in place (its writes are atomic renames).
    #[allow(unsafe_code)]
    let map = unsafe { memmap2::Mmap::map(&handle) }.map_err(|e| file_err(file, e))?;
    let st = safetensors::SafeTensors::deserialize(&map).map_err(|e| file_err(file, e))?;
    let base = map.as_ptr() as usize;
    for (name, view) in st.iter() {
        let dtype = match view.dtype() {
            St::F64 => DType::F64,
            St::F32 => DType::F32,
            St::F16 => DType::F16,
            St::BF16 => DType::BF16,
            St::I64 => DType::I64,
            St::I32 => DType::I32,
            St::I16 => DType::I16,
            St::I8 => DType::I8,
            St::U8 => DType::U8,
            St::BOOL => DType::Bool(burn::tensor::BoolStore::Native),
            other => {
                return Err(ModelError::File {
                    path: file.to_path_buf(),
                    message: format!(
                        "tensor `{name}` has dtype {other:?}, which manabi does not read"
                    ),
                });
            }
        };
        let bytes = view.data();
        let data = TensorData::from_bytes_vec(bytes.to_vec(), view.shape().to_vec(), dtype)
            .convert::<f32>();
        tensors.insert(name.to_string(), data);
        // The copy is made: the mapped pages of this tensor can go (page-aligned inside).
        let (start, end) = (
            bytes.as_ptr() as usize - base,
            bytes.as_ptr() as usize - base + bytes.len(),
        );
        // 4 KiB pages (a larger page size makes the advice fail, which only keeps the pages).
        let page = 4096;
        let (from, to) = (start.next_multiple_of(page), end / page * page);
        if to > from {
            // SAFETY: DONTNEED on a private read-only file map drops pages that are read
            // again from the file if touched; nothing here touches them again.
            #[allow(unsafe_code)]
            let _ = unsafe {
                map.unchecked_advise_range(memmap2::UncheckedAdvice::DontNeed, from, to - from)
            };
        }
    }
    Ok(())
}

impl Weights {
    pub(crate) fn read(dir: &Path, device: &Device) -> Result<Self> {
        let single = dir.join("model.safetensors");
        let index = dir.join("model.safetensors.index.json");
        let (path, files) = if single.exists() {
            (single.clone(), vec![single])
        } else if index.exists() {
            let text = std::fs::read_to_string(&index).map_err(|e| file_err(&index, e))?;
            let v: serde_json::Value =
                serde_json::from_str(&text).map_err(|e| file_err(&index, e))?;
            let map = v
                .get("weight_map")
                .and_then(|m| m.as_object())
                .ok_or_else(|| ModelError::File {
                    path: index.clone(),
                    message: "no `weight_map` object".into(),
                })?;
            let files: BTreeSet<PathBuf> = map
                .values()
                .filter_map(|f| f.as_str())
                .map(|f| dir.join(f))
                .collect();
            (index.clone(), files.into_iter().collect())
        } else {
            let pickle = ["pytorch_model.bin", "model.pt"]
                .iter()
                .any(|f| dir.join(f).exists());
            let hint = if pickle {
                " (pickle checkpoints are not loaded: convert to safetensors)"
            } else {
                ""
            };
            return Err(ModelError::File {
                path: single,
                message: format!("not found, nor model.safetensors.index.json{hint}"),
            });
        };
        let mut tensors = BTreeMap::new();
        for file in &files {
            if !file.exists() {
                return Err(ModelError::File {
                    path: file.clone(),
                    message: "not found".into(),
                });
            }
            read_safetensors(file, &mut tensors)?;
        }
        Ok(Self {
            path,
            tensors,
            used: BTreeSet::new(),
            missing: Vec::new(),
            prefix: String::new(),
            device: device.clone(),
        })
    }

    /// Refuses a `config.json` that describes a model far larger than the weights hold
    /// (a typo such as `"n_layer": 65535`), before any memory is allocated for it.
    pub(crate) fn check_fits(&self, cfg: &ModelConfig) -> Result<()> {
        let held: f64 = self
            .tensors
            .values()
            .map(|t| t.shape().iter().product::<usize>() as f64)
            .sum();
        let described = cfg.approx_params();
        if described > 4.0 * held + 1e6 {
            return Err(ModelError::File {
                path: self.path.clone(),
                message: format!(
                    "config.json describes a model of about {described:.3e} parameters but the \
                     weights hold {held:.3e}: the config does not belong to these weights"
                ),
            });
        }
        Ok(())
    }

    /// Whether the checkpoint holds `name` (taken already or not).
    pub(crate) fn has(&self, name: &str) -> bool {
        let full = format!("{}{name}", self.prefix);
        self.tensors.contains_key(&full) || self.used.contains(&full)
    }

    /// The tensor `name` with `shape`; a missing one is recorded and replaced by zeros.
    pub(crate) fn take<const D: usize>(
        &mut self,
        name: &str,
        shape: [usize; D],
    ) -> Result<Tensor<D>> {
        let full = format!("{}{name}", self.prefix);
        if self.used.contains(&full) {
            return Err(ModelError::File {
                path: self.path.clone(),
                message: format!("tensor `{full}` is read twice (a loader bug)"),
            });
        }
        // Moved out, not copied: the checkpoint's bytes are freed as the model fills.
        let Some(data) = self.tensors.remove(&full) else {
            self.missing.push(full);
            return Ok(Tensor::zeros(shape, &self.device));
        };
        if data.shape().as_slice() != shape {
            return Err(ModelError::Shape {
                path: self.path.clone(),
                name: full,
                expected: shape.to_vec(),
                found: data.shape().to_vec(),
            });
        }
        self.used.insert(full);
        Ok(Tensor::from_data(data, &self.device))
    }

    /// Marks the tensors whose full name satisfies `unused` as deliberately not read, so
    /// that [`Weights::finish`] does not report them.
    pub(crate) fn ignore(&mut self, unused: impl Fn(&str) -> bool) {
        let names: Vec<String> = self.tensors.keys().filter(|k| unused(k)).cloned().collect();
        self.used.extend(names);
    }

    /// Whether the tensors `a` and `b` (full names) are both present and equal.
    pub(crate) fn same(&self, a: &str, b: &str) -> bool {
        match (self.tensors.get(a), self.tensors.get(b)) {
            (Some(x), Some(y)) => x.shape() == y.shape() && x.as_bytes() == y.as_bytes(),
            _ => false,
        }
    }

    pub(crate) fn finish(self) -> Result<()> {
        let unexpected: Vec<String> = self
            .tensors
            .keys()
            .filter(|k| {
                !self.used.contains(*k)
                    && !k.ends_with(".attn.bias")
                    && !k.ends_with(".attn.masked_bias")
                    && !k.ends_with(".attention.bias")
                    && !k.ends_with(".attention.masked_bias")
                    && !k.ends_with("rotary_emb.inv_freq")
            })
            .cloned()
            .collect();
        if self.missing.is_empty() && unexpected.is_empty() {
            return Ok(());
        }
        Err(ModelError::Tensors {
            path: self.path,
            missing: self.missing,
            unexpected,
        })
    }
}

pub(crate) fn file_err(path: &Path, e: impl std::fmt::Display) -> ModelError {
    ModelError::File {
        path: path.to_path_buf(),
        message: e.to_string(),
    }
}

pub(crate) fn param<const D: usize>(t: Tensor<D>) -> Param<Tensor<D>> {
    Param::from_tensor(t)
}

fn set_norm(norm: &mut Norm, w: &mut Weights, name: &str, d: usize) -> Result<()> {
    match norm {
        Norm::Layer(n) => {
            n.gamma = param(w.take(&format!("{name}.weight"), [d])?);
            n.beta = Some(param(w.take(&format!("{name}.bias"), [d])?));
        }
        Norm::Rms(n) => n.gamma = param(w.take(&format!("{name}.weight"), [d])?),
    }
    Ok(())
}

/// A PyTorch `nn.Linear` (`[out, in]`) into a burn `Linear` (`[in, out]`).
pub(crate) fn set_linear_t(
    lin: &mut Linear,
    w: &mut Weights,
    name: &str,
    bias: bool,
) -> Result<()> {
    let [i, o] = lin.weight.dims();
    lin.weight = param(w.take::<2>(&format!("{name}.weight"), [o, i])?.transpose());
    if bias {
        lin.bias = Some(param(w.take(&format!("{name}.bias"), [o])?));
    }
    Ok(())
}

/// Reads `dir/config.json`; errors name the file.
pub(crate) fn read_config(dir: &Path) -> Result<ModelConfig> {
    let cfg_path = dir.join("config.json");
    let text = std::fs::read_to_string(&cfg_path).map_err(|e| file_err(&cfg_path, e))?;
    ModelConfig::from_hf_json(&text).map_err(|e| match e {
        ModelError::Config { key, message } => ModelError::Config {
            key: format!("{}: {key}", cfg_path.display()),
            message,
        },
        other => other,
    })
}

/// Loads an HF model directory of a decoder-only model: its config and weights.
pub fn load_hf(dir: impl AsRef<Path>, device: &Device) -> Result<DecoderLm> {
    let dir = dir.as_ref();
    let cfg = read_config(dir)?;
    let mut w = Weights::read(dir, device)?;
    w.check_fits(&cfg)?;
    // Every parameter is read from the checkpoint next: no random draws.
    let mut model = crate::init::skeleton(|| DecoderLm::new(&cfg, device));
    match cfg.family {
        Family::Gpt2 | Family::Llama => load_decoder(&mut model, &cfg, &mut w)?,
        Family::Bert | Family::T5 => return Err(ModelError::not_a_decoder(&cfg, dir)),
    }
    w.finish()?;
    Ok(model)
}

/// Reads a decoder body's tensors (GPT-2 or LLaMA names) into `m`.
pub(crate) fn load_decoder_weights(
    m: &mut DecoderLm,
    cfg: &ModelConfig,
    w: &mut Weights,
) -> Result<()> {
    match cfg.family {
        Family::Gpt2 | Family::Llama => load_decoder(m, cfg, w),
        Family::Bert | Family::T5 => Err(ModelError::Input(format!(
            "`{}` is not a decoder-only model",
            cfg.family
        ))),
    }
}

/// A decoder (GPT-2, and the RoPE decoders: LLaMA, Mistral, Qwen, Phi-3, GPT-NeoX,
/// Gemma, …) by its family's names ([`crate::hf_names::decoder_names`]).
fn load_decoder(m: &mut DecoderLm, cfg: &ModelConfig, w: &mut Weights) -> Result<()> {
    let names = crate::hf_names::decoder_names(cfg);
    if w.has(&format!("{}.{}.weight", names.root, names.embed)) {
        w.prefix = format!("{}.", names.root);
    }
    let (d, v) = (cfg.d_model, cfg.vocab_size);
    m.embed_tokens.weight = param(w.take(&format!("{}.weight", names.embed), [v, d])?);
    if let Some(pe) = &mut m.embed_positions {
        let name = format!("{}.weight", names.positions);
        pe.weight = param(w.take(&name, [cfg.max_positions, d])?);
    }
    for (i, block) in m.layers.iter_mut().enumerate() {
        let p = format!("{}.{i}", names.layers);
        if let Some(n) = &mut block.attn_norm {
            set_norm(n, w, &format!("{p}.{}", names.attn_norm), d)?;
        }
        if let Some(n) = &mut block.mlp_norm {
            set_norm(n, w, &format!("{p}.{}", names.mlp_norm), d)?;
        }
        let (post_attn, post_mlp) = names.post_norms;
        if let Some(n) = &mut block.post_attn_norm {
            set_norm(n, w, &format!("{p}.{post_attn}"), d)?;
        }
        if let Some(n) = &mut block.post_mlp_norm {
            set_norm(n, w, &format!("{p}.{post_mlp}"), d)?;
        }
        // Qwen3's per-head norms of queries and keys (`qk_norm`); OLMo 2's over all
        // heads (`qk_norm_whole`); StableLM's, one tensor per head, concatenated.
        for (key, n) in [
            (false, &mut block.attn.q_norm),
            (true, &mut block.attn.k_norm),
        ] {
            if let Some(n) = n {
                let tensors = crate::hf_names::qk_norm_tensors(cfg, &p, key);
                let width = n.gamma.dims()[0] / tensors.len();
                let parts = tensors
                    .iter()
                    .map(|name| w.take(name, [width]))
                    .collect::<Result<Vec<Tensor<1>>>>()?;
                n.gamma = param(Tensor::cat(parts, 0));
            }
        }
    }
    set_norm(&mut m.final_norm, w, names.final_norm, d)?;
    if names.unit_offset_norms {
        // Gemma stores RMSNorm weights `w` of a `1 + w` scale.
        offset_norms(m, 1.0);
    }
    load_linears(m, w)?;
    load_head(m, cfg, w)
}

/// Adds `delta` to every RMSNorm weight of a decoder (final, block, post and q/k norms):
/// Gemma's `1 + w` convention.
pub(crate) fn offset_norms(m: &mut DecoderLm, delta: f32) {
    let shift = |n: &mut burn::nn::RmsNorm| {
        // Detached: on a training (autodiff) device the sum would otherwise stay a node of
        // a graph that the first backward pass consumes, failing the second one.
        n.gamma = n.gamma.clone().map(|g| {
            let grad = g.is_require_grad();
            (g + delta).detach().set_require_grad(grad)
        });
    };
    let norm = |n: &mut Norm| {
        if let Norm::Rms(r) = n {
            shift(r);
        }
    };
    for b in &mut m.layers {
        b.attn_norm.iter_mut().for_each(norm);
        b.mlp_norm.iter_mut().for_each(norm);
        b.post_attn_norm.iter_mut().for_each(norm);
        b.post_mlp_norm.iter_mut().for_each(norm);
        b.attn.q_norm.iter_mut().for_each(shift);
        b.attn.k_norm.iter_mut().for_each(shift);
    }
    norm(&mut m.final_norm);
}

/// Every `Linear` of a decoder's blocks from the checkpoint, through the name table
/// ([`crate::hf_names::decoder_linears`], the one export uses too): a fused module (GPT-2's
/// `c_attn` = Q | K | V) read once and split along its output, `nn.Linear` weights
/// transposed from `[out, in]`, `Conv1D` weights taken as they are; biases where the
/// `Linear` has one. Names are relative to the family's prefix, as `w` reads them.
fn load_linears(m: &mut DecoderLm, w: &mut Weights) -> Result<()> {
    let mut values: HashMap<ParamId, TensorData> = HashMap::new();
    let root = format!("{}.", crate::hf_names::decoder_names(m.config()).root);
    let table = crate::hf_names::decoder_linears(m);
    let mut i = 0;
    while i < table.len() {
        let module = &table[i].0;
        let n = module.part.map_or(1, |(_, n)| n);
        let parts = &table[i..i + n];
        i += n;
        if module.path == "lm_head" {
            continue; // read by `load_head`, outside the prefix
        }
        let name = module.hf.strip_prefix(&root).unwrap_or(&module.hf);
        let d_in = parts[0].1.weight.dims()[0];
        let outs: Vec<usize> = parts.iter().map(|(_, l)| l.weight.dims()[1]).collect();
        let total: usize = outs.iter().sum();
        let weight = match module.layout {
            HfLayout::Conv1d => w.take::<2>(&format!("{name}.weight"), [d_in, total])?,
            HfLayout::Linear => w
                .take::<2>(&format!("{name}.weight"), [total, d_in])?
                .transpose(),
        };
        let mut bias = match parts.iter().any(|(_, l)| l.bias.is_some()) {
            true => Some(w.take::<1>(&format!("{name}.bias"), [total])?),
            false => None,
        };
        let mut weight = weight;
        if module.groups > 1 {
            // Interleaved parts (GPT-NeoX: per head q | k | v) laid one after the other.
            let inv = crate::hf_names::unfuse_order(&outs, module.groups);
            let idx = Tensor::<1, Int>::from_ints(
                inv.iter().map(|&i| i as i64).collect::<Vec<_>>().as_slice(),
                &weight.device(),
            );
            weight = weight.select(1, idx.clone());
            bias = bias.map(|b| b.select(0, idx));
        }
        let mut start = 0;
        for ((_, lin), &o) in parts.iter().zip(&outs) {
            let slice = weight.clone().slice([0..d_in, start..start + o]);
            values.insert(lin.weight.id, slice.into_data());
            if let (Some(b), Some(lb)) = (&bias, &lin.bias) {
                values.insert(lb.id, b.clone().narrow(0, start, o).into_data());
            }
            start += o;
        }
    }
    *m = m.clone().map(&mut SetParams(values));
    Ok(())
}

/// Sets parameters by id to given values (ids and gradient settings kept).
struct SetParams(HashMap<ParamId, TensorData>);

impl ModuleMapper for SetParams {
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

fn load_head(m: &mut DecoderLm, cfg: &ModelConfig, w: &mut Weights) -> Result<()> {
    let prefix = std::mem::take(&mut w.prefix);
    let head_name = crate::hf_names::decoder_names(cfg).head;
    if let Some(head) = &mut m.lm_head {
        set_linear_t(head, w, head_name, false)?;
    } else if w.has(&format!("{head_name}.weight")) {
        // Tied checkpoints may still store the head: it must equal the embedding.
        w.take::<2>(
            &format!("{head_name}.weight"),
            [cfg.vocab_size, cfg.d_model],
        )?;
    }
    w.prefix = prefix;
    Ok(())
}
