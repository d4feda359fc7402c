//! A SentencePiece model file (`spiece.model`, `tokenizer.model`): the `ModelProto`
//! protobuf of google/sentencepiece `src/sentencepiece_model.proto`, of which only the
//! fields the `transformers` converters read are declared (the others are skipped as
//! unknown fields). Absent fields take the proto2 defaults that file declares.
//!
//! The file is only parsed and checked here; [`crate::spm`] converts it.

use std::path::Path;

use prost::Message;

use crate::error::{Result, TokenizeError};

/// `ModelProto`: the pieces and the two specs.
#[derive(Clone, PartialEq, Message)]
struct ModelProto {
    #[prost(message, repeated, tag = "1")]
    pieces: Vec<PieceProto>,
    #[prost(message, optional, tag = "2")]
    trainer_spec: Option<TrainerSpecProto>,
    #[prost(message, optional, tag = "3")]
    normalizer_spec: Option<NormalizerSpecProto>,
}

/// `ModelProto.SentencePiece`.
#[derive(Clone, PartialEq, Message)]
struct PieceProto {
    #[prost(string, optional, tag = "1")]
    piece: Option<String>,
    #[prost(float, optional, tag = "2")]
    score: Option<f32>,
    /// `Type` enum (varint, read as its number).
    #[prost(int32, optional, tag = "3")]
    kind: Option<i32>,
}

/// `TrainerSpec`, the fields the converters read.
#[derive(Clone, PartialEq, Message)]
struct TrainerSpecProto {
    /// `ModelType` enum.
    #[prost(int32, optional, tag = "3")]
    model_type: Option<i32>,
    #[prost(bool, optional, tag = "35")]
    byte_fallback: Option<bool>,
    #[prost(int32, optional, tag = "40")]
    unk_id: Option<i32>,
    #[prost(int32, optional, tag = "41")]
    bos_id: Option<i32>,
    #[prost(int32, optional, tag = "42")]
    eos_id: Option<i32>,
    #[prost(int32, optional, tag = "43")]
    pad_id: Option<i32>,
    #[prost(string, optional, tag = "45")]
    unk_piece: Option<String>,
    #[prost(string, optional, tag = "46")]
    bos_piece: Option<String>,
    #[prost(string, optional, tag = "47")]
    eos_piece: Option<String>,
    #[prost(string, optional, tag = "48")]
    pad_piece: Option<String>,
}

/// `NormalizerSpec`.
#[derive(Clone, PartialEq, Message)]
struct NormalizerSpecProto {
    #[prost(string, optional, tag = "1")]
    name: Option<String>,
    #[prost(bytes = "vec", optional, tag = "2")]
    precompiled_charsmap: Option<Vec<u8>>,
    #[prost(bool, optional, tag = "3")]
    add_dummy_prefix: Option<bool>,
    #[prost(bool, optional, tag = "4")]
    remove_extra_whitespaces: Option<bool>,
    #[prost(bool, optional, tag = "5")]
    escape_whitespaces: Option<bool>,
}

/// What a piece is (`ModelProto.SentencePiece.Type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PieceKind {
    /// An ordinary piece (1).
    Normal,
    /// The unknown piece (2).
    Unknown,
    /// A control symbol such as `<s>` (3): never produced from text by SentencePiece.
    Control,
    /// A user-defined symbol (4): always one piece.
    UserDefined,
    /// Unused (5).
    Unused,
    /// A byte-fallback piece `<0xAB>` (6).
    Byte,
}

impl PieceKind {
    fn of(n: i32) -> Option<Self> {
        Some(match n {
            1 => Self::Normal,
            2 => Self::Unknown,
            3 => Self::Control,
            4 => Self::UserDefined,
            5 => Self::Unused,
            6 => Self::Byte,
            _ => return None,
        })
    }
}

/// One piece: its text, score and kind.
#[derive(Debug, Clone, PartialEq)]
pub struct Piece {
    /// The text (`▁` for spaces).
    pub piece: String,
    /// The log probability (Unigram) or the negated merge rank (BPE).
    pub score: f32,
    /// What the piece is.
    pub kind: PieceKind,
}

/// The segmentation algorithm a model was trained with (`TrainerSpec.ModelType`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModelType {
    /// Unigram language model (1).
    Unigram,
    /// Byte-pair encoding (2).
    Bpe,
}

