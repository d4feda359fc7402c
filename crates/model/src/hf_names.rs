//! The name tables of the decoder families: every `Linear` of a [`DecoderLm`] with the
//! Hugging Face module it is (or is part of), and the names of its embeddings and norms,
//! per `model_type` — candle's habit of naming by table rather than by code. Import,
//! export and PEFT adapter keys (`base_model.model.<hf>.lora_A.weight`) all derive from
//! it; a new family is a new row here, not a new model.

use burn::nn::Linear;

use crate::config::{Family, ModelConfig};
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
    /// Norm before attention, in a block (`ln_1`, `input_layernorm`).
    pub attn_norm: &'static str,
    /// Norm before the MLP, in a block (`ln_2`, `post_attention_layernorm`).
    pub mlp_norm: &'static str,
    /// The attention module, in a block (`attn`, `self_attn`, `attention`).
    pub attn: &'static str,
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
        attn_norm: "input_layernorm",
        mlp_norm: "post_attention_layernorm",
        attn: "self_attn",
        final_norm: "norm",
        head: "lm_head",
    };
    match (cfg.family, cfg.hf_model_type.as_deref()) {
        (Family::Gpt2, _) => DecoderNames {
            root: "transformer",
            layers: "h",
            embed: "wte",
            attn_norm: "ln_1",
            mlp_norm: "ln_2",
            attn: "attn",
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
        _ => llama,
    }
}

/// How a family stores a block's `Linear`s: each entry is one HF module (name relative
/// to the block) and the manabi `Linear`s it holds, with the interleaving of a fused one.
type BlockTable<'a> = Vec<(&'static str, Vec<(&'static str, &'a Linear)>, usize)>;

fn block_table<'a>(cfg: &ModelConfig, block: &'a Block) -> BlockTable<'a> {
    let (a, m) = (&block.attn, &block.mlp);
    let qkv = || {
        vec![
            ("attn.q_proj", &a.q_proj),
            ("attn.k_proj", &a.k_proj),
            ("attn.v_proj", &a.v_proj),
        ]
    };
    let one = |hf, path, lin| (hf, vec![(path, lin)], 1);
    match (cfg.family, cfg.hf_model_type.as_deref()) {
        (Family::Gpt2, _) => vec![
            ("attn.c_attn", qkv(), 1),
            one("attn.c_proj", "attn.o_proj", &a.o_proj),
            one("mlp.c_fc", "mlp.up_proj", &m.up_proj),
            one("mlp.c_proj", "mlp.down_proj", &m.down_proj),
        ],
        (_, Some("gpt_neox")) => vec![
            ("attention.query_key_value", qkv(), cfg.n_heads),
            one("attention.dense", "attn.o_proj", &a.o_proj),
            one("mlp.dense_h_to_4h", "mlp.up_proj", &m.up_proj),
            one("mlp.dense_4h_to_h", "mlp.down_proj", &m.down_proj),
        ],
        (_, Some("phi3")) => {
            let mut t = vec![
                ("self_attn.qkv_proj", qkv(), 1),
                one("self_attn.o_proj", "attn.o_proj", &a.o_proj),
            ];
            // Phi-3's `gate_up_proj` is gate | up (`chunk(2)` in that order).
            let mut gate_up = Vec::new();
            if let Some(g) = &m.gate_proj {
                gate_up.push(("mlp.gate_proj", g));
            }
            gate_up.push(("mlp.up_proj", &m.up_proj));
            t.push(("mlp.gate_up_proj", gate_up, 1));
            t.push(one("mlp.down_proj", "mlp.down_proj", &m.down_proj));
            t
        }
        _ => {
            let mut t = vec![
                one("self_attn.q_proj", "attn.q_proj", &a.q_proj),
                one("self_attn.k_proj", "attn.k_proj", &a.k_proj),
                one("self_attn.v_proj", "attn.v_proj", &a.v_proj),
                one("self_attn.o_proj", "attn.o_proj", &a.o_proj),
            ];
            if let Some(g) = &m.gate_proj {
                t.push(one("mlp.gate_proj", "mlp.gate_proj", g));
            }
            t.push(one("mlp.up_proj", "mlp.up_proj", &m.up_proj));
            t.push(one("mlp.down_proj", "mlp.down_proj", &m.down_proj));
            t
        }
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
    let mut out = Vec::new();
    for (i, block) in model.layers.iter().enumerate() {
        for (hf, parts, groups) in block_table(cfg, block) {
            let n = parts.len();
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
