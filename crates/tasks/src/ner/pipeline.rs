//! Entities as `transformers`' `token-classification` pipeline finds them with
//! `aggregation_strategy="simple"` (`TokenClassificationPipeline.group_entities`), for a
//! Hugging Face `*ForTokenClassification` folder that predicts without a `task.toml`:
//! every unit's most likely tag and its probability; neighbouring units are grouped
//! while their tag's type stays the same and the tag is not a `B-` one (a tag without a
//! `B-` / `I-` prefix reads as `I-`); a group's type is its first tag after the first
//! `-`, its score the mean probability of its units; groups of type `O` are dropped.
//! The tag names are the folder's `id2label`, in any order.
//!
//! Units are those of [`Tagged`]: for a WordPiece or SentencePiece tokenizer every token
//! is one, as in the pipeline; a byte-level tokenizer's bytes of one character form one
//! unit here, where the pipeline tags each byte token.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use burn::prelude::*;
use burn::tensor::activation::softmax;
use manabi_finetune::error::{FinetuneError, Result};
use manabi_model::argmax_first;
use manabi_tokenize::TextTokenizer;

use super::{CONTINUATION, Entity, NerExample, TagBatch, Tagged, frame_of, prf, read_ner};
use crate::body::{Framing, TaggerModel};
use crate::report::SplitReport;

/// A predicted entity and the pipeline's score of it.
#[derive(Debug, Clone, PartialEq)]
pub struct Scored {
    /// The entity (character span, type).
    pub entity: Entity,
    /// Mean probability of its units' tags.
    pub score: f64,
}

/// The most likely tag of every token of every row and its probability (softmax over
/// the tags; the first of equal ones).
pub fn predict_scored(
    scores: impl Fn(&TagBatch) -> Result<Tensor<3>>,
    rows: &[Tagged],
    batch_size: usize,
    pad: u32,
    frame: Option<(u32, u32)>,
) -> Result<Vec<Vec<(usize, f32)>>> {
    let mut out = Vec::with_capacity(rows.len());
    for chunk in rows.chunks(batch_size.max(1)) {
        let refs: Vec<&Tagged> = chunk.iter().collect();
        let b = super::tag_batch(&refs, pad, frame);
        let logits = scores(&b)?; // [rows, seq, tags]
        let tags = logits.dims()[2];
        let probs = softmax(logits, 2)
            .into_data()
            .convert::<f32>()
            .try_into_vec::<f32>()
            .map_err(|e| manabi_model::ModelError::Input(format!("tag scores: {e:?}")))?;
        for (i, r) in chunk.iter().enumerate() {
            let row = (0..r.ids.len())
                .map(|j| {
                    let at = (i * b.seq + j) * tags;
                    let p = &probs[at..at + tags];
                    let best = argmax_first(p);
                    (best, p[best])
                })
                .collect();
            out.push(row);
        }
    }
    Ok(out)
}

/// The pipeline's `get_tag`: whether a tag begins an entity (`B-`), and its type (the
/// tag without `B-` / `I-`; a tag with neither reads as an `I-` tag of its own name).
fn split_tag(name: &str) -> (bool, &str) {
    match (name.strip_prefix("B-"), name.strip_prefix("I-")) {
        (Some(kind), _) => (true, kind),
        (None, Some(kind)) => (false, kind),
        (None, None) => (false, name),
    }
}

/// The entity types of the tag `names` (`O` left out), in order of first appearance.
pub fn types_of(names: &[String]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for n in names {
        let kind = split_tag(n).1;
        if kind != "O" && !out.iter().any(|t| t == kind) {
            out.push(kind.to_string());
        }
    }
    out
}

