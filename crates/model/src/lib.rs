//! manabi-model: decoder-only language models (GPT-2 and LLaMA layouts), their building
//! blocks, generation, Hugging Face weights, and the one place devices are chosen.

pub mod attention;
pub mod checkpoint;
pub mod config;
pub mod decoder;
pub mod device;
pub mod error;
pub mod eval;
pub mod generate;
pub mod hf;
pub mod init;
pub mod mlp;
pub mod rope;

pub use attention::KvCache;
pub use checkpoint::{export_hf, load_model, load_native, save_native};
pub use config::{Activation, Family, ModelConfig, NormKind, Positions};
pub use decoder::{DecoderLm, ForwardOptions};
pub use device::{DeviceChoice, DeviceError};
pub use error::{ModelError, Result};
pub use eval::{EvalReport, evaluate};
pub use generate::{GenerateOptions, generate};
pub use hf::load_hf;
