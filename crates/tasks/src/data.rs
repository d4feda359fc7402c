//! Labelled data of sequence tasks in JGLUE's field names: `{"sentence", "label"}`
//! (MARC-ja: classification; a score: regression), `{"sentence1", "sentence2", "label"}`
//! (JNLI: a class; JSTS: a similarity score). Fields can be renamed. Every bad line is an error naming
//! file, line and field; nothing is skipped silently.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use manabi_finetune::error::{FinetuneError, Result};
use serde::{Deserialize, Serialize};

/// What a task predicts from its text fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", try_from = "String")]
pub enum TaskKind {
    /// One sentence, one class (sentiment): accuracy, macro-F1.
    Classification,
    /// A sentence pair, one class (entailment / contradiction / neutral): accuracy, macro-F1.
    Nli,
    /// A sentence pair, one score (similarity): Pearson, Spearman.
    Sts,
    /// One sentence, one score (a rating, a reward): Pearson, Spearman.
    Regression,
    /// A text with entity spans, a tag per token: entity-level precision, recall, F1.
    Ner,
    /// Sentences, for sentence embeddings (unsupervised SimCSE): STS Spearman.
    Simcse,
}

impl TaskKind {
    /// Canonical text fields of one example.
    pub fn text_fields(self) -> &'static [&'static str] {
        match self {
            Self::Classification | Self::Regression => &["sentence"],
            Self::Nli | Self::Sts => &["sentence1", "sentence2"],
            Self::Ner => &["text"],
            Self::Simcse => &["sentence"],
        }
    }

    /// Whether the label is a number to regress on rather than a class.
    pub fn regression(self) -> bool {
        matches!(self, Self::Sts | Self::Regression)
    }
}

impl TryFrom<String> for TaskKind {
    type Error = String;

    fn try_from(name: String) -> std::result::Result<Self, String> {
        Ok(match name.as_str() {
            "classification" => Self::Classification,
            "nli" => Self::Nli,
            "sts" => Self::Sts,
            "regression" => Self::Regression,
            "ner" => Self::Ner,
            "simcse" => Self::Simcse,
            s if s.starts_with("summar") => {
                return Err(format!(
                    "`{name}` is generation: a summary trains with `manabi sft` \
                     (configs/sft/summarise.toml, ROUGE-1/2/L at evaluation)"
                ));
            }
            _ => {
                return Err(format!(
                    "unknown task `{name}`, expected classification, nli, sts, regression, ner or simcse"
                ));
            }
        })
    }
}

/// A gold label.
#[derive(Debug, Clone, PartialEq)]
pub enum Label {
    /// A class name (integers in the file are read as their decimal text).
    Class(String),
    /// A score.
    Score(f64),
}

/// One example and where it came from.
#[derive(Debug, Clone, PartialEq)]
pub struct Example {
    /// Its text fields, in [`TaskKind::text_fields`] order.
    pub texts: Vec<String>,
    /// The gold label; `None` only when labels were not required (prediction).
    pub label: Option<Label>,
    /// File and 1-based line.
    pub source: (PathBuf, usize),
}

/// Field renames: canonical name = name in the file (`sentence = "review_body"`).
pub type FieldMap = BTreeMap<String, String>;

fn field<'a>(fields: &'a FieldMap, name: &'a str) -> &'a str {
    fields.get(name).map_or(name, String::as_str)
}

/// Reads every example of `paths`. With `require_label`, a line without a label is an
/// error; otherwise a missing label is `None`.
pub fn read_examples(
    paths: &[PathBuf],
    kind: TaskKind,
    fields: &FieldMap,
    require_label: bool,
) -> Result<Vec<Example>> {
    let mut out = Vec::new();
    for path in paths {
        let before = out.len();
        read_file(path, kind, fields, require_label, &mut out)?;
        if out.len() == before {
            return Err(FinetuneError::io(path, "no examples in this file"));
        }
    }
    Ok(out)
}

