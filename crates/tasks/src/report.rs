//! What a task run reports: the metrics of each evaluated split ([`SplitReport`], also
//! what [`crate::evaluate_task`] returns) and the run as a whole ([`TaskReport`]).

use std::path::PathBuf;

use manabi_objectives::RunReport;
use serde::Serialize;

/// What was measured on one evaluated split.
#[derive(Debug, Clone, Serialize)]
pub struct SplitReport {
    /// `val`, `test` or the file evaluated.
    pub name: String,
    /// Examples.
    pub examples: usize,
    /// Metrics (empty when the data has no gold labels).
    pub metrics: Vec<(String, f64)>,
    /// Accuracy of always answering the most frequent training class (classification).
    pub majority_baseline: Option<f64>,
    /// Where the predictions were written.
    pub predictions: PathBuf,
}

/// What `manabi task` did.
#[derive(Debug, Clone, Serialize)]
pub struct TaskReport {
    /// The Trainer's report.
    pub run: RunReport,
    /// Class names and their counts in the training data (empty for sts).
    pub label_counts: Vec<(String, usize)>,
    /// Inputs cut to `max_length` (training and evaluation data).
    pub cut: usize,
    /// Parameters that trained.
    pub trainable_params: usize,
    /// Metrics of the final checkpoint on validation and test data.
    pub splits: Vec<SplitReport>,
}
