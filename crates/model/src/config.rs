//! `ModelConfig`: one description of a transformer (decoder-only GPT-2 and LLaMA layouts,
//! encoder-only BERT, encoder-decoder T5), read from TOML or from a Hugging Face
//! `config.json`, and written back. The BERT and T5 key tables live in `hf_bert.rs` and
//! `hf_t5.rs`.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{ModelError, Result};

/// The layout family, which fixes the weight names of Hugging Face checkpoints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Family {
    /// GPT-2: learned positions, LayerNorm, GELU (tanh), biases, fused QKV in checkpoints.
    Gpt2,
    /// LLaMA: RoPE, RMSNorm, SwiGLU, grouped-query attention, no biases.
    Llama,
    /// BERT: encoder-only, post-norm, learned positions and token types ([`crate::bert`]).
    Bert,
    /// T5: encoder-decoder, relative position buckets, RMS norm, no biases ([`crate::t5`]).
    T5,
}

/// The name a config file uses (`gpt2`, `llama`, `bert`, `t5`), so messages print what a
/// user writes rather than the Rust variant.
impl std::fmt::Display for Family {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Gpt2 => "gpt2",
            Self::Llama => "llama",
            Self::Bert => "bert",
            Self::T5 => "t5",
        })
    }
}

/// Position information given to attention.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Positions {
    /// A learned table added to the token embeddings (GPT-2).
    Learned,
    /// Fixed sine/cosine table added to the token embeddings (Vaswani et al. 2017).
    Sinusoidal,
    /// Rotary embeddings applied to queries and keys (Su et al. 2021; LLaMA).
    Rope,
    /// Linear biases on attention scores (Press et al. 2022).
    Alibi,
    /// Learned biases per bucket of relative distance, shared by all layers (T5; Raffel
    /// et al. 2020).
    Relative,
}

/// Normalisation layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NormKind {
    /// LayerNorm with bias.
    LayerNorm,
    /// RMSNorm (no mean, no bias).
    RmsNorm,
}

/// Feed-forward activation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Activation {
    /// GELU, tanh approximation (GPT-2's `gelu_new`).
    GeluTanh,
    /// GELU, exact erf form.
    Gelu,
    /// ReLU.
    Relu,
    /// SwiGLU: `down(silu(gate(x)) * up(x))` (LLaMA).
    Swiglu,
    /// GEGLU with tanh GELU: `down(gelu_tanh(gate(x)) * up(x))` (T5 v1.1 `gated-gelu`).
    GegluTanh,
}

/// How RoPE's inverse frequencies are stretched for contexts longer than the model was
/// first trained on (Hugging Face `rope_type`). `dynamic` and `longrope` depend on the
/// length of the sequence a forward pass reads (`max(position) + 1`), as transformers'
/// `dynamic_rope_update` recomputes them on every call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RopeScalingKind {
    /// Every inverse frequency divided by `factor` (position interpolation; kaiokendev,
    /// Chen et al. 2023).
    #[default]
    Linear,
    /// Llama 3.1's banded smoothing: wavelengths shorter than
    /// `original_max_position_embeddings / high_freq_factor` are kept, those longer than
    /// `original_max_position_embeddings / low_freq_factor` divided by `factor`, and
    /// those between interpolated.
    Llama3,
    /// YaRN (Peng et al. 2023): low frequencies interpolated (÷ `factor`), high ones kept,
    /// a linear ramp between the dimensions `beta_fast` and `beta_slow` rotations pick
    /// out over `original_max_position_embeddings`, and cos / sin scaled by the attention
    /// factor (`0.1·ln(factor) + 1` unless given).
    Yarn,
    /// Dynamic NTK (bloc97, emozilla): past `max_position_embeddings` tokens the base
    /// grows to `θ·(factor·L/max − (factor − 1))^(d/(d−2))` for a sequence of length `L`.
    Dynamic,
    /// LongRoPE (Phi-3, Phi-3.5, Phi-4-mini): each inverse frequency divided by its
    /// `short_factor`, or by its `long_factor` once the sequence is longer than
    /// `original_max_position_embeddings`; cos / sin scaled by the attention factor
    /// (`√(1 + ln f / ln original)` unless given, `f` = `factor`).
    #[serde(rename = "longrope")]
    LongRope,
}

impl RopeScalingKind {
    /// The Hugging Face `rope_type`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Linear => "linear",
            Self::Llama3 => "llama3",
            Self::Yarn => "yarn",
            Self::Dynamic => "dynamic",
            Self::LongRope => "longrope",
        }
    }
}

/// The attention of one layer (Hugging Face `layer_types`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LayerType {
    /// Every earlier token (causal).
    FullAttention,
    /// The last `sliding_window` tokens, the current one included.
    SlidingAttention,
}

/// The kinds of RoPE scaling manabi computes, as Hugging Face names them.
pub const ROPE_SCALING_KINDS: [&str; 5] = ["linear", "llama3", "yarn", "dynamic", "longrope"];

