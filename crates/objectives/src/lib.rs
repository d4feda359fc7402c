//! manabi-objectives: pre-training. Causal LM, masked LM and span corruption, batches cut from token
//! shards (random windows or packed documents), and the Trainer that every later stage
//! reuses: AdamW with decoupled weight decay, warm-up + cosine, accumulation normalised
//! by token count, global-norm clipping, evaluation, guards, metrics and atomic
//! checkpoints with exact resume.

pub mod checkpoint;
pub mod config;
pub mod data;
pub mod error;
pub mod lock;
pub mod loss;
pub mod metrics_log;
pub mod mlm;
pub mod model;
pub mod optim;
pub mod plot;
pub mod prepare;
pub mod pretrain;
pub mod recipe;
pub mod span;
pub mod tasks;
pub mod trainer;

pub use checkpoint::Resume;
pub use config::{PretrainConfig, Recipe};
pub use error::{Result, TrainError};
pub use lock::RunLock;
pub use pretrain::pretrain;
pub use tasks::{Task, TaskLoss};
pub use trainer::{RunReport, Trainer};
