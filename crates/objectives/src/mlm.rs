//! Masked language modelling (Devlin et al. 2019): 15 % of the tokens are chosen; of
//! those 80 % become `<mask>`, 10 % a random token, 10 % stay. Special tokens are never
//! chosen. With whole-word masking every piece of a chosen word is chosen.

use manabi_tokenize::TextTokenizer;
use rand::Rng;
use rand_chacha::ChaCha8Rng;

use crate::error::{Result, TrainError};

/// A masked batch: inputs with masks, labels `IGNORE_INDEX` except at chosen positions.
#[derive(Debug, Clone, PartialEq)]
pub struct MlmBatch {
    /// Sequences.
    pub batch: usize,
    /// Tokens per sequence.
    pub seq: usize,
    /// Corrupted input ids `[batch·seq]`.
    pub inputs: Vec<u32>,
    /// Original ids at chosen positions, −1 elsewhere `[batch·seq]`.
    pub labels: Vec<i64>,
}

/// How pieces join into words in a vocabulary.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum WordScheme {
    /// `##` marks a continuation (WordPiece).
    Continuation,
    /// A leading marker (`Ġ`, `▁`) starts a word (byte-level BPE, Unigram).
    LeadingMarker,
    /// Every token is a word (char-level).
    EachToken,
}

/// Chooses and corrupts tokens for MLM.
#[derive(Debug, Clone)]
pub struct MlmCollator {
    mask_id: u32,
    special: Vec<bool>,
    starts_word: Vec<bool>,
    prob: f64,
    whole_word: bool,
}

impl MlmCollator {
    /// A collator for `tokenizer` (which must have `mask_token`).
    pub fn new(
        tokenizer: &TextTokenizer,
        mask_token: &str,
        prob: f64,
        whole_word: bool,
    ) -> Result<Self> {
        if !(prob > 0.0 && prob < 1.0) {
            return Err(TrainError::Config {
                key: "objective.mask_prob".into(),
                message: format!("{prob} must be in (0, 1)"),
            });
        }
        let mask_id = tokenizer.require_token(mask_token)?;
        let n = tokenizer.vocab_size();
        let mut special = vec![false; n];
        for id in tokenizer.special_tokens().keys() {
            special[*id as usize] = true;
        }
        let pieces: Vec<String> = (0..n as u32)
            .map(|i| tokenizer.id_to_token(i).unwrap_or_default())
            .collect();
        let scheme = if pieces.iter().any(|p| p.starts_with("##")) {
            WordScheme::Continuation
        } else if pieces
            .iter()
            .any(|p| p.starts_with('Ġ') || p.starts_with('▁'))
        {
            WordScheme::LeadingMarker
        } else {
            WordScheme::EachToken
        };
        let starts_word = pieces
            .iter()
            .map(|p| match scheme {
                WordScheme::Continuation => !p.starts_with("##"),
                WordScheme::LeadingMarker => p.starts_with('Ġ') || p.starts_with('▁'),
                WordScheme::EachToken => true,
            })
            .collect();
        Ok(Self {
            mask_id,
            special,
            starts_word,
            prob,
            whole_word,
        })
    }

    fn random_token(&self, rng: &mut ChaCha8Rng) -> u32 {
        loop {
            let t = rng.random_range(0..self.special.len());
            if !self.special[t] {
                return t as u32;
            }
        }
    }

    /// Masks `tokens` (`batch` rows of `seq`).
    pub fn apply(
        &self,
        tokens: &[u32],
        batch: usize,
        seq: usize,
        rng: &mut ChaCha8Rng,
    ) -> MlmBatch {
        let mut inputs = tokens.to_vec();
        let mut labels = vec![manabi_model::IGNORE_INDEX; tokens.len()];
        for r in 0..batch {
            let row = r * seq..(r + 1) * seq;
            let mut chosen = vec![false; seq];
            let mut word_chosen = false;
            for (j, &t) in tokens[row.clone()].iter().enumerate() {
                if self.special[t as usize] {
                    word_chosen = false;
                    continue;
                }
                let new_word = !self.whole_word || j == 0 || self.starts_word[t as usize];
                if new_word {
                    word_chosen = rng.random::<f64>() < self.prob;
                }
                chosen[j] = word_chosen;
            }
            for (j, &c) in chosen.iter().enumerate() {
                if !c {
                    continue;
                }
                let i = row.start + j;
                labels[i] = tokens[i] as i64;
                let u: f64 = rng.random();
                if u < 0.8 {
                    inputs[i] = self.mask_id;
                } else if u < 0.9 {
                    inputs[i] = self.random_token(rng);
                }
            }
        }
        MlmBatch {
            batch,
            seq,
            inputs,
            labels,
        }
    }
}
