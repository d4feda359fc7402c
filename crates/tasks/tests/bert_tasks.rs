//! Sequence tasks on a BERT body (`manabi task` with a `family = "bert"` checkpoint):
//! sentence pairs framed as `[CLS] a [SEP] b [SEP]` with segment ids, a classifier that
//! learns, evaluates on its own to the same numbers, exports as Hugging Face
//! `BertForSequenceClassification` with its label names and the same logits, and resumes
//! bit for bit; an NER tagger reads `[CLS] tokens [SEP]` and tags the tokens between;
//! PEFT on a BERT body is refused naming the key.

use std::path::{Path, PathBuf};

use burn::prelude::*;
use manabi_model::device::test_device;
use manabi_model::{BertForMaskedLm, Family, ModelConfig};
use manabi_objectives::Recipe;
use manabi_objectives::model::TrainModel;
use manabi_tasks::body::{
    Framing, SeqModel, TaggerModel, export_bert_classifier, export_bert_tagger,
    load_seq_classifier, load_tagger,
};
use manabi_tasks::settings::TaskConfig;
use manabi_tasks::{evaluate_task, train_task};
use manabi_tokenize::TextTokenizer;

mod common;
use common::{head_of, mean, root};

fn recipe(base: &Path, out: &Path, val: &Path) -> String {
    common::recipe(base, out, "nli", "nli", val)
}

/// Training tests run one at a time: burn's device RNG is process-global.
static DEVICE_RNG: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    DEVICE_RNG.lock().unwrap_or_else(|e| e.into_inner())
}

fn tokenizer_path() -> PathBuf {
    root().join("fixtures/tokenize/bpe-en/tokenizer.json")
}

/// A randomly initialised masked-LM BERT saved as `manabi pretrain` saves one.
fn tiny_bert(dir: &Path) -> PathBuf {
    let cfg: ModelConfig = toml::from_str(
        "family = \"bert\"\nvocab_size = 512\nmax_positions = 128\nd_model = 32\nn_layers = 2\nn_heads = 4\nd_ff = 64\npositions = \"learned\"\nnorm = \"layernorm\"\nactivation = \"gelu\"\nnorm_eps = 1e-12\nattention_bias = true\nmlp_bias = true\ntie_embeddings = true\ntype_vocab_size = 2",
    )
    .unwrap();
    manabi_model::init::seed(3);
    let m = BertForMaskedLm::build(&cfg, &test_device());
    let base = dir.join("bert");
    manabi_model::checkpoint::save_module(&m, &cfg, &base).unwrap();
    std::fs::copy(tokenizer_path(), base.join("tokenizer.json")).unwrap();
    base
}

#[test]
fn bert_frames_pairs_with_cls_sep_and_segments_cutting_the_longest_first() {
    let tok = TextTokenizer::load(tokenizer_path()).unwrap();
    let (cls, sep) = (
        tok.token_id("<bos>").unwrap(),
        tok.token_id("<eos>").unwrap(),
    );
    let framing = Framing::of(Family::Bert, &tok, sep).unwrap();
    assert_eq!(framing, Framing::Bert { cls, sep });
    let texts = [
        "the king and the queen of the land".to_string(),
        "a dog".to_string(),
    ];
    let (a, b) = (
        tok.encode(&texts[0]).unwrap(),
        tok.encode(&texts[1]).unwrap(),
    );
    let f = framing.frame(&texts, "\n", 64, &tok).unwrap();
    let want: Vec<u32> = [vec![cls], a.clone(), vec![sep], b.clone(), vec![sep]].concat();
    assert_eq!(f.ids, want);
    let types: Vec<u32> = [vec![0; a.len() + 2], vec![1; b.len() + 1]].concat();
    assert_eq!((f.types, f.cut), (types, false));
    // Too long: the longer segment loses tokens from its end until the pair fits.
    let keep = b.len() + 1;
    assert!(a.len() > keep);
    let max = 3 + keep + b.len();
    let f = framing.frame(&texts, "\n", max, &tok).unwrap();
    assert_eq!(f.ids.len(), max);
    assert!(f.cut);
    assert_eq!(&f.ids[1..1 + keep], &a[..keep]);
    assert_eq!(&f.ids[2 + keep..2 + keep + b.len()], b.as_slice());
    // A decoder body keeps the joined text and EOS.
    let d = Framing::of(Family::Llama, &tok, sep).unwrap();
    let f = d.frame(&texts, "\n", 64, &tok).unwrap();
    let mut joined = tok.encode(&texts.join("\n")).unwrap();
    joined.push(sep);
    assert_eq!((f.ids, f.types.is_empty()), (joined, true));
}

