//! Tokenizer training through the Hugging Face `tokenizers` crate: byte-level BPE,
//! WordPiece, Unigram and char-level, with special tokens, NFKC and Japanese-aware
//! pre-tokenisation. What is trained is saved as a standard `tokenizer.json`. With the
//! `morph` feature and a dictionary, documents are split into words first (see the
//! `morph` module); the tokenizer then records that in a sidecar when saved.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Mutex;

use serde::{Deserialize, Serialize};
use tokenizers::decoders::byte_level::ByteLevel as ByteLevelDecoder;
use tokenizers::decoders::fuse::Fuse;
use tokenizers::decoders::metaspace::Metaspace as MetaspaceDecoder;
use tokenizers::decoders::wordpiece::WordPiece as WordPieceDecoder;
use tokenizers::models::TrainerWrapper;
use tokenizers::models::bpe::{BPE, BpeTrainerBuilder};
use tokenizers::models::unigram::{Unigram, UnigramTrainer};
use tokenizers::models::wordpiece::{WordPiece, WordPieceTrainerBuilder};
use tokenizers::normalizers::{Lowercase, NFKC, NormalizerWrapper, Sequence as NormSequence};
use tokenizers::pre_tokenizers::PreTokenizerWrapper;
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::metaspace::{Metaspace, PrependScheme};
use tokenizers::pre_tokenizers::sequence::Sequence as PreSequence;
use tokenizers::pre_tokenizers::split::{Split, SplitPattern};
use tokenizers::pre_tokenizers::unicode_scripts::UnicodeScripts;
use tokenizers::pre_tokenizers::whitespace::{Whitespace, WhitespaceSplit};
use tokenizers::{AddedToken, SplitDelimiterBehavior, Tokenizer};

use crate::corpus::CorpusSpec;
use crate::error::{Result, TokenizeError};
use crate::strings::guarded;
use crate::tokenizer::TextTokenizer;

/// Splits text where the script changes between kanji, hiragana, katakana, Latin,
/// digits and the rest: a dictionary-free pre-tokeniser for Japanese that works offline.
/// Each piece may carry one leading space (as GPT-2's pattern does), so byte-level BPE
/// keeps spaces.
pub const JAPANESE_SPLIT_PATTERN: &str = r"\s?\p{Han}+[々〆ヶ]*|\s?\p{Hiragana}+|\s?[\p{Katakana}ーｰ]+|\s?\p{Latin}+|\s?\p{N}+|\s?[^\s\p{Han}\p{Hiragana}\p{Katakana}ーｰ\p{Latin}\p{N}]+|\s+";

/// The four tokenizer models.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TokenizerKind {
    /// Byte-level BPE (GPT-2 style): never an unknown token.
    Bpe,
    /// WordPiece with `##` continuation (BERT style).
    Wordpiece,
    /// Unigram language model (SentencePiece style, `▁` for spaces).
    Unigram,
    /// One token per character (char-rnn / nanoGPT's shakespeare_char).
    Char,
}

/// How text is split into words before the model sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PreTokenize {
    /// The model's usual choice: GPT-2 regex for BPE, whitespace and punctuation for
    /// WordPiece, `▁` metaspace for Unigram, nothing for char.
    #[default]
    Default,
    /// Script-boundary splitting for Japanese ([`JAPANESE_SPLIT_PATTERN`]).
    Japanese,
    /// Split on whitespace and punctuation.
    Whitespace,
    /// Split on whitespace only.
    WhitespaceSplit,
    /// Split where the Unicode script changes (kana and kanji stay together).
    UnicodeScripts,
    /// No splitting.
    None,
}

