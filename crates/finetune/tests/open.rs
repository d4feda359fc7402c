//! `manabi_finetune::open`: every layout, family and head opens as what it is, and each
//! view refuses a folder that holds another kind of model in one line naming the folder.

use std::path::{Path, PathBuf};

use burn::module::Module;
use manabi_finetune::{HeadSpec, Model, PeftConfig, open, peft};
use manabi_model::checkpoint::save_module;
use manabi_model::device::test_device;
use manabi_model::{
    BertForMaskedLm, BertForSequenceClassification, BertModel, DecoderClassifier, DecoderLm,
    ModelConfig, T5,
};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn kind(m: &Model) -> &'static str {
    match m {
        Model::Decoder(_) => "decoder",
        Model::Classifier(_) => "classifier",
        Model::BertMaskedLm(_) => "bert-mlm",
        Model::BertEncoder(_) => "bert-encoder",
        Model::BertClassifier(_) => "bert-classifier",
        Model::BertTagger(_) => "bert-tagger",
        Model::T5(_) => "t5",
    }
}

fn cfg(text: &str) -> ModelConfig {
    toml::from_str(text).unwrap()
}

fn llama() -> ModelConfig {
    cfg(
        "family = \"llama\"\nvocab_size = 40\nmax_positions = 64\nd_model = 16\nn_layers = 1\n\
         n_heads = 2\nd_ff = 32\npositions = \"rope\"\nnorm = \"rmsnorm\"\n\
         activation = \"swiglu\"\ntie_embeddings = true",
    )
}

fn bert() -> ModelConfig {
    cfg(
        "family = \"bert\"\nvocab_size = 40\nmax_positions = 32\nd_model = 16\nn_layers = 1\n\
         n_heads = 2\nd_ff = 32\npositions = \"learned\"\nnorm = \"layernorm\"\n\
         activation = \"gelu\"\ntie_embeddings = true\ntype_vocab_size = 2",
    )
}

#[test]
fn hugging_face_folders_open_as_their_architecture_says() {
    let device = test_device();
    let cases = [
        ("fixtures/models/gpt2", "decoder", None),
        ("fixtures/models/qwen3", "decoder", None),
        ("fixtures/models/gemma2", "decoder", None),
        ("fixtures/models/neox-parallel", "decoder", None),
        (
            "fixtures/hf_tasks/llama-reward",
            "classifier",
            Some(("score", 1)),
        ),
        (
            "fixtures/hf_tasks/llama-sentiment",
            "classifier",
            Some(("score", 2)),
        ),
        ("fixtures/models/bert", "bert-mlm", None),
        ("fixtures/hf_tasks/bert-embed", "bert-encoder", None),
        (
            "fixtures/models/bert-cls",
            "bert-classifier",
            Some(("score", 3)),
        ),
        (
            "fixtures/hf_tasks/bert-ner",
            "bert-tagger",
            Some(("token", 0)),
        ),
        ("fixtures/models/t5-v1_0", "t5", None),
        ("fixtures/models/t5-v1_1", "t5", None),
    ];
    for (path, want, head) in cases {
        let o = open(&root().join(path), &device).unwrap_or_else(|e| panic!("{path}: {e}"));
        assert_eq!(kind(&o.model), want, "{path}");
        assert!(o.peft.is_none(), "{path}");
        match (head, &o.head) {
            (None, None) => {}
            (Some((k, n)), Some(h)) => {
                assert_eq!(h.kind, k, "{path}");
                if n > 0 {
                    assert_eq!(h.labels, n, "{path}");
                }
                assert!(h.labels > 0 && (h.names.is_empty() || h.names.len() == h.labels));
            }
            (w, h) => panic!("{path}: head {w:?} wanted, {h:?} opened"),
        }
        assert!(o.model.num_params() > 0);
    }
}

