//! `peft.prompt_init_text` (PEFT's `prompt_tuning_init = "TEXT"`) in every stage that can
//! train a soft prompt: `manabi sft`, `dpo`, `grpo` and `ppo` each start it from the
//! embeddings of the text's tokens (through the one `peft::apply_with_tokenizer`). The
//! stages with a head, `manabi reward` and `manabi task`, refuse prompt tuning in one
//! line, so a text is never silently dropped there.
//!
//! `train.lr` must be positive, so each run takes one AdamW step at lr = 1e-30: a change
//! of at most about 1e-30 per value, far below an f32 ulp of the fixture's embeddings
//! (about 1e-9 for values near 0.02), so the saved soft prompt is the one the stage
//! started from. It is read back through `manabi export --format peft`
//! (`prompt_embeddings` of `adapter_model.safetensors`).

mod common;

use std::path::{Path, PathBuf};

use common::{fails, ok, root, s};

/// Four tokens with the fixture's tokenizer: fewer than [`VIRTUAL`], so the rows repeat.
const TEXT: &str = "the cat";
const VIRTUAL: usize = 6;
/// Largest difference allowed between a virtual token and its text token's embedding row
/// (the default start's rows differ from them by about 0.1 or more).
const TOL: f32 = 1e-6;

fn llama() -> PathBuf {
    root().join("fixtures/models/llama-eval")
}

fn write(path: &Path, text: &str) -> PathBuf {
    std::fs::write(path, text).unwrap();
    path.to_path_buf()
}

fn jsonl(rows: impl IntoIterator<Item = serde_json::Value>) -> String {
    rows.into_iter().map(|r| format!("{r}\n")).collect()
}

/// `a+b=` for the `i`-th of a few small sums, and its answer.
fn sum(i: usize) -> (String, usize) {
    let (a, b) = (1 + i / 3, 1 + i % 3);
    (format!("{a}+{b}="), a + b)
}

/// A one-step recipe on the llama fixture writing to `out`, with `sections` ([data] and
/// the stage's own) in the middle.
fn recipe(dir: &Path, name: &str, out: &Path, sections: &str) -> PathBuf {
    let text = format!(
        r#"[run]
out = "{out}"
[model]
path = "{model}"
{sections}
[train]
steps = 1
batch_size = 2
warmup_steps = 0
eval_batches = 1
progress = false
"#,
        out = out.display(),
        model = llama().display(),
    );
    write(&dir.join(name), &text)
}

/// `--set`s for prompt tuning from [`TEXT`].
fn prompt_sets() -> Vec<String> {
    vec![
        "peft.method=\"prompt\"".into(),
        format!("peft.virtual_tokens={VIRTUAL}"),
        format!("peft.prompt_init_text={TEXT:?}"),
    ]
}

/// `manabi STAGE --config CFG` with prompt tuning from [`TEXT`] and a vanishing lr.
fn run_prompt_stage(stage: &str, cfg: &Path) -> String {
    let mut sets = prompt_sets();
    sets.extend(["train.lr=1e-30", "train.min_lr=0", "train.warmup_steps=0"].map(String::from));
    let mut args = vec![stage, "--config", s(cfg)];
    for set in &sets {
        args.extend(["--set", set.as_str()]);
    }
    let printed = ok(&args);
    assert!(printed.contains("step 1:"), "{stage}: {printed}");
    printed
}

/// The f32 tensor `name` of a safetensors file: its shape and values.
fn read_f32(path: &Path, name: &str) -> (Vec<usize>, Vec<f32>) {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let header: serde_json::Value = serde_json::from_slice(&bytes[8..8 + n]).unwrap();
    let entry = &header[name];
    assert_eq!(entry["dtype"], "F32", "`{name}` in {}", path.display());
    let dims = |key: &str| -> Vec<usize> {
        entry[key]
            .as_array()
            .unwrap_or_else(|| panic!("`{name}` in {}: no {key}", path.display()))
            .iter()
            .map(|v| v.as_u64().unwrap() as usize)
            .collect()
    };
    let (shape, offsets) = (dims("shape"), dims("data_offsets"));
    let values = bytes[8 + n + offsets[0]..8 + n + offsets[1]]
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
        .collect();
    (shape, values)
}

/// The rows a soft prompt started from [`TEXT`] holds, as manabi defines them
/// (`peft::apply_with_tokenizer` → `prompt::apply_from_tokens`): the ids of
/// `encode_with_specials(TEXT)` (PEFT's `tokenizer(text)["input_ids"]`) cycled to
/// [`VIRTUAL`] tokens, each its row of the base's `model.embed_tokens.weight`.
fn text_rows() -> Vec<Vec<f32>> {
    let tok = manabi_tokenize::TextTokenizer::load(llama().join("tokenizer.json")).unwrap();
    let ids = tok.encode_with_specials(TEXT).unwrap();
    assert!(
        !ids.is_empty() && ids.len() < VIRTUAL,
        "{ids:?}: the test wants the text's ids to repeat"
    );
    let wanted: Vec<usize> = ids
        .iter()
        .cycle()
        .take(VIRTUAL)
        .map(|&t| t as usize)
        .collect();
    let (shape, table) = read_f32(
        &llama().join("model.safetensors"),
        "model.embed_tokens.weight",
    );
    let d = shape[1];
    // The default start (`prompt::apply`: rows 13 + 7919·k of the vocabulary) takes other
    // rows, so a stage that dropped the text fails below.
    let spread: Vec<usize> = (0..VIRTUAL).map(|k| (k * 7919 + 13) % shape[0]).collect();
    assert!(
        wanted.iter().zip(&spread).all(|(a, b)| a != b),
        "{wanted:?} vs {spread:?}"
    );
    wanted
        .iter()
        .map(|&t| table[t * d..(t + 1) * d].to_vec())
        .collect()
}

