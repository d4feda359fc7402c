//! A decoder whose matrices are kept in bf16 (`DecoderLm::with_bf16_base`, `manabi
//! generate --dtype bf16`): the same logits and input gradients as the f32 model with its
//! matrices rounded to bf16, on tied and untied output layers, learned positions and
//! biases, QKV biases and qk-norms; the same greedy tokens with and without the KV cache.

use std::path::{Path, PathBuf};

use burn::module::{Module, ModuleMapper, Param};
use burn::prelude::*;
use burn::tensor::DType;
use manabi_model::{
    DecoderLm, ForwardOptions, GenerateOptions, device::test_device, generate, load_hf,
};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../fixtures/models")
        .join(name)
}

/// Every 2-D parameter rounded to bf16 and kept in f32.
struct RoundToBf16;

impl ModuleMapper for RoundToBf16 {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        if D != 2 {
            return param;
        }
        param.map(|t| t.cast(DType::BF16).cast(DType::F32))
    }
}

fn values<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    t.into_data().convert::<f32>().try_to_vec::<f32>().unwrap()
}

/// Largest difference relative to the largest magnitude of `want`.
fn relative(got: &[f32], want: &[f32]) -> f32 {
    assert_eq!(got.len(), want.len());
    let scale = want.iter().fold(1e-6f32, |m, v| m.max(v.abs()));
    got.iter()
        .zip(want)
        .map(|(a, b)| (a - b).abs() / scale)
        .fold(0.0, f32::max)
}

fn ids(vocab: usize, device: &Device) -> Tensor<2, Int> {
    let flat: Vec<i64> = (0..2 * 9)
        .map(|i| (i * 37 + 5) as i64 % vocab as i64)
        .collect();
    Tensor::<1, Int>::from_ints(flat.as_slice(), device).reshape([2, 9])
}

/// Logits, and the gradient of a fixed function of them with respect to the input
/// embeddings, on the autodiff device.
fn logits_and_input_gradient(model: &DecoderLm, ids: Tensor<2, Int>) -> (Vec<f32>, Vec<f32>) {
    let x = model.embed(ids).detach().require_grad();
    let logits = model.forward_embeds(x.clone(), &ForwardOptions::default(), None);
    let weights = logits.clone().detach().sin(); // a fixed cotangent
    let grads = (logits.clone() * weights).sum().backward();
    let dx = x.grad(&grads).expect("input gradient");
    (values(logits), values(dx))
}

fn check(name: &str) {
    let device = test_device().autodiff();
    let model = load_hf(fixture(name), &device).unwrap();
    let vocab = model.config().vocab_size;
    let rounded = model.clone().map(&mut RoundToBf16);
    // Frozen first: a parameter that trains stays f32.
    let half = model.clone().freeze().with_bf16_base();
    assert_eq!(
        half.embed_tokens.weight.val().dtype(),
        DType::BF16,
        "{name}: embeddings kept in bf16"
    );
    let (want, want_dx) = logits_and_input_gradient(&rounded, ids(vocab, &device));
    let (got, got_dx) = logits_and_input_gradient(&half, ids(vocab, &device));
    let (f32_logits, _) = logits_and_input_gradient(&model, ids(vocab, &device));
    let worst = relative(&got, &want);
    assert!(
        worst <= 1e-5,
        "{name}: logits differ by {worst:e} (relative)"
    );
    let worst = relative(&got_dx, &want_dx);
    assert!(worst <= 1e-5, "{name}: input gradients differ by {worst:e}");
    assert!(
        relative(&got, &f32_logits) > 0.0,
        "{name}: the bf16 model should not equal the unrounded one"
    );

    // Decoding (one row per product) with and without the cache, against the rounded f32.
    let device = test_device();
    let model = load_hf(fixture(name), &device).unwrap();
    let rounded = model.clone().map(&mut RoundToBf16);
    let half = model.with_bf16_base();
    let prompts = [vec![1u32, 7, 3, 9], vec![4u32, 2]];
    let opts = |use_cache| GenerateOptions {
        max_new_tokens: 12,
        use_cache,
        ..GenerateOptions::default()
    };
    let cached = generate(&half, &prompts, &opts(true), None).unwrap();
    let full = generate(&half, &prompts, &opts(false), None).unwrap();
    let want = generate(&rounded, &prompts, &opts(true), None).unwrap();
    assert_eq!(cached, full, "{name}: with and without the KV cache");
    assert_eq!(cached, want, "{name}: against the rounded f32 model");
}

#[test]
fn gpt2_in_bf16_equals_its_rounded_f32_weights() {
    // Tied output layer, learned positions, biases on every projection.
    check("gpt2");
}

#[test]
fn llama_in_bf16_equals_its_rounded_f32_weights() {
    // Untied output layer, grouped-query attention.
    check("llama-gqa");
}

#[test]
fn qwen_in_bf16_equals_its_rounded_f32_weights() {
    // QKV biases; Qwen3's per-head qk-norms.
    check("qwen2");
    check("qwen3");
}
