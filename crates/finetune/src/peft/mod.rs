//! Parameter-efficient fine-tuning: which parameters of a decoder train. `[peft]` of a
//! recipe picks the method; it is saved as `peft.toml` in every checkpoint so loading,
//! `--resume`, `generate`, `eval` and `export` rebuild the adapted model.
//!
//! - `full`: every parameter trains.
//! - `lora` (Hu et al. 2021; rsLoRA, Kalajdzievski 2023): burn's `apply_lora` on the
//!   target modules named as in Hugging Face (`q_proj`, `c_attn`, …); PEFT format in and
//!   out ([`lora`]).
//! - `bitfit` (Ben Zaken et al. 2022): biases only.
//! - `ia3` (Liu et al. 2022): learned rescaling of activations ([`ia3`]), PEFT format.
//! - `prompt` (Lester et al. 2021): a soft prompt ([`prompt`]), PEFT format.
//! - `prefix` (Li & Liang 2021): learned keys and values at every layer ([`prefix`]),
//!   optionally made by an MLP while training; PEFT format.
//! - `houlsby` / `pfeiffer` bottleneck adapters (Houlsby et al. 2019; Pfeiffer et al.
//!   2021): after attention and MLP, or after the MLP only.

pub mod ia3;
pub mod lora;
pub mod prefix;
pub mod prompt;

use burn::module::{Module, ParamGroup, ParamId};
use manabi_model::DecoderLm;
use serde::{Deserialize, Serialize};

use crate::error::{FinetuneError, Result};

/// The PEFT method.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Method {
    /// Full fine-tuning.
    #[default]
    Full,
    /// Low-rank adapters on the target modules.
    Lora,
    /// Learned rescaling vectors (IA³).
    Ia3,
    /// A trainable soft prompt before the input (prompt tuning).
    Prompt,
    /// Trainable keys and values before the input at every layer (prefix tuning).
    Prefix,
    /// Biases only.
    Bitfit,
    /// Bottleneck adapters after attention and after the MLP.
    Houlsby,
    /// A bottleneck adapter after the MLP only.
    Pfeiffer,
}

/// `[peft]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PeftConfig {
    /// Method.
    pub method: Method,
    /// LoRA rank.
    pub r: usize,
    /// LoRA α: the update is scaled by α / r (α / √r with `rslora`).
    pub alpha: f64,
    /// LoRA dropout on the adapter's input while training (PEFT's `lora_dropout`), in
    /// [0, 1).
    pub dropout: f64,
    /// LoRA target modules by Hugging Face name (`q_proj`, `v_proj`, `c_attn`, …).
    pub targets: Vec<String>,
    /// Rank-stabilised scaling α / √r.
    pub rslora: bool,
    /// Prompt and prefix tuning: virtual tokens prepended to the input.
    pub virtual_tokens: usize,
    /// Prompt tuning: start the soft prompt from the embeddings of this text's tokens,
    /// repeated or cut to `virtual_tokens` (PEFT's `prompt_tuning_init = "TEXT"`, except
    /// that no special token is added: PEFT's tokenizer call adds a BOS where the
    /// tokenizer's template has one); empty: from vocabulary rows spread over the table.
    pub prompt_init_text: String,
    /// Prefix tuning: make the prefix with a two-layer MLP while training (PEFT's
    /// `prefix_projection`; exports write its output).
    pub prefix_projection: bool,
    /// IA³: the target modules whose input (not output) is scaled.
    pub feedforward: Vec<String>,
    /// Bottleneck width of `houlsby` / `pfeiffer` adapters.
    pub adapter_size: usize,
}

impl Default for PeftConfig {
    fn default() -> Self {
        Self {
            method: Method::Full,
            r: 8,
            alpha: 16.0,
            dropout: 0.0,
            targets: vec!["q_proj".into(), "v_proj".into()],
            rslora: false,
            virtual_tokens: 8,
            prompt_init_text: String::new(),
            prefix_projection: false,
            feedforward: vec!["down_proj".into()],
            adapter_size: 16,
        }
    }
}

