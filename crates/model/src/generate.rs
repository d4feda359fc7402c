//! Text generation for decoder-only models: greedy, temperature, top-k, top-p
//! (Holtzman et al. 2020), repetition penalty (Keskar et al. 2019, as in `transformers`),
//! batched prompts with left padding, a seeded RNG, and the KV cache.

use burn::prelude::*;
use manabi_tokenize::TextTokenizer;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::attention::KvCache;
use crate::decoder::{DecoderLm, ForwardOptions};
use crate::error::{ModelError, Result};

/// How to pick tokens and when to stop.
#[derive(Debug, Clone)]
pub struct GenerateOptions {
    /// Most tokens generated per prompt.
    pub max_new_tokens: usize,
    /// EOS is not allowed before this many new tokens.
    pub min_new_tokens: usize,
    /// 0 means greedy; otherwise logits are divided by it before sampling.
    pub temperature: f32,
    /// Keep only the k most likely tokens.
    pub top_k: Option<usize>,
    /// Keep the smallest set of tokens whose probability reaches p.
    pub top_p: Option<f32>,
    /// > 1 discourages tokens already in the sequence.
    pub repetition_penalty: f32,
    /// RNG seed: the same seed gives the same tokens.
    pub seed: u64,
    /// Tokens that end a sequence.
    pub eos_ids: Vec<u32>,
    /// Token used for left padding.
    pub pad_id: u32,
    /// Strings that end a sequence (needs a tokenizer to decode).
    pub stop_strings: Vec<String>,
    /// Reuse keys and values of earlier positions.
    pub use_cache: bool,
}

impl Default for GenerateOptions {
    fn default() -> Self {
        Self {
            max_new_tokens: 64,
            min_new_tokens: 0,
            temperature: 0.0,
            top_k: None,
            top_p: None,
            repetition_penalty: 1.0,
            seed: 0,
            eos_ids: Vec::new(),
            pad_id: 0,
            stop_strings: Vec::new(),
            use_cache: true,
        }
    }
}

impl GenerateOptions {
    fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(ModelError::Input(m));
        if self.temperature.is_nan() || self.temperature < 0.0 {
            return bad(format!("temperature {} must be ≥ 0", self.temperature));
        }
        if self.top_k == Some(0) {
            return bad("top-k must be ≥ 1".into());
        }
        if let Some(p) = self.top_p
            && !(p > 0.0 && p <= 1.0)
        {
            return bad(format!("top-p {p} must be in (0, 1]"));
        }
        if self.repetition_penalty.is_nan() || self.repetition_penalty <= 0.0 {
            return bad(format!(
                "repetition penalty {} must be > 0",
                self.repetition_penalty
            ));
        }
        Ok(())
    }
}

/// Picks the next token from one row of logits.
pub fn sample(
    logits: &mut [f32],
    history: &[u32],
    opts: &GenerateOptions,
    forbid: &[u32],
    rng: &mut ChaCha8Rng,
) -> u32 {
    if opts.repetition_penalty != 1.0 {
        let mut seen = history.to_vec();
        seen.sort_unstable();
        seen.dedup();
        for &t in &seen {
            if let Some(l) = logits.get_mut(t as usize) {
                *l = if *l > 0.0 {
                    *l / opts.repetition_penalty
                } else {
                    *l * opts.repetition_penalty
                };
            }
        }
    }
    for &t in forbid {
        if let Some(l) = logits.get_mut(t as usize) {
            *l = f32::NEG_INFINITY;
        }
    }
    let argmax = |l: &[f32]| crate::argmax_first(l) as u32;
    if opts.temperature == 0.0 {
        return argmax(logits);
    }
    let mut idx: Vec<usize> = (0..logits.len())
        .filter(|&i| logits[i].is_finite())
        .collect();
    if idx.is_empty() {
        return argmax(logits);
    }
    idx.sort_by(|&a, &b| logits[b].total_cmp(&logits[a]));
    if let Some(k) = opts.top_k {
        idx.truncate(k.max(1));
    }
    let max = logits[idx[0]];
    let mut probs: Vec<f32> = idx
        .iter()
        .map(|&i| ((logits[i] - max) / opts.temperature).exp())
        .collect();
    let sum: f32 = probs.iter().sum();
    probs.iter_mut().for_each(|p| *p /= sum);
    if let Some(p) = opts.top_p {
        let mut acc = 0.0;
        let keep = probs.iter().position(|&q| {
            acc += q;
            acc >= p
        });
        let keep = keep.map_or(probs.len(), |k| k + 1);
        probs.truncate(keep);
        idx.truncate(keep);
        let s: f32 = probs.iter().sum();
        probs.iter_mut().for_each(|q| *q /= s);
    }
    let mut u: f32 = rng.random();
    for (k, &q) in probs.iter().enumerate() {
        if u < q {
            return idx[k] as u32;
        }
        u -= q;
    }
    idx[probs.len() - 1] as u32
}

