//! Reward models from preferences (Bradley–Terry; Ouyang et al. 2022): a decoder body and a
//! scalar head read at each sequence's last token (EOS), trained so that the chosen
//! completion scores above the rejected one, `−logσ(r_c − r_r − margin)`. Metrics are
//! named as TRL's RewardTrainer logs them (`accuracy`, `margin`, `mean_reward`, and
//! `min_reward` / `max_reward` at evaluation). Checkpoints record `head.toml`; exports are
//! Hugging Face `*ForSequenceClassification` with one label.

use manabi_objectives::Resume;
use std::path::{Path, PathBuf};

use burn::module::Module;
use burn::prelude::*;
use burn::tensor::activation::log_sigmoid;
use manabi_finetune::PeftConfig;
use manabi_finetune::peft;

use manabi_finetune::setup::Setup;
use manabi_finetune::sft::Specials;
use manabi_model::{DecoderClassifier, DeviceChoice};
use manabi_objectives::config::{Recipe, RunConfig, TrainConfig};
use manabi_objectives::{RunReport, Task, TaskLoss};
use manabi_tokenize::TextTokenizer;
use serde::{Deserialize, Serialize};

use crate::error::{AlignError, Result};
use crate::policy::{PolicyModel, PrefData};
use crate::pref::{TokenPair, read_pairs, tokenize};

pub use manabi_finetune::head::{HEAD_FILE, HeadSpec};

/// `[reward]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RewardSettings {
    /// Required gap between chosen and rejected scores (0 = plain Bradley–Terry).
    pub margin: f64,
}

impl Default for RewardSettings {
    fn default() -> Self {
        Self { margin: 0.0 }
    }
}

/// A reward-model recipe (`configs/align/reward.toml`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RewardConfig {
    /// Output folder, device, seed.
    #[serde(default)]
    pub run: RunConfig,
    /// The body to start from (any decoder folder).
    pub model: PolicyModel,
    /// Preference files.
    pub data: PrefData,
    /// Which parameters of the body train (the head always trains).
    #[serde(default)]
    pub peft: PeftConfig,
    /// The loss.
    #[serde(default)]
    pub reward: RewardSettings,
    /// Optimisation.
    #[serde(default)]
    pub train: TrainConfig,
}

impl Recipe for RewardConfig {
    type Error = AlignError;

    fn validate(&self) -> Result<()> {
        self.train.validate()?;
        self.peft.validate_for_head()?;
        if self.data.train.is_empty() || self.data.val.is_empty() {
            return Err(AlignError::config(
                "data.train",
                "give training and validation preference files (data.train, data.val)",
            ));
        }
        Ok(())
    }
}

/// Chosen rows, then rejected rows, each ending with EOS.
#[derive(Debug, Clone)]
pub struct ScoreBatch {
    /// Pairs.
    pub n: usize,
    /// Tokens per row.
    pub seq: usize,
    /// `[2n·seq]`, right-padded.
    pub inputs: Vec<u32>,
    /// Index of each row's last token `[2n]`.
    pub last: Vec<usize>,
}

/// Sequences of `rows` (each read at its last token), right-padded with `pad`.
pub fn score_batch(rows: &[Vec<u32>], pad: u32) -> ScoreBatch {
    let refs: Vec<&[u32]> = rows.iter().map(Vec::as_slice).collect();
    let (seq, inputs, last) = manabi_finetune::head::pad_rows(&refs, pad);
    ScoreBatch {
        n: rows.len() / 2,
        seq,
        inputs,
        last,
    }
}

fn rows_of(pairs: &[&TokenPair]) -> Vec<Vec<u32>> {
    let join = |a: &[u32], b: &[u32]| a.iter().chain(b).copied().collect::<Vec<u32>>();
    pairs
        .iter()
        .map(|p| join(&p.prompt, &p.chosen))
        .chain(pairs.iter().map(|p| join(&p.prompt, &p.rejected)))
        .collect()
}

/// Rewards of every row of `b`.
///
/// # Shapes
/// returns `[rows]`
pub fn rewards(model: &DecoderClassifier, b: &ScoreBatch, device: &Device) -> Tensor<1> {
    let rows = b.last.len();
    let ids: Vec<i64> = b.inputs.iter().map(|&x| x as i64).collect();
    let ids = Tensor::<1, Int>::from_ints(ids.as_slice(), device).reshape([rows, b.seq]);
    model.forward(ids, &b.last).reshape([rows])
}

fn values(t: Tensor<1>) -> Vec<f64> {
    t.into_data()
        .convert::<f64>()
        .try_into_vec::<f64>()
        .unwrap_or_default()
}

/// Reward modelling as a [`Task`] of the shared Trainer.
#[derive(Debug)]
pub struct RewardTask {
    /// Training pairs.
    pub train: Vec<TokenPair>,
    /// Validation pairs.
    pub val: Vec<TokenPair>,
    /// Settings.
    pub settings: RewardSettings,
    /// Pairs per micro-batch.
    pub batch_size: usize,
    /// Padding token.
    pub pad: u32,
    /// Seed of the data order.
    pub seed: u64,
}

