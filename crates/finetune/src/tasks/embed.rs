//! Sentence embeddings (`task.kind = "simcse"`, `manabi embed`): a decoder body pooled
//! over its tokens (mean of the hidden states, or the last one), trained with
//! unsupervised SimCSE (Gao et al. 2021): each sentence is encoded twice with dropout on,
//! the two views are positives, the other sentences of the batch negatives, and the loss
//! is cross-entropy over cosine similarities divided by a temperature. Scored by the STS
//! Spearman correlation of cosine similarities with gold scores (JSTS files), before and
//! after training.

use std::io::BufRead;
use std::path::{Path, PathBuf};

use burn::prelude::*;
use burn::tensor::activation::log_softmax;
use manabi_model::{DecoderLm, ForwardOptions};
use manabi_objectives::{Task, TaskLoss};
use manabi_tokenize::TextTokenizer;
use serde::{Deserialize, Serialize};

use crate::error::{FinetuneError, Result};
use crate::metrics::spearman;
use crate::sft::encode::train_window;
use crate::tasks::data::{FieldMap, Label, TaskKind, read_examples};

/// How token states become one vector.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Pooling {
    /// Mean of every token's final hidden state.
    #[default]
    Mean,
    /// The last token's (EOS) hidden state, which has seen the whole sentence.
    Last,
}

/// How an STS model reads a pair.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Encoder {
    /// Both sentences in one sequence, a regression head on the last token.
    #[default]
    Cross,
    /// Each sentence embedded alone; the score is their cosine (sentence-transformers'
    /// bi-encoder with a cosine-similarity loss).
    Bi,
}

/// Reads sentences: `.jsonl` lines give their `sentence` field (renamable), or both
/// `sentence1` and `sentence2` when there is no `sentence` (JSTS/JNLI files); any other
/// file gives one sentence per non-empty line.
pub fn read_sentences(paths: &[PathBuf], fields: &FieldMap) -> Result<Vec<String>> {
    let key = fields.get("sentence").map_or("sentence", String::as_str);
    let mut out = Vec::new();
    for path in paths {
        let file = manabi_tokenize::open_reader(path).map_err(|e| FinetuneError::io(path, e))?;
        let name = path.to_string_lossy();
        let jsonl = name.ends_with(".jsonl") || name.ends_with(".jsonl.gz");
        let before = out.len();
        for (i, line) in file.lines().enumerate() {
            let line = line.map_err(|e| FinetuneError::io(path, e))?;
            if line.trim().is_empty() {
                continue;
            }
            if !jsonl {
                out.push(line.trim().to_string());
                continue;
            }
            let err = |message: String| FinetuneError::Data {
                path: path.clone(),
                line: i + 1,
                message,
            };
            let v: serde_json::Value =
                serde_json::from_str(&line).map_err(|e| err(format!("invalid JSON: {e}")))?;
            let texts: Vec<&str> = match v[key].as_str() {
                Some(s) => vec![s],
                None => ["sentence1", "sentence2"]
                    .iter()
                    .filter_map(|k| v[*k].as_str())
                    .collect(),
            };
            if texts.is_empty() || texts.iter().any(|t| t.trim().is_empty()) {
                return Err(err(format!(
                    "expected a non-empty string field `{key}` (or `sentence1` and `sentence2`)"
                )));
            }
            out.extend(texts.iter().map(|t| t.to_string()));
        }
        if out.len() == before {
            return Err(FinetuneError::io(path, "no sentences in this file"));
        }
    }
    Ok(out)
}

/// Token ids of a sentence with EOS appended, cut to `max_length`.
pub fn encode_sentence(
    tokenizer: &TextTokenizer,
    text: &str,
    eos: u32,
    max_length: usize,
) -> Result<Vec<u32>> {
    let mut ids = tokenizer.encode(text)?;
    ids.truncate(max_length.saturating_sub(1).max(1));
    ids.push(eos);
    Ok(ids)
}

/// Pooled vectors of `rows` (right-padded with `pad`).
///
/// # Shapes
/// returns `[rows, d_model]`
pub fn pooled(
    model: &DecoderLm,
    rows: &[&[u32]],
    pooling: Pooling,
    pad: u32,
    device: &Device,
) -> Tensor<2> {
    let seq = rows.iter().map(|r| r.len()).max().unwrap_or(1).max(1);
    let n = rows.len();
    let mut ids = Vec::with_capacity(n * seq);
    let mut mask = Vec::with_capacity(n * seq);
    for r in rows {
        ids.extend(r.iter().map(|&x| x as i64));
        ids.extend(std::iter::repeat_n(pad as i64, seq - r.len()));
        let last = r.len().saturating_sub(1);
        mask.extend((0..seq).map(|p| match pooling {
            Pooling::Mean => f32::from(u8::from(p < r.len())),
            Pooling::Last => f32::from(u8::from(p == last)),
        }));
    }
    let ids = Tensor::<1, Int>::from_ints(ids.as_slice(), device).reshape([n, seq]);
    let x = model.embed_tokens.forward(ids);
    let h = model.hidden_states(x, &ForwardOptions::default(), None); // [n, seq, d]
    let d = h.dims()[2];
    let mask = Tensor::<1>::from_floats(mask.as_slice(), device).reshape([n, seq, 1]);
    let count = mask.clone().sum_dim(1).reshape([n, 1]); // [n, 1]
    (h * mask).sum_dim(1).reshape([n, d]) / count
}