#[test]
fn a_bert_classifier_learns_evaluates_exports_and_resumes() {
    let _rng = serial();
    let tmp = tempfile::tempdir().unwrap();
    let base = tiny_bert(tmp.path());
    let val = head_of(tmp.path(), "nli-en.val.jsonl", 48);
    let device = manabi_model::DeviceChoice::from_env().unwrap();
    let out = tmp.path().join("nli");
    let text = recipe(&base, &out, &val);
    let r = train_task(&TaskConfig::parse(&text, &[]).unwrap(), device, false).unwrap();
    let losses = &r.run.losses;
    assert!(
        mean(&losses[losses.len() - 6..]) < mean(&losses[..6]),
        "loss did not fall: {losses:?}"
    );
    assert_eq!(r.trainable_params, r.run.trainable_params);
    let acc = |m: &[(String, f64)]| m.iter().find(|(k, _)| k == "accuracy").unwrap().1;
    let val_acc = acc(&r.splits[0].metrics);

    // The checkpoint evaluates on its own to the same numbers.
    let ckpt = r.run.checkpoint.clone().unwrap();
    let plain = test_device();
    let again = evaluate_task(
        &ckpt,
        std::slice::from_ref(&val),
        &tmp.path().join("p.jsonl"),
        5,
        &plain,
    )
    .unwrap();
    assert!((acc(&again.metrics) - val_acc).abs() < 1e-12);

    // Exported as BertForSequenceClassification with the label names; loaded back, it
    // gives the same logits and the same accuracy.
    let (m, head) = load_seq_classifier(&ckpt, &plain).unwrap();
    assert_eq!(head.names, ["contradiction", "entailment", "neutral"]);
    let SeqModel::Bert(bert) = m.valid() else {
        panic!("not a BERT classifier");
    };
    let hf = tmp.path().join("hf");
    export_bert_classifier(&bert, &hf, Some(&tokenizer_path()), &head.names).unwrap();
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(hf.join("config.json")).unwrap()).unwrap();
    assert_eq!(json["architectures"][0], "BertForSequenceClassification");
    assert_eq!(json["id2label"]["2"], "neutral");
    let back = manabi_model::load_bert_sequence_classifier(&hf, &plain).unwrap();
    let ids = Tensor::<2, Int>::from_ints([[2, 40, 41, 42, 3, 50, 51, 3]], &plain);
    let types = Tensor::<2, Int>::from_ints([[0, 0, 0, 0, 0, 1, 1, 1]], &plain);
    let a = bert
        .forward(ids.clone(), None, Some(types.clone()))
        .unwrap();
    let b = back.forward(ids, None, Some(types)).unwrap();
    let diff = (a - b).abs().max().into_scalar::<f32>();
    assert!(diff < 1e-5, "exported logits differ by {diff}");
    let (_, hf_head) = load_seq_classifier(&hf, &plain).unwrap();
    assert_eq!(hf_head.names, head.names);

    // Resume: stop after 10 steps, continue, and get the straight run's losses.
    let out2 = tmp.path().join("nli2");
    let text2 = recipe(&base, &out2, &val);
    let stop = ["train.stop_after=10".to_string()];
    let r1 = train_task(&TaskConfig::parse(&text2, &stop).unwrap(), device, false).unwrap();
    let r2 = train_task(&TaskConfig::parse(&text2, &[]).unwrap(), device, true).unwrap();
    let joined = common::joined_losses(&r1.run, &r2.run);
    assert_eq!(&joined, losses);

    // PEFT adapts decoders only: the key is named.
    let lora = ["peft.method=lora".to_string()];
    let cfg = TaskConfig::parse(&recipe(&base, &tmp.path().join("x"), &val), &lora).unwrap();
    let e = train_task(&cfg, device, false).unwrap_err().to_string();
    assert!(e.contains("peft.method"), "{e}");
}

