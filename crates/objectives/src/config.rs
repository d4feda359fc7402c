//! The pre-training recipe: one TOML file (`configs/pretrain/*.toml`) with `[run]`,
//! `[model]`, `[data]` and `[train]`. Every field has a documented default; unknown keys
//! are errors; `--set section.key=value` overrides a value before it is checked.

use std::path::PathBuf;

use manabi_model::{DeviceChoice, ModelConfig};
use manabi_tokenize::{CorpusFormat, DocBoundary, PreTokenize, TokenizerKind};
use serde::{Deserialize, Serialize};

use crate::error::{Result, TrainError};

/// A whole pre-training recipe.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PretrainConfig {
    /// Where and how the run happens.
    #[serde(default)]
    pub run: RunConfig,
    /// The model: a fresh one (`vocab_size = 0` takes the tokenizer's size), or an
    /// existing one to continue pre-training (`path`).
    pub model: PretrainModel,
    /// Corpus, tokenizer and batching.
    pub data: DataConfig,
    /// Optimisation.
    #[serde(default)]
    pub train: TrainConfig,
    /// The pre-training objective.
    #[serde(default)]
    pub objective: ObjectiveConfig,
}

/// `[model]`: the family and sizes of a fresh model ([`ModelConfig`]), or `path` (with an
/// optional `tokenizer`) alone: an existing model to continue pre-training, with its own
/// architecture and tokenizer.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum PretrainModel {
    /// A model built from the run's seed.
    New(Box<ModelConfig>),
    /// An existing model, trained further.
    From(ContinueFrom),
}

/// `[model]` with `path`: continued pre-training.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ContinueFrom {
    /// A manabi or Hugging Face model folder, or a run folder (its newest checkpoint).
    pub path: PathBuf,
    /// `tokenizer.json`; default: the model folder's.
    #[serde(default)]
    pub tokenizer: Option<PathBuf>,
}

impl<'de> Deserialize<'de> for PretrainModel {
    /// A table with `path` is [`ContinueFrom`], any other a [`ModelConfig`]; an error
    /// names the key inside `[model]`.
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        use serde::de::Error;
        let v = toml::Value::deserialize(d)?;
        let existing = v.as_table().is_some_and(|t| t.contains_key("path"));
        let named = |e: serde_path_to_error::Error<toml::de::Error>| {
            let key = e.path().to_string();
            let inner = e.into_inner();
            let message = inner.message();
            if key == "." {
                D::Error::custom(message)
            } else {
                D::Error::custom(format!("`{key}`: {message}"))
            }
        };
        if existing {
            serde_path_to_error::deserialize(v)
                .map(Self::From)
                .map_err(|e| {
                    if e.inner().message().starts_with("unknown field") {
                        D::Error::custom(format!(
                            "{} (a model given by `path` brings its own architecture)",
                            e.inner().message()
                        ))
                    } else {
                        named(e)
                    }
                })
        } else {
            serde_path_to_error::deserialize(v)
                .map(|c| Self::New(Box::new(c)))
                .map_err(named)
        }
    }
}

impl PretrainModel {
    /// The fresh model's config; `None` when continuing from a folder.
    pub fn new_config(&self) -> Option<&ModelConfig> {
        match self {
            Self::New(c) => Some(c),
            Self::From(_) => None,
        }
    }
}

/// Which objective trains the model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ObjectiveKind {
    /// Causal LM, next-token prediction (decoder-only models).
    Clm,
    /// Masked LM (BERT).
    Mlm,
    /// Span corruption (T5).
    Span,
}

/// `[objective]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ObjectiveConfig {
    /// Objective; default from the model family (gpt2/llama: clm, bert: mlm, t5: span).
    pub kind: Option<ObjectiveKind>,
    /// MLM: share of tokens chosen.
    pub mask_prob: f64,
    /// MLM: choose whole words.
    pub whole_word: bool,
    /// MLM: the mask token.
    pub mask_token: String,
    /// Span corruption: share of tokens hidden.
    pub noise_density: f64,
    /// Span corruption: mean span length.
    pub mean_span_length: f64,
}

