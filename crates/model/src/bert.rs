//! BERT (Devlin et al. 2019) as `transformers` lays it out: word + learned position +
//! token-type embeddings, post-norm bidirectional blocks with a padding mask, a pooler on
//! [CLS], and the masked-LM, sequence- and token-classification heads. Reads bottom-up:
//! embeddings → block → encoder → heads. Weights come from [`crate::hf_bert`].

use burn::module::Param;
use burn::nn::{
    Dropout, DropoutConfig, Embedding, EmbeddingConfig, LayerNorm, LayerNormConfig, Linear,
    LinearConfig,
};
use burn::prelude::*;
use burn::tensor::activation::{gelu, gelu_approximate, relu, silu};

use crate::attention::Attention;
use crate::config::{Activation, ModelConfig};
use crate::error::{ModelError, Result};
use crate::inputs::{check_dims, check_ids, key_bias};
use crate::mlp::Mlp;

fn layer_norm(cfg: &ModelConfig, device: &Device) -> LayerNorm {
    LayerNormConfig::new(cfg.d_model)
        .with_epsilon(cfg.norm_eps)
        .init(device)
}

/// The MLP activation applied on its own (the MLM head's transform uses it too).
fn activate(activation: Activation, x: Tensor<3>) -> Tensor<3> {
    match activation {
        Activation::Gelu => gelu(x),
        Activation::GeluTanh | Activation::GegluTanh => gelu_approximate(x),
        Activation::Relu => relu(x),
        Activation::Swiglu => silu(x),
    }
}

/// Token, position and token-type embeddings, summed and normalised.
#[derive(Module, Debug)]
pub struct BertEmbeddings {
    /// `[vocab, d_model]`; also the MLM decoder when tied.
    pub word: Embedding,
    /// `[max_positions, d_model]`.
    pub position: Embedding,
    /// `[type_vocab_size, d_model]` (segment A / B).
    pub token_type: Embedding,
    /// LayerNorm after the sum.
    pub norm: LayerNorm,
    /// Dropout after the norm.
    pub dropout: Dropout,
}

impl BertEmbeddings {
    fn new(cfg: &ModelConfig, device: &Device) -> Self {
        let d = cfg.d_model;
        Self {
            word: EmbeddingConfig::new(cfg.vocab_size, d).init(device),
            position: EmbeddingConfig::new(cfg.max_positions, d).init(device),
            token_type: EmbeddingConfig::new(cfg.type_vocab_size.unwrap_or(2), d).init(device),
            norm: layer_norm(cfg, device),
            dropout: DropoutConfig::new(cfg.dropout).init(),
        }
    }

    /// # Shapes
    /// - ids, token_types: `[batch, seq]`
    /// - returns `[batch, seq, d_model]`
    pub fn forward(&self, ids: Tensor<2, Int>, token_types: Tensor<2, Int>) -> Tensor<3> {
        let [b, t] = ids.dims();
        let device = ids.device();
        // Absolute positions 0..seq, the same for every row: [1, seq] -> [batch, seq].
        let positions = Tensor::<1, Int>::arange(0..t as i64, &device)
            .reshape([1, t])
            .repeat_dim(0, b);
        let x = self.word.forward(ids)
            + self.position.forward(positions)
            + self.token_type.forward(token_types);
        self.dropout.forward(self.norm.forward(x))
    }
}

/// One post-norm block: `x = norm(x + attn(x))`, then `x = norm(x + mlp(x))`.
#[derive(Module, Debug)]
pub struct BertLayer {
    /// Self-attention (`attention.self.{query,key,value}`, `attention.output.dense`).
    pub attn: Attention,
    /// Norm after the attention residual (`attention.output.LayerNorm`).
    pub attn_norm: LayerNorm,
    /// Feed-forward (`intermediate.dense`, `output.dense`).
    pub mlp: Mlp,
    /// Norm after the MLP residual (`output.LayerNorm`).
    pub mlp_norm: LayerNorm,
    /// Residual dropout.
    pub dropout: Dropout,
}

impl BertLayer {
    fn new(cfg: &ModelConfig, device: &Device) -> Self {
        Self {
            attn: Attention::new(cfg, device),
            attn_norm: layer_norm(cfg, device),
            mlp: Mlp::new(cfg, device),
            mlp_norm: layer_norm(cfg, device),
            dropout: DropoutConfig::new(cfg.dropout).init(),
        }
    }

    /// # Shapes
    /// - x: `[batch, seq, d_model]`
    /// - bias: additive key mask `[batch, 1, 1, seq]`
    /// - returns `[batch, seq, d_model]`
    pub fn forward(&self, x: Tensor<3>, bias: Option<&Tensor<4>>) -> Tensor<3> {
        let a = self.attn.forward(x.clone(), None, bias, None);
        let x = self.attn_norm.forward(x + self.dropout.forward(a));
        let m = self.mlp.forward(x.clone());
        self.mlp_norm.forward(x + self.dropout.forward(m))
    }
}

