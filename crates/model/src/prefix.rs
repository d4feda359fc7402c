//! Prefix tuning (Li & Liang 2021): learned keys and values that every layer's attention
//! sees before the input, as past key values. Stored as PEFT stores them: one row per
//! virtual token of `[n_layers · 2 · kv_heads · head_dim]`, layer `l`'s keys at block
//! `2l` and values at `2l + 1`. While training, the rows may instead come out of a small
//! MLP over `[n, kv_heads · head_dim]` embeddings (PEFT's `prefix_projection`), which
//! trains more stably; exports write the MLP's output.

use burn::module::Param;
use burn::nn::Linear;
use burn::prelude::*;
use burn::tensor::activation::tanh;

use crate::config::ModelConfig;

/// The learned prefix of a decoder.
#[derive(Module, Debug)]
pub struct Prefix {
    /// `[n, n_layers·2·kv_dim]`, or `[n, kv_dim]` fed to the projection.
    pub embedding: Param<Tensor<2>>,
    /// The projection's first layer `[kv_dim, hidden]` (then tanh).
    pub proj_in: Option<Linear>,
    /// The projection's second layer `[hidden, n_layers·2·kv_dim]`.
    pub proj_out: Option<Linear>,
}

impl Prefix {
    /// Virtual tokens.
    pub fn len(&self) -> usize {
        self.embedding.dims()[0]
    }

    /// Whether the prefix has no virtual tokens.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The prefix rows `[n, n_layers·2·kv_dim]` (through the projection, when it has one).
    pub fn rows(&self) -> Tensor<2> {
        let e = self.embedding.val();
        match (&self.proj_in, &self.proj_out) {
            (Some(a), Some(b)) => b.forward(tanh(a.forward(e))),
            _ => e,
        }
    }

    /// Each layer's `(keys, values)`, each `[batch, kv_heads, n, head_dim]`.
    pub fn key_values(&self, cfg: &ModelConfig, batch: usize) -> Vec<(Tensor<4>, Tensor<4>)> {
        let n = self.len();
        let (l, kvh, hd) = (cfg.n_layers, cfg.kv_heads(), cfg.head_dim());
        // [n, l·2, kvh, hd] -> [l·2, kvh, n, hd]
        let kv = self
            .rows()
            .reshape([n, l * 2, kvh, hd])
            .permute([1, 2, 0, 3]);
        let part = |i: usize| {
            kv.clone()
                .slice([i..i + 1, 0..kvh, 0..n, 0..hd])
                .repeat_dim(0, batch)
        };
        (0..l).map(|i| (part(2 * i), part(2 * i + 1))).collect()
    }
}
