//! The batches the task bodies read ([`crate::body`]): right-padded sequence rows
//! read at their last token ([`SeqBatch`]), and right-padded token rows with their tags
//! ([`TagBatch`], NER).

/// Right-padded rows, each read at its last token.
#[derive(Debug, Clone)]
pub struct SeqBatch {
    /// Rows.
    pub rows: usize,
    /// Tokens per row.
    pub seq: usize,
    /// `[rows·seq]`.
    pub inputs: Vec<u32>,
    /// Index of each row's last token.
    pub last: Vec<usize>,
    /// `[rows·seq]` segment ids (BERT), padded with 0; empty for decoders.
    pub types: Vec<u32>,
    /// Class of each row (classification).
    pub classes: Vec<usize>,
    /// Score of each row (regression).
    pub scores: Vec<f32>,
}

/// Right-padded token rows with their tags (`IGNORE_INDEX` on padding).
#[derive(Debug, Clone)]
pub struct TagBatch {
    /// Rows.
    pub rows: usize,
    /// Tokens per row.
    pub seq: usize,
    /// `[rows·seq]` token ids.
    pub inputs: Vec<u32>,
    /// `[rows·seq]` tag indices or `IGNORE_INDEX`.
    pub targets: Vec<i64>,
    /// Tokens of each row before padding.
    pub lens: Vec<usize>,
    /// Padding token.
    pub pad: u32,
    /// `[CLS]` and `[SEP]` around each row (BERT); `None` for decoders.
    pub frame: Option<(u32, u32)>,
}