/// Everything that shapes a trained tokenizer.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TrainOptions {
    /// Model type.
    pub kind: TokenizerKind,
    /// Target vocabulary size, special tokens included.
    pub vocab_size: usize,
    /// Minimum count for a merge / piece / character to enter the vocabulary.
    pub min_frequency: u64,
    /// Special tokens, in id order from 0.
    pub special_tokens: Vec<String>,
    /// Number of span-corruption sentinels `<extra_id_0>`… appended to the specials.
    pub sentinels: usize,
    /// Append chat role tokens ([`CHAT_TOKENS`]).
    pub chat_tokens: bool,
    /// Apply NFKC normalisation (folds full-width forms, common for Japanese).
    pub nfkc: bool,
    /// Lower-case the text.
    pub lowercase: bool,
    /// Pre-tokenisation.
    pub pre_tokenize: PreTokenize,
    /// Keep only this many most frequent characters as the initial alphabet.
    pub limit_alphabet: Option<usize>,
    /// Characters always in the vocabulary, seen in the corpus or not (Hugging Face's
    /// `initial_alphabet`), e.g. those of a prompt template the corpus lacks. Char and
    /// Unigram models; byte-level BPE has every character already; WordPiece refuses it
    /// (a word-internal piece needs its `##` form too).
    #[serde(default)]
    pub alphabet: String,
    /// Draw a progress bar.
    pub show_progress: bool,
    /// Split documents into words with this MeCab-style system dictionary compiled by
    /// vibrato (optionally zstd-compressed) before training, and the same way when encoding.
    /// Needs the cargo feature `morph`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub morph_dict: Option<PathBuf>,
}

/// The default special tokens, ids 0 to 4.
pub const DEFAULT_SPECIAL_TOKENS: [&str; 5] = ["<pad>", "<unk>", "<bos>", "<eos>", "<mask>"];
/// Chat role tokens added by [`TrainOptions::chat_tokens`].
pub const CHAT_TOKENS: [&str; 4] = ["<|system|>", "<|user|>", "<|assistant|>", "<|end|>"];
/// The unknown token WordPiece, Unigram and char models fall back to.
pub const UNK: &str = "<unk>";

impl TrainOptions {
    /// Defaults for `kind` and `vocab_size`.
    pub fn new(kind: TokenizerKind, vocab_size: usize) -> Self {
        Self {
            kind,
            vocab_size,
            min_frequency: 2,
            special_tokens: DEFAULT_SPECIAL_TOKENS
                .iter()
                .map(|s| s.to_string())
                .collect(),
            sentinels: 0,
            chat_tokens: false,
            nfkc: false,
            lowercase: false,
            pre_tokenize: PreTokenize::Default,
            limit_alphabet: None,
            alphabet: String::new(),
            show_progress: false,
            morph_dict: None,
        }
    }

    /// All special tokens: the listed ones, then sentinels, then chat tokens.
    pub fn all_special_tokens(&self) -> Vec<String> {
        let mut out = self.special_tokens.clone();
        out.extend((0..self.sentinels).map(|i| format!("<extra_id_{i}>")));
        if self.chat_tokens {
            out.extend(CHAT_TOKENS.iter().map(|s| s.to_string()));
        }
        out
    }

    fn validate(&self, specials: &[String]) -> Result<()> {
        let invalid = |key: &str, message: String| TokenizeError::InvalidOption {
            key: key.into(),
            message,
        };
        let mut seen = HashMap::new();
        for s in specials {
            if s.is_empty() {
                return Err(invalid("special-tokens", "a special token is empty".into()));
            }
            if seen.insert(s.as_str(), ()).is_some() {
                return Err(invalid("special-tokens", format!("`{s}` is listed twice")));
            }
        }
        if self.kind != TokenizerKind::Bpe && !specials.iter().any(|s| s == UNK) {
            return Err(invalid(
                "special-tokens",
                format!(
                    "kind {} needs the unknown token `{UNK}` among the special tokens",
                    serde_json::to_string(&self.kind).unwrap_or_default()
                ),
            ));
        }
        if self.kind == TokenizerKind::Wordpiece && !self.alphabet.is_empty() {
            return Err(invalid(
                "alphabet",
                "WordPiece cannot take an alphabet (its word-internal pieces would still be unknown); use char or unigram".into(),
            ));
        }
        if self.kind == TokenizerKind::Char && self.pre_tokenize != PreTokenize::Default {
            return Err(invalid(
                "pre-tokenize",
                "a char-level tokenizer does not pre-tokenize".into(),
            ));
        }
        if self.morph_dict.is_some() {
            if self.kind == TokenizerKind::Char {
                return Err(invalid(
                    "morph-dict",
                    "a char-level tokenizer does not split words".into(),
                ));
            }
            // Words reach the model separated by spaces, so the pre-tokenizer must split
            // there; Unigram's metaspace always does.
            let splits_at_spaces = self.kind == TokenizerKind::Unigram
                || !matches!(
                    self.pre_tokenize,
                    PreTokenize::None | PreTokenize::UnicodeScripts
                );
            if !splits_at_spaces {
                return Err(invalid(
                    "morph-dict",
                    format!(
                        "pre-tokenize {} does not split at the spaces between words \
                         (hint: keep the default pre-tokenization)",
                        serde_json::to_string(&self.pre_tokenize).unwrap_or_default()
                    ),
                ));
            }
        }
        if self.kind == TokenizerKind::Bpe {
            let needed = 256 + specials.len();
            if self.vocab_size < needed {
                return Err(TokenizeError::VocabTooSmall {
                    requested: self.vocab_size,
                    needed,
                    why: format!("256 byte symbols + {} special tokens", specials.len()),
                });
            }
        } else if self.vocab_size <= specials.len() {
            return Err(TokenizeError::VocabTooSmall {
                requested: self.vocab_size,
                needed: specials.len() + 1,
                why: format!("{} special tokens and at least one symbol", specials.len()),
            });
        }
        Ok(())
    }

