//! Sentence embeddings trained with SimCSE (Gao et al. 2021, `task.kind = "simcse"`) on
//! either body of [`crate::embed`]: unsupervised, each sentence is encoded twice
//! with dropout on, the two views are positives and the other sentences of the batch
//! negatives; supervised, NLI premises are pulled towards their entailed hypotheses and
//! away from the contradicted ones. The loss is cross-entropy over cosine similarities
//! divided by a temperature; `eval/spearman` is the STS Spearman of the cosines.

use manabi_objectives::Resume;
use std::path::PathBuf;

use burn::prelude::*;
use burn::tensor::activation::log_softmax;
use manabi_finetune::error::{FinetuneError, Result};
use manabi_finetune::sft::encode::train_window;
use manabi_model::Family;
use manabi_objectives::model::TrainModel;
use manabi_objectives::{Task, TaskLoss};

use crate::body::{Framing, body_family};
use crate::embed::{
    Pooling, SentenceEncoder, StsPairs, encode_sentence, normalised, read_sentences, read_sts,
    sts_spearman,
};
use crate::setup::TaskSetup;

/// SimCSE (unsupervised, or supervised on NLI triples) as a [`Task`] of the shared
/// Trainer, on a decoder or a BERT body `M`.
#[derive(Debug)]
pub struct SimcseTask<M> {
    /// Training sentences, encoded (unsupervised).
    pub train: Vec<Vec<u32>>,
    /// Training triples (supervised): anchor, positive, optional hard negative.
    pub triples: Vec<Triple>,
    /// Held-out sentences for the validation loss.
    pub val: Vec<Vec<u32>>,
    /// STS pairs for `eval/spearman`.
    pub sts: StsPairs,
    /// Pooling.
    pub pooling: Pooling,
    /// Softmax temperature τ.
    pub temperature: f64,
    /// Sentences per micro-batch (each one's in-batch negatives).
    pub batch_size: usize,
    /// Padding token.
    pub pad: u32,
    /// Seed of the data order.
    pub seed: u64,
    /// The body's type.
    pub body: std::marker::PhantomData<M>,
}

/// Supervised SimCSE's training item: a premise, its entailed hypothesis, and a
/// contradicted one when the data has it.
pub type Triple = (Vec<u32>, Vec<u32>, Option<Vec<u32>>);

/// A micro-batch of sentences.
#[derive(Debug, Clone)]
pub struct SentenceBatch {
    /// The sentences' tokens (the anchors).
    pub rows: Vec<Vec<u32>>,
    /// Supervised: each anchor's positive (empty: unsupervised, the anchor itself under
    /// other dropout).
    pub positives: Vec<Vec<u32>>,
    /// Supervised: hard negatives, extra columns every anchor is contrasted with.
    pub negatives: Vec<Vec<u32>>,
}

