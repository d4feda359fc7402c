//! Reading NER files and turning character spans into BIO tags over tokens.

use std::path::{Path, PathBuf};

use manabi_finetune::error::{FinetuneError, Result};
use manabi_tokenize::TextTokenizer;

use crate::data::FieldMap;

/// One entity: a character span of the text and its type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entity {
    /// The surface text.
    pub name: String,
    /// First character.
    pub start: usize,
    /// One past the last character.
    pub end: usize,
    /// The type (`PER`, `LOC`, …).
    pub kind: String,
}

/// A text and its entities.
#[derive(Debug, Clone, PartialEq)]
pub struct NerExample {
    /// The text.
    pub text: String,
    /// Its entities, by start.
    pub entities: Vec<Entity>,
    /// Whether the line had an `entities` field (gold known, possibly empty).
    pub labelled: bool,
    /// File and 1-based line.
    pub source: (PathBuf, usize),
}

fn field<'a>(fields: &'a FieldMap, name: &'a str) -> &'a str {
    fields.get(name).map_or(name, String::as_str)
}

/// Reads NER files; `require_entities = false` allows lines without `entities`
/// (prediction).
pub fn read_ner(
    paths: &[PathBuf],
    fields: &FieldMap,
    require_entities: bool,
) -> Result<Vec<NerExample>> {
    let mut out = Vec::new();
    for path in paths {
        let before = out.len();
        read_file(path, fields, require_entities, &mut out)?;
        if out.len() == before {
            return Err(FinetuneError::io(path, "no examples in this file"));
        }
    }
    Ok(out)
}

fn read_file(
    path: &Path,
    fields: &FieldMap,
    required: bool,
    out: &mut Vec<NerExample>,
) -> Result<()> {
    let (text_f, ents_f) = (field(fields, "text"), field(fields, "entities"));
    for record in manabi_tokenize::read_jsonl(path) {
        let manabi_tokenize::JsonLine { line, value: v } = record?;
        let err = |message: String| FinetuneError::Data {
            path: path.to_path_buf(),
            line,
            message,
        };
        let text = match &v[text_f] {
            serde_json::Value::String(s) if !s.trim().is_empty() => s.clone(),
            serde_json::Value::Null => return Err(err(format!("missing field `{text_f}`"))),
            _ => return Err(err(format!("field `{text_f}` must be a non-empty string"))),
        };
        let chars: Vec<char> = text.chars().collect();
        let labelled = !v[ents_f].is_null();
        let list = match &v[ents_f] {
            serde_json::Value::Array(a) => a.as_slice(),
            serde_json::Value::Null if !required => &[],
            serde_json::Value::Null => return Err(err(format!("missing field `{ents_f}`"))),
            _ => return Err(err(format!("field `{ents_f}` must be a list"))),
        };
        let mut ents = Vec::with_capacity(list.len());
        for (k, e) in list.iter().enumerate() {
            let span: Option<Vec<usize>> = e["span"].as_array().map(|a| {
                a.iter()
                    .filter_map(|x| x.as_u64().map(|x| x as usize))
                    .collect()
            });
            let (start, end) = match span.as_deref() {
                Some(&[s, e]) => (s, e),
                _ => {
                    return Err(err(format!(
                        "entity {k}: `span` must be [start, end] (characters)"
                    )));
                }
            };
            if start >= end || end > chars.len() {
                return Err(err(format!(
                    "entity {k}: span [{start}, {end}] is outside the text ({} characters) or empty",
                    chars.len()
                )));
            }
            let kind = match e["type"].as_str() {
                Some(t) if !t.trim().is_empty() => t.to_string(),
                Some(_) => return Err(err(format!("entity {k}: `type` is empty"))),
                None => return Err(err(format!("entity {k}: missing `type`"))),
            };
            let covered: String = chars[start..end].iter().collect();
            if let Some(name) = e["name"].as_str()
                && name != covered
            {
                return Err(err(format!(
                    "entity {k}: span [{start}, {end}] covers \"{covered}\", not \"{name}\""
                )));
            }
            ents.push(Entity {
                name: covered,
                start,
                end,
                kind,
            });
        }
        ents.sort_by_key(|e| e.start);
        if let Some(w) = ents.windows(2).find(|w| w[1].start < w[0].end) {
            return Err(err(format!(
                "entities \"{}\" [{}, {}] and \"{}\" [{}, {}] overlap",
                w[0].name, w[0].start, w[0].end, w[1].name, w[1].start, w[1].end
            )));
        }
        out.push(NerExample {
            text,
            entities: ents,
            labelled,
            source: (path.to_path_buf(), line),
        });
    }
    Ok(())
}

/// The entity types: `given`, or the sorted types of `train`.
pub fn entity_types(given: &[String], train: &[NerExample]) -> Vec<String> {
    if !given.is_empty() {
        return given.to_vec();
    }
    let mut t: Vec<String> = train
        .iter()
        .flat_map(|x| x.entities.iter().map(|e| e.kind.clone()))
        .collect();
    t.sort();
    t.dedup();
    t
}

