//! The two bodies a sequence task (classification, NLI, cross-encoder STS) or a token
//! task (NER) trains on.
//!
//! - A **decoder** (GPT-2, LLaMA) reads the texts joined by the separator, with EOS
//!   appended, at its last token, as `*ForSequenceClassification` in `transformers`.
//! - A **BERT encoder** reads `[CLS] a [SEP] b [SEP]` (segment ids 0 then 1) through its
//!   pooler at `[CLS]`, as `BertForSequenceClassification`; padding is masked out. The
//!   body is a manabi masked-LM checkpoint (`manabi pretrain` with `family = "bert"`) or a
//!   Hugging Face BERT folder; the pooler and the classifier start fresh when the body
//!   has none.
//!
//! For NER, BERT reads `[CLS] tokens [SEP]` and tags the tokens between.
//!
//! [`SeqClassifier`] and [`TokenTagger`] are what the tasks need of either; [`SeqModel`]
//! and [`TaggerModel`] are loaded checkpoints of either kind; [`Framing`] turns text into
//! ids for one of them.

use std::path::Path;

use burn::module::Module;
use burn::prelude::*;
use manabi_finetune::error::{FinetuneError, Result};
use manabi_finetune::head::HeadSpec;
use manabi_finetune::{Model, Opened};
use manabi_model::{
    BertForSequenceClassification, BertForTokenClassification, BertModel, DecoderClassifier, Family,
};
use manabi_objectives::model::TrainModel;
use manabi_tokenize::TextTokenizer;

use crate::batch::{SeqBatch, TagBatch};

/// A model with a sequence head the Trainer can train.
pub trait SeqClassifier: TrainModel {
    /// Head outputs of every row of `b`.
    ///
    /// # Shapes
    /// returns `[rows, labels]`
    fn scores(&self, b: &SeqBatch, device: &Device) -> Result<Tensor<2>>;
}

/// `[rows, seq]` attention mask of right-padded rows: 1 on each row's first `len` tokens,
/// 0 on its padding.
pub(crate) fn length_mask(
    lens: impl ExactSizeIterator<Item = usize>,
    seq: usize,
    device: &Device,
) -> Tensor<2> {
    let rows = lens.len();
    let mask: Vec<f32> = lens
        .flat_map(|len| (0..seq).map(move |j| f32::from(u8::from(j < len))))
        .collect();
    Tensor::<1>::from_floats(mask.as_slice(), device).reshape([rows, seq])
}

/// `[rows, seq]` token ids of a right-padded batch.
fn ids_tensor(inputs: &[u32], rows: usize, seq: usize, device: &Device) -> Tensor<2, Int> {
    let ids: Vec<i64> = inputs.iter().map(|&x| i64::from(x)).collect();
    Tensor::<1, Int>::from_ints(ids.as_slice(), device).reshape([rows, seq])
}

impl SeqClassifier for DecoderClassifier {
    fn scores(&self, b: &SeqBatch, device: &Device) -> Result<Tensor<2>> {
        Ok(self.forward(ids_tensor(&b.inputs, b.rows, b.seq, device), &b.last))
    }
}

impl SeqClassifier for BertForSequenceClassification {
    fn scores(&self, b: &SeqBatch, device: &Device) -> Result<Tensor<2>> {
        let mask = length_mask(b.last.iter().map(|&l| l + 1), b.seq, device);
        let types: Vec<i64> = if b.types.is_empty() {
            vec![0; b.rows * b.seq]
        } else {
            b.types.iter().map(|&x| x as i64).collect()
        };
        let types = Tensor::<1, Int>::from_ints(types.as_slice(), device).reshape([b.rows, b.seq]);
        Ok(self.forward(
            ids_tensor(&b.inputs, b.rows, b.seq, device),
            Some(mask),
            Some(types),
        )?)
    }
}

/// A loaded task checkpoint of either body: a decoder with a head, or BERT with the
/// task's head `B`.
#[derive(Debug, Clone)]
pub enum Loaded<B> {
    /// A decoder with a head read at the last token or at every token.
    Decoder(Box<DecoderClassifier>),
    /// A BERT encoder with its head.
    Bert(Box<B>),
}

