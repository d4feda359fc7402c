//! `manabi ppo`: a policy (any decoder folder, usually an SFT checkpoint), prompts, a
//! reward model, optional PEFT on the policy, and the shared Trainer.

use manabi_objectives::Resume;
use std::path::PathBuf;

use burn::module::Module;
use manabi_finetune::PeftConfig;
use manabi_finetune::peft;
use manabi_finetune::peft::PEFT_FILE;
use manabi_finetune::setup::Setup;
use manabi_model::DeviceChoice;
use manabi_objectives::RunReport;
use manabi_objectives::config::{Recipe, RunConfig, TrainConfig};
use serde::{Deserialize, Serialize};

use super::{PolicyValue, PpoState, PpoTask, Prompt};
use crate::error::{AlignError, Result};
use crate::policy::{PolicyModel, PromptData, start};
use crate::reward::{load_reward_scorer, load_scalar};

/// A PPO recipe (`configs/align/ppo.toml`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PpoConfig {
    /// Output folder, device, seed.
    #[serde(default)]
    pub run: RunConfig,
    /// The policy to start from.
    pub model: PolicyModel,
    /// Prompt files: any JSONL with a `prompt` field.
    pub data: PromptData,
    /// Which parameters of the policy train (the value model always trains fully).
    #[serde(default)]
    pub peft: PeftConfig,
    /// Rollouts, rewards, GAE and the clipped objective.
    #[serde(default)]
    pub ppo: crate::ppo::PpoSettings,
    /// Optimisation: `batch_size` responses per micro-batch; `batch_size × grad_accum`
    /// per minibatch (one step); `× ppo.num_mini_batches` per rollout.
    #[serde(default)]
    pub train: TrainConfig,
}

impl Recipe for PpoConfig {
    type Error = AlignError;

    fn validate(&self) -> Result<()> {
        self.train.validate()?;
        self.peft.validate()?;
        let p = &self.ppo;
        if p.reward_model.is_none() {
            return Err(AlignError::config(
                "ppo.reward_model",
                "PPO needs a reward model: a `manabi reward` checkpoint or an HF *ForSequenceClassification folder",
            ));
        }
        let positive = [
            ("ppo.max_new_tokens", p.max_new_tokens),
            ("ppo.num_ppo_epochs", p.num_ppo_epochs),
            ("ppo.num_mini_batches", p.num_mini_batches),
        ];
        if let Some((key, _)) = positive.iter().find(|(_, v)| *v == 0) {
            return Err(AlignError::config(*key, "must be at least 1"));
        }
        let ranges = [
            ("ppo.cliprange", p.cliprange, 0.0, 1.0),
            ("ppo.cliprange_value", p.cliprange_value, 0.0, f64::MAX),
            ("ppo.vf_coef", p.vf_coef, 0.0, f64::MAX),
            ("ppo.gamma", p.gamma, 0.0, 1.0),
            ("ppo.lam", p.lam, 0.0, 1.0),
            ("ppo.kl_coef", p.kl_coef, 0.0, f64::MAX),
        ];
        for (key, v, lo, hi) in ranges {
            if !(v.is_finite() && v >= lo && v <= hi) {
                return Err(AlignError::config(
                    key,
                    format!("{v} is outside [{lo}, {hi}]"),
                ));
            }
        }
        if p.temperature.is_nan() || p.temperature <= 0.0 {
            return Err(AlignError::config("ppo.temperature", "must be positive"));
        }
        if !(p.top_p > 0.0 && p.top_p <= 1.0) {
            return Err(AlignError::config("ppo.top_p", "must be in (0, 1]"));
        }
        let bad = |t: f64| t.is_nan() || t <= 0.0;
        if p.target_kl.is_some_and(bad) || bad(p.kl_horizon) {
            return Err(AlignError::config(
                "ppo.target_kl",
                "the adaptive controller needs a positive target and horizon",
            ));
        }
        self.data.validate()?;
        Ok(())
    }
}

/// What `manabi ppo` did.
#[derive(Debug, Clone, Serialize)]
pub struct PpoReport {
    /// The Trainer's report.
    pub run: RunReport,
    /// Held-out sampled responses of the initial policy.
    pub before: crate::ppo::SampleStats,
    /// … of the trained policy.
    pub after: crate::ppo::SampleStats,
    /// The trained policy alone, as a decoder folder (`generate`, `eval`, `export`).
    pub policy: PathBuf,
    /// Responses per rollout.
    pub rollout_size: usize,
    /// The adaptive controller's target (`ppo.target_kl`), for the report.
    pub target_kl: Option<f64>,
    /// Prompts cut from the left to leave room for `ppo.max_new_tokens`.
    pub prompts_cut: usize,
}

