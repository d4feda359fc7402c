//! The name tables of the decoder families: every `Linear` of a [`DecoderLm`] with the
//! Hugging Face module it is (or is part of), and the names of its embeddings and norms,
//! per `model_type` — candle's habit of naming by table rather than by code. Import,
//! export and PEFT adapter keys (`base_model.model.<hf>.lora_A.weight`) all derive from
//! it; a new family is a new row here, not a new model.

use burn::nn::Linear;

use crate::config::{Activation, Family, ModelConfig};
use crate::decoder::{Block, DecoderLm};

/// How a Hugging Face module stores its weight.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HfLayout {
    /// PyTorch `nn.Linear`: `[out, in]` (LLaMA).
    Linear,
    /// GPT-2's `Conv1D`: `[in, out]`, burn's own layout.
    Conv1d,
}

/// One `Linear` of a manabi model and the Hugging Face module it maps to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HfModule {
    /// manabi module path, e.g. `layers.0.attn.q_proj`.
    pub path: String,
    /// Full Hugging Face module name, e.g. `transformer.h.0.attn.c_attn`.
    pub hf: String,
    /// `Some((k, n))` when this `Linear` is the k-th of n parts of a fused HF module,
    /// along its output (GPT-2's `c_attn` = Q | K | V, Phi-3's `qkv_proj`).
    pub part: Option<(usize, usize)>,
    /// How the parts of a fused module interleave along its output: 1 = one after the
    /// other; g > 1 = in g groups, each holding its share of every part in turn
    /// (GPT-NeoX's `query_key_value`: per head, q | k | v).
    pub groups: usize,
    /// The HF weight layout.
    pub layout: HfLayout,
}

impl HfModule {
    /// The last component of the HF name (`c_attn`, `q_proj`): what PEFT's
    /// `target_modules` names.
    pub fn short(&self) -> &str {
        self.hf.rsplit('.').next().unwrap_or(&self.hf)
    }
}

/// For a fused module whose parts have output widths `outs`, interleaved in `groups`
/// groups: the row of the parts laid one after the other that each row of the fused
/// output holds. Identity when `groups` is 1. Gather a concatenation with it to get the
/// fused layout; scatter (its inverse, [`unfuse_order`]) to get the parts back.
pub fn fuse_order(outs: &[usize], groups: usize) -> Vec<usize> {
    let total: usize = outs.iter().sum();
    if groups <= 1 {
        return (0..total).collect();
    }
    let mut order = Vec::with_capacity(total);
    for g in 0..groups {
        let mut start = 0;
        for &o in outs {
            let per = o / groups;
            order.extend(start + g * per..start + (g + 1) * per);
            start += o;
        }
    }
    order
}

/// The inverse of [`fuse_order`]: for each row of the concatenated parts, the fused row
/// that holds it.
pub fn unfuse_order(outs: &[usize], groups: usize) -> Vec<usize> {
    let order = fuse_order(outs, groups);
    let mut inv = vec![0; order.len()];
    for (fused, &concat) in order.iter().enumerate() {
        inv[concat] = fused;
    }
    inv
}

/// The Hugging Face names of a decoder's non-`Linear` tensors, by `model_type`.
#[derive(Debug, Clone, Copy)]
pub struct DecoderNames {
    /// Prefix of the body (`transformer`, `model`, `gpt_neox`).
    pub root: &'static str,
    /// The blocks under the root (`h`, `layers`).
    pub layers: &'static str,
    /// Token embedding under the root (`wte`, `embed_tokens`, `embed_in`).
    pub embed: &'static str,
    /// Learned position table under the root (`wpe`; models with learned positions).
    pub positions: &'static str,
    /// Norm before attention, in a block (`ln_1`, `input_layernorm`).
    pub attn_norm: &'static str,
    /// Norm before the MLP, in a block (`ln_2`, `post_attention_layernorm`).
    pub mlp_norm: &'static str,
    /// Norms of the attention and MLP outputs, in a block (Gemma's
    /// `post_attention_layernorm`, `post_feedforward_layernorm`; `post_norms` only).
    pub post_norms: (&'static str, &'static str),
    /// Whether RMSNorm weights are stored as `w` for a `1 + w` scale (Gemma): import
    /// adds 1, export subtracts it.
    pub unit_offset_norms: bool,
    /// The attention module, in a block (`attn`, `self_attn`, `attention`).
    pub attn: &'static str,
    /// The query and key norms, in the attention module (`q_norm`, `k_norm`; StableLM's
    /// `q_layernorm`, `k_layernorm`).
    pub qk_norms: (&'static str, &'static str),
    /// Final norm under the root (`ln_f`, `norm`, `final_layer_norm`).
    pub final_norm: &'static str,
    /// The untied output projection, at top level (`lm_head`, `embed_out`).
    pub head: &'static str,
}

