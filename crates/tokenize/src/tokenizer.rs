//! A Hugging Face `tokenizer.json`, loaded defensively and saved atomically.
//!
//! The `tokenizers` crate can panic on crafted files (ids out of range, inconsistent
//! models); every call into it that depends on file contents runs behind
//! [`std::panic::catch_unwind`] so a bad file is an error, never a crash.

use std::collections::BTreeMap;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::error::{Result, TokenizeError};

/// A text tokenizer in the Hugging Face format, plus where it came from.
#[derive(Debug, Clone)]
pub struct TextTokenizer {
    inner: tokenizers::Tokenizer,
    json: String,
    path: PathBuf,
}

/// Runs `f`, turning a panic into a message.
pub(crate) fn guarded<T>(f: impl FnOnce() -> T) -> std::result::Result<T, String> {
    catch_unwind(AssertUnwindSafe(f)).map_err(|payload| {
        let msg = payload
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "unknown panic".to_string());
        format!("the tokenizers library panicked: {msg}")
    })
}

impl TextTokenizer {
    /// Loads `path` (a `tokenizer.json`, or a folder holding one).
    pub fn load(path: impl AsRef<Path>) -> Result<Self> {
        let mut path = path.as_ref().to_path_buf();
        if path.is_dir() {
            path = path.join("tokenizer.json");
        }
        let bytes = std::fs::read(&path).map_err(|e| TokenizeError::io(&path, e))?;
        let json = String::from_utf8(bytes).map_err(|_| TokenizeError::CorruptTokenizer {
            path: path.clone(),
            message: "not UTF-8 text".into(),
        })?;
        Self::from_json(json, path)
    }

    /// Parses a `tokenizer.json` held in memory; `path` is used in messages.
    pub fn from_json(json: String, path: PathBuf) -> Result<Self> {
        let corrupt = |path: &Path, message: String| TokenizeError::CorruptTokenizer {
            path: path.to_path_buf(),
            message,
        };
        let inner = guarded(|| json.parse::<tokenizers::Tokenizer>())
            .map_err(|m| corrupt(&path, m))?
            .map_err(|e| corrupt(&path, e.to_string()))?;
        let tokenizer = Self { inner, json, path };
        tokenizer.check().map_err(|m| corrupt(&tokenizer.path, m))?;
        Ok(tokenizer)
    }

    /// Checks that every vocabulary id decodes and that a sample round-trips without a panic.
    fn check(&self) -> std::result::Result<(), String> {
        let size = self.vocab_size();
        if size == 0 {
            return Err("empty vocabulary".into());
        }
        for (token, id) in self.inner.get_vocab(true) {
            if id as usize >= size {
                return Err(format!(
                    "token {token:?} has id {id}, beyond the vocabulary size {size}"
                ));
            }
        }
        guarded(|| {
            let enc = self
                .inner
                .encode("Hello, world! 吾輩は猫である。 123", false)
                .map_err(|e| e.to_string())?;
            self.inner
                .decode(enc.get_ids(), false)
                .map_err(|e| e.to_string())?;
            Ok::<_, String>(())
        })?
    }

    /// Wraps a tokenizer built in memory (after training).
    pub(crate) fn from_inner(inner: tokenizers::Tokenizer, path: PathBuf) -> Result<Self> {
        let json = inner
            .to_string(true)
            .map_err(|e| TokenizeError::Tokenizers(e.to_string()))?;
        Ok(Self { inner, json, path })
    }

    /// Writes `tokenizer.json` atomically (temporary file, then rename).
    pub fn save(&mut self, path: impl AsRef<Path>) -> Result<()> {
        let path = path.as_ref();
        crate::write_atomic(path, self.json.as_bytes())?;
        self.path = path.to_path_buf();
        Ok(())
    }

    /// The file this tokenizer was loaded from or saved to.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// SHA-256 of the `tokenizer.json` text, hex.
    pub fn sha256(&self) -> String {
        hex(&Sha256::digest(self.json.as_bytes()))
    }

    /// The JSON text.
    pub fn to_json(&self) -> &str {
        &self.json
    }

