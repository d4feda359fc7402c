//! The curation config: every rule's threshold with its default, read from the
//! `[curate]` table of a TOML file (`crates/curate/curate.toml` lists every key).
//! Unknown keys are errors that name the key and its line, as in `configs/**/*.toml`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{CurateError, Result};
use crate::rules::{Rule, RuleSet};

/// Everything `curate` can be told, with defaults from Gopher, C4, FineWeb, datatrove
/// and the Japanese corpus filters (see the crate README).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct CurateConfig {
    /// Rules switched off, by name (`gopher_word_count`, `near_dedup`, …).
    pub disable: Vec<Rule>,
    /// Clean Aozora Bunko markup, header and footer before anything else.
    pub aozora: bool,
    /// MinHash near-duplicate removal.
    pub near_dedup: NearDedupConfig,
    /// Gopher quality rules on words (space-separated languages).
    pub words: WordRules,
    /// Line rules (Gopher bullets and ellipses, C4 / FineWeb line rules, digits).
    pub lines: LineRules,
    /// Gopher repetition rules.
    pub repetition: RepetitionRules,
    /// Japanese detection and rules.
    pub japanese: JapaneseRules,
    /// Word lists of harmful content.
    pub blocklist: BlocklistConfig,
}

/// MinHash + LSH parameters (`[curate.near_dedup]`); defaults as datatrove's.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NearDedupConfig {
    /// Shingle size: words, or characters for text without spaces.
    pub ngram: usize,
    /// LSH bands.
    pub bands: usize,
    /// Hashes per band (bands × rows hashes in all).
    pub rows: usize,
    /// A candidate pair is a duplicate when its estimated Jaccard similarity is at least
    /// this; 0 takes every LSH collision as a duplicate (datatrove's behaviour).
    pub threshold: f64,
    /// Seed of the hash permutations (the same seed gives the same result everywhere).
    pub seed: u64,
    /// Documents with fewer whitespace characters than this share of their characters
    /// are shingled by characters (Japanese, Chinese), others by words.
    pub char_shingles_below_space_ratio: f64,
}

impl Default for NearDedupConfig {
    fn default() -> Self {
        Self {
            ngram: 5,
            bands: 14,
            rows: 8,
            threshold: 0.8,
            seed: 1,
            char_shingles_below_space_ratio: 0.05,
        }
    }
}

/// Gopher's quality rules on words (`[curate.words]`), for documents that are not
/// Japanese. Defaults from Rae et al. (2021), as datatrove's `GopherQualityFilter`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WordRules {
    /// Fewest words (words with at least one letter or digit).
    pub min_words: usize,
    /// Most words.
    pub max_words: usize,
    /// Shortest mean word length, in characters.
    pub min_mean_word_length: f64,
    /// Longest mean word length, in characters.
    pub max_mean_word_length: f64,
    /// Most `#` per word, and most ellipses (`...`, `…`) per word.
    pub max_symbol_ratio: f64,
    /// Least share of words with at least one letter.
    pub min_alpha_words: f64,
}

impl Default for WordRules {
    fn default() -> Self {
        Self {
            min_words: 50,
            max_words: 100_000,
            min_mean_word_length: 3.0,
            max_mean_word_length: 10.0,
            max_symbol_ratio: 0.1,
            min_alpha_words: 0.8,
        }
    }
}

/// Rules on lines (`[curate.lines]`); shares are of the non-blank lines.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LineRules {
    /// Gopher: most lines starting with a bullet (• - * ・ ● ■ …).
    pub max_bullet_lines: f64,
    /// Gopher: most lines ending with an ellipsis.
    pub max_ellipsis_lines: f64,
    /// Most digits among the non-whitespace characters.
    pub max_digit_ratio: f64,
    /// C4 / FineWeb: least lines ending in terminal punctuation (not Japanese).
    pub min_terminal_punct_lines: f64,
    /// FineWeb: lines of at most this many characters are short.
    pub short_line_chars: usize,
    /// FineWeb: a document is removed when at least this share of lines is short.
    pub max_short_lines: f64,
    /// FineWeb: most line breaks per word (lists of links, menus).
    pub max_newlines_per_word: f64,
}

impl Default for LineRules {
    fn default() -> Self {
        Self {
            max_bullet_lines: 0.9,
            max_ellipsis_lines: 0.3,
            max_digit_ratio: 0.3,
            min_terminal_punct_lines: 0.12,
            short_line_chars: 30,
            max_short_lines: 0.67,
            max_newlines_per_word: 0.3,
        }
    }
}

