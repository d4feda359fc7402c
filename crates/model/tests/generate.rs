//! Generation on the tiny Hugging Face fixtures: the KV cache changes nothing, batching
//! with left padding changes nothing, seeds make runs reproducible.

use std::path::{Path, PathBuf};

use manabi_model::{GenerateOptions, device::test_device, generate, load_hf};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../fixtures/models")
        .join(name)
}

#[test]
fn cache_batching_and_seeds_do_not_change_tokens() {
    let device = test_device();
    for name in ["gpt2", "llama-gqa"] {
        let model = load_hf(fixture(name), &device).unwrap();
        let prompts = vec![vec![5, 9, 13, 2, 40], vec![7, 1], vec![33, 12, 60]];
        for temperature in [0.0, 0.8] {
            let base = GenerateOptions {
                max_new_tokens: 16,
                temperature,
                top_k: Some(20),
                top_p: Some(0.9),
                seed: 11,
                ..GenerateOptions::default()
            };
            let cached = generate(&model, &prompts, &base, None).unwrap();
            let uncached = generate(
                &model,
                &prompts,
                &GenerateOptions {
                    use_cache: false,
                    ..base.clone()
                },
                None,
            )
            .unwrap();
            assert_eq!(
                cached, uncached,
                "{name} T={temperature}: cache changes tokens"
            );
            assert!(cached.iter().all(|o| o.len() == 16));
            if temperature == 0.0 {
                // Greedy: each prompt alone gives what it gave in the padded batch.
                for (p, want) in prompts.iter().zip(&cached) {
                    let alone = generate(&model, std::slice::from_ref(p), &base, None).unwrap();
                    assert_eq!(&alone[0], want, "{name}: left padding changes tokens");
                }
            } else {
                let again = generate(&model, &prompts, &base, None).unwrap();
                assert_eq!(again, cached, "same seed, same tokens");
                let other = generate(
                    &model,
                    &prompts,
                    &GenerateOptions {
                        seed: 12,
                        ..base.clone()
                    },
                    None,
                )
                .unwrap();
                assert_ne!(other, cached, "another seed, other tokens");
            }
        }
    }
}

#[test]
fn eos_min_tokens_and_bad_requests() {
    let device = test_device();
    let model = load_hf(fixture("gpt2"), &device).unwrap();
    let prompts = vec![vec![5, 9, 13]];
    let sampled = GenerateOptions {
        max_new_tokens: 8,
        temperature: 1.0,
        seed: 5,
        ..GenerateOptions::default()
    };
    let greedy = generate(&model, &prompts, &sampled, None).unwrap();
    // Make the first greedy token not seen before position k the EOS: generation stops there.
    let g = &greedy[0];
    let k = (1..g.len())
        .find(|&i| !g[..i].contains(&g[i]))
        .expect("sampled output varies");
    let eos = g[k];
    let opts = GenerateOptions {
        eos_ids: vec![eos],
        ..sampled.clone()
    };
    let stopped = generate(&model, &prompts, &opts, None).unwrap();
    assert_eq!(stopped[0], g[..k]);
    let at_least = generate(
        &model,
        &prompts,
        &GenerateOptions {
            min_new_tokens: 4,
            ..opts.clone()
        },
        None,
    )
    .unwrap();
    assert!(at_least[0].len() >= 4 && !at_least[0][..4].contains(&eos));

    // RoPE models refuse to run past their positions; learned positions slide (below).
    let too_long = GenerateOptions {
        max_new_tokens: 40,
        ..GenerateOptions::default()
    };
    let llama = load_hf(fixture("llama-gqa"), &device).unwrap();
    let max = llama.config().max_positions;
    assert!(
        generate(&llama, &prompts, &too_long, None)
            .unwrap_err()
            .to_string()
            .contains(&format!("exceeds the model's {max} positions"))
    );
    let short = GenerateOptions {
        max_new_tokens: 4,
        ..GenerateOptions::default()
    };
    assert!(
        generate(&model, &[vec![99]], &short, None)
            .unwrap_err()
            .to_string()
            .contains("beyond the vocabulary")
    );
    assert!(
        generate(&model, &[vec![]], &short, None)
            .unwrap_err()
            .to_string()
            .contains("empty")
    );
    let bad = GenerateOptions {
        top_p: Some(1.5),
        ..short.clone()
    };
    assert!(
        generate(&model, &prompts, &bad, None)
            .unwrap_err()
            .to_string()
            .contains("top-p")
    );
}

