//! Decoder-only language model: GPT-2 (Radford et al. 2019) and LLaMA (Touvron et al.
//! 2023) layouts, pre-norm. Reads bottom-up: norm → block → model.

use burn::module::Param;
use burn::nn::{
    Dropout, DropoutConfig, Embedding, LayerNorm, LayerNormConfig, RmsNorm, RmsNormConfig,
};
use burn::prelude::*;

use crate::attention::{Attention, KvCache};
use crate::config::{ModelConfig, NormKind, Positions};
use crate::mlp::Mlp;
use crate::rope;

/// LayerNorm or RMSNorm.
#[derive(Module, Debug)]
pub enum Norm {
    /// LayerNorm (GPT-2).
    Layer(LayerNorm),
    /// RMSNorm (LLaMA).
    Rms(RmsNorm),
}

impl Norm {
    /// A norm of width `d` for `cfg`.
    pub fn new(cfg: &ModelConfig, d: usize, device: &Device) -> Self {
        match cfg.norm {
            NormKind::LayerNorm => Self::Layer(
                LayerNormConfig::new(d)
                    .with_epsilon(cfg.norm_eps)
                    .init(device),
            ),
            NormKind::RmsNorm => Self::Rms(
                RmsNormConfig::new(d)
                    .with_epsilon(cfg.norm_eps)
                    .init(device),
            ),
        }
    }

    /// `eps` is the model's `norm_eps` (burn's `LayerNorm` keeps its own private).
    ///
    /// # Shapes
    /// `[.., d]` -> `[.., d]`
    pub fn forward<const D: usize>(&self, x: Tensor<D>, eps: f64) -> Tensor<D> {
        // One fused operation with its own backward where the device has it (flex).
        match self {
            Self::Layer(n) => {
                crate::fused::layer_norm(x, n.gamma.val(), n.beta.as_ref().map(|b| b.val()), eps)
            }
            Self::Rms(n) => crate::fused::rms_norm(x, n.gamma.val(), eps),
        }
    }
}

/// One pre-norm block: `x + attn(norm(x))`, then `x + mlp(norm(x))`; or, with
/// `parallel_residual` (GPT-NeoX), `x + attn(norm₁(x)) + mlp(norm₂(x))`, and with
/// `shared_norm` too (StableLM 2), `x + attn(norm(x)) + mlp(norm(x))`.
#[derive(Module, Debug)]
pub struct Block {
    /// Norm before attention (GPT-2 `ln_1`, LLaMA `input_layernorm`); none with
    /// `post_norms_only` (OLMo 2).
    pub attn_norm: Option<Norm>,
    /// Self-attention.
    pub attn: Attention,
    /// Norm before the MLP (GPT-2 `ln_2`, LLaMA `post_attention_layernorm`); none with
    /// `post_norms_only`, and with `shared_norm` (the MLP reads `attn_norm`'s output).
    pub mlp_norm: Option<Norm>,
    /// Feed-forward.
    pub mlp: Mlp,
    /// Residual dropout.
    pub dropout: Dropout,
    /// Norm of the attention output before the residual add (Gemma's
    /// `post_attention_layernorm`; `post_norms`).
    pub post_attn_norm: Option<Norm>,
    /// Norm of the MLP output before the residual add (Gemma's
    /// `post_feedforward_layernorm`; `post_norms`).
    pub post_mlp_norm: Option<Norm>,
    /// Adapter slot after attention (PEFT; empty by default).
    pub attn_adapter: Option<crate::adapter::Adapter>,
    /// Adapter slot after the MLP (PEFT; empty by default).
    pub mlp_adapter: Option<crate::adapter::Adapter>,
    #[module(skip)]
    norm_eps: f64,
    #[module(skip)]
    parallel: bool,
}

impl Block {
    fn new(cfg: &ModelConfig, device: &Device) -> Self {
        Self {
            attn_norm: (!cfg.post_norms_only).then(|| Norm::new(cfg, cfg.d_model, device)),
            attn: Attention::new(cfg, device),
            mlp_norm: (!cfg.post_norms_only && !cfg.shared_norm)
                .then(|| Norm::new(cfg, cfg.d_model, device)),
            mlp: Mlp::new(cfg, device),
            dropout: DropoutConfig::new(cfg.dropout).init(),
            post_attn_norm: cfg.post_norms.then(|| Norm::new(cfg, cfg.d_model, device)),
            post_mlp_norm: cfg.post_norms.then(|| Norm::new(cfg, cfg.d_model, device)),
            attn_adapter: None,
            mlp_adapter: None,
            norm_eps: cfg.norm_eps,
            parallel: cfg.parallel_residual,
        }
    }

