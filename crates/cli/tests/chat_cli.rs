//! `manabi chat` on a copy of the tiny `fixtures/models/llama-eval` (a random Llama:
//! byte-level BPE of 512 tokens, 64 positions, `generation_config.json` EOS id 2) given a
//! chat template. The expected tokens are transformers' greedy continuations of the
//! rendered prompts (`apply_chat_template` + `generate`), worked out once in Python.

mod common;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use common::{fails, root, s};

/// `role: content<eos>` + newline per message, `assistant:` to answer: every turn ends
/// with `<eos>` (id 3), which `manabi chat` finds as the end of turn.
const TEMPLATE: &str = "{% for message in messages %}{{ message['role'] + ': ' + message['content'] + eos_token + '\\n' }}{% endfor %}{% if add_generation_prompt %}{{ 'assistant:' }}{% endif %}\n";

/// What the first turn "how are you" renders to (19 tokens).
const HOW_ARE_YOU: &str = "user: how are you<eos>\nassistant:";

/// A copy of llama-eval in `dir/llama`, with [`TEMPLATE`] in `chat_template.jinja` and
/// `eos_token` `<eos>` in `tokenizer_config.json` when `template` is set.
fn model(dir: &Path, template: bool) -> PathBuf {
    let out = dir.join("llama");
    std::fs::create_dir(&out).unwrap();
    let src = root().join("fixtures/models/llama-eval");
    for f in [
        "config.json",
        "generation_config.json",
        "model.safetensors",
        "tokenizer.json",
    ] {
        std::fs::copy(src.join(f), out.join(f)).unwrap();
    }
    if template {
        std::fs::write(out.join("chat_template.jinja"), TEMPLATE).unwrap();
        std::fs::write(
            out.join("tokenizer_config.json"),
            r#"{"bos_token": "<bos>", "eos_token": "<eos>"}"#,
        )
        .unwrap();
    }
    out
}

/// Runs `manabi chat --model MODEL ARGS` with `stdin` piped in.
fn chat(model: &Path, args: &[&str], stdin: &str) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_manabi"))
        .args(["chat", "--model", s(model)])
        .args(args)
        .current_dir(root())
        .env_remove("MANABI_DEVICE")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("runs the manabi binary");
    // Dropping the pipe at the end of the statement is the end of input.
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

/// [`chat`], which must succeed: (stdout, stderr).
fn ok_chat(model: &Path, args: &[&str], stdin: &str) -> (String, String) {
    let out = chat(model, args, stdin);
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(out.status.success(), "{args:?} failed: {stderr}");
    (String::from_utf8_lossy(&out.stdout).to_string(), stderr)
}

/// The prompts `--show-prompt` printed, in order.
fn prompts(stderr: &str) -> Vec<String> {
    let mut found = Vec::new();
    let mut current: Option<Vec<&str>> = None;
    for line in stderr.lines() {
        if line.starts_with("[prompt: ") {
            current = Some(Vec::new());
        } else if line.starts_with("[answer: ") {
            found.extend(current.take().map(|lines| lines.join("\n")));
        } else if let Some(lines) = &mut current {
            lines.push(line);
        }
    }
    found
}

/// `(prompt tokens, tokens from the cache)` of each `[prompt: …]` line.
fn prompt_sizes(stderr: &str) -> Vec<(usize, usize)> {
    stderr
        .lines()
        .filter_map(|l| {
            let rest = l.strip_prefix("[prompt: ")?;
            let (n, rest) = rest.split_once(" tokens, ")?;
            let (cached, _) = rest.split_once(" from the cache]")?;
            Some((n.parse().ok()?, cached.parse().ok()?))
        })
        .collect()
}

/// The length in tokens of each answer (`[answer: N tokens, …]`).
fn answer_sizes(stderr: &str) -> Vec<usize> {
    stderr
        .lines()
        .filter_map(|l| {
            let rest = l.strip_prefix("[answer: ")?;
            rest.split_once(" tokens")?.0.parse().ok()
        })
        .collect()
}

/// Swaps rows `a` and `b` of the `[rows, cols]` f32 tensor `name` of a safetensors file.
fn swap_rows(path: &Path, name: &str, a: usize, b: usize) {
    let mut bytes = std::fs::read(path).unwrap();
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let header: serde_json::Value = serde_json::from_slice(&bytes[8..8 + n]).unwrap();
    let tensor = &header[name];
    assert_eq!(tensor["dtype"], "F32", "{tensor}");
    let width = 4 * tensor["shape"][1].as_u64().unwrap() as usize;
    let start = 8 + n + tensor["data_offsets"][0].as_u64().unwrap() as usize;
    let (lo, hi) = (start + a.min(b) * width, start + a.max(b) * width);
    let (head, tail) = bytes.split_at_mut(hi);
    head[lo..lo + width].swap_with_slice(&mut tail[..width]);
    std::fs::write(path, bytes).unwrap();
}

