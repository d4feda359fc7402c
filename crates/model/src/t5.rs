//! T5 (Raffel et al. 2020) as `transformers`' `T5ForConditionalGeneration`: an
//! encoder-decoder with bucketed relative position biases (computed by the first block of
//! each stack and shared by the others), RMS norm without mean or bias, no biases, no
//! 1/√d in attention (T5 folds it into the initialisation), cross-attention, the v1.0
//! ReLU and v1.1 gated-GELU feed-forward, and a KV cache for greedy decoding. Reads
//! bottom-up: block → stack → model (buckets and attention are in `t5_attention.rs`).
//! Weights come from [`crate::hf_t5`].

use burn::nn::{
    Dropout, DropoutConfig, Embedding, EmbeddingConfig, Linear, LinearConfig, RmsNorm,
    RmsNormConfig,
};
use burn::prelude::*;

use crate::config::ModelConfig;
use crate::error::{ModelError, Result};
use crate::inputs::{MASKED, check_dims, check_ids, key_bias};
use crate::mlp::Mlp;
use crate::t5_attention::Kv;
pub use crate::t5_attention::{T5Attention, T5Cache, relative_position_bucket};

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

/// Greedy decoding settings; start and padding tokens come from the config, end tokens
/// from the config unless `eos_ids` names them.
#[derive(Debug, Clone)]
pub struct T5GreedyOptions {
    /// Most tokens generated per source.
    pub max_new_tokens: usize,
    /// Reuse decoder keys and values of earlier steps.
    pub use_cache: bool,
    /// Tokens that end a sequence (e.g. every `eos_token_id` of the folder's
    /// `generation_config.json`); `None`: the config's `eos_token_id`.
    pub eos_ids: Option<Vec<u32>>,
}

impl Default for T5GreedyOptions {
    fn default() -> Self {
        Self {
            max_new_tokens: 32,
            use_cache: true,
            eos_ids: None,
        }
    }
}

impl T5 {
    /// Ids of its embedding tables: the shared token table and each stack's relative
    /// position bias.
    pub fn embedding_ids(&self) -> Vec<burn::module::ParamId> {
        let biases = [&self.encoder, &self.decoder]
            .into_iter()
            .flat_map(|s| &s.layers)
            .filter_map(|l| l.self_attn.relative_attention_bias.as_ref());
        std::iter::once(&self.shared)
            .chain(biases)
            .map(|e| e.weight.id)
            .collect()
    }

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
        let ignored = shifted.clone().equal_elem(crate::IGNORE_INDEX);
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

        let eos: Vec<u32> = match &opts.eos_ids {
            Some(ids) => ids.clone(),
            None => cfg.eos_token_id.map(|e| e as u32).into_iter().collect(),
        };
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
                .map_err(|e| ModelError::Input(e.to_string()))?;
            for r in 0..b {
                // Finished rows are fed padding, as transformers does.
                let next = if done[r] {
                    pad
                } else {
                    crate::argmax_first(&last[r * v..(r + 1) * v]) as u32
                };
                if !done[r] {
                    if eos.contains(&next) {
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
