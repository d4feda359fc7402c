//! Parameter initialisation of GPT-2 (Radford et al. 2019), as nanoGPT does it: weights
//! N(0, 0.02), residual output projections N(0, 0.02/√(2·n_layers)), biases zero.
//! (burn's default Kaiming init leaves tied-embedding logits far too large.)
//!
//! Values are drawn on the host from a per-thread ChaCha8 generator, so a model built
//! after [`seed`] is the same on every backend and is not disturbed by other threads
//! using the device's random generator.

use std::cell::RefCell;

use burn::module::Param;
use burn::nn::{Embedding, EmbeddingConfig, Initializer, Linear, LinearConfig};
use burn::prelude::*;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Standard deviation of weights.
pub const STD: f64 = 0.02;

thread_local! {
    static RNG: RefCell<ChaCha8Rng> = RefCell::new(ChaCha8Rng::seed_from_u64(0));
    /// Set while a model is built only to be overwritten by loaded weights.
    static SKELETON: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Runs `build` with every drawn weight zero instead of random: for a model whose
/// parameters are all about to be replaced by a checkpoint's, drawing hundreds of
/// millions of normal values first is wasted time (seconds at 0.5 B parameters), and
/// holding them wasted memory (each is one zero broadcast to its shape). The generator
/// is not advanced.
pub fn skeleton<T>(build: impl FnOnce() -> T) -> T {
    let was = SKELETON.with(|s| s.replace(true));
    let out = build();
    SKELETON.with(|s| s.set(was));
    out
}

/// Reseeds this thread's initialisation generator.
pub fn seed(seed: u64) {
    RNG.with(|r| *r.borrow_mut() = ChaCha8Rng::seed_from_u64(seed));
}

/// A tensor of N(0, std) values (Box–Muller on the host).
pub fn normal<const D: usize>(shape: [usize; D], std: f64, device: &Device) -> Tensor<D> {
    if SKELETON.with(std::cell::Cell::get) {
        // One zero broadcast to the shape: no memory for a value about to be replaced
        // (allocating zeros for every weight doubled the peak of loading a checkpoint).
        return Tensor::<1>::zeros([1], device)
            .reshape([1; D])
            .expand(shape);
    }
    let n: usize = shape.iter().product();
    let values: Vec<f32> = RNG.with(|r| {
        let mut rng = r.borrow_mut();
        (0..n)
            .map(|_| {
                let u1: f64 = 1.0 - rng.random::<f64>();
                let u2: f64 = rng.random::<f64>();
                ((-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos() * std) as f32
            })
            .collect()
    });
    Tensor::<1>::from_floats(values.as_slice(), device).reshape(shape)
}

/// A `Linear` `[i, o]` with N(0, std) weights and a zero bias.
pub fn linear(i: usize, o: usize, bias: bool, std: f64, device: &Device) -> Linear {
    let mut lin = LinearConfig::new(i, o)
        .with_bias(bias)
        .with_initializer(Initializer::Zeros)
        .init(device);
    lin.weight = Param::from_tensor(normal([i, o], std, device));
    if bias {
        lin.bias = Some(Param::from_tensor(Tensor::zeros([o], device)));
    }
    lin
}

/// An `Embedding` `[n, d]` with N(0, 0.02) weights.
pub fn embedding(n: usize, d: usize, device: &Device) -> Embedding {
    let mut e = EmbeddingConfig::new(n, d)
        .with_initializer(Initializer::Zeros)
        .init(device);
    e.weight = Param::from_tensor(normal([n, d], STD, device));
    e
}

/// The std of a residual output projection in a model of `n_layers` blocks.
pub fn residual_std(n_layers: usize) -> f64 {
    STD / (2.0 * n_layers as f64).sqrt()
}
