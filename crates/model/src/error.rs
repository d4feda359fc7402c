//! Errors of the model crate: each names the key, file or tensor at fault.

use std::path::PathBuf;

/// What can go wrong building, loading or running a model.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    /// An invalid or unsupported configuration value.
    #[error("invalid model config `{key}`: {message}")]
    Config {
        /// The key.
        key: String,
        /// What is wrong.
        message: String,
    },
    /// A file could not be read or written.
    #[error("{path}: {message}")]
    File {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
    /// A checkpoint tensor has the wrong shape.
    #[error("{path}: tensor `{name}` has shape {found:?}, expected {expected:?}")]
    Shape {
        /// The weights file.
        path: PathBuf,
        /// Tensor name in the file.
        name: String,
        /// Shape the model needs.
        expected: Vec<usize>,
        /// Shape in the file.
        found: Vec<usize>,
    },
    /// Tensors the model needs are not in the checkpoint, or the checkpoint has extra ones.
    #[error(
        "{path}: {}{}",
        list("missing tensors", missing),
        list("unexpected tensors", unexpected)
    )]
    Tensors {
        /// The weights file.
        path: PathBuf,
        /// Needed but absent.
        missing: Vec<String>,
        /// Present but unused.
        unexpected: Vec<String>,
    },
    /// Input of the wrong shape or out of range.
    #[error("invalid input: {0}")]
    Input(String),
    /// A tokenizer problem.
    #[error(transparent)]
    Tokenize(#[from] manabi_tokenize::TokenizeError),
}

fn list(what: &str, names: &[String]) -> String {
    if names.is_empty() {
        return String::new();
    }
    let shown: Vec<&str> = names.iter().take(8).map(String::as_str).collect();
    let more = if names.len() > 8 {
        format!(" and {} more", names.len() - 8)
    } else {
        String::new()
    };
    format!("{what}: {}{more}; ", shown.join(", "))
}

/// Result alias of this crate.
pub type Result<T, E = ModelError> = std::result::Result<T, E>;