/// Exports the soft prompt of `model` (a run folder or checkpoint of `stage`) with
/// `manabi export --format peft` and checks that it holds [`text_rows`].
fn assert_soft_prompt_is_the_text(stage: &str, model: &Path, tmp: &Path) {
    let out = tmp.join(format!("{stage}-peft"));
    ok(&[
        "export",
        "--model",
        s(model),
        "--format",
        "peft",
        "--out",
        s(&out),
    ]);
    let config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("adapter_config.json")).unwrap())
            .unwrap();
    assert_eq!(config["peft_type"], "PROMPT_TUNING", "{stage}: {config}");
    assert_eq!(
        config["num_virtual_tokens"].as_u64(),
        Some(VIRTUAL as u64),
        "{stage}: {config}"
    );
    let (shape, prompt) = read_f32(&out.join("adapter_model.safetensors"), "prompt_embeddings");
    let rows = text_rows();
    let d = rows[0].len();
    assert_eq!(shape, [VIRTUAL, d], "{stage}");
    for (k, (got, want)) in prompt.chunks(d).zip(&rows).enumerate() {
        let diff = got
            .iter()
            .zip(want)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0f32, f32::max);
        assert!(
            diff <= TOL,
            "{stage}: virtual token {k} is {diff} away from its text token's embedding row"
        );
    }
}

/// Four preference pairs: `{"prompt", "chosen", "rejected"}`.
fn pairs(dir: &Path) -> PathBuf {
    let rows = (0..4).map(|i| {
        let (prompt, answer) = sum(i);
        serde_json::json!({
            "prompt": prompt,
            "chosen": format!(" {answer}"),
            "rejected": format!(" {}", answer + 1),
        })
    });
    write(&dir.join("pairs.jsonl"), &jsonl(rows))
}

/// Four verifiable prompts: `{"prompt", "answer"}`.
fn prompts(dir: &Path) -> PathBuf {
    let rows = (0..4).map(|i| {
        let (prompt, answer) = sum(i);
        serde_json::json!({ "prompt": prompt, "answer": answer.to_string() })
    });
    write(&dir.join("prompts.jsonl"), &jsonl(rows))
}

/// What every training command saves beside its checkpoints: `summary.json` (the command
/// and its report), `loss.svg` labelled with what the loss is, and `metric.svg` with the
/// stage's own metric.
fn assert_run_saved(run: &Path, command: &str, loss: &str, metric: Option<&str>) {
    let summary = std::fs::read_to_string(run.join("summary.json")).unwrap();
    let v: serde_json::Value = serde_json::from_str(&summary).unwrap();
    assert_eq!(v["command"], command, "{summary}");
    assert!(v["report"].is_object(), "{summary}");
    let svg = std::fs::read_to_string(run.join("loss.svg")).unwrap();
    assert!(svg.contains(loss), "{command}: loss.svg lacks {loss:?}");
    match metric {
        Some(m) => {
            let svg = std::fs::read_to_string(run.join("metric.svg")).unwrap();
            assert!(svg.contains(m), "{command}: metric.svg lacks {m:?}");
        }
        None => assert!(!run.join("metric.svg").exists()),
    }
}

#[test]
fn sft_starts_its_soft_prompt_from_the_text() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let rows = (0..4).map(|i| {
        let (prompt, answer) = sum(i);
        serde_json::json!({ "prompt": prompt, "completion": format!(" {answer}") })
    });
    let data = write(&dir.join("sft.jsonl"), &jsonl(rows));
    let cfg = recipe(
        dir,
        "sft.toml",
        &dir.join("sft"),
        &format!(
            "[data]\ntrain = [\"{d}\"]\nval = [\"{d}\"]\nblock_size = 32\n\
             [eval]\nmax_examples = 2\nmax_new_tokens = 2",
            d = data.display()
        ),
    );
    run_prompt_stage("sft", &cfg);
    assert_soft_prompt_is_the_text("sft", &dir.join("sft"), dir);
    assert_run_saved(
        &dir.join("sft"),
        "sft",
        "cross-entropy of the responses (nats/token)",
        Some("held-out exact match"),
    );
}

