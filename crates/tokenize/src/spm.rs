//! A SentencePiece model without a tokenizer.json (`spiece.model`, `tokenizer.model`),
//! converted to a `tokenizers` pipeline as transformers 5.25 converts it when
//! `AutoTokenizer.from_pretrained(folder)` finds no tokenizer.json, so that the ids are
//! `AutoTokenizer.from_pretrained(folder)(text)["input_ids"]`.
//!
//! transformers' path (`tokenization_utils_tokenizers.py` `_convert_from_sentencepiece`,
//! `convert_slow_tokenizer.py`), followed step by step below and pinned by the folders
//! `scripts/spm_fixtures.py` writes:
//! 1. `SentencePieceExtractor.extract`: the pieces, and as "additional special tokens"
//!    the control pieces (and, for a BPE class, the user-defined ones).
//! 2. The class builds the pipeline from the pieces, ignoring most of the model's own
//!    normaliser spec: `T5Tokenizer` a Unigram model with `<unk>` fixed at id 2 (whatever
//!    the model's `unk_id`), no byte fallback, the `extra_ids` sentinels appended to the
//!    vocabulary, the precompiled character map, whitespace split and `▁` before every
//!    word; `LlamaTokenizer` a byte-fallback BPE whose merges come from the vocabulary
//!    order (`generate_merges`), Metaspace by `add_prefix_space` / `legacy`;
//!    `TokenizersBackend` (no model class) the model's own spec
//!    (`SpmConverter.build_tokenizer_from_spm_proto`: merges ranked by piece score,
//!    extra whitespace, dummy prefix, user-defined pieces kept whole).
//! 3. `TokenizersBackend.__init__` adds, in one `add_tokens` call, the entries of
//!    `added_tokens_decoder`, the named special tokens and the extra special tokens.
//! 4. The post-processor: T5 appends the EOS; the others add BOS / EOS as
//!    `add_bos_token` / `add_eos_token` say (here they count: there is no tokenizer.json).
//!
//! A special token transformers would add as a new token (it is not among the pieces)
//! is refused, as for a tokenizer.json: the model has no embedding for it.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use base64::Engine;
use serde_json::{Map, Value, json};
use tokenizers::{AddedToken, Model};

use crate::error::{Result, TokenizeError};
use crate::hf_config::{Class, Folder, Pick, Settings, pick};
use crate::sentencepiece::{ModelType, PieceKind, SpmModel};
use crate::strings::guarded;

/// The SentencePiece file `class` reads (its `vocab_files_names["vocab_file"]`).
pub(crate) fn model_file(class: Class) -> &'static str {
    match class {
        Class::T5 => "spiece.model",
        _ => "tokenizer.model",
    }
}

/// The class transformers converts the SentencePiece model of `folder` with, when
/// manabi converts it too: `T5Tokenizer`, `LlamaTokenizer`, or `TokenizersBackend`
/// ([`Class::AsIs`]). `None` for any other class.
pub(crate) fn class_of(folder: &Folder) -> Result<Option<Class>> {
    Ok(match pick(folder, false)? {
        Pick::AsIs => Some(Class::AsIs),
        Pick::Class { name, .. } => match name.strip_suffix("Fast").unwrap_or(&name) {
            "T5Tokenizer" => Some(Class::T5),
            "LlamaTokenizer" => Some(Class::Llama),
            "PreTrainedTokenizer" | "TokenizersBackend" => Some(Class::AsIs),
            _ => None,
        },
    })
}

/// A converted model: the tokenizer.json text and what the configuration decided.
#[derive(Debug)]
pub(crate) struct Converted {
    /// The whole pipeline, as a tokenizer.json.
    pub(crate) json: String,
    /// Class, named special tokens, `model_max_length`.
    pub(crate) settings: Settings,
}

/// A special token as transformers holds it before adding it: a string, or an
/// `AddedToken` with its flags. Equality is Python's (`str` never equals `AddedToken`).
#[derive(Debug, Clone, PartialEq)]
enum Item {
    Text(String),
    Token(AddedToken),
}

impl Item {
    fn content(&self) -> &str {
        match self {
            Self::Text(s) => s,
            Self::Token(t) => &t.content,
        }
    }
}

