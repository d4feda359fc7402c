//! The one way a model is opened: [`open`] takes what a user passes as `--model` — a
//! manabi checkpoint, a run folder (its newest complete checkpoint) or a Hugging Face
//! folder of any supported family and head — and returns it loaded, with what it is
//! ([`Model`]), its task head (`head.toml` or `id2label`) and its PEFT settings
//! (`peft.toml`). Every loader of every stage is a view of it (`into_decoder`,
//! `into_classifier`, `into_bert_body`, …): a folder that holds another kind of model is
//! refused in one line that says what the folder holds and what was needed.
//!
//! Finding the folder and its family is [`manabi_model::locate`]'s job (one family
//! detector; an unknown `model_type` is an error, never GPT-2).

use std::path::{Path, PathBuf};

use burn::prelude::*;
use manabi_model::checkpoint::load_module;
use manabi_model::{
    BertForMaskedLm, BertForSequenceClassification, BertForTokenClassification, BertModel,
    DecoderClassifier, DecoderLm, Family, Layout, ModelConfig, ModelDir, T5,
};

use crate::error::{FinetuneError, Result};
use crate::head::{HeadSpec, hf_label_names, read_head};
use crate::peft::{self, PEFT_FILE, PeftConfig};

/// The spec file of a task checkpoint (written by `manabi-tasks`); [`open`] reads only
/// whether it marks an encoder saved without a head (sentence embeddings).
pub const TASK_FILE: &str = "task.toml";

/// A loaded model, by what it is.
#[derive(Debug)]
pub enum Model {
    /// A causal LM (any decoder family), adapters rebuilt from `peft.toml`.
    Decoder(Box<DecoderLm>),
    /// A decoder with a linear head: on the last token (`score`: classifier, regressor,
    /// reward model) or on every token (`token`: tagger).
    Classifier(Box<DecoderClassifier>),
    /// A BERT encoder with its masked-LM head (`BertForMaskedLM`, `BertForPreTraining`,
    /// manabi MLM pre-training).
    BertMaskedLm(Box<BertForMaskedLm>),
    /// A BERT encoder alone (`BertModel`; manabi sentence-embedding checkpoints).
    BertEncoder(Box<BertModel>),
    /// `BertForSequenceClassification`.
    BertClassifier(Box<BertForSequenceClassification>),
    /// `BertForTokenClassification`.
    BertTagger(Box<BertForTokenClassification>),
    /// A T5 encoder-decoder.
    T5(Box<T5>),
}

impl Model {
    /// What it is, in words (for messages).
    pub fn describe(&self) -> &'static str {
        match self {
            Self::Decoder(_) => "a causal LM",
            Self::Classifier(_) => "a decoder with a classification head",
            Self::BertMaskedLm(_) => "a BERT masked LM",
            Self::BertEncoder(_) => "a BERT encoder",
            Self::BertClassifier(_) => "a BERT sequence classifier",
            Self::BertTagger(_) => "a BERT token classifier",
            Self::T5(_) => "a T5 encoder-decoder",
        }
    }

    /// Visits every parameter, whichever model it is.
    pub fn visit<V: burn::module::ModuleVisitor>(&self, v: &mut V) {
        use burn::module::Module;
        match self {
            Self::Decoder(m) => m.visit(v),
            Self::Classifier(m) => m.visit(v),
            Self::BertMaskedLm(m) => m.visit(v),
            Self::BertEncoder(m) => m.visit(v),
            Self::BertClassifier(m) => m.visit(v),
            Self::BertTagger(m) => m.visit(v),
            Self::T5(m) => m.visit(v),
        }
    }

    /// Its parameter count.
    pub fn num_params(&self) -> usize {
        match self {
            Self::Decoder(m) => m.num_params(),
            Self::Classifier(m) => m.num_params(),
            Self::BertMaskedLm(m) => m.num_params(),
            Self::BertEncoder(m) => m.num_params(),
            Self::BertClassifier(m) => m.num_params(),
            Self::BertTagger(m) => m.num_params(),
            Self::T5(m) => m.num_params(),
        }
    }
}

