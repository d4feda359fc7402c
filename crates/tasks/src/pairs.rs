//! Sentence pairs scored by the cosine of their embeddings: the STS evaluation of any
//! embedding checkpoint (SimCSE or bi-encoder), and the bi-encoder STS task
//! (`task.encoder = "bi"`): both sentences embedded by the same body, the cosine
//! regressed onto the gold score / `max_score`.

use manabi_objectives::Resume;
use std::path::{Path, PathBuf};

use burn::prelude::*;
use manabi_finetune::error::{FinetuneError, Result};
use manabi_finetune::metrics::spearman;
use manabi_finetune::sft::encode::schedule;
use manabi_model::Family;
use manabi_objectives::model::TrainModel;
use manabi_objectives::{Task, TaskLoss};
use manabi_tokenize::TextTokenizer;

use crate::body::{Framing, body_family};
use crate::data::{Label, TaskKind, read_examples};
use crate::embed::{
    Encoder, Pooling, SentenceEncoder, SentenceModel, StsPairs, cosine, embed_texts, normalised,
    read_sts, sts_spearman,
};
use crate::setup::TaskSetup;

/// STS Pearson and Spearman of an embedding checkpoint's cosines on JSTS-layout `files`;
/// each pair's `cosine` (and `pred` = cosine × max_score for a bi-encoder) written to
/// `out`.
pub fn evaluate_pairs(
    model_dir: &Path,
    settings: &crate::settings::TaskSettings,
    tokenizer: &TextTokenizer,
    files: &[PathBuf],
    out: &Path,
    batch_size: usize,
    device: &Device,
) -> Result<crate::report::SplitReport> {
    let specials = manabi_finetune::sft::Specials::of(tokenizer)?;
    let model = SentenceModel::load(model_dir, device)?;
    let framing = model.framing(tokenizer)?;
    let ex = read_examples(files, TaskKind::Sts, &settings.fields, true)?;
    let texts: Vec<String> = ex.iter().flat_map(|e| e.texts.clone()).collect();
    let v = embed_texts(
        &model,
        tokenizer,
        &texts,
        (settings.pooling, settings.max_length),
        (framing, specials.pad),
        batch_size,
        device,
    )?;
    let mut lines = String::new();
    let (mut gold, mut sims) = (Vec::new(), Vec::new());
    for (i, e) in ex.iter().enumerate() {
        let c = cosine(&v[2 * i], &v[2 * i + 1]);
        let g = match e.label {
            Some(Label::Score(x)) => x,
            _ => f64::NAN,
        };
        gold.push(g);
        sims.push(c);
        let mut obj = serde_json::json!({"sentence1": e.texts[0], "sentence2": e.texts[1], "label": g, "cosine": c});
        if settings.encoder == Encoder::Bi {
            obj["pred"] = (c * settings.max_score).into();
        }
        lines.push_str(&obj.to_string());
        lines.push('\n');
    }
    std::fs::write(out, lines).map_err(|e| FinetuneError::io(out, e))?;
    Ok(crate::report::SplitReport {
        name: String::new(),
        examples: ex.len(),
        metrics: vec![
            (
                "pearson".into(),
                manabi_finetune::metrics::pearson(&gold, &sims),
            ),
            ("spearman".into(), spearman(&gold, &sims)),
        ],
        majority_baseline: None,
        predictions: out.to_path_buf(),
    })
}

/// A supervised bi-encoder for STS as a [`Task`] on a decoder or a BERT body `M`:
/// squared error between each pair's cosine and its gold score ÷ `max_score`.
#[derive(Debug)]
pub struct BiStsTask<M> {
    /// Training pairs.
    pub train: StsPairs,
    /// Validation pairs.
    pub val: StsPairs,
    /// Pooling.
    pub pooling: Pooling,
    /// The top of the score scale.
    pub max_score: f64,
    /// Pairs per micro-batch.
    pub batch_size: usize,
    /// Padding token.
    pub pad: u32,
    /// Seed of the data order.
    pub seed: u64,
    /// The body's type.
    pub body: std::marker::PhantomData<M>,
}

/// A micro-batch of STS pairs.
#[derive(Debug, Clone)]
pub struct PairRows {
    /// First sentences.
    pub a: Vec<Vec<u32>>,
    /// Second sentences.
    pub b: Vec<Vec<u32>>,
    /// Gold scores.
    pub gold: Vec<f32>,
}

fn pair_rows(p: &StsPairs, idx: &[usize]) -> PairRows {
    PairRows {
        a: idx.iter().map(|&i| p.a[i].clone()).collect(),
        b: idx.iter().map(|&i| p.b[i].clone()).collect(),
        gold: idx.iter().map(|&i| p.gold[i] as f32).collect(),
    }
}