/// `AddedToken(content, ...)` with Python's defaults (`normalized = not special`).
fn token(content: &str, special: bool, normalized: Option<bool>) -> AddedToken {
    AddedToken {
        content: content.to_string(),
        single_word: false,
        lstrip: false,
        rstrip: false,
        normalized: normalized.unwrap_or(!special),
        special,
    }
}

/// The configuration as transformers' `_from_pretrained` hands it to the class.
struct Config {
    /// tokenizer_config.json (for messages; it need not exist).
    path: PathBuf,
    /// Its keys, with special_tokens_map.json merged in (legacy layout), and
    /// `additional_special_tokens` renamed `extra_special_tokens` as transformers 5 does.
    kw: Map<String, Value>,
}

impl Config {
    fn new(folder: Option<&Folder>, model_path: &Path) -> Self {
        let Some(folder) = folder else {
            let path = model_path.with_file_name(crate::chat::TOKENIZER_CONFIG_FILE);
            return Self {
                path,
                kw: Map::new(),
            };
        };
        let mut kw = folder.config().clone();
        let truthy = |v: Option<&Value>| match v {
            None | Some(Value::Null) | Some(Value::Bool(false)) => false,
            Some(Value::Array(a)) => !a.is_empty(),
            Some(Value::Object(o)) => !o.is_empty(),
            Some(Value::String(s)) => !s.is_empty(),
            Some(_) => true,
        };
        if kw.contains_key("additional_special_tokens") && !truthy(kw.get("extra_special_tokens")) {
            let v = kw.remove("additional_special_tokens").unwrap_or_default();
            kw.insert("extra_special_tokens".into(), v);
        }
        if let Some((_, map)) = folder.special_tokens_map() {
            for (key, value) in map {
                let value = match (key.as_str(), value) {
                    ("extra_special_tokens", Value::Array(items)) => {
                        let mut merged = match kw.get(key) {
                            Some(Value::Array(a)) => a.clone(),
                            _ => Vec::new(),
                        };
                        for item in items {
                            if !merged.contains(item) {
                                merged.push(item.clone());
                            }
                        }
                        Value::Array(merged)
                    }
                    // `AddedToken(**value, special=True)`
                    (_, Value::Object(o)) if key != "extra_special_tokens" => {
                        let mut o = o.clone();
                        o.insert("special".into(), Value::Bool(true));
                        Value::Object(o)
                    }
                    _ => value.clone(),
                };
                kw.insert(key.clone(), value);
            }
        }
        Self {
            path: folder.config_path().to_path_buf(),
            kw,
        }
    }

    fn bad(&self, message: String) -> TokenizeError {
        TokenizeError::TokenizerConfig {
            path: self.path.clone(),
            message,
        }
    }

    /// A boolean `__init__` argument: `default` when absent, `null` as `null_is`.
    fn flag(&self, key: &str, default: bool, null_is: bool) -> Result<bool> {
        match self.kw.get(key) {
            None => Ok(default),
            Some(Value::Null) => Ok(null_is),
            Some(Value::Bool(b)) => Ok(*b),
            Some(v) => Err(self.bad(format!("`{key}` must be true, false or null, not {v}"))),
        }
    }

    /// A token value (a string, an `AddedToken` object, or null).
    fn item(&self, value: &Value, key: &str) -> Result<Option<Item>> {
        match value {
            Value::Null => Ok(None),
            Value::String(s) => Ok(Some(Item::Text(s.clone()))),
            Value::Object(o) => {
                let content = match o.get("content") {
                    Some(Value::String(s)) => s,
                    _ => {
                        return Err(
                            self.bad(format!("`{key}` is an object without a string `content`"))
                        );
                    }
                };
                let flag = |name: &str| -> Result<Option<bool>> {
                    match o.get(name) {
                        None | Some(Value::Null) => Ok(None),
                        Some(Value::Bool(b)) => Ok(Some(*b)),
                        Some(v) => {
                            Err(self.bad(format!("`{key}.{name}` must be true or false, not {v}")))
                        }
                    }
                };
                let special = flag("special")?.unwrap_or(false);
                let mut t = token(content, special, flag("normalized")?);
                t.single_word = flag("single_word")?.unwrap_or(false);
                t.lstrip = flag("lstrip")?.unwrap_or(false);
                t.rstrip = flag("rstrip")?.unwrap_or(false);
                Ok(Some(Item::Token(t)))
            }
            v => Err(self.bad(format!(
                "`{key}` must be a token (a string or {{\"content\": ...}}), not {v}"
            ))),
        }
    }

