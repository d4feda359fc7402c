//! `ModelConfig` from and to a Hugging Face `config.json` (`model_type` gpt2, llama,
//! mistral, qwen2, qwen3, phi3, gpt_neox, bert, t5): the key names of each family in one
//! place. Every RoPE decoder is the LLaMA layout with switches: Mistral and Phi-3 a
//! sliding window, Qwen2 biases on q/k/v only (`qkv_bias`) and optionally a window on its
//! upper layers, Qwen3 a per-head RMSNorm on q and k (`qk_norm`) and biases on all four
//! where `attention_bias`, GPT-NeoX LayerNorm, GELU, biases, partial rotary and the
//! parallel residual.

use serde_json::{Value, json};

use crate::config::{
    Activation, Family, LayerType, ModelConfig, NormKind, Positions, ROPE_SCALING_KINDS,
    RopeScaling, RopeScalingKind, default_norm_eps, default_rope_theta, default_rotary_fraction,
};
use crate::config_json::{get, opt};
use crate::error::{ModelError, Result};

impl ModelConfig {
    /// Reads a Hugging Face `config.json` (`model_type` gpt2, llama, bert or t5).
    pub fn from_hf_json(text: &str) -> Result<Self> {
        let v: Value = serde_json::from_str(text).map_err(|e| ModelError::Config {
            key: "config.json".into(),
            message: e.to_string(),
        })?;
        let family = crate::config::hf_family(v.get("model_type").and_then(Value::as_str))?;
        let cfg = match family {
            Family::Gpt2 => Self {
                family: Family::Gpt2,
                vocab_size: get(&v, "vocab_size")?,
                max_positions: get(&v, "n_positions")?,
                d_model: get(&v, "n_embd")?,
                n_layers: get(&v, "n_layer")?,
                n_heads: get(&v, "n_head")?,
                n_kv_heads: None,
                head_dim: None,
                d_ff: opt(&v, "n_inner")?.unwrap_or(4 * get::<usize>(&v, "n_embd")?),
                positions: Positions::Learned,
                norm: NormKind::LayerNorm,
                norm_eps: opt(&v, "layer_norm_epsilon")?.unwrap_or(1e-5),
                activation: act_from_hf(&v, "activation_function", "gelu_new")?,
                attention_bias: true,
                mlp_bias: true,
                rope_theta: default_rope_theta(),
                rotary_fraction: 1.0,
                tie_embeddings: opt(&v, "tie_word_embeddings")?.unwrap_or(true),
                dropout: 0.0,
                ..Self::empty(Family::Gpt2)
            },
            Family::Llama => rope_decoder_from_hf(&v)?,
            Family::Bert => crate::hf_bert::config_from_hf(&v)?,
            Family::T5 => crate::hf_t5::config_from_hf(&v)?,
        };
        cfg.validate()?;
        Ok(cfg)
    }

    /// A Hugging Face `config.json` for this model, with `bos_token_id` / `eos_token_id`
    /// / `pad_token_id` (`null` when the config does not know them; the chat export
    /// fills them in from the tokenizer). The writer (`write_hf`)
    /// adds `dtype` / `torch_dtype`.
    pub fn to_hf_json(&self) -> Value {
        match self.family {
            Family::Gpt2 => json!({
                "model_type": "gpt2",
                "architectures": ["GPT2LMHeadModel"],
                "vocab_size": self.vocab_size,
                "n_positions": self.max_positions,
                "n_embd": self.d_model,
                "n_layer": self.n_layers,
                "n_head": self.n_heads,
                "n_inner": self.d_ff,
                "layer_norm_epsilon": self.norm_eps,
                "activation_function": match self.activation {
                    Activation::Gelu => "gelu",
                    Activation::Relu => "relu",
                    _ => "gelu_new",
                },
                "tie_word_embeddings": self.tie_embeddings,
                "resid_pdrop": 0.0, "embd_pdrop": 0.0, "attn_pdrop": 0.0,
                // Written even when unknown (`null`): GPT2Config would default both
                // BOS and EOS to 50256, GPT-2's own `<|endoftext|>`.
                "bos_token_id": null,
                "eos_token_id": self.eos_token_id,
                "pad_token_id": self.pad_token_id,
            }),
            Family::Llama => self.rope_decoder_to_hf(),
            Family::Bert => crate::hf_bert::config_to_hf(self),
            Family::T5 => crate::hf_t5::config_to_hf(self),
        }
    }

