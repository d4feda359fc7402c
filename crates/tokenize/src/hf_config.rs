//! `tokenizer_config.json` beside a `tokenizer.json` (with `special_tokens_map.json` and the
//! model's `config.json` in the same folder), read as transformers 5.25's
//! `AutoTokenizer.from_pretrained(folder)` reads them, so that
//! [`crate::TextTokenizer::encode_with_specials`] gives the ids of
//! `AutoTokenizer.from_pretrained(folder)(text)["input_ids"]`.
//!
//! What transformers 5.25 does (`models/auto/tokenization_auto.py`,
//! `tokenization_utils_base.py` `_from_pretrained`, `tokenization_utils_tokenizers.py`),
//! pinned by the folders `scripts/tokenizer_config_fixtures.py` writes:
//! - The class comes from `tokenizer_class`, overridden for some `model_type`s of
//!   `config.json` (`resolve_class`). `PreTrainedTokenizerFast` / `TokenizersBackend`
//!   use tokenizer.json as is. The classes with their own `__init__` ([`Class`]) keep only
//!   its vocabulary, merges, added tokens and post-processor, and build normalizer,
//!   pre-tokenizer, decoder and model options themselves (`Plan::rebuild`).
//! - `add_bos_token` / `add_eos_token` are dropped whenever a tokenizer.json exists: the
//!   special tokens a call adds are those of tokenizer.json's post-processor (where the
//!   class wrote them when the tokenizer was saved). `GPTNeoXTokenizer` and
//!   `BertTokenizer` replace the post-processor.
//! - Named special tokens — the class's defaults, then the `*_token` keys of
//!   tokenizer_config.json, then those of special_tokens_map.json when the config has no
//!   `added_tokens_decoder` — that are not in the vocabulary are added as new tokens.
//!   manabi refuses them instead: the model has no embedding for such a token.
//!
//! A folder without tokenizer_config.json (manabi's own) uses tokenizer.json as is, with
//! no named special tokens; transformers would then pick the `model_type`'s class.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::{Map, Value, json};

use crate::chat::TOKENIZER_CONFIG_FILE;
use crate::error::{Result, TokenizeError};

/// The legacy file of special tokens `transformers` still reads.
pub const SPECIAL_TOKENS_MAP_FILE: &str = "special_tokens_map.json";

/// The class `transformers` builds a tokenizer with, among those manabi reproduces.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Class {
    /// `TokenizersBackend` (`PreTrainedTokenizerFast`): tokenizer.json as is.
    #[default]
    AsIs,
    /// `GPT2Tokenizer`: byte-level BPE.
    Gpt2,
    /// `LlamaTokenizer`: Metaspace BPE with byte fallback.
    Llama,
    /// `Qwen2Tokenizer`: NFC, Qwen's split regex, byte-level BPE.
    Qwen2,
    /// `GemmaTokenizer`: spaces as `▁`, BPE with byte fallback.
    Gemma,
    /// `GPTNeoXTokenizer`: NFC, byte-level BPE, no special tokens added.
    GptNeoX,
    /// `BertTokenizer`: BERT normaliser and pre-tokeniser, WordPiece, `[CLS] … [SEP]`.
    Bert,
    /// `T5Tokenizer`: built from a SentencePiece `spiece.model` only ([`crate::spm`]); a
    /// tokenizer.json under this class is refused.
    T5,
    /// `BertJapaneseTokenizer`: built from `vocab.txt` and the configuration only
    /// ([`crate::bertja`]), MeCab or basic word splitting, WordPiece or character subwords.
    BertJapanese,
}

/// Class names manabi builds (with or without the `Fast` suffix), for messages.
const BUILT: &str = "PreTrainedTokenizerFast, TokenizersBackend, GPT2Tokenizer, \
    LlamaTokenizer, Qwen2Tokenizer, GemmaTokenizer, GPTNeoXTokenizer, BertTokenizer, \
    BertJapaneseTokenizer";

impl Class {
    /// The class of a transformers class name (`Fast` suffix or not); `None` for a class
    /// manabi does not build.
    pub fn of(name: &str) -> Option<Self> {
        Some(match name.strip_suffix("Fast").unwrap_or(name) {
            // transformers 5 maps the slow base class to TokenizersBackend too.
            "PreTrainedTokenizer" | "TokenizersBackend" | "PythonBackend" => Self::AsIs,
            "GPT2Tokenizer" => Self::Gpt2,
            "LlamaTokenizer" => Self::Llama,
            "Qwen2Tokenizer" => Self::Qwen2,
            "GemmaTokenizer" => Self::Gemma,
            "GPTNeoXTokenizer" => Self::GptNeoX,
            "BertTokenizer" => Self::Bert,
            "BertJapaneseTokenizer" => Self::BertJapanese,
            _ => return None,
        })
    }

