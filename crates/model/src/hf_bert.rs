//! BERT checkpoints of Hugging Face `transformers`, in and out: the `config.json` keys and
//! the weight-name table of `BertModel`, `BertForMaskedLM` (also `BertForPreTraining`,
//! whose next-sentence head is skipped), `BertForSequenceClassification` and
//! `BertForTokenClassification`, read by the `load_bert*` functions and written back by
//! [`export_bert_hf`]. `nn.Linear` weights are `[out, in]` and transposed both ways.

use std::path::Path;

use burn::nn::{LayerNorm, Linear, LinearConfig};
use burn::prelude::*;
use serde_json::{Value, json};

use crate::bert::{
    BertForMaskedLm, BertForSequenceClassification, BertForTokenClassification, BertModel, MlmHead,
};
use crate::checkpoint::{Out, out, write_hf};
use crate::config::{Activation, Family, ModelConfig, NormKind, Positions, get, opt};
use crate::error::{ModelError, Result};
use crate::hf::{Weights, param, read_config, set_linear_t};

fn bad(key: &str, message: impl Into<String>) -> ModelError {
    ModelError::Config {
        key: key.into(),
        message: message.into(),
    }
}

/// A `BertConfig` as a [`ModelConfig`].
pub(crate) fn config_from_hf(v: &Value) -> Result<ModelConfig> {
    if opt::<bool>(v, "is_decoder")? == Some(true) {
        return Err(bad("is_decoder", "causal BERT is not supported"));
    }
    if opt::<bool>(v, "add_cross_attention")? == Some(true) {
        return Err(bad(
            "add_cross_attention",
            "BERT as a decoder is not supported",
        ));
    }
    match opt::<String>(v, "position_embedding_type")?.as_deref() {
        None | Some("absolute") => {}
        Some(other) => {
            return Err(bad(
                "position_embedding_type",
                format!("unsupported `{other}` (supported: absolute)"),
            ));
        }
    }
    let activation = match opt::<String>(v, "hidden_act")?.as_deref().unwrap_or("gelu") {
        "gelu" => Activation::Gelu,
        "gelu_new" | "gelu_pytorch_tanh" | "gelu_fast" => Activation::GeluTanh,
        "relu" => Activation::Relu,
        other => {
            return Err(bad(
                "hidden_act",
                format!("unsupported `{other}` (supported: gelu, gelu_new, relu)"),
            ));
        }
    };
    // transformers writes the labels as `id2label`; `num_labels` is the constructor's key.
    let num_labels = match v.get("id2label").and_then(Value::as_object) {
        Some(labels) => Some(labels.len()),
        None => opt(v, "num_labels")?,
    };
    Ok(ModelConfig {
        vocab_size: get(v, "vocab_size")?,
        max_positions: get(v, "max_position_embeddings")?,
        d_model: get(v, "hidden_size")?,
        n_layers: get(v, "num_hidden_layers")?,
        n_heads: get(v, "num_attention_heads")?,
        d_ff: get(v, "intermediate_size")?,
        positions: Positions::Learned,
        norm: NormKind::LayerNorm,
        norm_eps: opt(v, "layer_norm_eps")?.unwrap_or(1e-12),
        activation,
        attention_bias: true,
        mlp_bias: true,
        tie_embeddings: opt(v, "tie_word_embeddings")?.unwrap_or(true),
        type_vocab_size: Some(opt(v, "type_vocab_size")?.unwrap_or(2)),
        num_labels,
        pad_token_id: opt(v, "pad_token_id")?,
        ..ModelConfig::empty(Family::Bert)
    })
}

