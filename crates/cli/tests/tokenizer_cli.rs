//! The `manabi tokenizer` commands as a person runs them: what works, and one clear
//! line with a non-zero exit code for each bad input.

mod common;

use std::path::Path;

use common::{fails, manabi, ok, s};

#[test]
fn train_encode_inspect() {
    let dir = tempfile::tempdir().unwrap();
    let tok = dir.path().join("tok");
    ok(&[
        "tokenizer",
        "train",
        "--quiet",
        "--kind",
        "bpe",
        "--vocab-size",
        "512",
        "--input",
        "datasets/tiny/stories-en.txt",
        "--out",
        s(&tok),
    ]);
    assert!(tok.join("tokenizer.json").exists());

    let shards = dir.path().join("shards");
    ok(&[
        "tokenizer",
        "encode",
        "--quiet",
        "--tokenizer",
        s(&tok),
        "--input",
        "datasets/tiny/stories-en.txt",
        "--out",
        s(&shards),
    ]);
    let meta: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(shards.join("meta.json")).unwrap()).unwrap();
    assert_eq!(meta["dtype"], "u16");
    assert_eq!(meta["vocab_size"], 512);
    assert_eq!(
        meta["train"]["documents"].as_u64().unwrap() + meta["val"]["documents"].as_u64().unwrap(),
        400
    );

    let ids = ok(&[
        "tokenizer",
        "encode",
        "--tokenizer",
        s(&tok),
        "--print-ids",
        "--doc-boundary",
        "line",
        "--input",
        "datasets/tiny/stories-en.txt",
    ]);
    assert_eq!(ids.lines().count(), 400);
    assert!(ids.lines().all(|l| {
        l.split(' ')
            .all(|t| t.parse::<u32>().is_ok_and(|i| i < 512))
    }));

    let report = ok(&[
        "tokenizer",
        "inspect",
        "--tokenizer",
        s(&tok),
        "--input",
        "datasets/tiny/stories-en.txt",
        "--json",
    ]);
    let report: serde_json::Value = serde_json::from_str(&report).unwrap();
    assert_eq!(report["vocab_size"], 512);
    assert!(report["chars_per_token"].as_f64().unwrap() > 2.0);
    assert_eq!(report["unknown_tokens"], 0);
}

#[test]
fn bad_corpora_name_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, bytes: &[u8]| {
        let p = dir.path().join(name);
        std::fs::write(&p, bytes).unwrap();
        p
    };
    let out = dir.path().join("out");
    let train = |input: &Path, extra: &[&str]| {
        let mut args = vec![
            "tokenizer",
            "train",
            "--quiet",
            "--vocab-size",
            "300",
            "--out",
            s(&out),
            "--input",
            s(input),
        ];
        args.extend_from_slice(extra);
        args.iter().map(|a| a.to_string()).collect::<Vec<_>>()
    };
    let run = |args: Vec<String>| fails(&args.iter().map(String::as_str).collect::<Vec<_>>());

    let missing = dir.path().join("missing.txt");
    assert!(run(train(&missing, &[])).contains("missing.txt: No such file"));

    let bad_json = write("bad.jsonl", b"{\"text\":\"a\"}\n{not json}\n");
    assert!(run(train(&bad_json, &[])).contains("bad.jsonl:2: malformed JSON"));

    let no_field = write("nofield.jsonl", b"{\"text\":\"a\"}\n{\"body\":\"b\"}\n");
    assert!(run(train(&no_field, &[])).contains("nofield.jsonl:2: no string field `text`"));
    let line = run(train(&no_field, &["--field", "content"]));
    assert!(
        line.contains("nofield.jsonl:1: no string field `content`"),
        "{line}"
    );

    let bad_utf8 = write("bad.txt", b"ok\n\xc3\x28\n");
    assert!(run(train(&bad_utf8, &[])).contains("bad.txt:2: invalid UTF-8"));

    let empty = write("empty.txt", b"");
    assert!(run(train(&empty, &[])).contains("empty corpus"));

    // --skip-invalid counts the bad lines and goes on.
    let mixed = write(
        "mixed.jsonl",
        b"{\"text\":\"hello world\"}\n{oops\n{\"text\":\"hello there\"}\n",
    );
    let tok = dir.path().join("tok");
    ok(&[
        "tokenizer",
        "train",
        "--quiet",
        "--vocab-size",
        "300",
        "--min-frequency",
        "1",
        "--skip-invalid",
        "--input",
        s(&mixed),
        "--out",
        s(&tok),
    ]);
    let shards = dir.path().join("sh");
    let out = manabi(&[
        "tokenizer",
        "encode",
        "--quiet",
        "--skip-invalid",
        "--tokenizer",
        s(&tok),
        "--input",
        s(&mixed),
        "--out",
        s(&shards),
    ]);
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("skipped 1 invalid lines"));
}

