//! The one training loop: batches → loss → backward (accumulated over micro-batches,
//! normalised by token count) → global-norm clipping → AdamW, with evaluation, guards,
//! metrics (JSONL, progress bar, SVG curve) and atomic checkpoints with exact resume.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use burn::module::Module;
use burn::optim::{GradientsAccumulator, GradientsParams, ModuleOptimizer};
use burn::prelude::*;
use indicatif::{ProgressBar, ProgressStyle};
use manabi_model::{DecoderLm, ModelConfig};
use serde::Serialize;

use crate::checkpoint::{self, Resume, TrainState};
use crate::config::{OnNan, Precision, TrainConfig};
use crate::data::LmBatch;
use crate::error::{Result, TrainError};
use crate::lock::RunLock;
use crate::loss::clm_loss_sum;
use crate::model::TrainModel;
use crate::optim::{build_optimizer, global_norm, scale_grads};
use crate::tasks::Task;

/// What a run did.
#[derive(Debug, Clone, Serialize)]
pub struct RunReport {
    /// Step reached.
    pub steps: usize,
    /// Training loss of every step run in this process (resumed runs start later).
    pub losses: Vec<(usize, f64)>,
    /// Validation losses.
    pub evals: Vec<(usize, f64)>,
    /// The task's metrics at the last evaluation (`eval/…`).
    pub eval_metrics: BTreeMap<String, f64>,
    /// Mean training throughput.
    pub tokens_per_s: f64,
    /// Wall time of the loop.
    pub seconds: f64,
    /// Model parameters.
    pub params: usize,
    /// Parameters that receive gradients.
    pub trainable_params: usize,
    /// Newest checkpoint.
    pub checkpoint: Option<PathBuf>,
    /// The step the run resumed from (`--resume`), if it did.
    pub resumed_from: Option<usize>,
}

impl RunReport {
    /// The training loss from where to where, for a one-line summary:
    /// `loss 3.2100 → 1.0500 (steps 1–200)`, with `resumed at step 150` when it was; a
    /// resumed run that had already finished says so instead of printing no loss.
    pub fn loss_summary(&self) -> String {
        let resumed = self
            .resumed_from
            .filter(|&s| s > 0)
            .map(|s| format!(", resumed at step {s}"))
            .unwrap_or_default();
        match (self.losses.first(), self.losses.last()) {
            (Some(&(s0, _)), Some(&(s1, b))) if s0 == s1 => {
                format!("loss {b:.4} (step {s1}{resumed})")
            }
            (Some(&(s0, a)), Some(&(s1, b))) => {
                format!("loss {a:.4} → {b:.4} (steps {s0}–{s1}{resumed})")
            }
            _ => match self.resumed_from {
                Some(s) => format!(
                    "nothing to train: the run had already finished at step {s} (raise \
                     train.steps to continue it)"
                ),
                None => "no training step run".into(),
            },
        }
    }
}

/// One line of `metrics.jsonl`: the Trainer's own fields, then the task's named metrics
/// (`rewards/margins`, `eval/exact_match`, …).
#[derive(Debug, Serialize)]
struct Metrics {
    step: usize,
    loss: f64,
    lr: f64,
    grad_norm: f64,
    tokens_per_s: f64,
    mfu: f64,
    elapsed_s: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    val_loss: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    val_ppl: Option<f64>,
    #[serde(flatten)]
    extra: BTreeMap<String, f64>,
}

/// Side of the square matmul that defines peak FLOP/s everywhere MFU is reported (the
/// trainer's `metrics.jsonl` and `bench-train` alike).
pub const PEAK_N: usize = 1024;

/// Peak f32 matmul FLOP/s of `device`: the best of 3 rounds of 10 products n×n @ n×n.
/// MFU = 6 × parameters × tokens/s ÷ this, measured at `n` = [`PEAK_N`].
pub fn peak_flops(device: &Device, n: usize) -> f64 {
    let dist = burn::tensor::Distribution::Default;
    let a = Tensor::<2>::random([n, n], dist, device);
    let b = Tensor::<2>::random([n, n], dist, device);
    let product = || {
        let c = a.clone().matmul(b.clone());
        c.slice([0..1, 0..1]).into_scalar::<f32>()
    };
    product();
    let reps = 10;
    let best = (0..3)
        .map(|_| {
            let t = Instant::now();
            for _ in 0..reps {
                product();
            }
            t.elapsed().as_secs_f64()
        })
        .fold(f64::INFINITY, f64::min);
    2.0 * (n as f64).powi(3) * reps as f64 / best
}