/// Generates continuations of `prompts` (token ids). Returns the new tokens of each
/// prompt, without the EOS that ended it. `tokenizer` is needed for `stop_strings`.
pub fn generate(
    model: &DecoderLm,
    prompts: &[Vec<u32>],
    opts: &GenerateOptions,
    tokenizer: Option<&TextTokenizer>,
) -> Result<Vec<Vec<u32>>> {
    opts.validate()?;
    let cfg = model.config();
    if prompts.is_empty() {
        return Ok(Vec::new());
    }
    if let Some(i) = prompts.iter().position(Vec::is_empty) {
        return Err(ModelError::Input(format!("prompt {i} is empty")));
    }
    let longest = prompts.iter().map(Vec::len).max().unwrap_or(0);
    let virt = model.virtual_tokens();
    if longest + opts.max_new_tokens + virt > cfg.max_positions {
        let virt = match virt {
            0 => String::new(),
            v => format!(" + {v} virtual tokens"),
        };
        return Err(ModelError::Input(format!(
            "prompt of {longest} tokens + {} new tokens{virt} exceeds the model's {} positions",
            opts.max_new_tokens, cfg.max_positions
        )));
    }
    if let Some(&bad) = prompts
        .iter()
        .flatten()
        .find(|&&t| t as usize >= cfg.vocab_size)
    {
        return Err(ModelError::Input(format!(
            "token id {bad} is beyond the vocabulary ({})",
            cfg.vocab_size
        )));
    }
    if !opts.stop_strings.is_empty() && tokenizer.is_none() {
        return Err(ModelError::Input("stop strings need a tokenizer".into()));
    }
    let device = model.embed_tokens.weight.device();
    let b = prompts.len();
    let mut rng = ChaCha8Rng::seed_from_u64(opts.seed);

    // Left padding: row r is [pad … pad, prompt]; keep-mask and positions skip the pads.
    let mut seqs: Vec<Vec<u32>> = prompts
        .iter()
        .map(|p| {
            std::iter::repeat_n(opts.pad_id, longest - p.len())
                .chain(p.iter().copied())
                .collect()
        })
        .collect();
    let mut keep: Vec<Vec<f32>> = prompts
        .iter()
        .map(|p| {
            std::iter::repeat_n(0.0, longest - p.len())
                .chain(std::iter::repeat_n(1.0, p.len()))
                .collect()
        })
        .collect();
    let mut out: Vec<Vec<u32>> = vec![Vec::new(); b];
    let mut done = vec![false; b];
    let mut cache = opts.use_cache.then(|| KvCache::new(cfg.n_layers));

    for step in 0..opts.max_new_tokens {
        let total = seqs[0].len();
        // With a cache, only the tokens not yet seen are fed.
        let start = match &cache {
            Some(c) if !c.is_empty() => total - 1,
            _ => 0,
        };
        let t = total - start;
        let ids: Vec<i64> = seqs
            .iter()
            .flat_map(|s| s[start..].iter().map(|&x| x as i64))
            .collect();
        let ids = Tensor::<1, Int>::from_ints(ids.as_slice(), &device).reshape([b, t]);
        let pos: Vec<i64> = keep
            .iter()
            .flat_map(|k| {
                let mut p = -1i64;
                let all: Vec<i64> = k
                    .iter()
                    .map(|&m| {
                        p += m as i64;
                        p.max(0)
                    })
                    .collect();
                all[start..].to_vec()
            })
            .collect();
        let km: Vec<f32> = keep.iter().flatten().copied().collect();
        let fw = ForwardOptions {
            positions: Some(Tensor::<1, Int>::from_ints(pos.as_slice(), &device).reshape([b, t])),
            key_mask: Some(Tensor::<1>::from_floats(km.as_slice(), &device).reshape([b, total])),
            attn_mask: None,
        };
        let logits = model.forward_with(ids, &fw, cache.as_mut());
        let v = cfg.vocab_size;
        let last: Vec<f32> = logits
            .slice([0..b, t - 1..t, 0..v])
            .into_data()
            .convert::<f32>()
            .try_into_vec()
            .map_err(|e| ModelError::Input(e.to_string()))?;
        let forbid: &[u32] = if step < opts.min_new_tokens {
            &opts.eos_ids
        } else {
            &[]
        };
        for r in 0..b {
            let next = if done[r] {
                opts.pad_id
            } else {
                let mut row = last[r * v..(r + 1) * v].to_vec();
                let history: Vec<u32> = prompts[r].iter().chain(&out[r]).copied().collect();
                sample(&mut row, &history, opts, forbid, &mut rng)
            };
            if !done[r] {
                if opts.eos_ids.contains(&next) {
                    done[r] = true;
                } else {
                    out[r].push(next);
                    if let Some(tok) = tokenizer
                        && !opts.stop_strings.is_empty()
                    {
                        let text = tok.decode(&out[r], true)?;
                        if opts.stop_strings.iter().any(|s| text.contains(s.as_str())) {
                            done[r] = true;
                        }
                    }
                }
            }
            seqs[r].push(next);
            keep[r].push(if done[r] && next == opts.pad_id {
                0.0
            } else {
                1.0
            });
        }
        if done.iter().all(|&d| d) {
            break;
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts() -> GenerateOptions {
        GenerateOptions {
            temperature: 1.0,
            ..GenerateOptions::default()
        }
    }

    #[test]
    fn greedy_takes_the_argmax_and_penalty_and_forbid_apply() {
        let mut rng = ChaCha8Rng::seed_from_u64(0);
        let g = GenerateOptions::default();
        assert_eq!(sample(&mut [0.1, 2.0, 1.0], &[], &g, &[], &mut rng), 1);
        assert_eq!(sample(&mut [0.1, 2.0, 1.0], &[], &g, &[1], &mut rng), 2);
        let p = GenerateOptions {
            repetition_penalty: 4.0,
            ..GenerateOptions::default()
        };
        assert_eq!(sample(&mut [0.1, 2.0, 1.0], &[1], &p, &[], &mut rng), 2);
    }

    #[test]
    fn greedy_ties_take_the_first_token_as_torch_argmax() {
        let mut rng = ChaCha8Rng::seed_from_u64(0);
        let g = GenerateOptions::default();
        assert_eq!(sample(&mut [0.1, 2.0, 2.0, 2.0], &[], &g, &[], &mut rng), 1);
        assert_eq!(
            sample(&mut [0.1, 2.0, 2.0, 2.0], &[], &g, &[1], &mut rng),
            2
        );
    }

    #[test]
    fn top_k_and_top_p_restrict_the_support() {
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        let logits = [3.0f32, 2.9, 0.0, -1.0, 2.8];
        let k2 = GenerateOptions {
            top_k: Some(2),
            ..opts()
        };
        let p = GenerateOptions {
            top_p: Some(0.5),
            ..opts()
        };
        for _ in 0..200 {
            assert!([0, 1].contains(&sample(&mut logits.clone(), &[], &k2, &[], &mut rng)));
            assert!([0, 1].contains(&sample(&mut logits.clone(), &[], &p, &[], &mut rng)));
        }
        // Sampling follows the distribution: token 0 vs 1 about e^0.1 : 1.
        let mut counts = [0usize; 5];
        for _ in 0..4000 {
            counts[sample(&mut logits.clone(), &[], &k2, &[], &mut rng) as usize] += 1;
        }
        let ratio = counts[0] as f64 / counts[1] as f64;
        assert!((ratio - 0.1f64.exp()).abs() < 0.12, "{ratio}");
    }

    #[test]
    fn same_seed_same_tokens() {
        let draw = |seed| {
            let mut rng = ChaCha8Rng::seed_from_u64(seed);
            (0..20)
                .map(|_| sample(&mut [1.0, 1.0, 1.0, 1.0], &[], &opts(), &[], &mut rng))
                .collect::<Vec<_>>()
        };
        assert_eq!(draw(3), draw(3));
        assert_ne!(draw(3), draw(4));
    }
}
