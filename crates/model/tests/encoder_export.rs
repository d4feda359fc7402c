//! Hugging Face export of BERT and T5: every encoder fixture (saved by `transformers`
//! 5.23, see scripts/encoder_fixtures.py) is loaded, exported with `export_bert_hf` /
//! `export_t5_hf`, and the export must hold the fixture's tensors (names, shapes and
//! bytes) and load back to identical logits.
//!
//! Set `MANABI_KEEP_EXPORTS=DIR` to keep the exports in `DIR/<name>`; then
//! `python3 scripts/check_hf_export.py DIR/<name> <fixture>` checks that transformers
//! loads them and computes the fixture's outputs.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use burn::module::Param;
use burn::nn::LinearConfig;
use burn::prelude::*;
use manabi_model::{
    BertForMaskedLm, BertModel, ModelConfig, ModelError, T5, device::test_device, export_bert_hf,
    export_t5_hf, load_bert, load_bert_masked_lm, load_bert_sequence_classifier,
    load_bert_token_classifier, load_t5,
};
use serde::Deserialize;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../fixtures/models")
        .join(name)
}

/// Where the export called `name` goes: a temporary folder, or `$MANABI_KEEP_EXPORTS`.
struct Out {
    _tmp: Option<tempfile::TempDir>,
    root: PathBuf,
}

impl Out {
    fn new() -> Self {
        match std::env::var_os("MANABI_KEEP_EXPORTS") {
            Some(dir) => Self {
                _tmp: None,
                root: PathBuf::from(dir),
            },
            None => {
                let tmp = tempfile::tempdir().unwrap();
                let root = tmp.path().to_path_buf();
                Self {
                    _tmp: Some(tmp),
                    root,
                }
            }
        }
    }

    fn dir(&self, name: &str) -> PathBuf {
        self.root.join(name)
    }
}

/// Tensors of a safetensors file by name: (dtype, shape, bytes).
type Tensors = BTreeMap<String, (String, Vec<usize>, Vec<u8>)>;

fn tensors(dir: &Path) -> Tensors {
    let bytes = std::fs::read(dir.join("model.safetensors")).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    st.tensors()
        .into_iter()
        .map(|(n, t)| {
            let v = (
                format!("{:?}", t.dtype()),
                t.shape().to_vec(),
                t.data().to_vec(),
            );
            (n, v)
        })
        .collect()
}

/// What transformers may store that an export leaves out, each because transformers
/// does not need it to load the model:
/// - `embeddings.position_ids`: a non-persistent buffer (`0..max_positions`) that
///   checkpoints of transformers < 4.31 saved;
/// - `cls.predictions.decoder.weight` / `.bias` of a tied masked-LM head: the word
///   embeddings and `cls.predictions.bias` again;
/// - T5's `encoder.embed_tokens.weight` / `decoder.embed_tokens.weight`: `shared.weight`
///   again; and `lm_head.weight` of a tied T5, equal to `shared.weight`;
/// - `decoder.block.0.layer.1.EncDecAttention.relative_attention_bias.weight`, a table
///   transformers itself ignores on load.
///
/// The fixtures, saved by transformers 5.23, hold none of these: for them the export
/// has exactly the fixture's names.
fn redundant(name: &str, tied: bool) -> bool {
    name.ends_with("embeddings.position_ids")
        || name.ends_with("embed_tokens.weight")
        || name == "decoder.block.0.layer.1.EncDecAttention.relative_attention_bias.weight"
        || (tied && (name.starts_with("cls.predictions.decoder.") || name == "lm_head.weight"))
}