/// A loaded sequence-task checkpoint.
pub type SeqModel = Loaded<BertForSequenceClassification>;
/// A loaded token-tagging (NER) checkpoint.
pub type TaggerModel = Loaded<BertForTokenClassification>;

impl<B: Module> Loaded<B> {
    /// The model without dropout or gradient tracking.
    pub fn valid(&self) -> Self {
        match self {
            Self::Decoder(m) => Self::Decoder(Box::new(m.valid())),
            Self::Bert(m) => Self::Bert(Box::new(m.valid())),
        }
    }

    /// The body's family.
    pub fn family(&self) -> Family {
        match self {
            Self::Decoder(m) => m.lm.config().family,
            Self::Bert(_) => Family::Bert,
        }
    }
}

impl SeqModel {
    /// Head outputs of every row of `b`; see [`SeqClassifier::scores`].
    pub fn scores(&self, b: &SeqBatch, device: &Device) -> Result<Tensor<2>> {
        match self {
            Self::Decoder(m) => m.scores(b, device),
            Self::Bert(m) => m.scores(b, device),
        }
    }
}

impl TaggerModel {
    /// See [`TokenTagger::token_scores`].
    pub fn token_scores(&self, b: &TagBatch, device: &Device) -> Result<Tensor<3>> {
        match self {
            Self::Decoder(m) => m.token_scores(b, device),
            Self::Bert(m) => m.token_scores(b, device),
        }
    }
}

/// How the texts of one example become ids for a body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// Texts joined by the task's separator, EOS appended (decoders).
    Decoder {
        /// End of sequence.
        eos: u32,
    },
    /// `[CLS] a [SEP] b [SEP]` with segment ids (BERT).
    Bert {
        /// `[CLS]`.
        cls: u32,
        /// `[SEP]`.
        sep: u32,
    },
    /// Each text inside the tokenizer's own special tokens (its post-processor's, e.g. a
    /// Llama BOS), nothing added: `tokenizer(text, text_pair)` of `transformers`, as its
    /// `pipeline()` feeds a Hugging Face decoder classifier, read at the last token.
    Own,
}

/// One framed example: ids, segment ids (empty for decoders) and whether it was cut.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Framed {
    /// Token ids.
    pub ids: Vec<u32>,
    /// Segment (token type) ids, one per token; empty for decoders.
    pub types: Vec<u32>,
    /// Whether tokens were dropped to fit `max_length`.
    pub cut: bool,
}

impl Framing {
    /// The framing of a `family` body with `tokenizer`: BERT needs a `[CLS]` token — the
    /// `cls_token` of its tokenizer_config.json, else `[CLS]`, `<cls>`, `<s>` or `<bos>` —
    /// and its `sep_token`, else `eos` (`[SEP]`, `<eos>`, …), as `[SEP]`.
    pub fn of(family: Family, tokenizer: &TextTokenizer, eos: u32) -> Result<Self> {
        if family != Family::Bert {
            return Ok(Self::Decoder { eos });
        }
        let cls = tokenizer
            .special("cls_token")
            .map(|(_, id)| id)
            .or_else(|| {
                ["[CLS]", "<cls>", "<s>", "<bos>"]
                    .iter()
                    .find_map(|t| tokenizer.token_id(t))
            })
            .ok_or_else(|| {
                FinetuneError::io(
                    tokenizer.path(),
                    "a BERT body needs a [CLS] token ([CLS], <cls>, <s> or <bos>) in its tokenizer",
                )
            })?;
        let sep = tokenizer.special("sep_token").map_or(eos, |(_, id)| id);
        Ok(Self::Bert { cls, sep })
    }

