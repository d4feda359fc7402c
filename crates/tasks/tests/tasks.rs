//! Downstream tasks (`manabi task`): a classifier and a regressor on a tiny body learn,
//! write predictions next to gold labels, export with their label names, resume bit for
//! bit, and refuse bad data with one line naming file, line and field.

use std::path::{Path, PathBuf};

use burn::prelude::*;
use manabi_finetune::load_classifier;
use manabi_model::DecoderLm;
use manabi_model::device::test_device;
use manabi_objectives::Recipe;
use manabi_tasks::settings::TaskConfig;
use manabi_tasks::{evaluate_task, train_task};

mod common;
use common::{head_of, mean, recipe, root};

/// The device's random stream is shared by the whole process: a test that seeds it while
/// another draws dropout masks would change that one's masks. Tests that train take this
/// lock, so each run sees only its own seeds (a real run is one per process).
static DEVICE_RNG: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    DEVICE_RNG.lock().unwrap_or_else(|e| e.into_inner())
}

fn tiny_base(dir: &Path) -> PathBuf {
    let cfg: manabi_model::ModelConfig = toml::from_str(
        "family = \"llama\"\nvocab_size = 512\nmax_positions = 128\nd_model = 32\nn_layers = 2\nn_heads = 4\nn_kv_heads = 2\nd_ff = 64\npositions = \"rope\"\nnorm = \"rmsnorm\"\nactivation = \"swiglu\"\ntie_embeddings = true",
    )
    .unwrap();
    let base = dir.join("base");
    manabi_model::save_native(&DecoderLm::init(&cfg, &test_device(), 3), &base).unwrap();
    std::fs::copy(
        root().join("fixtures/tokenize/bpe-en/tokenizer.json"),
        base.join("tokenizer.json"),
    )
    .unwrap();
    base
}

#[test]
fn a_classifier_learns_writes_predictions_exports_and_resumes() {
    let _rng = serial();
    let tmp = tempfile::tempdir().unwrap();
    let base = tiny_base(tmp.path());
    let val = head_of(tmp.path(), "sentiment-en.val.jsonl", 64);
    let device = manabi_model::DeviceChoice::from_env().unwrap();
    let out = tmp.path().join("sent");
    let text = recipe(&base, &out, "classification", "sentiment", &val);
    let cfg = TaskConfig::parse(&text, &[]).unwrap();
    let r = train_task(&cfg, device, false).unwrap();
    let losses = &r.run.losses;
    assert!(
        mean(&losses[losses.len() - 6..]) < mean(&losses[..6]),
        "loss did not fall: {losses:?}"
    );
    assert_eq!(
        r.label_counts
            .iter()
            .map(|(n, _)| n.as_str())
            .collect::<Vec<_>>(),
        ["negative", "positive"]
    );
    assert_eq!(r.label_counts.iter().map(|(_, c)| c).sum::<usize>(), 2000);
    assert!(r.run.eval_metrics.contains_key("eval/accuracy"));
    assert!(r.run.eval_metrics.contains_key("eval/macro_f1"));
    // Predictions next to gold, one per validation example.
    let val_split = &r.splits[0];
    assert_eq!(val_split.examples, 64);
    let preds = std::fs::read_to_string(&val_split.predictions).unwrap();
    let rows: Vec<serde_json::Value> = preds
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(rows.len(), 64);
    let correct = rows.iter().filter(|v| v["pred"] == v["label"]).count();
    let acc = val_split
        .metrics
        .iter()
        .find(|(k, _)| k == "accuracy")
        .unwrap()
        .1;
    assert!((acc - correct as f64 / 64.0).abs() < 1e-12);
    for v in &rows {
        let p: f64 = v["probs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_f64().unwrap())
            .sum();
        assert!((p - 1.0).abs() < 1e-9 && v["sentence"].is_string());
    }
    // The checkpoint evaluates on its own (task.toml, head.toml, tokenizer.json) to the
    // same numbers, and predicts unlabelled data.
    let ckpt = r.run.checkpoint.clone().unwrap();
    let plain = test_device();
    let again = evaluate_task(
        &ckpt,
        std::slice::from_ref(&val),
        &tmp.path().join("p.jsonl"),
        7,
        &plain,
    )
    .unwrap();
    for ((k, a), (_, b)) in again.metrics.iter().zip(&val_split.metrics) {
        assert!((a - b).abs() < 1e-9, "{k}: {a} vs {b}");
    }
    let unlabelled = tmp.path().join("unlabelled.jsonl");
    std::fs::write(&unlabelled, "{\"sentence\": \"The film was great.\"}\n").unwrap();
    let p = evaluate_task(&ckpt, &[unlabelled], &tmp.path().join("u.jsonl"), 4, &plain).unwrap();
    assert!(p.metrics.is_empty());
    let u = std::fs::read_to_string(tmp.path().join("u.jsonl")).unwrap();
    assert!(u.contains("\"pred\":") && !u.contains("\"label\":"), "{u}");
    // Hugging Face export carries the label names.
    let (m, head) = load_classifier(&ckpt, &plain).unwrap();
    assert_eq!(head.names, ["negative", "positive"]);
    let hf = tmp.path().join("hf");
    m.export_hf(&hf, None, Some(0), &head.names).unwrap();
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(hf.join("config.json")).unwrap()).unwrap();
    assert_eq!(json["id2label"]["1"], "positive");
    assert_eq!(json["label2id"]["negative"], 0);
    let (_, back) = load_classifier(&hf, &plain).unwrap();
    assert_eq!(back.names, head.names);
    // Resume: stop after 10 steps, continue, and get the straight run's losses.
    let out2 = tmp.path().join("sent2");
    let text2 = recipe(&base, &out2, "classification", "sentiment", &val);
    let stop = ["train.stop_after=10".to_string()];
    let r1 = train_task(&TaskConfig::parse(&text2, &stop).unwrap(), device, false).unwrap();
    let r2 = train_task(&TaskConfig::parse(&text2, &[]).unwrap(), device, true).unwrap();
    let joined = common::joined_losses(&r1.run, &r2.run);
    assert_eq!(&joined, losses);
}