    /// The class-name prefix of Hugging Face architectures for this model (`GPT2`,
    /// `Llama`, `Qwen2`, `Qwen3`, `Bert`, `T5`).
    pub fn hf_arch_prefix(&self) -> &'static str {
        match (self.family, self.hf_model_type.as_deref()) {
            (Family::Gpt2, _) => "GPT2",
            (Family::Llama, Some("qwen2")) => "Qwen2",
            (Family::Llama, Some("qwen3")) => "Qwen3",
            (Family::Llama, Some("mistral")) => "Mistral",
            (Family::Llama, Some("phi3")) => "Phi3",
            (Family::Llama, Some("gpt_neox")) => "GPTNeoX",
            (Family::Llama, Some("gemma2")) => "Gemma2",
            (Family::Llama, Some("gemma3_text")) => "Gemma3",
            (Family::Llama, Some("stablelm")) => "StableLm",
            (Family::Llama, Some("olmo2")) => "Olmo2",
            (Family::Llama, _) => "Llama",
            (Family::Bert, _) => "Bert",
            (Family::T5, _) => "T5",
        }
    }

    /// Refuses a LLaMA-layout model whose switches its Hugging Face `model_type` cannot
    /// hold (it would load with other weights or none): `llama` has no `qkv_bias`,
    /// `qk_norm`, window nor parallel residual; `mistral` and `phi3` a window but no
    /// biases; `qwen2` always q/k/v biases; `qwen3` always `qk_norm` (both may slide on some layers); `gpt_neox` is
    /// LayerNorm with an MLP bias, never gated.
    pub fn check_hf_layout(&self) -> Result<()> {
        if self.family != Family::Llama {
            return Ok(());
        }
        let t = self.hf_model_type.as_deref().unwrap_or("llama");
        let rms_swiglu = self.norm == NormKind::RmsNorm && self.activation == Activation::Swiglu;
        let full = self.rotary_fraction == 1.0;
        let plain = !self.qkv_bias && !self.qk_norm && !self.parallel_residual;
        let window = self.sliding_window.is_some();
        let per_layer = self.layer_types.is_some();
        let olmo = self.post_norms_only || self.qk_norm_whole;
        let gemma_only = (self.post_norms && t != "olmo2")
            || self.embed_scale
            || self.attn_softcap.is_some()
            || self.final_softcap.is_some()
            || self.query_pre_attn_scalar.is_some()
            || self.rope_local_theta.is_some();
        let fits = match t {
            "qwen2" => {
                rms_swiglu
                    && self.qkv_bias
                    && !self.attention_bias
                    && !self.qk_norm
                    && !self.mlp_bias
                    && !self.parallel_residual
                    && full
            }
            "qwen3" => {
                rms_swiglu
                    && self.qk_norm
                    && !self.qkv_bias
                    && !self.mlp_bias
                    && !self.parallel_residual
                    && full
            }
            "mistral" | "phi3" => {
                rms_swiglu && plain && !self.attention_bias && !self.mlp_bias && !per_layer
            }
            "gemma2" | "gemma3_text" => {
                self.norm == NormKind::RmsNorm
                    && self.activation == Activation::GegluTanh
                    && self.post_norms
                    && self.embed_scale
                    && self.qk_norm == (t == "gemma3_text")
                    && !self.qkv_bias
                    && !self.mlp_bias
                    && !self.parallel_residual
                    && full
                    && (t == "gemma3_text" || self.rope_local_theta.is_none())
            }
            "olmo2" => {
                rms_swiglu
                    && self.qk_norm
                    && self.qk_norm_whole
                    && self.post_norms
                    && self.post_norms_only
                    && !self.qkv_bias
                    && !self.mlp_bias
                    && !self.parallel_residual
                    && full
                    && !window
            }
            "stablelm" => {
                self.norm == NormKind::LayerNorm
                    && self.activation == Activation::Swiglu
                    && !self.attention_bias
                    && !self.mlp_bias
                    && self.qk_norm == self.qk_norm_heads
                    && self.parallel_residual == self.shared_norm
                    && !window
            }
            "gpt_neox" => {
                self.norm == NormKind::LayerNorm
                    && !matches!(self.activation, Activation::Swiglu | Activation::GegluTanh)
                    && self.mlp_bias
                    && !self.qkv_bias
                    && !self.qk_norm
                    && !window
                    && !self.tie_embeddings
            }
            _ => rms_swiglu && plain && !window,
        };
        // StableLM's per-head q/k LayerNorms and shared parallel norm exist in no other
        // `model_type`.
        let stablelm_only = self.qk_norm_heads || self.shared_norm;
        if fits
            && (t.starts_with("gemma") || !gemma_only)
            && (t == "olmo2" || !olmo)
            && (t == "stablelm" || !stablelm_only)
        {
            return Ok(());
        }
        Err(ModelError::Config {
            key: "hf_model_type".into(),
            message: format!(
                "a Hugging Face `{t}` model cannot hold norm = {:?}, activation = {:?}, \
                 qkv_bias = {}, qk_norm = {}, attention_bias = {}, mlp_bias = {}, \
                 rotary_fraction = {}, sliding_window = {:?}, parallel_residual = {}, \
                 tie_embeddings = {}, Gemma switches = {gemma_only}, \
                 StableLM switches = {stablelm_only}",
                self.norm,
                self.activation,
                self.qkv_bias,
                self.qk_norm,
                self.attention_bias,
                self.mlp_bias,
                self.rotary_fraction,
                self.sliding_window,
                self.parallel_residual,
                self.tie_embeddings,
            ),
        })
    }

    /// The keys every RoPE decoder's `config.json` has, in its `model_type`'s names:
    /// sizes, tying, and the special ids written even when unknown (`null`), never left
    /// to the config class's defaults (LlamaConfig: BOS 1, EOS 2).
    fn hf_common(&self, t: &str, arch: &str) -> Value {
        json!({
            "model_type": t,
            "architectures": [arch],
            "vocab_size": self.vocab_size,
            "max_position_embeddings": self.hf_max_positions(),
            "hidden_size": self.d_model,
            "num_hidden_layers": self.n_layers,
            "num_attention_heads": self.n_heads,
            "intermediate_size": self.d_ff,
            "tie_word_embeddings": self.tie_embeddings,
            "bos_token_id": null,
            "eos_token_id": self.eos_token_id,
            "pad_token_id": self.pad_token_id,
        })
    }

    /// HF `layer_types`: which layers slide.
    fn hf_layer_types(&self) -> Vec<LayerType> {
        (0..self.n_layers)
            .map(|i| match self.window_of(i) {
                Some(_) => LayerType::SlidingAttention,
                None => LayerType::FullAttention,
            })
            .collect()
    }

    /// The family's own keys of a Gemma 2 / Gemma 3 text `config.json`.
    fn gemma_keys(&self, t: &str) -> Value {
        let mut v = json!({
            "num_key_value_heads": self.kv_heads(),
            "head_dim": self.head_dim(),
            "rms_norm_eps": self.norm_eps,
            "hidden_activation": "gelu_pytorch_tanh",
            "attention_bias": self.attention_bias,
            // An int in transformers' config class (validated strictly in 5.x).
            "query_pre_attn_scalar": self.query_pre_attn_scalar.map(|q| match q.fract() == 0.0 {
                true => json!(q as u64),
                false => json!(q),
            }),
            "sliding_window": self.sliding_window,
            "layer_types": self.hf_layer_types(),
            "attn_logit_softcapping": self.attn_softcap,
            "final_logit_softcapping": self.final_softcap,
        });
        if t == "gemma3_text" {
            let mut full = match &self.rope_scaling {
                Some(s) => rope_scaling_to_hf(s),
                None => json!({"rope_type": "default"}),
            };
            full["rope_theta"] = json!(self.rope_theta);
            let local = self.rope_local_theta.unwrap_or(self.rope_theta);
            v["rope_parameters"] = json!({
                "full_attention": full,
                "sliding_attention": {"rope_type": "default", "rope_theta": local},
            });
        } else {
            v["rope_theta"] = json!(self.rope_theta);
        }
        v
    }

    /// The family's own keys of every other RoPE decoder's `config.json`.
    fn rope_decoder_keys(&self, t: &str) -> Value {
        match t {
            "stablelm" => json!({
                "num_key_value_heads": self.kv_heads(),
                "layer_norm_eps": self.norm_eps,
                "hidden_act": "silu",
                "use_qkv_bias": self.qkv_bias,
                "qk_layernorm": self.qk_norm,
                "use_parallel_residual": self.parallel_residual,
                "partial_rotary_factor": self.rotary_fraction,
                "rope_theta": self.rope_theta,
            }),
            "gpt_neox" => json!({
                "layer_norm_eps": self.norm_eps,
                "hidden_act": hf_act(self.activation),
                // transformers 4.x keys; 5.x reads them into `rope_parameters`.
                "rotary_pct": self.rotary_fraction,
                "rotary_emb_base": self.rope_theta,
                "use_parallel_residual": self.parallel_residual,
                "attention_bias": self.attention_bias,
                "hidden_dropout": 0.0, "attention_dropout": 0.0,
            }),
            _ => {
                let mut v = json!({
                    "num_key_value_heads": self.kv_heads(),
                    "head_dim": self.head_dim(),
                    "rms_norm_eps": self.norm_eps,
                    "rope_theta": self.rope_theta,
                    "attention_bias": self.attention_bias,
                    "mlp_bias": self.mlp_bias,
                    "hidden_act": "silu",
                });
                if self.rotary_fraction != 1.0 {
                    v["partial_rotary_factor"] = json!(self.rotary_fraction);
                }
                match t {
                    "mistral" | "phi3" => v["sliding_window"] = json!(self.sliding_window),
                    "qwen2" | "qwen3" => {
                        v["use_sliding_window"] = json!(self.sliding_window.is_some());
                        v["sliding_window"] = json!(self.sliding_window);
                        // The layers from `max_window_layers` on slide; `layer_types`
                        // says it exactly (transformers ≥ 4.53 reads it first).
                        let types = self.hf_layer_types();
                        let first = types
                            .iter()
                            .position(|t| *t == LayerType::SlidingAttention)
                            .unwrap_or(self.n_layers);
                        v["max_window_layers"] = json!(first);
                        v["layer_types"] = json!(types);
                    }
                    _ => {}
                }
                if let Some(scaling) = &self.rope_scaling {
                    v["rope_scaling"] = rope_scaling_to_hf(scaling);
                    // Phi3Config reads the original length at the top level (its default
                    // is 4096), over the copy inside the RoPE parameters.
                    if scaling.kind == RopeScalingKind::LongRope {
                        v["original_max_position_embeddings"] =
                            json!(scaling.original_max_position_embeddings);
                    }
                }
                v
            }
        }
    }

    /// `config.json` of a RoPE decoder: the common keys and its family's own.
    fn rope_decoder_to_hf(&self) -> Value {
        let t = self.hf_model_type.as_deref().unwrap_or("llama");
        let arch = format!("{}ForCausalLM", self.hf_arch_prefix());
        let mut v = self.hf_common(t, &arch);
        let own = match t.starts_with("gemma") {
            true => self.gemma_keys(t),
            false => self.rope_decoder_keys(t),
        };
        if let (Some(v), Value::Object(own)) = (v.as_object_mut(), own) {
            v.extend(own);
        }
        v
    }

    /// A config with the family-specific options unset, for struct-update syntax.
    pub(crate) fn empty(family: Family) -> Self {
        Self {
            family,
            vocab_size: 0,
            max_positions: 0,
            d_model: 0,
            n_layers: 0,
            n_heads: 0,
            n_kv_heads: None,
            head_dim: None,
            d_ff: 0,
            positions: Positions::Learned,
            norm: NormKind::LayerNorm,
            norm_eps: default_norm_eps(),
            activation: Activation::Gelu,
            attention_bias: false,
            qkv_bias: false,
            qk_norm: false,
            mlp_bias: false,
            rope_theta: default_rope_theta(),
            rope_scaling: None,
            rotary_fraction: default_rotary_fraction(),
            sliding_window: None,
            layer_types: None,
            parallel_residual: false,
            shared_norm: false,
            post_norms: false,
            post_norms_only: false,
            qk_norm_whole: false,
            qk_norm_heads: false,
            embed_scale: false,
            attn_softcap: None,
            final_softcap: None,
            query_pre_attn_scalar: None,
            rope_local_theta: None,
            tie_embeddings: false,
            dropout: 0.0,
            type_vocab_size: None,
            num_labels: None,
            n_decoder_layers: None,
            relative_attention_num_buckets: None,
            relative_attention_max_distance: None,
            scale_decoder_outputs: None,
            hf_model_type: None,
            pad_token_id: None,
            eos_token_id: None,
            decoder_start_token_id: None,
        }
    }
}

