//! GRPO: groups sampled per prompt, TRL's metric names, bitwise resume, and rewards that
//! give group-relative advantages.

use manabi_model::device::test_device;
use manabi_objectives::Recipe;

use super::{joined_losses, root, serial, tiny_base};

#[test]
fn grpo_samples_groups_logs_trl_metrics_and_resumes_bit_for_bit() {
    let _rng = serial();
    let tmp = tempfile::tempdir().unwrap();
    let base = tiny_base(tmp.path());
    let pref = root().join("datasets/pref");
    let text = |out: &str| {
        format!(
            r#"
[run]
out = "{out}"
seed = 9
[model]
path = "{base}"
[data]
train = ["{train}"]
val = ["{val}"]
eval_prompts = 8
[grpo]
num_generations = 4
max_new_tokens = 3
beta = 0.05
rewards = ["exact_match", "format"]
[train]
steps = 6
batch_size = 2
lr = 1e-3
warmup_steps = 1
eval_every = 3
eval_batches = 1
checkpoint_every = 3
progress = false
"#,
            out = tmp.path().join(out).display(),
            base = base.display(),
            train = pref.join("rl-arith-en.train.jsonl").display(),
            val = pref.join("rl-arith-en.val.jsonl").display(),
        )
    };
    let device = manabi_model::DeviceChoice::from_env().unwrap();
    let full = manabi_align::grpo(
        &manabi_align::GrpoConfig::parse(&text("g"), &[]).unwrap(),
        device,
        false,
    )
    .unwrap();
    assert_eq!(full.run.losses.len(), 6);
    let metrics = std::fs::read_to_string(tmp.path().join("g/metrics.jsonl")).unwrap();
    for k in [
        "\"reward\"",
        "\"reward_std\"",
        "\"frac_reward_zero_std\"",
        "\"completions/mean_length\"",
        "\"kl\"",
        "\"rewards/exact_match/mean\"",
        "\"rewards/format/mean\"",
        "\"eval/exact_match\"",
    ] {
        assert!(metrics.contains(k), "{k} missing: {metrics}");
    }
    let r1 = manabi_align::grpo(
        &manabi_align::GrpoConfig::parse(&text("h"), &["train.stop_after=3".into()]).unwrap(),
        device,
        false,
    )
    .unwrap();
    let r2 = manabi_align::grpo(
        &manabi_align::GrpoConfig::parse(&text("h"), &[]).unwrap(),
        device,
        true,
    )
    .unwrap();
    let joined = joined_losses(&r1.run, &r2.run);
    assert_eq!(joined, full.run.losses);
    let e = manabi_align::GrpoConfig::parse(&text("x"), &["grpo.num_generations=1".into()])
        .unwrap_err()
        .to_string();
    assert!(e.contains("grpo.num_generations"), "{e}");
    // A reward model as the reward (TRL's GRPO with a reward model): an HF
    // *ForSequenceClassification folder with its own tokenizer, which is refused unless
    // `reward_own_tokenizer` allows it.
    let cfg: manabi_model::ModelConfig = toml::from_str(
        "family = \"llama\"\nvocab_size = 512\nmax_positions = 128\nd_model = 32\nn_layers = 1\nn_heads = 4\nn_kv_heads = 2\nd_ff = 64\npositions = \"rope\"\nnorm = \"rmsnorm\"\nactivation = \"swiglu\"\ntie_embeddings = true",
    )
    .unwrap();
    let rm_dir = tmp.path().join("rm");
    manabi_model::DecoderClassifier::new(&cfg, 1, &test_device())
        .export_hf(
            &rm_dir,
            Some(&root().join("fixtures/tokenize/wordpiece-en/tokenizer.json")),
            Some(0),
            &[],
        )
        .unwrap();
    let mut with_rm = vec![
        "grpo.rewards=[\"model\"]".to_string(),
        format!("grpo.reward_model=\"{}\"", rm_dir.display()),
    ];
    let e = manabi_align::grpo(
        &manabi_align::GrpoConfig::parse(&text("rm-refused"), &with_rm).unwrap(),
        device,
        false,
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("grpo.reward_model") && e.contains("grpo.reward_own_tokenizer = true"),
        "{e}"
    );
    with_rm.extend([
        "grpo.reward_own_tokenizer=true".into(),
        "train.steps=2".into(),
        "train.eval_every=2".into(),
        "train.checkpoint_every=2".into(),
    ]);
    let r = manabi_align::grpo(
        &manabi_align::GrpoConfig::parse(&text("rm-run"), &with_rm).unwrap(),
        device,
        false,
    )
    .unwrap();
    assert_eq!(r.run.losses.len(), 2);
    let m = std::fs::read_to_string(tmp.path().join("rm-run/metrics.jsonl")).unwrap();
    let first: serde_json::Value = serde_json::from_str(m.lines().next().unwrap()).unwrap();
    // A random reward model scores every completion a little differently: rewards are
    // real numbers, not the 0/1 of exact match.
    let reward = first["reward"].as_f64().unwrap();
    assert!(reward.fract() != 0.0, "{first}");
    assert_eq!(first["rewards/model/mean"].as_f64(), Some(reward));
    let e = manabi_align::GrpoConfig::parse(&text("y"), &["grpo.rewards=[\"model\"]".into()])
        .unwrap_err()
        .to_string();
    assert!(e.contains("grpo.reward_model"), "{e}");
}