#[test]
fn a_similarity_regressor_learns_and_reports_pearson_and_spearman() {
    let _rng = serial();
    let tmp = tempfile::tempdir().unwrap();
    let base = tiny_base(tmp.path());
    let val = head_of(tmp.path(), "sts-en.val.jsonl", 48);
    let device = manabi_model::DeviceChoice::from_env().unwrap();
    let text = recipe(&base, &tmp.path().join("sts"), "sts", "sts", &val);
    let r = train_task(&TaskConfig::parse(&text, &[]).unwrap(), device, false).unwrap();
    let losses = &r.run.losses;
    // Squared error starts near E[y²] ≈ 9 (scores 0–5) and must fall well below it.
    assert!(
        mean(&losses[losses.len() - 6..]) < 0.5 * mean(&losses[..3]),
        "{losses:?}"
    );
    let names: Vec<&str> = r.splits[0]
        .metrics
        .iter()
        .map(|(k, _)| k.as_str())
        .collect();
    assert_eq!(names, ["pearson", "spearman"]);
    assert!(r.splits[0].metrics.iter().all(|(_, v)| v.is_finite()));
    assert!(r.label_counts.is_empty() && r.splits[0].majority_baseline.is_none());
    // Resume: stopped after 10 steps and continued, the straight run's losses.
    let text2 = recipe(&base, &tmp.path().join("sts2"), "sts", "sts", &val);
    let stop = ["train.stop_after=10".to_string()];
    let r1 = train_task(&TaskConfig::parse(&text2, &stop).unwrap(), device, false).unwrap();
    let r2 = train_task(&TaskConfig::parse(&text2, &[]).unwrap(), device, true).unwrap();
    assert_eq!(&common::joined_losses(&r1.run, &r2.run), losses);
    // The bi-encoder: each sentence embedded alone, cosine trained towards label / 5.
    let bi = recipe(&base, &tmp.path().join("sts-bi"), "sts", "sts", &val)
        .replace("[data]", "encoder = \"bi\"\n[data]");
    let r = train_task(&TaskConfig::parse(&bi, &[]).unwrap(), device, false).unwrap();
    let losses = &r.run.losses;
    assert!(
        mean(&losses[losses.len() - 6..]) < mean(&losses[..3]),
        "{losses:?}"
    );
    common::check_sts_report(&r);
    let preds = std::fs::read_to_string(&r.splits[0].predictions).unwrap();
    let v: serde_json::Value = serde_json::from_str(preds.lines().next().unwrap()).unwrap();
    let (c, p) = (v["cosine"].as_f64().unwrap(), v["pred"].as_f64().unwrap());
    assert!((p - 5.0 * c).abs() < 1e-9);
    // A bi-encoder for anything but sts is refused.
    let e = TaskConfig::parse(&bi.replace("kind = \"sts\"", "kind = \"nli\""), &[]).unwrap_err();
    assert!(e.to_string().contains("task.encoder"), "{e}");
}

