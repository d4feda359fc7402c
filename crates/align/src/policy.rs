//! What every policy recipe (DPO, GRPO, PPO) and the reward model share: the `[model]`
//! table, the `[data]` tables of preference and prompt files, and the start of a run.

use std::path::PathBuf;

use manabi_finetune::PeftConfig;
use manabi_finetune::setup::Setup;
use manabi_model::DeviceChoice;
use manabi_objectives::config::{RunConfig, TrainConfig};
use serde::{Deserialize, Serialize};

use crate::error::{AlignError, Result};

/// `[model]`: a decoder folder (manabi or Hugging Face; an adapted checkpoint is merged
/// first) and its tokenizer — the same table as SFT's.
pub type PolicyModel = manabi_finetune::config::BaseModel;

/// `[data]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PrefData {
    /// Training preference files (JSONL).
    pub train: Vec<PathBuf>,
    /// Validation preference files.
    pub val: Vec<PathBuf>,
    /// Longest prompt + completion, in tokens (prompts are cut from the left).
    pub max_length: usize,
}

impl Default for PrefData {
    fn default() -> Self {
        Self {
            train: Vec::new(),
            val: Vec::new(),
            max_length: 256,
        }
    }
}

/// `[data]` of RL recipes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct PromptData {
    /// Training prompts.
    pub train: Vec<PathBuf>,
    /// Held-out prompts (greedy exact match at each evaluation).
    pub val: Vec<PathBuf>,
    /// Held-out prompts scored per evaluation (0 = all).
    pub eval_prompts: usize,
}

impl PromptData {
    pub(crate) fn validate(&self) -> Result<()> {
        // Name the key that is empty, so the error points at the line to fix.
        for (key, files) in [("data.train", &self.train), ("data.val", &self.val)] {
            if files.is_empty() {
                return Err(AlignError::config(
                    key,
                    "give training and held-out prompt files",
                ));
            }
        }
        Ok(())
    }
}

/// `key` (a length in tokens) against the model's learned position table: a model with
/// one cannot read past it (RoPE and ALiBi models extrapolate, as in transformers).
pub(crate) fn check_length(cfg: &manabi_model::ModelConfig, key: &str, len: usize) -> Result<()> {
    if cfg.positions == manabi_model::Positions::Learned && len > cfg.max_positions {
        return Err(AlignError::config(
            key,
            format!(
                "{len} exceeds the model's {} learned positions (set it to at most {})",
                cfg.max_positions, cfg.max_positions
            ),
        ));
    }
    Ok(())
}

/// The longest prompt, in tokens, that leaves room in `cfg`'s positions for `max_new`
/// generated tokens and `virtual_tokens` of prompt tuning; an error naming `key` when
/// there is none.
pub(crate) fn prompt_room(
    cfg: &manabi_model::ModelConfig,
    max_new: usize,
    virtual_tokens: usize,
    key: &str,
) -> Result<usize> {
    cfg.max_positions
        .checked_sub(max_new + virtual_tokens)
        .filter(|&r| r > 0)
        .ok_or_else(|| {
            AlignError::config(
                key,
                format!(
                    "leaves no room for a prompt in the model's {} positions",
                    cfg.max_positions
                ),
            )
        })
}

/// Cuts `ids` to `room` tokens from the left, after the `bos` it starts with (the
/// tokenizer's specials prefix) when room is left for it; whether it cut.
pub(crate) fn cut_prompt(ids: &mut Vec<u32>, room: usize, bos: &[u32]) -> bool {
    if ids.len() <= room {
        return false;
    }
    let keep = if room > bos.len() && ids.starts_with(bos) {
        bos.len()
    } else {
        0
    };
    ids.drain(keep..keep + ids.len() - room);
    true
}

/// What every policy recipe (DPO, GRPO, PPO) starts with: the [`Setup`] of its run, with
/// the recipe and the PEFT spec recorded for the checkpoints, and the policy (`[model]`,
/// adapters merged).
pub(crate) fn start<C: Serialize>(
    cfg: &C,
    run: &RunConfig,
    train: &TrainConfig,
    model: &PolicyModel,
    peft: &PeftConfig,
    device_choice: DeviceChoice,
) -> Result<(Setup, manabi_model::DecoderLm)> {
    let mut setup = Setup::new(run, train, model, device_choice)?;
    setup.record_recipe(cfg, peft)?;
    let policy = setup.decoder(&model.path)?;
    Ok((setup, policy))
}
