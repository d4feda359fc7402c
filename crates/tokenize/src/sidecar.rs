//! `manabi-pretokenize.json`: what a `tokenizer.json` cannot hold. Morphological word
//! splitting runs on the text before the `tokenizers` pipeline sees it (Python could not
//! reproduce a custom Rust pre-tokenizer stored in `tokenizer.json`), so it is recorded in
//! this sidecar beside `tokenizer.json`, and [`crate::TextTokenizer::load`] re-applies it.
//!
//! This file is compiled with or without the `morph` feature: a build without it still
//! reads the sidecar, to refuse it with an error that names the feature.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Result, TokenizeError};

/// File name of the sidecar, in the folder of `tokenizer.json`.
pub const SIDECAR_FILE: &str = "manabi-pretokenize.json";
/// The `format` field of every sidecar.
pub const SIDECAR_FORMAT: &str = "manabi-pretokenize";
/// Version of the sidecar layout.
pub const SIDECAR_VERSION: u32 = 1;
/// The one morphological engine.
pub const MORPH_ENGINE: &str = "vibrato";
/// What is put between two words: a plain space, which every default pre-tokenizer splits
/// on (not `▁`, which Unigram's metaspace adds itself).
pub const MORPH_SEPARATOR: &str = " ";
/// What is put between two words in MeCab mode ([`MorphRecord::mecab`]): U+FDD0, a
/// noncharacter, so that whitespace MeCab keeps inside a word (a carriage return, a space
/// in a dictionary entry) stays apart from the boundaries it finds.
pub const MECAB_SEPARATOR: &str = "\u{fdd0}";

/// The sidecar file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Sidecar {
    /// Always [`SIDECAR_FORMAT`].
    pub format: String,
    /// Always [`SIDECAR_VERSION`].
    pub version: u32,
    /// SHA-256 of the `tokenizer.json` this sidecar belongs to: a sidecar left beside
    /// another tokenizer is refused rather than applied.
    pub tokenizer_sha256: String,
    /// Morphological word splitting.
    pub morph: MorphRecord,
}

/// How words were split.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MorphRecord {
    /// Always [`MORPH_ENGINE`].
    pub engine: String,
    /// The compiled system dictionary (absolute when written by manabi; a relative path
    /// is taken from the sidecar's folder).
    pub dictionary: PathBuf,
    /// SHA-256 of the dictionary file as stored (compressed, if it is).
    pub dictionary_sha256: String,
    /// Put between words: [`MORPH_SEPARATOR`], or [`MECAB_SEPARATOR`] in MeCab mode.
    pub separator: String,
    /// Split as MeCab does (transformers' `MecabTokenizer`): `dictionary` is a MeCab
    /// dictionary folder (or a vibrato file) and `dictionary_sha256` its fingerprint
    /// ([`crate::mecab`]); spaces are skipped rather than kept.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub mecab: bool,
    /// NFKC-normalise the text before splitting (MeCab mode only).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub nfkc: bool,
}

/// The sidecar path for the tokenizer file `tokenizer_json`.
pub fn sidecar_path(tokenizer_json: &Path) -> PathBuf {
    tokenizer_json.with_file_name(SIDECAR_FILE)
}

impl Sidecar {
    /// Reads `path`; `Ok(None)` when there is no such file.
    pub fn read(path: &Path) -> Result<Option<Self>> {
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(TokenizeError::io(path, e)),
        };
        let corrupt = |message: String| TokenizeError::CorruptSidecar {
            path: path.to_path_buf(),
            message,
        };
        let sidecar: Self = serde_json::from_str(&text).map_err(|e| corrupt(e.to_string()))?;
        if sidecar.format != SIDECAR_FORMAT || sidecar.version != SIDECAR_VERSION {
            return Err(corrupt(format!(
                "format {:?} version {} (expected {SIDECAR_FORMAT:?} version {SIDECAR_VERSION})",
                sidecar.format, sidecar.version
            )));
        }
        if sidecar.morph.engine != MORPH_ENGINE {
            return Err(corrupt(format!(
                "engine {:?} (expected {MORPH_ENGINE:?})",
                sidecar.morph.engine
            )));
        }
        let separator = if sidecar.morph.mecab {
            MECAB_SEPARATOR
        } else {
            MORPH_SEPARATOR
        };
        if sidecar.morph.separator != separator {
            return Err(corrupt(format!(
                "separator {:?} (expected {separator:?})",
                sidecar.morph.separator
            )));
        }
        Ok(Some(sidecar))
    }

    /// Checks that this sidecar was written for the tokenizer whose JSON hashes to `sha256`.
    pub fn check_tokenizer(&self, path: &Path, tokenizer: &Path, sha256: &str) -> Result<()> {
        if self.tokenizer_sha256 == sha256 {
            return Ok(());
        }
        Err(TokenizeError::CorruptSidecar {
            path: path.to_path_buf(),
            message: format!(
                "it was written for a tokenizer.json with SHA-256 {}, but {} has {sha256} \
                 (hint: retrain with --morph-dict, or delete the sidecar if the tokenizer \
                 does not use morphological splitting)",
                self.tokenizer_sha256,
                tokenizer.display()
            ),
        })
    }

    /// The file's bytes (`path` names it in an error).
    pub fn to_bytes(&self, path: &Path) -> Result<Vec<u8>> {
        let json =
            serde_json::to_string_pretty(self).map_err(|e| TokenizeError::CorruptSidecar {
                path: path.to_path_buf(),
                message: e.to_string(),
            })?;
        Ok(format!("{json}\n").into_bytes())
    }

    /// Writes `path` atomically.
    pub fn write(&self, path: &Path) -> Result<()> {
        crate::write_atomic(path, &self.to_bytes(path)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Sidecar {
        Sidecar {
            format: SIDECAR_FORMAT.into(),
            version: SIDECAR_VERSION,
            tokenizer_sha256: "ab".into(),
            morph: MorphRecord {
                engine: MORPH_ENGINE.into(),
                dictionary: "/dicts/system.dic.zst".into(),
                dictionary_sha256: "cd".into(),
                separator: MORPH_SEPARATOR.into(),
                mecab: false,
                nfkc: false,
            },
        }
    }

    #[test]
    fn round_trips_and_refuses_what_it_does_not_know() {
        let dir = tempfile::tempdir().unwrap();
        let path = sidecar_path(&dir.path().join("tokenizer.json"));
        assert_eq!(path, dir.path().join(SIDECAR_FILE));
        assert_eq!(Sidecar::read(&path).unwrap(), None);
        sample().write(&path).unwrap();
        assert_eq!(Sidecar::read(&path).unwrap(), Some(sample()));

        let text = std::fs::read_to_string(&path).unwrap();
        for (from, to) in [
            ("\"version\": 1", "\"version\": 2"),
            ("\"vibrato\"", "\"mecab\""),
            ("\"separator\": \" \"", "\"separator\": \"▁\""),
            ("\"format\"", "\"extra\": 1, \"format\""),
            ("{", ""),
        ] {
            std::fs::write(&path, text.replacen(from, to, 1)).unwrap();
            let err = Sidecar::read(&path).unwrap_err();
            assert!(matches!(err, TokenizeError::CorruptSidecar { .. }), "{err}");
            assert!(err.to_string().contains(SIDECAR_FILE), "{err}");
        }

        let err = sample()
            .check_tokenizer(&path, Path::new("t/tokenizer.json"), "ef")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("SHA-256 ab, but t/tokenizer.json has ef"),
            "{err}"
        );
    }
}