/// Rows scaled to unit length.
pub(crate) fn normalised(x: Tensor<2>) -> Tensor<2> {
    let norm = (x.clone() * x.clone()).sum_dim(1).sqrt().clamp_min(1e-8);
    x / norm
}

/// Embeddings of `texts` (no gradients), `batch_size` at a time.
pub fn embed_texts(
    model: &DecoderLm,
    tokenizer: &TextTokenizer,
    texts: &[String],
    settings: (Pooling, usize),
    specials: (u32, u32),
    batch_size: usize,
    device: &Device,
) -> Result<Vec<Vec<f32>>> {
    let (pooling, max_length) = settings;
    let (eos, pad) = specials;
    let mut out = Vec::with_capacity(texts.len());
    for chunk in texts.chunks(batch_size.max(1)) {
        let rows: Vec<Vec<u32>> = chunk
            .iter()
            .map(|t| encode_sentence(tokenizer, t, eos, max_length))
            .collect::<Result<_>>()?;
        let refs: Vec<&[u32]> = rows.iter().map(Vec::as_slice).collect();
        let v = pooled(model, &refs, pooling, pad, device);
        let d = v.dims()[1];
        let flat = v
            .into_data()
            .convert::<f32>()
            .try_into_vec::<f32>()
            .unwrap_or_default();
        out.extend(flat.chunks(d).map(<[f32]>::to_vec));
    }
    Ok(out)
}

/// Cosine similarity.
pub fn cosine(a: &[f32], b: &[f32]) -> f64 {
    let dot: f64 = a
        .iter()
        .zip(b)
        .map(|(x, y)| f64::from(*x) * f64::from(*y))
        .sum();
    let na: f64 = a.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>().sqrt();
    let nb: f64 = b.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>().sqrt();
    dot / (na * nb).max(1e-12)
}

/// Encoded STS pairs with their gold scores.
#[derive(Debug, Clone)]
pub struct StsPairs {
    /// First sentences.
    pub a: Vec<Vec<u32>>,
    /// Second sentences.
    pub b: Vec<Vec<u32>>,
    /// Gold similarity.
    pub gold: Vec<f64>,
}

/// Reads JSTS-layout files and encodes both sentences of every pair.
pub fn read_sts(
    paths: &[PathBuf],
    fields: &FieldMap,
    tokenizer: &TextTokenizer,
    eos: u32,
    max_length: usize,
) -> Result<StsPairs> {
    let ex = read_examples(paths, TaskKind::Sts, fields, true)?;
    let mut p = StsPairs {
        a: Vec::new(),
        b: Vec::new(),
        gold: Vec::new(),
    };
    for e in ex {
        p.a.push(encode_sentence(tokenizer, &e.texts[0], eos, max_length)?);
        p.b.push(encode_sentence(tokenizer, &e.texts[1], eos, max_length)?);
        p.gold.push(match e.label {
            Some(Label::Score(x)) => x,
            _ => 0.0,
        });
    }
    Ok(p)
}

/// Spearman correlation of the cosine similarity of each pair with its gold score.
pub fn sts_spearman(
    model: &DecoderLm,
    p: &StsPairs,
    pooling: Pooling,
    pad: u32,
    batch: usize,
    device: &Device,
) -> f64 {
    let mut sims = Vec::with_capacity(p.gold.len());
    for (ca, cb) in p.a.chunks(batch.max(1)).zip(p.b.chunks(batch.max(1))) {
        let ra: Vec<&[u32]> = ca.iter().map(Vec::as_slice).collect();
        let rb: Vec<&[u32]> = cb.iter().map(Vec::as_slice).collect();
        let za = normalised(pooled(model, &ra, pooling, pad, device));
        let zb = normalised(pooled(model, &rb, pooling, pad, device));
        let s = (za * zb)
            .sum_dim(1)
            .into_data()
            .convert::<f64>()
            .try_into_vec::<f64>()
            .unwrap_or_default();
        sims.extend(s);
    }
    spearman(&p.gold, &sims)
}

/// Unsupervised SimCSE as a [`Task`] of the shared Trainer.
#[derive(Debug)]
pub struct SimcseTask {
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

impl Task for SimcseTask {
    type Model = DecoderLm;
    type Batch = SentenceBatch;

