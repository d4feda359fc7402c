//! Sequence classification and regression (`manabi task`): a decoder body with a `score`
//! head read at each sequence's last token (EOS), or a BERT encoder read at `[CLS]`, as
//! Hugging Face's `*ForSequenceClassification` (`body.rs`). Classes train with
//! cross-entropy, scores (STS) with squared error; evaluation reports accuracy and
//! macro-F1, or Pearson and Spearman, and writes every prediction next to its gold label.

use std::path::Path;

use burn::prelude::*;
use burn::tensor::activation::log_softmax;
use manabi_finetune::error::{FinetuneError, Result};
use manabi_finetune::head::pad_rows;
use manabi_finetune::metrics;
use manabi_finetune::sft::encode::train_window;
use manabi_model::argmax_first;
use manabi_objectives::{Task, TaskLoss};
use manabi_tokenize::TextTokenizer;

use crate::body::{Framing, SeqClassifier, SeqModel};
use crate::data::{Example, Label, class_ids};
use crate::settings::TaskSettings;

pub use crate::batch::SeqBatch;
pub use crate::report::SplitReport;

/// One encoded example.
#[derive(Debug, Clone, PartialEq)]
pub struct Encoded {
    /// Tokens, ending with EOS (decoders) or `[SEP]` (BERT).
    pub ids: Vec<u32>,
    /// Segment ids (BERT sentence pairs); empty for decoders.
    pub types: Vec<u32>,
    /// Class index (classification) or `None`.
    pub class: Option<usize>,
    /// Gold score (regression) or `None`.
    pub score: Option<f64>,
}

/// Examples encoded for one task: ids and gold labels.
#[derive(Debug, Clone)]
pub struct EncodedSet {
    /// One per example, in file order.
    pub rows: Vec<Encoded>,
    /// Inputs that were cut to `max_length`.
    pub cut: usize,
}

/// Frames the text fields of each example for the body ([`Framing`]: joined by the
/// separator with EOS for a decoder, `[CLS] a [SEP] b [SEP]` for BERT) in at most
/// `max_length` tokens.
pub fn encode(
    examples: &[Example],
    settings: &TaskSettings,
    names: &[String],
    tokenizer: &TextTokenizer,
    framing: Framing,
) -> Result<EncodedSet> {
    let classes = if settings.kind.regression() {
        vec![None; examples.len()]
    } else {
        class_ids(examples, names)?
    };
    let mut cut = 0;
    let mut rows = Vec::with_capacity(examples.len());
    for (e, class) in examples.iter().zip(classes) {
        let f = framing.frame(
            &e.texts,
            &settings.separator,
            settings.max_length,
            tokenizer,
        )?;
        cut += usize::from(f.cut);
        let score = match e.label {
            Some(Label::Score(x)) => Some(x),
            _ => None,
        };
        rows.push(Encoded {
            ids: f.ids,
            types: f.types,
            class,
            score,
        });
    }
    Ok(EncodedSet { rows, cut })
}

fn seq_batch(rows: &[&Encoded], pad: u32) -> SeqBatch {
    let ids: Vec<&[u32]> = rows.iter().map(|r| r.ids.as_slice()).collect();
    let (seq, inputs, last) = pad_rows(&ids, pad);
    let types = if rows.iter().all(|r| r.types.is_empty()) {
        Vec::new()
    } else {
        let t: Vec<&[u32]> = rows.iter().map(|r| r.types.as_slice()).collect();
        pad_rows(&t, 0).1
    };
    SeqBatch {
        rows: rows.len(),
        seq,
        inputs,
        last,
        types,
        classes: rows.iter().map(|r| r.class.unwrap_or(0)).collect(),
        scores: rows.iter().map(|r| r.score.unwrap_or(0.0) as f32).collect(),
    }
}

fn rows_of(t: Tensor<2>) -> Vec<Vec<f64>> {
    let [_, l] = t.dims();
    let v = t
        .into_data()
        .convert::<f64>()
        .try_into_vec::<f64>()
        .unwrap_or_default();
    v.chunks(l.max(1)).map(<[f64]>::to_vec).collect()
}

/// The most frequent class of the training counts, the first one on ties (as sklearn's
/// `DummyClassifier(strategy="most_frequent")`); `None` without classes (regression).
pub(crate) fn majority_class(label_counts: &[(String, usize)]) -> Option<usize> {
    let counts: Vec<usize> = label_counts.iter().map(|(_, c)| *c).collect();
    (!counts.is_empty()).then(|| argmax_first(&counts))
}

