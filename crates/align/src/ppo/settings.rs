//! `[ppo]`: sampling, the objective, GAE and the KL coefficient of a PPO recipe.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// How the per-token KL to the reference is estimated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum KlEstimator {
    /// `log π − log π_ref` (unbiased, may be negative per token).
    #[default]
    K1,
    /// `(r − 1) − log r` with `r = π_ref / π` (non-negative, lower variance).
    K3,
}

/// `[ppo]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PpoSettings {
    /// The reward model (required): a `manabi reward` checkpoint or a Hugging Face
    /// `*ForSequenceClassification` folder with one label. It reads the decoded text with
    /// its tokenizer, which must be the policy's unless `reward_own_tokenizer`.
    pub reward_model: Option<PathBuf>,
    /// Let the reward model's tokenizer differ from the policy's (it re-encodes the
    /// decoded text); off, another tokenizer is an error.
    pub reward_own_tokenizer: bool,
    /// Where the value model starts: `None` = the policy's body with a fresh scalar head;
    /// a folder = that reward model (it must share the policy's tokenizer), as TRL does.
    pub value_model: Option<PathBuf>,
    /// Longest response.
    pub max_new_tokens: usize,
    /// Sampling temperature (log-probs are taken at the same temperature, as TRL does).
    pub temperature: f32,
    /// Top-k sampling (0 = off).
    pub top_k: usize,
    /// Nucleus sampling (1 = off).
    pub top_p: f32,
    /// Passes over each rollout batch.
    pub num_ppo_epochs: usize,
    /// Minibatches per pass (each one optimizer step).
    pub num_mini_batches: usize,
    /// Clipping range ε of the policy ratio.
    pub cliprange: f64,
    /// Clipping range of the value prediction around the rollout's value.
    pub cliprange_value: f64,
    /// Weight of the value loss.
    pub vf_coef: f64,
    /// Discount γ.
    pub gamma: f64,
    /// GAE λ.
    pub lam: f64,
    /// KL coefficient β (the initial one when `target_kl` is set).
    pub kl_coef: f64,
    /// The per-token KL estimator.
    pub kl_estimator: KlEstimator,
    /// Adaptive KL: after each rollout β is scaled towards this KL per response
    /// (`None` = fixed β).
    pub target_kl: Option<f64>,
    /// Horizon of the adaptive controller, in responses.
    pub kl_horizon: f64,
    /// Whiten the per-token rewards (without shifting their mean) before GAE.
    pub whiten_rewards: bool,
    /// Subtracted from the score of a response that never emitted EOS (`None` = off).
    pub missing_eos_penalty: Option<f64>,
}

impl Default for PpoSettings {
    fn default() -> Self {
        Self {
            reward_model: None,
            reward_own_tokenizer: false,
            value_model: None,
            max_new_tokens: 24,
            temperature: 0.7,
            top_k: 0,
            top_p: 1.0,
            num_ppo_epochs: 4,
            num_mini_batches: 1,
            cliprange: 0.2,
            cliprange_value: 0.2,
            vf_coef: 0.1,
            gamma: 1.0,
            lam: 0.95,
            kl_coef: 0.05,
            kl_estimator: KlEstimator::K1,
            target_kl: None,
            kl_horizon: 10_000.0,
            whiten_rewards: false,
            missing_eos_penalty: None,
        }
    }
}