/// [`peak_flops`] at [`PEAK_N`], measured once per device and process (a test binary
/// runs many short trainings).
pub fn measure_peak_flops(device: &Device) -> f64 {
    static PEAKS: std::sync::Mutex<Vec<(String, f64)>> = std::sync::Mutex::new(Vec::new());
    let key = format!("{device:?}");
    let mut peaks = PEAKS.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(&(_, p)) = peaks.iter().find(|(k, _)| *k == key) {
        return p;
    }
    let p = peak_flops(device, PEAK_N);
    peaks.push((key, p));
    p
}

fn mix(step: usize, seed: u64) -> u64 {
    seed.wrapping_mul(0x9e37_79b9_7f4a_7c15)
        .wrapping_add(step as u64)
}

/// Mean loss over `batches` and its gradients: each micro-batch's summed loss is divided
/// by the target count of all of them before its backward pass, so k micro-batches give
/// the gradients of one batch k times larger.
pub fn task_loss_and_grads<T: Task>(
    task: &T,
    model: &T::Model,
    batches: &[T::Batch],
    device: &Device,
) -> Result<(f64, GradientsParams)> {
    let (loss, grads, _) = step_loss_and_grads(task, model, batches, device)?;
    Ok((loss, grads))
}

/// [`task_loss_and_grads`] with the task's named metrics (means over the step's targets).
fn step_loss_and_grads<T: Task>(
    task: &T,
    model: &T::Model,
    batches: &[T::Batch],
    device: &Device,
) -> Result<(f64, GradientsParams, BTreeMap<String, f64>)> {
    let total = batches.iter().map(T::targets).sum::<usize>().max(1) as f64;
    let mut metrics = BTreeMap::new();
    let (loss, grads) = accumulate(model, batches, T::targets, |m, b| {
        let out = task.loss(m, b, device)?;
        for (k, v) in out.metrics {
            *metrics.entry(k).or_insert(0.0) += v / total;
        }
        Ok::<_, TrainError>(out.sum)
    })?;
    Ok((loss, grads, metrics))
}

/// [`task_loss_and_grads`] for causal LM batches.
pub fn loss_and_grads(
    model: &DecoderLm,
    batches: &[LmBatch],
    device: &Device,
) -> (f64, GradientsParams) {
    let clm =
        |m: &DecoderLm, b: &LmBatch| Ok::<_, std::convert::Infallible>(clm_loss_sum(m, b, device));
    let Ok(out) = accumulate(model, batches, LmBatch::target_count, clm);
    out
}

fn accumulate<M: TrainModel, B, E>(
    model: &M,
    batches: &[B],
    targets: impl Fn(&B) -> usize,
    mut loss_sum: impl FnMut(&M, &B) -> std::result::Result<Tensor<1>, E>,
) -> std::result::Result<(f64, GradientsParams), E> {
    let total: usize = batches.iter().map(&targets).sum();
    let mut acc = GradientsAccumulator::<M>::new();
    let mut sum_all = 0.0;
    for b in batches {
        let sum = loss_sum(model, b)?;
        let scaled = sum.clone() / total.max(1) as f64;
        acc.accumulate(model, GradientsParams::from_grads(scaled.backward(), model));
        sum_all += sum.into_scalar::<f32>() as f64;
    }
    Ok((sum_all / total.max(1) as f64, acc.grads()))
}

/// Mean validation loss over fixed batches (no autodiff), and the task's metrics
/// (means over the targets) under `eval/NAME`.
pub fn evaluate<T: Task>(
    task: &T,
    model: &T::Model,
    batches: &[T::Batch],
    device: &Device,
) -> Result<f64> {
    Ok(evaluate_with_metrics(task, model, batches, device)?.0)
}

