//! Experience for PPO: sampling responses to prompts, scoring them with the reward
//! model, and the per-token log-probs, KL-penalised rewards, values and advantages of a
//! rollout (steps 1–3 of the module documentation).

use burn::prelude::*;
use manabi_model::{DecoderLm, GenerateOptions};
use manabi_tokenize::TextTokenizer;

use super::*;

/// Sampled responses with what both a rollout and an evaluation read from them.
struct Scored {
    /// Each response's tokens (EOS included when it stopped), whether it stopped, text.
    sampled: Vec<(Vec<u32>, bool, String)>,
    /// Packed prompt + response rows ([`pack`]).
    inputs: Vec<u32>,
    targets: Vec<i64>,
    seq: usize,
    /// `[n·seq]` log-probs of the targets under the sampling policy and the reference.
    logps: Vec<f32>,
    ref_logps: Vec<f32>,
    /// Reward-model scores (EOS penalty included).
    scores: Vec<f64>,
    /// Whether each response stopped with EOS.
    ended: Vec<bool>,
}

/// Sampled responses to `prompts`: (tokens incl. EOS when it stopped, ended, text).
fn sample(
    policy: &DecoderLm,
    tok: &TextTokenizer,
    prompts: &[&Prompt],
    s: &PpoSettings,
    eos: u32,
    pad: u32,
    seed: u64,
) -> manabi_objectives::Result<Vec<(Vec<u32>, bool, String)>> {
    let opts = GenerateOptions {
        max_new_tokens: s.max_new_tokens,
        temperature: s.temperature,
        top_k: (s.top_k > 0).then_some(s.top_k),
        top_p: (s.top_p < 1.0).then_some(s.top_p),
        seed,
        eos_ids: vec![eos],
        pad_id: pad,
        ..GenerateOptions::default()
    };
    let ids: Vec<Vec<u32>> = prompts.iter().map(|p| p.ids.clone()).collect();
    let out = manabi_model::generate(policy, &ids, &opts, None).map_err(data_err)?;
    out.into_iter()
        .map(|mut c| {
            let ended = c.len() < s.max_new_tokens;
            let text = tok.decode(&c, true).map_err(data_err)?;
            if ended {
                c.push(eos);
            }
            Ok((c, ended, text))
        })
        .collect()
}

impl PpoTask {
    /// Optimizer steps per rollout.
    pub fn steps_per_rollout(&self) -> usize {
        self.settings.num_ppo_epochs * self.settings.num_mini_batches
    }

    /// Responses per rollout.
    pub fn rollout_size(&self) -> usize {
        self.micro_batch * self.grad_accum * self.settings.num_mini_batches
    }

    /// Rewards of `(prompt, response text, ended)` under the reward model, EOS penalty
    /// included.
    fn scores(&self, texts: Vec<(String, String)>, ended: &[bool]) -> crate::Result<Vec<f64>> {
        let (rm, tok) = &self.reward;
        let device = rm.lm.embed_tokens.weight.device();
        let mut s = crate::reward::score_texts(rm, tok, &texts, &device)?;
        if let Some(p) = self.settings.missing_eos_penalty {
            for (x, &e) in s.iter_mut().zip(ended) {
                if !e {
                    *x -= p;
                }
            }
        }
        Ok(s)
    }

    /// One response per prompt sampled from `policy` (seeded), packed, with the log-probs
    /// of its tokens under `policy` and the reference (at the sampling temperature) and its
    /// reward-model score.
    fn sample_and_score(
        &self,
        policy: &DecoderLm,
        prompts: &[&Prompt],
        seed: u64,
    ) -> crate::Result<Scored> {
        let s = &self.settings;
        let sampled = sample(
            policy,
            &self.tokenizer,
            prompts,
            s,
            self.eos,
            self.pad,
            seed,
        )?;
        let rows: Vec<(&[u32], &[u32])> = prompts
            .iter()
            .zip(&sampled)
            .map(|(p, (c, _, _))| (p.ids.as_slice(), c.as_slice()))
            .collect();
        let (inputs, targets, seq) = pack(&rows, self.pad);
        let device = policy.embed_tokens.weight.device();
        let shape = (prompts.len(), seq);
        let logps = to_vec(token_logps(
            policy,
            (&inputs, &targets),
            shape,
            s.temperature,
            &device,
        ));
        let ref_logps = to_vec(token_logps(
            &self.reference,
            (&inputs, &targets),
            shape,
            s.temperature,
            &device,
        ));
        let texts = prompts
            .iter()
            .zip(&sampled)
            .map(|(p, (_, _, t))| (p.text.clone(), t.clone()))
            .collect();
        let ended: Vec<bool> = sampled.iter().map(|(_, e, _)| *e).collect();
        let scores = self.scores(texts, &ended)?;
        Ok(Scored {
            sampled,
            inputs,
            targets,
            seq,
            logps,
            ref_logps,
            scores,
            ended,
        })
    }