fn err_of(base: &Path, dir: &Path, kind: &str, train: &str, val: &str, sets: &[&str]) -> String {
    let (t, v) = (dir.join("t.jsonl"), dir.join("v.jsonl"));
    std::fs::write(&t, train).unwrap();
    std::fs::write(&v, val).unwrap();
    let text = format!(
        "[run]\nout = \"{}\"\n[model]\npath = \"{}\"\n[task]\nkind = \"{kind}\"\n[data]\ntrain = [\"{}\"]\nval = [\"{}\"]\n[train]\nsteps = 1\nprogress = false\n",
        dir.join("out").display(),
        base.display(),
        t.display(),
        v.display()
    );
    let sets: Vec<String> = sets.iter().map(|s| s.to_string()).collect();
    match TaskConfig::parse(&text, &sets) {
        Err(e) => e.to_string(),
        Ok(cfg) => train_task(&cfg, manabi_model::DeviceChoice::from_env().unwrap(), false)
            .map(|_| String::from("no error"))
            .unwrap_or_else(|e| e.to_string()),
    }
}

#[test]
fn bad_task_data_and_settings_are_one_line_errors() {
    let _rng = serial();
    let tmp = tempfile::tempdir().unwrap();
    let base = tiny_base(tmp.path());
    let d = tmp.path();
    let good = "{\"sentence\": \"good\", \"label\": \"positive\"}\n{\"sentence\": \"bad\", \"label\": \"negative\"}\n";
    // (kind, train file, val file, --set overrides, what the error must say)
    type Case<'a> = (&'a str, &'a str, &'a str, &'a [&'a str], &'a [&'a str]);
    let cases: [Case; 14] = [
        (
            "classification",
            good,
            "{\"sentence\": \"ok\", \"label\": \"neutral\"}\n",
            &[],
            &[
                "v.jsonl:1",
                "unknown label \"neutral\"",
                "negative, positive",
            ],
        ),
        (
            "classification",
            "{\"sentence\": \"good\", \"label\": \"positive\"}\n{\"text\": \"bad\", \"label\": \"negative\"}\n",
            good,
            &[],
            &["t.jsonl:2", "missing field `sentence`"],
        ),
        (
            "classification",
            "{\"sentence\": \"  \", \"label\": \"positive\"}\n",
            good,
            &[],
            &["t.jsonl:1", "`sentence` is empty"],
        ),
        (
            "sts",
            "{\"sentence1\": \"a\", \"sentence2\": \"b\", \"label\": \"high\"}\n",
            good,
            &[],
            &["t.jsonl:1", "`label` must be a number"],
        ),
        (
            "nli",
            "{\"sentence1\": \"a\", \"sentence2\": \"b\", \"label\": \"entailment\"}\nnot json\n",
            good,
            &[],
            &["t.jsonl:2", "invalid JSON"],
        ),
        (
            "classification",
            "{\"sentence\": \"good\", \"label\": \"positive\"}\n",
            good,
            &[],
            &[
                "at least two classes",
                "the training data has only \"positive\"",
            ],
        ),
        // A label list that names a class twice would train a head with an output no
        // example reaches: refused naming the label and the key (every kind).
        (
            "classification",
            good,
            good,
            &["task.labels=[\"pos\", \"neg\", \"pos\"]"],
            &["invalid config `task.labels`", "\"pos\" is listed twice"],
        ),
        (
            "ner",
            good,
            good,
            &["task.labels=[\"PER\", \"LOC\", \"PER\"]"],
            &["invalid config `task.labels`", "\"PER\" is listed twice"],
        ),
        (
            "classification",
            good,
            good,
            &["task.labels=[\"pos\", \"  \"]"],
            &["invalid config `task.labels`", "label 2 of 2 is empty"],
        ),
        (
            "classification",
            "{\"sentence\": \"good\", \"label\": \"positive\"}\n{\"sentence\": \"bad\", \"label\": \" \"}\n",
            good,
            &[],
            &["t.jsonl:2", "field `label` is empty"],
        ),
        (
            "classification",
            good,
            good,
            &["task.labels=[\"positive\"]"],
            &[
                "at least two classes",
                "task.labels lists only \"positive\"",
            ],
        ),
        (
            "sts",
            good,
            good,
            &["task.labels=[\"a\", \"b\"]"],
            &["task.labels", "no class labels"],
        ),
        (
            "classification",
            good,
            good,
            &["task.kind=\"parsing\""],
            &["task.kind", "unknown task `parsing`"],
        ),
        (
            "classification",
            good,
            good,
            &["task.kind=\"summarisation\""],
            &["task.kind", "manabi sft", "configs/sft/summarise.toml"],
        ),
    ];
    for (kind, train, val, sets, want) in cases {
        let e = err_of(&base, d, kind, train, val, sets);
        assert!(!e.contains('\n'), "{e}");
        for w in want {
            assert!(e.contains(w), "`{w}` not in: {e}");
        }
        for debug in ["Some(", "None", "Err(", "Ok(", "[\""] {
            assert!(!e.contains(debug), "Rust debug text `{debug}` in: {e}");
        }
    }
    // A model folder that is not there is named as the folder, before anything is read
    // inside it.
    let e = err_of(&d.join("no-model"), d, "classification", good, good, &[]);
    assert!(e.ends_with("no-model: no such model folder"), "{e}");
    // A checkpoint that is not a task model.
    let e = evaluate_task(
        &base,
        &[d.join("v.jsonl")],
        &d.join("p.jsonl"),
        4,
        &test_device(),
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("task.toml") && e.contains("manabi task"), "{e}");
}