    fn normalizer(&self) -> Option<NormalizerWrapper> {
        let mut parts: Vec<NormalizerWrapper> = Vec::new();
        if self.nfkc {
            parts.push(NFKC.into());
        }
        if self.lowercase {
            parts.push(Lowercase.into());
        }
        match parts.len() {
            0 => None,
            1 => parts.pop(),
            _ => Some(NormSequence::new(parts).into()),
        }
    }

    fn pre_tokenizer(&self) -> Result<Option<PreTokenizerWrapper>> {
        let japanese = || -> Result<PreTokenizerWrapper> {
            let split = Split::new(
                SplitPattern::Regex(JAPANESE_SPLIT_PATTERN.into()),
                SplitDelimiterBehavior::Isolated,
                false,
            )
            .map_err(|e| TokenizeError::Tokenizers(e.to_string()))?;
            Ok(split.into())
        };
        let generic = |p: PreTokenize| -> Result<Option<PreTokenizerWrapper>> {
            Ok(match p {
                PreTokenize::Japanese => Some(japanese()?),
                PreTokenize::Whitespace => Some(Whitespace {}.into()),
                PreTokenize::WhitespaceSplit => Some(WhitespaceSplit.into()),
                PreTokenize::UnicodeScripts => Some(UnicodeScripts::new().into()),
                PreTokenize::None | PreTokenize::Default => None,
            })
        };
        let seq = |first: Option<PreTokenizerWrapper>, last: PreTokenizerWrapper| match first {
            Some(first) => PreSequence::new(vec![first, last]).into(),
            None => last,
        };
        Ok(match self.kind {
            TokenizerKind::Char => None,
            TokenizerKind::Bpe => Some(match self.pre_tokenize {
                PreTokenize::Default => ByteLevel::new(false, true, true).into(),
                p => seq(generic(p)?, ByteLevel::new(false, true, false).into()),
            }),
            TokenizerKind::Wordpiece => match self.pre_tokenize {
                PreTokenize::Default => Some(Whitespace {}.into()),
                PreTokenize::Japanese => Some(seq(Some(WhitespaceSplit.into()), japanese()?)),
                p => generic(p)?,
            },
            TokenizerKind::Unigram => {
                let meta: PreTokenizerWrapper =
                    Metaspace::new('▁', PrependScheme::Always, true).into();
                match self.pre_tokenize {
                    PreTokenize::Default | PreTokenize::None => Some(meta),
                    p => Some(seq(
                        Some(meta),
                        generic(p)?.unwrap_or(WhitespaceSplit.into()),
                    )),
                }
            }
        })
    }
}