    /// `added_tokens_decoder` entries, by id.
    fn decoder_entries(&self) -> Result<Vec<(u32, AddedToken)>> {
        let entries = match self.kw.get("added_tokens_decoder") {
            None | Some(Value::Null) => return Ok(Vec::new()),
            Some(Value::Object(o)) => o,
            Some(v) => {
                return Err(self.bad(format!("`added_tokens_decoder` must be an object, not {v}")));
            }
        };
        let mut out = Vec::with_capacity(entries.len());
        for (id, entry) in entries {
            let key = format!("added_tokens_decoder.{id}");
            let id: u32 = id
                .trim()
                .parse()
                .map_err(|_| self.bad(format!("`{key}`: the key must be a token id")))?;
            match self.item(entry, &key)? {
                Some(Item::Token(t)) => out.push((id, t)),
                _ => return Err(self.bad(format!("`{key}` must be an AddedToken object"))),
            }
        }
        out.sort_by_key(|(id, _)| *id);
        Ok(out)
    }

    /// The named special tokens in `_special_tokens_map` order (the standard keys, then
    /// model-specific `*_token` keys): the class's `defaults`, then the configuration.
    fn named(&self, defaults: &[(&str, Option<String>)]) -> Result<Vec<(String, Option<Item>)>> {
        const STANDARD: [&str; 7] = [
            "bos_token",
            "eos_token",
            "unk_token",
            "sep_token",
            "pad_token",
            "cls_token",
            "mask_token",
        ];
        let mut named = Vec::new();
        for key in STANDARD {
            let value = match self.kw.get(key) {
                Some(v) => self.item(v, key)?,
                None => defaults
                    .iter()
                    .find(|(k, _)| *k == key)
                    .and_then(|(_, t)| t.clone().map(Item::Text)),
            };
            named.push((key.to_string(), value));
        }
        for (key, value) in &self.kw {
            if key.ends_with("_token")
                && !STANDARD.contains(&key.as_str())
                && matches!(value, Value::String(_) | Value::Object(_))
                // Model-specific tokens (`image_token`, …); one that is not a token is
                // left out, as transformers leaves it out.
                && let Ok(item) = self.item(value, key)
            {
                named.push((key.clone(), item));
            }
        }
        if let Some(Value::Object(tokens)) = self.kw.get("extra_special_tokens") {
            for (key, value) in tokens {
                named.push((key.clone(), self.item(value, key)?));
            }
        }
        Ok(named)
    }

    /// `extra_special_tokens` of the configuration; `None` when it has none (the class's
    /// own list then applies).
    fn extras(&self) -> Result<Option<Vec<Item>>> {
        match self.kw.get("extra_special_tokens") {
            None => Ok(None),
            Some(Value::Null) | Some(Value::Object(_)) => Ok(Some(Vec::new())),
            Some(Value::Array(items)) => {
                let mut out = Vec::new();
                for item in items {
                    out.extend(self.item(item, "extra_special_tokens")?);
                }
                Ok(Some(out))
            }
            Some(v) => Err(self.bad(format!(
                "`extra_special_tokens` must be a list of tokens, not {v}"
            ))),
        }
    }
}

