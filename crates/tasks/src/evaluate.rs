//! Evaluation and prediction with a task checkpoint (`manabi task --model`): metrics
//! against gold labels when the files carry them, and one prediction per line next to
//! the example's text fields and gold label. A Hugging Face task folder without
//! `task.toml` predicts as `transformers`' `pipeline()` uses it ([`crate::hf`]).

use std::path::{Path, PathBuf};

use burn::prelude::*;
use manabi_finetune::error::{FinetuneError, Result};
use manabi_finetune::sft::Specials;
use manabi_tokenize::TextTokenizer;

use crate::body::{Framing, load_seq_classifier};
use crate::classify::{encode, evaluate_rows};
use crate::data::{TaskKind, read_examples};
use crate::hf::PipelineOptions;
use crate::report::SplitReport;
use crate::settings::{TASK_FILE, TaskSettings};

/// The paths of `files`, comma-separated.
fn joined(files: &[PathBuf]) -> String {
    files
        .iter()
        .map(|f| f.display().to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

/// Evaluates (when `files` carry labels) and predicts with a task checkpoint: reads its
/// `task.toml`, `head.toml` and `tokenizer.json`, writes predictions to `out`. A Hugging
/// Face task folder without `task.toml` predicts as `pipeline()` uses it.
pub fn evaluate_task(
    model_dir: &Path,
    files: &[PathBuf],
    out: &Path,
    batch_size: usize,
    device: &Device,
) -> Result<SplitReport> {
    evaluate_task_with(
        model_dir,
        files,
        out,
        batch_size,
        &PipelineOptions::default(),
        device,
    )
}

/// [`evaluate_task`] with the settings of a Hugging Face folder's prediction (pooling
/// of a `BertModel`, length and prefix of T5 summaries); a `manabi task` checkpoint,
/// whose `task.toml` decides these, refuses them.
pub fn evaluate_task_with(
    model_dir: &Path,
    files: &[PathBuf],
    out: &Path,
    batch_size: usize,
    options: &PipelineOptions,
    device: &Device,
) -> Result<SplitReport> {
    let found = manabi_model::locate(model_dir)?;
    let model_dir = &found.dir;
    let spec = model_dir.join(TASK_FILE);
    if !spec.exists() && found.layout == manabi_model::Layout::HuggingFace {
        let mut r = crate::hf::predict(&found, files, out, batch_size, options, device)?;
        r.name = joined(files);
        return Ok(r);
    }
    if let Some(flag) = options.flag() {
        return Err(FinetuneError::config(
            flag,
            format!(
                "applies to a Hugging Face folder; {} is a `manabi task` checkpoint, whose \
                 task.toml decides it",
                model_dir.display()
            ),
        ));
    }
    let text = std::fs::read_to_string(&spec).map_err(|e| {
        FinetuneError::io(
            &spec,
            format!(
                "{e} (is this a checkpoint of `manabi task`? A Hugging Face folder predicts \
                 without one)"
            ),
        )
    })?;
    let settings: TaskSettings = toml::from_str(&text)
        .map_err(|e| FinetuneError::config(spec.display().to_string(), e.message()))?;
    manabi_finetune::head::check_labels(&settings.labels, &format!("{}: labels", spec.display()))?;
    let tokenizer = TextTokenizer::load(model_dir.join("tokenizer.json"))?;
    let specials = Specials::of(&tokenizer)?;
    if settings.kind == TaskKind::Simcse || settings.encoder == crate::pooling::Encoder::Bi {
        let mut r = crate::pairs::evaluate_pairs(
            model_dir, &settings, &tokenizer, files, out, batch_size, device,
        )?;
        r.name = joined(files);
        return Ok(r);
    }
    if settings.kind == TaskKind::Ner {
        let (model, head) = crate::body::load_tagger(model_dir, device)?;
        let mut r = crate::ner::evaluate_ner(
            &model.valid(),
            &settings,
            &head.names,
            &tokenizer,
            files,
            (specials.pad, specials.eos),
            batch_size,
            out,
            device,
        )?;
        r.name = joined(files);
        return Ok(r);
    }
    let (model, head) = load_seq_classifier(model_dir, device)?;
    let framing = Framing::of(model.family(), &tokenizer, specials.eos)?;
    let examples = read_examples(files, settings.kind, &settings.fields, false)?;
    let set = encode(&examples, &settings, &head.names, &tokenizer, framing)?;
    let mut r = evaluate_rows(
        &model.valid(),
        &settings,
        &examples,
        &set.rows,
        None,
        specials.pad,
        batch_size,
        out,
        device,
    )?;
    r.name = joined(files);
    Ok(r)
}
