//! The name table of the decoder families: every `Linear` of a [`DecoderLm`] with the
//! Hugging Face module it is (or is part of), candle's habit of naming by table rather
//! than by code. PEFT adapter keys derive from it (`base_model.model.<hf>.lora_A.weight`).

use burn::nn::Linear;

use crate::config::Family;
use crate::decoder::DecoderLm;

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
    /// `Some((k, n))` when this `Linear` is the k-th of n equal slices of a fused HF
    /// module along its output (GPT-2's `c_attn` = Q | K | V).
    pub part: Option<(usize, usize)>,
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

/// Every `Linear` of `model`, in a fixed order, with its HF module.
pub fn decoder_linears(model: &DecoderLm) -> Vec<(HfModule, &Linear)> {
    let gpt2 = model.config().family == Family::Gpt2;
    let (root, layout) = if gpt2 {
        ("transformer.h", HfLayout::Conv1d)
    } else {
        ("model.layers", HfLayout::Linear)
    };
    let m = |path: String, hf: String, part, lin| {
        (
            HfModule {
                path,
                hf,
                part,
                layout,
            },
            lin,
        )
    };
    let mut out = Vec::new();
    for (i, block) in model.layers.iter().enumerate() {
        let p = format!("layers.{i}");
        let h = format!("{root}.{i}");
        let a = &block.attn;
        if gpt2 {
            for (k, (name, lin)) in [
                ("q_proj", &a.q_proj),
                ("k_proj", &a.k_proj),
                ("v_proj", &a.v_proj),
            ]
            .into_iter()
            .enumerate()
            {
                out.push(m(
                    format!("{p}.attn.{name}"),
                    format!("{h}.attn.c_attn"),
                    Some((k, 3)),
                    lin,
                ));
            }
            out.push(m(
                format!("{p}.attn.o_proj"),
                format!("{h}.attn.c_proj"),
                None,
                &a.o_proj,
            ));
            out.push(m(
                format!("{p}.mlp.up_proj"),
                format!("{h}.mlp.c_fc"),
                None,
                &block.mlp.up_proj,
            ));
            out.push(m(
                format!("{p}.mlp.down_proj"),
                format!("{h}.mlp.c_proj"),
                None,
                &block.mlp.down_proj,
            ));
        } else {
            for (name, lin) in [
                ("q_proj", &a.q_proj),
                ("k_proj", &a.k_proj),
                ("v_proj", &a.v_proj),
                ("o_proj", &a.o_proj),
            ] {
                out.push(m(
                    format!("{p}.attn.{name}"),
                    format!("{h}.self_attn.{name}"),
                    None,
                    lin,
                ));
            }
            if let Some(gate) = &block.mlp.gate_proj {
                out.push(m(
                    format!("{p}.mlp.gate_proj"),
                    format!("{h}.mlp.gate_proj"),
                    None,
                    gate,
                ));
            }
            out.push(m(
                format!("{p}.mlp.up_proj"),
                format!("{h}.mlp.up_proj"),
                None,
                &block.mlp.up_proj,
            ));
            out.push(m(
                format!("{p}.mlp.down_proj"),
                format!("{h}.mlp.down_proj"),
                None,
                &block.mlp.down_proj,
            ));
        }
    }
    if let Some(head) = &model.lm_head {
        out.push((
            HfModule {
                path: "lm_head".into(),
                hf: "lm_head".into(),
                part: None,
                layout: HfLayout::Linear,
            },
            head,
        ));
    }
    out
}