#[test]
fn once_prints_the_answer_and_exits() {
    let tmp = tempfile::tempdir().unwrap();
    let m = model(tmp.path(), true);
    let args = [
        "--once",
        "how are you",
        "--max-new-tokens",
        "6",
        "--show-prompt",
    ];
    // stdin is not read: one turn only.
    let (out, err) = ok_chat(&m, &args, "hello\n");
    // transformers: [448, 186, 13, 448, 264, 355] = " Pri", a lone byte, ")", " Pri",
    // " w", " so"; the lone byte prints as U+FFFD once the next token shows it incomplete.
    assert_eq!(out, " Pri\u{fffd}) Pri w so\n");
    assert_eq!(prompts(&err), [HOW_ARE_YOU]);
    assert_eq!(prompt_sizes(&err), [(19, 0)]);
    assert_eq!(answer_sizes(&err), [6]);
    assert!(err.contains("stopped at the token limit"), "{err}");

    // Sampling is reproducible with a seed.
    let sampled = [
        "--once",
        "how are you",
        "--max-new-tokens",
        "6",
        "--temperature",
        "0.9",
        "--top-k",
        "50",
        "--seed",
        "3",
    ];
    let (a, _) = ok_chat(&m, &sampled, "");
    assert!(a.ends_with('\n'), "{a:?}");
    assert_eq!(a, ok_chat(&m, &sampled, "").0);

    // --system opens the conversation.
    let (_, err) = ok_chat(
        &m,
        &[
            "--once",
            "hello",
            "--system",
            "Be brief.",
            "--max-new-tokens",
            "2",
            "--show-prompt",
        ],
        "",
    );
    assert_eq!(
        prompts(&err),
        ["system: Be brief.<eos>\nuser: hello<eos>\nassistant:"]
    );
}

#[test]
fn the_answer_ends_at_the_end_of_turn_and_at_every_eos_id() {
    let tmp = tempfile::tempdir().unwrap();
    let m = model(tmp.path(), true);
    let args = [
        "--once",
        "how are you",
        "--max-new-tokens",
        "8",
        "--show-prompt",
    ];
    // The greedy answer starts " Pri" (448), then a lone byte (186).
    let (full, err) = ok_chat(&m, &args, "");
    assert_eq!(answer_sizes(&err), [8], "{err}");
    assert!(full.starts_with(" Pri\u{fffd})"), "{full:?}");

    // An `eos_token_id` of generation_config.json (any of a list) ends the answer.
    let gen_cfg = m.join("generation_config.json");
    let original = std::fs::read_to_string(&gen_cfg).unwrap();
    std::fs::write(&gen_cfg, r#"{"eos_token_id": [500, 186]}"#).unwrap();
    let (out, err) = ok_chat(&m, &args, "");
    assert_eq!(out, " Pri\n");
    assert_eq!(answer_sizes(&err), [1], "{err}");
    assert!(err.contains("stopped at an end token"), "{err}");
    std::fs::write(&gen_cfg, original).unwrap();

    // The template's end of turn, `<eos>` (3), is not in generation_config.json (2), yet
    // it ends the answer: swapping the LM-head rows of 3 and 186 gives <eos> the logit
    // 186 had, so the second token is <eos>, and the answer is " Pri" alone — the
    // end-of-turn text itself is never printed.
    swap_rows(&m.join("model.safetensors"), "lm_head.weight", 3, 186);
    let (out, err) = ok_chat(&m, &args, "");
    assert_eq!(out, " Pri\n");
    assert_eq!(answer_sizes(&err), [1], "{err}");
}

#[test]
fn piped_lines_are_one_turn_each_and_the_cache_changes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let m = model(tmp.path(), true);
    let args = ["--max-new-tokens", "6", "--show-prompt"];
    let (out, err) = ok_chat(&m, &args, "how are you\n\nhello\n");
    let answers: Vec<&str> = out.lines().collect();
    assert_eq!(answers.len(), 2, "{out:?}");
    assert!(
        !out.contains("> "),
        "no prompt when stdin is not a terminal: {out:?}"
    );
    assert_eq!(answers[0], " Pri\u{fffd}) Pri w so");
    // The second prompt holds the first turn and its answer.
    assert_eq!(
        prompts(&err),
        [
            HOW_ARE_YOU.to_string(),
            format!(
                "{HOW_ARE_YOU}{}<eos>\nuser: hello<eos>\nassistant:",
                answers[0]
            )
        ]
    );
    // The first prompt's keys and values are reused. The answer is kept trimmed, as the template writes a turn ("assistant: Pri…"), so
    // its first token re-encodes as generated and the shared prefix reaches it (20).
    assert_eq!(prompt_sizes(&err), [(19, 0), (47, 20)]);

    // Recomputing everything at every step gives the same answers.
    let mut no_cache = args.to_vec();
    no_cache.push("--no-cache");
    let (again, err) = ok_chat(&m, &no_cache, "how are you\n\nhello\n");
    assert_eq!(again, out);
    assert_eq!(prompt_sizes(&err), [(19, 0), (47, 0)]);
}

