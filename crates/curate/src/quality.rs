//! Heuristic quality rules, applied in the order of [`Rule::ALL`]:
//!
//! - Gopher's quality and repetition rules (Rae et al., 2021, appendix A; as datatrove's
//!   `GopherQualityFilter` and `GopherRepetitionFilter`) for space-separated text;
//! - C4's terminal-punctuation idea (Raffel et al., 2020) as FineWeb's line-share rule,
//!   and FineWeb's short-line and list rules (Penedo et al., 2024);
//! - for Japanese, character counts, hiragana and katakana shares and Japanese terminal
//!   punctuation instead of the word rules (after the Swallow corpus and llm-jp-corpus).
//!
//! Words are whitespace-separated tokens; a token's length is counted without the
//! punctuation around it. Lines and paragraphs are the non-blank ones.

use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasherDefault, Hasher};

use crate::config::{CurateConfig, JapaneseRules, LineRules, RepetitionRules, WordRules};
use crate::minhash::{hash_str, hash_u64s};
use crate::rules::{Rule, RuleSet};
use crate::text::{self, ScriptCounts, ratio};

/// Characters a bullet line starts with (Gopher's • and -, and common others; not ○ or
/// □, which Japanese text uses for elided names, ○○さん).
const BULLETS: &[char] = &['•', '-', '*', '‣', '◦', '▪', '■', '●', '◆', '・', '–'];
/// Line endings C4 and FineWeb count as terminal punctuation.
const TERMINAL: &[char] = &['.', '!', '?', '"', '\'', '”', '’', '…', '。', '！', '？'];
/// Japanese line endings counted as terminal (sentence ends and closing quotes).
const JA_TERMINAL: &[char] = &[
    '。', '．', '.', '！', '？', '!', '?', '」', '』', '）', ')', '…', '”', '"', '】',
];

/// One document as the rules see it.
#[derive(Debug)]
pub struct DocView<'a> {
    /// The text.
    pub text: &'a str,
    /// Its character counts.
    pub counts: ScriptCounts,
    /// Whether it is Japanese (then the `ja_*` rules replace the word rules).
    pub japanese: bool,
    /// Its non-blank lines, trimmed.
    pub lines: Vec<&'a str>,
    /// Its whitespace-separated words (empty for Japanese documents).
    pub words: Vec<&'a str>,
}

impl<'a> DocView<'a> {
    /// Looks at `text`; it is Japanese when kana and kanji make `japanese_min_share` of
    /// its letters.
    pub fn new(text: &'a str, japanese_min_share: f64) -> Self {
        let counts = ScriptCounts::of(text);
        let japanese = counts.is_japanese(japanese_min_share);
        let words = if japanese {
            Vec::new()
        } else {
            text.split_whitespace().collect()
        };
        Self {
            text,
            counts,
            japanese,
            lines: text::lines(text),
            words,
        }
    }
}

/// `Some(rule)` when `rule` is on and `fails` says the document fails it.
fn fire(on: &RuleSet, rule: Rule, fails: impl FnOnce() -> bool) -> Option<Rule> {
    (on.has(rule) && fails()).then_some(rule)
}

/// The first quality rule `doc` fails, if any.
pub fn check(doc: &DocView, cfg: &CurateConfig, on: &RuleSet) -> Option<Rule> {
    let language = if doc.japanese {
        japanese_rules(doc, &cfg.japanese, on)
    } else {
        word_rules(doc, &cfg.words, on)
    };
    language
        .or_else(|| line_rules(doc, &cfg.lines, on))
        .or_else(|| repetition_rules(doc, &cfg.repetition, on))
        .or_else(|| {
            if doc.japanese {
                fire(on, Rule::JaTerminalPunct, || {
                    let share = line_share(&doc.lines, |l| l.ends_with(JA_TERMINAL));
                    share < cfg.japanese.min_terminal_punct_lines
                })
            } else {
                web_line_rules(doc, &cfg.lines, on)
            }
        })
}

