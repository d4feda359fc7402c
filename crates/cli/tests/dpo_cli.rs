//! `manabi dpo eval`: TRL's DPO metrics of a policy against any reference, without
//! training; `manabi dpo --config` still reads a recipe.

mod common;

use common::{fails, ok, root};

fn eval_json(reference: &str) -> serde_json::Value {
    let out = ok(&[
        "dpo",
        "eval",
        "--model",
        "fixtures/models/llama-eval",
        "--reference",
        reference,
        "--data",
        "fixtures/dpo/pairs.jsonl",
        "--batch-size",
        "4",
        "--json",
    ]);
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"))
}

#[test]
fn dpo_eval_prints_trl_metrics_against_any_reference() {
    let expected: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(root().join("fixtures/dpo/expected.json")).unwrap(),
    )
    .unwrap();
    let pairs = expected["runs"]["sigmoid"]["pairs"].as_array().unwrap();
    let mean = |key: &str| {
        pairs.iter().map(|p| p[key].as_f64().unwrap()).sum::<f64>() / pairs.len() as f64
    };
    let num =
        |v: &serde_json::Value, k: &str| v[k].as_f64().unwrap_or_else(|| panic!("no `{k}` in {v}"));

    // The policy against itself: rewards 0, loss log 2, and its log-probs are TRL's
    // reference log-probs of the same model (fixtures/dpo, TRL 1.16).
    let same = eval_json("fixtures/models/llama-eval");
    assert_eq!(same["pairs"], 8);
    for k in ["rewards/chosen", "rewards/rejected", "rewards/margins"] {
        assert!(num(&same, k).abs() < 1e-6, "{k}: {same}");
    }
    assert!(
        (num(&same, "loss") - std::f64::consts::LN_2).abs() < 1e-5,
        "{same}"
    );
    for (k, trl) in [
        ("logps/chosen", mean("ref_logps_chosen")),
        ("logps/rejected", mean("ref_logps_rejected")),
    ] {
        let got = num(&same, k);
        assert!(
            (got - trl).abs() <= 1e-4 * trl.abs(),
            "{k}: {got} vs TRL {trl}"
        );
    }

    // Against another model of the same vocabulary (GPT-2 layout, same tokenizer): the
    // policy's log-probs are unchanged, the rewards are β · (policy − reference).
    let other = eval_json("fixtures/models/gpt2-eval");
    let (a, b) = (num(&other, "logps/chosen"), num(&same, "logps/chosen"));
    assert!((a - b).abs() <= 1e-7 * b.abs(), "{a} vs {b}");
    assert!(num(&other, "rewards/margins").abs() > 1e-6, "{other}");
    assert!(
        (num(&other, "loss") - std::f64::consts::LN_2).abs() > 1e-6,
        "{other}"
    );

    // The table.
    let text = ok(&[
        "dpo",
        "eval",
        "--model",
        "fixtures/models/llama-eval",
        "--reference",
        "fixtures/models/gpt2-eval",
        "--data",
        "fixtures/dpo/pairs.jsonl",
        "--beta",
        "0.2",
        "--loss-type",
        "ipo",
    ]);
    assert!(text.starts_with("8 pairs"), "{text}");
    for k in ["loss", "rewards/accuracies", "logps/rejected"] {
        assert!(text.contains(&format!("  {k} ")), "{k}: {text}");
    }
}

#[test]
fn dpo_eval_and_dpo_report_bad_input_in_one_line() {
    // A reference of another vocabulary (64 tokens, no tokenizer.json).
    let line = fails(&[
        "dpo",
        "eval",
        "--model",
        "fixtures/models/llama-eval",
        "--reference",
        "fixtures/models/llama-gqa",
        "--data",
        "fixtures/dpo/pairs.jsonl",
    ]);
    assert!(
        line.contains("llama-gqa") && line.contains("embeds 64 tokens, the policy 512"),
        "{line}"
    );
    let line = fails(&[
        "dpo",
        "eval",
        "--model",
        "fixtures/models/llama-eval",
        "--data",
        "fixtures/dpo/pairs.jsonl",
    ]);
    assert!(line.contains("reference"), "{line}");
    let line = fails(&[
        "dpo",
        "eval",
        "--model",
        "fixtures/models/llama-eval",
        "--reference",
        "fixtures/models/nope",
        "--data",
        "fixtures/dpo/pairs.jsonl",
    ]);
    assert!(line.contains("nope: no such model folder"), "{line}");
    // `manabi dpo --config` still reads a recipe.
    let line = fails(&["dpo", "--config", "configs/align/nope.toml"]);
    assert!(line.contains("nope.toml"), "{line}");
}
