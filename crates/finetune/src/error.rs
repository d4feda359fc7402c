//! Errors of fine-tuning: each names the file and line, the config key or the tensor at
//! fault.

use std::path::PathBuf;

/// What can go wrong while reading SFT data, building adapters or fine-tuning.
#[derive(Debug, thiserror::Error)]
pub enum FinetuneError {
    /// A bad line of a JSONL data file.
    #[error("{path}:{line}: {message}")]
    Data {
        /// The file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// What is wrong (names the field).
        message: String,
    },
    /// An invalid configuration value.
    #[error("invalid config `{key}`: {message}")]
    Config {
        /// The key (`section.key`, with the file when known).
        key: String,
        /// What is wrong.
        message: String,
    },
    /// An adapter that does not fit the base model, or a malformed adapter folder.
    #[error("{path}: {message}")]
    Adapter {
        /// The adapter file or folder.
        path: PathBuf,
        /// What is wrong (names the tensor).
        message: String,
    },
    /// A file or folder problem.
    #[error("{path}: {message}")]
    File {
        /// The path.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
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

impl FinetuneError {
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

impl manabi_objectives::recipe::RecipeError for FinetuneError {
    fn config_parts(&mut self) -> Option<(&mut String, &mut String)> {
        match self {
            Self::Config { key, message } => Some((key, message)),
            Self::Train(e) => manabi_objectives::recipe::RecipeError::config_parts(e),
            _ => None,
        }
    }
}

/// A line the shared reader ([`manabi_tokenize::jsonl`]) could not read: a `Data` error
/// at its line, or a `File` error when the file did not open.
impl From<manabi_tokenize::LineError> for FinetuneError {
    fn from(e: manabi_tokenize::LineError) -> Self {
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

/// Result alias of this crate.
pub type Result<T, E = FinetuneError> = std::result::Result<T, E>;

/// A fine-tuning error met inside a Trainer task (batches, loss, evaluation) stops the run
/// as a data error with the same one-line message.
impl From<FinetuneError> for manabi_objectives::TrainError {
    fn from(e: FinetuneError) -> Self {
        Self::Data(e.to_string())
    }
}