#[test]
fn every_task_recipe_parses() {
    let _rng = serial();
    for entry in std::fs::read_dir(root().join("configs/tasks")).unwrap() {
        let path = entry.unwrap().path();
        TaskConfig::load(&path, &[]).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    }
}

#[test]
fn an_ner_tagger_learns_and_predicts_character_spans() {
    let _rng = serial();
    let tmp = tempfile::tempdir().unwrap();
    let base = tiny_base(tmp.path());
    let val = head_of(tmp.path(), "ner-en.val.jsonl", 40);
    let device = manabi_model::DeviceChoice::from_env().unwrap();
    let text = recipe(&base, &tmp.path().join("ner"), "ner", "ner", &val)
        .replace("steps = 30", "steps = 40")
        .replace("eval_every = 30", "eval_every = 40");
    let r = train_task(&TaskConfig::parse(&text, &[]).unwrap(), device, false).unwrap();
    let losses = &r.run.losses;
    assert!(
        mean(&losses[losses.len() - 6..]) < 0.5 * mean(&losses[..3]),
        "{losses:?}"
    );
    // Types sorted from the data; entity counts of the training file.
    let types: Vec<&str> = r.label_counts.iter().map(|(t, _)| t.as_str()).collect();
    assert_eq!(types, ["LOC", "PER", "PET"]);
    let names: Vec<&str> = r.splits[0]
        .metrics
        .iter()
        .map(|(k, _)| k.as_str())
        .collect();
    assert_eq!(
        names,
        [
            "precision",
            "recall",
            "f1",
            "precision_default",
            "recall_default",
            "f1_default"
        ]
    );
    assert!(r.run.eval_metrics.contains_key("eval/f1"));
    // Every predicted span is the exact characters of its name, without spaces.
    let preds = std::fs::read_to_string(&r.splits[0].predictions).unwrap();
    let spans = common::check_predicted_spans(&preds);
    assert!(spans > 0, "no entity predicted: {preds}");
    // The checkpoint predicts unlabelled text on its own.
    let ckpt = r.run.checkpoint.unwrap();
    let u = tmp.path().join("u.jsonl");
    std::fs::write(&u, "{\"text\": \"Mara lives in Tolven.\"}\n").unwrap();
    let p = evaluate_task(&ckpt, &[u], &tmp.path().join("up.jsonl"), 4, &test_device()).unwrap();
    assert!(p.metrics.is_empty());
    let out = std::fs::read_to_string(tmp.path().join("up.jsonl")).unwrap();
    assert!(
        out.contains("\"predicted\":") && !out.contains("\"entities\":"),
        "{out}"
    );
    // Hugging Face `*ForTokenClassification` export with the tag names; it loads back as
    // a token head with the same scores at every token. The folder and the scores are
    // left in $CARGO_TARGET_TMPDIR/token-export for scripts/check_classifier_export.py.
    use burn::module::Module;
    let plain = test_device();
    let (m, head) = load_classifier(&ckpt, &plain).unwrap();
    let hf = Path::new(env!("CARGO_TARGET_TMPDIR")).join("token-export");
    let _ = std::fs::remove_dir_all(&hf);
    let tok = ckpt.join("tokenizer.json");
    m.valid()
        .export_hf_as(&hf, Some(&tok), Some(0), &head.names, true)
        .unwrap();
    let cfg = std::fs::read_to_string(hf.join("config.json")).unwrap();
    assert!(
        cfg.contains("LlamaForTokenClassification") && cfg.contains("B-PER"),
        "{cfg}"
    );
    let (back, back_head) = load_classifier(&hf, &plain).unwrap();
    assert_eq!(
        (back_head.kind.as_str(), &back_head.names),
        ("token", &head.names)
    );
    let ids = Tensor::<1, Int>::from_ints([5, 9, 17, 3, 40, 2].as_slice(), &plain).reshape([1, 6]);
    let a: Vec<f32> = m
        .forward_tokens(ids.clone())
        .into_data()
        .try_to_vec::<f32>()
        .unwrap();
    let b: Vec<f32> = back
        .forward_tokens(ids)
        .into_data()
        .try_to_vec::<f32>()
        .unwrap();
    let d = a
        .iter()
        .zip(&b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max);
    assert!(d < 1e-5, "{d}");
    let expected = serde_json::json!({"input_ids": [[5, 9, 17, 3, 40, 2]], "logits": a});
    std::fs::write(hf.join("expected.json"), expected.to_string()).unwrap();
    // Resume: stopped after 20 steps and continued, the straight run's losses.
    let text2 = recipe(&base, &tmp.path().join("ner2"), "ner", "ner", &val)
        .replace("steps = 30", "steps = 40")
        .replace("eval_every = 30", "eval_every = 40");
    let stop = ["train.stop_after=20".to_string()];
    let r1 = train_task(&TaskConfig::parse(&text2, &stop).unwrap(), device, false).unwrap();
    let r2 = train_task(&TaskConfig::parse(&text2, &[]).unwrap(), device, true).unwrap();
    assert_eq!(common::joined_losses(&r1.run, &r2.run), r.run.losses);
}

