//! From rendered segments to training rows: tokens with a trained mask, the tokenizer's
//! BOS (when its post-processor adds one) first, EOS appended and trained, truncation that cuts the prompt from the left and never silently drops
//! a response, and packing of short examples into rows with block-diagonal attention
//! and positions restarting per example (no cross-contamination).

use manabi_objectives::data::LmBatch;
use manabi_tokenize::TextTokenizer;
use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;

use crate::error::Result;
use crate::sft::template::Segment;

/// The label of a position that is not trained (what `LmBatch` and the loss ignore).
pub const IGNORE: i64 = manabi_model::IGNORE_INDEX;

/// One tokenised example.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Encoded {
    /// Token ids: the tokenizer's prefix (a BOS, if it adds one), the segments, EOS (and
    /// the tokenizer's suffix).
    pub tokens: Vec<u32>,
    /// Whether each token is a target.
    pub trained: Vec<bool>,
    /// Index of the first token of the final response.
    pub response_start: usize,
}

/// What encoding did to a data set.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct EncodeStats {
    /// Examples kept.
    pub examples: usize,
    /// Examples whose prompt was cut from the left to fit.
    pub truncated: usize,
    /// Examples dropped because their final response alone does not fit.
    pub dropped: usize,
    /// Trained tokens (targets), EOS included.
    pub trained_tokens: usize,
    /// Examples whose final response (trimmed) occurs as text in their prompt: the
    /// extractive ones, where a model can answer by copying.
    pub copyable: usize,
    /// Of those, examples whose response tokens occur nowhere in the prompt's tokens, so
    /// the answer cannot be copied token for token (a leading space in the response
    /// template changes how a byte-level BPE splits the word, e.g. ` 魚屋` against `魚屋`
    /// in a Japanese context).
    pub copy_token_mismatch: usize,
}

impl EncodeStats {
    /// Whether the data is extractive (most responses are found as text in their prompt)
    /// and over 10 % of those responses are not found as tokens: worth a warning.
    pub fn answers_not_copyable(&self) -> bool {
        2 * self.copyable >= self.examples && 10 * self.copy_token_mismatch > self.copyable
    }
}

/// Counts an example in `stats.copyable` / `stats.copy_token_mismatch` (see
/// [`EncodeStats`]): `tokens` are the whole example before truncation, without EOS, and
/// the final response starts at `response_start`.
fn count_copy(
    segments: &[Segment],
    tokens: &[u32],
    response_start: usize,
    stats: &mut EncodeStats,
) {
    let Some(at) = segments.iter().rposition(|s| s.trained) else {
        return;
    };
    let answer = segments[at].text.trim();
    let prompt: String = segments[..at].iter().map(|s| s.text.as_str()).collect();
    if answer.is_empty() || !prompt.contains(answer) {
        return;
    }
    stats.copyable += 1;
    let (prompt, response) = tokens.split_at(response_start);
    if !response.is_empty() && !prompt.windows(response.len()).any(|w| w == response) {
        stats.copy_token_mismatch += 1;
    }
}

/// Tokenises `segments` (each separately, so the prompt's tokens are the ones a model
/// sees at inference) between the special tokens the tokenizer's post-processor puts
/// around a sequence, as TRL's `SFTTrainer` tokenises `prompt + completion + eos_token`:
/// the prefix (a BOS, for Llama-style tokenizers) once at the start and never trained,
/// then the segments, a trained `eos` (unless the last segment already ends with it),
/// then the suffix (an EOS with `add_eos_token`), trained. Prompts longer than
/// `max_tokens` lose their first tokens after the prefix. Returns `None` when the final
/// response alone does not fit in `max_tokens`.
pub fn encode(
    tokenizer: &TextTokenizer,
    segments: &[Segment],
    eos: u32,
    max_tokens: usize,
    stats: &mut EncodeStats,
) -> Result<Option<Encoded>> {
    let prefix = tokenizer.specials_prefix();
    let mut tokens = prefix.to_vec();
    let mut trained = vec![false; prefix.len()];
    let mut response_start = tokens.len();
    for s in segments {
        if s.trained {
            response_start = tokens.len();
        }
        let ids = tokenizer.encode(&s.text)?;
        trained.extend(std::iter::repeat_n(s.trained, ids.len()));
        tokens.extend(ids);
    }
    count_copy(segments, &tokens, response_start, stats);
    // EOS is trained even where the pad token is EOS: it is a target here, never padding.
    if tokens.len() == prefix.len() || tokens.last() != Some(&eos) {
        tokens.push(eos);
        trained.push(true);
    }
    let suffix = tokenizer.specials_suffix();
    tokens.extend_from_slice(suffix);
    trained.extend(std::iter::repeat_n(true, suffix.len()));
    if tokens.len() > max_tokens {
        if tokens.len() - response_start + prefix.len() > max_tokens {
            stats.dropped += 1;
            return Ok(None);
        }
        // Cut the start of the prompt, keeping the prefix (the BOS stays first).
        let cut = tokens.len() - max_tokens;
        tokens.drain(prefix.len()..prefix.len() + cut);
        trained.drain(prefix.len()..prefix.len() + cut);
        response_start -= cut;
        stats.truncated += 1;
    }
    stats.examples += 1;
    stats.trained_tokens += trained.iter().skip(1).filter(|&&t| t).count();
    Ok(Some(Encoded {
        tokens,
        trained,
        response_start,
    }))
}