/// The Hugging Face `hidden_act` of a non-gated activation.
fn hf_act(a: Activation) -> &'static str {
    match a {
        Activation::Gelu => "gelu",
        Activation::Relu => "relu",
        _ => "gelu_new",
    }
}

/// A non-gated activation from `hidden_act` / `activation_function` (`key`).
fn act_from_hf(v: &Value, key: &str, default: &str) -> Result<Activation> {
    match v.get(key).and_then(Value::as_str).unwrap_or(default) {
        "gelu_new" | "gelu_pytorch_tanh" | "gelu_fast" => Ok(Activation::GeluTanh),
        "gelu" => Ok(Activation::Gelu),
        "relu" => Ok(Activation::Relu),
        other => Err(ModelError::Config {
            key: key.into(),
            message: format!("unsupported `{other}` (supported: gelu, gelu_new, relu)"),
        }),
    }
}

/// A RoPE decoder's `config.json` (`llama`, `mistral`, `qwen2`, `qwen3`, `phi3`,
/// `gpt_neox`): one reader, the keys that differ by `model_type` chosen here.
fn rope_decoder_from_hf(v: &Value) -> Result<ModelConfig> {
    let t = v
        .get("model_type")
        .and_then(Value::as_str)
        .unwrap_or("llama");
    let neox = t == "gpt_neox";
    // transformers 5 writes `rope_parameters` (with `rope_theta` and
    // `partial_rotary_factor` inside), 4.x `rope_scaling` beside top-level keys.
    let rope = ["rope_parameters", "rope_scaling"]
        .into_iter()
        .find_map(|k| v.get(k).filter(|r| !r.is_null()).map(|r| (k, r)));
    let inner = |name: &str| rope.and_then(|(_, r)| r.get(name)).and_then(Value::as_f64);
    let (theta_key, fraction_key, fraction_default) = if neox {
        ("rotary_emb_base", "rotary_pct", 0.25)
    } else {
        ("rope_theta", "partial_rotary_factor", 1.0)
    };
    let theta = match inner("rope_theta") {
        Some(t) => t,
        None => opt(v, theta_key)?.unwrap_or(default_rope_theta()),
    };
    let rotary_fraction = match inner("partial_rotary_factor") {
        Some(f) => f,
        None => opt(v, fraction_key)?.unwrap_or(fraction_default),
    };
    let rope_scaling = match rope {
        Some((key, r)) => rope_scaling_from_hf(v, key, r)?,
        None => None,
    };
    let (sliding_window, layer_types) = window_from_hf(v, t)?;
    // Dynamic NTK exists to read past `max_position_embeddings`: manabi's limit is
    // `factor` times it (transformers sets none).
    let max_positions: usize = get(v, "max_position_embeddings")?;
    let max_positions = match &rope_scaling {
        Some(s) if s.kind == RopeScalingKind::Dynamic && s.factor > 1.0 => {
            (max_positions as f64 * s.factor).ceil() as usize
        }
        _ => max_positions,
    };
    let base = ModelConfig {
        family: Family::Llama,
        vocab_size: get(v, "vocab_size")?,
        max_positions,
        d_model: get(v, "hidden_size")?,
        n_layers: get(v, "num_hidden_layers")?,
        n_heads: get(v, "num_attention_heads")?,
        d_ff: get(v, "intermediate_size")?,
        positions: Positions::Rope,
        rope_theta: theta,
        rope_scaling,
        rotary_fraction,
        sliding_window,
        layer_types,
        hf_model_type: (t != "llama").then(|| t.to_string()),
        dropout: 0.0,
        ..ModelConfig::empty(Family::Llama)
    };
    if t.starts_with("gemma") {
        return gemma_from_hf(v, t, base);
    }
    if t == "stablelm" {
        return stablelm_from_hf(v, base);
    }
    if t == "olmo2" {
        // Norms only after attention and MLP, RMSNorm over the whole q / k projections.
        return Ok(ModelConfig {
            n_kv_heads: opt(v, "num_key_value_heads")?,
            norm: NormKind::RmsNorm,
            norm_eps: opt(v, "rms_norm_eps")?.unwrap_or(1e-5),
            activation: Activation::Swiglu,
            attention_bias: opt(v, "attention_bias")?.unwrap_or(false),
            qk_norm: true,
            qk_norm_whole: true,
            post_norms: true,
            post_norms_only: true,
            tie_embeddings: opt(v, "tie_word_embeddings")?.unwrap_or(false),
            ..base
        });
    }
    if neox {
        return Ok(ModelConfig {
            norm: NormKind::LayerNorm,
            norm_eps: opt(v, "layer_norm_eps")?.unwrap_or(1e-5),
            activation: act_from_hf(v, "hidden_act", "gelu")?,
            attention_bias: opt(v, "attention_bias")?.unwrap_or(true),
            mlp_bias: true,
            parallel_residual: opt(v, "use_parallel_residual")?.unwrap_or(true),
            tie_embeddings: opt(v, "tie_word_embeddings")?.unwrap_or(false),
            ..base
        });
    }
    let qwen = t.starts_with("qwen");
    Ok(ModelConfig {
        n_kv_heads: opt(v, "num_key_value_heads")?,
        head_dim: opt(v, "head_dim")?,
        norm: NormKind::RmsNorm,
        norm_eps: opt(v, "rms_norm_eps")?.unwrap_or(1e-6),
        activation: Activation::Swiglu,
        // Qwen2 has no `attention_bias` key: q/k/v always, o_proj never. Mistral and
        // Phi-3 have no biases.
        attention_bias: matches!(t, "llama" | "qwen3")
            && opt(v, "attention_bias")?.unwrap_or(false),
        qkv_bias: t == "qwen2",
        qk_norm: t == "qwen3",
        mlp_bias: !qwen && t == "llama" && opt(v, "mlp_bias")?.unwrap_or(false),
        tie_embeddings: opt(v, "tie_word_embeddings")?.unwrap_or(false),
        ..base
    })
}