#[test]
fn a_bert_ner_tagger_learns_predicts_spans_and_exports() {
    let _rng = serial();
    let tmp = tempfile::tempdir().unwrap();
    let base = tiny_bert(tmp.path());
    let val = head_of(tmp.path(), "ner-en.val.jsonl", 40);
    let device = manabi_model::DeviceChoice::from_env().unwrap();
    let text = common::recipe(&base, &tmp.path().join("ner"), "ner", "ner", &val)
        .replace("steps = 30", "steps = 40")
        .replace("eval_every = 30", "eval_every = 40");
    let r = train_task(&TaskConfig::parse(&text, &[]).unwrap(), device, false).unwrap();
    let losses = &r.run.losses;
    assert!(
        mean(&losses[losses.len() - 6..]) < 0.5 * mean(&losses[..3]),
        "{losses:?}"
    );
    let f1 = |m: &[(String, f64)]| m.iter().find(|(k, _)| k == "f1").unwrap().1;
    // Every predicted span is the exact characters of its name ([CLS] and [SEP] are
    // never part of one).
    let preds = std::fs::read_to_string(&r.splits[0].predictions).unwrap();
    let spans = common::check_predicted_spans(&preds);
    assert!(spans > 0, "no entity predicted: {preds}");
    // The checkpoint evaluates on its own to the same numbers.
    let ckpt = r.run.checkpoint.clone().unwrap();
    let plain = test_device();
    let again = evaluate_task(
        &ckpt,
        std::slice::from_ref(&val),
        &tmp.path().join("p.jsonl"),
        3,
        &plain,
    )
    .unwrap();
    assert!((f1(&again.metrics) - f1(&r.splits[0].metrics)).abs() < 1e-12);
    // BertForTokenClassification export with the tag names: same scores loaded back.
    let (m, head) = load_tagger(&ckpt, &plain).unwrap();
    assert_eq!(head.names[0], "O");
    let TaggerModel::Bert(bert) = m.valid() else {
        panic!("not a BERT tagger");
    };
    let hf = tmp.path().join("hf");
    export_bert_tagger(&bert, &hf, Some(&tokenizer_path()), &head.names).unwrap();
    let (back, back_head) = load_tagger(&hf, &plain).unwrap();
    assert_eq!(back_head.names, head.names);
    let ids = Tensor::<2, Int>::from_ints([[2, 40, 41, 42, 43, 3]], &plain);
    let a = bert.forward(ids.clone(), None, None).unwrap();
    let TaggerModel::Bert(back) = back else {
        panic!("not a BERT tagger");
    };
    let b = back.forward(ids, None, None).unwrap();
    let diff = (a - b).abs().max().into_scalar::<f32>();
    assert!(diff < 1e-5, "exported scores differ by {diff}");
}

