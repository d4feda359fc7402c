//! `manabi sft`: a base model (manabi checkpoint or Hugging Face folder), SFT data and a
//! PEFT method, trained by the shared Trainer — the data prepared ([`prepare`]), a decoder
//! with any PEFT method or a T5 base (seq2seq, full fine-tuning), and the evaluation of
//! the last checkpoint.

use manabi_objectives::Resume;
use std::path::PathBuf;

use burn::module::Module;
use manabi_model::{DeviceChoice, GenerateOptions};
use manabi_objectives::{RunReport, Trainer};
use manabi_tokenize::TextTokenizer;
use serde::Serialize;

use crate::config::SftConfig;
use crate::error::{FinetuneError, Result};
use crate::load::{load_decoder, load_seq2seq, merged};
use crate::peft::{self, Method, PEFT_FILE};
use crate::sft::data::{Format, read_files};
use crate::sft::encode::{self, EncodeStats};
use crate::sft::template::Template;
use crate::sft::{self, EncodedSet, GenerationEval, SftTask, Specials};
use burn::prelude::Device;
use manabi_model::open::check_tokenizer;

/// What `manabi sft` did.
#[derive(Debug, Clone, Serialize)]
pub struct SftReport {
    /// The Trainer's report.
    pub run: RunReport,
    /// Training-set encoding.
    pub train_stats: EncodeStats,
    /// Validation-set encoding.
    pub val_stats: EncodeStats,
    /// Lines skipped as invalid.
    pub skipped_lines: usize,
    /// Exact match on the validation set after training (when generated).
    pub exact_match: Option<f64>,
    /// Share of generated answers that ended with EOS.
    pub eos_rate: Option<f64>,
    /// ROUGE-1/2/L F1 of the generations (with `eval.rouge`).
    pub rouge: Option<[f64; 3]>,
    /// ROUGE-1/2/L F1 of the lead-1 baseline (summarise format, with `eval.rouge`).
    pub lead_rouge: Option<[f64; 3]>,
    /// Parameters that trained.
    pub trainable_params: usize,
    /// All parameters.
    pub total_params: usize,
    /// Where predictions were written.
    pub predictions: Option<PathBuf>,
}

/// Data, tokenizer and template of a recipe, ready to train.
#[derive(Debug)]
pub struct Prepared {
    /// The tokenizer.
    pub tokenizer: TextTokenizer,
    /// Its special tokens.
    pub specials: Specials,
    /// Training examples.
    pub train: EncodedSet,
    /// Validation examples.
    pub val: EncodedSet,
    /// Lines skipped.
    pub skipped: usize,
}

/// Reads, renders and tokenises the recipe's data.
pub fn prepare(cfg: &SftConfig) -> Result<Prepared> {
    let model_dir = manabi_model::locate(&cfg.model.path)?.dir;
    let tok_path = cfg
        .model
        .tokenizer
        .clone()
        .unwrap_or_else(|| model_dir.join("tokenizer.json"));
    if !tok_path.exists() {
        return Err(FinetuneError::config(
            "model.tokenizer",
            format!("{} not found; set model.tokenizer", tok_path.display()),
        ));
    }
    let tokenizer = TextTokenizer::load(&tok_path)?;
    let specials = Specials::of(&tokenizer)?;
    let d = &cfg.data;
    let train = read_files(&d.train, d.format, &d.fields, d.skip_invalid)?;
    let mut val = if d.val.is_empty() {
        Default::default()
    } else {
        read_files(&d.val, d.format, &d.fields, d.skip_invalid)?
    };
    let mut train = train;
    if val.records.is_empty() {
        // No validation files: hold out the last 5 % of the training records.
        let n = (train.records.len() / 20).max(1);
        if train.records.len() < 2 {
            return Err(FinetuneError::config(
                "data.val",
                "too few examples to hold any out; give data.val",
            ));
        }
        let at = train.records.len() - n;
        val.records = train.records.split_off(at);
        val.sources = train.sources.split_off(at);
    }
    let format = match d.format {
        Format::Auto => match train.records.first() {
            Some(crate::sft::data::Record::Fields { format, .. }) => *format,
            _ => Format::Messages,
        },
        f => f,
    };
    let template = Template::new(cfg.template.clone(), format)?;
    let max_tokens = d.block_size + 1;
    let skipped = train.skipped + val.skipped;
    // Conversations use the model's own chat template when its folder has one (not the
    // one manabi exports, which renders manabi's own format: that keeps its own path).
    let chat = match format {
        Format::Messages => crate::sft::chat::model_template(&model_dir)?,
        _ => None,
    };
    if let Some(t) = &chat {
        tracing::info!(
            "conversations rendered with the model's chat template ({})",
            t.path().display()
        );
    }
    let chat = chat.as_ref();
    let train = sft::encode_set_with(&train, &template, chat, &tokenizer, specials, max_tokens)?;
    let val = sft::encode_set_with(&val, &template, chat, &tokenizer, specials, max_tokens)?;
    for (name, s) in [("train", &train.stats), ("val", &val.stats)] {
        if s.answers_not_copyable() {
            tracing::warn!(
                "{name}: {} of {} responses occur as text in their prompt but not as tokens, so a model cannot copy them token for token; a leading space in the response template changes how a byte-level BPE splits a word (` 魚屋` against `魚屋` in a Japanese context): give such data a template without it",
                s.copy_token_mismatch,
                s.copyable
            );
        }
    }
    Ok(Prepared {
        tokenizer,
        specials,
        train,
        val,
        skipped,
    })
}