/// A model folder, opened.
#[derive(Debug)]
pub struct Opened {
    /// Where it was found, in which layout and family.
    pub found: ModelDir,
    /// The model.
    pub model: Model,
    /// Its task head: `head.toml`, or a Hugging Face head's outputs and `id2label`.
    pub head: Option<HeadSpec>,
    /// Its PEFT settings (`peft.toml`), when adapted.
    pub peft: Option<PeftConfig>,
}

impl Opened {
    /// The folder the model was read from (a run folder's newest checkpoint).
    pub fn dir(&self) -> &Path {
        &self.found.dir
    }

    fn wrong(&self, needed: &str) -> FinetuneError {
        wrong_kind(&self.found.dir, self.model.describe(), needed)
    }

    /// A causal LM: a decoder, or the body of a decoder classifier (its head dropped:
    /// intermediate-task transfer, e.g. NLI before a reward model). Returns the PEFT
    /// settings of an adapted model.
    pub fn into_decoder(self) -> Result<(DecoderLm, Option<PeftConfig>)> {
        match self.model {
            Model::Decoder(m) => Ok((*m, self.peft)),
            Model::Classifier(m) => {
                if let Some(head) = &self.head {
                    tracing::info!(
                        "{}: the body of a {} classifier ({} outputs); its head is dropped",
                        self.found.dir.display(),
                        head.kind,
                        head.labels
                    );
                }
                Ok((m.lm, self.peft))
            }
            _ => Err(self.wrong("a decoder (causal LM)")),
        }
    }

    /// A decoder with its head, and the head's spec.
    pub fn into_classifier(self) -> Result<(DecoderClassifier, HeadSpec)> {
        match (self.model, self.head) {
            (Model::Classifier(m), Some(head)) => Ok((*m, head)),
            (Model::Decoder(_), _) => Err(wrong_kind(
                &self.found.dir,
                "a causal LM without a head",
                "a decoder with a classification head (head.toml, or a Hugging Face \
                 *ForSequenceClassification / *ForTokenClassification folder)",
            )),
            (m, _) => Err(FinetuneError::io(
                &self.found.dir,
                format!(
                    "holds {}, where a decoder (gpt2 / llama family) with a classification \
                     head is needed (BERT classifiers serve `manabi task` evaluation and \
                     prediction only)",
                    m.describe()
                ),
            )),
        }
    }

    /// A T5 encoder-decoder.
    pub fn into_t5(self) -> Result<T5> {
        match self.model {
            Model::T5(m) => Ok(*m),
            _ => Err(self.wrong("a T5 encoder-decoder")),
        }
    }

    /// The encoder of any BERT model (its heads dropped; the pooler kept when it has one).
    pub fn into_bert_body(self) -> Result<BertModel> {
        match self.model {
            Model::BertEncoder(m) => Ok(*m),
            Model::BertMaskedLm(m) => Ok(m.bert),
            Model::BertClassifier(m) => Ok(m.bert),
            Model::BertTagger(m) => Ok(m.bert),
            _ => Err(self.wrong("a BERT encoder")),
        }
    }
}

/// `DIR: holds WHAT, where NEEDED is needed`.
fn wrong_kind(dir: &Path, what: &str, needed: &str) -> FinetuneError {
    FinetuneError::io(dir, format!("holds {what}, where {needed} is needed"))
}

/// Opens the model `path` names: a manabi folder (`model.toml` + `model.bpk`, with
/// `head.toml`, `peft.toml` and `task.toml` when it has them), a run folder (its newest
/// complete checkpoint) or a Hugging Face folder (`config.json` + safetensors; the head
/// from `architectures[0]`).
pub fn open(path: &Path, device: &Device) -> Result<Opened> {
    let found = manabi_model::locate(path)?;
    let dir = found.dir.clone();
    let (model, head, peft) = match found.layout {
        Layout::Native => open_native(&dir, found.family, device)?,
        Layout::HuggingFace => {
            let (model, head) = open_hf(&dir, found.family, found.architecture.as_deref(), device)?;
            (model, head, None)
        }
    };
    Ok(Opened {
        found,
        model,
        head,
        peft,
    })
}

type Parts = (Model, Option<HeadSpec>, Option<PeftConfig>);