/// The export holds the fixture's tensors, names, dtypes, shapes and bytes, once the
/// fixture's names are mapped by `rename` (`None` drops one) and redundant ones dropped.
fn assert_same_tensors(
    what: &str,
    ours: &Path,
    theirs: &Path,
    tied: bool,
    rename: impl Fn(&str) -> Option<String>,
) {
    let ours = tensors(ours);
    let theirs: Tensors = tensors(theirs)
        .into_iter()
        .filter(|(n, _)| !redundant(n, tied))
        .filter_map(|(n, t)| rename(&n).map(|n| (n, t)))
        .collect();
    assert_eq!(
        ours.keys().collect::<Vec<_>>(),
        theirs.keys().collect::<Vec<_>>(),
        "{what}: tensor names"
    );
    for (name, (dtype, shape, bytes)) in &ours {
        let (dt, sh, by) = &theirs[name];
        assert_eq!((dtype, shape), (dt, sh), "{what}: {name}");
        assert!(bytes == by, "{what}: {name} bytes differ");
    }
}

fn config_json(dir: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(dir.join("config.json")).unwrap()).unwrap()
}

fn config(dir: &Path) -> ModelConfig {
    ModelConfig::from_hf_json(&std::fs::read_to_string(dir.join("config.json")).unwrap()).unwrap()
}

fn values<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    t.into_data().convert::<f32>().try_into_vec().unwrap()
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

#[derive(Deserialize)]
struct BertInputs {
    input_ids: Vec<Vec<i64>>,
    attention_mask: Vec<Vec<i64>>,
    token_type_ids: Vec<Vec<i64>>,
}

#[derive(Deserialize)]
struct T5Inputs {
    input_ids: Vec<Vec<i64>>,
    attention_mask: Vec<Vec<i64>>,
    decoder_input_ids: Vec<Vec<i64>>,
}

fn inputs<T: for<'de> Deserialize<'de>>(name: &str) -> T {
    serde_json::from_str(&std::fs::read_to_string(fixture(name).join("expected.json")).unwrap())
        .unwrap()
}

/// The fixture's BERT inputs as (ids, mask, token types).
fn bert_inputs(name: &str, device: &Device) -> (Tensor<2, Int>, Tensor<2>, Tensor<2, Int>) {
    let x: BertInputs = inputs(name);
    (
        ints(&x.input_ids, device),
        floats(&x.attention_mask, device),
        ints(&x.token_type_ids, device),
    )
}

/// Hidden states followed by the pooled states of an encoder.
fn encode(bert: &BertModel, name: &str, device: &Device) -> Vec<f32> {
    let (ids, mask, types) = bert_inputs(name, device);
    let out = bert.forward(ids, Some(mask), Some(types)).unwrap();
    let mut v = values(out.hidden);
    v.extend(out.pooled.map(values).unwrap_or_default());
    v
}

fn mlm_logits(m: &BertForMaskedLm, name: &str, device: &Device) -> Vec<f32> {
    let (ids, mask, types) = bert_inputs(name, device);
    values(m.forward(ids, Some(mask), Some(types)).unwrap())
}

fn t5_logits(m: &T5, name: &str, device: &Device) -> Vec<f32> {
    let x: T5Inputs = inputs(name);
    let logits = m
        .forward(
            ints(&x.input_ids, device),
            Some(floats(&x.attention_mask, device)),
            ints(&x.decoder_input_ids, device),
        )
        .unwrap();
    values(logits)
}

fn same_name(n: &str) -> Option<String> {
    Some(n.to_string())
}