/// Training rows: each a list of example indices (one unless packed), filled up to
/// `block + 1` tokens (a row of `n` tokens gives `n − 1` inputs).
pub fn rows(examples: &[Encoded], block: usize, pack: bool, seed: u64) -> Vec<Vec<usize>> {
    if !pack {
        return (0..examples.len()).map(|i| vec![i]).collect();
    }
    // Pack in a seeded order so rows mix examples of all lengths.
    let mut order: Vec<usize> = (0..examples.len()).collect();
    order.shuffle(&mut ChaCha8Rng::seed_from_u64(seed ^ 0x9ac4));
    let mut out: Vec<Vec<usize>> = Vec::new();
    let mut current: Vec<usize> = Vec::new();
    let mut used = 0;
    for i in order {
        let n = examples[i].tokens.len() - 1;
        if used + n > block && !current.is_empty() {
            out.push(std::mem::take(&mut current));
            used = 0;
        }
        current.push(i);
        used += n;
    }
    if !current.is_empty() {
        out.push(current);
    }
    out
}

/// The batch of `rows` (example indices per row): inputs, next-token targets (untrained
/// ones ignored), right padding with `pad` (ignored). With `packed`, positions restart
/// and attention is block-diagonal per example.
pub fn batch(examples: &[Encoded], rows: &[&[usize]], pad: u32, packed: bool) -> LmBatch {
    let width = rows
        .iter()
        .map(|r| {
            r.iter()
                .map(|&i| examples[i].tokens.len() - 1)
                .sum::<usize>()
        })
        .max()
        .unwrap_or(1)
        .max(1);
    let b = rows.len();
    let mut inputs = Vec::with_capacity(b * width);
    let mut targets = Vec::with_capacity(b * width);
    let mut positions = Vec::with_capacity(b * width);
    let mut documents = Vec::with_capacity(b * width);
    for row in rows {
        let start = inputs.len();
        for (d, &i) in row.iter().enumerate() {
            let e = &examples[i];
            let n = e.tokens.len() - 1;
            inputs.extend_from_slice(&e.tokens[..n]);
            targets.extend((1..=n).map(|k| {
                if e.trained[k] {
                    e.tokens[k] as i64
                } else {
                    IGNORE
                }
            }));
            positions.extend(0..n as i64);
            documents.extend(std::iter::repeat_n(d as u32, n));
        }
        let fill = width - (inputs.len() - start);
        inputs.extend(std::iter::repeat_n(pad, fill));
        targets.extend(std::iter::repeat_n(IGNORE, fill));
        positions.extend(std::iter::repeat_n(0, fill));
        documents.extend(std::iter::repeat_n(u32::MAX, fill));
    }
    LmBatch {
        batch: b,
        seq: width,
        inputs,
        targets,
        positions: packed.then_some(positions),
        documents: packed.then_some(documents),
    }
}

/// The items of training micro-batch `g` (`step · per_step + micro`) in the seeded epoch
/// order of [`schedule`].
pub fn train_window<T>(items: &[T], batch_size: usize, g: usize, seed: u64) -> Vec<&T> {
    schedule(items.len(), batch_size, g, seed)
        .into_iter()
        .map(|k| &items[k])
        .collect()
}

/// Indices of validation batch `i`: `batch_size` consecutive items from `i · batch_size`,
/// wrapping around the `n` items (every task's `val_batch`).
pub fn val_indices(n: usize, batch_size: usize, i: usize) -> Vec<usize> {
    (0..batch_size.min(n))
        .map(|j| (i * batch_size + j) % n.max(1))
        .collect()
}

/// The items of validation batch `i` ([`val_indices`]).
pub fn val_window<T>(items: &[T], batch_size: usize, i: usize) -> Vec<&T> {
    val_indices(items.len(), batch_size, i)
        .into_iter()
        .map(|k| &items[k])
        .collect()
}

