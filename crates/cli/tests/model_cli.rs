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
fn eval_scores_bf16_and_int8_weights_near_f32() {
    // The perplexity of a model kept in bf16 or weight-only int8, against the f32 one:
    // close (the rounding of the weights), not the same.
    let perplexity = |dtype: &str| {
        let out = ok(&[
            "eval",
            "--model",
            "fixtures/models/llama-eval",
            "--data",
            "fixtures/models/eval.txt",
            "--json",
            "--dtype",
            dtype,
        ]);
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        v["perplexity"].as_f64().unwrap()
    };
    let f32 = perplexity("f32");
    for dtype in ["bf16", "int8"] {
        let p = perplexity(dtype);
        let change = (p - f32).abs() / f32;
        assert!(
            change > 0.0 && change < 0.02,
            "{dtype}: perplexity {p} vs {f32} in f32"
        );
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
    // Weights kept in bf16: generates, reproducibly, with and without the cache.
    let mut bf16 = args.to_vec();
    bf16.extend(["--dtype", "bf16"]);
    let b = ok(&bf16);
    assert_eq!(b.lines().count(), 2, "{b}");
    assert_eq!(b, ok(&bf16), "bf16 generation is reproducible");
    bf16.push("--no-cache");
    assert_eq!(b, ok(&bf16), "the KV cache changes nothing in bf16");
    // Weight-only int8: the same.
    let mut int8 = args.to_vec();
    int8.extend(["--dtype", "int8"]);
    let q = ok(&int8);
    assert_eq!(q.lines().count(), 2, "{q}");
    assert_eq!(q, ok(&int8), "int8 generation is reproducible");
    int8.push("--no-cache");
    assert_eq!(q, ok(&int8), "the KV cache changes nothing in int8");
    for dtype in ["bf16", "int8"] {
        let line = fails(&[
            "generate",
            "--model",
            "fixtures/models/t5-v1_1",
            "--prompt",
            "hi",
            "--dtype",
            dtype,
        ]);
        assert!(
            line.contains(&format!("--dtype {dtype}")) && line.contains("T5"),
            "{line}"
        );
    }

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

/// Greedy `generate` from a copy of `fixtures/models/llama-eval` at `dir`: (stdout, number
/// of generated tokens).
fn greedy(dir: &std::path::Path, extra: &[&str]) -> (String, usize) {
    let mut args = vec![
        "generate",
        "--model",
        s(dir),
        "--prompt",
        "The wind",
        "--max-new-tokens",
        "12",
    ];
    args.extend(extra);
    let out = common::manabi(&args);
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(out.status.success(), "{args:?} failed: {stderr}");
    let n = stderr
        .lines()
        .find_map(|l| l.split_once(" tokens in ")?.0.trim().parse().ok())
        .unwrap_or_else(|| panic!("no token count in {stderr:?}"));
    (String::from_utf8_lossy(&out.stdout).to_string(), n)
}

#[test]
fn generate_stops_at_every_eos_id_the_folder_declares() {
    // transformers' greedy continuation of "The wind" on llama-eval is
    // [372, 70, 149, 267, 376, 100, …] (" Noah", "b", "Ô", " d", " wor", …); its
    // generation_config.json names EOS 2, which it never produces.
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("llama");
    std::fs::create_dir(&dir).unwrap();
    let src = root().join("fixtures/models/llama-eval");
    for f in [
        "config.json",
        "generation_config.json",
        "model.safetensors",
        "tokenizer.json",
    ] {
        std::fs::copy(src.join(f), dir.join(f)).unwrap();
    }
    let (full, n) = greedy(&dir, &[]);
    assert_eq!(n, 12, "{full}");
    assert!(full.starts_with("The wind Noahb"), "{full}");
    let stopped = |text: &str| {
        let text = text.trim_end_matches('\n');
        assert!(
            full.starts_with(text),
            "{text:?} is not a prefix of {full:?}"
        );
    };

    // Every listed id stops generation: 267 is the fourth greedy token.
    let gen_cfg = dir.join("generation_config.json");
    std::fs::write(
        &gen_cfg,
        r#"{"eos_token_id": [267, 500], "pad_token_id": 0}"#,
    )
    .unwrap();
    let (text, n) = greedy(&dir, &[]);
    assert_eq!(n, 3, "{text}");
    stopped(&text);
    // --eos-token overrides the folder: " wor" (376) is the fifth.
    let (text, n) = greedy(&dir, &["--eos-token", "Ġwor"]);
    assert_eq!(n, 4, "{text}");
    stopped(&text);

    // Without generation_config.json, config.json's `eos_token_id` (149, the third).
    std::fs::remove_file(&gen_cfg).unwrap();
    let config = dir.join("config.json");
    let mut v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&config).unwrap()).unwrap();
    v["eos_token_id"] = serde_json::json!(149);
    std::fs::write(&config, v.to_string()).unwrap();
    let (text, n) = greedy(&dir, &[]);
    assert_eq!(n, 2, "{text}");
    stopped(&text);

    // A wrong type is one line naming the file and the key.
    std::fs::write(&gen_cfg, r#"{"eos_token_id": "</s>"}"#).unwrap();
    let line = fails(&["generate", "--model", s(&dir), "--prompt", "The wind"]);
    assert!(
        line.contains("generation_config.json: `eos_token_id` must be a token id"),
        "{line}"
    );
}

/// A tokenizer for the 64-token fixtures (`gpt2`, `llama-gqa`, which ship none): `char-en`
/// cut to its first 64 ids (`v`, `w` and `y` become `<unk>`).
fn tokenizer_64(dir: &std::path::Path) -> std::path::PathBuf {
    let src = root().join("fixtures/tokenize/char-en/tokenizer.json");
    let mut v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(src).unwrap()).unwrap();
    let vocab: serde_json::Map<String, serde_json::Value> = v["model"]["vocab"]
        .as_object()
        .unwrap()
        .iter()
        .filter(|(_, id)| id.as_u64().unwrap() < 64)
        .map(|(k, id)| (k.clone(), id.clone()))
        .collect();
    v["model"]["vocab"] = serde_json::Value::Object(vocab);
    let path = dir.join("tokenizer.json");
    std::fs::write(&path, v.to_string()).unwrap();
    path
}

