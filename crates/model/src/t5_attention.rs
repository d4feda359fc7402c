//! T5 attention (Raffel et al. 2020): bucketed relative positions, self- and
//! cross-attention without biases or 1/√d scaling, and the decoder's KV cache.

use burn::nn::{Embedding, EmbeddingConfig, Linear, LinearConfig};
use burn::prelude::*;
use burn::tensor::activation::softmax;

use crate::config::ModelConfig;

/// The bucket of a relative position `key - query` (Mesh TensorFlow's scheme, as in
/// transformers): half of the buckets hold exact small distances, the other half
/// logarithmically wider ranges up to `max_distance`. Bidirectional buckets give the
/// sign its own half; causal ones map keys after the query to bucket 0.
pub fn relative_position_bucket(
    relative: i64,
    bidirectional: bool,
    num_buckets: usize,
    max_distance: usize,
) -> usize {
    let mut nb = num_buckets as i64;
    let mut bucket = 0;
    let distance = if bidirectional {
        nb /= 2;
        if relative > 0 {
            bucket += nb;
        }
        relative.abs()
    } else {
        (-relative).max(0)
    };
    let max_exact = nb / 2;
    if distance < max_exact {
        return (bucket + distance) as usize;
    }
    // f32 throughout, as transformers computes it, so that edges round the same way.
    let scale = (max_distance as f64 / max_exact as f64).ln() as f32;
    let log = (distance as f32 / max_exact as f32).ln() / scale * (nb - max_exact) as f32;
    let large = (max_exact + log as i64).min(nb - 1);
    (bucket + large) as usize
}

/// Self- or cross-attention of one block, without biases or score scaling.
#[derive(Module, Debug)]
pub struct T5Attention {
    /// `q` `[d_model, n_heads·d_kv]`.
    pub q: Linear,
    /// `k` `[d_model, n_heads·d_kv]`.
    pub k: Linear,
    /// `v` `[d_model, n_heads·d_kv]`.
    pub v: Linear,
    /// `o` `[n_heads·d_kv, d_model]`.
    pub o: Linear,
    /// `relative_attention_bias` `[num_buckets, n_heads]`: self-attention of the first
    /// block of each stack only.
    pub relative_attention_bias: Option<Embedding>,
    #[module(skip)]
    n_heads: usize,
    #[module(skip)]
    head_dim: usize,
}

impl T5Attention {
    /// A randomly initialised layer; `relative` gives it the position-bias table.
    pub fn new(cfg: &ModelConfig, relative: bool, device: &Device) -> Self {
        let (d, inner) = (cfg.d_model, cfg.n_heads * cfg.head_dim());
        let lin = |i, o| LinearConfig::new(i, o).with_bias(false).init(device);
        Self {
            q: lin(d, inner),
            k: lin(d, inner),
            v: lin(d, inner),
            o: lin(inner, d),
            relative_attention_bias: relative
                .then(|| EmbeddingConfig::new(cfg.relative_buckets(), cfg.n_heads).init(device)),
            n_heads: cfg.n_heads,
            head_dim: cfg.head_dim(),
        }
    }

    /// # Shapes
    /// `[batch, seq, d_model]` -> `[batch, heads, seq, d_kv]`
    fn split(&self, lin: &Linear, x: Tensor<3>) -> Tensor<4> {
        let [b, t, _] = x.dims();
        // [batch, seq, heads·d_kv] -> [batch, seq, heads, d_kv] -> [batch, heads, seq, d_kv]
        lin.forward(x)
            .reshape([b, t, self.n_heads, self.head_dim])
            .swap_dims(1, 2)
    }

    /// Keys and values of `x` (the decoder input, or the encoder output for
    /// cross-attention).
    ///
    /// # Shapes
    /// `[batch, seq, d_model]` -> two `[batch, heads, seq, d_kv]`
    pub fn key_values(&self, x: Tensor<3>) -> (Tensor<4>, Tensor<4>) {
        (self.split(&self.k, x.clone()), self.split(&self.v, x))
    }

