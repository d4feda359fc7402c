//! Seq2seq SFT on an encoder-decoder (T5): the rendered prompt, with EOS, is the encoder's
//! input, and the final response (EOS included) is the decoder's target, trained with
//! teacher forcing (`shift_right`) as transformers' `T5ForConditionalGeneration` does
//! with `labels`. Everything before the final response is the source, so multi-turn
//! conversations keep their history on the encoder side. Evaluation decodes greedily.

use burn::prelude::*;
use manabi_model::{IGNORE_INDEX, T5, T5GreedyOptions};
use manabi_objectives::loss::ce_sum;
use manabi_objectives::{Task, TaskLoss, TrainError};

use crate::error::Result;
use crate::sft::encode::{self, Encoded};
use crate::sft::{GenerationEval, generation_metrics};

/// One source/target pair.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pair {
    /// Encoder input, EOS last.
    pub source: Vec<u32>,
    /// Decoder target: the final response, EOS last.
    pub target: Vec<u32>,
}

impl Pair {
    /// The pair of an encoded SFT example: the prompt (+ EOS) and the final response.
    pub fn of(e: &Encoded, eos: u32) -> Self {
        let mut source = e.tokens[..e.response_start].to_vec();
        source.push(eos);
        Self {
            source,
            target: e.tokens[e.response_start..].to_vec(),
        }
    }
}

/// A padded batch of pairs.
#[derive(Debug, Clone, PartialEq)]
pub struct Seq2SeqBatch {
    /// Pairs.
    pub batch: usize,
    /// Source length.
    pub src: usize,
    /// Target length.
    pub tgt: usize,
    /// `[batch·src]` right-padded sources.
    pub inputs: Vec<u32>,
    /// `[batch·src]` 1 for source tokens, 0 for padding.
    pub mask: Vec<f32>,
    /// `[batch·tgt]` targets, [`IGNORE_INDEX`] after each one's end.
    pub labels: Vec<i64>,
}

impl Seq2SeqBatch {
    /// Pads `pairs` into one batch.
    pub fn of(pairs: &[&Pair], pad: u32) -> Self {
        let src = pairs.iter().map(|p| p.source.len()).max().unwrap_or(1);
        let tgt = pairs.iter().map(|p| p.target.len()).max().unwrap_or(1);
        let mut b = Self {
            batch: pairs.len(),
            src,
            tgt,
            inputs: Vec::with_capacity(pairs.len() * src),
            mask: Vec::with_capacity(pairs.len() * src),
            labels: Vec::with_capacity(pairs.len() * tgt),
        };
        for p in pairs {
            let n = p.source.len();
            b.inputs.extend(&p.source);
            b.inputs.extend(std::iter::repeat_n(pad, src - n));
            b.mask.extend(std::iter::repeat_n(1.0, n));
            b.mask.extend(std::iter::repeat_n(0.0, src - n));
            b.labels.extend(p.target.iter().map(|&t| t as i64));
            b.labels
                .extend(std::iter::repeat_n(IGNORE_INDEX, tgt - p.target.len()));
        }
        b
    }
}

/// Seq2seq SFT as a [`Task`] of the shared Trainer.
#[derive(Debug)]
pub struct Seq2SeqTask {
    /// Training pairs.
    pub train: Vec<Pair>,
    /// Validation pairs.
    pub val: Vec<Pair>,
    /// Pairs per micro-batch.
    pub batch_size: usize,
    /// Padding.
    pub pad: u32,
    /// EOS (appended to each source at evaluation).
    pub eos: u32,
    /// Seed of the data order.
    pub seed: u64,
    /// Exact match (and ROUGE) by greedy decoding at every evaluation.
    pub generation: Option<GenerationEval>,
}

/// Greedy answers of `model` to `g`'s prompts (sources without EOS: it is appended).
pub fn predict(model: &T5, g: &GenerationEval, eos: u32) -> Result<Vec<crate::sft::Prediction>> {
    let opts = T5GreedyOptions {
        max_new_tokens: g.options.max_new_tokens,
        use_cache: true,
        eos_ids: None,
    };
    g.predict_with(|prompts| {
        let sources: Vec<Vec<u32>> = prompts
            .iter()
            .map(|p| p.iter().copied().chain([eos]).collect())
            .collect();
        // Cut at the tokenizer's EOS too: a T5 folder may not name its EOS.
        Ok(model
            .greedy(&sources, &opts)?
            .into_iter()
            .map(|mut out| {
                if let Some(end) = out.iter().position(|&t| t == eos) {
                    out.truncate(end);
                }
                out
            })
            .collect())
    })
}

impl Task for Seq2SeqTask {
    type Model = T5;
    type Batch = Seq2SeqBatch;

    fn batch(
        &self,
        _: &T5,
        step: usize,
        micro: usize,
        per_step: usize,
    ) -> manabi_objectives::Result<Seq2SeqBatch> {
        let g = step * per_step + micro;
        let idx = encode::schedule(self.train.len(), self.batch_size, g, self.seed);
        let pairs: Vec<&Pair> = idx.iter().map(|&i| &self.train[i]).collect();
        Ok(Seq2SeqBatch::of(&pairs, self.pad))
    }

    fn val_batch(&self, i: usize) -> manabi_objectives::Result<Seq2SeqBatch> {
        let pairs: Vec<&Pair> = encode::val_indices(self.val.len(), self.batch_size, i)
            .into_iter()
            .map(|k| &self.val[k])
            .collect();
        Ok(Seq2SeqBatch::of(&pairs, self.pad))
    }

    fn loss(
        &self,
        model: &T5,
        b: &Seq2SeqBatch,
        device: &Device,
    ) -> manabi_objectives::Result<TaskLoss> {
        let ids: Vec<i64> = b.inputs.iter().map(|&x| x as i64).collect();
        let ids = Tensor::<1, Int>::from_ints(ids.as_slice(), device).reshape([b.batch, b.src]);
        let mask = Tensor::<1>::from_floats(b.mask.as_slice(), device).reshape([b.batch, b.src]);
        let labels =
            Tensor::<1, Int>::from_ints(b.labels.as_slice(), device).reshape([b.batch, b.tgt]);
        let logits = model
            .forward(ids, Some(mask), model.shift_right(labels))
            .map_err(|e| TrainError::Data(e.to_string()))?;
        Ok(TaskLoss::new(ce_sum(logits, &b.labels)))
    }

    fn targets(b: &Seq2SeqBatch) -> usize {
        b.labels.iter().filter(|&&l| l >= 0).count()
    }

    fn tokens(b: &Seq2SeqBatch) -> usize {
        b.batch * (b.src + b.tgt)
    }

    fn evaluate(
        &self,
        model: &T5,
        _device: &Device,
    ) -> manabi_objectives::Result<Vec<(String, f64)>> {
        let Some(g) = &self.generation else {
            return Ok(Vec::new());
        };
        let p = predict(model, g, self.eos)?;
        Ok(generation_metrics(&p, g.rouge))
    }
}