/// A `BertConfig` for `cfg` (`architectures` says `BertForMaskedLM`; [`export_bert_hf`]
/// replaces it with the class of the model it writes).
pub(crate) fn config_to_hf(cfg: &ModelConfig) -> Value {
    let mut v = json!({
        "model_type": "bert",
        "architectures": ["BertForMaskedLM"],
        "vocab_size": cfg.vocab_size,
        "max_position_embeddings": cfg.max_positions,
        "hidden_size": cfg.d_model,
        "num_hidden_layers": cfg.n_layers,
        "num_attention_heads": cfg.n_heads,
        "intermediate_size": cfg.d_ff,
        "type_vocab_size": cfg.type_vocab_size.unwrap_or(2),
        "layer_norm_eps": cfg.norm_eps,
        "hidden_act": match cfg.activation {
            Activation::GeluTanh => "gelu_new",
            Activation::Relu => "relu",
            _ => "gelu",
        },
        "position_embedding_type": "absolute",
        "tie_word_embeddings": cfg.tie_embeddings,
        "hidden_dropout_prob": 0.0,
        "attention_probs_dropout_prob": 0.0,
        "bos_token_id": null,
        "eos_token_id": cfg.eos_token_id,
        "pad_token_id": cfg.pad_token_id,
        "dtype": "float32",
    });
    if let Some(n) = cfg.num_labels {
        // transformers derives `num_labels` from `id2label`, not `label2id` from it.
        let id2label: serde_json::Map<String, Value> = (0..n)
            .map(|i| (i.to_string(), json!(format!("LABEL_{i}"))))
            .collect();
        let label2id: serde_json::Map<String, Value> =
            (0..n).map(|i| (format!("LABEL_{i}"), json!(i))).collect();
        v["id2label"] = Value::Object(id2label);
        v["label2id"] = Value::Object(label2id);
    }
    v
}

/// The config and weights of a BERT folder, with the `bert.` prefix detected.
fn open(dir: &Path, device: &Device) -> Result<(ModelConfig, Weights)> {
    let cfg = read_config(dir)?;
    if cfg.family != Family::Bert {
        return Err(ModelError::Config {
            key: format!("{}: model_type", dir.join("config.json").display()),
            message: format!("expected `bert`, found `{:?}`", cfg.family).to_lowercase(),
        });
    }
    let mut w = Weights::read(dir, device)?;
    w.check_fits(&cfg)?;
    if w.has("bert.embeddings.word_embeddings.weight") {
        w.prefix = "bert.".into();
    }
    // A buffer of old checkpoints (0..max_positions), and the next-sentence head of
    // `BertForPreTraining`, which no model here has.
    w.ignore(|k| k.ends_with("embeddings.position_ids") || k.starts_with("cls.seq_relationship."));
    Ok((cfg, w))
}

fn set_layer_norm(n: &mut LayerNorm, w: &mut Weights, name: &str, d: usize) -> Result<()> {
    n.gamma = param(w.take(&format!("{name}.weight"), [d])?);
    n.beta = Some(param(w.take(&format!("{name}.bias"), [d])?));
    Ok(())
}

/// Embeddings, blocks and (when the model has one) the pooler, under `w.prefix`.
fn load_body(m: &mut BertModel, cfg: &ModelConfig, w: &mut Weights) -> Result<()> {
    let (d, v) = (cfg.d_model, cfg.vocab_size);
    let e = &mut m.embeddings;
    e.word.weight = param(w.take("embeddings.word_embeddings.weight", [v, d])?);
    e.position.weight = param(w.take(
        "embeddings.position_embeddings.weight",
        [cfg.max_positions, d],
    )?);
    let types = cfg.type_vocab_size.unwrap_or(2);
    e.token_type.weight = param(w.take("embeddings.token_type_embeddings.weight", [types, d])?);
    set_layer_norm(&mut e.norm, w, "embeddings.LayerNorm", d)?;
    for (i, layer) in m.layers.iter_mut().enumerate() {
        let p = format!("encoder.layer.{i}");
        let a = &mut layer.attn;
        set_linear_t(&mut a.q_proj, w, &format!("{p}.attention.self.query"), true)?;
        set_linear_t(&mut a.k_proj, w, &format!("{p}.attention.self.key"), true)?;
        set_linear_t(&mut a.v_proj, w, &format!("{p}.attention.self.value"), true)?;
        set_linear_t(
            &mut a.o_proj,
            w,
            &format!("{p}.attention.output.dense"),
            true,
        )?;
        set_layer_norm(
            &mut layer.attn_norm,
            w,
            &format!("{p}.attention.output.LayerNorm"),
            d,
        )?;
        set_linear_t(
            &mut layer.mlp.up_proj,
            w,
            &format!("{p}.intermediate.dense"),
            true,
        )?;
        set_linear_t(
            &mut layer.mlp.down_proj,
            w,
            &format!("{p}.output.dense"),
            true,
        )?;
        set_layer_norm(&mut layer.mlp_norm, w, &format!("{p}.output.LayerNorm"), d)?;
    }
    if let Some(pooler) = &mut m.pooler {
        set_linear_t(pooler, w, "pooler.dense", true)?;
    }
    Ok(())
}