    fn forward(
        &self,
        x: Tensor<3>,
        rope: Option<&(Tensor<4>, Tensor<4>)>,
        bias: Option<&Tensor<4>>,
        cache: Option<&mut Option<(Tensor<4>, Tensor<4>)>>,
    ) -> Tensor<3> {
        let pre = |n: &Option<Norm>, x: Tensor<3>| match n {
            Some(n) => n.forward(x, self.norm_eps),
            None => x,
        };
        let normed = pre(&self.attn_norm, x.clone());
        let a = self.attn.forward(normed.clone(), rope, bias, cache);
        let a = match &self.attn_adapter {
            Some(ad) => ad.forward(a),
            None => a,
        };
        let a = match &self.post_attn_norm {
            Some(n) => n.forward(a, self.norm_eps),
            None => a,
        };
        let (x, mlp_in) = if self.parallel {
            // GPT-NeoX: the MLP reads the block's input, not the attention's output,
            // through a norm of its own; StableLM 2 (`shared_norm`): through attention's.
            let m = match &self.mlp_norm {
                Some(n) => n.forward(x.clone(), self.norm_eps),
                None => normed,
            };
            (x + self.dropout.forward(a), m)
        } else {
            let x = x + self.dropout.forward(a);
            (x.clone(), pre(&self.mlp_norm, x))
        };
        let m = self.mlp.forward(mlp_in);
        let m = match &self.mlp_adapter {
            Some(ad) => ad.forward(m),
            None => m,
        };
        let m = match &self.post_mlp_norm {
            Some(n) => n.forward(m, self.norm_eps),
            None => m,
        };
        x + self.dropout.forward(m)
    }
}

/// What a forward pass sees besides the tokens.
#[derive(Debug, Clone, Default)]
pub struct ForwardOptions {
    /// Position of each token `[batch, seq]`; default `past_len..past_len+seq`.
    pub positions: Option<Tensor<2, Int>>,
    /// Which keys may be attended, `[batch, past+seq]`: 1 keep, 0 padding.
    pub key_mask: Option<Tensor<2>>,
    /// An additive mask replacing the causal one, broadcastable to
    /// `[batch, heads, seq, past+seq]` (e.g. block-diagonal for packed documents).
    pub attn_mask: Option<Tensor<4>>,
}

/// A decoder-only language model with its LM head.
#[derive(Module, Debug)]
pub struct DecoderLm {
    /// Token embedding `[vocab, d_model]`.
    pub embed_tokens: Embedding,
    /// Learned position table `[max_positions, d_model]` (GPT-2 only).
    pub embed_positions: Option<Embedding>,
    /// The blocks.
    pub layers: Vec<Block>,
    /// Final norm.
    pub final_norm: Norm,
    /// Output projection `[d_model, vocab]`, absent when tied to `embed_tokens`.
    pub lm_head: Option<burn::nn::Linear>,
    /// Embedding dropout.
    pub dropout: Dropout,
    /// Prompt tuning's soft prompt `[virtual_tokens, d_model]` (Lester et al. 2021),
    /// prepended to the input embeddings; `None` for every other model.
    pub soft_prompt: Option<Param<Tensor<2>>>,
    /// Prefix tuning's learned keys and values of every layer; `None` for every other
    /// model.
    pub prefix: Option<crate::prefix::Prefix>,
    #[module(skip)]
    config: ModelConfig,
}

/// The float type a model's frozen weight matrices are kept in (`[model] dtype` of
/// fine-tuning recipes, `manabi generate --dtype`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BaseDtype {
    /// 32-bit floats, as trained.
    #[default]
    F32,
    /// bfloat16 ([`DecoderLm::with_bf16_base`]): half the memory; only what trains stays
    /// `f32`.
    Bf16,
}

impl std::fmt::Display for BaseDtype {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            BaseDtype::F32 => "f32",
            BaseDtype::Bf16 => "bf16",
        })
    }
}

/// `t` in `f32` (rows of a `bf16` embedding table; anything else passes through).
fn widened<const D: usize>(t: Tensor<D>) -> Tensor<D> {
    if t.dtype() == burn::tensor::DType::BF16 {
        t.cast(burn::tensor::DType::F32)
    } else {
        t
    }
}

/// Values per quantization block of [`DecoderLm::with_int8_base`] (one `f32` scale each,
/// as GGML's Q8_0 blocks); a row length it does not divide takes its largest divisor
/// below this.
pub const INT8_BLOCK: u8 = 32;

