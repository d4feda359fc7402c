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
    max_new
        .checked_add(virtual_tokens)
        .and_then(|taken| cfg.max_positions.checked_sub(taken))
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

/// The initial policy without autodiff, its base in the recipe's `model.dtype` (checked
/// against the PEFT method first, before any long pass): DPO's reference, GRPO's "before"
/// score and KL reference.
pub(crate) fn frozen_copy(
    model: &manabi_model::DecoderLm,
    base: &PolicyModel,
    peft: &PeftConfig,
) -> Result<manabi_model::DecoderLm> {
    use burn::module::Module;
    manabi_finetune::peft::check_dtype(peft, base.dtype, &model.embed_tokens.weight.device())?;
    Ok(match base.dtype {
        manabi_model::BaseDtype::F32 => model.valid(),
        manabi_model::BaseDtype::Bf16 => model.valid().with_bf16_base(),
    })
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prompts_lose_their_start_after_the_bos() {
        let mut ids = vec![1, 10, 11, 12, 13, 14];
        assert!(cut_prompt(&mut ids, 4, &[1]));
        assert_eq!(ids, [1, 12, 13, 14]);
        // Short enough: untouched.
        let mut ids = vec![1, 10, 11];
        assert!(!cut_prompt(&mut ids, 4, &[1]));
        assert_eq!(ids, [1, 10, 11]);
        // No BOS, or no room beside it: the last `room` tokens.
        let mut ids = vec![10, 11, 12, 13];
        assert!(cut_prompt(&mut ids, 2, &[1]));
        assert_eq!(ids, [12, 13]);
        let mut ids = vec![1, 10, 11];
        assert!(cut_prompt(&mut ids, 1, &[1]));
        assert_eq!(ids, [11]);
    }

    #[test]
    fn room_for_a_prompt_is_what_the_positions_leave() {
        let cfg: manabi_model::ModelConfig = toml::from_str(
            "family = \"gpt2\"\nvocab_size = 10\nmax_positions = 32\nd_model = 8\n\
             n_layers = 1\nn_heads = 2\nd_ff = 16\npositions = \"learned\"\n\
             norm = \"layernorm\"\nactivation = \"gelu\"",
        )
        .unwrap();
        assert_eq!(prompt_room(&cfg, 8, 2, "k").unwrap(), 22);
        for (new, virt) in [(32, 0), (30, 2), (usize::MAX, 1)] {
            let err = prompt_room(&cfg, new, virt, "grpo.max_new_tokens")
                .unwrap_err()
                .to_string();
            assert!(err.contains("grpo.max_new_tokens"), "{err}");
        }
    }
}