/// The encoder with a pooler when the checkpoint has one.
fn body(cfg: &ModelConfig, w: &mut Weights, device: &Device) -> Result<BertModel> {
    let pooler = w.has("pooler.dense.weight");
    let mut m = BertModel::new(cfg, pooler, device);
    load_body(&mut m, cfg, w)?;
    Ok(m)
}

/// Head tensors are not prefixed with `bert.`: reads them with the prefix cleared.
fn unprefixed<T>(w: &mut Weights, f: impl FnOnce(&mut Weights) -> Result<T>) -> Result<T> {
    let prefix = std::mem::take(&mut w.prefix);
    let out = f(w);
    w.prefix = prefix;
    out
}

/// Loads the encoder of any BERT checkpoint (`BertModel` or one with a head), with its
/// pooler when the checkpoint has one; task heads are skipped.
pub fn load_bert(dir: impl AsRef<Path>, device: &Device) -> Result<BertModel> {
    let (cfg, mut w) = open(dir.as_ref(), device)?;
    let m = body(&cfg, &mut w, device)?;
    w.ignore(|k| k.starts_with("cls.") || k.starts_with("classifier."));
    w.finish()?;
    Ok(m)
}

/// Loads a `BertForMaskedLM` (or `BertForPreTraining`) checkpoint.
pub fn load_bert_masked_lm(dir: impl AsRef<Path>, device: &Device) -> Result<BertForMaskedLm> {
    let (cfg, mut w) = open(dir.as_ref(), device)?;
    let bert = body(&cfg, &mut w, device)?;
    let (d, v) = (cfg.d_model, cfg.vocab_size);
    let mut head = MlmHead::new(&cfg, device);
    unprefixed(&mut w, |w| {
        let p = "cls.predictions";
        set_linear_t(&mut head.dense, w, &format!("{p}.transform.dense"), true)?;
        set_layer_norm(&mut head.norm, w, &format!("{p}.transform.LayerNorm"), d)?;
        head.bias = param(w.take(&format!("{p}.bias"), [v])?);
        match &mut head.decoder {
            Some(dec) => set_linear_t(dec, w, &format!("{p}.decoder"), false)?,
            // A tied decoder stored anyway must at least have the right shape.
            None if w.has(&format!("{p}.decoder.weight")) => {
                w.take::<2>(&format!("{p}.decoder.weight"), [v, d])?;
            }
            None => {}
        }
        // Older checkpoints repeat the output bias as the decoder's.
        if w.has(&format!("{p}.decoder.bias")) {
            w.take::<1>(&format!("{p}.decoder.bias"), [v])?;
        }
        Ok(())
    })?;
    // `BertForPreTraining` also has the next-sentence head, which no manabi stage uses.
    w.ignore(|k| k.starts_with("cls.seq_relationship."));
    w.finish()?;
    Ok(BertForMaskedLm { bert, head })
}

/// The `classifier` head: as many outputs as `config.json` names labels; a head of
/// another size is an error naming the config key (`id2label`), not the tensor.
fn classifier(
    dir: &Path,
    cfg: &ModelConfig,
    w: &mut Weights,
    device: &Device,
) -> Result<burn::nn::Linear> {
    let labels = cfg.num_labels.unwrap_or(2);
    let mut lin = LinearConfig::new(cfg.d_model, labels).init(device);
    let read = unprefixed(w, |w| set_linear_t(&mut lin, w, "classifier", true));
    crate::open::head_shape(read, dir, "classifier", labels)?;
    Ok(lin)
}

/// Loads a `BertForSequenceClassification` checkpoint (`num_labels` from `id2label`).
pub fn load_bert_sequence_classifier(
    dir: impl AsRef<Path>,
    device: &Device,
) -> Result<BertForSequenceClassification> {
    let dir = dir.as_ref();
    let (cfg, mut w) = open(dir, device)?;
    let mut model = BertForSequenceClassification::new(&cfg, device);
    load_body(&mut model.bert, &cfg, &mut w)?;
    model.classifier = classifier(dir, &cfg, &mut w, device)?;
    w.finish()?;
    Ok(model)
}

