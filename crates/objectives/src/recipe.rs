//! Recipe files: TOML read with `--set section.key=value` overrides, every recipe's reader
//! (`configs/**/*.toml`). Errors name the key (`train.batch_size`), and its line in the file
//! or that it came from `--set`, through `serde_path_to_error`.

use std::path::Path;

use crate::config::invalid;
use crate::error::{Result, TrainError};

/// A recipe (`configs/**/*.toml`): read from TOML with `--set` overrides, then checked.
pub trait Recipe: serde::de::DeserializeOwned {
    /// The error type of the crate that owns the recipe.
    type Error: RecipeError;

    /// Checks values the types do not.
    fn validate(&self) -> std::result::Result<(), Self::Error>;

    /// Reads `path`, applies `overrides` (`section.key=value`) and checks the result;
    /// errors name the file, the key and its line (or `--set`).
    fn load(path: &Path, overrides: &[String]) -> std::result::Result<Self, Self::Error> {
        let text = std::fs::read_to_string(path).map_err(|e| TrainError::io(path, e))?;
        let cfg: Self = parse_recipe(&text, overrides).map_err(|e| in_file(path, e))?;
        cfg.validate()
            .map_err(|e| locate(e, Some(path), &text, overrides))?;
        Ok(cfg)
    }

    /// Parses TOML text with overrides and checks the result; errors name the key and
    /// its line (or `--set`).
    fn parse(text: &str, overrides: &[String]) -> std::result::Result<Self, Self::Error> {
        let cfg: Self = parse_recipe(text, overrides)?;
        cfg.validate()
            .map_err(|e| locate(e, None, text, overrides))?;
        Ok(cfg)
    }
}

/// The error of a crate that owns recipes: it may be a config error naming a key, which
/// the reader then completes with where the key was set.
pub trait RecipeError: From<TrainError> {
    /// The key and message of a config error; `None` for other errors.
    fn config_parts(&mut self) -> Option<(&mut String, &mut String)>;
}

impl RecipeError for TrainError {
    fn config_parts(&mut self) -> Option<(&mut String, &mut String)> {
        match self {
            Self::Config { key, message } => Some((key, message)),
            _ => None,
        }
    }
}

/// A validation error `e` with the line of its key in `text` (or `--set`) added to the
/// message, and the file in front of the key.
fn locate<E: RecipeError>(mut e: E, path: Option<&Path>, text: &str, overrides: &[String]) -> E {
    if let Some((key, message)) = e.config_parts() {
        let set = overrides.iter().any(|o| {
            o.split_once('=')
                .is_some_and(|(k, _)| k.trim() == key.as_str())
        });
        if set {
            message.push_str(" (from --set)");
        } else if let Some(line) = line_of(text, key) {
            message.push_str(&format!(" (line {line})"));
        }
        if let Some(path) = path {
            *key = format!("{}: {key}", path.display());
        }
    }
    e
}

/// A config error with the file it came from in front of its key.
pub fn in_file(path: &Path, e: TrainError) -> TrainError {
    match e {
        TrainError::Config { key, message } => TrainError::Config {
            key: format!("{}: {key}", path.display()),
            message,
        },
        other => other,
    }
}

/// Reads the recipe file `path` with [`parse_recipe`]; errors name the file and the key.
pub fn read_recipe<T: serde::de::DeserializeOwned>(path: &Path, overrides: &[String]) -> Result<T> {
    let text = std::fs::read_to_string(path).map_err(|e| TrainError::io(path, e))?;
    parse_recipe(&text, overrides).map_err(|e| in_file(path, e))
}

/// Parses a recipe: TOML `text`, then `overrides` (`section.key=value`, the value in TOML
/// syntax or a bare string). Errors name the key (`train.batch_size`) and, when it comes
/// from the text, its line.
pub fn parse_recipe<T: serde::de::DeserializeOwned>(text: &str, overrides: &[String]) -> Result<T> {
    let mut value: toml::Table = toml::from_str(text).map_err(|e| {
        let line = e
            .span()
            .map(|s| {
                format!(
                    " (line {})",
                    text[..s.start.min(text.len())].lines().count().max(1)
                )
            })
            .unwrap_or_default();
        invalid("toml", format!("{}{line}", e.message()))
    })?;
    let mut overridden = Vec::new();
    for o in overrides {
        let (key, raw) = o
            .split_once('=')
            .ok_or_else(|| invalid(o, "expected section.key=value"))?;
        let parsed: toml::Value = toml::from_str::<toml::Table>(&format!("v = {raw}"))
            .ok()
            .and_then(|mut t| t.remove("v"))
            .unwrap_or_else(|| toml::Value::String(raw.to_string()));
        set_dotted(&mut value, key.trim(), parsed)?;
        overridden.push(key.trim().to_string());
    }
    serde_path_to_error::deserialize(toml::Value::Table(value)).map_err(|e| {
        let path = e.path().to_string();
        let key = if path == "." {
            "toml".to_string()
        } else {
            path
        };
        // A value read by a deserializer of its own (`[model]` of a pre-training recipe)
        // names the key inside it first: "`family`: unknown variant …".
        let message = e.inner().message().to_string();
        let (key, message) = match message
            .strip_prefix('`')
            .and_then(|m| m.split_once("`: "))
            .filter(|(inner, _)| !inner.is_empty() && !inner.contains(char::is_whitespace))
        {
            Some((inner, rest)) => (format!("{key}.{inner}"), rest.to_string()),
            None => (key, message),
        };
        let whence = if overridden.contains(&key) {
            " (from --set)".to_string()
        } else {
            line_of(text, &key).map_or(String::new(), |l| format!(" (line {l})"))
        };
        invalid(&key, format!("{message}{whence}"))
    })
}

/// The 1-based line of `section.key` in a TOML text (plain `[section]` + `key =` layout,
/// or an inline `section = {{ … }}`).
fn line_of(text: &str, dotted: &str) -> Option<usize> {
    let (section, key) = dotted.rsplit_once('.').unwrap_or(("", dotted));
    let mut current = String::new();
    for (i, line) in text.lines().enumerate() {
        let l = line.trim();
        if let Some(h) = l.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
            current = h.trim().to_string();
            continue;
        }
        let name = l.split('=').next().unwrap_or("").trim();
        if current == section && name == key {
            return Some(i + 1);
        }
    }
    None
}

fn set_dotted(table: &mut toml::Table, key: &str, value: toml::Value) -> Result<()> {
    let mut parts: Vec<&str> = key.split('.').collect();
    let last = parts
        .pop()
        .filter(|s| !s.is_empty())
        .ok_or_else(|| invalid(key, "empty key"))?;
    let mut cur = table;
    for p in parts {
        cur = cur
            .entry(p.to_string())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()))
            .as_table_mut()
            .ok_or_else(|| invalid(key, format!("`{p}` is not a section")))?;
    }
    cur.insert(last.to_string(), value);
    Ok(())
}
