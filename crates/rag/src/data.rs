//! Reading what RAG indexes and evaluates: passages (text, JSONL, folders), stored
//! vectors and questions.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use manabi_finetune::error::{FinetuneError, Result};

/// One retrievable passage.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Passage {
    /// Its id (`id` of a JSONL line, or `FILE#N`).
    pub id: String,
    /// Its text.
    pub text: String,
}

pub(crate) fn err(path: &Path, e: impl std::fmt::Display) -> FinetuneError {
    FinetuneError::io(path, e)
}

/// Reads passages: `.jsonl` (or `.jsonl.gz`) lines `{"text", "id"?}`; other files give
/// one passage per paragraph (separated by blank or whitespace-only lines); folders are
/// read recursively in name order. Files go through [`manabi_tokenize::jsonl`].
pub fn read_passages(paths: &[PathBuf]) -> Result<Vec<Passage>> {
    let mut out = Vec::new();
    let mut files = Vec::new();
    for p in paths {
        collect(p, &mut files)?;
    }
    for path in &files {
        let before = out.len();
        let name = path.to_string_lossy();
        if name.ends_with(".jsonl") || name.ends_with(".jsonl.gz") {
            for record in manabi_tokenize::read_jsonl(path) {
                let manabi_tokenize::JsonLine { line, value: v } = record?;
                let bad = |m: String| FinetuneError::Data {
                    path: path.clone(),
                    line,
                    message: m,
                };
                let t = v["text"]
                    .as_str()
                    .filter(|t| !t.trim().is_empty())
                    .ok_or_else(|| bad("missing or empty field `text`".into()))?;
                let id = match &v["id"] {
                    serde_json::Value::String(s) => s.clone(),
                    serde_json::Value::Number(n) => n.to_string(),
                    _ => format!("{}#{}", path.display(), line),
                };
                out.push(Passage {
                    id,
                    text: t.to_string(),
                });
            }
        } else {
            // Paragraphs: runs of non-blank lines. The reader skips blank lines but counts
            // them, so a gap in the line numbers is a paragraph break.
            let mut paras: Vec<String> = Vec::new();
            let mut para = String::new();
            let mut last = 0;
            for l in manabi_tokenize::read_text_lines(path) {
                let (line, text) = l?;
                if line != last + 1 && !para.is_empty() {
                    paras.push(std::mem::take(&mut para));
                }
                if !para.is_empty() {
                    para.push('\n');
                }
                para.push_str(&text);
                last = line;
            }
            if !para.is_empty() {
                paras.push(para);
            }
            for (i, para) in paras
                .iter()
                .map(|p| p.trim())
                .filter(|p| !p.is_empty())
                .enumerate()
            {
                out.push(Passage {
                    id: format!("{}#{}", path.display(), i + 1),
                    text: para.to_string(),
                });
            }
        }
        if out.len() == before {
            return Err(err(path, "no passages in this file"));
        }
    }
    if out.is_empty() {
        return Err(FinetuneError::config("--docs", "no documents found"));
    }
    Ok(out)
}

fn collect(p: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    if p.is_dir() {
        let mut entries: Vec<PathBuf> = std::fs::read_dir(p)
            .map_err(|e| err(p, e))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .collect();
        entries.sort();
        for e in entries {
            collect(&e, out)?;
        }
    } else if p.exists() {
        out.push(p.to_path_buf());
    } else {
        return Err(err(p, "no such file or folder"));
    }
    Ok(())
}

pub(crate) fn read_jsonl_passages(path: &Path) -> Result<Vec<Passage>> {
    manabi_tokenize::read_jsonl(path)
        .map(|record| -> Result<Passage> {
            let manabi_tokenize::JsonLine { line, value } = record?;
            serde_json::from_value(value).map_err(|e| FinetuneError::Data {
                path: path.to_path_buf(),
                line,
                message: e.to_string(),
            })
        })
        .collect()
}

/// One evaluation question.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Question {
    /// The question.
    pub question: String,
    /// The gold answer.
    pub answer: String,
    /// Id of the passage that answers it (for recall@k).
    #[serde(default)]
    pub passage: Option<String>,
    /// The file and 1-based line it was read from ([`read_questions`]); `None` for a
    /// question built in code. Errors about the question name it.
    #[serde(skip)]
    pub source: Option<(PathBuf, usize)>,
}

impl Question {
    /// An error about this question: `file:line: message` when it came from a file, else
    /// naming its place (`number`, 1-based) in the list.
    pub(crate) fn error(&self, number: usize, message: impl Into<String>) -> FinetuneError {
        match &self.source {
            Some((path, line)) => FinetuneError::Data {
                path: path.clone(),
                line: *line,
                message: message.into(),
            },
            None => FinetuneError::config(format!("questions[{number}]"), message),
        }
    }

    /// Refuses an empty question, an empty gold answer or an empty gold passage id.
    pub(crate) fn check(&self, number: usize) -> Result<()> {
        let empty = |field: &str| self.error(number, format!("empty field `{field}`"));
        if self.question.trim().is_empty() {
            return Err(empty("question"));
        }
        if self.answer.trim().is_empty() {
            return Err(empty("answer"));
        }
        if self.passage.as_ref().is_some_and(|p| p.trim().is_empty()) {
            return Err(empty("passage"));
        }
        Ok(())
    }
}

/// Reads questions (`{"question", "answer", "passage"?}` per line). An empty question,
/// answer or passage id is an error naming its line.
pub fn read_questions(path: &Path) -> Result<Vec<Question>> {
    let mut out = Vec::new();
    for record in manabi_tokenize::read_jsonl(path) {
        let manabi_tokenize::JsonLine { line, value } = record?;
        let mut q: Question = serde_json::from_value(value).map_err(|e| FinetuneError::Data {
            path: path.to_path_buf(),
            line,
            message: format!("{e} (expected {{\"question\", \"answer\", \"passage\"?}})"),
        })?;
        q.source = Some((path.to_path_buf(), line));
        q.check(out.len() + 1)?;
        out.push(q);
    }
    if out.is_empty() {
        return Err(err(path, "no questions in this file"));
    }
    Ok(out)
}