impl PeftConfig {
    /// The factor LoRA's update is multiplied by.
    pub fn lora_scale(&self) -> f64 {
        if self.rslora {
            self.alpha / (self.r as f64).sqrt()
        } else {
            self.alpha / self.r as f64
        }
    }

    /// Checks values the types do not.
    pub fn validate(&self) -> Result<()> {
        if self.method == Method::Lora {
            if self.r == 0 {
                return Err(FinetuneError::config(
                    "peft.r",
                    "LoRA rank must be at least 1",
                ));
            }
            if !(self.alpha > 0.0 && self.alpha.is_finite()) {
                return Err(FinetuneError::config("peft.alpha", "must be positive"));
            }
            if !(0.0..1.0).contains(&self.dropout) {
                return Err(FinetuneError::config(
                    "peft.dropout",
                    format!("{} is not in [0, 1)", self.dropout),
                ));
            }
            if self.targets.is_empty() {
                return Err(FinetuneError::config("peft.targets", "no target modules"));
            }
        }
        if self.method == Method::Ia3 && self.targets.is_empty() {
            return Err(FinetuneError::config("peft.targets", "no target modules"));
        }
        if self.method != Method::Prompt && !self.prompt_init_text.is_empty() {
            return Err(FinetuneError::config(
                "peft.prompt_init_text",
                "only prompt tuning starts from a text (method = \"prompt\")",
            ));
        }
        if matches!(self.method, Method::Prompt | Method::Prefix) && self.virtual_tokens == 0 {
            return Err(FinetuneError::config(
                "peft.virtual_tokens",
                "must be at least 1",
            ));
        }
        if matches!(self.method, Method::Houlsby | Method::Pfeiffer) && self.adapter_size == 0 {
            return Err(FinetuneError::config(
                "peft.adapter_size",
                "must be at least 1",
            ));
        }
        Ok(())
    }

    /// Refuses the methods a sequence or token head cannot use: prompt and prefix tuning
    /// act through the language model's own forward pass, which a head's body skips.
    pub fn validate_for_head(&self) -> Result<()> {
        self.validate()?;
        if self.virtual_positions() > 0 {
            return Err(FinetuneError::config(
                "peft.method",
                format!(
                    "{:?} tuning is for generation (a head reads the body's hidden states without virtual tokens); choose full, lora, ia3, bitfit, houlsby or pfeiffer",
                    self.method
                ),
            ));
        }
        Ok(())
    }

    /// Positions the method takes before the first real token.
    pub fn virtual_positions(&self) -> usize {
        match self.method {
            Method::Prompt | Method::Prefix => self.virtual_tokens,
            _ => 0,
        }
    }

    /// The `peft.toml` text saved in checkpoints.
    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).unwrap_or_default()
    }
}

/// Adapts `model` (on the training device) for `cfg`: afterwards only the method's
/// parameters require gradients.
pub fn apply(model: DecoderLm, cfg: &PeftConfig) -> Result<DecoderLm> {
    cfg.validate()?;
    match cfg.method {
        Method::Full => Ok(model),
        Method::Lora => lora::apply(model, cfg),
        Method::Ia3 => ia3::apply(model, cfg),
        Method::Prompt => prompt::apply(model, cfg),
        Method::Prefix => prefix::apply(model, cfg),
        Method::Bitfit => {
            let ids = bias_ids(&model);
            if ids.is_empty() {
                return Err(FinetuneError::config(
                    "peft.method",
                    "bitfit trains biases, and this model has none (LLaMA without attention_bias/mlp_bias); choose lora or houlsby",
                ));
            }
            Ok(model.freeze().unfreeze_group(ParamGroup::from_ids(ids)))
        }
        Method::Houlsby | Method::Pfeiffer => {
            let device = model.embed_tokens.weight.device();
            let d = model.config().d_model;
            let mut model = model.freeze();
            let mut ids = Vec::new();
            let mut new_adapter = || {
                let a = manabi_model::adapter::Adapter::new(d, cfg.adapter_size, &device);
                ids.extend([a.down.weight.id, a.up.weight.id]);
                ids.extend(a.down.bias.iter().chain(&a.up.bias).map(|b| b.id));
                a
            };
            for block in &mut model.layers {
                if cfg.method == Method::Houlsby {
                    block.attn_adapter = Some(new_adapter());
                }
                block.mlp_adapter = Some(new_adapter());
            }
            Ok(model.unfreeze_group(ParamGroup::from_ids(ids)))
        }
    }
}

