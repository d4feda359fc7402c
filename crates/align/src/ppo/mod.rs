//! RLHF with PPO (Ouyang et al. 2022; Stiennon et al. 2020), as TRL's PPOTrainer does it:
//!
//! 1. **Rollout.** The policy samples a response to each prompt of a rollout batch
//!    (temperature / top-k / top-p, KV cache). A reward model scores prompt + response
//!    text; a response that never emitted EOS loses `missing_eos_penalty`.
//! 2. **Rewards per token.** Each response token is charged the KL penalty
//!    `−β·KL_t(π‖π_ref)` against the frozen initial policy (`k1`: `log π − log π_ref`, or
//!    `k3`); the score is added at the last token.
//! 3. **Advantages.** A value model (the policy's body with a scalar head, or a copy of
//!    the reward model) estimates each state's return; GAE(γ, λ) turns rewards and values
//!    into advantages, whitened over the batch; returns = advantages + values.
//! 4. **Optimisation.** `num_ppo_epochs` passes over the rollout in `num_mini_batches`
//!    shuffled minibatches; each is one step of the shared Trainer on
//!    `clipped policy loss + vf_coef · clipped value loss`.
//! 5. **KL coefficient.** Fixed, or adapted after each rollout towards `target_kl`
//!    (Ziegler et al. 2019's proportional controller).
//!
//! The rollout and the KL coefficient are the task's state: they are written into every
//! checkpoint, so a run stopped in the middle of an iteration resumes bit for bit.
//! Metrics carry TRL's names (`objective/kl`, `objective/entropy`, `objective/scores`,
//! `objective/rlhf_reward`, `policy/clipfrac_avg`, `loss/value_avg`, …).

use std::sync::Mutex;

use burn::module::Module;
use burn::prelude::*;
use manabi_model::{DecoderClassifier, DecoderLm, ModelConfig};
use manabi_objectives::model::TrainModel;
use manabi_objectives::{Task, TaskLoss, TrainError};
use manabi_tokenize::TextTokenizer;

mod advantage;
mod experience;
mod recipe;
mod settings;

pub use advantage::{adapt_kl, gae, whiten};
pub use recipe::{PpoConfig, PpoReport, ppo};
pub use settings::{KlEstimator, PpoSettings};

use crate::rollout::{gather_targets, int_ids, log_probs, pack, to_vec, token_logps};
use advantage::kl_token;
use rand::SeedableRng;
use rand::seq::SliceRandom;
use serde::{Deserialize, Serialize};

/// The policy and its value model, trained together (TRL's `PolicyAndValueWrapper`).
#[derive(Module, Debug)]
pub struct PolicyValue {
    /// The policy (a causal LM, possibly with adapters).
    pub policy: DecoderLm,
    /// The value model: a body with a scalar head read at every token.
    pub value: DecoderClassifier,
}

impl PolicyValue {
    /// The policy and its value model, which gets its own parameter ids (see
    /// [`with_fresh_ids`]): a body cloned from the policy, or a reward model fine-tuned
    /// from the same base, carries the policy's ids.
    pub fn new(policy: DecoderLm, value: DecoderClassifier) -> Self {
        Self {
            policy,
            value: with_fresh_ids(value),
        }
    }
}

impl TrainModel for PolicyValue {
    fn build(cfg: &ModelConfig, device: &Device) -> Self {
        Self {
            policy: DecoderLm::new(cfg, device),
            value: DecoderClassifier::new(cfg, 1, device),
        }
    }
    fn model_config(&self) -> &ModelConfig {
        self.policy.config()
    }
    fn embedding_ids(&self) -> Vec<burn::module::ParamId> {
        let mut ids = self.policy.embedding_ids();
        ids.extend(self.value.lm.embedding_ids());
        ids
    }
}

/// Gives every parameter a new id. A module cloned from another shares its parameter
/// ids, and the optimizer and the gradients are keyed by id: a value model cloned from
/// the policy would otherwise receive the policy's updates (and give it its own).
struct FreshIds;

