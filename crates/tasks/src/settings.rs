//! `manabi task` recipes: the `[task]` settings (what is predicted, from which fields),
//! the data files, and the whole TOML recipe; `task.toml` records the settings in every
//! checkpoint.

use std::path::{Path, PathBuf};

use manabi_finetune::config::BaseModel;
use manabi_finetune::error::{FinetuneError, Result};
use manabi_finetune::peft::PeftConfig;
use manabi_objectives::config::{Recipe, RunConfig, TrainConfig};
use serde::{Deserialize, Serialize};

use crate::data::{FieldMap, TaskKind};

/// The spec file of a task checkpoint: how its examples are read and encoded.
pub const TASK_FILE: &str = "task.toml";

/// `[task]`: what is predicted, from which fields.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TaskSettings {
    /// `classification`, `nli`, `sts`, `regression`, `ner` or `simcse`.
    pub kind: TaskKind,
    /// Class names in output order; default: the sorted classes of the training data.
    #[serde(default)]
    pub labels: Vec<String>,
    /// Field renames: canonical name = name in the file.
    #[serde(default)]
    pub fields: FieldMap,
    /// Text between the two sentences of a pair.
    #[serde(default = "default_separator")]
    pub separator: String,
    /// Longest input in tokens, EOS included (longer inputs are cut at the end).
    #[serde(default = "default_max_length")]
    pub max_length: usize,
    /// Sentence embeddings (`simcse`): how token states become one vector.
    #[serde(default)]
    pub pooling: crate::pooling::Pooling,
    /// SimCSE: softmax temperature of the cosine similarities.
    #[serde(default = "default_temperature")]
    pub temperature: f64,
    /// SimCSE: dropout while training (the two views of a sentence differ by it).
    #[serde(default = "default_dropout")]
    pub dropout: f64,
    /// SimCSE: supervised (Gao et al. 2021, §4): the training files are NLI pairs; each
    /// premise's `entailment` hypothesis is its positive, and a `contradiction`
    /// hypothesis of the same premise, when the data has one, its hard negative.
    #[serde(default)]
    pub supervised: bool,
    /// STS: `cross` reads the pair as one sequence with a regression head; `bi` embeds each
    /// sentence alone and trains their cosine towards `label / max_score`.
    #[serde(default)]
    pub encoder: crate::pooling::Encoder,
    /// STS with `encoder = "bi"`: the top of the score scale (5 in JSTS).
    #[serde(default = "default_max_score")]
    pub max_score: f64,
}

impl TaskSettings {
    /// The settings of a `kind` task with every other key at its default (as a recipe
    /// that names only `kind`).
    pub fn new(kind: TaskKind) -> Self {
        Self {
            kind,
            labels: Vec::new(),
            fields: FieldMap::new(),
            separator: default_separator(),
            max_length: default_max_length(),
            pooling: crate::pooling::Pooling::default(),
            temperature: default_temperature(),
            dropout: default_dropout(),
            supervised: false,
            encoder: crate::pooling::Encoder::default(),
            max_score: default_max_score(),
        }
    }
}

fn default_max_score() -> f64 {
    5.0
}

fn default_temperature() -> f64 {
    0.05
}

fn default_dropout() -> f64 {
    0.1
}

fn default_separator() -> String {
    "\n".into()
}

fn default_max_length() -> usize {
    128
}

/// `[data]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct TaskData {
    /// Training JSONL files.
    pub train: Vec<PathBuf>,
    /// Validation files: the loss during training, metrics and predictions after.
    pub val: Vec<PathBuf>,
    /// Test files: metrics and predictions after training.
    pub test: Vec<PathBuf>,
}

/// A task recipe (`configs/tasks/*.toml`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TaskConfig {
    /// Output folder, device, seed.
    #[serde(default)]
    pub run: RunConfig,
    /// The body to start from (any decoder folder; its LM head is dropped).
    pub model: BaseModel,
    /// What to predict.
    pub task: TaskSettings,
    /// Data files.
    pub data: TaskData,
    /// Which parameters of the body train (the head always trains).
    #[serde(default)]
    pub peft: PeftConfig,
    /// Optimisation.
    #[serde(default)]
    pub train: TrainConfig,
}

impl Recipe for TaskConfig {
    type Error = FinetuneError;

    fn validate(&self) -> Result<()> {
        self.train.validate()?;
        self.peft.validate()?;
        if self.data.train.is_empty() || self.data.val.is_empty() {
            return Err(FinetuneError::config(
                "data.train",
                "give training and validation files (data.train, data.val)",
            ));
        }
        if self.task.max_length < 2 {
            return Err(FinetuneError::config(
                "task.max_length",
                "must be at least 2",
            ));
        }
        if self.task.kind.regression() && !self.task.labels.is_empty() {
            return Err(FinetuneError::config(
                "task.labels",
                "an sts or regression task predicts a score; it has no class labels",
            ));
        }
        manabi_finetune::head::check_labels(&self.task.labels, "task.labels")?;
        if self.task.encoder == crate::pooling::Encoder::Bi
            && (self.task.kind != TaskKind::Sts || self.task.max_score <= 0.0)
        {
            return Err(FinetuneError::config(
                "task.encoder",
                "encoder = \"bi\" is for sts tasks, with max_score > 0",
            ));
        }
        self.peft.validate_for_head()
    }
}

/// The task spec a checkpoint records (`task.toml`): settings with the label set resolved.
pub(crate) fn spec_toml(settings: &TaskSettings) -> String {
    toml::to_string_pretty(settings).unwrap_or_default()
}

/// Whether the folder `dir` is an embedding checkpoint of `manabi task` (SimCSE or a
/// bi-encoder): its `task.toml` says so. Its BERT weights are the encoder alone.
pub fn is_embedding_checkpoint(dir: &Path) -> Result<bool> {
    let spec = dir.join(TASK_FILE);
    if !spec.exists() {
        return Ok(false);
    }
    let text = std::fs::read_to_string(&spec).map_err(|e| FinetuneError::io(&spec, e))?;
    let s: TaskSettings = toml::from_str(&text)
        .map_err(|e| FinetuneError::config(spec.display().to_string(), e.message()))?;
    Ok(s.kind == TaskKind::Simcse || s.encoder == crate::pooling::Encoder::Bi)
}