fn evaluate_with_metrics<T: Task>(
    task: &T,
    model: &T::Model,
    batches: &[T::Batch],
    device: &Device,
) -> Result<(f64, BTreeMap<String, f64>)> {
    let (mut nll, mut count) = (0.0, 0usize);
    let mut sums: BTreeMap<String, f64> = BTreeMap::new();
    for b in batches {
        let out = task.loss(model, b, device)?;
        nll += out.sum.into_scalar::<f32>() as f64;
        count += T::targets(b);
        for (k, v) in out.metrics {
            *sums.entry(format!("eval/{k}")).or_insert(0.0) += v;
        }
    }
    let n = count.max(1) as f64;
    // A task without a validation loss (rollout-based RL) reports NaN, not a fake 0.
    let nll = if count == 0 { f64::NAN } else { nll };
    let mut metrics: BTreeMap<String, f64> = sums.into_iter().map(|(k, v)| (k, v / n)).collect();
    for (k, v) in task.evaluate(model, device)? {
        metrics.insert(format!("eval/{k}"), v);
    }
    Ok((nll / n, metrics))
}

/// The one training loop, reusable by every stage: it takes an already-built model
/// (fresh, from a checkpoint or a Hugging Face folder, with or without adapters), a
/// [`Task`] and the shared `[train]` settings, and owns the optimizer, schedule,
/// accumulation, clipping, guards, evaluation, metrics and checkpoints.
#[derive(Debug, Clone)]
pub struct Trainer {
    /// Shared training settings (`[train]` of every recipe).
    pub train: TrainConfig,
    /// Output folder: `metrics.jsonl`, `loss.svg`, `checkpoints/`.
    pub out: PathBuf,
    /// Seed of dropout (data order is the task's).
    pub seed: u64,
    /// The resolved recipe, written into every checkpoint as `config.toml`.
    pub config_toml: String,
    /// A `tokenizer.json` copied into every checkpoint.
    pub tokenizer: Option<PathBuf>,
    /// Files that, with `model.toml`, say how to rebuild the model (`peft.toml`, …):
    /// `(name, text)`. Written into every checkpoint and compared on resume.
    pub spec_files: Vec<(String, String)>,
    /// Where evaluation runs.
    plain: Device,
    /// Where training runs (autodiff, optionally with gradient checkpointing).
    autodiff: Device,
    /// This run's hold on `out`: one writer per run folder.
    lock: RunLock,
}

impl Trainer {
    /// A trainer writing into `out`; checks `train.precision` against `device`.
    pub fn new(
        device: &Device,
        train: TrainConfig,
        out: impl Into<PathBuf>,
        seed: u64,
    ) -> Result<Self> {
        let out = out.into();
        let lock = RunLock::acquire(&out)?;
        // What a killed run left half-written or half-deleted goes before anything reads
        // the folder.
        let swept = checkpoint::sweep(&out.join("checkpoints"))?;
        if swept > 0 {
            tracing::info!(swept, "removed leftovers of an interrupted save or cleanup");
        }
        if train.precision != Precision::F32 {
            let supported = device.supports_dtype(match train.precision {
                Precision::Bf16 => burn::tensor::DType::BF16,
                _ => burn::tensor::DType::F16,
            });
            return Err(TrainError::Config {
                key: "train.precision".into(),
                message: if supported {
                    format!(
                        "\"{}\" training is not implemented yet; use \"f32\"",
                        format!("{:?}", train.precision).to_lowercase()
                    )
                } else {
                    format!(
                        "this device cannot compute in \"{}\"; use \"f32\"",
                        format!("{:?}", train.precision).to_lowercase()
                    )
                },
            });
        }
        let ad = if train.gradient_checkpointing {
            device.clone().autodiff().gradient_checkpointing()
        } else {
            device.clone().autodiff()
        };
        Ok(Self {
            train,
            out,
            seed,
            config_toml: String::new(),
            tokenizer: None,
            spec_files: Vec::new(),
            plain: device.clone(),
            autodiff: ad,
            lock,
        })
    }

    /// The autodiff device: build (or load) the model to train here.
    pub fn device(&self) -> &Device {
        &self.autodiff
    }

    /// The plain device evaluation runs on.
    pub fn eval_device(&self) -> &Device {
        &self.plain
    }

    /// The lock this trainer holds on its run folder.
    pub fn lock(&self) -> &RunLock {
        &self.lock
    }

