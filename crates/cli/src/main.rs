//! `manabi`: one subcommand per stage of a language model's life.

mod align;
mod chat;
mod data;
mod model_cmd;
mod pipeline;
mod plan;
mod pretrain;
mod rag;
mod sft;
mod task;
mod tokenizer;

use clap::{Parser, Subcommand};
use manabi_model::DeviceChoice;

/// Train language models through their whole life, on a laptop CPU or a GPU.
#[derive(Debug, Parser)]
#[command(name = "manabi", version, about)]
struct Cli {
    /// Where tensors live: cpu (the faster CPU backend), flex, ndarray, wgpu[:N], cuda[:N].
    #[arg(long, global = true, env = "MANABI_DEVICE")]
    device: Option<DeviceChoice>,
    /// More log output (-v info, -vv debug).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    verbose: u8,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Train, apply and inspect tokenizers.
    #[command(subcommand)]
    Tokenizer(tokenizer::TokenizerCommand),
    /// Prepare corpora: `data curate` cleans (Aozora Bunko markup), filters (Gopher, C4,
    /// FineWeb and Japanese quality rules, word lists) and deduplicates (exact and
    /// MinHash) text for pre-training.
    #[command(subcommand)]
    Data(data::DataCommand),
    /// Run the whole pipeline on the embedded sample data (or your own corpus).
    Pipeline(pipeline::PipelineArgs),
    /// Pre-train a model from a TOML recipe (configs/pretrain/*.toml).
    Pretrain(pretrain::PretrainArgs),
    /// Fine-tune a model on instructions, chat, QA or summaries (configs/sft/*.toml),
    /// fully or with LoRA, BitFit or bottleneck adapters.
    Sft(sft::SftArgs),
    /// Align a model with preference pairs: DPO, IPO, hinge, robust or SimPO
    /// (configs/align/dpo*.toml); `dpo eval` scores a policy against a reference.
    Dpo(align::DpoArgs),
    /// Alignment reports (the alignment tax).
    #[command(subcommand)]
    Align(align::AlignCommand),
    /// Reinforce a policy with verifiable rewards: GRPO (configs/align/grpo.toml).
    Grpo(align::RecipeArgs),
    /// RLHF with PPO: a policy, a value model and a reward model (configs/align/ppo.toml).
    Ppo(align::RecipeArgs),
    /// Train a reward model on preference pairs (configs/align/reward.toml).
    Reward(align::RecipeArgs),
    /// Print a reward model's scores for prompt/response pairs.
    Score(align::ScoreArgs),
    /// Downstream tasks: classification, NLI, STS, NER, SimCSE embeddings
    /// (configs/tasks/*.toml): train, evaluate, predict.
    Task(task::TaskArgs),
    /// Sentence embeddings of a model (a SimCSE checkpoint of `manabi task`), as JSONL.
    Embed(task::EmbedArgs),
    /// Retrieval-augmented generation: index documents, answer questions from the top
    /// passages, evaluate recall and exact match.
    Rag(rag::RagArgs),
    /// Chat with a model in the terminal, in its own chat template (streamed; the KV
    /// cache kept across turns).
    Chat(chat::ChatArgs),
    /// Continue prompts with a model.
    Generate(model_cmd::GenerateArgs),
    /// Score a model: loss and perplexity on a text file, or a prompted task (zero- or few-shot,
    /// multiple choice or generation, as lm-evaluation-harness does).
    Eval(model_cmd::EvalArgs),
    /// Write a model in another format (Hugging Face).
    Export(model_cmd::ExportArgs),
    /// Plan a training run: parameters, FLOPs, the Chinchilla budget, memory (full or
    /// LoRA, f32 / bf16, checkpointing), time and data parallelism for a token budget.
    Plan(plan::PlanArgs),
}

/// What `--resume [CHECKPOINT]` asks for.
/// Saves what a training command did as `RUN/summary.json` (`command` and its report:
/// the Trainer's run, the before → after numbers it printed), atomically.
pub(crate) fn save_summary(
    out: &std::path::Path,
    command: &str,
    report: &impl serde::Serialize,
) -> anyhow::Result<()> {
    let json = serde_json::to_string_pretty(&serde_json::json!({
        "command": command,
        "report": report,
    }))?;
    manabi_tokenize::write_atomic(&out.join("summary.json"), json.as_bytes())?;
    Ok(())
}

