//! Text helpers every rule shares: the normalised form that exact deduplication hashes
//! and block lists match (NFKC, lower case, whitespace collapsed — as datatrove's
//! `simplify_text` and the CCNet normaliser do), the script counts that tell a Japanese
//! document from a space-separated one, and the line and paragraph splits.

use icu_normalizer::ComposingNormalizerBorrowed;

/// NFKC, then lower case, then every run of whitespace as one space, trimmed.
/// Full-width letters and digits fold to ASCII and half-width katakana to full width,
/// so `ＡＢＣ１` and `abc1` normalise alike.
pub fn normalize(text: &str) -> String {
    let nfkc = ComposingNormalizerBorrowed::new_nfkc().normalize(text);
    let mut out = String::with_capacity(nfkc.len());
    for word in nfkc.split_whitespace() {
        if !out.is_empty() {
            out.push(' ');
        }
        for c in word.chars() {
            out.extend(c.to_lowercase());
        }
    }
    out
}

/// Hiragana, including the iteration marks ゝゞ (U+3041–U+309F).
pub fn is_hiragana(c: char) -> bool {
    ('\u{3041}'..='\u{309F}').contains(&c)
}

/// Katakana (full width, the phonetic extensions and half width), without the middle
/// dot ・ (U+30FB), which is punctuation.
pub fn is_katakana(c: char) -> bool {
    (('\u{30A1}'..='\u{30FF}').contains(&c) && c != '\u{30FB}')
        || ('\u{31F0}'..='\u{31FF}').contains(&c)
        || ('\u{FF66}'..='\u{FF9F}').contains(&c)
}

/// CJK ideographs (the unified blocks, extension A, the compatibility block and the
/// supplementary planes) and the marks 々 〆 〇 that write like kanji.
pub fn is_kanji(c: char) -> bool {
    ('\u{4E00}'..='\u{9FFF}').contains(&c)
        || ('\u{3400}'..='\u{4DBF}').contains(&c)
        || ('\u{F900}'..='\u{FAFF}').contains(&c)
        || ('\u{20000}'..='\u{3FFFF}').contains(&c)
        || matches!(c, '々' | '〆' | '〇')
}

/// Character counts of one document, by class.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ScriptCounts {
    /// Every character, whitespace included.
    pub total: usize,
    /// Characters that are not whitespace.
    pub visible: usize,
    /// Alphabetic characters (Latin letters, kana and kanji all count).
    pub letters: usize,
    /// Hiragana.
    pub hiragana: usize,
    /// Katakana.
    pub katakana: usize,
    /// Kanji.
    pub kanji: usize,
    /// Numeric characters (`0`–`9`, full-width digits, ①, …; not 一二三).
    pub digits: usize,
}

impl ScriptCounts {
    /// Counts the characters of `text`.
    pub fn of(text: &str) -> Self {
        let mut n = Self::default();
        for c in text.chars() {
            n.total += 1;
            if c.is_whitespace() {
                continue;
            }
            n.visible += 1;
            if c.is_alphabetic() {
                n.letters += 1;
                if is_hiragana(c) {
                    n.hiragana += 1;
                } else if is_katakana(c) {
                    n.katakana += 1;
                } else if is_kanji(c) {
                    n.kanji += 1;
                }
            } else if c.is_numeric() {
                n.digits += 1;
            }
        }
        n
    }

    /// Kana and kanji as a share of the letters (0 when there are none).
    pub fn japanese_share(&self) -> f64 {
        ratio(self.hiragana + self.katakana + self.kanji, self.letters)
    }

    /// Whether the document is Japanese: kana and kanji make at least `min_share` of its
    /// letters. Chinese passes this too and is then removed by `ja_hiragana`, as the
    /// Japanese corpus filters (llm-jp-corpus, Swallow) remove it.
    pub fn is_japanese(&self, min_share: f64) -> bool {
        self.letters > 0 && self.japanese_share() >= min_share
    }
}

/// `part / whole`, 0 when `whole` is 0.
pub fn ratio(part: usize, whole: usize) -> f64 {
    if whole == 0 {
        0.0
    } else {
        part as f64 / whole as f64
    }
}

/// The non-blank lines of `text`, trimmed.
pub fn lines(text: &str) -> Vec<&str> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect()
}

/// The paragraphs of `text` (runs of non-blank lines between blank lines), trimmed.
pub fn paragraphs(text: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut start: Option<usize> = None;
    let mut end = 0;
    let mut pos = 0;
    for line in text.split_inclusive('\n') {
        if line.trim().is_empty() {
            if let Some(s) = start.take() {
                out.push(text[s..end].trim());
            }
        } else {
            start.get_or_insert(pos);
            end = pos + line.len();
        }
        pos += line.len();
    }
    if let Some(s) = start {
        out.push(text[s..end].trim());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalisation_folds_width_case_and_whitespace() {
        assert_eq!(
            normalize("  ＡＢＣ１\u{3000}Hello\r\n\tWORLD  "),
            "abc1 hello world"
        );
        assert_eq!(normalize("ｶﾀｶﾅ"), "カタカナ");
        assert_eq!(normalize(""), "");
    }

    #[test]
    fn script_counts_tell_japanese_from_english() {
        let ja = ScriptCounts::of("吾輩は猫である。名前はまだ無い。");
        assert!(ja.is_japanese(0.3));
        assert_eq!(ja.hiragana, 8);
        assert_eq!(ja.kanji, 6);
        let en = ScriptCounts::of("The cat sat on the mat, 42 times.");
        assert!(!en.is_japanese(0.3));
        assert_eq!(en.digits, 2);
        assert_eq!(en.visible, 26);
        assert!(!ScriptCounts::of("  \n").is_japanese(0.3));
    }

    #[test]
    fn lines_and_paragraphs_skip_blanks() {
        let t = "\n a \nb\n\n \n c\nd \n";
        assert_eq!(lines(t), ["a", "b", "c", "d"]);
        assert_eq!(paragraphs(t), ["a \nb", "c\nd"]);
        assert_eq!(paragraphs("one"), ["one"]);
        assert!(paragraphs(" \n").is_empty());
    }
}
