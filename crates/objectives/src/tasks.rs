//! The three pre-training tasks the Trainer runs: each pairs a model type with its
//! batches and its loss. Batches are pure functions of (seed, step, micro-batch).

use burn::prelude::*;
use manabi_model::{BertForMaskedLm, DecoderLm, T5};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use crate::data::{Batcher, LmBatch};
use crate::error::{Result, TrainError};
use crate::loss::{ce_sum, clm_loss_sum};
use crate::mlm::{MlmBatch, MlmCollator};
use crate::model::TrainModel;
use crate::span::{SpanBatch, SpanCollator};

/// What a task's loss function returns for one micro-batch.
#[derive(Debug)]
pub struct TaskLoss {
    /// Summed loss over the batch's targets (differentiable, `[1]`).
    pub sum: Tensor<1>,
    /// Named metrics, each summed over the batch's targets like the loss: the Trainer
    /// divides by the step's target count and logs them into `metrics.jsonl` under
    /// their names (e.g. `rewards/margins`).
    pub metrics: Vec<(String, f64)>,
}

impl TaskLoss {
    /// A loss with no extra metrics.
    pub fn new(sum: Tensor<1>) -> Self {
        Self {
            sum,
            metrics: Vec::new(),
        }
    }
}

/// A model, its batches and its loss: what differs between pre-training, SFT, reward
/// modelling and DPO. The Trainer owns everything else.
pub trait Task {
    /// The model trained.
    type Model: TrainModel;
    /// One micro-batch.
    type Batch: Clone;
    /// Micro-batch `micro` of `per_step` of optimizer step `step`. `model` is the current
    /// model (on the autodiff device), for tasks that make their batches with it (rollouts);
    /// batches must otherwise be a pure function of the arguments, which makes resume exact.
    fn batch(
        &self,
        model: &Self::Model,
        step: usize,
        micro: usize,
        per_step: usize,
    ) -> Result<Self::Batch>;
    /// Validation batch `i` (the same at every evaluation).
    fn val_batch(&self, i: usize) -> Result<Self::Batch>;
    /// Summed loss over the batch's targets, and named metrics.
    fn loss(&self, model: &Self::Model, batch: &Self::Batch, device: &Device) -> Result<TaskLoss>;
    /// Targets that count in the loss.
    fn targets(batch: &Self::Batch) -> usize;
    /// Tokens processed (for throughput).
    fn tokens(batch: &Self::Batch) -> usize;
    /// Extra evaluation run with the validation loss (e.g. exact match of generated
    /// answers); logged as `eval/NAME`. `model` is in validation mode.
    fn evaluate(&self, _model: &Self::Model, _device: &Device) -> Result<Vec<(String, f64)>> {
        Ok(Vec::new())
    }
    /// What the loss is, for the y axis of `loss.svg` (default: a mean cross-entropy).
    fn loss_label(&self) -> &'static str {
        "cross-entropy (nats/token)"
    }
    /// The metric that says how the stage is doing, beside its loss: its key in
    /// `metrics.jsonl` and its axis label. The Trainer plots it as `metric.svg`.
    fn key_metric(&self) -> Option<(&'static str, &'static str)> {
        None
    }
    /// State the task carries from step to step that is not a function of the step
    /// (PPO's current rollouts and adaptive KL coefficient), as text. The Trainer writes it
    /// into every checkpoint as [`TASK_STATE_FILE`] and gives it back with
    /// [`Task::restore_state`] on resume, so such tasks resume exactly too.
    fn save_state(&self) -> Result<Option<String>> {
        Ok(None)
    }
    /// Restores what [`Task::save_state`] wrote (`None`: the checkpoint has no task state).
    fn restore_state(&self, _state: Option<&str>) -> Result<()> {
        Ok(())
    }
}

/// The file of a checkpoint that holds [`Task::save_state`].
pub const TASK_STATE_FILE: &str = "task_state.json";

