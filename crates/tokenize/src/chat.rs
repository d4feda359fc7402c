//! Chat templates: the model's own Jinja `chat_template`, rendered the way `transformers`'
//! `apply_chat_template(messages, tokenize=False, add_generation_prompt=...)` renders it.
//!
//! The template is read from a model folder: `chat_template.jinja` when it exists (the file
//! recent `transformers` versions save, which takes precedence there too), otherwise the
//! `chat_template` field of `tokenizer_config.json` — a string, or a list of
//! `{"name", "template"}` of which the one named `default` is used. The special-token
//! strings come from `tokenizer_config.json` (`bos_token`, `eos_token`, `unk_token`,
//! `sep_token`, `pad_token`, `cls_token`, `mask_token`; each a string or an
//! `{"content": ...}` object); a token that is not set is left undefined in the template,
//! as `transformers` leaves it.
//!
//! Rendering uses minijinja set up like `transformers`' `_compile_jinja_template`:
//! `trim_blocks` and `lstrip_blocks` on, the trailing newline of the template dropped,
//! loop controls (`break`, `continue`), the globals `raise_exception(message)` and
//! `strftime_now(format)`, and a `tojson` filter that writes what Python's
//! `json.dumps(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False)`
//! writes (the same keyword arguments are accepted). The variables are `messages`,
//! `add_generation_prompt`, `tools` and `documents` (both `none`) and the special tokens.
//! Python methods that templates call on strings, lists and dicts (`.strip()`,
//! `.startswith()`, `.split()`, `.items()`, `.get()`, ...) come from minijinja-contrib's
//! `pycompat`; the `trim` filter and `.strip()` / `.lstrip()` / `.rstrip()` / `.split()`
//! without arguments use Python's notion of whitespace. `{% generation %}` blocks (the
//! assistant-mask markers of training templates) render their body, as in `transformers`.

use std::fmt;
use std::path::{Path, PathBuf};

use minijinja::value::{Kwargs, Rest, Value, ValueKind, from_args};
use minijinja::{AutoEscape, Environment, ErrorKind, State, UndefinedBehavior};
use minijinja_contrib::pycompat;
use serde::{Deserialize, Serialize};

use crate::error::{Result, TokenizeError};

/// The file `transformers` saves a single chat template in, beside `tokenizer_config.json`.
pub const CHAT_TEMPLATE_FILE: &str = "chat_template.jinja";
/// The tokenizer configuration that holds `chat_template` and the special tokens.
pub const TOKENIZER_CONFIG_FILE: &str = "tokenizer_config.json";

/// The name the template is stored under in its environment.
const TEMPLATE_NAME: &str = "chat_template";

/// One turn of a conversation: a role (`system`, `user`, `assistant`, ...) and its text.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Message {
    /// Who speaks.
    pub role: String,
    /// What is said.
    pub content: String,
}

impl Message {
    /// A message from `role` saying `content`.
    pub fn new(role: impl Into<String>, content: impl Into<String>) -> Self {
        Self {
            role: role.into(),
            content: content.into(),
        }
    }
}

/// The named special tokens a template can use, as strings; `None` where the tokenizer
/// configuration does not set one (the template then sees the variable as undefined).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SpecialTokens {
    /// `bos_token`.
    pub bos_token: Option<String>,
    /// `eos_token`.
    pub eos_token: Option<String>,
    /// `unk_token`.
    pub unk_token: Option<String>,
    /// `sep_token`.
    pub sep_token: Option<String>,
    /// `pad_token`.
    pub pad_token: Option<String>,
    /// `cls_token`.
    pub cls_token: Option<String>,
    /// `mask_token`.
    pub mask_token: Option<String>,
}

impl SpecialTokens {
    /// The variable names, in `transformers`' order (`SPECIAL_TOKENS_ATTRIBUTES`).
    pub const NAMES: [&'static str; 7] = [
        "bos_token",
        "eos_token",
        "unk_token",
        "sep_token",
        "pad_token",
        "cls_token",
        "mask_token",
    ];

    fn slot(&mut self, name: &str) -> Option<&mut Option<String>> {
        Some(match name {
            "bos_token" => &mut self.bos_token,
            "eos_token" => &mut self.eos_token,
            "unk_token" => &mut self.unk_token,
            "sep_token" => &mut self.sep_token,
            "pad_token" => &mut self.pad_token,
            "cls_token" => &mut self.cls_token,
            "mask_token" => &mut self.mask_token,
            _ => return None,
        })
    }