    /// Vocabulary size including added tokens.
    pub fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
    }

    /// Id of `token`, if the vocabulary has it.
    pub fn token_id(&self, token: &str) -> Option<u32> {
        self.inner.token_to_id(token)
    }

    /// Id of `token`, or an error naming this tokenizer's file.
    pub fn require_token(&self, token: &str) -> Result<u32> {
        self.token_id(token)
            .ok_or_else(|| TokenizeError::UnknownSpecialToken {
                path: self.path.clone(),
                token: token.to_string(),
            })
    }

    /// The token text of `id`.
    pub fn id_to_token(&self, id: u32) -> Option<String> {
        self.inner.id_to_token(id)
    }

    /// Special (added) tokens and their ids, in id order.
    pub fn special_tokens(&self) -> BTreeMap<u32, String> {
        self.inner
            .get_added_tokens_decoder()
            .into_iter()
            .filter(|(_, t)| t.special)
            .map(|(id, t)| (id, t.content))
            .collect()
    }

    /// Ids of `text`, no special tokens added (the same ids as Python's
    /// `Tokenizer.encode(text, add_special_tokens=False).ids`).
    pub fn encode(&self, text: &str) -> Result<Vec<u32>> {
        let enc = guarded(|| self.inner.encode_fast(text, false))
            .map_err(TokenizeError::Tokenizers)?
            .map_err(|e| TokenizeError::Tokenizers(e.to_string()))?;
        Ok(enc.get_ids().to_vec())
    }

    /// Token strings of `text` (for inspection).
    pub fn tokens(&self, text: &str) -> Result<Vec<String>> {
        let enc = guarded(|| self.inner.encode(text, false))
            .map_err(TokenizeError::Tokenizers)?
            .map_err(|e| TokenizeError::Tokenizers(e.to_string()))?;
        Ok(enc.get_tokens().to_vec())
    }

    /// Ids of many texts, encoded in parallel.
    pub fn encode_batch(&self, texts: &[&str]) -> Result<Vec<Vec<u32>>> {
        let encs = guarded(|| self.inner.encode_batch_fast(texts.to_vec(), false))
            .map_err(TokenizeError::Tokenizers)?
            .map_err(|e| TokenizeError::Tokenizers(e.to_string()))?;
        Ok(encs.into_iter().map(|e| e.get_ids().to_vec()).collect())
    }

    /// Text of `ids`; special tokens are dropped when `skip_special`.
    pub fn decode(&self, ids: &[u32], skip_special: bool) -> Result<String> {
        guarded(|| self.inner.decode(ids, skip_special))
            .map_err(TokenizeError::Tokenizers)?
            .map_err(|e| TokenizeError::Tokenizers(e.to_string()))
    }

    /// The underlying `tokenizers` object.
    pub fn inner(&self) -> &tokenizers::Tokenizer {
        &self.inner
    }
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load_str(json: &str) -> Result<TextTokenizer> {
        TextTokenizer::from_json(json.to_string(), PathBuf::from("bad/tokenizer.json"))
    }

    #[test]
    fn corrupt_files_are_errors_not_panics() {
        let cases = [
            "",
            "{",
            "[1,2,3]",
            r#"{"version":"1.0","model":{"type":"BPE","vocab":{"a":0},"merges":["a b"]}}"#,
            // ids with a gap: id 5 in a vocabulary of two
            r#"{"version":"1.0","truncation":null,"padding":null,"added_tokens":[],"normalizer":null,"pre_tokenizer":null,"post_processor":null,"decoder":null,"model":{"type":"WordLevel","vocab":{"a":0,"b":5},"unk_token":"a"}}"#,
            // WordPiece whose unk token is not in the vocabulary
            r###"{"version":"1.0","truncation":null,"padding":null,"added_tokens":[],"normalizer":null,"pre_tokenizer":null,"post_processor":null,"decoder":null,"model":{"type":"WordPiece","unk_token":"[UNK]","continuing_subword_prefix":"##","max_input_chars_per_word":100,"vocab":{"a":0}}}"###,
        ];
        for case in cases {
            let err = load_str(case).unwrap_err().to_string();
            assert!(
                err.starts_with("bad/tokenizer.json: not a usable tokenizer.json"),
                "{err}"
            );
        }
    }

    #[test]
    fn missing_file_is_named() {
        let err = TextTokenizer::load("/nope/tokenizer.json")
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("/nope/tokenizer.json:"), "{err}");
    }
}