#[test]
fn manabi_folders_open_with_their_head_adapters_and_task_marks() {
    let device = test_device();
    let tmp = tempfile::tempdir().unwrap();
    let at = |name: &str| tmp.path().join(name);

    // A plain decoder, and one with LoRA recorded in peft.toml.
    let lm = DecoderLm::init(&llama(), &device, 1);
    save_module(&lm, lm.config(), &at("lm")).unwrap();
    let lora: PeftConfig = toml::from_str("method = \"lora\"\nr = 2\nalpha = 4.0").unwrap();
    let adapted = peft::apply(lm.clone(), &lora).unwrap();
    save_module(&adapted, adapted.config(), &at("lora")).unwrap();
    std::fs::write(at("lora").join(peft::PEFT_FILE), lora.to_toml()).unwrap();

    // A decoder reward model (score head, one output).
    let rm = DecoderClassifier::new(&llama(), 1, &device);
    save_module(&rm, rm.lm.config(), &at("reward")).unwrap();
    std::fs::write(
        at("reward").join("head.toml"),
        HeadSpec::score(1, vec![]).to_toml(),
    )
    .unwrap();

    // BERT: masked LM, sentence encoder (task.toml marks it), classifier.
    let mlm = BertForMaskedLm::new(&bert(), &device);
    save_module(&mlm, mlm.bert.config(), &at("mlm")).unwrap();
    let enc = BertModel::new(&bert(), false, &device);
    save_module(&enc, enc.config(), &at("simcse")).unwrap();
    std::fs::write(at("simcse").join("task.toml"), "kind = \"simcse\"\n").unwrap();
    let mut c3 = bert();
    c3.num_labels = Some(3);
    let cls = BertForSequenceClassification::new(&c3, &device);
    save_module(&cls, cls.bert.config(), &at("nli")).unwrap();
    let names = vec!["a".to_string(), "b".into(), "c".into()];
    std::fs::write(
        at("nli").join("head.toml"),
        HeadSpec::score(3, names.clone()).to_toml(),
    )
    .unwrap();

    let cases = [
        ("lm", "decoder"),
        ("lora", "decoder"),
        ("reward", "classifier"),
        ("mlm", "bert-mlm"),
        ("simcse", "bert-encoder"),
        ("nli", "bert-classifier"),
    ];
    for (name, want) in cases {
        let o = open(&at(name), &device).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(kind(&o.model), want, "{name}");
    }
    let o = open(&at("lora"), &device).unwrap();
    assert_eq!(o.peft.as_ref().map(|p| p.r), Some(2));
    assert_eq!(o.model.num_params(), adapted.num_params());
    assert_eq!(
        open(&at("nli"), &device).unwrap().head.unwrap().names,
        names
    );

    // The views: a classifier's body is a decoder; each view refuses the other kinds in
    // one line that names the folder and says what it holds.
    let (body, _) = open(&at("reward"), &device)
        .unwrap()
        .into_decoder()
        .unwrap();
    assert_eq!(body.num_params(), lm.num_params());
    assert!(open(&at("nli"), &device).unwrap().into_bert_body().is_ok());
    let refusals = [
        (
            open(&at("mlm"), &device).unwrap().into_decoder().err(),
            "BERT masked LM",
        ),
        (
            open(&at("lm"), &device).unwrap().into_classifier().err(),
            "without a head",
        ),
        (
            open(&at("nli"), &device).unwrap().into_classifier().err(),
            "BERT sequence",
        ),
        (
            open(&at("reward"), &device).unwrap().into_t5().err(),
            "classification head",
        ),
        (
            open(&at("lm"), &device).unwrap().into_bert_body().err(),
            "causal LM",
        ),
    ];
    for (err, what) in refusals {
        let e = err.expect("refused").to_string();
        assert!(
            e.contains(what) && e.contains("needed") && !e.contains('\n'),
            "{e}"
        );
        assert!(e.contains(&tmp.path().display().to_string()), "{e}");
    }
}

#[test]
fn a_native_t5_and_bad_folders() {
    let device = test_device();
    let tmp = tempfile::tempdir().unwrap();
    let t5_cfg = cfg(
        "family = \"t5\"\nvocab_size = 40\nmax_positions = 32\nd_model = 16\n\
                      n_layers = 1\nn_heads = 2\nd_ff = 32\npositions = \"relative\"\n\
                      norm = \"rmsnorm\"\nactivation = \"relu\"\ntie_embeddings = true",
    );
    let t5 = T5::new(&t5_cfg, &device);
    save_module(&t5, t5.config(), &tmp.path().join("t5")).unwrap();
    let o = open(&tmp.path().join("t5"), &device).unwrap();
    assert_eq!(kind(&o.model), "t5");
    assert!(o.into_t5().is_ok());

    // Adapters on a T5 body and a head on a T5 are refused by the file that says so.
    std::fs::write(
        tmp.path().join("t5/head.toml"),
        "kind = \"score\"\nlabels = 2\n",
    )
    .unwrap();
    let e = open(&tmp.path().join("t5"), &device)
        .unwrap_err()
        .to_string();
    assert!(e.contains("head.toml") && e.contains("T5"), "{e}");

    // A missing folder is named as the folder; a corrupt head.toml by its file.
    let e = open(&tmp.path().join("nope"), &device)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("nope") && e.contains("no such model folder"),
        "{e}"
    );
    let lm = DecoderLm::init(&llama(), &device, 1);
    save_module(&lm, lm.config(), &tmp.path().join("bad")).unwrap();
    std::fs::write(
        tmp.path().join("bad/head.toml"),
        "kind = \"score\"\nlabels = \"x\"\n",
    )
    .unwrap();
    let e = open(&tmp.path().join("bad"), &device)
        .unwrap_err()
        .to_string();
    assert!(e.contains("head.toml") && !e.contains('\n'), "{e}");
}
