//! Parameter-efficient fine-tuning: which parameters of a decoder train. `[peft]` of a
//! recipe picks the method; it is saved as `peft.toml` in every checkpoint so loading,
//! `--resume`, `generate`, `eval` and `export` rebuild the adapted model.
//!
//! - `full`: every parameter trains.
//! - `lora` (Hu et al. 2021; rsLoRA, Kalajdzievski 2023; DoRA, Liu et al. 2024): burn's
//!   LoRA adapter (or a DoRA reparameterization) on the target modules named as in
//!   Hugging Face (`q_proj`, `c_attn`, …), chosen and sized as PEFT does (per-module
//!   `rank_pattern` / `alpha_pattern`, `layers_to_transform`); PEFT format in and out
//!   ([`lora`]).
//! - `bitfit` (Ben Zaken et al. 2022): biases only.
//! - `ia3` (Liu et al. 2022): learned rescaling of activations ([`ia3`]), PEFT format.
//! - `prompt` (Lester et al. 2021): a soft prompt ([`prompt`]), PEFT format.
//! - `prefix` (Li & Liang 2021): learned keys and values at every layer ([`prefix`]),
//!   optionally made by an MLP while training; PEFT format.
//! - `houlsby` / `pfeiffer` bottleneck adapters (Houlsby et al. 2019; Pfeiffer et al.
//!   2021): after attention and MLP, or after the MLP only.

pub mod adapter_config;
pub mod config;
pub mod ia3;
pub mod lora;
mod patterns;
pub mod prefix;
pub mod prompt;

pub use adapter_config::{ADAPTER_CONFIG, AdapterConfig};
pub use config::{Method, PEFT_FILE, Patterns, PeftConfig};

use burn::module::{Module, ParamGroup, ParamId};
use manabi_model::DecoderLm;

use crate::error::{FinetuneError, Result};

/// Adapts `model` (on the training device) for `cfg`: afterwards only the method's
/// parameters require gradients.
pub fn apply(model: DecoderLm, cfg: &PeftConfig) -> Result<DecoderLm> {
    cfg.validate()?;
    match cfg.method {
        Method::Full => Ok(model),
        Method::Lora => lora::apply(model, cfg),
        Method::Ia3 => ia3::apply(model, cfg),
        Method::Prompt => prompt::apply(model, cfg),
        Method::Prefix => prefix::apply(model, cfg),
        Method::Bitfit => {
            let ids = bias_ids(&model);
            if ids.is_empty() {
                return Err(FinetuneError::config(
                    "peft.method",
                    "bitfit trains biases, and this model has none (LLaMA without attention_bias/mlp_bias); choose lora or houlsby",
                ));
            }
            Ok(model.freeze().unfreeze_group(ParamGroup::from_ids(ids)))
        }
        Method::Houlsby | Method::Pfeiffer => {
            let device = model.embed_tokens.weight.device();
            let d = model.config().d_model;
            let mut model = model.freeze();
            let mut ids = Vec::new();
            let mut new_adapter = || {
                let a = manabi_model::adapter::Adapter::new(d, cfg.adapter_size, &device);
                ids.extend([a.down.weight.id, a.up.weight.id]);
                ids.extend(a.down.bias.iter().chain(&a.up.bias).map(|b| b.id));
                a
            };
            for block in &mut model.layers {
                if cfg.method == Method::Houlsby {
                    block.attn_adapter = Some(new_adapter());
                }
                block.mlp_adapter = Some(new_adapter());
            }
            Ok(model.unfreeze_group(ParamGroup::from_ids(ids)))
        }
    }
}

/// Writes the adapter of `model` in the PEFT format (LoRA, IA³, prompt, prefix).
pub fn save_adapter(model: &DecoderLm, cfg: &PeftConfig, dir: &std::path::Path) -> Result<()> {
    match cfg.method {
        Method::Lora => lora::save_peft(model, cfg, dir),
        Method::Ia3 => ia3::save_peft(model, cfg, dir),
        Method::Prompt => prompt::save_peft(model, dir),
        Method::Prefix => prefix::save_peft(model, dir),
        m => Err(FinetuneError::config(
            "peft.method",
            format!(
                "`{m}` has no PEFT format; keep the manabi checkpoint or export merged weights"
            ),
        )),
    }
}

/// Loads a PEFT adapter folder (`adapter_config.json` + `adapter_model.safetensors`:
/// LoRA, IA³, prompt or prefix tuning) onto the plain base `model`.
pub fn load_adapter(model: DecoderLm, dir: &std::path::Path) -> Result<(DecoderLm, PeftConfig)> {
    let config = AdapterConfig::read(dir)?;
    match config.peft_type.as_deref() {
        Some("IA3") => {
            let cfg = ia3::config_of(&config).map_err(|message| FinetuneError::Adapter {
                path: dir.join(ADAPTER_CONFIG),
                message,
            })?;
            Ok((ia3::load(model, &cfg, dir)?, cfg))
        }
        Some("PROMPT_TUNING") => prompt::load(model, &config, dir),
        Some("PREFIX_TUNING") => prefix::load(model, &config, dir),
        _ => lora::load_peft_with(model, &config, dir),
    }
}

