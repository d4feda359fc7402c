//! The SFT recipe (`configs/sft/*.toml`): `[run]`, `[model]`, `[data]`, `[template]`,
//! `[peft]`, `[train]`, `[eval]`. Unknown keys are errors; a value of the wrong type names
//! its `section.key` and line; `--set section.key=value` overrides before checking.

use std::path::PathBuf;

use manabi_objectives::config::{Recipe, RunConfig, TrainConfig};
use serde::{Deserialize, Serialize};

use crate::error::{FinetuneError, Result};
use crate::peft::PeftConfig;
use crate::sft::data::{FieldMap, Format};
use crate::sft::template::TemplateConfig;

/// A whole SFT recipe.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SftConfig {
    /// Output folder, device, seed.
    #[serde(default)]
    pub run: RunConfig,
    /// The base model.
    pub model: BaseModel,
    /// Data files and batching.
    pub data: SftDataConfig,
    /// Prompt and response templates.
    #[serde(default)]
    pub template: TemplateConfig,
    /// Which parameters train.
    #[serde(default)]
    pub peft: PeftConfig,
    /// Optimisation (the Trainer's shared settings).
    #[serde(default)]
    pub train: TrainConfig,
    /// Generation-based evaluation on the validation set.
    #[serde(default)]
    pub eval: EvalConfig,
}

/// `[model]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BaseModel {
    /// A manabi checkpoint / model folder (`model.toml`) or a Hugging Face folder
    /// (`config.json`) of a decoder-only model.
    pub path: PathBuf,
    /// `tokenizer.json`; default: the one in `path`.
    #[serde(default)]
    pub tokenizer: Option<PathBuf>,
    /// The type the frozen weight matrices are kept in: `bf16` halves the base's memory
    /// (adapters, their gradients and AdamW's moments stay `f32`); for LoRA, adapters,
    /// prompt and prefix tuning and BitFit.
    #[serde(default)]
    pub dtype: manabi_model::BaseDtype,
}

impl BaseModel {
    /// Refuses a `dtype` other than `f32` in a stage that keeps its models in `f32`
    /// (`stage`, e.g. "manabi ppo").
    pub fn f32_only(&self, stage: &str) -> crate::error::Result<()> {
        if self.dtype == manabi_model::BaseDtype::F32 {
            return Ok(());
        }
        Err(crate::error::FinetuneError::config(
            "model.dtype",
            format!(
                "`{}` bases are for sft, dpo, grpo and reward runs with an adapter; {stage} keeps its models in f32 (remove the key)",
                self.dtype
            ),
        ))
    }
}

/// `[data]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SftDataConfig {
    /// Training JSONL files.
    pub train: Vec<PathBuf>,
    /// Validation JSONL files (loss and exact match).
    pub val: Vec<PathBuf>,
    /// Record format (`auto` detects it per file).
    pub format: Format,
    /// Field renames: canonical name = name in the file (`answer = "gold"`).
    pub fields: FieldMap,
    /// Tokens per training row (≤ the model's positions).
    pub block_size: usize,
    /// Pack several examples per row (block-diagonal attention, positions restart).
    pub pack: bool,
    /// Skip and count malformed lines instead of stopping.
    pub skip_invalid: bool,
}

impl Default for SftDataConfig {
    fn default() -> Self {
        Self {
            train: Vec::new(),
            val: Vec::new(),
            format: Format::Auto,
            fields: FieldMap::new(),
            block_size: 256,
            pack: false,
            skip_invalid: false,
        }
    }
}

/// `[eval]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EvalConfig {
    /// Generate answers for validation prompts and report exact match and EOS rate.
    pub generate: bool,
    /// Validation examples generated for (0 = all).
    pub max_examples: usize,
    /// Longest answer generated.
    pub max_new_tokens: usize,
    /// Prompts per generation batch.
    pub batch_size: usize,
    /// Also ROUGE-1/2/L F1 of the generations against the gold responses (rouge-score's
    /// tokens, or one token per character for text with Japanese); for the `summarise`
    /// format also the lead baseline (the document's first sentence as the summary).
    pub rouge: bool,
}

impl Default for EvalConfig {
    fn default() -> Self {
        Self {
            generate: true,
            max_examples: 200,
            max_new_tokens: 32,
            batch_size: 32,
            rouge: false,
        }
    }
}

impl Recipe for SftConfig {
    type Error = FinetuneError;

    fn validate(&self) -> Result<()> {
        self.train.validate()?;
        if self.data.train.is_empty() {
            return Err(FinetuneError::config(
                "data.train",
                "no training files given",
            ));
        }
        if self.data.block_size < 2 {
            return Err(FinetuneError::config(
                "data.block_size",
                "must be at least 2",
            ));
        }
        if self.data.pack && self.peft.method == crate::peft::Method::Prompt {
            return Err(FinetuneError::config(
                "data.pack",
                "prompt tuning puts its soft prompt before each sequence, so it cannot pack several examples into one row; set pack = false",
            ));
        }
        self.peft.validate()
    }
}
