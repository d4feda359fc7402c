//! `manabi task --model HF_DIR --data FILE` on Hugging Face task folders without a
//! `task.toml` (fixtures/hf_tasks, made by scripts/hf_task_fixtures.py): the same labels,
//! class probabilities and scores as transformers' `pipeline()` (within 1e-4), the same
//! entities as `token-classification` with `aggregation_strategy="simple"`, the same
//! sentence vectors (CLS and mean pooling) and the same greedy T5 summaries — also with a
//! `BertJapaneseTokenizer` (vocab.txt + MeCab; fixtures/hf_tasks/bertja-*, made by
//! scripts/hf_bertja_task_fixtures.py); and one-line
//! errors for folders that are not task models or whose labels do not fit their head.

mod common;

use std::path::{Path, PathBuf};

use common::{fails, ok, root, s};
use serde_json::Value;

const TOL: f64 = 1e-4;

fn fixture(name: &str) -> String {
    format!("fixtures/hf_tasks/{name}")
}

fn expected(name: &str) -> Value {
    let path = root().join(fixture(&format!("expected/{name}.json")));
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn lines(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// Runs `manabi task --model fixtures/hf_tasks/MODEL --data fixtures/hf_tasks/data/DATA`
/// with `extra` flags; its stdout and prediction lines.
fn predict(model: &str, data: &str, extra: &[&str], out: &Path) -> (String, Vec<Value>) {
    let (model, data) = (fixture(model), fixture(&format!("data/{data}")));
    let mut args = vec!["task", "--model", &model, "--data", &data, "--out", s(out)];
    args.extend_from_slice(extra);
    let stdout = ok(&args);
    (stdout, lines(out))
}

fn close(what: &str, got: f64, want: f64) {
    assert!(
        (got - want).abs() <= TOL,
        "{what}: {got} vs transformers {want}"
    );
}

fn f64s(v: &Value) -> Vec<f64> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect()
}

#[test]
fn sequence_classifiers_match_the_text_classification_pipeline() {
    let tmp = tempfile::tempdir().unwrap();
    // BERT on single sentences, BERT on `text` + `text_pair` pairs, a Llama classifier
    // (its tokenizer's BOS first, read at the last token).
    for (model, data, fields) in [
        ("bert-sentiment", "sentiment.jsonl", &["sentence"][..]),
        ("bert-nli", "nli.jsonl", &["sentence1", "sentence2"][..]),
        ("llama-sentiment", "sentiment.jsonl", &["sentence"][..]),
        // BertJapaneseTokenizer (vocab.txt, MeCab with the tiny fixture dictionary).
        ("bertja-sentiment", "sentiment-ja.jsonl", &["sentence"][..]),
    ] {
        let out = tmp.path().join(format!("{model}.jsonl"));
        let (stdout, got) = predict(model, data, &[], &out);
        let want = expected(model);
        let outputs = want["outputs"].as_array().unwrap();
        assert_eq!(got.len(), outputs.len(), "{model}");
        for (i, (g, w)) in got.iter().zip(outputs).enumerate() {
            for f in fields {
                assert!(g[*f].is_string(), "{model} line {i}: no `{f}` in {g}");
            }
            assert!(g["label"].is_string(), "{model} line {i}: gold label kept");
            assert_eq!(g["pred"], w["label"], "{model} line {i}");
            let (probs, scores) = (f64s(&g["probs"]), f64s(&w["scores"]));
            assert_eq!(probs.len(), scores.len(), "{model} line {i}");
            for (p, q) in probs.iter().zip(&scores) {
                close(&format!("{model} line {i}"), *p, *q);
            }
        }
        let accuracy = format!("accuracy {:.4}", want["accuracy"].as_f64().unwrap());
        assert!(
            stdout.contains(&accuracy),
            "{model}: `{accuracy}` not in {stdout}"
        );
    }
}

#[test]
fn regression_heads_give_the_raw_score() {
    let tmp = tempfile::tempdir().unwrap();
    // BERT with one output and problem_type "regression" on STS pairs (gold scores:
    // Pearson and Spearman), a Llama reward model on single sentences without labels.
    for (model, data) in [
        ("bert-sts", "sts.jsonl"),
        ("llama-reward", "sentences.jsonl"),
    ] {
        let out = tmp.path().join(format!("{model}.jsonl"));
        let (stdout, got) = predict(model, data, &[], &out);
        let want = expected(model);
        let outputs = want["outputs"].as_array().unwrap();
        assert_eq!(got.len(), outputs.len(), "{model}");
        for (i, (g, w)) in got.iter().zip(outputs).enumerate() {
            assert!(g.get("probs").is_none(), "{model} line {i}: {g}");
            close(
                &format!("{model} line {i}"),
                g["pred"].as_f64().unwrap(),
                w["score"].as_f64().unwrap(),
            );
        }
        let scored = model == "bert-sts";
        assert_eq!(stdout.contains("spearman"), scored, "{model}: {stdout}");
    }
}

#[test]
fn token_classifier_matches_the_simple_aggregation() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("ner.jsonl");
    let (stdout, got) = predict("bert-ner", "ner.jsonl", &[], &out);
    let want = expected("bert-ner");
    let outputs = want["outputs"].as_array().unwrap();
    assert_eq!(got.len(), outputs.len());
    for (i, (g, w)) in got.iter().zip(outputs).enumerate() {
        let (pred, ents) = (g["predicted"].as_array().unwrap(), w.as_array().unwrap());
        let kind = |e: &Value| e["type"].as_str().unwrap().to_string();
        let got_spans: Vec<(String, u64, u64)> = pred
            .iter()
            .map(|e| {
                (
                    kind(e),
                    e["span"][0].as_u64().unwrap(),
                    e["span"][1].as_u64().unwrap(),
                )
            })
            .collect();
        let want_spans: Vec<(String, u64, u64)> = ents
            .iter()
            .map(|e| {
                (
                    kind(e),
                    e["start"].as_u64().unwrap(),
                    e["end"].as_u64().unwrap(),
                )
            })
            .collect();
        assert_eq!(got_spans, want_spans, "line {i}: {}", g["text"]);
        for (p, e) in pred.iter().zip(ents) {
            close(
                &format!("line {i} score"),
                p["score"].as_f64().unwrap(),
                e["score"].as_f64().unwrap(),
            );
        }
        // The gold entities stay beside the predictions.
        assert!(g["entities"].is_array(), "line {i}");
    }
    assert!(stdout.contains("f1 "), "{stdout}");
}