/// Gopher's repetition rules (`[curate.repetition]`); defaults from Rae et al. (2021),
/// as datatrove's `GopherRepetitionFilter`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RepetitionRules {
    /// Most paragraphs that repeat an earlier one.
    pub max_dup_paragraphs: f64,
    /// Most characters in repeated paragraphs.
    pub max_dup_paragraph_chars: f64,
    /// Most lines that repeat an earlier one.
    pub max_dup_lines: f64,
    /// Most characters in repeated lines.
    pub max_dup_line_chars: f64,
    /// `[n, share]`: the most frequent word n-gram (seen at least twice) may cover at
    /// most `share` of the characters.
    pub top_ngrams: Vec<(usize, f64)>,
    /// `[n, share]`: repeated word n-grams may cover at most `share` of the characters.
    pub dup_ngrams: Vec<(usize, f64)>,
}

impl Default for RepetitionRules {
    fn default() -> Self {
        Self {
            max_dup_paragraphs: 0.3,
            max_dup_paragraph_chars: 0.2,
            max_dup_lines: 0.3,
            max_dup_line_chars: 0.2,
            top_ngrams: vec![(2, 0.2), (3, 0.18), (4, 0.16)],
            dup_ngrams: vec![
                (5, 0.15),
                (6, 0.14),
                (7, 0.13),
                (8, 0.12),
                (9, 0.11),
                (10, 0.10),
            ],
        }
    }
}

/// Japanese detection and rules (`[curate.japanese]`), after the Swallow corpus
/// (Okazaki et al., 2024) and llm-jp-corpus filters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct JapaneseRules {
    /// A document is Japanese when kana and kanji make at least this share of its letters.
    pub min_share: f64,
    /// Fewest non-whitespace characters.
    pub min_chars: usize,
    /// Most non-whitespace characters.
    pub max_chars: usize,
    /// Least hiragana among the non-whitespace characters (and at least one).
    pub min_hiragana: f64,
    /// Most katakana among the non-whitespace characters.
    pub max_katakana: f64,
    /// Least lines ending in 。．！？!?」』）…
    pub min_terminal_punct_lines: f64,
}

impl Default for JapaneseRules {
    fn default() -> Self {
        Self {
            min_share: 0.3,
            min_chars: 400,
            max_chars: 1_000_000,
            min_hiragana: 0.2,
            max_katakana: 0.5,
            min_terminal_punct_lines: 0.2,
        }
    }
}

/// Word lists of harmful content (`[curate.blocklist]`); none by default.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct BlocklistConfig {
    /// Language → word list file (one word per line, `#` comments). `ja` applies to
    /// Japanese documents, `*` to all, any other key to documents that are not Japanese.
    /// Relative paths are relative to the config file.
    pub files: BTreeMap<String, PathBuf>,
    /// A document is removed when its matches exceed this.
    pub max_hits: usize,
}

/// The file layout: everything under `[curate]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ConfigFile {
    #[serde(default)]
    curate: CurateConfig,
}