#[test]
fn bad_entity_spans_are_one_line_errors() {
    let _rng = serial();
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let good = "{\"text\": \"Mara lives in Tolven.\", \"entities\": [{\"name\": \"Mara\", \"span\": [0, 4], \"type\": \"PER\"}]}";
    let cases = [
        (
            "{\"text\": \"Mara\", \"entities\": [{\"name\": \"Mara\", \"span\": [0, 9], \"type\": \"PER\"}]}",
            "outside the text",
        ),
        (
            "{\"text\": \"Mara lives\", \"entities\": [{\"name\": \"Tolven\", \"span\": [0, 4], \"type\": \"PER\"}]}",
            "covers \"Mara\", not \"Tolven\"",
        ),
        (
            "{\"text\": \"Mara lives\", \"entities\": [{\"span\": [0, 4], \"type\": \"PER\"}, {\"span\": [2, 6], \"type\": \"LOC\"}]}",
            "overlap",
        ),
        (
            "{\"text\": \"Mara lives\", \"entities\": [{\"span\": [0], \"type\": \"PER\"}]}",
            "[start, end]",
        ),
        (
            "{\"text\": \"Mara lives\", \"entities\": [{\"span\": [0, 4]}]}",
            "missing `type`",
        ),
        (
            "{\"text\": \"Mara lives\", \"entities\": [{\"span\": [0, 4], \"type\": \" \"}]}",
            "entity 0: `type` is empty",
        ),
        ("{\"text\": \"\", \"entities\": []}", "non-empty string"),
    ];
    for (i, (line, want)) in cases.iter().enumerate() {
        let p = d.join(format!("n{i}.jsonl"));
        std::fs::write(&p, format!("{good}\n{line}\n")).unwrap();
        let e = manabi_tasks::ner::read_ner(&[p], &Default::default(), true)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains(&format!("n{i}.jsonl:2")) && e.contains(want),
            "{e}"
        );
    }
    // A validation entity type the training data never had.
    let base = tiny_base(d);
    let e = err_of(
        &base,
        d,
        "ner",
        &format!("{good}\n"),
        "{\"text\": \"Tolven\", \"entities\": [{\"name\": \"Tolven\", \"span\": [0, 6], \"type\": \"LOC\"}]}\n",
        &[],
    );
    assert!(
        e.contains("v.jsonl:1") && e.contains("unknown entity type \"LOC\""),
        "{e}"
    );
}