/// Gopher's quality rules on words.
fn word_rules(doc: &DocView, cfg: &WordRules, on: &RuleSet) -> Option<Rule> {
    // Words with a letter or digit, without the punctuation around them.
    let content: Vec<&str> = doc
        .words
        .iter()
        .map(|w| w.trim_matches(|c: char| !c.is_alphanumeric()))
        .filter(|w| !w.is_empty())
        .collect();
    let n = doc.words.len().max(1) as f64;
    fire(on, Rule::GopherWordCount, || {
        content.len() < cfg.min_words || content.len() > cfg.max_words
    })
    .or_else(|| {
        fire(on, Rule::GopherMeanWordLength, || {
            let chars: usize = content.iter().map(|w| w.chars().count()).sum();
            let mean = ratio(chars, content.len());
            mean < cfg.min_mean_word_length || mean > cfg.max_mean_word_length
        })
    })
    .or_else(|| {
        fire(on, Rule::GopherSymbolRatio, || {
            let hashes = doc.text.matches('#').count() as f64;
            let dots = doc.text.matches("...").count() + doc.text.matches('…').count();
            hashes / n > cfg.max_symbol_ratio || dots as f64 / n > cfg.max_symbol_ratio
        })
    })
    .or_else(|| {
        fire(on, Rule::GopherAlphaWords, || {
            let alpha = doc
                .words
                .iter()
                .filter(|w| w.chars().any(char::is_alphabetic));
            (alpha.count() as f64 / n) < cfg.min_alpha_words
        })
    })
}

/// Character-based rules for Japanese documents.
fn japanese_rules(doc: &DocView, cfg: &JapaneseRules, on: &RuleSet) -> Option<Rule> {
    let c = &doc.counts;
    fire(on, Rule::JaCharCount, || {
        c.visible < cfg.min_chars || c.visible > cfg.max_chars
    })
    .or_else(|| {
        fire(on, Rule::JaHiragana, || {
            c.hiragana == 0 || ratio(c.hiragana, c.visible) < cfg.min_hiragana
        })
    })
    .or_else(|| {
        fire(on, Rule::JaKatakana, || {
            ratio(c.katakana, c.visible) > cfg.max_katakana
        })
    })
}

/// The share of `lines` for which `pred` holds (0 without lines).
fn line_share(lines: &[&str], pred: impl Fn(&str) -> bool) -> f64 {
    ratio(lines.iter().filter(|l| pred(l)).count(), lines.len())
}

/// Gopher's bullet and ellipsis line rules, and the digit share.
fn line_rules(doc: &DocView, cfg: &LineRules, on: &RuleSet) -> Option<Rule> {
    fire(on, Rule::GopherBulletLines, || {
        line_share(&doc.lines, |l| l.starts_with(BULLETS)) > cfg.max_bullet_lines
    })
    .or_else(|| {
        fire(on, Rule::GopherEllipsisLines, || {
            let ellipsis = |l: &str| l.ends_with("...") || l.ends_with('…');
            line_share(&doc.lines, ellipsis) > cfg.max_ellipsis_lines
        })
    })
    .or_else(|| {
        fire(on, Rule::DigitRatio, || {
            ratio(doc.counts.digits, doc.counts.visible) > cfg.max_digit_ratio
        })
    })
}

/// C4 / FineWeb line rules for space-separated text.
fn web_line_rules(doc: &DocView, cfg: &LineRules, on: &RuleSet) -> Option<Rule> {
    fire(on, Rule::FinewebLinePunct, || {
        line_share(&doc.lines, |l| l.ends_with(TERMINAL)) < cfg.min_terminal_punct_lines
    })
    .or_else(|| {
        fire(on, Rule::FinewebShortLines, || {
            let short = |l: &str| l.chars().count() <= cfg.short_line_chars;
            line_share(&doc.lines, short) >= cfg.max_short_lines
        })
    })
    .or_else(|| {
        fire(on, Rule::FinewebListRatio, || {
            let breaks = doc.text.matches('\n').count();
            ratio(breaks, doc.words.len()) > cfg.max_newlines_per_word
        })
    })
}

/// Gopher's repetition rules: repeated paragraphs and lines (all documents), the top
/// and repeated word n-grams (space-separated text only: character n-grams of whole
/// Japanese books repeat far more than these shares allow).
fn repetition_rules(doc: &DocView, cfg: &RepetitionRules, on: &RuleSet) -> Option<Rule> {
    let total = doc.counts.total;
    let paragraphs = text::paragraphs(doc.text);
    let (dup_paras, dup_para_chars) = duplicates(&paragraphs);
    let (dup_lines, dup_line_chars) = duplicates(&doc.lines);
    let words = Words::new(&doc.words);
    fire(on, Rule::GopherDupParagraphs, || {
        ratio(dup_paras, paragraphs.len()) > cfg.max_dup_paragraphs
    })
    .or_else(|| {
        fire(on, Rule::GopherDupParagraphChars, || {
            ratio(dup_para_chars, total) > cfg.max_dup_paragraph_chars
        })
    })
    .or_else(|| {
        fire(on, Rule::GopherDupLines, || {
            ratio(dup_lines, doc.lines.len()) > cfg.max_dup_lines
        })
    })
    .or_else(|| {
        fire(on, Rule::GopherDupLineChars, || {
            ratio(dup_line_chars, total) > cfg.max_dup_line_chars
        })
    })
    .or_else(|| {
        fire(on, Rule::GopherTopNgram, || {
            let over = |&(n, share): &(usize, f64)| ratio(words.top_ngram_chars(n), total) > share;
            cfg.top_ngrams.iter().any(over)
        })
    })
    .or_else(|| {
        fire(on, Rule::GopherDupNgram, || {
            let over = |&(n, share): &(usize, f64)| ratio(words.dup_ngram_chars(n), total) > share;
            cfg.dup_ngrams.iter().any(over)
        })
    })
}

