//! `manabi pipeline`: every stage on the compiled-in data with a tiny recipe, the saved
//! report and receipts, skipping complete stages, rerunning changed ones, and a run
//! killed with SIGKILL that finishes with the same numbers and hashes as one that was not.

mod common;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};

use common::{fails, ok, root, s};

/// The life recipe with every stage shortened and the evaluation kept small (`SMALL`:
/// 24 held-out preference pairs).
const TINY: &str = r#"
[pipeline]
prompts = ["Context: Viki owns a hat.\nQuestion: What does Viki own?\nAnswer:"]
max_new_tokens = 4
eval_text = "{data}/world-en.txt"
eval_text_bytes = 4000
eval_pairs = "SMALL"

[curate]
unit = "line"
[curate.rules]
disable = ["gopher_word_count", "ja_char_count", "gopher_top_ngram"]

[pretrain]
recipe = "configs/pretrain/world-base.toml"
set = ['data.inputs=["{data}/world-en.txt"]', "train.steps=12", "train.eval_every=6",
       "train.checkpoint_every=4", "train.batch_size=8", "train.warmup_steps=2",
       "data.tokenizer.vocab_size=300"]

[sft]
recipe = "configs/sft/pref-mixed.toml"
set = ['data.train=["{data}/sft-mixed-en.train.jsonl"]', "train.steps=8",
       "train.eval_every=4", "train.checkpoint_every=2", "train.eval_batches=2",
       "train.warmup_steps=2", "train.batch_size=8"]

[reward]
recipe = "configs/align/reward.toml"
from = "pretrain"
set = ['data.train=["SMALL"]', 'data.val=["SMALL"]',
       "train.steps=4", "train.eval_every=2", "train.checkpoint_every=2",
       "train.eval_batches=3", "train.warmup_steps=1"]

[dpo]
recipe = "configs/align/dpo.toml"
from = "sft"
set = ['data.train=["SMALL"]', 'data.val=["SMALL"]',
       "train.steps=4", "train.eval_every=2", "train.checkpoint_every=1",
       "train.eval_batches=3", "train.warmup_steps=1"]
"#;

/// [`TINY`] in `dir`, with its 24 held-out pairs beside it.
fn tiny_recipe(dir: &Path) -> std::path::PathBuf {
    let recipe = dir.join("tiny.toml");
    let pairs = std::fs::read_to_string(root().join("datasets/pref/pref-en.val.jsonl")).unwrap();
    let small = dir.join("small.jsonl");
    std::fs::write(
        &small,
        pairs.lines().take(24).collect::<Vec<_>>().join("\n"),
    )
    .unwrap();
    std::fs::write(&recipe, TINY.replace("SMALL", s(&small))).unwrap();
    recipe
}

