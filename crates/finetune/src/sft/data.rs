//! SFT data: JSONL records in the formats people already have — prompt/completion,
//! chat messages (TRL's conversational format), extractive QA (context/question/answer),
//! summarisation (document/summary) and Alpaca (instruction/input/output). Field names
//! can be remapped. A bad line is an error naming file, line and field, unless
//! `skip_invalid` counts it instead.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{FinetuneError, Result};

/// The record layout of a data file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Format {
    /// Decided per file from the first line's fields.
    #[default]
    Auto,
    /// `{"prompt", "completion"}`.
    PromptCompletion,
    /// `{"messages": [{"role", "content"}, …]}`; loss on every assistant turn.
    Messages,
    /// `{"context", "question", "answer"}`.
    Qa,
    /// `{"document", "summary"}`.
    Summarise,
    /// `{"instruction", "input", "output"}` (`input` may be empty or absent).
    Alpaca,
}

impl Format {
    /// The fields of this format (canonical names): prompt-side fields, then the response.
    pub fn fields(self) -> (&'static [&'static str], &'static str) {
        match self {
            Self::PromptCompletion => (&["prompt"], "completion"),
            Self::Qa => (&["context", "question"], "answer"),
            Self::Summarise => (&["document"], "summary"),
            Self::Alpaca => (&["instruction", "input"], "output"),
            Self::Messages | Self::Auto => (&[], "messages"),
        }
    }
}

/// A chat role.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// System prompt.
    System,
    /// The user.
    User,
    /// The model; its turns are trained.
    Assistant,
}

impl Role {
    /// `system`, `user` or `assistant`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::System => "system",
            Self::User => "user",
            Self::Assistant => "assistant",
        }
    }
}

/// One chat message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Message {
    /// Who speaks.
    pub role: Role,
    /// What is said.
    pub content: String,
}

/// One example, before templating.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Record {
    /// A templated format: its fields by canonical name (`context`, `answer`, …).
    Fields {
        /// The format.
        format: Format,
        /// Field values.
        values: BTreeMap<String, String>,
    },
    /// A conversation.
    Chat(Vec<Message>),
}

impl Record {
    /// The text the model must produce last (the answer, or the final assistant turn).
    pub fn final_response(&self) -> &str {
        match self {
            Self::Fields { format, values } => values
                .get(format.fields().1)
                .map(String::as_str)
                .unwrap_or(""),
            Self::Chat(m) => m
                .iter()
                .rev()
                .find(|m| m.role == Role::Assistant)
                .map_or("", |m| m.content.as_str()),
        }
    }
}

/// Where a record came from, for error messages and predictions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Source {
    /// The file.
    pub path: PathBuf,
    /// 1-based line.
    pub line: usize,
}

/// Records read from files, with what was skipped.
#[derive(Debug, Clone, Default)]
pub struct Dataset {
    /// The records, in file order.
    pub records: Vec<Record>,
    /// Where each came from.
    pub sources: Vec<Source>,
    /// Lines skipped as invalid (`skip_invalid`).
    pub skipped: usize,
}

/// Which JSON field holds each canonical field (`answer = "gold"`); unlisted fields keep
/// their canonical names.
pub type FieldMap = BTreeMap<String, String>;

/// Reads JSONL files of `format` (or detected), remapping field names with `fields`.
pub fn read_files(
    paths: &[PathBuf],
    format: Format,
    fields: &FieldMap,
    skip_invalid: bool,
) -> Result<Dataset> {
    let mut out = Dataset::default();
    for path in paths {
        read_file(path, format, fields, skip_invalid, &mut out)?;
    }
    Ok(out)
}