    /// Trains `model` on `task` to `train.steps`. With `resume` ([`Resume::Latest`] for
    /// `true`), the weights, optimizer state and step of the newest checkpoint that verifies
    /// (or of the one named) are loaded into `model` (which must have the structure the
    /// checkpoint records) and the run continues as if never stopped. A run stopped before
    /// its first checkpoint starts from the beginning.
    pub fn fit<T: Task>(
        &self,
        task: &T,
        model: T::Model,
        resume: impl Into<Resume>,
    ) -> Result<RunReport> {
        let resume = resume.into();
        let (t, ad, device, out) = (&self.train, &self.autodiff, &self.plain, self.out.as_path());
        let val_batches: Vec<T::Batch> = (0..t.eval_batches)
            .map(|i| task.val_batch(i))
            .collect::<Result<_>>()?;
        let ckpt_root = out.join("checkpoints");
        let mut model = model;
        let mut optim: ModuleOptimizer = build_optimizer(&model, t);
        let mut state = TrainState::new(self.seed);
        let metrics_path = out.join("metrics.jsonl");
        let mut resumed_from = None;
        if let Some((dir, saved)) = resume_point(&resume, &ckpt_root)? {
            (model, optim, state) = self.restore(task, &dir, saved, model)?;
            crate::metrics_log::truncate_metrics(&metrics_path, state.step)?;
            resumed_from = Some(state.step);
            if state.step >= t.steps {
                tracing::warn!(
                    checkpoint = %dir.display(),
                    step = state.step,
                    "the run had already finished (train.steps = {})",
                    t.steps
                );
            }
        } else if metrics_path.exists() {
            std::fs::remove_file(&metrics_path).map_err(|e| TrainError::io(&metrics_path, e))?;
        }
        let params = model.num_params();
        let trainable = crate::model::trainable_params(&model);
        if trainable < params {
            tracing::info!(trainable, total = params, "trainable parameters");
        }
        let peak = measure_peak_flops(device);
        let mut metrics_file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&metrics_path)
            .map_err(|e| TrainError::io(&metrics_path, e))?;

        let bar = if t.progress {
            let bar = ProgressBar::new(t.steps as u64);
            if let Ok(style) = ProgressStyle::with_template(
                "{bar:30} {pos}/{len} [{elapsed_precise}<{eta_precise}] {msg}",
            ) {
                bar.set_style(style);
            }
            bar.set_position(state.step as u64);
            bar
        } else {
            ProgressBar::hidden()
        };

        let mut report = RunReport {
            steps: state.step,
            losses: Vec::new(),
            evals: Vec::new(),
            eval_metrics: BTreeMap::new(),
            tokens_per_s: 0.0,
            seconds: 0.0,
            params,
            trainable_params: trainable,
            checkpoint: checkpoint::latest(&ckpt_root),
            resumed_from,
        };
        let loop_start = Instant::now();
        let mut tokens_run = 0u64;
        if t.eval_at_start && state.step == 0 {
            let (v, metrics) = evaluate_with_metrics(task, &model.valid(), &val_batches, device)?;
            report.evals.push((0, v));
            let shown: String = metrics
                .iter()
                .map(|(k, v)| format!(", {k} {v:.4}"))
                .collect();
            bar.println(format!("step 0: val loss {v:.4}{shown}"));
            let mut line = serde_json::json!({"step": 0, "val_loss": v, "val_ppl": v.exp()});
            for (k, m) in metrics {
                line[k] = serde_json::json!(m);
            }
            writeln!(metrics_file, "{line}").map_err(|e| TrainError::io(&metrics_path, e))?;
        }