impl burn::module::ModuleMapper for FreshIds {
    fn map_float<const D: usize>(
        &mut self,
        param: burn::module::Param<Tensor<D>>,
    ) -> burn::module::Param<Tensor<D>> {
        let (_, value, mapper) = param.consume();
        burn::module::Param::from_mapped_value(burn::module::ParamId::new(), value, mapper)
    }
}

/// `module` with new parameter ids (see [`FreshIds`]).
pub fn with_fresh_ids<M: Module>(module: M) -> M {
    module.map(&mut FreshIds)
}

/// A prompt to respond to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Prompt {
    /// Its text.
    pub text: String,
    /// Its tokens.
    pub ids: Vec<u32>,
}

/// One rollout batch: prompt + response rows, right-padded, with what the loss needs at
/// each response position `i` (the token `inputs[i + 1]` given `inputs[..=i]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct Rollout {
    /// The PPO iteration it belongs to.
    pub iteration: usize,
    /// Rows.
    pub n: usize,
    /// Tokens per row.
    pub seq: usize,
    /// `[n·seq]` token ids.
    pub inputs: Vec<u32>,
    /// `[n·seq]` next-token targets: response tokens, else [`manabi_model::IGNORE_INDEX`].
    pub targets: Vec<i64>,
    /// `[n·seq]` log-probs of the targets under the sampling policy.
    pub logps: Vec<f32>,
    /// `[n·seq]` values of the states before each target.
    pub values: Vec<f32>,
    /// `[n·seq]` whitened advantages.
    pub advantages: Vec<f32>,
    /// `[n·seq]` returns.
    pub returns: Vec<f32>,
    /// Batch statistics logged with every minibatch (TRL's `objective/…` names).
    pub stats: Vec<(String, f64)>,
}

impl Rollout {
    /// Response tokens (the targets that count).
    fn tokens(&self) -> usize {
        self.targets.iter().filter(|&&t| t >= 0).count()
    }

    /// Rows `rows` (a micro-batch of a minibatch), with the rollout's statistics.
    fn rows(&self, rows: &[usize]) -> Self {
        let seq = self.seq;
        fn pick<T: Copy>(v: &[T], rows: &[usize], seq: usize) -> Vec<T> {
            rows.iter()
                .flat_map(|&i| v[i * seq..(i + 1) * seq].iter().copied())
                .collect()
        }
        Self {
            iteration: self.iteration,
            n: rows.len(),
            seq,
            inputs: pick(&self.inputs, rows, seq),
            targets: pick(&self.targets, rows, seq),
            logps: pick(&self.logps, rows, seq),
            values: pick(&self.values, rows, seq),
            advantages: pick(&self.advantages, rows, seq),
            returns: pick(&self.returns, rows, seq),
            stats: self.stats.clone(),
        }
    }
}

/// What PPO carries from step to step: the current rollout and the KL coefficient.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PpoState {
    /// β for the next rollout.
    pub kl_coef: f64,
    /// The rollout being optimised.
    pub rollout: Option<Rollout>,
}

/// Sampled responses to held-out prompts, scored: the before/after table of a run.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Default)]
pub struct SampleStats {
    /// Mean reward-model score (EOS penalty included).
    pub score: f64,
    /// Mean KL to the reference per response (sum over its tokens, k1).
    pub kl: f64,
    /// Mean negative log-prob per response token of the sampled tokens.
    pub entropy: f64,
    /// Mean response length in tokens.
    pub length: f64,
    /// Share of responses that ended with EOS after some text (an empty one fails).
    pub eos_rate: f64,
}

/// PPO as a [`Task`] of the shared Trainer.
#[derive(Debug)]
pub struct PpoTask {
    /// Training prompts.
    pub train: Vec<Prompt>,
    /// Held-out prompts (sampled and scored at evaluation).
    pub val: Vec<Prompt>,
    /// Settings.
    pub settings: PpoSettings,
    /// Responses per micro-batch (`train.batch_size`).
    pub micro_batch: usize,
    /// Micro-batches per optimizer step (`train.grad_accum`).
    pub grad_accum: usize,
    /// The policy's tokenizer.
    pub tokenizer: TextTokenizer,
    /// EOS.
    pub eos: u32,
    /// Padding.
    pub pad: u32,
    /// Seed of prompt order, sampling and minibatch shuffles.
    pub seed: u64,
    /// The frozen initial policy.
    pub reference: DecoderLm,
    /// The reward model and its tokenizer.
    pub reward: (DecoderClassifier, TextTokenizer),
    /// Held-out prompts scored per evaluation (0 = all).
    pub eval_prompts: usize,
    /// The rollout and KL coefficient.
    pub state: Mutex<PpoState>,
}

