//! Templates: a record becomes text segments, each trained or not. Templated formats
//! use a prompt and a response template with `{field}` placeholders; conversations use
//! role tokens (`<|user|>`, …, `<|end|>`), the same string that the exported Jinja
//! `chat_template` renders in `transformers`' `apply_chat_template`.

use serde::{Deserialize, Serialize};

use crate::error::{FinetuneError, Result};
use crate::sft::data::{Format, Message, Record, Role};

/// Ends every chat turn.
pub const END_OF_TURN: &str = "<|end|>";

/// The Hugging Face `chat_template` (Jinja) that renders exactly what
/// [`Template::render_chat`] renders; written into `tokenizer_config.json` on export.
pub const HF_CHAT_TEMPLATE: &str = "{% for message in messages %}{{ '<|' + message['role'] + '|>\\n' + message['content'] + '<|end|>\\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|assistant|>\\n' }}{% endif %}";

/// `[template]`: empty strings take the format's default.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct TemplateConfig {
    /// Prompt template with `{field}` placeholders (not trained).
    pub prompt: String,
    /// Response template (trained, followed by EOS).
    pub response: String,
}

/// One piece of rendered text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Segment {
    /// The text.
    pub text: String,
    /// Whether its tokens are trained.
    pub trained: bool,
}

/// Renders records of one run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    config: TemplateConfig,
}

fn defaults(format: Format, values_have_input: bool) -> (&'static str, &'static str) {
    match format {
        Format::PromptCompletion | Format::Auto | Format::Messages => ("{prompt}", "{completion}"),
        Format::Qa => (
            "Context: {context}\nQuestion: {question}\nAnswer:",
            " {answer}",
        ),
        Format::Summarise => ("Document: {document}\nSummary:", " {summary}"),
        Format::Alpaca if values_have_input => (
            "### Instruction:\n{instruction}\n\n### Input:\n{input}\n\n### Response:\n",
            "{output}",
        ),
        Format::Alpaca => (
            "### Instruction:\n{instruction}\n\n### Response:\n",
            "{output}",
        ),
    }
}