    /// The transformers 5 class name.
    pub fn name(self) -> &'static str {
        match self {
            Self::AsIs => "TokenizersBackend",
            Self::Gpt2 => "GPT2Tokenizer",
            Self::Llama => "LlamaTokenizer",
            Self::Qwen2 => "Qwen2Tokenizer",
            Self::Gemma => "GemmaTokenizer",
            Self::GptNeoX => "GPTNeoXTokenizer",
            Self::Bert => "BertTokenizer",
            Self::T5 => "T5Tokenizer",
            Self::BertJapanese => "BertJapaneseTokenizer",
        }
    }

    /// The special tokens the class's `__init__` names when the configuration does not.
    pub(crate) fn defaults(self) -> &'static [(&'static str, Option<&'static str>)] {
        const EOT: Option<&str> = Some("<|endoftext|>");
        match self {
            Self::AsIs => &[],
            Self::Gpt2 => &[("unk_token", EOT), ("bos_token", EOT), ("eos_token", EOT)],
            Self::Llama => &[
                ("unk_token", Some("<unk>")),
                ("bos_token", Some("<s>")),
                ("eos_token", Some("</s>")),
            ],
            Self::Qwen2 => &[
                ("unk_token", EOT),
                ("bos_token", None),
                ("eos_token", EOT),
                ("pad_token", EOT),
            ],
            Self::Gemma => &[
                ("unk_token", Some("<unk>")),
                ("bos_token", Some("<bos>")),
                ("eos_token", Some("<eos>")),
                ("pad_token", Some("<pad>")),
                ("mask_token", Some("<mask>")),
            ],
            Self::GptNeoX => &[
                ("unk_token", EOT),
                ("bos_token", EOT),
                ("eos_token", EOT),
                ("pad_token", Some("<|padding|>")),
            ],
            Self::Bert | Self::BertJapanese => &[
                ("unk_token", Some("[UNK]")),
                ("sep_token", Some("[SEP]")),
                ("pad_token", Some("[PAD]")),
                ("cls_token", Some("[CLS]")),
                ("mask_token", Some("[MASK]")),
            ],
            Self::T5 => &[
                ("eos_token", Some("</s>")),
                ("unk_token", Some("<unk>")),
                ("pad_token", Some("<pad>")),
            ],
        }
    }
}

/// `TOKENIZER_MAPPING_NAMES` of transformers 5.25 for the model types manabi loads (a
/// model type not listed here, like `llama`, registers no class).
const REGISTERED: [(&str, &str); 12] = [
    ("gpt2", "GPT2Tokenizer"),
    ("mistral", "TokenizersBackend"),
    ("qwen2", "Qwen2Tokenizer"),
    ("qwen3", "Qwen2Tokenizer"),
    ("phi3", "TokenizersBackend"),
    ("gpt_neox", "GPTNeoXTokenizer"),
    ("gemma", "GemmaTokenizer"),
    ("gemma2", "GemmaTokenizer"),
    ("gemma3", "GemmaTokenizer"),
    ("gemma3_text", "GemmaTokenizer"),
    ("bert", "BertTokenizer"),
    ("t5", "T5Tokenizer"),
];

/// Model types whose registered class wins over the `tokenizer_class` a folder names
/// (`MODELS_WITH_INCORRECT_HUB_TOKENIZER_CLASS`, those of them manabi loads).
const FORCED: [&str; 2] = ["qwen2", "phi3"];

/// Qwen2Tokenizer's `PRETOKENIZE_REGEX`.
const QWEN2_SPLIT: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// The files beside a tokenizer.json that transformers reads with it.
#[derive(Debug, Clone)]
pub(crate) struct Folder {
    /// tokenizer_config.json.
    config_path: PathBuf,
    config: Map<String, Value>,
    /// special_tokens_map.json, when present and read (the config has no
    /// `added_tokens_decoder`).
    map: Option<(PathBuf, Map<String, Value>)>,
    /// config.json, when present.
    model_path: PathBuf,
    /// Its `model_type`.
    model_type: Option<String>,
    /// Its `tokenizer_class`.
    model_class: Option<String>,
}

/// An error naming `path`.
fn bad(path: &Path, message: impl Into<String>) -> TokenizeError {
    TokenizeError::TokenizerConfig {
        path: path.to_path_buf(),
        message: message.into(),
    }
}

/// A JSON object file; `None` when it does not exist. A UTF-8 BOM is accepted.
fn read_object(path: &Path) -> Result<Option<Map<String, Value>>> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(TokenizeError::io(path, e)),
    };
    let text = String::from_utf8(bytes).map_err(|_| bad(path, "not UTF-8 text"))?;
    let text = text.strip_prefix('\u{feff}').unwrap_or(&text);
    match serde_json::from_str(text) {
        Ok(Value::Object(map)) => Ok(Some(map)),
        Ok(other) => Err(bad(path, format!("not a JSON object but {}", kind(&other)))),
        Err(e) => Err(bad(path, format!("not valid JSON: {e}"))),
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

/// `key` of `map` as a string (`None` when absent or null).
fn string_key(map: &Map<String, Value>, key: &str, path: &Path) -> Result<Option<String>> {
    match map.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(v) => Err(bad(path, format!("`{key}` must be a string, not {v}"))),
    }
}

