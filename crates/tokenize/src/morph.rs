//! Morphological word splitting (cargo feature `morph`) with vibrato, a pure-Rust
//! re-implementation of MeCab's Viterbi lattice (<https://github.com/daac-tools/vibrato>),
//! and a system dictionary the user supplies (ipadic, unidic, … compiled by vibrato 0.5,
//! optionally zstd-compressed).
//!
//! Splitting is a text-to-text step before the `tokenizers` pipeline, the same when
//! training and when encoding:
//! - text matching an added (special) token is left as it is, so `<eos>` stays one token;
//! - whitespace is left as it is;
//! - inside each run of non-whitespace characters, one space is put at every boundary
//!   between the words the dictionary finds (`東京都に住む` → `東京 都 に 住む`).
//!
//! Runs longer than [`MAX_RUN_BYTES`] are cut first, after the last sentence-final mark
//! before the limit (or at the limit), so that one huge line cannot build a huge lattice.
//! Unknown words are grouped up to [`MAX_GROUPING_LEN`] characters, as MeCab does, so MeCab
//! with the same source dictionary (e.g. fugashi in Python) finds the same words.

use std::io::Read;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};

use aho_corasick::{AhoCorasick, MatchKind};
use rayon::prelude::*;
use sha2::{Digest, Sha256};

use crate::error::{Result, TokenizeError};
use crate::sidecar::{MECAB_SEPARATOR, MORPH_ENGINE, MORPH_SEPARATOR, MorphRecord, Sidecar};

/// The longest run of non-whitespace text analysed at once (about 21,000 kanji).
pub const MAX_RUN_BYTES: usize = 1 << 16;
/// MeCab's limit on grouping unknown characters into one word (vibrato's default is none).
pub const MAX_GROUPING_LEN: usize = 24;
/// The first bytes of a zstd frame.
const ZSTD_MAGIC: [u8; 4] = [0x28, 0xb5, 0x2f, 0xfd];
/// The first bytes of a dictionary written by vibrato 0.5.
const VIBRATO_MAGIC: &[u8] = b"VibratoTokenizer 0.5\n";

/// A loaded dictionary and the tokens it must not split.
pub struct MorphSplitter {
    tokenizer: vibrato::Tokenizer,
    path: PathBuf,
    sha256: String,
    protect: Option<AhoCorasick>,
    /// MeCab's own way (a dictionary folder read by [`crate::mecab`]), as transformers'
    /// `MecabTokenizer` runs it: NFKC first when asked, spaces skipped between words
    /// rather than cutting the text, so the words match fugashi's.
    mecab: Option<MecabMode>,
}

/// How [`MorphSplitter::mecab`] splits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct MecabMode {
    /// NFKC-normalise each piece first (`normalize_text`).
    nfkc: bool,
}

impl std::fmt::Debug for MorphSplitter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MorphSplitter")
            .field("path", &self.path)
            .field("sha256", &self.sha256)
            .finish_non_exhaustive()
    }
}

impl MorphSplitter {
    /// Loads the dictionary `path` (for training).
    pub fn open(path: &Path) -> Result<Self> {
        let bytes = read_dictionary(
            path,
            "pass a system dictionary compiled by vibrato 0.5 (system.dic or system.dic.zst)",
        )?;
        let sha256 = crate::strings::hex(&Sha256::digest(&bytes));
        let path = std::path::absolute(path).map_err(|e| TokenizeError::io(path, e))?;
        Self::decode(path, bytes, sha256)
    }

    /// Loads the dictionary that `sidecar` (read from `sidecar_path`) names, checking its
    /// hash. When the recorded path is absent, a file of the same name beside the sidecar
    /// is used, so a tokenizer folder can carry its dictionary along.
    pub fn from_sidecar(sidecar: &Sidecar, sidecar_path: &Path) -> Result<Self> {
        let record = &sidecar.morph;
        let folder = sidecar_path.parent().unwrap_or(Path::new(""));
        let named = folder.join(&record.dictionary);
        let beside = record.dictionary.file_name().map(|n| folder.join(n));
        let path = match &beside {
            Some(b) if !named.exists() && b.exists() => b.clone(),
            _ => named,
        };
        let hint = format!(
            "{} names it{}; put that file there, or beside the sidecar",
            sidecar_path.display(),
            beside
                .as_ref()
                .filter(|b| **b != path)
                .map(|b| format!(" (also looked for {})", b.display()))
                .unwrap_or_default()
        );
        if record.mecab {
            if !path.exists() {
                return Err(TokenizeError::MorphDictionaryMissing { path, hint });
            }
            let splitter = Self::mecab(&path, record.nfkc)?;
            if splitter.sha256 != record.dictionary_sha256 {
                return Err(TokenizeError::MorphDictionaryChanged {
                    path,
                    sidecar: sidecar_path.to_path_buf(),
                    expected: record.dictionary_sha256.clone(),
                    found: splitter.sha256,
                });
            }
            return Ok(splitter);
        }
        let bytes = read_dictionary(&path, &hint)?;
        let sha256 = crate::strings::hex(&Sha256::digest(&bytes));
        if sha256 != record.dictionary_sha256 {
            return Err(TokenizeError::MorphDictionaryChanged {
                path,
                sidecar: sidecar_path.to_path_buf(),
                expected: record.dictionary_sha256.clone(),
                found: sha256,
            });
        }
        Self::decode(path, bytes, sha256)
    }

