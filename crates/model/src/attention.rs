//! Multi-head and grouped-query self-attention with RoPE and a KV cache
//! (Vaswani et al. 2017; Ainslie et al. 2023 for GQA).

use burn::nn::{Dropout, DropoutConfig, Linear, RmsNorm, RmsNormConfig};
use burn::prelude::*;
use burn::tensor::module::attention;
use burn::tensor::ops::AttentionModuleOptions;

use crate::config::{ModelConfig, Positions};
use crate::rope;

/// Keys and values of earlier positions, one entry per layer.
///
/// # Shapes
/// each entry: `[batch, kv_heads, past_len, head_dim]`
#[derive(Debug, Clone, Default)]
pub struct KvCache {
    layers: Vec<Option<(Tensor<4>, Tensor<4>)>>,
}

impl KvCache {
    /// An empty cache for `n_layers` layers.
    pub fn new(n_layers: usize) -> Self {
        Self {
            layers: vec![None; n_layers],
        }
    }

    /// Positions already cached.
    pub fn len(&self) -> usize {
        self.layers
            .first()
            .and_then(|l| l.as_ref())
            .map_or(0, |(k, _)| k.dims()[2])
    }

    /// A cache pre-filled with keys and values, one `(k, v)` per layer, each
    /// `[batch, kv_heads, prefix, head_dim]`: prefix tuning's learned prefixes, or a
    /// cache saved from an earlier call.
    pub fn from_layers(layers: Vec<(Tensor<4>, Tensor<4>)>) -> Self {
        Self {
            layers: layers.into_iter().map(Some).collect(),
        }
    }

    /// The cached `(k, v)` of every layer (empty layers skipped).
    pub fn layers(&self) -> Vec<(Tensor<4>, Tensor<4>)> {
        self.layers.iter().flatten().cloned().collect()
    }

    pub(crate) fn layers_mut(&mut self) -> &mut Vec<Option<(Tensor<4>, Tensor<4>)>> {
        &mut self.layers
    }