/// RoPE scaling (`[rope_scaling]` in TOML, `rope_scaling` / `rope_parameters` in a
/// Hugging Face `config.json`). The parameter names are transformers'; `llama3` needs
/// `factor`, the two frequency factors and `original_max_position_embeddings`, `yarn`
/// `factor` and `original_max_position_embeddings` (the rest have transformers'
/// defaults), `linear` only `factor`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RopeScaling {
    /// The scaling kind (`linear`, `llama3`).
    pub kind: RopeScalingKind,
    /// How much longer the context is made (inverse frequencies are divided by it).
    pub factor: f64,
    /// `llama3`: wavelengths above `original_max_position_embeddings / low_freq_factor`
    /// are divided by `factor`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub low_freq_factor: Option<f64>,
    /// `llama3`: wavelengths below `original_max_position_embeddings / high_freq_factor`
    /// are kept.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub high_freq_factor: Option<f64>,
    /// `llama3`, `yarn`: the context length of the original training.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub original_max_position_embeddings: Option<usize>,
    /// `yarn`: rotations that bound the kept (extrapolated) dimensions (default 32).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub beta_fast: Option<f64>,
    /// `yarn`: rotations that bound the interpolated dimensions (default 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub beta_slow: Option<f64>,
    /// `yarn`: cos / sin scale; default from `factor` (and `mscale`, `mscale_all_dim`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attention_factor: Option<f64>,
    /// `yarn`: with `mscale_all_dim`, the attention factor is
    /// `get_mscale(factor, mscale) / get_mscale(factor, mscale_all_dim)` (DeepSeek).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mscale: Option<f64>,
    /// `yarn`: see `mscale`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mscale_all_dim: Option<f64>,
    /// `yarn`: round the ramp's bounds outward to whole dimensions (default true).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub truncate: Option<bool>,
    /// `longrope`: one divisor per inverse frequency for sequences longer than
    /// `original_max_position_embeddings`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub long_factor: Option<Vec<f64>>,
    /// `longrope`: one divisor per inverse frequency for shorter sequences.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub short_factor: Option<Vec<f64>>,
    /// `dynamic`: the length up to which RoPE is left as it is (the model's
    /// `max_position_embeddings`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_position_embeddings: Option<usize>,
}

impl RopeScaling {
    /// Whether the inverse frequencies depend on the sequence length (`dynamic`,
    /// `longrope`).
    pub fn depends_on_length(&self) -> bool {
        matches!(
            self.kind,
            RopeScalingKind::Dynamic | RopeScalingKind::LongRope
        )
    }

    /// The factor cos and sin are multiplied by: YaRN's and LongRoPE's attention factor,
    /// 1 otherwise.
    pub fn attention_factor(&self) -> f64 {
        if self.kind == RopeScalingKind::LongRope {
            let old = self.original_max_position_embeddings.unwrap_or(1) as f64;
            return match self.attention_factor {
                Some(a) => a,
                None if self.factor <= 1.0 => 1.0,
                None => (1.0 + self.factor.ln() / old.ln()).sqrt(),
            };
        }
        if self.kind != RopeScalingKind::Yarn {
            return 1.0;
        }
        let mscale = |scale: f64, m: f64| match scale <= 1.0 {
            true => 1.0,
            false => 0.1 * m * scale.ln() + 1.0,
        };
        match (self.attention_factor, self.mscale, self.mscale_all_dim) {
            (Some(a), _, _) => a,
            (None, Some(m), Some(all)) if m != 0.0 && all != 0.0 => {
                mscale(self.factor, m) / mscale(self.factor, all)
            }
            _ => mscale(self.factor, 1.0),
        }
    }

    /// `inv_freq` (RoPE's unscaled inverse frequencies of base `theta`) scaled as
    /// transformers' `_compute_linear_scaling_rope_parameters` /
    /// `_compute_llama3_parameters` / `_compute_yarn_parameters` /
    /// `_compute_dynamic_ntk_parameters` / `_compute_longrope_parameters` do, for a
    /// sequence of `seq_len` tokens (`max(position) + 1`; only `dynamic` and `longrope`
    /// read it).
    pub fn apply(&self, inv_freq: &mut [f64], theta: f64, seq_len: usize) {
        let factor = self.factor;
        match self.kind {
            RopeScalingKind::Dynamic => {
                let max = self.max_position_embeddings.unwrap_or(1).max(1) as f64;
                let len = (seq_len as f64).max(max);
                let dim = (2 * inv_freq.len()) as f64;
                let base = theta * (factor * len / max - (factor - 1.0)).powf(dim / (dim - 2.0));
                for (i, f) in inv_freq.iter_mut().enumerate() {
                    *f = base.powf(-((2 * i) as f64) / dim);
                }
            }
            RopeScalingKind::LongRope => {
                let old = self.original_max_position_embeddings.unwrap_or(0);
                let ext = match seq_len > old {
                    true => &self.long_factor,
                    false => &self.short_factor,
                };
                if let Some(ext) = ext {
                    for (f, e) in inv_freq.iter_mut().zip(ext) {
                        *f /= e;
                    }
                }
            }
            RopeScalingKind::Yarn => {
                let dim = (2 * inv_freq.len()) as f64;
                // Required by `validate` (a config.json falls back to
                // `max_position_embeddings`, as transformers does).
                let old = self.original_max_position_embeddings.unwrap_or(1) as f64;
                let correction = |rotations: f64| {
                    dim * (old / (rotations * 2.0 * std::f64::consts::PI)).ln() / (2.0 * theta.ln())
                };
                let (mut low, mut high) = (
                    correction(self.beta_fast.unwrap_or(32.0)),
                    correction(self.beta_slow.unwrap_or(1.0)),
                );
                if self.truncate.unwrap_or(true) {
                    (low, high) = (low.floor(), high.ceil());
                }
                let (low, mut high) = (low.max(0.0), high.min(dim - 1.0));
                if low == high {
                    high += 0.001;
                }
                for (i, f) in inv_freq.iter_mut().enumerate() {
                    let ramp = ((i as f64 - low) / (high - low)).clamp(0.0, 1.0);
                    let keep = 1.0 - ramp; // extrapolation share
                    *f = (*f / factor) * (1.0 - keep) + *f * keep;
                }
            }
            RopeScalingKind::Linear => inv_freq.iter_mut().for_each(|f| *f /= factor),
            RopeScalingKind::Llama3 => {
                let low = self.low_freq_factor.unwrap_or(1.0);
                let high = self.high_freq_factor.unwrap_or(4.0);
                let old = self.original_max_position_embeddings.unwrap_or(8192) as f64;
                let (low_wavelen, high_wavelen) = (old / low, old / high);
                for f in inv_freq.iter_mut() {
                    let wavelen = 2.0 * std::f64::consts::PI / *f;
                    if wavelen > low_wavelen {
                        *f /= factor;
                    } else if wavelen >= high_wavelen {
                        let smooth = (old / wavelen - low) / (high - low);
                        *f = (1.0 - smooth) * *f / factor + smooth * *f;
                    }
                }
            }
        }
    }