fn read_file(
    path: &Path,
    format: Format,
    fields: &FieldMap,
    skip_invalid: bool,
    out: &mut Dataset,
) -> Result<()> {
    let mut format = format;
    let before = out.records.len();
    for record in manabi_tokenize::read_jsonl(path) {
        let (line_no, v) = match record {
            Ok(manabi_tokenize::JsonLine { line, value }) => (line, value),
            Err(e) => {
                // A file that did not open or a failed read is never skipped; a line that
                // is not JSON (or not UTF-8) is, under `skip_invalid`.
                let fatal = !skip_invalid || matches!(e, manabi_tokenize::LineError::Io { .. });
                let e = match e {
                    manabi_tokenize::LineError::Json {
                        path,
                        line,
                        message,
                    } => FinetuneError::Data {
                        path,
                        line,
                        message: format!("not valid JSON: {message}"),
                    },
                    e => FinetuneError::from(e),
                };
                if fatal {
                    return Err(e);
                }
                tracing::warn!("{e}");
                out.skipped += 1;
                continue;
            }
        };
        let bad = |message: String| FinetuneError::Data {
            path: path.to_path_buf(),
            line: line_no,
            message,
        };
        let detected = match format {
            Format::Auto => detect(&v, fields).ok_or_else(|| {
                bad(format!(
                    "cannot tell the format from the fields {}; set data.format",
                    keys(&v)
                ))
            }),
            known => Ok(known),
        };
        let parsed = detected.and_then(|f| {
            format = f;
            parse_record(&v, f, fields).map_err(bad)
        });
        match parsed {
            Ok(r) => {
                out.records.push(r);
                out.sources.push(Source {
                    path: path.to_path_buf(),
                    line: line_no,
                });
            }
            Err(e) if skip_invalid => {
                tracing::warn!("{e}");
                out.skipped += 1;
            }
            Err(e) => return Err(e),
        }
    }
    if out.records.len() == before {
        return Err(FinetuneError::io(path, "no examples in the file"));
    }
    Ok(())
}

fn keys(v: &serde_json::Value) -> String {
    v.as_object().map_or("(not an object)".into(), |o| {
        let k: Vec<&str> = o.keys().map(String::as_str).collect();
        format!("[{}]", k.join(", "))
    })
}

fn field<'a>(fields: &'a FieldMap, canonical: &'a str) -> &'a str {
    fields.get(canonical).map_or(canonical, String::as_str)
}

/// The format whose fields the object has.
pub fn detect(v: &serde_json::Value, fields: &FieldMap) -> Option<Format> {
    let o = v.as_object()?;
    let has = |c: &str| o.contains_key(field(fields, c));
    [
        Format::Messages,
        Format::Qa,
        Format::Alpaca,
        Format::Summarise,
        Format::PromptCompletion,
    ]
    .into_iter()
    .find(|f| {
        let (prompt, response) = f.fields();
        has(response) && prompt.iter().filter(|p| **p != "input").all(|p| has(p))
    })
}

/// Parses one object as `format`; the error names the field.
pub fn parse_record(
    v: &serde_json::Value,
    format: Format,
    fields: &FieldMap,
) -> std::result::Result<Record, String> {
    let o = v
        .as_object()
        .ok_or_else(|| "expected a JSON object".to_string())?;
    if format == Format::Messages {
        let name = field(fields, "messages");
        let list = o
            .get(name)
            .ok_or_else(|| format!("missing field `{name}`"))?
            .as_array()
            .ok_or_else(|| format!("field `{name}` must be a list of messages"))?;
        let mut msgs = Vec::with_capacity(list.len());
        for (i, m) in list.iter().enumerate() {
            let msg: Message = serde_json::from_value(m.clone()).map_err(|e| {
                format!("field `{name}[{i}]`: {e} (expected {{\"role\": system|user|assistant, \"content\": string}})")
            })?;
            msgs.push(msg);
        }
        match msgs.iter().rposition(|m| m.role == Role::Assistant) {
            None => return Err(format!("field `{name}` has no assistant turn to train on")),
            Some(last) if msgs[last].content.trim().is_empty() => {
                return Err(format!(
                    "field `{name}[{last}].content`: empty assistant response"
                ));
            }
            _ => {}
        }
        // A question left empty is a data error, as an empty answer is.
        if let Some(i) = msgs
            .iter()
            .position(|m| m.role == Role::User && m.content.trim().is_empty())
        {
            return Err(format!("field `{name}[{i}].content`: empty user message"));
        }
        return Ok(Record::Chat(msgs));
    }
    let (prompt, response) = format.fields();
    let mut values = BTreeMap::new();
    for &canonical in prompt.iter().chain([&response]) {
        let name = field(fields, canonical);
        let value = match o.get(name) {
            Some(serde_json::Value::String(s)) => s.clone(),
            Some(serde_json::Value::Null) | None if canonical == "input" => String::new(),
            Some(other) => {
                return Err(format!(
                    "field `{name}` must be a string, found {}",
                    json_kind(other)
                ));
            }
            None => return Err(format!("missing field `{name}`")),
        };
        if canonical == response && value.trim().is_empty() {
            return Err(format!("field `{name}`: empty response"));
        }
        // The text a response is made from: an empty document has no summary, an empty
        // context no answer (a bare `prompt` may be empty: unconditional generation).
        if ["document", "context", "question", "instruction"].contains(&canonical)
            && value.trim().is_empty()
        {
            return Err(format!("field `{name}` is empty"));
        }
        values.insert(canonical.to_string(), value);
    }
    Ok(Record::Fields { format, values })
}