#[test]
fn eval_and_export_take_a_peft_adapter() {
    let dir = tempfile::tempdir().unwrap();
    let tok = tokenizer_64(dir.path());
    let data = dir.path().join("data.txt");
    std::fs::write(
        &data,
        "the cat sat on the mat. a dog ran to the park. the sun is hot and the tea is cold. \
         Sora and Jun read a book at the cafe.\n",
    )
    .unwrap();
    // fixtures/peft/gpt2-lora was trained by Python peft on fixtures/models/gpt2.
    let (base, adapter) = ("fixtures/models/gpt2", "fixtures/peft/gpt2-lora");
    let loss = |model: &str, adapter: Option<&str>| -> f64 {
        let mut a = vec![
            "eval",
            "--model",
            model,
            "--tokenizer",
            s(&tok),
            "--data",
            s(&data),
            "--json",
        ];
        if let Some(p) = adapter {
            a.extend(["--adapter", p]);
        }
        let v: serde_json::Value = serde_json::from_str(&ok(&a)).unwrap();
        v["loss"].as_f64().unwrap()
    };
    let plain = loss(base, None);
    let adapted = loss(base, Some(adapter));
    assert!(
        adapted.is_finite() && (adapted - plain).abs() > 1e-4,
        "the adapter changes nothing: {adapted} vs {plain}"
    );
    // The adapter merged into the base by `export --adapter` scores the same.
    let merged = dir.path().join("merged");
    ok(&[
        "export",
        "--model",
        base,
        "--adapter",
        adapter,
        "--out",
        s(&merged),
    ]);
    let m = loss(s(&merged), None);
    assert!(
        (m - adapted).abs() <= 1e-6 * adapted.abs().max(1.0),
        "merged {m} vs base + adapter {adapted}"
    );

    // A missing adapter folder is one line naming it, in both modes of eval.
    let nope = dir.path().join("no-adapter");
    for mode in ["--data", "--task"] {
        let line = fails(&[
            "eval",
            "--model",
            base,
            "--tokenizer",
            s(&tok),
            "--adapter",
            s(&nope),
            mode,
            s(&data),
        ]);
        assert!(
            line.contains("no-adapter: no such adapter folder"),
            "{line}"
        );
    }
    let line = fails(&[
        "export",
        "--model",
        base,
        "--adapter",
        adapter,
        "--format",
        "peft",
        "--out",
        s(&dir.path().join("x")),
    ]);
    assert!(line.contains("--format hf"), "{line}");
}