/// Head outputs for every row, in batches of `batch_size` (no gradients).
pub fn predict(
    scores: impl Fn(&SeqBatch) -> Result<Tensor<2>>,
    rows: &[Encoded],
    batch_size: usize,
    pad: u32,
) -> Result<Vec<Vec<f64>>> {
    let mut out = Vec::with_capacity(rows.len());
    for chunk in rows.chunks(batch_size.max(1)) {
        let refs: Vec<&Encoded> = chunk.iter().collect();
        out.extend(rows_of(scores(&seq_batch(&refs, pad))?));
    }
    Ok(out)
}

/// The task metrics of `outputs` against the gold labels of `rows` (rows without gold
/// are left out): `accuracy` and `macro_f1`, or `pearson` and `spearman`.
pub fn score(rows: &[Encoded], outputs: &[Vec<f64>], regression: bool) -> Vec<(String, f64)> {
    if regression {
        let (gold, pred): (Vec<f64>, Vec<f64>) = rows
            .iter()
            .zip(outputs)
            .filter_map(|(r, o)| r.score.map(|g| (g, o[0])))
            .unzip();
        vec![
            ("pearson".into(), metrics::pearson(&gold, &pred)),
            ("spearman".into(), metrics::spearman(&gold, &pred)),
        ]
    } else {
        let (gold, pred): (Vec<usize>, Vec<usize>) = rows
            .iter()
            .zip(outputs)
            .filter_map(|(r, o)| r.class.map(|g| (g, argmax_first(o))))
            .unzip();
        vec![
            ("accuracy".into(), metrics::accuracy(&gold, &pred)),
            ("macro_f1".into(), metrics::macro_f1(&gold, &pred)),
        ]
    }
}

/// Predicts every row with `model`, writes the predictions to `path` (next to each
/// example's text fields and gold label) and scores them against the gold labels the rows
/// carry; `majority` is the training majority class, for its baseline.
#[allow(clippy::too_many_arguments)]
pub(crate) fn evaluate_rows(
    model: &SeqModel,
    settings: &TaskSettings,
    examples: &[Example],
    rows: &[Encoded],
    majority: Option<usize>,
    pad: u32,
    batch_size: usize,
    path: &Path,
    device: &Device,
) -> Result<SplitReport> {
    let out = predict(
        |b: &SeqBatch| model.scores(b, device),
        rows,
        batch_size,
        pad,
    )?;
    write_predictions(path, settings, examples, &out)?;
    let has_gold = rows.iter().any(|r| r.class.is_some() || r.score.is_some());
    let majority_baseline = majority
        .filter(|_| has_gold && !settings.kind.regression())
        .map(|m| {
            let gold: Vec<usize> = rows.iter().filter_map(|r| r.class).collect();
            metrics::accuracy(&gold, &vec![m; gold.len()])
        });
    Ok(SplitReport {
        name: path.display().to_string(),
        examples: rows.len(),
        metrics: if has_gold {
            score(rows, &out, settings.kind.regression())
        } else {
            Vec::new()
        },
        majority_baseline,
        predictions: path.to_path_buf(),
    })
}

/// One JSON line per example: its text fields, `label` (gold, when known), `pred`, and
/// `probs` (classes) or nothing more (scores).
fn write_predictions(
    path: &Path,
    settings: &TaskSettings,
    examples: &[Example],
    outputs: &[Vec<f64>],
) -> Result<()> {
    use std::io::Write;
    let file = std::fs::File::create(path).map_err(|e| FinetuneError::io(path, e))?;
    let mut w = std::io::BufWriter::new(file);
    for (e, o) in examples.iter().zip(outputs) {
        let mut obj = serde_json::Map::new();
        for (f, t) in settings.kind.text_fields().iter().zip(&e.texts) {
            obj.insert((*f).into(), t.clone().into());
        }
        match &e.label {
            Some(Label::Class(c)) => obj.insert("label".into(), c.clone().into()),
            Some(Label::Score(x)) => obj.insert("label".into(), (*x).into()),
            None => None,
        };
        if settings.kind.regression() {
            obj.insert("pred".into(), o[0].into());
        } else {
            let max = o.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            let z: f64 = o.iter().map(|x| (x - max).exp()).sum();
            let probs: Vec<f64> = o.iter().map(|x| (x - max).exp() / z).collect();
            let pred = &settings.labels[manabi_model::argmax_first(o)];
            obj.insert("pred".into(), pred.clone().into());
            obj.insert("probs".into(), probs.into());
        }
        writeln!(w, "{}", serde_json::Value::Object(obj))
            .map_err(|e| FinetuneError::io(path, e))?;
    }
    w.flush().map_err(|e| FinetuneError::io(path, e))
}

