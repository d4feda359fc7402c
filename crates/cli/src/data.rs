//! `manabi data curate`: clean, filter and deduplicate a pre-training corpus with
//! `manabi-curate` (every rule, its default and its source: crates/curate/README.md).

use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use manabi_curate::{
    CorpusFormat, CurateConfig, CurateJob, DocBoundary, OutputFormat, Progress, Report, Rule,
};

use crate::tokenizer::{BoundaryArg, FormatArg};

#[derive(Debug, Subcommand)]
pub enum DataCommand {
    /// Clean, filter and deduplicate a corpus for pre-training: Aozora Bunko cleaning,
    /// Gopher / C4 / FineWeb quality rules (character rules for Japanese), word lists,
    /// exact and MinHash near-duplicate removal; writes OUTPUT and OUTPUT.report.json.
    Curate(CurateArgs),
}

#[derive(Debug, Args)]
pub struct CurateArgs {
    /// Corpus files or folders (.txt, .jsonl, optionally .gz).
    #[arg(long = "input", short, required = true, num_args = 1..)]
    pub inputs: Vec<PathBuf>,
    /// Output file: JSONL lines {"text": …}, or plain-text paragraphs when it ends in .txt.
    #[arg(long, short)]
    pub output: PathBuf,
    /// TOML file with a [curate] table of rules and thresholds
    /// (crates/curate/curate.toml lists every key with its default).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Input format (auto: .jsonl / .ndjson are JSONL, the rest plain text).
    #[arg(long, value_enum, default_value = "auto")]
    pub format: FormatArg,
    /// JSONL field holding the text.
    #[arg(long, default_value = "text")]
    pub field: String,
    /// What one plain-text document is: a line, a paragraph (blank-line separated) or a
    /// whole file.
    #[arg(long, value_enum, default_value = "paragraph")]
    pub unit: BoundaryArg,
    /// Clean Aozora Bunko texts first (header, 底本 footer, ruby, ［＃…］ annotations,
    /// gaiji); each file is cleaned whole, then split into --unit documents.
    #[arg(long)]
    pub aozora: bool,
    /// A word list of harmful content, LANG=FILE (one word per line, # comments); `ja`
    /// applies to Japanese documents, `*` to all, other names to the rest. Repeatable.
    #[arg(long = "blocklist", value_name = "LANG=FILE", value_parser = parse_blocklist)]
    pub blocklists: Vec<(String, PathBuf)>,
    /// Keep exact duplicates.
    #[arg(long)]
    pub no_dedup: bool,
    /// Keep near duplicates (no MinHash).
    #[arg(long)]
    pub no_near_dedup: bool,
    /// Near duplicates: the estimated Jaccard similarity at which a document found through
    /// MinHash LSH counts as a copy of a kept one (default 0.8; 0 takes every LSH match).
    #[arg(long)]
    pub threshold: Option<f64>,
    /// Count and skip malformed lines instead of stopping at the first.
    #[arg(long)]
    pub skip_invalid: bool,
    /// No progress bar.
    #[arg(long)]
    pub quiet: bool,
}

fn parse_blocklist(s: &str) -> Result<(String, PathBuf), String> {
    match s.split_once('=') {
        Some((lang, file)) if !lang.trim().is_empty() && !file.is_empty() => {
            Ok((lang.trim().to_string(), PathBuf::from(file)))
        }
        _ => Err(format!(
            "expected LANG=FILE (for example ja=words.txt), got `{s}`"
        )),
    }
}

pub fn run(cmd: DataCommand) -> anyhow::Result<()> {
    match cmd {
        DataCommand::Curate(args) => curate(&args),
    }
}

/// The config file (or the defaults) with the command line on top.
fn config(args: &CurateArgs) -> anyhow::Result<CurateConfig> {
    let mut cfg = match &args.config {
        Some(path) => CurateConfig::load(path)?,
        None => CurateConfig::default(),
    };
    cfg.aozora |= args.aozora;
    for (lang, file) in &args.blocklists {
        cfg.blocklist.files.insert(lang.clone(), file.clone());
    }
    for (off, rule) in [
        (args.no_dedup, Rule::ExactDedup),
        (args.no_near_dedup, Rule::NearDedup),
    ] {
        if off && !cfg.disable.contains(&rule) {
            cfg.disable.push(rule);
        }
    }
    if let Some(t) = args.threshold {
        anyhow::ensure!(
            (0.0..=1.0).contains(&t),
            "--threshold {t}: must be between 0 and 1"
        );
        cfg.near_dedup.threshold = t;
    }
    cfg.validate()?;
    Ok(cfg)
}

fn job(args: &CurateArgs) -> anyhow::Result<CurateJob> {
    Ok(CurateJob {
        inputs: args.inputs.clone(),
        format: match args.format {
            FormatArg::Auto => CorpusFormat::Auto,
            FormatArg::Text => CorpusFormat::Text,
            FormatArg::Jsonl => CorpusFormat::Jsonl,
        },
        field: args.field.clone(),
        unit: match args.unit {
            BoundaryArg::Line => DocBoundary::Line,
            BoundaryArg::Paragraph => DocBoundary::Paragraph,
            BoundaryArg::File => DocBoundary::File,
        },
        skip_invalid: args.skip_invalid,
        output: args.output.clone(),
        output_format: OutputFormat::for_path(&args.output),
        config: config(args)?,
    })
}

fn spinner(quiet: bool) -> ProgressBar {
    if quiet {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new_spinner();
    if let Ok(style) = ProgressStyle::with_template("{spinner} curating [{elapsed_precise}] {msg}")
    {
        bar.set_style(style);
    }
    bar.enable_steady_tick(std::time::Duration::from_millis(200));
    bar
}

fn curate(args: &CurateArgs) -> anyhow::Result<()> {
    let job = job(args)?;
    let bar = spinner(args.quiet);
    let mut show = |p: &Progress| {
        let mb = p.bytes_in as f64 / 1e6;
        let rate = mb / p.elapsed.as_secs_f64().max(1e-9);
        bar.set_message(format!(
            "{} documents in, {} kept, {mb:.1} MB, {rate:.1} MB/s",
            p.docs_in, p.docs_kept
        ));
    };
    let result = manabi_curate::curate(&job, &mut show);
    bar.finish_and_clear();
    let report = result.with_context(|| format!("curating into {}", args.output.display()))?;
    print!("{}", report.table());
    println!(
        "wrote {} and {}",
        args.output.display(),
        Report::path_for(&args.output).display()
    );
    Ok(())
}
