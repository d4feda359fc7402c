//! Conversational preference pairs under the model's own chat template: the same ids as
//! TRL 1.16's `DPOTrainer` (fixtures/chat_sft, made by scripts/chat_sft_fixtures.py).

use std::path::{Path, PathBuf};

use manabi_align::pref::tokenize_chat_pair;
use manabi_tokenize::{ChatTemplate, Message, TextTokenizer};
use serde_json::Value;

fn folder(family: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../fixtures/chat_sft")
        .join(family)
}

fn messages(v: &Value) -> Vec<Message> {
    serde_json::from_value(v.clone()).unwrap()
}

fn ids(v: &Value) -> Vec<u32> {
    serde_json::from_value(v.clone()).unwrap()
}

#[test]
fn conversational_pairs_match_trl_under_the_models_template() {
    for family in ["llama-3.1", "qwen2.5"] {
        let dir = folder(family);
        let template = ChatTemplate::load(&dir).unwrap();
        let tokenizer = TextTokenizer::load(dir.join("tokenizer.json")).unwrap();
        let text = std::fs::read_to_string(dir.join("expected.json")).unwrap();
        let expected: Value = serde_json::from_str(&text).unwrap();
        for case in expected["cases"].as_array().unwrap() {
            let d = &case["dpo"];
            let pair = tokenize_chat_pair(
                &template,
                &tokenizer,
                &messages(&d["prompt"]),
                &messages(&d["chosen"])[0],
                &messages(&d["rejected"])[0],
            )
            .unwrap();
            let name = format!("{family} {}", case["name"]);
            assert_eq!(pair.prompt, ids(&d["prompt_ids"]), "{name}: prompt");
            assert_eq!(pair.chosen, ids(&d["chosen_ids"]), "{name}: chosen");
            assert_eq!(pair.rejected, ids(&d["rejected_ids"]), "{name}: rejected");
        }
    }
}

#[test]
fn a_conversational_preference_file_reads_into_trls_ids_through_the_dpo_path() {
    // The file as users write it (TRL's conversational layout), through `read_pairs` and
    // the `tokenize` that `manabi dpo`, `dpo eval` and `reward` use, with the template
    // `model_template` finds in the folder.
    use manabi_align::pref::{read_pairs, tokenize};
    for family in ["llama-3.1", "qwen2.5"] {
        let dir = folder(family);
        let template = manabi_finetune::sft::chat::model_template(&dir)
            .unwrap()
            .expect("the fixture folder has a template");
        let tokenizer = TextTokenizer::load(dir.join("tokenizer.json")).unwrap();
        let expected: Value =
            serde_json::from_str(&std::fs::read_to_string(dir.join("expected.json")).unwrap())
                .unwrap();
        let tmp = tempfile::tempdir().unwrap();
        let file = tmp.path().join("pairs.jsonl");
        let cases = expected["cases"].as_array().unwrap();
        let lines: Vec<String> = cases
            .iter()
            .map(|c| {
                let d = &c["dpo"];
                serde_json::json!({
                    "prompt": d["prompt"], "chosen": d["chosen"], "rejected": d["rejected"]
                })
                .to_string()
            })
            .collect();
        std::fs::write(&file, lines.join("\n")).unwrap();
        let pairs = read_pairs(std::slice::from_ref(&file)).unwrap();
        let (got, cut, dropped) = tokenize(&pairs, &tokenizer, 0, 4096, Some(&template)).unwrap();
        assert_eq!((cut, dropped), (0, 0), "{family}");
        for (pair, case) in got.iter().zip(cases) {
            let d = &case["dpo"];
            let name = format!("{family} {}", case["name"]);
            assert_eq!(pair.prompt, ids(&d["prompt_ids"]), "{name}: prompt");
            assert_eq!(pair.chosen, ids(&d["chosen_ids"]), "{name}: chosen");
            assert_eq!(pair.rejected, ids(&d["rejected_ids"]), "{name}: rejected");
        }
    }
}