/// Converts the SentencePiece model at `model_path` as transformers builds `class` from
/// it, with the folder's configuration files (none: `TokenizersBackend` defaults).
pub(crate) fn convert(
    model_path: &Path,
    folder: Option<&Folder>,
    class: Class,
) -> Result<Converted> {
    let model = SpmModel::read(model_path)?;
    let cfg = Config::new(folder, model_path);
    let file = model_path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let unusable = |message: String| TokenizeError::SentencePiece {
        path: model_path.to_path_buf(),
        message: format!(
            "the tokenizer converted from this SentencePiece model is not usable: {message}"
        ),
    };

    // 1. `extract`: control pieces (and user-defined ones for a BPE class) become special
    //    tokens, not normalised.
    let bpe_class = match class {
        Class::T5 => false,
        Class::Llama => true,
        _ => model.model_type == ModelType::Bpe,
    };
    let from_model: Vec<Item> = model
        .pieces
        .iter()
        .filter(|p| p.kind == PieceKind::Control || (bpe_class && p.kind == PieceKind::UserDefined))
        .map(|p| Item::Token(token(&p.piece, p.kind == PieceKind::Control, Some(false))))
        .collect();

    // 2. The class's pipeline.
    let mut decoder_entries = cfg.decoder_entries()?;
    let mut defaults: Vec<(&str, Option<String>)> = class
        .defaults()
        .iter()
        .map(|&(k, t)| (k, t.map(str::to_string)))
        .collect();
    let (built, class_extras) = match class {
        Class::T5 => t5(&model, &cfg, from_model)?,
        Class::Llama => (llama(&model, &cfg)?, from_model),
        _ => {
            let user_defined: HashSet<&str> = model
                .pieces
                .iter()
                .filter(|p| p.kind == PieceKind::UserDefined)
                .map(|p| p.piece.as_str())
                .collect();
            let extras = from_model
                .into_iter()
                .filter(|t| !user_defined.contains(t.content()))
                .collect();
            // Added tokens match the raw text, so each chunk between them gets its own
            // dummy prefix.
            if model.add_dummy_prefix {
                for (_, t) in &mut decoder_entries {
                    t.normalized = false;
                }
            }
            for (key, id, piece) in [
                ("bos_token", model.bos_id, &model.bos_piece),
                ("eos_token", model.eos_id, &model.eos_piece),
                ("unk_token", model.unk_id, &model.unk_piece),
            ] {
                if id >= 0 {
                    defaults.push((key, Some(piece.clone())));
                }
            }
            (backend(&model, &cfg, &decoder_entries)?, extras)
        }
    };
    let mut tok = guarded(|| built.to_string().parse::<tokenizers::Tokenizer>())
        .map_err(&unusable)?
        .map_err(|e| unusable(e.to_string()))?;

    // 3. The added tokens, in TokenizersBackend.__init__'s one `add_tokens` call.
    let named = cfg.named(&defaults)?;
    let extras = cfg.extras()?.unwrap_or(class_extras);
    let mut to_add: Vec<(Item, String)> = decoder_entries
        .iter()
        .map(|(id, t)| (Item::Token(t.clone()), format!("added_tokens_decoder.{id}")))
        .collect();
    let encoder: HashSet<String> = decoder_entries
        .iter()
        .map(|(_, t)| t.content.clone())
        .collect();
    let candidates = named
        .iter()
        .filter_map(|(key, item)| item.clone().map(|i| (i, key.clone())))
        .chain(
            extras
                .into_iter()
                .map(|i| (i, "extra_special_tokens".to_string())),
        );
    for (item, key) in candidates {
        if !encoder.contains(item.content()) && !to_add.iter().any(|(i, _)| *i == item) {
            to_add.push((item, key));
        }
    }
    let named_contents: HashSet<&str> = named
        .iter()
        .filter_map(|(_, i)| i.as_ref().map(Item::content))
        .collect();
    let mut tokens = Vec::with_capacity(to_add.len());
    for (item, key) in &to_add {
        let t = match item {
            Item::Text(s) => token(s, true, None),
            Item::Token(t) => {
                let mut t = t.clone();
                t.special |= named_contents.contains(t.content.as_str());
                t
            }
        };
        if tok.get_model().token_to_id(&t.content).is_none() {
            return Err(cfg.bad(format!(
                "`{key}` {:?} is not among the pieces of {file} (transformers would add it as \
                 a new token, which the model has no embedding for): name one of its pieces, \
                 or null",
                t.content
            )));
        }
        tokens.push(t);
    }
    guarded(|| tok.add_tokens(&tokens)).map_err(&unusable)?;
    for (id, t) in &decoder_entries {
        let found = tok.token_to_id(&t.content);
        if found != Some(*id) {
            return Err(cfg.bad(format!(
                "`added_tokens_decoder.{id}` is {:?}, which {file} has {}: not the model of this \
                 configuration",
                t.content,
                found.map_or("nowhere".into(), |f| format!("at id {f}"))
            )));
        }
    }

    // 4. The post-processor.
    let content = |key: &str| {
        named
            .iter()
            .find(|(k, _)| k == key)
            .and_then(|(_, i)| i.as_ref().map(|i| i.content().to_string()))
    };
    let id_of = |t: &str| tok.token_to_id(t).unwrap_or_default();
    let (single, pair, specials) = if class == Class::T5 {
        let eos = content("eos_token").ok_or_else(|| {
            cfg.bad("T5Tokenizer needs an `eos_token`: it ends every sequence with one".into())
        })?;
        let specials = vec![("</s>".to_string(), id_of(&eos))];
        (
            "$A </s>".to_string(),
            "$A </s> $B </s>".to_string(),
            specials,
        )
    } else {
        // `update_post_processor`: "<s>:0 $A:0 </s>:0", pair "… <s>:1 $B:1 </s>:1".
        let add_bos = cfg.flag("add_bos_token", false, false)?;
        let add_eos = cfg.flag("add_eos_token", false, false)?;
        let bos = content("bos_token").filter(|_| add_bos);
        let eos = content("eos_token").filter(|_| add_eos);
        let template = |seq: &str, type_id: u8| {
            let tag = |t: &Option<String>| t.as_ref().map(|t| format!("{t}:{type_id}"));
            [tag(&bos), Some(format!("{seq}:{type_id}")), tag(&eos)]
                .into_iter()
                .flatten()
                .collect::<Vec<_>>()
                .join(" ")
        };
        let single = template("$A", 0);
        let pair = format!("{single} {}", template("$B", 1));
        let specials: Vec<(String, u32)> = bos
            .iter()
            .chain(eos.iter())
            .map(|t| (t.clone(), id_of(t)))
            .collect();
        (single, pair, specials)
    };
    let post = tokenizers::processors::template::TemplateProcessing::builder()
        .try_single(single.as_str())
        .and_then(|b| b.try_pair(pair.as_str()))
        .map_err(|e| unusable(format!("post-processor: {e}")))?
        .special_tokens(specials)
        .build()
        .map_err(|e| unusable(format!("post-processor: {e}")))?;
    tok.with_post_processor(Some(post));
    let json = tok.to_string(false).map_err(|e| unusable(e.to_string()))?;

    let mut tokens = std::collections::BTreeMap::new();
    for (key, item) in &named {
        if let Some(item) = item {
            let id = tok.token_to_id(item.content()).unwrap_or_default();
            tokens.insert(key.clone(), (item.content().to_string(), id));
        }
    }
    Ok(Converted {
        json,
        settings: Settings {
            class,
            config: folder.map(|f| f.config_path().to_path_buf()),
            tokens,
            model_max_length: match folder {
                Some(f) => f.model_max_length()?,
                None => None,
            },
        },
    })
}