    /// Checks the parameters; the error names `rope_scaling.<key>`.
    pub fn validate(&self) -> Result<()> {
        let bad = |key: &str, message: String| {
            Err(ModelError::Config {
                key: format!("rope_scaling.{key}"),
                message,
            })
        };
        if !(self.factor.is_finite() && self.factor > 0.0) {
            return bad("factor", format!("{} is not positive", self.factor));
        }
        let longrope = self.kind == RopeScalingKind::LongRope;
        let yarn_only = [
            ("beta_fast", self.beta_fast.is_some()),
            ("beta_slow", self.beta_slow.is_some()),
            (
                "attention_factor",
                self.attention_factor.is_some() && !longrope,
            ),
            ("mscale", self.mscale.is_some()),
            ("mscale_all_dim", self.mscale_all_dim.is_some()),
            ("truncate", self.truncate.is_some()),
        ];
        for (key, set, kind) in [
            (
                "long_factor",
                self.long_factor.is_some(),
                RopeScalingKind::LongRope,
            ),
            (
                "short_factor",
                self.short_factor.is_some(),
                RopeScalingKind::LongRope,
            ),
            (
                "max_position_embeddings",
                self.max_position_embeddings.is_some(),
                RopeScalingKind::Dynamic,
            ),
        ] {
            if set && self.kind != kind {
                return bad(
                    key,
                    format!(
                        "is a `{}` parameter, not `{}`'s",
                        kind.as_str(),
                        self.kind.as_str()
                    ),
                );
            }
        }
        if self.kind == RopeScalingKind::Dynamic
            && self.max_position_embeddings.is_none_or(|m| m == 0)
        {
            return bad(
                "max_position_embeddings",
                "missing or 0 (`dynamic` scales past it)".into(),
            );
        }
        if longrope {
            for (key, list) in [
                ("long_factor", &self.long_factor),
                ("short_factor", &self.short_factor),
            ] {
                match list {
                    None => return bad(key, "missing (`longrope` needs it)".into()),
                    Some(l) if l.iter().any(|x| !(x.is_finite() && *x > 0.0)) => {
                        return bad(key, "holds a value that is not positive".into());
                    }
                    Some(_) => {}
                }
            }
            if let Some(a) = self.attention_factor
                && !(a.is_finite() && a > 0.0)
            {
                return bad("attention_factor", format!("{a} is not positive"));
            }
            if self.original_max_position_embeddings.is_none_or(|m| m < 2) {
                return bad(
                    "original_max_position_embeddings",
                    "missing or below 2 (`longrope` switches factors past it)".into(),
                );
            }
        }
        if self.kind != RopeScalingKind::Yarn
            && let Some((key, _)) = yarn_only.iter().find(|(_, set)| *set)
        {
            return bad(
                key,
                format!("is a `yarn` parameter, not `{}`'s", self.kind.as_str()),
            );
        }
        if self.kind == RopeScalingKind::Yarn {
            for (key, v) in [
                ("beta_fast", self.beta_fast),
                ("beta_slow", self.beta_slow),
                ("attention_factor", self.attention_factor),
            ] {
                if let Some(v) = v
                    && !(v.is_finite() && v > 0.0)
                {
                    return bad(key, format!("{v} is not positive"));
                }
            }
            match self.original_max_position_embeddings {
                Some(0) => {
                    return bad(
                        "original_max_position_embeddings",
                        "must be at least 1".into(),
                    );
                }
                None => {
                    return bad(
                        "original_max_position_embeddings",
                        "missing (`yarn` needs it)".into(),
                    );
                }
                Some(_) => {}
            }
        }
        if self.kind != RopeScalingKind::Llama3 {
            let mut llama3_only = vec![
                ("low_freq_factor", self.low_freq_factor.is_some()),
                ("high_freq_factor", self.high_freq_factor.is_some()),
            ];
            if matches!(
                self.kind,
                RopeScalingKind::Linear | RopeScalingKind::Dynamic
            ) {
                llama3_only.push((
                    "original_max_position_embeddings",
                    self.original_max_position_embeddings.is_some(),
                ));
            }
            for (key, set) in llama3_only {
                if set {
                    return bad(
                        key,
                        format!("is a `llama3` parameter, not `{}`'s", self.kind.as_str()),
                    );
                }
            }
            return Ok(());
        }
        let (Some(low), Some(high), Some(old)) = (
            self.low_freq_factor,
            self.high_freq_factor,
            self.original_max_position_embeddings,
        ) else {
            let key = if self.low_freq_factor.is_none() {
                "low_freq_factor"
            } else if self.high_freq_factor.is_none() {
                "high_freq_factor"
            } else {
                "original_max_position_embeddings"
            };
            return bad(key, "missing (`llama3` needs it)".into());
        };
        if !(low.is_finite() && low > 0.0) {
            return bad("low_freq_factor", format!("{low} is not positive"));
        }
        if !(high.is_finite() && high > low) {
            return bad(
                "high_freq_factor",
                format!("{high} must exceed low_freq_factor = {low}"),
            );
        }
        if old == 0 {
            return bad(
                "original_max_position_embeddings",
                "must be at least 1".into(),
            );
        }
        Ok(())
    }
}

