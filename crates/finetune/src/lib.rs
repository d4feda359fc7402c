//! manabi-finetune: the second half of a model's life on the shared Trainer — supervised
//! fine-tuning (instruction tuning, chat, QA, summarisation) with the loss on responses
//! only, parameter-efficient methods (LoRA with the PEFT format, BitFit, bottleneck
//! adapters) next to full fine-tuning, and downstream tasks and few-shot prompting
//! (`tasks`). Retrieval-augmented generation is `manabi-rag`, built on this crate.

pub mod config;
pub mod error;
pub mod export;
pub mod load;
pub mod metrics;
pub mod peft;
pub mod setup;
pub mod sft;
pub mod tasks;

pub use config::SftConfig;
pub use error::{FinetuneError, Result};
pub use load::{load_decoder, load_seq2seq, merged};
pub use peft::{Method, PeftConfig};
pub use sft::recipe::{SftReport, sft};
