//! Numerical parity of BERT and T5 with Hugging Face `transformers` (fixtures made by
//! scripts/encoder_fixtures.py): same weights, same inputs, outputs within 1e-4; greedy
//! T5 decoding with and without the cache; clear errors for bad checkpoints and inputs.

use std::path::{Path, PathBuf};

use burn::prelude::*;
use manabi_model::t5::relative_position_bucket;
use manabi_model::{
    ModelConfig, ModelError, T5Cache, T5GreedyOptions, device::test_device, load_bert,
    load_bert_masked_lm, load_bert_sequence_classifier, load_bert_token_classifier, load_t5,
};
use serde::Deserialize;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../fixtures/models")
        .join(name)
}

fn read<T: for<'de> Deserialize<'de>>(name: &str) -> T {
    serde_json::from_str(&std::fs::read_to_string(fixture(name).join("expected.json")).unwrap())
        .unwrap()
}

fn ints(rows: &[Vec<i64>], device: &Device) -> Tensor<2, Int> {
    let (b, t) = (rows.len(), rows[0].len());
    let flat: Vec<i64> = rows.iter().flatten().copied().collect();
    Tensor::<1, Int>::from_ints(flat.as_slice(), device).reshape([b, t])
}

fn floats(rows: &[Vec<i64>], device: &Device) -> Tensor<2> {
    let (b, t) = (rows.len(), rows[0].len());
    let flat: Vec<f32> = rows.iter().flatten().map(|&x| x as f32).collect();
    Tensor::<1>::from_floats(flat.as_slice(), device).reshape([b, t])
}

fn values<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    t.into_data().convert::<f32>().try_into_vec().unwrap()
}

fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

fn assert_close(what: &str, got: &[f32], want: &[f32]) {
    let diff = max_abs_diff(got, want);
    assert!(diff <= 1e-4, "{what}: max |Δ| = {diff}");
}

#[derive(Deserialize)]
struct BertExpected {
    input_ids: Vec<Vec<i64>>,
    attention_mask: Vec<Vec<i64>>,
    token_type_ids: Vec<Vec<i64>>,
    logits_shape: Vec<usize>,
    logits: Vec<f32>,
    hidden: Vec<f32>,
    pooled: Option<Vec<f32>>,
}

struct BertInputs {
    ids: Tensor<2, Int>,
    mask: Tensor<2>,
    types: Tensor<2, Int>,
}

fn bert_inputs(exp: &BertExpected, device: &Device) -> BertInputs {
    BertInputs {
        ids: ints(&exp.input_ids, device),
        mask: floats(&exp.attention_mask, device),
        types: ints(&exp.token_type_ids, device),
    }
}

/// The encoder of every BERT fixture: hidden states (padding rows included: with a key
/// mask they are well defined) and, where there is one, the pooled state.
fn check_bert_encoder(name: &str) {
    let device = test_device();
    let exp: BertExpected = read(name);
    let x = bert_inputs(&exp, &device);
    let bert = load_bert(fixture(name), &device).unwrap();
    let out = bert.forward(x.ids, Some(x.mask), Some(x.types)).unwrap();
    assert_close(&format!("{name} hidden"), &values(out.hidden), &exp.hidden);
    assert_eq!(out.pooled.is_some(), exp.pooled.is_some(), "{name} pooler");
    if let (Some(got), Some(want)) = (out.pooled, &exp.pooled) {
        assert_close(&format!("{name} pooled"), &values(got), want);
    }
}

#[test]
fn bert_masked_lm_with_padding_matches_transformers() {
    let device = test_device();
    let exp: BertExpected = read("bert");
    let x = bert_inputs(&exp, &device);
    let model = load_bert_masked_lm(fixture("bert"), &device).unwrap();
    let logits = model.forward(x.ids, Some(x.mask), Some(x.types)).unwrap();
    assert_eq!(logits.dims().to_vec(), exp.logits_shape);
    assert_close("bert logits", &values(logits), &exp.logits);
    check_bert_encoder("bert");
}