    fn decode(path: PathBuf, bytes: Vec<u8>, sha256: String) -> Result<Self> {
        let dict = vibrato_dictionary(&path, bytes)?;
        Ok(Self {
            tokenizer: vibrato::Tokenizer::new(dict).max_grouping_len(MAX_GROUPING_LEN),
            path,
            sha256,
            protect: None,
            mecab: None,
        })
    }

    /// Splits as transformers' `MecabTokenizer` does with the MeCab dictionary `dict`: a
    /// dictionary folder (`sys.dic`, …, converted by [`crate::mecab`]) or a file compiled
    /// by vibrato; the text NFKC-normalised first when `nfkc`, and spaces skipped as MeCab
    /// skips them (the words are then joined by single spaces).
    pub fn mecab(dict: &Path, nfkc: bool) -> Result<Self> {
        let path = std::path::absolute(dict).map_err(|e| TokenizeError::io(dict, e))?;
        // (dictionary, max grouping, fingerprint)
        let load = || -> Result<(vibrato::Dictionary, usize, String)> {
            if path.is_dir() {
                let c = crate::mecab::open(&path)?;
                Ok((c.dictionary, c.max_grouping, c.fingerprint))
            } else {
                let bytes = read_dictionary(&path, "name a MeCab dictionary folder")?;
                let sha256 = crate::strings::hex(&Sha256::digest(&bytes));
                Ok((vibrato_dictionary(&path, bytes)?, MAX_GROUPING_LEN, sha256))
            }
        };
        let (dictionary, max_grouping, sha256) = load()?;
        // MeCab skips characters of the SPACE category; a dictionary without one has
        // nothing to skip (vibrato refuses `ignore_space` then, and the dictionary is
        // loaded again without it).
        let tokenizer = match vibrato::Tokenizer::new(dictionary)
            .max_grouping_len(max_grouping)
            .ignore_space(true)
        {
            Ok(t) => t,
            Err(_) => vibrato::Tokenizer::new(load()?.0).max_grouping_len(max_grouping),
        };
        Ok(Self {
            tokenizer,
            path,
            sha256,
            protect: None,
            mecab: Some(MecabMode { nfkc }),
        })
    }

    /// Leaves every occurrence of `tokens` (the added tokens) unsplit.
    pub fn protect(mut self, tokens: &[String]) -> Result<Self> {
        let tokens: Vec<&String> = tokens.iter().filter(|t| !t.is_empty()).collect();
        self.protect = if tokens.is_empty() {
            None
        } else {
            Some(
                AhoCorasick::builder()
                    .match_kind(MatchKind::LeftmostLongest)
                    .build(tokens)
                    .map_err(|e| TokenizeError::Tokenizers(e.to_string()))?,
            )
        };
        Ok(self)
    }

    /// The dictionary file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// What the sidecar records.
    pub fn record(&self) -> MorphRecord {
        MorphRecord {
            engine: MORPH_ENGINE.into(),
            dictionary: self.path.clone(),
            dictionary_sha256: self.sha256.clone(),
            separator: if self.mecab.is_some() {
                MECAB_SEPARATOR
            } else {
                MORPH_SEPARATOR
            }
            .into(),
            mecab: self.mecab.is_some(),
            nfkc: self.mecab.is_some_and(|m| m.nfkc),
        }
    }

    /// `text` with a space at every word boundary (see the module docs).
    pub fn split(&self, text: &str) -> Result<String> {
        let mut worker = self.tokenizer.new_worker();
        self.split_with(&mut worker, text)
    }