fn resume_from(arg: &Option<Option<std::path::PathBuf>>) -> manabi_objectives::Resume {
    match arg {
        None => manabi_objectives::Resume::No,
        Some(path) => path.clone().into(),
    }
}

fn main() {
    let cli = Cli::parse();
    manabi_model::device::reuse_freed_memory();
    let level = match cli.verbose {
        0 => "warn",
        1 => "info",
        _ => "debug",
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level)),
        )
        .with_writer(std::io::stderr)
        .init();
    let device = cli.device.unwrap_or(DeviceChoice::Cpu);
    let mut command = cli.command;
    if let Err(err) = locate_models(&mut command) {
        eprintln!("error: {}", one_line(&err));
        std::process::exit(1);
    }
    let result = match command {
        Command::Tokenizer(cmd) => tokenizer::run(cmd),
        Command::Chat(args) => chat::run(&args, cli.device),
        Command::Data(cmd) => data::run(cmd),
        Command::Pipeline(args) => pipeline::run(args, device),
        Command::Plan(args) => plan::run(&args, cli.device),
        Command::Pretrain(args) => pretrain::run(&args, cli.device),
        Command::Sft(args) => sft::run(&args, cli.device),
        Command::Dpo(args) => align::dpo(&args, cli.device),
        Command::Align(cmd) => align::align(&cmd, device),
        Command::Grpo(args) => align::grpo(&args, cli.device),
        Command::Ppo(args) => align::ppo(&args, cli.device),
        Command::Reward(args) => align::reward(&args, cli.device),
        Command::Score(args) => align::score(&args, device),
        Command::Task(args) => task::run(&args, cli.device),
        Command::Embed(args) => task::embed(&args, device),
        Command::Rag(args) => rag::run(&args, device),
        Command::Generate(args) => model_cmd::generate(&args, device),
        Command::Eval(args) => model_cmd::eval(&args, device),
        Command::Export(args) => model_cmd::export(&args, device),
    };
    if let Err(err) = result {
        eprintln!("error: {}", one_line(&err));
        std::process::exit(1);
    }
}

/// Every `--model` goes through the one locator before a command runs: a run folder
/// stands for its newest complete checkpoint, and a missing folder, a folder without a
/// model or an unknown `model_type` is one line naming it.
fn locate_models(command: &mut Command) -> anyhow::Result<()> {
    let locate = |p: &mut std::path::PathBuf| -> anyhow::Result<()> {
        *p = manabi_model::locate(p)?.dir;
        Ok(())
    };
    match command {
        Command::Score(args) => locate(&mut args.model),
        Command::Generate(args) => locate(&mut args.model),
        Command::Chat(args) => locate(&mut args.model),
        Command::Eval(args) => locate(&mut args.model),
        Command::Export(args) => locate(&mut args.model),
        Command::Embed(args) => locate(&mut args.model),
        Command::Task(args) => args.model.as_mut().map_or(Ok(()), locate),
        Command::Rag(args) => match &mut args.command {
            Some(rag::RagCommand::Index(a)) => a.embed_model.as_mut().map_or(Ok(()), locate),
            Some(rag::RagCommand::Eval(a)) => locate(&mut a.model),
            None => args.ask.model.as_mut().map_or(Ok(()), locate),
        },
        Command::Dpo(align::DpoArgs {
            command: Some(align::DpoCommand::Eval(args)),
            ..
        }) => {
            locate(&mut args.model)?;
            args.reference.as_mut().map_or(Ok(()), locate)
        }
        _ => Ok(()),
    }
}

/// The error and its causes on one line.
fn one_line(err: &anyhow::Error) -> String {
    let mut parts: Vec<String> = Vec::new();
    for cause in err.chain() {
        let s = cause.to_string();
        if !parts.iter().any(|p| p.contains(&s)) {
            parts.push(s);
        }
    }
    parts.join(": ").replace('\n', " ")
}
