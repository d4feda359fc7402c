//! A Hugging Face `tokenizer.json`, loaded defensively and saved atomically.
//!
//! The `tokenizers` crate can panic on crafted files (ids out of range, inconsistent
//! models); every call into it that depends on file contents runs behind
//! [`std::panic::catch_unwind`] so a bad file is an error, never a crash.
//!
//! A `manabi-pretokenize.json` sidecar beside the file (see [`crate::sidecar`]) adds
//! morphological word splitting before the pipeline; without one, the file is used as is.
//!
//! A `tokenizer_config.json` beside a file named `tokenizer.json` is read as
//! `transformers` 5.25's `AutoTokenizer.from_pretrained` reads it ([`crate::hf_config`]):
//! the class it names may rebuild the pipeline, and its special tokens (`bos_token`,
//! `eos_token`, …) are looked up. [`TextTokenizer::encode`] adds no special tokens;
//! [`TextTokenizer::encode_with_specials`] adds the post-processor's (a BOS, …), as
//! `AutoTokenizer.from_pretrained(dir)(text)["input_ids"]` does.
//!
//! A folder with a tokenizer_config.json but no tokenizer.json, or a `.model` file, is a
//! SentencePiece model (`spiece.model`, `tokenizer.model`), converted as transformers
//! converts it ([`crate::spm`]); [`TextTokenizer::to_json`] is then the converted pipeline.
//! A folder whose class is `BertJapaneseTokenizer` is built from its `vocab.txt`
//! ([`crate::bertja`]), with MeCab word splitting before the pipeline when it names it.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::error::{Result, TokenizeError};
use crate::hf_config::{Class, Settings};
use crate::sidecar::{SIDECAR_VERSION, Sidecar, sidecar_path};
use crate::strings::{guarded, hex};

/// A text tokenizer in the Hugging Face format, plus where it came from.
#[derive(Debug, Clone)]
pub struct TextTokenizer {
    inner: tokenizers::Tokenizer,
    json: String,
    path: PathBuf,
    /// Class, named special tokens and `model_max_length` from tokenizer_config.json.
    settings: std::sync::Arc<Settings>,
    /// Ids the post-processor puts before and after one sequence (e.g. a BOS).
    framing: std::sync::Arc<(Vec<u32>, Vec<u32>)>,
    /// Word splitting applied to text before `inner` sees it (from the sidecar).
    #[cfg(feature = "morph")]
    morph: Option<std::sync::Arc<crate::morph::MorphSplitter>>,
}

impl TextTokenizer {
    /// Loads `path` (a `tokenizer.json`, or a folder holding one), and the
    /// `manabi-pretokenize.json` sidecar beside it when there is one. A file named
    /// `tokenizer.json` is read with the `tokenizer_config.json` (and
    /// `special_tokens_map.json`, `config.json`) beside it, as `transformers` does; when
    /// only tokenizer_config.json is there, the SentencePiece model its class reads
    /// (`spiece.model`, `tokenizer.model`) is converted. A `.model` file is converted
    /// with the tokenizer_config.json beside it, if any.
    pub fn load(path: impl AsRef<Path>) -> Result<Self> {
        let mut path = path.as_ref().to_path_buf();
        if path.is_dir() {
            path = path.join("tokenizer.json");
        }
        if path.extension().is_some_and(|e| e == "model") {
            let mut tokenizer = Self::from_sentencepiece_file(path)?;
            tokenizer.attach_sidecar()?;
            return Ok(tokenizer);
        }
        // A folder's tokenizer.json (present or not), or the vocab.txt of a
        // BertJapaneseTokenizer folder (the path such a tokenizer reports).
        let folder = if path
            .file_name()
            .is_some_and(|n| n == "tokenizer.json" || n == crate::bertja::VOCAB_FILE)
        {
            crate::hf_config::read_folder(path.parent().unwrap_or(Path::new("")))?
        } else {
            None
        };
        // BertJapaneseTokenizer is built from vocab.txt, tokenizer.json or not.
        if let Some(folder) = &folder
            && crate::bertja::is_bert_japanese(folder)
        {
            return Self::from_bert_japanese(folder, path.parent().unwrap_or(Path::new("")));
        }
        let bytes = match (std::fs::read(&path), &folder) {
            (Ok(bytes), _) => bytes,
            (Err(e), Some(folder)) if e.kind() == std::io::ErrorKind::NotFound => {
                let mut tokenizer = Self::from_slow_folder(path, folder)?;
                tokenizer.attach_sidecar()?;
                return Ok(tokenizer);
            }
            (Err(e), _) => return Err(TokenizeError::io(&path, e)),
        };
        let json = String::from_utf8(bytes).map_err(|_| TokenizeError::CorruptTokenizer {
            path: path.clone(),
            message: "not UTF-8 text".into(),
        })?;
        let mut tokenizer = match folder {
            None => Self::from_json(json, path)?,
            Some(folder) => Self::from_folder(json, path, &folder)?,
        };
        tokenizer.attach_sidecar()?;
        Ok(tokenizer)
    }

