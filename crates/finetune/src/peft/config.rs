//! What `[peft]` says: the [`Method`] and its settings ([`PeftConfig`], saved as
//! [`PEFT_FILE`] in every adapted checkpoint), checked before any method is applied.

use serde::{Deserialize, Serialize};

use crate::error::{FinetuneError, Result};

/// The spec file an adapted checkpoint carries besides `model.toml`.
pub const PEFT_FILE: &str = "peft.toml";

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

/// The name `peft.method` takes (`lora`, `ia3`, …), for messages.
impl std::fmt::Display for Method {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&format!("{self:?}").to_lowercase())
    }
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
                    "`{}` tuning is for generation (a head reads the body's hidden states without virtual tokens); choose full, lora, ia3, bitfit, houlsby or pfeiffer",
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