    /// Whether nothing is cached.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Soft capping (Gemma 2's attention scores and final logits): `cap · tanh(x / cap)`.
pub fn softcap<const D: usize>(x: Tensor<D>, cap: f64) -> Tensor<D> {
    (x / cap).tanh() * cap
}

/// A bias-free LayerNorm over the last axis whose weights differ per head (StableLM's
/// `qk_layernorm`).
///
/// # Shapes
/// - x: `[batch, seq, heads, head_dim]`
/// - gamma: `[1, 1, heads, head_dim]`
fn head_layer_norm(x: Tensor<4>, gamma: Tensor<4>, eps: f64) -> Tensor<4> {
    let centred = x.clone() - x.mean_dim(3);
    let var = centred.clone().powi_scalar(2).mean_dim(3);
    centred / (var + eps).sqrt() * gamma
}

/// Self-attention of one block. Every projection is a burn `Linear`, so LoRA reaches it.
#[derive(Module, Debug)]
pub struct Attention {
    /// Query projection `[d_model, n_heads·head_dim]`.
    pub q_proj: Linear,
    /// Key projection `[d_model, kv_heads·head_dim]`.
    pub k_proj: Linear,
    /// Value projection `[d_model, kv_heads·head_dim]`.
    pub v_proj: Linear,
    /// Output projection `[n_heads·head_dim, d_model]`.
    pub o_proj: Linear,
    /// Norm of the queries before RoPE (`qk_norm`): an RMSNorm `[head_dim]` shared by the
    /// heads (Qwen3), over the whole projection `[n_heads·head_dim]` (`qk_norm_whole`,
    /// OLMo 2), or the weights `[n_heads·head_dim]` of a bias-free LayerNorm per head
    /// (`qk_norm_heads`, StableLM).
    pub q_norm: Option<RmsNorm>,
    /// Norm of the keys before RoPE, as `q_norm` (`kv_heads` instead of `n_heads`).
    pub k_norm: Option<RmsNorm>,
    /// Dropout on the input of LoRA adapters (PEFT's `lora_dropout`; 0 = none).
    pub lora_dropout: Dropout,
    #[module(skip)]
    norm_eps: f64,
    #[module(skip)]
    n_heads: usize,
    #[module(skip)]
    kv_heads: usize,
    #[module(skip)]
    head_dim: usize,
    #[module(skip)]
    rope: bool,
    #[module(skip)]
    scale: f64,
    #[module(skip)]
    softcap: Option<f64>,
    #[module(skip)]
    qk_norm_whole: bool,
    #[module(skip)]
    qk_norm_heads: bool,
}

impl Attention {
    /// A randomly initialised layer for `cfg`.
    pub fn new(cfg: &ModelConfig, device: &Device) -> Self {
        let (d, hd) = (cfg.d_model, cfg.head_dim());
        // `attention_bias` biases all four projections, `qkv_bias` q, k and v only.
        let qkv_bias = cfg.attention_bias || cfg.qkv_bias;
        let lin = |i, o, bias, std| crate::init::linear(i, o, bias, std, device);
        let std = crate::init::STD;
        // Per head (`head_dim`), or a weight per head and dimension (OLMo 2, StableLM).
        let qk_norm = |heads: usize| {
            cfg.qk_norm.then(|| {
                let width = if cfg.qk_norm_whole || cfg.qk_norm_heads {
                    heads * hd
                } else {
                    hd
                };
                RmsNormConfig::new(width)
                    .with_epsilon(cfg.norm_eps)
                    .init(device)
            })
        };
        Self {
            q_proj: lin(d, cfg.n_heads * hd, qkv_bias, std),
            k_proj: lin(d, cfg.kv_heads() * hd, qkv_bias, std),
            v_proj: lin(d, cfg.kv_heads() * hd, qkv_bias, std),
            o_proj: lin(
                cfg.n_heads * hd,
                d,
                cfg.attention_bias,
                crate::init::residual_std(cfg.n_layers),
            ),
            q_norm: qk_norm(cfg.n_heads),
            k_norm: qk_norm(cfg.kv_heads()),
            lora_dropout: DropoutConfig::new(0.0).init(),
            norm_eps: cfg.norm_eps,
            n_heads: cfg.n_heads,
            kv_heads: cfg.kv_heads(),
            head_dim: hd,
            rope: cfg.positions == Positions::Rope,
            scale: cfg.attention_scale(),
            softcap: cfg.attn_softcap,
            qk_norm_whole: cfg.qk_norm_whole,
            qk_norm_heads: cfg.qk_norm_heads,
        }
    }

