//! BERT checkpoints of Hugging Face `transformers` in: the `config.json` keys and the
//! weight-name table of `BertModel`, `BertForMaskedLM` (also `BertForPreTraining`, whose
//! next-sentence head is skipped), `BertForSequenceClassification` and
//! `BertForTokenClassification`. `nn.Linear` weights are `[out, in]` and transposed.

use std::path::Path;

use burn::nn::LayerNorm;
use burn::nn::LinearConfig;
use burn::prelude::*;
use serde_json::{Value, json};

use crate::bert::{
    BertForMaskedLm, BertForSequenceClassification, BertForTokenClassification, BertModel, MlmHead,
};
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

/// A `BertConfig` for `cfg`.
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
        "pad_token_id": cfg.pad_token_id,
    });
    if let Some(n) = cfg.num_labels {
        let labels: serde_json::Map<String, Value> = (0..n)
            .map(|i| (i.to_string(), json!(format!("LABEL_{i}"))))
            .collect();
        v["id2label"] = Value::Object(labels);
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
    w.finish()?;
    Ok(BertForMaskedLm { bert, head })
}

fn classifier(cfg: &ModelConfig, w: &mut Weights, device: &Device) -> Result<burn::nn::Linear> {
    let mut lin = LinearConfig::new(cfg.d_model, cfg.num_labels.unwrap_or(2)).init(device);
    unprefixed(w, |w| set_linear_t(&mut lin, w, "classifier", true))?;
    Ok(lin)
}

/// Loads a `BertForSequenceClassification` checkpoint (`num_labels` from `id2label`).
pub fn load_bert_sequence_classifier(
    dir: impl AsRef<Path>,
    device: &Device,
) -> Result<BertForSequenceClassification> {
    let (cfg, mut w) = open(dir.as_ref(), device)?;
    let mut model = BertForSequenceClassification::new(&cfg, device);
    load_body(&mut model.bert, &cfg, &mut w)?;
    model.classifier = classifier(&cfg, &mut w, device)?;
    w.finish()?;
    Ok(model)
}

/// Loads a `BertForTokenClassification` checkpoint (`num_labels` from `id2label`).
pub fn load_bert_token_classifier(
    dir: impl AsRef<Path>,
    device: &Device,
) -> Result<BertForTokenClassification> {
    let (cfg, mut w) = open(dir.as_ref(), device)?;
    let mut model = BertForTokenClassification::new(&cfg, device);
    model.bert = body(&cfg, &mut w, device)?;
    model.classifier = classifier(&cfg, &mut w, device)?;
    w.finish()?;
    Ok(model)
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