/// A special token as tokenizer_config.json writes it: a string, an `AddedToken` object
/// (`{"content": ...}`), or null (unset).
fn token_text(value: &Value, key: &str, path: &Path) -> Result<Option<String>> {
    match value {
        Value::Null => Ok(None),
        Value::String(s) => Ok(Some(s.clone())),
        Value::Object(o) => match o.get("content") {
            Some(Value::String(s)) => Ok(Some(s.clone())),
            _ => Err(bad(
                path,
                format!("`{key}` is an object without a string `content`"),
            )),
        },
        v => Err(bad(
            path,
            format!("`{key}` must be a token (a string or {{\"content\": ...}}), not {v}"),
        )),
    }
}

/// The special-token attributes every transformers tokenizer has.
const STANDARD: [&str; 7] = [
    "bos_token",
    "eos_token",
    "unk_token",
    "sep_token",
    "pad_token",
    "cls_token",
    "mask_token",
];

/// Who named a special token.
#[derive(Debug, Clone)]
enum Source {
    /// A class's default.
    Class(Class),
    /// A file (tokenizer_config.json or special_tokens_map.json).
    File(PathBuf),
    /// tokenizer.json's padding.
    Padding,
}

/// The named special tokens of a folder, before they are looked up.
#[derive(Debug, Clone, Default)]
pub(crate) struct Named {
    /// `key` → token (`None`: explicitly unset) and who named it.
    keys: BTreeMap<String, (Option<String>, Source)>,
    /// `extra_special_tokens` / `additional_special_tokens`, with who named them.
    extra: Vec<(String, Source)>,
}

impl Named {
    /// Reads the `*_token` keys and the extra special tokens of `map` (a file at `path`).
    fn read(&mut self, map: &Map<String, Value>, path: &Path) -> Result<()> {
        for (key, value) in map {
            if STANDARD.contains(&key.as_str()) {
                let token = token_text(value, key, path)?;
                self.keys
                    .insert(key.clone(), (token, Source::File(path.to_path_buf())));
            } else if key.ends_with("_token")
                && matches!(value, Value::String(_) | Value::Object(_))
            {
                // Model-specific tokens (`image_token`, …): transformers adds them too.
                if let Ok(Some(token)) = token_text(value, key, path) {
                    self.keys
                        .insert(key.clone(), (Some(token), Source::File(path.to_path_buf())));
                }
            } else if key == "extra_special_tokens" || key == "additional_special_tokens" {
                let items: Vec<&Value> = match value {
                    Value::Null => Vec::new(),
                    Value::Array(items) => items.iter().collect(),
                    Value::Object(o) => o.values().collect(),
                    v => {
                        return Err(bad(
                            path,
                            format!("`{key}` must be a list of tokens, not {v}"),
                        ));
                    }
                };
                for item in items {
                    if let Some(token) = token_text(item, key, path)? {
                        self.extra.push((token, Source::File(path.to_path_buf())));
                    }
                }
            }
        }
        Ok(())
    }
}

/// What a folder's files decide before tokenizer.json is parsed: the class and the
/// named special tokens.
#[derive(Debug, Clone)]
pub(crate) struct Plan {
    pub(crate) class: Class,
    named: Named,
    config_path: PathBuf,
    config: Map<String, Value>,
    model_max_length: Option<usize>,
}

/// Reads the folder's tokenizer_config.json (`None` when there is none), its
/// special_tokens_map.json and config.json.
pub(crate) fn read_folder(dir: &Path) -> Result<Option<Folder>> {
    let config_path = dir.join(TOKENIZER_CONFIG_FILE);
    let Some(config) = read_object(&config_path)? else {
        return Ok(None);
    };
    // transformers reads special_tokens_map.json only for a config without
    // `added_tokens_decoder` (the legacy layout).
    let map = if config.contains_key("added_tokens_decoder") {
        None
    } else {
        let path = dir.join(SPECIAL_TOKENS_MAP_FILE);
        read_object(&path)?.map(|m| (path, m))
    };
    let model_path = dir.join("config.json");
    let model = read_object(&model_path)?.unwrap_or_default();
    let model_type = string_key(&model, "model_type", &model_path)?;
    let model_class = string_key(&model, "tokenizer_class", &model_path)?;
    Ok(Some(Folder {
        config_path,
        config,
        map,
        model_path,
        model_type,
        model_class,
    }))
}