/// A matrix whose row length has no divisor from this up to [`INT8_BLOCK`] stays `f32`
/// under [`DecoderLm::with_int8_base`].
pub const INT8_MIN_BLOCK: u8 = 8;

/// Large negative value for masked scores: finite, so a fully masked row stays a number.
const MASKED: f32 = -1e30;

impl DecoderLm {
    /// A randomly initialised model. `cfg` must be valid ([`ModelConfig::validate`]).
    pub fn new(cfg: &ModelConfig, device: &Device) -> Self {
        let d = cfg.d_model;
        Self {
            embed_tokens: crate::init::embedding(cfg.vocab_size, d, device),
            embed_positions: (cfg.positions == Positions::Learned)
                .then(|| crate::init::embedding(cfg.max_positions, d, device)),
            layers: (0..cfg.n_layers).map(|_| Block::new(cfg, device)).collect(),
            final_norm: Norm::new(cfg, d, device),
            lm_head: (!cfg.tie_embeddings)
                .then(|| crate::init::linear(d, cfg.vocab_size, false, crate::init::STD, device)),
            dropout: DropoutConfig::new(cfg.dropout).init(),
            soft_prompt: None,
            prefix: None,
            config: cfg.clone(),
        }
    }

    /// Ids of its embedding tables (tokens, learned positions): what
    /// `train.decay_embeddings` chooses to decay or not.
    pub fn embedding_ids(&self) -> Vec<burn::module::ParamId> {
        std::iter::once(&self.embed_tokens)
            .chain(&self.embed_positions)
            .map(|e| e.weight.id)
            .collect()
    }

    /// A model initialised from `seed`: the same parameters on every backend.
    pub fn init(cfg: &ModelConfig, device: &Device, seed: u64) -> Self {
        crate::init::seed(seed);
        Self::new(cfg, device)
    }

    /// The configuration.
    pub fn config(&self) -> &ModelConfig {
        &self.config
    }

    /// Positions taken before the first real token: the soft prompt's or the prefix's
    /// virtual tokens (0 for a plain model).
    pub fn virtual_tokens(&self) -> usize {
        self.soft_prompt.as_ref().map_or(0, |p| p.dims()[0])
            + self.prefix.as_ref().map_or(0, crate::prefix::Prefix::len)
    }

    /// Sets the dropout on the input of every LoRA adapter (PEFT's `lora_dropout`); it
    /// acts only while training and only on `Linear`s that carry an adapter.
    pub fn with_lora_dropout(mut self, p: f64) -> Self {
        for block in &mut self.layers {
            block.attn.lora_dropout.prob = p;
            block.mlp.lora_dropout.prob = p;
        }
        self
    }

    /// The model with its matrices (token and position embeddings, every projection,
    /// the output layer) stored as `bf16`: half the memory, and on flex half the bytes
    /// read per generated token, each product still computed in `f32` (norms, biases,
    /// activations, a soft prompt or prefix, bottleneck adapters, and any parameter that
    /// trains, such as LoRA factors attached before, stay `f32`; on a device without
    /// autodiff nothing trains, so merge adapters first, as `manabi generate --dtype
    /// bf16` does). A `bf16` matrix is frozen: it takes no gradient, and the products that
    /// read it in bf16 exist on flex only (elsewhere it is widened at every use). Rounding each weight to `bf16` (8 bits of mantissa) changes the logits
    /// by about the rounding.
    pub fn with_bf16_base(self) -> Self {
        /// Every frozen 2-D float parameter to `bf16` (trainable ones, such as LoRA
        /// factors attached before, stay `f32`).
        struct ToBf16;

        impl burn::module::ModuleMapper for ToBf16 {
            fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
                let value = param.val();
                if D != 2 || value.dtype() != burn::tensor::DType::F32 || value.is_require_grad() {
                    return param;
                }
                param
                    .map(|t| t.detach().cast(burn::tensor::DType::BF16))
                    .set_require_grad(false)
            }
        }

