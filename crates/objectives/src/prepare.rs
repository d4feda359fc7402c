//! From a recipe's `[data]` to token streams: train or load the tokenizer, encode the
//! corpus into shards under the run folder (reused when tokenizer and inputs match),
//! and split train / validation.

use std::path::Path;
use std::sync::Arc;

use manabi_tokenize::{CorpusSpec, EncodeOptions, ShardSet, Split, TextTokenizer, TrainOptions};

use crate::config::{DataConfig, ValSplit};
use crate::data::TokenStream;
use crate::error::{Result, TrainError};

/// Everything the trainer needs from the data stage.
#[derive(Debug)]
pub struct PreparedData {
    /// The tokenizer (saved as `out/tokenizer/tokenizer.json`).
    pub tokenizer: TextTokenizer,
    /// Training tokens.
    pub train: TokenStream,
    /// Validation tokens.
    pub val: TokenStream,
    /// Id of the EOS separator.
    pub eos_id: u32,
}

/// Prepares tokenizer and shards for `data` under `out`.
pub fn prepare(data: &DataConfig, out: &Path, show_progress: bool) -> Result<PreparedData> {
    let corpus = CorpusSpec {
        inputs: data.inputs.clone(),
        format: data.format,
        field: data.field.clone(),
        boundary: data.doc_boundary,
        skip_invalid: false,
    };
    let tok_path = out.join("tokenizer").join("tokenizer.json");
    let tokenizer = match (&data.tokenizer.path, data.tokenizer.kind) {
        (Some(path), _) => {
            // A copy in the run folder travels with every checkpoint.
            let mut tok = TextTokenizer::load(path)?;
            tok.save(&tok_path)?;
            tok
        }
        (None, Some(kind)) if tok_path.exists() => {
            tracing::info!(path = %tok_path.display(), "reusing the tokenizer of this run");
            let _ = kind;
            TextTokenizer::load(&tok_path)?
        }
        (None, Some(kind)) => {
            let t = &data.tokenizer;
            let mut opts = TrainOptions::new(kind, t.vocab_size);
            opts.min_frequency = t.min_frequency;
            opts.pre_tokenize = t.pre_tokenize;
            opts.special_tokens = t.special_tokens.clone();
            opts.sentinels = t.sentinels;
            opts.nfkc = t.nfkc;
            opts.alphabet = t.alphabet.clone();
            let mut tok = manabi_tokenize::train(&corpus, &opts).map_err(in_recipe_terms)?;
            tok.save(&tok_path)?;
            tok
        }
        (None, None) => {
            return Err(TrainError::Config {
                key: "data.tokenizer".into(),
                message: "no tokenizer".into(),
            });
        }
    };
    let eos_id = tokenizer.require_token(&data.eos_token)?;

    let shard_dir = out.join("shards");
    let sources: Vec<String> = data
        .inputs
        .iter()
        .map(|p| p.display().to_string())
        .collect();
    let val_fraction = match data.val_split {
        ValSplit::Documents => data.val_fraction,
        ValSplit::Tail => 0.0,
    };
    let reusable = ShardSet::open(&shard_dir).ok().is_some_and(|s| {
        s.meta.tokenizer_sha256 == tokenizer.sha256()
            && s.meta.sources == sources
            && s.meta.eos_token == data.eos_token
            && s.meta.val_fraction == val_fraction
    });
    if !reusable {
        let opts = EncodeOptions {
            val_fraction,
            eos_token: data.eos_token.clone(),
            overwrite: true,
            show_progress,
            ..EncodeOptions::default()
        };
        manabi_tokenize::encode_corpus(&tokenizer, &corpus, &shard_dir, &opts)
            .map_err(in_recipe_terms)?;
    }
    let set = ShardSet::open(&shard_dir)?;
    let train_all = TokenStream::new(Arc::new(set.split(Split::Train)?));
    let (train, val) = match data.val_split {
        ValSplit::Tail => {
            let n = train_all.len();
            let cut = n - ((n as f64 * data.val_fraction) as usize).max(1);
            (train_all.slice(0..cut), train_all.slice(cut..n))
        }
        ValSplit::Documents => (
            train_all,
            TokenStream::new(Arc::new(set.split(Split::Val)?)),
        ),
    };
    Ok(PreparedData {
        tokenizer,
        train,
        val,
        eos_id,
    })
}

/// A bad corpus line, its hint in the recipe's terms: the tokenize crate's hints name the
/// `--field` and `--skip-invalid` flags of `manabi tokenizer` and `manabi data`, while a
/// recipe sets `data.field` and pre-training reads every line.
fn in_recipe_terms(e: manabi_tokenize::TokenizeError) -> TrainError {
    use manabi_tokenize::TokenizeError as E;
    fn at(path: &Path, line: u64) -> std::path::PathBuf {
        format!("{}:{line}", path.display()).into()
    }
    match e {
        E::MissingField { path, line, field } => TrainError::File {
            path: at(&path, line),
            message: format!("no string field `{field}` (hint: choose the field with data.field)"),
        },
        E::MalformedJson {
            path,
            line,
            message,
        } => TrainError::File {
            path: at(&path, line),
            message: format!("malformed JSON: {message}"),
        },
        E::InvalidUtf8 { path, line } => TrainError::File {
            path: at(&path, line),
            message: "invalid UTF-8".into(),
        },
        e => e.into(),
    }
}