impl Folder {
    /// tokenizer_config.json's path and ` (tokenizer_class X)` when it names a class, for
    /// the message of a folder without tokenizer.json.
    pub(crate) fn describe(&self) -> (PathBuf, String) {
        let class = match self.config.get("tokenizer_class") {
            Some(Value::String(c)) => format!(" (`tokenizer_class` {c})"),
            _ => String::new(),
        };
        (self.config_path.clone(), class)
    }

    /// tokenizer_config.json's path.
    pub(crate) fn config_path(&self) -> &Path {
        &self.config_path
    }

    /// tokenizer_config.json's keys.
    pub(crate) fn config(&self) -> &Map<String, Value> {
        &self.config
    }

    /// special_tokens_map.json's path and keys, when transformers reads it (the config
    /// has no `added_tokens_decoder`).
    pub(crate) fn special_tokens_map(&self) -> Option<(&Path, &Map<String, Value>)> {
        self.map.as_ref().map(|(p, m)| (p.as_path(), m))
    }

    /// `model_max_length`, when it sets a real limit (transformers' "no limit" is 1e30,
    /// `VERY_LARGE_INTEGER`).
    pub(crate) fn model_max_length(&self) -> Result<Option<usize>> {
        match self.config.get("model_max_length") {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Number(n)) => Ok(n
                .as_f64()
                .filter(|x| (1.0..1e12).contains(x))
                .map(|x| x as usize)),
            Some(v) => Err(bad(
                &self.config_path,
                format!("`model_max_length` must be a number, not {v}"),
            )),
        }
    }

    /// The class transformers builds and the special tokens it names, for a
    /// tokenizer.json whose text is `json`.
    pub(crate) fn plan(&self, json: &str) -> Result<Plan> {
        let class = resolve_class(self, json.contains("\"ByteLevel\""))?;
        let mut named = Named::default();
        for &(key, token) in class.defaults() {
            named.keys.insert(
                key.into(),
                (token.map(str::to_string), Source::Class(class)),
            );
        }
        named.read(&self.config, &self.config_path)?;
        if let Some((path, map)) = &self.map {
            named.read(map, path)?;
        }
        let model_max_length = self.model_max_length()?;
        Ok(Plan {
            class,
            named,
            config_path: self.config_path.clone(),
            config: self.config.clone(),
            model_max_length,
        })
    }
}

/// An error for a class manabi does not build.
fn unknown_class(path: &Path, key: &str, name: &str) -> TokenizeError {
    bad(
        path,
        format!(
            "`{key}` {name}: manabi does not build this tokenizer class (it builds {BUILT}); \
             convert it with transformers (`AutoTokenizer.from_pretrained(dir)\
             .save_pretrained(dir)`) or, when tokenizer.json alone is the tokenizer, set \
             `tokenizer_class` to PreTrainedTokenizerFast"
        ),
    )
}

/// The class name `AutoTokenizer.from_pretrained` picks, and what named it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Pick {
    /// tokenizer.json as is (`TokenizersBackend`).
    AsIs,
    /// A class, by name (with or without `Fast`).
    Class {
        /// The name.
        name: String,
        /// Who named it.
        by: PickedBy,
    },
}

/// Who named the class [`pick`] picked.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum PickedBy {
    /// `tokenizer_class` of this file (tokenizer_config.json, else config.json).
    Config(PathBuf),
    /// config.json's `model_type`, overriding the class named (`qwen2`, `phi3`).
    Forced,
    /// config.json's `model_type`, no class being named.
    ModelType,
}

/// The class `AutoTokenizer.from_pretrained` picks in transformers 5.25, from the folder's
/// `tokenizer_class` (tokenizer_config.json, else config.json) and config.json's
/// `model_type`:
/// 1. `LlamaTokenizer` over a byte-level tokenizer.json (Llama 3) is loaded as is;
/// 2. when the model type registers another class than the one named, the registered one
///    wins for `qwen2` and `phi3`, the named one otherwise — and a registered
///    `TokenizersBackend` (`mistral`, `phi3`) means tokenizer.json as is;
/// 3. else the named class; with none named, the model type's.
pub(crate) fn pick(f: &Folder, byte_level: bool) -> Result<Pick> {
    let base = |s: &str| s.strip_suffix("Fast").unwrap_or(s).to_string();
    let declared = string_key(&f.config, "tokenizer_class", &f.config_path)?;
    let (hub, hub_file) = match (&declared, &f.model_class) {
        (Some(d), _) => (Some(d.clone()), &f.config_path),
        (None, Some(c)) => (Some(c.clone()), &f.model_path),
        (None, None) => (None, &f.config_path),
    };
    let model_type = f.model_type.as_deref();
    let registered = model_type.and_then(|t| {
        REGISTERED
            .iter()
            .find(|(m, _)| *m == t)
            .map(|&(_, class)| class)
    });
    let forced = model_type.is_some_and(|t| FORCED.contains(&t));
    let class = |name: &str, by: PickedBy| Pick::Class {
        name: name.to_string(),
        by,
    };
    if let Some(h) = &hub {
        if base(h) == "LlamaTokenizer" && !forced && byte_level {
            return Ok(Pick::AsIs);
        }
        if let Some(r) = registered
            && base(r) != base(h)
        {
            if matches!(base(r).as_str(), "TokenizersBackend" | "PythonBackend") {
                return Ok(Pick::AsIs);
            }
            if forced {
                return Ok(class(r, PickedBy::Forced));
            }
        }
        return Ok(class(h, PickedBy::Config(hub_file.clone())));
    }
    Ok(match registered {
        None => Pick::AsIs,
        Some(r) => class(r, PickedBy::ModelType),
    })
}

