//! Chat templates rendered as `transformers` renders them: for each model family under
//! fixtures/chat_templates/ (made by scripts/chat_template_family_fixtures.py), every
//! conversation must give byte for byte what `apply_chat_template(messages,
//! tokenize=False, add_generation_prompt=...)` gave, with and without the generation
//! prompt, and a conversation the template refuses must fail with the template's message.

use std::path::{Path, PathBuf};

use manabi_tokenize::{ChatTemplate, Message, SpecialTokens, TokenizeError};
use serde::Deserialize;

#[derive(Deserialize)]
struct Expected {
    family: String,
    transformers: String,
    special_tokens: serde_json::Map<String, serde_json::Value>,
    cases: Vec<Case>,
}

#[derive(Deserialize)]
struct Case {
    name: String,
    messages: Vec<Message>,
    text: Option<String>,
    prompt: Option<String>,
    raises: Option<String>,
}

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn fixtures() -> PathBuf {
    root().join("fixtures/chat_templates")
}

fn expected(dir: &Path) -> Expected {
    let text = std::fs::read_to_string(dir.join("expected.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

/// Renders every case of `expected` with `template` and compares.
fn check_cases(template: &ChatTemplate, expected: &Expected) -> (usize, usize) {
    let family = &expected.family;
    let (mut rendered, mut raised) = (0, 0);
    for case in &expected.cases {
        let name = &case.name;
        match &case.raises {
            Some(message) => {
                for add_generation_prompt in [false, true] {
                    let err = match template.render(&case.messages, add_generation_prompt) {
                        Ok(text) => {
                            panic!("{family}/{name}: should raise {message:?}, gave {text:?}")
                        }
                        Err(err) => err,
                    };
                    assert!(
                        matches!(err, TokenizeError::ChatTemplateRaised { .. }),
                        "{family}/{name}: {err}"
                    );
                    let shown = err.to_string();
                    assert!(shown.contains(message.as_str()), "{family}/{name}: {shown}");
                    assert!(
                        !shown.contains('\n'),
                        "{family}/{name}: not one line: {shown}"
                    );
                }
                raised += 1;
            }
            None => {
                let text = template.render(&case.messages, false).unwrap();
                assert_eq!(
                    Some(&text),
                    case.text.as_ref(),
                    "{family}/{name}: differs from transformers without the generation prompt"
                );
                let prompt = template.render(&case.messages, true).unwrap();
                assert_eq!(
                    Some(&prompt),
                    case.prompt.as_ref(),
                    "{family}/{name}: differs from transformers with the generation prompt"
                );
                rendered += 1;
            }
        }
    }
    (rendered, raised)
}

#[test]
fn every_family_renders_byte_identical_to_transformers() {
    let mut families = Vec::new();
    for entry in std::fs::read_dir(fixtures()).unwrap() {
        let dir = entry.unwrap().path();
        if dir.is_dir() {
            families.push(dir);
        }
    }
    families.sort();
    let names: Vec<String> = families
        .iter()
        .map(|d| d.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    for family in [
        "llama-3.1",
        "qwen2.5",
        "gemma-2",
        "mistral-v0.3",
        "llm-jp-3",
    ] {
        assert!(
            names.iter().any(|n| n == family),
            "missing fixture {family}"
        );
    }
    let mut raised_total = 0;
    for dir in &families {
        let expected = expected(dir);
        assert!(!expected.transformers.is_empty());
        let template = ChatTemplate::load(dir).unwrap();
        // The special tokens are the ones transformers saw.
        let ours: serde_json::Map<String, serde_json::Value> = template
            .special_tokens()
            .iter()
            .map(|(name, token)| (name.to_string(), serde_json::Value::from(token)))
            .collect();
        assert_eq!(ours, expected.special_tokens, "{}", expected.family);
        let (rendered, raised) = check_cases(&template, &expected);
        assert!(rendered >= 4, "{}: too few rendered cases", expected.family);
        raised_total += raised;
    }
    assert!(raised_total >= 3, "too few refused conversations");
}

#[test]
fn refusals_carry_the_templates_message() {
    let gemma = ChatTemplate::load(fixtures().join("gemma-2")).unwrap();
    let err = gemma
        .render(
            &[
                Message::new("system", "Be brief."),
                Message::new("user", "Hi"),
            ],
            true,
        )
        .unwrap_err();
    let shown = err.to_string();
    assert!(shown.contains("System role not supported"), "{shown}");
    assert!(
        shown.contains("tokenizer_config.json"),
        "names the file: {shown}"
    );

    let mistral = ChatTemplate::load(fixtures().join("mistral-v0.3")).unwrap();
    let err = mistral
        .render(
            &[Message::new("user", "a"), Message::new("user", "b")],
            false,
        )
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("conversation roles must alternate user/assistant/user/assistant/..."),
        "{err}"
    );
}

#[test]
fn a_syntax_error_is_one_line_naming_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("chat_template.jinja"),
        "{% for message in messages %}\n{{ message.content }}\n{% if %}\n",
    )
    .unwrap();
    let err = ChatTemplate::load(dir.path()).unwrap_err();
    let shown = err.to_string();
    assert!(
        matches!(err, TokenizeError::ChatTemplateSyntax { line: 3, .. }),
        "{shown}"
    );
    assert!(!shown.contains('\n'), "{shown}");
    assert!(shown.contains("chat_template.jinja"), "{shown}");
    assert!(shown.contains("line 3"), "{shown}");

    // The same inside tokenizer_config.json names that file.
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("tokenizer_config.json"),
        r#"{"chat_template": "{{ messages[0].content "}"#,
    )
    .unwrap();
    let shown = ChatTemplate::load(dir.path()).unwrap_err().to_string();
    assert!(shown.contains("tokenizer_config.json"), "{shown}");
    assert!(!shown.contains('\n'), "{shown}");
}

