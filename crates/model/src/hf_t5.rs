//! T5 checkpoints of Hugging Face `transformers`, in and out: the `config.json` keys and
//! the weight-name table of `T5ForConditionalGeneration` (v1.0 and v1.1 layouts), read by
//! [`load_t5`] and written back by [`export_t5_hf`].
//!
//! Tied or untied head: transformers 5 always declares `lm_head` tied to `shared`, keeps
//! the old meaning of `tie_word_embeddings` (scale the decoder output) as
//! `scale_decoder_outputs`, and unties the head when a checkpoint stores an
//! `lm_head.weight` that differs from `shared.weight`. The loader does the same.

use std::path::Path;

use burn::nn::{Linear, RmsNorm};
use burn::prelude::*;
use serde_json::{Value, json};

use crate::checkpoint::{Out, out, write_hf};
use crate::config::{Activation, Family, ModelConfig, NormKind, Positions, get, opt};
use crate::error::{ModelError, Result};
use crate::hf::{Weights, param, read_config, set_linear_t};
use crate::mlp::Mlp;
use crate::t5::{T5, T5Attention, T5Stack};

fn bad(key: &str, message: impl Into<String>) -> ModelError {
    ModelError::Config {
        key: key.into(),
        message: message.into(),
    }
}

/// A token id that some configs write as a list (the first one is taken).
fn token(v: &Value, key: &str) -> Result<Option<usize>> {
    match v.get(key) {
        Some(Value::Array(ids)) => match ids.first() {
            Some(first) => serde_json::from_value(first.clone())
                .map(Some)
                .map_err(|e| bad(key, e.to_string())),
            None => Ok(None),
        },
        _ => opt(v, key),
    }
}

/// A `T5Config` as a [`ModelConfig`].
pub(crate) fn config_from_hf(v: &Value) -> Result<ModelConfig> {
    let activation = match opt::<String>(v, "feed_forward_proj")?
        .as_deref()
        .unwrap_or("relu")
    {
        "relu" => Activation::Relu,
        "gelu" => Activation::Gelu,
        "gelu_new" => Activation::GeluTanh,
        // transformers maps "gated-gelu" to the tanh GELU (`gelu_new`).
        "gated-gelu" | "gated-gelu_new" => Activation::GegluTanh,
        "gated-silu" => Activation::Swiglu,
        other => {
            return Err(bad(
                "feed_forward_proj",
                format!(
                    "unsupported `{other}` (supported: relu, gelu, gelu_new, gated-gelu, gated-silu)"
                ),
            ));
        }
    };
    let n_layers = get(v, "num_layers")?;
    let tie = opt(v, "tie_word_embeddings")?.unwrap_or(true);
    let pad = token(v, "pad_token_id")?.unwrap_or(0);
    Ok(ModelConfig {
        vocab_size: get(v, "vocab_size")?,
        // T5 has no position table; `n_positions` is only a hint of the trained length.
        max_positions: opt(v, "n_positions")?.unwrap_or(512),
        d_model: get(v, "d_model")?,
        n_layers,
        n_heads: get(v, "num_heads")?,
        head_dim: Some(get(v, "d_kv")?),
        d_ff: get(v, "d_ff")?,
        positions: Positions::Relative,
        norm: NormKind::RmsNorm,
        norm_eps: opt(v, "layer_norm_epsilon")?.unwrap_or(1e-6),
        activation,
        tie_embeddings: tie,
        n_decoder_layers: Some(opt(v, "num_decoder_layers")?.unwrap_or(n_layers)),
        relative_attention_num_buckets: Some(
            opt(v, "relative_attention_num_buckets")?.unwrap_or(32),
        ),
        relative_attention_max_distance: Some(
            opt(v, "relative_attention_max_distance")?.unwrap_or(128),
        ),
        scale_decoder_outputs: Some(opt(v, "scale_decoder_outputs")?.unwrap_or(tie)),
        pad_token_id: Some(pad),
        eos_token_id: Some(token(v, "eos_token_id")?.unwrap_or(1)),
        decoder_start_token_id: Some(token(v, "decoder_start_token_id")?.unwrap_or(pad)),
        ..ModelConfig::empty(Family::T5)
    })
}