/// The class of [`pick`] among those manabi rebuilds a tokenizer.json with; an error
/// naming the file and the key for any other.
fn resolve_class(f: &Folder, byte_level: bool) -> Result<Class> {
    let (name, by) = match pick(f, byte_level)? {
        Pick::AsIs => return Ok(Class::AsIs),
        Pick::Class { name, by } => (name, by),
    };
    Class::of(&name).ok_or_else(|| match by {
        PickedBy::Config(file) => unknown_class(&file, "tokenizer_class", &name),
        PickedBy::Forced => unknown_class(&f.model_path, "model_type", &name),
        PickedBy::ModelType => bad(
            &f.model_path,
            format!(
                "`model_type` {}: transformers builds this model's tokenizer as {name}, \
                 which manabi does not build; name `tokenizer_class` \
                 PreTrainedTokenizerFast in {} to use tokenizer.json as is",
                f.model_type.as_deref().unwrap_or_default(),
                f.config_path.display()
            ),
        ),
    })
}

/// A boolean `__init__` argument of tokenizer_config.json: `default` when absent,
/// `null` (when the class accepts None) when null.
fn flag(plan: &Plan, key: &str, default: bool, null: Option<bool>) -> Result<bool> {
    match (plan.config.get(key), null) {
        (None, _) => Ok(default),
        (Some(Value::Bool(b)), _) => Ok(*b),
        (Some(Value::Null), Some(n)) => Ok(n),
        (Some(v), _) => Err(bad(
            &plan.config_path,
            format!(
                "`{key}` must be true or false, not {v} ({} needs it)",
                plan.class.name()
            ),
        )),
    }
}

/// The error of a named special token that is not in the vocabulary.
fn missing(plan: &Plan, key: &str, token: &str, source: &Source) -> TokenizeError {
    let (path, by) = match source {
        Source::Class(c) => (
            plan.config_path.clone(),
            format!("the default `{key}` of {} (`tokenizer_class`)", c.name()),
        ),
        Source::File(p) => (p.clone(), format!("`{key}`")),
        Source::Padding => (
            plan.config_path.clone(),
            "tokenizer.json's pad token".into(),
        ),
    };
    bad(
        &path,
        format!(
            "{by} {token:?} is not in tokenizer.json's vocabulary (transformers would add it \
             as a new token, which the model has no embedding for): name the model's own \
             token, or null"
        ),
    )
}

impl Plan {
    /// The name of `key` (a named special token), when set.
    fn token(&self, key: &str) -> Option<&str> {
        self.named.keys.get(key).and_then(|(t, _)| t.as_deref())
    }

