//! Numerical parity of BERT and T5 with Hugging Face `transformers` (fixtures made by
//! scripts/encoder_fixtures.py): same weights, same inputs, outputs within 1e-4; greedy
//! T5 decoding with and without the cache; clear errors for bad checkpoints and inputs.

use std::path::{Path, PathBuf};

use burn::prelude::*;
use manabi_model::{
    ModelConfig, ModelError, T5GreedyOptions, device::test_device, load_bert, load_bert_masked_lm,
    load_bert_sequence_classifier, load_bert_token_classifier, load_t5,
};
use serde::Deserialize;

mod t5;

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
