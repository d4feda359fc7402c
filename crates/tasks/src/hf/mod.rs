//! Prediction with a Hugging Face task folder that has no `task.toml`, as `transformers`'
//! `pipeline()` uses it (`manabi task --model HF_DIR --data FILE`). `architectures[0]` of
//! its `config.json` says what it predicts:
//! - `*ForSequenceClassification` (BERT, GPT-2, the LLaMA family): `text-classification`.
//!   One text (`sentence`, or the pipeline's `text`) or a pair (`sentence1` +
//!   `sentence2`, or `text` + `text_pair`), as the first line of the data has them;
//!   softmax over `id2label` (`LABEL_i` without one); one output or `problem_type =
//!   "regression"` gives the raw score. BERT reads `[CLS] a [SEP] b [SEP]`, a decoder each
//!   text inside its tokenizer's own special tokens ([`Framing::Own`]), at the last token.
//! - `*ForTokenClassification`: `token-classification` with `aggregation_strategy =
//!   "simple"` ([`crate::ner::pipeline`]).
//! - `BertModel`: sentence embeddings, `[CLS]` or mean pooling (SimCSE,
//!   sentence-transformers); STS Pearson and Spearman of the cosines for scored pairs.
//! - `T5ForConditionalGeneration`: summaries ([`summarise`]).
//!
//! Predictions go where those of a `manabi task` checkpoint go, in the same layout
//! (docs/formats.md), with metrics when the data has gold labels. The tokenizer is the
//! folder's `tokenizer.json` (with its `tokenizer_config.json`).

mod st;
mod summarise;

use std::path::{Path, PathBuf};

use burn::prelude::*;
use manabi_finetune::error::{FinetuneError, Result};
use manabi_finetune::sft::Specials;
use manabi_model::{Family, ModelDir};
use manabi_tokenize::TextTokenizer;
use serde_json::Value;

use crate::body::{Framing, Loaded, load_seq_classifier, load_tagger};
use crate::classify::{encode, evaluate_rows};
use crate::data::{FieldMap, TaskKind, read_examples};
use crate::embed::{SentenceModel, embed_texts, read_sentences, write_embeddings};
use crate::pooling::Pooling;
use crate::report::SplitReport;
use crate::settings::TaskSettings;

/// What `manabi task --model` may set for a Hugging Face folder; `None`: the folder's own.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PipelineOptions {
    /// Sentence embeddings (`BertModel`): `[CLS]` or mean pooling (default mean).
    pub pooling: Option<Pooling>,
    /// Summaries (T5): most tokens generated (default: `max_length` of
    /// `task_specific_params.summarization`, else of `generation_config.json` or
    /// `config.json`, else transformers' 20, less the decoder's start token).
    pub max_new_tokens: Option<usize>,
    /// Summaries (T5): text put before each document (default: `prefix` of
    /// `task_specific_params.summarization`, else of `config.json`, else `summarize: `).
    pub prefix: Option<String>,
}

impl PipelineOptions {
    /// The command-line flag of the first option that is set, if any.
    pub fn flag(&self) -> Option<&'static str> {
        if self.pooling.is_some() {
            Some("--pooling")
        } else if self.max_new_tokens.is_some() {
            Some("--max-new-tokens")
        } else if self.prefix.is_some() {
            Some("--prefix")
        } else {
            None
        }
    }
}

/// What a Hugging Face folder predicts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HfTask {
    /// `*ForSequenceClassification`: a class or a score per text or pair.
    Sequence,
    /// `*ForTokenClassification`: entities.
    Token,
    /// `BertModel`: a vector per sentence.
    Embedding,
    /// `T5ForConditionalGeneration`: a summary per document.
    Summary,
}

/// The architectures [`predict`] takes, for messages.
const SUPPORTED: &str = "*ForSequenceClassification or *ForTokenClassification (BERT, GPT-2, \
    LLaMA family), BertModel (sentence embeddings), T5ForConditionalGeneration (summaries)";