impl CurateConfig {
    /// Reads the `[curate]` table of a TOML file and checks it. Errors name the file,
    /// the key and its line; relative block-list paths become relative to the file.
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| CurateError::io(path, e))?;
        let mut cfg = Self::from_toml_str(&text).map_err(|e| e.in_file(path))?;
        let base = path.parent().unwrap_or(Path::new(""));
        for file in cfg.blocklist.files.values_mut() {
            if file.is_relative() {
                *file = base.join(&*file);
            }
        }
        Ok(cfg)
    }

    /// Parses TOML text with a `[curate]` table and checks it.
    pub fn from_toml_str(text: &str) -> Result<Self> {
        let table: toml::Table = toml::from_str(text).map_err(|e| {
            let line = e
                .span()
                .map(|s| format!(" (line {})", line_at(text, s.start)))
                .unwrap_or_default();
            CurateError::config("toml", format!("{}{line}", e.message().trim()))
        })?;
        let file: ConfigFile = serde_path_to_error::deserialize(toml::Value::Table(table))
            .map_err(|e| {
                let path = e.path().to_string();
                key_error(&path, e.into_inner().message(), text)
            })?;
        file.curate.validate()?;
        Ok(file.curate)
    }

    /// The rules that are on.
    pub fn rule_set(&self) -> RuleSet {
        RuleSet::without(&self.disable)
    }

    /// Checks values the types do not; errors name the key.
    pub fn validate(&self) -> Result<()> {
        let n = &self.near_dedup;
        positive("curate.near_dedup.ngram", n.ngram)?;
        positive("curate.near_dedup.bands", n.bands)?;
        positive("curate.near_dedup.rows", n.rows)?;
        let hashes = n.bands.saturating_mul(n.rows);
        if hashes > 4096 {
            return Err(CurateError::config(
                "curate.near_dedup.bands",
                format!("bands × rows = {hashes} hashes; at most 4096"),
            ));
        }
        share("curate.near_dedup.threshold", n.threshold)?;
        share(
            "curate.near_dedup.char_shingles_below_space_ratio",
            n.char_shingles_below_space_ratio,
        )?;
        let w = &self.words;
        ordered(
            "curate.words.min_words",
            w.min_words as f64,
            w.max_words as f64,
        )?;
        ordered(
            "curate.words.min_mean_word_length",
            w.min_mean_word_length,
            w.max_mean_word_length,
        )?;
        let j = &self.japanese;
        ordered(
            "curate.japanese.min_chars",
            j.min_chars as f64,
            j.max_chars as f64,
        )?;
        for (key, v) in self.shares() {
            share(key, v)?;
        }
        non_negative("curate.words.max_symbol_ratio", self.words.max_symbol_ratio)?;
        non_negative(
            "curate.lines.max_newlines_per_word",
            self.lines.max_newlines_per_word,
        )?;
        for (key, list) in [
            ("curate.repetition.top_ngrams", &self.repetition.top_ngrams),
            ("curate.repetition.dup_ngrams", &self.repetition.dup_ngrams),
        ] {
            for &(n, s) in list {
                positive(key, n)?;
                share(key, s)?;
            }
        }
        Ok(())
    }

    /// Every threshold that is a share of something, with its key.
    fn shares(&self) -> [(&'static str, f64); 14] {
        let (w, l, r, j) = (&self.words, &self.lines, &self.repetition, &self.japanese);
        [
            ("curate.words.min_alpha_words", w.min_alpha_words),
            ("curate.lines.max_bullet_lines", l.max_bullet_lines),
            ("curate.lines.max_ellipsis_lines", l.max_ellipsis_lines),
            ("curate.lines.max_digit_ratio", l.max_digit_ratio),
            (
                "curate.lines.min_terminal_punct_lines",
                l.min_terminal_punct_lines,
            ),
            ("curate.lines.max_short_lines", l.max_short_lines),
            ("curate.repetition.max_dup_paragraphs", r.max_dup_paragraphs),
            (
                "curate.repetition.max_dup_paragraph_chars",
                r.max_dup_paragraph_chars,
            ),
            ("curate.repetition.max_dup_lines", r.max_dup_lines),
            ("curate.repetition.max_dup_line_chars", r.max_dup_line_chars),
            ("curate.japanese.min_share", j.min_share),
            ("curate.japanese.min_hiragana", j.min_hiragana),
            ("curate.japanese.max_katakana", j.max_katakana),
            (
                "curate.japanese.min_terminal_punct_lines",
                j.min_terminal_punct_lines,
            ),
        ]
    }
}

fn positive(key: &str, v: usize) -> Result<()> {
    if v == 0 {
        return Err(CurateError::config(key, "must be at least 1"));
    }
    Ok(())
}

fn share(key: &str, v: f64) -> Result<()> {
    if !(0.0..=1.0).contains(&v) {
        return Err(CurateError::config(key, format!("{v} is not in 0..=1")));
    }
    Ok(())
}

fn non_negative(key: &str, v: f64) -> Result<()> {
    if !(v.is_finite() && v >= 0.0) {
        return Err(CurateError::config(key, format!("{v} must be 0 or more")));
    }
    Ok(())
}

fn ordered(key: &str, min: f64, max: f64) -> Result<()> {
    if !(min.is_finite() && max.is_finite() && min >= 0.0 && min <= max) {
        return Err(CurateError::config(
            key,
            format!("the minimum ({min}) must be between 0 and the maximum ({max})"),
        ));
    }
    Ok(())
}

/// A deserialisation error as `key: message (line N)`; an unknown key is named in full
/// (`curate.words.min_wrds`), not by its table.
fn key_error(path: &str, message: &str, text: &str) -> CurateError {
    let path = if path == "." { "" } else { path };
    let (key, message) = match message.strip_prefix("unknown field `") {
        Some(rest) => {
            let (name, expected) = rest.split_once('`').unwrap_or((rest, ""));
            // serde_path_to_error may or may not have pushed the key itself.
            let named = path == name || path.ends_with(&format!(".{name}"));
            let key = match (path.is_empty(), named) {
                (true, _) => name.to_string(),
                (false, true) => path.to_string(),
                (false, false) => format!("{path}.{name}"),
            };
            let expected = expected.trim_start_matches(',').trim();
            (key, format!("unknown key; {expected}"))
        }
        None if path.is_empty() => ("toml".to_string(), message.to_string()),
        None => (path.to_string(), message.to_string()),
    };
    // `curate.disable[1]` is on the line of `curate.disable`.
    let bare = key.split('[').next().unwrap_or(&key);
    let whence = line_of(text, bare).map_or(String::new(), |l| format!(" (line {l})"));
    CurateError::config(key, format!("{}{whence}", message.replace('\n', " ")))
}