        while state.step < t.steps && (t.stop_after == 0 || state.step < t.stop_after) {
            let step = state.step;
            let step_start = Instant::now();
            let lr = t.lr_at(step);
            ad.seed(mix(step, self.seed));
            let batches: Vec<T::Batch> = (0..t.grad_accum)
                .map(|m| task.batch(&model, step, m, t.grad_accum))
                .collect::<Result<_>>()?;
            let (loss, mut grads, mut extra) = step_loss_and_grads(task, &model, &batches, ad)?;
            let norm = global_norm(&model, &grads);
            if !guard(t, step, loss, norm, state.loss_mean, &ckpt_root)? {
                state.step += 1;
                continue;
            }
            state.loss_mean = Some(state.loss_mean.map_or(loss, |m| 0.95 * m + 0.05 * loss));
            if t.grad_clip > 0.0 && norm > t.grad_clip {
                scale_grads(&model, &mut grads, t.grad_clip / (norm + 1e-6));
            }
            model = optim.step(lr, model, grads);

            let step_tokens = batches.iter().map(T::tokens).sum::<usize>() as u64;
            tokens_run += step_tokens;
            state.tokens_seen += step_tokens;
            state.step += 1;
            let secs = step_start.elapsed().as_secs_f64();
            let tps = step_tokens as f64 / secs.max(1e-9);
            report.losses.push((state.step, loss));

            let done = state.step == t.steps || state.step == t.stop_after;
            let mut val = None;
            if done || (t.eval_every > 0 && state.step.is_multiple_of(t.eval_every)) {
                let (v, metrics) =
                    evaluate_with_metrics(task, &model.valid(), &val_batches, device)?;
                report.evals.push((state.step, v));
                if v.is_finite() && state.best.is_none_or(|(b, _)| v < b) {
                    state.best = Some((v, state.step));
                }
                let shown: String = metrics
                    .iter()
                    .map(|(k, v)| format!(", {k} {v:.4}"))
                    .collect();
                bar.println(format!(
                    "step {}: train loss {loss:.4}, val loss {v:.4}{shown}",
                    state.step
                ));
                report.eval_metrics.clone_from(&metrics);
                extra.extend(metrics);
                val = Some(v);
            }
            if val.is_some() || done || state.step.is_multiple_of(t.log_every.max(1)) {
                let m = Metrics {
                    step: state.step,
                    loss,
                    lr,
                    grad_norm: norm,
                    tokens_per_s: tps,
                    mfu: 6.0 * params as f64 * tps / peak,
                    elapsed_s: loop_start.elapsed().as_secs_f64(),
                    val_loss: val,
                    val_ppl: val.map(f64::exp),
                    extra,
                };
                let line =
                    serde_json::to_string(&m).map_err(|e| TrainError::io(&metrics_path, e))?;
                writeln!(metrics_file, "{line}").map_err(|e| TrainError::io(&metrics_path, e))?;
                tracing::info!(
                    step = state.step,
                    loss,
                    lr,
                    grad_norm = norm,
                    tokens_per_s = tps
                );
            }
            bar.set_position(state.step as u64);
            bar.set_message(format!("loss {loss:.4} · {tps:.0} tok/s"));
            if done || (t.checkpoint_every > 0 && state.step.is_multiple_of(t.checkpoint_every)) {
                report.checkpoint = Some(self.save(task, &ckpt_root, &model, &optim, &state)?);
            }
        }
        bar.finish_and_clear();
        report.steps = state.step;
        report.seconds = loop_start.elapsed().as_secs_f64();
        report.tokens_per_s = tokens_run as f64 / report.seconds.max(1e-9);
        let (train_pts, val_pts) = crate::metrics_log::read_curves(&metrics_path)?;
        crate::plot::loss_curve(
            &out.join("loss.svg"),
            &train_pts,
            &val_pts,
            task.loss_label(),
        )?;
        if let Some((key, label)) = task.key_metric() {
            let points = crate::metrics_log::read_series(&metrics_path, key)?;
            crate::plot::metric_curve(&out.join("metric.svg"), label, &points)?;
        }
        Ok(report)
    }

    /// Loads the checkpoint `dir` into `model` (which must have the structure it records),
    /// with its optimizer state, run state and the task's own state.
    fn restore<T: Task>(
        &self,
        task: &T,
        dir: &Path,
        saved: TrainState,
        model: T::Model,
    ) -> Result<(T::Model, ModuleOptimizer, TrainState)> {
        self.check_spec(dir, model.model_config())?;
        let (model, optim, state) =
            checkpoint::load_into(dir, saved, model, |m| build_optimizer(m, &self.train))?;
        let state_path = dir.join(crate::tasks::TASK_STATE_FILE);
        let task_state = match state_path.exists() {
            true => Some(
                std::fs::read_to_string(&state_path).map_err(|e| TrainError::io(&state_path, e))?,
            ),
            false => None,
        };
        task.restore_state(task_state.as_deref())?;
        tracing::info!(checkpoint = %dir.display(), step = state.step, "resuming");
        Ok((model, optim, state))
    }

    /// Writes the checkpoint of `state.step` and deletes the ones `keep_last` drops.
    fn save<T: Task>(
        &self,
        task: &T,
        root: &Path,
        model: &T::Model,
        optim: &ModuleOptimizer,
        state: &TrainState,
    ) -> Result<PathBuf> {
        let task_state = task.save_state()?;
        let extras = checkpoint::Extras {
            config_toml: &self.config_toml,
            tokenizer: self.tokenizer.as_deref(),
            spec_files: &self.spec_files,
            task_state: task_state.as_deref(),
        };
        let dir = checkpoint::save(root, model, optim, state, extras)?;
        checkpoint::retain(root, self.train.keep_last, state.best.map(|(_, s)| s))?;
        Ok(dir)
    }

    /// A checkpoint resumes only into a model of the structure it records.
    fn check_spec(&self, dir: &Path, cfg: &ModelConfig) -> Result<()> {
        let differs = |what: &str| TrainError::Checkpoint {
            path: dir.to_path_buf(),
            message: format!(
                "its {what} differs from the recipe's; resume with the recipe that wrote it"
            ),
        };
        let path = dir.join("model.toml");
        let text = std::fs::read_to_string(&path).map_err(|e| TrainError::io(&path, e))?;
        let saved: ModelConfig = toml::from_str(&text).map_err(|e| TrainError::Checkpoint {
            path: path.clone(),
            message: e.message().to_string(),
        })?;
        if &saved != cfg {
            return Err(differs("model config (model.toml)"));
        }
        for (name, text) in &self.spec_files {
            let path = dir.join(name);
            let saved = std::fs::read_to_string(&path).map_err(|e| TrainError::io(&path, e))?;
            if &saved != text {
                return Err(differs(&format!("model spec ({name})")));
            }
        }
        Ok(())
    }
}

