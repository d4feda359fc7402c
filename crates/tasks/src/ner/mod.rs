//! Named entities (`task.kind = "ner"`): `{"text", "entities": [{"name", "span": [start,
//! end], "type"}]}` with character spans, end exclusive (the layout of the Japanese
//! Wikipedia NER set). Spans become BIO tags through the tokenizer's character offsets; a
//! head on every token of the body (a decoder, or BERT reading `[CLS] tokens [SEP]`)
//! predicts them; predicted tags become
//! character spans again. Scored at entity level with seqeval's strict IOB2 semantics.
//! Bad spans (outside the text, not matching `name`, overlapping) are errors naming file
//! and line.

use manabi_objectives::Resume;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use burn::prelude::*;
use burn::tensor::activation::log_softmax;
use manabi_finetune::error::{FinetuneError, Result};
use manabi_finetune::metrics::{EntityMode, entities};
use manabi_finetune::sft::encode::train_window;
use manabi_model::{BertForTokenClassification, DecoderClassifier, Family, IGNORE_INDEX};
use manabi_objectives::{Task, TaskLoss};
use manabi_tokenize::TextTokenizer;

use crate::body::{Framing, TaggerModel, TokenTagger, bert_tagger, body_family, load_tagger};

use crate::setup::TaskSetup;

mod data;
pub mod pipeline;

pub use crate::batch::TagBatch;
pub use data::{
    CONTINUATION, Entity, NerExample, Tagged, entity_types, read_ner, tag, tag_names, units,
};

fn tag_batch(rows: &[&Tagged], pad: u32, frame: Option<(u32, u32)>) -> TagBatch {
    let seq = rows.iter().map(|r| r.ids.len()).max().unwrap_or(1).max(1);
    let mut inputs = Vec::with_capacity(rows.len() * seq);
    let mut targets = Vec::with_capacity(rows.len() * seq);
    for r in rows {
        inputs.extend_from_slice(&r.ids);
        inputs.extend(std::iter::repeat_n(pad, seq - r.ids.len()));
        targets.extend(r.tags.iter().map(|&t| {
            if t == CONTINUATION {
                IGNORE_INDEX
            } else {
                t as i64
            }
        }));
        targets.extend(std::iter::repeat_n(IGNORE_INDEX, seq - r.tags.len()));
    }
    TagBatch {
        rows: rows.len(),
        seq,
        inputs,
        targets,
        lens: rows.iter().map(|r| r.ids.len()).collect(),
        pad,
        frame,
    }
}

/// `[CLS]` / `[SEP]` of a framing (BERT), `None` for a decoder's.
pub fn frame_of(framing: Framing) -> Option<(u32, u32)> {
    match framing {
        Framing::Bert { cls, sep } => Some((cls, sep)),
        Framing::Decoder { .. } | Framing::Own => None,
    }
}

/// The most likely tag of every token of every row (`scores`: the model's
/// [`TokenTagger::token_scores`]).
pub fn predict_tags(
    scores: impl Fn(&TagBatch) -> Result<Tensor<3>>,
    rows: &[Tagged],
    batch_size: usize,
    pad: u32,
    frame: Option<(u32, u32)>,
) -> Result<Vec<Vec<usize>>> {
    let mut out = Vec::with_capacity(rows.len());
    for chunk in rows.chunks(batch_size.max(1)) {
        let refs: Vec<&Tagged> = chunk.iter().collect();
        let b = tag_batch(&refs, pad, frame);
        let best = scores(&b)?
            .argmax(2)
            .into_data()
            .convert::<i64>()
            .try_into_vec::<i64>()
            .unwrap_or_default();
        for (i, r) in chunk.iter().enumerate() {
            out.push(
                best[i * b.seq..i * b.seq + r.ids.len()]
                    .iter()
                    .map(|&t| t as usize)
                    .collect(),
            );
        }
    }
    Ok(out)
}