        // Soft prompts, prefixes and bottleneck adapters stay f32 whether they train or
        // not (the adapters' own layers take burn's f32 products).
        self.map_base(&mut ToBf16, false)
    }

    /// `mapper` applied to the base: every parameter but the soft prompt, the prefix, the
    /// bottleneck adapters and, when `keep_positions`, the learned position embeddings.
    fn map_base<M: burn::module::ModuleMapper>(
        mut self,
        mapper: &mut M,
        keep_positions: bool,
    ) -> Self {
        let (soft_prompt, prefix) = (self.soft_prompt.take(), self.prefix.take());
        let positions = if keep_positions {
            self.embed_positions.take()
        } else {
            None
        };
        let adapters: Vec<_> = self
            .layers
            .iter_mut()
            .map(|b| (b.attn_adapter.take(), b.mlp_adapter.take()))
            .collect();
        let mut m = self.map(mapper);
        m.soft_prompt = soft_prompt;
        m.prefix = prefix;
        if keep_positions {
            m.embed_positions = positions;
        }
        for (block, (attn, mlp)) in m.layers.iter_mut().zip(adapters) {
            block.attn_adapter = attn;
            block.mlp_adapter = mlp;
        }
        m
    }

    /// The model with its weight matrices (token embeddings, every projection, the output
    /// layer) quantized to weight-only `int8` for generation: one byte per weight and one
    /// `f32` scale per block of 32 consecutive values of a row (symmetric, absmax / 127;
    /// a row length 32 does not divide takes its largest divisor down to 8, and a matrix
    /// whose rows have none stays `f32`), about a quarter of the `f32` memory and of the bytes read per generated token on flex,
    /// each product still summed in `f32`. Learned position embeddings, norms, biases,
    /// soft prompts, prefixes and bottleneck adapters stay as they are; merge LoRA, IA³
    /// and DoRA adapters first (as `manabi generate --dtype int8` does). Nothing quantized
    /// trains: the weights are constants, and under autodiff each is dequantized for each
    /// use. The logits move by the rounding of each weight to 255 levels of its block.
    pub fn with_int8_base(self) -> Self {
        use burn::tensor::quantization::{QuantScheme, QuantStore, QuantValue, ScaleDtype};

        /// Every frozen 2-D `f32` parameter to block-quantized `int8`.
        struct ToInt8;

        impl burn::module::ModuleMapper for ToInt8 {
            fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
                let value = param.val();
                if D != 2 || value.dtype() != burn::tensor::DType::F32 || value.is_require_grad() {
                    return param;
                }
                // Blocks tile the rows exactly: INT8_BLOCK values, or the largest divisor
                // of a shorter or odd row length below it.
                let cols = value.dims()[D - 1];
                let block = (1..=INT8_BLOCK)
                    .rev()
                    .find(|&b| cols.is_multiple_of(usize::from(b)))
                    .unwrap_or(1);
                if block < INT8_MIN_BLOCK {
                    // Scales would take more bytes than the values save (an untied
                    // output layer of an odd vocabulary): the matrix stays f32.
                    return param;
                }
                let scheme = QuantScheme::default()
                    .with_value(QuantValue::Q8S)
                    .with_store(QuantStore::Native)
                    .per_block([block], ScaleDtype::F32);
                param
                    .map(|t| t.detach().quantize_dynamic(&scheme))
                    .set_require_grad(false)
            }
        }

        self.map_base(&mut ToInt8, true)
    }

    /// Token embeddings of `ids` in `f32` (a `bf16` table is widened row by row, an
    /// `int8` one dequantized row by row).
    ///
    /// # Shapes
    /// `[batch, seq]` -> `[batch, seq, d_model]`
    pub fn embed(&self, ids: Tensor<2, Int>) -> Tensor<3> {
        let w = self.embed_tokens.weight.val();
        if matches!(w.dtype(), burn::tensor::DType::QFloat(_)) {
            return crate::fused::embedding_int8(w, ids);
        }
        widened(self.embed_tokens.forward(ids))
    }

    /// Records that the model has no separate LM head (after `lm_head` was removed, as
    /// a sequence classifier's body does).
    pub fn set_tied(&mut self) {
        self.config.tie_embeddings = true;
    }

    /// Logits for `ids`.
    ///
    /// # Shapes
    /// - ids: `[batch, seq]`
    /// - returns `[batch, seq, vocab]`
    pub fn forward(&self, ids: Tensor<2, Int>) -> Tensor<3> {
        self.forward_with(ids, &ForwardOptions::default(), None)
    }

    /// Logits with explicit positions, masks and an optional KV cache.
    pub fn forward_with(
        &self,
        ids: Tensor<2, Int>,
        opts: &ForwardOptions,
        cache: Option<&mut KvCache>,
    ) -> Tensor<3> {
        let x = self.embed(ids);
        if let Some(prefix) = &self.prefix {
            return self.forward_prefixed(x, prefix, opts, cache);
        }
        let Some(prompt) = &self.soft_prompt else {
            return self.forward_embeds(x, opts, cache);
        };
        // Prompt tuning, as PEFT does it: the virtual tokens take positions 0..n before
        // the real ones, are attended by every token, and their logits are dropped.
        // With a cache they are in it after the first call, so only positions and the
        // key mask shift.
        let device = x.device();
        let [b, t, d] = x.dims();
        let n = prompt.dims()[0];
        let past = cache.as_ref().map_or(0, |c| c.len());
        let first = past == 0;
        let mut o = behind_virtual_tokens(opts, b, n, &device);
        if first && let Some(shifted) = o.positions.take() {
            // The virtual tokens themselves sit at positions 0..n of this first pass.
            let virt = Tensor::<1, Int>::arange(0..n as i64, &device)
                .reshape([1, n])
                .repeat_dim(0, b);
            o.positions = Some(Tensor::cat(vec![virt, shifted], 1));
        }
        if !first {
            return self.forward_embeds(x, &o, cache);
        }
        let p = prompt.val().reshape([1, n, d]).repeat_dim(0, b); // [b, n, d]
        let logits = self.forward_embeds(Tensor::cat(vec![p, x], 1), &o, cache);
        let v = logits.dims()[2];
        logits.slice([0..b, n..n + t, 0..v])
    }

    /// Prefix tuning, as PEFT does it: the prefix is the cache's content before the first
    /// token, so the real tokens take positions `n..`, attend to the `n` prefix keys, and
    /// given positions and masks (which do not count the prefix) are shifted to make
    /// room for it.
    fn forward_prefixed(
        &self,
        x: Tensor<3>,
        prefix: &crate::prefix::Prefix,
        opts: &ForwardOptions,
        cache: Option<&mut KvCache>,
    ) -> Tensor<3> {
        let device = x.device();
        let b = x.dims()[0];
        let n = prefix.len();
        let mut o = behind_virtual_tokens(opts, b, n, &device);
        if let Some(m) = &opts.attn_mask {
            let [d0, d1, t, _] = m.dims();
            o.attn_mask = Some(Tensor::cat(
                vec![Tensor::zeros([d0, d1, t, n], &device), m.clone()],
                3,
            ));
        }
        let fresh = || KvCache::from_layers(prefix.key_values(&self.config, b));
        match cache {
            Some(c) => {
                if c.is_empty() {
                    *c = fresh();
                }
                self.forward_embeds(x, &o, Some(c))
            }
            None => self.forward_embeds(x, &o, Some(&mut fresh())),
        }
    }

    /// Logits from input embeddings instead of ids (prompt tuning).
    ///
    /// # Shapes
    /// - x: `[batch, seq, d_model]`
    /// - returns `[batch, seq, vocab]`
    pub fn forward_embeds(
        &self,
        x: Tensor<3>,
        opts: &ForwardOptions,
        cache: Option<&mut KvCache>,
    ) -> Tensor<3> {
        let hidden = self.hidden_states(x, opts, cache);
        self.logits(hidden)
    }

    /// Final hidden states (after the final norm).
    ///
    /// # Shapes
    /// `[batch, seq, d_model]` -> `[batch, seq, d_model]`
    pub fn hidden_states(
        &self,
        mut x: Tensor<3>,
        opts: &ForwardOptions,
        mut cache: Option<&mut KvCache>,
    ) -> Tensor<3> {
        let cfg = &self.config;
        let device = x.device();
        let [b, t, d] = x.dims();
        let past = cache.as_ref().map_or(0, |c| c.len());
        let positions = opts.positions.clone().unwrap_or_else(|| {
            Tensor::<1, Int>::arange(past as i64..(past + t) as i64, &device)
                .reshape([1, t])
                .repeat_dim(0, b)
        });
        match cfg.positions {
            Positions::Learned => {
                if let Some(pe) = &self.embed_positions {
                    x = x + widened(pe.forward(positions.clone()));
                }
            }
            Positions::Sinusoidal => x = x + sinusoidal(positions.clone(), d),
            Positions::Rope | Positions::Alibi | Positions::Relative => {}
        }
        if cfg.embed_scale {
            // Gemma: √d in the activations' float type (f32 here).
            x = x * (cfg.d_model as f32).sqrt();
        }
        let rope = (cfg.positions == Positions::Rope).then(|| {
            rope::cos_sin(
                positions.clone(),
                cfg.rotary_dim(),
                cfg.rope_theta,
                cfg.rope_scaling.as_ref(),
            )
        });
        // Gemma 3: the sliding layers' own base, unscaled.
        let local_rope = cfg
            .rope_local_theta
            .filter(|_| cfg.positions == Positions::Rope)
            .map(|theta| rope::cos_sin(positions, cfg.rotary_dim(), theta, None));
        let bias = self.attention_bias(b, t, past, opts, &device);
        // Sliding-window layers see the same mask with keys too far back removed: one
        // mask per window size, made once per pass.
        let mut windowed: Vec<(usize, Tensor<4>)> = Vec::new();
        for w in (0..self.layers.len()).filter_map(|i| cfg.window_of(i)) {
            if !windowed.iter().any(|(size, _)| *size == w) {
                windowed.push((w, bias.clone() + window_mask(t, past, w, &device)));
            }
        }
        let mut x = self.dropout.forward(x);
        if let Some(c) = cache.as_deref_mut()
            && c.layers_mut().len() != self.layers.len()
        {
            *c = KvCache::new(self.layers.len());
        }
        for (i, layer) in self.layers.iter().enumerate() {
            let slot = cache.as_deref_mut().map(|c| &mut c.layers_mut()[i]);
            let layer_bias = match cfg.window_of(i) {
                Some(w) => windowed.iter().find(|(size, _)| *size == w).map(|(_, m)| m),
                None => Some(&bias),
            };
            let layer_rope = match (cfg.window_of(i), &local_rope) {
                (Some(_), Some(local)) => Some(local),
                _ => rope.as_ref(),
            };
            x = layer.forward(x, layer_rope, layer_bias, slot);
        }
        self.final_norm.forward(x, self.config.norm_eps)
    }

    /// Summed next-token cross-entropy of `ids` against `targets` (one per position,
    /// negative = not counted): [`Self::forward_with`] then the loss, but without the
    /// `[batch·seq, vocab]` logits when they are larger than one chunk of
    /// [`crate::fused::CE_CHUNK_VALUES`] (chunked in one fused operation,
    /// [`crate::fused::linear_cross_entropy_sum`]). Smaller logits, prefix and prompt
    /// tuning, a soft-capped output, an output layer with a bias or a LoRA adapter, and
    /// `MANABI_CHUNKED_LOSS=0` take the logits.
    ///
    /// # Shapes
    /// ids `[batch, seq]`, targets `batch·seq` -> `[1]`
    pub fn loss_sum(
        &self,
        ids: Tensor<2, Int>,
        opts: &ForwardOptions,
        targets: &[i64],
    ) -> Tensor<1> {
        let [b, t] = ids.dims();
        let plain = self.chunks_logits(b * t);
        if plain {
            let hidden = self.hidden_states(self.embed(ids), opts, None);
            let d = hidden.dims()[2];
            let x = hidden.reshape([b * t, d]);
            return match &self.lm_head {
                Some(head) if head.bias.is_none() => {
                    crate::fused::linear_cross_entropy_sum(x, &head.weight, false, targets)
                }
                Some(head) => {
                    let logits = crate::fused::linear(head, x);
                    crate::fused::cross_entropy_sum(logits, targets)
                }
                None => crate::fused::linear_cross_entropy_sum(
                    x,
                    &self.embed_tokens.weight,
                    true,
                    targets,
                ),
            };
        }
        let logits = self.forward_with(ids, opts, None);
        let [b, t, v] = logits.dims();
        crate::fused::cross_entropy_sum(logits.reshape([b * t, v]), targets)
    }

    /// Whether the logits of `tokens` positions are computed a chunk at a time: more
    /// than one chunk of them, no prefix, soft prompt or final soft-cap, and the chunked
    /// loss on (`MANABI_CHUNKED_LOSS`).
    fn chunks_logits(&self, tokens: usize) -> bool {
        self.prefix.is_none()
            && self.soft_prompt.is_none()
            && self.config.final_softcap.is_none()
            && tokens * self.config.vocab_size > crate::fused::CE_CHUNK_VALUES
            && crate::fused::chunked_loss()
    }

    /// Each position's cross-entropy against its target (0 where the target is
    /// negative), `[batch·seq]`, computed a chunk of logits at a time as
    /// [`Self::loss_sum`] does, when that applies and the output layer does not train
    /// (frozen, as under LoRA, or a bf16 base); `None` otherwise, where the caller takes
    /// the logits. Preference training (DPO) sums these per sequence.
    pub fn chunked_token_losses(
        &self,
        ids: Tensor<2, Int>,
        opts: &ForwardOptions,
        targets: &[i64],
    ) -> Option<Tensor<1>> {
        let [b, t] = ids.dims();
        let plain = self.chunks_logits(b * t);
        let (w, transposed) = match &self.lm_head {
            Some(head) if head.bias.is_none() => (&head.weight, false),
            Some(_) => return None,
            None => (&self.embed_tokens.weight, true),
        };
        let value = w.val();
        let frozen = !value.is_require_grad()
            && w.adapter().is_none()
            && matches!(
                value.dtype(),
                burn::tensor::DType::F32 | burn::tensor::DType::BF16
            );
        // Off flex the fused operation does not exist: `None` before the pass, so the
        // caller's whole-logits pass is the only one.
        if !(plain && frozen && crate::fused::active_on(&ids.device())) {
            return None;
        }
        let hidden = self.hidden_states(self.embed(ids), opts, None);
        let d = hidden.dims()[2];
        crate::fused::linear_cross_entropy_rows(hidden.reshape([b * t, d]), w, transposed, targets)
    }

    /// Vocabulary logits of hidden states (soft-capped where the model says so).
    pub fn logits(&self, hidden: Tensor<3>) -> Tensor<3> {
        let logits = self.raw_logits(hidden);
        match self.config.final_softcap {
            Some(cap) => crate::attention::softcap(logits, cap),
            None => logits,
        }
    }

    fn raw_logits(&self, hidden: Tensor<3>) -> Tensor<3> {
        match &self.lm_head {
            Some(head) if head.weight.base().dtype() != burn::tensor::DType::F32 => {
                crate::fused::linear(head, hidden)
            }
            Some(head) => head.forward(hidden),
            None => {
                let w = self.embed_tokens.weight.val(); // [vocab, d]
                let [b, t, d] = hidden.dims();
                crate::fused::matmul_transposed(hidden.reshape([b * t, d]), w).reshape([
                    b,
                    t,
                    self.config.vocab_size,
                ])
            }
        }
    }

    /// Causal (or given) mask, padding mask and ALiBi biases as one additive tensor.
    ///
    /// # Shapes
    /// returns `[batch or 1, heads or 1, seq, past+seq]`
    fn attention_bias(
        &self,
        b: usize,
        t: usize,
        past: usize,
        opts: &ForwardOptions,
        device: &Device,
    ) -> Tensor<4> {
        let tk = past + t;
        let mut bias = match &opts.attn_mask {
            Some(m) => m.clone(),
            None => {
                let mut m = vec![0f32; t * tk];
                for i in 0..t {
                    for j in (past + i + 1)..tk {
                        m[i * tk + j] = MASKED;
                    }
                }
                Tensor::<1>::from_floats(m.as_slice(), device).reshape([1, 1, t, tk])
            }
        };
        if let Some(keep) = &opts.key_mask {
            // 1 -> 0, 0 -> MASKED; [batch, tk] -> [batch, 1, 1, tk]
            let pad = (keep.clone().neg() + 1.0) * MASKED;
            bias = bias + pad.reshape([b, 1, 1, tk]);
        }
        if self.config.positions == Positions::Alibi {
            let h = self.config.n_heads;
            let slopes = alibi_slopes(h);
            let mut a = vec![0f32; h * t * tk];
            for (head, s) in slopes.iter().enumerate() {
                for i in 0..t {
                    for j in 0..tk {
                        a[(head * t + i) * tk + j] = -s * ((past + i) as f32 - j as f32).abs();
                    }
                }
            }
            bias = bias + Tensor::<1>::from_floats(a.as_slice(), device).reshape([1, h, t, tk]);
        }
        bias
    }
}

