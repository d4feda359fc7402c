//! Every decoder family manabi imports trains in every preference-and-instruction stage:
//! a short SFT, DPO and reward run (two steps each) from the tiny Hugging Face fixtures
//! of fixtures/models (made by transformers: scripts/family_fixtures.py,
//! scripts/qwen_fixtures.py, scripts/rope_scaling_fixtures.py), each ending in a
//! checkpoint that loads again. A character tokenizer of fewer tokens than the fixtures'
//! 64 stands in for theirs.

mod common;

use common::{ok, s};

/// The families, each with the switches its fixture exercises.
const FAMILIES: [&str; 13] = [
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
fn sft_dpo_and_reward_run_from_every_family() {
    let tmp = tempfile::tempdir().unwrap();
    let tokenizer = char_tokenizer(tmp.path());
    for family in FAMILIES {
        let model = format!("model.path=fixtures/models/{family}");
        for (stage, config, length) in [
            ("sft", "configs/sft/arith.toml", "data.block_size=32"),
            ("dpo", "configs/align/dpo.toml", "data.max_length=32"),
            ("reward", "configs/align/reward.toml", "data.max_length=32"),
        ] {
            let run = tmp.path().join(format!("{stage}-{family}"));
            let out = format!("run.out={}", s(&run));
            let stdout = ok(&[
                stage,
                "--config",
                config,
                "--set",
                &model,
                "--set",
                &tokenizer,
                "--set",
                "train.steps=2",
                "--set",
                length,
                "--set",
                &out,
            ]);
            let ckpt = run.join("checkpoints/step-0000002");
            assert!(
                ckpt.join("model.bpk").is_file(),
                "{stage} from {family}: no checkpoint\n{stdout}"
            );
            let metric = match stage {
                "sft" => "exact match",
                "dpo" => "preference accuracy",
                _ => "pairwise accuracy",
            };
            assert!(stdout.contains(metric), "{stage} from {family}: {stdout}");
        }
    }
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
