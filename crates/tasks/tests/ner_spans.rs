//! NER at entity level on character spans, with byte-level BPE and WordPiece tokenizers
//! on English and Japanese: only the first token of each unit (a character or token) is
//! tagged, predicted spans never overlap, and the printed precision / recall / F1 equal
//! seqeval's on the written spans (character-level IOB2 of the gold and predicted spans)
//! in strict and default mode, whatever the model predicts.

use std::path::{Path, PathBuf};

use manabi_finetune::metrics::{EntityMode, entity_prf};
use manabi_tasks::ner::{
    CONTINUATION, Entity, Tagged, entity_types, read_ner, scores, spans_of, tag, tag_names,
};
use manabi_tokenize::{CorpusSpec, TextTokenizer, TokenizerKind, TrainOptions};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Tokenizers of both kinds for `lang`: the committed byte-level BPE, and WordPiece
/// (committed for English, trained here on the Japanese NER texts).
fn tokenizers(lang: &str, tmp: &Path) -> Vec<(String, TextTokenizer)> {
    let fixture = |name: &str| {
        TextTokenizer::load(root().join(format!("fixtures/tokenize/{name}/tokenizer.json")))
            .unwrap()
    };
    let wordpiece = if lang == "en" {
        fixture("wordpiece-en")
    } else {
        let corpus = CorpusSpec::new(vec![root().join("datasets/tasks/ner-ja.train.jsonl")]);
        let mut opts = TrainOptions::new(TokenizerKind::Wordpiece, 800);
        opts.min_frequency = 1;
        // Words end where the script changes (kanji, kana, Latin), as a Japanese BERT's
        // word splitter would cut them, before WordPiece.
        opts.pre_tokenize = manabi_tokenize::PreTokenize::Japanese;
        let mut tok = manabi_tokenize::train(&corpus, &opts).unwrap();
        let path = tmp.join("wordpiece-ja.json");
        tok.save(&path).unwrap();
        TextTokenizer::load(&path).unwrap()
    };
    vec![
        (format!("bpe-{lang}"), fixture(&format!("bpe-{lang}"))),
        (format!("wordpiece-{lang}"), wordpiece),
    ]
}

/// Character-level IOB2 tags of `spans` over a text of `n` characters.
fn char_tags(n: usize, spans: &[(String, usize, usize)]) -> Vec<String> {
    let mut tags = vec!["O".to_string(); n];
    for (kind, a, b) in spans {
        for (i, t) in tags.iter_mut().enumerate().take(*b).skip(*a) {
            *t = format!("{}-{kind}", if i == *a { "B" } else { "I" });
        }
    }
    tags
}

/// seqeval's scores of the written spans against the gold spans.
fn seqeval_on_spans(rows: &[Tagged], written: &[Vec<Entity>]) -> (f64, f64, f64) {
    let gold: Vec<Vec<String>> = rows
        .iter()
        .map(|r| char_tags(r.text.chars().count(), &r.gold))
        .collect();
    let pred: Vec<Vec<String>> = rows
        .iter()
        .zip(written)
        .map(|(r, es)| {
            let spans: Vec<(String, usize, usize)> = es
                .iter()
                .map(|e| (e.kind.clone(), e.start, e.end))
                .collect();
            char_tags(r.text.chars().count(), &spans)
        })
        .collect();
    fn refs(v: &[Vec<String>]) -> Vec<Vec<&str>> {
        v.iter()
            .map(|t| t.iter().map(String::as_str).collect())
            .collect()
    }
    entity_prf(&refs(&gold), &refs(&pred), EntityMode::Strict)
}

fn metric(m: &[(String, f64)], key: &str) -> f64 {
    m.iter().find(|(k, _)| k == key).unwrap().1
}

#[test]
fn printed_ner_metrics_equal_seqeval_on_the_written_spans() {
    let tmp = tempfile::tempdir().unwrap();
    for lang in ["en", "ja"] {
        let file = root().join(format!("datasets/tasks/ner-{lang}.val.jsonl"));
        let examples = read_ner(&[file], &Default::default(), true).unwrap();
        let types = entity_types(&[], &examples);
        let names = tag_names(&types);
        for (tok_name, tok) in tokenizers(lang, tmp.path()) {
            let (rows, _) = tag(&examples, &types, &tok, 512, true).unwrap();
            // Only the first token of a unit carries a tag; a Japanese character that the
            // byte-level tokenizer splits makes units of several tokens.
            let continued: usize = rows
                .iter()
                .map(|r| r.tags.iter().filter(|&&t| t == CONTINUATION).count())
                .sum();
            if tok_name == "bpe-ja" {
                assert!(continued > 0, "{tok_name}: no character split into bytes");
            }
            for r in &rows {
                for w in r.units.windows(2) {
                    assert!(w[0].2 <= w[1].1, "{tok_name}: units overlap: {:?}", r.units);
                }
            }
            // Predictions: the gold tag of each unit, with 30 % noise; continuation
            // tokens get arbitrary tags, which must not matter.
            let mut state = 0x9e37_79b9_7f4a_7c15_u64;
            let mut next = |n: usize| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                (state % n as u64) as usize
            };
            let pred: Vec<Vec<usize>> = rows
                .iter()
                .map(|r| {
                    r.tags
                        .iter()
                        .map(|&t| match t {
                            CONTINUATION => next(names.len()),
                            t if next(10) < 7 => t,
                            _ => next(names.len()),
                        })
                        .collect()
                })
                .collect();
            let printed = scores(&rows, &pred, &names);
            for (mode, suffix) in [(EntityMode::Strict, ""), (EntityMode::Default, "_default")] {
                let written: Vec<Vec<Entity>> = rows
                    .iter()
                    .zip(&pred)
                    .map(|(r, p)| spans_of(r, p, &names, mode))
                    .collect();
                for (r, es) in rows.iter().zip(&written) {
                    for w in es.windows(2) {
                        assert!(
                            w[0].end <= w[1].start,
                            "{tok_name}: overlapping spans in {:?}: {es:?}",
                            r.text
                        );
                    }
                    for e in es {
                        let covered: String =
                            r.text.chars().skip(e.start).take(e.end - e.start).collect();
                        assert_eq!(e.name, covered);
                        assert!(!e.name.starts_with(' ') && !e.name.ends_with(' '));
                    }
                }
                let (p, rc, f1) = seqeval_on_spans(&rows, &written);
                assert_eq!(
                    metric(&printed, &format!("precision{suffix}")),
                    p,
                    "{tok_name}"
                );
                assert_eq!(
                    metric(&printed, &format!("recall{suffix}")),
                    rc,
                    "{tok_name}"
                );
                assert_eq!(metric(&printed, &format!("f1{suffix}")), f1, "{tok_name}");
                assert!(f1 > 0.05 && f1 < 1.0, "{tok_name} {suffix}: f1 {f1}");
            }
            // The gold tags decode to the gold spans wherever entity boundaries fall on
            // unit boundaries (every English entity; Japanese ones unless a token crosses
            // an entity's edge).
            let gold_pred: Vec<Vec<usize>> = rows
                .iter()
                .map(|r| {
                    r.tags
                        .iter()
                        .map(|&t| if t == CONTINUATION { 0 } else { t })
                        .collect()
                })
                .collect();
            let f1 = metric(&scores(&rows, &gold_pred, &names), "f1");
            if lang == "en" {
                assert_eq!(f1, 1.0, "{tok_name}");
            } else {
                assert!(f1 > 0.6, "{tok_name}: {f1}");
            }
        }
    }
}
