//! Direct preference optimisation (Rafailov et al. 2023) and its variants, as TRL's
//! DPOTrainer computes them: the policy's and the frozen reference's log-probabilities
//! of each completion, `h = (log πc − log πr) − (log refc − log refr)`, and
//!
//! - `sigmoid` (DPO, with optional label smoothing, cDPO): `−(1−ε)·log_sigmoid(βh) − ε·log_sigmoid(−βh)`
//! - `robust` (Chowdhury et al. 2024): `((1−ε)·(−log_sigmoid(βh)) + ε·log_sigmoid(−βh)) / (1−2ε)`
//! - `hinge` (RSO, Liu et al. 2024): `max(0, 1 − βh)`
//! - `ipo` (Azar et al. 2023): `(h − 1/(2β))²`, with per-token average log-probs
//! - `simpo` (Meng et al. 2024, reference-free): `h = avg log πc − avg log πr`,
//!   `−(1−ε)·log_sigmoid(βh − γ) − ε·log_sigmoid(−(βh − γ))`
//!
//! The reference log-probs are computed once, before training, and cached: by the initial
//! model (for LoRA, the base with its adapters at zero: exactly "adapters disabled"), or
//! by the model folder `dpo.reference` names (TRL's `ref_model`), which must share the
//! policy's vocabulary ([`load_reference`]). [`dpo_eval`] (`manabi dpo eval`) scores a
//! trained policy against any reference without training.
//! Metrics carry TRL's names: `rewards/chosen`, `rewards/rejected`,
//! `rewards/accuracies`, `rewards/margins`, `logps/chosen`, `logps/rejected`.

mod eval;
mod recipe;

use std::path::PathBuf;

use burn::prelude::*;
use burn::tensor::activation::{log_sigmoid, log_softmax, relu};
use manabi_model::{DecoderLm, IGNORE_INDEX};
use manabi_objectives::{Task, TaskLoss};
use serde::{Deserialize, Serialize};

use crate::pref::TokenPair;

pub use eval::{DpoEval, EvalOptions, dpo_eval, evaluate_pairs, load_reference};
pub use recipe::{DpoConfig, DpoReport, dpo, preference_accuracy};

/// The DPO loss variant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum LossType {
    /// DPO's logistic loss (with label smoothing: conservative DPO).
    #[default]
    Sigmoid,
    /// Robust DPO: unbiased under label noise `label_smoothing`.
    Robust,
    /// The hinge loss of RSO.
    Hinge,
    /// Identity preference optimisation (squared loss on average log-probs).
    Ipo,
    /// Reference-free, length-normalised SimPO.
    Simpo,
}

/// `[dpo]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DpoSettings {
    /// β: strength of the KL constraint (inverse temperature of the implicit reward).
    pub beta: f64,
    /// The loss variant.
    pub loss_type: LossType,
    /// ε: assumed share of flipped labels (sigmoid, robust, simpo).
    pub label_smoothing: f64,
    /// SimPO's target margin γ.
    pub simpo_gamma: f64,
    /// The frozen reference (TRL's `ref_model`): a model folder (manabi checkpoint, run
    /// folder or Hugging Face folder) with the policy's vocabulary. `None`: the initial
    /// policy.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reference: Option<PathBuf>,
}

impl Default for DpoSettings {
    fn default() -> Self {
        Self {
            beta: 0.1,
            loss_type: LossType::Sigmoid,
            label_smoothing: 0.0,
            simpo_gamma: 0.5,
            reference: None,
        }
    }
}

impl DpoSettings {
    /// Whether a reference model is used.
    pub fn uses_reference(&self) -> bool {
        self.loss_type != LossType::Simpo
    }
}

