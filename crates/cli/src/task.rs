//! `manabi task --config FILE` (train, then evaluate and predict on the validation and test
//! files) and `manabi task --model CKPT --data FILE…` (evaluate / predict with a trained
//! task model, or with a Hugging Face task folder as `transformers`' `pipeline()` uses it).

use std::path::PathBuf;

use clap::Args;
use manabi_model::DeviceChoice;
use manabi_objectives::Recipe;
use manabi_tasks::classify::SplitReport;
use manabi_tasks::{PipelineOptions, TaskConfig, evaluate_task_with, train_task};

#[derive(Debug, Args)]
pub struct TaskArgs {
    /// Recipe (configs/tasks/*.toml): trains, then evaluates on `data.val` and `data.test`.
    #[arg(long, required_unless_present = "model", conflicts_with = "model")]
    pub config: Option<PathBuf>,
    /// Override a value: section.key=value (repeatable), e.g. --set train.steps=100.
    #[arg(long = "set")]
    pub overrides: Vec<String>,
    /// Continue from the newest checkpoint of the run folder that verifies (one that does
    /// not is skipped with a warning), or from the checkpoint folder given.
    #[arg(long, value_name = "CHECKPOINT")]
    pub resume: Option<Option<PathBuf>>,
    /// A checkpoint of `manabi task`, or a Hugging Face task folder (*ForSequenceClassification,
    /// *ForTokenClassification, BertModel, T5ForConditionalGeneration), to evaluate and
    /// predict with (instead of --config).
    #[arg(long, requires = "data")]
    pub model: Option<PathBuf>,
    /// JSONL files to evaluate (with labels) or predict (without), for --model.
    #[arg(long, num_args = 1..)]
    pub data: Vec<PathBuf>,
    /// Where --model writes its predictions.
    #[arg(long, default_value = "predictions.jsonl")]
    pub out: PathBuf,
    /// Examples per forward pass, for --model.
    #[arg(long, default_value_t = 32)]
    pub batch_size: usize,
    /// A Hugging Face BertModel folder's sentence vectors: cls or mean (default mean).
    #[arg(long, requires = "model")]
    pub pooling: Option<String>,
    /// A Hugging Face T5 folder's summaries: most tokens generated (default: max_length of
    /// task_specific_params.summarization, else of the folder, else 20, less one).
    #[arg(long, requires = "model")]
    pub max_new_tokens: Option<usize>,
    /// A Hugging Face T5 folder's summaries: text before each document (default: prefix of
    /// task_specific_params.summarization, else "summarize: ").
    #[arg(long, requires = "model")]
    pub prefix: Option<String>,
}

fn print_split(s: &SplitReport) {
    let metrics: Vec<String> = s
        .metrics
        .iter()
        .map(|(k, v)| format!("{k} {v:.4}"))
        .collect();
    let baseline = s
        .majority_baseline
        .map(|b| format!(" (majority class: accuracy {b:.4})"))
        .unwrap_or_default();
    println!(
        "{} ({} examples): {}{baseline}",
        s.name,
        s.examples,
        if metrics.is_empty() {
            "no gold labels".to_string()
        } else {
            metrics.join(", ")
        }
    );
    println!("  predictions: {}", s.predictions.display());
}

