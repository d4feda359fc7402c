//! Summaries with a Hugging Face `T5ForConditionalGeneration` folder, as the
//! `summarization` pipeline of transformers 4 made them (transformers 5 removed it):
//! each document after a prefix (`summarize: `), inside the tokenizer's special tokens
//! (T5's `</s>`), decoded greedily until an end-of-sequence id of the folder or the most
//! new tokens, the summary decoded without special tokens. Always greedy: the beam
//! search, `min_length` and `no_repeat_ngram_size` a `task_specific_params` table may
//! ask for are not applied.

use std::path::{Path, PathBuf};

use burn::prelude::*;
use manabi_finetune::error::{FinetuneError, Result};
use manabi_finetune::metrics::rouge_f1;
use manabi_model::T5GreedyOptions;
use manabi_tokenize::TextTokenizer;

use crate::report::SplitReport;

/// One document: the field it came from, its text, and its gold summary when known.
#[derive(Debug, Clone, PartialEq)]
struct Document {
    field: &'static str,
    text: String,
    summary: Option<String>,
}

/// The documents of `files`: `.jsonl` lines give `document` (manabi's summarise layout)
/// or `text`, and `summary` when they have one; any other file one document per
/// non-empty line.
fn read_documents(files: &[PathBuf]) -> Result<Vec<Document>> {
    let mut out = Vec::new();
    for path in files {
        let before = out.len();
        let name = path.to_string_lossy();
        if !(name.ends_with(".jsonl") || name.ends_with(".jsonl.gz")) {
            for line in manabi_tokenize::read_text_lines(path) {
                let (_, text) = line?;
                out.push(Document {
                    field: "document",
                    text: text.trim().to_string(),
                    summary: None,
                });
            }
        } else {
            for record in manabi_tokenize::read_jsonl(path) {
                let manabi_tokenize::JsonLine { line, value: v } = record?;
                let err = |message: String| FinetuneError::Data {
                    path: path.clone(),
                    line,
                    message,
                };
                let field = if v.get("document").is_some() {
                    "document"
                } else {
                    "text"
                };
                let text = match v[field].as_str() {
                    Some(t) if !t.trim().is_empty() => t.to_string(),
                    _ => {
                        return Err(err(
                            "expected a non-empty string field `document` (or `text`)".into(),
                        ));
                    }
                };
                let summary = match &v["summary"] {
                    serde_json::Value::Null => None,
                    serde_json::Value::String(s) => Some(s.clone()),
                    other => {
                        return Err(err(format!(
                            "field `summary` must be a string, not {other}"
                        )));
                    }
                };
                out.push(Document {
                    field,
                    text,
                    summary,
                });
            }
        }
        if out.len() == before {
            return Err(FinetuneError::io(path, "no documents in this file"));
        }
    }
    Ok(out)
}

/// Summarises the documents of `files` with the T5 folder `dir` — `settings`: the
/// prefix, the most new tokens, documents per batch — and writes one line per document
/// to `out`: its text field, the gold `summary` when known, and `pred`. With gold
/// summaries for all, ROUGE-1/2/L F1 (`rouge1`, `rouge2`, `rougeL`).
pub(crate) fn summarise(
    dir: &Path,
    tokenizer: &TextTokenizer,
    files: &[PathBuf],
    out: &Path,
    (prefix, max_new_tokens, batch_size): (&str, usize, usize),
    device: &Device,
) -> Result<SplitReport> {
    let model = manabi_finetune::open(dir, device)?.into_t5()?;
    manabi_model::open::check_tokenizer(
        tokenizer.vocab_size(),
        tokenizer.path(),
        model.config().vocab_size,
    )?;
    let docs = read_documents(files)?;
    let options = T5GreedyOptions {
        max_new_tokens,
        use_cache: true,
        eos_ids: manabi_model::open::eos_ids(dir)?,
    };
    let mut summaries = Vec::with_capacity(docs.len());
    for chunk in docs.chunks(batch_size.max(1)) {
        let sources = chunk
            .iter()
            .map(|d| tokenizer.encode_with_specials(&format!("{prefix}{}", d.text)))
            .collect::<std::result::Result<Vec<_>, _>>()?;
        for ids in model.greedy(&sources, &options)? {
            summaries.push(tokenizer.decode(&ids, true)?);
        }
    }
    let mut lines = String::new();
    for (d, pred) in docs.iter().zip(&summaries) {
        let mut obj = serde_json::Map::new();
        obj.insert(d.field.into(), d.text.clone().into());
        if let Some(gold) = &d.summary {
            obj.insert("summary".into(), gold.clone().into());
        }
        obj.insert("pred".into(), pred.clone().into());
        lines.push_str(&serde_json::Value::Object(obj).to_string());
        lines.push('\n');
    }
    std::fs::write(out, lines).map_err(|e| FinetuneError::io(out, e))?;
    let gold: Option<Vec<(&str, &str)>> = docs
        .iter()
        .zip(&summaries)
        .map(|(d, p)| d.summary.as_deref().map(|g| (g, p.as_str())))
        .collect();
    let metrics = match gold {
        Some(pairs) => {
            let [r1, r2, rl] = rouge_f1(&pairs);
            vec![
                ("rouge1".into(), r1),
                ("rouge2".into(), r2),
                ("rougeL".into(), rl),
            ]
        }
        None => Vec::new(),
    };
    Ok(SplitReport {
        name: String::new(),
        examples: docs.len(),
        metrics,
        majority_baseline: None,
        predictions: out.to_path_buf(),
    })
}