#[test]
fn bert_heads_export_the_fixture_tensors_and_reload_identically() {
    let device = test_device();
    let out = Out::new();

    let name = "bert";
    let model = load_bert_masked_lm(fixture(name), &device).unwrap();
    let dir = out.dir(name);
    export_bert_hf(&model, &dir, None).unwrap();
    assert_same_tensors(name, &dir, &fixture(name), true, same_name);
    let again = load_bert_masked_lm(&dir, &device).unwrap();
    assert_eq!(
        mlm_logits(&again, name, &device),
        mlm_logits(&model, name, &device),
        "{name}: reloaded logits"
    );
    assert_eq!(
        config_json(&dir)["architectures"],
        config_json(&fixture(name))["architectures"]
    );
    assert_eq!(config(&dir), config(&fixture(name)), "{name}: config");

    let name = "bert-cls";
    let model = load_bert_sequence_classifier(fixture(name), &device).unwrap();
    let dir = out.dir(name);
    export_bert_hf(&model, &dir, None).unwrap();
    assert_same_tensors(name, &dir, &fixture(name), true, same_name);
    let again = load_bert_sequence_classifier(&dir, &device).unwrap();
    let logits = |m: &manabi_model::BertForSequenceClassification| {
        let (ids, mask, types) = bert_inputs(name, &device);
        values(m.forward(ids, Some(mask), Some(types)).unwrap())
    };
    assert_eq!(logits(&again), logits(&model), "{name}: reloaded logits");

    let name = "bert-token";
    let model = load_bert_token_classifier(fixture(name), &device).unwrap();
    let dir = out.dir(name);
    export_bert_hf(&model, &dir, None).unwrap();
    assert_same_tensors(name, &dir, &fixture(name), true, same_name);
    let again = load_bert_token_classifier(&dir, &device).unwrap();
    let logits = |m: &manabi_model::BertForTokenClassification| {
        let (ids, mask, types) = bert_inputs(name, &device);
        values(m.forward(ids, Some(mask), Some(types)).unwrap())
    };
    assert_eq!(logits(&again), logits(&model), "{name}: reloaded logits");

    // The classifiers' configs: the head's class, labels, and the same ModelConfig back.
    for name in ["bert-cls", "bert-token"] {
        let (ours, theirs) = (config_json(&out.dir(name)), config_json(&fixture(name)));
        for key in [
            "architectures",
            "id2label",
            "label2id",
            "hidden_act",
            "model_type",
        ] {
            assert_eq!(ours[key], theirs[key], "{name}: {key}");
        }
        assert_eq!(config(&out.dir(name)), config(&fixture(name)), "{name}");
    }
    // Every export names the tensor type and the special ids as transformers writes them
    // (`null` BOS / EOS, BERT's pad 0).
    for name in ["bert", "bert-cls", "bert-token"] {
        let (ours, theirs) = (config_json(&out.dir(name)), config_json(&fixture(name)));
        for key in ["bos_token_id", "eos_token_id", "pad_token_id", "dtype"] {
            assert_eq!(ours.get(key), theirs.get(key), "{name}: {key}");
            assert!(ours.get(key).is_some(), "{name}: {key}");
        }
        assert_eq!(ours["pad_token_id"], 0, "{name}");
        assert_eq!(ours["dtype"], "float32", "{name}");
        assert_eq!(ours["torch_dtype"], "float32", "{name}");
    }
}

#[test]
fn bert_model_exports_without_prefix_or_head() {
    // `BertModel.save_pretrained` writes no `bert.` prefix and no head; the pooler is
    // there when the model has one (the classifier's encoder), absent otherwise.
    let device = test_device();
    let out = Out::new();
    for (name, export) in [("bert", "bert-base-nopool"), ("bert-cls", "bert-base")] {
        let model = load_bert(fixture(name), &device).unwrap();
        let dir = out.dir(export);
        export_bert_hf(&model, &dir, None).unwrap();
        assert_same_tensors(export, &dir, &fixture(name), true, |n| {
            n.strip_prefix("bert.").map(String::from)
        });
        assert_eq!(
            config_json(&dir)["architectures"],
            serde_json::json!(["BertModel"])
        );
        let again = load_bert(&dir, &device).unwrap();
        assert_eq!(again.pooler.is_some(), name == "bert-cls", "{export}");
        assert_eq!(
            encode(&again, name, &device),
            encode(&model, name, &device),
            "{export}: reloaded states"
        );
    }
}