/// What the Hugging Face folder `found` predicts, by `architectures[0]` of its
/// `config.json`; any other architecture is a one-line error naming it and these.
pub fn hf_task(found: &ModelDir) -> Result<HfTask> {
    let key = format!("{}: architectures", found.dir.join("config.json").display());
    let Some(arch) = found.architecture.as_deref() else {
        return Err(FinetuneError::config(
            key,
            format!(
                "missing, so the folder's task is unknown; `manabi task --model` predicts \
                 with {SUPPORTED}"
            ),
        ));
    };
    let encoder_or_decoder = found.family != Family::T5;
    Ok(match arch {
        a if a.ends_with("ForSequenceClassification") && encoder_or_decoder => HfTask::Sequence,
        a if a.ends_with("ForTokenClassification") && encoder_or_decoder => HfTask::Token,
        "BertModel" => HfTask::Embedding,
        "T5ForConditionalGeneration" => HfTask::Summary,
        other => {
            let hint = if other.ends_with("ForCausalLM") || other.ends_with("LMHeadModel") {
                " (a causal LM: `manabi generate`, or fine-tune a head with `manabi task --config`)"
            } else if other.ends_with("ForMaskedLM") || other.ends_with("ForPreTraining") {
                " (a masked LM: `manabi embed`, or fine-tune a head with `manabi task --config`)"
            } else {
                ""
            };
            return Err(FinetuneError::config(
                key,
                format!(
                    "`{other}` is not a task model `manabi task --model` predicts with; it \
                     takes {SUPPORTED}, or a `manabi task` checkpoint{hint}"
                ),
            ));
        }
    })
}

/// Predicts with the Hugging Face folder `found` (no `task.toml`) on `files`, as
/// `pipeline()` does, and writes the predictions to `out`; metrics when the files carry
/// gold labels.
pub fn predict(
    found: &ModelDir,
    files: &[PathBuf],
    out: &Path,
    batch_size: usize,
    options: &PipelineOptions,
    device: &Device,
) -> Result<SplitReport> {
    let task = hf_task(found)?;
    let dir = &found.dir;
    let arch = found.architecture.as_deref().unwrap_or_default();
    let wrong = |flag: &str, what: &str| {
        FinetuneError::config(
            flag,
            format!("{what}; {} is a {arch} folder", dir.display()),
        )
    };
    if options.pooling.is_some() && task != HfTask::Embedding {
        return Err(wrong(
            "--pooling",
            "pools the vectors of a BertModel folder",
        ));
    }
    if task != HfTask::Summary {
        for (flag, set) in [
            ("--max-new-tokens", options.max_new_tokens.is_some()),
            ("--prefix", options.prefix.is_some()),
        ] {
            if set {
                return Err(wrong(
                    flag,
                    "sets the summaries of a T5ForConditionalGeneration folder",
                ));
            }
        }
    }
    if files.is_empty() {
        return Err(FinetuneError::config("--data", "give at least one file"));
    }
    let config = read_json(&dir.join("config.json"))?;
    let tokenizer = TextTokenizer::load(dir.join("tokenizer.json"))?;
    match task {
        HfTask::Sequence => sequence(dir, &config, &tokenizer, files, out, batch_size, device),
        HfTask::Token => token(dir, &config, &tokenizer, files, out, batch_size, device),
        HfTask::Embedding => embeddings(
            dir,
            &tokenizer,
            files,
            out,
            (options.pooling, batch_size),
            device,
        ),
        HfTask::Summary => {
            let (prefix, max_new_tokens) = summary_settings(dir, &config, options)?;
            summarise::summarise(
                dir,
                &tokenizer,
                files,
                out,
                (prefix.as_str(), max_new_tokens, batch_size),
                device,
            )
        }
    }
}

/// What the summarization pipeline of transformers 4 put before each document when the
/// folder names nothing (its `prefix` was empty; T5 checkpoints name this one).
const SUMMARY_PREFIX: &str = "summarize: ";