/// Entity-level precision, recall and F1 of the predicted entities against the gold
/// ones, both as character spans: exactly what seqeval gives on the written
/// predictions (character-level IOB2 tags of the gold and predicted spans). `precision`,
/// `recall` and `f1` decode the predicted tags with seqeval's strict IOB2 (the spans
/// written to the predictions file); `*_default` with seqeval's default (conlleval)
/// decoding, where a stray `I-X` still starts an entity.
pub fn scores(rows: &[Tagged], pred: &[Vec<usize>], names: &[String]) -> Vec<(String, f64)> {
    let gold: BTreeSet<(usize, String, usize, usize)> = rows
        .iter()
        .enumerate()
        .flat_map(|(k, r)| r.gold.iter().map(move |(t, a, b)| (k, t.clone(), *a, *b)))
        .collect();
    let mut out = Vec::new();
    for (mode, suffix) in [(EntityMode::Strict, ""), (EntityMode::Default, "_default")] {
        let predicted: BTreeSet<(usize, String, usize, usize)> = rows
            .iter()
            .zip(pred)
            .enumerate()
            .flat_map(|(k, (r, p))| {
                spans_of(r, p, names, mode)
                    .into_iter()
                    .map(move |e| (k, e.kind, e.start, e.end))
            })
            .collect();
        let (precision, recall, f1) = prf(
            gold.intersection(&predicted).count(),
            predicted.len(),
            gold.len(),
        );
        out.push((format!("precision{suffix}"), precision));
        out.push((format!("recall{suffix}"), recall));
        out.push((format!("f1{suffix}"), f1));
    }
    out
}

/// Precision, recall and F1 from counts (0 where undefined, as seqeval).
fn prf(hit: usize, predicted: usize, gold: usize) -> (f64, f64, f64) {
    let ratio = |a: usize, b: usize| if b == 0 { 0.0 } else { a as f64 / b as f64 };
    let (p, r) = (ratio(hit, predicted), ratio(hit, gold));
    let f1 = if p + r == 0.0 {
        0.0
    } else {
        2.0 * p * r / (p + r)
    };
    (p, r, f1)
}

/// Predicted entities as character spans of the row's text: the predicted tags of its
/// units decoded in `mode`, each entity from its first unit's first character to its last
/// unit's end, surrounding whitespace trimmed (byte-level tokens carry the space before a
/// word). Units never overlap, so the spans never do.
pub fn spans_of(row: &Tagged, pred: &[usize], names: &[String], mode: EntityMode) -> Vec<Entity> {
    let unit_tags = row.unit_tags(pred);
    let tags: Vec<&str> = unit_tags.iter().map(|&i| names[i].as_str()).collect();
    let chars: Vec<char> = row.text.chars().collect();
    entities(&tags, mode)
        .into_iter()
        .filter_map(|(kind, a, b)| {
            let (mut start, mut end) = (row.units[a].1, row.units[b - 1].2.min(chars.len()));
            while start < end && chars[start].is_whitespace() {
                start += 1;
            }
            while end > start && chars[end - 1].is_whitespace() {
                end -= 1;
            }
            (start < end).then(|| Entity {
                name: chars[start..end].iter().collect(),
                start,
                end,
                kind,
            })
        })
        .collect()
}

/// Token classification as a [`Task`] of the shared Trainer, on either body `M`.
#[derive(Debug)]
pub struct NerTask<M> {
    /// Training rows.
    pub train: Vec<Tagged>,
    /// Validation rows.
    pub val: Vec<Tagged>,
    /// Tag names.
    pub names: Vec<String>,
    /// Rows per micro-batch.
    pub batch_size: usize,
    /// Padding token.
    pub pad: u32,
    /// Seed of the data order.
    pub seed: u64,
    /// `[CLS]` / `[SEP]` (BERT).
    pub frame: Option<(u32, u32)>,
    /// The body.
    pub body: std::marker::PhantomData<M>,
}

impl<M: TokenTagger> Task for NerTask<M> {
    type Model = M;
    type Batch = TagBatch;
    fn key_metric(&self) -> Option<(&'static str, &'static str)> {
        Some(("eval/f1", "held-out entity F1"))
    }

    fn batch(
        &self,
        _: &M,
        step: usize,
        micro: usize,
        per_step: usize,
    ) -> manabi_objectives::Result<TagBatch> {
        let rows = train_window(
            &self.train,
            self.batch_size,
            step * per_step + micro,
            self.seed,
        );
        Ok(tag_batch(&rows, self.pad, self.frame))
    }