/// Pairs as one batch: the chosen sequences (rows `0..n`), then the rejected ones.
#[derive(Debug, Clone)]
pub struct PairBatch {
    /// Pairs.
    pub n: usize,
    /// Tokens per row.
    pub seq: usize,
    /// Input ids `[2n·seq]`.
    pub inputs: Vec<u32>,
    /// Next-token targets `[2n·seq]`: completion tokens only, else [`IGNORE_INDEX`].
    pub targets: Vec<i64>,
    /// Completion tokens of each row `[2n]`.
    pub lengths: Vec<usize>,
    /// Reference log-probs of each row `[2n]`, summed over the completion.
    pub reference: Vec<f64>,
}

/// The batch of `pairs` (right-padded with `pad`).
pub fn pair_batch(pairs: &[&TokenPair], reference: &[(f64, f64)], pad: u32) -> PairBatch {
    let rows: Vec<(&[u32], &[u32])> = pairs
        .iter()
        .map(|p| (p.prompt.as_slice(), p.chosen.as_slice()))
        .chain(
            pairs
                .iter()
                .map(|p| (p.prompt.as_slice(), p.rejected.as_slice())),
        )
        .collect();
    let seq = rows
        .iter()
        .map(|(p, c)| p.len() + c.len() - 1)
        .max()
        .unwrap_or(1);
    let mut inputs = Vec::with_capacity(rows.len() * seq);
    let mut targets = Vec::with_capacity(rows.len() * seq);
    let mut lengths = Vec::with_capacity(rows.len());
    for (prompt, completion) in &rows {
        let all: Vec<u32> = prompt.iter().chain(completion.iter()).copied().collect();
        let n = all.len() - 1;
        inputs.extend_from_slice(&all[..n]);
        // Position i predicts token i+1; completion tokens start at prompt.len().
        targets.extend((1..=n).map(|k| {
            if k >= prompt.len() {
                all[k] as i64
            } else {
                IGNORE_INDEX
            }
        }));
        inputs.extend(std::iter::repeat_n(pad, seq - n));
        targets.extend(std::iter::repeat_n(IGNORE_INDEX, seq - n));
        lengths.push(completion.len());
    }
    let reference = reference
        .iter()
        .map(|r| r.0)
        .chain(reference.iter().map(|r| r.1))
        .collect();
    PairBatch {
        n: pairs.len(),
        seq,
        inputs,
        targets,
        lengths,
        reference,
    }
}

/// Log-probability of each row's completion under `model`, summed over its tokens
/// (EOS included).
///
/// # Shapes
/// returns `[2n]`
pub fn sequence_logps(model: &DecoderLm, b: &PairBatch, device: &Device) -> Tensor<1> {
    let rows = 2 * b.n;
    let ids: Vec<i64> = b.inputs.iter().map(|&x| x as i64).collect();
    let ids = Tensor::<1, Int>::from_ints(ids.as_slice(), device).reshape([rows, b.seq]);
    // A large vocabulary over an output layer that does not train (LoRA): the
    // log-probabilities a chunk of logits at a time, never the whole `[rows, seq, vocab]`.
    let opts = manabi_model::ForwardOptions::default();
    if let Some(losses) = model.chunked_token_losses(ids.clone(), &opts, &b.targets) {
        return losses
            .neg()
            .reshape([rows, b.seq])
            .sum_dim(1)
            .reshape([rows]);
    }
    let logits = model.forward(ids); // [rows, seq, vocab]
    let v = logits.dims()[2];
    let logp = log_softmax(logits.reshape([rows * b.seq, v]), 1);
    let idx: Vec<i64> = b.targets.iter().map(|&t| t.max(0)).collect();
    let keep: Vec<f32> = b
        .targets
        .iter()
        .map(|&t| if t >= 0 { 1.0 } else { 0.0 })
        .collect();
    let idx = Tensor::<1, Int>::from_ints(idx.as_slice(), device).reshape([rows * b.seq, 1]);
    let keep = Tensor::<1>::from_floats(keep.as_slice(), device);
    let picked = logp.gather(1, idx).reshape([rows * b.seq]) * keep; // [rows·seq]
    picked.reshape([rows, b.seq]).sum_dim(1).reshape([rows])
}