/// Validation examples that generation-based evaluation uses.
fn task_eval_len(cfg: &SftConfig, p: &Prepared) -> usize {
    if cfg.eval.max_examples == 0 {
        p.val.examples.len()
    } else {
        cfg.eval.max_examples.min(p.val.examples.len())
    }
}

/// ROUGE of the lead-1 summary (each document's first sentence) when the records are
/// documents with summaries.
fn lead_baseline(records: &[crate::sft::data::Record]) -> Option<[f64; 3]> {
    let mut pairs = Vec::with_capacity(records.len());
    for r in records {
        match r {
            crate::sft::data::Record::Fields {
                format: Format::Summarise,
                values,
            } => {
                let doc = values.get("document").map_or("", String::as_str);
                pairs.push((r.final_response(), crate::metrics::lead_sentence(doc)));
            }
            _ => return None,
        }
    }
    (!pairs.is_empty()).then(|| crate::metrics::rouge_f1(&pairs))
}

/// The generation-based evaluation of `cfg.eval` on the first validation examples.
fn generation_eval(cfg: &SftConfig, p: &Prepared) -> Option<GenerationEval> {
    cfg.eval.generate.then(|| {
        let n = task_eval_len(cfg, p);
        GenerationEval {
            prompts: p.val.examples[..n].iter().map(sft::prompt_of).collect(),
            answers: p.val.answers[..n].to_vec(),
            tokenizer: p.tokenizer.clone(),
            options: GenerateOptions {
                max_new_tokens: cfg.eval.max_new_tokens,
                temperature: 0.0,
                eos_ids: p.specials.stop_ids(),
                pad_id: p.specials.pad,
                ..GenerateOptions::default()
            },
            batch_size: cfg.eval.batch_size,
            rouge: cfg.eval.rouge,
        }
    })
}

/// Runs (or resumes) the SFT recipe `cfg`: on a decoder (any PEFT method), or on a T5
/// base as seq2seq SFT (full fine-tuning).
pub fn sft(
    cfg: &SftConfig,
    device_choice: DeviceChoice,
    resume: impl Into<Resume>,
) -> Result<SftReport> {
    let device = device_choice.resolve()?;
    let out = cfg.run.out.clone();
    let mut trainer = Trainer::new(&device, cfg.train.clone(), &out, cfg.run.seed)?;
    let p = prepare(cfg)?;
    for (name, s) in [("train", &p.train.stats), ("val", &p.val.stats)] {
        if s.truncated > 0 || s.dropped > 0 {
            tracing::warn!(
                "{name}: {} prompts cut from the left to fit {} tokens; {} examples dropped because their response alone does not fit",
                s.truncated,
                cfg.data.block_size,
                s.dropped
            );
        }
    }
    trainer.config_toml = toml::to_string_pretty(cfg).map_err(|e| FinetuneError::io(&out, e))?;
    trainer.tokenizer = Some(p.tokenizer.path().to_path_buf());
    let generation = generation_eval(cfg, &p);
    let lead_rouge = (cfg.eval.generate && cfg.eval.rouge)
        .then(|| lead_baseline(&p.val.records[..task_eval_len(cfg, &p)]))
        .flatten();
    let (run, predictions, trainable, total) =
        if let Some(t5) = load_seq2seq(&cfg.model.path, trainer.device())? {
            fit_seq2seq(cfg, &trainer, &p, t5, generation, resume, &device)?
        } else {
            fit_decoder(cfg, &mut trainer, &p, generation, resume, &device)?
        };

    let (mut exact_match, mut eos_rate, mut predictions_path, mut rouge) = (None, None, None, None);
    if let Some(preds) = predictions {
        let (em, eos) = sft::scores(&preds);
        let path = out.join("predictions.jsonl");
        sft::write_predictions(&path, &preds)?;
        rouge = cfg.eval.rouge.then(|| sft::rouge_scores(&preds));
        (exact_match, eos_rate, predictions_path) = (Some(em), Some(eos), Some(path));
    }
    Ok(SftReport {
        run,
        train_stats: p.train.stats,
        val_stats: p.val.stats,
        skipped_lines: p.skipped,
        exact_match,
        eos_rate,
        rouge,
        lead_rouge,
        trainable_params: trainable,
        total_params: total,
        predictions: predictions_path,
    })
}

