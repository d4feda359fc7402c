//! The feed-forward half of a block: GELU / ReLU MLP, or the gated SwiGLU and GEGLU
//! (Shazeer 2020).

use burn::nn::{Dropout, DropoutConfig, Linear};
use burn::prelude::*;
use burn::tensor::activation::{gelu, relu, silu};

use crate::fused::{gelu_tanh, lora_linear};

use crate::config::{Activation, ModelConfig};

/// Feed-forward layer.
#[derive(Module, Debug)]
pub struct Mlp {
    /// `[d_model, d_ff]` (GPT-2 `c_fc`, LLaMA `up_proj`).
    pub up_proj: Linear,
    /// `[d_model, d_ff]`, gated activations only (LLaMA `gate_proj`, T5 `wi_0`).
    pub gate_proj: Option<Linear>,
    /// `[d_ff, d_model]` (GPT-2 `c_proj`, LLaMA `down_proj`).
    pub down_proj: Linear,
    /// Dropout on the input of LoRA adapters (PEFT's `lora_dropout`; 0 = none).
    pub lora_dropout: Dropout,
    #[module(skip)]
    activation: Activation,
}

impl Mlp {
    /// A randomly initialised layer for `cfg`.
    pub fn new(cfg: &ModelConfig, device: &Device) -> Self {
        let lin = |i, o, std| crate::init::linear(i, o, cfg.mlp_bias, std, device);
        let std = crate::init::STD;
        Self {
            up_proj: lin(cfg.d_model, cfg.d_ff, std),
            gate_proj: matches!(cfg.activation, Activation::Swiglu | Activation::GegluTanh)
                .then(|| lin(cfg.d_model, cfg.d_ff, std)),
            down_proj: lin(
                cfg.d_ff,
                cfg.d_model,
                crate::init::residual_std(cfg.n_layers),
            ),
            lora_dropout: DropoutConfig::new(0.0).init(),
            activation: cfg.activation,
        }
    }

    /// # Shapes
    /// `[batch, seq, d_model]` -> `[batch, seq, d_model]`
    pub fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        let linear = |layer, x| lora_linear(layer, x, &self.lora_dropout);
        let up = linear(&self.up_proj, x.clone());
        let hidden = match (&self.gate_proj, self.activation) {
            (Some(gate), Activation::GegluTanh) => gelu_tanh(linear(gate, x)) * up,
            (Some(gate), _) => silu(linear(gate, x)) * up,
            (None, Activation::GeluTanh) => gelu_tanh(up),
            (None, Activation::Gelu) => gelu(up),
            (None, _) => relu(up),
        };
        linear(&self.down_proj, hidden)
    }
}