/// The prefix and the most new tokens of T5 summaries: `options`, else
/// `task_specific_params.summarization` of `config.json` (what the pipeline applied),
/// else the folder's own `prefix` and `max_length` (`generation_config.json`, then
/// `config.json`), else [`SUMMARY_PREFIX`] and transformers' `max_length` of 20. The
/// tokens generated are one fewer than `max_length`, which counts the decoder's start
/// token.
fn summary_settings(
    dir: &Path,
    config: &Value,
    options: &PipelineOptions,
) -> Result<(String, usize)> {
    let present = |v: Option<&Value>| v.filter(|x| !x.is_null()).cloned();
    let table =
        |k: &str| present(config.pointer(&format!("/task_specific_params/summarization/{k}")));
    let table_key = |k: &str| config_key(dir, &format!("task_specific_params.summarization.{k}"));
    let prefix = match (
        &options.prefix,
        table("prefix"),
        present(config.get("prefix")),
    ) {
        (Some(p), _, _) => p.clone(),
        (None, Some(v), _) | (None, None, Some(v)) => match v.as_str() {
            Some(p) => p.to_string(),
            None => {
                return Err(FinetuneError::config(
                    table_key("prefix"),
                    format!("must be a string, not {v}"),
                ));
            }
        },
        (None, None, None) => SUMMARY_PREFIX.to_string(),
    };
    if let Some(n) = options.max_new_tokens {
        if n == 0 {
            return Err(FinetuneError::config(
                "--max-new-tokens",
                "must be at least 1",
            ));
        }
        return Ok((prefix, n));
    }
    let generation_path = dir.join("generation_config.json");
    let generation = if generation_path.is_file() {
        present(read_json(&generation_path)?.get("max_length"))
    } else {
        None
    };
    let (key, found) = match (
        table("max_length"),
        generation,
        present(config.get("max_length")),
    ) {
        (Some(v), _, _) => (table_key("max_length"), v),
        (None, Some(v), _) => (format!("{}: max_length", generation_path.display()), v),
        (None, None, Some(v)) => (config_key(dir, "max_length"), v),
        (None, None, None) => return Ok((prefix, 19)),
    };
    match found.as_u64() {
        Some(n) if n >= 2 => Ok((prefix, n as usize - 1)),
        _ => Err(FinetuneError::config(
            key,
            format!(
                "must be an integer of at least 2 (the decoder's start token and one more), \
                 not {found}"
            ),
        )),
    }
}

/// A JSON file (a UTF-8 BOM allowed).
pub(crate) fn read_json(path: &Path) -> Result<Value> {
    let text = std::fs::read_to_string(path).map_err(|e| FinetuneError::io(path, e))?;
    let text = text.strip_prefix('\u{feff}').unwrap_or(&text);
    serde_json::from_str(text).map_err(|e| FinetuneError::io(path, format!("not valid JSON: {e}")))
}

/// The key `key` of `dir/config.json`, as error messages name it.
fn config_key(dir: &Path, key: &str) -> String {
    format!("{}: {key}", dir.join("config.json").display())
}

/// `id2label` of `config` for a head of `outputs` outputs: the names in id order, or
/// `LABEL_i` when the config has none (as `transformers` names them).
fn label_names(dir: &Path, config: &Value, outputs: usize) -> Result<Vec<String>> {
    let bad = |message: String| FinetuneError::config(config_key(dir, "id2label"), message);
    match config.get("id2label") {
        None | Some(Value::Null) => Ok((0..outputs).map(|i| format!("LABEL_{i}")).collect()),
        Some(Value::Object(table)) => {
            if table.len() != outputs {
                return Err(bad(format!(
                    "{} labels, but the classifier has {outputs} outputs",
                    table.len()
                )));
            }
            (0..outputs)
                .map(|i| match table.get(&i.to_string()) {
                    Some(Value::String(name)) => Ok(name.clone()),
                    Some(other) => Err(bad(format!(
                        "the label of id {i} must be a string, not {other}"
                    ))),
                    None => Err(bad(format!(
                        "no label for id {i} (ids must be 0 to {})",
                        outputs - 1
                    ))),
                })
                .collect()
        }
        Some(other) => Err(bad(format!(
            "must be an object of ids to label names, not {other}"
        ))),
    }
}

/// Whether a sequence head of `outputs` outputs predicts a score: `problem_type =
/// "regression"`, or a single output. A multi-label head (a sigmoid per label) is refused.
fn is_regression(dir: &Path, config: &Value, outputs: usize) -> Result<bool> {
    match config.get("problem_type").and_then(Value::as_str) {
        Some("regression") => Ok(true),
        Some("multi_label_classification") => Err(FinetuneError::config(
            config_key(dir, "problem_type"),
            "multi_label_classification (a sigmoid per label) is not supported: manabi \
             predicts one class per example",
        )),
        _ => Ok(outputs == 1),
    }
}