fn open_native(dir: &Path, family: Family, device: &Device) -> Result<Parts> {
    let head = dir
        .join(crate::head::HEAD_FILE)
        .exists()
        .then(|| read_head(dir))
        .transpose()?;
    let peft = dir
        .join(PEFT_FILE)
        .exists()
        .then(|| read_toml::<PeftConfig>(&dir.join(PEFT_FILE)))
        .transpose()?;
    let model = match (family, &head) {
        (Family::Bert | Family::T5, _) if peft.is_some() => {
            return Err(FinetuneError::config(
                dir.join(PEFT_FILE).display().to_string(),
                format!("adapters on a {family} body are not supported (decoders only)"),
            ));
        }
        (Family::T5, Some(_)) => {
            return Err(FinetuneError::config(
                dir.join(crate::head::HEAD_FILE).display().to_string(),
                "a T5 model carries no task head",
            ));
        }
        (Family::T5, None) => Model::T5(Box::new(load_module(dir, device, |c, d| {
            Ok(T5::new(c, d))
        })?)),
        (Family::Bert, Some(h)) if h.kind == "token" => {
            let labels = h.labels;
            Model::BertTagger(Box::new(load_module(dir, device, |c, d| {
                Ok(BertForTokenClassification::new(&with_labels(c, labels), d))
            })?))
        }
        (Family::Bert, Some(h)) => {
            let labels = h.labels;
            Model::BertClassifier(Box::new(load_module(dir, device, |c, d| {
                Ok(BertForSequenceClassification::new(
                    &with_labels(c, labels),
                    d,
                ))
            })?))
        }
        (Family::Bert, None) if encoder_only(dir)? => {
            Model::BertEncoder(Box::new(load_module(dir, device, |c, d| {
                Ok(BertModel::new(c, false, d))
            })?))
        }
        (Family::Bert, None) => Model::BertMaskedLm(Box::new(load_module(dir, device, |c, d| {
            Ok(BertForMaskedLm::new(c, d))
        })?)),
        (_, Some(h)) => {
            let cfg = read_model_toml(dir)?;
            let mut m = DecoderClassifier::new(&cfg, h.labels, device);
            if let Some(p) = &peft {
                m.lm = peft::rebuild(m.lm, p)?;
            }
            manabi_model::checkpoint::load_weights(&mut m, &dir.join("model.bpk"))?;
            Model::Classifier(Box::new(m))
        }
        (_, None) => match &peft {
            None => Model::Decoder(Box::new(manabi_model::checkpoint::load_native(
                dir, device,
            )?)),
            Some(p) => {
                let cfg = read_model_toml(dir)?;
                let mut m = peft::rebuild(DecoderLm::new(&cfg, device), p)?;
                manabi_model::checkpoint::load_weights(&mut m, &dir.join("model.bpk"))?;
                Model::Decoder(Box::new(m))
            }
        },
    };
    Ok((model, head, peft))
}

fn open_hf(
    dir: &Path,
    family: Family,
    architecture: Option<&str>,
    device: &Device,
) -> Result<(Model, Option<HeadSpec>)> {
    let arch = architecture.unwrap_or("");
    let token = arch.ends_with("ForTokenClassification");
    // Without `architectures`, a classification head's tensor says there is one (a
    // sequence head: the two kinds have the same tensors).
    let headed = token
        || arch.ends_with("ForSequenceClassification")
        || (architecture.is_none()
            && hf_tensor_names(dir)
                .iter()
                .any(|n| n == "classifier.weight" || n == "score.weight"));
    Ok(match family {
        Family::T5 => (
            Model::T5(Box::new(manabi_model::load_t5(dir, device)?)),
            None,
        ),
        Family::Bert if headed => {
            let (model, labels) = if token {
                let m = manabi_model::load_bert_token_classifier(dir, device)?;
                let labels = m.classifier.weight.dims()[1];
                (Model::BertTagger(Box::new(m)), labels)
            } else {
                let m = manabi_model::load_bert_sequence_classifier(dir, device)?;
                let labels = m.classifier.weight.dims()[1];
                (Model::BertClassifier(Box::new(m)), labels)
            };
            (model, Some(hf_head(dir, labels, token)))
        }
        Family::Bert if matches!(arch, "BertForMaskedLM" | "BertForPreTraining") => (
            Model::BertMaskedLm(Box::new(manabi_model::load_bert_masked_lm(dir, device)?)),
            None,
        ),
        Family::Bert => (
            Model::BertEncoder(Box::new(manabi_model::load_bert(dir, device)?)),
            None,
        ),
        _ if headed => {
            let (m, token) = manabi_model::load_classifier_hf_kind(dir, device)?;
            let labels = m.labels();
            (
                Model::Classifier(Box::new(m)),
                Some(hf_head(dir, labels, token)),
            )
        }
        _ => (
            Model::Decoder(Box::new(manabi_model::load_hf(dir, device)?)),
            None,
        ),
    })
}

