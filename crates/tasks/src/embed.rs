//! Sentence embeddings (`manabi embed`, and the bodies of SimCSE and bi-encoder STS): a
//! body pooled over its tokens — a decoder (mean of the hidden states, or the last one) or
//! a BERT encoder reading `[CLS] sentence [SEP]` (mean, or the `[CLS]` state) — and the
//! STS Spearman correlation of cosine similarities with gold scores (JSTS files). Training
//! them: [`crate::simcse`] and [`crate::pairs`].

use std::path::{Path, PathBuf};

use burn::prelude::*;
use manabi_finetune::error::{FinetuneError, Result};
use manabi_finetune::metrics::spearman;
use manabi_model::{BertModel, DecoderLm, Family, ForwardOptions};
use manabi_tokenize::TextTokenizer;

use crate::body::{Framing, length_mask, load_bert_body};
use crate::data::{FieldMap, Label, TaskKind, read_examples};

pub use crate::pooling::{Encoder, Pooling};
pub use crate::settings::is_embedding_checkpoint;

/// Reads sentences: `.jsonl` lines give their `sentence` field (renamable), or both
/// `sentence1` and `sentence2` when there is no `sentence` (JSTS/JNLI files); any other
/// file gives one sentence per non-empty line.
pub fn read_sentences(paths: &[PathBuf], fields: &FieldMap) -> Result<Vec<String>> {
    let key = fields.get("sentence").map_or("sentence", String::as_str);
    let mut out = Vec::new();
    for path in paths {
        let name = path.to_string_lossy();
        let jsonl = name.ends_with(".jsonl") || name.ends_with(".jsonl.gz");
        let before = out.len();
        if !jsonl {
            for line in manabi_tokenize::read_text_lines(path) {
                let (_, text) = line?;
                out.push(text.trim().to_string());
            }
        } else {
            for record in manabi_tokenize::read_jsonl(path) {
                let manabi_tokenize::JsonLine { line, value: v } = record?;
                let err = |message: String| FinetuneError::Data {
                    path: path.clone(),
                    line,
                    message,
                };
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
        let x = self.embed(ids);
        let h = self.hidden_states(x, &ForwardOptions::default(), None); // [n, seq, d]
        Ok(pool(h, &lens, pooling))
    }

    fn with_dropout(self, p: f64) -> Self {
        manabi_finetune::load::with_dropout(self, p)
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
        let mask = length_mask(lens.iter().copied(), ids.dims()[1], device);
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
        let found = manabi_model::locate(dir)?;
        let dir = &found.dir;
        if found.family == Family::Bert {
            return Ok(Self::Bert(Box::new(load_bert_body(dir, device)?)));
        }
        let (m, _) = manabi_finetune::load::load_decoder(dir, device)?;
        Ok(Self::Decoder(Box::new(m)))
    }

    /// The body's family.
    pub fn family(&self) -> Family {
        match self {
            Self::Decoder(m) => m.config().family,
            Self::Bert(_) => Family::Bert,
        }
    }

    /// The width of its vectors (`d_model`).
    pub fn width(&self) -> usize {
        match self {
            Self::Decoder(m) => m.config().d_model,
            Self::Bert(m) => m.config().d_model,
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
        let eos = manabi_finetune::sft::Specials::of(tokenizer)?.eos;
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

/// Cosine similarity of two vectors of one width. Vectors read from files go through
/// [`read_embeddings`] (or [`check_width`]) first, which refuses a vector of another
/// width: compared here, it would be read only as far as the shorter one.
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

/// Refuses the vector `v` of line `line` of `path` unless it is `width` wide (`what`
/// says whose width that is: "the model's", "line 1's").
pub fn check_width(v: &[f32], width: usize, what: &str, path: &Path, line: usize) -> Result<()> {
    if v.len() != width {
        return Err(FinetuneError::Data {
            path: path.to_path_buf(),
            line,
            message: format!(
                "an embedding of {} values, where {what} are {width} wide",
                v.len()
            ),
        });
    }
    Ok(())
}

/// Reads what [`write_embeddings`] wrote (`{"text", "embedding": [...]}` a line): the
/// vectors, every one a list of finite numbers of one width — `width` (the model's) when
/// given, else the first line's. Every refusal names the file and line of the vector.
pub fn read_embeddings(path: &Path, width: Option<usize>) -> Result<Vec<Vec<f32>>> {
    let mut out = Vec::new();
    let mut want: Option<(usize, String)> = width.map(|w| (w, "the model's vectors".to_string()));
    for record in manabi_tokenize::read_jsonl(path) {
        let manabi_tokenize::JsonLine { line, value } = record?;
        let err = |message: String| FinetuneError::Data {
            path: path.to_path_buf(),
            line,
            message,
        };
        let list = value
            .get("embedding")
            .and_then(serde_json::Value::as_array)
            .ok_or_else(|| err("missing field `embedding` (a list of numbers)".into()))?;
        let mut v = Vec::with_capacity(list.len());
        for (i, x) in list.iter().enumerate() {
            match x.as_f64().map(|x| x as f32) {
                Some(x) if x.is_finite() => v.push(x),
                _ => {
                    return Err(err(format!(
                        "`embedding` value {} of {} is {x}, not a finite number",
                        i + 1,
                        list.len()
                    )));
                }
            }
        }
        if v.is_empty() {
            return Err(err("`embedding` is empty".into()));
        }
        let (w, what) = want.get_or_insert_with(|| (v.len(), format!("line {line}'s values")));
        check_width(&v, *w, what, path, line)?;
        out.push(v);
    }
    if out.is_empty() {
        return Err(FinetuneError::io(path, "no embeddings in this file"));
    }
    Ok(out)
}

/// Writes one JSON line per text: `{"text", "embedding": [...]}`.
pub fn write_embeddings(path: &Path, texts: &[String], vectors: &[Vec<f32>]) -> Result<()> {
    if texts.len() != vectors.len() {
        return Err(FinetuneError::io(
            path,
            format!("{} texts but {} embeddings", texts.len(), vectors.len()),
        ));
    }
    let mut out = String::new();
    for (t, v) in texts.iter().zip(vectors) {
        out.push_str(&serde_json::json!({"text": t, "embedding": v}).to_string());
        out.push('\n');
    }
    std::fs::write(path, out).map_err(|e| FinetuneError::io(path, e))
}