    /// # Shapes
    /// - x: `[batch, seq, d_model]`
    /// - rope: cos and sin `[batch, 1, seq, rotary_dim]`
    /// - bias: additive mask / position bias, broadcastable to `[batch, n_heads, seq, past+seq]`
    /// - returns `[batch, seq, d_model]`
    pub fn forward(
        &self,
        x: Tensor<3>,
        rope: Option<&(Tensor<4>, Tensor<4>)>,
        bias: Option<&Tensor<4>>,
        cache: Option<&mut Option<(Tensor<4>, Tensor<4>)>>,
    ) -> Tensor<3> {
        let [b, t, _] = x.dims();
        let (h, kvh, hd) = (self.n_heads, self.kv_heads, self.head_dim);
        // [batch, seq, heads·hd] -> [batch, seq, heads, hd]: token-major, as the
        // projections write it (the fused attention reads this layout, so training
        // copies no transposes).
        let linear = |layer, x| crate::fused::lora_linear(layer, x, &self.lora_dropout);
        let (mut q, mut k) = (
            linear(&self.q_proj, x.clone()),
            linear(&self.k_proj, x.clone()),
        );
        if self.qk_norm_whole {
            // OLMo 2: the whole projection normalised, before the split into heads.
            if let Some(n) = &self.q_norm {
                q = crate::fused::rms_norm(q, n.gamma.val(), self.norm_eps);
            }
            if let Some(n) = &self.k_norm {
                k = crate::fused::rms_norm(k, n.gamma.val(), self.norm_eps);
            }
        }
        let mut q = q.reshape([b, t, h, hd]);
        let mut k = k.reshape([b, t, kvh, hd]);
        let mut v = linear(&self.v_proj, x).reshape([b, t, kvh, hd]);
        // Qwen3: each head's query and key normalised over head_dim, before RoPE;
        // StableLM: the same with a LayerNorm whose weights differ per head.
        if !self.qk_norm_whole {
            let eps = self.norm_eps;
            let norm = |x: Tensor<4>, n: &RmsNorm, heads: usize| {
                if self.qk_norm_heads {
                    head_layer_norm(x, n.gamma.val().reshape([1, 1, heads, hd]), eps)
                } else {
                    crate::fused::rms_norm(x, n.gamma.val(), eps)
                }
            };
            if let Some(n) = &self.q_norm {
                q = norm(q, n, h);
            }
            if let Some(n) = &self.k_norm {
                k = norm(k, n, kvh);
            }
        }
        if let (true, Some((cos, sin))) = (self.rope, rope) {
            // [batch, 1, seq, rotary] -> [batch, seq, 1, rotary]
            let (cos, sin) = (cos.clone().swap_dims(1, 2), sin.clone().swap_dims(1, 2));
            k = rope::apply(k, &cos, &sin);
            q = rope::apply(q, &cos, &sin);
        }
        if let Some(slot) = cache {
            // The cache is head-major, `[batch, kv_heads, len, hd]` (views, no copies).
            if let Some((pk, pv)) = slot.take() {
                k = Tensor::cat(vec![pk.swap_dims(1, 2), k], 1);
                v = Tensor::cat(vec![pv.swap_dims(1, 2), v], 1);
            }
            *slot = Some((k.clone().swap_dims(1, 2), v.clone().swap_dims(1, 2)));
        }
        let tk = k.dims()[1];
        if kvh != h {
            // [batch, tk, kv_heads, hd] -> [batch, tk, heads, hd]: each kv head serves
            // h/kvh queries.
            let rep = h / kvh;
            k = k
                .reshape([b, tk, kvh, 1, hd])
                .repeat_dim(3, rep)
                .reshape([b, tk, h, hd]);
            v = v
                .reshape([b, tk, kvh, 1, hd])
                .repeat_dim(3, rep)
                .reshape([b, tk, h, hd]);
        }
        let y = if let Some(cap) = self.softcap {
            // Gemma 2: scores soft-capped before the mask, written out (neither fused
            // kernel caps).
            let [q, k, v] = [q, k, v].map(|x| x.swap_dims(1, 2)); // [b, h, len, hd]
            let scores = q.matmul(k.swap_dims(2, 3)) * self.scale;
            let mut scores = softcap(scores, cap);
            if let Some(m) = bias {
                scores = scores + m.clone();
            }
            burn::tensor::activation::softmax(scores, 3)
                .matmul(v)
                .swap_dims(1, 2)
        } else if q.device().is_autodiff() {
            // Training: softmax(QKᵀ/√d + bias)V as one fused op with its own backward
            // where the device has it, else written out (under autodiff burn's
            // `attention()` falls back to a longer chain of ops).
            crate::fused::attention(q, k, v, bias, self.scale)
        } else {
            // Inference: the backend's fused kernel, on the head-major layout.
            let bias = bias.map(|m| m.clone().expand([b, h, t, tk]));
            let opts = AttentionModuleOptions {
                scale: Some(self.scale),
                softcap: None,
                is_causal: false,
            };
            let [q, k, v] = [q, k, v].map(|x| x.swap_dims(1, 2));
            attention(q, k, v, None, bias, opts).swap_dims(1, 2)
        }; // [b, t, h, hd]
        linear(&self.o_proj, y.reshape([b, t, h * hd]))
    }
}
