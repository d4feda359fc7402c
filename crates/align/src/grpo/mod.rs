//! Group relative policy optimisation with verifiable rewards (Shao et al. 2024, as TRL's
//! GRPOTrainer): for each prompt, G completions are sampled from the current policy and
//! scored by reward functions (exact match against the reference answer, a format
//! pattern, a reward model's score of the text); each completion's advantage is its reward minus the group's mean (divided by
//! the group's standard deviation with `scale_rewards`). The loss is the clipped policy
//! objective per completion token, averaged over each completion, then over completions,
//! with an optional KL penalty `β·KL(π‖π_ref)` (k3 estimator) against the initial policy.
//! One optimisation step per rollout batch, so the ratio to the sampling policy is 1 at
//! the step (clipping matters only for the logged `clip_ratio`). Metrics as TRL names
//! them: `reward`, `reward_std`, `rewards/<function>/mean`, `frac_reward_zero_std`,
//! `completions/mean_length`, `clip_ratio/region_mean`, `kl`.

mod recipe;

use std::path::PathBuf;

use burn::module::Module;
use burn::prelude::*;

use manabi_finetune::sft::normalise;
use manabi_model::{DecoderLm, GenerateOptions};
use manabi_objectives::{Task, TaskLoss};
use manabi_tokenize::TextTokenizer;
use serde::{Deserialize, Serialize};

use crate::error::{AlignError, Result};

pub use recipe::{GrpoConfig, GrpoReport, grpo};

/// `[grpo]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GrpoSettings {
    /// Completions sampled per prompt (G).
    pub num_generations: usize,
    /// Longest completion.
    pub max_new_tokens: usize,
    /// Sampling temperature.
    pub temperature: f32,
    /// Top-k sampling (0 = off).
    pub top_k: usize,
    /// KL coefficient β against the initial policy (0 = no reference pass).
    pub beta: f64,
    /// Clipping range ε of the ratio.
    pub epsilon: f64,
    /// Divide advantages by the group's standard deviation.
    pub scale_rewards: bool,
    /// Reward functions: `exact_match` (completion, up to a newline, equals the answer),
    /// `format` (the completion matches `format_pattern`) and `model` (the score of
    /// `reward_model` for prompt + completion text, as TRL's GRPO uses a reward model).
    pub rewards: Vec<String>,
    /// The reward model of the `model` reward: a `manabi reward` checkpoint or a Hugging
    /// Face `*ForSequenceClassification` folder with one label. It reads the decoded
    /// text with its tokenizer, which must be the policy's unless `reward_own_tokenizer`.
    pub reward_model: Option<std::path::PathBuf>,
    /// Let the reward model's tokenizer differ from the policy's (it re-encodes the
    /// decoded text, as TRL's `reward_processing_classes`); off, another is an error.
    pub reward_own_tokenizer: bool,
    /// A regular-expression-free format check: the completion must start with this
    /// prefix and end with EOS after some text (used by `format`; an empty completion
    /// fails).
    pub format_prefix: String,
}

impl Default for GrpoSettings {
    fn default() -> Self {
        Self {
            num_generations: 8,
            max_new_tokens: 8,
            temperature: 1.0,
            top_k: 0,
            beta: 0.0,
            epsilon: 0.2,
            scale_rewards: true,
            rewards: vec!["exact_match".into()],
            reward_model: None,
            reward_own_tokenizer: false,
            format_prefix: " ".into(),
        }
    }
}

/// A prompt with its checkable answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RlPrompt {
    /// The prompt text.
    pub prompt: String,
    /// The reference answer.
    pub answer: String,
}

/// Reads `{"prompt", "answer"}` JSONL files.
pub fn read_prompts(paths: &[PathBuf]) -> Result<Vec<RlPrompt>> {
    read_rl(paths, true)
}

/// Reads the `prompt` of every line of JSONL files (TRL's prompt-only sets; preference
/// files work too, their other fields unread).
pub fn read_prompt_texts(paths: &[PathBuf]) -> Result<Vec<String>> {
    Ok(read_rl(paths, false)?
        .into_iter()
        .map(|p| p.prompt)
        .collect())
}

