//! Pre-training (CLM, MLM, span corruption): one recipe on the [`Trainer`]. It prepares
//! the tokenizer and token shards, builds a fresh model of the configured family from the
//! run's seed (or, with `model.path`, reads an existing one to train further: continued
//! pre-training), and hands both to [`Trainer::fit`] with the objective's task.

use std::path::{Path, PathBuf};

use burn::prelude::Device;
use manabi_model::{DeviceChoice, Layout, ModelConfig, ModelDir};

use crate::checkpoint::Resume;
use crate::config::{ContinueFrom, ObjectiveKind, PretrainConfig, PretrainModel, Sampling};
use crate::data::Batcher;
use crate::error::{Result, TrainError};
use crate::mlm::MlmCollator;
use crate::model::TrainModel;
use crate::prepare::prepare;
use crate::span::SpanCollator;
use crate::tasks::{ClmTask, MlmTask, SpanTask, no_sentinels, sentinels};
use crate::trainer::{RunReport, Trainer};

/// Runs (or resumes) the pre-training recipe `cfg` on `device`: one recipe on the
/// [`Trainer`].
pub fn pretrain(
    cfg: &PretrainConfig,
    device_choice: DeviceChoice,
    resume: impl Into<Resume>,
) -> Result<RunReport> {
    let device = device_choice.resolve()?;
    let out = cfg.run.out.clone();
    let mut trainer = Trainer::new(&device, cfg.train.clone(), &out, cfg.run.seed)?;

    // Continued pre-training reads the model's folder and its tokenizer.
    let source = match &cfg.model {
        PretrainModel::From(f) => {
            let e = Existing::locate(f)?;
            // Block and objective checked before anything is tokenised.
            let positions = format!("the max_positions of {}", e.dir.dir.display());
            cfg.check_model(&e.config, &positions)?;
            Source::Existing(Box::new(e))
        }
        PretrainModel::New(c) => Source::New(c),
    };
    let mut data_cfg = cfg.data.clone();
    if let Source::Existing(e) = &source {
        data_cfg.tokenizer.path = Some(e.tokenizer.clone());
        // Documents end with `data.eos_token`; the default `<eos>`, where the model's
        // tokenizer lacks it, becomes that tokenizer's own end-of-text token.
        if cfg.data.eos_token == crate::config::default_eos() {
            data_cfg.eos_token = e.eos_token()?;
        }
    }
    let data = prepare(&data_cfg, &out, cfg.train.progress)?;
    let model_cfg = match &source {
        Source::New(c) => fresh_config(c, &data)?,
        Source::Existing(e) => e.check(&data)?,
    };
    let mut resolved = cfg.clone();
    if let PretrainModel::New(_) = &cfg.model {
        resolved.model = PretrainModel::New(Box::new(model_cfg.clone()));
    }
    trainer.config_toml = toml::to_string_pretty(&resolved).map_err(|e| TrainError::io(&out, e))?;
    trainer.tokenizer = Some(out.join("tokenizer").join("tokenizer.json")).filter(|p| p.exists());

    let t = &cfg.train;
    let seq = cfg.data.block_size;
    let sampling = cfg.data.sampling;
    let (seed, bs) = (cfg.run.seed, t.batch_size);
    let val_seq = seq.min(data.val.len().saturating_sub(1));
    if val_seq < 2 {
        return Err(TrainError::Data(format!(
            "validation split has only {} tokens",
            data.val.len()
        )));
    }
    let batcher =
        |sampling, seq| Batcher::new(data.train.clone(), sampling, seq, bs, data.eos_id, seed);
    let val_batcher = |seq| {
        Batcher::new(
            data.val.clone(),
            Sampling::Random,
            seq,
            bs,
            data.eos_id,
            seed ^ 0x5eed,
        )
    };
    let o = &cfg.objective;
    // Every family is initialised from the run's seed on the autodiff device.
    let fresh = |trainer: &Trainer| {
        trainer.device().seed(seed);
        manabi_model::init::seed(seed);
    };
    match cfg.objective_kind(model_cfg.family) {
        ObjectiveKind::Clm => {
            let task = ClmTask {
                train: batcher(sampling, seq)?,
                val: val_batcher(val_seq)?,
            };
            fresh(&trainer);
            let model = build_or_read(&source, &model_cfg, trainer.device(), |d, dev| {
                manabi_model::load_hf(d, dev)
            })?;
            trainer.fit(&task, model, resume)
        }
        ObjectiveKind::Mlm => {
            let collator =
                MlmCollator::new(&data.tokenizer, &o.mask_token, o.mask_prob, o.whole_word)?;
            let task = MlmTask {
                train: batcher(Sampling::Random, seq)?,
                val: val_batcher(val_seq)?,
                collator,
                seed,
            };
            fresh(&trainer);
            let model = build_or_read(&source, &model_cfg, trainer.device(), |d, dev| {
                manabi_model::load_bert_masked_lm(d, dev)
            })?;
            trainer.fit(&task, model, resume)
        }
        ObjectiveKind::Span => {
            let sentinels = sentinels(&data.tokenizer);
            if sentinels.is_empty() {
                return Err(no_sentinels());
            }
            let collator = SpanCollator::new(
                seq,
                o.noise_density,
                o.mean_span_length,
                sentinels,
                data.eos_id,
            )?;
            if collator.src_len() > model_cfg.max_positions {
                return Err(TrainError::Config {
                    key: "data.block_size".into(),
                    message: format!(
                        "corrupted inputs of {} tokens exceed model.max_positions",
                        collator.src_len()
                    ),
                });
            }
            let task = SpanTask {
                train: batcher(Sampling::Random, seq)?,
                val: val_batcher(seq)?,
                collator,
                seed,
            };
            fresh(&trainer);
            let model = build_or_read(&source, &model_cfg, trainer.device(), |d, dev| {
                manabi_model::load_t5(d, dev)
            })?;
            trainer.fit(&task, model, resume)
        }
    }
}