/// The tag set of `types`: `O`, then `B-T`, `I-T` for each type.
pub fn tag_names(types: &[String]) -> Vec<String> {
    std::iter::once("O".to_string())
        .chain(
            types
                .iter()
                .flat_map(|t| [format!("B-{t}"), format!("I-{t}")]),
        )
        .collect()
}

/// The tag of a token that continues a unit (a character or word begun by an earlier
/// token): not trained, not predicted ([`IGNORE_INDEX`](manabi_model::IGNORE_INDEX) in
/// batches).
pub const CONTINUATION: usize = usize::MAX;

/// One tokenized text: ids, each token's character span, its units and (when gold is
/// known) tags.
///
/// A *unit* is a maximal run of tokens whose character spans overlap: a whole character
/// that a byte-level tokenizer splits into several byte tokens, or a single token. Only
/// the first token of each unit is tagged (as transformers' token-classification recipes
/// label the first sub-token of each word); the others carry [`CONTINUATION`]. Units never
/// overlap, so neither do the entities predicted over them.
#[derive(Debug, Clone, PartialEq)]
pub struct Tagged {
    /// The text.
    pub text: String,
    /// Tokens.
    pub ids: Vec<u32>,
    /// Character span of each token.
    pub spans: Vec<(usize, usize)>,
    /// Units: (first token, first character, one past the last character).
    pub units: Vec<(usize, usize, usize)>,
    /// Tag index of each token, [`CONTINUATION`] inside a unit (empty when the example
    /// has no gold entities).
    pub tags: Vec<usize>,
    /// Gold entities `(type, start, end)` in characters (empty without gold).
    pub gold: Vec<(String, usize, usize)>,
}

impl Tagged {
    /// The predicted tag of each unit (its first token's).
    pub fn unit_tags(&self, pred: &[usize]) -> Vec<usize> {
        self.units.iter().map(|&(i, _, _)| pred[i]).collect()
    }
}

/// The units of tokens with character `spans` (see [`Tagged`]).
pub fn units(spans: &[(usize, usize)]) -> Vec<(usize, usize, usize)> {
    let mut out: Vec<(usize, usize, usize)> = Vec::new();
    for (i, &(s, e)) in spans.iter().enumerate() {
        match out.last_mut() {
            // Starts inside the current unit (a byte of the same character): continues it.
            Some(u) if s < u.2 => u.2 = u.2.max(e),
            _ => out.push((i, s, e.max(s))),
        }
    }
    out
}

/// Tokenizes `examples` and tags the first token of every unit: `B-T` for the first
/// unit that overlaps an entity, `I-T` for the next ones, `O` elsewhere. Texts longer
/// than `max_length` tokens are cut (counted in the second value).
pub fn tag(
    examples: &[NerExample],
    types: &[String],
    tokenizer: &TextTokenizer,
    max_length: usize,
    with_gold: bool,
) -> Result<(Vec<Tagged>, usize)> {
    let mut out = Vec::with_capacity(examples.len());
    let mut cut = 0;
    for x in examples {
        let err = |message: String| FinetuneError::Data {
            path: x.source.0.clone(),
            line: x.source.1,
            message,
        };
        let mut toks = tokenizer
            .encode_with_offsets(&x.text)
            .map_err(|e| err(e.to_string()))?;
        if toks.len() > max_length {
            toks.truncate(max_length);
            cut += 1;
        }
        let spans: Vec<(usize, usize)> = toks.iter().map(|t| (t.1, t.2)).collect();
        let units = units(&spans);
        let mut tags = Vec::new();
        let mut gold = Vec::new();
        if with_gold {
            tags = vec![CONTINUATION; toks.len()];
            let mut last: Option<usize> = None;
            for &(first, s, e) in &units {
                let hit = x.entities.iter().position(|en| s < en.end && e > en.start);
                tags[first] = match hit {
                    Some(k) => {
                        let t = types
                            .iter()
                            .position(|t| *t == x.entities[k].kind)
                            .ok_or_else(|| {
                                err(format!(
                                    "unknown entity type \"{}\" (types: {})",
                                    x.entities[k].kind,
                                    types.join(", ")
                                ))
                            })?;
                        let tag = if last == Some(k) {
                            2 + 2 * t
                        } else {
                            1 + 2 * t
                        };
                        last = Some(k);
                        tag
                    }
                    None => {
                        last = None;
                        0
                    }
                };
            }
            gold = x
                .entities
                .iter()
                .map(|e| (e.kind.clone(), e.start, e.end))
                .collect();
        }
        out.push(Tagged {
            text: x.text.clone(),
            ids: toks.iter().map(|t| t.0).collect(),
            spans,
            units,
            tags,
            gold,
        });
    }
    Ok((out, cut))
}