    /// [`Self::split`] of `text`, and for each character of the result the range of
    /// characters of `text` it comes from (a separator: an empty range where it stands).
    pub fn split_aligned(&self, text: &str) -> Result<(String, Vec<(usize, usize)>)> {
        let mut worker = self.tokenizer.new_worker();
        if self.mecab.is_some() {
            let mut map = Vec::new();
            let out = self.mecab_split(&mut worker, text, Some(&mut map))?;
            return Ok((out, map));
        }
        let out = self.split_with(&mut worker, text)?;
        // Outside MeCab mode the result is `text` with separators put between two
        // non-space characters: walk both.
        let mut map = Vec::with_capacity(out.len());
        let mut orig = text.chars().peekable();
        let mut at = 0;
        for c in out.chars() {
            if orig.peek() == Some(&c) {
                orig.next();
                map.push((at, at + 1));
                at += 1;
            } else {
                map.push((at, at));
            }
        }
        Ok((out, map))
    }

    /// The MeCab-mode split of `text` (see [`Self::mecab`]); with `map`, the original
    /// character range of each character of the result.
    fn mecab_split(
        &self,
        worker: &mut vibrato::tokenizer::worker::Worker,
        text: &str,
        mut map: Option<&mut Vec<(usize, usize)>>,
    ) -> Result<String> {
        let nfkc_on = self.mecab.is_some_and(|m| m.nfkc);
        let mut out = String::with_capacity(text.len() + text.len() / 4);
        // Character index of each byte offset of `text`.
        let char_at: Vec<usize> = if map.is_some() {
            let mut v = vec![0; text.len() + 1];
            let mut n = 0;
            for (i, c) in text.char_indices() {
                for b in 0..c.len_utf8() {
                    v[i + b] = n;
                }
                n += 1;
            }
            v[text.len()] = n;
            v
        } else {
            Vec::new()
        };
        let base = text.as_ptr() as usize;
        // The byte of `text` where the previous piece ended: what lies between it and the
        // next piece is a protected token, copied as it is.
        let mut done = 0;
        let result = caught(|| {
            for_unprotected(self.protect.as_ref(), text, &mut out, |piece, out| {
                let p0 = piece.as_ptr() as usize - base;
                // A protected token just copied: characters map to themselves.
                if let Some(map) = map.as_deref_mut() {
                    map.extend((char_at[done]..char_at[p0]).map(|c| (c, c + 1)));
                }
                done = p0 + piece.len();
                let mut normalized = tokenizers::NormalizedString::from(piece);
                if nfkc_on {
                    use tokenizers::tokenizer::Normalizer;
                    let _ = tokenizers::normalizers::unicode::NFKC.normalize(&mut normalized);
                }
                let norm = normalized.get();
                // MeCab reads a C string: it stops at the first NUL.
                let norm = norm.split('\0').next().unwrap_or_default();
                let nbase = norm.as_ptr() as usize;
                let mut first = true;
                for chunk in chunks(norm) {
                    let c0 = chunk.as_ptr() as usize - nbase;
                    worker.reset_sentence(chunk);
                    worker.tokenize();
                    for token in worker.token_iter() {
                        if !first {
                            out.push_str(MECAB_SEPARATOR);
                            if let Some(map) = map.as_deref_mut() {
                                let e = map.last().map_or(char_at[p0], |&(_, e)| e);
                                map.push((e, e));
                            }
                        }
                        first = false;
                        let range = token.range_byte();
                        let word = &chunk[range.clone()];
                        out.push_str(word);
                        if let Some(map) = map.as_deref_mut() {
                            for (i, c) in word.char_indices() {
                                let s = c0 + range.start + i;
                                let orig = normalized
                                    .convert_offsets(tokenizers::normalizer::Range::Normalized(
                                        s..s + c.len_utf8(),
                                    ))
                                    .unwrap_or(0..0);
                                let (a, b) = (char_at[p0 + orig.start], char_at[p0 + orig.end]);
                                map.push((a, b.max(a)));
                            }
                        }
                    }
                }
            });
            // A protected token at the very end.
            if let Some(map) = map {
                map.extend((char_at[done]..char_at[text.len()]).map(|c| (c, c + 1)));
                absorb_gaps(map, text);
            }
        });
        result.map_err(|message| TokenizeError::CorruptMorphDictionary {
            path: self.path.clone(),
            message,
        })?;
        Ok(out)
    }