    /// Frames the `texts` of one example in at most `max_length` tokens. A decoder cuts
    /// the joined text from the end; BERT and [`Framing::Own`] cut the longest segment
    /// first, as `transformers`' `longest_first`.
    pub fn frame(
        &self,
        texts: &[String],
        separator: &str,
        max_length: usize,
        tokenizer: &TextTokenizer,
    ) -> Result<Framed> {
        match *self {
            Self::Decoder { eos } => {
                // The tokenizer's own special tokens around the text (a Llama-style BOS
                // first), then EOS, which the score head reads, unless the tokenizer's
                // suffix already ends with it.
                let (prefix, suffix) = (tokenizer.specials_prefix(), tokenizer.specials_suffix());
                let end = usize::from(suffix.last() != Some(&eos));
                let mut body = tokenizer.encode(&texts.join(separator))?;
                let room = max_length.saturating_sub(prefix.len() + suffix.len() + end);
                let cut = body.len() > room;
                body.truncate(room);
                let mut ids = tokenizer.frame(body);
                if end == 1 {
                    ids.push(eos);
                }
                Ok(Framed {
                    ids,
                    types: Vec::new(),
                    cut,
                })
            }
            Self::Bert { cls, sep } => {
                let (segs, cut) =
                    longest_first(texts, max_length.saturating_sub(1 + texts.len()), tokenizer)?;
                let (mut ids, mut types) = (vec![cls], vec![0]);
                for (k, s) in segs.iter().enumerate() {
                    let ty = k.min(1) as u32;
                    ids.extend_from_slice(s);
                    ids.push(sep);
                    types.extend(std::iter::repeat_n(ty, s.len() + 1));
                }
                Ok(Framed { ids, types, cut })
            }
            Self::Own => {
                // prefix a suffix [prefix b suffix]: what a TemplateProcessing pair
                // template of a decoder's tokenizer (`<s> $A <s> $B`) or none at all gives.
                let around = tokenizer.specials_prefix().len() + tokenizer.specials_suffix().len();
                let room = max_length.saturating_sub(around * texts.len());
                let (segs, cut) = longest_first(texts, room, tokenizer)?;
                let ids = segs.into_iter().flat_map(|s| tokenizer.frame(s)).collect();
                Ok(Framed {
                    ids,
                    types: Vec::new(),
                    cut,
                })
            }
        }
    }
}

/// The ids of each of `texts` (no special tokens), the longest cut first until they fit
/// in `room` tokens together (`transformers`' `longest_first`, ties to the first text);
/// and whether anything was cut.
fn longest_first(
    texts: &[String],
    room: usize,
    tokenizer: &TextTokenizer,
) -> Result<(Vec<Vec<u32>>, bool)> {
    let mut segs = texts
        .iter()
        .map(|t| tokenizer.encode(t))
        .collect::<std::result::Result<Vec<_>, _>>()?;
    let mut cut = false;
    while segs.iter().map(Vec::len).sum::<usize>() > room {
        let longest = (0..segs.len()).max_by_key(|&i| (segs[i].len(), usize::MAX - i));
        let Some(i) = longest else { break };
        segs[i].pop();
        cut = true;
    }
    Ok((segs, cut))
}

/// The family of the model folder `path`: `model.toml` (manabi) or `config.json`'s
/// `model_type` (Hugging Face).
pub fn body_family(path: &Path) -> Result<Family> {
    Ok(manabi_model::locate(path)?.family)
}

/// The encoder of a BERT folder: a manabi masked-LM checkpoint, a manabi embedding
/// checkpoint (SimCSE, bi-encoder: the encoder alone) or a Hugging Face BERT of any head.
pub fn load_bert_body(path: &Path, device: &Device) -> Result<BertModel> {
    manabi_finetune::open(path, device)?.into_bert_body()
}

/// `BertForSequenceClassification` with `labels` outputs on `body`; a pooler is added
/// when the body has none (masked-LM checkpoints), and the classifier starts fresh.
pub fn bert_classifier(body: BertModel, labels: usize) -> BertForSequenceClassification {
    let device = body.embeddings.word.weight.device();
    let mut cfg = body.config().clone();
    cfg.num_labels = Some(labels);
    let std = manabi_model::init::STD;
    let mut m = BertForSequenceClassification::new(&cfg, &device);
    m.classifier = manabi_model::init::linear(cfg.d_model, labels, true, std, &device);
    let pooler = body.pooler.clone().unwrap_or_else(|| {
        manabi_model::init::linear(cfg.d_model, cfg.d_model, true, std, &device)
    });
    m.bert = body;
    m.bert.pooler = Some(pooler);
    m
}