/// The tensor names of a Hugging Face folder: the keys of the shard index's weight map,
/// else the header of `model.safetensors` (empty when neither reads).
fn hf_tensor_names(dir: &Path) -> Vec<String> {
    use std::io::Read;
    let keys = |v: serde_json::Value, field: Option<&str>| -> Vec<String> {
        let map = match field {
            Some(f) => v.get(f).cloned().unwrap_or_default(),
            None => v,
        };
        map.as_object()
            .map(|m| m.keys().filter(|k| *k != "__metadata__").cloned().collect())
            .unwrap_or_default()
    };
    if let Ok(text) = std::fs::read_to_string(dir.join("model.safetensors.index.json")) {
        return serde_json::from_str(&text)
            .map(|v| keys(v, Some("weight_map")))
            .unwrap_or_default();
    }
    let Ok(mut f) = std::fs::File::open(dir.join("model.safetensors")) else {
        return Vec::new();
    };
    let mut n = [0u8; 8];
    if f.read_exact(&mut n).is_err() {
        return Vec::new();
    }
    let len = u64::from_le_bytes(n);
    if len > 100 << 20 {
        return Vec::new();
    }
    let mut header = vec![0u8; len as usize];
    if f.read_exact(&mut header).is_err() {
        return Vec::new();
    }
    serde_json::from_slice(&header)
        .map(|v| keys(v, None))
        .unwrap_or_default()
}

/// The head of a Hugging Face classifier: `labels` outputs named by `id2label` (token
/// heads always carry names, `LABEL_i` when `id2label` has none).
fn hf_head(dir: &Path, labels: usize, token: bool) -> HeadSpec {
    let names = hf_label_names(dir, labels);
    match token {
        true if names.len() == labels => HeadSpec::token(names),
        true => HeadSpec::token((0..labels).map(|i| format!("LABEL_{i}")).collect()),
        false => HeadSpec::score(labels, names),
    }
}

fn with_labels(cfg: &ModelConfig, labels: usize) -> ModelConfig {
    let mut cfg = cfg.clone();
    cfg.num_labels = Some(labels);
    cfg
}

/// Whether the manabi checkpoint `dir` holds an encoder saved without a head: a
/// sentence-embedding checkpoint (`task.toml` with `kind = "simcse"`, or an STS
/// bi-encoder, `encoder = "bi"`).
pub fn encoder_only(dir: &Path) -> Result<bool> {
    let spec = dir.join(TASK_FILE);
    if !spec.exists() {
        return Ok(false);
    }
    let t: toml::Table = read_toml(&spec)?;
    let is = |key: &str, value: &str| t.get(key).and_then(|v| v.as_str()) == Some(value);
    Ok(is("kind", "simcse") || is("encoder", "bi"))
}

fn read_toml<T: serde::de::DeserializeOwned>(path: &PathBuf) -> Result<T> {
    let text = std::fs::read_to_string(path).map_err(|e| FinetuneError::io(path, e))?;
    let text = text.strip_prefix('\u{feff}').unwrap_or(&text);
    toml::from_str(text).map_err(|e| FinetuneError::config(path.display().to_string(), e.message()))
}

/// `model.toml` of `dir`, validated.
pub(crate) fn read_model_toml(dir: &Path) -> Result<ModelConfig> {
    let cfg: ModelConfig = read_toml(&dir.join("model.toml"))?;
    cfg.validate()?;
    Ok(cfg)
}