pub(crate) fn default_norm_eps() -> f64 {
    1e-5
}
pub(crate) fn default_rope_theta() -> f64 {
    10_000.0
}
pub(crate) fn default_rotary_fraction() -> f64 {
    1.0
}

/// A decoder-only transformer. Field names are the TOML keys; unknown keys are errors.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelConfig {
    /// Layout family.
    pub family: Family,
    /// Vocabulary size.
    pub vocab_size: usize,
    /// Longest sequence the model accepts.
    pub max_positions: usize,
    /// Width of the residual stream.
    pub d_model: usize,
    /// Number of blocks.
    pub n_layers: usize,
    /// Query heads.
    pub n_heads: usize,
    /// Key/value heads (grouped-query attention); defaults to `n_heads`.
    #[serde(default)]
    pub n_kv_heads: Option<usize>,
    /// Per-head width; defaults to `d_model / n_heads`.
    #[serde(default)]
    pub head_dim: Option<usize>,
    /// Hidden width of the feed-forward layer.
    pub d_ff: usize,
    /// Position encoding.
    pub positions: Positions,
    /// Normalisation.
    pub norm: NormKind,
    /// Epsilon of the norms.
    #[serde(default = "default_norm_eps")]
    pub norm_eps: f64,
    /// Feed-forward activation.
    pub activation: Activation,
    /// Biases on the attention projections.
    #[serde(default)]
    pub attention_bias: bool,
    /// Biases on the query, key and value projections only, not the output one
    /// (Qwen2). `attention_bias` puts them on all four.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub qkv_bias: bool,
    /// An RMSNorm over `head_dim`, applied per head to queries and keys after the
    /// projection and before RoPE (Qwen3's `q_norm` / `k_norm`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub qk_norm: bool,
    /// Biases on the feed-forward projections.
    #[serde(default)]
    pub mlp_bias: bool,
    /// RoPE base.
    #[serde(default = "default_rope_theta")]
    pub rope_theta: f64,
    /// Fraction of each head's dimensions that RoPE rotates (partial rotary).
    #[serde(default = "default_rotary_fraction")]
    pub rotary_fraction: f64,
    /// RoPE scaling of the inverse frequencies (Llama 3.1's `llama3`, `linear`); none is
    /// plain RoPE.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rope_scaling: Option<RopeScaling>,
    /// Sliding-window attention (Mistral, Phi-3, Qwen2's `use_sliding_window`): a token
    /// attends to itself and at most `sliding_window - 1` tokens before it, in the layers
    /// `layer_types` marks sliding (every layer when `layer_types` is absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sliding_window: Option<usize>,
    /// Full or sliding-window attention, per layer (Hugging Face `layer_types`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub layer_types: Option<Vec<LayerType>>,
    /// One residual step per block, `x + attn(norm₁(x)) + mlp(norm₂(x))` (GPT-NeoX's
    /// `use_parallel_residual`), instead of attention then MLP.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub parallel_residual: bool,
    /// With `parallel_residual`: attention and MLP read one norm of the block's input,
    /// `x + attn(norm(x)) + mlp(norm(x))` (StableLM 2's `use_parallel_residual`); the
    /// block has no MLP norm.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub shared_norm: bool,
    /// Norms after attention and after the MLP too, before each residual add (Gemma 2 /
    /// 3's `post_attention_layernorm` / `post_feedforward_layernorm`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub post_norms: bool,
    /// No norms before attention and MLP, only after them (OLMo 2; needs `post_norms`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub post_norms_only: bool,
    /// `qk_norm` over the whole query / key projection (all heads together, OLMo 2)
    /// instead of per head.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub qk_norm_whole: bool,
    /// `qk_norm` as a LayerNorm without bias over `head_dim`, each head with its own
    /// weights (StableLM's `qk_layernorm`), instead of one RMSNorm shared by the heads.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub qk_norm_heads: bool,
    /// Token embeddings multiplied by √d_model (Gemma).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub embed_scale: bool,
    /// Attention scores soft-capped, `cap · tanh(s / cap)`, before the mask (Gemma 2's
    /// `attn_logit_softcapping`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attn_softcap: Option<f64>,
    /// Output logits soft-capped the same way (Gemma 2's `final_logit_softcapping`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub final_softcap: Option<f64>,
    /// Attention scale `query_pre_attn_scalar^-½` instead of `head_dim^-½` (Gemma).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub query_pre_attn_scalar: Option<f64>,
    /// RoPE base of the sliding-window layers, which are then never RoPE-scaled (Gemma 3's
    /// `rope_local_base_freq`); none: every layer uses `rope_theta`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rope_local_theta: Option<f64>,
    /// Share the output projection with the token embedding.
    #[serde(default)]
    pub tie_embeddings: bool,
    /// Dropout probability (training only).
    #[serde(default)]
    pub dropout: f64,
    /// BERT: size of the token-type (segment) table; default 2.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub type_vocab_size: Option<usize>,
    /// BERT classification heads: number of labels; default 2.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub num_labels: Option<usize>,
    /// T5: decoder blocks; defaults to `n_layers` (the encoder's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub n_decoder_layers: Option<usize>,
    /// T5: relative-position buckets; default 32.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub relative_attention_num_buckets: Option<usize>,
    /// T5: distances from this on share the last bucket; default 128.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub relative_attention_max_distance: Option<usize>,
    /// T5: multiply the decoder output by `d_model^-0.5` before the LM head. Defaults to
    /// `tie_embeddings` (T5 v1.0 is tied and scales, v1.1 is untied and does not).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scale_decoder_outputs: Option<bool>,
    /// The Hugging Face `model_type` a LLaMA-layout model came from or exports as
    /// (`qwen2`, `qwen3`); none is `llama`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hf_model_type: Option<String>,
    /// Padding token (T5: default decoder start).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pad_token_id: Option<usize>,
    /// End-of-sequence token (T5 generation stops there).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub eos_token_id: Option<usize>,
    /// T5: first decoder input; defaults to `pad_token_id`, else 0.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decoder_start_token_id: Option<usize>,
}