/// Trains a tokenizer on `corpus`. The result is kept in memory; [`TextTokenizer::save`]
/// writes it.
pub fn train(corpus: &CorpusSpec, opts: &TrainOptions) -> Result<TextTokenizer> {
    let specials = opts.all_special_tokens();
    opts.validate(&specials)?;

    if opts.kind == TokenizerKind::Char {
        return train_char(corpus, opts, &specials);
    }
    #[cfg(feature = "morph")]
    let morph = match &opts.morph_dict {
        Some(path) => Some(std::sync::Arc::new(
            crate::morph::MorphSplitter::open(path)?.protect(&specials)?,
        )),
        None => None,
    };
    #[cfg(feature = "morph")]
    let mut worker = morph.as_ref().map(|m| m.worker());
    #[cfg(not(feature = "morph"))]
    if let Some(path) = &opts.morph_dict {
        return Err(TokenizeError::MorphFeatureDisabled {
            path: path.clone(),
            what: "training with a morphological dictionary (--morph-dict)".into(),
        });
    }

    let added: Vec<AddedToken> = specials
        .iter()
        .map(|s| AddedToken::from(s.clone(), true))
        .collect();
    let (model, mut trainer): (tokenizers::models::ModelWrapper, TrainerWrapper) = match opts.kind {
        TokenizerKind::Bpe => {
            let mut b = BpeTrainerBuilder::new()
                .vocab_size(opts.vocab_size)
                .min_frequency(opts.min_frequency)
                .special_tokens(added)
                .show_progress(opts.show_progress)
                .initial_alphabet(ByteLevel::alphabet().into_iter().collect());
            if let Some(n) = opts.limit_alphabet {
                b = b.limit_alphabet(n);
            }
            (BPE::default().into(), b.build().into())
        }
        TokenizerKind::Wordpiece => {
            let model = WordPiece::builder()
                .unk_token(UNK.into())
                .build()
                .map_err(|e| TokenizeError::Tokenizers(e.to_string()))?;
            let mut b = WordPieceTrainerBuilder::new()
                .vocab_size(opts.vocab_size)
                .min_frequency(opts.min_frequency)
                .special_tokens(added)
                .show_progress(opts.show_progress);
            if let Some(n) = opts.limit_alphabet {
                b = b.limit_alphabet(n);
            }
            (model.into(), b.build().into())
        }
        TokenizerKind::Unigram => {
            let trainer = UnigramTrainer::builder()
                .vocab_size(opts.vocab_size as u32)
                .special_tokens(added)
                .unk_token(Some(UNK.into()))
                .show_progress(opts.show_progress)
                .initial_alphabet(opts.alphabet.chars().collect())
                .build()
                .map_err(|e| TokenizeError::Tokenizers(e.to_string()))?;
            (Unigram::default().into(), trainer.into())
        }
        TokenizerKind::Char => unreachable!("handled above"),
    };

    let mut tokenizer = Tokenizer::new(model);
    tokenizer.with_normalizer(opts.normalizer());
    tokenizer.with_pre_tokenizer(opts.pre_tokenizer()?);
    tokenizer.with_decoder(Some(match opts.kind {
        TokenizerKind::Bpe => tokenizers::DecoderWrapper::from(ByteLevelDecoder::default()),
        TokenizerKind::Wordpiece => WordPieceDecoder::new("##".into(), true).into(),
        _ => MetaspaceDecoder::new('▁', PrependScheme::Always, true).into(),
    }));

    let failure = Mutex::new(None);
    let mut documents = 0u64;
    let fail = |e: TokenizeError| {
        *failure.lock().unwrap_or_else(|p| p.into_inner()) = Some(e);
    };
    let docs = corpus.documents()?.map_while(|d| {
        let text = d.map_err(&fail).ok()?.text;
        documents += 1;
        #[cfg(feature = "morph")]
        if let (Some(m), Some(worker)) = (&morph, worker.as_mut()) {
            return m.split_with(worker, &text).map_err(&fail).ok();
        }
        Some(text)
    });
    let trained = guarded(|| tokenizer.train(&mut trainer, docs).map(|_| ()))
        .map_err(TokenizeError::Tokenizers)?;
    if let Some(e) = failure.into_inner().unwrap_or_else(|p| p.into_inner()) {
        return Err(e);
    }
    if documents == 0 {
        return Err(TokenizeError::EmptyCorpus(corpus.describe()));
    }
    trained.map_err(|e| {
        let message = e.to_string();
        if message.contains("not large enough to contain all chars") {
            TokenizeError::InvalidOption {
                key: "vocab-size".into(),
                message: format!(
                    "{} cannot hold every character of the corpus, which a Unigram model keeps; raise it",
                    opts.vocab_size
                ),
            }
        } else {
            TokenizeError::Tokenizers(message)
        }
    })?;

    let got = tokenizer.get_vocab_size(true);
    if got > opts.vocab_size {
        return Err(TokenizeError::VocabTooSmall {
            requested: opts.vocab_size,
            needed: got,
            why: "the corpus alphabet does not fit; raise --vocab-size or set --limit-alphabet"
                .into(),
        });
    }
    let tokenizer = TextTokenizer::from_inner(tokenizer, PathBuf::from("tokenizer.json"))?;
    #[cfg(feature = "morph")]
    if let Some(m) = morph {
        return Ok(tokenizer.with_morph(m));
    }
    Ok(tokenizer)
}

