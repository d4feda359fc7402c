//! manabi-curate: data curation for pre-training corpora, in one streaming pass —
//! Aozora Bunko cleaning, heuristic quality rules after Gopher, C4 and FineWeb (and
//! their Japanese counterparts), harmful-content word lists, exact deduplication and
//! MinHash near-deduplication. Each rule has a name, a threshold and an off switch
//! ([`CurateConfig`]); a [`Report`] counts the documents each rule removed.
//!
//! ```no_run
//! use manabi_curate::{CurateJob, curate};
//! let job = CurateJob::new(vec!["corpus.jsonl".into()], "clean.jsonl".into());
//! let report = curate(&job, &mut |_| {})?;
//! print!("{}", report.table());
//! # Ok::<(), manabi_curate::CurateError>(())
//! ```
//!
//! The command is `manabi data curate` (crates/cli/src/data.rs); the crate README lists
//! every rule, its default and where it comes from. This crate has no burn dependency.

pub mod aozora;
pub mod blocklist;
pub mod config;
pub mod dedup;
pub mod error;
pub mod minhash;
mod output;
pub mod pipeline;
pub mod quality;
pub mod report;
pub mod rules;
pub mod text;

pub use config::CurateConfig;
pub use dedup::Deduper;
pub use error::{CurateError, Result};
pub use manabi_tokenize::{CorpusFormat, DocBoundary};
pub use output::OutputFormat;
pub use pipeline::{CurateJob, Progress, curate};
pub use report::{Report, RuleCount};
pub use rules::Rule;
pub use text::normalize;
