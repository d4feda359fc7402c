//! Every decoder family manabi imports trains in every stage: a short continued
//! pre-training, SFT, DPO, reward, GRPO, PPO, classification and NER run (two steps each) from the
//! tiny Hugging Face fixtures of fixtures/models (made by transformers:
//! scripts/family_fixtures.py, scripts/qwen_fixtures.py, scripts/rope_scaling_fixtures.py),
//! each ending in a checkpoint. A character tokenizer of fewer tokens than the fixtures'
//! 64 stands in for theirs.

mod common;

use common::{ok, s};

/// The families, each with the switches its fixture exercises.
const FAMILIES: [&str; 14] = [
    "gpt2",               // learned positions, LayerNorm, fused c_attn
    "llama-gqa",          // grouped-query attention
    "mistral-window",     // sliding window
    "qwen2",              // q/k/v biases
    "qwen3",              // per-head q/k RMSNorm
    "phi3",               // fused qkv_proj / gate_up_proj
    "phi3-longrope",      // LongRoPE
    "gemma2",             // (1 + w) norms, soft caps, post-norms, GeGLU-tanh
    "gemma3",             // QK-norm, two RoPE bases
    "neox-parallel",      // parallel residual, per-head fused query_key_value
    "olmo2",              // norms after the sublayers
    "stablelm",           // partial rotary, LayerNorm, q/k/v biases
    "stablelm-parallel",  // one norm for a parallel residual, per-head q/k LayerNorm
    "llama-rope-dynamic", // dynamic NTK RoPE
];

/// A character tokenizer of the arithmetic prompts (36 tokens) in `dir`; the `--set`
/// that names it.
fn char_tokenizer(dir: &std::path::Path) -> String {
    let tok = dir.join("tok");
    ok(&[
        "tokenizer",
        "train",
        "--kind",
        "char",
        "--vocab-size",
        "60",
        "--min-frequency",
        "1",
        "--special-tokens",
        "<pad>,<eos>,<unk>",
        "--field",
        "prompt",
        "--quiet",
        "--input",
        "datasets/pref/rl-arith-en.train.jsonl",
        "--out",
        s(&tok),
    ]);
    format!("model.tokenizer={}", s(&tok.join("tokenizer.json")))
}

#[test]
fn pretraining_sft_dpo_reward_and_tasks_run_from_every_family() {
    let tmp = tempfile::tempdir().unwrap();
    let tokenizer = char_tokenizer(tmp.path());
    for family in FAMILIES {
        // Tasks read the body with a fresh head: sequence and token classification.
        let task = ["task.max_length=32", "train.eval_batches=1", "data.test=[]"];
        let text = [
            "data.block_size=32",
            "data.inputs=[\"datasets/tiny/stories-en.txt\"]",
            "train.eval_batches=1",
        ];
        for (stage, config, sets) in [
            (
                "pretrain",
                "configs/pretrain/continue-world-copy.toml",
                &text[..],
            ),
            ("sft", "configs/sft/arith.toml", &["data.block_size=32"]),
            ("dpo", "configs/align/dpo.toml", &["data.max_length=32"]),
            (
                "reward",
                "configs/align/reward.toml",
                &["data.max_length=32"],
            ),
            ("task", "configs/tasks/sentiment.toml", &task),
            ("task", "configs/tasks/ner.toml", &task),
        ] {
            let name = std::path::Path::new(config).file_stem().unwrap();
            let run = tmp.path().join(format!("{}-{family}", name.display()));
            let stdout = run_stage(&run, family, &tokenizer, stage, config, sets);
            let metric = match name.to_str().unwrap() {
                "continue-world-copy" => "val loss",
                "arith" => "exact match",
                "dpo" => "preference accuracy",
                "reward" => "pairwise accuracy",
                "sentiment" => "accuracy",
                _ => "f1",
            };
            assert!(stdout.contains(metric), "{stage} from {family}: {stdout}");
        }
    }
}

