//! transformers' `BertJapaneseTokenizer` (a slow, Python-only class: `vocab.txt` and
//! `tokenizer_config.json`, no tokenizer.json), rebuilt as a `tokenizers` pipeline plus,
//! for MeCab word splitting, the MeCab step [`crate::morph::MorphSplitter::mecab`] that
//! runs before it.
//!
//! What `BertJapaneseTokenizer._tokenize` does, step by step, and where manabi does it:
//! - the text is cut at special tokens (`[CLS]`, `[MASK]`, …), which stay whole: the
//!   MeCab step leaves them alone and the pipeline's added tokens match them;
//! - `word_tokenizer_type` `"mecab"`: NFKC (`normalize_text`, default true), MeCab with
//!   the dictionary of `mecab_kwargs` (spaces skipped), each word lower-cased when
//!   `do_lower_case`: the MeCab step, then a `Lowercase` normaliser and a whitespace
//!   split; `"basic"`: BERT's BasicTokenizer without Chinese-character splitting (clean
//!   text, NFC, lower-case and strip accents when `do_lower_case`, split on whitespace and
//!   punctuation): BERT's normaliser and pre-tokeniser;
//! - `subword_tokenizer_type` `"wordpiece"`: greedy longest match with `##`, `[UNK]` for a
//!   word it cannot cover or longer than 100 characters (the `WordPiece` model);
//!   `"character"`: NFKC, then each character or `[UNK]` (a per-character split and a
//!   `WordLevel` model);
//! - `[CLS] … [SEP]` around one text, `[CLS] A [SEP] B [SEP]` around a pair.
//!
//! Sudachi, Juman++ and SentencePiece subwords are refused in one line.

use std::path::{Path, PathBuf};

use serde_json::{Map, Value, json};

use crate::error::{Result, TokenizeError};
use crate::hf_config::Folder;
use crate::sidecar::MECAB_SEPARATOR;

/// Python's `str.split()` whitespace (Unicode White_Space and the four information
/// separators U+001C–U+001F), and the MeCab step's word separator.
const PY_SPACE: &str = "[\\s\\x{1c}-\\x{1f}\\x{fdd0}]+";

/// The vocabulary file `BertJapaneseTokenizer` reads.
pub const VOCAB_FILE: &str = "vocab.txt";

/// The class name.
pub const CLASS: &str = "BertJapaneseTokenizer";

/// A converted `BertJapaneseTokenizer`.
#[derive(Debug)]
pub(crate) struct Converted {
    /// The pipeline after word splitting, as a tokenizer.json.
    pub(crate) json: String,
    /// The MeCab step, for `word_tokenizer_type` `"mecab"`.
    pub(crate) mecab: Option<MecabStep>,
    /// `vocab.txt`.
    pub(crate) vocab_path: PathBuf,
}

/// How MeCab splits words before the pipeline.
#[derive(Debug, Clone)]
#[cfg_attr(not(feature = "morph"), allow(dead_code))]
pub(crate) struct MecabStep {
    /// `mecab_kwargs.mecab_dic` (default `unidic_lite`; `None` when null).
    pub(crate) dic: Option<String>,
    /// `mecab_kwargs.mecab_option`.
    pub(crate) option: Option<String>,
    /// `normalize_text`: NFKC first.
    pub(crate) nfkc: bool,
}

/// Whether `folder` names `BertJapaneseTokenizer` (tokenizer_config.json's
/// `tokenizer_class`, else config.json's).
pub(crate) fn is_bert_japanese(folder: &Folder) -> bool {
    matches!(
        crate::hf_config::pick(folder, false),
        Ok(crate::hf_config::Pick::Class { name, .. }) if name == CLASS
    )
}