    /// Parses `json` as the class the folder's tokenizer_config.json names builds it, and
    /// looks up the special tokens it names.
    fn from_folder(json: String, path: PathBuf, folder: &crate::hf_config::Folder) -> Result<Self> {
        if json_depth(&json) > MAX_JSON_DEPTH {
            // from_json names the depth
            return Self::from_json(json, path);
        }
        let plan = folder.plan(&json)?;
        let effective = match plan.class {
            Class::AsIs => None,
            _ => Some(plan.rebuild(&json, &path)?),
        };
        let (mut tokenizer, file_pad) = Self::parse(json, effective, path)?;
        let settings = plan.finish(|t| tokenizer.inner.token_to_id(t), file_pad)?;
        tokenizer.settings = std::sync::Arc::new(settings);
        Ok(tokenizer)
    }

    /// transformers' `BertJapaneseTokenizer` of the folder `dir` ([`crate::bertja`]):
    /// its pipeline, and its MeCab step when it splits words with MeCab.
    fn from_bert_japanese(folder: &crate::hf_config::Folder, dir: &Path) -> Result<Self> {
        let converted = crate::bertja::convert(folder, dir)?;
        #[cfg_attr(not(feature = "morph"), allow(unused_mut))]
        let mut tokenizer = Self::from_folder(converted.json, converted.vocab_path, folder)?;
        if let Some(step) = converted.mecab {
            #[cfg(feature = "morph")]
            {
                let added = tokenizer.added_contents();
                let dictionary = crate::mecab::locate(
                    step.dic.as_deref(),
                    step.option.as_deref(),
                    dir,
                    folder.config_path(),
                )?;
                let splitter = crate::morph::MorphSplitter::mecab(&dictionary, step.nfkc)?;
                tokenizer.morph = Some(std::sync::Arc::new(splitter.protect(&added)?));
            }
            #[cfg(not(feature = "morph"))]
            {
                let _ = step;
                return Err(TokenizeError::MorphFeatureDisabled {
                    path: folder.config_path().to_path_buf(),
                    what: "BertJapaneseTokenizer with MeCab word splitting".into(),
                });
            }
        }
        Ok(tokenizer)
    }

    /// A folder with tokenizer_config.json and no tokenizer.json (`path`): the
    /// SentencePiece model of its class, converted as transformers converts it; any
    /// other slow tokenizer is refused.
    fn from_slow_folder(path: PathBuf, folder: &crate::hf_config::Folder) -> Result<Self> {
        let slow = || {
            let (config, class) = folder.describe();
            TokenizeError::SlowTokenizer {
                path: path.clone(),
                config,
                class,
            }
        };
        let Some(class) = crate::spm::class_of(folder)? else {
            return Err(slow());
        };
        let model = path.with_file_name(crate::spm::model_file(class));
        if !model.is_file() {
            return Err(slow());
        }
        Self::from_sentencepiece(model, Some(folder), class)
    }

    /// A `.model` file named directly: converted as the class of the tokenizer_config.json
    /// beside it builds it, or without one as `TokenizersBackend` does (the model's own
    /// normaliser settings).
    fn from_sentencepiece_file(model: PathBuf) -> Result<Self> {
        let folder = crate::hf_config::read_folder(model.parent().unwrap_or(Path::new("")))?;
        let class = match &folder {
            None => Class::AsIs,
            Some(f) => crate::spm::class_of(f)?.ok_or_else(|| {
                let (config, class) = f.describe();
                TokenizeError::SentencePiece {
                    path: model.clone(),
                    message: format!(
                        "{}{class} names a class manabi does not convert a SentencePiece model \
                         for (it converts T5Tokenizer, LlamaTokenizer and TokenizersBackend)",
                        config.display()
                    ),
                }
            })?,
        };
        Self::from_sentencepiece(model, folder.as_ref(), class)
    }