#[test]
fn a_folder_without_a_template_is_none_or_a_named_error() {
    let dir = tempfile::tempdir().unwrap();
    assert!(ChatTemplate::from_model_dir(dir.path()).unwrap().is_none());
    std::fs::write(
        dir.path().join("tokenizer_config.json"),
        r#"{"eos_token": "</s>"}"#,
    )
    .unwrap();
    assert!(ChatTemplate::from_model_dir(dir.path()).unwrap().is_none());
    let shown = ChatTemplate::load(dir.path()).unwrap_err().to_string();
    assert!(shown.contains("no chat template"), "{shown}");
    assert!(!shown.contains('\n'), "{shown}");

    // A list of named templates without `default`.
    std::fs::write(
        dir.path().join("tokenizer_config.json"),
        r#"{"chat_template": [{"name": "rag", "template": "x"}]}"#,
    )
    .unwrap();
    let shown = ChatTemplate::load(dir.path()).unwrap_err().to_string();
    assert!(shown.contains("default"), "{shown}");
    assert!(shown.contains("tokenizer_config.json"), "{shown}");
}

#[test]
fn chat_template_jinja_takes_precedence_over_the_config() {
    let gemma_dir = fixtures().join("gemma-2");
    let config: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(gemma_dir.join("tokenizer_config.json")).unwrap(),
    )
    .unwrap();
    let gemma_template = config["chat_template"].as_str().unwrap().to_string();

    let dir = tempfile::tempdir().unwrap();
    let mut other = config.clone();
    other["chat_template"] = serde_json::Value::from("NOT THIS ONE");
    std::fs::write(
        dir.path().join("tokenizer_config.json"),
        serde_json::to_string(&other).unwrap(),
    )
    .unwrap();
    std::fs::write(dir.path().join("chat_template.jinja"), &gemma_template).unwrap();
    let template = ChatTemplate::load(dir.path()).unwrap();
    assert_eq!(template.source(), gemma_template);
    assert!(template.path().ends_with("chat_template.jinja"));
    // The special tokens still come from tokenizer_config.json.
    assert_eq!(
        template.special_tokens().bos_token.as_deref(),
        Some("<bos>")
    );
    check_cases(&template, &expected(&gemma_dir));

    // The llama-3.1 fixture ships its template that way; its config has none.
    let llama = ChatTemplate::load(fixtures().join("llama-3.1")).unwrap();
    assert!(llama.path().ends_with("chat_template.jinja"));
}