fn rng(seed: u64, step: usize, micro: usize) -> ChaCha8Rng {
    ChaCha8Rng::seed_from_u64(
        seed ^ (step as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ ((micro as u64) << 48),
    )
}

/// Causal LM on a decoder.
#[derive(Debug)]
pub struct ClmTask {
    /// Training batches.
    pub train: Batcher,
    /// Validation batches.
    pub val: Batcher,
}

impl Task for ClmTask {
    type Model = DecoderLm;
    type Batch = LmBatch;
    fn batch(&self, _: &DecoderLm, step: usize, micro: usize, per_step: usize) -> Result<LmBatch> {
        Ok(self.train.get(step, micro, per_step))
    }
    fn val_batch(&self, i: usize) -> Result<LmBatch> {
        Ok(self.val.get(i, 0, 1))
    }
    fn loss(&self, model: &DecoderLm, batch: &LmBatch, device: &Device) -> Result<TaskLoss> {
        Ok(TaskLoss::new(clm_loss_sum(model, batch, device)))
    }
    fn targets(batch: &LmBatch) -> usize {
        batch.target_count()
    }
    fn tokens(batch: &LmBatch) -> usize {
        batch.batch * batch.seq
    }
}

/// Masked LM on BERT.
#[derive(Debug)]
pub struct MlmTask {
    /// Windows of raw tokens (random sampling).
    pub train: Batcher,
    /// Validation windows.
    pub val: Batcher,
    /// Masking.
    pub collator: MlmCollator,
    /// Seed of the masking.
    pub seed: u64,
}

impl Task for MlmTask {
    type Model = BertForMaskedLm;
    type Batch = MlmBatch;
    fn batch(
        &self,
        _: &BertForMaskedLm,
        step: usize,
        micro: usize,
        per_step: usize,
    ) -> Result<MlmBatch> {
        let w = self.train.get(step, micro, per_step);
        Ok(self
            .collator
            .apply(&w.inputs, w.batch, w.seq, &mut rng(self.seed, step, micro)))
    }
    fn val_batch(&self, i: usize) -> Result<MlmBatch> {
        let w = self.val.get(i, 0, 1);
        Ok(self
            .collator
            .apply(&w.inputs, w.batch, w.seq, &mut rng(self.seed ^ 0x7a1, i, 0)))
    }
    fn loss(&self, model: &BertForMaskedLm, b: &MlmBatch, device: &Device) -> Result<TaskLoss> {
        let v: Vec<i64> = b.inputs.iter().map(|&x| x as i64).collect();
        let ids = Tensor::<1, Int>::from_ints(v.as_slice(), device).reshape([b.batch, b.seq]);
        let logits = model.forward(ids, None, None)?;
        Ok(TaskLoss::new(ce_sum(logits, &b.labels)))
    }
    fn targets(b: &MlmBatch) -> usize {
        b.labels.iter().filter(|&&l| l >= 0).count()
    }
    fn tokens(b: &MlmBatch) -> usize {
        b.batch * b.seq
    }
}

/// Span corruption on T5.
#[derive(Debug)]
pub struct SpanTask {
    /// Windows of raw tokens (random sampling).
    pub train: Batcher,
    /// Validation windows.
    pub val: Batcher,
    /// Corruption.
    pub collator: SpanCollator,
    /// Seed of the corruption.
    pub seed: u64,
}

impl Task for SpanTask {
    type Model = T5;
    type Batch = SpanBatch;
    fn batch(&self, _: &T5, step: usize, micro: usize, per_step: usize) -> Result<SpanBatch> {
        let w = self.train.get(step, micro, per_step);
        Ok(self
            .collator
            .apply(&w.inputs, w.batch, &mut rng(self.seed, step, micro)))
    }
    fn val_batch(&self, i: usize) -> Result<SpanBatch> {
        let w = self.val.get(i, 0, 1);
        Ok(self
            .collator
            .apply(&w.inputs, w.batch, &mut rng(self.seed ^ 0x7a1, i, 0)))
    }
    fn loss(&self, model: &T5, b: &SpanBatch, device: &Device) -> Result<TaskLoss> {
        let to = |v: &[u32], n: usize| {
            let v: Vec<i64> = v.iter().map(|&x| x as i64).collect();
            Tensor::<1, Int>::from_ints(v.as_slice(), device).reshape([b.batch, n])
        };
        let labels = to(&b.labels, b.tgt);
        let logits = model.forward(to(&b.inputs, b.src), None, model.shift_right(labels))?;
        let targets: Vec<i64> = b.labels.iter().map(|&x| x as i64).collect();
        Ok(TaskLoss::new(ce_sum(logits, &targets)))
    }
    fn targets(b: &SpanBatch) -> usize {
        b.labels.len()
    }
    fn tokens(b: &SpanBatch) -> usize {
        b.batch * (b.src + b.tgt)
    }
}

/// Sentinel ids `<extra_id_0>`, `<extra_id_1>`, … that `tokenizer` has, in order.
pub fn sentinels(tokenizer: &manabi_tokenize::TextTokenizer) -> Vec<u32> {
    (0..)
        .map_while(|i| tokenizer.token_id(&format!("<extra_id_{i}>")))
        .collect()
}

/// An error for a tokenizer without the sentinels span corruption needs.
pub fn no_sentinels() -> TrainError {
    TrainError::Config {
        key: "data.tokenizer".into(),
        message: "span corruption needs sentinel tokens <extra_id_0>…; train the tokenizer with sentinels".into(),
    }
}