impl Default for ObjectiveConfig {
    fn default() -> Self {
        Self {
            kind: None,
            mask_prob: 0.15,
            whole_word: false,
            mask_token: "<mask>".into(),
            noise_density: 0.15,
            mean_span_length: 3.0,
        }
    }
}

impl PretrainConfig {
    /// The objective of a model of `family`, explicit or implied by the family.
    pub fn objective_kind(&self, family: manabi_model::Family) -> ObjectiveKind {
        self.objective.kind.unwrap_or(match family {
            manabi_model::Family::Bert => ObjectiveKind::Mlm,
            manabi_model::Family::T5 => ObjectiveKind::Span,
            _ => ObjectiveKind::Clm,
        })
    }

    /// Checks what a model of config `model` needs of the recipe: the block fits its
    /// positions and the objective fits its family. `positions` names its
    /// `max_positions` in messages.
    pub fn check_model(&self, model: &ModelConfig, positions: &str) -> Result<()> {
        if self.data.block_size > model.max_positions {
            return Err(invalid(
                "data.block_size",
                format!(
                    "{} exceeds {positions} = {}",
                    self.data.block_size, model.max_positions
                ),
            ));
        }
        let kind = self.objective_kind(model.family);
        let fits = matches!(
            (kind, model.family),
            (
                ObjectiveKind::Clm,
                manabi_model::Family::Gpt2 | manabi_model::Family::Llama
            ) | (ObjectiveKind::Mlm, manabi_model::Family::Bert)
                | (ObjectiveKind::Span, manabi_model::Family::T5)
        );
        if !fits {
            return Err(invalid(
                "objective.kind",
                format!(
                    "`{}` cannot train a {} model (clm: gpt2/llama, mlm: bert, span: t5)",
                    format!("{kind:?}").to_lowercase(),
                    model.family
                ),
            ));
        }
        Ok(())
    }
}

/// `[run]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RunConfig {
    /// Output folder: shards, checkpoints, metrics.jsonl, loss.svg.
    pub out: PathBuf,
    /// Device (`cpu`, `flex`, `ndarray`, `wgpu[:N]`, `cuda[:N]`); `--device` overrides it.
    pub device: DeviceChoice,
    /// Seed of initialisation, data order and dropout.
    pub seed: u64,
}

impl Default for RunConfig {
    fn default() -> Self {
        Self {
            out: PathBuf::from("runs/pretrain"),
            device: DeviceChoice::Cpu,
            seed: 1337,
        }
    }
}

/// How validation data is chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ValSplit {
    /// The last `val_fraction` of the token stream (nanoGPT's split).
    Tail,
    /// A fraction of whole documents (the shards' `val.bin`).
    Documents,
}

/// How training sequences are cut from the token stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Sampling {
    /// Random windows of `block_size` tokens (nanoGPT's `get_batch`).
    Random,
    /// Consecutive blocks, shuffled per epoch, with attention and positions reset at
    /// every document boundary (EOS).
    Packed,
}

/// `[data.tokenizer]`: an existing `tokenizer.json` (`path`) or one to train (`kind`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TokenizerSection {
    /// Use this tokenizer.json instead of training one.
    pub path: Option<PathBuf>,
    /// Train a tokenizer of this kind on the corpus.
    pub kind: Option<TokenizerKind>,
    /// Vocabulary size when training.
    pub vocab_size: usize,
    /// Minimum frequency when training.
    pub min_frequency: u64,
    /// Pre-tokenisation when training.
    pub pre_tokenize: PreTokenize,
    /// Special tokens when training (the EOS token must be among them).
    pub special_tokens: Vec<String>,
    /// Span-corruption sentinels `<extra_id_N>` added when training.
    pub sentinels: usize,
    /// NFKC normalisation when training.
    pub nfkc: bool,
    /// Characters always in a trained char / WordPiece / Unigram vocabulary, seen in the
    /// corpus or not (e.g. those of a later prompt template).
    pub alphabet: String,
}

impl Default for TokenizerSection {
    fn default() -> Self {
        Self {
            path: None,
            kind: None,
            vocab_size: 8000,
            min_frequency: 2,
            pre_tokenize: PreTokenize::Default,
            special_tokens: manabi_tokenize::train::DEFAULT_SPECIAL_TOKENS
                .iter()
                .map(|s| s.to_string())
                .collect(),
            sentinels: 0,
            nfkc: false,
            alphabet: String::new(),
        }
    }
}

