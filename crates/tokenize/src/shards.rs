//! Token shards: a corpus encoded once into flat little-endian `u16`/`u32` files
//! (`train.bin`, `val.bin`) with `meta.json`, read back through a memory map.
//!
//! Every document is followed by the EOS id, so document boundaries survive. The split
//! is by documents: document `i` goes to validation when `⌊(i+1)·f⌋ > ⌊i·f⌋`, which puts
//! exactly a fraction `f` of the documents there, spread evenly through the corpus.
//! The shard set is written into a temporary folder and renamed when complete, so a
//! half-written set is never presented as finished.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use indicatif::{ProgressBar, ProgressStyle};
use memmap2::Mmap;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::corpus::CorpusSpec;
use crate::error::{Result, TokenizeError};
use crate::tokenizer::TextTokenizer;

/// The `format` field of every `meta.json`.
pub const SHARD_FORMAT: &str = "manabi-token-shards";
/// Version of the shard layout.
pub const SHARD_VERSION: u32 = 1;

/// Element type of a shard file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TokenDtype {
    /// Two bytes per token: vocabularies up to 65,536.
    U16,
    /// Four bytes per token.
    U32,
}

impl TokenDtype {
    /// The smallest type that holds `vocab_size` ids.
    pub fn for_vocab(vocab_size: usize) -> Self {
        if vocab_size <= 1 << 16 {
            Self::U16
        } else {
            Self::U32
        }
    }

    /// Bytes per token.
    pub fn bytes(self) -> usize {
        match self {
            Self::U16 => 2,
            Self::U32 => 4,
        }
    }
}

/// Counts for one split.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SplitMeta {
    /// File name inside the shard folder.
    pub file: String,
    /// Tokens, EOS separators included.
    pub tokens: u64,
    /// Documents.
    pub documents: u64,
}

/// `meta.json` of a shard folder.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShardMeta {
    /// Always [`SHARD_FORMAT`].
    pub format: String,
    /// Always [`SHARD_VERSION`].
    pub version: u32,
    /// SHA-256 of the `tokenizer.json` used.
    pub tokenizer_sha256: String,
    /// Vocabulary size of that tokenizer.
    pub vocab_size: usize,
    /// Element type.
    pub dtype: TokenDtype,
    /// The separator token and its id.
    pub eos_token: String,
    /// Id of `eos_token`.
    pub eos_id: u32,
    /// Fraction of documents in validation.
    pub val_fraction: f64,
    /// Training split.
    pub train: SplitMeta,
    /// Validation split.
    pub val: SplitMeta,
    /// Bytes of text read.
    pub text_bytes: u64,
    /// Lines skipped under `skip_invalid`.
    pub skipped_lines: u64,
    /// Inputs, as given.
    pub sources: Vec<String>,
}

/// Options of [`encode_corpus`].
#[derive(Debug, Clone)]
pub struct EncodeOptions {
    /// Fraction of documents for validation, in [0, 1).
    pub val_fraction: f64,
    /// The token written after every document.
    pub eos_token: String,
    /// Replace an existing output folder.
    pub overwrite: bool,
    /// Draw a progress bar.
    pub show_progress: bool,
    /// Text bytes encoded per parallel batch.
    pub batch_bytes: usize,
}

impl Default for EncodeOptions {
    fn default() -> Self {
        Self {
            val_fraction: 0.1,
            eos_token: "<eos>".into(),
            overwrite: false,
            show_progress: false,
            batch_bytes: 4 << 20,
        }
    }
}

/// Writes one split file, document by document.
#[derive(Debug)]
pub struct ShardWriter {
    out: BufWriter<File>,
    path: PathBuf,
    dtype: TokenDtype,
    meta: SplitMeta,
}

impl ShardWriter {
    /// Creates `dir/file`.
    pub fn create(dir: &Path, file: &str, dtype: TokenDtype) -> Result<Self> {
        let path = dir.join(file);
        let f = File::create(&path).map_err(|e| TokenizeError::io(&path, e))?;
        Ok(Self {
            out: BufWriter::with_capacity(1 << 20, f),
            path,
            dtype,
            meta: SplitMeta {
                file: file.into(),
                tokens: 0,
                documents: 0,
            },
        })
    }

    /// Appends one document and its EOS; `scratch` is reused between calls.
    pub fn write_doc(&mut self, ids: &[u32], eos: u32, scratch: &mut Vec<u8>) -> Result<()> {
        scratch.clear();
        match self.dtype {
            TokenDtype::U16 => ids
                .iter()
                .chain([&eos])
                .for_each(|&i| scratch.extend_from_slice(&(i as u16).to_le_bytes())),
            TokenDtype::U32 => ids
                .iter()
                .chain([&eos])
                .for_each(|&i| scratch.extend_from_slice(&i.to_le_bytes())),
        }
        self.out
            .write_all(scratch)
            .map_err(|e| TokenizeError::io(&self.path, e))?;
        self.meta.tokens += ids.len() as u64 + 1;
        self.meta.documents += 1;
        Ok(())
    }

