//! T5 (Raffel et al. 2020) as `transformers`' `T5ForConditionalGeneration`: an
//! encoder-decoder with bucketed relative position biases (computed by the first block of
//! each stack and shared by the others), RMS norm without mean or bias, no biases, no
//! 1/√d in attention (T5 folds it into the initialisation), cross-attention, the v1.0
//! ReLU and v1.1 gated-GELU feed-forward, and a KV cache for greedy decoding. Reads
//! bottom-up: buckets → attention → block → stack → model. Weights come from
//! [`crate::hf_t5`].

use burn::nn::{
    Dropout, DropoutConfig, Embedding, EmbeddingConfig, Linear, LinearConfig, RmsNorm,
    RmsNormConfig,
};
use burn::prelude::*;
use burn::tensor::activation::softmax;

use crate::config::ModelConfig;
use crate::error::{ModelError, Result};
use crate::inputs::{MASKED, check_dims, check_ids, key_bias};
use crate::mlp::Mlp;

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
    fn new(cfg: &ModelConfig, relative: bool, device: &Device) -> Self {
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
type Kv = Option<(Tensor<4>, Tensor<4>)>;

/// Decoder keys and values kept between greedy steps: self-attention entries grow by
/// one position per step; cross-attention entries are computed once from the encoder
/// output. A cache belongs to one encoder output.
#[derive(Debug, Clone, Default)]
pub struct T5Cache {
    self_kv: Vec<Kv>,
    cross_kv: Vec<Kv>,
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

/// What a decoder block attends to besides itself.
struct Cross<'a> {
    /// Encoder output `[batch, src, d_model]`.
    hidden: &'a Tensor<3>,
    /// Encoder padding mask as a bias `[batch or 1, 1, 1, src]`.
    bias: &'a Tensor<4>,
}

/// One pre-norm block: self-attention, cross-attention (decoder only), feed-forward,
/// each `x + f(norm(x))`.
#[derive(Module, Debug)]
pub struct T5Block {
    /// `layer.0.SelfAttention`.
    pub self_attn: T5Attention,
    /// `layer.0.layer_norm`.
    pub self_norm: RmsNorm,
    /// `layer.1.EncDecAttention` (decoder).
    pub cross_attn: Option<T5Attention>,
    /// `layer.1.layer_norm` (decoder).
    pub cross_norm: Option<RmsNorm>,
    /// `DenseReluDense`: `wi` → `up_proj`, or `wi_0` → `gate_proj` and `wi_1` → `up_proj`;
    /// `wo` → `down_proj`.
    pub mlp: Mlp,
    /// Norm before the feed-forward (`layer.1` or `layer.2` `.layer_norm`).
    pub mlp_norm: RmsNorm,
    /// Residual dropout.
    pub dropout: Dropout,
}

fn rms_norm(cfg: &ModelConfig, device: &Device) -> RmsNorm {
    RmsNormConfig::new(cfg.d_model)
        .with_epsilon(cfg.norm_eps)
        .init(device)
}

impl T5Block {
    fn new(cfg: &ModelConfig, first: bool, decoder: bool, device: &Device) -> Self {
        Self {
            self_attn: T5Attention::new(cfg, first, device),
            self_norm: rms_norm(cfg, device),
            cross_attn: decoder.then(|| T5Attention::new(cfg, false, device)),
            cross_norm: decoder.then(|| rms_norm(cfg, device)),
            mlp: Mlp::new(cfg, device),
            mlp_norm: rms_norm(cfg, device),
            dropout: DropoutConfig::new(cfg.dropout).init(),
        }
    }

    /// # Shapes
    /// - x: `[batch, seq, d_model]`; bias: `[batch or 1, heads, seq, past+seq]`
    /// - returns `[batch, seq, d_model]`
    fn forward(
        &self,
        x: Tensor<3>,
        bias: &Tensor<4>,
        self_cache: Option<&mut Kv>,
        cross: Option<&Cross<'_>>,
        cross_cache: Option<&mut Kv>,
    ) -> Tensor<3> {
        let h = self.self_norm.forward(x.clone());
        let (mut k, mut v) = self.self_attn.key_values(h.clone());
        if let Some(slot) = self_cache {
            if let Some((pk, pv)) = slot.take() {
                k = Tensor::cat(vec![pk, k], 2);
                v = Tensor::cat(vec![pv, v], 2);
            }
            *slot = Some((k.clone(), v.clone()));
        }
        let a = self.self_attn.attend(h, k, v, bias);
        let mut x = x + self.dropout.forward(a);
        if let (Some(attn), Some(norm), Some(cross)) = (&self.cross_attn, &self.cross_norm, cross) {
            let (k, v) = match cross_cache {
                Some(slot) => slot
                    .get_or_insert_with(|| attn.key_values(cross.hidden.clone()))
                    .clone(),
                None => attn.key_values(cross.hidden.clone()),
            };
            let a = attn.attend(norm.forward(x.clone()), k, v, cross.bias);
            x = x + self.dropout.forward(a);
        }
        let m = self.mlp.forward(self.mlp_norm.forward(x.clone()));
        x + self.dropout.forward(m)
    }
}

/// The encoder or the decoder: blocks and a final norm.
#[derive(Module, Debug)]
pub struct T5Stack {
    /// `block.{i}`.
    pub layers: Vec<T5Block>,
    /// `final_layer_norm`.
    pub final_norm: RmsNorm,
    /// Dropout on the embeddings and after the final norm.
    pub dropout: Dropout,
}

impl T5Stack {
    fn new(cfg: &ModelConfig, n: usize, decoder: bool, device: &Device) -> Self {
        Self {
            layers: (0..n)
                .map(|i| T5Block::new(cfg, i == 0, decoder, device))
                .collect(),
            final_norm: rms_norm(cfg, device),
            dropout: DropoutConfig::new(cfg.dropout).init(),
        }
    }

    /// The position bias of the first block, which all blocks share.
    fn position_bias(
        &self,
        t: usize,
        past: usize,
        decoder: bool,
        cfg: &ModelConfig,
        device: &Device,
    ) -> Tensor<4> {
        match self.layers.first() {
            Some(l) => l
                .self_attn
                .position_bias(t, past + t, past, !decoder, cfg, device),
            None => Tensor::zeros([1, 1, t, past + t], device),
        }
    }
}

/// `T5ForConditionalGeneration`.
#[derive(Module, Debug)]
pub struct T5 {
    /// `shared` `[vocab, d_model]`: the embedding of both stacks, and the LM head when
    /// tied.
    pub shared: Embedding,
    /// The encoder.
    pub encoder: T5Stack,
    /// The decoder.
    pub decoder: T5Stack,
    /// `lm_head` `[d_model, vocab]` when untied (T5 v1.1).
    pub lm_head: Option<Linear>,
    #[module(skip)]
    config: ModelConfig,
}

/// Greedy decoding settings; start, end and padding tokens come from the config.
#[derive(Debug, Clone)]
pub struct T5GreedyOptions {
    /// Most tokens generated per source.
    pub max_new_tokens: usize,
    /// Reuse decoder keys and values of earlier steps.
    pub use_cache: bool,
}

impl Default for T5GreedyOptions {
    fn default() -> Self {
        Self {
            max_new_tokens: 32,
            use_cache: true,
        }
    }
}

impl T5 {
    /// A randomly initialised model. `cfg` must be valid ([`ModelConfig::validate`]).
    pub fn new(cfg: &ModelConfig, device: &Device) -> Self {
        Self {
            shared: EmbeddingConfig::new(cfg.vocab_size, cfg.d_model).init(device),
            encoder: T5Stack::new(cfg, cfg.n_layers, false, device),
            decoder: T5Stack::new(cfg, cfg.decoder_layers(), true, device),
            lm_head: (!cfg.tie_embeddings).then(|| {
                LinearConfig::new(cfg.d_model, cfg.vocab_size)
                    .with_bias(false)
                    .init(device)
            }),
            config: cfg.clone(),
        }
    }

    /// The configuration.
    pub fn config(&self) -> &ModelConfig {
        &self.config
    }

    /// Encoder output. `attention_mask` is 1 for tokens, 0 for padding.
    ///
    /// # Shapes
    /// - ids, attention_mask: `[batch, src]`
    /// - returns `[batch, src, d_model]`
    pub fn encode(
        &self,
        ids: Tensor<2, Int>,
        attention_mask: Option<Tensor<2>>,
    ) -> Result<Tensor<3>> {
        check_ids(&ids, self.config.vocab_size, "input ids")?;
        let [_, s] = ids.dims();
        check_dims(
            attention_mask.as_ref().map(|m| m.dims()),
            ids.dims(),
            "attention mask",
        )?;
        let device = ids.device();
        let mut bias = self
            .encoder
            .position_bias(s, 0, false, &self.config, &device);
        if let Some(mask) = &attention_mask {
            bias = bias + key_bias(mask); // [batch, heads, src, src]
        }
        let mut x = self.encoder.dropout.forward(self.shared.forward(ids));
        for layer in &self.encoder.layers {
            x = layer.forward(x, &bias, None, None, None);
        }
        Ok(self
            .encoder
            .dropout
            .forward(self.encoder.final_norm.forward(x)))
    }

    /// Decoder logits for `decoder_ids` given the encoder output. With a cache, only the
    /// new decoder tokens are passed and earlier ones are read from it.
    ///
    /// # Shapes
    /// - decoder_ids: `[batch, tgt]`
    /// - encoder_hidden: `[batch, src, d_model]`; encoder_mask: `[batch, src]`
    /// - returns `[batch, tgt, vocab]`
    pub fn decode(
        &self,
        decoder_ids: Tensor<2, Int>,
        encoder_hidden: &Tensor<3>,
        encoder_mask: Option<&Tensor<2>>,
        mut cache: Option<&mut T5Cache>,
    ) -> Result<Tensor<3>> {
        let cfg = &self.config;
        check_ids(&decoder_ids, cfg.vocab_size, "decoder input ids")?;
        let [b, t] = decoder_ids.dims();
        let [eb, s, d] = encoder_hidden.dims();
        if eb != b || d != cfg.d_model {
            return Err(ModelError::Input(format!(
                "encoder output has shape {:?}, expected [{b}, src, {}]",
                [eb, s, d],
                cfg.d_model
            )));
        }
        check_dims(
            encoder_mask.map(|m| m.dims()),
            [b, s],
            "encoder attention mask",
        )?;
        let device = decoder_ids.device();
        let n = self.decoder.layers.len();
        if let Some(c) = cache.as_deref_mut()
            && c.self_kv.len() != n
        {
            *c = T5Cache::new(n);
        }
        let past = cache.as_ref().map_or(0, |c| c.len());

        // Relative bias plus the causal mask: query past+i sees keys 0..=past+i.
        let tk = past + t;
        let mut causal = vec![0f32; t * tk];
        for i in 0..t {
            for j in (past + i + 1)..tk {
                causal[i * tk + j] = MASKED;
            }
        }
        let bias = self.decoder.position_bias(t, past, true, cfg, &device)
            + Tensor::<1>::from_floats(causal.as_slice(), &device).reshape([1, 1, t, tk]);
        let cross_bias = match encoder_mask {
            Some(m) => key_bias(m),
            None => Tensor::zeros([1, 1, 1, s], &device),
        };
        let cross = Cross {
            hidden: encoder_hidden,
            bias: &cross_bias,
        };

        let mut x = self
            .decoder
            .dropout
            .forward(self.shared.forward(decoder_ids));
        for (i, layer) in self.decoder.layers.iter().enumerate() {
            let (self_slot, cross_slot) = match cache.as_deref_mut() {
                Some(c) => (Some(&mut c.self_kv[i]), Some(&mut c.cross_kv[i])),
                None => (None, None),
            };
            x = layer.forward(x, &bias, self_slot, Some(&cross), cross_slot);
        }
        let x = self
            .decoder
            .dropout
            .forward(self.decoder.final_norm.forward(x));
        Ok(self.logits(x))
    }

    /// Vocabulary logits of decoder states: tied models first scale by `d_model^-0.5`
    /// (T5 v1.0; see [`ModelConfig::scales_decoder_output`]).
    ///
    /// # Shapes
    /// `[batch, tgt, d_model]` -> `[batch, tgt, vocab]`
    pub fn logits(&self, hidden: Tensor<3>) -> Tensor<3> {
        let cfg = &self.config;
        let hidden = if cfg.scales_decoder_output() {
            hidden * (cfg.d_model as f64).powf(-0.5)
        } else {
            hidden
        };
        match &self.lm_head {
            Some(head) => head.forward(hidden),
            None => {
                let [b, t, d] = hidden.dims();
                let w = self.shared.weight.val(); // [vocab, d]
                hidden
                    .reshape([b * t, d])
                    .matmul(w.transpose())
                    .reshape([b, t, cfg.vocab_size])
            }
        }
    }

    /// Encoder-decoder logits (teacher forcing).
    ///
    /// # Shapes
    /// - ids, attention_mask: `[batch, src]`; decoder_ids: `[batch, tgt]`
    /// - returns `[batch, tgt, vocab]`
    pub fn forward(
        &self,
        ids: Tensor<2, Int>,
        attention_mask: Option<Tensor<2>>,
        decoder_ids: Tensor<2, Int>,
    ) -> Result<Tensor<3>> {
        let hidden = self.encode(ids, attention_mask.clone())?;
        self.decode(decoder_ids, &hidden, attention_mask.as_ref(), None)
    }

    /// Decoder input from labels: shifted one to the right behind the decoder start
    /// token, with ignored labels (-100) turned into padding.
    ///
    /// # Shapes
    /// `[batch, tgt]` -> `[batch, tgt]`
    pub fn shift_right(&self, labels: Tensor<2, Int>) -> Tensor<2, Int> {
        let [b, t] = labels.dims();
        let device = labels.device();
        let start = Tensor::<2, Int>::full([b, 1], self.config.decoder_start() as i64, &device);
        if t <= 1 {
            return start.slice([0..b, 0..t]);
        }
        let shifted = Tensor::cat(vec![start, labels.slice([0..b, 0..t - 1])], 1);
        let pad = self.config.pad_token_id.unwrap_or(0) as i64;
        let ignored = shifted.clone().equal_elem(-100);
        shifted.mask_fill(ignored, pad)
    }

    /// Greedy decoding of each source (token ids; padded to one batch here). Returns
    /// the generated tokens of each, without the start token and without the EOS that
    /// ended it. Cached and uncached decoding give the same tokens.
    pub fn greedy(&self, sources: &[Vec<u32>], opts: &T5GreedyOptions) -> Result<Vec<Vec<u32>>> {
        let cfg = &self.config;
        if sources.is_empty() {
            return Ok(Vec::new());
        }
        if let Some(i) = sources.iter().position(Vec::is_empty) {
            return Err(ModelError::Input(format!("source {i} is empty")));
        }
        let device = self.shared.weight.device();
        let (b, s) = (
            sources.len(),
            sources.iter().map(Vec::len).max().unwrap_or(0),
        );
        let pad = cfg.pad_token_id.unwrap_or(0) as u32;
        // Right padding, as transformers' tokenizers do for T5.
        let ids: Vec<i64> = sources
            .iter()
            .flat_map(|r| (0..s).map(move |j| r.get(j).map_or(pad, |&x| x) as i64))
            .collect();
        let mask: Vec<f32> = sources
            .iter()
            .flat_map(|r| (0..s).map(move |j| if j < r.len() { 1.0 } else { 0.0 }))
            .collect();
        let mask = Tensor::<1>::from_floats(mask.as_slice(), &device).reshape([b, s]);
        let ids = Tensor::<1, Int>::from_ints(ids.as_slice(), &device).reshape([b, s]);
        let hidden = self.encode(ids, Some(mask.clone()))?;

        let eos = cfg.eos_token_id.map(|e| e as u32);
        let mut seqs: Vec<Vec<u32>> = vec![vec![cfg.decoder_start() as u32]; b];
        let mut out: Vec<Vec<u32>> = vec![Vec::new(); b];
        let mut done = vec![false; b];
        let mut cache = opts
            .use_cache
            .then(|| T5Cache::new(self.decoder.layers.len()));
        let v = cfg.vocab_size;
        for _ in 0..opts.max_new_tokens {
            let total = seqs[0].len();
            let start = if cache.is_some() { total - 1 } else { 0 };
            let t = total - start;
            let step: Vec<i64> = seqs
                .iter()
                .flat_map(|r| r[start..].iter().map(|&x| x as i64))
                .collect();
            let step = Tensor::<1, Int>::from_ints(step.as_slice(), &device).reshape([b, t]);
            let logits = self.decode(step, &hidden, Some(&mask), cache.as_mut())?;
            let last: Vec<f32> = logits
                .slice([0..b, t - 1..t, 0..v])
                .into_data()
                .convert::<f32>()
                .try_into_vec()
                .map_err(|e| ModelError::Input(format!("{e:?}")))?;
            for r in 0..b {
                // Finished rows are fed padding, as transformers does.
                let next = if done[r] {
                    pad
                } else {
                    argmax(&last[r * v..(r + 1) * v])
                };
                if !done[r] {
                    if Some(next) == eos {
                        done[r] = true;
                    } else {
                        out[r].push(next);
                    }
                }
                seqs[r].push(next);
            }
            if done.iter().all(|&d| d) {
                break;
            }
        }
        Ok(out)
    }
}

/// Index of the largest value; the first one on ties (as `torch.argmax`).
fn argmax(row: &[f32]) -> u32 {
    row.iter()
        .enumerate()
        .fold((0usize, f32::NEG_INFINITY), |best, (i, &x)| {
            if x > best.1 { (i, x) } else { best }
        })
        .0 as u32
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