    /// The token set under `name` (one of [`Self::NAMES`]).
    pub fn get(&self, name: &str) -> Option<&str> {
        match name {
            "bos_token" => self.bos_token.as_deref(),
            "eos_token" => self.eos_token.as_deref(),
            "unk_token" => self.unk_token.as_deref(),
            "sep_token" => self.sep_token.as_deref(),
            "pad_token" => self.pad_token.as_deref(),
            "cls_token" => self.cls_token.as_deref(),
            "mask_token" => self.mask_token.as_deref(),
            _ => None,
        }
    }

    /// The tokens that are set, as `(variable name, token)`.
    pub fn iter(&self) -> impl Iterator<Item = (&'static str, &str)> + '_ {
        Self::NAMES
            .into_iter()
            .filter_map(|name| self.get(name).map(|token| (name, token)))
    }

    /// Reads the special tokens of a parsed `tokenizer_config.json`: each a string, an
    /// `{"content": ...}` object (an `AddedToken`), or null / absent.
    pub fn from_config(config: &serde_json::Value, path: &Path) -> Result<Self> {
        let mut tokens = Self::default();
        for name in Self::NAMES {
            let token = match config.get(name) {
                None | Some(serde_json::Value::Null) => None,
                Some(serde_json::Value::String(s)) => Some(s.clone()),
                Some(serde_json::Value::Object(o)) => match o.get("content") {
                    Some(serde_json::Value::String(s)) => Some(s.clone()),
                    _ => {
                        return Err(corrupt(
                            path,
                            format!("`{name}` is an object without a string `content`"),
                        ));
                    }
                },
                Some(other) => {
                    return Err(corrupt(
                        path,
                        format!(
                            "`{name}` must be a string or an object with `content`, not {}",
                            json_kind(other)
                        ),
                    ));
                }
            };
            if let Some(slot) = tokens.slot(name) {
                *slot = token;
            }
        }
        Ok(tokens)
    }
}

/// A model's chat template, compiled, with the special tokens it renders with.
pub struct ChatTemplate {
    env: Environment<'static>,
    source: String,
    path: PathBuf,
    special: SpecialTokens,
}

impl fmt::Debug for ChatTemplate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ChatTemplate")
            .field("path", &self.path)
            .field("special", &self.special)
            .field("source_len", &self.source.len())
            .finish_non_exhaustive()
    }
}

impl ChatTemplate {
    /// The chat template of the model folder `dir`: `chat_template.jinja` if present,
    /// else `tokenizer_config.json`'s `chat_template`; `Ok(None)` when it has neither.
    /// The special tokens are read from `tokenizer_config.json` when it exists.
    pub fn from_model_dir(dir: impl AsRef<Path>) -> Result<Option<Self>> {
        let dir = dir.as_ref();
        let config_path = dir.join(TOKENIZER_CONFIG_FILE);
        let config = if config_path.is_file() {
            let text = std::fs::read_to_string(&config_path)
                .map_err(|e| TokenizeError::io(&config_path, e))?;
            let value: serde_json::Value = serde_json::from_str(&text)
                .map_err(|e| corrupt(&config_path, format!("malformed JSON: {e}")))?;
            if !value.is_object() {
                return Err(corrupt(&config_path, "not a JSON object"));
            }
            Some(value)
        } else {
            None
        };
        let special = match &config {
            Some(config) => SpecialTokens::from_config(config, &config_path)?,
            None => SpecialTokens::default(),
        };

        let jinja_path = dir.join(CHAT_TEMPLATE_FILE);
        if jinja_path.is_file() {
            let source = std::fs::read_to_string(&jinja_path)
                .map_err(|e| TokenizeError::io(&jinja_path, e))?;
            return Self::from_source(source, jinja_path, special).map(Some);
        }
        let Some(config) = config else {
            return Ok(None);
        };
        match config_template(&config, &config_path)? {
            Some(source) => Self::from_source(source, config_path, special).map(Some),
            None => Ok(None),
        }
    }

    /// Like [`Self::from_model_dir`], but a folder without a chat template is an error.
    pub fn load(dir: impl AsRef<Path>) -> Result<Self> {
        let dir = dir.as_ref();
        Self::from_model_dir(dir)?.ok_or_else(|| TokenizeError::NoChatTemplate(dir.to_path_buf()))
    }