impl ModelConfig {
    /// Query heads × head width.
    pub fn head_dim(&self) -> usize {
        self.head_dim.unwrap_or(self.d_model / self.n_heads.max(1))
    }

    /// Key/value heads.
    pub fn kv_heads(&self) -> usize {
        self.n_kv_heads.unwrap_or(self.n_heads)
    }

    /// Dimensions of each head that RoPE rotates (even).
    pub fn rotary_dim(&self) -> usize {
        let d = (self.head_dim() as f64 * self.rotary_fraction) as usize;
        d - d % 2
    }

    /// The attention window of layer `i`: `Some(w)` for a sliding-window layer, `None`
    /// for full causal attention.
    pub fn window_of(&self, i: usize) -> Option<usize> {
        let sliding = match &self.layer_types {
            Some(types) => types.get(i) == Some(&LayerType::SlidingAttention),
            None => true,
        };
        self.sliding_window.filter(|_| sliding)
    }

    /// The attention scale: `query_pre_attn_scalar^-½` where set, else `head_dim^-½`.
    pub fn attention_scale(&self) -> f64 {
        1.0 / self
            .query_pre_attn_scalar
            .unwrap_or(self.head_dim() as f64)
            .sqrt()
    }

    /// T5: decoder blocks.
    pub fn decoder_layers(&self) -> usize {
        self.n_decoder_layers.unwrap_or(self.n_layers)
    }

    /// T5: relative-position buckets.
    pub fn relative_buckets(&self) -> usize {
        self.relative_attention_num_buckets.unwrap_or(32)
    }

    /// T5: distance from which relative positions share the last bucket.
    pub fn relative_max_distance(&self) -> usize {
        self.relative_attention_max_distance.unwrap_or(128)
    }

    /// T5: whether the decoder output is scaled by `d_model^-0.5` before the LM head.
    pub fn scales_decoder_output(&self) -> bool {
        self.scale_decoder_outputs.unwrap_or(self.tie_embeddings)
    }

    /// T5: the first decoder input.
    pub fn decoder_start(&self) -> usize {
        self.decoder_start_token_id
            .or(self.pad_token_id)
            .unwrap_or(0)
    }

    /// A loose lower estimate of the parameter count in `f64` (no overflow on absurd
    /// values): embeddings, positions, and per layer attention and MLP. Loaders compare it
    /// with the weights on disk before allocating, so a config that cannot belong to them
    /// (e.g. `n_layer = 65535`) is an error, not an out-of-memory abort.
    pub fn approx_params(&self) -> f64 {
        let (d, ff) = (self.d_model as f64, self.d_ff as f64);
        let heads = self.n_heads.max(1) as f64;
        let kv = self.n_kv_heads.map_or(heads, |k| k as f64);
        let hd = self.head_dim.map_or(d / heads, |h| h as f64);
        let rows = self.vocab_size as f64
            + self.max_positions as f64
            + self.type_vocab_size.unwrap_or(0) as f64
            + self.num_labels.unwrap_or(0) as f64;
        let layer = d * hd * (2.0 * heads + 2.0 * kv) + 2.0 * d * ff;
        rows * d + self.n_layers as f64 * layer
    }

    /// Parameters, embeddings included (tied ones counted once). BERT: embeddings and
    /// blocks, without pooler or task heads. T5: both stacks and the LM head.
    pub fn n_params(&self) -> usize {
        let (d, hd) = (self.d_model, self.head_dim());
        let attn = d * hd * (self.n_heads * 2 + self.kv_heads() * 2);
        let attn_b = if self.attention_bias {
            hd * self.n_heads + d + hd * 2 * self.kv_heads()
        } else if self.qkv_bias {
            hd * (self.n_heads + 2 * self.kv_heads())
        } else {
            0
        };
        let qk_norm = if self.qk_norm { 2 * hd } else { 0 };
        let mlp = match self.activation {
            Activation::Swiglu | Activation::GegluTanh => 3 * d * self.d_ff,
            _ => 2 * d * self.d_ff,
        };
        let mlp_b = if self.mlp_bias { self.d_ff + d } else { 0 };
        let norm = if self.norm == NormKind::LayerNorm {
            2 * d
        } else {
            d
        };
        let post = if self.post_norms { 2 * norm } else { 0 };
        let pre = match (self.post_norms_only, self.shared_norm) {
            (true, _) => 0,
            (false, true) => norm,
            (false, false) => 2 * norm,
        };
        let qk_norm = match (self.qk_norm, self.qk_norm_whole || self.qk_norm_heads) {
            (true, true) => hd * (self.n_heads + self.kv_heads()),
            _ => qk_norm,
        };
        let block = attn + attn_b + qk_norm + mlp + mlp_b + pre + post;
        let pos = if self.positions == Positions::Learned {
            self.max_positions * d
        } else {
            0
        };
        let head = if self.tie_embeddings {
            0
        } else {
            self.vocab_size * d
        };
        match self.family {
            Family::Gpt2 | Family::Llama => {
                self.vocab_size * d + pos + self.n_layers * block + norm + head
            }
            Family::Bert => {
                let types = self.type_vocab_size.unwrap_or(2) * d;
                self.vocab_size * d + pos + types + norm + self.n_layers * block
            }
            Family::T5 => {
                // The first block of each stack owns the relative-position table.
                let rel = self.relative_buckets() * self.n_heads;
                let encoder = self.n_layers * block + rel + norm;
                // Decoder blocks add cross-attention and its norm.
                let decoder = self.decoder_layers() * (block + attn + attn_b + norm) + rel + norm;
                self.vocab_size * d + encoder + decoder + head
            }
        }
    }

