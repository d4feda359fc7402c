//! How a sentence model reads its input, as `[task]` says (`task.toml`): the [`Pooling`]
//! of token states into one vector, and the [`Encoder`] of an STS model (one sequence
//! with a head, or each sentence embedded alone).

use manabi_finetune::error::{FinetuneError, Result};
use manabi_model::Family;
use serde::{Deserialize, Serialize};

/// How token states become one vector.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Pooling {
    /// Mean of every token's final hidden state.
    #[default]
    Mean,
    /// The last token's (EOS) hidden state, which has seen the whole sentence (decoders).
    Last,
    /// The `[CLS]` token's final hidden state, before any pooler (BERT; SimCSE's
    /// `cls_before_pooler`).
    Cls,
}

impl Pooling {
    /// Whether a `family` body can pool this way: `last` needs a decoder (causal: only
    /// the last token has read the sentence), `cls` a BERT encoder.
    pub fn check(self, family: Family) -> Result<()> {
        match (self, family == Family::Bert) {
            (Pooling::Last, true) => Err(FinetuneError::config(
                "task.pooling",
                "a BERT body pools by `mean` or `cls`",
            )),
            (Pooling::Cls, false) => Err(FinetuneError::config(
                "task.pooling",
                "`cls` reads BERT's [CLS] token; a decoder pools by `mean` or `last`",
            )),
            _ => Ok(()),
        }
    }
}

/// How an STS model reads a pair.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Encoder {
    /// Both sentences in one sequence, a regression head on the last token.
    #[default]
    Cross,
    /// Each sentence embedded alone; the score is their cosine (sentence-transformers'
    /// bi-encoder with a cosine-similarity loss).
    Bi,
}
