//! `manabi dpo`: a policy (any decoder folder, usually an SFT checkpoint), preference
//! pairs, optional LoRA, and the shared Trainer.

use manabi_objectives::Resume;
use std::path::PathBuf;

use burn::module::Module;
use manabi_finetune::PeftConfig;
use manabi_finetune::peft;
use manabi_finetune::run::load_decoder;
use manabi_finetune::setup::Setup;
use manabi_model::DeviceChoice;
use manabi_objectives::RunReport;
use manabi_objectives::config::{Recipe, RunConfig, TrainConfig};
use manabi_tokenize::TextTokenizer;
use serde::{Deserialize, Serialize};

use crate::dpo::{DpoSettings, DpoTask, pair_logps, reference_logps};
use crate::error::{AlignError, Result};
use crate::pref::{read_pairs, tokenize};

/// A DPO recipe (`configs/align/dpo*.toml`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DpoConfig {
    /// Output folder, device, seed.
    #[serde(default)]
    pub run: RunConfig,
    /// The policy to start from.
    pub model: PolicyModel,
    /// Preference files.
    pub data: PrefData,
    /// Which parameters train.
    #[serde(default)]
    pub peft: PeftConfig,
    /// The loss.
    #[serde(default)]
    pub dpo: DpoSettings,
    /// Optimisation.
    #[serde(default)]
    pub train: TrainConfig,
}

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

impl Recipe for DpoConfig {
    type Error = AlignError;

    fn validate(&self) -> Result<()> {
        self.train.validate()?;
        self.peft.validate()?;
        if self.data.train.is_empty() {
            return Err(AlignError::config(
                "data.train",
                "no preference files given",
            ));
        }
        if self.data.val.is_empty() {
            return Err(AlignError::config(
                "data.val",
                "give held-out preference files",
            ));
        }
        let d = &self.dpo;
        if !(d.beta > 0.0 && d.beta.is_finite()) {
            return Err(AlignError::config("dpo.beta", "must be positive"));
        }
        if !(0.0..0.5).contains(&d.label_smoothing) {
            return Err(AlignError::config(
                "dpo.label_smoothing",
                "must be in [0, 0.5)",
            ));
        }
        Ok(())
    }
}

/// What `manabi dpo` did.
#[derive(Debug, Clone, Serialize)]
pub struct DpoReport {
    /// The Trainer's report.
    pub run: RunReport,
    /// Held-out preference accuracy before training (implicit reward margin > 0,
    /// ties counted as half).
    pub accuracy_before: f64,
    /// … and after.
    pub accuracy_after: f64,
    /// Pairs trained on.
    pub train_pairs: usize,
    /// Prompts cut to fit and pairs dropped.
    pub cut: usize,
    /// Pairs dropped (a completion alone too long).
    pub dropped: usize,
    /// Parameters that trained.
    pub trainable_params: usize,
}

/// Share of pairs whose implicit reward margin is positive (ties count half), from summed
/// policy log-probs (chosen, rejected). With `reference`, the margin is DPO's
/// `(π_c − ref_c) − (π_r − ref_r)`; without, SimPO's length-normalised
/// `π_c / |c| − π_r / |r|` over the completion `lengths`.
pub fn preference_accuracy(
    policy: &[(f64, f64)],
    reference: Option<&[(f64, f64)]>,
    lengths: &[(usize, usize)],
) -> f64 {
    let n = policy.len().max(1) as f64;
    policy
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let m = match reference {
                Some(r) => (p.0 - r[i].0) - (p.1 - r[i].1),
                None => {
                    let (lc, lr) = lengths[i];
                    p.0 / lc.max(1) as f64 - p.1 / lr.max(1) as f64
                }
            };
            if m > 1e-6 {
                1.0
            } else if m < -1e-6 {
                0.0
            } else {
                0.5
            }
        })
        .sum::<f64>()
        / n
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

