//! Pre-training (CLM, MLM, span corruption): one recipe on the [`Trainer`]. It prepares
//! the tokenizer and token shards, builds a fresh model of the configured family from the
//! run's seed, and hands both to [`Trainer::fit`] with the objective's task.

use manabi_model::{BertForMaskedLm, DecoderLm, DeviceChoice, T5};

use crate::checkpoint::Resume;
use crate::config::{ObjectiveKind, PretrainConfig, Sampling};
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

    let data = prepare(&cfg.data, &out, cfg.train.progress)?;
    let mut model_cfg = cfg.model.clone();
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
    let mut resolved = cfg.clone();
    resolved.model = model_cfg.clone();
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
    match cfg.objective_kind() {
        ObjectiveKind::Clm => {
            let task = ClmTask {
                train: batcher(sampling, seq)?,
                val: val_batcher(val_seq)?,
            };
            fresh(&trainer);
            let model = DecoderLm::build(&model_cfg, trainer.device());
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
            let model = BertForMaskedLm::build(&model_cfg, trainer.device());
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
            let model = T5::build(&model_cfg, trainer.device());
            trainer.fit(&task, model, resume)
        }
    }
}