/// Loads a `BertForTokenClassification` checkpoint (`num_labels` from `id2label`).
pub fn load_bert_token_classifier(
    dir: impl AsRef<Path>,
    device: &Device,
) -> Result<BertForTokenClassification> {
    let dir = dir.as_ref();
    let (cfg, mut w) = open(dir, device)?;
    let mut model = BertForTokenClassification::new(&cfg, device);
    model.bert = body(&cfg, &mut w, device)?;
    model.classifier = classifier(dir, &cfg, &mut w, device)?;
    w.finish()?;
    Ok(model)
}

// ---------------------------------------------------------------------------------------
// Out: the inverse of the table above.

/// A BERT model together with its head, as [`export_bert_hf`] takes it. Each of the four
/// BERT types converts into it, so `export_bert_hf(&model, ..)` accepts any of them.
#[derive(Debug, Clone, Copy)]
pub enum BertRef<'a> {
    /// `BertModel`: tensors named without the `bert.` prefix, as `BertModel.save_pretrained`
    /// names them.
    Base(&'a BertModel),
    /// `BertForMaskedLM`.
    MaskedLm(&'a BertForMaskedLm),
    /// `BertForSequenceClassification`.
    SequenceClassification(&'a BertForSequenceClassification),
    /// `BertForTokenClassification`.
    TokenClassification(&'a BertForTokenClassification),
}

impl<'a> From<&'a BertModel> for BertRef<'a> {
    fn from(m: &'a BertModel) -> Self {
        Self::Base(m)
    }
}

impl<'a> From<&'a BertForMaskedLm> for BertRef<'a> {
    fn from(m: &'a BertForMaskedLm) -> Self {
        Self::MaskedLm(m)
    }
}

impl<'a> From<&'a BertForSequenceClassification> for BertRef<'a> {
    fn from(m: &'a BertForSequenceClassification) -> Self {
        Self::SequenceClassification(m)
    }
}

impl<'a> From<&'a BertForTokenClassification> for BertRef<'a> {
    fn from(m: &'a BertForTokenClassification) -> Self {
        Self::TokenClassification(m)
    }
}

impl BertRef<'_> {
    /// The encoder.
    pub fn encoder(&self) -> &BertModel {
        match self {
            Self::Base(m) => m,
            Self::MaskedLm(m) => &m.bert,
            Self::SequenceClassification(m) => &m.bert,
            Self::TokenClassification(m) => &m.bert,
        }
    }

    /// The `transformers` class: `architectures` in `config.json`.
    pub fn architecture(&self) -> &'static str {
        match self {
            Self::Base(_) => "BertModel",
            Self::MaskedLm(_) => "BertForMaskedLM",
            Self::SequenceClassification(_) => "BertForSequenceClassification",
            Self::TokenClassification(_) => "BertForTokenClassification",
        }
    }
}

/// What `transformers`' BERT cannot express: a gated feed-forward, grouped-query
/// attention, or heads that do not split `hidden_size` evenly.
fn check_exportable(cfg: &ModelConfig) -> Result<()> {
    let hint = "transformers' BertModel cannot hold it; export is not possible";
    if matches!(cfg.activation, Activation::Swiglu | Activation::GegluTanh) {
        return Err(bad(
            "activation",
            format!("a gated feed-forward ({:?}): {hint}", cfg.activation).to_lowercase(),
        ));
    }
    if cfg.kv_heads() != cfg.n_heads {
        return Err(bad(
            "n_kv_heads",
            format!(
                "{} key/value heads for {} query heads: {hint}",
                cfg.kv_heads(),
                cfg.n_heads
            ),
        ));
    }
    if cfg.n_heads * cfg.head_dim() != cfg.d_model {
        return Err(bad(
            "head_dim",
            format!(
                "{} heads × {} ≠ d_model = {}: {hint}",
                cfg.n_heads,
                cfg.head_dim(),
                cfg.d_model
            ),
        ));
    }
    Ok(())
}