fn read_rl(paths: &[PathBuf], need_answer: bool) -> Result<Vec<RlPrompt>> {
    let mut out = Vec::new();
    for path in paths {
        let before = out.len();
        for record in manabi_tokenize::read_jsonl(path) {
            let manabi_tokenize::JsonLine { line, value: v } = record?;
            let bad = |message: String| AlignError::Data {
                path: path.clone(),
                line,
                message,
            };
            if !v.is_object() {
                return Err(bad("expected a JSON object".into()));
            }
            let field = |f: &str| match &v[f] {
                serde_json::Value::String(s) if !s.trim().is_empty() => Ok(s.clone()),
                serde_json::Value::String(_) if f == "answer" => Err(bad(
                    "field `answer` is empty (an empty completion would count as correct)".into(),
                )),
                serde_json::Value::String(_) => Err(bad(format!("field `{f}` is empty"))),
                serde_json::Value::Null => Err(bad(format!("missing field `{f}`"))),
                _ => Err(bad(format!("field `{f}` must be a string"))),
            };
            let prompt = field("prompt")?;
            let answer = if need_answer {
                field("answer")?
            } else {
                String::new()
            };
            if answer.trim().contains('\n') {
                return Err(bad(
                    "field `answer` has several lines; exact match compares the first line \
                     of a completion, so it could never match"
                        .into(),
                ));
            }
            out.push(RlPrompt { prompt, answer });
        }
        if out.len() == before {
            return Err(AlignError::io(path, "no prompts in this file"));
        }
    }
    if out.is_empty() {
        return Err(AlignError::config("data.train", "no prompt files"));
    }
    Ok(out)
}

/// The reward of one completion text (`ended` = it stopped with EOS): the sum of
/// [`reward_parts`].
pub fn reward(s: &GrpoSettings, completion: &str, ended: bool, answer: &str) -> f64 {
    reward_parts(s, completion, ended, answer).iter().sum()
}

/// Each reward function's value for one completion, in `s.rewards` order (`model` is 0
/// here; the reward model's scores are added per batch).
pub fn reward_parts(s: &GrpoSettings, completion: &str, ended: bool, answer: &str) -> Vec<f64> {
    let first_line = completion.split('\n').next().unwrap_or("");
    s.rewards
        .iter()
        .map(|r| match r.as_str() {
            "exact_match" => f64::from(u8::from(normalise(first_line) == normalise(answer))),
            "format" => f64::from(u8::from(
                manabi_finetune::sft::ended_with_eos(ended, completion)
                    && completion.starts_with(&s.format_prefix),
            )),
            _ => 0.0,
        })
        .collect()
}

/// Rollouts of one micro-batch: prompt + completion rows with advantages.
#[derive(Debug, Clone)]
pub struct Rollouts {
    /// Completions.
    pub n: usize,
    /// Tokens per row.
    pub seq: usize,
    /// `[n·seq]` prompt + completion (+ EOS when it stopped), right-padded.
    pub inputs: Vec<u32>,
    /// Next-token targets: completion tokens only.
    pub targets: Vec<i64>,
    /// Completion tokens per row.
    pub lengths: Vec<usize>,
    /// Advantage of each row.
    pub advantages: Vec<f64>,
    /// Reward of each row.
    pub rewards: Vec<f64>,
    /// Each reward function's value for each row (`settings.rewards` order).
    pub reward_parts: Vec<Vec<f64>>,
    /// Groups whose rewards were all equal.
    pub zero_std_groups: usize,
    /// Groups.
    pub groups: usize,
    /// Reference log-probs per target position `[n·seq]` (β > 0).
    pub reference: Option<Vec<f32>>,
}

/// GRPO as a [`Task`] of the shared Trainer: batches are rollouts of the current model.
#[derive(Debug)]
pub struct GrpoTask {
    /// Training prompts.
    pub train: Vec<RlPrompt>,
    /// Held-out prompts (greedy exact match at evaluation).
    pub val: Vec<RlPrompt>,
    /// Settings.
    pub settings: GrpoSettings,
    /// Prompts per micro-batch (each sampled G times).
    pub prompts_per_batch: usize,
    /// The tokenizer.
    pub tokenizer: TextTokenizer,
    /// EOS.
    pub eos: u32,
    /// Padding.
    pub pad: u32,
    /// Seed of the prompt order and the sampling.
    pub seed: u64,
    /// The frozen initial policy (for β > 0).
    pub reference: Option<DecoderLm>,
    /// Held-out prompts scored at evaluation (0 = all).
    pub eval_prompts: usize,
    /// The loaded reward model and its tokenizer (for the `model` reward).
    pub reward_model: Option<(manabi_model::DecoderClassifier, TextTokenizer)>,
    /// Longest prompt in tokens: a longer one loses its start (after the BOS), leaving
    /// room in the model's positions for the completion, as `manabi ppo` cuts prompts.
    pub prompt_room: usize,
}