/// A `T5Config` for `cfg`.
pub(crate) fn config_to_hf(cfg: &ModelConfig) -> Value {
    json!({
        "model_type": "t5",
        "architectures": ["T5ForConditionalGeneration"],
        "is_encoder_decoder": true,
        "vocab_size": cfg.vocab_size,
        "n_positions": cfg.max_positions,
        "d_model": cfg.d_model,
        "d_kv": cfg.head_dim(),
        "d_ff": cfg.d_ff,
        "num_layers": cfg.n_layers,
        "num_decoder_layers": cfg.decoder_layers(),
        "num_heads": cfg.n_heads,
        "relative_attention_num_buckets": cfg.relative_buckets(),
        "relative_attention_max_distance": cfg.relative_max_distance(),
        "layer_norm_epsilon": cfg.norm_eps,
        "feed_forward_proj": match cfg.activation {
            Activation::Gelu => "gelu",
            Activation::GeluTanh => "gelu_new",
            Activation::GegluTanh => "gated-gelu",
            Activation::Swiglu => "gated-silu",
            Activation::Relu => "relu",
        },
        "tie_word_embeddings": cfg.tie_embeddings,
        "scale_decoder_outputs": cfg.scales_decoder_output(),
        "dropout_rate": 0.0,
        "bos_token_id": null,
        "pad_token_id": cfg.pad_token_id.unwrap_or(0),
        "eos_token_id": cfg.eos_token_id.unwrap_or(1),
        "decoder_start_token_id": cfg.decoder_start(),
        "dtype": "float32",
    })
}

fn set_rms(n: &mut RmsNorm, w: &mut Weights, name: &str, d: usize) -> Result<()> {
    n.gamma = param(w.take(&format!("{name}.weight"), [d])?);
    Ok(())
}

fn set_attention(a: &mut T5Attention, w: &mut Weights, name: &str) -> Result<()> {
    for (lin, n) in [
        (&mut a.q, "q"),
        (&mut a.k, "k"),
        (&mut a.v, "v"),
        (&mut a.o, "o"),
    ] {
        set_linear_t(lin, w, &format!("{name}.{n}"), false)?;
    }
    if let Some(table) = &mut a.relative_attention_bias {
        let shape = table.weight.dims();
        table.weight = param(w.take(&format!("{name}.relative_attention_bias.weight"), shape)?);
    }
    Ok(())
}

/// `DenseReluDense`: `wi` (v1.0) or `wi_0` and `wi_1` (gated, v1.1), then `wo`.
fn set_mlp(m: &mut Mlp, w: &mut Weights, name: &str) -> Result<()> {
    match &mut m.gate_proj {
        Some(gate) => {
            set_linear_t(gate, w, &format!("{name}.wi_0"), false)?;
            set_linear_t(&mut m.up_proj, w, &format!("{name}.wi_1"), false)?;
        }
        None => set_linear_t(&mut m.up_proj, w, &format!("{name}.wi"), false)?,
    }
    set_linear_t(&mut m.down_proj, w, &format!("{name}.wo"), false)
}

/// Loads a `T5ForConditionalGeneration` folder (`config.json` + `model.safetensors`).
pub fn load_t5(dir: impl AsRef<Path>, device: &Device) -> Result<T5> {
    let dir = dir.as_ref();
    let mut cfg = read_config(dir)?;
    if cfg.family != Family::T5 {
        return Err(ModelError::Config {
            key: format!("{}: model_type", dir.join("config.json").display()),
            message: format!("expected `t5`, found `{:?}`", cfg.family).to_lowercase(),
        });
    }
    let mut w = Weights::read(dir, device)?;
    w.check_fits(&cfg)?;
    if cfg.tie_embeddings && w.has("lm_head.weight") && !w.same("lm_head.weight", "shared.weight") {
        cfg.tie_embeddings = false;
    }
    let (d, v) = (cfg.d_model, cfg.vocab_size);
    let mut m = crate::init::skeleton(|| T5::new(&cfg, device));
    m.shared.weight = param(w.take("shared.weight", [v, d])?);
    // Copies of `shared` that some checkpoints keep.
    for copy in ["encoder.embed_tokens.weight", "decoder.embed_tokens.weight"] {
        if w.has(copy) {
            w.take::<2>(copy, [v, d])?;
        }
    }
    for (i, block) in m.encoder.layers.iter_mut().enumerate() {
        let p = format!("encoder.block.{i}.layer");
        set_attention(
            &mut block.self_attn,
            &mut w,
            &format!("{p}.0.SelfAttention"),
        )?;
        set_rms(
            &mut block.self_norm,
            &mut w,
            &format!("{p}.0.layer_norm"),
            d,
        )?;
        set_mlp(&mut block.mlp, &mut w, &format!("{p}.1.DenseReluDense"))?;
        set_rms(&mut block.mlp_norm, &mut w, &format!("{p}.1.layer_norm"), d)?;
    }
    set_rms(
        &mut m.encoder.final_norm,
        &mut w,
        "encoder.final_layer_norm",
        d,
    )?;
    for (i, block) in m.decoder.layers.iter_mut().enumerate() {
        let p = format!("decoder.block.{i}.layer");
        set_attention(
            &mut block.self_attn,
            &mut w,
            &format!("{p}.0.SelfAttention"),
        )?;
        set_rms(
            &mut block.self_norm,
            &mut w,
            &format!("{p}.0.layer_norm"),
            d,
        )?;
        if let (Some(attn), Some(norm)) = (&mut block.cross_attn, &mut block.cross_norm) {
            set_attention(attn, &mut w, &format!("{p}.1.EncDecAttention"))?;
            set_rms(norm, &mut w, &format!("{p}.1.layer_norm"), d)?;
        }
        set_mlp(&mut block.mlp, &mut w, &format!("{p}.2.DenseReluDense"))?;
        set_rms(&mut block.mlp_norm, &mut w, &format!("{p}.2.layer_norm"), d)?;
    }
    set_rms(
        &mut m.decoder.final_norm,
        &mut w,
        "decoder.final_layer_norm",
        d,
    )?;
    match &mut m.lm_head {
        Some(head) => set_linear_t(head, &mut w, "lm_head", false)?,
        // Equal to `shared` (checked above).
        None if w.has("lm_head.weight") => {
            w.take::<2>("lm_head.weight", [v, d])?;
        }
        None => {}
    }
    // transformers ignores this table too: cross-attention has no position bias.
    w.ignore(|k| k == "decoder.block.0.layer.1.EncDecAttention.relative_attention_bias.weight");
    w.finish()?;
    Ok(m)
}