fn report(dir: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(dir.join("report.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

/// What must not change between two runs of one recipe: every stage's numbers and
/// receipt (not its wall time).
fn numbers(r: &serde_json::Value) -> Vec<serde_json::Value> {
    r["stages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|st| {
            serde_json::json!([
                st["stage"],
                st["before"],
                st["after"],
                st["steps"],
                st["receipt"]
            ])
        })
        .collect()
}

#[test]
fn the_life_runs_every_stage_reports_it_and_survives_sigkill() {
    let tmp = tempfile::tempdir().unwrap();
    let recipe = tiny_recipe(tmp.path());
    let a = tmp.path().join("a");
    let stdout = ok(&["pipeline", "--recipe", s(&recipe), "--out", s(&a)]);
    for stage in [
        "[1/6] curate",
        "[2/6] pretrain",
        "[3/6] sft",
        "[4/6] reward",
        "[5/6] dpo",
        "[6/6] evaluation",
    ] {
        assert!(stdout.contains(stage), "{stage} missing in {stdout}");
    }
    let r = report(&a);
    let stages = r["stages"].as_array().unwrap();
    assert_eq!(stages.len(), 5);
    // Curation kept the world's lines (one has too few katakana) and fed pre-training.
    assert_eq!(stages[0]["stage"], "curate");
    assert!(stages[0]["after"].as_f64() > Some(0.9 * stages[0]["before"].as_f64().unwrap()));
    assert!(a.join("curate/corpus.jsonl.report.json").is_file());
    for st in &stages[1..] {
        // Pre-training and SFT losses fall even in a few steps; every stage has a
        // receipt chaining it to its parent's weights.
        if st["lower_is_better"].as_bool().unwrap() {
            assert!(st["after"].as_f64() < st["before"].as_f64(), "{st}");
        }
        assert_eq!(st["receipt"]["output"].as_str().unwrap().len(), 64, "{st}");
    }
    // The chain: curated corpus → pre-training → SFT → DPO.
    assert_eq!(
        stages[1]["receipt"]["inputs"]["data:0:{out}/curate/corpus.jsonl"],
        stages[0]["receipt"]["output"]
    );
    assert_eq!(
        stages[2]["receipt"]["inputs"]["parent"],
        stages[1]["receipt"]["output"]
    );
    assert_eq!(
        stages[4]["receipt"]["inputs"]["parent"],
        stages[2]["receipt"]["output"]
    );
    assert_eq!(
        r["evaluation"]["models"],
        serde_json::json!(["pretrain", "sft", "dpo"])
    );
    assert!(r["alignment_tax"]["after"].as_f64().unwrap() > 1.0);
    for f in [
        "report.md",
        "report.html",
        "model-hf/config.json",
        "dpo/stage.json",
    ] {
        assert!(a.join(f).is_file(), "{f}");
    }
    let html = std::fs::read_to_string(a.join("report.html")).unwrap();
    assert!(html.contains("<svg") && !html.contains("http://") || html.contains("xmlns"));

    // Again: every stage is complete and skipped, the numbers are the same.
    let again = ok(&["pipeline", "--recipe", s(&recipe), "--out", s(&a)]);
    assert_eq!(again.matches("complete, skipped").count(), 5, "{again}");
    assert_eq!(numbers(&report(&a)), numbers(&r));

    // --from reruns DPO only, to the same numbers.
    let from = ok(&[
        "pipeline",
        "--recipe",
        s(&recipe),
        "--out",
        s(&a),
        "--from",
        "dpo",
    ]);
    assert_eq!(from.matches("complete, skipped").count(), 4, "{from}");
    assert_eq!(numbers(&report(&a)), numbers(&r));

    // Killed with SIGKILL while the SFT stage trains, then run again: the same numbers
    // and the same hashes as the run that was not stopped.
    let b = tmp.path().join("b");
    let mut child = Command::new(env!("CARGO_BIN_EXE_manabi"))
        .args(["pipeline", "--recipe", s(&recipe), "--out", s(&b)])
        .current_dir(root())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let out = child.stdout.take().unwrap();
    for line in BufReader::new(out).lines() {
        if line.unwrap().starts_with("[2/6]") {
            break;
        }
    }
    // The SFT stage is under way: wait for its first checkpoint, then kill.
    let ckpts = b.join("sft/checkpoints");
    let t0 = std::time::Instant::now();
    while std::fs::read_dir(&ckpts).map_or(0, |d| d.count()) == 0 && t0.elapsed().as_secs() < 60 {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(
        !b.join("sft/stage.json").exists(),
        "SFT finished before the kill"
    );
    let resumed = ok(&["pipeline", "--recipe", s(&recipe), "--out", s(&b)]);
    assert!(
        resumed.contains("[2/6] pretrain: complete, skipped"),
        "{resumed}"
    );
    assert_eq!(numbers(&report(&b)), numbers(&r));
}

#[test]
fn the_users_corpus_is_curated_pre_trained_and_measured() {
    // `--input` replaces the pre-training text everywhere: what curation cleans, what
    // pre-training reads, and the text of the perplexity row (its curated form).
    let tmp = tempfile::tempdir().unwrap();
    let recipe = tiny_recipe(tmp.path());
    let corpus = root().join("datasets/tiny/stories-en.txt");
    let out = tmp.path().join("mine");
    ok(&[
        "pipeline",
        "--recipe",
        s(&recipe),
        "--input",
        s(&corpus),
        "--out",
        s(&out),
    ]);
    let r = report(&out);
    let first = &r["evaluation"]["metrics"][0][0];
    assert!(
        first.as_str().unwrap().contains("curated-input.txt"),
        "{first}"
    );
    let measured = std::fs::read_to_string(out.join("eval/curated-input.txt")).unwrap();
    let text = std::fs::read_to_string(&corpus).unwrap();
    let lines: Vec<&str> = measured.lines().collect();
    assert!(lines.len() > 10, "{measured}");
    for line in lines {
        assert!(text.contains(line.trim()), "not from the input: {line}");
    }
    // The recipe keeps 4000 bytes (whole lines) of it.
    let kept = std::fs::read_to_string(out.join("eval/text.txt")).unwrap();
    assert!(
        kept.len() <= 4000 && measured.starts_with(&kept),
        "{}",
        kept.len()
    );
}

#[test]
fn pipeline_settings_that_cannot_mean_anything_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("o");
    let line = fails(&["pipeline", "--out", s(&out), "--set", "train.steps=5"]);
    assert!(
        line.contains("--set train.steps=5") && line.contains("STAGE"),
        "{line}"
    );
    let line = fails(&["pipeline", "--out", s(&out), "--from", "finetune"]);
    assert!(
        line.contains("--from finetune") && line.contains("pretrain"),
        "{line}"
    );
    let bad = tmp.path().join("bad.toml");
    std::fs::write(
        &bad,
        "[pipeline]\nprompts = []\n[dpo]\nrecipe = \"configs/align/dpo.toml\"\nfrom = \"sft\"\n",
    )
    .unwrap();
    let line = fails(&["pipeline", "--recipe", s(&bad), "--out", s(&out)]);
    assert!(line.contains("bad.toml") && line.contains("from"), "{line}");
    let line = fails(&["pipeline", "--out", s(&out), "--set", "sft.run.out=/tmp/x"]);
    assert!(line.contains("sft") && line.contains("--out"), "{line}");
    let only = tmp.path().join("only.toml");
    std::fs::write(
        &only,
        "[pipeline]\n[pretrain]\nrecipe = \"configs/pretrain/world-base.toml\"\n",
    )
    .unwrap();
    let line = fails(&[
        "pipeline",
        "--recipe",
        s(&only),
        "--out",
        s(&out),
        "--from",
        "reward",
    ]);
    assert!(
        line.contains("--from reward") && line.contains("pretrain, eval"),
        "{line}"
    );
    let line = fails(&[
        "pipeline",
        "--recipe",
        s(&only),
        "--out",
        s(&out),
        "--aozora",
    ]);
    assert!(
        line.contains("--aozora") && line.contains("[curate]"),
        "{line}"
    );
    std::fs::write(&bad, "[pipeline]\nprompt = []\n").unwrap();
    let line = fails(&["pipeline", "--recipe", s(&bad), "--out", s(&out)]);
    assert!(
        line.contains("bad.toml") && line.contains("prompt"),
        "{line}"
    );
}
