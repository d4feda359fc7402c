//! manabi-tasks: downstream tasks on a pre-trained body, trained on the shared Trainer
//! through `manabi-finetune` (its `Setup`, PEFT methods, metrics and sequence heads):
//! sequence classification (sentiment), natural language inference and semantic
//! similarity (a `score` head, or a bi-encoder), named entities (a head on every token),
//! sentence embeddings (SimCSE) — metrics equal to scikit-learn / SciPy / seqeval,
//! predictions written next to gold labels; prediction with Hugging Face task folders as
//! `transformers`' `pipeline()` uses them (`hf`); and prompting without training (zero-,
//! one- and few-shot, chain-of-thought) with lm-evaluation-harness semantics (`fewshot`).
//! Retrieval-augmented generation builds on these in its own crate, `manabi-rag`.

pub mod batch;
pub mod body;
pub mod classify;
pub mod data;
pub mod embed;
pub mod evaluate;
pub mod fewshot;
pub mod hf;
pub mod ner;
pub mod pairs;
pub mod pooling;
pub mod report;
pub mod settings;
mod setup;
pub mod simcse;
pub mod train;

pub use data::TaskKind;
pub use evaluate::{evaluate_task, evaluate_task_with};
pub use hf::PipelineOptions;
pub use report::TaskReport;
pub use settings::TaskConfig;
pub use train::train_task;