#[test]
fn bert_sequence_classifier_matches_transformers() {
    let device = test_device();
    let exp: BertExpected = read("bert-cls");
    let x = bert_inputs(&exp, &device);
    let model = load_bert_sequence_classifier(fixture("bert-cls"), &device).unwrap();
    let logits = model.forward(x.ids, Some(x.mask), Some(x.types)).unwrap();
    assert_eq!(logits.dims().to_vec(), exp.logits_shape);
    assert_close("bert-cls logits", &values(logits), &exp.logits);
    check_bert_encoder("bert-cls");
}

#[test]
fn bert_token_classifier_with_tanh_gelu_matches_transformers() {
    let device = test_device();
    let exp: BertExpected = read("bert-token");
    let x = bert_inputs(&exp, &device);
    let model = load_bert_token_classifier(fixture("bert-token"), &device).unwrap();
    let logits = model.forward(x.ids, Some(x.mask), Some(x.types)).unwrap();
    assert_eq!(logits.dims().to_vec(), exp.logits_shape);
    assert_close("bert-token logits", &values(logits), &exp.logits);
    check_bert_encoder("bert-token");
}

#[test]
fn bert_padding_does_not_change_the_real_tokens() {
    // Row 2 of the fixture alone, without its padding, gives the same states.
    let device = test_device();
    let exp: BertExpected = read("bert");
    let model = load_bert_masked_lm(fixture("bert"), &device).unwrap();
    let n = exp.attention_mask[1].iter().filter(|&&m| m == 1).count();
    let ids = ints(&[exp.input_ids[1][..n].to_vec()], &device);
    let types = ints(&[exp.token_type_ids[1][..n].to_vec()], &device);
    let got = values(model.forward(ids, None, Some(types)).unwrap());
    let [_, t, v] = [2, exp.input_ids[0].len(), exp.logits_shape[2]];
    let want = &exp.logits[t * v..t * v + n * v];
    assert_close("unpadded row", &got, want);
}

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

#[test]
fn configs_round_trip_and_count_parameters() {
    use burn::module::Module;
    let device = test_device();
    for name in ["bert", "bert-cls", "bert-token", "t5-v1_0", "t5-v1_1"] {
        let text = std::fs::read_to_string(fixture(name).join("config.json")).unwrap();
        let cfg = ModelConfig::from_hf_json(&text).unwrap();
        let back = ModelConfig::from_hf_json(&cfg.to_hf_json().to_string()).unwrap();
        assert_eq!(back, cfg, "{name}");
        let toml = toml::to_string(&cfg).unwrap();
        assert_eq!(toml::from_str::<ModelConfig>(&toml).unwrap(), cfg, "{name}");
    }
    let bert = manabi_model::BertModel::new(&read_cfg("bert"), false, &device);
    assert_eq!(bert.num_params(), bert.config().n_params());
    for name in ["t5-v1_0", "t5-v1_1"] {
        let t5 = load_t5(fixture(name), &device).unwrap();
        assert_eq!(t5.num_params(), t5.config().n_params(), "{name}");
    }
}

fn read_cfg(name: &str) -> ModelConfig {
    ModelConfig::from_hf_json(&std::fs::read_to_string(fixture(name).join("config.json")).unwrap())
        .unwrap()
}