/// A tokenizer.json without added tokens and post-processor (step 3 and 4 add them).
fn pipeline(normalizer: Value, pre_tokenizer: Value, decoder: Value, model: Value) -> Value {
    json!({"version": "1.0", "truncation": null, "padding": null, "added_tokens": [],
           "normalizer": normalizer, "pre_tokenizer": pre_tokenizer, "post_processor": null,
           "decoder": decoder, "model": model})
}

fn metaspace(prepend_scheme: &str, split: bool) -> Value {
    json!({"type": "Metaspace", "replacement": "▁", "prepend_scheme": prepend_scheme,
           "split": split})
}

fn replace(pattern: Value, content: &str) -> Value {
    json!({"type": "Replace", "pattern": pattern, "content": content})
}

fn precompiled(charsmap: &[u8]) -> Value {
    json!({"type": "Precompiled",
           "precompiled_charsmap": base64::engine::general_purpose::STANDARD.encode(charsmap)})
}

/// `T5Tokenizer.__init__` after `T5Converter.convert_from_spm`: Unigram over the pieces
/// and the `extra_ids` sentinels (`<extra_id_N>`, highest first) with `<unk>` at id 2,
/// the precompiled map, whitespace split and `▁` before each word. Also returns the
/// class's extra special tokens (the control pieces, then the sentinels).
fn t5(model: &SpmModel, cfg: &Config, mut extras: Vec<Item>) -> Result<(Value, Vec<Item>)> {
    let extra_ids = match cfg.kw.get("extra_ids") {
        None => 100,
        Some(Value::Number(n)) => match n.as_u64() {
            Some(n) if n <= 10_000 => n as usize,
            _ => return Err(cfg.bad(format!("`extra_ids` must be a count up to 10000, not {n}"))),
        },
        Some(v) => return Err(cfg.bad(format!("`extra_ids` must be a number, not {v}"))),
    };
    let sentinels = extras
        .iter()
        .filter(|t| t.content().contains("<extra_id_"))
        .count();
    if sentinels == 0 {
        extras.extend((0..extra_ids).map(|i| Item::Text(format!("<extra_id_{i}>"))));
    } else if extra_ids > 0 && extra_ids != sentinels {
        return Err(cfg.bad(format!(
            "`extra_ids` is {extra_ids}, but the model has {sentinels} `<extra_id_N>` control \
             pieces (transformers refuses this T5Tokenizer)"
        )));
    }
    let mut vocab: Vec<Value> = model
        .pieces
        .iter()
        .map(|p| json!([p.piece, f64::from(p.score)]))
        .collect();
    vocab.extend(
        (0..extra_ids)
            .rev()
            .map(|i| json!([format!("<extra_id_{i}>"), 0.0])),
    );
    let normalizer = if model.precompiled_charsmap.is_empty() {
        Value::Null
    } else {
        precompiled(&model.precompiled_charsmap)
    };
    let pre = json!({"type": "Sequence", "pretokenizers": [
        {"type": "WhitespaceSplit"}, metaspace("always", true)]});
    let unigram = json!({"type": "Unigram", "unk_id": 2, "vocab": vocab, "byte_fallback": false});
    Ok((
        pipeline(normalizer, pre, metaspace("always", true), unigram),
        extras,
    ))
}

