//! `manabi tokenizer train | encode | inspect`.

use std::io::Write;
use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, Subcommand};
use manabi_tokenize::{
    CorpusFormat, CorpusSpec, DocBoundary, EncodeOptions, PreTokenize, TextTokenizer,
    TokenizerKind, TrainOptions,
};

#[derive(Debug, Subcommand)]
pub enum TokenizerCommand {
    /// Train a tokenizer and write DIR/tokenizer.json (Hugging Face format).
    Train(TrainArgs),
    /// Encode a corpus into token shards (train.bin, val.bin, meta.json).
    Encode(EncodeArgs),
    /// Vocabulary, special tokens, sample tokenisations and chars/token on a file.
    Inspect(InspectArgs),
}

/// Where the text comes from.
#[derive(Debug, Args)]
pub struct CorpusArgs {
    /// Corpus files or folders (.txt, .jsonl, optionally .gz).
    #[arg(long = "input", short, num_args = 1..)]
    pub inputs: Vec<PathBuf>,
    /// File format (auto: .jsonl is JSONL, the rest plain text).
    #[arg(long, value_enum, default_value = "auto")]
    pub format: FormatArg,
    /// JSONL field holding the text.
    #[arg(long, default_value = "text")]
    pub field: String,
    /// Where a plain-text document ends.
    #[arg(long, value_enum, default_value = "paragraph")]
    pub doc_boundary: BoundaryArg,
    /// Count and skip malformed lines instead of stopping at the first.
    #[arg(long)]
    pub skip_invalid: bool,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum FormatArg {
    Auto,
    Text,
    Jsonl,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum BoundaryArg {
    Line,
    Paragraph,
    File,
}

impl CorpusArgs {
    /// `--input` is required except where a command says otherwise (`encode --text`).
    fn require_inputs(&self) -> anyhow::Result<()> {
        if self.inputs.is_empty() {
            anyhow::bail!("--input is required: give corpus files or folders");
        }
        Ok(())
    }

    pub fn spec(&self) -> CorpusSpec {
        CorpusSpec {
            inputs: self.inputs.clone(),
            format: match self.format {
                FormatArg::Auto => CorpusFormat::Auto,
                FormatArg::Text => CorpusFormat::Text,
                FormatArg::Jsonl => CorpusFormat::Jsonl,
            },
            field: self.field.clone(),
            boundary: match self.doc_boundary {
                BoundaryArg::Line => DocBoundary::Line,
                BoundaryArg::Paragraph => DocBoundary::Paragraph,
                BoundaryArg::File => DocBoundary::File,
            },
            skip_invalid: self.skip_invalid,
        }
    }
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum KindArg {
    Bpe,
    Wordpiece,
    Unigram,
    Char,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum PreTokenizeArg {
    Default,
    Japanese,
    Whitespace,
    WhitespaceSplit,
    UnicodeScripts,
    None,
}

#[derive(Debug, Args)]
pub struct TrainArgs {
    #[command(flatten)]
    pub corpus: CorpusArgs,
    /// Tokenizer model.
    #[arg(long, value_enum, default_value = "bpe")]
    pub kind: KindArg,
    /// Vocabulary size, special tokens included.
    #[arg(long, default_value_t = 8000)]
    pub vocab_size: usize,
    /// Minimum count for a merge, piece or character.
    #[arg(long, default_value_t = 2)]
    pub min_frequency: u64,
    /// Special tokens, comma-separated, ids from 0.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "<pad>,<unk>,<bos>,<eos>,<mask>"
    )]
    pub special_tokens: Vec<String>,
    /// Span-corruption sentinels <extra_id_0>… to add.
    #[arg(long, default_value_t = 0)]
    pub sentinels: usize,
    /// Add chat role tokens <|system|> <|user|> <|assistant|> <|end|>.
    #[arg(long)]
    pub chat_tokens: bool,
    /// NFKC-normalise the text (folds full-width forms).
    #[arg(long)]
    pub nfkc: bool,
    /// Lower-case the text.
    #[arg(long)]
    pub lowercase: bool,
    /// Pre-tokenisation (japanese: split where kanji, kana, Latin and digits meet).
    #[arg(long, value_enum, default_value = "default")]
    pub pre_tokenize: PreTokenizeArg,
    /// Keep only the N most frequent characters as the alphabet.
    #[arg(long)]
    pub limit_alphabet: Option<usize>,
    /// Characters always in a char / WordPiece / Unigram vocabulary, seen in the corpus or
    /// not (e.g. those of a prompt template the corpus lacks).
    #[arg(long, default_value = "")]
    pub alphabet: String,
    /// Split words with this MeCab-style system dictionary compiled by vibrato 0.5
    /// (system.dic, or system.dic.zst) before training and encoding; recorded in
    /// DIR/manabi-pretokenize.json (the `morph` feature, on by default).
    #[arg(long, value_name = "PATH")]
    pub morph_dict: Option<PathBuf>,
    /// Output folder for tokenizer.json.
    #[arg(long)]
    pub out: PathBuf,
    /// No progress bar.
    #[arg(long)]
    pub quiet: bool,
}

#[derive(Debug, Args)]
pub struct EncodeArgs {
    #[command(flatten)]
    pub corpus: CorpusArgs,
    /// tokenizer.json, or a folder holding one.
    #[arg(long)]
    pub tokenizer: PathBuf,
    /// Output shard folder (written whole, then renamed into place).
    #[arg(long, required_unless_present_any = ["print_ids", "text"])]
    pub out: Option<PathBuf>,
    /// Show how one sentence is split: each token's id and its readable piece (no corpus,
    /// no shards).
    #[arg(long, conflicts_with_all = ["inputs", "out", "print_ids"])]
    pub text: Option<String>,
    /// Fraction of documents held out for validation.
    #[arg(long, default_value_t = 0.1)]
    pub val_fraction: f64,
    /// Token written after every document.
    #[arg(long, default_value = "<eos>")]
    pub eos_token: String,
    /// Replace an existing output folder.
    #[arg(long)]
    pub overwrite: bool,
    /// Print each document's ids (space-separated, one line each) instead of writing shards.
    #[arg(long)]
    pub print_ids: bool,
    /// No progress bar.
    #[arg(long)]
    pub quiet: bool,
}

#[derive(Debug, Args)]
pub struct InspectArgs {
    /// tokenizer.json, or a folder holding one.
    #[arg(long)]
    pub tokenizer: PathBuf,
    /// A text file to measure chars/token and bytes/token on.
    #[arg(long)]
    pub input: Option<PathBuf>,
    /// How many sample tokenisations to show.
    #[arg(long, default_value_t = 3)]
    pub samples: usize,
    /// Print one JSON object.
    #[arg(long)]
    pub json: bool,
}

pub fn run(cmd: TokenizerCommand) -> anyhow::Result<()> {
    match cmd {
        TokenizerCommand::Train(args) => train(&args).map(|_| ()),
        TokenizerCommand::Encode(args) => encode(&args),
        TokenizerCommand::Inspect(args) => inspect(&args),
    }
}

pub fn train(args: &TrainArgs) -> anyhow::Result<TextTokenizer> {
    args.corpus.require_inputs()?;
    let opts = TrainOptions {
        kind: match args.kind {
            KindArg::Bpe => TokenizerKind::Bpe,
            KindArg::Wordpiece => TokenizerKind::Wordpiece,
            KindArg::Unigram => TokenizerKind::Unigram,
            KindArg::Char => TokenizerKind::Char,
        },
        vocab_size: args.vocab_size,
        min_frequency: args.min_frequency,
        special_tokens: args.special_tokens.clone(),
        sentinels: args.sentinels,
        chat_tokens: args.chat_tokens,
        nfkc: args.nfkc,
        lowercase: args.lowercase,
        pre_tokenize: match args.pre_tokenize {
            PreTokenizeArg::Default => PreTokenize::Default,
            PreTokenizeArg::Japanese => PreTokenize::Japanese,
            PreTokenizeArg::Whitespace => PreTokenize::Whitespace,
            PreTokenizeArg::WhitespaceSplit => PreTokenize::WhitespaceSplit,
            PreTokenizeArg::UnicodeScripts => PreTokenize::UnicodeScripts,
            PreTokenizeArg::None => PreTokenize::None,
        },
        limit_alphabet: args.limit_alphabet,
        alphabet: args.alphabet.clone(),
        show_progress: !args.quiet,
        morph_dict: args.morph_dict.clone(),
    };
    let started = std::time::Instant::now();
    let mut tokenizer = manabi_tokenize::train(&args.corpus.spec(), &opts)?;
    let path = args.out.join("tokenizer.json");
    tokenizer.save(&path)?;
    eprintln!(
        "trained {:?} tokenizer: {} tokens in {:.1} s -> {}",
        opts.kind,
        tokenizer.vocab_size(),
        started.elapsed().as_secs_f64(),
        path.display()
    );
    if let Some(dict) = tokenizer.morph_dictionary() {
        eprintln!(
            "words split with {} (recorded in {})",
            dict.display(),
            path.with_file_name(manabi_tokenize::sidecar::SIDECAR_FILE)
                .display()
        );
    }
    Ok(tokenizer)
}

pub fn encode(args: &EncodeArgs) -> anyhow::Result<()> {
    let tokenizer = TextTokenizer::load(&args.tokenizer)?;
    if let Some(text) = &args.text {
        let pieces = manabi_tokenize::inspect::readable_pieces(&tokenizer, text)?;
        println!("{} tokens, {} chars", pieces.len(), text.chars().count());
        for (id, piece) in pieces {
            println!("{id:>8}  {piece:?}");
        }
        return Ok(());
    }
    args.corpus.require_inputs()?;
    let spec = args.corpus.spec();
    if args.print_ids {
        let stdout = std::io::stdout();
        let mut out = std::io::BufWriter::new(stdout.lock());
        for doc in spec.documents()? {
            let ids = tokenizer.encode(&doc?.text)?;
            let line: Vec<String> = ids.iter().map(u32::to_string).collect();
            writeln!(out, "{}", line.join(" ")).context("writing to stdout")?;
        }
        return Ok(());
    }
    let out = args.out.clone().context("--out is required")?;
    let opts = EncodeOptions {
        val_fraction: args.val_fraction,
        eos_token: args.eos_token.clone(),
        overwrite: args.overwrite,
        show_progress: !args.quiet,
        ..EncodeOptions::default()
    };
    let started = std::time::Instant::now();
    let meta = manabi_tokenize::encode_corpus(&tokenizer, &spec, &out, &opts)?;
    let secs = started.elapsed().as_secs_f64();
    eprintln!(
        "encoded {} documents ({} train / {} val tokens, {}) in {:.2} s, {:.1} MB/s -> {}",
        meta.train.documents + meta.val.documents,
        meta.train.tokens,
        meta.val.tokens,
        format!("{:?}", meta.dtype).to_lowercase(),
        secs,
        meta.text_bytes as f64 / 1e6 / secs.max(1e-9),
        out.display()
    );
    if meta.skipped_lines > 0 {
        eprintln!("skipped {} invalid lines", meta.skipped_lines);
    }
    Ok(())
}

pub fn inspect(args: &InspectArgs) -> anyhow::Result<()> {
    let tokenizer = TextTokenizer::load(&args.tokenizer)?;
    let spec = args.input.as_ref().map(|p| {
        let mut s = CorpusSpec::new(vec![p.clone()]);
        s.boundary = DocBoundary::Line;
        s
    });
    let report = manabi_tokenize::inspect(&tokenizer, spec.as_ref(), args.samples)?;
    if args.json {
        let mut value = serde_json::to_value(&report)?;
        value["chars_per_token"] = report.chars_per_token().into();
        value["bytes_per_token"] = report.bytes_per_token().into();
        value["morph_dictionary"] = tokenizer
            .morph_dictionary()
            .map(|p| p.display().to_string())
            .into();
        println!("{value}");
        return Ok(());
    }
    println!("tokenizer: {}", tokenizer.path().display());
    println!("vocab size: {}", report.vocab_size);
    if let Some(dict) = tokenizer.morph_dictionary() {
        println!("word splitting: vibrato dictionary {}", dict.display());
    }
    let specials: Vec<String> = report
        .special_tokens
        .iter()
        .map(|(id, t)| format!("{t}={id}"))
        .collect();
    println!("special tokens: {}", specials.join(" "));
    if let Some(input) = &args.input {
        println!(
            "{}: {} lines, {} chars, {} tokens: {:.2} chars/token, {:.2} bytes/token, {} unknown",
            input.display(),
            report.documents,
            report.chars,
            report.tokens,
            report.chars_per_token(),
            report.bytes_per_token(),
            report.unknown_tokens
        );
        for (text, tokens) in &report.samples {
            println!("  {text:?}\n    -> {tokens:?}");
        }
    }
    Ok(())
}
