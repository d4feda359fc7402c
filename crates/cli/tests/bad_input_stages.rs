//! Bad input to `manabi pretrain`, `manabi sft` and `manabi ppo`, counted per stage: at
//! least ten cases each (a missing or broken recipe, unknown keys, wrong types, values out
//! of range, bad `--set`, missing, empty and malformed data, model folders that are
//! missing or no model, tokenizers larger than the model, PEFT settings that make no
//! sense, reward models that are no reward model, resumes of what is no run). Each must
//! stop with a non-zero status and one `error:` line that names the file, line, key or
//! folder at fault: never a panic, never silent acceptance. Data with a UTF-8 BOM and
//! CRLF line ends is the one input that must be accepted, and read as the plain file.

mod common;

use std::path::{Path, PathBuf};

use common::{manabi, ok, root, s};

/// One bad input: files written into the case's own folder (`sub/name` makes the
/// folder), the arguments after the subcommand, and what the one error line must contain.
/// `{dir}` stands for the case's folder and `{cfg}` for the stage's good recipe, in the
/// arguments and in the fragments; a fragment starting with `!` must be absent.
#[derive(Debug)]
struct Case {
    name: &'static str,
    files: Vec<(String, Vec<u8>)>,
    args: Vec<String>,
    expect: Vec<String>,
}

fn case(name: &'static str, args: &[&str], expect: &[&str]) -> Case {
    Case {
        name,
        files: Vec::new(),
        args: args.iter().map(|a| a.to_string()).collect(),
        expect: expect.iter().map(|e| e.to_string()).collect(),
    }
}

impl Case {
    /// The case with `name` written into its folder first.
    fn with(mut self, name: &str, bytes: impl Into<Vec<u8>>) -> Self {
        self.files.push((name.to_string(), bytes.into()));
        self
    }
}