/// A fresh model's config: `vocab_size = 0` filled from the tokenizer, T5's pad and EOS
/// ids found in it; checked against the tokenizer.
fn fresh_config(c: &ModelConfig, data: &crate::prepare::PreparedData) -> Result<ModelConfig> {
    let mut model_cfg = c.clone();
    if model_cfg.vocab_size == 0 {
        model_cfg.vocab_size = data.tokenizer.vocab_size();
    }
    if model_cfg.family == manabi_model::Family::T5 {
        // Generation and fine-tuning need to know where a target ends and what pads.
        let id = |names: &[&str]| {
            names
                .iter()
                .find_map(|t| data.tokenizer.token_id(t))
                .map(|i| i as usize)
        };
        model_cfg.pad_token_id = model_cfg.pad_token_id.or_else(|| id(&["<pad>"]));
        model_cfg.eos_token_id = model_cfg.eos_token_id.or_else(|| id(&["</s>", "<eos>"]));
    }
    model_cfg.validate()?;
    if data.tokenizer.vocab_size() > model_cfg.vocab_size {
        return Err(TrainError::Config {
            key: "model.vocab_size".into(),
            message: format!(
                "{} is smaller than the tokenizer's {}",
                model_cfg.vocab_size,
                data.tokenizer.vocab_size()
            ),
        });
    }
    Ok(model_cfg)
}

/// A model to pre-train further (`model.path`): its folder, config and tokenizer.
struct Existing {
    dir: ModelDir,
    config: ModelConfig,
    tokenizer: PathBuf,
}

impl Existing {
    /// Finds `f.path` (a run folder stands for its newest checkpoint) and reads its
    /// config; its tokenizer is `f.tokenizer` or the folder's.
    fn locate(f: &ContinueFrom) -> Result<Self> {
        let dir = manabi_model::locate(&f.path)?;
        let config = dir.config()?;
        let tokenizer = f.tokenizer.clone().unwrap_or_else(|| dir.dir.clone());
        Ok(Self {
            dir,
            config,
            tokenizer,
        })
    }

    /// The document separator for the default `data.eos_token`: `<eos>` when its
    /// tokenizer has it, else the tokenizer's named `eos_token` (an instruct model's may
    /// be its end of turn, e.g. `<|im_end|>`: set `data.eos_token` for another), else the
    /// first of `</s>`, `<|endoftext|>`, `[SEP]` it has (`<eos>` when none, which
    /// preparing the data then refuses, naming the tokenizer).
    fn eos_token(&self) -> Result<String> {
        let tok = manabi_tokenize::TextTokenizer::load(&self.tokenizer)?;
        let default = crate::config::default_eos();
        if tok.token_id(&default).is_some() {
            return Ok(default);
        }
        let named = tok.eos_id().and_then(|id| tok.id_to_token(id));
        let known = || {
            ["</s>", "<|endoftext|>", "[SEP]"]
                .into_iter()
                .find(|t| tok.token_id(t).is_some())
                .map(str::to_string)
        };
        Ok(named
            .or_else(known)
            .unwrap_or_else(crate::config::default_eos))
    }

    /// Its config, checked against the tokenizer `data` read.
    fn check(&self, data: &crate::prepare::PreparedData) -> Result<ModelConfig> {
        let tokens = data.tokenizer.vocab_size();
        if tokens > self.config.vocab_size {
            return Err(TrainError::Config {
                key: "model.tokenizer".into(),
                message: format!(
                    "{}: {tokens} tokens, but the model embeds {}: not this model's tokenizer",
                    self.tokenizer.display(),
                    self.config.vocab_size
                ),
            });
        }
        Ok(self.config.clone())
    }
}

/// Where the model comes from.
enum Source<'a> {
    /// Built fresh from the recipe's `[model]`.
    New(&'a ModelConfig),
    /// Read from a folder (`model.path`).
    Existing(Box<Existing>),
}

/// The model to train: built fresh from `cfg` or read from the existing folder in its
/// own layout (`hf` reads a Hugging Face one).
fn build_or_read<M: TrainModel>(
    source: &Source,
    cfg: &ModelConfig,
    device: &Device,
    hf: impl FnOnce(&Path, &Device) -> manabi_model::Result<M>,
) -> Result<M> {
    let e = match source {
        Source::New(_) => return Ok(M::build(cfg, device)),
        Source::Existing(e) => e,
    };
    Ok(match e.dir.layout {
        Layout::Native => {
            manabi_model::checkpoint::load_module(&e.dir.dir, device, |c, d| Ok(M::build(c, d)))?
        }
        Layout::HuggingFace => hf(&e.dir.dir, device)?,
    })
}
