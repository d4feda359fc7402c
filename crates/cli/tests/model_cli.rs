//! `manabi eval`, `generate` and `export` on the tiny Hugging Face fixtures.

mod common;

use common::{fails, ok, root, s};

#[test]
fn eval_matches_transformers_loss() {
    for name in ["gpt2-eval", "llama-eval"] {
        let model = format!("fixtures/models/{name}");
        let expected: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(root().join(&model).join("expected_eval.json")).unwrap(),
        )
        .unwrap();
        for context in ["64", "40"] {
            let mut args = vec![
                "eval",
                "--model",
                &model,
                "--data",
                "fixtures/models/eval.txt",
                "--json",
            ];
            if context != "64" {
                args.extend(["--context", context]);
            }
            let got: serde_json::Value = serde_json::from_str(&ok(&args)).unwrap();
            let want = &expected["results"][context];
            assert_eq!(got["tokens"], want["tokens"], "{name}/{context}");
            let (g, w) = (
                got["loss"].as_f64().unwrap(),
                want["loss"].as_f64().unwrap(),
            );
            assert!(
                (g - w).abs() / w <= 1e-4,
                "{name}/{context}: loss {g} vs transformers {w}"
            );
            assert!((got["perplexity"].as_f64().unwrap() - g.exp()).abs() < 1e-6);
        }
    }
}

#[test]
fn generate_and_export() {
    let model = "fixtures/models/gpt2-eval";
    let args = [
        "generate",
        "--model",
        model,
        "--prompt",
        "The wind",
        "--prompt",
        "Aiko",
        "--max-new-tokens",
        "12",
        "--temperature",
        "0.9",
        "--seed",
        "3",
    ];
    let a = ok(&args);
    assert_eq!(a.lines().count(), 2, "{a}");
    assert!(a.lines().next().unwrap().starts_with("The wind"));
    assert_eq!(a, ok(&args), "seeded generation is reproducible");
    let mut no_cache = args.to_vec();
    no_cache.push("--no-cache");
    assert_eq!(a, ok(&no_cache), "the KV cache changes nothing");

    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("hf");
    ok(&[
        "export",
        "--model",
        model,
        "--format",
        "hf",
        "--out",
        s(&out),
    ]);
    for f in ["config.json", "model.safetensors", "tokenizer.json"] {
        assert!(out.join(f).exists(), "{f}");
    }
    let before = ok(&[
        "eval",
        "--model",
        model,
        "--data",
        "fixtures/models/eval.txt",
        "--json",
    ]);
    let after = ok(&[
        "eval",
        "--model",
        s(&out),
        "--data",
        "fixtures/models/eval.txt",
        "--json",
    ]);
    assert_eq!(before, after);
}

#[test]
fn model_commands_report_bad_input() {
    let dir = tempfile::tempdir().unwrap();
    let line = fails(&[
        "eval",
        "--model",
        s(dir.path()),
        "--data",
        "fixtures/models/eval.txt",
    ]);
    assert!(
        line.contains("holds no model: neither model.toml"),
        "{line}"
    );
    let line = fails(&[
        "generate",
        "--model",
        "fixtures/models/gpt2",
        "--prompt",
        "hi",
    ]);
    assert!(
        line.contains("no tokenizer.json beside the model"),
        "{line}"
    );
    let line = fails(&[
        "eval",
        "--model",
        "fixtures/models/gpt2-eval",
        "--data",
        "nope.txt",
    ]);
    assert!(line.contains("nope.txt"), "{line}");
    let line = fails(&[
        "eval",
        "--model",
        "fixtures/models/gpt2-eval",
        "--data",
        "fixtures/models/eval.txt",
        "--context",
        "100",
    ]);
    assert!(line.contains("context 100 must be in [2, 64]"), "{line}");
    let line = fails(&[
        "generate",
        "--model",
        "fixtures/models/gpt2-eval",
        "--prompt",
        "hi",
        "--top-p",
        "2",
    ]);
    assert!(line.contains("top-p"), "{line}");
}