/// Sliding-window attention's mask (as transformers' `sliding_window_overlay`): query
/// `past + i` may not attend key `j` when `past + i - j >= window`.
///
/// # Shapes
/// returns `[1, 1, seq, past+seq]`
fn window_mask(t: usize, past: usize, window: usize, device: &Device) -> Tensor<4> {
    let tk = past + t;
    let mut m = vec![0f32; t * tk];
    for i in 0..t {
        for j in 0..tk {
            if past + i >= j + window {
                m[i * tk + j] = MASKED;
            }
        }
    }
    Tensor::<1>::from_floats(m.as_slice(), device).reshape([1, 1, t, tk])
}

/// `opts` (given without the virtual tokens) for a pass with `n` virtual tokens (a soft
/// prompt or a prefix) before the real ones: positions shifted by `n`, and `n` attended
/// keys prepended to the key mask.
fn behind_virtual_tokens(
    opts: &ForwardOptions,
    b: usize,
    n: usize,
    device: &Device,
) -> ForwardOptions {
    let mut o = opts.clone();
    o.positions = opts.positions.clone().map(|p| p + n as i64);
    o.key_mask = opts
        .key_mask
        .clone()
        .map(|keep| Tensor::cat(vec![Tensor::ones([b, n], device), keep], 1));
    o
}

