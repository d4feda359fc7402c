//! What every fine-tuning recipe (SFT's neighbours: tasks, reward models, DPO, GRPO,
//! PPO) starts with: the device, the Trainer of the run, the tokenizer and its special
//! tokens, and the decoder to adapt.

use std::path::PathBuf;

use burn::prelude::*;
use manabi_model::DeviceChoice;
use manabi_objectives::Trainer;
use manabi_objectives::config::{RunConfig, TrainConfig};
use manabi_tokenize::TextTokenizer;

use crate::config::BaseModel;
use crate::error::{FinetuneError, Result};
use crate::load::{load_decoder, merged};
use crate::peft::{Method, PEFT_FILE};
use crate::sft::Specials;

/// What every fine-tuning recipe (tasks, DPO, reward, GRPO) starts with: the Trainer,
/// the tokenizer and its special tokens.
pub struct Setup {
    /// The Trainer of the run.
    pub trainer: Trainer,
    /// `model.tokenizer`, or the `tokenizer.json` of the model folder.
    pub tokenizer: TextTokenizer,
    /// Its EOS and padding.
    pub specials: Specials,
    /// The run's device (without autodiff).
    pub device: Device,
    /// Where the tokenizer was read.
    pub tok_path: PathBuf,
}

impl std::fmt::Debug for Setup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Setup")
            .field("tokenizer", &self.tok_path)
            .finish()
    }
}

impl Setup {
    /// The device, the Trainer of `run` and `train`, and the tokenizer of `model`.
    pub fn new(
        run: &RunConfig,
        train: &TrainConfig,
        model: &BaseModel,
        device_choice: DeviceChoice,
    ) -> Result<Self> {
        // A missing model folder is named as the folder before anything is written; a
        // run folder's tokenizer is that of its newest checkpoint.
        let model_dir = manabi_model::locate(&model.path)?.dir;
        let device = device_choice.resolve()?;
        let trainer = Trainer::new(&device, train.clone(), &run.out, run.seed)?;
        let tok_path = model
            .tokenizer
            .clone()
            .unwrap_or_else(|| model_dir.join("tokenizer.json"));
        let tokenizer = TextTokenizer::load(&tok_path)?;
        let specials = Specials::of(&tokenizer)?;
        Ok(Self {
            trainer,
            tokenizer,
            specials,
            device,
            tok_path,
        })
    }

    /// The decoder folder `path` on the training device, adapters merged; refused when
    /// the tokenizer has more tokens than the model.
    pub fn decoder(&self, path: &std::path::Path) -> Result<manabi_model::DecoderLm> {
        let (model, adapted) = load_decoder(path, self.trainer.device())?;
        let model = if adapted.is_some() {
            merged(model)
        } else {
            model
        };
        if self.tokenizer.vocab_size() > model.config().vocab_size {
            return Err(FinetuneError::Config {
                key: "model.tokenizer".into(),
                message: format!(
                    "{}: the tokenizer has more tokens than the model: not this model's tokenizer",
                    self.tok_path.display()
                ),
            });
        }
        Ok(model)
    }

    /// Records the recipe `cfg`, the tokenizer and, when `peft` adapts the model,
    /// `peft.toml` in the Trainer, so every checkpoint rebuilds the adapted decoder.
    pub fn record_recipe<C: serde::Serialize>(
        &mut self,
        cfg: &C,
        peft: &crate::PeftConfig,
    ) -> Result<()> {
        let t = &mut self.trainer;
        t.config_toml = toml::to_string_pretty(cfg).map_err(|e| FinetuneError::Config {
            key: "recipe".into(),
            message: e.to_string(),
        })?;
        t.tokenizer = Some(self.tok_path.clone());
        t.spec_files = match peft.method {
            Method::Full => Vec::new(),
            _ => vec![(PEFT_FILE.to_string(), peft.to_toml())],
        };
        Ok(())
    }
}
