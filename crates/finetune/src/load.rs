//! Loading of the models every recipe starts from or evaluates: decoders (adapters
//! rebuilt from `peft.toml`; the body of a decoder task checkpoint, its head dropped),
//! merged decoders, decoders without dropout, and T5 bases for seq2seq SFT.

use std::path::Path;

use burn::module::Module;
use burn::prelude::*;
use manabi_model::DecoderLm;

use crate::error::{FinetuneError, Result};
use crate::peft::{self, PEFT_FILE, PeftConfig};

/// Loads a decoder from a manabi folder (with its adapters when `peft.toml` is there),
/// the body of a decoder task checkpoint (`head.toml`: its head dropped), or a Hugging
/// Face folder. Returns the PEFT settings of an adapted model.
pub fn load_decoder(dir: &Path, device: &Device) -> Result<(DecoderLm, Option<PeftConfig>)> {
    // A missing folder is named as the folder; a run folder stands for its newest checkpoint.
    let dir = &manabi_model::locate(dir)?.dir;
    let spec = dir.join(PEFT_FILE);
    if dir.join(crate::head::HEAD_FILE).exists() && dir.join("model.toml").exists() {
        // A task checkpoint (classifier, tagger, reward model): its body, the head dropped
        // (intermediate-task transfer, e.g. NLI before a reward model).
        let (m, head) = crate::head::load_classifier(dir, device)?;
        tracing::info!(
            "{}: the body of a {} classifier ({} outputs); its head is dropped",
            dir.display(),
            head.kind,
            head.labels
        );
        let peft = if spec.exists() {
            let text = std::fs::read_to_string(&spec).map_err(|e| FinetuneError::io(&spec, e))?;
            Some(toml::from_str(&text).map_err(|e| FinetuneError::Config {
                key: spec.display().to_string(),
                message: e.message().to_string(),
            })?)
        } else {
            None
        };
        return Ok((m.lm, peft));
    }
    if !(dir.join("model.toml").exists() && spec.exists()) {
        return Ok((manabi_model::load_model(dir, device)?, None));
    }
    let text = std::fs::read_to_string(&spec).map_err(|e| FinetuneError::io(&spec, e))?;
    let cfg: PeftConfig = toml::from_str(&text).map_err(|e| FinetuneError::Config {
        key: spec.display().to_string(),
        message: e.message().to_string(),
    })?;
    let model_cfg = read_model_toml(dir)?;
    let mut model = peft::rebuild(DecoderLm::new(&model_cfg, device), &cfg)?;
    manabi_model::checkpoint::load_weights(&mut model, &dir.join("model.bpk"))?;
    Ok((model, Some(cfg)))
}

fn read_model_toml(dir: &Path) -> Result<manabi_model::ModelConfig> {
    let path = dir.join("model.toml");
    let text = std::fs::read_to_string(&path).map_err(|e| FinetuneError::io(&path, e))?;
    let cfg: manabi_model::ModelConfig =
        toml::from_str(&text).map_err(|e| FinetuneError::Config {
            key: path.display().to_string(),
            message: e.message().to_string(),
        })?;
    cfg.validate()?;
    Ok(cfg)
}

/// A decoder with every adapter folded into its weights (LoRA merged; bottleneck
/// adapters stay in their slots).
pub fn merged(model: DecoderLm) -> DecoderLm {
    model.materialize()
}

/// Sets every dropout of `model` (embedding and residual) to `p`.
pub fn with_dropout(mut model: DecoderLm, p: f64) -> DecoderLm {
    model.dropout.prob = p;
    for l in &mut model.layers {
        l.dropout.prob = p;
    }
    model
}

/// A T5 base in `dir` (a Hugging Face folder with `model_type = "t5"`, or a manabi
/// folder whose `model.toml` says `family = "t5"`), or `None` for anything else.
pub fn load_seq2seq(dir: &Path, device: &Device) -> Result<Option<manabi_model::T5>> {
    let m = manabi_model::locate(dir)?;
    if m.family != manabi_model::Family::T5 {
        return Ok(None);
    }
    Ok(Some(match m.layout {
        manabi_model::Layout::HuggingFace => manabi_model::load_t5(&m.dir, device)?,
        manabi_model::Layout::Native => manabi_objectives::checkpoint::load_model(&m.dir, device)?,
    }))
}