/// [`apply`], with `tokenizer` encoding `cfg.prompt_init_text` when prompt tuning starts
/// from a text.
pub fn apply_with_tokenizer(
    model: DecoderLm,
    cfg: &PeftConfig,
    tokenizer: &manabi_tokenize::TextTokenizer,
) -> Result<DecoderLm> {
    if cfg.method != Method::Prompt || cfg.prompt_init_text.is_empty() {
        return apply(model, cfg);
    }
    cfg.validate()?;
    // PEFT's `tokenizer(prompt_tuning_init_text)["input_ids"]`: special tokens included.
    let ids = tokenizer.encode_with_specials(&cfg.prompt_init_text)?;
    if ids.is_empty() {
        return Err(FinetuneError::config(
            "peft.prompt_init_text",
            "the text encodes to no tokens",
        ));
    }
    prompt::apply_from_tokens(model, cfg, &ids)
}

/// [`apply_with_tokenizer`], then the frozen weight matrices kept in `dtype` (`[model]
/// dtype`; [`DecoderLm::with_bf16_base`] for `bf16`). A `bf16` base needs a method that
/// leaves its matrices frozen: full fine-tuning, IA³ (which rescales them) and DoRA are
/// refused by key.
pub fn adapt(
    model: DecoderLm,
    cfg: &PeftConfig,
    dtype: manabi_model::BaseDtype,
    tokenizer: &manabi_tokenize::TextTokenizer,
) -> Result<DecoderLm> {
    check_dtype(cfg, dtype, &model.embed_tokens.weight.device())?;
    let model = apply_with_tokenizer(model, cfg, tokenizer)?;
    Ok(match dtype {
        manabi_model::BaseDtype::F32 => model,
        manabi_model::BaseDtype::Bf16 => model.with_bf16_base(),
    })
}

/// Whether a base kept in `dtype` fits the method of `cfg` on `device` (what [`adapt`]
/// checks; recipes call it before any long pass): `bf16` needs the flex backend and a
/// method that leaves the base's matrices frozen.
pub fn check_dtype(
    cfg: &PeftConfig,
    dtype: manabi_model::BaseDtype,
    device: &burn::tensor::Device,
) -> Result<()> {
    if dtype == manabi_model::BaseDtype::F32 {
        return Ok(());
    }
    if !manabi_model::fused::active_on(device) {
        return Err(FinetuneError::config(
            "model.dtype",
            format!("`{dtype}` bases need the flex CPU backend (run.device = \"cpu\" or \"flex\")"),
        ));
    }
    let refused = match cfg.method {
        Method::Full => Some("full fine-tuning trains the base's matrices"),
        Method::Ia3 => Some("IA³ rescales the base's matrices in f32"),
        Method::Lora if cfg.use_dora => Some("DoRA renormalises the base's matrices in f32"),
        _ => None,
    };
    match refused {
        Some(why) => Err(FinetuneError::config(
            "model.dtype",
            format!(
                "`{dtype}` keeps the frozen base in {dtype}, and {why}: use peft.method = \"lora\" (or houlsby, pfeiffer, prompt, prefix, bitfit), or dtype = \"f32\""
            ),
        )),
        None => Ok(()),
    }
}

/// Builds the adapter structure of `cfg` on `model` for loading saved weights into it
/// (the values come from the checkpoint).
pub fn rebuild(model: DecoderLm, cfg: &PeftConfig) -> Result<DecoderLm> {
    apply(model, cfg)
}

/// Ids of every `Linear` bias and norm shift (β) of `model`.
fn bias_ids(model: &DecoderLm) -> Vec<ParamId> {
    let mut ids = Vec::new();
    for (_, lin) in manabi_model::hf_names::decoder_linears(model) {
        if let Some(b) = &lin.bias {
            ids.push(b.id);
        }
    }
    let norms = model
        .layers
        .iter()
        .flat_map(|b| {
            [
                &b.attn_norm,
                &b.mlp_norm,
                &b.post_attn_norm,
                &b.post_mlp_norm,
            ]
        })
        .flatten()
        .chain([&model.final_norm]);
    for n in norms {
        if let manabi_model::decoder::Norm::Layer(ln) = n
            && let Some(beta) = &ln.beta
        {
            ids.push(beta.id);
        }
    }
    ids
}

/// Trainable and total parameter counts, as every method prints them.
pub fn describe<M: Module>(model: &M) -> (usize, usize) {
    (
        manabi_objectives::model::trainable_params(model),
        model.num_params(),
    )
}