    /// tokenizer.json's JSON as the class rebuilds it: vocabulary, merges, added tokens
    /// and (except GPTNeoXTokenizer and BertTokenizer) post-processor kept; normalizer,
    /// pre-tokenizer, decoder and model options the class's own. `path` names
    /// tokenizer.json in messages.
    pub(crate) fn rebuild(&self, json: &str, path: &Path) -> Result<String> {
        let corrupt = |message: String| TokenizeError::CorruptTokenizer {
            path: path.to_path_buf(),
            message,
        };
        match self.class {
            // Built by crate::bertja, as the class builds it.
            Class::AsIs | Class::BertJapanese => return Ok(json.to_string()),
            // Built from spiece.model only (`Class::of` never gives it for tokenizer.json).
            Class::T5 => {
                return Err(unknown_class(
                    &self.config_path,
                    "tokenizer_class",
                    "T5Tokenizer",
                ));
            }
            _ => {}
        }
        let mut file: Value =
            serde_json::from_str(json).map_err(|e| corrupt(format!("not valid JSON: {e}")))?;
        let model_type = match self.class {
            Class::Bert => "WordPiece",
            _ => "BPE",
        };
        let found = file
            .pointer("/model/type")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        if found != model_type {
            return Err(bad(
                &self.config_path,
                format!(
                    "`tokenizer_class` {} needs a {model_type} tokenizer.json, but {} holds \
                     {}; set `tokenizer_class` to PreTrainedTokenizerFast to use it as is",
                    self.class.name(),
                    path.display(),
                    if found.is_empty() {
                        "an untyped model"
                    } else {
                        found.as_str()
                    }
                ),
            ));
        }
        let byte_level = |prefix: bool, trim: bool, regex: bool| {
            json!({"type": "ByteLevel", "add_prefix_space": prefix, "trim_offsets": trim,
                   "use_regex": regex})
        };
        let byte_decoder = byte_level(true, true, true);
        let replace = |from: &str, to: &str| json!({"type": "Replace", "pattern": {"String": from}, "content": to});
        let bpe = |unk: Value, prefix: Value, fallback: bool| {
            json!({"dropout": null, "unk_token": unk, "continuing_subword_prefix": prefix.clone(),
                   "end_of_word_suffix": prefix, "fuse_unk": fallback,
                   "byte_fallback": fallback, "ignore_merges": false})
        };
        let (normalizer, pre, decoder, model) = match self.class {
            Class::AsIs | Class::T5 | Class::BertJapanese => return Ok(json.to_string()),
            Class::Gpt2 => (
                Value::Null,
                byte_level(flag(self, "add_prefix_space", false, None)?, true, true),
                byte_decoder,
                bpe(Value::Null, json!(""), false),
            ),
            Class::GptNeoX => (
                json!({"type": "NFC"}),
                byte_level(
                    flag(self, "add_prefix_space", false, None)?,
                    flag(self, "trim_offsets", true, None)?,
                    true,
                ),
                byte_decoder,
                bpe(Value::Null, json!(""), false),
            ),
            Class::Qwen2 => (
                json!({"type": "NFC"}),
                json!({"type": "Sequence", "pretokenizers": [
                    {"type": "Split", "pattern": {"Regex": QWEN2_SPLIT},
                     "behavior": "Isolated", "invert": false},
                    byte_level(flag(self, "add_prefix_space", false, Some(false))?, true, false)
                ]}),
                byte_decoder,
                bpe(Value::Null, json!(""), false),
            ),
            Class::Llama => {
                let prefix = flag(self, "add_prefix_space", true, Some(true))?;
                let legacy = flag(self, "legacy", false, Some(false))?;
                let scheme = match (prefix, legacy) {
                    (false, _) => "never",
                    (true, true) => "always",
                    (true, false) => "first",
                };
                let mut steps = vec![
                    replace("▁", " "),
                    json!({"type": "ByteFallback"}),
                    json!({"type": "Fuse"}),
                ];
                if prefix {
                    steps.push(json!({"type": "Strip", "content": " ", "start": 1, "stop": 0}));
                }
                (
                    Value::Null,
                    json!({"type": "Metaspace", "replacement": "▁", "prepend_scheme": scheme,
                           "split": false}),
                    json!({"type": "Sequence", "decoders": steps}),
                    bpe(Value::Null, Value::Null, true),
                )
            }
            Class::Gemma => (
                replace(" ", "▁"),
                json!({"type": "Split", "pattern": {"String": " "},
                       "behavior": "MergedWithPrevious", "invert": false}),
                json!({"type": "Sequence", "decoders": [
                    replace("▁", " "), {"type": "ByteFallback"}, {"type": "Fuse"}]}),
                bpe(
                    json!(self.token("unk_token").unwrap_or("None")),
                    Value::Null,
                    true,
                ),
            ),
            Class::Bert => {
                let strip = match self.config.get("strip_accents") {
                    None | Some(Value::Null) => Value::Null,
                    Some(Value::Bool(b)) => Value::Bool(*b),
                    Some(v) => {
                        return Err(bad(
                            &self.config_path,
                            format!("`strip_accents` must be true, false or null, not {v}"),
                        ));
                    }
                };
                (
                    json!({"type": "BertNormalizer", "clean_text": true,
                           "handle_chinese_chars": flag(self, "tokenize_chinese_chars", true, None)?,
                           "strip_accents": strip,
                           "lowercase": flag(self, "do_lower_case", true, None)?}),
                    json!({"type": "BertPreTokenizer"}),
                    json!({"type": "WordPiece", "prefix": "##", "cleanup": true}),
                    json!({"unk_token": self.token("unk_token").unwrap_or("None"),
                           "continuing_subword_prefix": "##",
                           "max_input_chars_per_word": 100}),
                )
            }
        };
        let post = match self.class {
            // update_post_processor() with add_bos/add_eos dropped: nothing added.
            Class::GptNeoX => Some(Value::Null),
            Class::Bert => Some(self.bert_post_processor(&file)?),
            _ => None,
        };
        let obj = file
            .as_object_mut()
            .ok_or_else(|| corrupt("not a JSON object".into()))?;
        obj.insert("normalizer".into(), normalizer);
        obj.insert("pre_tokenizer".into(), pre);
        obj.insert("decoder".into(), decoder);
        if let Some(Value::Object(m)) = obj.get_mut("model") {
            let Value::Object(patch) = model else {
                unreachable!("model options are an object")
            };
            m.extend(patch);
            m.insert("type".into(), json!(model_type));
        }
        if let Some(post) = post {
            obj.insert("post_processor".into(), post);
        }
        serde_json::to_string(&file).map_err(|e| corrupt(e.to_string()))
    }