#[test]
fn bert_simcse_pools_cls_masks_padding_evaluates_exports_and_resumes() {
    use manabi_tasks::embed::{self, Pooling, SentenceEncoder, SentenceModel};
    let _rng = serial();
    let tmp = tempfile::tempdir().unwrap();
    let base = tiny_bert(tmp.path());
    let val = head_of(tmp.path(), "sts-en.val.jsonl", 40);
    let device = manabi_model::DeviceChoice::from_env().unwrap();
    let text = |out: &str, pooling: &str| {
        common::recipe(&base, &tmp.path().join(out), "simcse", "sts", &val)
            .replace("steps = 30", "steps = 12")
            .replace("eval_every = 30", "eval_every = 12")
            .replace("checkpoint_every = 10", "checkpoint_every = 6")
            .replace("lr = 3e-3", "lr = 1e-3")
            .replace(
                "[data]",
                &format!("dropout = 0.1\ntemperature = 0.05\npooling = \"{pooling}\"\n[data]"),
            )
    };
    let r = train_task(
        &TaskConfig::parse(&text("a", "cls"), &[]).unwrap(),
        device,
        false,
    )
    .unwrap();
    let losses = &r.run.losses;
    assert!(
        mean(&losses[losses.len() - 3..]) < mean(&losses[..3]),
        "loss did not fall: {losses:?}"
    );
    common::check_sts_report(&r);

    // The checkpoint is the encoder alone, read [CLS] a [SEP]; an embedding does not
    // depend on the padding of its batch (padding is masked out of attention).
    let ckpt = r.run.checkpoint.clone().unwrap();
    let plain = test_device();
    let model = SentenceModel::load(&ckpt, &plain).unwrap();
    assert_eq!(model.family(), Family::Bert);
    let tok = TextTokenizer::load(ckpt.join("tokenizer.json")).unwrap();
    let framing = model.framing(&tok).unwrap();
    let Framing::Bert { cls, sep } = framing else {
        panic!("a BERT body frames with [CLS] / [SEP]");
    };
    let ids = embed::encode_sentence(&tok, "A dog.", framing, 48).unwrap();
    assert_eq!((ids[0], ids[ids.len() - 1]), (cls, sep));
    let pad = manabi_finetune::sft::Specials::of(&tok).unwrap().pad;
    let texts: Vec<String> = [
        "A red cat is sleeping in the park.",
        "A dog.",
        "Mara lives in Tolven.",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let embed_all = |m: &SentenceModel, pooling, batch| {
        embed::embed_texts(
            m,
            &tok,
            &texts,
            (pooling, 48),
            (framing, pad),
            batch,
            &plain,
        )
        .unwrap()
    };
    for pooling in [Pooling::Cls, Pooling::Mean] {
        let (a, b) = (embed_all(&model, pooling, 1), embed_all(&model, pooling, 3));
        for (x, y) in a.iter().flatten().zip(b.iter().flatten()) {
            assert!((x - y).abs() < 1e-5, "{pooling:?}: {x} vs {y}");
        }
    }
    let e = model
        .pooled(&[&ids], Pooling::Last, pad, &plain)
        .unwrap_err()
        .to_string();
    assert!(e.contains("task.pooling"), "{e}");

    // It scores the pairs on its own to the training run's Spearman.
    let again = evaluate_task(
        &ckpt,
        std::slice::from_ref(&val),
        &tmp.path().join("p.jsonl"),
        16,
        &plain,
    )
    .unwrap();
    let want = r.splits[0].metrics[2].1;
    assert!(
        (again.metrics[1].1 - want).abs() < 1e-6,
        "{:?} vs {want}",
        again.metrics
    );

    // Exported as transformers' BertModel and read back: the same embeddings.
    let SentenceModel::Bert(bert) = &model else {
        unreachable!()
    };
    let hf = tmp.path().join("hf");
    manabi_model::export_bert_hf(bert.as_ref(), &hf, Some(&tokenizer_path())).unwrap();
    let back = SentenceModel::Bert(Box::new(manabi_model::load_bert(&hf, &plain).unwrap()));
    let (a, b) = (
        embed_all(&model, Pooling::Cls, 3),
        embed_all(&back, Pooling::Cls, 3),
    );
    for (x, y) in a.iter().flatten().zip(b.iter().flatten()) {
        assert!((x - y).abs() < 1e-5, "exported: {x} vs {y}");
    }

    // Resume: stop after 6 steps, continue, and get the straight run's losses (dropout
    // masks come from the step's seed).
    let stop = ["train.stop_after=6".to_string()];
    let r1 = train_task(
        &TaskConfig::parse(&text("b", "cls"), &stop).unwrap(),
        device,
        false,
    )
    .unwrap();
    let r2 = train_task(
        &TaskConfig::parse(&text("b", "cls"), &[]).unwrap(),
        device,
        true,
    )
    .unwrap();
    let joined = common::joined_losses(&r1.run, &r2.run);
    assert_eq!(&joined, losses);

    // `last` pooling is a decoder's: the config key is named before training.
    let cfg = TaskConfig::parse(&text("c", "last"), &[]).unwrap();
    let e = train_task(&cfg, device, false).unwrap_err().to_string();
    assert!(e.contains("task.pooling"), "{e}");

    // A bi-encoder STS model on the same body learns too.
    let bi = common::recipe(&base, &tmp.path().join("bi"), "sts", "sts", &val)
        .replace("steps = 30", "steps = 12")
        .replace("eval_every = 30", "eval_every = 12")
        .replace("[data]", "encoder = \"bi\"\nmax_score = 5.0\n[data]");
    let r = train_task(&TaskConfig::parse(&bi, &[]).unwrap(), device, false).unwrap();
    let losses = &r.run.losses;
    assert!(
        mean(&losses[losses.len() - 3..]) < mean(&losses[..3]),
        "bi-encoder loss did not fall: {losses:?}"
    );
    assert!(r.splits[0].metrics.iter().all(|(_, v)| v.is_finite()));
}

/// A decoder body reads the tokenizer's own special tokens around the text (a
/// Llama-style BOS first) and ends with one EOS, also where the tokenizer's
/// post-processor already appends it (`add_eos_token`); cutting keeps both.
#[test]
fn a_decoder_body_frames_text_with_the_tokenizers_bos() {
    let texts = [
        "Mara lives in Tolven.".to_string(),
        "She is here.".to_string(),
    ];
    for (name, suffix) in [("hf-llama-bos", 0), ("hf-llama-add-eos", 1)] {
        let tok = TextTokenizer::load(root().join("fixtures/tokenize").join(name)).unwrap();
        let eos = tok.eos_id().unwrap();
        let d = Framing::of(Family::Llama, &tok, eos).unwrap();
        let f = d.frame(&texts, "\n", 64, &tok).unwrap();
        let body = tok.encode(&texts.join("\n")).unwrap();
        let mut want = vec![tok.bos_id().unwrap()];
        want.extend(&body);
        want.push(eos);
        assert_eq!((f.ids, f.cut), (want, false), "{name}");
        assert_eq!(tok.specials_suffix().len(), suffix);
        let f = d.frame(&texts, "\n", 5, &tok).unwrap();
        let mut want = vec![tok.bos_id().unwrap()];
        want.extend(&body[..3]);
        want.push(eos);
        assert_eq!((f.ids, f.cut), (want, true), "{name}");
    }
}