impl Task for RewardTask {
    type Model = DecoderClassifier;
    type Batch = ScoreBatch;
    fn loss_label(&self) -> &'static str {
        "−log σ(r_chosen − r_rejected) (nats/pair)"
    }
    fn key_metric(&self) -> Option<(&'static str, &'static str)> {
        Some(("eval/accuracy", "held-out pairwise accuracy"))
    }

    fn batch(
        &self,
        _: &DecoderClassifier,
        step: usize,
        micro: usize,
        per_step: usize,
    ) -> manabi_objectives::Result<ScoreBatch> {
        let g = step * per_step + micro;
        let p =
            manabi_finetune::sft::encode::train_window(&self.train, self.batch_size, g, self.seed);
        Ok(score_batch(&rows_of(&p), self.pad))
    }

    fn val_batch(&self, i: usize) -> manabi_objectives::Result<ScoreBatch> {
        let p = manabi_finetune::sft::encode::val_window(&self.val, self.batch_size, i);
        Ok(score_batch(&rows_of(&p), self.pad))
    }

    fn loss(
        &self,
        model: &DecoderClassifier,
        b: &ScoreBatch,
        device: &Device,
    ) -> manabi_objectives::Result<TaskLoss> {
        let r = rewards(model, b, device);
        let (rc, rr) = (r.clone().narrow(0, 0, b.n), r.narrow(0, b.n, b.n));
        let diff = rc.clone() - rr.clone();
        let losses = log_sigmoid(diff.clone() - self.settings.margin).neg();
        let (vc, vr) = (values(rc), values(rr));
        let acc = vc.iter().zip(&vr).filter(|(c, r)| c > r).count() as f64;
        let margin: f64 = vc.iter().zip(&vr).map(|(c, r)| c - r).sum();
        let mean: f64 = vc.iter().chain(&vr).sum::<f64>() / 2.0;
        Ok(TaskLoss {
            sum: losses.sum(),
            metrics: vec![
                ("accuracy".into(), acc),
                ("margin".into(), margin),
                ("mean_reward".into(), mean),
            ],
        })
    }

    fn targets(b: &ScoreBatch) -> usize {
        b.n
    }

    fn tokens(b: &ScoreBatch) -> usize {
        2 * b.n * b.seq
    }

    fn evaluate(
        &self,
        model: &DecoderClassifier,
        device: &Device,
    ) -> manabi_objectives::Result<Vec<(String, f64)>> {
        let all = score_pairs(model, &self.val, self.batch_size, self.pad, device);
        let flat: Vec<f64> = all.iter().flat_map(|&(c, r)| [c, r]).collect();
        let min = flat.iter().copied().fold(f64::INFINITY, f64::min);
        let max = flat.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        Ok(vec![("min_reward".into(), min), ("max_reward".into(), max)])
    }
}

/// Rewards (chosen, rejected) of every pair.
pub fn score_pairs(
    model: &DecoderClassifier,
    pairs: &[TokenPair],
    batch_size: usize,
    pad: u32,
    device: &Device,
) -> Vec<(f64, f64)> {
    let mut out = Vec::with_capacity(pairs.len());
    for chunk in pairs.chunks(batch_size.max(1)) {
        let p: Vec<&TokenPair> = chunk.iter().collect();
        let v = values(rewards(model, &score_batch(&rows_of(&p), pad), device));
        out.extend((0..chunk.len()).map(|i| (v[i], v[chunk.len() + i])));
    }
    out
}

/// Loads a reward-model folder: manabi (`model.toml` + `head.toml`, with `peft.toml`
/// when adapted) or Hugging Face `*ForSequenceClassification`. Anything else is refused
/// up front in one line naming the folder: a plain decoder (no score head), a token
/// head, or a score head with other than one output (a classifier).
pub fn load_reward(dir: &Path, device: &Device) -> Result<DecoderClassifier> {
    let found = manabi_model::locate(dir)?;
    if !found.has_head() {
        return Err(not_a_reward_model(&found.dir, "no score head"));
    }
    let (m, head) = manabi_finetune::load_classifier(&found.dir, device)?;
    if head.kind != "score" {
        return Err(not_a_reward_model(
            &found.dir,
            &format!("a {} head, needs a score head", head.kind),
        ));
    }
    if m.labels() != 1 {
        return Err(not_a_reward_model(
            &found.dir,
            &format!("{} labels, needs 1", m.labels()),
        ));
    }
    Ok(m)
}

/// `DIR: not a reward model (why)`.
fn not_a_reward_model(dir: &Path, why: &str) -> AlignError {
    AlignError::io(dir, format!("not a reward model ({why})"))
}

