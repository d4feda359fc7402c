//! Prompt tuning (Lester et al. 2021): `n` trainable vectors prepended to the input
//! embeddings of a frozen model (`DecoderLm::soft_prompt`). Initialised from the
//! embeddings of `n` vocabulary tokens spread over the table (PEFT's sampled-vocabulary
//! start), or of a text's tokens (`peft.prompt_init_text`, PEFT's `TEXT` start). PEFT
//! format both ways: `prompt_embeddings` `[n, d_model]` with `peft_type = PROMPT_TUNING`.

use std::path::Path;

use burn::module::{Module, Param};
use burn::prelude::*;
use burn::tensor::TensorData;
use manabi_model::DecoderLm;

use crate::error::{FinetuneError, Result};
use crate::peft::adapter_config::AdapterConfig;
use crate::peft::config::{Method, PeftConfig};
use crate::peft::lora::{read_f32, write_safetensors};

/// Freezes `model` and gives it a trainable soft prompt of `cfg.virtual_tokens` vectors,
/// started from vocabulary rows spread over the table.
pub fn apply(model: DecoderLm, cfg: &PeftConfig) -> Result<DecoderLm> {
    let vocab = model.config().vocab_size;
    // Rows spread over the vocabulary by a stride coprime with common vocabulary sizes.
    let rows: Vec<u32> = (0..cfg.virtual_tokens)
        .map(|k| ((k * 7919 + 13) % vocab) as u32)
        .collect();
    apply_from_tokens(model, cfg, &rows)
}

/// [`apply`] with the soft prompt started from the embeddings of `tokens`, repeated or cut
/// to `cfg.virtual_tokens` (as PEFT does for a `TEXT` start). Ids must be in the vocabulary.
pub fn apply_from_tokens(model: DecoderLm, cfg: &PeftConfig, tokens: &[u32]) -> Result<DecoderLm> {
    let vocab = model.config().vocab_size;
    if let Some(&bad) = tokens.iter().find(|&&t| t as usize >= vocab) {
        return Err(FinetuneError::config(
            "peft.prompt_init_text",
            format!(
                "token id {bad} is outside the model's {vocab} embeddings (another tokenizer?)"
            ),
        ));
    }
    let rows: Vec<i64> = tokens
        .iter()
        .cycle()
        .take(cfg.virtual_tokens)
        .map(|&t| t as i64)
        .collect();
    let table = model.embed_tokens.weight.val(); // [vocab, d]
    let device = table.device();
    let init = table.select(0, Tensor::<1, Int>::from_ints(rows.as_slice(), &device));
    let mut model = model.freeze();
    model.soft_prompt = Some(Param::from_tensor(init.detach()));
    Ok(model)
}

/// Writes the soft prompt in the PEFT format.
pub fn save_peft(model: &DecoderLm, dir: &Path) -> Result<()> {
    let p = model
        .soft_prompt
        .as_ref()
        .ok_or_else(|| FinetuneError::io(dir, "the model has no soft prompt to export"))?
        .val();
    let [n, d] = p.dims();
    let cfg = model.config();
    let config = AdapterConfig {
        peft_type: Some("PROMPT_TUNING".into()),
        task_type: Some("CAUSAL_LM".into()),
        num_virtual_tokens: Some(n),
        token_dim: Some(d),
        num_transformer_submodules: Some(1),
        num_attention_heads: Some(cfg.n_heads),
        num_layers: Some(cfg.n_layers),
        // The trained vectors are the adapter; how they started does not matter to a
        // loader (a `TEXT` start would make PEFT ask for `tokenizer_name_or_path`).
        prompt_tuning_init: Some("RANDOM".into()),
        inference_mode: Some(true),
        base_model_name_or_path: Some(None),
        ..AdapterConfig::default()
    };
    write_embeddings(dir, &config, p)
}

/// Writes a prompt-learning adapter (prompt or prefix tuning) in the PEFT format:
/// `config` as `adapter_config.json`, `rows` as `prompt_embeddings`.
pub(crate) fn write_embeddings(dir: &Path, config: &AdapterConfig, rows: Tensor<2>) -> Result<()> {
    let [n, width] = rows.dims();
    config.write(dir)?;
    let v: Vec<f32> = rows
        .into_data()
        .convert::<f32>()
        .try_into_vec()
        .unwrap_or_default();
    write_safetensors(
        &dir.join("adapter_model.safetensors"),
        &[("prompt_embeddings".to_string(), vec![n, width], v)],
    )
}

/// Reads `prompt_embeddings` of a prompt-learning adapter in `dir`, which must be
/// `[num_virtual_tokens, width]` for this base (`why` explains the width in the error).
pub(crate) fn read_embeddings(
    dir: &Path,
    config: &AdapterConfig,
    width: usize,
    why: &str,
    device: &Device,
) -> Result<Tensor<2>> {
    let path = dir.join("adapter_model.safetensors");
    let mut t = read_f32(&path)?;
    let (shape, values) = t
        .remove("prompt_embeddings")
        .ok_or_else(|| FinetuneError::Adapter {
            path: path.clone(),
            message: "missing tensor `prompt_embeddings`".into(),
        })?;
    let n = config
        .num_virtual_tokens
        .unwrap_or_else(|| shape.first().copied().unwrap_or(0));
    if shape != [n, width] {
        return Err(FinetuneError::Adapter {
            path,
            message: format!(
                "tensor `prompt_embeddings` has shape {shape:?}, this base needs [{n}, {width}]{why} (an adapter for another base model?)"
            ),
        });
    }
    Ok(Tensor::from_data(
        TensorData::new(values, [n, width]),
        device,
    ))
}

/// Loads a PEFT prompt-tuning adapter onto `model`.
pub fn load(
    model: DecoderLm,
    config: &AdapterConfig,
    dir: &Path,
) -> Result<(DecoderLm, PeftConfig)> {
    let d = model.config().d_model;
    let device = model.embed_tokens.weight.device();
    let rows = read_embeddings(dir, config, d, "", &device)?;
    let n = rows.dims()[0];
    let cfg = PeftConfig {
        method: Method::Prompt,
        virtual_tokens: n,
        ..PeftConfig::default()
    };
    let mut model = model.freeze();
    model.soft_prompt = Some(Param::from_tensor(rows));
    Ok((model, cfg))
}
