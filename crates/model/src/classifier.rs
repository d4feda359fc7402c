//! A decoder with a sequence head: the hidden state of each sequence's last token through
//! one bias-free linear layer (`score`), as Hugging Face's `GPT2ForSequenceClassification`
//! and `LlamaForSequenceClassification`. With one label it is a reward model (and PPO's
//! value head); with more, a classifier. Exported in that layout, so `transformers`
//! scores the same.

use std::path::Path;

use burn::nn::Linear;
use burn::prelude::*;

use crate::config::{Family, ModelConfig};
use crate::decoder::{DecoderLm, ForwardOptions};
use crate::error::{ModelError, Result};

/// A decoder body and a `score` head `[d_model, labels]`.
#[derive(Module, Debug)]
pub struct DecoderClassifier {
    /// The body (its LM head is not used; built tied, so it has none).
    pub lm: DecoderLm,
    /// `[d_model, labels]`, no bias.
    pub score: Linear,
}

impl DecoderClassifier {
    /// A classifier with `labels` outputs on a fresh body of `cfg`.
    pub fn new(cfg: &ModelConfig, labels: usize, device: &Device) -> Self {
        let mut cfg = cfg.clone();
        cfg.tie_embeddings = true;
        Self {
            lm: DecoderLm::new(&cfg, device),
            score: crate::init::linear(cfg.d_model, labels, false, crate::init::STD, device),
        }
    }

    /// A classifier on an existing body (a causal LM's head is dropped).
    pub fn from_lm(lm: DecoderLm, labels: usize) -> Self {
        let device = lm.embed_tokens.weight.device();
        let d = lm.config().d_model;
        let mut lm = lm;
        lm.lm_head = None;
        lm.set_tied();
        Self {
            lm,
            score: crate::init::linear(d, labels, false, crate::init::STD, &device),
        }
    }

    /// Outputs per label.
    pub fn labels(&self) -> usize {
        self.score.weight.dims()[1]
    }

    /// Scores of each sequence at its last token `last[i]` (right padding after it is
    /// never attended by that token).
    ///
    /// # Shapes
    /// - ids: `[batch, seq]`
    /// - returns `[batch, labels]`
    pub fn forward(&self, ids: Tensor<2, Int>, last: &[usize]) -> Tensor<2> {
        let device = ids.device();
        let [b, t] = ids.dims();
        let x = self.lm.embed(ids);
        let h = self.lm.hidden_states(x, &ForwardOptions::default(), None); // [b, t, d]
        let d = h.dims()[2];
        let idx: Vec<i64> = last.iter().map(|&l| l.min(t - 1) as i64).collect();
        let idx = Tensor::<1, Int>::from_ints(idx.as_slice(), &device)
            .reshape([b, 1, 1])
            .repeat_dim(2, d);
        let picked = h.gather(1, idx).reshape([b, d]); // [b, d]
        self.score.forward(picked)
    }

    /// Scores of every token (token classification: the same body and head, read at
    /// each position; a causal body sees only the tokens up to each one).
    ///
    /// # Shapes
    /// - ids: `[batch, seq]`
    /// - returns `[batch, seq, labels]`
    pub fn forward_tokens(&self, ids: Tensor<2, Int>) -> Tensor<3> {
        let x = self.lm.embed(ids);
        let h = self.lm.hidden_states(x, &ForwardOptions::default(), None);
        self.score.forward(h)
    }

    /// Writes the Hugging Face `*ForSequenceClassification` layout: the body's tensors,
    /// `score.weight` `[labels, d]`, and a `config.json` naming the architecture, the
    /// labels (`names`, or `LABEL_i` when empty) and the pad token (how `transformers`
    /// finds each sequence's last token: the last one that is not `pad_token_id`).
    ///
    /// `pad_id` is the tokenizer's own padding token, and `None` when it has none apart
    /// from EOS: a `pad_token_id` equal to EOS would make `transformers` score the token
    /// before each sequence's final EOS, not the EOS manabi reads. Without it, no
    /// `pad_token_id` is written (`transformers` then reads the last token, one
    /// sequence per batch or left padding with an attention mask).
    pub fn export_hf(
        &self,
        dir: &Path,
        tokenizer: Option<&Path>,
        pad_id: Option<u32>,
        names: &[String],
    ) -> Result<()> {
        self.export_hf_as(dir, tokenizer, pad_id, names, false)
    }

