//! Parameter initialisation of GPT-2 (Radford et al. 2019), as nanoGPT does it: weights
//! N(0, 0.02), residual output projections N(0, 0.02/√(2·n_layers)), biases zero.
//! (burn's default Kaiming init leaves tied-embedding logits far too large.)

use burn::module::Param;
use burn::nn::{Embedding, EmbeddingConfig, Initializer, Linear, LinearConfig};
use burn::prelude::*;

/// Standard deviation of weights.
pub const STD: f64 = 0.02;

/// A `Linear` `[i, o]` with N(0, std) weights and a zero bias.
pub fn linear(i: usize, o: usize, bias: bool, std: f64, device: &Device) -> Linear {
    let mut lin = LinearConfig::new(i, o)
        .with_bias(bias)
        .with_initializer(Initializer::Normal { mean: 0.0, std })
        .init(device);
    if bias {
        lin.bias = Some(Param::from_tensor(Tensor::zeros([o], device)));
    }
    lin
}

/// An `Embedding` `[n, d]` with N(0, 0.02) weights.
pub fn embedding(n: usize, d: usize, device: &Device) -> Embedding {
    EmbeddingConfig::new(n, d)
        .with_initializer(Initializer::Normal {
            mean: 0.0,
            std: STD,
        })
        .init(device)
}

/// The std of a residual output projection in a model of `n_layers` blocks.
pub fn residual_std(n_layers: usize) -> f64 {
    STD / (2.0 * n_layers as f64).sqrt()
}
