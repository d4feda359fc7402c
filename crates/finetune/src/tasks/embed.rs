//! Sentence embeddings (`task.kind = "simcse"`, `manabi embed`): a body pooled over its
//! tokens — a decoder (mean of the hidden states, or the last one) or a BERT encoder
//! reading `[CLS] sentence [SEP]` (mean, or the `[CLS]` state) — trained with
//! unsupervised SimCSE (Gao et al. 2021): each sentence is encoded twice with dropout on,
//! the two views are positives, the other sentences of the batch negatives, and the loss
//! is cross-entropy over cosine similarities divided by a temperature. Scored by the STS
//! Spearman correlation of cosine similarities with gold scores (JSTS files), before and
//! after training.

use std::io::BufRead;
use std::path::{Path, PathBuf};

use burn::prelude::*;
use burn::tensor::activation::log_softmax;
use manabi_model::{BertModel, DecoderLm, Family, ForwardOptions};
use manabi_objectives::model::TrainModel;
use manabi_objectives::{Task, TaskLoss};
use manabi_tokenize::TextTokenizer;
use serde::{Deserialize, Serialize};

use crate::error::{FinetuneError, Result};
use crate::metrics::spearman;
use crate::sft::encode::train_window;
use crate::tasks::body::{Framing, body_family, load_bert_body};
use crate::tasks::data::{FieldMap, Label, TaskKind, read_examples};

/// How token states become one vector.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Pooling {
    /// Mean of every token's final hidden state.
    #[default]
    Mean,
    /// The last token's (EOS) hidden state, which has seen the whole sentence (decoders).
    Last,
    /// The `[CLS]` token's final hidden state, before any pooler (BERT; SimCSE's
    /// `cls_before_pooler`).
    Cls,
}

impl Pooling {
    /// Whether a `family` body can pool this way: `last` needs a decoder (causal: only
    /// the last token has read the sentence), `cls` a BERT encoder.
    pub fn check(self, family: Family) -> Result<()> {
        match (self, family == Family::Bert) {
            (Pooling::Last, true) => Err(FinetuneError::config(
                "task.pooling",
                "a BERT body pools by `mean` or `cls`",
            )),
            (Pooling::Cls, false) => Err(FinetuneError::config(
                "task.pooling",
                "`cls` reads BERT's [CLS] token; a decoder pools by `mean` or `last`",
            )),
            _ => Ok(()),
        }
    }
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

/// Token ids of a sentence framed for its body (a decoder: EOS appended; BERT:
/// `[CLS] sentence [SEP]`), cut to `max_length`.
pub fn encode_sentence(
    tokenizer: &TextTokenizer,
    text: &str,
    framing: Framing,
    max_length: usize,
) -> Result<Vec<u32>> {
    let framed = framing.frame(&[text.to_string()], "", max_length.max(2), tokenizer)?;
    Ok(framed.ids)
}

/// What a sentence-embedding body does: pool its final hidden states into one vector a
/// row, and take dropout as SimCSE's noise.
pub trait SentenceEncoder {
    /// Pooled vectors of `rows` (framed by [`encode_sentence`], right-padded with `pad`
    /// here). Errors when the body cannot pool this way ([`Pooling::check`]).
    ///
    /// # Shapes
    /// returns `[rows, d_model]`
    fn pooled(
        &self,
        rows: &[&[u32]],
        pooling: Pooling,
        pad: u32,
        device: &Device,
    ) -> Result<Tensor<2>>;

    /// The same body with every dropout (embedding and residual) at `p`.
    #[must_use]
    fn with_dropout(self, p: f64) -> Self;
}

/// `[rows, seq]` ids of right-padded `rows`, and each row's length.
fn padded(rows: &[&[u32]], pad: u32, device: &Device) -> (Tensor<2, Int>, Vec<usize>) {
    let seq = rows.iter().map(|r| r.len()).max().unwrap_or(1).max(1);
    let mut ids = Vec::with_capacity(rows.len() * seq);
    for r in rows {
        ids.extend(r.iter().map(|&x| i64::from(x)));
        ids.extend(std::iter::repeat_n(i64::from(pad), seq - r.len()));
    }
    let ids = Tensor::<1, Int>::from_ints(ids.as_slice(), device).reshape([rows.len(), seq]);
    (ids, rows.iter().map(|r| r.len()).collect())
}

/// 1 where position `p` of a row of `len` tokens is pooled, 0 elsewhere.
fn pooled_position(pooling: Pooling, p: usize, len: usize) -> bool {
    match pooling {
        Pooling::Mean => p < len,
        Pooling::Last => p + 1 == len,
        Pooling::Cls => p == 0,
    }
}

/// The pooled vectors of hidden states `h` `[rows, seq, d]` of rows of `lens` tokens.
fn pool(h: Tensor<3>, lens: &[usize], pooling: Pooling) -> Tensor<2> {
    let [n, seq, d] = h.dims();
    let weights: Vec<f32> = lens
        .iter()
        .flat_map(|&len| {
            (0..seq).map(move |p| f32::from(u8::from(pooled_position(pooling, p, len))))
        })
        .collect();
    let mask = Tensor::<1>::from_floats(weights.as_slice(), &h.device()).reshape([n, seq, 1]);
    let count = mask.clone().sum_dim(1).reshape([n, 1]).clamp_min(1.0);
    (h * mask).sum_dim(1).reshape([n, d]) / count
}

impl SentenceEncoder for DecoderLm {
    fn pooled(
        &self,
        rows: &[&[u32]],
        pooling: Pooling,
        pad: u32,
        device: &Device,
    ) -> Result<Tensor<2>> {
        pooling.check(self.config().family)?;
        let (ids, lens) = padded(rows, pad, device);
        let x = self.embed_tokens.forward(ids);
        let h = self.hidden_states(x, &ForwardOptions::default(), None); // [n, seq, d]
        Ok(pool(h, &lens, pooling))
    }