/// Runs (or resumes) a PPO recipe.
pub fn ppo(
    cfg: &PpoConfig,
    device_choice: DeviceChoice,
    resume: impl Into<Resume>,
) -> Result<PpoReport> {
    cfg.model.f32_only("manabi ppo")?;
    let (
        Setup {
            trainer,
            tokenizer,
            specials,
            device,
            tok_path,
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
    // Prompts are tokenised as TRL's PPO example does (`tokenizer(prompt)`: the
    // tokenizer's BOS first when it adds one) and cut from the left, after that BOS, to
    // leave room for the response (counted, reported).
    let room = crate::policy::prompt_room(
        model.config(),
        cfg.ppo.max_new_tokens,
        cfg.peft.virtual_positions(),
        "ppo.max_new_tokens",
    )?;
    let mut prompts_cut = 0;
    let mut encode = |texts: Vec<String>| -> Result<Vec<Prompt>> {
        texts
            .into_iter()
            .map(|text| {
                let mut ids = tokenizer.encode_with_specials(&text)?;
                if crate::policy::cut_prompt(&mut ids, room, tokenizer.specials_prefix()) {
                    prompts_cut += 1;
                }
                Ok(Prompt { text, ids })
            })
            .collect()
    };
    let train = encode(crate::grpo::read_prompt_texts(&cfg.data.train)?)?;
    let val = encode(crate::grpo::read_prompt_texts(&cfg.data.val)?)?;
    // TRL turns dropout off in the policy, the reference and the value model: the
    // ratio to the sampling policy must be 1 at the first minibatch.
    let model = manabi_finetune::load::with_dropout(model, 0.0);
    let reference = model.valid();
    let rm_dir = cfg
        .ppo
        .reward_model
        .clone()
        .ok_or_else(|| AlignError::config("ppo.reward_model", "missing"))?;
    let own = cfg.ppo.reward_own_tokenizer;
    let reward = load_reward_scorer(&rm_dir, &device, &tokenizer, own, "ppo.reward_model")?;
    trainer.device().seed(cfg.run.seed);
    manabi_model::init::seed(cfg.run.seed);
    let value = match &cfg.ppo.value_model {
        None => manabi_model::DecoderClassifier::from_lm(model.clone(), 1),
        Some(dir) => {
            let v = load_scalar(dir, trainer.device(), "ppo.value_model")?;
            let theirs_path = manabi_model::locate(dir)?.dir.join("tokenizer.json");
            let theirs =
                std::fs::read(&theirs_path).map_err(|e| AlignError::io(&theirs_path, e))?;
            let ours = std::fs::read(&tok_path).map_err(|e| AlignError::io(&tok_path, e))?;
            if theirs != ours || v.lm.config().vocab_size != model.config().vocab_size {
                return Err(AlignError::config(
                    "ppo.value_model",
                    format!(
                        "{}: the value model reads the policy's tokens, so it needs the policy's tokenizer; this one has another",
                        dir.display()
                    ),
                ));
            }
            v
        }
    };
    let mut value = value;
    value.lm = manabi_finetune::load::with_dropout(value.lm, 0.0);
    let policy = peft::apply_with_tokenizer(model, &cfg.peft, &tokenizer)?;
    let model = PolicyValue::new(policy, value);
    let (trainable, total) = peft::describe(&model);
    println!(
        "{} policy + value model: {trainable} trainable of {total} parameters",
        cfg.peft.method
    );
    let template = model.clone();
    let task = PpoTask {
        train,
        val,
        settings: cfg.ppo.clone(),
        micro_batch: cfg.train.batch_size,
        grad_accum: cfg.train.grad_accum,
        tokenizer: tokenizer.clone(),
        eos: specials.eos,
        pad: specials.pad,
        seed: cfg.run.seed,
        reference: reference.clone(),
        reward,
        eval_prompts: cfg.data.eval_prompts,
        state: std::sync::Mutex::new(PpoState {
            kl_coef: cfg.ppo.kl_coef,
            rollout: None,
        }),
    };
    let eval_set: Vec<Prompt> = match cfg.data.eval_prompts {
        0 => task.val.clone(),
        m => task.val[..m.min(task.val.len())].to_vec(),
    };
    let before = task.sample_stats(&reference, &eval_set)?;
    let run = trainer.fit(&task, model, resume)?;
    let ckpt = run
        .checkpoint
        .clone()
        .ok_or_else(|| AlignError::io(&out, "the run wrote no checkpoint"))?;
    let mut tuned = template;
    manabi_model::checkpoint::load_weights(&mut tuned, &ckpt.join("model.bpk"))?;
    let after = task.sample_stats(&tuned.policy.valid(), &eval_set)?;
    // The policy alone, for generate / eval / export / align report.
    let policy_dir = out.join("policy");
    manabi_model::save_native(&tuned.policy, &policy_dir)?;
    if cfg.peft.method != manabi_finetune::Method::Full {
        std::fs::write(policy_dir.join(PEFT_FILE), cfg.peft.to_toml())
            .map_err(|e| AlignError::io(policy_dir.join(PEFT_FILE), e))?;
    }
    let (bytes, sidecar) = manabi_tokenize::tokenizer_files(&tok_path)?;
    std::fs::write(policy_dir.join("tokenizer.json"), bytes)
        .map_err(|e| AlignError::io(policy_dir.join("tokenizer.json"), e))?;
    if let Some(bytes) = sidecar {
        let side = policy_dir.join(manabi_tokenize::sidecar::SIDECAR_FILE);
        std::fs::write(&side, bytes).map_err(|e| AlignError::io(side, e))?;
    }
    Ok(PpoReport {
        run,
        before,
        after,
        policy: policy_dir,
        rollout_size: task.rollout_size(),
        target_kl: cfg.ppo.target_kl,
        prompts_cut,
    })
}
