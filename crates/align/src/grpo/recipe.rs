//! `manabi grpo`: a policy, prompts with reference answers, the reward functions (a
//! reward model among them), optional LoRA, and the shared Trainer; held-out greedy exact
//! match before and after.

use manabi_objectives::Resume;

use manabi_finetune::PeftConfig;
use manabi_finetune::load_decoder;
use manabi_finetune::peft;
use manabi_finetune::setup::Setup;
use manabi_model::DeviceChoice;
use manabi_objectives::RunReport;
use manabi_objectives::config::{Recipe, RunConfig, TrainConfig};
use serde::{Deserialize, Serialize};

use crate::error::{AlignError, Result};
use crate::policy::{PolicyModel, PromptData, start};
use crate::reward::load_reward_scorer;

/// A GRPO recipe (`configs/align/grpo.toml`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GrpoConfig {
    /// Output folder, device, seed.
    #[serde(default)]
    pub run: RunConfig,
    /// The policy to start from.
    pub model: PolicyModel,
    /// Prompt files (`{"prompt", "answer"}` JSONL).
    pub data: PromptData,
    /// Which parameters train.
    #[serde(default)]
    pub peft: PeftConfig,
    /// Sampling, rewards and the objective.
    #[serde(default)]
    pub grpo: crate::grpo::GrpoSettings,
    /// Optimisation; `batch_size` counts prompts (each sampled `num_generations` times).
    #[serde(default)]
    pub train: TrainConfig,
}

impl Recipe for GrpoConfig {
    type Error = AlignError;

    fn validate(&self) -> Result<()> {
        self.train.validate()?;
        self.peft.validate()?;
        let g = &self.grpo;
        if g.num_generations < 2 {
            return Err(AlignError::config(
                "grpo.num_generations",
                "a group needs at least 2 completions",
            ));
        }
        if g.max_new_tokens == 0 {
            return Err(AlignError::config(
                "grpo.max_new_tokens",
                "must be at least 1",
            ));
        }
        if let Some(r) = g
            .rewards
            .iter()
            .find(|r| !["exact_match", "format", "model"].contains(&r.as_str()))
        {
            return Err(AlignError::config(
                "grpo.rewards",
                format!("unknown reward `{r}` (exact_match, format, model)"),
            ));
        }
        if g.rewards.iter().any(|r| r == "model") != g.reward_model.is_some() {
            return Err(AlignError::config(
                "grpo.reward_model",
                "the `model` reward and grpo.reward_model go together: give both or neither",
            ));
        }
        self.data.validate()?;
        Ok(())
    }
}

/// What `manabi grpo` did.
#[derive(Debug, Clone, Serialize)]
pub struct GrpoReport {
    /// The Trainer's report.
    pub run: RunReport,
    /// Held-out greedy exact match before training.
    pub exact_match_before: f64,
    /// … and after.
    pub exact_match_after: f64,
}

/// Runs (or resumes) a GRPO recipe.
pub fn grpo(
    cfg: &GrpoConfig,
    device_choice: DeviceChoice,
    resume: impl Into<Resume>,
) -> Result<GrpoReport> {
    use crate::grpo::{GrpoTask, greedy_exact_match, read_prompts};
    let (
        Setup {
            trainer,
            tokenizer,
            specials,
            device,
            ..
        },
        model,
    ) = start(
        cfg,
        &cfg.run,
        &cfg.train,
        &cfg.model,
        &cfg.peft,
        device_choice,
    )?;
    let out = cfg.run.out.clone();
    let train = read_prompts(&cfg.data.train)?;
    let val = read_prompts(&cfg.data.val)?;
    // The initial policy without autodiff, its base in `model.dtype`: the "before" score
    // and the KL reference.
    let plain = crate::policy::frozen_copy(&model, &cfg.model, &cfg.peft)?;
    let m = if cfg.data.eval_prompts == 0 {
        val.len()
    } else {
        cfg.data.eval_prompts.min(val.len())
    };
    let max_new = cfg.grpo.max_new_tokens;
    let exact_match_before = greedy_exact_match(
        &plain,
        &tokenizer,
        &val[..m],
        specials.eos,
        specials.pad,
        max_new,
    )?;
    trainer.device().seed(cfg.run.seed);
    manabi_model::init::seed(cfg.run.seed);
    let model = peft::adapt(model, &cfg.peft, cfg.model.dtype, &tokenizer)?;
    let task = GrpoTask {
        train,
        val,
        settings: cfg.grpo.clone(),
        prompts_per_batch: cfg.train.batch_size,
        tokenizer: tokenizer.clone(),
        eos: specials.eos,
        pad: specials.pad,
        seed: cfg.run.seed,
        reference: (cfg.grpo.beta > 0.0).then(|| plain.clone()),
        eval_prompts: cfg.data.eval_prompts,
        reward_model: match &cfg.grpo.reward_model {
            Some(dir) => {
                let own = cfg.grpo.reward_own_tokenizer;
                Some(load_reward_scorer(
                    dir,
                    &device,
                    &tokenizer,
                    own,
                    "grpo.reward_model",
                )?)
            }
            None => None,
        },
        prompt_room: crate::policy::prompt_room(
            plain.config(),
            max_new,
            cfg.peft.virtual_positions(),
            "grpo.max_new_tokens",
        )?,
    };
    let run = trainer.fit(&task, model, resume)?;
    let ckpt = run
        .checkpoint
        .clone()
        .ok_or_else(|| AlignError::io(&out, "the run wrote no checkpoint"))?;
    let (tuned, _) = load_decoder(&ckpt, &device)?;
    let exact_match_after = greedy_exact_match(
        &tuned,
        &tokenizer,
        &task.val[..m],
        specials.eos,
        specials.pad,
        max_new,
    )?;
    Ok(GrpoReport {
        run,
        exact_match_before,
        exact_match_after,
    })
}