/// A sequence task as a [`Task`] of the shared Trainer, on either body `M`.
#[derive(Debug)]
pub struct SeqTask<M> {
    /// Training rows.
    pub train: Vec<Encoded>,
    /// Validation rows.
    pub val: Vec<Encoded>,
    /// Scores instead of classes.
    pub regression: bool,
    /// Rows per micro-batch.
    pub batch_size: usize,
    /// Padding token.
    pub pad: u32,
    /// Seed of the data order.
    pub seed: u64,
    /// The body.
    pub body: std::marker::PhantomData<M>,
}

impl<M: SeqClassifier> Task for SeqTask<M> {
    type Model = M;
    type Batch = SeqBatch;
    fn loss_label(&self) -> &'static str {
        match self.regression {
            true => "squared error",
            false => "cross-entropy (nats/example)",
        }
    }
    fn key_metric(&self) -> Option<(&'static str, &'static str)> {
        Some(match self.regression {
            true => ("eval/spearman", "held-out Spearman ρ"),
            false => ("eval/accuracy", "held-out accuracy"),
        })
    }

    fn batch(
        &self,
        _: &M,
        step: usize,
        micro: usize,
        per_step: usize,
    ) -> manabi_objectives::Result<SeqBatch> {
        let rows = train_window(
            &self.train,
            self.batch_size,
            step * per_step + micro,
            self.seed,
        );
        Ok(seq_batch(&rows, self.pad))
    }

    fn val_batch(&self, i: usize) -> manabi_objectives::Result<SeqBatch> {
        let rows = manabi_finetune::sft::encode::val_window(&self.val, self.batch_size, i);
        Ok(seq_batch(&rows, self.pad))
    }

    fn loss(
        &self,
        model: &M,
        b: &SeqBatch,
        device: &Device,
    ) -> manabi_objectives::Result<TaskLoss> {
        let out = model.scores(b, device)?;
        if self.regression {
            let gold = Tensor::<1>::from_floats(b.scores.as_slice(), device);
            let err = out.reshape([b.rows]) - gold;
            return Ok(TaskLoss::new((err.clone() * err).sum()));
        }
        let classes: Vec<i64> = b.classes.iter().map(|&c| c as i64).collect();
        let idx = Tensor::<1, Int>::from_ints(classes.as_slice(), device).reshape([b.rows, 1]);
        let logp = log_softmax(out.clone(), 1);
        let nll = logp.gather(1, idx).sum().neg();
        let correct = rows_of(out)
            .iter()
            .zip(&b.classes)
            .filter(|(o, c)| argmax_first(o.as_slice()) == **c)
            .count() as f64;
        Ok(TaskLoss {
            sum: nll,
            metrics: vec![("accuracy".into(), correct)],
        })
    }

    fn targets(b: &SeqBatch) -> usize {
        b.rows
    }

    fn tokens(b: &SeqBatch) -> usize {
        b.rows * b.seq
    }

    fn evaluate(
        &self,
        model: &M,
        device: &Device,
    ) -> manabi_objectives::Result<Vec<(String, f64)>> {
        let scores = |b: &SeqBatch| model.scores(b, device);
        let out = predict(scores, &self.val, self.batch_size, self.pad)?;
        Ok(score(&self.val, &out, self.regression))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ties_pick_the_first_class() {
        let row = |ids: Vec<u32>, class| Encoded {
            ids,
            types: Vec::new(),
            class,
            score: None,
        };
        let rows = [row(vec![1], Some(0)), row(vec![2], Some(2))];
        // The first row ties between classes 0 and 2: the first (0) is predicted.
        let outputs = vec![vec![0.5, -1.0, 0.5], vec![0.0, 0.0, 3.0]];
        let got = score(&rows, &outputs, false);
        assert_eq!(got[0], ("accuracy".to_string(), 1.0));
        let counts = |c: &[usize]| -> Vec<(String, usize)> {
            c.iter()
                .enumerate()
                .map(|(i, &n)| (format!("c{i}"), n))
                .collect()
        };
        assert_eq!(majority_class(&counts(&[3, 5, 5])), Some(1));
        assert_eq!(majority_class(&counts(&[4, 4])), Some(0));
        assert_eq!(majority_class(&[]), None);
    }
}