fn values(t: Tensor<1>) -> Vec<f64> {
    t.into_data()
        .convert::<f64>()
        .try_into_vec::<f64>()
        .unwrap_or_default()
}

fn floats(v: &[f64], device: &Device) -> Tensor<1> {
    let v: Vec<f32> = v.iter().map(|&x| x as f32).collect();
    Tensor::<1>::from_floats(v.as_slice(), device)
}

/// Per-pair losses `[n]` and TRL's metrics (summed over the pairs; the Trainer divides by
/// the pair count) from the policy's summed log-probs `[2n]` (chosen rows, then rejected),
/// the reference's, and the completion lengths.
pub fn dpo_loss(
    s: &DpoSettings,
    policy: Tensor<1>,
    reference: &[f64],
    lengths: &[usize],
    device: &Device,
) -> (Tensor<1>, Vec<(String, f64)>) {
    let n = lengths.len() / 2;
    let (beta, eps) = (s.beta, s.label_smoothing);
    let lens: Vec<f64> = lengths.iter().map(|&l| l.max(1) as f64).collect();
    let (lc, lr) = (floats(&lens[..n], device), floats(&lens[n..], device));
    let pc = policy.clone().narrow(0, 0, n);
    let pr = policy.narrow(0, n, n);
    let (rc, rr) = (
        floats(&reference[..n], device),
        floats(&reference[n..2 * n], device),
    );
    let smoothed =
        |z: Tensor<1>| log_sigmoid(z.clone()).neg() * (1.0 - eps) - log_sigmoid(z.neg()) * eps;
    let (losses, chosen_r, rejected_r, logps_c, logps_r) = match s.loss_type {
        LossType::Simpo => {
            // Reference-free: average log-probs, target margin γ.
            let (ac, ar) = (pc / lc, pr / lr);
            let z = (ac.clone() - ar.clone()) * beta - s.simpo_gamma;
            let (vc, vr) = (values(ac.clone()), values(ar.clone()));
            let reward = |v: &[f64]| v.iter().map(|x| beta * x).collect::<Vec<_>>();
            (smoothed(z), reward(&vc), reward(&vr), vc, vr)
        }
        loss_type => {
            let (ratio_c, ratio_r) = (pc.clone() - rc, pr.clone() - rr);
            let h = ratio_c.clone() - ratio_r.clone();
            let losses = match loss_type {
                LossType::Robust => {
                    (log_sigmoid(h.clone() * beta).neg() * (1.0 - eps)
                        + log_sigmoid(h * -beta) * eps)
                        / (1.0 - 2.0 * eps)
                }
                LossType::Hinge => relu((h * beta).neg() + 1.0),
                // Per-token average log-ratios, for the loss only.
                LossType::Ipo => (ratio_c.clone() / lc - ratio_r.clone() / lr - 1.0 / (2.0 * beta))
                    .powi_scalar(2),
                _ => smoothed(h * beta),
            };
            (
                losses,
                values(ratio_c * beta),
                values(ratio_r * beta),
                values(pc),
                values(pr),
            )
        }
    };
    let sum = |v: &[f64]| v.iter().sum::<f64>();
    let acc = chosen_r
        .iter()
        .zip(&rejected_r)
        .filter(|(c, r)| c > r)
        .count() as f64;
    let margins: f64 = chosen_r.iter().zip(&rejected_r).map(|(c, r)| c - r).sum();
    let metrics = vec![
        ("rewards/chosen".to_string(), sum(&chosen_r)),
        ("rewards/rejected".to_string(), sum(&rejected_r)),
        ("rewards/accuracies".to_string(), acc),
        ("rewards/margins".to_string(), margins),
        ("logps/chosen".to_string(), sum(&logps_c)),
        ("logps/rejected".to_string(), sum(&logps_r)),
    ];
    (losses, metrics)
}