/// A copy of a fixture with `edit` applied to its config and `rename` choosing tensors
/// (`None` drops one).
fn variant(
    root: &Path,
    name: &str,
    tag: &str,
    edit: impl Fn(String) -> String,
    rename: impl Fn(&str) -> Option<String>,
) -> PathBuf {
    let dir = root.join(format!("{name}-{tag}"));
    std::fs::create_dir_all(&dir).unwrap();
    let cfg = std::fs::read_to_string(fixture(name).join("config.json")).unwrap();
    std::fs::write(dir.join("config.json"), edit(cfg)).unwrap();
    let bytes = std::fs::read(fixture(name).join("model.safetensors")).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let kept: Vec<(String, safetensors::tensor::TensorView<'_>)> = st
        .tensors()
        .into_iter()
        .filter_map(|(n, t)| rename(&n).map(|n| (n, t)))
        .collect();
    std::fs::write(
        dir.join("model.safetensors"),
        safetensors::serialize(kept, None).unwrap(),
    )
    .unwrap();
    dir
}

#[test]
fn bad_checkpoints_name_the_tensors() {
    let device = test_device();
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let same = |s: String| s;
    let all = |n: &str| Some(n.to_string());

    // A config that disagrees with the weights: the error names the tensor and both shapes.
    let d = variant(
        root,
        "bert",
        "width",
        |s| s.replace("\"intermediate_size\": 48", "\"intermediate_size\": 40"),
        all,
    );
    let err = load_bert_masked_lm(&d, &device).unwrap_err();
    assert!(matches!(err, ModelError::Shape { .. }), "{err}");
    let err = err.to_string();
    assert!(
        err.contains(
            "`bert.encoder.layer.0.intermediate.dense.weight` has shape [48, 32], expected [40, 32]"
        ),
        "{err}"
    );
    let d = variant(
        root,
        "t5-v1_0",
        "width",
        |s| s.replace("\"d_ff\": 48", "\"d_ff\": 40"),
        all,
    );
    let err = load_t5(&d, &device).unwrap_err().to_string();
    assert!(
        err.contains("`encoder.block.0.layer.1.DenseReluDense.wi.weight` has shape [48, 32], expected [40, 32]"),
        "{err}"
    );

    // Missing tensors are listed by name.
    let d = variant(root, "bert", "holes", same, |n| {
        (!n.contains("layer.1.attention.self")).then(|| n.to_string())
    });
    let err = load_bert_masked_lm(&d, &device).unwrap_err().to_string();
    assert!(
        err.contains("missing tensors: bert.encoder.layer.1.attention.self.query.weight"),
        "{err}"
    );
    let d = variant(root, "t5-v1_1", "no-head", same, |n| {
        (n != "lm_head.weight").then(|| n.to_string())
    });
    let err = load_t5(&d, &device).unwrap_err().to_string();
    assert!(err.contains("missing tensors: lm_head.weight"), "{err}");
    let d = variant(
        root,
        "t5-v1_0",
        "deeper",
        |s| s.replace("\"num_decoder_layers\": 3", "\"num_decoder_layers\": 4"),
        all,
    );
    let err = load_t5(&d, &device).unwrap_err().to_string();
    assert!(err.contains("missing tensors: decoder.block.3."), "{err}");
    let d = variant(
        root,
        "t5-v1_0",
        "shallower",
        |s| s.replace("\"num_decoder_layers\": 3", "\"num_decoder_layers\": 2"),
        all,
    );
    let err = load_t5(&d, &device).unwrap_err().to_string();
    assert!(
        err.contains("unexpected tensors: decoder.block.2."),
        "{err}"
    );

    // The wrong head: the masked-LM tensors are missing and the classifier is unused.
    let err = load_bert_masked_lm(fixture("bert-cls"), &device)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("missing tensors: cls.predictions.transform.dense.weight"),
        "{err}"
    );
    assert!(err.contains("unexpected tensors: classifier.bias"), "{err}");

    // The wrong family, and bad config values, name the key.
    let err = load_t5(fixture("bert"), &device).unwrap_err().to_string();
    assert!(
        err.contains("model_type") && err.contains("expected `t5`"),
        "{err}"
    );
    let err = manabi_model::load_hf(fixture("t5-v1_0"), &device)
        .unwrap_err()
        .to_string();
    assert!(err.contains("not a decoder-only"), "{err}");
    let d = variant(
        root,
        "t5-v1_0",
        "proj",
        |s| {
            s.replace(
                "\"feed_forward_proj\": \"relu\"",
                "\"feed_forward_proj\": \"gated-swish\"",
            )
        },
        all,
    );
    let err = load_t5(&d, &device).unwrap_err().to_string();
    assert!(
        err.contains("config.json: feed_forward_proj`") && err.contains("gated-swish"),
        "{err}"
    );
    let d = variant(
        root,
        "t5-v1_0",
        "buckets",
        |s| {
            s.replace(
                "\"relative_attention_num_buckets\": 32",
                "\"relative_attention_num_buckets\": 2",
            )
        },
        all,
    );
    let err = load_t5(&d, &device).unwrap_err().to_string();
    assert!(
        err.contains("config.json: relative_attention_num_buckets`"),
        "{err}"
    );
    let d = variant(
        root,
        "bert",
        "pos",
        |s| {
            s.replace(
                "\"model_type\": \"bert\"",
                "\"model_type\": \"bert\", \"position_embedding_type\": \"relative_key\"",
            )
        },
        all,
    );
    let err = load_bert(&d, &device).unwrap_err().to_string();
    assert!(
        err.contains("config.json: position_embedding_type`"),
        "{err}"
    );
}