/// Row indices of micro-batch `g` (global, `step · per_step + micro`) of `batch_size`
/// rows: epochs run through a seeded permutation of all rows, so a batch is a pure
/// function of `(seed, g)` and resume is exact.
pub fn schedule(n_rows: usize, batch_size: usize, g: usize, seed: u64) -> Vec<usize> {
    let mut out = Vec::with_capacity(batch_size);
    let mut cached: Option<(usize, Vec<usize>)> = None;
    for j in 0..batch_size {
        let p = g * batch_size + j;
        let epoch = p / n_rows;
        if cached.as_ref().is_none_or(|(e, _)| *e != epoch) {
            let mut perm: Vec<usize> = (0..n_rows).collect();
            perm.shuffle(&mut ChaCha8Rng::seed_from_u64(
                seed ^ (epoch as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15),
            ));
            cached = Some((epoch, perm));
        }
        if let Some((_, perm)) = &cached {
            out.push(perm[p % n_rows]);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ex(tokens: &[u32], trained_from: usize) -> Encoded {
        Encoded {
            tokens: tokens.to_vec(),
            trained: (0..tokens.len()).map(|i| i >= trained_from).collect(),
            response_start: trained_from,
        }
    }

    fn segments(prompt: &str, response: &str) -> Vec<Segment> {
        vec![
            Segment {
                text: prompt.into(),
                trained: false,
            },
            Segment {
                text: response.into(),
                trained: true,
            },
        ]
    }

    #[test]
    fn answers_in_the_prompt_are_checked_for_copyable_tokens() {
        let mut s = EncodeStats::default();
        // `魚屋です` in the context is [10, 11, 12]; the answer after a space is [9, 4, 11].
        let seg = segments("Context: 魚屋です\nAnswer:", " 魚屋");
        count_copy(&seg, &[1, 10, 11, 12, 2, 9, 4, 11], 5, &mut s);
        assert_eq!((s.copyable, s.copy_token_mismatch), (1, 1));
        // Without the space the answer is [10, 11], the context's own tokens.
        let seg = segments("Context: 魚屋です\nAnswer:", "魚屋");
        count_copy(&seg, &[1, 10, 11, 12, 2, 10, 11], 5, &mut s);
        assert_eq!((s.copyable, s.copy_token_mismatch), (2, 1));
        // An answer that is not in the prompt's text is not extractive: not counted.
        let seg = segments("Question: 2 + 3?\nAnswer:", " 5");
        count_copy(&seg, &[1, 2, 3, 4], 3, &mut s);
        assert_eq!((s.copyable, s.copy_token_mismatch), (2, 1));
        // Extractive data with half its answers not copyable is worth a warning; a few
        // answers found in their prompt by chance (`5` in an arithmetic question) are not.
        s.examples = 3;
        assert!(s.answers_not_copyable());
        s.examples = 100;
        assert!(!s.answers_not_copyable());
        let clean = EncodeStats {
            examples: 3,
            copyable: 3,
            ..EncodeStats::default()
        };
        assert!(!clean.answers_not_copyable());
    }

    #[test]
    fn targets_are_the_trained_next_tokens_only() {
        let e = [ex(&[5, 6, 7, 8, 3], 3)];
        let b = batch(&e, &[&[0]], 0, false);
        assert_eq!(b.inputs, [5, 6, 7, 8]);
        assert_eq!(b.targets, [IGNORE, IGNORE, 8, 3]);
        assert!(b.positions.is_none());
    }

    #[test]
    fn packed_rows_restart_positions_and_separate_documents() {
        let e = [ex(&[5, 6, 3], 1), ex(&[7, 8, 9, 3], 2)];
        let b = batch(&e, &[&[0, 1]], 0, true);
        assert_eq!(b.inputs, [5, 6, 7, 8, 9]);
        assert_eq!(b.targets, [6, 3, IGNORE, 9, 3]);
        assert_eq!(b.positions.as_deref(), Some(&[0, 1, 0, 1, 2][..]));
        assert_eq!(b.documents.as_deref(), Some(&[0, 0, 1, 1, 1][..]));
    }

    #[test]
    fn packing_fills_rows_up_to_the_block() {
        let e: Vec<Encoded> = (0..10).map(|_| ex(&[1, 2, 3, 4], 1)).collect();
        let r = rows(&e, 7, true, 1);
        // 3 inputs each: two per row of 7.
        assert_eq!(r.len(), 5);
        assert!(r.iter().all(|r| r.len() == 2));
    }

    #[test]
    fn schedule_covers_every_row_once_per_epoch() {
        let mut seen: Vec<usize> = (0..5).flat_map(|g| schedule(10, 2, g, 7)).collect();
        seen.sort();
        assert_eq!(seen, (0..10).collect::<Vec<_>>());
        assert_eq!(schedule(10, 2, 3, 7), schedule(10, 2, 3, 7));
    }
}