/// `[data]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataConfig {
    /// Corpus files or folders (relative paths are taken from the working directory).
    pub inputs: Vec<PathBuf>,
    /// File format.
    #[serde(default)]
    pub format: CorpusFormat,
    /// JSONL field with the text.
    #[serde(default = "default_field")]
    pub field: String,
    /// Where a plain-text document ends.
    #[serde(default)]
    pub doc_boundary: DocBoundary,
    /// The tokenizer.
    #[serde(default)]
    pub tokenizer: TokenizerSection,
    /// Token written after every document (default `<eos>`; continuing a model from
    /// `model.path` whose tokenizer has no `<eos>`, its own end-of-text token).
    #[serde(default = "default_eos")]
    pub eos_token: String,
    /// Validation split.
    #[serde(default = "default_val_split")]
    pub val_split: ValSplit,
    /// Fraction held out for validation.
    #[serde(default = "default_val_fraction")]
    pub val_fraction: f64,
    /// Tokens per training sequence.
    pub block_size: usize,
    /// Window sampling.
    #[serde(default = "default_sampling")]
    pub sampling: Sampling,
}

fn default_field() -> String {
    "text".into()
}
pub(crate) fn default_eos() -> String {
    "<eos>".into()
}
fn default_val_split() -> ValSplit {
    ValSplit::Documents
}
fn default_val_fraction() -> f64 {
    0.1
}
fn default_sampling() -> Sampling {
    Sampling::Random
}

/// Learning-rate schedule after warm-up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Schedule {
    /// Cosine from `lr` to `min_lr` at `steps`.
    Cosine,
    /// Straight line from `lr` to `min_lr` at `steps`.
    Linear,
    /// `lr` throughout.
    Constant,
}

/// What to do when the loss or the gradient norm is not finite.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum OnNan {
    /// Stop with an error naming the step and the last good checkpoint.
    Stop,
    /// Skip the update and go on.
    Skip,
}

/// Floating-point precision of the run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    /// 32-bit floats everywhere.
    F32,
    /// bfloat16 (only where the backend computes in it).
    Bf16,
    /// float16 (only where the backend computes in it).
    F16,
}

/// `[train]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TrainConfig {
    /// Optimizer steps (the schedule runs to this step).
    pub steps: usize,
    /// Stop this process after this step, saving a checkpoint (0 = run to `steps`);
    /// `--resume` continues on the same schedule.
    pub stop_after: usize,
    /// Sequences per micro-batch.
    pub batch_size: usize,
    /// Micro-batches per optimizer step (normalised by token count).
    pub grad_accum: usize,
    /// Peak learning rate.
    pub lr: f64,
    /// Final learning rate.
    pub min_lr: f64,
    /// Linear warm-up steps.
    pub warmup_steps: usize,
    /// Decay after warm-up.
    pub schedule: Schedule,
    /// Decoupled weight decay (AdamW), applied to the parameters of rank ≥ 2 (weight
    /// matrices, LoRA factors, soft prompts; embedding tables only with
    /// `decay_embeddings`), never to norm gains or biases.
    pub weight_decay: f64,
    /// Also decay embedding matrices.
    pub decay_embeddings: bool,
    /// AdamW β₁.
    pub beta1: f64,
    /// AdamW β₂.
    pub beta2: f64,
    /// AdamW ε.
    pub eps: f64,
    /// Clip gradients to this global L2 norm (0 = off).
    pub grad_clip: f64,
    /// Evaluate every this many steps (0 = only at the end).
    pub eval_every: usize,
    /// Also evaluate the starting model, before the first step (logged as step 0): the
    /// "before" of a before → after table.
    pub eval_at_start: bool,
    /// Validation batches per evaluation.
    pub eval_batches: usize,
    /// Print and log every this many steps.
    pub log_every: usize,
    /// Save a checkpoint every this many steps (0 = only at the end).
    pub checkpoint_every: usize,
    /// Checkpoints kept besides the best one.
    pub keep_last: usize,
    /// Non-finite loss or gradient.
    pub on_nan: OnNan,
    /// Stop when the loss exceeds this many times its running mean (0 = off).
    pub spike_factor: f64,
    /// Recompute activations in the backward pass to save memory.
    pub gradient_checkpointing: bool,
    /// Float precision.
    pub precision: Precision,
    /// Draw a progress bar.
    pub progress: bool,
}