/// `LlamaTokenizer.__init__`: byte-fallback BPE over the pieces with merges generated
/// from the vocabulary order, no normaliser, Metaspace by `add_prefix_space` / `legacy`.
fn llama(model: &SpmModel, cfg: &Config) -> Result<Value> {
    let prefix = cfg.flag("add_prefix_space", true, true)?;
    let legacy = cfg.flag("legacy", false, false)?;
    let scheme = match (prefix, legacy) {
        (false, _) => "never",
        (true, true) => "always",
        (true, false) => "first",
    };
    let pieces: Vec<&str> = model.pieces.iter().map(|p| p.piece.as_str()).collect();
    let mut decoders = vec![
        replace(json!({"String": "▁"}), " "),
        json!({"type": "ByteFallback"}),
        json!({"type": "Fuse"}),
    ];
    if prefix {
        decoders.push(json!({"type": "Strip", "content": " ", "start": 1, "stop": 0}));
    }
    let bpe = json!({"type": "BPE", "dropout": null, "unk_token": null,
        "continuing_subword_prefix": null, "end_of_word_suffix": null, "fuse_unk": true,
        "byte_fallback": true, "ignore_merges": false, "vocab": vocab_object(&pieces),
        "merges": merges_in_vocab_order(&pieces)});
    Ok(pipeline(
        Value::Null,
        metaspace(scheme, false),
        json!({"type": "Sequence", "decoders": decoders}),
        bpe,
    ))
}