/// Per-token log-probs of the rollouts' targets under `model` (0 where ignored).
///
/// # Shapes
/// returns `[n, seq]`
fn token_logps(model: &DecoderLm, r: &Rollouts, device: &Device) -> Tensor<2> {
    crate::rollout::token_logps(model, (&r.inputs, &r.targets), (r.n, r.seq), 1.0, device)
}

impl GrpoTask {
    fn rollouts(
        &self,
        model: &DecoderLm,
        prompts: &[&RlPrompt],
        sample_seed: u64,
    ) -> manabi_objectives::Result<Rollouts> {
        let err = |e: String| manabi_objectives::TrainError::Data(e);
        let s = &self.settings;
        let g = s.num_generations;
        let mut encoded = Vec::with_capacity(prompts.len() * g);
        for p in prompts {
            // TRL's `processing_class(text=prompts)`: the tokenizer's BOS first when it
            // adds one.
            let mut ids = self
                .tokenizer
                .encode_with_specials(&p.prompt)
                .map_err(|e| err(e.to_string()))?;
            crate::policy::cut_prompt(&mut ids, self.prompt_room, self.tokenizer.specials_prefix());
            encoded.extend(std::iter::repeat_n(ids, g));
        }
        let opts = GenerateOptions {
            max_new_tokens: s.max_new_tokens,
            temperature: s.temperature,
            top_k: (s.top_k > 0).then_some(s.top_k),
            seed: sample_seed,
            eos_ids: vec![self.eos],
            pad_id: self.pad,
            ..GenerateOptions::default()
        };
        let sampler = model.valid();
        let completions = manabi_model::generate(&sampler, &encoded, &opts, None)
            .map_err(|e| err(e.to_string()))?;
        let mut rewards = Vec::with_capacity(encoded.len());
        let mut rows = Vec::with_capacity(encoded.len());
        let mut lengths = Vec::with_capacity(encoded.len());
        let mut texts = Vec::with_capacity(encoded.len());
        let mut reward_parts = Vec::with_capacity(encoded.len());
        for (k, c) in completions.iter().enumerate() {
            let ended = c.len() < s.max_new_tokens;
            let text = self
                .tokenizer
                .decode(c, true)
                .map_err(|e| err(e.to_string()))?;
            reward_parts.push(self::reward_parts(s, &text, ended, &prompts[k / g].answer));
            texts.push((prompts[k / g].prompt.clone(), text));
            let mut comp = c.clone();
            if ended {
                comp.push(self.eos);
            }
            lengths.push(comp.len());
            rows.push((encoded[k].clone(), comp));
        }
        if let (Some((rm, tok)), Some(fi)) = (
            &self.reward_model,
            s.rewards.iter().position(|r| r == "model"),
        ) {
            let scores = crate::reward::score_texts(rm, tok, &texts, &sampler.devices()[0])
                .map_err(|e| err(e.to_string()))?;
            for (parts, x) in reward_parts.iter_mut().zip(scores) {
                parts[fi] = x;
            }
        }
        rewards.extend(reward_parts.iter().map(|p| p.iter().sum::<f64>()));
        // Group-relative advantages.
        let mut advantages = vec![0.0; rewards.len()];
        let mut zero_std = 0;
        for (gi, group) in rewards.chunks(g).enumerate() {
            let mean = group.iter().sum::<f64>() / g as f64;
            let var = group.iter().map(|r| (r - mean).powi(2)).sum::<f64>() / (g.max(2) - 1) as f64;
            let std = var.sqrt();
            if std < 1e-9 {
                zero_std += 1;
            }
            for (j, r) in group.iter().enumerate() {
                let a = r - mean;
                advantages[gi * g + j] = if s.scale_rewards { a / (std + 1e-4) } else { a };
            }
        }
        let packed: Vec<(&[u32], &[u32])> = rows
            .iter()
            .map(|(p, c)| (p.as_slice(), c.as_slice()))
            .collect();
        let (inputs, targets, seq) = crate::rollout::pack(&packed, self.pad);
        let mut r = Rollouts {
            n: rows.len(),
            seq,
            inputs,
            targets,
            lengths,
            advantages,
            rewards,
            reward_parts,
            zero_std_groups: zero_std,
            groups: prompts.len(),
            reference: None,
        };
        if let Some(reference) = &self.reference {
            let device = reference.embed_tokens.weight.device();
            let lp = token_logps(reference, &r, &device);
            r.reference = Some(
                lp.into_data()
                    .convert::<f32>()
                    .try_into_vec()
                    .unwrap_or_default(),
            );
        }
        Ok(r)
    }
}

