//! manabi-tokenize: the first stage of the pipeline. Reads corpora (plain text, JSONL,
//! folders, gzip), trains tokenizers through Hugging Face's `tokenizers` crate and saves
//! them as standard `tokenizer.json`, and encodes corpora into memory-mapped token shards.
//! It also renders a model's own Jinja chat template as `transformers` does ([`chat`]),
//! and reads a model's `tokenizer_config.json` as `AutoTokenizer` does ([`hf_config`]),
//! converting a SentencePiece model without tokenizer.json as transformers does
//! ([`sentencepiece`] reads the file, [`spm`] converts it).
//!
//! With the cargo feature `morph`, text can be split into words by a MeCab-style
//! dictionary the user supplies before it reaches the tokenizer (module `morph`); the
//! choice is recorded in a sidecar beside `tokenizer.json` ([`sidecar`]).
//!
//! This crate has no burn dependency: it is usable on its own.

pub mod bertja;
pub mod chat;
pub mod corpus;
pub mod error;
pub mod hf_config;
pub mod inspect;
pub mod jsonl;
#[cfg(feature = "morph")]
pub mod mecab;
#[cfg(feature = "morph")]
pub mod morph;
pub mod sentencepiece;
pub mod shards;
pub mod sidecar;
pub mod spm;
mod strings;
pub mod tokenizer;
pub mod train;

use std::path::{Path, PathBuf};

pub use chat::{ChatTemplate, Message, SpecialTokens};
pub use corpus::{CorpusFormat, CorpusSpec, DocBoundary, Document, open_reader};
pub use error::{Result, TokenizeError};
pub use hf_config::SPECIAL_TOKENS_MAP_FILE;
pub use inspect::{InspectReport, inspect};
pub use jsonl::{JsonLine, JsonLines, LineError, TextLines, read_jsonl, read_text_lines};
pub use shards::{
    EncodeOptions, ShardMeta, ShardSet, ShardWriter, Split, TokenDtype, TokenShard, encode_corpus,
};
pub use tokenizer::TextTokenizer;
pub use train::{PreTokenize, TokenizerKind, TrainOptions, train};

/// A name beside `path` for writing before an atomic rename.
pub(crate) fn temp_sibling(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "out".into());
    path.with_file_name(format!(".{name}.tmp-{}", std::process::id()))
}

/// The `tokenizer.json` to store for the tokenizer at `path` (a checkpoint's or an
/// export's copy): the file's own bytes when it is a JSON file on disk (so a sidecar's
/// hash of it still holds), else the JSON of the pipeline converted from the folder's
/// SentencePiece model (`spiece.model`, `tokenizer.model`, or a `.model` path) or built
/// from a `BertJapaneseTokenizer` folder's `vocab.txt`.
pub fn tokenizer_json_bytes(path: &Path) -> Result<Vec<u8>> {
    Ok(tokenizer_files(path)?.0)
}

/// [`tokenizer_json_bytes`] of `path` and the `manabi-pretokenize.json` to store beside
/// it when the tokenizer splits words before its pipeline: the sidecar beside a
/// tokenizer.json stored as it is, byte for byte (it records that file's hash), else one
/// written for the converted pipeline (a `BertJapaneseTokenizer`'s MeCab step). A
/// converted tokenizer is loaded once for both.
pub fn tokenizer_files(path: &Path) -> Result<(Vec<u8>, Option<Vec<u8>>)> {
    if stored_as_is(path)? {
        let json = std::fs::read(path).map_err(|e| TokenizeError::io(path, e))?;
        let side = sidecar::sidecar_path(path);
        let sidecar = match std::fs::read(&side) {
            Ok(bytes) => Some(bytes),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(TokenizeError::io(&side, e)),
        };
        return Ok((json, sidecar));
    }
    let tok = TextTokenizer::load(path)?;
    let sidecar = tok.sidecar().map(|s| s.to_bytes(path)).transpose()?;
    Ok((tok.to_json().as_bytes().to_vec(), sidecar))
}

/// Whether the tokenizer at `path` is its own tokenizer.json file (not converted from a
/// SentencePiece model or a `BertJapaneseTokenizer` folder).
fn stored_as_is(path: &Path) -> Result<bool> {
    let is_model = path.extension().is_some_and(|e| e == "model");
    if !path.is_file() || is_model {
        return Ok(false);
    }
    let dir = path.parent().unwrap_or(Path::new(""));
    let named = path
        .file_name()
        .is_some_and(|n| n == "tokenizer.json" || n == bertja::VOCAB_FILE);
    Ok(!(named
        && hf_config::read_folder(dir)?
            .as_ref()
            .is_some_and(bertja::is_bert_japanese)))
}

/// Writes `bytes` to `path` through a temporary file and a rename, creating parent folders.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(|e| TokenizeError::io(parent, e))?;
    }
    let tmp = temp_sibling(path);
    let write = || -> std::io::Result<()> {
        use std::io::Write;
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    };
    write().map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        TokenizeError::io(path, e)
    })
}

/// Moves the finished folder `tmp` to `out`, replacing what was there.
pub(crate) fn replace_dir(tmp: &Path, out: &Path) -> Result<()> {
    if out.exists() {
        let old = out.with_file_name(format!(
            ".{}.old-{}",
            out.file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
            std::process::id()
        ));
        std::fs::rename(out, &old).map_err(|e| TokenizeError::io(out, e))?;
        std::fs::rename(tmp, out).map_err(|e| TokenizeError::io(out, e))?;
        std::fs::remove_dir_all(&old).map_err(|e| TokenizeError::io(&old, e))?;
    } else {
        std::fs::rename(tmp, out).map_err(|e| TokenizeError::io(out, e))?;
    }
    Ok(())
}