/// DPO as a [`Task`] of the shared Trainer.
#[derive(Debug)]
pub struct DpoTask {
    /// Training pairs.
    pub train: Vec<TokenPair>,
    /// Their cached reference log-probs (chosen, rejected).
    pub train_reference: Vec<(f64, f64)>,
    /// Validation pairs.
    pub val: Vec<TokenPair>,
    /// Their cached reference log-probs.
    pub val_reference: Vec<(f64, f64)>,
    /// Settings.
    pub settings: DpoSettings,
    /// Pairs per micro-batch.
    pub batch_size: usize,
    /// Padding token.
    pub pad: u32,
    /// Seed of the data order.
    pub seed: u64,
}

impl DpoTask {
    fn batch_of(&self, pairs: &[TokenPair], reference: &[(f64, f64)], idx: &[usize]) -> PairBatch {
        let p: Vec<&TokenPair> = idx.iter().map(|&i| &pairs[i]).collect();
        let r: Vec<(f64, f64)> = idx.iter().map(|&i| reference[i]).collect();
        pair_batch(&p, &r, self.pad)
    }
}

/// Summed log-probs (chosen, rejected) of every pair's completions under `model`,
/// `batch_size` pairs at a time.
pub fn pair_logps(
    model: &DecoderLm,
    pairs: &[TokenPair],
    batch_size: usize,
    pad: u32,
    device: &Device,
) -> Vec<(f64, f64)> {
    let mut out = Vec::with_capacity(pairs.len());
    for chunk in pairs.chunks(batch_size.max(1)) {
        let refs: Vec<&TokenPair> = chunk.iter().collect();
        let zeros = vec![(0.0, 0.0); chunk.len()];
        let b = pair_batch(&refs, &zeros, pad);
        let v = values(sequence_logps(model, &b, device));
        out.extend((0..chunk.len()).map(|i| (v[i], v[chunk.len() + i])));
    }
    out
}

/// Reference log-probs of `pairs` under `model` (no autodiff); zeros when the loss is
/// reference-free.
pub fn reference_logps(
    model: &DecoderLm,
    pairs: &[TokenPair],
    settings: &DpoSettings,
    batch_size: usize,
    pad: u32,
    device: &Device,
) -> Vec<(f64, f64)> {
    if !settings.uses_reference() {
        return vec![(0.0, 0.0); pairs.len()];
    }
    pair_logps(model, pairs, batch_size, pad, device)
}

impl Task for DpoTask {
    type Model = DecoderLm;
    type Batch = PairBatch;
    fn loss_label(&self) -> &'static str {
        "preference loss (nats/pair)"
    }
    fn key_metric(&self) -> Option<(&'static str, &'static str)> {
        Some(("eval/rewards/accuracies", "held-out preference accuracy"))
    }

    fn batch(
        &self,
        _: &DecoderLm,
        step: usize,
        micro: usize,
        per_step: usize,
    ) -> manabi_objectives::Result<PairBatch> {
        let g = step * per_step + micro;
        let idx =
            manabi_finetune::sft::encode::schedule(self.train.len(), self.batch_size, g, self.seed);
        Ok(self.batch_of(&self.train, &self.train_reference, &idx))
    }

    fn val_batch(&self, i: usize) -> manabi_objectives::Result<PairBatch> {
        let idx = manabi_finetune::sft::encode::val_indices(self.val.len(), self.batch_size, i);
        Ok(self.batch_of(&self.val, &self.val_reference, &idx))
    }

    fn loss(
        &self,
        model: &DecoderLm,
        b: &PairBatch,
        device: &Device,
    ) -> manabi_objectives::Result<TaskLoss> {
        let policy = sequence_logps(model, b, device);
        let (losses, metrics) = dpo_loss(&self.settings, policy, &b.reference, &b.lengths, device);
        Ok(TaskLoss {
            sum: losses.sum(),
            metrics,
        })
    }

    fn targets(b: &PairBatch) -> usize {
        b.n
    }

    fn tokens(b: &PairBatch) -> usize {
        2 * b.n * b.seq
    }
}
