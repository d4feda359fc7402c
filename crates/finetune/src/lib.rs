//! manabi-finetune: the second half of a model's life on the shared Trainer — supervised
//! fine-tuning (instruction tuning, chat, QA, summarisation) with the loss on responses
//! only, parameter-efficient methods (LoRA with the PEFT format, BitFit, bottleneck
//! adapters) next to full fine-tuning, and what the later stages load through it: models
//! with a sequence head (`head`: classifiers, taggers, reward models). Downstream tasks
//! and few-shot prompting are `manabi-tasks`, retrieval-augmented generation is
//! `manabi-rag`, alignment is `manabi-align`: each built on this crate.

pub mod config;
pub mod error;
pub mod export;
pub mod head;
pub mod load;
pub mod metrics;
pub mod open;
pub mod peft;
pub mod setup;
pub mod sft;

pub use config::SftConfig;
pub use error::{FinetuneError, Result};
pub use head::{HEAD_FILE, HeadSpec};
pub use load::{load_classifier, load_decoder, load_seq2seq, merged};
pub use open::{Model, Opened, open};
pub use peft::{Method, PeftConfig};
pub use sft::recipe::{SftReport, sft};