/// Gemma 2 / Gemma 3 text: gated GELU (tanh), (1 + w) RMS norms (the offset is added on
/// import, `hf.rs`), norms after attention and MLP, embeddings × √d, soft caps,
/// `query_pre_attn_scalar`, alternating sliding / full layers; Gemma 3 adds the per-head
/// q/k norm and a second RoPE base for its sliding layers. Absent keys take the config
/// classes' defaults (transformers 5.25).
fn gemma_from_hf(v: &Value, t: &str, base: ModelConfig) -> Result<ModelConfig> {
    let gemma3 = t == "gemma3_text";
    let act_key = match v.get("hidden_activation").is_some_and(|a| !a.is_null()) {
        true => "hidden_activation",
        false => "hidden_act",
    };
    let activation = match act_from_hf(v, act_key, "gelu_pytorch_tanh")? {
        Activation::GeluTanh => Activation::GegluTanh,
        _ => {
            return Err(ModelError::Config {
                key: act_key.into(),
                message: "Gemma's gated MLP is read with gelu_pytorch_tanh only".into(),
            });
        }
    };
    let n: usize = get(v, "num_hidden_layers")?;
    let every: usize = match gemma3 {
        true => opt(v, "sliding_window_pattern")?.unwrap_or(6),
        false => 2,
    };
    let layer_types = match opt::<Vec<LayerType>>(v, "layer_types")? {
        Some(types) => types,
        None => (0..n)
            .map(|i| match (i + 1) % every.max(1) != 0 {
                true => LayerType::SlidingAttention,
                false => LayerType::FullAttention,
            })
            .collect(),
    };
    let softcap = |key: &str, default: Option<f64>| -> Result<Option<f64>> {
        match v.get(key) {
            None => Ok(default),
            Some(_) => opt(v, key),
        }
    };
    let mut cfg = ModelConfig {
        n_kv_heads: opt(v, "num_key_value_heads")?,
        head_dim: Some(opt(v, "head_dim")?.unwrap_or(256)),
        norm: NormKind::RmsNorm,
        norm_eps: opt(v, "rms_norm_eps")?.unwrap_or(1e-6),
        activation,
        attention_bias: opt(v, "attention_bias")?.unwrap_or(false),
        qk_norm: gemma3,
        post_norms: true,
        embed_scale: true,
        attn_softcap: softcap("attn_logit_softcapping", (!gemma3).then_some(50.0))?,
        final_softcap: softcap("final_logit_softcapping", (!gemma3).then_some(30.0))?,
        query_pre_attn_scalar: Some(opt(v, "query_pre_attn_scalar")?.unwrap_or(256.0)),
        sliding_window: Some(opt(v, "sliding_window")?.unwrap_or(4096)),
        layer_types: Some(layer_types),
        tie_embeddings: opt(v, "tie_word_embeddings")?.unwrap_or(true),
        ..base
    };
    if gemma3 {
        gemma3_rope(v, &mut cfg)?;
    }
    Ok(cfg)
}