/// Runs (or resumes) a DPO recipe.
pub fn dpo(cfg: &DpoConfig, device_choice: DeviceChoice, resume: impl Into<Resume>) -> Result<DpoReport> {
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
    let train = read_pairs(&cfg.data.train)?;
    let val = read_pairs(&cfg.data.val)?;
    let (train, cut, dropped) = tokenize(&train, &tokenizer, specials.eos, cfg.data.max_length)?;
    let (val, _, _) = tokenize(&val, &tokenizer, specials.eos, cfg.data.max_length)?;
    if train.is_empty() || val.is_empty() {
        return Err(AlignError::config("data.max_length", "no pair fits"));
    }

    let bs = cfg.train.batch_size;
    // The reference is the initial policy: log-probs computed once, before training.
    let reference = model.valid();
    let train_reference = reference_logps(&reference, &train, &cfg.dpo, bs, specials.pad, &device);
    let val_reference = reference_logps(&reference, &val, &cfg.dpo, bs, specials.pad, &device);
    let reference_free = !cfg.dpo.uses_reference();
    let lengths: Vec<(usize, usize)> = val
        .iter()
        .map(|p| (p.chosen.len(), p.rejected.len()))
        .collect();
    // Before training the policy is the reference: DPO's margin is 0 for every pair;
    // SimPO's (reference-free) is the initial policy's own length-normalised margin.
    let accuracy_before = if reference_free {
        let initial = pair_logps(&reference, &val, bs, specials.pad, &device);
        preference_accuracy(&initial, None, &lengths)
    } else {
        preference_accuracy(&val_reference, Some(&val_reference), &lengths)
    };
    drop(reference);
    // Adapters are drawn after the reference pass, from the run's seed.
    trainer.device().seed(cfg.run.seed);
    manabi_model::init::seed(cfg.run.seed);

    let model = peft::apply(model, &cfg.peft)?;
    let (trainable, total) = peft::describe(&model);
    println!(
        "{:?}: {trainable} trainable of {total} parameters",
        cfg.peft.method
    );
    let task = DpoTask {
        train,
        train_reference,
        val,
        val_reference,
        settings: cfg.dpo.clone(),
        batch_size: bs,
        pad: specials.pad,
        seed: cfg.run.seed,
    };
    let run = trainer.fit(&task, model, resume)?;
    let ckpt = run
        .checkpoint
        .clone()
        .ok_or_else(|| AlignError::io(&out, "the run wrote no checkpoint"))?;
    let (tuned, _) = load_decoder(&ckpt, &device)?;
    let after = pair_logps(&tuned, &task.val, bs, specials.pad, &device);
    let accuracy_after = preference_accuracy(
        &after,
        (!reference_free).then_some(task.val_reference.as_slice()),
        &lengths,
    );
    Ok(DpoReport {
        run,
        accuracy_before,
        accuracy_after,
        train_pairs: task.train.len(),
        cut,
        dropped,
        trainable_params: trainable,
    })
}

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
        if self.train.is_empty() || self.val.is_empty() {
            return Err(AlignError::config(
                "data.train",
                "give training and held-out prompt files",
            ));
        }
        Ok(())
    }
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
pub fn grpo(cfg: &GrpoConfig, device_choice: DeviceChoice, resume: impl Into<Resume>) -> Result<GrpoReport> {
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
    // The initial policy without autodiff: the "before" score and the KL reference.
    let plain = model.valid();
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
    let model = peft::apply(model, &cfg.peft)?;
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

/// A one-output classifier (a reward model) from `dir`; `key` names the setting.
pub(crate) fn load_scalar(
    dir: &std::path::Path,
    device: &burn::prelude::Device,
    key: &str,
) -> Result<manabi_model::DecoderClassifier> {
    // load_reward refuses what is no reward model (no score head, N labels): named
    // under the setting that chose the folder.
    crate::reward::load_reward(dir, device).map_err(|e| match e {
        AlignError::File { path, message } if message.starts_with("not a reward model") => {
            AlignError::config(key, format!("{}: {message}", path.display()))
        }
        e => e,
    })
}

/// A reward model that scores decoded text (PPO, GRPO), without autodiff, with the
/// tokenizer it reads that text with: the policy's, or with `own` (the recipe's
/// `reward_own_tokenizer`) another, whose ids must fit the reward model's embedding.
pub(crate) fn load_reward_scorer(
    dir: &std::path::Path,
    device: &burn::prelude::Device,
    policy: &TextTokenizer,
    own: bool,
    key: &str,
) -> Result<(manabi_model::DecoderClassifier, TextTokenizer)> {
    let rm = load_scalar(dir, device, key)?.valid();
    let path = dir.join("tokenizer.json");
    let tok = TextTokenizer::load(&path)?;
    if !own && tok.sha256() != policy.sha256() {
        let section = key.split('.').next().unwrap_or(key);
        return Err(AlignError::config(
            key,
            format!(
                "{}: the reward model's tokenizer differs from the policy's; set \
                 {section}.reward_own_tokenizer = true to score the decoded text with its own",
                path.display()
            ),
        ));
    }
    let vocab = rm.lm.config().vocab_size;
    if tok.vocab_size() > vocab {
        return Err(AlignError::config(
            key,
            format!(
                "{}: {} tokens, but the reward model embeds {vocab}",
                path.display(),
                tok.vocab_size()
            ),
        ));
    }
    Ok((rm, tok))
}