// ---------------------------------------------------------------------------------------
// Out: the inverse of the table above.

/// A bias-free `nn.Linear` (`[out, in]`). T5 has no biases: a layer with one cannot be
/// written (`key` names the config option that gave it one).
fn weight_out(name: &str, l: &Linear, key: &str, into: &mut Vec<Out>) -> Result<()> {
    if l.bias.is_some() {
        return Err(bad(
            key,
            format!("`{name}` has a bias, which transformers' T5 has no place for"),
        ));
    }
    into.push(out(format!("{name}.weight"), l.weight.val().transpose())?);
    Ok(())
}

fn attention_out(a: &T5Attention, name: &str, into: &mut Vec<Out>) -> Result<()> {
    for (lin, n) in [(&a.q, "q"), (&a.k, "k"), (&a.v, "v"), (&a.o, "o")] {
        weight_out(&format!("{name}.{n}"), lin, "attention_bias", into)?;
    }
    if let Some(table) = &a.relative_attention_bias {
        // `[num_buckets, n_heads]`, nn.Embedding's layout too.
        into.push(out(
            format!("{name}.relative_attention_bias.weight"),
            table.weight.val(),
        )?);
    }
    Ok(())
}

fn mlp_out(m: &Mlp, name: &str, into: &mut Vec<Out>) -> Result<()> {
    match &m.gate_proj {
        Some(gate) => {
            weight_out(&format!("{name}.wi_0"), gate, "mlp_bias", into)?;
            weight_out(&format!("{name}.wi_1"), &m.up_proj, "mlp_bias", into)?;
        }
        None => weight_out(&format!("{name}.wi"), &m.up_proj, "mlp_bias", into)?,
    }
    weight_out(&format!("{name}.wo"), &m.down_proj, "mlp_bias", into)
}

/// One stack (`encoder` or `decoder`): `layer.0` self-attention, `layer.1`
/// cross-attention (decoder), then the feed-forward, each with its `layer_norm`.
fn stack_out(s: &T5Stack, name: &str, into: &mut Vec<Out>) -> Result<()> {
    for (i, block) in s.layers.iter().enumerate() {
        let p = format!("{name}.block.{i}.layer");
        attention_out(&block.self_attn, &format!("{p}.0.SelfAttention"), into)?;
        into.push(out(
            format!("{p}.0.layer_norm.weight"),
            block.self_norm.gamma.val(),
        )?);
        let mut ff = 1;
        if let (Some(attn), Some(norm)) = (&block.cross_attn, &block.cross_norm) {
            attention_out(attn, &format!("{p}.1.EncDecAttention"), into)?;
            into.push(out(format!("{p}.1.layer_norm.weight"), norm.gamma.val())?);
            ff = 2;
        }
        mlp_out(&block.mlp, &format!("{p}.{ff}.DenseReluDense"), into)?;
        into.push(out(
            format!("{p}.{ff}.layer_norm.weight"),
            block.mlp_norm.gamma.val(),
        )?);
    }
    into.push(out(
        format!("{name}.final_layer_norm.weight"),
        s.final_norm.gamma.val(),
    )?);
    Ok(())
}