/// StableLM (2): LayerNorm with bias, SwiGLU, partial rotary (default 0.25), biases on
/// q/k/v with `use_qkv_bias`; `use_parallel_residual` is a parallel residual whose
/// attention and MLP share one norm (`shared_norm`), `qk_layernorm` a bias-free
/// LayerNorm per head with weights of its own (`qk_norm_heads`).
fn stablelm_from_hf(v: &Value, base: ModelConfig) -> Result<ModelConfig> {
    let parallel = opt::<bool>(v, "use_parallel_residual")?.unwrap_or(false);
    let qk_norm = opt::<bool>(v, "qk_layernorm")?.unwrap_or(false);
    if v.get("hidden_act")
        .and_then(Value::as_str)
        .unwrap_or("silu")
        != "silu"
    {
        return Err(ModelError::Config {
            key: "hidden_act".into(),
            message: "stablelm is read with silu (SwiGLU) only".into(),
        });
    }
    let rotary_fraction = match v
        .get("rope_parameters")
        .and_then(|r| r.get("partial_rotary_factor"))
        .and_then(Value::as_f64)
    {
        Some(f) => f,
        None => opt(v, "partial_rotary_factor")?.unwrap_or(0.25),
    };
    Ok(ModelConfig {
        n_kv_heads: opt(v, "num_key_value_heads")?,
        norm: NormKind::LayerNorm,
        norm_eps: opt(v, "layer_norm_eps")?.unwrap_or(1e-5),
        activation: Activation::Swiglu,
        qkv_bias: opt(v, "use_qkv_bias")?.unwrap_or(false),
        parallel_residual: parallel,
        shared_norm: parallel,
        qk_norm,
        qk_norm_heads: qk_norm,
        rotary_fraction,
        tie_embeddings: opt(v, "tie_word_embeddings")?.unwrap_or(false),
        ..base
    })
}