/// The names of `cfg`'s Hugging Face layout.
pub fn decoder_names(cfg: &ModelConfig) -> DecoderNames {
    let llama = DecoderNames {
        root: "model",
        layers: "layers",
        embed: "embed_tokens",
        positions: "embed_positions",
        attn_norm: "input_layernorm",
        mlp_norm: "post_attention_layernorm",
        post_norms: ("", ""),
        unit_offset_norms: false,
        attn: "self_attn",
        qk_norms: ("q_norm", "k_norm"),
        final_norm: "norm",
        head: "lm_head",
    };
    match (cfg.family, cfg.hf_model_type.as_deref()) {
        (Family::Gpt2, _) => DecoderNames {
            root: "transformer",
            layers: "h",
            embed: "wte",
            positions: "wpe",
            attn_norm: "ln_1",
            mlp_norm: "ln_2",
            post_norms: ("", ""),
            unit_offset_norms: false,
            attn: "attn",
            qk_norms: ("q_norm", "k_norm"),
            final_norm: "ln_f",
            head: "lm_head",
        },
        (_, Some("gpt_neox")) => DecoderNames {
            root: "gpt_neox",
            embed: "embed_in",
            attn: "attention",
            final_norm: "final_layer_norm",
            head: "embed_out",
            ..llama
        },
        (_, Some("stablelm")) => DecoderNames {
            qk_norms: ("q_layernorm", "k_layernorm"),
            ..llama
        },
        (_, Some("olmo2")) => DecoderNames {
            post_norms: ("post_attention_layernorm", "post_feedforward_layernorm"),
            ..llama
        },
        (_, Some("gemma2" | "gemma3_text")) => DecoderNames {
            mlp_norm: "pre_feedforward_layernorm",
            post_norms: ("post_attention_layernorm", "post_feedforward_layernorm"),
            unit_offset_norms: true,
            ..llama
        },
        _ => llama,
    }
}

/// The Hugging Face tensors of a block's query norm (`key` false) or key norm (`key`
/// true), `block` being the block's name (`model.layers.0`): one
/// `….self_attn.q_norm.weight`, or with `qk_norm_heads` one per head in head order
/// (`….self_attn.q_layernorm.norms.{h}.weight`).
pub fn qk_norm_tensors(cfg: &ModelConfig, block: &str, key: bool) -> Vec<String> {
    let n = decoder_names(cfg);
    let (name, heads) = if key {
        (n.qk_norms.1, cfg.kv_heads())
    } else {
        (n.qk_norms.0, cfg.n_heads)
    };
    if cfg.qk_norm_heads {
        (0..heads)
            .map(|h| format!("{block}.{}.{name}.norms.{h}.weight", n.attn))
            .collect()
    } else {
        vec![format!("{block}.{}.{name}.weight", n.attn)]
    }
}