#[test]
fn a_bert_japanese_token_classifier_matches_the_slow_pipeline() {
    // transformers' pipeline has no offsets for a slow tokenizer (start / end are null)
    // and names each group by its tokens joined with spaces; manabi gives spans of the
    // text, whose text is that word without the spaces (where no [UNK] hides it).
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("ner.jsonl");
    let (_, got) = predict("bertja-ner", "ner-ja.jsonl", &[], &out);
    let want = expected("bertja-ner");
    let outputs = want["outputs"].as_array().unwrap();
    assert_eq!(got.len(), outputs.len());
    let mut named = 0;
    for (i, (g, w)) in got.iter().zip(outputs).enumerate() {
        let text: Vec<char> = g["text"].as_str().unwrap().chars().collect();
        let (pred, ents) = (g["predicted"].as_array().unwrap(), w.as_array().unwrap());
        assert_eq!(pred.len(), ents.len(), "line {i}: {}", g["text"]);
        for (p, e) in pred.iter().zip(ents) {
            assert_eq!(p["type"], e["type"], "line {i}");
            close(
                &format!("line {i} score"),
                p["score"].as_f64().unwrap(),
                e["score"].as_f64().unwrap(),
            );
            let (s, t) = (
                p["span"][0].as_u64().unwrap() as usize,
                p["span"][1].as_u64().unwrap() as usize,
            );
            let span: String = text[s..t].iter().collect();
            let word = e["word"]
                .as_str()
                .unwrap()
                .replace(' ', "")
                .replace("##", "");
            if !word.contains("[UNK]") {
                assert_eq!(span, word, "line {i}");
                named += 1;
            }
        }
    }
    assert!(named >= 30, "{named} entities compared by text");
}

#[test]
fn fine_tuning_from_a_bert_japanese_body_keeps_its_mecab_step() {
    // A task run on the body of a BertJapaneseTokenizer folder stores the rebuilt pipeline
    // and its MeCab step in every checkpoint, so the run splits words as the folder did.
    let tmp = tempfile::tempdir().unwrap();
    let run = tmp.path().join("run");
    let out = format!("run.out={}", s(&run));
    ok(&[
        "task",
        "--config",
        "configs/tasks/sentiment.toml",
        "--set",
        "model.path=fixtures/hf_tasks/bertja-sentiment",
        "--set",
        "train.steps=3",
        "--set",
        "train.eval_every=3",
        "--set",
        "data.val=[\"fixtures/hf_tasks/data/sentiment-ja.jsonl\"]",
        "--set",
        "data.test=[]",
        "--set",
        &out,
    ]);
    let ckpt = run.join("checkpoints/step-0000003");
    assert!(
        ckpt.join("manabi-pretokenize.json").is_file(),
        "no sidecar in {}",
        ckpt.display()
    );
    let text = "吾輩は猫である。名前はまだ無い。ｶﾀｶﾅ";
    let split = |tok: &str| ok(&["tokenizer", "encode", "--tokenizer", tok, "--text", text]);
    assert_eq!(split(s(&ckpt)), split("fixtures/hf_tasks/bertja-sentiment"));
}

