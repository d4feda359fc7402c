//! Harmful-content removal with user-supplied word lists, one per language, matched
//! with Aho-Corasick on the normalised text (NFKC, lower case), so `ＢＡＤ`, `Bad` and
//! `bad` all match the entry `bad`.
//!
//! A list named `ja` applies to Japanese documents and matches anywhere (Japanese has no
//! spaces between words); a list named `*` applies to every document; any other name
//! (`en`, `de`, …) applies to documents that are not Japanese and matches whole words
//! only, so `ass` does not match `class`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use aho_corasick::{AhoCorasick, MatchKind};

use crate::error::{CurateError, Result};
use crate::text::normalize;

/// Which documents a list applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scope {
    Japanese,
    All,
    NotJapanese,
}

#[derive(Debug)]
struct List {
    scope: Scope,
    matcher: AhoCorasick,
}

/// The loaded word lists.
#[derive(Debug, Default)]
pub struct Blocklists {
    lists: Vec<List>,
}

impl Blocklists {
    /// Reads every list of `files` (language → file).
    pub fn load(files: &BTreeMap<String, PathBuf>) -> Result<Self> {
        let mut lists = Vec::new();
        for (lang, path) in files {
            let words = read_words(path)?;
            lists.push(Self::list(lang, &words, path)?);
        }
        Ok(Self { lists })
    }

    /// Lists from words in memory (language → words), normalised as the text is.
    pub fn from_words(lists: &[(&str, &[&str])]) -> Result<Self> {
        let mut out = Vec::new();
        for (lang, words) in lists {
            let words: Vec<String> = words.iter().map(|w| normalize(w)).collect();
            out.push(Self::list(lang, &words, Path::new(lang))?);
        }
        Ok(Self { lists: out })
    }

    fn list(lang: &str, words: &[String], path: &Path) -> Result<List> {
        let scope = match lang {
            "ja" => Scope::Japanese,
            "*" => Scope::All,
            _ => Scope::NotJapanese,
        };
        let words: Vec<&String> = words.iter().filter(|w| !w.is_empty()).collect();
        let matcher = AhoCorasick::builder()
            .match_kind(MatchKind::Standard)
            .build(&words)
            .map_err(|e| CurateError::Blocklist {
                path: path.to_path_buf(),
                line: None,
                message: e.to_string(),
            })?;
        Ok(List { scope, matcher })
    }

    /// Whether no list is loaded.
    pub fn is_empty(&self) -> bool {
        self.lists.is_empty()
    }

    /// Matches in a normalised text, counting up to `limit` (enough to decide).
    pub fn hits(&self, normalized: &str, japanese: bool, limit: usize) -> usize {
        let mut hits = 0;
        for list in &self.lists {
            let whole_words = match list.scope {
                Scope::Japanese if !japanese => continue,
                Scope::NotJapanese if japanese => continue,
                Scope::All => !japanese,
                Scope::Japanese => false,
                Scope::NotJapanese => true,
            };
            for m in list.matcher.find_overlapping_iter(normalized) {
                if !whole_words || is_whole_word(normalized, m.start(), m.end()) {
                    hits += 1;
                    if hits >= limit {
                        return hits;
                    }
                }
            }
        }
        hits
    }
}

/// Whether `text[start..end]` has no letter or digit just before or after it.
fn is_whole_word(text: &str, start: usize, end: usize) -> bool {
    let before = text[..start].chars().next_back();
    let after = text[end..].chars().next();
    !before.is_some_and(char::is_alphanumeric) && !after.is_some_and(char::is_alphanumeric)
}

/// The words of a list file: one per line, normalised; blank lines and lines starting
/// with `#` are skipped. UTF-8 (a BOM is accepted), `\n` or `\r\n`, gzip when `.gz`.
pub fn read_words(path: &Path) -> Result<Vec<String>> {
    let mut words = Vec::new();
    for line in manabi_tokenize::read_text_lines(path) {
        let (_, text) = line.map_err(|e| {
            let (path, line, message) = e.into_parts();
            CurateError::Blocklist {
                path,
                line,
                message,
            }
        })?;
        let text = text.trim();
        if text.is_empty() || text.starts_with('#') {
            continue;
        }
        words.push(normalize(text));
    }
    Ok(words)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whole_words_for_spaced_text_and_substrings_for_japanese() {
        let (en, ja): (&[&str], &[&str]) = (&["ass", "Bad Word"], &["悪語"]);
        let lists = Blocklists::from_words(&[("en", en), ("ja", ja)]).unwrap();
        let hits = |t: &str, ja| lists.hits(&normalize(t), ja, usize::MAX);
        assert_eq!(hits("a class of its own", false), 0);
        assert_eq!(hits("what an ass!", false), 1);
        assert_eq!(hits("ＢＡＤ   word and bad word", false), 2);
        assert_eq!(hits("これは悪語です", true), 1);
        // Lists apply to their own documents only.
        assert_eq!(hits("これは悪語です", false), 0);
        assert_eq!(hits("what an ass", true), 0);
        assert_eq!(hits("ass ass ass", false), 3);
        assert_eq!(lists.hits("ass ass ass", false, 2), 2);
    }

    #[test]
    fn list_files_skip_comments_and_blank_lines() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("en.txt");
        std::fs::write(
            &path,
            "\u{feff}# harmful words\r\nFoo\r\n\r\n  bar baz \r\n",
        )
        .unwrap();
        assert_eq!(read_words(&path).unwrap(), ["foo", "bar baz"]);
        let files = BTreeMap::from([("en".to_string(), path)]);
        let lists = Blocklists::load(&files).unwrap();
        assert_eq!(lists.hits("some foo here", false, 10), 1);

        let missing = BTreeMap::from([("ja".to_string(), dir.path().join("none.txt"))]);
        let err = Blocklists::load(&missing).unwrap_err().to_string();
        assert!(err.contains("none.txt"), "{err}");
    }
}