    /// The SentencePiece model `model` converted as transformers builds `class` from it
    /// ([`crate::spm::convert`]), then loaded like a tokenizer.json.
    fn from_sentencepiece(
        model: PathBuf,
        folder: Option<&crate::hf_config::Folder>,
        class: Class,
    ) -> Result<Self> {
        let converted = crate::spm::convert(&model, folder, class)?;
        let (mut tokenizer, _) = Self::parse(converted.json, None, model).map_err(|e| match e {
            TokenizeError::CorruptTokenizer { path, message } => TokenizeError::SentencePiece {
                path,
                message: format!(
                    "the tokenizer converted from this SentencePiece model is not usable: {message}"
                ),
            },
            e => e,
        })?;
        tokenizer.settings = std::sync::Arc::new(converted.settings);
        Ok(tokenizer)
    }

    /// The text of every added token (special or not), which word splitting leaves whole.
    #[cfg(feature = "morph")]
    fn added_contents(&self) -> Vec<String> {
        self.inner
            .get_added_tokens_decoder()
            .into_values()
            .map(|t| t.content)
            .collect()
    }

    /// Applies the sidecar beside this tokenizer's file, if any.
    fn attach_sidecar(&mut self) -> Result<()> {
        let path = sidecar_path(&self.path);
        let Some(sidecar) = Sidecar::read(&path)? else {
            return Ok(());
        };
        sidecar.check_tokenizer(&path, &self.path, &self.sha256())?;
        #[cfg(feature = "morph")]
        {
            let added = self.added_contents();
            let splitter = crate::morph::MorphSplitter::from_sidecar(&sidecar, &path)?;
            self.morph = Some(std::sync::Arc::new(splitter.protect(&added)?));
            Ok(())
        }
        #[cfg(not(feature = "morph"))]
        Err(TokenizeError::MorphFeatureDisabled {
            what: format!(
                "{} (dictionary {})",
                self.path.display(),
                sidecar.morph.dictionary.display()
            ),
            path,
        })
    }

    /// Parses a `tokenizer.json` held in memory, as is (no tokenizer_config.json); `path`
    /// is used in messages.
    pub fn from_json(json: String, path: PathBuf) -> Result<Self> {
        Ok(Self::parse(json, None, path)?.0)
    }

    /// Parses `effective` (the pipeline a class rebuilt from `json`), or `json` itself;
    /// `json` stays the file's text (hashed, saved). Also returns the pad token of the
    /// file's `padding`, which is turned off.
    fn parse(
        json: String,
        effective: Option<String>,
        path: PathBuf,
    ) -> Result<(Self, Option<String>)> {
        let corrupt = |path: &Path, message: String| TokenizeError::CorruptTokenizer {
            path: path.to_path_buf(),
            message,
        };
        let text = effective.as_deref().unwrap_or(&json);
        // Defensive: a file nested far deeper than any real one is refused before the
        // recursive deserialisers of `tokenizers` see it (real files stay under 10 levels).
        let depth = json_depth(text);
        if depth > MAX_JSON_DEPTH {
            return Err(corrupt(
                &path,
                format!(
                    "JSON nested {depth} levels deep (a tokenizer.json needs at most {MAX_JSON_DEPTH})"
                ),
            ));
        }
        if let Some(message) = overlong_unigram_piece(text) {
            return Err(corrupt(&path, message));
        }
        let mut inner = guarded(|| text.parse::<tokenizers::Tokenizer>())
            .map_err(|m| corrupt(&path, m))?
            .map_err(|e| corrupt(&path, e.to_string()))?;
        // A call of transformers' tokenizer neither truncates nor pads unless asked to,
        // whatever tokenizer.json says.
        let file_pad = inner.get_padding().map(|p| p.pad_token.clone());
        inner
            .with_truncation(None)
            .map_err(|e| corrupt(&path, e.to_string()))?;
        inner.with_padding(None);
        let mut tokenizer = Self {
            inner,
            json,
            path,
            settings: Default::default(),
            framing: Default::default(),
            #[cfg(feature = "morph")]
            morph: None,
        };
        tokenizer.check().map_err(|m| corrupt(&tokenizer.path, m))?;
        let framing = tokenizer
            .probe_framing()
            .map_err(|m| corrupt(&tokenizer.path, m))?;
        tokenizer.framing = std::sync::Arc::new(framing);
        Ok((tokenizer, file_pad))
    }