#[test]
fn bad_inputs_are_errors() {
    let device = test_device();
    let bert = load_bert_masked_lm(fixture("bert"), &device).unwrap();
    let t5 = load_t5(fixture("t5-v1_0"), &device).unwrap();
    let ids = ints(&[vec![2, 5, 7]], &device);

    let err = bert
        .forward(ints(&[vec![2, 80]], &device), None, None)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("input ids contains 80, outside 0..80"),
        "{err}"
    );
    let long = ints(&[vec![1; 25]], &device);
    let err = bert.forward(long, None, None).unwrap_err().to_string();
    assert!(
        err.contains("25 tokens exceed the model's 24 positions"),
        "{err}"
    );
    let err = bert
        .forward(ids.clone(), Some(floats(&[vec![1, 1]], &device)), None)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("attention mask has shape [1, 2], expected [1, 3]"),
        "{err}"
    );
    let err = bert
        .forward(ids.clone(), None, Some(ints(&[vec![0, 2, 1]], &device)))
        .unwrap_err()
        .to_string();
    assert!(err.contains("token type ids contains 2"), "{err}");

    let err = t5
        .forward(ids.clone(), None, ints(&[vec![0, -1]], &device))
        .unwrap_err()
        .to_string();
    assert!(err.contains("decoder input ids contains -1"), "{err}");
    let hidden = t5.encode(ids.clone(), None).unwrap();
    let err = t5
        .decode(ints(&[vec![0], vec![0]], &device), &hidden, None, None)
        .unwrap_err()
        .to_string();
    assert!(err.contains("encoder output has shape [1, 3, 32]"), "{err}");
    let err = t5
        .greedy(&[vec![3], vec![]], &T5GreedyOptions::default())
        .unwrap_err()
        .to_string();
    assert!(err.contains("source 1 is empty"), "{err}");
}

#[test]
fn bert_model_checkpoints_without_prefix_load() {
    // `BertModel.save_pretrained` names tensors without `bert.` and has no head.
    let device = test_device();
    let tmp = tempfile::tempdir().unwrap();
    let d = variant(
        tmp.path(),
        "bert-cls",
        "base",
        |s| s,
        |n| n.strip_prefix("bert.").map(String::from),
    );
    let exp: BertExpected = read("bert-cls");
    let x = bert_inputs(&exp, &device);
    let bert = load_bert(&d, &device).unwrap();
    let out = bert.forward(x.ids, Some(x.mask), Some(x.types)).unwrap();
    assert_close("base hidden", &values(out.hidden), &exp.hidden);
    assert_close(
        "base pooled",
        &values(out.pooled.unwrap()),
        exp.pooled.as_ref().unwrap(),
    );
    let err = load_bert_sequence_classifier(&d, &device)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("missing tensors: classifier.weight, classifier.bias"),
        "{err}"
    );
}