    fn val_batch(&self, i: usize) -> manabi_objectives::Result<TagBatch> {
        let rows = manabi_finetune::sft::encode::val_window(&self.val, self.batch_size, i);
        Ok(tag_batch(&rows, self.pad, self.frame))
    }

    fn loss(
        &self,
        model: &M,
        b: &TagBatch,
        device: &Device,
    ) -> manabi_objectives::Result<TaskLoss> {
        let out = model.token_scores(b, device)?;
        let labels = out.dims()[2];
        let logp = log_softmax(out.reshape([b.rows * b.seq, labels]), 1);
        let idx: Vec<i64> = b.targets.iter().map(|&t| t.max(0)).collect();
        let keep: Vec<f32> = b
            .targets
            .iter()
            .map(|&t| if t >= 0 { 1.0 } else { 0.0 })
            .collect();
        let idx = Tensor::<1, Int>::from_ints(idx.as_slice(), device).reshape([b.rows * b.seq, 1]);
        let keep = Tensor::<1>::from_floats(keep.as_slice(), device);
        let nll = (logp.gather(1, idx).reshape([b.rows * b.seq]) * keep)
            .sum()
            .neg();
        Ok(TaskLoss::new(nll))
    }

    fn targets(b: &TagBatch) -> usize {
        b.targets.iter().filter(|&&t| t >= 0).count()
    }

    fn tokens(b: &TagBatch) -> usize {
        b.rows * b.seq
    }

    fn evaluate(
        &self,
        model: &M,
        device: &Device,
    ) -> manabi_objectives::Result<Vec<(String, f64)>> {
        let f = |b: &TagBatch| model.token_scores(b, device);
        let pred = predict_tags(f, &self.val, self.batch_size, self.pad, self.frame)?;
        Ok(scores(&self.val, &pred, &self.names))
    }
}

/// Trains (or resumes) an NER model, then evaluates the last checkpoint on the
/// validation and test files and writes `predictions-<split>.jsonl`.
pub fn train_ner(
    cfg: &crate::TaskConfig,
    device_choice: manabi_model::DeviceChoice,
    resume: impl Into<Resume>,
) -> Result<crate::TaskReport> {
    cfg.model.f32_only("manabi task")?;
    let mut run =
        manabi_finetune::setup::Setup::new(&cfg.run, &cfg.train, &cfg.model, device_choice)?;
    let family = body_family(&cfg.model.path)?;
    let frame = frame_of(Framing::of(family, &run.tokenizer, run.specials.eos)?);
    let fields = &cfg.task.fields;
    let train_ex = read_ner(&cfg.data.train, fields, true)?;
    let val_ex = read_ner(&cfg.data.val, fields, true)?;
    let test_ex = if cfg.data.test.is_empty() {
        Vec::new()
    } else {
        read_ner(&cfg.data.test, fields, true)?
    };
    let types = entity_types(&cfg.task.labels, &train_ex);
    manabi_finetune::head::check_labels(&types, "task.labels")?;
    if types.is_empty() {
        return Err(FinetuneError::config(
            "task.labels",
            "no entity types: the training data has no entities and task.labels is empty",
        ));
    }
    let names = tag_names(&types);
    // BERT spends two positions on [CLS] and [SEP].
    let max = cfg.task.max_length - if frame.is_some() { 2 } else { 0 };
    let tagged = |ex: &[NerExample]| tag(ex, &types, &run.tokenizer, max, true);
    let ((train, c1), (val, c2), (test, c3)) =
        (tagged(&train_ex)?, tagged(&val_ex)?, tagged(&test_ex)?);
    let mut label_counts: Vec<(String, usize)> = types.iter().map(|t| (t.clone(), 0)).collect();
    for e in train_ex.iter().flat_map(|x| &x.entities) {
        if let Some(c) = label_counts.iter_mut().find(|(t, _)| *t == e.kind) {
            c.1 += 1;
        }
    }
    let mut settings = cfg.task.clone();
    settings.labels = types.clone();
    let head = manabi_finetune::head::HeadSpec::token(names.clone());
    let pad = run.specials.pad;
    fn task<M>(
        cfg: &crate::TaskConfig,
        train: Vec<Tagged>,
        val: Vec<Tagged>,
        names: Vec<String>,
        pad: u32,
        frame: Option<(u32, u32)>,
    ) -> NerTask<M> {
        NerTask {
            train,
            val,
            names,
            batch_size: cfg.train.batch_size,
            pad,
            seed: cfg.run.seed,
            frame,
            body: std::marker::PhantomData,
        }
    }
    let (val_rows, tags) = (val.clone(), names.clone());
    let (report, trainable) = if family == Family::Bert {
        let (model, trainable) = run.bert_model(
            cfg,
            head,
            &settings,
            bert_tagger,
            crate::body::keep_bert_tagger,
        )?;
        let t = task::<BertForTokenClassification>(cfg, train, val_rows, tags, pad, frame);
        (run.trainer.fit(&t, model, resume)?, trainable)
    } else {
        let (model, trainable) = run.model(cfg, head, &settings)?;
        let t = task::<DecoderClassifier>(cfg, train, val_rows, tags, pad, frame);
        (run.trainer.fit(&t, model, resume)?, trainable)
    };
    let mut splits = Vec::new();
    if let Some(dir) = &report.checkpoint {
        let (m, _) = load_tagger(dir, &run.device)?;
        let m = m.valid();
        for (name, ex, rows) in [("val", &val_ex, &val), ("test", &test_ex, &test)] {
            if ex.is_empty() {
                continue;
            }
            let path = cfg.run.out.join(format!("predictions-{name}.jsonl"));
            let f = |b: &TagBatch| m.token_scores(b, &run.device);
            let pred = predict_tags(f, rows, cfg.train.batch_size, pad, frame)?;
            write_predictions(&path, ex, rows, &pred, &names)?;
            splits.push(crate::report::SplitReport {
                name: name.into(),
                examples: ex.len(),
                metrics: scores(rows, &pred, &names),
                majority_baseline: None,
                predictions: path,
            });
        }
    }
    Ok(crate::TaskReport {
        run: report,
        label_counts,
        cut: c1 + c2 + c3,
        trainable_params: trainable,
        splits,
    })
}