    /// A worker for [`Self::split_with`], whose buffers serve many texts.
    pub fn worker(&self) -> vibrato::tokenizer::worker::Worker<'_> {
        self.tokenizer.new_worker()
    }

    /// [`Self::split`] of many texts, in parallel.
    pub fn split_many(&self, texts: &[&str]) -> Result<Vec<String>> {
        texts
            .par_iter()
            .map_init(
                || self.tokenizer.new_worker(),
                |worker, text| self.split_with(worker, text),
            )
            .collect()
    }

    /// [`Self::split`] reusing `worker`'s buffers.
    pub fn split_with(
        &self,
        worker: &mut vibrato::tokenizer::worker::Worker,
        text: &str,
    ) -> Result<String> {
        let mut out = String::with_capacity(text.len() + text.len() / 4);
        if self.mecab.is_some() {
            return self.mecab_split(worker, text, None);
        }
        let result = caught(|| {
            for_unprotected(self.protect.as_ref(), text, &mut out, |piece, out| {
                for_runs(piece, out, |run, out| {
                    for (k, chunk) in chunks(run).enumerate() {
                        if k > 0 {
                            out.push_str(MORPH_SEPARATOR);
                        }
                        worker.reset_sentence(chunk);
                        worker.tokenize();
                        for (i, token) in worker.token_iter().enumerate() {
                            if i > 0 {
                                out.push_str(MORPH_SEPARATOR);
                            }
                            out.push_str(&chunk[token.range_byte()]);
                        }
                    }
                })
            })
        });
        result.map_err(|message| TokenizeError::CorruptMorphDictionary {
            path: self.path.clone(),
            message,
        })?;
        Ok(out)
    }
}

/// A dictionary file written by vibrato 0.5 (optionally zstd-compressed), decoded.
fn vibrato_dictionary(path: &Path, bytes: Vec<u8>) -> Result<vibrato::Dictionary> {
    let corrupt = |message: String| TokenizeError::CorruptMorphDictionary {
        path: path.to_path_buf(),
        message,
    };
    let raw = if bytes.starts_with(&ZSTD_MAGIC) {
        caught(|| unzstd(&bytes))
            .map_err(corrupt)?
            .map_err(|m| corrupt(format!("zstd: {m}")))?
    } else {
        bytes
    };
    if !raw.starts_with(VIBRATO_MAGIC) {
        let head = &raw[..raw.len().min(VIBRATO_MAGIC.len())];
        return Err(corrupt(if raw.starts_with(b"VibratoTokenizer") {
            format!(
                "written by another vibrato version ({:?}); this build reads {:?}",
                String::from_utf8_lossy(head).trim_end(),
                String::from_utf8_lossy(VIBRATO_MAGIC).trim_end()
            )
        } else {
            "no vibrato header (a MeCab source or binary dictionary must be compiled \
             with vibrato first)"
                .into()
        }));
    }
    caught(|| vibrato::Dictionary::read(raw.as_slice()))
        .map_err(corrupt)?
        .map_err(|e| corrupt(e.to_string()))
}

/// Widens each mapped character over the characters of `text` that NFKC folded into it
/// (a combining mark after `か`, the voiced mark after a half-width kana): the
/// non-space characters between it and the next mapped character, up to a NUL (after
/// which MeCab reads nothing).
fn absorb_gaps(map: &mut [(usize, usize)], text: &str) {
    let chars: Vec<char> = text.chars().collect();
    let mapped: Vec<usize> = (0..map.len()).filter(|&i| map[i].0 < map[i].1).collect();
    for (k, &i) in mapped.iter().enumerate() {
        let next = mapped.get(k + 1).map_or(chars.len(), |&j| map[j].0);
        let mut e = map[i].1;
        while e < next && !chars[e].is_whitespace() && chars[e] != '\0' {
            e += 1;
        }
        map[i].1 = e;
    }
}

/// Reads a dictionary file; a missing one gets `hint`.
fn read_dictionary(path: &Path, hint: &str) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => TokenizeError::MorphDictionaryMissing {
            path: path.to_path_buf(),
            hint: hint.to_string(),
        },
        _ => TokenizeError::io(path, e),
    })
}

/// Decompresses every zstd frame of `bytes`, checking content checksums where present.
fn unzstd(bytes: &[u8]) -> std::result::Result<Vec<u8>, String> {
    let mut rest = bytes;
    let mut out = Vec::new();
    while !rest.is_empty() {
        let mut frame =
            ruzstd::decoding::StreamingDecoder::new(&mut rest).map_err(|e| e.to_string())?;
        frame.read_to_end(&mut out).map_err(|e| e.to_string())?;
        let (stored, computed) = (
            frame.decoder.get_checksum_from_data(),
            frame.decoder.get_calculated_checksum(),
        );
        if let (Some(stored), Some(computed)) = (stored, computed)
            && stored != computed
        {
            return Err(format!(
                "checksum mismatch (stored {stored:08x}, computed {computed:08x})"
            ));
        }
    }
    Ok(out)
}

