//! Task metrics against scikit-learn, SciPy, seqeval and rouge-score on committed fixtures
//! (scripts/metric_fixtures.py).

use std::path::Path;

use manabi_finetune::metrics::{
    EntityMode, RougeTokens, accuracy, entity_prf, macro_f1, pearson, rouge_l, rouge_n,
    rouge_tokens, spearman,
};
use serde_json::Value;

fn fixture() -> Value {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/metrics/expected.json");
    serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap()
}

fn close(what: &str, got: f64, want: &Value) {
    let want = want.as_f64().unwrap();
    assert!(
        (got - want).abs() <= 1e-9,
        "{what}: {got} vs reference {want}"
    );
}

fn ints(v: &Value) -> Vec<usize> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap() as usize)
        .collect()
}

fn floats(v: &Value) -> Vec<f64> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect()
}

fn tags(v: &Value) -> Vec<Vec<&str>> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|s| {
            s.as_array()
                .unwrap()
                .iter()
                .map(|t| t.as_str().unwrap())
                .collect()
        })
        .collect()
}

#[test]
fn classification_metrics_equal_scikit_learn() {
    for c in fixture()["classification"].as_array().unwrap() {
        let (g, p) = (ints(&c["gold"]), ints(&c["pred"]));
        let name = c["name"].as_str().unwrap();
        close(
            &format!("{name} accuracy"),
            accuracy(&g, &p),
            &c["accuracy"],
        );
        close(
            &format!("{name} macro-F1"),
            macro_f1(&g, &p),
            &c["macro_f1"],
        );
    }
}

#[test]
fn correlations_equal_scipy() {
    for c in fixture()["correlation"].as_array().unwrap() {
        let (x, y) = (floats(&c["x"]), floats(&c["y"]));
        let name = c["name"].as_str().unwrap();
        close(&format!("{name} pearson"), pearson(&x, &y), &c["pearson"]);
        close(
            &format!("{name} spearman"),
            spearman(&x, &y),
            &c["spearman"],
        );
    }
}

#[test]
fn entity_scores_equal_seqeval_in_both_modes() {
    for c in fixture()["seqeval"].as_array().unwrap() {
        let (g, p) = (tags(&c["gold"]), tags(&c["pred"]));
        let name = c["name"].as_str().unwrap();
        for (mode, key) in [
            (EntityMode::Strict, "strict"),
            (EntityMode::Default, "default"),
        ] {
            let (pr, re, f1) = entity_prf(&g, &p, mode);
            close(&format!("{name} {key} precision"), pr, &c[key]["precision"]);
            close(&format!("{name} {key} recall"), re, &c[key]["recall"]);
            close(&format!("{name} {key} f1"), f1, &c[key]["f1"]);
        }
    }
}

#[test]
fn rouge_equals_rouge_score() {
    for c in fixture()["rouge"].as_array().unwrap() {
        let how = if c["tokenizer"] == "chars" {
            RougeTokens::Chars
        } else {
            RougeTokens::Default
        };
        let (t, p) = (
            c["target"].as_str().unwrap(),
            c["prediction"].as_str().unwrap(),
        );
        let name = c["name"].as_str().unwrap();
        if how == RougeTokens::Default {
            let want: Vec<String> = c["target_tokens"]
                .as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_str().unwrap().to_string())
                .collect();
            assert_eq!(rouge_tokens(t, how), want, "{name}");
        }
        let s = &c["scores"];
        for (key, got) in [
            ("rouge1", rouge_n(t, p, 1, how)),
            ("rouge2", rouge_n(t, p, 2, how)),
            ("rougeL", rouge_l(t, p, how)),
        ] {
            close(
                &format!("{name} {key} p"),
                got.precision,
                &s[key]["precision"],
            );
            close(&format!("{name} {key} r"), got.recall, &s[key]["recall"]);
            close(
                &format!("{name} {key} f"),
                got.fmeasure,
                &s[key]["fmeasure"],
            );
        }
    }
}

#[test]
fn rouge_means_choose_character_tokens_for_japanese_and_lead_takes_the_first_sentence() {
    use manabi_finetune::metrics::{lead_sentence, rouge_f1};
    assert_eq!(
        RougeTokens::for_text("Mara is a baker."),
        RougeTokens::Default
    );
    assert_eq!(
        RougeTokens::for_text("ホハナは北山町に住む"),
        RougeTokens::Chars
    );
    // Each pair scored as the fixture-checked functions score it, then averaged.
    let pairs = [
        ("Mara is a baker who lives in Tolven.", "Mara is a cook."),
        (
            "ホハナは北山町に住むパン屋です。",
            "ホハナは北山町に住んでいます。",
        ),
    ];
    let got = rouge_f1(&pairs);
    let one = |t: &str, p: &str, k: usize| {
        let how = RougeTokens::for_text(t);
        match k {
            0 => rouge_n(t, p, 1, how).fmeasure,
            1 => rouge_n(t, p, 2, how).fmeasure,
            _ => rouge_l(t, p, how).fmeasure,
        }
    };
    for (k, g) in got.iter().enumerate() {
        let want = (one(pairs[0].0, pairs[0].1, k) + one(pairs[1].0, pairs[1].1, k)) / 2.0;
        assert!((g - want).abs() < 1e-12 && *g > 0.0, "{k}: {g} vs {want}");
    }
    assert_eq!(
        lead_sentence("Gisu works as a miner. Gisu lives in Tarford."),
        "Gisu works as a miner."
    );
    assert_eq!(
        lead_sentence("It cost 3.5 yen! Then more."),
        "It cost 3.5 yen!"
    );
    assert_eq!(
        lead_sentence("トマリの仕事は教師です。トマリは高谷町に住んでいます。"),
        "トマリの仕事は教師です。"
    );
    assert_eq!(lead_sentence("no end"), "no end");
}