    /// Compiles `source`; `path` is the file it came from, named in every error.
    pub fn from_source(
        source: impl Into<String>,
        path: impl Into<PathBuf>,
        special: SpecialTokens,
    ) -> Result<Self> {
        let source = source.into();
        let path = path.into();
        let mut env = Environment::new();
        env.set_trim_blocks(true);
        env.set_lstrip_blocks(true);
        env.set_keep_trailing_newline(false);
        env.set_auto_escape_callback(|_| AutoEscape::None);
        env.set_undefined_behavior(UndefinedBehavior::Lenient);
        env.set_debug(false);
        // Jinja2's `truncate`, `striptags`, `filesizeformat`, `cycler`, `joiner`.
        minijinja_contrib::add_to_environment(&mut env);
        env.set_unknown_method_callback(python_method);
        env.add_function("raise_exception", raise_exception);
        env.add_function("strftime_now", strftime_now);
        env.add_filter("tojson", tojson);
        env.add_filter("trim", trim);
        env.add_template_owned(TEMPLATE_NAME, rewrite_generation_tags(&source))
            .map_err(|e| TokenizeError::ChatTemplateSyntax {
                path: path.clone(),
                line: e.line().unwrap_or(0),
                message: describe(&e),
            })?;
        Ok(Self {
            env,
            source,
            path,
            special,
        })
    }

    /// Renders `messages`, followed by the assistant header when `add_generation_prompt`
    /// is set: the text `apply_chat_template(messages, tokenize=False,
    /// add_generation_prompt=...)` returns.
    pub fn render(&self, messages: &[Message], add_generation_prompt: bool) -> Result<String> {
        self.render_with(messages, add_generation_prompt, &serde_json::Map::new())
    }

    /// [`Self::render`] with extra template variables (`apply_chat_template`'s keyword
    /// arguments, e.g. `date_string` or `enable_thinking`); like there, they override the
    /// special tokens of the same name.
    pub fn render_with(
        &self,
        messages: &[Message],
        add_generation_prompt: bool,
        extra: &serde_json::Map<String, serde_json::Value>,
    ) -> Result<String> {
        let messages: Vec<Value> = messages
            .iter()
            .map(|m| {
                [
                    ("role", Value::from(m.role.as_str())),
                    ("content", Value::from(m.content.as_str())),
                ]
                .into_iter()
                .collect::<Value>()
            })
            .collect();
        let mut vars: Vec<(String, Value)> = vec![
            ("messages".into(), Value::from(messages)),
            ("tools".into(), Value::from(())),
            ("documents".into(), Value::from(())),
            (
                "add_generation_prompt".into(),
                Value::from(add_generation_prompt),
            ),
        ];
        for (name, token) in self.special.iter() {
            if !extra.contains_key(name) {
                vars.push((name.into(), Value::from(token)));
            }
        }
        for (name, value) in extra {
            vars.push((name.clone(), Value::from_serialize(value)));
        }
        let context: Value = vars.into_iter().collect();
        let template = self
            .env
            .get_template(TEMPLATE_NAME)
            .map_err(|e| self.render_error(&e))?;
        template.render(context).map_err(|e| self.render_error(&e))
    }

    /// The template text, as read.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// The file the template was read from (`chat_template.jinja` or
    /// `tokenizer_config.json`).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The special tokens the template renders with.
    pub fn special_tokens(&self) -> &SpecialTokens {
        &self.special
    }

    fn render_error(&self, e: &minijinja::Error) -> TokenizeError {
        match raised_message(e) {
            Some(message) => TokenizeError::ChatTemplateRaised {
                path: self.path.clone(),
                message: one_line(message),
            },
            None => TokenizeError::ChatTemplateRender {
                path: self.path.clone(),
                line: e.line().unwrap_or(0),
                message: describe(e),
            },
        }
    }
}