/// Writes the adapter of `model` in the PEFT format (LoRA, IA³, prompt, prefix).
pub fn save_adapter(model: &DecoderLm, cfg: &PeftConfig, dir: &std::path::Path) -> Result<()> {
    match cfg.method {
        Method::Lora => lora::save_peft(model, cfg, dir),
        Method::Ia3 => ia3::save_peft(model, cfg, dir),
        Method::Prompt => prompt::save_peft(model, dir),
        Method::Prefix => prefix::save_peft(model, dir),
        m => Err(FinetuneError::config(
            "peft.method",
            format!(
                "{m:?} has no PEFT format; keep the manabi checkpoint or export merged weights"
            ),
        )),
    }
}

/// Loads a PEFT adapter folder (`adapter_config.json` + `adapter_model.safetensors`:
/// LoRA, IA³, prompt or prefix tuning) onto the plain base `model`.
pub fn load_adapter(model: DecoderLm, dir: &std::path::Path) -> Result<(DecoderLm, PeftConfig)> {
    let path = dir.join("adapter_config.json");
    let text = std::fs::read_to_string(&path).map_err(|e| FinetuneError::io(&path, e))?;
    let v: serde_json::Value = serde_json::from_str(&text).map_err(|e| FinetuneError::Adapter {
        path: path.clone(),
        message: format!("not valid JSON: {e}"),
    })?;
    match v["peft_type"].as_str() {
        Some("IA3") => {
            let cfg = ia3::config_of(&v).map_err(|message| FinetuneError::Adapter {
                path: path.clone(),
                message,
            })?;
            Ok((ia3::load(model, &cfg, dir)?, cfg))
        }
        Some("PROMPT_TUNING") => prompt::load(model, &v, dir),
        Some("PREFIX_TUNING") => prefix::load(model, &v, dir),
        _ => lora::load_peft(model, dir),
    }
}

/// [`apply`], with `tokenizer` encoding `cfg.prompt_init_text` when prompt tuning starts
/// from a text.
pub fn apply_with_tokenizer(
    model: DecoderLm,
    cfg: &PeftConfig,
    tokenizer: &manabi_tokenize::TextTokenizer,
) -> Result<DecoderLm> {
    if cfg.method != Method::Prompt || cfg.prompt_init_text.is_empty() {
        return apply(model, cfg);
    }
    cfg.validate()?;
    let ids = tokenizer.encode(&cfg.prompt_init_text)?;
    if ids.is_empty() {
        return Err(FinetuneError::config(
            "peft.prompt_init_text",
            "the text encodes to no tokens",
        ));
    }
    prompt::apply_from_tokens(model, cfg, &ids)
}

/// Builds the adapter structure of `cfg` on `model` for loading saved weights into it
/// (the values come from the checkpoint).
pub fn rebuild(model: DecoderLm, cfg: &PeftConfig) -> Result<DecoderLm> {
    apply(model, cfg)
}

/// Ids of every `Linear` bias and norm shift (β) of `model`.
fn bias_ids(model: &DecoderLm) -> Vec<ParamId> {
    let mut ids = Vec::new();
    for (_, lin) in manabi_model::hf_names::decoder_linears(model) {
        if let Some(b) = &lin.bias {
            ids.push(b.id);
        }
    }
    let norms = model
        .layers
        .iter()
        .flat_map(|b| [&b.attn_norm, &b.mlp_norm])
        .chain([&model.final_norm]);
    for n in norms {
        if let manabi_model::decoder::Norm::Layer(ln) = n
            && let Some(beta) = &ln.beta
        {
            ids.push(beta.id);
        }
    }
    ids
}

/// Trainable and total parameter counts, as every method prints them.
pub fn describe<M: Module>(model: &M) -> (usize, usize) {
    (
        manabi_objectives::model::trainable_params(model),
        model.num_params(),
    )
}