/// The entities of one row from its tokens' predicted tags and probabilities (`pred`,
/// indexed like `row.ids`), grouped as the pipeline's `simple` aggregation groups them.
pub fn group_entities(row: &Tagged, pred: &[(usize, f32)], names: &[String]) -> Vec<Scored> {
    // Each group: (unit, tag name, probability) of the units it holds.
    let mut groups: Vec<Vec<(usize, &str, f32)>> = Vec::new();
    for (u, &(first, _, _)) in row.units.iter().enumerate() {
        let (tag, p) = pred[first];
        let name = names[tag].as_str();
        let (begins, kind) = split_tag(name);
        let joins = !begins
            && groups
                .last()
                .and_then(|g| g.last())
                .is_some_and(|&(_, last, _)| split_tag(last).1 == kind);
        let n = groups.len();
        if joins && n > 0 {
            groups[n - 1].push((u, name, p));
        } else {
            groups.push(vec![(u, name, p)]);
        }
    }
    let chars: Vec<char> = row.text.chars().collect();
    groups
        .into_iter()
        .filter_map(|g| {
            let (&(first, name, _), &(last, _, _)) = (g.first()?, g.last()?);
            // `entity.split("-", 1)[-1]`: `B-PER` and `I-PER` are `PER`, `O` stays `O`.
            let kind = name.split_once('-').map_or(name, |(_, rest)| rest);
            if kind == "O" {
                return None;
            }
            let (mut start, mut end) = (row.units[first].1, row.units[last].2.min(chars.len()));
            while start < end && chars[start].is_whitespace() {
                start += 1;
            }
            while end > start && chars[end - 1].is_whitespace() {
                end -= 1;
            }
            let score = g.iter().map(|&(_, _, p)| f64::from(p)).sum::<f64>() / g.len() as f64;
            (start < end).then(|| Scored {
                entity: Entity {
                    name: chars[start..end].iter().collect(),
                    start,
                    end,
                    kind: kind.to_string(),
                },
                score,
            })
        })
        .collect()
}

/// `row` with `prefix` and `suffix` (the tokenizer's own special tokens, e.g. a Llama
/// BOS) around its tokens, untagged, its units moved along.
fn with_specials(mut row: Tagged, prefix: &[u32], suffix: &[u32]) -> Tagged {
    let (p, s) = (prefix.len(), suffix.len());
    if p + s == 0 {
        return row;
    }
    row.ids = prefix
        .iter()
        .copied()
        .chain(row.ids)
        .chain(suffix.iter().copied())
        .collect();
    row.spans = std::iter::repeat_n((0, 0), p)
        .chain(row.spans)
        .chain(std::iter::repeat_n((0, 0), s))
        .collect();
    row.units = row
        .units
        .into_iter()
        .map(|(i, a, b)| (i + p, a, b))
        .collect();
    if !row.tags.is_empty() {
        row.tags = std::iter::repeat_n(CONTINUATION, p)
            .chain(row.tags)
            .chain(std::iter::repeat_n(CONTINUATION, s))
            .collect();
    }
    row
}

/// Entity-level precision, recall and F1 of the predicted entities against the gold
/// ones (same type and character span).
fn entity_scores(rows: &[Tagged], found: &[Vec<Scored>]) -> Vec<(String, f64)> {
    let gold: BTreeSet<(usize, &str, usize, usize)> = rows
        .iter()
        .enumerate()
        .flat_map(|(k, r)| r.gold.iter().map(move |(t, a, b)| (k, t.as_str(), *a, *b)))
        .collect();
    let predicted: BTreeSet<(usize, &str, usize, usize)> = found
        .iter()
        .enumerate()
        .flat_map(|(k, es)| {
            es.iter()
                .map(move |s| (k, s.entity.kind.as_str(), s.entity.start, s.entity.end))
        })
        .collect();
    let (precision, recall, f1) = prf(
        gold.intersection(&predicted).count(),
        predicted.len(),
        gold.len(),
    );
    vec![
        ("precision".into(), precision),
        ("recall".into(), recall),
        ("f1".into(), f1),
    ]
}

/// One JSON line per text, in manabi's NER layout: `text`, `predicted` entities (each
/// `{"name", "span": [start, end], "type", "score"}`) and, with `gold`, the gold
/// `entities`.
fn write_predictions(
    path: &Path,
    examples: &[NerExample],
    found: &[Vec<Scored>],
    gold: bool,
) -> Result<()> {
    let mut text = String::new();
    for (x, es) in examples.iter().zip(found) {
        let predicted: Vec<serde_json::Value> = es
            .iter()
            .map(|s| {
                let e = &s.entity;
                serde_json::json!({"name": e.name, "span": [e.start, e.end], "type": e.kind,
                                   "score": s.score})
            })
            .collect();
        let mut obj = serde_json::json!({"text": x.text, "predicted": predicted});
        if gold {
            obj["entities"] = x
                .entities
                .iter()
                .map(|e| serde_json::json!({"name": e.name, "span": [e.start, e.end], "type": e.kind}))
                .collect();
        }
        text.push_str(&obj.to_string());
        text.push('\n');
    }
    std::fs::write(path, text).map_err(|e| FinetuneError::io(path, e))
}