/// What the encoder returns.
#[derive(Debug, Clone)]
pub struct BertOutput {
    /// Last hidden states `[batch, seq, d_model]`.
    pub hidden: Tensor<3>,
    /// `tanh(dense(hidden[:, 0]))` `[batch, d_model]`, when the model has a pooler.
    pub pooled: Option<Tensor<2>>,
}

/// The encoder (`transformers`' `BertModel`): embeddings, blocks, optional pooler.
#[derive(Module, Debug)]
pub struct BertModel {
    /// Embeddings.
    pub embeddings: BertEmbeddings,
    /// The blocks.
    pub layers: Vec<BertLayer>,
    /// Dense layer of the pooler (`pooler.dense`), applied to the [CLS] state; masked-LM
    /// checkpoints of transformers 5 have none.
    pub pooler: Option<Linear>,
    #[module(skip)]
    config: ModelConfig,
}

impl BertModel {
    /// Ids of its embedding tables (words, positions, token types).
    pub fn embedding_ids(&self) -> Vec<burn::module::ParamId> {
        let e = &self.embeddings;
        vec![
            e.word.weight.id,
            e.position.weight.id,
            e.token_type.weight.id,
        ]
    }

    /// A randomly initialised encoder. `cfg` must be valid ([`ModelConfig::validate`]).
    pub fn new(cfg: &ModelConfig, pooler: bool, device: &Device) -> Self {
        Self {
            embeddings: BertEmbeddings::new(cfg, device),
            layers: (0..cfg.n_layers)
                .map(|_| BertLayer::new(cfg, device))
                .collect(),
            pooler: pooler.then(|| LinearConfig::new(cfg.d_model, cfg.d_model).init(device)),
            config: cfg.clone(),
        }
    }

    /// The configuration.
    pub fn config(&self) -> &ModelConfig {
        &self.config
    }

    /// Hidden states (and the pooled [CLS] state). `attention_mask` is 1 for tokens and 0
    /// for padding; `token_types` default to 0. Errors on ids outside the tables, on
    /// sequences longer than `max_positions`, and on masks of another shape.
    ///
    /// # Shapes
    /// - ids, token_types, attention_mask: `[batch, seq]`
    /// - returns hidden `[batch, seq, d_model]`, pooled `[batch, d_model]`
    pub fn forward(
        &self,
        ids: Tensor<2, Int>,
        attention_mask: Option<Tensor<2>>,
        token_types: Option<Tensor<2, Int>>,
    ) -> Result<BertOutput> {
        let cfg = &self.config;
        let dims = ids.dims();
        let [b, t] = dims;
        check_ids(&ids, cfg.vocab_size, "input ids")?;
        if t > cfg.max_positions {
            return Err(ModelError::Input(format!(
                "{t} tokens exceed the model's {} positions",
                cfg.max_positions
            )));
        }
        check_dims(
            attention_mask.as_ref().map(|m| m.dims()),
            dims,
            "attention mask",
        )?;
        check_dims(
            token_types.as_ref().map(|m| m.dims()),
            dims,
            "token type ids",
        )?;
        let token_types = match token_types {
            Some(tt) => {
                check_ids(&tt, cfg.type_vocab_size.unwrap_or(2), "token type ids")?;
                tt
            }
            None => Tensor::zeros([b, t], &ids.device()),
        };
        let bias = attention_mask.as_ref().map(key_bias);
        let mut x = self.embeddings.forward(ids, token_types);
        for layer in &self.layers {
            x = layer.forward(x, bias.as_ref());
        }
        let pooled = self.pooler.as_ref().map(|dense| {
            let d = cfg.d_model;
            // [CLS] is position 0: [batch, 1, d] -> [batch, d]
            let cls = x.clone().slice([0..b, 0..1, 0..d]).reshape([b, d]);
            dense.forward(cls).tanh()
        });
        Ok(BertOutput { hidden: x, pooled })
    }
}

/// The masked-LM head (`cls.predictions`): dense → activation → LayerNorm → decoder,
/// the decoder tied to the word embeddings unless the checkpoint unties it.
#[derive(Module, Debug)]
pub struct MlmHead {
    /// `transform.dense` `[d_model, d_model]`.
    pub dense: Linear,
    /// `transform.LayerNorm`.
    pub norm: LayerNorm,
    /// Untied decoder `[d_model, vocab]` (no bias); `None` uses the word embeddings.
    pub decoder: Option<Linear>,
    /// Output bias `[vocab]` (`cls.predictions.bias`).
    pub bias: Param<Tensor<1>>,
    #[module(skip)]
    activation: Activation,
}

impl MlmHead {
    /// A randomly initialised head for `cfg`.
    pub fn new(cfg: &ModelConfig, device: &Device) -> Self {
        let (d, v) = (cfg.d_model, cfg.vocab_size);
        Self {
            dense: LinearConfig::new(d, d).init(device),
            norm: layer_norm(cfg, device),
            decoder: (!cfg.tie_embeddings)
                .then(|| LinearConfig::new(d, v).with_bias(false).init(device)),
            bias: Param::from_tensor(Tensor::zeros([v], device)),
            activation: cfg.activation,
        }
    }