/// Writes `config.json` + `model.safetensors` (+ `tokenizer.json` when given) in the
/// layout of `T5ForConditionalGeneration`, so that `transformers`
/// `AutoModelForSeq2SeqLM.from_pretrained(dir)` and [`load_t5`] load it.
///
/// Tensors are the inverse of the import table, byte for byte what transformers 5 saves:
/// `shared.weight` once (not its copies `encoder.embed_tokens.weight` and
/// `decoder.embed_tokens.weight`), and `lm_head.weight` only when the head is untied.
/// The config keeps both T5 flags apart: `tie_word_embeddings` says whether the head is
/// tied (`false` is what the Hub's v1.1 checkpoints say, and what older transformers
/// read), `scale_decoder_outputs` whether the decoder output is scaled by
/// `d_model^-0.5`; transformers 5 reads the second and unties the head because the
/// stored `lm_head.weight` differs from `shared.weight`.
///
/// Errors: a layer with a bias (from `attention_bias` / `mlp_bias`), which T5 cannot
/// hold, and files that cannot be written.
pub fn export_t5_hf(model: &T5, dir: impl AsRef<Path>, tokenizer: Option<&Path>) -> Result<()> {
    let mut cfg = model.config().clone();
    let mut t = vec![out("shared.weight", model.shared.weight.val())?];
    stack_out(&model.encoder, "encoder", &mut t)?;
    stack_out(&model.decoder, "decoder", &mut t)?;
    if let Some(head) = &model.lm_head {
        weight_out("lm_head", head, "tie_embeddings", &mut t)?;
    }
    // The scaling the model applies, written out rather than left to the default.
    cfg.scale_decoder_outputs = Some(cfg.scales_decoder_output());
    cfg.tie_embeddings = model.lm_head.is_none();
    write_hf(dir.as_ref(), &t, &config_to_hf(&cfg), tokenizer)
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: &str = r#""model_type": "t5", "vocab_size": 64, "d_model": 32, "d_kv": 8,
        "d_ff": 48, "num_layers": 2, "num_heads": 4"#;

    fn parse(extra: &str) -> Result<ModelConfig> {
        ModelConfig::from_hf_json(&format!("{{{BASE}{extra}}}"))
    }

    #[test]
    fn tie_and_scale_follow_transformers() {
        // T5 v1.0 on the Hub: tied and scaled.
        let c = parse("").unwrap();
        assert!(c.tie_embeddings && c.scales_decoder_output());
        assert_eq!(c.activation, Activation::Relu);
        // v1.1 on the Hub: untied, not scaled.
        let c =
            parse(r#", "tie_word_embeddings": false, "feed_forward_proj": "gated-gelu""#).unwrap();
        assert!(!c.tie_embeddings && !c.scales_decoder_output());
        assert_eq!(c.activation, Activation::GegluTanh);
        // Saved by transformers 5: declared tied, the old flag kept apart.
        let c = parse(r#", "tie_word_embeddings": true, "scale_decoder_outputs": false"#).unwrap();
        assert!(c.tie_embeddings && !c.scales_decoder_output());
    }

    #[test]
    fn tokens_layers_and_bad_values() {
        let c = parse(r#", "eos_token_id": [5, 6], "pad_token_id": 3"#).unwrap();
        assert_eq!((c.eos_token_id, c.decoder_start()), (Some(5), 3));
        assert_eq!((c.n_layers, c.decoder_layers()), (2, 2));
        assert_eq!(c.head_dim(), 8);
        let c = parse(r#", "num_decoder_layers": 3, "feed_forward_proj": "gated-silu""#).unwrap();
        assert_eq!((c.decoder_layers(), c.activation), (3, Activation::Swiglu));
        for (extra, key) in [
            (r#", "feed_forward_proj": "swish""#, "`feed_forward_proj`"),
            (
                r#", "relative_attention_max_distance": 8"#,
                "`relative_attention_max_distance`",
            ),
            (r#", "num_decoder_layers": 0"#, "`n_decoder_layers`"),
            (r#", "eos_token_id": "x""#, "`eos_token_id`"),
        ] {
            let err = parse(extra).unwrap_err().to_string();
            assert!(err.contains(key), "{extra}: {err}");
        }
        // Relative positions are T5's alone, and T5 needs them.
        let mut c = parse("").unwrap();
        c.positions = Positions::Rope;
        assert!(
            c.validate()
                .unwrap_err()
                .to_string()
                .contains("`positions`")
        );
        c.positions = Positions::Relative;
        c.family = Family::Llama;
        assert!(
            c.validate()
                .unwrap_err()
                .to_string()
                .contains("`positions`")
        );
    }
}