/// Runs `manabi task --config CONFIG` from the Hugging Face folder `model` with a zero
/// learning rate of 1e-12 (the weights stay as loaded, to rounding), training and
/// validating on fixtures/hf_tasks/data/VAL (or the path VAL);
/// its stdout and validation predictions.
fn continue_frozen(config: &str, model: &str, val: &str, tmp: &Path) -> (String, Vec<Value>) {
    let run = tmp.join(model);
    let val = if val.contains('/') {
        val.to_string()
    } else {
        fixture(&format!("data/{val}"))
    };
    let sets = [
        format!("model.path={}", fixture(model)),
        format!("data.val=[\"{val}\"]"),
        format!("data.train=[\"{val}\"]"),
        "data.test=[]".to_string(),
        "train.steps=1".to_string(),
        "train.eval_every=1".to_string(),
        "train.lr=1e-12".to_string(),
        "train.min_lr=1e-12".to_string(),
        "train.warmup_steps=0".to_string(),
        format!("run.out={}", s(&run)),
    ];
    let mut args = vec!["task", "--config", config];
    for set in &sets {
        args.extend(["--set", set.as_str()]);
    }
    let stdout = ok(&args);
    (stdout, lines(&run.join("predictions-val.jsonl")))
}

#[test]
fn fine_tuning_continues_from_a_hugging_face_head() {
    // The folder's classifier is kept (not a fresh head): with a learning rate of 1e-12 the
    // run's predictions are transformers' own, and a tagger whose tags come in another
    // order than the task's is reordered to it.
    let tmp = tempfile::tempdir().unwrap();
    let (stdout, got) = continue_frozen(
        "configs/tasks/sentiment.toml",
        "bert-sentiment",
        "sentiment.jsonl",
        tmp.path(),
    );
    assert!(
        stdout.contains("continuing from the score head"),
        "{stdout}"
    );
    let want = expected("bert-sentiment");
    let outputs = want["outputs"].as_array().unwrap();
    assert_eq!(got.len(), outputs.len());
    for (i, (g, w)) in got.iter().zip(outputs).enumerate() {
        assert_eq!(g["pred"], w["label"], "line {i}");
    }

    // NLI: the folder's labels (entailment, neutral, contradiction) in the task's order
    // (entailment, contradiction, neutral).
    // (The pipeline's `text` / `text_pair` renamed to the recipe's fields.)
    let nli = tmp.path().join("nli-val.jsonl");
    let renamed: Vec<String> = lines(&root().join(fixture("data/nli.jsonl")))
        .iter()
        .map(|v| {
            serde_json::json!({"sentence1": v["text"], "sentence2": v["text_pair"],
                               "label": v["label"]})
            .to_string()
        })
        .collect();
    std::fs::write(&nli, renamed.join("\n") + "\n").unwrap();
    let (_, got) = continue_frozen("configs/tasks/nli.toml", "bert-nli", s(&nli), tmp.path());
    let want = expected("bert-nli");
    for (i, (g, w)) in got
        .iter()
        .zip(want["outputs"].as_array().unwrap())
        .enumerate()
    {
        assert_eq!(g["pred"], w["label"], "nli line {i}");
    }

    // NER: the folder's tags (B-LOC, B-PER, …, O) reordered to the task's (O, B-PER, …).
    // The run's pipeline-style scores (`*_default`: transformers' simple aggregation) are
    // those of predicting with the folder itself, which match transformers.
    let (stdout, _) = continue_frozen(
        "configs/tasks/ner.toml",
        "bertja-ner",
        "ner-ja.jsonl",
        tmp.path(),
    );
    assert!(
        stdout.contains("continuing from the token head"),
        "{stdout}"
    );
    let (direct, _) = predict(
        "bertja-ner",
        "ner-ja.jsonl",
        &[],
        &tmp.path().join("ner.jsonl"),
    );
    let metric = |text: &str, key: &str| -> String {
        let at = text
            .find(&format!("{key} "))
            .unwrap_or_else(|| panic!("{key} in {text}"));
        text[at + key.len() + 1..]
            .split([',', ' ', '\n', ')'])
            .next()
            .unwrap()
            .to_string()
    };
    for key in ["precision", "recall", "f1"] {
        assert_eq!(
            metric(&stdout, &format!("{key}_default")),
            metric(&direct, key),
            "{key}: {stdout}\n{direct}"
        );
    }

    // Other labels than the folder's head: a new head, said so.
    let (stdout, _) = continue_frozen(
        "configs/tasks/nli.toml",
        "bert-sentiment",
        s(&nli),
        tmp.path(),
    );
    assert!(stdout.contains("a new head"), "{stdout}");
}