impl Default for TrainConfig {
    fn default() -> Self {
        Self {
            steps: 1000,
            stop_after: 0,
            batch_size: 12,
            grad_accum: 1,
            lr: 1e-3,
            min_lr: 1e-4,
            warmup_steps: 100,
            schedule: Schedule::Cosine,
            weight_decay: 0.1,
            decay_embeddings: false,
            beta1: 0.9,
            beta2: 0.99,
            eps: 1e-8,
            grad_clip: 1.0,
            eval_every: 250,
            eval_at_start: false,
            eval_batches: 20,
            log_every: 10,
            checkpoint_every: 0,
            keep_last: 2,
            on_nan: OnNan::Stop,
            spike_factor: 0.0,
            gradient_checkpointing: false,
            precision: Precision::F32,
            progress: true,
        }
    }
}

impl TrainConfig {
    /// Checks `[train]` values that the types do not.
    pub fn validate(&self) -> Result<()> {
        let t = self;
        for (key, v) in [
            ("train.steps", t.steps),
            ("train.batch_size", t.batch_size),
            ("train.grad_accum", t.grad_accum),
            ("train.eval_batches", t.eval_batches),
        ] {
            if v == 0 {
                return Err(invalid(key, "must be at least 1"));
            }
        }
        if !(t.lr > 0.0 && t.lr.is_finite()) {
            return Err(invalid("train.lr", format!("{} must be positive", t.lr)));
        }
        if !(t.min_lr >= 0.0 && t.min_lr <= t.lr) {
            return Err(invalid(
                "train.min_lr",
                format!("{} must be in [0, lr]", t.min_lr),
            ));
        }
        if !(0.0..1.0).contains(&t.beta1) || !(0.0..1.0).contains(&t.beta2) {
            return Err(invalid("train.beta1", "β₁ and β₂ must be in [0, 1)"));
        }
        if t.weight_decay < 0.0 || t.grad_clip < 0.0 || t.eps <= 0.0 {
            return Err(invalid(
                "train.weight_decay",
                "weight_decay and grad_clip must be ≥ 0, eps > 0",
            ));
        }
        Ok(())
    }

    /// Learning rate at `step` (0-based): linear warm-up, then the schedule.
    pub fn lr_at(&self, step: usize) -> f64 {
        if step < self.warmup_steps {
            return self.lr * (step + 1) as f64 / self.warmup_steps as f64;
        }
        let span = self.steps.saturating_sub(self.warmup_steps).max(1) as f64;
        let progress = ((step - self.warmup_steps) as f64 / span).min(1.0);
        match self.schedule {
            Schedule::Constant => self.lr,
            Schedule::Linear => self.lr + (self.min_lr - self.lr) * progress,
            Schedule::Cosine => {
                self.min_lr
                    + 0.5
                        * (self.lr - self.min_lr)
                        * (1.0 + (std::f64::consts::PI * progress).cos())
            }
        }
    }
}

pub(crate) fn invalid(key: &str, message: impl Into<String>) -> TrainError {
    TrainError::Config {
        key: key.into(),
        message: message.into(),
    }
}

impl Recipe for PretrainConfig {
    type Error = TrainError;