    /// # Shapes
    /// - hidden: `[batch, seq, d_model]`
    /// - word: the word-embedding table `[vocab, d_model]`
    /// - returns `[batch, seq, vocab]`
    pub fn forward(&self, hidden: Tensor<3>, word: &Embedding) -> Tensor<3> {
        let h = self
            .norm
            .forward(activate(self.activation, self.dense.forward(hidden)));
        let [b, t, d] = h.dims();
        let logits = match &self.decoder {
            Some(dec) => dec.forward(h),
            None => {
                let w = word.weight.val(); // [vocab, d]
                let v = w.dims()[0];
                // [b·t, d] · [d, vocab] -> [b, t, vocab]
                h.reshape([b * t, d])
                    .matmul(w.transpose())
                    .reshape([b, t, v])
            }
        };
        logits + self.bias.val().unsqueeze::<3>()
    }
}

/// `BertForMaskedLM`: vocabulary logits at every position.
#[derive(Module, Debug)]
pub struct BertForMaskedLm {
    /// The encoder.
    pub bert: BertModel,
    /// The head.
    pub head: MlmHead,
}

impl BertForMaskedLm {
    /// A randomly initialised model (no pooler, as in transformers).
    pub fn new(cfg: &ModelConfig, device: &Device) -> Self {
        Self {
            bert: BertModel::new(cfg, false, device),
            head: MlmHead::new(cfg, device),
        }
    }

    /// Logits; arguments as in [`BertModel::forward`].
    ///
    /// # Shapes
    /// - ids, token_types, attention_mask: `[batch, seq]`
    /// - returns `[batch, seq, vocab]`
    pub fn forward(
        &self,
        ids: Tensor<2, Int>,
        attention_mask: Option<Tensor<2>>,
        token_types: Option<Tensor<2, Int>>,
    ) -> Result<Tensor<3>> {
        let out = self.bert.forward(ids, attention_mask, token_types)?;
        Ok(self.head.forward(out.hidden, &self.bert.embeddings.word))
    }
}

/// `BertForSequenceClassification`: one label distribution per sequence, from the pooled
/// [CLS] state.
#[derive(Module, Debug)]
pub struct BertForSequenceClassification {
    /// The encoder, with its pooler.
    pub bert: BertModel,
    /// `classifier` `[d_model, num_labels]`.
    pub classifier: Linear,
    /// Dropout before the classifier.
    pub dropout: Dropout,
}

impl BertForSequenceClassification {
    /// A randomly initialised model with `cfg.num_labels` (default 2) labels.
    pub fn new(cfg: &ModelConfig, device: &Device) -> Self {
        Self {
            bert: BertModel::new(cfg, true, device),
            classifier: LinearConfig::new(cfg.d_model, cfg.num_labels.unwrap_or(2)).init(device),
            dropout: DropoutConfig::new(cfg.dropout).init(),
        }
    }

    /// Logits; arguments as in [`BertModel::forward`].
    ///
    /// # Shapes
    /// - ids, token_types, attention_mask: `[batch, seq]`
    /// - returns `[batch, num_labels]`
    pub fn forward(
        &self,
        ids: Tensor<2, Int>,
        attention_mask: Option<Tensor<2>>,
        token_types: Option<Tensor<2, Int>>,
    ) -> Result<Tensor<2>> {
        let out = self.bert.forward(ids, attention_mask, token_types)?;
        let pooled = out.pooled.ok_or_else(|| {
            ModelError::Input("sequence classification needs the encoder's pooler".into())
        })?;
        Ok(self.classifier.forward(self.dropout.forward(pooled)))
    }
}

/// `BertForTokenClassification`: one label distribution per token.
#[derive(Module, Debug)]
pub struct BertForTokenClassification {
    /// The encoder (no pooler).
    pub bert: BertModel,
    /// `classifier` `[d_model, num_labels]`.
    pub classifier: Linear,
    /// Dropout before the classifier.
    pub dropout: Dropout,
}

impl BertForTokenClassification {
    /// A randomly initialised model with `cfg.num_labels` (default 2) labels.
    pub fn new(cfg: &ModelConfig, device: &Device) -> Self {
        Self {
            bert: BertModel::new(cfg, false, device),
            classifier: LinearConfig::new(cfg.d_model, cfg.num_labels.unwrap_or(2)).init(device),
            dropout: DropoutConfig::new(cfg.dropout).init(),
        }
    }

    /// Logits; arguments as in [`BertModel::forward`].
    ///
    /// # Shapes
    /// - ids, token_types, attention_mask: `[batch, seq]`
    /// - returns `[batch, seq, num_labels]`
    pub fn forward(
        &self,
        ids: Tensor<2, Int>,
        attention_mask: Option<Tensor<2>>,
        token_types: Option<Tensor<2, Int>>,
    ) -> Result<Tensor<3>> {
        let out = self.bert.forward(ids, attention_mask, token_types)?;
        Ok(self.classifier.forward(self.dropout.forward(out.hidden)))
    }
}