/// The first record of a `.jsonl` data file (`None` for a text file).
fn first_record(path: &Path) -> Result<Option<(usize, Value)>> {
    let name = path.to_string_lossy();
    if !(name.ends_with(".jsonl") || name.ends_with(".jsonl.gz")) {
        return Ok(None);
    }
    match manabi_tokenize::read_jsonl(path).next() {
        Some(line) => {
            let line = line?;
            Ok(Some((line.line, line.value)))
        }
        None => Err(FinetuneError::io(path, "no examples in this file")),
    }
}

/// Whether the sequence examples of `files` are pairs, and the field renames that read
/// them: JGLUE's `sentence` / `sentence1` + `sentence2`, or the pipeline's `text` /
/// `text` + `text_pair`, as the first line of the first file has them.
fn layout(files: &[PathBuf]) -> Result<(bool, FieldMap)> {
    let path = &files[0];
    let Some((line, v)) = first_record(path)? else {
        return Err(FinetuneError::io(
            path,
            "a classifier reads JSONL (`sentence`, or `sentence1` and `sentence2`)",
        ));
    };
    let has = |k: &str| v.get(k).is_some();
    let renamed = |pairs: &[(&str, &str)]| -> FieldMap {
        pairs
            .iter()
            .map(|(canonical, name)| (canonical.to_string(), name.to_string()))
            .collect()
    };
    Ok(if has("sentence1") {
        (true, FieldMap::new())
    } else if has("text_pair") {
        (
            true,
            renamed(&[("sentence1", "text"), ("sentence2", "text_pair")]),
        )
    } else if has("sentence") {
        (false, FieldMap::new())
    } else if has("text") {
        (false, renamed(&[("sentence", "text")]))
    } else {
        return Err(FinetuneError::Data {
            path: path.clone(),
            line,
            message: "expected `sentence` (or `text`) for one text, or `sentence1` and \
                      `sentence2` (or `text` and `text_pair`) for a pair"
                .into(),
        });
    })
}

/// The most tokens and the vocabulary of a loaded body of either kind (`bert`: the
/// config of a BERT model with its head).
fn sizes<B>(model: &Loaded<B>, bert: impl Fn(&B) -> &manabi_model::ModelConfig) -> (usize, usize) {
    let cfg = match model {
        Loaded::Decoder(m) => m.lm.config(),
        Loaded::Bert(m) => bert(&**m),
    };
    (cfg.max_positions, cfg.vocab_size)
}

/// `*ForSequenceClassification`: classes (softmax, label order) or a score per example.
fn sequence(
    dir: &Path,
    config: &Value,
    tokenizer: &TextTokenizer,
    files: &[PathBuf],
    out: &Path,
    batch_size: usize,
    device: &Device,
) -> Result<SplitReport> {
    let (model, head) = load_seq_classifier(dir, device)?;
    let (max_positions, vocab) = sizes(&model, |m| m.bert.config());
    manabi_model::open::check_tokenizer(tokenizer.vocab_size(), tokenizer.path(), vocab)?;
    let regression = is_regression(dir, config, head.labels)?;
    let names = if regression {
        Vec::new()
    } else {
        label_names(dir, config, head.labels)?
    };
    let (pair, fields) = layout(files)?;
    let kind = match (regression, pair) {
        (false, false) => TaskKind::Classification,
        (false, true) => TaskKind::Nli,
        (true, false) => TaskKind::Regression,
        (true, true) => TaskKind::Sts,
    };
    let specials = Specials::of(tokenizer)?;
    let framing = match model.family() {
        Family::Bert => Framing::of(Family::Bert, tokenizer, specials.eos)?,
        _ => Framing::Own,
    };
    let mut settings = TaskSettings::new(kind);
    settings.labels = names.clone();
    settings.fields = fields;
    settings.max_length = max_positions;
    let examples = read_examples(files, kind, &settings.fields, false)?;
    let set = encode(&examples, &settings, &names, tokenizer, framing)?;
    if set.cut > 0 {
        tracing::warn!(
            "{} inputs cut to the model's {max_positions} positions",
            set.cut
        );
    }
    evaluate_rows(
        &model.valid(),
        &settings,
        &examples,
        &set.rows,
        None,
        specials.pad,
        batch_size,
        out,
        device,
    )
}