/// The `chat_template` entry of a tokenizer configuration: a string, or the template
/// named `default` of a list of `{"name", "template"}`.
fn config_template(config: &serde_json::Value, path: &Path) -> Result<Option<String>> {
    match config.get("chat_template") {
        None | Some(serde_json::Value::Null) => Ok(None),
        Some(serde_json::Value::String(s)) => Ok(Some(s.clone())),
        Some(serde_json::Value::Array(entries)) => {
            let mut names = Vec::new();
            for entry in entries {
                let name = entry.get("name").and_then(|n| n.as_str());
                let template = entry.get("template").and_then(|t| t.as_str());
                let (Some(name), Some(template)) = (name, template) else {
                    return Err(corrupt(
                        path,
                        "`chat_template` list entries must be objects with string `name` and `template`",
                    ));
                };
                if name == "default" {
                    return Ok(Some(template.to_string()));
                }
                names.push(name.to_string());
            }
            Err(corrupt(
                path,
                format!("`chat_template` names templates {names:?} but none is called `default`"),
            ))
        }
        Some(other) => Err(corrupt(
            path,
            format!(
                "`chat_template` must be a string or a list of {{name, template}}, not {}",
                json_kind(other)
            ),
        )),
    }
}

fn corrupt(path: &Path, message: impl Into<String>) -> TokenizeError {
    TokenizeError::CorruptChatTemplate {
        path: path.to_path_buf(),
        message: message.into(),
    }
}

fn json_kind(value: &serde_json::Value) -> &'static str {
    match value {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "a list",
        serde_json::Value::Object(_) => "an object",
    }
}

/// A minijinja error as one line: its kind, its detail and what caused it.
fn describe(e: &minijinja::Error) -> String {
    let mut text = match e.detail() {
        Some(detail) => format!("{}: {detail}", e.kind()),
        None => e.kind().to_string(),
    };
    let mut source = std::error::Error::source(e);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    one_line(&text)
}