#[test]
fn t5_exports_the_fixture_tensors_and_reloads_identically() {
    let device = test_device();
    let out = Out::new();
    for (name, tied) in [("t5-v1_0", true), ("t5-v1_1", false)] {
        let model = load_t5(fixture(name), &device).unwrap();
        let dir = out.dir(name);
        export_t5_hf(&model, &dir, None).unwrap();
        assert_same_tensors(name, &dir, &fixture(name), tied, same_name);
        let again = load_t5(&dir, &device).unwrap();
        assert_eq!(again.lm_head.is_none(), tied, "{name}");
        assert_eq!(
            t5_logits(&again, name, &device),
            t5_logits(&model, name, &device),
            "{name}: reloaded logits"
        );
        // Both flags written out: v1.0 tied and scaled, v1.1 untied and not scaled.
        let json = config_json(&dir);
        assert_eq!(json["tie_word_embeddings"], tied, "{name}");
        assert_eq!(json["scale_decoder_outputs"], tied, "{name}");
        assert_eq!(
            json["architectures"],
            serde_json::json!(["T5ForConditionalGeneration"])
        );
        for key in [
            "feed_forward_proj",
            "decoder_start_token_id",
            "d_kv",
            "eos_token_id",
            "pad_token_id",
        ] {
            assert_eq!(json[key], config_json(&fixture(name))[key], "{name}: {key}");
        }
        // The special ids and the tensor type, written out (T5 has no BOS).
        for (key, want) in [
            ("decoder_start_token_id", serde_json::json!(0)),
            ("eos_token_id", serde_json::json!(1)),
            ("pad_token_id", serde_json::json!(0)),
            ("bos_token_id", serde_json::Value::Null),
            ("dtype", serde_json::json!("float32")),
            ("torch_dtype", serde_json::json!("float32")),
        ] {
            assert_eq!(json.get(key), Some(&want), "{name}: {key}");
        }
        assert_eq!(config(&dir), config(&fixture(name)), "{name}: config");
    }
}

#[test]
fn untied_heads_export_their_own_weights() {
    let device = test_device();
    let out = Out::new();

    // A masked-LM head untied from the embeddings (a copy of them, so logits stay the
    // fixture's): the decoder and its bias are written, and the config says untied.
    let mut model = load_bert_masked_lm(fixture("bert"), &device).unwrap();
    let word = model.bert.embeddings.word.weight.val(); // [vocab, d]
    let [v, d] = word.dims();
    let mut dec = LinearConfig::new(d, v).with_bias(false).init(&device);
    dec.weight = Param::from_tensor(word.transpose());
    model.head.decoder = Some(dec);
    let dir = out.dir("bert-untied");
    export_bert_hf(&model, &dir, None).unwrap();
    let ts = tensors(&dir);
    assert_eq!(
        ts["cls.predictions.decoder.bias"].2,
        ts["cls.predictions.bias"].2
    );
    assert_eq!(
        ts["cls.predictions.decoder.weight"].2,
        ts["bert.embeddings.word_embeddings.weight"].2
    );
    assert_eq!(config_json(&dir)["tie_word_embeddings"], false);
    let again = load_bert_masked_lm(&dir, &device).unwrap();
    assert!(again.head.decoder.is_some());
    assert_eq!(
        mlm_logits(&again, "bert", &device),
        mlm_logits(&model, "bert", &device)
    );

    // T5 v1.0 (scaled) with an untied head: `tie_word_embeddings: false` and
    // `scale_decoder_outputs: true`, which both readers take as they are.
    let mut model = load_t5(fixture("t5-v1_0"), &device).unwrap();
    let shared = model.shared.weight.val();
    let [v, d] = shared.dims();
    let mut head = LinearConfig::new(d, v).with_bias(false).init(&device);
    head.weight = Param::from_tensor(shared.transpose());
    model.lm_head = Some(head);
    let dir = out.dir("t5-v1_0-untied");
    export_t5_hf(&model, &dir, None).unwrap();
    let json = config_json(&dir);
    assert_eq!(
        (&json["tie_word_embeddings"], &json["scale_decoder_outputs"]),
        (&serde_json::json!(false), &serde_json::json!(true))
    );
    assert!(tensors(&dir).contains_key("lm_head.weight"));
    let again = load_t5(&dir, &device).unwrap();
    assert!(again.lm_head.is_some() && again.config().scales_decoder_output());
    assert_eq!(
        t5_logits(&again, "t5-v1_0", &device),
        t5_logits(&model, "t5-v1_0", &device)
    );
}