/// The 1-based line holding byte `offset` of `text`.
fn line_at(text: &str, offset: usize) -> usize {
    let end = offset.min(text.len());
    text.as_bytes()[..end]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

/// The 1-based line of the dotted key `section.key` in a TOML text written as
/// `[section]` headers and `key = value` lines.
fn line_of(text: &str, dotted: &str) -> Option<usize> {
    let (section, key) = dotted.rsplit_once('.').unwrap_or(("", dotted));
    let mut current = String::new();
    for (i, line) in text.lines().enumerate() {
        let l = line.trim();
        if let Some(h) = l.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
            current = h.trim().to_string();
            if current == dotted {
                return Some(i + 1);
            }
            continue;
        }
        let name = l.split('=').next().unwrap_or("").trim();
        if current == section && name == key {
            return Some(i + 1);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_file_gives_the_defaults() {
        assert_eq!(
            CurateConfig::from_toml_str("").unwrap(),
            CurateConfig::default()
        );
        assert_eq!(
            CurateConfig::from_toml_str("[curate]\n").unwrap(),
            CurateConfig::default()
        );
    }

    #[test]
    fn values_and_disabled_rules_are_read() {
        let cfg = CurateConfig::from_toml_str(
            "[curate]\ndisable = [\"near_dedup\", \"digit_ratio\"]\naozora = true\n\
             [curate.near_dedup]\nthreshold = 0.7\n[curate.repetition]\ntop_ngrams = [[2, 0.3]]\n",
        )
        .unwrap();
        assert_eq!(cfg.disable, [Rule::NearDedup, Rule::DigitRatio]);
        assert!(cfg.aozora);
        assert_eq!(cfg.near_dedup.threshold, 0.7);
        assert_eq!(cfg.near_dedup.bands, 14);
        assert_eq!(cfg.repetition.top_ngrams, [(2, 0.3)]);
        assert!(!cfg.rule_set().has(Rule::NearDedup));
    }

    #[test]
    fn an_unknown_key_is_named_with_its_line() {
        let err = CurateConfig::from_toml_str("[curate]\n[curate.words]\nmin_wrds = 3\n")
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("curate.words.min_wrds: unknown key"),
            "{err}"
        );
        assert!(err.contains("(line 3)"), "{err}");
        assert!(!err.contains('\n'), "{err}");
        let err = CurateConfig::from_toml_str("[curat]\nx = 1\n")
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("curat: unknown key"), "{err}");
        let err = CurateConfig::from_toml_str("[curate]\ndisable = [\"gopher_wordcount\"]\n")
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("curate.disable[0]: "), "{err}");
        assert!(err.contains("gopher_wordcount"), "{err}");
        assert!(err.ends_with("(line 2)"), "{err}");
    }

    #[test]
    fn wrong_types_and_values_name_the_key() {
        let err = CurateConfig::from_toml_str("[curate.near_dedup]\nbands = \"many\"\n")
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("curate.near_dedup.bands: "), "{err}");
        assert!(err.contains("(line 2)"), "{err}");
        let err = CurateConfig::from_toml_str("[curate.near_dedup]\nthreshold = 1.5\n")
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("curate.near_dedup.threshold: "), "{err}");
        let err = CurateConfig::from_toml_str("[curate.words]\nmin_words = 10\nmax_words = 5\n")
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("curate.words.min_words: "), "{err}");
        let err = CurateConfig::from_toml_str("[curate\n")
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("toml: "), "{err}");
    }

    #[test]
    fn the_example_file_is_complete_and_matches_the_defaults() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("curate.toml");
        let cfg = CurateConfig::load(&path).unwrap();
        assert_eq!(cfg, CurateConfig::default());
        let text = std::fs::read_to_string(&path).unwrap();
        for key in [
            "disable",
            "aozora",
            "ngram",
            "bands",
            "rows",
            "threshold",
            "seed",
            "char_shingles_below_space_ratio",
            "min_words",
            "max_words",
            "min_mean_word_length",
            "max_mean_word_length",
            "max_symbol_ratio",
            "min_alpha_words",
            "max_bullet_lines",
            "max_ellipsis_lines",
            "max_digit_ratio",
            "min_terminal_punct_lines",
            "short_line_chars",
            "max_short_lines",
            "max_newlines_per_word",
            "max_dup_paragraphs",
            "max_dup_paragraph_chars",
            "max_dup_lines",
            "max_dup_line_chars",
            "top_ngrams",
            "dup_ngrams",
            "min_share",
            "min_chars",
            "max_chars",
            "min_hiragana",
            "max_katakana",
            "files",
            "max_hits",
        ] {
            assert!(
                text.contains(&format!("\n{key} = ")),
                "curate.toml lacks `{key}`"
            );
        }
    }
}