    fn with_dropout(self, p: f64) -> Self {
        with_dropout(self, p)
    }
}

impl SentenceEncoder for BertModel {
    /// Padding is masked out of attention; `mean` averages every token, `[CLS]` and
    /// `[SEP]` included (sentence-transformers' mean pooling).
    fn pooled(
        &self,
        rows: &[&[u32]],
        pooling: Pooling,
        pad: u32,
        device: &Device,
    ) -> Result<Tensor<2>> {
        pooling.check(Family::Bert)?;
        let (ids, lens) = padded(rows, pad, device);
        let seq = ids.dims()[1];
        let mask: Vec<f32> = lens
            .iter()
            .flat_map(|&len| (0..seq).map(move |p| f32::from(u8::from(p < len))))
            .collect();
        let mask = Tensor::<1>::from_floats(mask.as_slice(), device).reshape([lens.len(), seq]);
        let h = self.forward(ids, Some(mask), None)?.hidden;
        Ok(pool(h, &lens, pooling))
    }

    fn with_dropout(mut self, p: f64) -> Self {
        self.embeddings.dropout.prob = p;
        for l in &mut self.layers {
            l.dropout.prob = p;
        }
        self
    }
}

/// A loaded sentence-embedding model of either body.
#[derive(Debug, Clone)]
pub enum SentenceModel {
    /// A decoder (GPT-2, LLaMA), adapters included.
    Decoder(Box<DecoderLm>),
    /// A BERT encoder.
    Bert(Box<BertModel>),
}

impl SentenceModel {
    /// An embedding checkpoint of `manabi task` or any body folder: a decoder (manabi or
    /// Hugging Face), a BERT SimCSE checkpoint, a masked-LM checkpoint or a Hugging Face
    /// BERT.
    pub fn load(dir: &Path, device: &Device) -> Result<Self> {
        if body_family(dir)? == Family::Bert {
            return Ok(Self::Bert(Box::new(load_bert_body(dir, device)?)));
        }
        let (m, _) = crate::run::load_decoder(dir, device)?;
        Ok(Self::Decoder(Box::new(m)))
    }

    /// The body's family.
    pub fn family(&self) -> Family {
        match self {
            Self::Decoder(m) => m.config().family,
            Self::Bert(_) => Family::Bert,
        }
    }

    /// The most tokens it reads.
    pub fn max_positions(&self) -> usize {
        match self {
            Self::Decoder(m) => m.config().max_positions,
            Self::Bert(m) => m.config().max_positions,
        }
    }

    /// How it frames a sentence with `tokenizer`.
    pub fn framing(&self, tokenizer: &TextTokenizer) -> Result<Framing> {
        let eos = crate::sft::Specials::of(tokenizer)?.eos;
        Framing::of(self.family(), tokenizer, eos)
    }
}

impl SentenceEncoder for SentenceModel {
    fn pooled(
        &self,
        rows: &[&[u32]],
        pooling: Pooling,
        pad: u32,
        device: &Device,
    ) -> Result<Tensor<2>> {
        match self {
            Self::Decoder(m) => m.pooled(rows, pooling, pad, device),
            Self::Bert(m) => m.pooled(rows, pooling, pad, device),
        }
    }

