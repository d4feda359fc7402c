//! A decoder whose matrices are weight-only int8 (`DecoderLm::with_int8_base`, `manabi
//! generate --dtype int8`): the same logits as the f32 model holding the dequantized
//! weights, on tied and untied output layers, learned positions and biases, QKV biases and
//! qk-norms, with and without autodiff; the same greedy tokens with and without the KV
//! cache; logits near the unquantized model's.

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

/// Every quantized parameter back to f32 (the values the int8 model computes with).
struct Dequantize;

impl ModuleMapper for Dequantize {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        if matches!(param.val().dtype(), DType::QFloat(_)) {
            param.map(|t| t.dequantize())
        } else {
            param
        }
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

fn logits(model: &DecoderLm, ids: Tensor<2, Int>) -> Vec<f32> {
    values(model.forward_with(ids, &ForwardOptions::default(), None))
}

fn check(name: &str) {
    for device in [test_device(), test_device().autodiff()] {
        let model = load_hf(fixture(name), &device).unwrap();
        let vocab = model.config().vocab_size;
        let int8 = model.clone().freeze().with_int8_base();
        assert!(
            matches!(int8.embed_tokens.weight.val().dtype(), DType::QFloat(_)),
            "{name}: embeddings kept in int8"
        );
        let dequantized = int8.clone().map(&mut Dequantize);
        let got = logits(&int8, ids(vocab, &device));
        let want = logits(&dequantized, ids(vocab, &device));
        let unquantized = logits(&model, ids(vocab, &device));
        let worst = relative(&got, &want);
        assert!(
            worst <= 1e-5,
            "{name}: logits differ from the dequantized model's by {worst:e} (relative)"
        );
        let moved = relative(&got, &unquantized);
        assert!(
            moved > 0.0 && moved < 0.05,
            "{name}: int8 logits moved by {moved:e} from the f32 model's"
        );
    }

    // Decoding (one row per product) with and without the cache.
    let device = test_device();
    let model = load_hf(fixture(name), &device).unwrap();
    let int8 = model.with_int8_base();
    let dequantized = int8.clone().map(&mut Dequantize);
    let prompts = [vec![1u32, 7, 3, 9], vec![4u32, 2]];
    let opts = |use_cache| GenerateOptions {
        max_new_tokens: 12,
        use_cache,
        ..GenerateOptions::default()
    };
    let cached = generate(&int8, &prompts, &opts(true), None).unwrap();
    let full = generate(&int8, &prompts, &opts(false), None).unwrap();
    let want = generate(&dequantized, &prompts, &opts(true), None).unwrap();
    assert_eq!(cached, full, "{name}: with and without the KV cache");
    assert_eq!(cached, want, "{name}: against the dequantized f32 model");
}

#[test]
fn gpt2_in_int8_equals_its_dequantized_weights() {
    // Tied output layer, learned positions (kept f32), biases on every projection.
    check("gpt2");
}

#[test]
fn llama_in_int8_equals_its_dequantized_weights() {
    // Untied output layer, grouped-query attention.
    check("llama-gqa");
}

#[test]
fn qwen_in_int8_equals_its_dequantized_weights() {
    // QKV biases; Qwen3's per-head qk-norms.
    check("qwen2");
    check("qwen3");
}
