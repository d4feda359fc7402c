//! The model config `manabi plan` is given: a folder, a `config.json`, a `model.toml` or
//! a recipe's `[model]` table.

use super::*;

/// The `ModelConfig` of what a user names: a model or run folder
/// ([`crate::open::locate`]: `model.toml` or `config.json`), a `config.json` file, or a
/// TOML file that is a `model.toml` or holds one as its `[model]` table (a pre-training
/// recipe: its `vocab_size = 0`, the tokenizer's size, becomes `[data.tokenizer]
/// vocab_size`). Validated; errors name the file.
pub fn read_config(path: &Path) -> Result<ModelConfig> {
    let cfg = if path.is_dir() {
        let found = crate::open::locate(path)?;
        match found.layout {
            Layout::Native => read_toml(&found.dir.join("model.toml"))?,
            Layout::HuggingFace => crate::hf::read_config(&found.dir)?,
        }
    } else if !path.exists() {
        return Err(ModelError::File {
            path: path.to_path_buf(),
            message: "no such file or folder (give a model folder, model.toml or config.json)"
                .into(),
        });
    } else if path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("json"))
    {
        let text = read_text(path)?;
        ModelConfig::from_hf_json(text.strip_prefix('\u{feff}').unwrap_or(&text))
            .map_err(|e| in_file(path, e))?
    } else {
        read_toml(path)?
    };
    cfg.validate().map_err(|e| in_file(path, e))?;
    Ok(cfg)
}

fn read_text(path: &Path) -> Result<String> {
    std::fs::read_to_string(path).map_err(|e| ModelError::File {
        path: path.to_path_buf(),
        message: e.to_string(),
    })
}

/// A config error with the file in front of its key.
fn in_file(path: &Path, e: ModelError) -> ModelError {
    match e {
        ModelError::Config { key, message } if !key.starts_with(&*path.to_string_lossy()) => {
            ModelError::Config {
                key: format!("{}: {key}", path.display()),
                message,
            }
        }
        other => other,
    }
}

/// A `model.toml`, or the `[model]` table of a recipe.
fn read_toml(path: &Path) -> Result<ModelConfig> {
    let text = read_text(path)?;
    let bad = |message: String| ModelError::Config {
        key: path.display().to_string(),
        message,
    };
    let mut table: toml::Table = toml::from_str(&text).map_err(|e| bad(e.message().into()))?;
    let recipe_vocab = table
        .get("data")
        .and_then(|d| d.get("tokenizer"))
        .and_then(|t| t.get("vocab_size"))
        .and_then(toml::Value::as_integer);
    let model = match table.remove("model") {
        Some(toml::Value::Table(m)) => m,
        Some(_) => return Err(bad("`model` is not a table".into())),
        None => table,
    };
    let mut cfg =
        ModelConfig::deserialize(toml::Value::Table(model)).map_err(|e| bad(e.to_string()))?;
    if cfg.vocab_size == 0 {
        match recipe_vocab {
            Some(v) if v > 0 => cfg.vocab_size = v as usize,
            _ => {
                return Err(ModelError::Config {
                    key: format!("{}: model.vocab_size", path.display()),
                    message: "0 stands for the tokenizer's size, which a plan cannot know: \
                              set it"
                        .into(),
                });
            }
        }
    }
    Ok(cfg)
}