fn one_line(text: &str) -> String {
    text.split(['\r', '\n'])
        .filter(|part| !part.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

/// The error `raise_exception` returns, found again in the chain of a render error.
#[derive(Debug)]
struct Raised(String);

impl fmt::Display for Raised {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Raised {}

fn raised_message(e: &minijinja::Error) -> Option<&str> {
    let mut current: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(error) = current {
        if let Some(raised) = error.downcast_ref::<Raised>() {
            return Some(&raised.0);
        }
        current = error.source();
    }
    None
}

/// `raise_exception(message)`: fails the render with the template's message.
fn raise_exception(message: &Value) -> std::result::Result<Value, minijinja::Error> {
    let message = match message.as_str() {
        Some(s) => s.to_string(),
        None => message.to_string(),
    };
    Err(
        minijinja::Error::new(ErrorKind::InvalidOperation, message.clone())
            .with_source(Raised(message)),
    )
}

/// `strftime_now(format)`: the local time now, formatted with `strftime` directives.
fn strftime_now(format: &str) -> std::result::Result<String, minijinja::Error> {
    use std::fmt::Write;
    let mut out = String::new();
    write!(out, "{}", chrono::Local::now().format(format)).map_err(|_| {
        minijinja::Error::new(
            ErrorKind::InvalidOperation,
            format!("strftime_now: invalid format {format:?}"),
        )
    })?;
    Ok(out)
}

/// Python's `str.isspace` for one character: Unicode `White_Space` plus the ASCII
/// separators U+001C..U+001F.
fn py_space(c: char) -> bool {
    c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c)
}

/// The `trim` filter as Jinja2 has it: Python's `str.strip(chars)`.
fn trim(value: &Value, chars: Option<String>) -> String {
    let text = match value.as_str() {
        Some(s) => s.to_string(),
        None => value.to_string(),
    };
    match chars {
        Some(chars) => {
            let chars: Vec<char> = chars.chars().collect();
            text.trim_matches(&chars[..]).to_string()
        }
        None => text.trim_matches(py_space).to_string(),
    }
}

/// Python methods on template values: `strip` / `lstrip` / `rstrip` / `split` without
/// arguments with Python's whitespace, everything else through minijinja-contrib's
/// `pycompat`.
fn python_method(
    state: &State,
    value: &Value,
    method: &str,
    args: &[Value],
) -> std::result::Result<Value, minijinja::Error> {
    if let Some(s) = value.as_str() {
        let default_chars = args.is_empty() || (args.len() == 1 && args[0].is_none());
        if default_chars {
            match method {
                "strip" => return Ok(Value::from(s.trim_matches(py_space))),
                "lstrip" => return Ok(Value::from(s.trim_start_matches(py_space))),
                "rstrip" => return Ok(Value::from(s.trim_end_matches(py_space))),
                "split" => {
                    return Ok(Value::from(
                        s.split(py_space)
                            .filter(|w| !w.is_empty())
                            .map(Value::from)
                            .collect::<Vec<_>>(),
                    ));
                }
                _ => {}
            }
        }
    }
    pycompat::unknown_method_callback(state, value, method, args)
}

/// How `json.dumps` lays out its output.
struct JsonStyle {
    ensure_ascii: bool,
    indent: Option<String>,
    item_separator: String,
    key_separator: String,
    sort_keys: bool,
}

/// The `tojson` filter `transformers` installs: `json.dumps(x, ensure_ascii=False,
/// indent=None, separators=None, sort_keys=False)`, arguments by position or name.
fn tojson(value: &Value, args: Rest<Value>) -> std::result::Result<Value, minijinja::Error> {
    let (positional, kwargs): (&[Value], Kwargs) = from_args(&args[..])?;
    const NAMES: [&str; 4] = ["ensure_ascii", "indent", "separators", "sort_keys"];
    if positional.len() > NAMES.len() {
        return Err(minijinja::Error::new(
            ErrorKind::TooManyArguments,
            "tojson takes at most 4 arguments",
        ));
    }
    let mut options: [Option<Value>; 4] = Default::default();
    for (i, name) in NAMES.into_iter().enumerate() {
        let by_name: Option<Value> = kwargs.get(name)?;
        options[i] = match (positional.get(i), by_name) {
            (Some(_), Some(_)) => {
                return Err(minijinja::Error::new(
                    ErrorKind::InvalidOperation,
                    format!("tojson got multiple values for argument `{name}`"),
                ));
            }
            (Some(v), None) => Some(v.clone()).filter(|v| !v.is_none() && !v.is_undefined()),
            (None, v) => v,
        };
    }
    kwargs.assert_all_used()?;
    let [ensure_ascii, indent, separators, sort_keys] = options;
    let indent = match indent {
        None => None,
        Some(v) => Some(match (v.as_str(), v.as_i64()) {
            (Some(s), _) => s.to_string(),
            (None, Some(n)) => " ".repeat(usize::try_from(n).unwrap_or(0)),
            _ => {
                return Err(minijinja::Error::new(
                    ErrorKind::InvalidOperation,
                    format!(
                        "tojson: indent must be an integer or a string, not {}",
                        v.kind()
                    ),
                ));
            }
        }),
    };
    let (item_separator, key_separator) = match separators {
        None => (
            if indent.is_some() { "," } else { ", " }.to_string(),
            ": ".to_string(),
        ),
        Some(v) => {
            let parts: Vec<Value> = v.try_iter()?.collect();
            match (
                parts.first().and_then(|p| p.as_str()),
                parts.get(1).and_then(|p| p.as_str()),
            ) {
                (Some(item), Some(key)) if parts.len() == 2 => (item.to_string(), key.to_string()),
                _ => {
                    return Err(minijinja::Error::new(
                        ErrorKind::InvalidOperation,
                        "tojson: separators must be two strings (item, key)",
                    ));
                }
            }
        }
    };
    let style = JsonStyle {
        ensure_ascii: ensure_ascii.is_some_and(|v| v.is_true()),
        indent,
        item_separator,
        key_separator,
        sort_keys: sort_keys.is_some_and(|v| v.is_true()),
    };
    let mut out = String::new();
    write_json(&mut out, value, &style, 0)?;
    Ok(Value::from(out))
}

fn not_serializable(value: &Value) -> minijinja::Error {
    minijinja::Error::new(
        ErrorKind::InvalidOperation,
        format!(
            "tojson: a value of type {} is not JSON serializable",
            value.kind()
        ),
    )
}

fn write_json(
    out: &mut String,
    value: &Value,
    style: &JsonStyle,
    level: usize,
) -> std::result::Result<(), minijinja::Error> {
    match value.kind() {
        ValueKind::None => out.push_str("null"),
        ValueKind::Bool => out.push_str(if value.is_true() { "true" } else { "false" }),
        ValueKind::Number => out.push_str(&json_number(value)?),
        ValueKind::String => write_json_string(out, value.as_str().unwrap_or_default(), style),
        // A slice (`messages[:2]`) or other iterable is a list to Python's json.dumps.
        ValueKind::Seq | ValueKind::Iterable => {
            let items: Vec<Value> = value.try_iter()?.collect();
            if items.is_empty() {
                out.push_str("[]");
                return Ok(());
            }
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                open_item(out, style, level, i);
                write_json(out, item, style, level + 1)?;
            }
            close_container(out, style, level);
            out.push(']');
        }
        ValueKind::Map => {
            let mut entries = Vec::new();
            for key in value.try_iter()? {
                let item = value.get_item(&key)?;
                entries.push((json_key(&key)?, item));
            }
            if entries.is_empty() {
                out.push_str("{}");
                return Ok(());
            }
            if style.sort_keys {
                entries.sort_by(|a, b| a.0.cmp(&b.0));
            }
            out.push('{');
            for (i, (key, item)) in entries.iter().enumerate() {
                open_item(out, style, level, i);
                write_json_string(out, key, style);
                out.push_str(&style.key_separator);
                write_json(out, item, style, level + 1)?;
            }
            close_container(out, style, level);
            out.push('}');
        }
        _ => return Err(not_serializable(value)),
    }
    Ok(())
}

/// Before the `i`-th item of a list or object: the separator, then a newline and the
/// indentation when indenting.
fn open_item(out: &mut String, style: &JsonStyle, level: usize, i: usize) {
    if i > 0 {
        out.push_str(&style.item_separator);
    }
    if let Some(indent) = &style.indent {
        out.push('\n');
        for _ in 0..=level {
            out.push_str(indent);
        }
    }
}

fn close_container(out: &mut String, style: &JsonStyle, level: usize) {
    if let Some(indent) = &style.indent {
        out.push('\n');
        for _ in 0..level {
            out.push_str(indent);
        }
    }
}

/// An object key as `json.dumps` writes it: strings as they are, numbers, booleans and
/// null as their JSON text.
fn json_key(key: &Value) -> std::result::Result<String, minijinja::Error> {
    Ok(match key.kind() {
        ValueKind::String => key.as_str().unwrap_or_default().to_string(),
        ValueKind::Number => json_number(key)?,
        ValueKind::Bool => if key.is_true() { "true" } else { "false" }.to_string(),
        ValueKind::None => "null".to_string(),
        _ => {
            return Err(minijinja::Error::new(
                ErrorKind::InvalidOperation,
                format!(
                    "tojson: keys must be str, int, float, bool or None, not {}",
                    key.kind()
                ),
            ));
        }
    })
}

fn json_number(value: &Value) -> std::result::Result<String, minijinja::Error> {
    if value.is_integer() {
        return Ok(value.to_string());
    }
    let f = f64::try_from(value.clone()).map_err(|_| not_serializable(value))?;
    Ok(py_float_repr(f))
}

/// Python's `repr(float)` (what `json.dumps` writes): the shortest digits that read back,
/// in positional notation for exponents -4..16 and as `1e+20` / `1.5e-05` outside.
pub(crate) fn py_float_repr(f: f64) -> String {
    if f.is_nan() {
        return "NaN".into();
    }
    if f.is_infinite() {
        return if f > 0.0 { "Infinity" } else { "-Infinity" }.into();
    }
    let scientific = format!("{f:e}");
    let (mantissa, exponent) = scientific
        .split_once('e')
        .unwrap_or((scientific.as_str(), "0"));
    let exponent: i32 = exponent.parse().unwrap_or(0);
    let (sign, mantissa) = match mantissa.strip_prefix('-') {
        Some(m) => ("-", m),
        None => ("", mantissa),
    };
    let digits: String = mantissa.chars().filter(|c| *c != '.').collect();
    let body = if (-4..16).contains(&exponent) {
        let point = exponent + 1;
        if point <= 0 {
            format!("0.{}{digits}", "0".repeat(point.unsigned_abs() as usize))
        } else {
            let point = point as usize;
            if point >= digits.len() {
                format!("{digits}{}.0", "0".repeat(point - digits.len()))
            } else {
                format!("{}.{}", &digits[..point], &digits[point..])
            }
        }
    } else {
        let mantissa = if digits.len() == 1 {
            digits
        } else {
            format!("{}.{}", &digits[..1], &digits[1..])
        };
        let exp_sign = if exponent < 0 { '-' } else { '+' };
        format!("{mantissa}e{exp_sign}{:02}", exponent.unsigned_abs())
    };
    format!("{sign}{body}")
}

/// A JSON string as Python's encoder writes it: `"`, `\` and control characters escaped
/// (`\n`, `\r`, `\t`, `\b`, `\f` by name, the rest as `\u00XX`), and with `ensure_ascii`
/// everything outside printable ASCII as `\uXXXX` (surrogate pairs above U+FFFF).
fn write_json_string(out: &mut String, s: &str, style: &JsonStyle) {
    use std::fmt::Write;
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c if style.ensure_ascii && !(' '..='~').contains(&c) => {
                let mut units = [0u16; 2];
                for unit in c.encode_utf16(&mut units) {
                    let _ = write!(out, "\\u{unit:04x}");
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// `{% generation %}` / `{% endgeneration %}` (transformers' assistant-mask extension)
/// become `{% if true %}` / `{% endif %}`: the same block-tag whitespace handling, the
/// body rendered as it is, and the same line numbers.
fn rewrite_generation_tags(source: &str) -> String {
    if !source.contains("generation") {
        return source.to_string();
    }
    let mut out = String::with_capacity(source.len());
    let mut rest = source;
    while let Some(pos) = rest.find("{%") {
        out.push_str(&rest[..pos]);
        let tag = &rest[pos..];
        match generation_tag(tag) {
            Some((len, replacement)) => {
                out.push_str(&replacement);
                rest = &tag[len..];
            }
            None => {
                out.push_str("{%");
                rest = &tag[2..];
            }
        }
    }
    out.push_str(rest);
    out
}

/// When `tag` starts with `{%[-+]? generation [-+]?%}` (or `endgeneration`): its length
/// and its replacement.
fn generation_tag(tag: &str) -> Option<(usize, String)> {
    let bytes = tag.as_bytes();
    let mut i = 2;
    let open = match bytes.get(i) {
        Some(b'-' | b'+') => {
            i += 1;
            &tag[2..3]
        }
        _ => "",
    };
    while bytes.get(i).is_some_and(|b| b.is_ascii_whitespace()) {
        i += 1;
    }
    let word_start = i;
    while bytes.get(i).is_some_and(|b| b.is_ascii_alphabetic()) {
        i += 1;
    }
    let replacement = match &tag[word_start..i] {
        "generation" => "if true",
        "endgeneration" => "endif",
        _ => return None,
    };
    while bytes.get(i).is_some_and(|b| b.is_ascii_whitespace()) {
        i += 1;
    }
    let close = match bytes.get(i) {
        Some(b'-' | b'+') => {
            i += 1;
            &tag[i - 1..i]
        }
        _ => "",
    };
    if !tag[i..].starts_with("%}") {
        return None;
    }
    Some((i + 2, format!("{{%{open} {replacement} {close}%}}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floats_read_like_python_repr() {
        for (f, want) in [
            (0.0, "0.0"),
            (-0.0, "-0.0"),
            (1.0, "1.0"),
            (1.5, "1.5"),
            (0.1, "0.1"),
            (0.0001, "0.0001"),
            (0.00001, "1e-05"),
            (1.5e-7, "1.5e-07"),
            (123456.789, "123456.789"),
            (1e15, "1000000000000000.0"),
            (1e16, "1e+16"),
            (1e20, "1e+20"),
            (-2.5e100, "-2.5e+100"),
            (f64::INFINITY, "Infinity"),
            (f64::NEG_INFINITY, "-Infinity"),
            (f64::NAN, "NaN"),
        ] {
            assert_eq!(py_float_repr(f), want, "{f}");
        }
    }

    #[test]
    fn generation_tags_become_if_blocks() {
        assert_eq!(
            rewrite_generation_tags(
                "a{%- generation %}b{% endgeneration -%}c{% if x %}{% endif %}"
            ),
            "a{%- if true %}b{% endif -%}c{% if x %}{% endif %}"
        );
        assert_eq!(
            rewrite_generation_tags("{% generationx %}"),
            "{% generationx %}"
        );
    }

    #[test]
    fn python_whitespace_includes_the_ascii_separators() {
        assert_eq!(trim(&Value::from("\u{1c}\u{3000} x \u{85}"), None), "x");
        assert_eq!(trim(&Value::from("xxayx"), Some("xy".into())), "a");
    }
}
