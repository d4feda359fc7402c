//! Prefix tuning (Li & Liang 2021): learned keys and values before the input at every
//! layer of a frozen model ([`manabi_model::prefix::Prefix`]). Initialised as PEFT does
//! (embedding rows from N(0, 1); with `prefix_projection`, a two-layer tanh MLP over
//! `[n, kv_dim]` embeddings makes the rows while training). PEFT format both ways:
//! `prompt_embeddings` `[n, n_layers·2·kv_dim]` with `peft_type = PREFIX_TUNING`
//! (`token_dim` and `num_attention_heads` of the key/value heads, as PEFT writes them
//! for grouped-query models).

use std::path::Path;

use burn::module::{Module, Param};
use manabi_model::DecoderLm;
use manabi_model::prefix::Prefix;

use crate::error::{FinetuneError, Result};
use crate::peft::adapter_config::AdapterConfig;
use crate::peft::config::{Method, PeftConfig};
use crate::peft::prompt::{read_embeddings, write_embeddings};

/// Key/value width of one position of one layer, and the width of a prefix row.
fn widths(model: &DecoderLm) -> (usize, usize) {
    let cfg = model.config();
    let kv = cfg.kv_heads() * cfg.head_dim();
    (kv, cfg.n_layers * 2 * kv)
}

/// Freezes `model` and gives it a trainable prefix of `cfg.virtual_tokens` positions.
pub fn apply(model: DecoderLm, cfg: &PeftConfig) -> Result<DecoderLm> {
    let n = cfg.virtual_tokens;
    let (kv, row) = widths(&model);
    let device = model.embed_tokens.weight.device();
    let mut model = model.freeze();
    let embedding =
        |width: usize| Param::from_tensor(manabi_model::init::normal([n, width], 1.0, &device));
    model.prefix = Some(if cfg.prefix_projection {
        Prefix {
            embedding: embedding(kv),
            proj_in: Some(manabi_model::init::linear(
                kv,
                kv,
                true,
                manabi_model::init::STD,
                &device,
            )),
            proj_out: Some(manabi_model::init::linear(
                kv,
                row,
                true,
                manabi_model::init::STD,
                &device,
            )),
        }
    } else {
        Prefix {
            embedding: embedding(row),
            proj_in: None,
            proj_out: None,
        }
    });
    Ok(model)
}

/// Writes the prefix in the PEFT format (the projection's output, when it has one).
pub fn save_peft(model: &DecoderLm, dir: &Path) -> Result<()> {
    let prefix = model
        .prefix
        .as_ref()
        .ok_or_else(|| FinetuneError::io(dir, "the model has no prefix to export"))?;
    let rows = prefix.rows();
    let n = rows.dims()[0];
    let (kv, _) = widths(model);
    let cfg = model.config();
    let config = AdapterConfig {
        peft_type: Some("PREFIX_TUNING".into()),
        task_type: Some("CAUSAL_LM".into()),
        num_virtual_tokens: Some(n),
        token_dim: Some(kv),
        num_transformer_submodules: Some(1),
        num_attention_heads: Some(cfg.kv_heads()),
        num_layers: Some(cfg.n_layers),
        encoder_hidden_size: Some(kv),
        prefix_projection: Some(false),
        inference_mode: Some(true),
        base_model_name_or_path: Some(None),
        ..AdapterConfig::default()
    };
    write_embeddings(dir, &config, rows)
}

/// Loads a PEFT prefix-tuning adapter onto `model`.
pub fn load(
    model: DecoderLm,
    config: &AdapterConfig,
    dir: &Path,
) -> Result<(DecoderLm, PeftConfig)> {
    let (_, row) = widths(&model);
    let c = model.config();
    let why = format!(
        " ({} layers × 2 × {} key/value heads × {})",
        c.n_layers,
        c.kv_heads(),
        c.head_dim()
    );
    let device = model.embed_tokens.weight.device();
    let rows = read_embeddings(dir, config, row, &why, &device)?;
    let n = rows.dims()[0];
    let cfg = PeftConfig {
        method: Method::Prefix,
        virtual_tokens: n,
        prefix_projection: false,
        ..PeftConfig::default()
    };
    let mut model = model.freeze();
    model.prefix = Some(Prefix {
        embedding: Param::from_tensor(rows),
        proj_in: None,
        proj_out: None,
    });
    Ok((model, cfg))
}
