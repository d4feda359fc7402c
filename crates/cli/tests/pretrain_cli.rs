//! `manabi pretrain` as a person runs it, including a crash in the middle of a save.

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{fails, ok, root, s};

fn recipe(dir: &Path) -> std::path::PathBuf {
    let text = format!(
        r#"
[run]
out = "{out}"
[model]
family = "llama"
vocab_size = 0
max_positions = 32
d_model = 32
n_layers = 2
n_heads = 4
n_kv_heads = 2
d_ff = 64
positions = "rope"
norm = "rmsnorm"
activation = "swiglu"
[data]
inputs = ["{input}"]
block_size = 32
sampling = "packed"
tokenizer = {{ kind = "char", vocab_size = 100, min_frequency = 1 }}
[train]
steps = 20
batch_size = 4
warmup_steps = 2
eval_every = 10
eval_batches = 2
checkpoint_every = 5
keep_last = 10
progress = false
"#,
        out = dir.join("run").display(),
        input = root().join("datasets/tiny/stories-en.txt").display()
    );
    let path = dir.join("recipe.toml");
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn sigkill_during_a_save_keeps_the_previous_checkpoint_and_resume_finishes() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = recipe(dir.path());
    let ckpts = dir.path().join("run/checkpoints");
    let mut child = Command::new(env!("CARGO_BIN_EXE_manabi"))
        .args(["pretrain", "--config", s(&cfg)])
        .env("MANABI_FAULT_SLOW_SAVE_MS", "1500")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Wait until the second checkpoint (step 10) is being written, then kill -9.
    let started = Instant::now();
    while !ckpts.join(".step-0000010.tmp").exists() {
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "the run never reached its second save"
        );
        assert!(child.try_wait().unwrap().is_none(), "the run ended early");
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(ckpts.join("step-0000005/state.json").exists());
    assert!(
        !ckpts.join("step-0000010").exists(),
        "a half-written checkpoint is never complete"
    );

    let out = ok(&["pretrain", "--config", s(&cfg), "--resume"]);
    assert!(out.contains("step 20:"), "{out}");
    assert!(ckpts.join("step-0000020/state.json").exists());
    assert!(
        !ckpts.join(".step-0000010.tmp").exists(),
        "the leftover was replaced by a complete save"
    );
}

/// Starts `manabi pretrain` on `cfg` with fault-injection `env`, in the background.
fn spawn(cfg: &Path, extra: &[&str], env: (&str, &str)) -> std::process::Child {
    Command::new(env!("CARGO_BIN_EXE_manabi"))
        .args(["pretrain", "--config", s(cfg)])
        .args(extra)
        .env(env.0, env.1)
        .env_remove("MANABI_DEVICE")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

/// Waits until `path` exists (the child still running), for at most two minutes.
fn wait_for(child: &mut std::process::Child, path: &Path) {
    let started = Instant::now();
    while !path.exists() {
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "{} never appeared",
            path.display()
        );
        assert!(child.try_wait().unwrap().is_none(), "the run ended early");
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn sigkill_during_checkpoint_cleanup_leaves_only_complete_checkpoints() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = recipe(dir.path());
    let ckpts = dir.path().join("run/checkpoints");
    // keep_last = 1: the save of step 10 is followed by deleting step 5, slowed down so the
    // kill lands in the middle of it.
    let mut child = spawn(
        &cfg,
        &["--set", "train.keep_last=1"],
        ("MANABI_FAULT_SLOW_DELETE_MS", "3000"),
    );
    wait_for(&mut child, &ckpts.join(".step-0000005.del"));
    child.kill().unwrap();
    child.wait().unwrap();
    // The old checkpoint is no longer listed under its name; the new one is complete.
    assert!(!ckpts.join("step-0000005").exists());
    manabi_objectives::checkpoint::read_state(&ckpts.join("step-0000010")).unwrap();
    assert_eq!(
        manabi_objectives::checkpoint::list(&ckpts)
            .iter()
            .map(|(step, _)| *step)
            .collect::<Vec<_>>(),
        vec![10]
    );

    let out = ok(&[
        "pretrain",
        "--config",
        s(&cfg),
        "--set",
        "train.keep_last=1",
        "--resume",
    ]);
    assert!(out.contains("step 20:"), "{out}");
    assert!(
        !ckpts.join(".step-0000005.del").exists(),
        "the leftover is swept"
    );
    let names: Vec<String> = std::fs::read_dir(&ckpts)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    // Step 20 and at most the best one (kept whatever keep_last says); no leftovers.
    assert!(names.contains(&"step-0000020".to_string()), "{names:?}");
    assert!(names.iter().all(|n| n.starts_with("step-")), "{names:?}");
    assert!(names.len() <= 2, "{names:?}");
}

#[test]
fn a_second_run_into_a_busy_run_folder_is_refused_naming_the_holder() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = recipe(dir.path());
    let ckpts = dir.path().join("run/checkpoints");
    let mut child = spawn(&cfg, &[], ("MANABI_FAULT_SLOW_SAVE_MS", "1500"));
    wait_for(&mut child, &ckpts.join(".step-0000005.tmp"));
    // Two `--resume` runs into one folder would mix their checkpoints: the second stops.
    let err = fails(&["pretrain", "--config", s(&cfg), "--resume"]);
    assert!(
        err.contains("the run folder is being written by another run (pid ")
            && err.contains(&child.id().to_string()),
        "{err}"
    );
    child.kill().unwrap();
    child.wait().unwrap();
    // The lock died with its process: a resume now takes the folder over and finishes.
    let out = ok(&["pretrain", "--config", s(&cfg), "--resume"]);
    assert!(out.contains("step 20:"), "{out}");
}