impl<M: SentenceEncoder + TrainModel> Task for SimcseTask<M> {
    type Model = M;
    type Batch = SentenceBatch;
    fn loss_label(&self) -> &'static str {
        "InfoNCE (nats/sentence)"
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
    ) -> manabi_objectives::Result<SentenceBatch> {
        let g = step * per_step + micro;
        if !self.triples.is_empty() {
            let window = train_window(&self.triples, self.batch_size, g, self.seed);
            return Ok(SentenceBatch {
                rows: window.iter().map(|t| t.0.clone()).collect(),
                positives: window.iter().map(|t| t.1.clone()).collect(),
                negatives: window.iter().filter_map(|t| t.2.clone()).collect(),
            });
        }
        Ok(SentenceBatch {
            rows: train_window(&self.train, self.batch_size, g, self.seed)
                .into_iter()
                .cloned()
                .collect(),
            positives: Vec::new(),
            negatives: Vec::new(),
        })
    }

    fn val_batch(&self, i: usize) -> manabi_objectives::Result<SentenceBatch> {
        // The unsupervised objective on held-out sentences, for either kind.
        Ok(SentenceBatch {
            rows: manabi_finetune::sft::encode::val_window(&self.val, self.batch_size, i)
                .into_iter()
                .cloned()
                .collect(),
            positives: Vec::new(),
            negatives: Vec::new(),
        })
    }

    fn loss(
        &self,
        model: &M,
        b: &SentenceBatch,
        device: &Device,
    ) -> manabi_objectives::Result<TaskLoss> {
        let refs: Vec<&[u32]> = b.rows.iter().map(Vec::as_slice).collect();
        let n = refs.len();
        // Two passes: dropout draws a different mask for each view. Supervised, the second
        // view is the positives, then the hard negatives.
        let z1 = normalised(model.pooled(&refs, self.pooling, self.pad, device)?);
        let others: Vec<&[u32]> = match b.positives.is_empty() {
            true => refs.clone(),
            false => b
                .positives
                .iter()
                .chain(&b.negatives)
                .map(Vec::as_slice)
                .collect(),
        };
        let z2 = normalised(model.pooled(&others, self.pooling, self.pad, device)?);
        let sim = z1.matmul(z2.transpose()) / self.temperature; // [n, n + negatives]
        let diag: Vec<i64> = (0..n as i64).collect();
        let idx = Tensor::<1, Int>::from_ints(diag.as_slice(), device).reshape([n, 1]);
        let nll = log_softmax(sim.clone(), 1)
            .gather(1, idx.clone())
            .sum()
            .neg();
        let right = sim.argmax(1).equal(idx).int().sum().into_scalar::<i64>() as f64;
        Ok(TaskLoss {
            sum: nll,
            metrics: vec![("accuracy".into(), right)],
        })
    }

    fn targets(b: &SentenceBatch) -> usize {
        b.rows.len()
    }

    fn tokens(b: &SentenceBatch) -> usize {
        let rows = b.rows.iter().map(Vec::len).sum::<usize>();
        match b.positives.is_empty() {
            true => 2 * rows,
            false => {
                rows + b
                    .positives
                    .iter()
                    .chain(&b.negatives)
                    .map(Vec::len)
                    .sum::<usize>()
            }
        }
    }

    fn evaluate(
        &self,
        model: &M,
        device: &Device,
    ) -> manabi_objectives::Result<Vec<(String, f64)>> {
        let batch = self.batch_size;
        let rho = sts_spearman(model, &self.sts, self.pooling, self.pad, batch, device)?;
        Ok(vec![("spearman".into(), rho)])
    }
}

/// Trains (or resumes) sentence embeddings with SimCSE on a decoder or a BERT body;
/// reports the STS Spearman of the validation (and test) pairs before and after.
pub fn train_simcse(
    cfg: &crate::TaskConfig,
    device_choice: manabi_model::DeviceChoice,
    resume: impl Into<Resume>,
) -> Result<crate::TaskReport> {
    cfg.model.f32_only("manabi task")?;
    let mut run =
        manabi_finetune::setup::Setup::new(&cfg.run, &cfg.train, &cfg.model, device_choice)?;
    let s = &cfg.task;
    if !(0.0..1.0).contains(&s.dropout) || s.temperature <= 0.0 {
        return Err(FinetuneError::config(
            "task.dropout",
            "SimCSE needs 0 ≤ dropout < 1 and temperature > 0",
        ));
    }
    let family = body_family(&cfg.model.path)?;
    s.pooling.check(family)?;
    let framing = Framing::of(family, &run.tokenizer, run.specials.eos)?;
    let enc = |t: &String| encode_sentence(&run.tokenizer, t, framing, s.max_length);
    let (train, triples) = if s.supervised {
        let mut triples = Vec::new();
        for (a, p, n) in nli_triples(&cfg.data.train, &s.fields)? {
            triples.push((enc(&a)?, enc(&p)?, n.as_ref().map(enc).transpose()?));
        }
        (Vec::new(), triples)
    } else {
        let train: Vec<Vec<u32>> = read_sentences(&cfg.data.train, &s.fields)?
            .iter()
            .map(enc)
            .collect::<Result<_>>()?;
        (train, Vec::new())
    };
    let read =
        |files: &[PathBuf]| read_sts(files, &s.fields, &run.tokenizer, framing, s.max_length);
    let sts = read(&cfg.data.val)?;
    let test = match cfg.data.test.is_empty() {
        true => None,
        false => Some(read(&cfg.data.test)?),
    };
    let data = (train, triples, sts);
    if family == Family::Bert {
        let mut body = run.bert_body(cfg)?;
        body.pooler = None;
        fit_simcse(cfg, &mut run, body, Ok, data, test.as_ref(), resume)
    } else {
        let body = run.body(cfg)?;
        let tok = run.tokenizer.clone();
        let adapt = |m| manabi_finetune::peft::apply_with_tokenizer(m, &cfg.peft, &tok);
        fit_simcse(cfg, &mut run, body, adapt, data, test.as_ref(), resume)
    }
}

