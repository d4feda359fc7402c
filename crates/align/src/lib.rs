//! manabi-align: the third step of a model's life on the shared Trainer — preference data
//! in TRL's conventions and direct preference optimisation with its variants (sigmoid,
//! robust, hinge, IPO, SimPO) and Bradley–Terry reward models, with TRL's metric names.
//! GRPO with verifiable rewards, and RLHF with PPO (value model, GAE, adaptive KL).

pub mod dpo;
pub mod error;
pub mod grpo;
pub mod policy;
pub mod ppo;
pub mod pref;
pub mod report;
pub mod reward;
pub mod rollout;

pub use dpo::{DpoConfig, DpoReport, DpoSettings, DpoTask, LossType, dpo};
pub use error::{AlignError, Result};
pub use grpo::{GrpoConfig, GrpoReport, grpo};
pub use ppo::{PpoConfig, PpoReport, ppo};
pub use reward::{RewardConfig, RewardReport, load_reward, score_texts, train_reward};
