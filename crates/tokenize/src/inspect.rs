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
            let tokens = readable_pieces(tokenizer, &short)?
                .into_iter()
                .map(|(_, piece)| piece)
                .collect();
            report.samples.push((short, tokens));
        }
    }
    Ok(report)
}

/// Each token of `text` with its piece as a reader sees it: byte-level BPE stores bytes
/// as stand-in characters (GPT-2's `bytes_to_unicode`: `Ġ` for a space, `åĲ¾` for the
/// bytes of 吾), which are turned back into bytes and shown as UTF-8; bytes of a
/// character that is split across tokens are shown as `<0xE5>`. Pieces of other models
/// (WordPiece `##`, SentencePiece `▁`) are shown as stored.
pub fn readable_pieces(tokenizer: &TextTokenizer, text: &str) -> Result<Vec<(u32, String)>> {
    let ids = tokenizer.encode(text)?;
    let byte_level = is_byte_level(tokenizer);
    Ok(ids
        .into_iter()
        .map(|id| {
            let piece = tokenizer.id_to_token(id).unwrap_or_default();
            let shown = match byte_level {
                true => byte_level_readable(&piece),
                false => piece,
            };
            (id, shown)
        })
        .collect())
}

/// Whether the tokenizer's decoder is byte-level (GPT-2 style), read from its file.
fn is_byte_level(tokenizer: &TextTokenizer) -> bool {
    fn has(v: &serde_json::Value) -> bool {
        v["type"] == "ByteLevel" || v["decoders"].as_array().is_some_and(|d| d.iter().any(has))
    }
    std::fs::read_to_string(tokenizer.path())
        .ok()
        .and_then(|t| {
            serde_json::from_str::<serde_json::Value>(t.trim_start_matches('\u{feff}')).ok()
        })
        .is_some_and(|v| has(&v["decoder"]))
}

/// A byte-level piece as text: stand-in characters back to bytes (the inverse of GPT-2's
/// `bytes_to_unicode`), valid UTF-8 shown as is, other bytes as `<0xNN>`. A character
/// outside the byte alphabet (an added token) is kept.
pub fn byte_level_readable(piece: &str) -> String {
    let mut bytes = Vec::with_capacity(piece.len());
    for c in piece.chars() {
        match byte_of(c) {
            Some(b) => bytes.push(b),
            None => bytes.extend(c.to_string().as_bytes()),
        }
    }
    let mut out = String::new();
    for chunk in bytes.utf8_chunks() {
        out.push_str(chunk.valid());
        for b in chunk.invalid() {
            out.push_str(&format!("<0x{b:02X}>"));
        }
    }
    out
}

/// The byte GPT-2's `bytes_to_unicode` maps to `c`: printable Latin-1 bytes map to
/// themselves, the other 68 to U+0100.. in order.
fn byte_of(c: char) -> Option<u8> {
    let printable =
        |b: u32| (33..=126).contains(&b) || (161..=172).contains(&b) || (174..=255).contains(&b);
    let code = c as u32;
    if printable(code) {
        return u8::try_from(code).ok();
    }
    let n = code.checked_sub(256)?;
    (0u32..=255)
        .filter(|&b| !printable(b))
        .nth(n as usize)
        .and_then(|b| u8::try_from(b).ok())
}

#[cfg(test)]
mod readable_tests {
    use super::byte_level_readable;

    #[test]
    fn byte_level_pieces_read_as_text() {
        // 吾 = E5 90 BE, 輩 = E8 BC A9 in GPT-2's stand-ins.
        assert_eq!(byte_level_readable("åĲ¾è¼©"), "吾輩");
        assert_eq!(byte_level_readable("Ġthe"), " the");
        assert_eq!(byte_level_readable("Ċ"), "\n");
        // Half a character: the bytes that do not form one are named.
        assert_eq!(byte_level_readable("åĲ"), "<0xE5><0x90>");
        assert_eq!(byte_level_readable("<|endoftext|>"), "<|endoftext|>");
    }
}
