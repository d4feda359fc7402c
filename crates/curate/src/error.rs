//! The one error type of the curate crate: every variant names the file (and line), or
//! the config key, a person has to look at.

use std::path::{Path, PathBuf};

/// Everything that can go wrong while curating a corpus.
#[derive(Debug, thiserror::Error)]
pub enum CurateError {
    /// A file or folder could not be opened, read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// What the operating system said.
        source: std::io::Error,
    },
    /// The corpus could not be read: the message names the file and line
    /// (`corpus.jsonl:12: malformed JSON: …`).
    #[error(transparent)]
    Input(#[from] manabi_tokenize::TokenizeError),
    /// A config value is wrong; `key` is the dotted key (`curate.words.min_words`),
    /// with the file in front when it came from one.
    #[error("{key}: {message}")]
    Config {
        /// The key.
        key: String,
        /// What is wrong, and its line when known.
        message: String,
    },
    /// A block-list file could not be read.
    #[error("{}{}: {message}", path.display(), line.map(|l| format!(":{l}")).unwrap_or_default())]
    Blocklist {
        /// The word-list file.
        path: PathBuf,
        /// 1-based line, when the error is on one.
        line: Option<usize>,
        /// What went wrong.
        message: String,
    },
    /// The output path is unusable (for example the same file as an input).
    #[error("{path}: {message}")]
    Output {
        /// The output file.
        path: PathBuf,
        /// What is wrong, and what to do.
        message: String,
    },
}

/// Result alias of this crate.
pub type Result<T, E = CurateError> = std::result::Result<T, E>;

impl CurateError {
    /// An I/O error on `path`.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io {
            path: path.into(),
            source,
        }
    }

    /// A config error on `key`.
    pub fn config(key: impl Into<String>, message: impl Into<String>) -> Self {
        Self::Config {
            key: key.into(),
            message: message.into(),
        }
    }

    /// A config error with the file it came from in front of its key.
    pub fn in_file(self, path: &Path) -> Self {
        match self {
            Self::Config { key, message } => Self::Config {
                key: format!("{}: {key}", path.display()),
                message,
            },
            other => other,
        }
    }
}
