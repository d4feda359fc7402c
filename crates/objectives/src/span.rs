//! T5 span corruption (Raffel et al. 2020): about `noise_density` of the tokens, in
//! spans of mean length `mean_span_length`, are replaced in the input by one sentinel
//! each (`<extra_id_0>`, `<extra_id_1>`, …); the target lists each sentinel followed by
//! the tokens it hid. Input and target end with EOS. The segmentation follows T5's
//! `random_spans_noise_mask`: fixed counts per length, random split points.

use rand::seq::index::sample;
use rand_chacha::ChaCha8Rng;

use crate::error::{Result, TrainError};

/// A batch of (input, target) pairs of fixed lengths.
#[derive(Debug, Clone, PartialEq)]
pub struct SpanBatch {
    /// Pairs.
    pub batch: usize,
    /// Input length.
    pub src: usize,
    /// Target length.
    pub tgt: usize,
    /// Inputs `[batch·src]`.
    pub inputs: Vec<u32>,
    /// Targets `[batch·tgt]`.
    pub labels: Vec<u32>,
}

/// Corrupts windows of `length` tokens.
#[derive(Debug, Clone)]
pub struct SpanCollator {
    sentinels: Vec<u32>,
    eos: u32,
    noise: usize,
    spans: usize,
    length: usize,
}

impl SpanCollator {
    /// A collator for windows of `length` tokens; `sentinels` are the ids of
    /// `<extra_id_0>`, `<extra_id_1>`, … in order.
    pub fn new(
        length: usize,
        density: f64,
        mean_span: f64,
        sentinels: Vec<u32>,
        eos: u32,
    ) -> Result<Self> {
        if !(density > 0.0 && density < 1.0) {
            return Err(TrainError::Config {
                key: "objective.noise_density".into(),
                message: format!("{density} must be in (0, 1)"),
            });
        }
        if mean_span < 1.0 {
            return Err(TrainError::Config {
                key: "objective.mean_span_length".into(),
                message: format!("{mean_span} must be ≥ 1"),
            });
        }
        let noise =
            ((length as f64 * density).round() as usize).clamp(1, length.saturating_sub(1).max(1));
        let spans = ((noise as f64 / mean_span).round() as usize).max(1);
        if sentinels.len() < spans {
            return Err(TrainError::Config {
                key: "data.tokenizer".into(),
                message: format!(
                    "span corruption of {length} tokens needs {spans} sentinels, the tokenizer has {} (train it with --sentinels / sentinels = {spans})",
                    sentinels.len()
                ),
            });
        }
        Ok(Self {
            sentinels,
            eos,
            noise,
            spans,
            length,
        })
    }

    /// Input length: kept tokens + one sentinel per span + EOS.
    pub fn src_len(&self) -> usize {
        self.length - self.noise + self.spans + 1
    }

    /// Target length: hidden tokens + one sentinel per span + EOS.
    pub fn tgt_len(&self) -> usize {
        self.noise + self.spans + 1
    }

    /// `n` items in `k` non-empty segments at random split points.
    fn segments(n: usize, k: usize, rng: &mut ChaCha8Rng) -> Vec<usize> {
        let mut cuts: Vec<usize> = sample(rng, n - 1, k - 1)
            .into_iter()
            .map(|c| c + 1)
            .collect();
        cuts.sort_unstable();
        let mut out = Vec::with_capacity(k);
        let mut prev = 0;
        for c in cuts.into_iter().chain([n]) {
            out.push(c - prev);
            prev = c;
        }
        out
    }

    /// Corrupts one window (`length` tokens) into (input, target).
    pub fn corrupt(&self, window: &[u32], rng: &mut ChaCha8Rng) -> (Vec<u32>, Vec<u32>) {
        let keep = self.length - self.noise;
        let noise_lens = Self::segments(self.noise, self.spans, rng);
        let keep_lens = Self::segments(keep, self.spans, rng);
        let (mut input, mut target) = (
            Vec::with_capacity(self.src_len()),
            Vec::with_capacity(self.tgt_len()),
        );
        let mut pos = 0;
        for s in 0..self.spans {
            input.extend_from_slice(&window[pos..pos + keep_lens[s]]);
            pos += keep_lens[s];
            input.push(self.sentinels[s]);
            target.push(self.sentinels[s]);
            target.extend_from_slice(&window[pos..pos + noise_lens[s]]);
            pos += noise_lens[s];
        }
        input.push(self.eos);
        target.push(self.eos);
        (input, target)
    }

    /// Corrupts `batch` windows laid out one after another in `tokens`.
    pub fn apply(&self, tokens: &[u32], batch: usize, rng: &mut ChaCha8Rng) -> SpanBatch {
        let (mut inputs, mut labels) = (Vec::new(), Vec::new());
        for r in 0..batch {
            let (i, t) = self.corrupt(&tokens[r * self.length..(r + 1) * self.length], rng);
            inputs.extend(i);
            labels.extend(t);
        }
        SpanBatch {
            batch,
            src: self.src_len(),
            tgt: self.tgt_len(),
            inputs,
            labels,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn spans_partition_the_window_and_round_trip() {
        let sentinels: Vec<u32> = (1000..1010).collect();
        let c = SpanCollator::new(40, 0.15, 3.0, sentinels.clone(), 2).unwrap();
        assert_eq!((c.noise, c.spans), (6, 2));
        let window: Vec<u32> = (10..50).collect();
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        for _ in 0..50 {
            let (input, target) = c.corrupt(&window, &mut rng);
            assert_eq!(input.len(), c.src_len());
            assert_eq!(target.len(), c.tgt_len());
            // Filling each sentinel of the input with its span from the target restores the window.
            let mut restored = Vec::new();
            for &t in &input[..input.len() - 1] {
                if let Some(s) = sentinels.iter().position(|&x| x == t) {
                    let start = target.iter().position(|&x| x == sentinels[s]).unwrap() + 1;
                    restored.extend(
                        target[start..]
                            .iter()
                            .take_while(|x| !sentinels.contains(x) && **x != 2),
                    );
                } else {
                    restored.push(t);
                }
            }
            assert_eq!(restored, window);
        }
        assert!(
            SpanCollator::new(400, 0.15, 3.0, sentinels, 2)
                .unwrap_err()
                .to_string()
                .contains("needs 20 sentinels")
        );
    }
}