/// One JSON line per text: `text`, gold `entities` (when known) and predicted
/// `predicted` entities, each `{"name", "span": [start, end], "type"}`.
fn write_predictions(
    path: &Path,
    examples: &[NerExample],
    rows: &[Tagged],
    pred: &[Vec<usize>],
    names: &[String],
) -> Result<()> {
    let json = |es: &[Entity]| -> serde_json::Value {
        es.iter()
            .map(|e| serde_json::json!({"name": e.name, "span": [e.start, e.end], "type": e.kind}))
            .collect()
    };
    let mut text = String::new();
    for ((x, r), p) in examples.iter().zip(rows).zip(pred) {
        let mut obj = serde_json::json!({"text": x.text, "predicted": json(&spans_of(r, p, names, EntityMode::Strict))});
        if !r.tags.is_empty() {
            obj["entities"] = json(&x.entities);
        }
        text.push_str(&obj.to_string());
        text.push('\n');
    }
    std::fs::write(path, text).map_err(|e| FinetuneError::io(path, e))
}

/// Evaluates (when the files carry entities) and predicts with an NER checkpoint.
#[allow(clippy::too_many_arguments)]
pub fn evaluate_ner(
    model: &TaggerModel,
    settings: &crate::settings::TaskSettings,
    names: &[String],
    tokenizer: &TextTokenizer,
    files: &[PathBuf],
    (pad, eos): (u32, u32),
    batch_size: usize,
    out: &Path,
    device: &Device,
) -> Result<crate::report::SplitReport> {
    let examples = read_ner(files, &settings.fields, false)?;
    let gold = examples.iter().all(|x| x.labelled);
    let frame = frame_of(Framing::of(model.family(), tokenizer, eos)?);
    let max = settings.max_length - if frame.is_some() { 2 } else { 0 };
    let (rows, _) = tag(&examples, &settings.labels, tokenizer, max, gold)?;
    let f = |b: &TagBatch| model.token_scores(b, device);
    let pred = predict_tags(f, &rows, batch_size, pad, frame)?;
    write_predictions(out, &examples, &rows, &pred, names)?;
    Ok(crate::report::SplitReport {
        name: String::new(),
        examples: examples.len(),
        metrics: if gold {
            scores(&rows, &pred, names)
        } else {
            Vec::new()
        },
        majority_baseline: None,
        predictions: out.to_path_buf(),
    })
}
