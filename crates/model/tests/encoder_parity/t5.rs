//! T5 against `transformers`: logits and loss (v1.0 tied ReLU, v1.1 untied gated GELU),
//! relative-position buckets, and greedy decoding with and without the cache.

use manabi_model::T5Cache;
use manabi_model::t5::relative_position_bucket;

use super::*;

#[derive(Deserialize)]
struct T5Expected {
    input_ids: Vec<Vec<i64>>,
    attention_mask: Vec<Vec<i64>>,
    labels: Vec<Vec<i64>>,
    decoder_input_ids: Vec<Vec<i64>>,
    logits_shape: Vec<usize>,
    logits: Vec<f32>,
    loss: f64,
    generated: Vec<Vec<u32>>,
    bucket_range: Option<[i64; 2]>,
    buckets_bidirectional: Option<Vec<usize>>,
    buckets_causal: Option<Vec<usize>>,
}

/// Mean cross-entropy over labels that are not -100, as transformers computes it.
fn t5_loss(logits: &[f32], labels: &[Vec<i64>], v: usize) -> f64 {
    let (mut total, mut count) = (0.0f64, 0usize);
    for (row, &label) in labels.iter().flatten().enumerate() {
        if label < 0 {
            continue;
        }
        let l = &logits[row * v..(row + 1) * v];
        let max = l.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
        let lse = max + l.iter().map(|&x| (x as f64 - max).exp()).sum::<f64>().ln();
        total += lse - l[label as usize] as f64;
        count += 1;
    }
    total / count as f64
}

fn check_t5(name: &str) {
    let device = test_device();
    let exp: T5Expected = read(name);
    let model = load_t5(fixture(name), &device).unwrap();
    let decoder_ids = model.shift_right(ints(&exp.labels, &device));
    let got_ids: Vec<i64> = decoder_ids
        .clone()
        .into_data()
        .convert::<i64>()
        .try_into_vec()
        .unwrap();
    let want_ids: Vec<i64> = exp.decoder_input_ids.iter().flatten().copied().collect();
    assert_eq!(got_ids, want_ids, "{name}: shifted labels");
    let logits = model
        .forward(
            ints(&exp.input_ids, &device),
            Some(floats(&exp.attention_mask, &device)),
            decoder_ids,
        )
        .unwrap();
    assert_eq!(logits.dims().to_vec(), exp.logits_shape);
    let got = values(logits);
    assert_close(&format!("{name} logits"), &got, &exp.logits);
    let loss = t5_loss(&got, &exp.labels, exp.logits_shape[2]);
    assert!(
        (loss - exp.loss).abs() / exp.loss <= 1e-5,
        "{name}: loss {loss} vs {}",
        exp.loss
    );
}

#[test]
fn t5_v1_0_tied_relu_matches_transformers() {
    check_t5("t5-v1_0");
    let cfg = load_t5(fixture("t5-v1_0"), &test_device()).unwrap();
    assert!(cfg.lm_head.is_none() && cfg.config().scales_decoder_output());
}

#[test]
fn t5_v1_1_untied_gated_gelu_matches_transformers() {
    check_t5("t5-v1_1");
    let cfg = load_t5(fixture("t5-v1_1"), &test_device()).unwrap();
    assert!(cfg.lm_head.is_some() && !cfg.config().scales_decoder_output());
}

#[test]
fn t5_relative_position_buckets_match_transformers() {
    let exp: T5Expected = read("t5-v1_0");
    let [lo, hi] = exp.bucket_range.unwrap();
    for (bidirectional, want) in [
        (true, exp.buckets_bidirectional.unwrap()),
        (false, exp.buckets_causal.unwrap()),
    ] {
        let got: Vec<usize> = (lo..=hi)
            .map(|r| relative_position_bucket(r, bidirectional, 32, 128))
            .collect();
        assert_eq!(got, want, "bidirectional = {bidirectional}");
    }
}

#[test]
fn t5_greedy_matches_transformers_with_and_without_cache() {
    let device = test_device();
    for name in ["t5-v1_0", "t5-v1_1"] {
        let exp: T5Expected = read(name);
        let model = load_t5(fixture(name), &device).unwrap();
        let sources: Vec<Vec<u32>> = exp
            .input_ids
            .iter()
            .zip(&exp.attention_mask)
            .map(|(ids, mask)| {
                ids.iter()
                    .zip(mask)
                    .filter(|&(_, &m)| m == 1)
                    .map(|(&x, _)| x as u32)
                    .collect()
            })
            .collect();
        // transformers returns the start token, then tokens up to and with EOS, then pads.
        let eos = model.config().eos_token_id.unwrap() as u32;
        let want: Vec<Vec<u32>> = exp
            .generated
            .iter()
            .map(|g| g[1..].iter().take_while(|&&x| x != eos).copied().collect())
            .collect();
        let max_new_tokens = exp.generated[0].len() - 1;
        for use_cache in [true, false] {
            let opts = T5GreedyOptions {
                max_new_tokens,
                use_cache,
                eos_ids: None,
            };
            let got = model.greedy(&sources, &opts).unwrap();
            assert_eq!(got, want, "{name}, use_cache = {use_cache}");
        }
    }
}

#[test]
fn t5_cached_decoding_gives_the_full_pass_logits() {
    let device = test_device();
    for name in ["t5-v1_0", "t5-v1_1"] {
        let exp: T5Expected = read(name);
        let model = load_t5(fixture(name), &device).unwrap();
        let mask = floats(&exp.attention_mask, &device);
        let hidden = model
            .encode(ints(&exp.input_ids, &device), Some(mask.clone()))
            .unwrap();
        let dec = ints(&exp.decoder_input_ids, &device);
        let [b, t] = dec.dims();
        let full = values(
            model
                .decode(dec.clone(), &hidden, Some(&mask), None)
                .unwrap(),
        );
        // A 2-token prefix, then one token at a time.
        let mut cache = T5Cache::new(model.config().decoder_layers());
        let mut steps = vec![
            model
                .decode(
                    dec.clone().slice([0..b, 0..2]),
                    &hidden,
                    Some(&mask),
                    Some(&mut cache),
                )
                .unwrap(),
        ];
        for i in 2..t {
            steps.push(
                model
                    .decode(
                        dec.clone().slice([0..b, i..i + 1]),
                        &hidden,
                        Some(&mask),
                        Some(&mut cache),
                    )
                    .unwrap(),
            );
        }
        assert_eq!(cache.len(), t);
        assert_close(
            &format!("{name} cached"),
            &values(Tensor::cat(steps, 1)),
            &full,
        );
    }
}