/// `SpmConverter.build_tokenizer_from_spm_proto`, for a folder without a model class:
/// the model's own normaliser spec, BPE merges ranked by piece score, user-defined pieces
/// kept whole. A BPE piece named differently in `added_tokens_decoder` takes that name.
fn backend(model: &SpmModel, cfg: &Config, decoder: &[(u32, AddedToken)]) -> Result<Value> {
    let legacy = cfg.flag("legacy", true, false)?;
    let mut names: Vec<&str> = model.pieces.iter().map(|p| p.piece.as_str()).collect();
    if model.model_type == ModelType::Bpe && !decoder.is_empty() {
        // A rename onto a piece that keeps its own id is skipped (two pieces may swap names).
        let renamed: ahash::AHashMap<usize, &str> = decoder
            .iter()
            .map(|(id, t)| (*id as usize, t.content.as_str()))
            .collect();
        let kept: HashSet<&str> = names
            .iter()
            .enumerate()
            .filter(|(i, _)| !renamed.contains_key(i))
            .map(|(_, n)| *n)
            .collect();
        for (i, name) in names.iter_mut().enumerate() {
            if let Some(&new) = renamed.get(&i)
                && !kept.contains(new)
            {
                *name = new;
            }
        }
        let mut seen = HashSet::new();
        if let Some(dup) = names.iter().find(|n| !seen.insert(**n)) {
            return Err(cfg.bad(format!(
                "`added_tokens_decoder` gives two pieces the name {dup:?}"
            )));
        }
    }
    let user_defined: Vec<&str> = model
        .pieces
        .iter()
        .zip(&names)
        .filter(|(p, _)| p.kind == PieceKind::UserDefined)
        .map(|(_, n)| *n)
        .collect();
    let bf = model.byte_fallback;
    let model_json = match model.model_type {
        ModelType::Bpe => json!({"type": "BPE", "dropout": null, "unk_token": model.unk_piece,
            "continuing_subword_prefix": null, "end_of_word_suffix": null, "fuse_unk": true,
            "byte_fallback": bf, "ignore_merges": !user_defined.is_empty(),
            "vocab": vocab_object(&names), "merges": merges_by_score(model, &names)}),
        ModelType::Unigram => {
            let vocab: Vec<Value> = model
                .pieces
                .iter()
                .map(|p| json!([p.piece, after_python_copy(f64::from(p.score))]))
                .collect();
            json!({"type": "Unigram", "unk_id": model.unk_id, "vocab": vocab, "byte_fallback": bf})
        }
    };
    // Normaliser, in SentencePiece's order.
    let mut normalizers = Vec::new();
    if !model.precompiled_charsmap.is_empty() {
        normalizers.push(precompiled(&model.precompiled_charsmap));
    }
    if model.remove_extra_whitespaces {
        // Only spaces: SentencePiece leaves other whitespace, such as newlines, alone.
        normalizers.push(replace(json!({"Regex": r"\A +| +\z"}), ""));
        normalizers.push(replace(json!({"Regex": " {2,}"}), " "));
    }
    if model.escape_whitespaces {
        normalizers.push(replace(json!({"String": " "}), "▁"));
    }
    if model.add_dummy_prefix && legacy {
        // Metaspace skips the dummy prefix when the text already starts with "▁";
        // SentencePiece does not.
        normalizers.push(replace(json!({"Regex": r"\A▁"}), "▁▁"));
    }
    let mut pre = Vec::new();
    if model.add_dummy_prefix {
        pre.push(metaspace(if legacy { "always" } else { "first" }, false));
    }
    if !user_defined.is_empty() {
        let mut longest_first = user_defined.clone();
        longest_first.sort_by_key(|p| std::cmp::Reverse(p.chars().count()));
        let pattern: Vec<String> = longest_first.iter().map(|p| python_re_escape(p)).collect();
        pre.push(
            json!({"type": "Split", "pattern": {"Regex": pattern.join("|")},
                        "behavior": "Isolated", "invert": false}),
        );
    }
    let pre = if pre.is_empty() {
        Value::Null
    } else {
        json!({"type": "Sequence", "pretokenizers": pre})
    };
    let mut decoders = vec![replace(json!({"String": "▁"}), " ")];
    if bf {
        decoders.push(json!({"type": "ByteFallback"}));
    }
    if model.add_dummy_prefix {
        // `Strip` applies to each token: fuse them first to strip only the start.
        decoders.push(json!({"type": "Fuse"}));
        decoders.push(json!({"type": "Strip", "content": " ", "start": 1, "stop": 0}));
    } else if bf {
        decoders.push(json!({"type": "Fuse"}));
    }
    Ok(pipeline(
        json!({"type": "Sequence", "normalizers": normalizers}),
        pre,
        json!({"type": "Sequence", "decoders": decoders}),
        model_json,
    ))
}

/// A BPE vocabulary object: piece → id.
fn vocab_object(pieces: &[&str]) -> Value {
    Value::Object(
        pieces
            .iter()
            .enumerate()
            .map(|(id, p)| (p.to_string(), json!(id)))
            .collect(),
    )
}

/// transformers' `generate_merges(vocab)` without scores: every split of a piece into two
/// pieces of the vocabulary is a merge, ranked by the id of the merged piece, then by the
/// length of the left part (in characters).
fn merges_in_vocab_order(pieces: &[&str]) -> Vec<[String; 2]> {
    let known: HashSet<&str> = pieces.iter().copied().collect();
    let mut merges = Vec::new();
    for piece in pieces {
        for (at, _) in piece.char_indices().skip(1) {
            let (left, right) = piece.split_at(at);
            if known.contains(left) && known.contains(right) {
                merges.push([left.to_string(), right.to_string()]);
            }
        }
    }
    merges
}