/// `linear` with its outputs reordered: output `i` is `linear`'s output `order[i]`.
pub(crate) fn reorder_outputs(linear: burn::nn::Linear, order: &[usize]) -> burn::nn::Linear {
    if order.iter().enumerate().all(|(i, &o)| i == o) {
        return linear;
    }
    let idx: Vec<i64> = order.iter().map(|&i| i as i64).collect();
    let idx = Tensor::<1, Int>::from_ints(idx.as_slice(), &linear.weight.device());
    burn::nn::Linear {
        // Detached leaves: on a training device the selection would otherwise stay a node
        // of a graph the first backward pass consumes.
        weight: linear.weight.map(|w| {
            let grad = w.is_require_grad();
            w.select(1, idx.clone()).detach().set_require_grad(grad)
        }),
        bias: linear.bias.map(|b| {
            b.map(|b| {
                let grad = b.is_require_grad();
                b.select(0, idx).detach().set_require_grad(grad)
            })
        }),
    }
}

/// A `BertForSequenceClassification` kept for fine-tuning, its outputs in `order`.
pub(crate) fn keep_bert_classifier(
    model: Model,
    order: &[usize],
) -> std::result::Result<BertForSequenceClassification, Model> {
    match model {
        Model::BertClassifier(mut m) => {
            m.classifier = reorder_outputs(m.classifier, order);
            Ok(*m)
        }
        other => Err(other),
    }
}

/// A `BertForTokenClassification` kept for fine-tuning, its outputs in `order`.
pub(crate) fn keep_bert_tagger(
    model: Model,
    order: &[usize],
) -> std::result::Result<BertForTokenClassification, Model> {
    match model {
        Model::BertTagger(mut m) => {
            m.classifier = reorder_outputs(m.classifier, order);
            Ok(*m)
        }
        other => Err(other),
    }
}

/// Loads a sequence-task checkpoint of either body: a manabi folder (`model.toml` and
/// `head.toml`) or a Hugging Face `*ForSequenceClassification` folder.
pub fn load_seq_classifier(dir: &Path, device: &Device) -> Result<(SeqModel, HeadSpec)> {
    let take = |m| match m {
        Model::BertClassifier(m) => Ok(m),
        m => Err(m),
    };
    load_headed(dir, device, take, "a sequence classifier (a `score` head)")
}

/// A task checkpoint opened ([`manabi_finetune::open`]) as a decoder classifier or as
/// the BERT model `take` accepts; a BERT model with the other head is refused, saying
/// `wanted`.
fn load_headed<B>(
    dir: &Path,
    device: &Device,
    take: impl FnOnce(Model) -> std::result::Result<Box<B>, Model>,
    wanted: &str,
) -> Result<(Loaded<B>, HeadSpec)> {
    let Opened {
        found,
        model,
        head,
        peft,
    } = manabi_finetune::open(dir, device)?;
    match take(model) {
        Ok(m) => {
            let head =
                head.ok_or_else(|| FinetuneError::io(&found.dir, "a head without its spec"))?;
            Ok((Loaded::Bert(m), head))
        }
        Err(m @ (Model::Decoder(_) | Model::Classifier(_))) => {
            let opened = Opened {
                found,
                model: m,
                head,
                peft,
            };
            let (m, head) = opened.into_classifier()?;
            Ok((Loaded::Decoder(Box::new(m)), head))
        }
        // A BERT or T5 model without this head: say what it is and what is needed.
        Err(m) => Err(FinetuneError::io(
            &found.dir,
            format!(
                "holds {}, where {wanted} is needed (a `manabi task` checkpoint, or a \
                 Hugging Face *For{}Classification folder)",
                m.describe(),
                if wanted.contains("token") {
                    "Token"
                } else {
                    "Sequence"
                }
            ),
        )),
    }
}

/// Exports a BERT sequence classifier as Hugging Face `BertForSequenceClassification`,
/// with `names` (when given) as `id2label` / `label2id` in `config.json`.
pub fn export_bert_classifier(
    model: &BertForSequenceClassification,
    dir: &Path,
    tokenizer: Option<&Path>,
    names: &[String],
) -> Result<()> {
    manabi_model::export_bert_hf(model, dir, tokenizer)?;
    write_label_names(dir, names)
}