/// `*ForTokenClassification`: entities, grouped as the pipeline's `simple` aggregation.
fn token(
    dir: &Path,
    config: &Value,
    tokenizer: &TextTokenizer,
    files: &[PathBuf],
    out: &Path,
    batch_size: usize,
    device: &Device,
) -> Result<SplitReport> {
    let (model, head) = load_tagger(dir, device)?;
    let (max_positions, vocab) = sizes(&model, |m| m.bert.config());
    manabi_model::open::check_tokenizer(tokenizer.vocab_size(), tokenizer.path(), vocab)?;
    let names = label_names(dir, config, head.labels)?;
    let specials = Specials::of(tokenizer)?;
    crate::ner::pipeline::predict_entities(
        &model.valid(),
        &names,
        tokenizer,
        files,
        (specials.pad, specials.eos),
        (max_positions, batch_size),
        out,
        device,
    )
}

/// Whether the first line of `files` is a scored pair (JSTS layout).
fn scored_pairs(files: &[PathBuf]) -> Result<bool> {
    Ok(first_record(&files[0])?.is_some_and(|(_, v)| {
        v.get("sentence1").is_some() && v.get("sentence2").is_some() && v["label"].is_number()
    }))
}

/// `BertModel`: a vector per sentence (`{"text", "embedding"}` lines, as `manabi embed`),
/// or, for scored pairs, their cosines and STS Pearson / Spearman. A sentence-transformers
/// folder ([`st`]) pools, cuts, lower-cases and normalises as its modules say; `pooling`
/// (`--pooling`) overrides its pooling, and is mean without either.
fn embeddings(
    dir: &Path,
    tokenizer: &TextTokenizer,
    files: &[PathBuf],
    out: &Path,
    (pooling, batch_size): (Option<Pooling>, usize),
    device: &Device,
) -> Result<SplitReport> {
    let modules = st::read(dir)?;
    let pooling = pooling
        .or(modules.as_ref().map(|m| m.pooling))
        .unwrap_or_default();
    if pooling == Pooling::Last {
        return Err(FinetuneError::config(
            "--pooling",
            "a BERT encoder pools by `cls` or `mean`",
        ));
    }
    let model = SentenceModel::load(dir, device)?;
    let vocab = match &model {
        SentenceModel::Bert(m) => m.config().vocab_size,
        SentenceModel::Decoder(m) => m.config().vocab_size,
    };
    manabi_model::open::check_tokenizer(tokenizer.vocab_size(), tokenizer.path(), vocab)?;
    // sentence-transformers reads `max_seq_length`, else the tokenizer's
    // `model_max_length` (both counting the special tokens), within the model's positions.
    let mut max_length = model.max_positions();
    if let Some(m) = &modules
        && let Some(n) = m.max_seq_length.or(tokenizer.model_max_length())
    {
        max_length = max_length.min(n);
    }
    let lower = modules.as_ref().is_some_and(|m| m.lower);
    if scored_pairs(files)? {
        if lower {
            return Err(FinetuneError::config(
                "--data",
                format!(
                    "{}: `do_lower_case` with scored pairs is not supported (embed the \
                     sentences instead)",
                    dir.join("sentence_bert_config.json").display()
                ),
            ));
        }
        let mut settings = TaskSettings::new(TaskKind::Sts);
        settings.pooling = pooling;
        settings.max_length = max_length;
        drop(model);
        return crate::pairs::evaluate_pairs(
            dir, &settings, tokenizer, files, out, batch_size, device,
        );
    }
    let specials = Specials::of(tokenizer)?;
    let texts = read_sentences(files, &FieldMap::new())?;
    let inputs: Vec<String> = if lower {
        texts.iter().map(|t| t.to_lowercase()).collect()
    } else {
        texts.clone()
    };
    let mut vectors = embed_texts(
        &model,
        tokenizer,
        &inputs,
        (pooling, max_length),
        (model.framing(tokenizer)?, specials.pad),
        batch_size,
        device,
    )?;
    if modules.as_ref().is_some_and(|m| m.normalize) {
        vectors.iter_mut().for_each(|v| st::normalize(v));
    }
    write_embeddings(out, &texts, &vectors)?;
    Ok(SplitReport {
        name: String::new(),
        examples: texts.len(),
        metrics: Vec::new(),
        majority_baseline: None,
        predictions: out.to_path_buf(),
    })
}