pub fn run(args: &TaskArgs, device: Option<DeviceChoice>) -> anyhow::Result<()> {
    if let Some(model) = &args.model {
        let device = device.unwrap_or(DeviceChoice::Cpu).resolve()?;
        let pooling = match args.pooling.as_deref() {
            None => None,
            Some("cls") => Some(manabi_tasks::embed::Pooling::Cls),
            Some("mean") => Some(manabi_tasks::embed::Pooling::Mean),
            Some(other) => anyhow::bail!("--pooling {other}: expected cls or mean"),
        };
        let options = PipelineOptions {
            pooling,
            max_new_tokens: args.max_new_tokens,
            prefix: args.prefix.clone(),
        };
        let r = evaluate_task_with(
            model,
            &args.data,
            &args.out,
            args.batch_size,
            &options,
            &device,
        )?;
        print_split(&r);
        return Ok(());
    }
    let Some(config) = &args.config else {
        anyhow::bail!("give --config (train) or --model with --data (evaluate)");
    };
    let cfg = TaskConfig::load(config, &args.overrides)?;
    let device = device.unwrap_or(cfg.run.device);
    let r = train_task(&cfg, device, crate::resume_from(&args.resume))?;
    crate::save_summary(&cfg.run.out, "task", &r)?;
    if !r.label_counts.is_empty() {
        let total: usize = r.label_counts.iter().map(|(_, c)| c).sum();
        let parts: Vec<String> = r
            .label_counts
            .iter()
            .map(|(n, c)| format!("{n} {c} ({:.1} %)", 100.0 * *c as f64 / total.max(1) as f64))
            .collect();
        println!("training labels: {}", parts.join(", "));
    }
    println!(
        "step {}: {}, {:.1} s",
        r.run.steps,
        r.run.loss_summary(),
        r.run.seconds
    );
    if r.cut > 0 {
        println!("{} inputs cut to task.max_length", r.cut);
    }
    for s in &r.splits {
        print_split(s);
    }
    if let Some(c) = &r.run.checkpoint {
        println!("checkpoint: {}", c.display());
    }
    Ok(())
}

#[derive(Debug, Args)]
pub struct EmbedArgs {
    /// Model folder: a `manabi task` SimCSE checkpoint (its pooling and length are used),
    /// or any decoder or BERT folder.
    #[arg(long)]
    pub model: PathBuf,
    /// Sentences: .jsonl with `sentence` (or `sentence1`/`sentence2`), or one per line.
    #[arg(long, required = true, num_args = 1..)]
    pub input: Vec<PathBuf>,
    /// Where the vectors go: one `{"text", "embedding"}` per line.
    #[arg(long)]
    pub out: PathBuf,
    /// mean, last (decoders) or cls (BERT) (default: the checkpoint's, else mean).
    #[arg(long)]
    pub pooling: Option<String>,
    /// Sentences per forward pass.
    #[arg(long, default_value_t = 32)]
    pub batch_size: usize,
}

pub fn embed(args: &EmbedArgs, device: DeviceChoice) -> anyhow::Result<()> {
    use manabi_tasks::embed::{self, Pooling, SentenceModel};
    let device = device.resolve()?;
    let model = SentenceModel::load(&args.model, &device)?;
    let tokenizer = manabi_tokenize::TextTokenizer::load(args.model.join("tokenizer.json"))?;
    let specials = manabi_finetune::sft::Specials::of(&tokenizer)?;
    let spec = args.model.join(manabi_tasks::settings::TASK_FILE);
    let (mut pooling, mut max_length) = (Pooling::Mean, model.max_positions());
    if spec.exists() {
        let s: manabi_tasks::settings::TaskSettings =
            toml::from_str(&std::fs::read_to_string(&spec)?)
                .map_err(|e| anyhow::anyhow!("{}: {}", spec.display(), e.message()))?;
        (pooling, max_length) = (s.pooling, s.max_length);
    }
    if let Some(p) = &args.pooling {
        pooling = match p.as_str() {
            "mean" => Pooling::Mean,
            "last" => Pooling::Last,
            "cls" => Pooling::Cls,
            other => {
                anyhow::bail!("--pooling {other}: expected mean, last (decoders) or cls (BERT)")
            }
        };
    }
    pooling
        .check(model.family())
        .map_err(|e| anyhow::anyhow!("--pooling: {e}"))?;
    let texts = embed::read_sentences(&args.input, &Default::default())?;
    let v = embed::embed_texts(
        &model,
        &tokenizer,
        &texts,
        (pooling, max_length),
        (model.framing(&tokenizer)?, specials.pad),
        args.batch_size,
        &device,
    )?;
    embed::write_embeddings(&args.out, &texts, &v)?;
    println!(
        "{} sentences -> {} ({} dimensions, {pooling:?} pooling)",
        texts.len(),
        args.out.display(),
        v.first().map_or(0, Vec::len)
    );
    Ok(())
}