#[test]
fn bert_model_embeds_with_cls_and_mean_pooling() {
    let tmp = tempfile::tempdir().unwrap();
    let want = expected("bert-embed");
    let outputs = want["outputs"].as_array().unwrap();
    // Mean pooling is the default.
    for (pooling, flags) in [("mean", &[][..]), ("cls", &["--pooling", "cls"][..])] {
        let out = tmp.path().join(format!("{pooling}.jsonl"));
        let (_, got) = predict("bert-embed", "sentences.jsonl", flags, &out);
        assert_eq!(got.len(), outputs.len(), "{pooling}");
        for (i, (g, w)) in got.iter().zip(outputs).enumerate() {
            let (v, r) = (f64s(&g["embedding"]), f64s(&w[pooling]));
            assert_eq!(v.len(), r.len(), "{pooling} line {i}");
            let diff = v
                .iter()
                .zip(&r)
                .map(|(a, b)| (a - b).abs())
                .fold(0.0, f64::max);
            assert!(diff <= TOL, "{pooling} line {i}: max |Δ| = {diff}");
        }
    }
}

#[test]
fn sentence_transformers_folders_embed_as_encode_does() {
    // modules.json: CLS pooling, Normalize and max_seq_length 12 (most sentences cut);
    // mean pooling written by sentence-transformers 6 (its module paths, no Normalize).
    let tmp = tempfile::tempdir().unwrap();
    for name in ["st-embed", "st-embed-mean"] {
        let want = expected(name);
        let outputs = want["outputs"].as_array().unwrap();
        let out = tmp.path().join(format!("{name}.jsonl"));
        let (_, got) = predict(name, "sentences.jsonl", &[], &out);
        assert_eq!(got.len(), outputs.len(), "{name}");
        for (i, (g, w)) in got.iter().zip(outputs).enumerate() {
            let (v, r) = (f64s(&g["embedding"]), f64s(&w["embedding"]));
            assert_eq!(v.len(), r.len(), "{name} line {i}");
            let diff = v
                .iter()
                .zip(&r)
                .map(|(a, b)| (a - b).abs())
                .fold(0.0, f64::max);
            assert!(diff <= TOL, "{name} line {i}: max |Δ| = {diff}");
        }
    }
    // A module manabi does not run is named, not skipped.
    let dir = tmp.path().join("dense");
    std::fs::create_dir(&dir).unwrap();
    for entry in std::fs::read_dir(root().join(fixture("st-embed-mean"))).unwrap() {
        let entry = entry.unwrap();
        if entry.path().is_file() {
            std::fs::copy(entry.path(), dir.join(entry.file_name())).unwrap();
        }
    }
    std::fs::create_dir(dir.join("1_Pooling")).unwrap();
    std::fs::copy(
        root()
            .join(fixture("st-embed-mean"))
            .join("1_Pooling/config.json"),
        dir.join("1_Pooling/config.json"),
    )
    .unwrap();
    let modules = r#"[{"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
        {"idx": 2, "name": "2", "path": "2_Dense", "type": "sentence_transformers.models.Dense"}]"#;
    std::fs::write(dir.join("modules.json"), modules).unwrap();
    let data = root().join(fixture("data/sentences.jsonl"));
    let err = fails(&[
        "task",
        "--model",
        s(&dir),
        "--data",
        s(&data),
        "--out",
        s(&tmp.path().join("x.jsonl")),
    ]);
    assert!(err.contains("modules.json"), "{err}");
    assert!(err.contains("Dense) is not reproduced"), "{err}");
}