    /// BertTokenizer's post-processor, `[CLS] $A [SEP]` (pair `… $B [SEP]`).
    fn bert_post_processor(&self, file: &Value) -> Result<Value> {
        let mut ids = Vec::new();
        for key in ["cls_token", "sep_token"] {
            let (token, source) = match self.named.keys.get(key) {
                Some((Some(t), s)) => (t.clone(), s.clone()),
                _ => {
                    return Err(bad(
                        &self.config_path,
                        format!("BertTokenizer needs a `{key}`, and this one is null"),
                    ));
                }
            };
            let id =
                file_token_id(file, &token).ok_or_else(|| missing(self, key, &token, &source))?;
            ids.push((token, id));
        }
        let (cls, sep) = (&ids[0], &ids[1]);
        let special =
            |t: &str, type_id: u32| json!({"SpecialToken": {"id": t, "type_id": type_id}});
        let seq = |s: &str, type_id: u32| json!({"Sequence": {"id": s, "type_id": type_id}});
        let mut tokens = Map::new();
        for (t, id) in [cls, sep] {
            tokens.insert(t.clone(), json!({"id": t, "ids": [id], "tokens": [t]}));
        }
        Ok(json!({
            "type": "TemplateProcessing",
            "single": [special(&cls.0, 0), seq("A", 0), special(&sep.0, 0)],
            "pair": [special(&cls.0, 0), seq("A", 0), special(&sep.0, 0), seq("B", 1),
                     special(&sep.0, 1)],
            "special_tokens": tokens
        }))
    }

    /// The settings of the loaded tokenizer: every named special token looked up with
    /// `id_of` (one that is missing is an error naming who named it), the added tokens
    /// of `added_tokens_decoder` checked against tokenizer.json's, and tokenizer.json's
    /// pad token (`padding`) when nothing names one.
    pub(crate) fn finish(
        mut self,
        id_of: impl Fn(&str) -> Option<u32>,
        file_pad: Option<String>,
    ) -> Result<Settings> {
        // transformers' `kwargs.setdefault("pad_token", padding["pad_token"])`.
        if self.class == Class::AsIs
            && !self.named.keys.contains_key("pad_token")
            && let Some(pad) = file_pad
        {
            self.named
                .keys
                .insert("pad_token".into(), (Some(pad), Source::Padding));
        }
        let mut tokens = BTreeMap::new();
        for (key, (token, source)) in &self.named.keys {
            let Some(token) = token else { continue };
            let id = id_of(token).ok_or_else(|| missing(&self, key, token, source))?;
            tokens.insert(key.clone(), (token.clone(), id));
        }
        for (token, source) in &self.named.extra {
            if id_of(token).is_none() {
                return Err(missing(&self, "extra_special_tokens", token, source));
            }
        }
        if let Some(decoder) = self.config.get("added_tokens_decoder") {
            let Value::Object(entries) = decoder else {
                return Err(bad(
                    &self.config_path,
                    format!(
                        "`added_tokens_decoder` must be an object, not {}",
                        kind(decoder)
                    ),
                ));
            };
            for (id, entry) in entries {
                let key = format!("added_tokens_decoder.{id}");
                let token = token_text(entry, &key, &self.config_path)?.unwrap_or_default();
                let found = id_of(&token);
                if id.parse::<u32>().ok() != found || found.is_none() {
                    return Err(bad(
                        &self.config_path,
                        format!(
                            "`{key}` is {token:?}, which tokenizer.json has {}: not the \
                             tokenizer.json of this configuration",
                            found.map_or("nowhere".into(), |f| format!("at id {f}"))
                        ),
                    ));
                }
            }
        }
        Ok(Settings {
            class: self.class,
            config: Some(self.config_path),
            tokens,
            model_max_length: self.model_max_length,
        })
    }
}

/// The id tokenizer.json's JSON gives `token`: an added token's, else the model
/// vocabulary's (an object for BPE / WordPiece / WordLevel, a list for Unigram).
fn file_token_id(file: &Value, token: &str) -> Option<u32> {
    let added = file.get("added_tokens").and_then(Value::as_array);
    let from_added = added.and_then(|list| {
        list.iter()
            .find(|t| t.get("content").and_then(Value::as_str) == Some(token))
            .and_then(|t| t.get("id").and_then(Value::as_u64))
    });
    let vocab = file.pointer("/model/vocab");
    let from_vocab = || match vocab {
        Some(Value::Object(m)) => m.get(token).and_then(Value::as_u64),
        Some(Value::Array(list)) => list
            .iter()
            .position(|e| e.get(0).and_then(Value::as_str) == Some(token))
            .map(|i| i as u64),
        _ => None,
    };
    from_added
        .or_else(from_vocab)
        .and_then(|id| u32::try_from(id).ok())
}