/// ALiBi head slopes: a geometric sequence starting at 2^(-8/n) (Press et al. 2022),
/// interleaved for head counts that are not powers of two.
pub fn alibi_slopes(n: usize) -> Vec<f32> {
    fn pow2(n: usize) -> Vec<f32> {
        let start = 2f32.powf(-8.0 / n as f32);
        (0..n).map(|i| start.powi(i as i32 + 1)).collect()
    }
    if n.is_power_of_two() {
        return pow2(n);
    }
    let closest = n.next_power_of_two() / 2;
    let mut s = pow2(closest);
    s.extend(pow2(2 * closest).into_iter().step_by(2).take(n - closest));
    s
}

/// Fixed sinusoidal encodings: dimension 2i is sin(p / 10000^(2i/d)), 2i+1 the cosine.
///
/// # Shapes
/// positions `[batch, seq]` -> `[batch, seq, d]`
pub fn sinusoidal(positions: Tensor<2, Int>, d: usize) -> Tensor<3> {
    let device = positions.device();
    let [b, t] = positions.dims();
    let half = d.div_ceil(2);
    let inv: Vec<f32> = (0..half)
        .map(|i| 10_000f32.powf(-(2.0 * i as f32) / d as f32))
        .collect();
    let inv = Tensor::<1>::from_floats(inv.as_slice(), &device).reshape([1, 1, half]);
    let angles = positions.float().reshape([b, t, 1]) * inv; // [b, t, half]
    // interleave: [b, t, half, 2] -> [b, t, 2·half]
    let both =
        Tensor::stack::<4>(vec![angles.clone().sin(), angles.cos()], 3).reshape([b, t, 2 * half]);
    both.slice([0..b, 0..t, 0..d])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alibi_slopes_match_the_paper() {
        // 8 heads: 1/2, 1/4, …, 1/256 (Press et al. 2022).
        let s = alibi_slopes(8);
        for (i, v) in s.iter().enumerate() {
            assert!((v - 0.5f32.powi(i as i32 + 1)).abs() < 1e-7);
        }
        // 6 heads: the 4-head sequence, then every other slope of the 8-head one.
        let s = alibi_slopes(6);
        let want = [0.25, 0.0625, 0.015625, 0.00390625, 0.5, 0.125];
        for (a, b) in s.iter().zip(want) {
            assert!((a - b).abs() < 1e-7, "{s:?}");
        }
    }

    #[test]
    fn sinusoidal_positions_follow_the_formula() {
        let device = crate::device::test_device();
        let pos = Tensor::<1, Int>::from_ints([0, 1, 7].as_slice(), &device).reshape([1, 3]);
        let pe: Vec<f32> = sinusoidal(pos, 6).into_data().try_to_vec().unwrap();
        for (k, p) in [0f32, 1.0, 7.0].iter().enumerate() {
            for i in 0..3 {
                let angle = p / 10_000f32.powf(2.0 * i as f32 / 6.0);
                assert!((pe[k * 6 + 2 * i] - angle.sin()).abs() < 1e-5);
                assert!((pe[k * 6 + 2 * i + 1] - angle.cos()).abs() < 1e-5);
            }
        }
    }

    #[test]
    fn alibi_and_sinusoidal_models_run_and_keep_causality() {
        let device = crate::device::test_device();
        for positions in [Positions::Alibi, Positions::Sinusoidal] {
            let cfg: ModelConfig = toml::from_str(&format!(
                "family = \"gpt2\"\nvocab_size = 20\nmax_positions = 16\nd_model = 16\nn_layers = 1\nn_heads = 2\nd_ff = 32\npositions = \"{}\"\nnorm = \"layernorm\"\nactivation = \"gelu_tanh\"",
                format!("{positions:?}").to_lowercase()
            ))
            .unwrap();
            let model = DecoderLm::init(&cfg, &device, 1);
            let a = Tensor::<1, Int>::from_ints([1, 2, 3, 4].as_slice(), &device).reshape([1, 4]);
            let b = Tensor::<1, Int>::from_ints([1, 2, 3, 9].as_slice(), &device).reshape([1, 4]);
            let la: Vec<f32> = model.forward(a).into_data().try_to_vec().unwrap();
            let lb: Vec<f32> = model.forward(b).into_data().try_to_vec().unwrap();
            // Changing the last token leaves the logits of earlier positions alone.
            assert_eq!(la[..3 * 20], lb[..3 * 20], "{positions:?}");
            assert_ne!(la[3 * 20..], lb[3 * 20..], "{positions:?}");
        }
    }
}