/// Runs every case of `stage` (each into its own run folder under `base`), then fails
/// with the list of cases that were accepted, panicked, or stopped without naming what
/// they were given.
fn run_cases(stage: &str, base: &Path, cfg: &Path, cases: &[Case]) {
    assert!(
        cases.len() >= 10,
        "{stage}: only {} bad-input cases, at least 10 wanted",
        cases.len()
    );
    let mut names: Vec<&str> = cases.iter().map(|c| c.name).collect();
    names.sort_unstable();
    names.dedup();
    assert_eq!(names.len(), cases.len(), "{stage}: case names repeat");
    let mut failures = Vec::new();
    for c in cases {
        let dir = base.join(c.name);
        std::fs::create_dir_all(&dir).unwrap();
        for (name, bytes) in &c.files {
            let path = dir.join(name);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, bytes).unwrap();
        }
        let fill = |t: &str| t.replace("{dir}", s(&dir)).replace("{cfg}", s(cfg));
        let mut args: Vec<String> = vec![stage.to_string()];
        args.extend(c.args.iter().map(|a| fill(a.as_str())));
        // A run folder of its own, so no case sees another's shards, lock or checkpoints.
        args.push("--set".into());
        args.push(format!("run.out=\"{}\"", dir.join("run").display()));
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        if let Err(why) = one_error_line(&refs).and_then(|line| {
            for want in c.expect.iter().map(|e| fill(e.as_str())) {
                let fine = match want.strip_prefix('!') {
                    Some(absent) => !line.contains(absent),
                    None => line.contains(&want),
                };
                if !fine {
                    return Err(format!("`{want}` expected in: {line}"));
                }
            }
            Ok(())
        }) {
            failures.push(format!(
                "{stage}/{}: manabi {}\n    {why}",
                c.name,
                args.join(" ")
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} {stage} bad-input cases failed:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}

/// Runs `args`; the error line when the run failed cleanly: a non-zero status, no panic,
/// and exactly one non-empty stderr line, `error: …`.
fn one_error_line(args: &[&str]) -> Result<String, String> {
    let out = manabi(args);
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    if out.status.success() {
        return Err(format!("accepted (exit 0); stderr: {stderr:?}"));
    }
    if out.status.code() == Some(101) || stderr.contains("panicked") {
        return Err(format!("panicked: {stderr:?}"));
    }
    if stderr.contains("RUST_BACKTRACE") {
        return Err(format!("a backtrace hint: {stderr:?}"));
    }
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    match lines.as_slice() {
        [line] if line.starts_with("error: ") => Ok(line.to_string()),
        _ => Err(format!("not one `error:` line: {stderr:?}")),
    }
}

/// The 1-based line of `text` that starts with `prefix`.
fn line_of(text: &str, prefix: &str) -> usize {
    1 + text
        .lines()
        .position(|l| l.starts_with(prefix))
        .unwrap_or_else(|| panic!("no line `{prefix}` in the recipe"))
}

/// `text` with the line starting with `prefix` replaced by `new`, and that line's number.
fn replace_line(text: &str, prefix: &str, new: &str) -> (String, usize) {
    let n = line_of(text, prefix);
    let lines: Vec<&str> = text
        .lines()
        .enumerate()
        .map(|(i, l)| if i + 1 == n { new } else { l })
        .collect();
    (lines.join("\n") + "\n", n)
}

/// `text` with `new` inserted after the line starting with `prefix`, and its number.
fn insert_after(text: &str, prefix: &str, new: &str) -> (String, usize) {
    let n = line_of(text, prefix);
    let mut lines: Vec<&str> = text.lines().collect();
    lines.insert(n, new);
    (lines.join("\n") + "\n", n + 1)
}

/// `text` as a Windows editor saves it: a UTF-8 BOM and CRLF line ends.
fn bom_crlf(text: &str) -> Vec<u8> {
    let mut out = "\u{feff}".as_bytes().to_vec();
    out.extend(
        text.replace("\r\n", "\n")
            .replace('\n', "\r\n")
            .into_bytes(),
    );
    out
}

fn jsonl(rows: &[serde_json::Value]) -> String {
    rows.iter().map(|r| format!("{r}\n")).collect()
}

/// Three good lines, a fourth that is `bad`, and two more good ones: the error names
/// line 4 (1-based).
fn with_bad_fourth_line(good: &str, bad: &str) -> String {
    let lines: Vec<&str> = good.lines().collect();
    let mut out: Vec<&str> = lines[..3].to_vec();
    out.push(bad);
    out.extend(&lines[3..5]);
    out.join("\n") + "\n"
}

fn write(path: &Path, bytes: impl AsRef<[u8]>) -> PathBuf {
    std::fs::write(path, bytes).unwrap();
    path.to_path_buf()
}

/// A run's `step N: …` line without its timings.
fn losses(stdout: &str) -> String {
    let line = stdout
        .lines()
        .find(|l| l.starts_with("step "))
        .unwrap_or_else(|| panic!("no step line in {stdout}"));
    let before = line.split(" tokens/s").next().unwrap();
    before
        .rsplit_once(", ")
        .map_or(before, |(a, _)| a)
        .to_string()
}

fn fixture(rel: &str) -> String {
    root().join(rel).display().to_string()
}

#[test]
fn pretrain_bad_input_is_one_line_naming_the_culprit() {
    let tmp = tempfile::tempdir().unwrap();
    let base = tmp.path();
    let stories = std::fs::read_to_string(root().join("datasets/tiny/stories-en.txt")).unwrap();
    let plain = write(&base.join("stories.txt"), &stories);
    let recipe = format!(
        r#"[run]
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
steps = 2
batch_size = 2
warmup_steps = 1
eval_batches = 1
progress = false
"#,
        out = base.join("run").display(),
        input = plain.display(),
    );
    let cfg = write(&base.join("recipe.toml"), &recipe);
    let (unknown, unknown_line) = insert_after(&recipe, "[train]", "frobnicate = 1");
    let (wrong_type, wrong_type_line) = replace_line(&recipe, "steps = ", "steps = \"two\"");
    let records: Vec<serde_json::Value> = stories
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::json!({ "text": l }))
        .collect();
    let good_jsonl = jsonl(&records);
    let inputs = |file: &str| format!("data.inputs=[\"{{dir}}/{file}\"]");
    let bpe_en = fixture("fixtures/tokenize/bpe-en/tokenizer.json");

    let cases = vec![
        case(
            "missing-config",
            &["--config", "{dir}/nope.toml"],
            &["{dir}/nope.toml"],
        ),
        case(
            "config-not-toml",
            &["--config", "{dir}/broken.toml"],
            &["broken.toml", "line 1"],
        )
        .with("broken.toml", "[train\nsteps = 2\n"),
        case(
            "unknown-key-in-file",
            &["--config", "{dir}/unknown.toml"],
            &[
                "unknown.toml",
                "train.frobnicate",
                &format!("line {unknown_line}"),
            ],
        )
        .with("unknown.toml", unknown),
        case(
            "wrong-type-in-file",
            &["--config", "{dir}/wrong-type.toml"],
            &[
                "wrong-type.toml",
                "train.steps",
                &format!("line {wrong_type_line}"),
            ],
        )
        .with("wrong-type.toml", wrong_type),
        case(
            "negative-lr",
            &["--config", "{cfg}", "--set", "train.lr=-0.001"],
            &["train.lr", "--set"],
        ),
        case(
            "zero-steps",
            &["--config", "{cfg}", "--set", "train.steps=0"],
            &["train.steps"],
        ),
        case(
            "zero-batch",
            &["--config", "{cfg}", "--set", "train.batch_size=0"],
            &["train.batch_size"],
        ),
        case(
            "zero-grad-accum",
            &["--config", "{cfg}", "--set", "train.grad_accum=0"],
            &["train.grad_accum"],
        ),
        case(
            "val-fraction-over-1",
            &["--config", "{cfg}", "--set", "data.val_fraction=1.5"],
            &["data.val_fraction"],
        ),
        case(
            "unknown-family",
            &["--config", "{cfg}", "--set", "model.family=\"gpt5\""],
            &["model.family", "gpt5"],
        ),
        case(
            "heads-do-not-divide",
            &["--config", "{cfg}", "--set", "model.n_heads=5"],
            &["n_heads"],
        ),
        case(
            "block-over-positions",
            &["--config", "{cfg}", "--set", "data.block_size=64"],
            &["data.block_size", "max_positions"],
        ),
        case(
            "set-without-equals",
            &["--config", "{cfg}", "--set", "train.steps"],
            &["train.steps", "section.key=value"],
        ),
        case(
            "set-unknown-key",
            &["--config", "{cfg}", "--set", "train.bogus=1"],
            &["train.bogus", "--set"],
        ),
        case(
            "set-unknown-section",
            &["--config", "{cfg}", "--set", "bogus.key=1"],
            &["bogus"],
        ),
        case(
            "missing-data",
            &["--config", "{cfg}", "--set", &inputs("missing.txt")],
            &["{dir}/missing.txt"],
        ),
        case(
            "empty-data",
            &["--config", "{cfg}", "--set", &inputs("empty.txt")],
            &["{dir}/empty.txt"],
        )
        .with("empty.txt", ""),
        // Pre-training reads every line: no hint at a `--skip-invalid` it does not have.
        case(
            "malformed-jsonl-line",
            &["--config", "{cfg}", "--set", &inputs("bad.jsonl")],
            &["{dir}/bad.jsonl:4:", "malformed JSON", "!--skip-invalid"],
        )
        .with(
            "bad.jsonl",
            with_bad_fourth_line(&good_jsonl, "{\"text\": \"unclosed"),
        ),
        case(
            "jsonl-line-without-text",
            &["--config", "{cfg}", "--set", &inputs("no-text.jsonl")],
            &["{dir}/no-text.jsonl:4:", "`text`", "!--field"],
        )
        .with(
            "no-text.jsonl",
            with_bad_fourth_line(&good_jsonl, "{\"body\": \"no text field\"}"),
        ),
        case(
            "invalid-utf8-line",
            &["--config", "{cfg}", "--set", &inputs("latin1.txt")],
            &["{dir}/latin1.txt:4:", "UTF-8", "!--skip-invalid"],
        )
        .with("latin1.txt", {
            let mut b = b"The wind was cold.\nSora found a letter.\nIt was late.\n".to_vec();
            b.extend(b"caf\xe9 au lait\nThe end.\n");
            b
        }),
        case(
            "tokenizer-larger-than-vocab",
            &[
                "--config",
                "{cfg}",
                "--set",
                "model.vocab_size=50",
                "--set",
                &format!("data.tokenizer={{ path = \"{bpe_en}\" }}"),
            ],
            &["model.vocab_size", "512"],
        ),
        case(
            "missing-tokenizer",
            &[
                "--config",
                "{cfg}",
                "--set",
                "data.tokenizer={ path = \"{dir}/missing.json\" }",
            ],
            &["{dir}/missing.json"],
        ),
        case(
            "not-a-tokenizer",
            &[
                "--config",
                "{cfg}",
                "--set",
                "data.tokenizer={ path = \"{dir}/tokenizer.json\" }",
            ],
            &["{dir}/tokenizer.json", "tokenizer"],
        )
        .with("tokenizer.json", "[1, 2, 3]"),
        case(
            "resume-of-no-run",
            &["--config", "{cfg}", "--resume", "{dir}/not-a-run"],
            &["{dir}/not-a-run", "checkpoint"],
        )
        .with("not-a-run/notes.txt", "not a run"),
    ];
    run_cases("pretrain", base, &cfg, &cases);

    // Accepted: a BOM and CRLF line ends in the corpus (text and JSONL) and in the recipe,
    // read exactly as the plain files (the same tokenizer, so the same losses).
    let run = |name: &str, cfg: &Path, input: &Path| {
        ok(&[
            "pretrain",
            "--config",
            s(cfg),
            "--set",
            &format!("data.inputs=[\"{}\"]", input.display()),
            "--set",
            &format!("run.out=\"{}\"", base.join(name).display()),
        ])
    };
    let want = losses(&run("plain-text", &cfg, &plain));
    let text = write(&base.join("stories-bom-crlf.txt"), bom_crlf(&stories));
    assert_eq!(losses(&run("bom-crlf-text", &cfg, &text)), want);
    let cfg_bom = write(&base.join("recipe-bom-crlf.toml"), bom_crlf(&recipe));
    assert_eq!(losses(&run("bom-crlf-recipe", &cfg_bom, &plain)), want);
    let lf = write(&base.join("stories.jsonl"), &good_jsonl);
    let want = losses(&run("plain-jsonl", &cfg, &lf));
    let crlf = write(&base.join("stories-bom-crlf.jsonl"), bom_crlf(&good_jsonl));
    assert_eq!(losses(&run("bom-crlf-jsonl", &cfg, &crlf)), want);
}

/// Prompt/completion rows short enough for the 64 positions of the llama-eval fixture.
fn sums(rows: std::ops::Range<u32>) -> String {
    let v: Vec<serde_json::Value> = rows
        .map(|i| {
            let (a, b) = (1 + i / 3, 1 + i % 3);
            serde_json::json!({ "prompt": format!("{a}+{b}="), "completion": format!(" {}", a + b) })
        })
        .collect();
    jsonl(&v)
}

#[test]
fn sft_bad_input_is_one_line_naming_the_culprit() {
    let tmp = tempfile::tempdir().unwrap();
    let base = tmp.path();
    let train_text = sums(0..14);
    let train = write(&base.join("train.jsonl"), &train_text);
    let val = write(&base.join("val.jsonl"), sums(14..18));
    let llama = fixture("fixtures/models/llama-eval");
    let recipe = format!(
        r#"[run]
out = "{out}"
[model]
path = "{llama}"
[data]
train = ["{train}"]
val = ["{val}"]
block_size = 64
[peft]
method = "lora"
r = 4
targets = ["q_proj", "v_proj"]
[train]
steps = 2
batch_size = 2
warmup_steps = 1
eval_batches = 1
progress = false
[eval]
max_examples = 2
max_new_tokens = 2
"#,
        out = base.join("run").display(),
        train = train.display(),
        val = val.display(),
    );
    let cfg = write(&base.join("recipe.toml"), &recipe);
    let (unknown, unknown_line) = insert_after(&recipe, "r = 4", "rank = 4");
    let (wrong_type, wrong_type_line) = replace_line(&recipe, "batch_size = ", "batch_size = [2]");
    let bpe_ja = fixture("fixtures/tokenize/bpe-ja/tokenizer.json");
    let wordpiece = fixture("fixtures/tokenize/wordpiece-en/tokenizer.json");
    let bert = fixture("fixtures/models/bert");

    let cases = vec![
        // A bf16 base with a method that trains the base, or a type that does not exist.
        case(
            "bf16-base-full-fine-tuning",
            &[
                "--config",
                "{cfg}",
                "--set",
                "model.dtype=\"bf16\"",
                "--set",
                "peft.method=\"full\"",
            ],
            &["model.dtype", "full fine-tuning"],
        ),
        case(
            "f16-base",
            &["--config", "{cfg}", "--set", "model.dtype=\"f16\""],
            &["model.dtype", "f16"],
        ),
        case(
            "missing-config",
            &["--config", "{dir}/nope.toml"],
            &["{dir}/nope.toml"],
        ),
        case(
            "unknown-key-in-file",
            &["--config", "{dir}/unknown.toml"],
            &["unknown.toml", "peft.rank", &format!("line {unknown_line}")],
        )
        .with("unknown.toml", unknown),
        case(
            "wrong-type-in-file",
            &["--config", "{dir}/wrong-type.toml"],
            &[
                "wrong-type.toml",
                "train.batch_size",
                &format!("line {wrong_type_line}"),
            ],
        )
        .with("wrong-type.toml", wrong_type),
        case(
            "negative-lr",
            &["--config", "{cfg}", "--set", "train.lr=-0.001"],
            &["train.lr", "--set"],
        ),
        case(
            "zero-steps",
            &["--config", "{cfg}", "--set", "train.steps=0"],
            &["train.steps"],
        ),
        case(
            "zero-batch",
            &["--config", "{cfg}", "--set", "train.batch_size=0"],
            &["train.batch_size"],
        ),
        case(
            "block-size-1",
            &["--config", "{cfg}", "--set", "data.block_size=1"],
            &["data.block_size"],
        ),
        case(
            "block-over-positions",
            &["--config", "{cfg}", "--set", "data.block_size=500"],
            &["data.block_size", "64 positions"],
        ),
        case(
            "set-without-equals",
            &["--config", "{cfg}", "--set", "nokey"],
            &["nokey", "section.key=value"],
        ),
        case(
            "set-unknown-key",
            &["--config", "{cfg}", "--set", "train.nokey=3"],
            &["train.nokey", "--set"],
        ),
        case(
            "unknown-format",
            &["--config", "{cfg}", "--set", "data.format=\"yaml\""],
            &["data.format", "yaml"],
        ),
        case(
            "missing-train-file",
            &[
                "--config",
                "{cfg}",
                "--set",
                "data.train=[\"{dir}/missing.jsonl\"]",
            ],
            &["{dir}/missing.jsonl"],
        ),
        case(
            "missing-val-file",
            &[
                "--config",
                "{cfg}",
                "--set",
                "data.val=[\"{dir}/missing.jsonl\"]",
            ],
            &["{dir}/missing.jsonl"],
        ),
        case(
            "no-train-files",
            &["--config", "{cfg}", "--set", "data.train=[]"],
            &["data.train"],
        ),
        case(
            "empty-train-file",
            &[
                "--config",
                "{cfg}",
                "--set",
                "data.train=[\"{dir}/empty.jsonl\"]",
            ],
            &["{dir}/empty.jsonl"],
        )
        .with("empty.jsonl", ""),
        case(
            "malformed-jsonl-line",
            &[
                "--config",
                "{cfg}",
                "--set",
                "data.train=[\"{dir}/bad.jsonl\"]",
            ],
            &["{dir}/bad.jsonl:4:", "JSON"],
        )
        .with(
            "bad.jsonl",
            with_bad_fourth_line(&train_text, "{\"prompt\": \"1+1=\" \"completion\": \" 2\"}"),
        ),
        case(
            "jsonl-line-without-completion",
            &[
                "--config",
                "{cfg}",
                "--set",
                "data.train=[\"{dir}/half.jsonl\"]",
            ],
            &["{dir}/half.jsonl:4:", "completion"],
        )
        .with(
            "half.jsonl",
            with_bad_fourth_line(&train_text, "{\"prompt\": \"1+1=\"}"),
        ),
        case(
            "missing-model-folder",
            &[
                "--config",
                "{cfg}",
                "--set",
                "model.path=\"{dir}/no-model\"",
            ],
            &["{dir}/no-model"],
        ),
        case(
            "folder-is-no-model",
            &[
                "--config",
                "{cfg}",
                "--set",
                "model.path=\"{dir}/not-a-model\"",
            ],
            &["{dir}/not-a-model"],
        )
        .with("not-a-model/notes.json", "{\"hello\": 1}"),
        case(
            "unsupported-model-type",
            &["--config", "{cfg}", "--set", "model.path=\"{dir}/wizard\""],
            &["{dir}/wizard/config.json", "model_type", "wizard"],
        )
        .with("wizard/config.json", "{\"model_type\": \"wizard\"}"),
        case(
            "tokenizer-larger-than-vocab",
            &[
                "--config",
                "{cfg}",
                "--set",
                &format!("model.tokenizer=\"{bpe_ja}\""),
            ],
            &["bpe-ja/tokenizer.json", "800", "512"],
        ),
        case(
            "missing-tokenizer",
            &[
                "--config",
                "{cfg}",
                "--set",
                "model.tokenizer=\"{dir}/missing.json\"",
            ],
            &["{dir}/missing.json"],
        ),
        case(
            "lora-rank-0",
            &["--config", "{cfg}", "--set", "peft.r=0"],
            &["recipe.toml: peft.r", "--set"],
        ),
        case(
            "lora-no-targets",
            &["--config", "{cfg}", "--set", "peft.targets=[]"],
            &["peft.targets"],
        ),
        case(
            "unknown-target-module",
            &["--config", "{cfg}", "--set", "peft.targets=[\"qq_proj\"]"],
            &["peft.targets", "qq_proj"],
        ),
        case(
            "unknown-peft-method",
            &["--config", "{cfg}", "--set", "peft.method=\"magic\""],
            &["peft.method", "magic"],
        ),
        case(
            "lora-dropout-1.5",
            &["--config", "{cfg}", "--set", "peft.dropout=1.5"],
            &["peft.dropout"],
        ),
        case(
            "lora-negative-alpha",
            &["--config", "{cfg}", "--set", "peft.alpha=-1.0"],
            &["peft.alpha"],
        ),
        case(
            "resume-of-no-run",
            &["--config", "{cfg}", "--resume", "{dir}/not-a-run"],
            &["{dir}/not-a-run", "checkpoint"],
        )
        .with("not-a-run/notes.txt", "not a run"),
        // A BERT masked LM is no decoder to fine-tune (a tokenizer given, so that the
        // folder is what is refused).
        case(
            "bert-is-no-decoder",
            &[
                "--config",
                "{cfg}",
                "--set",
                &format!("model.path=\"{bert}\""),
                "--set",
                &format!("model.tokenizer=\"{wordpiece}\""),
            ],
            &["fixtures/models/bert", "decoder"],
        ),
    ];
    run_cases("sft", base, &cfg, &cases);

    // Accepted: a BOM and CRLF line ends in the data and in the recipe; the rendered
    // examples are those of the plain files, and the run trains.
    let dry = |cfg: &Path, train: &Path| {
        ok(&[
            "sft",
            "--config",
            s(cfg),
            "--set",
            &format!("data.train=[\"{}\"]", train.display()),
            "--dry-run",
        ])
    };
    let want = dry(&cfg, &train);
    let crlf = write(&base.join("train-bom-crlf.jsonl"), bom_crlf(&train_text));
    assert_eq!(dry(&cfg, &crlf), want);
    let cfg_bom = write(&base.join("recipe-bom-crlf.toml"), bom_crlf(&recipe));
    assert_eq!(dry(&cfg_bom, &train), want);
    let trained = ok(&[
        "sft",
        "--config",
        s(&cfg_bom),
        "--set",
        &format!("data.train=[\"{}\"]", crlf.display()),
        "--set",
        &format!("run.out=\"{}\"", base.join("bom-crlf-run").display()),
    ]);
    assert!(trained.contains("step 2:"), "{trained}");
}

#[test]
fn ppo_bad_input_is_one_line_naming_the_culprit() {
    let tmp = tempfile::tempdir().unwrap();
    let base = tmp.path();
    let llama = fixture("fixtures/models/llama-eval");
    // A reward model with the policy's tokenizer: one step of `manabi reward` on sums.
    let pairs: Vec<serde_json::Value> = (0..12)
        .map(|i| {
            let (a, b) = (1 + i / 3, 1 + i % 3);
            serde_json::json!({
                "prompt": format!("{a}+{b}="),
                "chosen": format!(" {}", a + b),
                "rejected": format!(" {}", a + b + 1),
            })
        })
        .collect();
    let pairs = write(&base.join("pairs.jsonl"), jsonl(&pairs));
    let reward_cfg = write(
        &base.join("reward.toml"),
        format!(
            r#"[run]
out = "{out}"
[model]
path = "{llama}"
[data]
train = ["{pairs}"]
val = ["{pairs}"]
max_length = 64
[train]
steps = 1
batch_size = 2
warmup_steps = 0
eval_batches = 1
progress = false
"#,
            out = base.join("reward").display(),
            pairs = pairs.display(),
        ),
    );
    ok(&["reward", "--config", s(&reward_cfg)]);
    let rm = base.join("reward/checkpoints/step-0000001");
    assert!(rm.join("head.toml").exists());

    let prompts: Vec<serde_json::Value> = (0..12)
        .map(|i| serde_json::json!({ "prompt": format!("{}+{}=", 1 + i / 3, 1 + i % 3) }))
        .collect();
    let train_text = jsonl(&prompts[..8]);
    let train = write(&base.join("prompts.jsonl"), &train_text);
    let val = write(&base.join("val.jsonl"), jsonl(&prompts[8..]));
    let recipe = format!(
        r#"[run]
out = "{out}"
[model]
path = "{llama}"
[data]
train = ["{train}"]
val = ["{val}"]
eval_prompts = 2
[peft]
method = "lora"
r = 4
targets = ["q_proj", "v_proj"]
[ppo]
reward_model = "{rm}"
max_new_tokens = 3
num_ppo_epochs = 1
num_mini_batches = 1
[train]
steps = 1
batch_size = 2
warmup_steps = 0
eval_batches = 1
progress = false
"#,
        out = base.join("run").display(),
        train = train.display(),
        val = val.display(),
        rm = rm.display(),
    );
    let cfg = write(&base.join("recipe.toml"), &recipe);
    let (unknown, unknown_line) = insert_after(&recipe, "max_new_tokens = ", "reward_scale = 2.0");
    let (wrong_type, wrong_type_line) =
        replace_line(&recipe, "num_ppo_epochs = ", "num_ppo_epochs = \"one\"");
    let (no_rm, _) = replace_line(&recipe, "reward_model = ", "");
    let bpe_ja = fixture("fixtures/tokenize/bpe-ja/tokenizer.json");
    let bert_cls = fixture("fixtures/models/bert-cls");

    let mut other_tokenizer = case(
        "reward-model-of-another-tokenizer",
        &[
            "--config",
            "{cfg}",
            "--set",
            "ppo.reward_model=\"{dir}/rm\"",
        ],
        &[
            "ppo.reward_model",
            "{dir}/rm/tokenizer.json",
            "reward_own_tokenizer",
        ],
    );
    // The reward model's files with another tokenizer.json.
    for entry in std::fs::read_dir(&rm).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let bytes = match name.as_str() {
            "tokenizer.json" => {
                std::fs::read(root().join("fixtures/tokenize/wordpiece-en/tokenizer.json")).unwrap()
            }
            _ => std::fs::read(&path).unwrap(),
        };
        other_tokenizer = other_tokenizer.with(&format!("rm/{name}"), bytes);
    }

    let cases = vec![
        // PPO keeps its models in f32: a bf16 base is refused by key, not ignored.
        case(
            "bf16-base",
            &["--config", "{cfg}", "--set", "model.dtype=\"bf16\""],
            &["model.dtype", "manabi ppo"],
        ),
        case(
            "missing-config",
            &["--config", "{dir}/nope.toml"],
            &["{dir}/nope.toml"],
        ),
        case(
            "unknown-key-in-file",
            &["--config", "{dir}/unknown.toml"],
            &[
                "unknown.toml",
                "ppo.reward_scale",
                &format!("line {unknown_line}"),
            ],
        )
        .with("unknown.toml", unknown),
        case(
            "wrong-type-in-file",
            &["--config", "{dir}/wrong-type.toml"],
            &[
                "wrong-type.toml",
                "ppo.num_ppo_epochs",
                &format!("line {wrong_type_line}"),
            ],
        )
        .with("wrong-type.toml", wrong_type),
        case(
            "no-reward-model",
            &["--config", "{dir}/no-rm.toml"],
            &["no-rm.toml", "ppo.reward_model"],
        )
        .with("no-rm.toml", no_rm),
        case(
            "negative-lr",
            &["--config", "{cfg}", "--set", "train.lr=-0.001"],
            &["train.lr", "--set"],
        ),
        case(
            "zero-steps",
            &["--config", "{cfg}", "--set", "train.steps=0"],
            &["train.steps"],
        ),
        case(
            "zero-batch",
            &["--config", "{cfg}", "--set", "train.batch_size=0"],
            &["train.batch_size"],
        ),
        case(
            "cliprange-1.5",
            &["--config", "{cfg}", "--set", "ppo.cliprange=1.5"],
            &["ppo.cliprange"],
        ),
        case(
            "zero-temperature",
            &["--config", "{cfg}", "--set", "ppo.temperature=0"],
            &["ppo.temperature"],
        ),
        case(
            "top-p-2",
            &["--config", "{cfg}", "--set", "ppo.top_p=2.0"],
            &["ppo.top_p"],
        ),
        case(
            "zero-mini-batches",
            &["--config", "{cfg}", "--set", "ppo.num_mini_batches=0"],
            &["ppo.num_mini_batches"],
        ),
        case(
            "unknown-kl-estimator",
            &["--config", "{cfg}", "--set", "ppo.kl_estimator=\"k2\""],
            &["ppo.kl_estimator"],
        ),
        case(
            "response-fills-the-context",
            &["--config", "{cfg}", "--set", "ppo.max_new_tokens=64"],
            &["ppo.max_new_tokens", "64 positions"],
        ),
        case(
            "set-without-equals",
            &["--config", "{cfg}", "--set", "oops"],
            &["oops", "section.key=value"],
        ),
        case(
            "set-unknown-key",
            &["--config", "{cfg}", "--set", "ppo.bogus=1"],
            &["ppo.bogus", "--set"],
        ),
        case(
            "missing-prompt-file",
            &[
                "--config",
                "{cfg}",
                "--set",
                "data.train=[\"{dir}/missing.jsonl\"]",
            ],
            &["{dir}/missing.jsonl"],
        ),
        case(
            "empty-prompt-file",
            &[
                "--config",
                "{cfg}",
                "--set",
                "data.train=[\"{dir}/empty.jsonl\"]",
            ],
            &["{dir}/empty.jsonl"],
        )
        .with("empty.jsonl", ""),
        case(
            "no-held-out-files",
            &["--config", "{cfg}", "--set", "data.val=[]"],
            &["data.val"],
        ),
        case(
            "malformed-jsonl-line",
            &[
                "--config",
                "{cfg}",
                "--set",
                "data.train=[\"{dir}/bad.jsonl\"]",
            ],
            &["{dir}/bad.jsonl:4:", "JSON"],
        )
        .with(
            "bad.jsonl",
            with_bad_fourth_line(&train_text, "{\"prompt\": "),
        ),
        case(
            "jsonl-line-without-prompt",
            &[
                "--config",
                "{cfg}",
                "--set",
                "data.train=[\"{dir}/no-prompt.jsonl\"]",
            ],
            &["{dir}/no-prompt.jsonl:4:", "prompt"],
        )
        .with(
            "no-prompt.jsonl",
            with_bad_fourth_line(&train_text, "{\"question\": \"1+1=\"}"),
        ),
        case(
            "missing-policy-folder",
            &[
                "--config",
                "{cfg}",
                "--set",
                "model.path=\"{dir}/no-model\"",
            ],
            &["{dir}/no-model"],
        ),
        case(
            "policy-folder-is-no-model",
            &[
                "--config",
                "{cfg}",
                "--set",
                "model.path=\"{dir}/not-a-model\"",
            ],
            &["{dir}/not-a-model"],
        )
        .with("not-a-model/notes.json", "{\"hello\": 1}"),
        case(
            "tokenizer-larger-than-vocab",
            &[
                "--config",
                "{cfg}",
                "--set",
                &format!("model.tokenizer=\"{bpe_ja}\""),
            ],
            &["model.tokenizer", "bpe-ja/tokenizer.json"],
        ),
        case(
            "missing-reward-folder",
            &[
                "--config",
                "{cfg}",
                "--set",
                "ppo.reward_model=\"{dir}/no-rm\"",
            ],
            &["{dir}/no-rm"],
        ),
        case(
            "reward-folder-is-no-model",
            &[
                "--config",
                "{cfg}",
                "--set",
                "ppo.reward_model=\"{dir}/not-a-model\"",
            ],
            &["{dir}/not-a-model"],
        )
        .with("not-a-model/notes.json", "{\"hello\": 1}"),
        case(
            "causal-lm-as-reward-model",
            &[
                "--config",
                "{cfg}",
                "--set",
                &format!("ppo.reward_model=\"{llama}\""),
            ],
            &["ppo.reward_model", "llama-eval", "not a reward model"],
        ),
        case(
            "bert-classifier-as-reward-model",
            &[
                "--config",
                "{cfg}",
                "--set",
                &format!("ppo.reward_model=\"{bert_cls}\""),
            ],
            &["bert-cls"],
        ),
        other_tokenizer,
        case(
            "causal-lm-as-value-model",
            &[
                "--config",
                "{cfg}",
                "--set",
                &format!("ppo.value_model=\"{llama}\""),
            ],
            &["ppo.value_model", "llama-eval"],
        ),
        case(
            "lora-rank-0",
            &["--config", "{cfg}", "--set", "peft.r=0"],
            &["recipe.toml: peft.r", "--set"],
        ),
        case(
            "unknown-target-module",
            &["--config", "{cfg}", "--set", "peft.targets=[\"nope_proj\"]"],
            &["peft.targets", "nope_proj"],
        ),
        case(
            "resume-of-no-run",
            &["--config", "{cfg}", "--resume", "{dir}/not-a-run"],
            &["{dir}/not-a-run", "checkpoint"],
        )
        .with("not-a-run/notes.txt", "not a run"),
    ];
    run_cases("ppo", base, &cfg, &cases);

    // Accepted: a BOM and CRLF line ends in the prompts and in the recipe; the seeded
    // run samples and scores exactly as on the plain files.
    let table = |name: &str, cfg: &Path, train: &Path| -> Vec<String> {
        let out = ok(&[
            "ppo",
            "--config",
            s(cfg),
            "--set",
            &format!("data.train=[\"{}\"]", train.display()),
            "--set",
            &format!("run.out=\"{}\"", base.join(name).display()),
        ]);
        let rows: Vec<String> = out
            .lines()
            .filter(|l| l.starts_with("| before") || l.starts_with("| after"))
            .map(str::to_string)
            .collect();
        assert_eq!(rows.len(), 2, "{out}");
        rows
    };
    let want = table("plain", &cfg, &train);
    let crlf = write(&base.join("prompts-bom-crlf.jsonl"), bom_crlf(&train_text));
    assert_eq!(table("bom-crlf-prompts", &cfg, &crlf), want);
    let cfg_bom = write(&base.join("recipe-bom-crlf.toml"), bom_crlf(&recipe));
    assert_eq!(table("bom-crlf-recipe", &cfg_bom, &train), want);
}
