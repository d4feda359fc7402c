//! The one error type of the tokenize crate: every variant names the file, line or token
//! a person has to look at.

use std::path::PathBuf;

/// Everything that can go wrong while reading corpora, training, loading or encoding.
#[derive(Debug, thiserror::Error)]
pub enum TokenizeError {
    /// A file or folder could not be opened, read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// What the operating system said.
        source: std::io::Error,
    },
    /// A line of a corpus is not valid UTF-8.
    #[error("{path}:{line}: invalid UTF-8 (hint: pass --skip-invalid to skip such lines)")]
    InvalidUtf8 {
        /// The corpus file.
        path: PathBuf,
        /// One-based line number.
        line: u64,
    },
    /// A JSONL line is not valid JSON, or not an object.
    #[error(
        "{path}:{line}: malformed JSON: {message} (hint: pass --skip-invalid to skip such lines)"
    )]
    MalformedJson {
        /// The corpus file.
        path: PathBuf,
        /// One-based line number.
        line: u64,
        /// What the parser said.
        message: String,
    },
    /// A JSONL record lacks the text field, or it is not a string.
    #[error("{path}:{line}: no string field `{field}` (hint: choose the field with --field)")]
    MissingField {
        /// The corpus file.
        path: PathBuf,
        /// One-based line number.
        line: u64,
        /// The field that was asked for.
        field: String,
    },
    /// The corpus has no text at all.
    #[error("empty corpus: no text in {0}")]
    EmptyCorpus(String),
    /// The requested vocabulary cannot hold what the tokenizer needs.
    #[error("vocab size {requested} is too small: {needed} entries are needed ({why})")]
    VocabTooSmall {
        /// The vocabulary size asked for.
        requested: usize,
        /// The smallest size that works.
        needed: usize,
        /// What takes up the room.
        why: String,
    },
    /// A training option is invalid.
    #[error("invalid option `{key}`: {message}")]
    InvalidOption {
        /// The option.
        key: String,
        /// What is wrong with it.
        message: String,
    },
    /// A special token that was asked for is not in the tokenizer's vocabulary.
    #[error("{path}: the tokenizer has no token `{token}` (hint: train with --special-tokens)")]
    UnknownSpecialToken {
        /// The tokenizer file.
        path: PathBuf,
        /// The missing token.
        token: String,
    },
    /// A `tokenizer.json` could not be parsed, or crashed the `tokenizers` crate.
    #[error("{path}: not a usable tokenizer.json: {message}")]
    CorruptTokenizer {
        /// The tokenizer file.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
    /// `tokenizer_config.json`, `special_tokens_map.json` or the model's `config.json`
    /// beside a `tokenizer.json` is malformed, names a class manabi does not build, or
    /// names a special token the vocabulary does not have.
    #[error("{path}: {message}")]
    TokenizerConfig {
        /// The file at fault.
        path: PathBuf,
        /// What is wrong, and what to do.
        message: String,
    },
    /// A folder has a `tokenizer_config.json` but no `tokenizer.json`, and no SentencePiece
    /// model manabi converts: a slow tokenizer (`vocab.txt`, …) that manabi does not build.
    #[error(
        "{path}: missing; {config} describes a slow tokenizer{class} that manabi does not build (it converts the SentencePiece models of T5Tokenizer, spiece.model, and of LlamaTokenizer and TokenizersBackend, tokenizer.model) (hint: write tokenizer.json with transformers: `AutoTokenizer.from_pretrained(dir).save_pretrained(dir)`)"
    )]
    SlowTokenizer {
        /// The tokenizer.json that is missing.
        path: PathBuf,
        /// The tokenizer_config.json found.
        config: PathBuf,
        /// ` (tokenizer_class X)` when it names one.
        class: String,
    },
    /// A SentencePiece model (`spiece.model`, `tokenizer.model`) that is not one, is of a
    /// kind transformers does not convert, or does not convert to a usable tokenizer.
    #[error("{path}: {message}")]
    SentencePiece {
        /// The model file.
        path: PathBuf,
        /// What is wrong (the message says it is about a SentencePiece model).
        message: String,
    },
    /// The `tokenizers` crate returned an error while training or encoding.
    #[error("tokenizer error: {0}")]
    Tokenizers(String),
    /// A shard folder is missing a file, or its files disagree with `meta.json`.
    #[error("{path}: corrupt shard set: {message}")]
    CorruptShards {
        /// The file at fault.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// A morphological dictionary (training option or sidecar) is not where it was named.
    #[error("{path}: morphological dictionary not found (hint: {hint})")]
    MorphDictionaryMissing {
        /// Where it was looked for first.
        path: PathBuf,
        /// Where else it was looked for, or what to pass.
        hint: String,
    },
    /// A morphological dictionary could not be decoded.
    #[error(
        "{path}: not a usable vibrato dictionary: {message} (hint: compile the MeCab dictionary with vibrato 0.5's `compile` tool; .zst compression is fine)"
    )]
    CorruptMorphDictionary {
        /// The dictionary file.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
    /// A MeCab dictionary folder (`sys.dic`, `unk.dic`, `matrix.bin`, `char.bin`) could not
    /// be read.
    #[error(
        "{path}: not a usable MeCab dictionary: {message} (hint: point at the `dicdir` of unidic-lite, ipadic or unidic, or at a folder compiled by mecab-dict-index with -t utf-8)"
    )]
    CorruptMecabDictionary {
        /// The folder or file.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
    /// The dictionary file differs from the one the tokenizer was trained with.
    #[error(
        "{path}: the morphological dictionary changed since the tokenizer was trained (SHA-256 {found}, but {sidecar} expects {expected}) (hint: restore that file, or retrain the tokenizer)"
    )]
    MorphDictionaryChanged {
        /// The dictionary file.
        path: PathBuf,
        /// The sidecar that records the expected hash.
        sidecar: PathBuf,
        /// SHA-256 recorded at training.
        expected: String,
        /// SHA-256 of the file now.
        found: String,
    },
    /// Morphological splitting was asked for, but this build does not have it.
    #[error(
        "{path}: {what} needs morphological word splitting, which this build lacks (hint: rebuild with the cargo feature `morph`, e.g. `cargo run --release --features morph -- tokenizer ...`)"
    )]
    MorphFeatureDisabled {
        /// The sidecar or dictionary that asks for it.
        path: PathBuf,
        /// What asks for it.
        what: String,
    },
    /// A `manabi-pretokenize.json` sidecar could not be parsed or does not fit its tokenizer.
    #[error("{path}: not a usable pre-tokenisation sidecar: {message}")]
    CorruptSidecar {
        /// The sidecar file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// The output already exists.
    #[error("{0}: already exists (hint: pass --overwrite, or choose another --out)")]
    OutputExists(PathBuf),
    /// A model folder has no chat template at all.
    #[error(
        "{0}: no chat template (looked for chat_template.jinja and `chat_template` in tokenizer_config.json)"
    )]
    NoChatTemplate(PathBuf),
    /// `tokenizer_config.json` cannot be read for a chat template or its special tokens.
    #[error("{path}: not a usable chat template configuration: {message}")]
    CorruptChatTemplate {
        /// The configuration file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// The chat template does not parse as Jinja.
    #[error("{path}: chat template line {line}: {message}")]
    ChatTemplateSyntax {
        /// The file the template came from.
        path: PathBuf,
        /// One-based line in the template (0 when unknown).
        line: usize,
        /// What the parser said.
        message: String,
    },
    /// The chat template called `raise_exception`: it refuses the conversation.
    #[error("{path}: the chat template refused the conversation: {message}")]
    ChatTemplateRaised {
        /// The file the template came from.
        path: PathBuf,
        /// The template's own message.
        message: String,
    },
    /// Rendering the chat template failed in any other way.
    #[error("{path}: chat template line {line}: rendering failed: {message}")]
    ChatTemplateRender {
        /// The file the template came from.
        path: PathBuf,
        /// One-based line in the template (0 when unknown).
        line: usize,
        /// What went wrong.
        message: String,
    },
}

/// Result alias of this crate.
pub type Result<T, E = TokenizeError> = std::result::Result<T, E>;

impl TokenizeError {
    /// An I/O error on `path`.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io {
            path: path.into(),
            source,
        }
    }
}