/// A block's Hugging Face modules for `cfg`: each module's name (relative to the block),
/// the manabi `Linear`s it holds (paths relative to the block, in fused order), and how
/// a fused module's parts interleave ([`HfModule::groups`]). The one table import,
/// export, PEFT and `plan` read.
pub fn block_modules(cfg: &ModelConfig) -> Vec<(&'static str, Vec<&'static str>, usize)> {
    let qkv = || vec!["attn.q_proj", "attn.k_proj", "attn.v_proj"];
    let gated = matches!(cfg.activation, Activation::Swiglu | Activation::GegluTanh);
    match (cfg.family, cfg.hf_model_type.as_deref()) {
        (Family::Gpt2, _) => vec![
            ("attn.c_attn", qkv(), 1),
            ("attn.c_proj", vec!["attn.o_proj"], 1),
            ("mlp.c_fc", vec!["mlp.up_proj"], 1),
            ("mlp.c_proj", vec!["mlp.down_proj"], 1),
        ],
        (_, Some("gpt_neox")) => vec![
            ("attention.query_key_value", qkv(), cfg.n_heads),
            ("attention.dense", vec!["attn.o_proj"], 1),
            ("mlp.dense_h_to_4h", vec!["mlp.up_proj"], 1),
            ("mlp.dense_4h_to_h", vec!["mlp.down_proj"], 1),
        ],
        // Phi-3's `gate_up_proj` is gate | up (`chunk(2)` in that order).
        (_, Some("phi3")) => vec![
            ("self_attn.qkv_proj", qkv(), 1),
            ("self_attn.o_proj", vec!["attn.o_proj"], 1),
            ("mlp.gate_up_proj", vec!["mlp.gate_proj", "mlp.up_proj"], 1),
            ("mlp.down_proj", vec!["mlp.down_proj"], 1),
        ],
        _ => {
            let mut t = vec![
                ("self_attn.q_proj", vec!["attn.q_proj"], 1),
                ("self_attn.k_proj", vec!["attn.k_proj"], 1),
                ("self_attn.v_proj", vec!["attn.v_proj"], 1),
                ("self_attn.o_proj", vec!["attn.o_proj"], 1),
            ];
            if gated {
                t.push(("mlp.gate_proj", vec!["mlp.gate_proj"], 1));
            }
            t.push(("mlp.up_proj", vec!["mlp.up_proj"], 1));
            t.push(("mlp.down_proj", vec!["mlp.down_proj"], 1));
            t
        }
    }
}

/// The input and output widths of the `Linear` at `path` (relative to a block) in a
/// block of `cfg`.
pub fn linear_shape(cfg: &ModelConfig, path: &str) -> (usize, usize) {
    let (d, ff) = (cfg.d_model, cfg.d_ff);
    let (q, kv) = (
        cfg.n_heads * cfg.head_dim(),
        cfg.kv_heads() * cfg.head_dim(),
    );
    match path {
        "attn.q_proj" => (d, q),
        "attn.k_proj" | "attn.v_proj" => (d, kv),
        "attn.o_proj" => (q, d),
        "mlp.down_proj" => (ff, d),
        _ => (d, ff), // mlp.gate_proj, mlp.up_proj
    }
}

fn linear_at<'a>(block: &'a Block, path: &str) -> Option<&'a Linear> {
    let (a, m) = (&block.attn, &block.mlp);
    match path {
        "attn.q_proj" => Some(&a.q_proj),
        "attn.k_proj" => Some(&a.k_proj),
        "attn.v_proj" => Some(&a.v_proj),
        "attn.o_proj" => Some(&a.o_proj),
        "mlp.gate_proj" => m.gate_proj.as_ref(),
        "mlp.up_proj" => Some(&m.up_proj),
        "mlp.down_proj" => Some(&m.down_proj),
        _ => None,
    }
}

/// Every `Linear` of `model`, in a fixed order, with its HF module; the parts of a fused
/// module are adjacent, in their fused order.
pub fn decoder_linears(model: &DecoderLm) -> Vec<(HfModule, &Linear)> {
    let cfg = model.config();
    let names = decoder_names(cfg);
    let layout = match cfg.family {
        Family::Gpt2 => HfLayout::Conv1d,
        _ => HfLayout::Linear,
    };
    let table = block_modules(cfg);
    let mut out = Vec::new();
    for (i, block) in model.layers.iter().enumerate() {
        for (hf, paths, groups) in &table {
            let parts: Vec<(&str, &Linear)> = paths
                .iter()
                .filter_map(|p| linear_at(block, p).map(|l| (*p, l)))
                .collect();
            let (n, groups) = (parts.len(), *groups);
            for (k, (path, lin)) in parts.into_iter().enumerate() {
                let module = HfModule {
                    path: format!("layers.{i}.{path}"),
                    hf: format!("{}.{}.{i}.{hf}", names.root, names.layers),
                    part: (n > 1).then_some((k, n)),
                    groups,
                    layout,
                };
                out.push((module, lin));
            }
        }
    }
    if let Some(head) = &model.lm_head {
        out.push((
            HfModule {
                path: "lm_head".into(),
                hf: names.head.into(),
                part: None,
                groups: 1,
                layout: HfLayout::Linear,
            },
            head,
        ));
    }
    out
}