#[test]
fn bad_options_tokenizers_and_outputs_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let en = "datasets/tiny/stories-en.txt";
    let out = dir.path().join("o");
    let line = fails(&[
        "tokenizer",
        "train",
        "--vocab-size",
        "100",
        "--input",
        en,
        "--out",
        s(&out),
    ]);
    assert!(line.contains("vocab size 100 is too small"), "{line}");
    let line = fails(&[
        "tokenizer",
        "train",
        "--kind",
        "char",
        "--vocab-size",
        "20",
        "--input",
        en,
        "--out",
        s(&out),
    ]);
    assert!(line.contains("distinct characters"), "{line}");

    // An output under a regular file cannot be created.
    let file = dir.path().join("file");
    std::fs::write(&file, "x").unwrap();
    let blocked = file.join("tok");
    let line = fails(&[
        "tokenizer",
        "train",
        "--quiet",
        "--vocab-size",
        "300",
        "--input",
        en,
        "--out",
        s(&blocked),
    ]);
    assert!(line.contains(s(&file)), "{line}");

    let bad_tok = dir.path().join("tokenizer.json");
    std::fs::write(&bad_tok, "{\"model\": {\"type\": \"BPE\", \"vocab\": 7}}").unwrap();
    let line = fails(&["tokenizer", "inspect", "--tokenizer", s(&bad_tok)]);
    assert!(
        line.contains("tokenizer.json: not a usable tokenizer.json"),
        "{line}"
    );
    let line = fails(&[
        "tokenizer",
        "encode",
        "--tokenizer",
        s(&dir.path().join("none.json")),
        "--input",
        en,
        "--out",
        s(&out),
    ]);
    assert!(line.contains("none.json"), "{line}");

    let good = "fixtures/tokenize/bpe-en";
    let line = fails(&[
        "tokenizer",
        "encode",
        "--quiet",
        "--tokenizer",
        good,
        "--eos-token",
        "</s>",
        "--input",
        en,
        "--out",
        s(&out),
    ]);
    assert!(line.contains("no token `</s>`"), "{line}");
    assert!(!out.exists(), "nothing half-written");
    let line = fails(&[
        "tokenizer",
        "encode",
        "--quiet",
        "--tokenizer",
        good,
        "--val-fraction",
        "1.5",
        "--input",
        en,
        "--out",
        s(&out),
    ]);
    assert!(line.contains("val-fraction"), "{line}");
}

#[test]
fn devices_are_checked() {
    // clap reports the bad value (and a hint line) with exit code 2.
    let out = manabi(&["--device", "tpu", "pipeline", "--out", "/tmp/never"]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr
            .lines()
            .next()
            .unwrap()
            .contains("unknown device `tpu`"),
        "{stderr}"
    );
    if !cfg!(feature = "cuda") {
        let dir = tempfile::tempdir().unwrap();
        let line = fails(&["--device", "cuda", "pipeline", "--out", s(dir.path())]);
        assert!(line.contains("--features cuda"), "{line}");
    }
}