/// A parsed SentencePiece model: what the converters read, defaults applied.
#[derive(Debug, Clone)]
pub struct SpmModel {
    /// Pieces in id order.
    pub pieces: Vec<Piece>,
    /// Unigram or BPE (word and character models are refused when read).
    pub model_type: ModelType,
    /// Unknown characters become `<0xAB>` byte pieces.
    pub byte_fallback: bool,
    /// Id of the unknown piece (`-1`: none).
    pub unk_id: i32,
    /// Id of the sequence start (`-1`: none).
    pub bos_id: i32,
    /// Id of the sequence end (`-1`: none).
    pub eos_id: i32,
    /// Id of the padding piece (`-1`: none).
    pub pad_id: i32,
    /// The unknown piece's text.
    pub unk_piece: String,
    /// The sequence start's text.
    pub bos_piece: String,
    /// The sequence end's text.
    pub eos_piece: String,
    /// The padding piece's text.
    pub pad_piece: String,
    /// Name of the normalisation rule (`nmt_nfkc`, `identity`, …).
    pub normalizer_name: String,
    /// The compiled normalisation rules (empty: none).
    pub precompiled_charsmap: Vec<u8>,
    /// A `▁` is put before the text.
    pub add_dummy_prefix: bool,
    /// Leading, trailing and repeated spaces are removed.
    pub remove_extra_whitespaces: bool,
    /// Spaces become `▁`.
    pub escape_whitespaces: bool,
}

/// Longest piece accepted, in bytes (SentencePiece's own limit is 16 characters by
/// default; `tokenizers` frees a Unigram trie of one node per byte recursively, and a
/// piece of tens of thousands of bytes overflows the stack).
const MAX_PIECE: usize = 1024;

impl SpmModel {
    /// Reads and checks the model file at `path`. Anything that is not a Unigram or BPE
    /// SentencePiece model (a tiktoken file, random bytes, a word model) is an error
    /// naming the file.
    pub fn read(path: &Path) -> Result<Self> {
        let bytes = std::fs::read(path).map_err(|e| TokenizeError::io(path, e))?;
        Self::parse(&bytes).map_err(|message| TokenizeError::SentencePiece {
            path: path.to_path_buf(),
            message,
        })
    }

    /// Parses the bytes of a model file; the error is the reason, for a message.
    pub fn parse(bytes: &[u8]) -> std::result::Result<Self, String> {
        let not_spm = |why: String| {
            let hint = if looks_like_tiktoken(bytes) {
                " (it looks like a tiktoken BPE file, which manabi does not convert; \
                 hint: write tokenizer.json with transformers: \
                 `AutoTokenizer.from_pretrained(dir).save_pretrained(dir)`)"
            } else {
                ""
            };
            format!("not a SentencePiece model: {why}{hint}")
        };
        let proto = ModelProto::decode(bytes).map_err(|e| not_spm(e.to_string()))?;
        if proto.pieces.is_empty() {
            return Err(not_spm("it has no pieces".into()));
        }
        let trainer = proto.trainer_spec.unwrap_or_default();
        let normalizer = proto.normalizer_spec.unwrap_or_default();
        let model_type = match trainer.model_type.unwrap_or(1) {
            1 => ModelType::Unigram,
            2 => ModelType::Bpe,
            3 => return Err(unsupported("WORD")),
            4 => return Err(unsupported("CHAR")),
            n => return Err(not_spm(format!("unknown model_type {n}"))),
        };
        let mut pieces = Vec::with_capacity(proto.pieces.len());
        let mut seen = ahash::AHashMap::with_capacity(proto.pieces.len());
        for (id, p) in proto.pieces.into_iter().enumerate() {
            let piece = p.piece.unwrap_or_default();
            let kind_number = p.kind.unwrap_or(1);
            let kind = PieceKind::of(kind_number)
                .ok_or_else(|| not_spm(format!("piece {id} has an unknown type {kind_number}")))?;
            let score = p.score.unwrap_or(0.0);
            if piece.is_empty() {
                return Err(not_spm(format!("piece {id} is empty")));
            }
            if piece.len() > MAX_PIECE {
                return Err(format!(
                    "SentencePiece piece {id} is {} bytes long (at most {MAX_PIECE})",
                    piece.len()
                ));
            }
            if !score.is_finite() {
                return Err(format!(
                    "SentencePiece piece {id} ({piece:?}) has the score {score}"
                ));
            }
            if let Some(first) = seen.insert(piece.clone(), id) {
                return Err(format!(
                    "SentencePiece piece {piece:?} appears twice (ids {first} and {id})"
                ));
            }
            pieces.push(Piece { piece, score, kind });
        }
        let model = Self {
            pieces,
            model_type,
            byte_fallback: trainer.byte_fallback.unwrap_or(false),
            unk_id: trainer.unk_id.unwrap_or(0),
            bos_id: trainer.bos_id.unwrap_or(1),
            eos_id: trainer.eos_id.unwrap_or(2),
            pad_id: trainer.pad_id.unwrap_or(-1),
            unk_piece: trainer.unk_piece.unwrap_or_else(|| "<unk>".into()),
            bos_piece: trainer.bos_piece.unwrap_or_else(|| "<s>".into()),
            eos_piece: trainer.eos_piece.unwrap_or_else(|| "</s>".into()),
            pad_piece: trainer.pad_piece.unwrap_or_else(|| "<pad>".into()),
            normalizer_name: normalizer.name.unwrap_or_default(),
            precompiled_charsmap: normalizer.precompiled_charsmap.unwrap_or_default(),
            add_dummy_prefix: normalizer.add_dummy_prefix.unwrap_or(true),
            remove_extra_whitespaces: normalizer.remove_extra_whitespaces.unwrap_or(true),
            escape_whitespaces: normalizer.escape_whitespaces.unwrap_or(true),
        };
        // SentencePiece refuses a model whose unknown piece is not where the spec says.
        let unk = usize::try_from(model.unk_id)
            .ok()
            .and_then(|i| model.pieces.get(i));
        if !unk.is_some_and(|p| p.kind == PieceKind::Unknown) {
            return Err(not_spm(format!(
                "unk_id {} is not an unknown piece among its {} pieces",
                model.unk_id,
                model.pieces.len()
            )));
        }
        Ok(model)
    }
}

