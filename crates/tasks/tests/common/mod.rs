//! Helpers shared by the task tests: the repository root, the recipe of a short task
//! run, and slices of the committed data.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// A 30-step task recipe on `base`: `kind` trained on `datasets/tasks/{data}-en.train.jsonl`,
/// validated on `val`, checkpointing every 10 steps.
pub fn recipe(base: &Path, out: &Path, kind: &str, data: &str, val: &Path) -> String {
    let d = root().join("datasets/tasks");
    format!(
        r#"
[run]
out = "{out}"
seed = 5
[model]
path = "{base}"
[task]
kind = "{kind}"
max_length = 48
[data]
train = ["{train}"]
val = ["{val}"]
[train]
steps = 30
batch_size = 16
lr = 3e-3
warmup_steps = 2
weight_decay = 0.0
eval_every = 30
eval_batches = 2
checkpoint_every = 10
progress = false
"#,
        out = out.display(),
        base = base.display(),
        train = d.join(format!("{data}-en.train.jsonl")).display(),
        val = val.display(),
    )
}

/// The first `n` lines of a committed validation file, as a file of its own.
pub fn head_of(dir: &Path, name: &str, n: usize) -> PathBuf {
    let text = std::fs::read_to_string(root().join("datasets/tasks").join(name)).unwrap();
    let p = dir.join(name);
    let lines: Vec<&str> = text.lines().take(n).collect();
    std::fs::write(&p, lines.join("\n") + "\n").unwrap();
    p
}

pub fn mean(v: &[(usize, f64)]) -> f64 {
    v.iter().map(|x| x.1).sum::<f64>() / v.len() as f64
}

/// Checks every predicted entity of an NER predictions file: its span lies in the text,
/// covers exactly its `name`, without surrounding spaces, next to the gold `entities`.
/// Returns how many entities were predicted.
pub fn check_predicted_spans(preds: &str) -> usize {
    let mut spans = 0;
    for line in preds.lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        let chars: Vec<char> = v["text"].as_str().unwrap().chars().collect();
        for e in v["predicted"].as_array().unwrap() {
            let (s, t) = (
                e["span"][0].as_u64().unwrap() as usize,
                e["span"][1].as_u64().unwrap() as usize,
            );
            assert!(s < t && t <= chars.len(), "{e}");
            let covered: String = chars[s..t].iter().collect();
            assert_eq!(covered, e["name"].as_str().unwrap());
            assert_eq!(covered.trim(), covered);
            spans += 1;
        }
        assert!(v["entities"].is_array());
    }
    spans
}

/// The losses of a run stopped early followed by those of its resumed rest.
pub fn joined_losses(
    first: &manabi_objectives::RunReport,
    rest: &manabi_objectives::RunReport,
) -> Vec<(usize, f64)> {
    first.losses.iter().chain(&rest.losses).copied().collect()
}

/// An embedding run's report: Spearman before, then Pearson and Spearman of the
/// checkpoint, each a correlation; `eval/spearman` logged during training.
pub fn check_sts_report(r: &manabi_tasks::TaskReport) {
    let names: Vec<&str> = r.splits[0]
        .metrics
        .iter()
        .map(|(k, _)| k.as_str())
        .collect();
    assert_eq!(names, ["spearman_before", "pearson", "spearman"]);
    let correlations = r.splits[0].metrics.iter();
    assert!(
        correlations
            .clone()
            .all(|(_, v)| v.is_finite() && v.abs() <= 1.0)
    );
    assert!(r.run.eval_metrics.contains_key("eval/spearman"));
}