#[test]
fn grpo_and_ppo_run_from_every_family() {
    // GRPO on the arithmetic prompts; PPO with a reward model
    // trained from the same family (two steps of `manabi reward`) and the same tokenizer.
    let tmp = tempfile::tempdir().unwrap();
    let tokenizer = char_tokenizer(tmp.path());
    // Prompts longer than GPT-2's 32 positions: cut from the left for the completion.
    let long = tmp.path().join("long.jsonl");
    let lines: Vec<String> = (0..4)
        .map(|i| {
            format!(
                "{{\"prompt\": \"Q: A farmer has {i} sheep and buys 2 more at the market. \
                 How many sheep are there now?\\nA:\", \"answer\": \"{}\"}}",
                i + 2
            )
        })
        .collect();
    std::fs::write(&long, lines.join("\n")).unwrap();
    let data = format!("[\"{}\"]", s(&long));
    let (train, val) = (format!("data.train={data}"), format!("data.val={data}"));
    let short = [
        "train.batch_size=2",
        "data.eval_prompts=2",
        "train.eval_every=2",
        train.as_str(),
        val.as_str(),
    ];
    for family in FAMILIES {
        let dir = |stage: &str| tmp.path().join(format!("{stage}-{family}"));
        let rm = dir("reward");
        let reward = "configs/align/reward.toml";
        run_stage(
            &rm,
            family,
            &tokenizer,
            "reward",
            reward,
            &["data.max_length=32"],
        );
        // The format reward (a completion starting with a space) differs between the
        // samples of a random model, so advantages and gradients are not zero.
        let grpo = [
            "grpo.num_generations=4",
            "grpo.max_new_tokens=3",
            "grpo.rewards=[\"format\"]",
        ];
        let config = "configs/align/grpo.toml";
        let sets = [&short[..], &grpo].concat();
        let stdout = run_stage(&dir("grpo"), family, &tokenizer, "grpo", config, &sets);
        assert!(
            stdout.contains("exact match"),
            "grpo from {family}: {stdout}"
        );
        let rm = format!("ppo.reward_model={}", s(&rm));
        let ppo = [
            rm.as_str(),
            "ppo.max_new_tokens=3",
            "ppo.num_ppo_epochs=1",
            "ppo.num_mini_batches=1",
        ];
        let config = "configs/align/ppo.toml";
        let sets = [&short[..], &ppo].concat();
        let stdout = run_stage(&dir("ppo"), family, &tokenizer, "ppo", config, &sets);
        // Every fixture has at most 64 positions: the 87-token prompts were cut.
        assert!(
            stdout.contains("| reward score |") && stdout.contains("prompts cut from the left"),
            "ppo from {family}: {stdout}"
        );
    }
}

/// `manabi STAGE --config CONFIG` from `family`'s fixture with the `tokenizer` setting,
/// two steps into `dir`, with `sets` on top; the run must end in its step-2 checkpoint.
/// Its output.
fn run_stage(
    dir: &std::path::Path,
    family: &str,
    tokenizer: &str,
    stage: &str,
    config: &str,
    sets: &[&str],
) -> String {
    let model = format!("model.path=fixtures/models/{family}");
    let out = format!("run.out={}", s(dir));
    let mut args = vec![stage, "--config", config];
    for set in [model.as_str(), tokenizer, "train.steps=2", out.as_str()]
        .into_iter()
        .chain(sets.iter().copied())
    {
        args.extend(["--set", set]);
    }
    let stdout = ok(&args);
    assert!(
        dir.join("checkpoints/step-0000002/model.bpk").is_file(),
        "{stage} from {family}: no checkpoint\n{stdout}"
    );
    stdout
}

#[test]
fn a_length_past_learned_positions_is_refused_in_one_line() {
    // GPT-2's position table has 32 rows: 256 tokens cannot be read (RoPE families may
    // extrapolate, as transformers lets them).
    let tmp = tempfile::tempdir().unwrap();
    let tokenizer = char_tokenizer(tmp.path());
    for (stage, config) in [
        ("dpo", "configs/align/dpo.toml"),
        ("reward", "configs/align/reward.toml"),
    ] {
        let out = format!("run.out={}", s(&tmp.path().join(stage)));
        let err = common::fails(&[
            stage,
            "--config",
            config,
            "--set",
            "model.path=fixtures/models/gpt2",
            "--set",
            &tokenizer,
            "--set",
            "data.max_length=256",
            "--set",
            &out,
        ]);
        assert!(
            err.contains("`data.max_length`") && err.contains("32 learned positions"),
            "{stage}: {err}"
        );
    }
}
