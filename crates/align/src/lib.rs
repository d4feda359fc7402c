//! manabi-align: the third step of a model's life on the shared Trainer — preference data
//! in TRL's conventions and direct preference optimisation with its variants (sigmoid,
//! robust, hinge, IPO, SimPO), with TRL's metric names. Reward models, PPO and GRPO are
//! not built yet.

pub mod dpo;
pub mod error;
pub mod pref;
pub mod run;

pub use dpo::{DpoSettings, DpoTask, LossType};
pub use error::{AlignError, Result};
pub use run::{DpoConfig, DpoReport, dpo};