    /// `softmax(QKᵀ + bias) V`, then the output projection.
    ///
    /// # Shapes
    /// - x: queries' input `[batch, seq, d_model]`
    /// - k, v: `[batch, heads, keys, d_kv]`
    /// - bias: position bias plus mask, broadcastable to `[batch, heads, seq, keys]`
    /// - returns `[batch, seq, d_model]`
    pub fn attend(&self, x: Tensor<3>, k: Tensor<4>, v: Tensor<4>, bias: &Tensor<4>) -> Tensor<3> {
        let [b, t, _] = x.dims();
        let q = self.split(&self.q, x);
        let scores = q.matmul(k.swap_dims(2, 3)) + bias.clone(); // [b, h, t, keys]
        let y = softmax(scores, 3).matmul(v); // [b, h, t, d_kv]
        // [b, h, t, d_kv] -> [b, t, h·d_kv]
        self.o.forward(
            y.swap_dims(1, 2)
                .reshape([b, t, self.n_heads * self.head_dim]),
        )
    }

    /// The learned bias of query positions `past..past+queries` against key positions
    /// `0..keys`; zeros for a layer without the table.
    ///
    /// # Shapes
    /// returns `[1, heads, queries, keys]`
    pub fn position_bias(
        &self,
        queries: usize,
        keys: usize,
        past: usize,
        bidirectional: bool,
        cfg: &ModelConfig,
        device: &Device,
    ) -> Tensor<4> {
        let h = self.n_heads;
        let Some(table) = &self.relative_attention_bias else {
            return Tensor::zeros([1, h, queries, keys], device);
        };
        let (nb, md) = (cfg.relative_buckets(), cfg.relative_max_distance());
        let buckets: Vec<i64> = (0..queries)
            .flat_map(|i| {
                (0..keys).map(move |j| {
                    let rel = j as i64 - (past + i) as i64;
                    relative_position_bucket(rel, bidirectional, nb, md) as i64
                })
            })
            .collect();
        let buckets =
            Tensor::<1, Int>::from_ints(buckets.as_slice(), device).reshape([queries, keys]);
        // [queries, keys, heads] -> [heads, queries, keys] -> [1, heads, queries, keys]
        table
            .forward(buckets)
            .permute([2, 0, 1])
            .reshape([1, h, queries, keys])
    }
}

/// Keys and values of one attention: `[batch, heads, len, d_kv]` each.
pub(crate) type Kv = Option<(Tensor<4>, Tensor<4>)>;

/// Decoder keys and values kept between greedy steps: self-attention entries grow by
/// one position per step; cross-attention entries are computed once from the encoder
/// output. A cache belongs to one encoder output.
#[derive(Debug, Clone, Default)]
pub struct T5Cache {
    pub(crate) self_kv: Vec<Kv>,
    pub(crate) cross_kv: Vec<Kv>,
}

impl T5Cache {
    /// An empty cache for `n_layers` decoder blocks.
    pub fn new(n_layers: usize) -> Self {
        Self {
            self_kv: vec![None; n_layers],
            cross_kv: vec![None; n_layers],
        }
    }

    /// Decoder positions already cached.
    pub fn len(&self) -> usize {
        self.self_kv
            .first()
            .and_then(|l| l.as_ref())
            .map_or(0, |(k, _)| k.dims()[2])
    }

    /// Whether nothing is cached.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_split_sign_exact_and_log_ranges() {
        // Bidirectional, 32 buckets: 0..8 exact before the query, 16..24 after it.
        assert_eq!(relative_position_bucket(0, true, 32, 128), 0);
        assert_eq!(relative_position_bucket(-3, true, 32, 128), 3);
        assert_eq!(relative_position_bucket(3, true, 32, 128), 19);
        assert_eq!(relative_position_bucket(-1000, true, 32, 128), 15);
        assert_eq!(relative_position_bucket(1000, true, 32, 128), 31);
        // Causal: later keys all fall in bucket 0.
        assert_eq!(relative_position_bucket(5, false, 32, 128), 0);
        assert_eq!(relative_position_bucket(-5, false, 32, 128), 5);
        assert_eq!(relative_position_bucket(-1000, false, 32, 128), 31);
    }
}