/// `build_tokenizer_from_spm_proto`'s merges: splits of normal pieces into two normal
/// pieces, ranked by the merged piece's score (highest first), then its id.
fn merges_by_score(model: &SpmModel, names: &[&str]) -> Vec<[String; 2]> {
    let normal: HashSet<&str> = model
        .pieces
        .iter()
        .zip(names)
        .filter(|(p, _)| p.kind == PieceKind::Normal)
        .map(|(_, n)| *n)
        .collect();
    let mut ranked = Vec::new();
    for (id, (p, name)) in model.pieces.iter().zip(names).enumerate() {
        if p.kind != PieceKind::Normal {
            continue;
        }
        for (at, _) in name.char_indices().skip(1) {
            let (left, right) = name.split_at(at);
            if normal.contains(left) && normal.contains(right) {
                ranked.push((f64::from(p.score), id, left, right));
            }
        }
    }
    // Python sorts (-score, id, left, right).
    ranked.sort_by(|a, b| {
        b.0.total_cmp(&a.0)
            .then(a.1.cmp(&b.1))
            .then(a.2.cmp(b.2))
            .then(a.3.cmp(b.3))
    });
    ranked
        .into_iter()
        .map(|(_, _, l, r)| [l.to_string(), r.to_string()])
        .collect()
}

/// Python's `re.escape`: a backslash before each of `()[]{}?*+-|^$\.&~#`, space and
/// `\t\n\r\v\f` (the pattern is compiled by the tokenizers library, as in Python).
fn python_re_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len() * 2);
    for c in text.chars() {
        if "()[]{}?*+-|^$\\.&~# \t\n\r\u{b}\u{c}".contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// `x` after the copy `TokenizersBackend.__init__` makes of the converted tokenizer
/// (`copy.deepcopy`: Python tokenizers pickles it to JSON and back, and its serde_json
/// parses numbers without `float_roundtrip`): the shortest decimal digits of `x`, read
/// as an integer and scaled by a power of ten in one f64 operation, which can land one
/// ulp away from `x`. Unigram scores of `TokenizersBackend` models go through this.
fn after_python_copy(x: f64) -> f64 {
    // Shortest round-trip digits, as serde_json's ryu writes them: "d.ddde-N".
    let text = format!("{:e}", x.abs());
    let Some((mantissa, exp)) = text.split_once('e') else {
        return x;
    };
    let (int, frac) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    let (Ok(digits), Ok(exp)) = (format!("{int}{frac}").parse::<u64>(), exp.parse::<i32>()) else {
        return x;
    };
    let exp = exp - frac.len() as i32;
    let scale = 10f64.powi(exp.abs());
    let value = if exp >= 0 {
        digits as f64 * scale
    } else {
        digits as f64 / scale
    };
    if x.is_sign_negative() { -value } else { value }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merges_follow_the_vocabulary_order_then_the_left_length() {
        let pieces = ["<unk>", "a", "b", "c", "ab", "bc", "abc"];
        let merges = merges_in_vocab_order(&pieces);
        let got: Vec<String> = merges.iter().map(|[l, r]| format!("{l} {r}")).collect();
        assert_eq!(got, ["a b", "b c", "a bc", "ab c"]);
    }

    #[test]
    fn re_escape_is_pythons() {
        assert_eq!(python_re_escape("<|sep|>"), r"<\|sep\|>");
        assert_eq!(python_re_escape("a b.c-d#"), r"a\ b\.c\-d\#");
        assert_eq!(python_re_escape("<NL>"), "<NL>");
    }

    #[test]
    fn a_python_copy_moves_some_scores_by_one_ulp() {
        // Measured with Python tokenizers 0.23.3: copy.deepcopy of a Unigram model.
        let score = f64::from(-7.327_677_7_f32);
        assert_eq!(score, -7.3276777267456055);
        assert_eq!(after_python_copy(score), -7.327677726745605);
        for exact in [0.0, -2.0, -3.5, -10.25] {
            assert_eq!(after_python_copy(exact), exact);
        }
    }
}