/// The body's STS Spearman before training, then SimCSE on it (`adapt`: PEFT), then the
/// report.
fn fit_simcse<M: SentenceEncoder + TrainModel>(
    cfg: &crate::TaskConfig,
    run: &mut manabi_finetune::setup::Setup,
    body: M,
    adapt: impl FnOnce(M) -> Result<M>,
    (train, triples, sts): (Vec<Vec<u32>>, Vec<Triple>, StsPairs),
    test: Option<&StsPairs>,
    resume: impl Into<Resume>,
) -> Result<crate::TaskReport> {
    let s = &cfg.task;
    let task = SimcseTask {
        val: sts.a.clone(),
        train,
        triples,
        sts,
        pooling: s.pooling,
        temperature: s.temperature,
        batch_size: cfg.train.batch_size,
        pad: run.specials.pad,
        seed: cfg.run.seed,
        body: std::marker::PhantomData,
    };
    let (pad, batch, device) = (task.pad, cfg.train.batch_size, &run.device);
    let untrained = body.valid();
    let before = sts_spearman(&untrained, &task.sts, s.pooling, pad, batch, device)?;
    let before_test = test
        .map(|t| sts_spearman(&untrained, t, s.pooling, pad, batch, device))
        .transpose()?;
    let model = adapt(body.with_dropout(s.dropout))?;
    let (trainable, total) = manabi_finetune::peft::describe(&model);
    let kind = match s.supervised {
        true => format!(
            "supervised ({} NLI triples, {} with a hard negative)",
            task.triples.len(),
            task.triples.iter().filter(|t| t.2.is_some()).count()
        ),
        false => "unsupervised".to_string(),
    };
    println!(
        "{}, {kind} SimCSE ({:?} pooling, τ {}, dropout {}): {trainable} trainable of {total} parameters",
        cfg.peft.method, s.pooling, s.temperature, s.dropout
    );
    run.record(cfg, None, s)?;
    let report = run.trainer.fit(&task, model, resume)?;
    crate::pairs::pair_report(cfg, run, report, [Some(before), before_test], trainable)
}

/// Supervised SimCSE's (premise, entailed hypothesis, contradicted hypothesis) triples of
/// NLI files (JNLI layout): one per `entailment` pair, its hard negative the first
/// `contradiction` hypothesis of the same premise, when there is one.
pub fn nli_triples(
    paths: &[PathBuf],
    fields: &crate::data::FieldMap,
) -> Result<Vec<(String, String, Option<String>)>> {
    use crate::data::{Label, TaskKind, read_examples};
    let examples = read_examples(paths, TaskKind::Nli, fields, true)?;
    let class = |e: &crate::data::Example| match &e.label {
        Some(Label::Class(c)) => c.clone(),
        _ => String::new(),
    };
    let mut contradiction = std::collections::HashMap::new();
    for e in &examples {
        if class(e) == "contradiction" {
            contradiction
                .entry(e.texts[0].clone())
                .or_insert_with(|| e.texts[1].clone());
        }
    }
    let triples: Vec<_> = examples
        .iter()
        .filter(|e| class(e) == "entailment")
        .map(|e| {
            let negative = contradiction.get(&e.texts[0]).cloned();
            (e.texts[0].clone(), e.texts[1].clone(), negative)
        })
        .collect();
    if triples.is_empty() {
        return Err(FinetuneError::config(
            "data.train",
            "supervised SimCSE reads NLI pairs and found no `entailment` pair",
        ));
    }
    Ok(triples)
}