    /// Checks sizes; the error names the key.
    pub fn validate(&self) -> Result<()> {
        let bad = |key: &str, message: String| {
            Err(ModelError::Config {
                key: key.into(),
                message,
            })
        };
        for (key, v) in [
            ("vocab_size", self.vocab_size),
            ("max_positions", self.max_positions),
            ("d_model", self.d_model),
            ("n_layers", self.n_layers),
            ("n_heads", self.n_heads),
            ("d_ff", self.d_ff),
        ] {
            if v == 0 {
                return bad(key, "must be at least 1".into());
            }
        }
        if self.head_dim.is_none() && !self.d_model.is_multiple_of(self.n_heads) {
            return bad(
                "n_heads",
                format!(
                    "{} heads do not divide d_model = {}",
                    self.n_heads, self.d_model
                ),
            );
        }
        if self.head_dim == Some(0) {
            return bad("head_dim", "must be at least 1".into());
        }
        let kv = self.kv_heads();
        if kv == 0 || !self.n_heads.is_multiple_of(kv) {
            return bad(
                "n_kv_heads",
                format!(
                    "{kv} key/value heads do not divide n_heads = {}",
                    self.n_heads
                ),
            );
        }
        self.validate_family()?;
        if !(0.0..1.0).contains(&self.dropout) {
            return bad("dropout", format!("{} is not in [0, 1)", self.dropout));
        }
        if self.norm_eps.is_nan() || self.norm_eps <= 0.0 {
            return bad("norm_eps", "must be positive".into());
        }
        if self.positions == Positions::Rope {
            if self.rope_theta.is_nan() || self.rope_theta <= 0.0 {
                return bad("rope_theta", "must be positive".into());
            }
            if !(self.rotary_fraction > 0.0 && self.rotary_fraction <= 1.0)
                || self.rotary_dim() == 0
            {
                return bad(
                    "rotary_fraction",
                    format!("{} rotates no dimension or too many", self.rotary_fraction),
                );
            }
        }
        self.validate_window()?;
        if let Some(scaling) = &self.rope_scaling {
            if self.positions != Positions::Rope {
                return bad(
                    "rope_scaling",
                    "scales RoPE, but positions is not \"rope\"".into(),
                );
            }
            scaling.validate()?;
            let half = self.rotary_dim() / 2;
            for (key, list) in [
                ("long_factor", &scaling.long_factor),
                ("short_factor", &scaling.short_factor),
            ] {
                if let Some(l) = list
                    && l.len() != half
                {
                    return bad(
                        &format!("rope_scaling.{key}"),
                        format!(
                            "has {} values, but RoPE here has {half} frequencies (rotary \
                             dimensions / 2)",
                            l.len()
                        ),
                    );
                }
            }
        }
        Ok(())
    }

    /// `sliding_window` at least 1, `layer_types` one per layer and only with a window;
    /// soft caps, scalar and local RoPE base positive.
    fn validate_window(&self) -> Result<()> {
        let bad = |key: &str, message: String| {
            Err(ModelError::Config {
                key: key.into(),
                message,
            })
        };
        if self.post_norms_only && (!self.post_norms || self.parallel_residual) {
            return bad(
                "post_norms_only",
                "needs post_norms = true and parallel_residual = false".into(),
            );
        }
        if self.qk_norm_whole && !self.qk_norm {
            return bad("qk_norm_whole", "needs qk_norm = true".into());
        }
        if self.qk_norm_heads && (!self.qk_norm || self.qk_norm_whole) {
            return bad(
                "qk_norm_heads",
                "needs qk_norm = true and qk_norm_whole = false".into(),
            );
        }
        if self.shared_norm && !self.parallel_residual {
            return bad("shared_norm", "needs parallel_residual = true".into());
        }
        for (key, v) in [
            ("attn_softcap", self.attn_softcap),
            ("final_softcap", self.final_softcap),
            ("query_pre_attn_scalar", self.query_pre_attn_scalar),
            ("rope_local_theta", self.rope_local_theta),
        ] {
            if let Some(v) = v
                && !(v.is_finite() && v > 0.0)
            {
                return bad(key, format!("{v} is not positive"));
            }
        }
        if self.sliding_window == Some(0) {
            return bad("sliding_window", "must be at least 1".into());
        }
        if let Some(types) = &self.layer_types {
            if types.len() != self.n_layers {
                return bad(
                    "layer_types",
                    format!("{} entries for n_layers = {}", types.len(), self.n_layers),
                );
            }
            if self.sliding_window.is_none() && types.contains(&LayerType::SlidingAttention) {
                return bad(
                    "layer_types",
                    "names sliding_attention layers but sliding_window is not set".into(),
                );
            }
        }
        Ok(())
    }