/// The message of a model type the converters do not handle.
fn unsupported(name: &str) -> String {
    format!(
        "a SentencePiece model of model_type {name}, which transformers does not convert to \
         a fast tokenizer (manabi converts UNIGRAM and BPE models)"
    )
}

/// Whether `bytes` start like a tiktoken BPE file (`base64 rank` lines), which
/// transformers also tries for a `tokenizer.model` that is not SentencePiece.
fn looks_like_tiktoken(bytes: &[u8]) -> bool {
    let head = &bytes[..bytes.len().min(256)];
    let Some(line) = head.split(|&b| b == b'\n').next() else {
        return false;
    };
    let Ok(line) = std::str::from_utf8(line) else {
        return false;
    };
    let mut parts = line.trim_end_matches('\r').split(' ');
    let (Some(token), Some(rank), None) = (parts.next(), parts.next(), parts.next()) else {
        return false;
    };
    !token.is_empty()
        && token
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'='))
        && !rank.is_empty()
        && rank.bytes().all(|b| b.is_ascii_digit())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A model of three pieces, encoded by hand: `<unk>` (type 2), `a`, `b`.
    fn tiny(model_type: u8) -> Vec<u8> {
        let piece = |text: &[u8], kind: u8| {
            let mut p = vec![0x0a, text.len() as u8];
            p.extend_from_slice(text);
            p.extend_from_slice(&[0x15, 0, 0, 0x80, 0xbf]); // score -1.0
            p.extend_from_slice(&[0x18, kind]);
            let mut field = vec![0x0a, p.len() as u8];
            field.extend(p);
            field
        };
        let mut bytes = piece(b"<unk>", 2);
        bytes.extend(piece(b"a", 1));
        bytes.extend(piece(b"b", 1));
        // trainer_spec { model_type }
        bytes.extend_from_slice(&[0x12, 2, 0x18, model_type]);
        bytes
    }

    #[test]
    fn a_hand_made_model_reads_with_the_proto2_defaults() {
        let m = SpmModel::parse(&tiny(1)).unwrap();
        assert_eq!(m.pieces.len(), 3);
        assert_eq!(m.pieces[0].kind, PieceKind::Unknown);
        assert_eq!(m.pieces[1].score, -1.0);
        assert_eq!(m.model_type, ModelType::Unigram);
        assert_eq!((m.unk_id, m.bos_id, m.eos_id, m.pad_id), (0, 1, 2, -1));
        assert!(m.add_dummy_prefix && m.remove_extra_whitespaces && m.escape_whitespaces);
        assert!(!m.byte_fallback && m.precompiled_charsmap.is_empty());
    }

    #[test]
    fn word_and_char_models_are_refused_by_name() {
        let e = SpmModel::parse(&tiny(3)).unwrap_err();
        assert!(e.contains("model_type WORD, which transformers"), "{e}");
        let e = SpmModel::parse(&tiny(4)).unwrap_err();
        assert!(e.contains("model_type CHAR"), "{e}");
    }

    #[test]
    fn other_files_are_not_sentencepiece() {
        let tiktoken = b"IQ== 0\nIg== 1\nIw== 2\n";
        let e = SpmModel::parse(tiktoken).unwrap_err();
        assert!(e.starts_with("not a SentencePiece model:"), "{e}");
        assert!(e.contains("tiktoken"), "{e}");
        for junk in [&b""[..], b"\xff\xfe\x00garbage", b"{\"version\": \"1.0\"}"] {
            let e = SpmModel::parse(junk).unwrap_err();
            assert!(e.starts_with("not a SentencePiece model:"), "{e}");
            assert!(!e.contains("tiktoken"), "{e}");
        }
    }
}