#[test]
fn reset_system_and_exit_commands() {
    let tmp = tempfile::tempdir().unwrap();
    let m = model(tmp.path(), true);
    let args = ["--max-new-tokens", "4", "--show-prompt"];
    let (out, err) = ok_chat(
        &m,
        &args,
        "how are you\n/reset\nhow are you\n/exit\nnever sent\n",
    );
    let answers: Vec<&str> = out.lines().collect();
    assert_eq!(answers.len(), 2, "{out:?}");
    assert_eq!(answers[0], answers[1]);
    // After /reset the prompt holds no earlier turn; the cache still holds the first
    // prompt, so all of it but its last token is reused.
    assert_eq!(prompts(&err), [HOW_ARE_YOU, HOW_ARE_YOU]);
    assert_eq!(prompt_sizes(&err), [(19, 0), (19, 18)]);

    // /system sets the system message and keeps the conversation; /system alone
    // removes it. Unknown commands are not sent.
    let (out, err) = ok_chat(
        &m,
        &["--max-new-tokens", "2", "--show-prompt"],
        "hi\n/system Be brief.\n/nope\nhi\n/system\nhi\n",
    );
    assert_eq!(out.lines().count(), 3, "{out:?}");
    assert!(err.contains("unknown command /nope"), "{err}");
    let p = prompts(&err);
    assert_eq!(p.len(), 3, "{err}");
    assert_eq!(p[0], "user: hi<eos>\nassistant:");
    assert!(
        p[1].starts_with("system: Be brief.<eos>\nuser: hi<eos>\nassistant:"),
        "{}",
        p[1]
    );
    assert!(p[1].ends_with("user: hi<eos>\nassistant:"), "{}", p[1]);
    assert!(
        p[2].starts_with("user: hi<eos>\nassistant:") && p[2].matches("user: hi").count() == 3,
        "{}",
        p[2]
    );
}

#[test]
fn a_model_without_a_template_chats_in_manabis_format() {
    let tmp = tempfile::tempdir().unwrap();
    let m = model(tmp.path(), false);
    let (out, err) = ok_chat(
        &m,
        &["--once", "hello", "--max-new-tokens", "2", "--show-prompt"],
        "",
    );
    assert_eq!(out.lines().count(), 1, "{out:?}");
    assert!(err.contains("has no chat template"), "{err}");
    // What `manabi sft` trains chat data as.
    assert_eq!(prompts(&err), ["<|user|>\nhello<|end|>\n<|assistant|>\n"]);
}

#[test]
fn errors_are_one_line() {
    let line = fails(&["chat", "--model", "no/such/model", "--once", "hi"]);
    assert!(
        line.contains("no/such/model: no such model folder"),
        "{line}"
    );
    let line = fails(&["chat", "--model", "fixtures/models/bert", "--once", "hi"]);
    assert!(line.contains("does not chat"), "{line}");
    let line = fails(&[
        "chat",
        "--model",
        "fixtures/models/llama-eval",
        "--once",
        "hi",
        "--top-p",
        "2",
    ]);
    assert!(line.contains("top-p"), "{line}");

    // Piped turns end the run when the conversation no longer fits the model's 64
    // positions (the third prompt is 77 tokens in transformers); the answers so far are
    // printed.
    let tmp = tempfile::tempdir().unwrap();
    let m = model(tmp.path(), true);
    let out = chat(
        &m,
        &["--max-new-tokens", "6"],
        "how are you\nhow are you\nhow are you\n",
    );
    assert!(!out.status.success());
    assert_eq!(String::from_utf8_lossy(&out.stdout).lines().count(), 2);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "{stderr}");
    assert!(
        lines[0].starts_with("error: the conversation is ")
            && lines[0].ends_with(" tokens, the model holds 64: /reset starts a new one"),
        "{stderr}"
    );
}