/// Gemma 3's two RoPE bases: transformers 5 nests `rope_parameters` by layer type
/// (`full_attention` carries the scaling), 4.x has `rope_theta` (default 1e6),
/// `rope_local_base_freq` (default 1e4) and `rope_scaling` for the full layers.
fn gemma3_rope(v: &Value, cfg: &mut ModelConfig) -> Result<()> {
    let nested = v
        .get("rope_parameters")
        .filter(|r| r.get("full_attention").is_some() || r.get("sliding_attention").is_some());
    let Some(r) = nested else {
        cfg.rope_theta = opt(v, "rope_theta")?.unwrap_or(1_000_000.0);
        cfg.rope_local_theta = Some(opt(v, "rope_local_base_freq")?.unwrap_or(10_000.0));
        cfg.rope_scaling = match v.get("rope_scaling").filter(|r| !r.is_null()) {
            Some(s) => rope_scaling_from_hf(v, "rope_scaling", s)?,
            None => None,
        };
        return Ok(());
    };
    let full = &r["full_attention"];
    let local = &r["sliding_attention"];
    cfg.rope_theta =
        opt_in::<f64>(full, "rope_parameters.full_attention", "rope_theta")?.unwrap_or(1_000_000.0);
    cfg.rope_scaling = match full.is_object() {
        true => rope_scaling_from_hf(v, "rope_parameters.full_attention", full)?,
        false => None,
    };
    let key = "rope_parameters.sliding_attention";
    if local.is_object() && rope_scaling_from_hf(v, key, local)?.is_some() {
        return Err(ModelError::Config {
            key: format!("{key}.rope_type"),
            message: "RoPE scaling of the sliding layers is not supported".into(),
        });
    }
    cfg.rope_local_theta = Some(opt_in::<f64>(local, key, "rope_theta")?.unwrap_or(10_000.0));
    Ok(())
}