    /// The pieces each family needs: BERT is learned-position LayerNorm, T5 is
    /// relative-position RMS norm, and only T5 has relative positions.
    fn validate_family(&self) -> Result<()> {
        let bad = |key: &str, message: String| {
            Err(ModelError::Config {
                key: key.into(),
                message,
            })
        };
        let family = format!("{:?}", self.family).to_lowercase();
        match self.family {
            Family::Bert => {
                if self.positions != Positions::Learned || self.norm != NormKind::LayerNorm {
                    return bad(
                        "positions",
                        "bert needs positions = \"learned\" and norm = \"layernorm\"".into(),
                    );
                }
            }
            Family::T5 => {
                if self.positions != Positions::Relative || self.norm != NormKind::RmsNorm {
                    return bad(
                        "positions",
                        "t5 needs positions = \"relative\" and norm = \"rmsnorm\"".into(),
                    );
                }
            }
            Family::Gpt2 | Family::Llama => {
                if self.positions == Positions::Relative {
                    return bad(
                        "positions",
                        format!("relative position buckets are T5's, not {family}'s"),
                    );
                }
            }
        }
        if matches!(self.family, Family::Bert | Family::T5) {
            for (key, on) in [
                ("qkv_bias", self.qkv_bias),
                ("qk_norm", self.qk_norm),
                ("parallel_residual", self.parallel_residual),
                ("sliding_window", self.sliding_window.is_some()),
                ("post_norms", self.post_norms),
                ("embed_scale", self.embed_scale),
                ("attn_softcap", self.attn_softcap.is_some()),
            ] {
                if on {
                    return bad(key, format!("is a decoder switch, not {family}'s"));
                }
            }
        }
        if let Some(t) = &self.hf_model_type
            && hf_family(Some(t.as_str())).ok() != Some(self.family)
        {
            return bad(
                "hf_model_type",
                format!("`{t}` is not a Hugging Face model type of the {family} family"),
            );
        }
        for (key, v) in [
            ("type_vocab_size", self.type_vocab_size),
            ("num_labels", self.num_labels),
            ("n_decoder_layers", self.n_decoder_layers),
        ] {
            if v == Some(0) {
                return bad(key, "must be at least 1".into());
            }
        }
        if self.family == Family::T5 {
            // Bidirectional buckets are halved, then halved again into exact and
            // logarithmic ones: fewer than 4 leaves no exact bucket.
            let (nb, md) = (self.relative_buckets(), self.relative_max_distance());
            if nb < 4 {
                return bad(
                    "relative_attention_num_buckets",
                    format!("{nb} is fewer than 4"),
                );
            }
            if md <= nb / 2 {
                return bad(
                    "relative_attention_max_distance",
                    format!("{md} must exceed half the buckets ({})", nb / 2),
                );
            }
        }
        Ok(())
    }
}

// Here rather than in `error.rs`, which would otherwise depend back on this module.
impl ModelError {
    /// The error for a BERT or T5 folder given where a decoder-only model is expected.
    pub(crate) fn not_a_decoder(cfg: &ModelConfig, dir: &Path) -> Self {
        let (family, load, export) = match cfg.family {
            Family::Bert => ("bert", "manabi_model::load_bert_*", "export_bert_hf"),
            _ => ("t5", "manabi_model::load_t5", "export_t5_hf"),
        };
        Self::Config {
            key: format!("{}: family", dir.display()),
            message: format!(
                "`{family}` is not a decoder-only language model (load it with {load}, export \
                 it with manabi_model::{export}; native checkpoints are decoder-only for now)"
            ),
        }
    }
}

pub(crate) use crate::config_json::{get, opt};

/// The Hugging Face `model_type`s manabi reads, and the family each is. `mistral`,
/// `qwen2`, `qwen3`, `phi3`, `gpt_neox`, `gemma2`, `gemma3_text`, `stablelm` and `olmo2` are the LLaMA layout (one RoPE decoder) with
/// switches (`sliding_window`, `qkv_bias`, `qk_norm`, `parallel_residual`, LayerNorm, …;
/// see `config_hf.rs`) and their own module names (`hf_names.rs`), remembered in
/// `ModelConfig::hf_model_type` for export.
pub const HF_MODEL_TYPES: [(&str, Family); 13] = [
    ("gpt2", Family::Gpt2),
    ("llama", Family::Llama),
    ("mistral", Family::Llama),
    ("qwen2", Family::Llama),
    ("qwen3", Family::Llama),
    ("phi3", Family::Llama),
    ("gpt_neox", Family::Llama),
    ("gemma2", Family::Llama),
    ("gemma3_text", Family::Llama),
    ("stablelm", Family::Llama),
    ("olmo2", Family::Llama),
    ("bert", Family::Bert),
    ("t5", Family::T5),
];