/// Replaces `{name}` with `lookup(name)`; `{{` and `}}` are literal braces.
fn fill(
    template: &str,
    lookup: impl Fn(&str) -> Option<String>,
) -> std::result::Result<String, String> {
    let mut out = String::with_capacity(template.len() + 64);
    let mut rest = template;
    while let Some(i) = rest.find(['{', '}']) {
        out.push_str(&rest[..i]);
        let tail = &rest[i..];
        if tail.starts_with("{{") || tail.starts_with("}}") {
            out.push_str(&tail[..1]);
            rest = &tail[2..];
            continue;
        }
        if tail.starts_with('}') {
            return Err("unmatched `}` (write `}}` for a literal brace)".into());
        }
        let end = tail
            .find('}')
            .ok_or_else(|| "unclosed `{` (write `{{` for a literal brace)".to_string())?;
        let name = &tail[1..end];
        out.push_str(&lookup(name).ok_or_else(|| format!("unknown placeholder `{{{name}}}`"))?);
        rest = &tail[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

impl Template {
    /// A template; checks the placeholders against `format`'s fields.
    pub fn new(config: TemplateConfig, format: Format) -> Result<Self> {
        let t = Self { config };
        if format != Format::Auto && format != Format::Messages {
            let (prompt, response) = format.fields();
            let known = |n: &str| (prompt.contains(&n) || n == response).then(String::new);
            for (key, text) in [
                ("template.prompt", &t.config.prompt),
                ("template.response", &t.config.response),
            ] {
                fill(text, known).map_err(|m| FinetuneError::config(key, m))?;
            }
        }
        Ok(t)
    }

    /// The segments of `record`, trained parts marked. EOS is added by the encoder.
    pub fn render(&self, record: &Record) -> Result<Vec<Segment>> {
        match record {
            Record::Chat(messages) => Ok(self.render_chat(messages, false)),
            Record::Fields { format, values } => {
                let has_input = values.get("input").is_some_and(|s| !s.trim().is_empty());
                let (dp, dr) = defaults(*format, has_input);
                let pick = |c: &str, d: &'static str| {
                    if c.is_empty() {
                        d.to_string()
                    } else {
                        c.to_string()
                    }
                };
                let prompt_t = pick(&self.config.prompt, dp);
                let response_t = pick(&self.config.response, dr);
                let lookup = |n: &str| values.get(n).cloned();
                let prompt = fill(&prompt_t, lookup)
                    .map_err(|m| FinetuneError::config("template.prompt", m))?;
                let response = fill(&response_t, lookup)
                    .map_err(|m| FinetuneError::config("template.response", m))?;
                Ok(vec![
                    Segment {
                        text: prompt,
                        trained: false,
                    },
                    Segment {
                        text: response,
                        trained: true,
                    },
                ])
            }
        }
    }

    /// A conversation with role tokens: `<|role|>\n` + content + `<|end|>\n` per message;
    /// assistant content and its `<|end|>` are trained. With `generation_prompt`, an
    /// untrained `<|assistant|>\n` follows (what a model continues at inference).
    pub fn render_chat(&self, messages: &[Message], generation_prompt: bool) -> Vec<Segment> {
        let mut out: Vec<Segment> = Vec::new();
        let mut push = |text: String, trained: bool| match out.last_mut() {
            Some(last) if last.trained == trained => last.text.push_str(&text),
            _ => out.push(Segment { text, trained }),
        };
        for m in messages {
            push(format!("<|{}|>\n", m.role.as_str()), false);
            let trained = m.role == Role::Assistant;
            push(format!("{}{END_OF_TURN}", m.content), trained);
            push("\n".into(), false);
        }
        if generation_prompt {
            push("<|assistant|>\n".into(), false);
        }
        out
    }
}

/// The whole rendered text of segments.
pub fn joined(segments: &[Segment]) -> String {
    segments.iter().map(|s| s.text.as_str()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn qa() -> Record {
        let values: BTreeMap<String, String> = [
            ("context", "Mara lives in Tolven."),
            ("question", "Where does Mara live?"),
            ("answer", "Tolven"),
        ]
        .into_iter()
        .map(|(a, b)| (a.into(), b.into()))
        .collect();
        Record::Fields {
            format: Format::Qa,
            values,
        }
    }

    #[test]
    fn qa_renders_prompt_untrained_and_answer_trained() {
        let t = Template::new(TemplateConfig::default(), Format::Qa).unwrap();
        let s = t.render(&qa()).unwrap();
        assert_eq!(
            s[0].text,
            "Context: Mara lives in Tolven.\nQuestion: Where does Mara live?\nAnswer:"
        );
        assert!(!s[0].trained);
        assert_eq!(s[1].text, " Tolven");
        assert!(s[1].trained);
    }

    #[test]
    fn custom_templates_are_checked_against_the_format() {
        let cfg = TemplateConfig {
            prompt: "Q: {question} C: {contxt}".into(),
            response: String::new(),
        };
        let e = Template::new(cfg, Format::Qa).unwrap_err().to_string();
        assert!(
            e.contains("template.prompt") && e.contains("{contxt}"),
            "{e}"
        );
        let cfg = TemplateConfig {
            prompt: "{{literal}} {question}".into(),
            response: "={answer}".into(),
        };
        let s = Template::new(cfg, Format::Qa)
            .unwrap()
            .render(&qa())
            .unwrap();
        assert_eq!(s[0].text, "{literal} Where does Mara live?");
        assert_eq!(s[1].text, "=Tolven");
    }

    #[test]
    fn chat_trains_every_assistant_turn_and_its_end_token() {
        let m = |role, c: &str| Message {
            role,
            content: c.into(),
        };
        let t = Template::new(TemplateConfig::default(), Format::Messages).unwrap();
        let msgs = vec![
            m(Role::System, "Be brief."),
            m(Role::User, "Hi"),
            m(Role::Assistant, "Hello"),
            m(Role::User, "Bye"),
            m(Role::Assistant, "Bye!"),
        ];
        let s = t.render_chat(&msgs, false);
        let trained: Vec<&str> = s
            .iter()
            .filter(|s| s.trained)
            .map(|s| s.text.as_str())
            .collect();
        assert_eq!(trained, ["Hello<|end|>", "Bye!<|end|>"]);
        assert_eq!(
            joined(&s),
            "<|system|>\nBe brief.<|end|>\n<|user|>\nHi<|end|>\n<|assistant|>\nHello<|end|>\n<|user|>\nBye<|end|>\n<|assistant|>\nBye!<|end|>\n"
        );
    }
}