    /// The ids the post-processor adds before and after one sequence, found by encoding a
    /// probe text with and without special tokens. A post-processor that does more than
    /// add tokens around the sequence is refused.
    fn probe_framing(&self) -> std::result::Result<(Vec<u32>, Vec<u32>), String> {
        let ids = |text: &str, special: bool| {
            guarded(|| self.inner.encode_fast(text, special))?
                .map(|e| e.get_ids().to_vec())
                .map_err(|e| e.to_string())
        };
        for probe in ["Hello", "a", "0", "。", "x y"] {
            let plain = ids(probe, false)?;
            if plain.is_empty() {
                continue;
            }
            let full = ids(probe, true)?;
            let at = (0..=full.len().saturating_sub(plain.len()))
                .find(|&i| full.get(i..i + plain.len()) == Some(plain.as_slice()));
            return match at {
                Some(i) => Ok((full[..i].to_vec(), full[i + plain.len()..].to_vec())),
                None => Err(format!(
                    "the post-processor changes the ids of a sequence ({probe:?}: {plain:?} \
                     becomes {full:?}), not only adds special tokens around it"
                )),
            };
        }
        // Nothing encodes to a token: whatever the empty text gets comes first.
        Ok((ids("", true)?, Vec::new()))
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
        let mut tokenizer = Self {
            inner,
            json,
            path,
            settings: Default::default(),
            framing: Default::default(),
            #[cfg(feature = "morph")]
            morph: None,
        };
        let framing = tokenizer
            .probe_framing()
            .map_err(TokenizeError::Tokenizers)?;
        tokenizer.framing = std::sync::Arc::new(framing);
        Ok(tokenizer)
    }

    /// Adds morphological word splitting (after training with a dictionary).
    #[cfg(feature = "morph")]
    pub(crate) fn with_morph(mut self, morph: std::sync::Arc<crate::morph::MorphSplitter>) -> Self {
        self.morph = Some(morph);
        self
    }

