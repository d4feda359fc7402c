//! Batches for causal language modelling, cut from token shards: random windows
//! (nanoGPT's `get_batch`) or packed documents whose attention and positions restart at
//! every EOS (a block-diagonal mask). Every batch is a pure function of (seed, step,
//! micro-batch), so the data position of a checkpoint is its step and resuming replays
//! exactly the batches that a run without a stop would have seen.

use std::sync::Arc;

use burn::prelude::*;
use manabi_tokenize::TokenShard;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::config::Sampling;
use crate::error::{Result, TrainError};

/// A contiguous range of a memory-mapped shard.
#[derive(Debug, Clone)]
pub struct TokenStream {
    shard: Arc<TokenShard>,
    start: usize,
    end: usize,
}

impl TokenStream {
    /// The whole shard.
    pub fn new(shard: Arc<TokenShard>) -> Self {
        let end = shard.len();
        Self {
            shard,
            start: 0,
            end,
        }
    }

    /// Tokens `range` of this stream.
    pub fn slice(&self, range: std::ops::Range<usize>) -> Self {
        Self {
            shard: self.shard.clone(),
            start: self.start + range.start,
            end: self.start + range.end.min(self.len()),
        }
    }

    /// Number of tokens.
    pub fn len(&self) -> usize {
        self.end - self.start
    }

    /// Whether empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn read(&self, pos: usize, out: &mut [u32]) {
        self.shard.read_into(self.start + pos, out);
    }
}

/// One micro-batch of `batch` sequences of `seq` tokens.
#[derive(Debug, Clone, PartialEq)]
pub struct LmBatch {
    /// Sequences.
    pub batch: usize,
    /// Tokens per sequence.
    pub seq: usize,
    /// Input ids, `[batch·seq]`.
    pub inputs: Vec<u32>,
    /// Next-token targets, `[batch·seq]`; [`manabi_model::IGNORE_INDEX`] is ignored.
    pub targets: Vec<i64>,
    /// Position of each token within its document (packed batches only).
    pub positions: Option<Vec<i64>>,
    /// Document index of each token (packed batches only).
    pub documents: Option<Vec<u32>>,
}

impl LmBatch {
    /// Targets that count.
    pub fn target_count(&self) -> usize {
        self.targets.iter().filter(|&&t| t >= 0).count()
    }

    /// Input ids as a tensor `[batch, seq]`.
    pub fn input_tensor(&self, device: &Device) -> Tensor<2, Int> {
        let v: Vec<i64> = self.inputs.iter().map(|&x| x as i64).collect();
        Tensor::<1, Int>::from_ints(v.as_slice(), device).reshape([self.batch, self.seq])
    }

    /// Positions `[batch, seq]`, if packed.
    pub fn position_tensor(&self, device: &Device) -> Option<Tensor<2, Int>> {
        self.positions.as_ref().map(|p| {
            Tensor::<1, Int>::from_ints(p.as_slice(), device).reshape([self.batch, self.seq])
        })
    }

    /// Causal block-diagonal additive mask `[batch, 1, seq, seq]`, if packed.
    pub fn mask_tensor(&self, device: &Device) -> Option<Tensor<4>> {
        let docs = self.documents.as_ref()?;
        let (b, t) = (self.batch, self.seq);
        let mut m = vec![0f32; b * t * t];
        for r in 0..b {
            let d = &docs[r * t..(r + 1) * t];
            for i in 0..t {
                for j in 0..t {
                    if j > i || d[j] != d[i] {
                        m[(r * t + i) * t + j] = -1e30;
                    }
                }
            }
        }
        Some(Tensor::<1>::from_floats(m.as_slice(), device).reshape([b, 1, t, t]))
    }
}

/// Deterministic batches from a token stream.
#[derive(Debug, Clone)]
pub struct Batcher {
    stream: TokenStream,
    sampling: Sampling,
    seq: usize,
    batch: usize,
    eos: u32,
    seed: u64,
}

/// splitmix64, to derive independent seeds from (seed, step, micro).
fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

impl Batcher {
    /// Batches of `batch` sequences of `seq` tokens from `stream`.
    pub fn new(
        stream: TokenStream,
        sampling: Sampling,
        seq: usize,
        batch: usize,
        eos: u32,
        seed: u64,
    ) -> Result<Self> {
        if stream.len() < seq + 1 {
            return Err(TrainError::Data(format!(
                "{} tokens cannot fill one sequence of {seq} + 1 tokens (lower data.block_size or add text)",
                stream.len()
            )));
        }
        Ok(Self {
            stream,
            sampling,
            seq,
            batch,
            eos,
            seed,
        })
    }

    /// The micro-batch `micro` of optimizer step `step`.
    pub fn get(&self, step: usize, micro: usize, micro_per_step: usize) -> LmBatch {
        let index = (step * micro_per_step + micro) as u64;
        let t = self.seq;
        let mut inputs = Vec::with_capacity(self.batch * t);
        let mut targets = Vec::with_capacity(self.batch * t);
        let mut window = vec![0u32; t + 1];
        let packed = self.sampling == Sampling::Packed;
        let mut positions = Vec::new();
        let mut documents = Vec::new();
        let mut rng = ChaCha8Rng::seed_from_u64(mix(self.seed ^ mix(index)));
        for r in 0..self.batch {
            let start = match self.sampling {
                Sampling::Random => rng.random_range(0..=self.stream.len() - t - 1),
                Sampling::Packed => {
                    let chunks = (self.stream.len() - 1) / t;
                    let sample = index as usize * self.batch + r;
                    let epoch = (sample / chunks) as u64;
                    permuted(
                        sample % chunks,
                        chunks,
                        mix(self.seed ^ mix(epoch ^ 0xa5a5)),
                    ) * t
                }
            };
            self.stream.read(start, &mut window);
            inputs.extend_from_slice(&window[..t]);
            let (mut doc, mut pos) = (0u32, 0i64);
            for j in 0..t {
                let after_eos = packed && window[j] == self.eos;
                targets.push(if after_eos {
                    manabi_model::IGNORE_INDEX
                } else {
                    window[j + 1] as i64
                });
                if packed {
                    positions.push(pos);
                    documents.push(doc);
                    pos += 1;
                    if after_eos {
                        doc += 1;
                        pos = 0;
                    }
                }
            }
        }
        LmBatch {
            batch: self.batch,
            seq: t,
            inputs,
            targets,
            positions: packed.then_some(positions),
            documents: packed.then_some(documents),
        }
    }
}

/// Element `i` of a pseudo-random permutation of `0..n` (a Feistel-free affine walk:
/// `(a·i + c) mod n` with `a` coprime to `n`), cheap and deterministic.
fn permuted(i: usize, n: usize, key: u64) -> usize {
    if n <= 1 {
        return 0;
    }
    let mut a = (key as usize % n) | 1;
    while gcd(a, n) != 1 {
        a += 2;
    }
    let c = (mix(key) as usize) % n;
    ((a as u128 * i as u128 + c as u128) % n as u128) as usize
}

fn gcd(mut a: usize, mut b: usize) -> usize {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn permutation_is_a_bijection() {
        for n in [1, 2, 7, 12, 100] {
            let mut seen: Vec<usize> = (0..n).map(|i| permuted(i, n, 99)).collect();
            seen.sort_unstable();
            assert_eq!(seen, (0..n).collect::<Vec<_>>());
        }
    }
}
