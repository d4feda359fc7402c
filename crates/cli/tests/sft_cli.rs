//! `manabi sft` and the exports of its checkpoints, run as a person runs them.

mod common;

use std::path::Path;

use common::{fails, ok, root, s};

/// A tiny base model folder with the bpe-en tokenizer (made through `manabi pretrain`).
fn base(dir: &Path) -> std::path::PathBuf {
    let text = format!(
        r#"
[run]
out = "{out}"
[model]
family = "gpt2"
vocab_size = 0
max_positions = 128
d_model = 32
n_layers = 2
n_heads = 4
d_ff = 64
positions = "learned"
norm = "layernorm"
activation = "gelu_tanh"
[data]
inputs = ["{input}"]
block_size = 64
doc_boundary = "line"
tokenizer = {{ path = "{tok}" }}
[train]
steps = 2
batch_size = 2
warmup_steps = 1
eval_batches = 1
progress = false
"#,
        out = dir.join("base").display(),
        input = root().join("datasets/sft/world-en.txt").display(),
        tok = root()
            .join("fixtures/tokenize/bpe-en/tokenizer.json")
            .display(),
    );
    let cfg = dir.join("base.toml");
    std::fs::write(&cfg, text).unwrap();
    ok(&["pretrain", "--config", s(&cfg)]);
    dir.join("base/checkpoints/step-0000002")
}

#[test]
fn sft_with_lora_then_export_peft_and_merged_hf() {
    let dir = tempfile::tempdir().unwrap();
    let base = base(dir.path());
    let out = dir.path().join("sft");
    let sets = [
        format!("run.out=\"{}\"", out.display()),
        format!("model.path=\"{}\"", base.display()),
        "peft.method=\"lora\"".into(),
        "peft.targets=[\"c_attn\", \"c_fc\"]".into(),
        "train.steps=4".into(),
        "train.eval_every=4".into(),
        "train.checkpoint_every=4".into(),
        "train.progress=false".into(),
        "eval.max_examples=4".into(),
        "eval.max_new_tokens=4".into(),
    ];
    let mut args: Vec<&str> = vec!["sft", "--config", "configs/sft/qa-world.toml"];
    for x in &sets {
        args.extend(["--set", x]);
    }
    let dry: Vec<&str> = args.iter().copied().chain(["--dry-run"]).collect();
    let shown = ok(&dry);
    assert!(
        shown.contains("Answer:⟦") && shown.contains("<eos>⟧"),
        "{shown}"
    );
    let report = ok(&args);
    assert!(report.contains("exact match"), "{report}");
    let ckpt = out.join("checkpoints/step-0000004");
    let peft = dir.path().join("adapter");
    ok(&[
        "export",
        "--model",
        s(&ckpt),
        "--format",
        "peft",
        "--out",
        s(&peft),
    ]);
    let cfg = std::fs::read_to_string(peft.join("adapter_config.json")).unwrap();
    assert!(
        cfg.contains("\"c_attn\"") && cfg.contains("\"c_fc\""),
        "{cfg}"
    );
    let hf = dir.path().join("hf");
    ok(&["export", "--model", s(&ckpt), "--out", s(&hf)]);
    for f in [
        "config.json",
        "model.safetensors",
        "tokenizer.json",
        "tokenizer_config.json",
        "generation_config.json",
    ] {
        assert!(hf.join(f).exists(), "{f}");
    }
    // config.json carries generation_config.json's ids and the tensor type.
    let json = |f: &str| -> serde_json::Value {
        serde_json::from_str(&std::fs::read_to_string(hf.join(f)).unwrap()).unwrap()
    };
    let (config, generation) = (json("config.json"), json("generation_config.json"));
    for key in ["bos_token_id", "eos_token_id", "pad_token_id"] {
        assert_eq!(
            config.get(key),
            Some(generation.get(key).unwrap_or(&serde_json::Value::Null)),
            "{key}"
        );
    }
    assert!(!config["eos_token_id"].is_null(), "{config}");
    assert_eq!(config["dtype"], "float32");
    assert_eq!(config["torch_dtype"], "float32");
    // The adapted checkpoint, the merged export and the base + adapter all generate alike.
    let generate = |model: &Path, adapter: Option<&Path>| {
        let mut a = vec![
            "generate",
            "--model",
            s(model),
            "--prompt",
            "Context: Mara lives in Tolven.",
            "--max-new-tokens",
            "6",
        ];
        if let Some(p) = adapter {
            a.extend(["--adapter", s(p)]);
        }
        ok(&a)
    };
    let want = generate(&ckpt, None);
    assert_eq!(generate(&hf, None), want);
    assert_eq!(generate(&base, Some(&peft)), want);
    // A full fine-tuning checkpoint has no adapter to export.
    let e = fails(&[
        "export",
        "--model",
        s(&base),
        "--format",
        "peft",
        "--out",
        s(&dir.path().join("x")),
    ]);
    assert!(e.contains("not an adapter checkpoint"), "{e}");
}
