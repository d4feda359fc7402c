//! Text generation for decoder-only models: greedy, temperature, top-k, top-p
//! (Holtzman et al. 2020), repetition penalty (Keskar et al. 2019, as in `transformers`),
//! batched prompts with left padding, a seeded RNG, and the KV cache; and one sequence
//! streamed token by token into a cache kept between calls (a chat's turns).

use std::ops::ControlFlow;

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
    /// Refuses a temperature, top-k, top-p or repetition penalty out of range (what
    /// [`generate`] checks first), so a caller can check options before any prompt.
    pub fn validate(&self) -> Result<()> {
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

/// Whether generation may run past the model's positions by sliding its window: a model
/// with learned positions and no virtual tokens sees only the last `max_positions` tokens
/// (nanoGPT's crop), recomputed at every step once the window slides.
fn slides(model: &DecoderLm) -> bool {
    model.config().positions == crate::config::Positions::Learned && model.virtual_tokens() == 0
}

/// Refuses prompts that cannot be continued: an empty one, one that leaves no room for
/// `max_new_tokens` in the model's positions (unless the window slides, [`slides`]), an id past the vocabulary, stop strings
/// without a tokenizer.
fn check_prompts(
    model: &DecoderLm,
    prompts: &[&[u32]],
    opts: &GenerateOptions,
    tokenizer: Option<&TextTokenizer>,
    may_slide: bool,
) -> Result<()> {
    let cfg = model.config();
    if let Some(i) = prompts.iter().position(|p| p.is_empty()) {
        return Err(ModelError::Input(format!("prompt {i} is empty")));
    }
    let longest = prompts.iter().map(|p| p.len()).max().unwrap_or(0);
    let virt = model.virtual_tokens();
    if longest + opts.max_new_tokens + virt > cfg.max_positions && !(may_slide && slides(model)) {
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
        .flat_map(|p| p.iter())
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
    Ok(())
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
    let slices: Vec<&[u32]> = prompts.iter().map(Vec::as_slice).collect();
    check_prompts(model, &slices, opts, tokenizer, true)?;
    let longest = prompts.iter().map(Vec::len).max().unwrap_or(0);
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

    let window = if slides(model) {
        cfg.max_positions
    } else {
        usize::MAX
    };
    for step in 0..opts.max_new_tokens {
        let total = seqs[0].len();
        // Past the window the oldest tokens drop out and every step is recomputed (the
        // cached keys were made at other positions).
        let lo = total.saturating_sub(window);
        if lo > 0 {
            cache = None;
        }
        if let (Some(c), Some(orig)) = (&cache, longrope_switch(cfg))
            && !c.is_empty()
            && total > orig
            && c.len() <= orig
        {
            cache = Some(KvCache::new(cfg.n_layers));
        }
        // With a cache, only the tokens not yet seen are fed.
        let start = match &cache {
            Some(c) if !c.is_empty() => total - 1,
            _ => lo,
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
                let all: Vec<i64> = k[lo..]
                    .iter()
                    .map(|&m| {
                        p += m as i64;
                        p.max(0)
                    })
                    .collect();
                all[start - lo..].to_vec()
            })
            .collect();
        let km: Vec<f32> = keep.iter().flat_map(|k| k[lo..].iter().copied()).collect();
        let fw = ForwardOptions {
            positions: Some(Tensor::<1, Int>::from_ints(pos.as_slice(), &device).reshape([b, t])),
            key_mask: Some(
                Tensor::<1>::from_floats(km.as_slice(), &device).reshape([b, total - lo]),
            ),
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

/// One sequence's keys and values kept between calls of [`generate_cached`], with the
/// token ids they were computed from: a chat's next prompt starts with the last prompt
/// and its answer, so only the new turn has to be computed.
#[derive(Debug, Default)]
pub struct SequenceCache {
    /// `[1, kv_heads, virtual + ids.len(), head_dim]` per layer; `None` when empty.
    cache: Option<KvCache>,
    /// The real tokens whose keys and values are cached (virtual tokens not counted).
    ids: Vec<u32>,
}

impl SequenceCache {
    /// An empty cache.
    pub fn new() -> Self {
        Self::default()
    }

    /// The token ids whose keys and values are held.
    pub fn ids(&self) -> &[u32] {
        &self.ids
    }

    /// Forgets everything.
    pub fn clear(&mut self) {
        self.cache = None;
        self.ids.clear();
    }

    /// How many leading tokens of `prompt` a call would take from the cache: the prefix
    /// it shares with the cached ids, less its last token, which is always computed
    /// because its logits pick the first new token.
    pub fn reusable(&self, prompt: &[u32]) -> usize {
        let common = self
            .ids
            .iter()
            .zip(prompt)
            .take_while(|(a, b)| a == b)
            .count();
        common.min(prompt.len().saturating_sub(1))
    }

    /// Keeps the keys and values of the first `keep` real tokens (and of the model's
    /// `virt` virtual tokens before them). A key depends only on the tokens up to its
    /// own, so the kept ones are exactly what a fresh pass would compute.
    fn truncate(&mut self, keep: usize, virt: usize) {
        if keep == 0 {
            self.clear();
            return;
        }
        if keep >= self.ids.len() {
            return;
        }
        if let Some(cache) = &self.cache {
            let len = virt + keep;
            let layers = cache
                .layers()
                .into_iter()
                .map(|(k, v)| {
                    // [batch, kv_heads, past, head_dim] -> [batch, kv_heads, len, head_dim]
                    let [b, h, _, d] = k.dims();
                    let [vb, vh, _, vd] = v.dims();
                    (
                        k.slice([0..b, 0..h, 0..len, 0..d]),
                        v.slice([0..vb, 0..vh, 0..len, 0..vd]),
                    )
                })
                .collect();
            self.cache = Some(KvCache::from_layers(layers));
        }
        self.ids.truncate(keep);
    }

    /// Feeds `seq[self.ids.len()..]` (the tokens not cached yet) and returns the logits
    /// of the last one, `[vocab]`. Positions and the key mask are given as [`generate`]
    /// gives them to a row without padding, so prefix and prompt tuning shift them alike.
    fn step(&mut self, model: &DecoderLm, seq: &[u32]) -> Result<Vec<f32>> {
        let cfg = model.config();
        let device = model.embed_tokens.weight.device();
        let start = self.ids.len();
        let total = seq.len();
        let t = total - start;
        let ids: Vec<i64> = seq[start..].iter().map(|&x| i64::from(x)).collect();
        let ids = Tensor::<1, Int>::from_ints(ids.as_slice(), &device).reshape([1, t]);
        let pos: Vec<i64> = (start..total).map(|p| p as i64).collect();
        let keep = vec![1.0f32; total];
        let fw = ForwardOptions {
            positions: Some(Tensor::<1, Int>::from_ints(pos.as_slice(), &device).reshape([1, t])),
            key_mask: Some(Tensor::<1>::from_floats(keep.as_slice(), &device).reshape([1, total])),
            attn_mask: None,
        };
        let cache = self.cache.get_or_insert_with(|| KvCache::new(cfg.n_layers));
        let logits = model.forward_with(ids, &fw, Some(cache)); // [1, t, vocab]
        let v = cfg.vocab_size;
        let last: Vec<f32> = logits
            .slice([0..1, t - 1..t, 0..v])
            .into_data()
            .convert::<f32>()
            .try_into_vec()
            .map_err(|e| ModelError::Input(e.to_string()))?;
        self.ids.extend_from_slice(&seq[start..]);
        Ok(last)
    }
}

/// LongRoPE's switch length (`original_max_position_embeddings`): transformers' Phi-3
/// `prepare_inputs_for_generation` drops the KV cache once, when the sequence first grows
/// past it, and runs the whole sequence again with the long factors (so cached and
/// uncached generation agree). `None` for any other RoPE.
fn longrope_switch(cfg: &crate::ModelConfig) -> Option<usize> {
    cfg.rope_scaling
        .as_ref()
        .filter(|s| s.kind == crate::RopeScalingKind::LongRope)
        .and_then(|s| s.original_max_position_embeddings)
}

/// Generates one continuation of `prompt`, token by token, into `state`: the keys and
/// values of the prefix `prompt` shares with what `state` holds are reused (see
/// [`SequenceCache::reusable`]), the rest is computed, and `state` afterwards holds the
/// prompt and the new tokens (all but the last, which was never fed). `on_token` sees
/// each new token as soon as it is picked (never the EOS that ends the sequence);
/// `ControlFlow::Break` stops there. Returns the new tokens, without the EOS: the tokens
/// [`generate`] returns for `prompt` alone, whatever `state` held. With
/// `opts.use_cache` off, nothing is reused and every step recomputes every position.
pub fn generate_cached(
    model: &DecoderLm,
    prompt: &[u32],
    opts: &GenerateOptions,
    tokenizer: Option<&TextTokenizer>,
    state: &mut SequenceCache,
    mut on_token: impl FnMut(u32) -> ControlFlow<()>,
) -> Result<Vec<u32>> {
    opts.validate()?;
    // A kept cache cannot slide (its keys sit at fixed positions).
    check_prompts(model, &[prompt], opts, tokenizer, false)?;
    let virt = model.virtual_tokens();
    let mut rng = ChaCha8Rng::seed_from_u64(opts.seed);
    let mut seq = prompt.to_vec();
    let mut out = Vec::new();
    state.truncate(state.reusable(prompt), virt);
    for step in 0..opts.max_new_tokens {
        if !opts.use_cache {
            state.clear();
        }
        if let Some(orig) = longrope_switch(model.config())
            && seq.len() > orig
            && state.ids().len() <= orig
        {
            state.clear();
        }
        let mut logits = state.step(model, &seq)?;
        let forbid: &[u32] = if step < opts.min_new_tokens {
            &opts.eos_ids
        } else {
            &[]
        };
        // The history the repetition penalty sees is the prompt and the new tokens.
        let next = sample(&mut logits, &seq, opts, forbid, &mut rng);
        if opts.eos_ids.contains(&next) {
            break;
        }
        out.push(next);
        seq.push(next);
        if on_token(next).is_break() {
            break;
        }
        if let Some(tok) = tokenizer
            && !opts.stop_strings.is_empty()
        {
            let text = tok.decode(&out, true)?;
            if opts.stop_strings.iter().any(|s| text.contains(s.as_str())) {
                break;
            }
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
    fn a_kept_cache_gives_what_generate_gives() {
        let device = crate::device::test_device();
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../fixtures/models/llama-gqa");
        let model = crate::load_hf(dir, &device).unwrap();
        let greedy = GenerateOptions {
            max_new_tokens: 6,
            ..GenerateOptions::default()
        };
        let sampled = GenerateOptions {
            max_new_tokens: 6,
            temperature: 0.8,
            top_k: Some(20),
            repetition_penalty: 1.3,
            seed: 3,
            ..GenerateOptions::default()
        };
        for opts in [greedy, sampled] {
            let fresh =
                |p: &[u32]| generate(&model, &[p.to_vec()], &opts, None).unwrap()[0].clone();
            let mut state = SequenceCache::new();
            let first: Vec<u32> = vec![5, 9, 13, 2, 40];
            let mut streamed = Vec::new();
            let a = generate_cached(&model, &first, &opts, None, &mut state, |t| {
                streamed.push(t);
                ControlFlow::Continue(())
            })
            .unwrap();
            assert_eq!(a, fresh(&first));
            assert_eq!(streamed, a, "every new token is handed over as it comes");
            // The next turn starts with the last prompt and its answer (whose last token
            // was never fed): only the rest is computed.
            let mut second = first.clone();
            second.extend(&a);
            second.extend([7, 1]);
            assert_eq!(state.reusable(&second), first.len() + a.len() - 1);
            let b = generate_cached(&model, &second, &opts, None, &mut state, |_| {
                ControlFlow::Continue(())
            })
            .unwrap();
            assert_eq!(b, fresh(&second), "a reused prefix changes nothing");
            // A prompt that leaves the cached ids keeps only the shared prefix.
            let third: Vec<u32> = vec![5, 9, 33, 12];
            assert_eq!(state.reusable(&third), 2);
            let c = generate_cached(&model, &third, &opts, None, &mut state, |_| {
                ControlFlow::Continue(())
            })
            .unwrap();
            assert_eq!(c, fresh(&third), "a truncated cache changes nothing");
            assert_eq!(state.reusable(&third), third.len() - 1);
            // Without the cache, every step recomputes every position: the same tokens.
            let uncached = GenerateOptions {
                use_cache: false,
                ..opts.clone()
            };
            let d = generate_cached(&model, &second, &uncached, None, &mut state, |_| {
                ControlFlow::Continue(())
            })
            .unwrap();
            assert_eq!(d, b);
            // Break stops after the token it is handed.
            let mut n = 0;
            let e = generate_cached(&model, &first, &opts, None, &mut state, |_| {
                n += 1;
                if n == 2 {
                    ControlFlow::Break(())
                } else {
                    ControlFlow::Continue(())
                }
            })
            .unwrap();
            assert_eq!(e, a[..2]);
        }
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
