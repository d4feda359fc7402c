//! `manabi tokenizer inspect`: vocabulary facts and compression on a sample file.

use serde::Serialize;

use crate::corpus::CorpusSpec;
use crate::error::Result;
use crate::tokenizer::TextTokenizer;

/// What `inspect` measured.
#[derive(Debug, Clone, Serialize)]
pub struct InspectReport {
    /// Vocabulary size, added tokens included.
    pub vocab_size: usize,
    /// Special tokens by id.
    pub special_tokens: Vec<(u32, String)>,
    /// The first documents and their tokens.
    pub samples: Vec<(String, Vec<String>)>,
    /// Documents read.
    pub documents: u64,
    /// Characters read.
    pub chars: u64,
    /// UTF-8 bytes read.
    pub bytes: u64,
    /// Tokens produced.
    pub tokens: u64,
    /// Tokens that are the unknown token.
    pub unknown_tokens: u64,
}

impl InspectReport {
    /// Characters per token.
    pub fn chars_per_token(&self) -> f64 {
        self.chars as f64 / self.tokens.max(1) as f64
    }

    /// Bytes per token.
    pub fn bytes_per_token(&self) -> f64 {
        self.bytes as f64 / self.tokens.max(1) as f64
    }
}

/// Measures `tokenizer` on `corpus` (when given), keeping `samples` example documents.
pub fn inspect(
    tokenizer: &TextTokenizer,
    corpus: Option<&CorpusSpec>,
    samples: usize,
) -> Result<InspectReport> {
    let mut report = InspectReport {
        vocab_size: tokenizer.vocab_size(),
        special_tokens: tokenizer.special_tokens().into_iter().collect(),
        samples: Vec::new(),
        documents: 0,
        chars: 0,
        bytes: 0,
        tokens: 0,
        unknown_tokens: 0,
    };
    let Some(corpus) = corpus else {
        return Ok(report);
    };
    let unk = tokenizer.token_id(crate::train::UNK);
    for doc in corpus.documents()? {
        let text = doc?.text;
        let ids = tokenizer.encode(&text)?;
        report.documents += 1;
        report.chars += text.chars().count() as u64;
        report.bytes += text.len() as u64;
        report.tokens += ids.len() as u64;
        report.unknown_tokens += ids.iter().filter(|&&i| Some(i) == unk).count() as u64;
        if report.samples.len() < samples {
            let short: String = text.chars().take(80).collect();
            let tokens = tokenizer.tokens(&short)?;
            report.samples.push((short, tokens));
        }
    }
    Ok(report)
}