/// The sliding window of a `config.json` and which layers it applies to: Mistral and
/// Phi-3 every layer when `sliding_window` is set; Qwen2 and Qwen3 only with
/// `use_sliding_window`, the layers `layer_types` names (else those from
/// `max_window_layers` on, as transformers' `Qwen2Config` derives them); Llama and
/// GPT-NeoX have none.
fn window_from_hf(v: &Value, t: &str) -> Result<(Option<usize>, Option<Vec<LayerType>>)> {
    match t {
        "mistral" | "phi3" => Ok((opt(v, "sliding_window")?, None)),
        "qwen2" | "qwen3" => {
            if !opt::<bool>(v, "use_sliding_window")?.unwrap_or(false) {
                return Ok((None, None));
            }
            let Some(window) = opt::<usize>(v, "sliding_window")? else {
                return Ok((None, None));
            };
            let n: usize = get(v, "num_hidden_layers")?;
            let types = match opt::<Vec<LayerType>>(v, "layer_types")? {
                Some(types) => types,
                None => {
                    let from: usize = opt(v, "max_window_layers")?.unwrap_or(28);
                    (0..n)
                        .map(|i| match i >= from {
                            true => LayerType::SlidingAttention,
                            false => LayerType::FullAttention,
                        })
                        .collect()
                }
            };
            Ok((Some(window), Some(types)))
        }
        _ => Ok((None, None)),
    }
}

impl ModelConfig {
    /// `max_position_embeddings` of `config.json`: for dynamic NTK the length it scales
    /// past (manabi's own limit is `factor` times it), else `max_positions`.
    fn hf_max_positions(&self) -> usize {
        match &self.rope_scaling {
            Some(s) if s.kind == RopeScalingKind::Dynamic => {
                s.max_position_embeddings.unwrap_or(self.max_positions)
            }
            _ => self.max_positions,
        }
    }
}

/// The RoPE scaling of a LLaMA-layout `config.json`, from its `rope_parameters` or
/// `rope_scaling` object `r` (named `key` in errors): `rope_type` (older files: `type`)
/// `default` or absent is none; `linear` and `llama3` are read with the parameters
/// transformers uses; any other kind is refused, naming the supported ones.
fn rope_scaling_from_hf(v: &Value, key: &str, r: &Value) -> Result<Option<RopeScaling>> {
    let Some((kind_key, kind)) = ["rope_type", "type"]
        .into_iter()
        .find_map(|k| r.get(k).filter(|t| !t.is_null()).map(|t| (k, t)))
    else {
        return Ok(None);
    };
    let unsupported = |what: String| ModelError::Config {
        key: format!("{key}.{kind_key}"),
        message: format!(
            "RoPE scaling {what} is not supported (supported: default, {})",
            ROPE_SCALING_KINDS.join(", ")
        ),
    };
    let kind = match kind.as_str() {
        Some("default") => return Ok(None),
        Some("linear") => RopeScalingKind::Linear,
        Some("llama3") => RopeScalingKind::Llama3,
        Some("yarn") => RopeScalingKind::Yarn,
        Some("dynamic") => RopeScalingKind::Dynamic,
        Some("longrope") => RopeScalingKind::LongRope,
        Some(other) => return Err(unsupported(format!("`{other}`"))),
        None => return Err(unsupported(kind.to_string())),
    };
    let missing = |name: &str| ModelError::Config {
        key: format!("{key}.{name}"),
        message: format!("missing (`{}` needs it)", kind.as_str()),
    };
    let factor = opt_in::<f64>(r, key, "factor")?;
    if kind == RopeScalingKind::LongRope {
        return longrope_from_hf(v, key, r, factor);
    }
    let factor = factor.ok_or_else(|| missing("factor"))?;
    let mut scaling = RopeScaling {
        kind,
        factor,
        ..RopeScaling::default()
    };
    if kind == RopeScalingKind::Dynamic {
        scaling.max_position_embeddings = Some(
            opt::<usize>(v, "max_position_embeddings")?
                .ok_or_else(|| missing("max_position_embeddings"))?,
        );
    }
    if matches!(kind, RopeScalingKind::Llama3 | RopeScalingKind::Yarn) {
        // As transformers' `standardize_rope_params`: a top-level key first, then the
        // object's, then `max_position_embeddings`.
        let name = "original_max_position_embeddings";
        let top = opt::<usize>(v, name)?;
        let inner = opt_in::<usize>(r, key, name)?;
        let max = opt::<usize>(v, "max_position_embeddings")?;
        scaling.original_max_position_embeddings = top.or(inner).or(max);
    }
    if kind == RopeScalingKind::Llama3 {
        scaling.low_freq_factor = opt_in(r, key, "low_freq_factor")?;
        scaling.high_freq_factor = opt_in(r, key, "high_freq_factor")?;
    }
    if kind == RopeScalingKind::Yarn {
        scaling.beta_fast = opt_in(r, key, "beta_fast")?;
        scaling.beta_slow = opt_in(r, key, "beta_slow")?;
        scaling.attention_factor = opt_in(r, key, "attention_factor")?;
        scaling.mscale = opt_in(r, key, "mscale")?;
        scaling.mscale_all_dim = opt_in(r, key, "mscale_all_dim")?;
        scaling.truncate = opt_in(r, key, "truncate")?;
    }
    Ok(Some(scaling))
}