fn read_file(
    path: &Path,
    kind: TaskKind,
    fields: &FieldMap,
    require_label: bool,
    out: &mut Vec<Example>,
) -> Result<()> {
    let label_field = field(fields, "label");
    for record in manabi_tokenize::read_jsonl(path) {
        let manabi_tokenize::JsonLine { line: n, value: v } = record?;
        let err = |message: String| FinetuneError::Data {
            path: path.to_path_buf(),
            line: n,
            message,
        };
        let obj = v
            .as_object()
            .ok_or_else(|| err("expected a JSON object".into()))?;
        let mut texts = Vec::new();
        for &canonical in kind.text_fields() {
            let name = field(fields, canonical);
            let text = match obj.get(name) {
                Some(serde_json::Value::String(s)) => s,
                Some(_) => return Err(err(format!("field `{name}` must be a string"))),
                None => return Err(err(format!("missing field `{name}`"))),
            };
            if text.trim().is_empty() {
                return Err(err(format!("field `{name}` is empty")));
            }
            texts.push(text.clone());
        }
        let label = match (obj.get(label_field), kind.regression()) {
            (None | Some(serde_json::Value::Null), _) if require_label => {
                return Err(err(format!("missing field `{label_field}`")));
            }
            (None | Some(serde_json::Value::Null), _) => None,
            (Some(v), true) => match v.as_f64() {
                Some(x) if x.is_finite() => Some(Label::Score(x)),
                _ => {
                    return Err(err(format!(
                        "field `{label_field}` must be a number (a similarity score), got {v}"
                    )));
                }
            },
            (Some(serde_json::Value::String(s)), false) if !s.trim().is_empty() => {
                Some(Label::Class(s.clone()))
            }
            (Some(serde_json::Value::String(_)), false) => {
                return Err(err(format!("field `{label_field}` is empty")));
            }
            (Some(serde_json::Value::Number(x)), false) if x.is_i64() || x.is_u64() => {
                Some(Label::Class(x.to_string()))
            }
            (Some(v), false) => {
                return Err(err(format!(
                    "field `{label_field}` must be a class name or an integer, got {v}"
                )));
            }
        };
        out.push(Example {
            texts,
            label,
            source: (path.to_path_buf(), n),
        });
    }
    Ok(())
}

/// The label set: `given` when not empty, else the sorted distinct classes of `train`.
/// Two classes of the data that differ only in surrounding whitespace (`"pos"`,
/// `"pos "`) are legal but almost surely one class: a warning names the line of the
/// second.
pub fn label_set(given: &[String], train: &[Example]) -> Vec<String> {
    if !given.is_empty() {
        return given.to_vec();
    }
    let mut names: Vec<String> = train
        .iter()
        .filter_map(|e| match &e.label {
            Some(Label::Class(c)) => Some(c.clone()),
            _ => None,
        })
        .collect();
    names.sort();
    names.dedup();
    for (i, a) in names.iter().enumerate() {
        let Some(b) = names[i + 1..].iter().find(|b| b.trim() == a.trim()) else {
            continue;
        };
        let odd = if a.trim() == a.as_str() { b } else { a };
        if let Some(e) = train
            .iter()
            .find(|e| matches!(&e.label, Some(Label::Class(c)) if c == odd))
        {
            tracing::warn!(
                "{}:{}: label \"{odd}\" differs from \"{}\" only in surrounding whitespace; \
                 they are two classes",
                e.source.0.display(),
                e.source.1,
                if odd == a { b } else { a }
            );
        }
    }
    names
}

/// Index of each example's class in `names`; a class outside the set is an error naming
/// its file and line. Examples without a label get `None`.
pub fn class_ids(examples: &[Example], names: &[String]) -> Result<Vec<Option<usize>>> {
    examples
        .iter()
        .map(|e| match &e.label {
            Some(Label::Class(c)) => {
                names
                    .iter()
                    .position(|n| n == c)
                    .map(Some)
                    .ok_or_else(|| FinetuneError::Data {
                        path: e.source.0.clone(),
                        line: e.source.1,
                        message: format!("unknown label \"{c}\" (labels: {})", names.join(", ")),
                    })
            }
            _ => Ok(None),
        })
        .collect()
}

/// Examples per class, in `names` order.
pub fn class_counts(ids: &[Option<usize>], classes: usize) -> Vec<usize> {
    let mut counts = vec![0; classes];
    for &i in ids.iter().flatten() {
        counts[i] += 1;
    }
    counts
}
