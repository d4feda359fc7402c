//! One streaming pass over a corpus: read documents, clean (Aozora), filter, deduplicate,
//! write. Documents are analysed in parallel a batch at a time (normalisation, hashes,
//! quality rules, MinHash signatures); the keep-or-remove decisions are then taken in
//! input order, so the result does not depend on the number of threads. Memory holds
//! one batch of texts and, for deduplication, hashes and signatures only.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use manabi_tokenize::{CorpusFormat, CorpusSpec, DocBoundary, Document};
use rayon::prelude::*;

use crate::aozora;
use crate::blocklist::Blocklists;
use crate::config::CurateConfig;
use crate::dedup::{Deduper, exact_key};
use crate::error::{CurateError, Result};
use crate::output::{OutputFormat, OutputWriter};
use crate::quality::{self, DocView};
use crate::report::Report;
use crate::rules::{Rule, RuleSet};
use crate::text::normalize;

/// Documents analysed together.
const BATCH_DOCS: usize = 4096;
/// Text analysed together, in bytes (bounds memory with long documents).
const BATCH_BYTES: usize = 32 << 20;

/// What to curate and where to write it.
#[derive(Debug, Clone)]
pub struct CurateJob {
    /// Files or folders (folders are walked in sorted order; `.gz` is read).
    pub inputs: Vec<PathBuf>,
    /// Input format (`auto`: `.jsonl` / `.ndjson` are JSONL, the rest text).
    pub format: CorpusFormat,
    /// JSONL field holding the text.
    pub field: String,
    /// Where a plain-text document ends: line, paragraph or file.
    pub unit: DocBoundary,
    /// Count and skip malformed lines instead of failing.
    pub skip_invalid: bool,
    /// The output file.
    pub output: PathBuf,
    /// How kept documents are written.
    pub output_format: OutputFormat,
    /// Rules and thresholds.
    pub config: CurateConfig,
}

impl CurateJob {
    /// Defaults for `inputs` → `output`: auto format, field `text`, paragraphs, strict,
    /// JSONL unless the output ends in `.txt`, the default config.
    pub fn new(inputs: Vec<PathBuf>, output: PathBuf) -> Self {
        Self {
            inputs,
            format: CorpusFormat::Auto,
            field: "text".to_string(),
            unit: DocBoundary::Paragraph,
            skip_invalid: false,
            output_format: OutputFormat::for_path(&output),
            output,
            config: CurateConfig::default(),
        }
    }
}

/// Where a run stands, reported after every batch.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Progress {
    /// Documents read.
    pub docs_in: u64,
    /// Documents kept.
    pub docs_kept: u64,
    /// Bytes of text read.
    pub bytes_in: u64,
    /// Time since the start.
    pub elapsed: Duration,
}

/// What the parallel step learns about one document.
#[derive(Debug)]
struct Analysis {
    empty: bool,
    japanese: bool,
    key: [u8; 16],
    /// The first quality or block-list rule it fails.
    failed: Option<Rule>,
    /// Its MinHash signature, when it passed and near dedup is on.
    sig: Option<Vec<u32>>,
}

/// Everything the analysis reads, shared by the worker threads.
#[derive(Debug)]
struct Context<'a> {
    cfg: &'a CurateConfig,
    on: RuleSet,
    blocklists: Blocklists,
}

/// Runs `job`: writes the kept documents to `job.output` (atomically) and the report
/// beside it (`OUTPUT.report.json`), calling `progress` after every batch.
pub fn curate(job: &CurateJob, progress: &mut dyn FnMut(&Progress)) -> Result<Report> {
    let started = Instant::now();
    job.config.validate()?;
    let spec = CorpusSpec {
        inputs: job.inputs.clone(),
        format: job.format,
        field: job.field.clone(),
        // Aozora cleaning needs the whole work: read files whole, split after cleaning.
        boundary: if job.config.aozora {
            DocBoundary::File
        } else {
            job.unit
        },
        skip_invalid: job.skip_invalid,
    };
    check_output(&spec, &job.output)?;
    let ctx = Context {
        cfg: &job.config,
        on: job.config.rule_set(),
        blocklists: Blocklists::load(&job.config.blocklist.files)?,
    };
    let mut dedup = Deduper::new(&job.config);
    let mut report = Report::new(&job.config, &job.inputs, &job.output);
    let mut docs = spec.documents()?;
    let mut out = OutputWriter::create(&job.output, job.output_format)?;
    let mut batch = Batch::default();
    let mut run = || -> Result<()> {
        let mut more = true;
        while more {
            match docs.next() {
                Some(doc) => {
                    let doc = doc?;
                    report.bytes_in += doc.text.len() as u64;
                    batch.extend(units(doc, job));
                    if !batch.is_full() {
                        continue;
                    }
                }
                None => more = false,
            }
            batch.process(&ctx, &mut dedup, &mut out, &mut report)?;
            progress(&Progress {
                docs_in: report.docs_in,
                docs_kept: report.docs_kept,
                bytes_in: report.bytes_in,
                elapsed: started.elapsed(),
            });
        }
        Ok(())
    };
    if let Err(e) = run() {
        out.abort();
        return Err(e);
    }
    out.finish()?;
    report.skipped_lines = docs.skipped();
    report.finish(started.elapsed().as_secs_f64());
    report.save(&Report::path_for(&job.output))?;
    Ok(report)
}