/// LongRoPE (Phi-3 and later): `long_factor` / `short_factor` from the object, the
/// original context from the top level or the object (transformers 5's
/// `standardize_rope_params`), `factor` when given, else `max_position_embeddings /
/// original` (Phi-3's own rule), `attention_factor` when given.
fn longrope_from_hf(
    v: &Value,
    key: &str,
    r: &Value,
    factor: Option<f64>,
) -> Result<Option<RopeScaling>> {
    let name = "original_max_position_embeddings";
    let original = match opt::<usize>(v, name)? {
        Some(o) => o,
        None => opt_in::<usize>(r, key, name)?.ok_or_else(|| ModelError::Config {
            key: format!("{key}.{name}"),
            message: "missing (`longrope` needs it)".into(),
        })?,
    };
    let max = opt::<usize>(v, "max_position_embeddings")?;
    let factor = match (factor, max) {
        (Some(f), _) => f,
        (None, Some(m)) if original > 0 => m as f64 / original as f64,
        _ => 1.0,
    };
    let list = |name: &str| -> Result<Vec<f64>> {
        opt_in::<Vec<f64>>(r, key, name)?.ok_or_else(|| ModelError::Config {
            key: format!("{key}.{name}"),
            message: "missing (`longrope` needs it)".into(),
        })
    };
    Ok(Some(RopeScaling {
        kind: RopeScalingKind::LongRope,
        factor,
        original_max_position_embeddings: Some(original),
        long_factor: Some(list("long_factor")?),
        short_factor: Some(list("short_factor")?),
        attention_factor: opt_in(r, key, "attention_factor")?,
        ..RopeScaling::default()
    }))
}

/// The value of `name` in the object `r` (itself the value of `key`), errors naming
/// `key.name`.
fn opt_in<T: serde::de::DeserializeOwned>(r: &Value, key: &str, name: &str) -> Result<Option<T>> {
    opt(r, name).map_err(|e| match e {
        ModelError::Config { message, .. } => ModelError::Config {
            key: format!("{key}.{name}"),
            message,
        },
        e => e,
    })
}

/// `rope_scaling` as transformers ≥ 4.45 reads it (5.x too, as `rope_parameters` beside
/// the top-level `rope_theta`).
fn rope_scaling_to_hf(s: &RopeScaling) -> Value {
    let mut v = json!({
        "rope_type": s.kind.as_str(),
        "factor": s.factor,
    });
    if s.kind == RopeScalingKind::Llama3 {
        v["low_freq_factor"] = json!(s.low_freq_factor);
        v["high_freq_factor"] = json!(s.high_freq_factor);
    }
    if matches!(
        s.kind,
        RopeScalingKind::Llama3 | RopeScalingKind::Yarn | RopeScalingKind::LongRope
    ) {
        v["original_max_position_embeddings"] = json!(s.original_max_position_embeddings);
    }
    if s.kind == RopeScalingKind::LongRope {
        v["long_factor"] = json!(s.long_factor);
        v["short_factor"] = json!(s.short_factor);
    }
    for (k, x) in [
        ("beta_fast", s.beta_fast),
        ("beta_slow", s.beta_slow),
        ("attention_factor", s.attention_factor),
        ("mscale", s.mscale),
        ("mscale_all_dim", s.mscale_all_dim),
    ] {
        if let Some(x) = x {
            v[k] = json!(x);
        }
    }
    if let Some(t) = s.truncate {
        v["truncate"] = json!(t);
    }
    v
}