/// Runs `f`, turning a panic inside vibrato or the zstd decoder into a message.
fn caught<T>(f: impl FnOnce() -> T) -> std::result::Result<T, String> {
    catch_unwind(AssertUnwindSafe(f)).map_err(|payload| {
        format!(
            "vibrato panicked: {}",
            crate::strings::panic_text(&*payload)
        )
    })
}

/// Copies the protected tokens of `text` to `out` and hands the rest to `split`.
fn for_unprotected(
    protect: Option<&AhoCorasick>,
    text: &str,
    out: &mut String,
    mut split: impl FnMut(&str, &mut String),
) {
    let Some(protect) = protect else {
        return split(text, out);
    };
    let mut at = 0;
    for m in protect.find_iter(text) {
        split(&text[at..m.start()], out);
        out.push_str(&text[m.range()]);
        at = m.end();
    }
    split(&text[at..], out);
}

/// Copies whitespace of `text` to `out` and hands each non-whitespace run to `split`.
fn for_runs(text: &str, out: &mut String, mut split: impl FnMut(&str, &mut String)) {
    let mut start = 0;
    let mut in_space = true;
    for (i, c) in text.char_indices() {
        let space = c.is_whitespace();
        if space != in_space {
            if space {
                split(&text[start..i], out);
            } else {
                out.push_str(&text[start..i]);
            }
            start = i;
            in_space = space;
        }
    }
    if in_space {
        out.push_str(&text[start..]);
    } else {
        split(&text[start..], out);
    }
}

/// `run` in pieces of at most [`MAX_RUN_BYTES`], cut after a sentence-final mark where
/// one is near the limit.
fn chunks(run: &str) -> impl Iterator<Item = &str> {
    let mut rest = run;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        if rest.len() <= MAX_RUN_BYTES {
            return Some(std::mem::take(&mut rest));
        }
        let mut limit = MAX_RUN_BYTES;
        while !rest.is_char_boundary(limit) {
            limit -= 1;
        }
        let window = &rest[..limit];
        let cut = window
            .char_indices()
            .rev()
            .take_while(|&(i, _)| i >= limit / 2)
            .find(|&(_, c)| matches!(c, '。' | '！' | '？' | '．' | '!' | '?' | '.'))
            .map(|(i, c)| i + c.len_utf8())
            .unwrap_or(limit);
        let (chunk, tail) = rest.split_at(cut);
        rest = tail;
        Some(chunk)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Splits with a fake analyser that cuts every run into single characters.
    fn split_chars(protect: &[&str], text: &str) -> String {
        let ac = AhoCorasick::builder()
            .match_kind(MatchKind::LeftmostLongest)
            .build(protect)
            .unwrap();
        let mut out = String::new();
        let protect = (!protect.is_empty()).then_some(&ac);
        for_unprotected(protect, text, &mut out, |piece, out| {
            for_runs(piece, out, |run, out| {
                let chars: Vec<String> = run.chars().map(String::from).collect();
                out.push_str(&chars.join(" "));
            })
        });
        out
    }

    #[test]
    fn whitespace_and_protected_tokens_are_kept() {
        assert_eq!(split_chars(&[], ""), "");
        assert_eq!(split_chars(&[], "  "), "  ");
        assert_eq!(split_chars(&[], "ab"), "a b");
        assert_eq!(split_chars(&[], " ab\n\ncd "), " a b\n\nc d ");
        assert_eq!(split_chars(&[], "あい\u{3000}う"), "あ い\u{3000}う");
        assert_eq!(
            split_chars(&["<eos>", "<e"], "<bos>ab<eos>c <eos>"),
            "< b o s > a b<eos>c <eos>"
        );
        assert_eq!(split_chars(&["<e"], "x<eos>"), "x<eo s >");
    }

    #[test]
    fn long_runs_are_cut_after_sentence_ends() {
        assert_eq!(chunks("").count(), 0);
        assert_eq!(chunks("短い。").collect::<Vec<_>>(), ["短い。"]);
        let sentence = "吾輩は猫である。";
        let long = sentence.repeat(MAX_RUN_BYTES / sentence.len() + 10);
        let pieces: Vec<&str> = chunks(&long).collect();
        assert_eq!(pieces.concat(), long);
        assert_eq!(pieces.len(), 2);
        assert!(pieces[0].len() <= MAX_RUN_BYTES);
        assert!(pieces[0].ends_with('。'), "cut after a full stop");
        // No sentence end: a hard cut at a character boundary.
        let kanji = "猫".repeat(MAX_RUN_BYTES);
        let pieces: Vec<&str> = chunks(&kanji).collect();
        assert_eq!(pieces.concat(), kanji);
        assert!(pieces.iter().all(|p| p.len() <= MAX_RUN_BYTES));
    }
}
