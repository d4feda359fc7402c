//! What a checkpoint with a sequence head holds: `head.toml` (the head's shape and label
//! names) beside `model.toml`, plus `peft.toml` when the body was adapted. Reward models,
//! classifiers and regressors all load through [`crate::load_classifier`]; the inputs of a head
//! read at each row's last token are [`pad_rows`]. Downstream tasks (`manabi-tasks`) and
//! reward models (`manabi-align`) share this module.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{FinetuneError, Result};

/// The spec file of a model with a sequence head.
pub const HEAD_FILE: &str = "head.toml";

/// `head.toml`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HeadSpec {
    /// `score`: a linear head on the last token; `token`: the same head on every token.
    pub kind: String,
    /// Outputs (1 for a reward model or a regressor).
    pub labels: usize,
    /// Label names, in output order (empty for a reward model or a regressor).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub names: Vec<String>,
}

impl HeadSpec {
    /// A `score` head with `labels` outputs named `names`.
    pub fn score(labels: usize, names: Vec<String>) -> Self {
        Self {
            kind: "score".into(),
            labels,
            names,
        }
    }

    /// A `token` head (token classification) with one output per tag in `names`.
    pub fn token(names: Vec<String>) -> Self {
        Self {
            kind: "token".into(),
            labels: names.len(),
            names,
        }
    }

    /// `head.toml` text.
    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).unwrap_or_default()
    }
}

fn read_toml<T: serde::de::DeserializeOwned>(dir: &Path, name: &str) -> Result<T> {
    let p = dir.join(name);
    let text = std::fs::read_to_string(&p).map_err(|e| FinetuneError::io(&p, e))?;
    toml::from_str(&text).map_err(|e| FinetuneError::config(p.display().to_string(), e.message()))
}

/// `head.toml` of the manabi checkpoint `dir`, its kind checked.
pub fn read_head(dir: &Path) -> Result<HeadSpec> {
    let head: HeadSpec = read_toml(dir, HEAD_FILE)?;
    if head.kind != "score" && head.kind != "token" {
        return Err(FinetuneError::config(
            format!("{}: kind", dir.join(HEAD_FILE).display()),
            format!("unknown head `{}` (expected `score` or `token`)", head.kind),
        ));
    }
    let key = format!("{}: names", dir.join(HEAD_FILE).display());
    if !head.names.is_empty() && head.names.len() != head.labels {
        return Err(FinetuneError::config(
            key,
            format!(
                "{} names for `labels = {}` outputs",
                head.names.len(),
                head.labels
            ),
        ));
    }
    check_labels(&head.names, &key)?;
    Ok(head)
}

/// `id2label` of a Hugging Face `config.json`, when it names every output and the names
/// are not the generic `LABEL_i`.
pub fn hf_label_names(dir: &Path, labels: usize) -> Vec<String> {
    let Ok(text) = std::fs::read_to_string(dir.join("config.json")) else {
        return Vec::new();
    };
    let Ok(v) = serde_json::from_str::<serde_json::Value>(&text) else {
        return Vec::new();
    };
    let names: Vec<String> = (0..labels)
        .filter_map(|i| v["id2label"][i.to_string()].as_str().map(str::to_string))
        .collect();
    let generic = names
        .iter()
        .enumerate()
        .all(|(i, n)| *n == format!("LABEL_{i}"));
    if names.len() == labels && !generic {
        for (i, n) in names.iter().enumerate() {
            if let Some(j) = names[..i].iter().position(|m| m == n) {
                tracing::warn!(
                    "{}: id2label names \"{n}\" twice (ids {j} and {i}); predictions of \
                     those outputs read the same",
                    dir.join("config.json").display()
                );
            }
        }
        names
    } else {
        Vec::new()
    }
}

/// Refuses a list of class names (or entity types) under the config `key` that holds an
/// empty name or one name twice: a repeated name would add an output no example can
/// train.
pub fn check_labels(names: &[String], key: &str) -> Result<()> {
    for (i, n) in names.iter().enumerate() {
        if n.trim().is_empty() {
            return Err(FinetuneError::config(
                key,
                format!("label {} of {} is empty", i + 1, names.len()),
            ));
        }
        if names[..i].contains(n) {
            return Err(FinetuneError::config(
                key,
                format!("\"{n}\" is listed twice"),
            ));
        }
    }
    Ok(())
}

/// Pads `rows` on the right with `pad`: `(seq, inputs, last)`, `last` the index of each
/// row's last token (where a `score` head reads it).
pub fn pad_rows(rows: &[&[u32]], pad: u32) -> (usize, Vec<u32>, Vec<usize>) {
    let seq = rows.iter().map(|r| r.len()).max().unwrap_or(1).max(1);
    let mut inputs = Vec::with_capacity(rows.len() * seq);
    let mut last = Vec::with_capacity(rows.len());
    for r in rows {
        inputs.extend_from_slice(r);
        inputs.extend(std::iter::repeat_n(pad, seq - r.len()));
        last.push(r.len().saturating_sub(1));
    }
    (seq, inputs, last)
}