fn json_kind(v: &serde_json::Value) -> &'static str {
    match v {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "a list",
        serde_json::Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(line: &str, format: Format) -> std::result::Result<Record, String> {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        let f = if format == Format::Auto {
            detect(&v, &FieldMap::new()).ok_or("undetected")?
        } else {
            format
        };
        parse_record(&v, f, &FieldMap::new())
    }

    #[test]
    fn every_format_is_detected_from_its_fields() {
        let cases = [
            (
                r#"{"prompt":"a","completion":"b"}"#,
                Format::PromptCompletion,
            ),
            (r#"{"context":"c","question":"q","answer":"a"}"#, Format::Qa),
            (r#"{"document":"d","summary":"s"}"#, Format::Summarise),
            (r#"{"instruction":"i","output":"o"}"#, Format::Alpaca),
            (
                r#"{"instruction":"i","input":"x","output":"o"}"#,
                Format::Alpaca,
            ),
            (
                r#"{"messages":[{"role":"user","content":"hi"},{"role":"assistant","content":"yo"}]}"#,
                Format::Messages,
            ),
        ];
        for (line, want) in cases {
            let v: serde_json::Value = serde_json::from_str(line).unwrap();
            assert_eq!(detect(&v, &FieldMap::new()), Some(want), "{line}");
            assert!(parse(line, want).is_ok(), "{line}");
        }
    }

    #[test]
    fn bad_records_name_the_field() {
        let e = parse(r#"{"context":"c","question":"q"}"#, Format::Qa).unwrap_err();
        assert!(e.contains("missing field `answer`"), "{e}");
        let e = parse(r#"{"context":"c","question":"q","answer":" "}"#, Format::Qa).unwrap_err();
        assert!(e.contains("empty response"), "{e}");
        let e = parse(r#"{"document":" ","summary":"s"}"#, Format::Summarise).unwrap_err();
        assert!(e.contains("field `document` is empty"), "{e}");
        let e = parse(r#"{"context":"","question":"q","answer":"a"}"#, Format::Qa).unwrap_err();
        assert!(e.contains("field `context` is empty"), "{e}");
        let e = parse(r#"{"context":"c","question":4,"answer":"a"}"#, Format::Qa).unwrap_err();
        assert!(
            e.contains("`question` must be a string, found a number"),
            "{e}"
        );
        let e = parse(
            r#"{"messages":[{"role":"user","content":"hi"}]}"#,
            Format::Messages,
        )
        .unwrap_err();
        assert!(e.contains("no assistant turn"), "{e}");
        let e = parse(
            r#"{"messages":[{"role":"bot","content":"hi"}]}"#,
            Format::Messages,
        )
        .unwrap_err();
        assert!(e.contains("messages[0]"), "{e}");
    }

    #[test]
    fn an_empty_question_is_refused_like_an_empty_answer() {
        let e = parse(
            r#"{"messages":[{"role":"user","content":" "},{"role":"assistant","content":"yo"}]}"#,
            Format::Messages,
        )
        .unwrap_err();
        assert_eq!(e, "field `messages[0].content`: empty user message");
        let e = parse(r#"{"context":"c","question":" ","answer":"a"}"#, Format::Qa).unwrap_err();
        assert_eq!(e, "field `question` is empty");
    }

    #[test]
    fn field_names_can_be_remapped() {
        let v: serde_json::Value =
            serde_json::from_str(r#"{"ctx":"c","q":"q","gold":"a"}"#).unwrap();
        let map: FieldMap = [("context", "ctx"), ("question", "q"), ("answer", "gold")]
            .into_iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect();
        assert_eq!(detect(&v, &map), Some(Format::Qa));
        let r = parse_record(&v, Format::Qa, &map).unwrap();
        assert_eq!(r.final_response(), "a");
    }
}