/// A one-output classifier (a reward model) from `dir`; `key` names the setting.
pub(crate) fn load_scalar(
    dir: &std::path::Path,
    device: &burn::prelude::Device,
    key: &str,
) -> Result<manabi_model::DecoderClassifier> {
    // load_reward refuses what is no reward model (no score head, N labels): named
    // under the setting that chose the folder.
    load_reward(dir, device).map_err(|e| match e {
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
    // A run folder's tokenizer is its newest checkpoint's, the one load_scalar loaded.
    let path = manabi_model::locate(dir)?.dir.join("tokenizer.json");
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

/// What `manabi reward` did.
#[derive(Debug, Clone, Serialize)]
pub struct RewardReport {
    /// The Trainer's report.
    pub run: RunReport,
    /// Held-out pairwise accuracy after training.
    pub accuracy: f64,
    /// Parameters that trained.
    pub trainable_params: usize,
    /// The checkpoint.
    pub checkpoint: Option<PathBuf>,
}

/// Trains (or resumes) a reward model.
pub fn train_reward(
    cfg: &RewardConfig,
    device_choice: DeviceChoice,
    resume: impl Into<Resume>,
) -> Result<RewardReport> {
    let mut setup = Setup::new(&cfg.run, &cfg.train, &cfg.model, device_choice)?;
    let (tokenizer, specials, device) = (&setup.tokenizer, setup.specials, setup.device.clone());
    // Conversational pairs in the model's own chat template when it has one.
    let chat = match setup.tok_path.parent() {
        Some(dir) => manabi_finetune::sft::chat::model_template(dir)?,
        None => None,
    };
    let (train, _, _) = tokenize(
        &read_pairs(&cfg.data.train)?,
        tokenizer,
        specials.eos,
        cfg.data.max_length,
        chat.as_ref(),
    )?;
    let (val, _, _) = tokenize(
        &read_pairs(&cfg.data.val)?,
        tokenizer,
        specials.eos,
        cfg.data.max_length,
        chat.as_ref(),
    )?;
    if train.is_empty() || val.is_empty() {
        return Err(AlignError::config("data.max_length", "no pair fits"));
    }
    setup.trainer.device().seed(cfg.run.seed);
    manabi_model::init::seed(cfg.run.seed);
    let body = setup.decoder(&cfg.model.path)?;
    crate::policy::check_length(body.config(), "data.max_length", cfg.data.max_length)?;
    let mut model = DecoderClassifier::from_lm(body, 1);
    model.lm = peft::adapt(model.lm, &cfg.peft, cfg.model.dtype, &setup.tokenizer)?;
    let (trainable, total) = peft::describe(&model);
    println!(
        "{} + score head: {trainable} trainable of {total} parameters",
        cfg.peft.method
    );
    setup.record_recipe(cfg, &cfg.peft)?;
    setup.trainer.spec_files.insert(
        0,
        (HEAD_FILE.into(), HeadSpec::score(1, Vec::new()).to_toml()),
    );
    let task = RewardTask {
        train,
        val,
        settings: cfg.reward.clone(),
        batch_size: cfg.train.batch_size,
        pad: specials.pad,
        seed: cfg.run.seed,
    };
    let run = setup.trainer.fit(&task, model, resume)?;
    let checkpoint = run.checkpoint.clone();
    let accuracy = match &checkpoint {
        Some(dir) => {
            let m = load_reward(dir, &device)?;
            let s = score_pairs(&m, &task.val, task.batch_size, task.pad, &device);
            s.iter().filter(|(c, r)| c > r).count() as f64 / s.len().max(1) as f64
        }
        None => f64::NAN,
    };
    Ok(RewardReport {
        run,
        accuracy,
        trainable_params: trainable,
        checkpoint,
    })
}

/// Rewards of `(prompt, response)` texts under a reward model, with the tokenizer it
/// was trained with, tokenised as in training ([`crate::pref::joint_ids`]: one text, EOS
/// appended, the tokenizer's BOS first when it adds one).
pub fn score_texts(
    model: &DecoderClassifier,
    tokenizer: &TextTokenizer,
    texts: &[(String, String)],
    device: &Device,
) -> Result<Vec<f64>> {
    let specials = Specials::of(tokenizer)?;
    // A model with a learned position table reads at most that many tokens: longer texts
    // lose their start, after the BOS, as reward training cuts its prompts (the score is
    // read at the last token).
    let cfg = model.lm.config();
    let limit = (cfg.positions == manabi_model::Positions::Learned).then_some(cfg.max_positions);
    let bos = tokenizer.specials_prefix();
    let mut rows = Vec::with_capacity(texts.len());
    for (p, r) in texts {
        // Prompt and response as one text, as reward training tokenises its pairs
        // (`pref::tokenize`) and as TRL's RewardTrainer does: BPE merges across the
        // boundary come out the same.
        let mut ids = crate::pref::joint_ids(tokenizer, p, r, specials.eos)?;
        if let Some(max) = limit {
            crate::policy::cut_prompt(&mut ids, max, bos);
        }
        rows.push(ids);
    }
    // score_batch reads n = rows/2 pairs; every row is scored all the same.
    let b = score_batch(&rows, specials.pad);
    Ok(values(rewards(&model.valid(), &b, device)))
}