    fn validate(&self) -> Result<()> {
        self.train.validate()?;
        if self.data.block_size == 0 {
            return Err(invalid("data.block_size", "must be at least 1"));
        }
        if !(0.0..1.0).contains(&self.data.val_fraction) || self.data.val_fraction == 0.0 {
            return Err(invalid(
                "data.val_fraction",
                format!("{} must be in (0, 1)", self.data.val_fraction),
            ));
        }
        if self.data.inputs.is_empty() {
            return Err(invalid("data.inputs", "no corpus given"));
        }
        let tok = &self.data.tokenizer;
        let model = match &self.model {
            PretrainModel::New(m) => m,
            PretrainModel::From(_) => {
                // The model's own tokenizer (or `model.tokenizer`): a new one would not
                // fit its embeddings.
                if *tok != TokenizerSection::default() {
                    return Err(invalid(
                        "data.tokenizer",
                        "a model given by `model.path` keeps its tokenizer (set \
                         `model.tokenizer` to read another tokenizer.json)",
                    ));
                }
                return Ok(());
            }
        };
        if tok.path.is_some() == tok.kind.is_some() {
            return Err(invalid(
                "data.tokenizer",
                "give exactly one of `path` (existing tokenizer.json) or `kind` (train one)",
            ));
        }
        if model.vocab_size != 0 {
            model
                .validate()
                .map_err(|e| invalid("model", e.to_string()))?;
        }
        self.check_model(model, "model.max_positions")?;
        Ok(())
    }
}

pub use crate::recipe::{Recipe, in_file, parse_recipe, read_recipe};

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: &str = r#"
        [model]
        family = "gpt2"
        vocab_size = 0
        max_positions = 64
        d_model = 32
        n_layers = 1
        n_heads = 2
        d_ff = 64
        positions = "learned"
        norm = "layernorm"
        activation = "gelu_tanh"
        [data]
        inputs = ["x.txt"]
        block_size = 16
        tokenizer = { kind = "char" }
    "#;

    #[test]
    fn defaults_overrides_and_errors() {
        let cfg = PretrainConfig::parse(MIN, &[]).unwrap();
        assert_eq!(cfg.train.steps, 1000);
        assert_eq!(cfg.run.seed, 1337);
        let cfg = PretrainConfig::parse(
            MIN,
            &[
                "train.steps=7".into(),
                "run.device=\"flex\"".into(),
                "run.out=somewhere".into(),
            ],
        )
        .unwrap();
        assert_eq!(cfg.train.steps, 7);
        assert_eq!(cfg.run.device, DeviceChoice::Flex);
        assert_eq!(cfg.run.out, PathBuf::from("somewhere"));

        let err = PretrainConfig::parse(MIN, &["train.stepz=7".into()])
            .unwrap_err()
            .to_string();
        assert!(err.contains("unknown field `stepz`"), "{err}");
        let err = PretrainConfig::parse(MIN, &["train.lr=0".into()])
            .unwrap_err()
            .to_string();
        assert!(err.contains("`train.lr`"), "{err}");
        let err = PretrainConfig::parse(MIN, &["data.block_size=100".into()])
            .unwrap_err()
            .to_string();
        assert!(err.contains("`data.block_size`"), "{err}");
        let err = PretrainConfig::parse(
            MIN,
            &["model.n_heads=3".into(), "model.vocab_size=10".into()],
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("n_heads"), "{err}");
        let err = PretrainConfig::parse(MIN, &["run.device=\"tpu\"".into()])
            .unwrap_err()
            .to_string();
        assert!(err.contains("tpu"), "{err}");
    }

    #[test]
    fn a_wrong_type_names_the_key_and_line() {
        let text = MIN.replace("[data]", "[train]\nbatch_size = \"four\"\n[data]");
        let err = PretrainConfig::parse(&text, &[]).unwrap_err().to_string();
        assert!(err.contains("`train.batch_size`"), "{err}");
        assert!(err.contains("line 14"), "{err}");
        let err = PretrainConfig::parse(MIN, &["train.steps=\"x\"".into()])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("`train.steps`") && err.contains("--set"),
            "{err}"
        );
    }

    #[test]
    fn warmup_then_cosine() {
        let t = TrainConfig {
            steps: 110,
            warmup_steps: 10,
            lr: 1.0,
            min_lr: 0.1,
            ..TrainConfig::default()
        };
        assert!((t.lr_at(0) - 0.1).abs() < 1e-12);
        assert!((t.lr_at(9) - 1.0).abs() < 1e-12);
        assert!((t.lr_at(10) - 1.0).abs() < 1e-12);
        assert!((t.lr_at(60) - 0.55).abs() < 1e-12);
        assert!((t.lr_at(110) - 0.1).abs() < 1e-12);
        let lin = TrainConfig {
            schedule: Schedule::Linear,
            ..t
        };
        assert!((lin.lr_at(60) - 0.55).abs() < 1e-12);
    }
}