/// Refuses an output that is a folder or one of the input files.
fn check_output(spec: &CorpusSpec, output: &Path) -> Result<()> {
    if output.is_dir() {
        return Err(CurateError::Output {
            path: output.to_path_buf(),
            message: "is a folder; --output takes a file name".to_string(),
        });
    }
    let Ok(target) = output.canonicalize() else {
        return Ok(()); // does not exist yet
    };
    for file in spec.files()? {
        if file.canonicalize().is_ok_and(|f| f == target) {
            return Err(CurateError::Output {
                path: output.to_path_buf(),
                message: "is also an input; write the output somewhere else".to_string(),
            });
        }
    }
    Ok(())
}

/// Whether `path` is read as JSONL under `format` (as `CorpusSpec` decides).
fn is_jsonl(path: &Path, format: CorpusFormat) -> bool {
    match format {
        CorpusFormat::Jsonl => true,
        CorpusFormat::Text => false,
        CorpusFormat::Auto => {
            let name = path.to_string_lossy().to_lowercase();
            let stem = name.strip_suffix(".gz").unwrap_or(&name);
            stem.ends_with(".jsonl") || stem.ends_with(".ndjson")
        }
    }
}

/// The documents one read document becomes: itself, or with Aozora cleaning on, its
/// cleaned text split into the job's units (a JSONL record stays one document).
fn units(doc: Document, job: &CurateJob) -> Vec<String> {
    if !job.config.aozora {
        return vec![doc.text];
    }
    let cleaned = aozora::clean(&doc.text);
    if is_jsonl(&doc.path, job.format) {
        return vec![cleaned];
    }
    match job.unit {
        DocBoundary::File => vec![cleaned],
        DocBoundary::Line => cleaned
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(str::to_string)
            .collect(),
        DocBoundary::Paragraph => cleaned
            .split("\n\n")
            .filter(|p| !p.trim().is_empty())
            .map(str::to_string)
            .collect(),
    }
}

/// Documents waiting to be analysed.
#[derive(Debug, Default)]
struct Batch {
    texts: Vec<String>,
    bytes: usize,
}

impl Batch {
    fn extend(&mut self, texts: Vec<String>) {
        self.bytes += texts.iter().map(String::len).sum::<usize>();
        self.texts.extend(texts);
    }

    fn is_full(&self) -> bool {
        self.texts.len() >= BATCH_DOCS || self.bytes >= BATCH_BYTES
    }

    /// Analyses the batch in parallel, then keeps or removes each document in order.
    fn process(
        &mut self,
        ctx: &Context,
        dedup: &mut Deduper,
        out: &mut OutputWriter,
        report: &mut Report,
    ) -> Result<()> {
        let analyses: Vec<Analysis> = {
            let dedup: &Deduper = dedup;
            self.texts
                .par_iter()
                .map(|t| analyse(t, ctx, dedup))
                .collect()
        };
        for (text, a) in self.texts.iter().zip(analyses) {
            report.docs_in += 1;
            report.japanese_docs += u64::from(a.japanese);
            match decide(&a, &ctx.on, dedup) {
                Some(rule) => report.count(rule),
                None => {
                    dedup.keep(a.key, a.sig.as_deref());
                    out.write(text)?;
                    report.docs_kept += 1;
                    report.bytes_out += text.len() as u64;
                }
            }
        }
        self.texts.clear();
        self.bytes = 0;
        Ok(())
    }
}

/// Normalisation, exact hash, quality and block-list rules, and the signature.
fn analyse(text: &str, ctx: &Context, dedup: &Deduper) -> Analysis {
    let normalized = normalize(text);
    let key = exact_key(&normalized);
    let view = DocView::new(text, ctx.cfg.japanese.min_share);
    let failed = quality::check(&view, ctx.cfg, &ctx.on).or_else(|| {
        let max = ctx.cfg.blocklist.max_hits;
        let on = ctx.on.has(Rule::Blocklist) && !ctx.blocklists.is_empty();
        let hits = || {
            ctx.blocklists
                .hits(&normalized, view.japanese, max.saturating_add(1))
        };
        (on && hits() > max).then_some(Rule::Blocklist)
    });
    let sig = match failed {
        None => dedup.signature(&normalized),
        Some(_) => None,
    };
    Analysis {
        empty: text.trim().is_empty(),
        japanese: view.japanese,
        key,
        failed,
        sig,
    }
}

/// The rule that removes an analysed document, in the order of [`Rule::ALL`]: empty,
/// exact duplicate, quality and block list, near duplicate.
fn decide(a: &Analysis, on: &RuleSet, dedup: &Deduper) -> Option<Rule> {
    if a.empty && on.has(Rule::Empty) {
        return Some(Rule::Empty);
    }
    if dedup.is_exact_duplicate(&a.key) {
        return Some(Rule::ExactDedup);
    }
    if a.failed.is_some() {
        return a.failed;
    }
    dedup
        .near_duplicate(a.sig.as_deref())
        .map(|_| Rule::NearDedup)
}
