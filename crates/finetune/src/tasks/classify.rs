//! Sequence classification and regression (`manabi task`): a decoder body with a `score`
//! head read at each sequence's last token (EOS), or a BERT encoder read at `[CLS]`, as
//! Hugging Face's `*ForSequenceClassification` (`body.rs`). Classes train with
//! cross-entropy, scores (STS) with squared error; evaluation reports accuracy and
//! macro-F1, or Pearson and Spearman, and writes every prediction next to its gold label.

use manabi_objectives::Resume;
use std::path::PathBuf;

use burn::module::Module;
use burn::prelude::*;
use burn::tensor::activation::log_softmax;
use manabi_model::{
    BertForSequenceClassification, DecoderClassifier, DeviceChoice, Family, argmax_first,
};
use manabi_objectives::{RunReport, Task, TaskLoss};
use manabi_tokenize::TextTokenizer;
use serde::Serialize;

use crate::error::{FinetuneError, Result};
use crate::metrics;
use crate::peft::{self, Method};
use crate::run::PEFT_FILE;
use crate::setup::Setup;
use crate::sft::encode::train_window;
use crate::tasks::body::{
    Framing, SeqClassifier, bert_classifier, body_family, load_bert_body, load_seq_classifier,
};
use crate::tasks::data::{
    Example, Label, TaskKind, class_counts, class_ids, label_set, read_examples,
};
use crate::tasks::evaluate::evaluate_rows;
use crate::tasks::head::{HEAD_FILE, HeadSpec};
use crate::tasks::settings::{TASK_FILE, TaskConfig, TaskSettings, spec_toml};

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

/// Right-padded rows, each read at its last token.
#[derive(Debug, Clone)]
pub struct SeqBatch {
    /// Rows.
    pub rows: usize,
    /// Tokens per row.
    pub seq: usize,
    /// `[rows·seq]`.
    pub inputs: Vec<u32>,
    /// Index of each row's last token.
    pub last: Vec<usize>,
    /// `[rows·seq]` segment ids (BERT), padded with 0; empty for decoders.
    pub types: Vec<u32>,
    /// Class of each row (classification).
    pub classes: Vec<usize>,
    /// Score of each row (regression).
    pub scores: Vec<f32>,
}