/// Predicts the entities of the NER `files` (`text`, and `entities` when gold is known:
/// then precision, recall and F1) with a token classifier as the pipeline does, and
/// writes them to `out`. `names` are its tags (`id2label`); `max_length` the most tokens
/// it reads, its special tokens included (longer texts are cut).
#[allow(clippy::too_many_arguments)]
pub fn predict_entities(
    model: &TaggerModel,
    names: &[String],
    tokenizer: &TextTokenizer,
    files: &[PathBuf],
    (pad, eos): (u32, u32),
    (max_length, batch_size): (usize, usize),
    out: &Path,
    device: &Device,
) -> Result<SplitReport> {
    let examples = read_ner(files, &Default::default(), false)?;
    let gold = examples.iter().all(|x| x.labelled);
    // BERT reads `[CLS] tokens [SEP]`; a decoder its tokenizer's own special tokens
    // around the tokens, as the pipeline's tokenizer call adds them.
    let frame = frame_of(Framing::of(model.family(), tokenizer, eos)?);
    let (prefix, suffix): (&[u32], &[u32]) = match frame {
        Some(_) => (&[], &[]),
        None => (tokenizer.specials_prefix(), tokenizer.specials_suffix()),
    };
    let around = if frame.is_some() {
        2
    } else {
        prefix.len() + suffix.len()
    };
    let types = types_of(names);
    let (rows, cut) = super::tag(
        &examples,
        &types,
        tokenizer,
        max_length.saturating_sub(around),
        gold,
    )?;
    if cut > 0 {
        tracing::warn!("{cut} texts cut to the model's {max_length} positions");
    }
    let rows: Vec<Tagged> = rows
        .into_iter()
        .map(|r| with_specials(r, prefix, suffix))
        .collect();
    let f = |b: &TagBatch| model.token_scores(b, device);
    let pred = predict_scored(f, &rows, batch_size, pad, frame)?;
    let found: Vec<Vec<Scored>> = rows
        .iter()
        .zip(&pred)
        .map(|(r, p)| group_entities(r, p, names))
        .collect();
    write_predictions(out, &examples, &found, gold)?;
    Ok(SplitReport {
        name: String::new(),
        examples: examples.len(),
        metrics: if gold {
            entity_scores(&rows, &found)
        } else {
            Vec::new()
        },
        majority_baseline: None,
        predictions: out.to_path_buf(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(text: &str, units: &[(usize, usize)]) -> Tagged {
        Tagged {
            text: text.into(),
            ids: (0..units.len() as u32).collect(),
            spans: units.to_vec(),
            units: units
                .iter()
                .enumerate()
                .map(|(i, &(a, b))| (i, a, b))
                .collect(),
            tags: Vec::new(),
            gold: Vec::new(),
        }
    }

    #[test]
    fn groups_follow_the_simple_aggregation() {
        let names: Vec<String> = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC", "MISC"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        // "ab cd ef gh ij kl": six one-word units.
        let r = row(
            "ab cd ef gh ij kl",
            &[(0, 2), (3, 5), (6, 8), (9, 11), (12, 14), (15, 17)],
        );
        // I-PER after O starts an entity; I-PER continues it; B-PER starts a new one;
        // I-LOC after PER starts a LOC; an unprefixed tag is its own type; O is dropped.
        let pred: [(usize, f32); 6] = [(2, 0.5), (2, 0.7), (1, 0.9), (4, 0.6), (5, 0.8), (0, 0.9)];
        let got: Vec<(String, usize, usize, f64)> = group_entities(&r, &pred, &names)
            .into_iter()
            .map(|s| (s.entity.kind, s.entity.start, s.entity.end, s.score))
            .collect();
        let want = [
            ("PER", 0, 5, 0.6),
            ("PER", 6, 8, 0.9),
            ("LOC", 9, 11, 0.6),
            ("MISC", 12, 14, 0.8),
        ];
        assert_eq!(got.len(), want.len(), "{got:?}");
        for (g, w) in got.iter().zip(want) {
            assert_eq!((g.0.as_str(), g.1, g.2), (w.0, w.1, w.2));
            assert!((g.3 - w.3).abs() < 1e-6, "{g:?}");
        }
        assert_eq!(types_of(&names), ["PER", "LOC", "MISC"]);
    }
}