/// An `nn.Linear` with bias (`[out, in]`). transformers' BERT has a bias on every
/// projection: a layer without one is written with zeros, which computes the same.
fn dense(name: &str, l: &Linear, into: &mut Vec<Out>) -> Result<()> {
    let w = l.weight.val(); // [in, out]
    let o = w.dims()[1];
    let b = match &l.bias {
        Some(b) => b.val(),
        None => Tensor::zeros([o], &w.device()),
    };
    into.push(out(format!("{name}.weight"), w.transpose())?);
    into.push(out(format!("{name}.bias"), b)?);
    Ok(())
}

/// `nn.LayerNorm` (a norm without bias is written with a zero one).
fn layer_norm_out(name: &str, n: &LayerNorm, into: &mut Vec<Out>) -> Result<()> {
    let g = n.gamma.val();
    let b = match &n.beta {
        Some(b) => b.val(),
        None => g.zeros_like(),
    };
    into.push(out(format!("{name}.weight"), g)?);
    into.push(out(format!("{name}.bias"), b)?);
    Ok(())
}

/// Embeddings, blocks and pooler under `prefix` (`bert.` or nothing).
fn body_out(m: &BertModel, prefix: &str, into: &mut Vec<Out>) -> Result<()> {
    let e = &m.embeddings;
    let p = format!("{prefix}embeddings");
    into.push(out(
        format!("{p}.word_embeddings.weight"),
        e.word.weight.val(),
    )?);
    into.push(out(
        format!("{p}.position_embeddings.weight"),
        e.position.weight.val(),
    )?);
    into.push(out(
        format!("{p}.token_type_embeddings.weight"),
        e.token_type.weight.val(),
    )?);
    layer_norm_out(&format!("{p}.LayerNorm"), &e.norm, into)?;
    for (i, layer) in m.layers.iter().enumerate() {
        let p = format!("{prefix}encoder.layer.{i}");
        let a = &layer.attn;
        dense(&format!("{p}.attention.self.query"), &a.q_proj, into)?;
        dense(&format!("{p}.attention.self.key"), &a.k_proj, into)?;
        dense(&format!("{p}.attention.self.value"), &a.v_proj, into)?;
        dense(&format!("{p}.attention.output.dense"), &a.o_proj, into)?;
        layer_norm_out(
            &format!("{p}.attention.output.LayerNorm"),
            &layer.attn_norm,
            into,
        )?;
        dense(&format!("{p}.intermediate.dense"), &layer.mlp.up_proj, into)?;
        dense(&format!("{p}.output.dense"), &layer.mlp.down_proj, into)?;
        layer_norm_out(&format!("{p}.output.LayerNorm"), &layer.mlp_norm, into)?;
    }
    if let Some(pooler) = &m.pooler {
        dense(&format!("{prefix}pooler.dense"), pooler, into)?;
    }
    Ok(())
}

/// `cls.predictions`. Tied, transformers saves neither `decoder.weight` (the word
/// embeddings) nor `decoder.bias` (the output bias). Untied, it ties nothing
/// (`tie_word_embeddings: false`), so both are written, the bias twice as transformers
/// keeps it: `cls.predictions.bias` and `cls.predictions.decoder.bias`.
fn mlm_head_out(head: &MlmHead, into: &mut Vec<Out>) -> Result<()> {
    let p = "cls.predictions";
    dense(&format!("{p}.transform.dense"), &head.dense, into)?;
    layer_norm_out(&format!("{p}.transform.LayerNorm"), &head.norm, into)?;
    let mut bias = head.bias.val();
    if let Some(dec) = &head.decoder {
        // A decoder bias of our own adds to the output bias: fold the two into one.
        if let Some(b) = &dec.bias {
            bias = bias + b.val();
        }
        into.push(out(
            format!("{p}.decoder.weight"),
            dec.weight.val().transpose(),
        )?);
        into.push(out(format!("{p}.decoder.bias"), bias.clone())?);
    }
    into.push(out(format!("{p}.bias"), bias)?);
    Ok(())
}

