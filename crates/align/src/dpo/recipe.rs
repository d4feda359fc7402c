//! `manabi dpo`: a policy (any decoder folder, usually an SFT checkpoint), a frozen
//! reference (the initial policy, or `dpo.reference`), preference pairs, optional LoRA,
//! and the shared Trainer; held-out preference accuracy before and after.

use manabi_objectives::Resume;

use manabi_finetune::PeftConfig;
use manabi_finetune::load_decoder;
use manabi_finetune::peft;
use manabi_finetune::setup::Setup;
use manabi_model::DeviceChoice;
use manabi_objectives::RunReport;
use manabi_objectives::config::{Recipe, RunConfig, TrainConfig};
use serde::{Deserialize, Serialize};

use crate::dpo::{DpoSettings, DpoTask, load_reference, pair_logps, reference_logps};
use crate::error::{AlignError, Result};
use crate::policy::{PolicyModel, PrefData, start};
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
        if d.reference.is_some() && !d.uses_reference() {
            return Err(AlignError::config(
                "dpo.reference",
                "simpo is reference-free: remove the reference",
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
    /// ties counted as half): 0.5 when the reference is the initial policy (every margin
    /// is 0), the initial policy's against `dpo.reference` otherwise.
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

/// Runs (or resumes) a DPO recipe.
pub fn dpo(
    cfg: &DpoConfig,
    device_choice: DeviceChoice,
    resume: impl Into<Resume>,
) -> Result<DpoReport> {
    let (
        Setup {
            trainer,
            tokenizer,
            specials,
            device,
            tok_path,
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
    crate::policy::check_length(model.config(), "data.max_length", cfg.data.max_length)?;
    let out = cfg.run.out.clone();
    let train = read_pairs(&cfg.data.train)?;
    let val = read_pairs(&cfg.data.val)?;
    // Conversational pairs use the model's own chat template when it has one (TRL's
    // rendering), else manabi's.
    let chat = match tok_path.parent() {
        Some(dir) => manabi_finetune::sft::chat::model_template(dir)?,
        None => None,
    };
    let max_len = cfg.data.max_length;
    let (train, cut, dropped) = tokenize(&train, &tokenizer, specials.eos, max_len, chat.as_ref())?;
    let (val, _, _) = tokenize(&val, &tokenizer, specials.eos, max_len, chat.as_ref())?;
    if train.is_empty() || val.is_empty() {
        return Err(AlignError::config("data.max_length", "no pair fits"));
    }

    let bs = cfg.train.batch_size;
    // The reference is the initial policy, or the model of `dpo.reference`: log-probs
    // computed once, before training, with the base in the policy's `model.dtype`.
    let initial = crate::policy::frozen_copy(&model, &cfg.model, &cfg.peft)?;
    let external = match &cfg.dpo.reference {
        Some(path) if cfg.dpo.uses_reference() => Some(load_reference(
            path,
            &tokenizer,
            initial.config().vocab_size,
            &device,
        )?),
        _ => None,
    };
    let reference = external.as_ref().unwrap_or(&initial);
    let train_reference = reference_logps(reference, &train, &cfg.dpo, bs, specials.pad, &device);
    let val_reference = reference_logps(reference, &val, &cfg.dpo, bs, specials.pad, &device);
    let reference_free = !cfg.dpo.uses_reference();
    let lengths: Vec<(usize, usize)> = val
        .iter()
        .map(|p| (p.chosen.len(), p.rejected.len()))
        .collect();
    // When the reference is the initial policy, DPO's margin is 0 for every pair before
    // training; against `dpo.reference` it is the initial policy's; SimPO's
    // (reference-free) is the initial policy's own length-normalised margin.
    let accuracy_before = if reference_free || external.is_some() {
        let start = pair_logps(&initial, &val, bs, specials.pad, &device);
        preference_accuracy(
            &start,
            (!reference_free).then_some(val_reference.as_slice()),
            &lengths,
        )
    } else {
        preference_accuracy(&val_reference, Some(&val_reference), &lengths)
    };
    drop(external);
    drop(initial);
    // Adapters are drawn after the reference pass, from the run's seed.
    trainer.device().seed(cfg.run.seed);
    manabi_model::init::seed(cfg.run.seed);

    let model = peft::adapt(model, &cfg.peft, cfg.model.dtype, &tokenizer)?;
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