fn mix(seed: u64, step: usize, micro: usize) -> u64 {
    seed ^ (step as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ ((micro as u64) << 40)
}

impl Task for GrpoTask {
    type Model = DecoderLm;
    type Batch = Rollouts;
    fn loss_label(&self) -> &'static str {
        "GRPO loss (clipped policy + β·KL)"
    }
    fn key_metric(&self) -> Option<(&'static str, &'static str)> {
        Some(("reward", "mean reward of the rollouts"))
    }

    fn batch(
        &self,
        model: &DecoderLm,
        step: usize,
        micro: usize,
        per_step: usize,
    ) -> manabi_objectives::Result<Rollouts> {
        let g = step * per_step + micro;
        let idx = manabi_finetune::sft::encode::schedule(
            self.train.len(),
            self.prompts_per_batch,
            g,
            self.seed,
        );
        let prompts: Vec<&RlPrompt> = idx.iter().map(|&i| &self.train[i]).collect();
        self.rollouts(model, &prompts, mix(self.seed, step, micro))
    }

    fn val_batch(&self, i: usize) -> manabi_objectives::Result<Rollouts> {
        // The validation loss of GRPO is not meaningful; evaluation scores held-out
        // prompts by greedy generation instead (`evaluate`). An empty batch keeps the
        // Trainer's loss evaluation cheap.
        let _ = i;
        Ok(Rollouts {
            n: 0,
            seq: 1,
            inputs: Vec::new(),
            targets: Vec::new(),
            lengths: Vec::new(),
            advantages: Vec::new(),
            rewards: Vec::new(),
            reward_parts: Vec::new(),
            zero_std_groups: 0,
            groups: 0,
            reference: None,
        })
    }

    fn loss(
        &self,
        model: &DecoderLm,
        r: &Rollouts,
        device: &Device,
    ) -> manabi_objectives::Result<TaskLoss> {
        if r.n == 0 {
            return Ok(TaskLoss::new(Tensor::zeros([1], device)));
        }
        let s = &self.settings;
        let logp = token_logps(model, r, device); // [n, seq]
        let mask: Vec<f32> = r
            .targets
            .iter()
            .map(|&t| if t >= 0 { 1.0 } else { 0.0 })
            .collect();
        let mask = Tensor::<1>::from_floats(mask.as_slice(), device).reshape([r.n, r.seq]);
        // The sampling policy is the current one: ratio = exp(logp − stop_grad(logp)) = 1,
        // whose gradient is that of logp.
        let ratio = (logp.clone() - logp.clone().detach()).exp();
        let adv: Vec<f32> = r.advantages.iter().map(|&a| a as f32).collect();
        let adv = Tensor::<1>::from_floats(adv.as_slice(), device).reshape([r.n, 1]);
        let unclipped = ratio.clone() * adv.clone();
        let clipped = ratio.clamp(1.0 - s.epsilon, 1.0 + s.epsilon) * adv;
        let mut per_token = unclipped.min_pair(clipped).neg(); // [n, seq]
        let mut kl_sum = 0.0;
        if let (Some(reference), true) = (&r.reference, s.beta > 0.0) {
            let refl = Tensor::<1>::from_floats(reference.as_slice(), device).reshape([r.n, r.seq]);
            // k3 estimator: exp(ref − logp) − (ref − logp) − 1.
            let d = refl - logp.clone();
            let kl = d.clone().exp() - d - 1.0;
            let seq_kl = (kl.clone() * mask.clone()).sum_dim(1).reshape([r.n]);
            let lens: Vec<f32> = r.lengths.iter().map(|&l| l.max(1) as f32).collect();
            let lens_t = Tensor::<1>::from_floats(lens.as_slice(), device);
            kl_sum = (seq_kl / lens_t).sum().into_scalar::<f32>() as f64;
            per_token = per_token + kl * s.beta;
        }
        // Mean over each completion's tokens, summed over completions (the Trainer divides
        // by their count).
        let lens: Vec<f32> = r.lengths.iter().map(|&l| l.max(1) as f32).collect();
        let lens = Tensor::<1>::from_floats(lens.as_slice(), device);
        let per_seq = (per_token * mask).sum_dim(1).reshape([r.n]) / lens;
        let mean = r.rewards.iter().sum::<f64>() / r.n as f64;
        let std = (r.rewards.iter().map(|x| (x - mean).powi(2)).sum::<f64>()
            / r.n.max(2).saturating_sub(1) as f64)
            .sqrt();
        let n = r.n as f64;
        // TRL's per-function means: rewards/<name>/mean.
        let per_function = s.rewards.iter().enumerate().map(|(fi, name)| {
            (
                format!("rewards/{name}/mean"),
                r.reward_parts.iter().map(|p| p[fi]).sum::<f64>(),
            )
        });
        Ok(TaskLoss {
            sum: per_seq.sum(),
            metrics: per_function
                .chain([
                    ("reward".into(), r.rewards.iter().sum()),
                    ("reward_std".into(), std * n),
                    (
                        "frac_reward_zero_std".into(),
                        r.zero_std_groups as f64 / r.groups.max(1) as f64 * n,
                    ),
                    (
                        "completions/mean_length".into(),
                        r.lengths.iter().sum::<usize>() as f64,
                    ),
                    ("clip_ratio/region_mean".into(), 0.0),
                    ("kl".into(), kl_sum),
                ])
                .collect(),
        })
    }

    fn targets(r: &Rollouts) -> usize {
        r.n
    }

    fn tokens(r: &Rollouts) -> usize {
        r.n * r.seq
    }

    fn evaluate(
        &self,
        model: &DecoderLm,
        _device: &Device,
    ) -> manabi_objectives::Result<Vec<(String, f64)>> {
        let m = if self.eval_prompts == 0 {
            self.val.len()
        } else {
            self.eval_prompts.min(self.val.len())
        };
        let acc = greedy_exact_match(
            model,
            &self.tokenizer,
            &self.val[..m],
            self.eos,
            self.pad,
            self.settings.max_new_tokens,
        )
        .map_err(|e| manabi_objectives::TrainError::Data(e.to_string()))?;
        Ok(vec![("exact_match".into(), acc)])
    }
}

