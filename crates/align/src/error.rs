//! Errors of alignment: each names the file and line, the config key or the model at fault.

use std::path::PathBuf;

/// What can go wrong while reading preference data or aligning a model.
#[derive(Debug, thiserror::Error)]
pub enum AlignError {
    /// A bad line of a preference file.
    #[error("{path}:{line}: {message}")]
    Data {
        /// The file.
        path: PathBuf,
        /// 1-based line.
        line: usize,
        /// What is wrong (names the field).
        message: String,
    },
    /// An invalid configuration value.
    #[error("invalid config `{key}`: {message}")]
    Config {
        /// The key.
        key: String,
        /// What is wrong.
        message: String,
    },
    /// A file problem.
    #[error("{path}: {message}")]
    File {
        /// The path.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
    /// From fine-tuning (models, adapters, templates).
    #[error(transparent)]
    Finetune(#[from] manabi_finetune::FinetuneError),
    /// From the trainer.
    #[error(transparent)]
    Train(#[from] manabi_objectives::TrainError),
    /// From the model crate.
    #[error(transparent)]
    Model(#[from] manabi_model::ModelError),
    /// From the tokenizer.
    #[error(transparent)]
    Tokenize(#[from] manabi_tokenize::TokenizeError),
    /// From device selection.
    #[error(transparent)]
    Device(#[from] manabi_model::DeviceError),
}

impl AlignError {
    /// A file error on `path`.
    pub fn io(path: impl Into<PathBuf>, e: impl std::fmt::Display) -> Self {
        Self::File {
            path: path.into(),
            message: e.to_string(),
        }
    }

    /// A config error on `key`.
    pub fn config(key: impl Into<String>, message: impl Into<String>) -> Self {
        Self::Config {
            key: key.into(),
            message: message.into(),
        }
    }
}

impl manabi_objectives::recipe::RecipeError for AlignError {
    fn config_parts(&mut self) -> Option<(&mut String, &mut String)> {
        match self {
            Self::Config { key, message } => Some((key, message)),
            Self::Train(e) => manabi_objectives::recipe::RecipeError::config_parts(e),
            // `[peft]` is checked by the fine-tuning crate: its key gets the file and line too.
            Self::Finetune(e) => manabi_objectives::recipe::RecipeError::config_parts(e),
            _ => None,
        }
    }
}

/// A line the shared reader ([`manabi_tokenize::jsonl`]) could not read: a `Data` error
/// at its line (a JSON error worded `not valid JSON: …`), or a `File` error when the file
/// did not open.
impl From<manabi_tokenize::LineError> for AlignError {
    fn from(e: manabi_tokenize::LineError) -> Self {
        match e {
            manabi_tokenize::LineError::Json {
                path,
                line,
                message,
            } => Self::Data {
                path,
                line,
                message: format!("not valid JSON: {message}"),
            },
            e => {
                let (path, line, message) = e.into_parts();
                match line {
                    Some(line) => Self::Data {
                        path,
                        line,
                        message,
                    },
                    None => Self::File { path, message },
                }
            }
        }
    }
}

/// Result alias of this crate.
pub type Result<T, E = AlignError> = std::result::Result<T, E>;