/// Pads `rows` on the right with `pad`: `(seq, inputs, last)`.
pub fn pad_rows(rows: &[&[u32]], pad: u32) -> (usize, Vec<u32>, Vec<usize>) {
    let seq = rows.iter().map(|r| r.len()).max().unwrap_or(1).max(1);
    let mut inputs = Vec::with_capacity(rows.len() * seq);
    let mut last = Vec::with_capacity(rows.len());
    for r in rows {
        inputs.extend_from_slice(r);
        inputs.extend(std::iter::repeat_n(pad, seq - r.len()));
        last.push(r.len().saturating_sub(1));
    }
    (seq, inputs, last)
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
        let rows = crate::sft::encode::val_window(&self.val, self.batch_size, i);
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

/// What was measured on one evaluated split.
#[derive(Debug, Clone, Serialize)]
pub struct SplitReport {
    /// `val`, `test` or the file evaluated.
    pub name: String,
    /// Examples.
    pub examples: usize,
    /// Metrics (empty when the data has no gold labels).
    pub metrics: Vec<(String, f64)>,
    /// Accuracy of always answering the most frequent training class (classification).
    pub majority_baseline: Option<f64>,
    /// Where the predictions were written.
    pub predictions: PathBuf,
}

/// What `manabi task` did.
#[derive(Debug, Clone, Serialize)]
pub struct TaskReport {
    /// The Trainer's report.
    pub run: RunReport,
    /// Class names and their counts in the training data (empty for sts).
    pub label_counts: Vec<(String, usize)>,
    /// Inputs cut to `max_length` (training and evaluation data).
    pub cut: usize,
    /// Parameters that trained.
    pub trainable_params: usize,
    /// Metrics of the final checkpoint on validation and test data.
    pub splits: Vec<SplitReport>,
}

impl Setup {
    /// The body of `cfg.model` on the training device (adapters merged), after seeding.
    pub(crate) fn body(&self, cfg: &TaskConfig) -> Result<manabi_model::DecoderLm> {
        self.trainer.device().seed(cfg.run.seed);
        manabi_model::init::seed(cfg.run.seed);
        self.decoder(&cfg.model.path)
    }

    /// Records the recipe, the tokenizer and the spec files (`head.toml` when there is a
    /// head, `task.toml`, and `peft.toml` when adapted) in the Trainer.
    pub(crate) fn record(
        &mut self,
        cfg: &TaskConfig,
        head: Option<&HeadSpec>,
        settings: &TaskSettings,
    ) -> Result<()> {
        let t = &mut self.trainer;
        t.config_toml =
            toml::to_string_pretty(cfg).map_err(|e| FinetuneError::io(&cfg.run.out, e))?;
        t.tokenizer = Some(self.tok_path.clone());
        t.spec_files = head
            .map(|h| (HEAD_FILE.to_string(), h.to_toml()))
            .into_iter()
            .chain([(TASK_FILE.to_string(), spec_toml(settings))])
            .collect();
        if cfg.peft.method != Method::Full {
            t.spec_files
                .push((PEFT_FILE.to_string(), cfg.peft.to_toml()));
        }
        Ok(())
    }

    /// The body with a `head` (its LM head dropped), adapted as `cfg.peft` says.
    pub(crate) fn model(
        &mut self,
        cfg: &TaskConfig,
        head: HeadSpec,
        settings: &TaskSettings,
    ) -> Result<(DecoderClassifier, usize)> {
        let mut model = DecoderClassifier::from_lm(self.body(cfg)?, head.labels);
        model.lm = peft::apply(model.lm, &cfg.peft)?;
        let (trainable, total) = peft::describe(&model);
        println!(
            "{:?} + {} head ({} outputs): {trainable} trainable of {total} parameters",
            cfg.peft.method, head.kind, head.labels
        );
        self.record(cfg, Some(&head), settings)?;
        Ok((model, trainable))
    }

    /// The BERT body of `cfg.model` with the task's head (`wrap`: body, outputs → model);
    /// every parameter trains (PEFT methods adapt decoders only).
    pub(crate) fn bert_model<M: Module>(
        &mut self,
        cfg: &TaskConfig,
        head: HeadSpec,
        settings: &TaskSettings,
        wrap: impl FnOnce(manabi_model::BertModel, usize) -> M,
    ) -> Result<(M, usize)> {
        let model = wrap(self.bert_body(cfg)?, head.labels);
        let n = model.num_params();
        println!(
            "BERT + {} head ({} outputs): {n} trainable of {n} parameters",
            head.kind, head.labels
        );
        self.record(cfg, Some(&head), settings)?;
        Ok((model, n))
    }

    /// The BERT encoder of `cfg.model`, after the checks every BERT task makes: PEFT
    /// refused (it adapts decoders only), the tokenizer no larger than the model's
    /// vocabulary.
    pub(crate) fn bert_body(&mut self, cfg: &TaskConfig) -> Result<manabi_model::BertModel> {
        if cfg.peft.method != Method::Full {
            return Err(FinetuneError::config(
                "peft.method",
                format!(
                    "{:?} adapts decoders (gpt2 / llama) only; a BERT body trains with `full`",
                    cfg.peft.method
                ),
            ));
        }
        self.trainer.device().seed(cfg.run.seed);
        manabi_model::init::seed(cfg.run.seed);
        let body = load_bert_body(&cfg.model.path, self.trainer.device())?;
        if self.tokenizer.vocab_size() > body.config().vocab_size {
            return Err(FinetuneError::Config {
                key: "model.tokenizer".into(),
                message: format!(
                    "{}: the tokenizer has more tokens than the model: not this model's tokenizer",
                    self.tok_path.display()
                ),
            });
        }
        Ok(body)
    }
}

/// Trains (or resumes) a task model, then evaluates the last checkpoint on the
/// validation and test files and writes `predictions-<split>.jsonl` into the run folder.
pub fn train_task(
    cfg: &TaskConfig,
    device_choice: DeviceChoice,
    resume: impl Into<Resume>,
) -> Result<TaskReport> {
    match cfg.task.kind {
        TaskKind::Ner => return crate::tasks::ner::train_ner(cfg, device_choice, resume),
        TaskKind::Simcse => return crate::tasks::simcse::train_simcse(cfg, device_choice, resume),
        TaskKind::Sts if cfg.task.encoder == crate::tasks::embed::Encoder::Bi => {
            return crate::tasks::pairs::train_bi_sts(cfg, device_choice, resume);
        }
        _ => {}
    }
    let mut run = Setup::new(&cfg.run, &cfg.train, &cfg.model, device_choice)?;
    let (tokenizer, specials) = (&run.tokenizer, run.specials);
    let family = body_family(&cfg.model.path)?;
    let framing = Framing::of(family, tokenizer, specials.eos)?;
    let kind = cfg.task.kind;
    let train_ex = read_examples(&cfg.data.train, kind, &cfg.task.fields, true)?;
    let val_ex = read_examples(&cfg.data.val, kind, &cfg.task.fields, true)?;
    let test_ex = if cfg.data.test.is_empty() {
        Vec::new()
    } else {
        read_examples(&cfg.data.test, kind, &cfg.task.fields, true)?
    };
    let names = if kind.regression() {
        Vec::new()
    } else {
        label_set(&cfg.task.labels, &train_ex)
    };
    if !kind.regression() && names.len() < 2 {
        return Err(FinetuneError::config(
            "task.labels",
            format!(
                "a classifier needs at least two classes; found {:?} in the training data",
                names
            ),
        ));
    }
    let mut settings = cfg.task.clone();
    settings.labels = names.clone();
    let enc = |ex: &[Example]| encode(ex, &settings, &names, tokenizer, framing);
    let (train, val, test) = (enc(&train_ex)?, enc(&val_ex)?, enc(&test_ex)?);
    let counts = class_counts(
        &train.rows.iter().map(|r| r.class).collect::<Vec<_>>(),
        names.len(),
    );
    let label_counts: Vec<(String, usize)> = names.iter().cloned().zip(counts).collect();
    let outputs_n = if kind.regression() { 1 } else { names.len() };
    let head = HeadSpec::score(outputs_n, names.clone());
    let (device, out, specials) = (run.device.clone(), cfg.run.out.clone(), run.specials);
    fn task<M>(cfg: &TaskConfig, train: Vec<Encoded>, val: Vec<Encoded>, pad: u32) -> SeqTask<M> {
        SeqTask {
            train,
            val,
            regression: cfg.task.kind.regression(),
            batch_size: cfg.train.batch_size,
            pad,
            seed: cfg.run.seed,
            body: std::marker::PhantomData,
        }
    }
    let (rows, val_rows) = (train.rows, val.rows.clone());
    let (run, trainable) = if family == Family::Bert {
        let (model, trainable) = run.bert_model(cfg, head, &settings, bert_classifier)?;
        let task = task::<BertForSequenceClassification>(cfg, rows, val_rows, specials.pad);
        (run.trainer.fit(&task, model, resume)?, trainable)
    } else {
        let (model, trainable) = run.model(cfg, head, &settings)?;
        let task = task::<DecoderClassifier>(cfg, rows, val_rows, specials.pad);
        (run.trainer.fit(&task, model, resume)?, trainable)
    };
    let majority = majority_class(&label_counts);
    let mut splits = Vec::new();
    if let Some(dir) = &run.checkpoint {
        let (m, _) = load_seq_classifier(dir, &device)?;
        let m = m.valid();
        for (name, ex, set) in [("val", &val_ex, &val), ("test", &test_ex, &test)] {
            if ex.is_empty() {
                continue;
            }
            let path = out.join(format!("predictions-{name}.jsonl"));
            splits.push(evaluate_rows(
                &m,
                &settings,
                ex,
                &set.rows,
                majority,
                specials.pad,
                cfg.train.batch_size,
                &path,
                &device,
            )?);
            if let Some(s) = splits.last_mut() {
                s.name = name.into();
            }
        }
    }
    Ok(TaskReport {
        run,
        label_counts,
        cut: train.cut + val.cut + test.cut,
        trainable_params: trainable,
        splits,
    })
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
            c.iter().enumerate().map(|(i, &n)| (format!("c{i}"), n)).collect()
        };
        assert_eq!(majority_class(&counts(&[3, 5, 5])), Some(1));
        assert_eq!(majority_class(&counts(&[4, 4])), Some(0));
        assert_eq!(majority_class(&[]), None);
    }
}