/// A hasher for keys that already are well-mixed 64-bit hashes.
#[derive(Default)]
struct PreHashed(u64);

impl Hasher for PreHashed {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }

    fn write_u64(&mut self, v: u64) {
        self.0 = v;
    }
}

type HashedMap<V> = HashMap<u64, V, BuildHasherDefault<PreHashed>>;
type HashedSet = HashSet<u64, BuildHasherDefault<PreHashed>>;

/// How many items repeat an earlier one, and their characters. Items are compared by
/// a 64-bit hash (a false match is a one-in-10¹⁹ event).
pub fn duplicates(items: &[&str]) -> (usize, usize) {
    let mut seen = HashedSet::with_capacity_and_hasher(items.len(), Default::default());
    let (mut count, mut chars) = (0, 0);
    for item in items {
        if !seen.insert(hash_str(item)) {
            count += 1;
            chars += item.chars().count();
        }
    }
    (count, chars)
}

/// The words of a document as hashes and character counts, for the n-gram rules.
#[derive(Debug)]
pub struct Words {
    hashes: Vec<u64>,
    chars: Vec<usize>,
}

impl Words {
    /// Hashes `words` once.
    pub fn new(words: &[&str]) -> Self {
        Self {
            hashes: words.iter().map(|w| hash_str(w)).collect(),
            chars: words.iter().map(|w| w.chars().count()).collect(),
        }
    }

    fn ngram_chars(&self, i: usize, n: usize) -> usize {
        self.chars[i..i + n].iter().sum()
    }

    /// Characters covered by the most frequent word n-gram: its length with single spaces
    /// times its count, the first in the text among equally frequent ones — datatrove's
    /// `find_top_duplicate` (`Counter.most_common(1)`), a count of 1 included.
    pub fn top_ngram_chars(&self, n: usize) -> usize {
        if n == 0 || self.hashes.len() < n {
            return 0;
        }
        // hash -> (count, first position, length)
        let mut counts: HashedMap<(usize, usize, usize)> =
            HashedMap::with_capacity_and_hasher(self.hashes.len(), Default::default());
        for (i, gram) in self.hashes.windows(n).enumerate() {
            let entry = counts
                .entry(hash_u64s(gram))
                .or_insert_with(|| (0, i, self.ngram_chars(i, n) + n - 1));
            entry.0 += 1;
        }
        counts
            .into_values()
            .max_by(|a, b| a.0.cmp(&b.0).then(b.1.cmp(&a.1)))
            .map_or(0, |(k, _, len)| k * len)
    }

    /// Characters (spaces not counted) in word n-grams that repeat an earlier one;
    /// after a repeat the scan jumps past it, so overlapping repeats count once.
    pub fn dup_ngram_chars(&self, n: usize) -> usize {
        if n == 0 {
            return 0;
        }
        let mut seen = HashedSet::with_capacity_and_hasher(self.hashes.len(), Default::default());
        let mut chars = 0;
        let mut i = 0;
        while i + n <= self.hashes.len() {
            if seen.insert(hash_u64s(&self.hashes[i..i + n])) {
                i += 1;
            } else {
                chars += self.ngram_chars(i, n);
                i += n;
            }
        }
        chars
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn duplicate_counts_follow_gopher() {
        assert_eq!(duplicates(&["a", "bb", "a", "bb", "c", "a"]), (3, 4));
        let w: Vec<&str> = "a b a b a b".split(' ').collect();
        let words = Words::new(&w);
        // "a b" ×3: 3 × 3 chars.
        assert_eq!(words.top_ngram_chars(2), 9);
        // All n-grams once: the first ("x y", 3 chars) × 1, as `most_common(1)` picks it.
        assert_eq!(Words::new(&["x", "y", "zz"]).top_ngram_chars(2), 3);
        // "a b" seen at 0, "b a" at 1, then "a b" repeats at 2 (2 chars), jump to 4:
        // "a b" repeats again (2 chars).
        assert_eq!(words.dup_ngram_chars(2), 4);
        assert_eq!(words.dup_ngram_chars(7), 0);
        assert_eq!(words.top_ngram_chars(0), 0);
    }
}