/// What a fitted SFT run gives back: the run, the validation predictions (when generation
/// is evaluated), trainable and total parameters.
type Fitted = (RunReport, Option<Vec<sft::Prediction>>, usize, usize);

/// Seq2seq SFT on a T5 base (full fine-tuning; no packing).
fn fit_seq2seq(
    cfg: &SftConfig,
    trainer: &Trainer,
    p: &Prepared,
    t5: manabi_model::T5,
    generation: Option<GenerationEval>,
    resume: impl Into<Resume>,
    device: &Device,
) -> Result<Fitted> {
    cfg.model.f32_only("seq2seq SFT on T5")?;
    check_tokenizer(
        p.tokenizer.vocab_size(),
        p.tokenizer.path(),
        t5.config().vocab_size,
    )?;
    if cfg.peft.method != Method::Full {
        return Err(FinetuneError::config(
            "peft.method",
            "a T5 base trains fully here (the PEFT methods are built for decoders); set method = \"full\"",
        ));
    }
    if cfg.data.pack {
        return Err(FinetuneError::config(
            "data.pack",
            "seq2seq SFT on T5 does not pack; set pack = false",
        ));
    }
    let total = t5.num_params();
    println!("Full (seq2seq, T5): {total} trainable of {total} parameters");
    let pairs = |set: &EncodedSet| -> Vec<sft::seq2seq::Pair> {
        set.examples
            .iter()
            .map(|e| sft::seq2seq::Pair::of(e, p.specials.eos))
            .collect()
    };
    let task = sft::seq2seq::Seq2SeqTask {
        train: pairs(&p.train),
        val: pairs(&p.val),
        batch_size: cfg.train.batch_size,
        pad: p.specials.pad,
        eos: p.specials.eos,
        seed: cfg.run.seed,
        generation,
    };
    trainer.device().seed(cfg.run.seed);
    manabi_model::init::seed(cfg.run.seed);
    let run = trainer.fit(&task, t5, resume)?;
    let predictions = match (&task.generation, &run.checkpoint) {
        (Some(g), Some(dir)) => {
            let model = crate::open::open(dir, device)?.into_t5()?;
            Some(sft::seq2seq::predict(&model, g, p.specials.eos)?)
        }
        _ => None,
    };
    Ok((run, predictions, total, total))
}

/// SFT of a decoder (an adapted folder is merged first) with the recipe's PEFT method.
fn fit_decoder(
    cfg: &SftConfig,
    trainer: &mut Trainer,
    p: &Prepared,
    generation: Option<GenerationEval>,
    resume: impl Into<Resume>,
    device: &Device,
) -> Result<Fitted> {
    // A decoder folder; an adapted one is merged first.
    let (base, base_peft) = load_decoder(&cfg.model.path, trainer.device())?;
    let base = if base_peft.is_some() {
        merged(base)
    } else {
        base
    };
    let mcfg = base.config().clone();
    check_tokenizer(
        p.tokenizer.vocab_size(),
        p.tokenizer.path(),
        mcfg.vocab_size,
    )?;
    if cfg.data.block_size > mcfg.max_positions {
        return Err(FinetuneError::config(
            "data.block_size",
            format!(
                "{} exceeds the model's {} positions",
                cfg.data.block_size, mcfg.max_positions
            ),
        ));
    }
    trainer.device().seed(cfg.run.seed);
    manabi_model::init::seed(cfg.run.seed);
    let model = peft::adapt(base, &cfg.peft, cfg.model.dtype, &p.tokenizer)?;
    let (trainable, total) = peft::describe(&model);
    println!(
        "{}: {trainable} trainable of {total} parameters ({:.3} %)",
        cfg.peft.method,
        100.0 * trainable as f64 / total.max(1) as f64
    );
    if cfg.peft.method != Method::Full {
        trainer.spec_files = vec![(PEFT_FILE.to_string(), cfg.peft.to_toml())];
    }
    let rows = encode::rows(
        &p.train.examples,
        cfg.data.block_size,
        cfg.data.pack,
        cfg.run.seed,
    );
    let task = SftTask {
        train: p.train.examples.clone(),
        rows,
        val: p.val.examples.clone(),
        batch_size: cfg.train.batch_size,
        pad: p.specials.pad,
        pack: cfg.data.pack,
        seed: cfg.run.seed,
        generation,
    };
    let run = trainer.fit(&task, model, resume)?;
    let predictions = match (&task.generation, &run.checkpoint) {
        (Some(g), Some(dir)) => Some(g.predict(&load_decoder(dir, device)?.0)?),
        _ => None,
    };
    Ok((run, predictions, trainable, total))
}