/// A copy of a fixture's weights with `extra` tensors added under new names.
fn with_extra(root: &Path, name: &str, extra: &[(&str, &str)]) -> PathBuf {
    let dir = root.join(format!("{name}-old"));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::copy(fixture(name).join("config.json"), dir.join("config.json")).unwrap();
    let bytes = std::fs::read(fixture(name).join("model.safetensors")).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let mut all: Vec<(String, safetensors::tensor::TensorView<'_>)> = st.tensors();
    for (new, from) in extra {
        all.push((new.to_string(), st.tensor(from).unwrap()));
    }
    std::fs::write(
        dir.join("model.safetensors"),
        safetensors::serialize(all, None).unwrap(),
    )
    .unwrap();
    dir
}

#[test]
fn redundant_tensors_of_older_checkpoints_are_not_exported() {
    // Checkpoints of older transformers repeat tied tensors; they load, and the export
    // is the same as that of the clean fixture.
    let device = test_device();
    let tmp = tempfile::tempdir().unwrap();
    let old = with_extra(
        tmp.path(),
        "bert",
        &[
            (
                "cls.predictions.decoder.weight",
                "bert.embeddings.word_embeddings.weight",
            ),
            ("cls.predictions.decoder.bias", "cls.predictions.bias"),
        ],
    );
    let model = load_bert_masked_lm(&old, &device).unwrap();
    let dir = tmp.path().join("bert-export");
    export_bert_hf(&model, &dir, None).unwrap();
    assert_same_tensors("bert (old)", &dir, &old, true, same_name);
    assert_eq!(tensors(&dir), tensors(&fixture("bert")));

    let old = with_extra(
        tmp.path(),
        "t5-v1_0",
        &[
            ("encoder.embed_tokens.weight", "shared.weight"),
            ("decoder.embed_tokens.weight", "shared.weight"),
            ("lm_head.weight", "shared.weight"),
        ],
    );
    let model = load_t5(&old, &device).unwrap();
    let dir = tmp.path().join("t5-export");
    export_t5_hf(&model, &dir, None).unwrap();
    assert_same_tensors("t5 (old)", &dir, &old, true, same_name);
    assert_eq!(tensors(&dir), tensors(&fixture("t5-v1_0")));
}

#[test]
fn what_transformers_cannot_hold_is_an_error() {
    let device = test_device();
    let tmp = tempfile::tempdir().unwrap();
    let base = config(&fixture("bert"));
    for (cfg, key) in [
        (
            ModelConfig {
                activation: manabi_model::Activation::Swiglu,
                ..base.clone()
            },
            "`activation`",
        ),
        (
            ModelConfig {
                n_kv_heads: Some(2),
                ..base.clone()
            },
            "`n_kv_heads`",
        ),
        (
            ModelConfig {
                head_dim: Some(4),
                ..base.clone()
            },
            "`head_dim`",
        ),
    ] {
        let model = BertModel::new(&cfg, false, &device);
        let err = export_bert_hf(&model, tmp.path().join("x"), None).unwrap_err();
        assert!(matches!(err, ModelError::Config { .. }), "{err}");
        assert!(err.to_string().contains(key), "{key}: {err}");
    }
    let cfg = ModelConfig {
        mlp_bias: true,
        ..config(&fixture("t5-v1_1"))
    };
    let err = export_t5_hf(&T5::new(&cfg, &device), tmp.path().join("y"), None)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("`mlp_bias`") && err.contains("encoder.block.0.layer.1.DenseReluDense.wi_0"),
        "{err}"
    );
    // Nothing was written.
    assert!(!tmp.path().join("x").exists() && !tmp.path().join("y").exists());

    // A BERT without biases is written with zero biases, which compute the same.
    let cfg = ModelConfig {
        attention_bias: false,
        mlp_bias: false,
        ..base
    };
    let model = BertModel::new(&cfg, false, &device);
    let dir = tmp.path().join("no-bias");
    export_bert_hf(&model, &dir, None).unwrap();
    let zero = tensors(&dir)["encoder.layer.0.attention.self.query.bias"]
        .2
        .clone();
    assert!(zero.iter().all(|&b| b == 0));
    let again = load_bert(&dir, &device).unwrap();
    assert_eq!(
        encode(&again, "bert", &device),
        encode(&model, "bert", &device)
    );
}
