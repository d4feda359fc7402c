//! Prompting without training against lm-evaluation-harness (fixture made by
//! scripts/fewshot_fixtures.py: lm-eval's HFLM over transformers on the llama-eval model):
//! the same context/continuation tokens, log-likelihoods within 1e-4, the same acc /
//! acc_norm / acc_bytes; and prompts, shots, answer extraction and bad inputs.

use std::path::{Path, PathBuf};

use manabi_model::device::test_device;
use manabi_model::load_hf;
use manabi_tasks::fewshot::{
    Doc, Evaluator, PromptSettings, chain_of_thought, choice_picks, encode_pair, extract,
    loglikelihoods, prompt, read_docs,
};
use manabi_tokenize::TextTokenizer;
use serde_json::Value;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn ids(v: &Value) -> Vec<u32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap() as u32)
        .collect()
}

#[test]
fn loglikelihoods_and_choice_metrics_match_lm_evaluation_harness() {
    let f: Value = serde_json::from_str(
        &std::fs::read_to_string(root().join("fixtures/fewshot/expected.json")).unwrap(),
    )
    .unwrap();
    let dir = root().join("fixtures/models/llama-eval");
    let device = test_device();
    let model = load_hf(&dir, &device).unwrap();
    let tok = TextTokenizer::load(dir.join("tokenizer.json")).unwrap();
    let reqs = f["requests"].as_array().unwrap();
    let mut rows = Vec::new();
    for r in reqs {
        let (c, n) = encode_pair(
            &tok,
            r["context"].as_str().unwrap(),
            r["continuation"].as_str().unwrap(),
        )
        .unwrap();
        assert_eq!(c, ids(&r["context_ids"]), "{}", r["context"]);
        assert_eq!(n, ids(&r["continuation_ids"]), "{}", r["continuation"]);
        rows.push((c, n));
    }
    // Batches of 4 mix lengths, so padding is exercised too.
    let got = loglikelihoods(&model, &rows, 4, 0, &device).unwrap();
    for (g, r) in got.iter().zip(reqs) {
        let want = r["loglikelihood"].as_f64().unwrap();
        assert!(
            (g - want).abs() < 1e-4,
            "{g} vs lm-eval {want}: {}",
            r["context"]
        );
    }
    let mut at = 0;
    for d in f["docs"].as_array().unwrap() {
        let choices: Vec<String> = d["choices"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c.as_str().unwrap().to_string())
            .collect();
        let gold = d["gold"].as_u64().unwrap() as usize;
        let picks = choice_picks(&got[at..at + choices.len()], &choices);
        at += choices.len();
        for (pick, key) in picks.iter().zip(["acc", "acc_norm", "acc_bytes"]) {
            let want = d[key].as_f64().unwrap() == 1.0;
            assert_eq!(*pick == gold, want, "{key} of {}", d["context"]);
        }
    }
}

fn choice(q: &str, gold: usize) -> Doc {
    Doc::Choice {
        query: q.into(),
        choices: vec!["a".into(), "b".into()],
        gold,
        rationale: None,
    }
}

#[test]
fn prompts_draw_k_other_shots_deterministically() {
    let pool: Vec<Doc> = (0..6).map(|i| choice(&format!("Q{i}:"), i % 2)).collect();
    let s = PromptSettings {
        description: "Answer.\n\n".into(),
        ..PromptSettings::default()
    };
    let p0 = prompt(&pool[0], 0, 0, &pool, &s).unwrap();
    assert_eq!(p0, "Answer.\n\nQ0:");
    let p3 = prompt(&pool[0], 0, 3, &pool, &s).unwrap();
    assert_eq!(p3.matches("\n\n").count(), 4, "{p3}");
    assert!(
        p3.ends_with("\n\nQ0:") && p3.matches("Q0:").count() == 1,
        "{p3}"
    );
    assert_eq!(p3, prompt(&pool[0], 0, 3, &pool, &s).unwrap());
    // Each shot shows its gold target after one space.
    for shot in p3.trim_start_matches("Answer.\n\n").split("\n\n").take(3) {
        let i: usize = shot[1..2].parse().unwrap();
        assert_eq!(shot, format!("Q{i}: {}", ["a", "b"][i % 2]));
    }
    let e = prompt(&pool[0], 0, 6, &pool, &s).unwrap_err().to_string();
    assert!(e.contains("--few-shot") && e.contains("5 other"), "{e}");
    // Chain of thought: the cue after each query, rationales before shot targets.
    let (cue, pattern) = chain_of_thought("ja").unwrap();
    let cot = PromptSettings {
        query_suffix: cue.into(),
        ..PromptSettings::default()
    };
    let shots = vec![Doc::Generate {
        query: "質問：二足す二は？\n答え：".into(),
        answer: "答えは四です。".into(),
        rationale: Some("二と二を足すと四になる。".into()),
    }];
    let q = Doc::Generate {
        query: "質問：一足す一は？\n答え：".into(),
        answer: "二".into(),
        rationale: None,
    };
    let p = prompt(&q, 0, 1, &shots, &cot).unwrap();
    assert_eq!(
        p,
        "質問：二足す二は？\n答え： ステップごとに考えましょう。 二と二を足すと四になる。 答えは四です。\n\n質問：一足す一は？\n答え： ステップごとに考えましょう。"
    );
    let re = regex_lite::Regex::new(pattern).unwrap();
    assert_eq!(
        extract(" 一と一で二になる。答えは二です。", Some(&re)),
        "二"
    );
    let (_, en) = chain_of_thought("en").unwrap();
    let re = regex_lite::Regex::new(en).unwrap();
    assert_eq!(extract("3 and 4 make 7. The answer is 7.", Some(&re)), "7");
    assert_eq!(extract("no answer here", Some(&re)), "");
    assert_eq!(extract("  Tolven ", None), "Tolven");
}

