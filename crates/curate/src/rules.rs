//! The names of every rule, in the order they are applied: the first rule that fires on
//! a document is the one the report counts it under.

use serde::{Deserialize, Serialize};

/// One reason to remove a document. The snake-case name is what configs (`disable`)
/// and reports use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Rule {
    /// Nothing but whitespace (after Aozora cleaning).
    Empty,
    /// The same normalised text as a document already kept.
    ExactDedup,
    /// Gopher: fewer than `words.min_words` or more than `words.max_words` words.
    GopherWordCount,
    /// Gopher: mean word length outside `words.min_mean_word_length..=max_…`.
    GopherMeanWordLength,
    /// Gopher: `#` or ellipses per word above `words.max_symbol_ratio`.
    GopherSymbolRatio,
    /// Gopher: under `words.min_alpha_words` of the words contain a letter.
    GopherAlphaWords,
    /// Japanese: fewer than `japanese.min_chars` or more than `japanese.max_chars`
    /// characters.
    JaCharCount,
    /// Japanese: no hiragana, or under `japanese.min_hiragana` of the characters.
    JaHiragana,
    /// Japanese: more than `japanese.max_katakana` of the characters are katakana.
    JaKatakana,
    /// Gopher: more than `lines.max_bullet_lines` of the lines start with a bullet.
    GopherBulletLines,
    /// Gopher: more than `lines.max_ellipsis_lines` of the lines end with an ellipsis.
    GopherEllipsisLines,
    /// More than `lines.max_digit_ratio` of the characters are digits.
    DigitRatio,
    /// Gopher: more than `repetition.max_dup_paragraphs` of the paragraphs repeat.
    GopherDupParagraphs,
    /// Gopher: repeated paragraphs hold more than `repetition.max_dup_paragraph_chars`
    /// of the characters.
    GopherDupParagraphChars,
    /// Gopher: more than `repetition.max_dup_lines` of the lines repeat.
    GopherDupLines,
    /// Gopher: repeated lines hold more than `repetition.max_dup_line_chars` of the
    /// characters.
    GopherDupLineChars,
    /// Gopher: the most frequent word n-gram covers too much text (`top_ngrams`).
    GopherTopNgram,
    /// Gopher: repeated word n-grams cover too much text (`dup_ngrams`).
    GopherDupNgram,
    /// C4 / FineWeb: under `lines.min_terminal_punct_lines` of the lines end in
    /// terminal punctuation.
    FinewebLinePunct,
    /// FineWeb: at least `lines.max_short_lines` of the lines are short.
    FinewebShortLines,
    /// FineWeb: more than `lines.max_newlines_per_word` line breaks per word (lists).
    FinewebListRatio,
    /// Japanese: under `japanese.min_terminal_punct_lines` of the lines end in 。！？」…
    JaTerminalPunct,
    /// More than `blocklist.max_hits` matches of the user's word list.
    Blocklist,
    /// MinHash: estimated Jaccard similarity to a kept document ≥ `near_dedup.threshold`.
    NearDedup,
}

impl Rule {
    /// Every rule, in the order they are applied.
    pub const ALL: [Rule; 24] = [
        Rule::Empty,
        Rule::ExactDedup,
        Rule::GopherWordCount,
        Rule::GopherMeanWordLength,
        Rule::GopherSymbolRatio,
        Rule::GopherAlphaWords,
        Rule::JaCharCount,
        Rule::JaHiragana,
        Rule::JaKatakana,
        Rule::GopherBulletLines,
        Rule::GopherEllipsisLines,
        Rule::DigitRatio,
        Rule::GopherDupParagraphs,
        Rule::GopherDupParagraphChars,
        Rule::GopherDupLines,
        Rule::GopherDupLineChars,
        Rule::GopherTopNgram,
        Rule::GopherDupNgram,
        Rule::FinewebLinePunct,
        Rule::FinewebShortLines,
        Rule::FinewebListRatio,
        Rule::JaTerminalPunct,
        Rule::Blocklist,
        Rule::NearDedup,
    ];

    /// Position in [`Rule::ALL`].
    pub fn index(self) -> usize {
        self as usize
    }

    /// The snake-case name configs and reports use.
    pub fn name(self) -> &'static str {
        match self {
            Rule::Empty => "empty",
            Rule::ExactDedup => "exact_dedup",
            Rule::GopherWordCount => "gopher_word_count",
            Rule::GopherMeanWordLength => "gopher_mean_word_length",
            Rule::GopherSymbolRatio => "gopher_symbol_ratio",
            Rule::GopherAlphaWords => "gopher_alpha_words",
            Rule::JaCharCount => "ja_char_count",
            Rule::JaHiragana => "ja_hiragana",
            Rule::JaKatakana => "ja_katakana",
            Rule::GopherBulletLines => "gopher_bullet_lines",
            Rule::GopherEllipsisLines => "gopher_ellipsis_lines",
            Rule::DigitRatio => "digit_ratio",
            Rule::GopherDupParagraphs => "gopher_dup_paragraphs",
            Rule::GopherDupParagraphChars => "gopher_dup_paragraph_chars",
            Rule::GopherDupLines => "gopher_dup_lines",
            Rule::GopherDupLineChars => "gopher_dup_line_chars",
            Rule::GopherTopNgram => "gopher_top_ngram",
            Rule::GopherDupNgram => "gopher_dup_ngram",
            Rule::FinewebLinePunct => "fineweb_line_punct",
            Rule::FinewebShortLines => "fineweb_short_lines",
            Rule::FinewebListRatio => "fineweb_list_ratio",
            Rule::JaTerminalPunct => "ja_terminal_punct",
            Rule::Blocklist => "blocklist",
            Rule::NearDedup => "near_dedup",
        }
    }
}

impl std::fmt::Display for Rule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Which rules are switched on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RuleSet {
    on: [bool; Rule::ALL.len()],
}

impl RuleSet {
    /// Every rule on except those in `disabled`.
    pub fn without(disabled: &[Rule]) -> Self {
        let mut on = [true; Rule::ALL.len()];
        for r in disabled {
            on[r.index()] = false;
        }
        Self { on }
    }

    /// Whether `rule` is on.
    pub fn has(&self, rule: Rule) -> bool {
        self.on[rule.index()]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn all_is_in_declaration_order_and_names_match_serde() {
        for (i, r) in Rule::ALL.iter().enumerate() {
            assert_eq!(r.index(), i, "{r}");
            let json = serde_json::to_string(r).unwrap();
            assert_eq!(json, format!("\"{}\"", r.name()));
            let back: Rule = serde_json::from_str(&json).unwrap();
            assert_eq!(back, *r);
        }
        let set = RuleSet::without(&[Rule::NearDedup]);
        assert!(set.has(Rule::Empty) && !set.has(Rule::NearDedup));
    }
}