    /// Flushes and syncs the file; returns its counts.
    pub fn finish(self) -> Result<SplitMeta> {
        let file = self
            .out
            .into_inner()
            .map_err(|e| TokenizeError::io(&self.path, e.into_error()))?;
        file.sync_all()
            .map_err(|e| TokenizeError::io(&self.path, e))?;
        Ok(self.meta)
    }
}

/// Whether document `index` belongs to validation (see the module docs).
pub fn is_validation(index: u64, fraction: f64) -> bool {
    ((index + 1) as f64 * fraction).floor() > (index as f64 * fraction).floor()
}

/// Encodes `corpus` with `tokenizer` into the shard folder `out`.
pub fn encode_corpus(
    tokenizer: &TextTokenizer,
    corpus: &CorpusSpec,
    out: &Path,
    opts: &EncodeOptions,
) -> Result<ShardMeta> {
    if !(0.0..1.0).contains(&opts.val_fraction) {
        return Err(TokenizeError::InvalidOption {
            key: "val-fraction".into(),
            message: format!("{} is not in [0, 1)", opts.val_fraction),
        });
    }
    if out.exists() && !opts.overwrite {
        return Err(TokenizeError::OutputExists(out.to_path_buf()));
    }
    let eos = tokenizer.require_token(&opts.eos_token)?;
    let dtype = TokenDtype::for_vocab(tokenizer.vocab_size());
    let files = corpus.files()?;
    let total_bytes: u64 = files
        .iter()
        .filter_map(|f| std::fs::metadata(f).ok())
        .map(|m| m.len())
        .sum();

    let tmp = crate::temp_sibling(out);
    std::fs::create_dir_all(&tmp).map_err(|e| TokenizeError::io(&tmp, e))?;
    let result = (|| {
        let mut train = ShardWriter::create(&tmp, "train.bin", dtype)?;
        let mut val = ShardWriter::create(&tmp, "val.bin", dtype)?;
        let bar = if opts.show_progress {
            let bar = ProgressBar::new(total_bytes);
            if let Ok(style) = ProgressStyle::with_template(
                "{spinner} encoding [{elapsed_precise}] {wide_bar} {binary_bytes}/{binary_total_bytes} {binary_bytes_per_sec}",
            ) {
                bar.set_style(style);
            }
            bar
        } else {
            ProgressBar::hidden()
        };

        let mut docs = corpus.documents()?;
        let mut index = 0u64;
        let mut text_bytes = 0u64;
        let mut batch: Vec<String> = Vec::new();
        let mut batch_len = 0usize;
        let mut scratch = Vec::new();
        let mut flush = |batch: &mut Vec<String>, index: &mut u64| -> Result<()> {
            let texts: Vec<&str> = batch.iter().map(String::as_str).collect();
            let encoded = tokenizer.encode_batch(&texts)?;
            for ids in encoded {
                let split = if is_validation(*index, opts.val_fraction) {
                    &mut val
                } else {
                    &mut train
                };
                split.write_doc(&ids, eos, &mut scratch)?;
                *index += 1;
            }
            batch.clear();
            Ok(())
        };
        for doc in docs.by_ref() {
            let doc = doc?;
            batch_len += doc.text.len();
            text_bytes += doc.text.len() as u64;
            bar.inc(doc.text.len() as u64 + 1);
            batch.push(doc.text);
            if batch_len >= opts.batch_bytes {
                flush(&mut batch, &mut index)?;
                batch_len = 0;
            }
        }
        flush(&mut batch, &mut index)?;
        bar.finish_and_clear();
        if index == 0 {
            return Err(TokenizeError::EmptyCorpus(corpus.describe()));
        }
        let meta = ShardMeta {
            format: SHARD_FORMAT.into(),
            version: SHARD_VERSION,
            tokenizer_sha256: tokenizer.sha256(),
            vocab_size: tokenizer.vocab_size(),
            dtype,
            eos_token: opts.eos_token.clone(),
            eos_id: eos,
            val_fraction: opts.val_fraction,
            train: train.finish()?,
            val: val.finish()?,
            text_bytes,
            skipped_lines: docs.skipped(),
            sources: corpus
                .inputs
                .iter()
                .map(|p| p.display().to_string())
                .collect(),
        };
        let json = serde_json::to_vec_pretty(&meta)
            .map_err(|e| TokenizeError::Tokenizers(e.to_string()))?;
        let meta_path = tmp.join("meta.json");
        std::fs::write(&meta_path, json).map_err(|e| TokenizeError::io(&meta_path, e))?;
        Ok(meta)
    })();
    match result {
        Ok(meta) => {
            crate::replace_dir(&tmp, out)?;
            Ok(meta)
        }
        Err(e) => {
            let _ = std::fs::remove_dir_all(&tmp);
            Err(e)
        }
    }
}