#[test]
fn group_relative_advantages_follow_the_rewards() {
    let _rng = serial();
    use manabi_align::grpo::{GrpoSettings, reward};
    let s = GrpoSettings {
        rewards: vec!["exact_match".into(), "format".into()],
        ..GrpoSettings::default()
    };
    assert_eq!(reward(&s, " 7", true, "7"), 2.0);
    assert_eq!(reward(&s, " 7\nQ: more", false, "7"), 1.0);
    assert_eq!(reward(&s, "8", true, "7"), 0.0);
    // An empty completion that ended with EOS at once has no format either.
    let f = GrpoSettings {
        rewards: vec!["format".into()],
        format_prefix: String::new(),
        ..GrpoSettings::default()
    };
    assert_eq!(reward(&f, "", true, "7"), 0.0);
    assert_eq!(reward(&f, " ", true, "7"), 0.0);
    assert_eq!(reward(&f, "7", true, "7"), 1.0);
}

#[test]
fn prompt_files_with_a_bom_and_crlf_lines_are_read() {
    use manabi_align::grpo::{RlPrompt, read_prompt_texts, read_prompts};
    let tmp = tempfile::tempdir().unwrap();
    let p = tmp.path().join("rl.jsonl");
    std::fs::write(
        &p,
        "\u{feff}{\"prompt\":\"1+1=\",\"answer\":\"2\"}\r\n  \r\n{\"prompt\":\"2+2=\",\"answer\":\"4\"}\r\n",
    )
    .unwrap();
    let paths = [p];
    assert_eq!(
        read_prompts(&paths).unwrap(),
        vec![
            RlPrompt {
                prompt: "1+1=".into(),
                answer: "2".into()
            },
            RlPrompt {
                prompt: "2+2=".into(),
                answer: "4".into()
            },
        ]
    );
    assert_eq!(read_prompt_texts(&paths).unwrap(), ["1+1=", "2+2="]);
}

#[test]
fn bad_prompt_lines_are_one_line_errors() {
    use manabi_align::grpo::{read_prompt_texts, read_prompts};
    let tmp = tempfile::tempdir().unwrap();
    let good = "{\"prompt\":\"1+1=\",\"answer\":\"2\"}";
    let cases = [
        (
            "{\"prompt\":\"2+2=\",\"answer\":\"\"}",
            "field `answer` is empty (an empty completion would count as correct)",
        ),
        (
            "{\"prompt\":\"2+2=\",\"answer\":\"  \"}",
            "field `answer` is empty (an empty completion would count as correct)",
        ),
        (
            "{\"prompt\":\"\",\"answer\":\"4\"}",
            "field `prompt` is empty",
        ),
        ("{\"answer\":\"4\"}", "missing field `prompt`"),
        ("{\"prompt\":\"2+2=\"}", "missing field `answer`"),
        (
            "{\"prompt\":\"2+2=\",\"answer\":4}",
            "field `answer` must be a string",
        ),
        (
            "{\"prompt\":\"2+2=\",\"answer\":\"4\\n5\"}",
            "field `answer` has several lines",
        ),
        ("[\"2+2=\", \"4\"]", "expected a JSON object"),
        ("{\"prompt\":\"2+2=\",", "not valid JSON"),
    ];
    for (i, (line, want)) in cases.iter().enumerate() {
        let p = tmp.path().join(format!("rl{i}.jsonl"));
        std::fs::write(&p, format!("{good}\n{line}\n")).unwrap();
        let e = read_prompts(&[p]).unwrap_err().to_string();
        assert!(!e.contains('\n'), "{e}");
        assert!(e.contains(&format!("rl{i}.jsonl:2: {want}")), "{e}");
    }
    // Prompt-only files (PPO) need no answer, but an empty prompt is still refused.
    let p = tmp.path().join("prompts.jsonl");
    std::fs::write(&p, "{\"prompt\":\"Hi\"}\n{\"prompt\":\" \"}\n").unwrap();
    let e = read_prompt_texts(&[p]).unwrap_err().to_string();
    assert!(
        e.contains("prompts.jsonl:2: field `prompt` is empty"),
        "{e}"
    );
    // A file without a single prompt is named.
    let empty = tmp.path().join("empty.jsonl");
    std::fs::write(&empty, "\n\n").unwrap();
    let e = read_prompts(&[empty]).unwrap_err().to_string();
    assert!(e.contains("empty.jsonl: no prompts in this file"), "{e}");
}