/// The family of a Hugging Face `model_type`; an unknown one is an error listing the
/// supported ones.
pub fn hf_family(model_type: Option<&str>) -> Result<Family> {
    let supported = || {
        HF_MODEL_TYPES
            .iter()
            .map(|(t, _)| *t)
            .collect::<Vec<_>>()
            .join(", ")
    };
    let Some(model_type) = model_type else {
        return Err(ModelError::Config {
            key: "model_type".into(),
            message: format!("missing (supported: {})", supported()),
        });
    };
    HF_MODEL_TYPES
        .iter()
        .find(|(t, _)| *t == model_type)
        .map(|(_, f)| *f)
        .ok_or_else(|| ModelError::Config {
            key: "model_type".into(),
            message: format!("unsupported `{model_type}` (supported: {})", supported()),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tiny() -> ModelConfig {
        toml::from_str(
            r#"
            family = "llama"
            vocab_size = 64
            max_positions = 32
            d_model = 32
            n_layers = 2
            n_heads = 4
            n_kv_heads = 2
            d_ff = 48
            positions = "rope"
            norm = "rmsnorm"
            activation = "swiglu"
            "#,
        )
        .unwrap()
    }

    #[test]
    fn toml_round_trip_and_validation_names_keys() {
        let cfg = tiny();
        cfg.validate().unwrap();
        assert_eq!(cfg.head_dim(), 8);
        let mut bad = cfg.clone();
        bad.n_heads = 5;
        assert!(
            bad.validate()
                .unwrap_err()
                .to_string()
                .contains("`n_heads`")
        );
        let mut bad = cfg.clone();
        bad.n_kv_heads = Some(3);
        assert!(
            bad.validate()
                .unwrap_err()
                .to_string()
                .contains("`n_kv_heads`")
        );
        let mut bad = cfg.clone();
        bad.d_model = 0;
        assert!(
            bad.validate()
                .unwrap_err()
                .to_string()
                .contains("`d_model`")
        );
        let err = toml::from_str::<ModelConfig>("family = \"gpt2\"\nwidth = 3").unwrap_err();
        assert!(err.to_string().contains("unknown field `width`"), "{err}");
    }

    #[test]
    fn rope_scaling_reads_from_toml_and_validation_names_its_keys() {
        let text = toml::to_string_pretty(&tiny()).unwrap();
        let cfg: ModelConfig = toml::from_str(&format!(
            "{text}\n[rope_scaling]\nkind = \"llama3\"\nfactor = 8.0\nlow_freq_factor = 1.0\n\
             high_freq_factor = 4.0\noriginal_max_position_embeddings = 16\n"
        ))
        .unwrap();
        cfg.validate().unwrap();
        let scaling = cfg.rope_scaling.clone().unwrap();
        assert_eq!(scaling.kind, RopeScalingKind::Llama3);
        // Written back as a table, read back the same.
        let again: ModelConfig = toml::from_str(&toml::to_string_pretty(&cfg).unwrap()).unwrap();
        assert_eq!(again, cfg);
        let back = ModelConfig::from_hf_json(&cfg.to_hf_json().to_string()).unwrap();
        assert_eq!(back.rope_scaling, cfg.rope_scaling);

        let err_key = |s: RopeScaling| {
            let bad = ModelConfig {
                rope_scaling: Some(s),
                ..cfg.clone()
            };
            bad.validate().unwrap_err().to_string()
        };
        for (s, key) in [
            (
                RopeScaling {
                    factor: f64::NAN,
                    ..scaling.clone()
                },
                "`rope_scaling.factor`",
            ),
            (
                RopeScaling {
                    high_freq_factor: Some(0.5),
                    ..scaling.clone()
                },
                "`rope_scaling.high_freq_factor`",
            ),
            (
                RopeScaling {
                    low_freq_factor: None,
                    ..scaling.clone()
                },
                "`rope_scaling.low_freq_factor`",
            ),
            (
                RopeScaling {
                    original_max_position_embeddings: Some(0),
                    ..scaling.clone()
                },
                "`rope_scaling.original_max_position_embeddings`",
            ),
            (
                RopeScaling {
                    kind: RopeScalingKind::Linear,
                    ..scaling.clone()
                },
                "`rope_scaling.low_freq_factor`",
            ),
        ] {
            let err = err_key(s);
            assert!(err.contains(key), "{key}: {err}");
        }
        let learned = ModelConfig {
            positions: Positions::Learned,
            ..cfg.clone()
        };
        let err = learned.validate().unwrap_err().to_string();
        assert!(err.contains("`rope_scaling`"), "{err}");
        // YaRN without the original length is refused, not given a default.
        let yarn: ModelConfig = toml::from_str(&format!(
            "{text}\n[rope_scaling]\nkind = \"yarn\"\nfactor = 2.0\n"
        ))
        .unwrap();
        let err = yarn.validate().unwrap_err().to_string();
        assert!(
            err.contains("`rope_scaling.original_max_position_embeddings`"),
            "{err}"
        );
        // Dynamic NTK needs the length it scales past; LongRoPE its two factor lists, one
        // value per frequency.
        let dynamic: ModelConfig = toml::from_str(&format!(
            "{text}\n[rope_scaling]\nkind = \"dynamic\"\nfactor = 2.0\n"
        ))
        .unwrap();
        let err = dynamic.validate().unwrap_err().to_string();
        assert!(
            err.contains("`rope_scaling.max_position_embeddings`"),
            "{err}"
        );
        let longrope: ModelConfig = toml::from_str(&format!(
            "{text}\n[rope_scaling]\nkind = \"longrope\"\nfactor = 2.0\n\
             original_max_position_embeddings = 16\nlong_factor = [2.0]\nshort_factor = [1.0]\n"
        ))
        .unwrap();
        let err = longrope.validate().unwrap_err().to_string();
        assert!(
            err.contains("`rope_scaling.long_factor`: has 1 values"),
            "{err}"
        );
        let err = toml::from_str::<ModelConfig>(&format!(
            "{text}\n[rope_scaling]\nkind = \"ntk\"\nfactor = 2.0\n"
        ))
        .unwrap_err();
        assert!(err.to_string().contains("ntk"), "{err}");
        let err = toml::from_str::<ModelConfig>(&format!(
            "{text}\n[rope_scaling]\nkind = \"linear\"\nfactor = 2.0\nbeta = 1\n"
        ))
        .unwrap_err();
        assert!(err.to_string().contains("unknown field `beta`"), "{err}");
    }

    #[test]
    fn hf_configs_round_trip() {
        let cfg = tiny();
        let back = ModelConfig::from_hf_json(&cfg.to_hf_json().to_string()).unwrap();
        assert_eq!(
            back,
            ModelConfig {
                head_dim: Some(8),
                norm_eps: 1e-5,
                ..cfg
            }
        );
        let err = ModelConfig::from_hf_json(r#"{"model_type": "mamba"}"#).unwrap_err();
        assert!(err.to_string().contains("`model_type`"), "{err}");
        let err = ModelConfig::from_hf_json(r#"{"model_type": "gpt2", "n_embd": 8}"#).unwrap_err();
        assert!(err.to_string().contains("`vocab_size`"), "{err}");
    }
}