/// Which split to read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Split {
    /// `train.bin`.
    Train,
    /// `val.bin`.
    Val,
}

/// An opened shard folder.
#[derive(Debug, Clone)]
pub struct ShardSet {
    /// The folder.
    pub dir: PathBuf,
    /// Its `meta.json`.
    pub meta: ShardMeta,
}

impl ShardSet {
    /// Opens `dir` and checks `meta.json`.
    pub fn open(dir: impl AsRef<Path>) -> Result<Self> {
        let dir = dir.as_ref().to_path_buf();
        let meta_path = dir.join("meta.json");
        let text =
            std::fs::read_to_string(&meta_path).map_err(|e| TokenizeError::io(&meta_path, e))?;
        let corrupt = |message: String| TokenizeError::CorruptShards {
            path: meta_path.clone(),
            message,
        };
        let meta: ShardMeta = serde_json::from_str(&text).map_err(|e| corrupt(e.to_string()))?;
        if meta.format != SHARD_FORMAT || meta.version != SHARD_VERSION {
            return Err(corrupt(format!(
                "format {:?} version {} (expected {SHARD_FORMAT:?} version {SHARD_VERSION})",
                meta.format, meta.version
            )));
        }
        if meta.dtype != TokenDtype::for_vocab(meta.vocab_size) && meta.dtype == TokenDtype::U16 {
            return Err(corrupt(format!(
                "u16 cannot hold a vocabulary of {}",
                meta.vocab_size
            )));
        }
        Ok(Self { dir, meta })
    }

    /// Maps one split into memory, checking its length and every id.
    pub fn split(&self, split: Split) -> Result<TokenShard> {
        let m = match split {
            Split::Train => &self.meta.train,
            Split::Val => &self.meta.val,
        };
        let path = self.dir.join(&m.file);
        let file = File::open(&path).map_err(|e| TokenizeError::io(&path, e))?;
        let len = file
            .metadata()
            .map_err(|e| TokenizeError::io(&path, e))?
            .len();
        let expected = m.tokens * self.meta.dtype.bytes() as u64;
        if len != expected {
            return Err(TokenizeError::CorruptShards {
                path,
                message: format!(
                    "{len} bytes, but meta.json says {} tokens of {} bytes ({expected} bytes)",
                    m.tokens,
                    self.meta.dtype.bytes()
                ),
            });
        }
        let mmap = if len == 0 {
            None
        } else {
            // SAFETY: the file is opened read-only; manabi never writes a shard in place
            // (sets are written under a temporary name and renamed), so the mapped bytes
            // do not change while mapped unless another program truncates the file.
            #[allow(unsafe_code)]
            let map = unsafe { Mmap::map(&file) }.map_err(|e| TokenizeError::io(&path, e))?;
            Some(map)
        };
        let shard = TokenShard {
            mmap,
            dtype: self.meta.dtype,
            len: m.tokens as usize,
        };
        let vocab = self.meta.vocab_size as u32;
        let bad = (0..shard.len)
            .into_par_iter()
            .find_first(|&i| shard.get(i) >= vocab);
        if let Some(i) = bad {
            return Err(TokenizeError::CorruptShards {
                path,
                message: format!(
                    "token {i} is id {}, beyond the vocabulary size {vocab}",
                    shard.get(i)
                ),
            });
        }
        Ok(shard)
    }
}

/// One memory-mapped split.
#[derive(Debug)]
pub struct TokenShard {
    mmap: Option<Mmap>,
    dtype: TokenDtype,
    len: usize,
}

impl TokenShard {
    /// Number of tokens.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the split is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Token `i`. Panics when `i >= len()` (a programming error).
    pub fn get(&self, i: usize) -> u32 {
        let bytes = self.mmap.as_deref().unwrap_or(&[]);
        match self.dtype {
            TokenDtype::U16 => u16::from_le_bytes([bytes[2 * i], bytes[2 * i + 1]]) as u32,
            TokenDtype::U32 => {
                let b = &bytes[4 * i..4 * i + 4];
                u32::from_le_bytes([b[0], b[1], b[2], b[3]])
            }
        }
    }

    /// Tokens `start..start+out.len()` copied into `out`.
    pub fn read_into(&self, start: usize, out: &mut [u32]) {
        for (k, o) in out.iter_mut().enumerate() {
            *o = self.get(start + k);
        }
    }

    /// Tokens `range` as a vector.
    pub fn to_vec(&self, range: std::ops::Range<usize>) -> Vec<u32> {
        range.map(|i| self.get(i)).collect()
    }
}