#[test]
fn bad_recipes_are_one_line_errors() {
    let dir = tempfile::tempdir().unwrap();
    let line = fails(&["pretrain", "--config", "configs/pretrain/nope.toml"]);
    assert!(line.contains("configs/pretrain/nope.toml"), "{line}");
    let cfg = recipe(dir.path());
    let line = fails(&["pretrain", "--config", s(&cfg), "--set", "train.bogus=1"]);
    assert!(line.contains("unknown field `bogus`"), "{line}");
    let line = fails(&[
        "pretrain",
        "--config",
        s(&cfg),
        "--set",
        "model.n_kv_heads=3",
    ]);
    assert!(line.contains("n_kv_heads"), "{line}");
    let line = fails(&[
        "pretrain",
        "--config",
        s(&cfg),
        "--set",
        "train.precision=\"bf16\"",
    ]);
    assert!(line.contains("train.precision"), "{line}");
}

#[test]
fn encoder_checkpoints_export_to_the_hugging_face_layout() {
    let dir = tempfile::tempdir().unwrap();
    let recipe = dir.path().join("t5.toml");
    std::fs::write(
        &recipe,
        format!(
            r#"
[run]
out = "{out}"
[model]
family = "t5"
vocab_size = 0
max_positions = 64
d_model = 32
n_layers = 1
n_heads = 2
d_ff = 64
positions = "relative"
norm = "rmsnorm"
activation = "relu"
tie_embeddings = true
[data]
inputs = ["{input}"]
block_size = 32
tokenizer = {{ kind = "unigram", vocab_size = 300, sentinels = 4 }}
[train]
steps = 3
batch_size = 2
warmup_steps = 1
eval_batches = 1
progress = false
"#,
            out = dir.path().join("run").display(),
            input = root().join("datasets/tiny/stories-en.txt").display()
        ),
    )
    .unwrap();
    ok(&["pretrain", "--config", s(&recipe)]);
    let ckpt = dir.path().join("run/checkpoints/step-0000003");
    let hf = dir.path().join("hf");
    ok(&["export", "--model", s(&ckpt), "--out", s(&hf)]);
    let cfg: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(hf.join("config.json")).unwrap()).unwrap();
    assert_eq!(cfg["model_type"], "t5");
    assert!(hf.join("model.safetensors").exists());
    // T5 generates greedily, from the checkpoint and from its export, the same tokens.
    assert!(
        ckpt.join("tokenizer.json").exists(),
        "checkpoints carry their tokenizer"
    );
    let generate = |m: &std::path::Path, extra: &[&str]| {
        let mut a = vec![
            "generate",
            "--model",
            s(m),
            "--prompt",
            "The wind was cold.",
            "--max-new-tokens",
            "6",
        ];
        a.extend_from_slice(extra);
        ok(&a)
    };
    let a = generate(&ckpt, &[]);
    assert_eq!(a, generate(&hf, &[]));
    assert_eq!(a, generate(&hf, &["--no-cache"]));
    let line = fails(&[
        "generate",
        "--model",
        s(&hf),
        "--prompt",
        "x",
        "--temperature",
        "0.7",
    ]);
    assert!(line.contains("greedy only"), "{line}");
    // And an HF classifier exports as itself.
    let cls = dir.path().join("cls");
    ok(&[
        "export",
        "--model",
        "fixtures/models/bert-cls",
        "--out",
        s(&cls),
    ]);
    let cfg: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(cls.join("config.json")).unwrap()).unwrap();
    assert_eq!(cfg["architectures"][0], "BertForSequenceClassification");
}