/// Converts the `BertJapaneseTokenizer` of the folder `dir`.
pub(crate) fn convert(folder: &Folder, dir: &Path) -> Result<Converted> {
    let config = folder.config_path().to_path_buf();
    let kw = folder.config();
    let bad = |message: String| TokenizeError::TokenizerConfig {
        path: config.clone(),
        message,
    };
    let flag = |key: &str, default: bool| -> Result<bool> {
        match kw.get(key) {
            None | Some(Value::Null) => Ok(default),
            Some(Value::Bool(b)) => Ok(*b),
            Some(v) => Err(bad(format!("`{key}` must be true or false, not {v}"))),
        }
    };
    let text =
        |map: &Map<String, Value>, key: &str, default: &str, at: &str| -> Result<Option<String>> {
            match map.get(key) {
                None => Ok(Some(default.to_string())),
                Some(Value::Null) => Ok(None),
                Some(Value::String(s)) => Ok(Some(s.clone())),
                Some(v) => Err(bad(format!("`{at}{key}` must be a string, not {v}"))),
            }
        };
    let lower = flag("do_lower_case", false)?;
    let word_split = flag("do_word_tokenize", true)?;
    let subword_split = flag("do_subword_tokenize", true)?;
    let word_type = text(kw, "word_tokenizer_type", "basic", "")?.unwrap_or_default();
    let subword_type = text(kw, "subword_tokenizer_type", "wordpiece", "")?.unwrap_or_default();
    match kw.get("never_split") {
        None | Some(Value::Null) => {}
        Some(Value::Array(a)) if a.is_empty() => {}
        Some(v) => {
            return Err(bad(format!(
                "`never_split` {v}: manabi does not keep extra words unsplit; add them as \
                 special tokens (`additional_special_tokens`) instead"
            )));
        }
    }

    // Word splitting.
    let mut mecab = None;
    // (normaliser, BERT's BasicTokenizer splits words)
    let (normalizer, basic) = if !word_split {
        (Value::Null, false)
    } else {
        match word_type.as_str() {
            "mecab" => {
                let empty = Map::new();
                let mk = match kw.get("mecab_kwargs") {
                    None | Some(Value::Null) => &empty,
                    Some(Value::Object(o)) => o,
                    Some(v) => {
                        return Err(bad(format!("`mecab_kwargs` must be an object, not {v}")));
                    }
                };
                for key in mk.keys() {
                    if !matches!(
                        key.as_str(),
                        "mecab_dic"
                            | "mecab_option"
                            | "normalize_text"
                            | "do_lower_case"
                            | "never_split"
                    ) {
                        return Err(bad(format!(
                            "`mecab_kwargs.{key}`: MecabTokenizer takes no such argument (it takes \
                             mecab_dic, mecab_option, normalize_text)"
                        )));
                    }
                }
                let dic = text(mk, "mecab_dic", "unidic_lite", "mecab_kwargs.")?;
                let option = text(mk, "mecab_option", "", "mecab_kwargs.")?;
                let nfkc = match mk.get("normalize_text") {
                    None | Some(Value::Null) => true,
                    Some(Value::Bool(b)) => *b,
                    Some(v) => {
                        return Err(bad(format!(
                            "`mecab_kwargs.normalize_text` must be true or false, not {v}"
                        )));
                    }
                };
                mecab = Some(MecabStep { dic, option, nfkc });
                let normalizer = if lower {
                    json!({"type": "Lowercase"})
                } else {
                    Value::Null
                };
                (normalizer, false)
            }
            "basic" => {
                let mut steps = vec![
                    json!({"type": "BertNormalizer", "clean_text": true,
                           "handle_chinese_chars": false, "strip_accents": false,
                           "lowercase": false}),
                    json!({"type": "NFC"}),
                ];
                if lower {
                    steps.push(json!({"type": "Lowercase"}));
                    steps.push(json!({"type": "NFD"}));
                    steps.push(json!({"type": "StripAccents"}));
                }
                (json!({"type": "Sequence", "normalizers": steps}), true)
            }
            "sudachi" | "jumanpp" => {
                return Err(bad(format!(
                    "`word_tokenizer_type` {word_type:?}: manabi splits Japanese words with MeCab \
                     dictionaries only (mecab, basic); {} is not reproduced",
                    if word_type == "sudachi" {
                        "SudachiPy"
                    } else {
                        "Juman++"
                    }
                )));
            }
            other => {
                return Err(bad(format!(
                    "`word_tokenizer_type` {other:?}: BertJapaneseTokenizer knows basic, mecab, \
                     sudachi and jumanpp"
                )));
            }
        }
    };

    // The vocabulary: one token a line, ids in line order (a later duplicate wins, as in
    // Python's dict).
    let vocab_path = dir.join(VOCAB_FILE);
    let bytes = std::fs::read(&vocab_path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => bad(format!(
            "names {CLASS}, which reads {VOCAB_FILE}, but {} is missing",
            vocab_path.display()
        )),
        _ => TokenizeError::io(&vocab_path, e),
    })?;
    let text_vocab = String::from_utf8(bytes).map_err(|e| TokenizeError::TokenizerConfig {
        path: vocab_path.clone(),
        message: format!("not UTF-8 text (byte {})", e.utf8_error().valid_up_to()),
    })?;
    let text_vocab = text_vocab.strip_prefix('\u{feff}').unwrap_or(&text_vocab);
    let mut vocab = Map::new();
    let mut lines = text_vocab.split('\n').collect::<Vec<_>>();
    if lines.last() == Some(&"") {
        lines.pop();
    }
    for (i, line) in lines.iter().enumerate() {
        let token = line.strip_suffix('\r').unwrap_or(line);
        vocab.insert(token.to_string(), json!(i));
    }
    if vocab.is_empty() {
        return Err(TokenizeError::TokenizerConfig {
            path: vocab_path,
            message: "empty vocabulary".into(),
        });
    }

    // Special tokens: the five BERT ones (named in the config, or the defaults), each of
    // which must be in vocab.txt.
    let mut specials: Vec<(String, u32)> = Vec::new();
    let mut special = |key: &str, default: &str| -> Result<Option<(String, u32)>> {
        let token = match kw.get(key) {
            None => Some(default.to_string()),
            Some(Value::Null) => None,
            Some(Value::String(s)) => Some(s.clone()),
            Some(Value::Object(o)) => match o.get("content") {
                Some(Value::String(s)) => Some(s.clone()),
                _ => {
                    return Err(bad(format!(
                        "`{key}` is an object without a string `content`"
                    )));
                }
            },
            Some(v) => return Err(bad(format!("`{key}` must be a token, not {v}"))),
        };
        let Some(token) = token else { return Ok(None) };
        let Some(id) = vocab.get(&token).and_then(Value::as_u64) else {
            return Err(bad(format!(
                "`{key}` {token:?} is not in {} (transformers would add it as a new token, which \
                 the model has no embedding for)",
                vocab_path.display()
            )));
        };
        let found = (token, id as u32);
        if !specials.iter().any(|(t, _)| *t == found.0) {
            specials.push(found.clone());
        }
        Ok(Some(found))
    };
    let unk = special("unk_token", "[UNK]")?;
    let sep = special("sep_token", "[SEP]")?;
    special("pad_token", "[PAD]")?;
    let cls = special("cls_token", "[CLS]")?;
    special("mask_token", "[MASK]")?;
    if let Some(Value::Array(extra)) = kw
        .get("additional_special_tokens")
        .or_else(|| kw.get("extra_special_tokens"))
    {
        for (i, item) in extra.iter().enumerate() {
            let key = format!("additional_special_tokens.{i}");
            let token = match item {
                Value::String(s) => s.clone(),
                Value::Object(o) => match o.get("content") {
                    Some(Value::String(s)) => s.clone(),
                    _ => return Err(bad(format!("`{key}` has no string `content`"))),
                },
                v => return Err(bad(format!("`{key}` must be a token, not {v}"))),
            };
            special(&key, &token)?;
        }
    }
    specials.sort_by_key(|(_, id)| *id);
    let added: Vec<Value> = specials
        .iter()
        .map(|(t, id)| {
            json!({"id": id, "content": t, "single_word": false, "lstrip": false,
                   "rstrip": false, "normalized": false, "special": true})
        })
        .collect();

    // Subwords. Words are what BasicTokenizer splits, or the MeCab step's words (joined
    // by its separator), or the whole text.
    let unk_token = unk.as_ref().map(|(t, _)| t.clone()).unwrap_or_default();
    let split = |pattern: Value, behavior: &str| json!({"type": "Split", "pattern": pattern, "behavior": behavior, "invert": false});
    let words = if basic {
        json!({"type": "BertPreTokenizer"})
    } else {
        split(json!({"String": MECAB_SEPARATOR}), "Removed")
    };
    let (normalizer, pre_tokenizer, model) = match (subword_split, subword_type.as_str()) {
        (false, _) => (
            normalizer,
            words,
            json!({"type": "WordLevel", "vocab": vocab, "unk_token": unk_token}),
        ),
        (true, "wordpiece") => (
            normalizer,
            // WordpieceTokenizer splits each word again at Python's whitespace.
            if basic {
                words
            } else {
                split(json!({"Regex": PY_SPACE}), "Removed")
            },
            json!({"type": "WordPiece", "unk_token": unk_token,
                   "continuing_subword_prefix": "##", "max_input_chars_per_word": 100,
                   "vocab": vocab}),
        ),
        (true, "character") => {
            // CharacterTokenizer normalises each word with NFKC itself, then looks up
            // every character, whitespace included.
            let normalizer = match normalizer {
                Value::Null => json!({"type": "NFKC"}),
                n => json!({"type": "Sequence", "normalizers": [n, {"type": "NFKC"}]}),
            };
            (
                normalizer,
                json!({"type": "Sequence", "pretokenizers": [
                    words, split(json!({"Regex": "[\\s\\S]"}), "Isolated")]}),
                json!({"type": "WordLevel", "vocab": vocab, "unk_token": unk_token}),
            )
        }
        (true, "sentencepiece") => {
            return Err(bad(
                "`subword_tokenizer_type` \"sentencepiece\": manabi does not rebuild \
                 BertJapaneseTokenizer's SentencePiece subwords (wordpiece and character are \
                 rebuilt)"
                    .into(),
            ));
        }
        (true, other) => {
            return Err(bad(format!(
                "`subword_tokenizer_type` {other:?}: BertJapaneseTokenizer knows wordpiece, \
                 character and sentencepiece"
            )));
        }
    };
    if unk.is_none() {
        return Err(bad(
            "`unk_token` is null, but WordPiece and character subwords need one".into(),
        ));
    }

    let post = match (&cls, &sep) {
        (Some((c, cid)), Some((s, sid))) => json!({
            "type": "TemplateProcessing",
            "single": [{"SpecialToken": {"id": c, "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}},
                       {"SpecialToken": {"id": s, "type_id": 0}}],
            "pair": [{"SpecialToken": {"id": c, "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}},
                     {"SpecialToken": {"id": s, "type_id": 0}}, {"Sequence": {"id": "B", "type_id": 1}},
                     {"SpecialToken": {"id": s, "type_id": 1}}],
            "special_tokens": {
                c: {"id": c, "ids": [cid], "tokens": [c]},
                s: {"id": s, "ids": [sid], "tokens": [s]},
            }
        }),
        _ => Value::Null,
    };
    let file = json!({
        "version": "1.0",
        "truncation": null,
        "padding": null,
        "added_tokens": added,
        "normalizer": normalizer,
        "pre_tokenizer": pre_tokenizer,
        "post_processor": post,
        "decoder": {"type": "WordPiece", "prefix": "##", "cleanup": false},
        "model": model,
    });
    Ok(Converted {
        json: file.to_string(),
        mecab,
        vocab_path,
    })
}