fn data_err(e: impl std::fmt::Display) -> TrainError {
    TrainError::Data(e.to_string())
}

fn mix(seed: u64, a: usize, b: usize) -> u64 {
    seed ^ (a as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ ((b as u64) << 40)
}

impl Task for PpoTask {
    type Model = PolicyValue;
    type Batch = Rollout;
    fn loss_label(&self) -> &'static str {
        "PPO loss (clipped policy + value)"
    }
    fn key_metric(&self) -> Option<(&'static str, &'static str)> {
        Some(("objective/rlhf_reward", "RLHF reward (score − β·KL)"))
    }

    fn batch(
        &self,
        model: &PolicyValue,
        step: usize,
        micro: usize,
        per_step: usize,
    ) -> manabi_objectives::Result<Rollout> {
        let s = &self.settings;
        let per_rollout = self.steps_per_rollout();
        let (iteration, k) = (step / per_rollout, step % per_rollout);
        let mut state = self
            .state
            .lock()
            .map_err(|_| data_err("PPO state poisoned"))?;
        if state.rollout.as_ref().map(|r| r.iteration) != Some(iteration) {
            let kl_coef = state.kl_coef;
            let r = self.rollout(model, iteration, kl_coef)?;
            if let Some(target) = s.target_kl {
                let kl = r
                    .stats
                    .iter()
                    .find(|(k, _)| k == "objective/kl")
                    .map_or(0.0, |x| x.1);
                state.kl_coef = adapt_kl(kl_coef, kl, target, r.n, s.kl_horizon);
            }
            state.rollout = Some(r);
        }
        let Some(r) = state.rollout.as_ref() else {
            return Err(data_err("no rollout"));
        };
        // Minibatch k % num_mini_batches of epoch k / num_mini_batches: a fresh shuffle of
        // the rollout per epoch.
        let (epoch, mb) = (k / s.num_mini_batches, k % s.num_mini_batches);
        let mut order: Vec<usize> = (0..r.n).collect();
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(mix(self.seed, iteration, epoch + 2));
        order.shuffle(&mut rng);
        let mb_size = r.n / s.num_mini_batches;
        let micro_size = mb_size / per_step.max(1);
        let start = mb * mb_size + micro * micro_size;
        Ok(r.rows(&order[start..start + micro_size]))
    }

    fn val_batch(&self, _i: usize) -> manabi_objectives::Result<Rollout> {
        // PPO has no validation loss; evaluation samples and scores held-out prompts.
        Ok(Rollout {
            seq: 1,
            ..Rollout::default()
        })
    }

    fn loss(
        &self,
        model: &PolicyValue,
        b: &Rollout,
        device: &Device,
    ) -> manabi_objectives::Result<TaskLoss> {
        if b.n == 0 {
            return Ok(TaskLoss::new(Tensor::zeros([1], device)));
        }
        let s = &self.settings;
        let (n, seq) = (b.n, b.seq);
        let floats = |v: &[f32]| Tensor::<1>::from_floats(v, device).reshape([n, seq]);
        let mask: Vec<f32> = b
            .targets
            .iter()
            .map(|&t| if t >= 0 { 1.0 } else { 0.0 })
            .collect();
        let mask = floats(&mask);
        let ids = int_ids(&b.inputs, n, seq, device);
        let logp_all = log_probs(&model.policy, ids.clone(), s.temperature);
        // Entropy of the policy's distribution at each response position.
        let entropy = (logp_all.clone().exp() * logp_all.clone())
            .sum_dim(2)
            .reshape([n, seq])
            .neg();
        let logp = gather_targets(logp_all, &b.targets);
        let old = floats(&b.logps);
        let adv = floats(&b.advantages);
        let log_ratio = logp - old;
        let ratio = log_ratio.clone().exp();
        let pg1 = adv.clone().neg() * ratio.clone();
        let pg2 = adv.neg() * ratio.clone().clamp(1.0 - s.cliprange, 1.0 + s.cliprange);
        let pg_clipped = pg2.clone().greater(pg1.clone()).float();
        let pg = pg1.max_pair(pg2) * mask.clone();

        let vpred = model.value.forward_tokens(ids).reshape([n, seq]);
        let old_v = floats(&b.values);
        let ret = floats(&b.returns);
        let v_clipped =
            old_v.clone() + (vpred.clone() - old_v).clamp(-s.cliprange_value, s.cliprange_value);
        let vf1 = (vpred - ret.clone()).powi_scalar(2);
        let vf2 = (v_clipped - ret).powi_scalar(2);
        let vf_clipped = vf2.clone().greater(vf1.clone()).float();
        let vf = vf1.max_pair(vf2) * mask.clone() * 0.5;

        let pg_sum = pg.sum();
        let vf_sum = vf.sum();
        let sum = pg_sum.clone() + vf_sum.clone() * s.vf_coef;
        let scalar = |t: Tensor<1>| t.into_scalar::<f32>() as f64;
        let tokens = b.tokens() as f64;
        let mut metrics: Vec<(String, f64)> = b
            .stats
            .iter()
            .map(|(k, v)| (k.clone(), v * tokens))
            .collect();
        metrics.extend([
            ("loss/policy_avg".to_string(), scalar(pg_sum.detach())),
            ("loss/value_avg".into(), scalar(vf_sum.detach())),
            (
                "policy/clipfrac_avg".into(),
                scalar((pg_clipped * mask.clone()).sum()),
            ),
            (
                "val/clipfrac_avg".into(),
                scalar((vf_clipped * mask.clone()).sum()),
            ),
            (
                "policy/approxkl_avg".into(),
                scalar((log_ratio.detach().powi_scalar(2) * mask.clone()).sum() * 0.5),
            ),
            (
                "policy/entropy_avg".into(),
                scalar((entropy.detach() * mask.clone()).sum()),
            ),
            ("val/ratio".into(), scalar((ratio.detach() * mask).sum())),
        ]);
        Ok(TaskLoss { sum, metrics })
    }

    fn targets(b: &Rollout) -> usize {
        b.tokens()
    }

    fn tokens(b: &Rollout) -> usize {
        b.n * b.seq
    }

    fn evaluate(
        &self,
        model: &PolicyValue,
        _device: &Device,
    ) -> manabi_objectives::Result<Vec<(String, f64)>> {
        let st = self
            .sample_stats(&model.policy, self.eval_set())
            .map_err(data_err)?;
        Ok(vec![
            ("score".into(), st.score),
            ("kl".into(), st.kl),
            ("entropy".into(), st.entropy),
            ("mean_length".into(), st.length),
            ("eos_rate".into(), st.eos_rate),
        ])
    }

    fn save_state(&self) -> manabi_objectives::Result<Option<String>> {
        let state = self
            .state
            .lock()
            .map_err(|_| data_err("PPO state poisoned"))?;
        serde_json::to_string(&*state).map(Some).map_err(data_err)
    }

    fn restore_state(&self, text: Option<&str>) -> manabi_objectives::Result<()> {
        let Some(text) = text else {
            return Err(data_err(format!(
                "the checkpoint has no {}: it was not written by `manabi ppo`",
                manabi_objectives::tasks::TASK_STATE_FILE
            )));
        };
        let restored: PpoState = serde_json::from_str(text).map_err(|e| {
            data_err(format!(
                "{}: {e}",
                manabi_objectives::tasks::TASK_STATE_FILE
            ))
        })?;
        *self
            .state
            .lock()
            .map_err(|_| data_err("PPO state poisoned"))? = restored;
        Ok(())
    }
}