    fn batch(
        &self,
        _: &DecoderLm,
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
            rows: crate::sft::encode::val_window(&self.val, self.batch_size, i)
                .into_iter()
                .cloned()
                .collect(),
            positives: Vec::new(),
            negatives: Vec::new(),
        })
    }

    fn loss(
        &self,
        model: &DecoderLm,
        b: &SentenceBatch,
        device: &Device,
    ) -> manabi_objectives::Result<TaskLoss> {
        let refs: Vec<&[u32]> = b.rows.iter().map(Vec::as_slice).collect();
        let n = refs.len();
        // Two passes: dropout draws a different mask for each view. Supervised, the second
        // view is the positives, then the hard negatives.
        let z1 = normalised(pooled(model, &refs, self.pooling, self.pad, device));
        let others: Vec<&[u32]> = match b.positives.is_empty() {
            true => refs.clone(),
            false => b
                .positives
                .iter()
                .chain(&b.negatives)
                .map(Vec::as_slice)
                .collect(),
        };
        let z2 = normalised(pooled(model, &others, self.pooling, self.pad, device));
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
        model: &DecoderLm,
        device: &Device,
    ) -> manabi_objectives::Result<Vec<(String, f64)>> {
        Ok(vec![(
            "spearman".into(),
            sts_spearman(
                model,
                &self.sts,
                self.pooling,
                self.pad,
                self.batch_size,
                device,
            ),
        )])
    }
}

/// Sets every dropout of `model` (embedding and residual) to `p`.
pub fn with_dropout(mut model: DecoderLm, p: f64) -> DecoderLm {
    model.dropout.prob = p;
    for l in &mut model.layers {
        l.dropout.prob = p;
    }
    model
}

/// Writes one JSON line per text: `{"text", "embedding": [...]}`.
pub fn write_embeddings(path: &Path, texts: &[String], vectors: &[Vec<f32>]) -> Result<()> {
    let mut out = String::new();
    for (t, v) in texts.iter().zip(vectors) {
        out.push_str(&serde_json::json!({"text": t, "embedding": v}).to_string());
        out.push('\n');
    }
    std::fs::write(path, out).map_err(|e| FinetuneError::io(path, e))
}

/// Trains (or resumes) sentence embeddings with unsupervised SimCSE; reports the STS
/// Spearman of the validation (and test) pairs before and after.
pub fn train_simcse(
    cfg: &crate::tasks::TaskConfig,
    device_choice: manabi_model::DeviceChoice,
    resume: bool,
) -> Result<crate::tasks::TaskReport> {
    use burn::module::Module;
    let mut run = crate::setup::Setup::new(&cfg.run, &cfg.train, &cfg.model, device_choice)?;
    let s = &cfg.task;
    if !(0.0..1.0).contains(&s.dropout) || s.temperature <= 0.0 {
        return Err(FinetuneError::config(
            "task.dropout",
            "SimCSE needs 0 ≤ dropout < 1 and temperature > 0",
        ));
    }
    let (eos, pad) = (run.specials.eos, run.specials.pad);
    let enc = |t: &String| encode_sentence(&run.tokenizer, t, eos, s.max_length);
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
    let sts = read_sts(&cfg.data.val, &s.fields, &run.tokenizer, eos, s.max_length)?;
    let test = if cfg.data.test.is_empty() {
        None
    } else {
        Some(read_sts(
            &cfg.data.test,
            &s.fields,
            &run.tokenizer,
            eos,
            s.max_length,
        )?)
    };
    let body = run.body(cfg)?;
    let before = sts_spearman(
        &body.valid(),
        &sts,
        s.pooling,
        pad,
        cfg.train.batch_size,
        &run.device,
    );
    let before_test = test.as_ref().map(|t| {
        sts_spearman(
            &body.valid(),
            t,
            s.pooling,
            pad,
            cfg.train.batch_size,
            &run.device,
        )
    });
    let model = crate::peft::apply(with_dropout(body, s.dropout), &cfg.peft)?;
    let (trainable, total) = crate::peft::describe(&model);
    println!(
        "{:?}, {} SimCSE ({:?} pooling, τ {}, dropout {}): {trainable} trainable of {total} parameters",
        cfg.peft.method,
        if s.supervised {
            format!(
                "supervised ({} NLI triples, {} with a hard negative)",
                triples.len(),
                triples.iter().filter(|t| t.2.is_some()).count()
            )
        } else {
            "unsupervised".to_string()
        },
        s.pooling,
        s.temperature,
        s.dropout
    );
    run.record(cfg, None, s)?;
    let task = SimcseTask {
        val: sts.a.clone(),
        train,
        triples,
        sts: sts.clone(),
        pooling: s.pooling,
        temperature: s.temperature,
        batch_size: cfg.train.batch_size,
        pad,
        seed: cfg.run.seed,
    };
    let report = run.trainer.fit(&task, model, resume)?;
    crate::tasks::pairs::pair_report(cfg, &run, report, [Some(before), before_test], trainable)
}

/// Supervised SimCSE's (premise, entailed hypothesis, contradicted hypothesis) triples of
/// NLI files (JNLI layout): one per `entailment` pair, its hard negative the first
/// `contradiction` hypothesis of the same premise, when there is one.
pub fn nli_triples(
    paths: &[PathBuf],
    fields: &crate::tasks::data::FieldMap,
) -> Result<Vec<(String, String, Option<String>)>> {
    use crate::tasks::data::{Label, TaskKind, read_examples};
    let examples = read_examples(paths, TaskKind::Nli, fields, true)?;
    let class = |e: &crate::tasks::data::Example| match &e.label {
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