/// Writes `config.json` + `model.safetensors` (+ `tokenizer.json` when given) in the
/// layout `transformers` saves for the model's class, so that `AutoModel`,
/// `AutoModelForMaskedLM`, `AutoModelForSequenceClassification` or
/// `AutoModelForTokenClassification` `.from_pretrained(dir)` loads it, and so do
/// [`load_bert`] and the other loaders here.
///
/// Tensors are the inverse of the import table, byte for byte what transformers 5 saves:
/// `bert.` prefix except for a bare `BertModel`; no `position_ids` buffer; no tied
/// decoder. `architectures` names the head; classifiers get `id2label` / `label2id`
/// (`LABEL_i`: the names themselves are not kept) from the classifier's width;
/// `tie_word_embeddings` says whether the masked-LM decoder is tied.
///
/// Notes: a `BertModel` without pooler (the encoder of a masked-LM checkpoint) loads in
/// transformers as `BertModel.from_pretrained(dir, add_pooling_layer=False)`, otherwise
/// it gets a randomly initialised pooler. A masked-LM or token classifier that does
/// have a pooler keeps it in the file (transformers ignores it as unexpected).
///
/// Errors: a configuration transformers' BERT cannot hold (gated feed-forward,
/// grouped-query attention, `n_heads × head_dim ≠ d_model`), and files that cannot be
/// written.
pub fn export_bert_hf<'a>(
    model: impl Into<BertRef<'a>>,
    dir: impl AsRef<Path>,
    tokenizer: Option<&Path>,
) -> Result<()> {
    let model = model.into();
    let mut cfg = model.encoder().config().clone();
    check_exportable(&cfg)?;
    let mut t = Vec::new();
    let prefix = match model {
        BertRef::Base(_) => "",
        _ => "bert.",
    };
    body_out(model.encoder(), prefix, &mut t)?;
    match model {
        BertRef::Base(_) => {}
        BertRef::MaskedLm(m) => {
            mlm_head_out(&m.head, &mut t)?;
            cfg.tie_embeddings = m.head.decoder.is_none();
        }
        BertRef::SequenceClassification(BertForSequenceClassification { classifier, .. })
        | BertRef::TokenClassification(BertForTokenClassification { classifier, .. }) => {
            dense("classifier", classifier, &mut t)?;
            cfg.num_labels = Some(classifier.weight.dims()[1]);
        }
    }
    let mut json = config_to_hf(&cfg);
    json["architectures"] = json!([model.architecture()]);
    write_hf(dir.as_ref(), &t, &json, tokenizer)
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: &str = r#""model_type": "bert", "vocab_size": 64, "hidden_size": 32,
        "num_hidden_layers": 2, "num_attention_heads": 4, "intermediate_size": 48,
        "max_position_embeddings": 16"#;

    fn parse(extra: &str) -> Result<ModelConfig> {
        ModelConfig::from_hf_json(&format!("{{{BASE}{extra}}}"))
    }

    #[test]
    fn defaults_labels_and_bad_values() {
        let c = parse("").unwrap();
        assert_eq!(c.activation, Activation::Gelu);
        assert_eq!((c.type_vocab_size, c.num_labels), (Some(2), None));
        assert!(c.tie_embeddings && c.attention_bias && c.mlp_bias);
        assert_eq!(c.norm_eps, 1e-12);
        let c = parse(r#", "id2label": {"0": "O", "1": "B-PER", "2": "I-PER"}"#).unwrap();
        assert_eq!(c.num_labels, Some(3));
        let c = parse(r#", "num_labels": 4, "hidden_act": "gelu_new""#).unwrap();
        assert_eq!(
            (c.num_labels, c.activation),
            (Some(4), Activation::GeluTanh)
        );
        for (extra, key) in [
            (r#", "is_decoder": true"#, "`is_decoder`"),
            (r#", "hidden_act": "mish""#, "`hidden_act`"),
            (r#", "type_vocab_size": 0"#, "`type_vocab_size`"),
            (r#", "num_attention_heads": 5"#, "`n_heads`"),
        ] {
            let err = parse(extra).unwrap_err().to_string();
            assert!(err.contains(key), "{extra}: {err}");
        }
        let mut c = parse("").unwrap();
        c.norm = NormKind::RmsNorm;
        assert!(
            c.validate()
                .unwrap_err()
                .to_string()
                .contains("`positions`")
        );
    }
}
