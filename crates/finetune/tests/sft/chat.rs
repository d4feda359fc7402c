//! SFT on conversations under the model's own chat template: the ids of
//! `apply_chat_template(tokenize=True)` and the assistant-turn mask
//! (fixtures/chat_sft, made by scripts/chat_sft_fixtures.py with transformers 5.25).

use std::path::{Path, PathBuf};

use manabi_finetune::sft::chat;
use manabi_finetune::sft::data::{Message, Role};
use manabi_finetune::sft::encode::EncodeStats;
use manabi_tokenize::{ChatTemplate, SpecialTokens, TextTokenizer};
use serde_json::Value;

fn folder(family: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../fixtures/chat_sft")
        .join(family)
}

#[test]
fn ids_and_assistant_masks_match_transformers() {
    for family in ["llama-3.1", "qwen2.5"] {
        let dir = folder(family);
        let template = ChatTemplate::load(&dir).unwrap();
        let tokenizer = TextTokenizer::load(dir.join("tokenizer.json")).unwrap();
        let text = std::fs::read_to_string(dir.join("expected.json")).unwrap();
        let expected: Value = serde_json::from_str(&text).unwrap();
        for case in expected["cases"].as_array().unwrap() {
            let name = format!("{family} {}", case["name"]);
            let messages: Vec<Message> = serde_json::from_value(case["messages"].clone()).unwrap();
            let want_ids: Vec<u32> =
                serde_json::from_value(case["sft"]["input_ids"].clone()).unwrap();
            let want_mask: Vec<bool> = case["sft"]["assistant_mask"]
                .as_array()
                .unwrap()
                .iter()
                .map(|m| m.as_u64() == Some(1))
                .collect();
            let rendered = chat::render(&template, &messages).unwrap();
            assert_eq!(
                rendered.text,
                case["sft"]["text"].as_str().unwrap(),
                "{name}"
            );
            let (ids, mask) = chat::tokens_and_mask(&tokenizer, &rendered).unwrap();
            assert_eq!(ids, want_ids, "{name}: ids");
            assert_eq!(mask, want_mask, "{name}: mask");

            // As a training example: the same tokens, nothing appended, the last
            // assistant turn is the final response.
            let mut stats = EncodeStats::default();
            let e = chat::encode(&tokenizer, &template, &messages, 4096, &mut stats)
                .unwrap()
                .unwrap();
            assert_eq!(e.tokens, want_ids, "{name}");
            assert_eq!(e.trained, want_mask, "{name}");
            assert!(e.trained[e.response_start]);
            assert!(!e.trained[e.response_start - 1]);
            assert!(e.trained[e.response_start..].iter().all(|&t| t), "{name}");
        }
    }
}

#[test]
fn a_template_that_does_not_extend_its_prompt_is_refused_in_one_line() {
    // The generation prompt `<|assistant|>` is not how the template writes an assistant turn.
    let source = "{% for m in messages %}[{{ m.role }}] {{ m.content }}\n{% endfor %}{% if add_generation_prompt %}<|assistant|>{% endif %}";
    let template =
        ChatTemplate::from_source(source, "odd/chat_template.jinja", SpecialTokens::default())
            .unwrap();
    let messages = vec![
        Message {
            role: Role::User,
            content: "Hi".into(),
        },
        Message {
            role: Role::Assistant,
            content: "Hello".into(),
        },
    ];
    let e = chat::render(&template, &messages).unwrap_err().to_string();
    assert!(!e.contains('\n'), "{e}");
    assert!(e.contains("odd/chat_template.jinja"), "{e}");
    assert!(e.contains("not a prefix"), "{e}");
}

#[test]
fn a_tokenizer_folder_without_a_template_keeps_manabis_chat_format() {
    // No chat_template.jinja and no `chat_template` in tokenizer_config.json: `prepare`
    // finds none and renders conversations with manabi's own template, as before.
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/tokenize/hf-qwen2");
    assert!(ChatTemplate::from_model_dir(&dir).unwrap().is_none());
}