#[test]
fn adapter_slots_and_prefix_caches() {
    use burn::module::Param;
    use burn::prelude::*;
    use manabi_model::adapter::Adapter;
    use manabi_model::{ForwardOptions, KvCache};
    let device = test_device();
    let mut model = load_hf(fixture("llama-gqa"), &device).unwrap();
    let ids = Tensor::<1, Int>::from_ints([3, 9, 27, 14, 5, 61, 2, 8].as_slice(), &device)
        .reshape([1, 8]);
    let base: Vec<f32> = model.forward(ids.clone()).into_data().try_to_vec().unwrap();

    // A fresh adapter (zero up-projection) changes nothing; a trained one does.
    let d = model.config().d_model;
    model.layers[0].mlp_adapter = Some(Adapter::new(d, 4, &device));
    let same: Vec<f32> = model.forward(ids.clone()).into_data().try_to_vec().unwrap();
    assert_eq!(same, base);
    let ad = model.layers[0].mlp_adapter.as_mut().unwrap();
    ad.up.weight = Param::from_tensor(Tensor::ones([4, d], &device) * 0.1);
    let changed: Vec<f32> = model.forward(ids.clone()).into_data().try_to_vec().unwrap();
    assert_ne!(changed, base);
    model.layers[0].mlp_adapter = None;

    // Keys/values of a prefix, handed over as a pre-filled cache, give the logits of the
    // full sequence for the rest (what prefix tuning builds on).
    let mut cache = KvCache::new(model.config().n_layers);
    model.forward_with(
        ids.clone().slice([0..1, 0..3]),
        &ForwardOptions::default(),
        Some(&mut cache),
    );
    let mut prefix = KvCache::from_layers(cache.layers());
    assert_eq!(prefix.len(), 3);
    let rest: Vec<f32> = model
        .forward_with(
            ids.slice([0..1, 3..8]),
            &ForwardOptions::default(),
            Some(&mut prefix),
        )
        .into_data()
        .try_to_vec()
        .unwrap();
    let v = model.config().vocab_size;
    let tail = &base[3 * v..];
    let diff = rest
        .iter()
        .zip(tail)
        .map(|(a, b)| (a - b).abs())
        .fold(0f32, f32::max);
    assert!(diff < 1e-4, "{diff}");
}

#[test]
fn learned_positions_slide_their_window_past_the_context_as_nanogpt_crops() {
    use burn::prelude::*;
    let device = test_device();
    let model = load_hf(fixture("gpt2"), &device).unwrap();
    let max = model.config().max_positions;
    let prompt = vec![5u32, 9, 13];
    let n = max + 8;
    let opts = GenerateOptions {
        max_new_tokens: n,
        ..GenerateOptions::default()
    };
    let got = generate(&model, std::slice::from_ref(&prompt), &opts, None).unwrap();
    assert_eq!(got[0].len(), n);
    let uncached = GenerateOptions {
        use_cache: false,
        ..opts.clone()
    };
    assert_eq!(
        generate(&model, std::slice::from_ref(&prompt), &uncached, None).unwrap(),
        got
    );
    // Every token is the argmax of a plain forward over the last `max` tokens.
    let mut seq = prompt.clone();
    for &tok in &got[0] {
        let window: Vec<i64> = seq[seq.len().saturating_sub(max)..]
            .iter()
            .map(|&x| i64::from(x))
            .collect();
        let t = window.len();
        let ids = Tensor::<1, Int>::from_ints(window.as_slice(), &device).reshape([1, t]);
        let v = model.config().vocab_size;
        let last: Vec<f32> = model
            .forward(ids)
            .slice([0..1, t - 1..t, 0..v])
            .into_data()
            .try_to_vec()
            .unwrap();
        let best = (0..v)
            .max_by(|&a, &b| last[a].total_cmp(&last[b]).then(b.cmp(&a)))
            .unwrap();
        assert_eq!(tok as usize, best, "at {} tokens", seq.len());
        seq.push(tok);
    }
}

#[test]
fn a_kept_cache_does_not_slide_past_learned_positions() {
    use manabi_model::generate::{SequenceCache, generate_cached};
    let device = test_device();
    let model = load_hf(fixture("gpt2"), &device).unwrap();
    let max = model.config().max_positions;
    let prompt: Vec<u32> = (0..max as u32).map(|i| i % 50).collect();
    let opts = GenerateOptions {
        max_new_tokens: 4,
        ..GenerateOptions::default()
    };
    let err = generate_cached(
        &model,
        &prompt,
        &opts,
        None,
        &mut SequenceCache::default(),
        |_| std::ops::ControlFlow::Continue(()),
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains(&format!("exceeds the model's {max} positions")),
        "{err}"
    );
}