    /// Samples, scores and evaluates the rollout of `iteration` with the current model.
    pub(super) fn rollout(
        &self,
        model: &PolicyValue,
        iteration: usize,
        kl_coef: f64,
    ) -> manabi_objectives::Result<Rollout> {
        let s = &self.settings;
        let size = self.rollout_size();
        let idx =
            manabi_finetune::sft::encode::schedule(self.train.len(), size, iteration, self.seed);
        let prompts: Vec<&Prompt> = idx.iter().map(|&i| &self.train[i]).collect();
        let policy = model.policy.valid();
        let Scored {
            inputs,
            targets,
            seq,
            logps,
            ref_logps,
            scores,
            ended,
            ..
        } = self
            .sample_and_score(&policy, &prompts, mix(self.seed, iteration, 1))
            .map_err(data_err)?;
        let n = prompts.len();
        let device = policy.embed_tokens.weight.device();
        let ids = int_ids(&inputs, n, seq, &device);
        let values = to_vec(model.value.valid().forward_tokens(ids).reshape([n, seq]));

        // Per-token rewards: the KL penalty, and the score at the last response token.
        let mut rewards = vec![0.0f64; n * seq];
        let (mut kl_sum, mut nll_sum, mut non_score_sum) = (0.0, 0.0, 0.0);
        let mut spans = Vec::with_capacity(n);
        for (r, score) in scores.iter().enumerate() {
            let row = r * seq..(r + 1) * seq;
            let pos: Vec<usize> = row.filter(|&i| targets[i] >= 0).collect();
            for &i in &pos {
                let kl = kl_token(s.kl_estimator, logps[i] as f64, ref_logps[i] as f64);
                rewards[i] = -kl_coef * kl;
                kl_sum += kl;
                non_score_sum += rewards[i];
                nll_sum -= logps[i] as f64;
            }
            if let Some(&last) = pos.last() {
                rewards[last] += score;
            }
            spans.push(pos);
        }
        if s.whiten_rewards {
            let mut flat: Vec<f64> = spans.iter().flatten().map(|&i| rewards[i]).collect();
            whiten(&mut flat, false);
            for (&i, v) in spans.iter().flatten().zip(flat) {
                rewards[i] = v;
            }
        }
        let mut advantages = vec![0.0f64; n * seq];
        let mut returns = vec![0.0f32; n * seq];
        for pos in &spans {
            let rw: Vec<f64> = pos.iter().map(|&i| rewards[i]).collect();
            let vs: Vec<f64> = pos.iter().map(|&i| values[i] as f64).collect();
            let (adv, ret) = gae(&rw, &vs, s.gamma, s.lam);
            for (k, &i) in pos.iter().enumerate() {
                advantages[i] = adv[k];
                returns[i] = ret[k] as f32;
            }
        }
        let mut flat: Vec<f64> = spans.iter().flatten().map(|&i| advantages[i]).collect();
        whiten(&mut flat, true);
        for (&i, v) in spans.iter().flatten().zip(flat) {
            advantages[i] = v;
        }
        let nf = n.max(1) as f64;
        let tokens: usize = spans.iter().map(Vec::len).sum();
        let mean_score = scores.iter().sum::<f64>() / nf;
        let stats = vec![
            ("objective/kl".to_string(), kl_sum / nf),
            ("objective/entropy".into(), nll_sum / nf),
            ("objective/non_score_reward".into(), non_score_sum / nf),
            (
                "objective/rlhf_reward".into(),
                non_score_sum / nf + mean_score,
            ),
            ("objective/scores".into(), mean_score),
            ("objective/kl_coef".into(), kl_coef),
            ("completions/mean_length".into(), tokens as f64 / nf),
            (
                "val/num_eos_tokens".into(),
                ended.iter().filter(|&&e| e).count() as f64,
            ),
        ];
        Ok(Rollout {
            iteration,
            n,
            seq,
            inputs,
            targets,
            logps,
            values,
            advantages: advantages.iter().map(|&a| a as f32).collect(),
            returns,
            stats,
        })
    }

    /// Samples one response per held-out prompt with `policy` (seeded, at the settings'
    /// temperature) and scores it: the run's before/after table.
    pub fn sample_stats(
        &self,
        policy: &DecoderLm,
        prompts: &[Prompt],
    ) -> crate::Result<SampleStats> {
        let mut acc = SampleStats::default();
        let mut n = 0usize;
        let mut tokens = 0usize;
        for (ci, chunk) in prompts.chunks(64).enumerate() {
            let refs: Vec<&Prompt> = chunk.iter().collect();
            let b = self.sample_and_score(policy, &refs, mix(self.seed ^ 0x5eed, ci, 7))?;
            for (i, &t) in b.targets.iter().enumerate() {
                if t >= 0 {
                    acc.kl += (b.logps[i] - b.ref_logps[i]) as f64;
                    acc.entropy -= b.logps[i] as f64;
                    tokens += 1;
                }
            }
            acc.score += b.scores.iter().sum::<f64>();
            acc.length += b.sampled.iter().map(|(c, _, _)| c.len()).sum::<usize>() as f64;
            // An empty response (EOS at once) is no answer that ended with EOS. The EOS
            // penalty and `val/num_eos_tokens` keep TRL's rule (an EOS anywhere).
            acc.eos_rate += b
                .sampled
                .iter()
                .filter(|(_, e, text)| manabi_finetune::sft::ended_with_eos(*e, text))
                .count() as f64;
            n += chunk.len();
        }
        let nf = n.max(1) as f64;
        Ok(SampleStats {
            score: acc.score / nf,
            kl: acc.kl / nf,
            entropy: acc.entropy / tokens.max(1) as f64,
            length: acc.length / nf,
            eos_rate: acc.eos_rate / nf,
        })
    }

    pub(super) fn eval_set(&self) -> &[Prompt] {
        match self.eval_prompts {
            0 => &self.val,
            m => &self.val[..m.min(self.val.len())],
        }
    }
}