#[test]
fn dpo_starts_its_soft_prompt_from_the_text() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let data = pairs(dir);
    let cfg = recipe(
        dir,
        "dpo.toml",
        &dir.join("dpo"),
        &format!(
            "[data]\ntrain = [\"{d}\"]\nval = [\"{d}\"]\nmax_length = 32",
            d = data.display()
        ),
    );
    run_prompt_stage("dpo", &cfg);
    assert_soft_prompt_is_the_text("dpo", &dir.join("dpo"), dir);
    assert_run_saved(
        &dir.join("dpo"),
        "dpo",
        "preference loss (nats/pair)",
        Some("held-out preference accuracy"),
    );
}

#[test]
fn grpo_starts_its_soft_prompt_from_the_text() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let data = prompts(dir);
    let cfg = recipe(
        dir,
        "grpo.toml",
        &dir.join("grpo"),
        &format!(
            "[data]\ntrain = [\"{d}\"]\nval = [\"{d}\"]\neval_prompts = 2\n\
             [grpo]\nnum_generations = 2\nmax_new_tokens = 3",
            d = data.display()
        ),
    );
    run_prompt_stage("grpo", &cfg);
    assert_soft_prompt_is_the_text("grpo", &dir.join("grpo"), dir);
    assert_run_saved(
        &dir.join("grpo"),
        "grpo",
        "GRPO loss",
        Some("mean reward of the rollouts"),
    );
}

#[test]
fn ppo_starts_its_policy_soft_prompt_from_the_text() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    // A reward model with the policy's tokenizer: one full step of `manabi reward`.
    let pref = pairs(dir);
    let rm = recipe(
        dir,
        "rm.toml",
        &dir.join("rm"),
        &format!(
            "[data]\ntrain = [\"{d}\"]\nval = [\"{d}\"]\nmax_length = 32",
            d = pref.display()
        ),
    );
    ok(&["reward", "--config", s(&rm)]);
    assert_run_saved(
        &dir.join("rm"),
        "reward",
        "(nats/pair)",
        Some("held-out pairwise accuracy"),
    );
    let data = prompts(dir);
    let cfg = recipe(
        dir,
        "ppo.toml",
        &dir.join("ppo"),
        &format!(
            "[data]\ntrain = [\"{d}\"]\nval = [\"{d}\"]\neval_prompts = 2\n\
             [ppo]\nreward_model = \"{rm}\"\nmax_new_tokens = 3\nnum_ppo_epochs = 1\n\
             num_mini_batches = 1",
            d = data.display(),
            rm = dir.join("rm").display()
        ),
    );
    run_prompt_stage("ppo", &cfg);
    // The policy alone (the run's checkpoints hold policy and value model together).
    assert_soft_prompt_is_the_text("ppo", &dir.join("ppo/policy"), dir);
    assert_run_saved(&dir.join("ppo"), "ppo", "PPO loss", Some("RLHF reward"));
}

#[test]
fn reward_and_task_heads_refuse_prompt_tuning_and_its_text_in_one_line() {
    // A head reads the body's hidden states without the virtual tokens, so both stages
    // refuse prompt tuning (`PeftConfig::validate_for_head`) before anything is written,
    // and a text with another method as well: the text is never silently ignored.
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let pref = pairs(dir);
    let reward = recipe(
        dir,
        "reward.toml",
        &dir.join("reward"),
        &format!(
            "[data]\ntrain = [\"{d}\"]\nval = [\"{d}\"]\nmax_length = 32",
            d = pref.display()
        ),
    );
    let sentences = [
        ("The park was brilliant.", "positive"),
        ("Honestly, the hotel was dreadful.", "negative"),
        ("The food was lovely.", "positive"),
        ("To be fair, the museum was not good.", "negative"),
    ]
    .map(|(sentence, label)| serde_json::json!({ "sentence": sentence, "label": label }));
    let data = write(&dir.join("sentiment.jsonl"), &jsonl(sentences));
    let task = recipe(
        dir,
        "task.toml",
        &dir.join("task"),
        &format!(
            "[task]\nkind = \"classification\"\nlabels = [\"negative\", \"positive\"]\n\
             max_length = 32\n[data]\ntrain = [\"{d}\"]\nval = [\"{d}\"]",
            d = data.display()
        ),
    );
    let text = format!("peft.prompt_init_text={TEXT:?}");
    let sets = prompt_sets();
    for (stage, cfg) in [("reward", &reward), ("task", &task)] {
        let mut args = vec![stage, "--config", s(cfg)];
        for set in &sets {
            args.extend(["--set", set.as_str()]);
        }
        let line = fails(&args);
        assert!(
            line.contains("peft.method") && line.contains("`prompt` tuning is for generation"),
            "{stage}: {line}"
        );
        let line = fails(&[
            stage,
            "--config",
            s(cfg),
            "--set",
            "peft.method=\"lora\"",
            "--set",
            &text,
        ]);
        assert!(
            line.contains("peft.prompt_init_text") && line.contains("only prompt tuning"),
            "{stage}: {line}"
        );
        assert!(
            !dir.join(stage).exists(),
            "{stage}: a refused run wrote its folder"
        );
    }
}