#[test]
fn t5_summarises_as_the_summarization_pipeline() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("summaries.jsonl");
    // Prefix and max_length come from config.json's task_specific_params.summarization.
    let (stdout, got) = predict("t5-summarise", "summarise.jsonl", &[], &out);
    let want = expected("t5-summarise");
    let outputs = want["outputs"].as_array().unwrap();
    assert_eq!(got.len(), outputs.len());
    for (i, (g, w)) in got.iter().zip(outputs).enumerate() {
        assert!(
            g["document"].is_string() && g["summary"].is_string(),
            "line {i}"
        );
        assert_eq!(g["pred"], w["summary"], "line {i} (ids {})", w["ids"]);
    }
    assert!(stdout.contains("rouge1"), "{stdout}");
    // Fewer tokens by flag: every summary is a prefix of the full one's tokens, so
    // never longer.
    let out = tmp.path().join("short.jsonl");
    let (_, short) = predict(
        "t5-summarise",
        "summarise.jsonl",
        &["--max-new-tokens", "3"],
        &out,
    );
    for (a, b) in short.iter().zip(&got) {
        let (a, b) = (a["pred"].as_str().unwrap(), b["pred"].as_str().unwrap());
        assert!(a.chars().count() <= b.chars().count(), "{a:?} vs {b:?}");
    }
}

/// A copy of `fixtures/hf_tasks/NAME` in `dir`, its config.json changed by `edit`.
fn edited(dir: &Path, name: &str, edit: impl FnOnce(&mut Value)) -> PathBuf {
    let (from, to) = (root().join(fixture(name)), dir.join(name));
    std::fs::create_dir_all(&to).unwrap();
    for entry in std::fs::read_dir(&from).unwrap() {
        let p = entry.unwrap().path();
        std::fs::copy(&p, to.join(p.file_name().unwrap())).unwrap();
    }
    let path = to.join("config.json");
    let mut v: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    edit(&mut v);
    std::fs::write(&path, serde_json::to_string_pretty(&v).unwrap()).unwrap();
    to
}

#[test]
fn folders_that_cannot_predict_say_why_in_one_line() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("p.jsonl");
    let data = fixture("data/nli.jsonl");
    let run = |model: &str, extra: &[&str]| {
        let mut args = vec!["task", "--model", model, "--data", &data, "--out", s(&out)];
        args.extend_from_slice(extra);
        fails(&args)
    };
    // Not a task head: the architecture and what is supported.
    for (model, arch) in [
        ("fixtures/models/llama-eval", "LlamaForCausalLM"),
        ("fixtures/models/bert", "BertForMaskedLM"),
    ] {
        let e = run(model, &[]);
        for w in [
            "config.json: architectures",
            arch,
            "ForSequenceClassification",
            "BertModel",
            "T5ForConditionalGeneration",
        ] {
            assert!(e.contains(w), "`{w}` not in: {e}");
        }
    }
    // id2label of another size than the classifier, or missing (transformers' default
    // of 2 labels, where the head has 3): the config key.
    let fewer = edited(tmp.path(), "bert-nli", |v| {
        v["id2label"].as_object_mut().unwrap().remove("2");
    });
    let e = run(s(&fewer), &[]);
    for w in [
        "config.json: id2label",
        "names 2 labels",
        "`classifier.weight` has 3 outputs",
    ] {
        assert!(e.contains(w), "`{w}` not in: {e}");
    }
    let none = tmp.path().join("none");
    std::fs::create_dir(&none).unwrap();
    let missing = edited(&none, "bert-nli", |v| {
        let obj = v.as_object_mut().unwrap();
        obj.remove("id2label");
        obj.remove("label2id");
    });
    let e = run(s(&missing), &[]);
    for w in [
        "config.json: id2label",
        "is missing",
        "default of 2 labels",
        "3 outputs",
    ] {
        assert!(e.contains(w), "`{w}` not in: {e}");
    }
    // Ids that are not 0..n.
    let gaps = tmp.path().join("gaps");
    std::fs::create_dir(&gaps).unwrap();
    let gaps = edited(&gaps, "bert-nli", |v| {
        let table = v["id2label"].as_object_mut().unwrap();
        let name = table.remove("1").unwrap();
        table.insert("7".into(), name);
    });
    let e = run(s(&gaps), &[]);
    assert!(
        e.contains("config.json: id2label") && e.contains("no label for id 1"),
        "{e}"
    );
    // A flag for another kind of folder.
    let e = run(&fixture("bert-nli"), &["--pooling", "cls"]);
    assert!(
        e.contains("--pooling") && e.contains("BertForSequenceClassification"),
        "{e}"
    );
}