/// Share of prompts whose greedy completion (first line) equals the answer.
pub fn greedy_exact_match(
    model: &DecoderLm,
    tok: &TextTokenizer,
    prompts: &[RlPrompt],
    eos: u32,
    pad: u32,
    max_new: usize,
) -> Result<f64> {
    let opts = GenerateOptions {
        max_new_tokens: max_new,
        eos_ids: vec![eos],
        pad_id: pad,
        ..GenerateOptions::default()
    };
    // Prompts cut as the rollouts cut them, to leave room for the answer.
    let room = crate::policy::prompt_room(
        model.config(),
        max_new,
        model.virtual_tokens(),
        "grpo.max_new_tokens",
    )?;
    let mut hits = 0;
    for chunk in prompts.chunks(64) {
        let ids = chunk
            .iter()
            .map(|p| {
                let mut ids = tok.encode_with_specials(&p.prompt)?;
                crate::policy::cut_prompt(&mut ids, room, tok.specials_prefix());
                Ok(ids)
            })
            .collect::<Result<Vec<_>>>()?;
        let out = manabi_model::generate(model, &ids, &opts, None)?;
        for (p, c) in chunk.iter().zip(out) {
            let text = tok.decode(&c, true)?;
            let first = text.split('\n').next().unwrap_or("");
            hits += usize::from(normalise(first) == normalise(&p.answer));
        }
    }
    Ok(hits as f64 / prompts.len().max(1) as f64)
}