    /// [`DecoderClassifier::export_hf`], or with `token` the `*ForTokenClassification`
    /// layout (scores read at every token): GPT-2's head is `classifier`, LLaMA's `score`,
    /// both with a bias in `transformers` (written as zeros when this head has none).
    pub fn export_hf_as(
        &self,
        dir: &Path,
        tokenizer: Option<&Path>,
        pad_id: Option<u32>,
        names: &[String],
        token: bool,
    ) -> Result<()> {
        let cfg = self.lm.config();
        let mut t = crate::checkpoint::decoder_hf_tensors(&self.lm, dir)?;
        t.retain(|o| o.name != "lm_head.weight");
        let head = head_name(cfg.family, token);
        t.push(crate::checkpoint::out(
            format!("{head}.weight"),
            self.score.weight.val().transpose(),
        )?);
        if token {
            let bias = match &self.score.bias {
                Some(b) => b.val(),
                None => Tensor::zeros([self.labels()], &self.score.weight.device()),
            };
            t.push(crate::checkpoint::out(format!("{head}.bias"), bias)?);
        }
        let mut json = cfg.to_hf_json();
        // LLaMA's layout names the class by `model_type` (`Qwen2ForTokenClassification`).
        let arch = match (cfg.family, token) {
            (Family::Gpt2, false) => "GPT2ForSequenceClassification".to_string(),
            (Family::Gpt2, true) => "GPT2ForTokenClassification".to_string(),
            (Family::Llama, false) => {
                format!("{}ForSequenceClassification", cfg.hf_arch_prefix())
            }
            (Family::Llama, true) => format!("{}ForTokenClassification", cfg.hf_arch_prefix()),
            (f, _) => {
                return Err(ModelError::Input(format!(
                    "`{f}` has no decoder classification layout"
                )));
            }
        };
        let labels = self.labels();
        if !names.is_empty() && names.len() != labels {
            return Err(ModelError::Input(format!(
                "{} label names for a head with {labels} outputs",
                names.len()
            )));
        }
        let name = |i: usize| {
            names
                .get(i)
                .cloned()
                .unwrap_or_else(|| format!("LABEL_{i}"))
        };
        json["architectures"] = serde_json::json!([arch]);
        json["num_labels"] = serde_json::json!(labels);
        json["id2label"] = (0..labels)
            .map(|i| (i.to_string(), serde_json::json!(name(i))))
            .collect::<serde_json::Map<_, _>>()
            .into();
        json["label2id"] = (0..labels)
            .map(|i| (name(i), serde_json::json!(i)))
            .collect::<serde_json::Map<_, _>>()
            .into();
        // Never EOS as padding (see `export_hf`); the config's EOS, when known, is checked
        // here too. Without such a pad no `pad_token_id` is written, not even the
        // config's own (the base model's, which may be EOS).
        match pad_id.filter(|&p| cfg.eos_token_id != Some(p as usize)) {
            Some(pad) => json["pad_token_id"] = serde_json::json!(pad),
            None => {
                if let Some(obj) = json.as_object_mut() {
                    obj.remove("pad_token_id");
                }
            }
        }
        json["tie_word_embeddings"] = serde_json::json!(true);
        crate::checkpoint::write_hf(dir, &t, &json, tokenizer)
    }
}

/// Loads a Hugging Face `GPT2ForSequenceClassification` / `LlamaForSequenceClassification`
/// folder.
pub fn load_classifier_hf(dir: impl AsRef<Path>, device: &Device) -> Result<DecoderClassifier> {
    Ok(load_classifier_hf_kind(dir, device)?.0)
}

/// The head's tensor name in `transformers`: `score`, except GPT-2's token head
/// (`classifier`).
fn head_name(family: Family, token: bool) -> &'static str {
    match (family, token) {
        (Family::Gpt2, true) => "classifier",
        _ => "score",
    }
}

/// [`load_classifier_hf`] for `*ForSequenceClassification` and `*ForTokenClassification`
/// folders (the head's bias, which token heads have, is kept); also returns whether the
/// head is a token head.
pub fn load_classifier_hf_kind(
    dir: impl AsRef<Path>,
    device: &Device,
) -> Result<(DecoderClassifier, bool)> {
    let dir = dir.as_ref();
    let mut cfg = crate::hf::read_config(dir)?;
    // A BERT or T5 classifier has no decoder body: refused naming the folder.
    if matches!(cfg.family, Family::Bert | Family::T5) {
        return Err(ModelError::not_a_decoder(&cfg, dir));
    }
    cfg.tie_embeddings = true;
    let text = std::fs::read_to_string(dir.join("config.json"))
        .map_err(|e| crate::hf::file_err(&dir.join("config.json"), e))?;
    let v: serde_json::Value = serde_json::from_str(&text)
        .map_err(|e| crate::hf::file_err(&dir.join("config.json"), e))?;
    // As transformers: the size of `id2label`, else `num_labels`, else 2.
    let labels = v["id2label"]
        .as_object()
        .map(|m| m.len() as u64)
        .or_else(|| v["num_labels"].as_u64())
        .unwrap_or(2) as usize;
    let token = v["architectures"][0]
        .as_str()
        .is_some_and(|a| a.ends_with("ForTokenClassification"));
    let mut w = crate::hf::Weights::read(dir, device)?;
    w.check_fits(&cfg)?;
    if labels == 0 || labels > 1 << 20 {
        return Err(ModelError::Config {
            key: format!("{}: num_labels", dir.join("config.json").display()),
            message: format!("{labels} outputs is not a classification head"),
        });
    }
    let mut m = DecoderClassifier::new(&cfg, labels, device);
    crate::hf::load_decoder_weights(&mut m.lm, &cfg, &mut w)?;
    // The body set its prefix (`model.`, `transformer.`); the head sits at the top.
    w.prefix = String::new();
    let head = head_name(cfg.family, token);
    let score = w.take::<2>(&format!("{head}.weight"), [labels, cfg.d_model]);
    let score = crate::open::head_shape(score, dir, head, labels)?;
    m.score.weight = crate::hf::param(score.transpose());
    if w.has(&format!("{head}.bias")) {
        let bias = w.take::<1>(&format!("{head}.bias"), [labels]);
        m.score.bias = Some(crate::hf::param(crate::open::head_shape(
            bias, dir, head, labels,
        )?));
    }
    w.finish()?;
    Ok((m, token))
}