/// Where a run continues from: a verified checkpoint folder and its state (verified once,
/// here), or `None` to start at step 0 (no resume, or `--resume` before the first
/// checkpoint was written).
fn resume_point(resume: &Resume, ckpt_root: &Path) -> Result<Option<(PathBuf, TrainState)>> {
    match resume {
        Resume::No => Ok(None),
        Resume::Latest => {
            let found = checkpoint::newest_verified(ckpt_root)?;
            if found.is_none() {
                tracing::warn!(
                    "{}: no checkpoint yet (the run stopped before its first save); \
                     starting from the beginning",
                    ckpt_root.display()
                );
            }
            Ok(found)
        }
        Resume::From(dir) => {
            if !dir.join("state.json").is_file() {
                return Err(TrainError::File {
                    path: dir.clone(),
                    message: "not a training checkpoint (no state.json)".into(),
                });
            }
            Ok(Some((dir.clone(), checkpoint::read_state(dir)?)))
        }
    }
}

/// The guards of one step: a non-finite loss or gradient norm stops the run or (with
/// `on_nan = "skip"`) skips the step (`Ok(false)`); a loss spike over `spike_factor` ×
/// its running mean stops it. Errors name the newest checkpoint to go back to.
fn guard(
    t: &TrainConfig,
    step: usize,
    loss: f64,
    norm: f64,
    loss_mean: Option<f64>,
    ckpt_root: &Path,
) -> Result<bool> {
    let last_good =
        || checkpoint::latest(ckpt_root).map_or("none".to_string(), |p| p.display().to_string());
    let bad = if !loss.is_finite() {
        Some(("loss", loss))
    } else if !norm.is_finite() {
        Some(("gradient norm", norm))
    } else {
        None
    };
    if let Some((what, value)) = bad {
        return match t.on_nan {
            OnNan::Stop => Err(TrainError::NotFinite {
                step,
                what,
                value,
                last_good: last_good(),
            }),
            OnNan::Skip => {
                tracing::warn!(step, what, value, "skipping a non-finite step");
                Ok(false)
            }
        };
    }
    if t.spike_factor > 0.0
        && let Some(mean) = loss_mean
        && step > t.warmup_steps
        && loss > t.spike_factor * mean
    {
        return Err(TrainError::Spike {
            step,
            loss,
            mean,
            factor: t.spike_factor,
            last_good: last_good(),
        });
    }
    Ok(true)
}