    /// Writes `tokenizer.json` atomically (temporary file, then rename), and beside it the
    /// `manabi-pretokenize.json` sidecar when the tokenizer splits words with a dictionary;
    /// a sidecar left there by an earlier tokenizer is removed.
    pub fn save(&mut self, path: impl AsRef<Path>) -> Result<()> {
        let path = path.as_ref();
        let side = sidecar_path(path);
        if let Some(sidecar) = self.sidecar() {
            // The sidecar goes first: should the JSON not land, the sidecar names a hash
            // the old file does not have, and loading refuses rather than misapplies it.
            sidecar.write(&side)?;
            crate::write_atomic(path, self.json.as_bytes())?;
        } else {
            crate::write_atomic(path, self.json.as_bytes())?;
            match std::fs::remove_file(&side) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    return Err(TokenizeError::io(&side, e));
                }
                _ => {}
            }
        }
        self.path = path.to_path_buf();
        Ok(())
    }

    /// The `manabi-pretokenize.json` that goes beside this tokenizer's JSON when it
    /// splits words first.
    pub fn sidecar(&self) -> Option<Sidecar> {
        self.morph_record().map(|morph| Sidecar {
            format: crate::sidecar::SIDECAR_FORMAT.into(),
            version: SIDECAR_VERSION,
            tokenizer_sha256: self.sha256(),
            morph,
        })
    }

    /// What the sidecar should record, when anything.
    fn morph_record(&self) -> Option<crate::sidecar::MorphRecord> {
        #[cfg(feature = "morph")]
        if let Some(m) = &self.morph {
            return Some(m.record());
        }
        None
    }

    /// The morphological dictionary this tokenizer splits words with, if any.
    pub fn morph_dictionary(&self) -> Option<&Path> {
        #[cfg(feature = "morph")]
        if let Some(m) = &self.morph {
            return Some(m.path());
        }
        None
    }

    /// The text the `tokenizers` pipeline sees: `text` itself, or with a morphological
    /// dictionary, `text` with a space at every word boundary.
    pub fn pre_split<'a>(&self, text: &'a str) -> Result<Cow<'a, str>> {
        #[cfg(feature = "morph")]
        if let Some(m) = &self.morph {
            return Ok(Cow::Owned(m.split(text)?));
        }
        Ok(Cow::Borrowed(text))
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
        let text = self.pre_split(text)?;
        let enc = guarded(|| self.inner.encode_fast(text.as_ref(), false))
            .map_err(TokenizeError::Tokenizers)?
            .map_err(|e| TokenizeError::Tokenizers(e.to_string()))?;
        Ok(enc.get_ids().to_vec())
    }

    /// Ids of `text` as `AutoTokenizer.from_pretrained(dir)(text)["input_ids"]` gives them
    /// in `transformers` 5.25: [`Self::encode`] with the post-processor's special tokens
    /// around it (a BOS for Llama-style tokenizers; nothing for manabi's own).
    pub fn encode_with_specials(&self, text: &str) -> Result<Vec<u32>> {
        Ok(self.frame(self.encode(text)?))
    }

    /// `ids` (one sequence, no special tokens) with the post-processor's special tokens
    /// around them, as [`Self::encode_with_specials`] adds them.
    pub fn frame(&self, ids: Vec<u32>) -> Vec<u32> {
        let (prefix, suffix) = &*self.framing;
        if prefix.is_empty() && suffix.is_empty() {
            return ids;
        }
        let mut out = Vec::with_capacity(prefix.len() + ids.len() + suffix.len());
        out.extend_from_slice(prefix);
        out.extend(ids);
        out.extend_from_slice(suffix);
        out
    }

    /// The special tokens the post-processor puts before a sequence (e.g. `[bos]`).
    pub fn specials_prefix(&self) -> &[u32] {
        &self.framing.0
    }

    /// The special tokens the post-processor puts after a sequence (e.g. `[eos]` with
    /// `add_eos_token`, `[SEP]` for BERT).
    pub fn specials_suffix(&self) -> &[u32] {
        &self.framing.1
    }

    /// A special token tokenizer_config.json (or special_tokens_map.json, or the class it
    /// names) gives under `key` (`"bos_token"`, `"eos_token"`, `"pad_token"`,
    /// `"unk_token"`, `"cls_token"`, …): its text and id. `None` when it names none, as for
    /// a tokenizer without tokenizer_config.json.
    pub fn special(&self, key: &str) -> Option<(&str, u32)> {
        self.settings
            .tokens
            .get(key)
            .map(|(text, id)| (text.as_str(), *id))
    }

    /// Id of the named `bos_token`.
    pub fn bos_id(&self) -> Option<u32> {
        self.special("bos_token").map(|(_, id)| id)
    }

    /// Id of the named `eos_token`.
    pub fn eos_id(&self) -> Option<u32> {
        self.special("eos_token").map(|(_, id)| id)
    }

    /// Id of the named `pad_token`.
    pub fn pad_id(&self) -> Option<u32> {
        self.special("pad_token").map(|(_, id)| id)
    }

    /// Id of the named `unk_token`.
    pub fn unk_id(&self) -> Option<u32> {
        self.special("unk_token").map(|(_, id)| id)
    }

    /// The class `transformers` builds this tokenizer as: `TokenizersBackend` when
    /// tokenizer.json is used as is (always without tokenizer_config.json).
    pub fn hf_class(&self) -> &'static str {
        self.settings.class.name()
    }

    /// `model_max_length` of tokenizer_config.json, when it sets a real limit.
    pub fn model_max_length(&self) -> Option<usize> {
        self.settings.model_max_length
    }

    /// The tokenizer_config.json this tokenizer was read with, if any.
    pub fn config_path(&self) -> Option<&Path> {
        self.settings.config.as_deref()
    }

    /// Ids of `text` with the character span `[start, end)` of `text` that each token
    /// covers (for aligning character-level labels, such as entity spans, to tokens).
    /// With a morphological dictionary the spans are of `text` itself, taken back through
    /// the split (and MeCab mode's NFKC).
    pub fn encode_with_offsets(&self, text: &str) -> Result<Vec<(u32, usize, usize)>> {
        #[cfg(feature = "morph")]
        if let Some(m) = &self.morph {
            // Offsets into the split text, taken back to `text` through the split's map.
            let (split, map) = m.split_aligned(text)?;
            let end = text.chars().count();
            return Ok(self
                .char_offsets(&split)?
                .into_iter()
                .map(|(id, s, e)| {
                    let start = map.get(s).map_or(end, |&(a, _)| a);
                    let stop = if e > s {
                        map.get(e - 1).map_or(end, |&(_, b)| b)
                    } else {
                        start
                    };
                    (id, start, stop.max(start))
                })
                .collect());
        }
        self.char_offsets(text)
    }

    /// Ids and character offsets of `text` as the pipeline sees it.
    fn char_offsets(&self, text: &str) -> Result<Vec<(u32, usize, usize)>> {
        let enc = guarded(|| self.inner.encode_char_offsets(text, false))
            .map_err(TokenizeError::Tokenizers)?
            .map_err(|e| TokenizeError::Tokenizers(e.to_string()))?;
        Ok(enc
            .get_ids()
            .iter()
            .zip(enc.get_offsets())
            .map(|(&id, &(s, e))| (id, s, e))
            .collect())
    }

    /// Token strings of `text` (for inspection).
    pub fn tokens(&self, text: &str) -> Result<Vec<String>> {
        let text = self.pre_split(text)?;
        let enc = guarded(|| self.inner.encode(text.as_ref(), false))
            .map_err(TokenizeError::Tokenizers)?
            .map_err(|e| TokenizeError::Tokenizers(e.to_string()))?;
        Ok(enc.get_tokens().to_vec())
    }

    /// Ids of many texts, encoded in parallel.
    pub fn encode_batch(&self, texts: &[&str]) -> Result<Vec<Vec<u32>>> {
        #[cfg(feature = "morph")]
        if let Some(m) = &self.morph {
            let split = m.split_many(texts)?;
            let split: Vec<&str> = split.iter().map(String::as_str).collect();
            return self.encode_batch_plain(&split);
        }
        self.encode_batch_plain(texts)
    }

    fn encode_batch_plain(&self, texts: &[&str]) -> Result<Vec<Vec<u32>>> {
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

/// Deepest nesting of arrays and objects a `tokenizer.json` may have (real ones stay
/// under 10; `Sequence` normalizers and pre-tokenizers add a level or two each).
const MAX_JSON_DEPTH: usize = 64;

/// Longest Unigram piece accepted, in bytes. `tokenizers` keeps Unigram pieces in a trie
/// of one node per byte, which it frees recursively: a piece of tens of thousands of
/// bytes overflows the stack when the tokenizer is dropped (an abort). SentencePiece
/// pieces are at most 16 characters by default.
const MAX_UNIGRAM_PIECE: usize = 1024;

/// Why a Unigram `tokenizer.json` cannot be loaded safely: a piece over
/// [`MAX_UNIGRAM_PIECE`] bytes. `None` for other models and for files that do not parse
/// (the tokenizers parser reports those).
fn overlong_unigram_piece(json: &str) -> Option<String> {
    if !json.contains("Unigram") {
        return None;
    }
    let v: serde_json::Value = serde_json::from_str(json).ok()?;
    let vocab = v.pointer("/model/vocab")?.as_array()?;
    vocab.iter().enumerate().find_map(|(i, entry)| {
        let piece = entry.get(0)?.as_str()?;
        (piece.len() > MAX_UNIGRAM_PIECE).then(|| {
            format!(
                "Unigram piece {i} is {} bytes long (at most {MAX_UNIGRAM_PIECE})",
                piece.len()
            )
        })
    })
}

/// The deepest nesting of `[` / `{` in JSON text, brackets inside strings not counted.
fn json_depth(json: &str) -> usize {
    let (mut depth, mut deepest, mut in_string, mut escaped) = (0usize, 0usize, false, false);
    for b in json.bytes() {
        if in_string {
            match (escaped, b) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                deepest = deepest.max(depth);
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    deepest
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

    #[test]
    fn a_unigram_piece_longer_than_any_real_one_is_refused_not_a_stack_overflow() {
        let json = r#"{"version": "1.0", "truncation": null, "padding": null, "added_tokens": [],
            "normalizer": null, "pre_tokenizer": null, "post_processor": null, "decoder": null,
            "model": {"type": "Unigram", "unk_id": 0, "byte_fallback": false,
                      "vocab": [["<unk>", 0.0], ["a", -1.0], ["PIECE", -2.0]]}}"#;
        TextTokenizer::from_json(json.replace("PIECE", "b"), PathBuf::from("u.json")).unwrap();
        let long = json.replace("PIECE", &"[".repeat(60_000));
        let err = TextTokenizer::from_json(long, PathBuf::from("u.json"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("Unigram piece 2 is 60000 bytes long"), "{err}");
    }

    #[test]
    fn a_tokenizer_json_nested_beyond_any_real_one_is_refused() {
        assert_eq!(json_depth(r#"{"a": [1, {"b": "[[[[{{"}]}"#), 3);
        let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
        let err = TextTokenizer::from_json(deep, PathBuf::from("t.json"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("JSON nested 100000 levels deep"), "{err}");
    }
}