#[test]
fn the_default_of_named_templates_is_used() {
    let gemma_dir = fixtures().join("gemma-2");
    let mut config: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(gemma_dir.join("tokenizer_config.json")).unwrap(),
    )
    .unwrap();
    let gemma_template = config["chat_template"].clone();
    config["chat_template"] = serde_json::json!([
        {"name": "tool_use", "template": "{{ raise_exception('wrong template') }}"},
        {"name": "default", "template": gemma_template},
    ]);
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("tokenizer_config.json"),
        serde_json::to_string(&config).unwrap(),
    )
    .unwrap();
    let template = ChatTemplate::load(dir.path()).unwrap();
    check_cases(&template, &expected(&gemma_dir));
}

#[test]
fn content_objects_and_missing_special_tokens() {
    // mistral-v0.3 writes its tokens as {"__type": "AddedToken", "content": ...} objects.
    let mistral = ChatTemplate::load(fixtures().join("mistral-v0.3")).unwrap();
    assert_eq!(mistral.special_tokens().bos_token.as_deref(), Some("<s>"));
    assert_eq!(mistral.special_tokens().eos_token.as_deref(), Some("</s>"));
    // A bare {"content": ...} object is enough; null and absent tokens stay undefined.
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("tokenizer_config.json"),
        r#"{"bos_token": {"content": "<B>"}, "eos_token": "<E>", "pad_token": null,
            "chat_template": "{{ bos_token }}|{{ eos_token }}|{{ pad_token is defined }}|{{ unk_token is defined }}"}"#,
    )
    .unwrap();
    let template = ChatTemplate::load(dir.path()).unwrap();
    assert_eq!(
        template.special_tokens(),
        &SpecialTokens {
            bos_token: Some("<B>".into()),
            eos_token: Some("<E>".into()),
            ..SpecialTokens::default()
        }
    );
    assert_eq!(template.render(&[], false).unwrap(), "<B>|<E>|False|False");

    // A token of the wrong type is a named error.
    std::fs::write(
        dir.path().join("tokenizer_config.json"),
        r#"{"bos_token": 3, "chat_template": "x"}"#,
    )
    .unwrap();
    let shown = ChatTemplate::load(dir.path()).unwrap_err().to_string();
    assert!(shown.contains("bos_token"), "{shown}");
}

#[test]
fn keyword_variables_and_strftime_now() {
    let llama = ChatTemplate::load(fixtures().join("llama-3.1")).unwrap();
    let mut extra = serde_json::Map::new();
    extra.insert("date_string".into(), "07 Dec 2026".into());
    let text = llama
        .render_with(&[Message::new("user", "Hi")], true, &extra)
        .unwrap();
    assert!(text.contains("Today Date: 07 Dec 2026\n"), "{text}");

    let now = ChatTemplate::from_source(
        "{{ strftime_now('%Y-%m-%d') }}",
        "inline.jinja",
        SpecialTokens::default(),
    )
    .unwrap()
    .render(&[], false)
    .unwrap();
    let parts: Vec<&str> = now.split('-').collect();
    assert_eq!(parts.len(), 3, "{now}");
    assert_eq!(parts[0].len(), 4, "{now}");
    assert!(
        parts.iter().all(|p| p.chars().all(|c| c.is_ascii_digit())),
        "{now}"
    );
}

#[test]
fn generation_blocks_render_their_body() {
    let with_tags = ChatTemplate::from_source(
        "{% for m in messages %}\n{% if m.role == 'assistant' %}\n{% generation %}\n{{ m.content }}\n{% endgeneration %}\n{% else %}\n{{ m.content }}\n{% endif %}\n{% endfor %}",
        "a.jinja",
        SpecialTokens::default(),
    )
    .unwrap();
    let messages = [Message::new("user", "q"), Message::new("assistant", "a")];
    assert_eq!(with_tags.render(&messages, false).unwrap(), "q\na\n");
}