#[test]
fn simcse_trains_embeddings_reports_sts_spearman_and_resumes() {
    let _rng = serial();
    use manabi_tasks::body::Framing;
    use manabi_tasks::embed::{self, Pooling};
    let tmp = tempfile::tempdir().unwrap();
    let base = tiny_base(tmp.path());
    let val = head_of(tmp.path(), "sts-en.val.jsonl", 40);
    let device = manabi_model::DeviceChoice::from_env().unwrap();
    let text = |out: &str| {
        recipe(&base, &tmp.path().join(out), "simcse", "sts", &val)
            .replace("steps = 30", "steps = 12")
            .replace("eval_every = 30", "eval_every = 12")
            .replace("checkpoint_every = 10", "checkpoint_every = 6")
            .replace("[data]", "dropout = 0.1\ntemperature = 0.05\n[data]")
    };
    let r = train_task(&TaskConfig::parse(&text("a"), &[]).unwrap(), device, false).unwrap();
    common::check_sts_report(&r);
    let preds = std::fs::read_to_string(&r.splits[0].predictions).unwrap();
    assert_eq!(preds.lines().count(), 40);
    // Dropout masks come from the step's seed: stopping and resuming gives the same losses.
    let stop = ["train.stop_after=6".to_string()];
    let r1 = train_task(
        &TaskConfig::parse(&text("b"), &stop).unwrap(),
        device,
        false,
    )
    .unwrap();
    let r2 = train_task(&TaskConfig::parse(&text("b"), &[]).unwrap(), device, true).unwrap();
    let joined = common::joined_losses(&r1.run, &r2.run);
    assert_eq!(joined, r.run.losses);
    // Embeddings do not depend on the batch they are padded in, and the checkpoint scores
    // the pairs on its own to the same Spearman.
    let ckpt = r.run.checkpoint.unwrap();
    let plain = test_device();
    let (model, _) = manabi_finetune::load_decoder(&ckpt, &plain).unwrap();
    let tok = manabi_tokenize::TextTokenizer::load(ckpt.join("tokenizer.json")).unwrap();
    let texts: Vec<String> = [
        "A red cat is sleeping in the park.",
        "A dog.",
        "Mara lives in Tolven and works as a baker.",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let specials = manabi_finetune::sft::Specials::of(&tok).unwrap();
    let one = |b| {
        embed::embed_texts(
            &model,
            &tok,
            &texts,
            (Pooling::Mean, 48),
            (Framing::Decoder { eos: specials.eos }, specials.pad),
            b,
            &plain,
        )
        .unwrap()
    };
    let (a, b) = (one(1), one(3));
    for (x, y) in a.iter().flatten().zip(b.iter().flatten()) {
        assert!((x - y).abs() < 1e-5, "{x} vs {y}");
    }
    let again = evaluate_task(
        &ckpt,
        std::slice::from_ref(&val),
        &tmp.path().join("c.jsonl"),
        16,
        &plain,
    )
    .unwrap();
    let want = r.splits[0].metrics[1].1;
    assert!(
        (again.metrics[0].1 - want).abs() < 1e-6,
        "{:?} vs {want}",
        again.metrics
    );
}

#[test]
fn supervised_simcse_learns_from_nli_pairs_with_hard_negatives() {
    let _rng = serial();
    use manabi_tasks::simcse::nli_triples;
    let tmp = tempfile::tempdir().unwrap();
    // Triples: one per entailment pair; the contradiction of the same premise is its
    // hard negative; neutral pairs are not used.
    let nli = tmp.path().join("nli.jsonl");
    std::fs::write(
        &nli,
        [
            r#"{"sentence1": "Mara lives in Tolven.", "sentence2": "Mara has a home in Tolven.", "label": "entailment"}"#,
            r#"{"sentence1": "Mara lives in Tolven.", "sentence2": "Mara lives in Kefi.", "label": "contradiction"}"#,
            r#"{"sentence1": "Mara lives in Tolven.", "sentence2": "Mara was born in Kefi.", "label": "neutral"}"#,
            r#"{"sentence1": "Jo is a baker.", "sentence2": "Jo bakes bread.", "label": "entailment"}"#,
        ]
        .join("\n")
            + "\n",
    )
    .unwrap();
    let t = nli_triples(std::slice::from_ref(&nli), &Default::default()).unwrap();
    assert_eq!(t.len(), 2);
    assert_eq!(t[0].2.as_deref(), Some("Mara lives in Kefi."));
    assert_eq!(t[1].2, None);
    let none = tmp.path().join("none.jsonl");
    std::fs::write(
        &none,
        r#"{"sentence1": "A.", "sentence2": "B.", "label": "neutral"}"#.to_string() + "\n",
    )
    .unwrap();
    let e = nli_triples(&[none], &Default::default())
        .unwrap_err()
        .to_string();
    assert!(e.contains("data.train") && e.contains("entailment"), "{e}");

    // Training on the NLI set: the contrastive loss falls and STS is scored.
    let base = tiny_base(tmp.path());
    let val = head_of(tmp.path(), "sts-en.val.jsonl", 40);
    let device = manabi_model::DeviceChoice::from_env().unwrap();
    let text = recipe(&base, &tmp.path().join("sup"), "simcse", "nli", &val)
        .replace("steps = 30", "steps = 20")
        .replace("eval_every = 30", "eval_every = 20")
        .replace("[data]", "supervised = true\n[data]");
    let r = train_task(&TaskConfig::parse(&text, &[]).unwrap(), device, false).unwrap();
    let l = &r.run.losses;
    assert!(mean(&l[l.len() - 4..]) < 0.7 * mean(&l[..3]), "{l:?}");
    assert!(r.run.eval_metrics.contains_key("eval/spearman"));
}

#[test]
fn task_files_with_a_bom_and_crlf_lines_are_read() {
    use manabi_tasks::TaskKind;
    use manabi_tasks::data::{Example, FieldMap, Label, read_examples};
    use manabi_tasks::embed::read_sentences;
    use manabi_tasks::ner::{Entity, NerExample, read_ner};
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let fields = FieldMap::new();
    // Labelled examples.
    let p = d.join("cls.jsonl");
    std::fs::write(
        &p,
        "\u{feff}{\"sentence\": \"good\", \"label\": \"positive\"}\r\n\r\n{\"sentence\": \"bad\", \"label\": 0}\r\n",
    )
    .unwrap();
    let got = read_examples(
        std::slice::from_ref(&p),
        TaskKind::Classification,
        &fields,
        true,
    )
    .unwrap();
    let example = |text: &str, label: &str, line: usize| Example {
        texts: vec![text.to_string()],
        label: Some(Label::Class(label.to_string())),
        source: (p.clone(), line),
    };
    assert_eq!(
        got,
        vec![example("good", "positive", 1), example("bad", "0", 3)]
    );
    // NER.
    let p = d.join("ner.jsonl");
    std::fs::write(
        &p,
        "\u{feff}{\"text\": \"Mara lives.\", \"entities\": [{\"name\": \"Mara\", \"span\": [0, 4], \"type\": \"PER\"}]}\r\n",
    )
    .unwrap();
    assert_eq!(
        read_ner(std::slice::from_ref(&p), &fields, true).unwrap(),
        vec![NerExample {
            text: "Mara lives.".into(),
            entities: vec![Entity {
                name: "Mara".into(),
                start: 0,
                end: 4,
                kind: "PER".into(),
            }],
            labelled: true,
            source: (p.clone(), 1),
        }]
    );
    // Sentences, from JSONL and from plain text.
    let j = d.join("s.jsonl");
    std::fs::write(
        &j,
        "\u{feff}{\"sentence1\": \"a b\", \"sentence2\": \"c\"}\r\n{\"sentence\": \"d\"}\r\n",
    )
    .unwrap();
    let t = d.join("s.txt");
    std::fs::write(&t, "\u{feff} first one \r\n\r\nsecond\r\n").unwrap();
    assert_eq!(
        read_sentences(&[j, t], &fields).unwrap(),
        ["a b", "c", "d", "first one", "second"]
    );
}

#[test]
fn embeddings_of_another_width_are_refused_naming_their_line() {
    use manabi_tasks::embed::{SentenceModel, read_embeddings, write_embeddings};
    let _rng = serial();
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let p = d.join("v.jsonl");
    let write = |text: &str| std::fs::write(&p, text).unwrap();
    let err = |width: Option<usize>| read_embeddings(&p, width).unwrap_err().to_string();
    // (file, the model's width, what the error must say)
    let cases: [(&str, Option<usize>, &[&str]); 6] = [
        (
            "{\"embedding\": [1, 2, 3]}\n\n{\"embedding\": [1, 2]}\n",
            None,
            &[
                "v.jsonl:3",
                "an embedding of 2 values, where line 1's values are 3 wide",
            ],
        ),
        (
            "{\"embedding\": [1, 2, 3]}\n",
            Some(4),
            &[
                "v.jsonl:1",
                "an embedding of 3 values, where the model's vectors are 4 wide",
            ],
        ),
        (
            "{\"embedding\": [1, \"x\"]}\n",
            None,
            &[
                "v.jsonl:1",
                "`embedding` value 2 of 2 is \"x\", not a finite number",
            ],
        ),
        (
            "{\"text\": \"a\"}\n",
            None,
            &["v.jsonl:1", "missing field `embedding`"],
        ),
        (
            "{\"embedding\": []}\n",
            None,
            &["v.jsonl:1", "`embedding` is empty"],
        ),
        ("\n", None, &["v.jsonl: no embeddings in this file"]),
    ];
    for (text, width, want) in cases {
        write(text);
        let e = err(width);
        assert!(!e.contains('\n'), "{e}");
        for w in want {
            assert!(e.contains(w), "`{w}` not in: {e}");
        }
    }
    // What `manabi embed` writes reads back; texts and vectors must pair up.
    let texts = vec!["a".to_string(), "b".to_string()];
    let vectors = vec![vec![0.5, -1.0], vec![2.0, 0.25]];
    write_embeddings(&p, &texts, &vectors).unwrap();
    assert_eq!(read_embeddings(&p, Some(2)).unwrap(), vectors);
    let e = write_embeddings(&p, &texts, &vectors[..1])
        .unwrap_err()
        .to_string();
    assert!(e.contains("v.jsonl: 2 texts but 1 embeddings"), "{e}");

    // A model folder that is not there is named as the folder; a run folder stands for its
    // newest checkpoint.
    let device = test_device();
    let base = tiny_base(d);
    let missing = d.join("nope");
    use manabi_tasks::body::{load_bert_body, load_seq_classifier, load_tagger};
    let errors = [
        SentenceModel::load(&missing, &device).map(|_| ()),
        load_classifier(&missing, &device).map(|_| ()),
        manabi_finetune::load_decoder(&missing, &device).map(|_| ()),
        load_seq_classifier(&missing, &device).map(|_| ()),
        load_tagger(&missing, &device).map(|_| ()),
        load_bert_body(&missing, &device).map(|_| ()),
        evaluate_task(
            &missing,
            std::slice::from_ref(&p),
            &d.join("o.jsonl"),
            4,
            &device,
        )
        .map(|_| ()),
    ];
    for r in errors {
        let e = r.unwrap_err().to_string();
        assert!(e.ends_with("nope: no such model folder"), "{e}");
    }
    let step = d.join("run/checkpoints/step-0000003");
    std::fs::create_dir_all(&step).unwrap();
    for f in std::fs::read_dir(&base).unwrap() {
        let f = f.unwrap().path();
        std::fs::copy(&f, step.join(f.file_name().unwrap())).unwrap();
    }
    std::fs::write(step.join("state.json"), "{}").unwrap();
    let m = SentenceModel::load(&d.join("run"), &device).unwrap();
    assert_eq!(m.width(), 32);
}