/// Char-level: the specials, then every character seen at least `min_frequency` times,
/// most frequent first. Stored as a BPE model without merges, so Python loads it as is.
fn train_char(
    corpus: &CorpusSpec,
    opts: &TrainOptions,
    specials: &[String],
) -> Result<TextTokenizer> {
    let mut counts: HashMap<char, u64> = HashMap::new();
    let mut documents = 0u64;
    let nfkc = opts.normalizer();
    for doc in corpus.documents()? {
        let mut text = doc?.text;
        if let Some(n) = &nfkc {
            let mut s = tokenizers::NormalizedString::from(text.as_str());
            tokenizers::Normalizer::normalize(n, &mut s)
                .map_err(|e| TokenizeError::Tokenizers(e.to_string()))?;
            text = s.get().to_string();
        }
        documents += 1;
        for c in text.chars() {
            *counts.entry(c).or_default() += 1;
        }
    }
    if documents == 0 || counts.is_empty() {
        return Err(TokenizeError::EmptyCorpus(corpus.describe()));
    }
    // Documents are joined by newlines when encoded as shards of plain text.
    counts.entry('\n').or_insert(opts.min_frequency.max(1));
    let mut chars: Vec<(char, u64)> = counts
        .into_iter()
        .filter(|&(_, n)| n >= opts.min_frequency.max(1))
        .collect();
    chars.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    if let Some(limit) = opts.limit_alphabet {
        chars.truncate(limit);
    }
    for c in opts.alphabet.chars() {
        if !chars.iter().any(|&(k, _)| k == c) {
            chars.push((c, 0));
        }
    }
    let needed = specials.len() + chars.len();
    if needed > opts.vocab_size {
        return Err(TokenizeError::VocabTooSmall {
            requested: opts.vocab_size,
            needed,
            why: format!(
                "{} special tokens + {} distinct characters; raise --vocab-size or set --limit-alphabet",
                specials.len(),
                chars.len()
            ),
        });
    }
    // Sorted by code point so the vocabulary reads like nanoGPT's `sorted(set(text))`.
    let mut alphabet: Vec<char> = chars.into_iter().map(|(c, _)| c).collect();
    alphabet.sort_unstable();
    let vocab: BTreeMap<String, u32> = specials
        .iter()
        .cloned()
        .chain(alphabet.iter().map(|c| c.to_string()))
        .zip(0u32..)
        .collect();
    let model = BPE::builder()
        .vocab_and_merges(vocab.into_iter().collect::<ahash::AHashMap<_, _>>(), vec![])
        .unk_token(UNK.into())
        .build()
        .map_err(|e| TokenizeError::Tokenizers(e.to_string()))?;
    let mut tokenizer = Tokenizer::new(model);
    tokenizer.with_normalizer(nfkc);
    tokenizer.with_decoder(Some(Fuse::new()));
    let added: Vec<AddedToken> = specials
        .iter()
        .map(|s| AddedToken::from(s.clone(), true))
        .collect();
    tokenizer.add_special_tokens(&added);
    TextTokenizer::from_inner(tokenizer, PathBuf::from("tokenizer.json"))
}