    fn with_dropout(self, p: f64) -> Self {
        match self {
            Self::Decoder(m) => Self::Decoder(Box::new(m.with_dropout(p))),
            Self::Bert(m) => Self::Bert(Box::new(m.with_dropout(p))),
        }
    }
}

/// Whether the folder `dir` is an embedding checkpoint of `manabi task` (SimCSE or a
/// bi-encoder): its `task.toml` says so. Its BERT weights are the encoder alone.
pub fn is_embedding_checkpoint(dir: &Path) -> Result<bool> {
    let spec = dir.join(crate::tasks::settings::TASK_FILE);
    if !spec.exists() {
        return Ok(false);
    }
    let text = std::fs::read_to_string(&spec).map_err(|e| FinetuneError::io(&spec, e))?;
    let s: crate::tasks::settings::TaskSettings = toml::from_str(&text)
        .map_err(|e| FinetuneError::config(spec.display().to_string(), e.message()))?;
    Ok(s.kind == TaskKind::Simcse || s.encoder == Encoder::Bi)
}

/// Rows scaled to unit length.
pub(crate) fn normalised(x: Tensor<2>) -> Tensor<2> {
    let norm = (x.clone() * x.clone()).sum_dim(1).sqrt().clamp_min(1e-8);
    x / norm
}

/// Embeddings of `texts` (no gradients), `batch_size` at a time; `framing` and `pad`
/// as the model reads sentences.
pub fn embed_texts<M: SentenceEncoder>(
    model: &M,
    tokenizer: &TextTokenizer,
    texts: &[String],
    settings: (Pooling, usize),
    specials: (Framing, u32),
    batch_size: usize,
    device: &Device,
) -> Result<Vec<Vec<f32>>> {
    let (pooling, max_length) = settings;
    let (framing, pad) = specials;
    let mut out = Vec::with_capacity(texts.len());
    for chunk in texts.chunks(batch_size.max(1)) {
        let rows: Vec<Vec<u32>> = chunk
            .iter()
            .map(|t| encode_sentence(tokenizer, t, framing, max_length))
            .collect::<Result<_>>()?;
        let refs: Vec<&[u32]> = rows.iter().map(Vec::as_slice).collect();
        let v = model.pooled(&refs, pooling, pad, device)?;
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
    framing: Framing,
    max_length: usize,
) -> Result<StsPairs> {
    let ex = read_examples(paths, TaskKind::Sts, fields, true)?;
    let mut p = StsPairs {
        a: Vec::new(),
        b: Vec::new(),
        gold: Vec::new(),
    };
    for e in ex {
        p.a.push(encode_sentence(
            tokenizer,
            &e.texts[0],
            framing,
            max_length,
        )?);
        p.b.push(encode_sentence(
            tokenizer,
            &e.texts[1],
            framing,
            max_length,
        )?);
        p.gold.push(match e.label {
            Some(Label::Score(x)) => x,
            _ => 0.0,
        });
    }
    Ok(p)
}

/// Spearman correlation of the cosine similarity of each pair with its gold score.
pub fn sts_spearman<M: SentenceEncoder>(
    model: &M,
    p: &StsPairs,
    pooling: Pooling,
    pad: u32,
    batch: usize,
    device: &Device,
) -> Result<f64> {
    let mut sims = Vec::with_capacity(p.gold.len());
    for (ca, cb) in p.a.chunks(batch.max(1)).zip(p.b.chunks(batch.max(1))) {
        let ra: Vec<&[u32]> = ca.iter().map(Vec::as_slice).collect();
        let rb: Vec<&[u32]> = cb.iter().map(Vec::as_slice).collect();
        let za = normalised(model.pooled(&ra, pooling, pad, device)?);
        let zb = normalised(model.pooled(&rb, pooling, pad, device)?);
        let s = (za * zb)
            .sum_dim(1)
            .into_data()
            .convert::<f64>()
            .try_into_vec::<f64>()
            .unwrap_or_default();
        sims.extend(s);
    }
    Ok(spearman(&p.gold, &sims))
}

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

/// Trains (or resumes) sentence embeddings with SimCSE on a decoder or a BERT body;
/// reports the STS Spearman of the validation (and test) pairs before and after.
pub fn train_simcse(
    cfg: &crate::tasks::TaskConfig,
    device_choice: manabi_model::DeviceChoice,
    resume: bool,
) -> Result<crate::tasks::TaskReport> {
    let mut run = crate::setup::Setup::new(&cfg.run, &cfg.train, &cfg.model, device_choice)?;
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
        let adapt = |m| crate::peft::apply(m, &cfg.peft);
        fit_simcse(cfg, &mut run, body, adapt, data, test.as_ref(), resume)
    }
}

/// The body's STS Spearman before training, then SimCSE on it (`adapt`: PEFT), then the
/// report.
fn fit_simcse<M: SentenceEncoder + TrainModel>(
    cfg: &crate::tasks::TaskConfig,
    run: &mut crate::setup::Setup,
    body: M,
    adapt: impl FnOnce(M) -> Result<M>,
    (train, triples, sts): (Vec<Vec<u32>>, Vec<Triple>, StsPairs),
    test: Option<&StsPairs>,
    resume: bool,
) -> Result<crate::tasks::TaskReport> {
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
    let (trainable, total) = crate::peft::describe(&model);
    let kind = match s.supervised {
        true => format!(
            "supervised ({} NLI triples, {} with a hard negative)",
            task.triples.len(),
            task.triples.iter().filter(|t| t.2.is_some()).count()
        ),
        false => "unsupervised".to_string(),
    };
    println!(
        "{:?}, {kind} SimCSE ({:?} pooling, τ {}, dropout {}): {trainable} trainable of {total} parameters",
        cfg.peft.method, s.pooling, s.temperature, s.dropout
    );
    run.record(cfg, None, s)?;
    let report = run.trainer.fit(&task, model, resume)?;
    crate::tasks::pairs::pair_report(cfg, run, report, [Some(before), before_test], trainable)
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