/// Writes `names` into `dir/config.json` as `id2label` / `label2id` (nothing when empty).
fn write_label_names(dir: &Path, names: &[String]) -> Result<()> {
    if names.is_empty() {
        return Ok(());
    }
    let path = dir.join("config.json");
    let text = std::fs::read_to_string(&path).map_err(|e| FinetuneError::io(&path, e))?;
    let mut v: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| FinetuneError::io(&path, e))?;
    v["id2label"] = names
        .iter()
        .enumerate()
        .map(|(i, n)| (i.to_string(), serde_json::json!(n)))
        .collect::<serde_json::Map<_, _>>()
        .into();
    v["label2id"] = names
        .iter()
        .enumerate()
        .map(|(i, n)| (n.clone(), serde_json::json!(i)))
        .collect::<serde_json::Map<_, _>>()
        .into();
    let text = serde_json::to_string_pretty(&v).map_err(|e| FinetuneError::io(&path, e))?;
    manabi_tokenize::write_atomic(&path, text.as_bytes())?;
    Ok(())
}

/// A model with a head on every token (NER) the Trainer can train.
pub trait TokenTagger: TrainModel {
    /// Head outputs at every token of every row of `b` (padding included).
    ///
    /// # Shapes
    /// returns `[rows, seq, labels]`
    fn token_scores(&self, b: &TagBatch, device: &Device) -> Result<Tensor<3>>;
}

impl TokenTagger for DecoderClassifier {
    fn token_scores(&self, b: &TagBatch, device: &Device) -> Result<Tensor<3>> {
        Ok(self.forward_tokens(ids_tensor(&b.inputs, b.rows, b.seq, device)))
    }
}

impl TokenTagger for BertForTokenClassification {
    /// Each row is read as `[CLS] tokens [SEP]` (padding masked); the outputs at the
    /// tokens come back in the rows' own positions.
    fn token_scores(&self, b: &TagBatch, device: &Device) -> Result<Tensor<3>> {
        let Some((cls, sep)) = b.frame else {
            return Err(FinetuneError::Config {
                key: "model.path".into(),
                message: "a BERT tagger needs [CLS] / [SEP] framing".into(),
            });
        };
        let seq = b.seq + 2;
        let mut ids = Vec::with_capacity(b.rows * seq);
        for (r, &n) in b.lens.iter().enumerate() {
            let row = &b.inputs[r * b.seq..r * b.seq + n];
            ids.push(i64::from(cls));
            ids.extend(row.iter().map(|&x| i64::from(x)));
            ids.push(i64::from(sep));
            ids.extend(std::iter::repeat_n(i64::from(b.pad), b.seq - n));
        }
        let ids = Tensor::<1, Int>::from_ints(ids.as_slice(), device).reshape([b.rows, seq]);
        let mask = length_mask(b.lens.iter().map(|&n| n + 2), seq, device);
        let out = self.forward(ids, Some(mask), None)?;
        let labels = out.dims()[2];
        Ok(out.slice([0..b.rows, 1..b.seq + 1, 0..labels]))
    }
}

/// `BertForTokenClassification` with `labels` outputs on `body` (its pooler dropped),
/// the classifier fresh.
pub fn bert_tagger(body: BertModel, labels: usize) -> BertForTokenClassification {
    let device = body.embeddings.word.weight.device();
    let mut cfg = body.config().clone();
    cfg.num_labels = Some(labels);
    let mut m = BertForTokenClassification::new(&cfg, &device);
    m.classifier =
        manabi_model::init::linear(cfg.d_model, labels, true, manabi_model::init::STD, &device);
    m.bert = body;
    m.bert.pooler = None;
    m
}

/// Loads a token-tagging checkpoint of either body: a manabi folder (`model.toml`,
/// `head.toml` of kind `token`) or a Hugging Face `*ForTokenClassification` folder.
pub fn load_tagger(dir: &Path, device: &Device) -> Result<(TaggerModel, HeadSpec)> {
    let take = |m| match m {
        Model::BertTagger(m) => Ok(m),
        m => Err(m),
    };
    load_headed(dir, device, take, "a token classifier (a `token` head)")
}

/// Exports a BERT token tagger as Hugging Face `BertForTokenClassification` with the tag
/// `names` as `id2label` / `label2id`.
pub fn export_bert_tagger(
    model: &BertForTokenClassification,
    dir: &Path,
    tokenizer: Option<&Path>,
    names: &[String],
) -> Result<()> {
    manabi_model::export_bert_hf(model, dir, tokenizer)?;
    write_label_names(dir, names)
}