/// What the files beside a tokenizer.json decided, kept with the loaded tokenizer.
#[derive(Debug, Clone, Default)]
pub struct Settings {
    /// The class `transformers` builds ([`Class::AsIs`] without tokenizer_config.json).
    pub class: Class,
    /// The tokenizer_config.json read, if any.
    pub config: Option<PathBuf>,
    /// Named special tokens (`bos_token`, `eos_token`, `pad_token`, `unk_token`,
    /// `cls_token`, … and model-specific ones) with their ids.
    pub tokens: BTreeMap<String, (String, u32)>,
    /// `model_max_length`, when set (transformers' "no limit" reads as `None`).
    pub model_max_length: Option<usize>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn folder(config: Value, model_type: Option<&str>) -> Folder {
        let Value::Object(config) = config else {
            panic!("an object")
        };
        Folder {
            config_path: PathBuf::from("m/tokenizer_config.json"),
            config,
            map: None,
            model_path: PathBuf::from("m/config.json"),
            model_type: model_type.map(str::to_string),
            model_class: None,
        }
    }

    #[test]
    fn the_class_follows_transformers_resolution() {
        let class = |cfg: Value, mt: Option<&str>, byte_level: bool| {
            resolve_class(&folder(cfg, mt), byte_level).map_err(|e| e.to_string())
        };
        let named = |c: &str| json!({ "tokenizer_class": c });
        assert_eq!(class(json!({}), None, false), Ok(Class::AsIs));
        assert_eq!(
            class(named("PreTrainedTokenizerFast"), None, false),
            Ok(Class::AsIs)
        );
        assert_eq!(
            class(named("LlamaTokenizerFast"), None, false),
            Ok(Class::Llama)
        );
        // Llama 3: a byte-level tokenizer.json declared as LlamaTokenizerFast.
        assert_eq!(
            class(named("LlamaTokenizerFast"), None, true),
            Ok(Class::AsIs)
        );
        // Mistral and Phi-3 register TokenizersBackend: tokenizer.json as is.
        assert_eq!(
            class(named("LlamaTokenizer"), Some("mistral"), false),
            Ok(Class::AsIs)
        );
        assert_eq!(
            class(named("LlamaTokenizer"), Some("phi3"), false),
            Ok(Class::AsIs)
        );
        // qwen2 forces its own class, even over PreTrainedTokenizerFast.
        assert_eq!(
            class(named("PreTrainedTokenizerFast"), Some("qwen2"), true),
            Ok(Class::Qwen2)
        );
        assert_eq!(
            class(named("PreTrainedTokenizerFast"), Some("gpt2"), true),
            Ok(Class::AsIs)
        );
        // No class named: the model type's.
        assert_eq!(class(json!({}), Some("bert"), false), Ok(Class::Bert));
        assert_eq!(class(json!({}), Some("llama"), false), Ok(Class::AsIs));
        let e = class(json!({}), Some("t5"), false).unwrap_err();
        assert!(e.starts_with("m/config.json: `model_type` t5:"), "{e}");
        assert_eq!(
            class(named("BertJapaneseTokenizer"), None, false),
            Ok(Class::BertJapanese)
        );
        let e = class(named("CamembertTokenizer"), None, false).unwrap_err();
        assert!(
            e.starts_with("m/tokenizer_config.json: `tokenizer_class` CamembertTokenizer:"),
            "{e}"
        );
        let e = class(json!({"tokenizer_class": 3}), None, false).unwrap_err();
        assert!(e.contains("`tokenizer_class` must be a string"), "{e}");
    }

    #[test]
    fn special_tokens_take_class_defaults_then_the_config() {
        let plan = folder(
            json!({"tokenizer_class": "GPT2Tokenizer", "eos_token": {"content": "</s>"},
                                 "pad_token": null, "add_bos_token": true}),
            None,
        )
        .plan("{}")
        .unwrap();
        assert_eq!(plan.token("bos_token"), Some("<|endoftext|>"));
        assert_eq!(plan.token("eos_token"), Some("</s>"));
        assert_eq!(plan.token("pad_token"), None);
        let vocab = |t: &str| (t == "</s>").then_some(7);
        let e = plan.clone().finish(vocab, None).unwrap_err().to_string();
        assert!(
            e.starts_with("m/tokenizer_config.json: the default `bos_token` of GPT2Tokenizer"),
            "{e}"
        );
        let all = |t: &str| Some(t.len() as u32);
        let s = plan.finish(all, None).unwrap();
        assert_eq!(s.tokens["eos_token"], ("</s>".to_string(), 4));
    }
}