#[test]
fn generation_tasks_score_exact_match_of_greedy_answers() {
    let dir = root().join("fixtures/models/llama-eval");
    let device = test_device();
    let model = load_hf(&dir, &device).unwrap();
    let tok = TextTokenizer::load(dir.join("tokenizer.json")).unwrap();
    let ev = Evaluator {
        model: &model,
        tokenizer: &tok,
        pad: 0,
        eos: 3,
        batch_size: 2,
        device: &device,
    };
    let docs: Vec<Doc> = ["a", "b", "c"]
        .iter()
        .map(|x| Doc::Generate {
            query: format!("Q: {x}\nA:"),
            answer: "zzz".into(),
            rationale: None,
        })
        .collect();
    let s = PromptSettings {
        max_new_tokens: 4,
        ..PromptSettings::default()
    };
    let (scores, scored) = ev.score(&docs, &docs, 1, &s).unwrap();
    assert_eq!((scores.k, scores.docs), (1, 3));
    assert!(scores.acc.is_none());
    // The greedy answer of each prompt, re-scored: exact match is the share equal to "zzz".
    let right = scored.iter().filter(|x| x.correct).count() as f64 / 3.0;
    assert_eq!(scores.exact_match, Some(right));
    for x in &scored {
        let g = x.generation.clone().unwrap();
        assert!(!g.contains("\n\n"));
        assert_eq!(x.prediction, Value::String(g.trim().to_string()));
    }
}

#[test]
fn bad_task_files_are_one_line_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let cases = [
        (
            "{\"choices\": [\"a\", \"b\"], \"gold\": 0}",
            "missing field `query`",
        ),
        (
            "{\"query\": \"q\", \"choices\": [\"a\"], \"gold\": 0}",
            "at least two strings",
        ),
        (
            "{\"query\": \"q\", \"choices\": [\"a\", \"b\"], \"gold\": 2}",
            "index of a choice, 0 to 1; got 2",
        ),
        ("{\"query\": \"q\"}", "missing field `answer`"),
        (
            "{\"query\": \"q\", \"answer\": 3}",
            "`answer` must be a non-empty string",
        ),
        ("[1, 2", "invalid JSON"),
        (
            "{\"query\": \"q\", \"choices\": [\"a\", \" \"], \"gold\": 0}",
            "field `choices` holds an empty string",
        ),
        (
            "{\"query\": \"q\", \"choices\": [\"a\", \"b\", \"a\"], \"gold\": 0}",
            "field `choices` lists \"a\" twice (indices 0 and 2)",
        ),
        (
            "{\"query\": \"q\", \"choices\": [\"a\", \"b\"], \"gold\": -1}",
            "index of a choice, 0 to 1; got -1",
        ),
        (
            "{\"query\": \"q\", \"choices\": [\"a\", \"b\"]}",
            "missing field `gold` (the index of the right choice, 0 to 1)",
        ),
        (
            "{\"query\": \"q\", \"answer\": \"x\", \"rationale\": 7}",
            "field `rationale` must be a string",
        ),
        (
            "{\"query\": \" \", \"answer\": \"x\"}",
            "`query` must be a non-empty string",
        ),
    ];
    for (i, (line, want)) in cases.iter().enumerate() {
        let p = tmp.path().join(format!("t{i}.jsonl"));
        std::fs::write(
            &p,
            format!("{{\"query\": \"ok\", \"answer\": \"x\"}}\n{line}\n"),
        )
        .unwrap();
        let e = read_docs(&p).unwrap_err().to_string();
        assert!(
            e.contains(&format!("t{i}.jsonl:2")) && e.contains(want),
            "{e}"
        );
    }
    let empty = tmp.path().join("empty.jsonl");
    std::fs::write(&empty, "\n").unwrap();
    assert!(
        read_docs(&empty)
            .unwrap_err()
            .to_string()
            .contains("no documents")
    );
}

#[test]
fn choice_ties_pick_the_first_choice_as_lm_eval() {
    let choices: Vec<String> = ["ab", "cd", "ef"].map(String::from).to_vec();
    // All three scores tie: lm-eval's np.argmax takes choice 0.
    assert_eq!(choice_picks(&[-2.0, -2.0, -2.0], &choices), [0, 0, 0]);
    // Ties between 1 and 2 only, per token, per character and per byte alike.
    assert_eq!(choice_picks(&[-5.0, -1.0, -1.0], &choices), [1, 1, 1]);
}

#[test]
fn task_files_with_a_bom_and_crlf_lines_are_read() {
    let tmp = tempfile::tempdir().unwrap();
    let p = tmp.path().join("bom.jsonl");
    std::fs::write(
        &p,
        "\u{feff}{\"query\": \"Q: 1+1?\", \"choices\": [\"2\", \"3\"], \"gold\": 0}\r\n\r\n{\"query\": \"Q: 2+2?\", \"answer\": \"4\", \"rationale\": \"2 and 2\"}\r\n",
    )
    .unwrap();
    assert_eq!(
        read_docs(&p).unwrap(),
        vec![
            Doc::Choice {
                query: "Q: 1+1?".into(),
                choices: vec!["2".into(), "3".into()],
                gold: 0,
                rationale: None,
            },
            Doc::Generate {
                query: "Q: 2+2?".into(),
                answer: "4".into(),
                rationale: Some("2 and 2".into()),
            },
        ]
    );
    // A bad line after a blank one is named by its physical line.
    std::fs::write(&p, "\u{feff}\r\n\r\n{\"query\": \r\n").unwrap();
    let e = read_docs(&p).unwrap_err().to_string();
    assert!(e.contains("bom.jsonl:3: invalid JSON"), "{e}");
}
