//! Loading of the models every recipe starts from or evaluates: decoders (adapters
//! rebuilt from `peft.toml`; the body of a decoder task checkpoint, its head dropped),
//! merged decoders, decoders without dropout, and T5 bases for seq2seq SFT.

use std::path::Path;

use burn::module::Module;
use burn::prelude::*;
use manabi_model::{DecoderClassifier, DecoderLm};

use crate::error::Result;
use crate::head::HeadSpec;
use crate::peft::PeftConfig;

/// Loads a decoder from a manabi folder (with its adapters when `peft.toml` is there),
/// the body of a decoder task checkpoint (`head.toml`: its head dropped), or a Hugging
/// Face folder, through [`crate::open`]. Returns the PEFT settings of an adapted model.
pub fn load_decoder(dir: &Path, device: &Device) -> Result<(DecoderLm, Option<PeftConfig>)> {
    crate::open::open(dir, device)?.into_decoder()
}

/// Loads a folder with a sequence head: manabi (`model.toml` + `head.toml`, with
/// `peft.toml` when adapted) or Hugging Face `*ForSequenceClassification` /
/// `*ForTokenClassification` (label names from `id2label`), through [`crate::open`].
pub fn load_classifier(dir: &Path, device: &Device) -> Result<(DecoderClassifier, HeadSpec)> {
    crate::open::open(dir, device)?.into_classifier()
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
    if manabi_model::locate(dir)?.family != manabi_model::Family::T5 {
        return Ok(None);
    }
    Ok(Some(crate::open::open(dir, device)?.into_t5()?))
}
