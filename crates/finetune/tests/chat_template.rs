//! manabi renders chat data exactly as `transformers`' apply_chat_template does with the
//! template manabi exports (fixture made by scripts/chat_template_fixtures.py).

use std::path::Path;

use manabi_finetune::sft::data::{Format, Message};
use manabi_finetune::sft::template::{HF_CHAT_TEMPLATE, Template, TemplateConfig, joined};
use serde::Deserialize;

#[derive(Deserialize)]
struct Case {
    messages: Vec<Message>,
    text: String,
    prompt: String,
}

#[derive(Deserialize)]
struct Fixture {
    chat_template: String,
    cases: Vec<Case>,
}

#[test]
fn chat_rendering_equals_transformers_apply_chat_template() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/chat/rendered.json");
    let f: Fixture = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    assert_eq!(
        f.chat_template, HF_CHAT_TEMPLATE,
        "exports carry another template than the one checked"
    );
    let t = Template::new(TemplateConfig::default(), Format::Messages).unwrap();
    assert!(f.cases.len() >= 10);
    for c in &f.cases {
        assert_eq!(joined(&t.render_chat(&c.messages, false)), c.text);
        let last = c.messages.len() - 1;
        assert_eq!(joined(&t.render_chat(&c.messages[..last], true)), c.prompt);
    }
}