impl<M: SentenceEncoder + TrainModel> Task for BiStsTask<M> {
    type Model = M;
    type Batch = PairRows;
    fn loss_label(&self) -> &'static str {
        "squared error of the cosine"
    }
    fn key_metric(&self) -> Option<(&'static str, &'static str)> {
        Some(("eval/spearman", "held-out Spearman ρ"))
    }

    fn batch(
        &self,
        _: &M,
        step: usize,
        micro: usize,
        per_step: usize,
    ) -> manabi_objectives::Result<PairRows> {
        let idx = schedule(
            self.train.gold.len(),
            self.batch_size,
            step * per_step + micro,
            self.seed,
        );
        Ok(pair_rows(&self.train, &idx))
    }

    fn val_batch(&self, i: usize) -> manabi_objectives::Result<PairRows> {
        let idx =
            manabi_finetune::sft::encode::val_indices(self.val.gold.len(), self.batch_size, i);
        Ok(pair_rows(&self.val, &idx))
    }

    fn loss(
        &self,
        model: &M,
        b: &PairRows,
        device: &Device,
    ) -> manabi_objectives::Result<TaskLoss> {
        let ra: Vec<&[u32]> = b.a.iter().map(Vec::as_slice).collect();
        let rb: Vec<&[u32]> = b.b.iter().map(Vec::as_slice).collect();
        let za = normalised(model.pooled(&ra, self.pooling, self.pad, device)?);
        let zb = normalised(model.pooled(&rb, self.pooling, self.pad, device)?);
        let n = b.gold.len();
        let cos = (za * zb).sum_dim(1).reshape([n]);
        let target = Tensor::<1>::from_floats(b.gold.as_slice(), device) / self.max_score;
        let err = cos - target;
        Ok(TaskLoss::new((err.clone() * err).sum()))
    }

    fn targets(b: &PairRows) -> usize {
        b.gold.len()
    }

    fn tokens(b: &PairRows) -> usize {
        b.a.iter().chain(&b.b).map(Vec::len).sum()
    }

    fn evaluate(
        &self,
        model: &M,
        device: &Device,
    ) -> manabi_objectives::Result<Vec<(String, f64)>> {
        let batch = self.batch_size;
        let rho = sts_spearman(model, &self.val, self.pooling, self.pad, batch, device)?;
        Ok(vec![("spearman".into(), rho)])
    }
}

/// Trains (or resumes) a bi-encoder STS model on a decoder or a BERT body; reports
/// Pearson and Spearman of the cosines on the validation (and test) pairs, with the
/// untrained body's Spearman.
pub fn train_bi_sts(
    cfg: &crate::TaskConfig,
    device_choice: manabi_model::DeviceChoice,
    resume: impl Into<Resume>,
) -> Result<crate::TaskReport> {
    cfg.model.f32_only("manabi task")?;
    let mut run =
        manabi_finetune::setup::Setup::new(&cfg.run, &cfg.train, &cfg.model, device_choice)?;
    let s = &cfg.task;
    let family = body_family(&cfg.model.path)?;
    s.pooling.check(family)?;
    let framing = Framing::of(family, &run.tokenizer, run.specials.eos)?;
    let read =
        |files: &[PathBuf]| read_sts(files, &s.fields, &run.tokenizer, framing, s.max_length);
    let data = (read(&cfg.data.train)?, read(&cfg.data.val)?);
    if family == Family::Bert {
        let mut body = run.bert_body(cfg)?;
        body.pooler = None;
        fit_bi_sts(cfg, &mut run, body, Ok, data, resume)
    } else {
        let body = run.body(cfg)?;
        let tok = run.tokenizer.clone();
        let adapt = |m| manabi_finetune::peft::apply_with_tokenizer(m, &cfg.peft, &tok);
        fit_bi_sts(cfg, &mut run, body, adapt, data, resume)
    }
}

/// The body's STS Spearman before training, then the bi-encoder on it (`adapt`: PEFT),
/// then the report.
fn fit_bi_sts<M: SentenceEncoder + TrainModel>(
    cfg: &crate::TaskConfig,
    run: &mut manabi_finetune::setup::Setup,
    body: M,
    adapt: impl FnOnce(M) -> Result<M>,
    (train, val): (StsPairs, StsPairs),
    resume: impl Into<Resume>,
) -> Result<crate::TaskReport> {
    let s = &cfg.task;
    let task = BiStsTask {
        train,
        val,
        pooling: s.pooling,
        max_score: s.max_score,
        batch_size: cfg.train.batch_size,
        pad: run.specials.pad,
        seed: cfg.run.seed,
        body: std::marker::PhantomData,
    };
    let (pad, batch) = (task.pad, cfg.train.batch_size);
    let before = sts_spearman(&body.valid(), &task.val, s.pooling, pad, batch, &run.device)?;
    let model = adapt(body)?;
    let (trainable, total) = manabi_finetune::peft::describe(&model);
    println!(
        "{}, bi-encoder STS ({:?} pooling, cosine × {}): {trainable} trainable of {total} parameters",
        cfg.peft.method, s.pooling, s.max_score
    );
    run.record(cfg, None, s)?;
    let report = run.trainer.fit(&task, model, resume)?;
    pair_report(cfg, run, report, [Some(before), None], trainable)
}

/// The report of an embedding run: Pearson and Spearman of the last checkpoint's cosines on
/// the validation and test pairs (predictions written next to them), each after the
/// untrained body's Spearman when `before` has it.
pub(crate) fn pair_report(
    cfg: &crate::TaskConfig,
    run: &manabi_finetune::setup::Setup,
    report: manabi_objectives::RunReport,
    before: [Option<f64>; 2],
    trainable: usize,
) -> Result<crate::TaskReport> {
    let mut splits = Vec::new();
    if let Some(dir) = &report.checkpoint {
        let splits_in = [("val", &cfg.data.val), ("test", &cfg.data.test)];
        for ((name, files), b) in splits_in.into_iter().zip(before) {
            if files.is_empty() {
                continue;
            }
            let path = cfg.run.out.join(format!("predictions-{name}.jsonl"));
            let batch = cfg.train.batch_size;
            let (tok, device) = (&run.tokenizer, &run.device);
            let mut r = evaluate_pairs(dir, &cfg.task, tok, files, &path, batch, device)?;
            r.name = name.into();
            if let Some(b) = b {
                r.metrics.insert(0, ("spearman_before".into(), b));
            }
            splits.push(r);
        }
    }
    Ok(crate::TaskReport {
        run: report,
        label_counts: Vec::new(),
        cut: 0,
        trainable_params: trainable,
        splits,
    })
}
