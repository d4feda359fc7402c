//! Errors of pre-training: each names the key, file, checkpoint or step at fault.

use std::path::PathBuf;

/// What can go wrong while preparing data, training or checkpointing.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    /// An invalid configuration value.
    #[error("invalid config `{key}`: {message}")]
    Config {
        /// The key (with the file when known).
        key: String,
        /// What is wrong.
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
    /// A checkpoint that is incomplete, tampered with or from another run.
    #[error("{path}: corrupt checkpoint: {message}")]
    Checkpoint {
        /// The checkpoint folder or file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// The loss or gradient became NaN or infinite.
    #[error("step {step}: {what} is not finite ({value}); last good checkpoint: {last_good}")]
    NotFinite {
        /// The step.
        step: usize,
        /// `loss` or `gradient norm`.
        what: &'static str,
        /// The value.
        value: f64,
        /// The newest complete checkpoint, or `none`.
        last_good: String,
    },
    /// A loss spike beyond the configured factor.
    #[error(
        "step {step}: loss {loss:.4} is over {factor}× its running mean {mean:.4}; last good checkpoint: {last_good}"
    )]
    Spike {
        /// The step.
        step: usize,
        /// The loss.
        loss: f64,
        /// Running mean.
        mean: f64,
        /// The configured factor.
        factor: f64,
        /// The newest complete checkpoint, or `none`.
        last_good: String,
    },
    /// The data cannot feed the configured batches.
    #[error("data: {0}")]
    Data(String),
    /// From the tokenizer stage.
    #[error(transparent)]
    Tokenize(#[from] manabi_tokenize::TokenizeError),
    /// From the model crate.
    #[error(transparent)]
    Model(#[from] manabi_model::ModelError),
    /// From device selection.
    #[error(transparent)]
    Device(#[from] manabi_model::DeviceError),
}

impl TrainError {
    /// A file error on `path`.
    pub fn io(path: impl Into<PathBuf>, e: impl std::fmt::Display) -> Self {
        Self::File {
            path: path.into(),
            message: e.to_string(),
        }
    }
}

/// Result alias of this crate.
pub type Result<T, E = TrainError> = std::result::Result<T, E>;
