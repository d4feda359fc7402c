//! `manabi dpo --config FILE [--set key=value ...] [--resume]`, `manabi dpo eval`, and the
//! other alignment commands.

use std::path::PathBuf;

use clap::Args;
use manabi_align::dpo::{DpoSettings, EvalOptions};
use manabi_align::{DpoConfig, GrpoConfig, LossType, PpoConfig, RewardConfig};
use manabi_model::DeviceChoice;
use manabi_objectives::Recipe;

/// The arguments of every recipe-driven training command.
#[derive(Debug, Args)]
pub struct RecipeArgs {
    /// Recipe (see configs/).
    #[arg(long)]
    pub config: PathBuf,
    /// Override a value: section.key=value (repeatable), e.g. --set train.steps=100.
    #[arg(long = "set")]
    pub overrides: Vec<String>,
    /// Continue from the newest checkpoint of the run folder that verifies (one that does
    /// not is skipped with a warning), or from the checkpoint folder given.
    #[arg(long, value_name = "CHECKPOINT")]
    pub resume: Option<Option<PathBuf>>,
}

/// `manabi dpo --config FILE …` trains; `manabi dpo eval …` scores a policy against a
/// reference without training.
#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct DpoArgs {
    #[command(subcommand)]
    pub command: Option<DpoCommand>,
    #[command(flatten)]
    pub recipe: Option<RecipeArgs>,
}

#[derive(Debug, clap::Subcommand)]
pub enum DpoCommand {
    /// TRL's DPO metrics (rewards/chosen, rewards/rejected, rewards/accuracies,
    /// rewards/margins, logps/chosen, logps/rejected, loss) of a policy against a reference
    /// on preference pairs, without training.
    Eval(DpoEvalArgs),
}

#[derive(Debug, Args)]
pub struct DpoEvalArgs {
    /// The policy: any decoder folder (manabi checkpoint, run folder, Hugging Face).
    #[arg(long)]
    pub model: PathBuf,
    /// The reference to compare with (e.g. the checkpoint the policy started from); not
    /// with --loss-type simpo.
    #[arg(long)]
    pub reference: Option<PathBuf>,
    /// Preference pairs (JSONL, any layout `manabi dpo` reads); repeatable.
    #[arg(long, required = true)]
    pub data: Vec<PathBuf>,
    /// tokenizer.json (default: the one in --model).
    #[arg(long)]
    pub tokenizer: Option<PathBuf>,
    /// β of the implicit reward.
    #[arg(long, default_value_t = 0.1)]
    pub beta: f64,
    /// sigmoid | robust | hinge | ipo | simpo.
    #[arg(long, default_value = "sigmoid", value_parser = parse_loss_type)]
    pub loss_type: LossType,
    /// ε: assumed share of flipped labels (sigmoid, robust, simpo).
    #[arg(long, default_value_t = 0.0)]
    pub label_smoothing: f64,
    /// SimPO's target margin γ.
    #[arg(long, default_value_t = 0.5)]
    pub simpo_gamma: f64,
    /// Longest prompt + completion in tokens (prompts are cut from the left), as the
    /// recipe's data.max_length.
    #[arg(long, default_value_t = 256)]
    pub max_length: usize,
    /// Pairs per forward pass.
    #[arg(long, default_value_t = 8)]
    pub batch_size: usize,
    /// Print the numbers as one JSON object instead of a table.
    #[arg(long)]
    pub json: bool,
}

fn parse_loss_type(s: &str) -> Result<LossType, String> {
    serde_json::from_value(serde_json::Value::String(s.to_string()))
        .map_err(|_| format!("unknown loss type `{s}` (sigmoid, robust, hinge, ipo, simpo)"))
}

pub fn dpo(args: &DpoArgs, device: Option<DeviceChoice>) -> anyhow::Result<()> {
    match (&args.command, &args.recipe) {
        (Some(DpoCommand::Eval(a)), _) => dpo_eval(a, device.unwrap_or(DeviceChoice::Cpu)),
        (None, Some(recipe)) => dpo_train(recipe, device),
        (None, None) => anyhow::bail!("give --config RECIPE (or `manabi dpo eval`)"),
    }
}

fn dpo_eval(a: &DpoEvalArgs, device: DeviceChoice) -> anyhow::Result<()> {
    let device = device.resolve()?;
    if !(a.beta > 0.0 && a.beta.is_finite()) {
        anyhow::bail!("--beta must be positive");
    }
    if !(0.0..0.5).contains(&a.label_smoothing) {
        anyhow::bail!("--label-smoothing must be in [0, 0.5)");
    }
    let options = EvalOptions {
        model: a.model.clone(),
        tokenizer: a.tokenizer.clone(),
        data: a.data.clone(),
        settings: DpoSettings {
            beta: a.beta,
            loss_type: a.loss_type,
            label_smoothing: a.label_smoothing,
            simpo_gamma: a.simpo_gamma,
            reference: a.reference.clone(),
        },
        batch_size: a.batch_size,
        max_length: a.max_length,
    };
    let r = manabi_align::dpo::dpo_eval(&options, &device)?;
    if a.json {
        println!("{}", serde_json::to_string(&r)?);
        return Ok(());
    }
    println!("{} pairs", r.pairs);
    println!("  loss {:.4}", r.loss);
    for (k, v) in &r.metrics {
        println!("  {k} {v:.4}");
    }
    if r.cut + r.dropped > 0 {
        println!("{} prompts cut to fit, {} pairs dropped", r.cut, r.dropped);
    }
    Ok(())
}

fn dpo_train(args: &RecipeArgs, device: Option<DeviceChoice>) -> anyhow::Result<()> {
    let cfg = DpoConfig::load(&args.config, &args.overrides)?;
    let device = device.unwrap_or(cfg.run.device);
    let r = manabi_align::dpo(&cfg, device, crate::resume_from(&args.resume))?;
    crate::save_summary(&cfg.run.out, "dpo", &r)?;
    println!(
        "step {}: {}, {} pairs, {:.1} s",
        r.run.steps,
        r.run.loss_summary(),
        r.train_pairs,
        r.run.seconds
    );
    for (k, v) in &r.run.eval_metrics {
        println!("  {k} {v:.4}");
    }
    println!(
        "held-out preference accuracy (implicit reward margin > 0): {:.1} % -> {:.1} %",
        100.0 * r.accuracy_before,
        100.0 * r.accuracy_after
    );
    if r.cut + r.dropped > 0 {
        println!("{} prompts cut to fit, {} pairs dropped", r.cut, r.dropped);
    }
    if let Some(c) = &r.run.checkpoint {
        println!("checkpoint: {}", c.display());
    }
    Ok(())
}

pub fn reward(args: &RecipeArgs, device: Option<DeviceChoice>) -> anyhow::Result<()> {
    let cfg = RewardConfig::load(&args.config, &args.overrides)?;
    let device = device.unwrap_or(cfg.run.device);
    let r = manabi_align::train_reward(&cfg, device, crate::resume_from(&args.resume))?;
    crate::save_summary(&cfg.run.out, "reward", &r)?;
    println!(
        "step {}: {}, {:.1} s",
        r.run.steps,
        r.run.loss_summary(),
        r.run.seconds
    );
    for (k, v) in &r.run.eval_metrics {
        println!("  {k} {v:.4}");
    }
    println!("held-out pairwise accuracy: {:.1} %", 100.0 * r.accuracy);
    if let Some(c) = &r.checkpoint {
        println!("checkpoint: {}", c.display());
    }
    Ok(())
}

#[derive(Debug, Args)]
pub struct ScoreArgs {
    /// Reward model folder (manabi checkpoint or Hugging Face *ForSequenceClassification).
    #[arg(long)]
    pub model: PathBuf,
    /// tokenizer.json (default: the one in the model folder).
    #[arg(long)]
    pub tokenizer: Option<PathBuf>,
    /// Prompt; repeat, one per --response.
    #[arg(long, required = true)]
    pub prompt: Vec<String>,
    /// Response to score; repeat.
    #[arg(long, required = true)]
    pub response: Vec<String>,
}

pub fn score(args: &ScoreArgs, device: DeviceChoice) -> anyhow::Result<()> {
    let device = device.resolve()?;
    if args.prompt.len() != args.response.len() && args.prompt.len() != 1 {
        anyhow::bail!("give one --prompt, or one --prompt per --response");
    }
    let model = manabi_align::load_reward(&args.model, &device)?;
    let tok_path = args
        .tokenizer
        .clone()
        .unwrap_or_else(|| args.model.join("tokenizer.json"));
    let tok = manabi_tokenize::TextTokenizer::load(&tok_path)?;
    manabi_model::open::check_tokenizer(tok.vocab_size(), &tok_path, model.lm.config().vocab_size)?;
    let texts: Vec<(String, String)> = args
        .response
        .iter()
        .enumerate()
        .map(|(i, r)| (args.prompt[i.min(args.prompt.len() - 1)].clone(), r.clone()))
        .collect();
    let scores = manabi_align::score_texts(&model, &tok, &texts, &device)?;
    for ((p, r), s) in texts.iter().zip(scores) {
        println!("{s:.6}\t{}\t{}", p.escape_debug(), r.escape_debug());
    }
    Ok(())
}

pub fn grpo(args: &RecipeArgs, device: Option<DeviceChoice>) -> anyhow::Result<()> {
    let cfg = GrpoConfig::load(&args.config, &args.overrides)?;
    let device = device.unwrap_or(cfg.run.device);
    let r = manabi_align::grpo(&cfg, device, crate::resume_from(&args.resume))?;
    crate::save_summary(&cfg.run.out, "grpo", &r)?;
    println!(
        "step {}: {}, {:.1} s",
        r.run.steps,
        r.run.loss_summary(),
        r.run.seconds
    );
    println!(
        "held-out exact match (greedy): {:.1} % -> {:.1} %",
        100.0 * r.exact_match_before,
        100.0 * r.exact_match_after
    );
    if let Some(c) = &r.run.checkpoint {
        println!("checkpoint: {}", c.display());
    }
    Ok(())
}

pub fn ppo(args: &RecipeArgs, device: Option<DeviceChoice>) -> anyhow::Result<()> {
    let cfg = PpoConfig::load(&args.config, &args.overrides)?;
    let device = device.unwrap_or(cfg.run.device);
    let r = manabi_align::ppo(&cfg, device, crate::resume_from(&args.resume))?;
    crate::save_summary(&cfg.run.out, "ppo", &r)?;
    println!(
        "step {}: {}, {} responses per rollout, {:.1} s",
        r.run.steps,
        r.run.loss_summary(),
        r.rollout_size,
        r.run.seconds
    );
    println!("held-out prompts, one sampled response each:");
    println!("| policy | reward score | KL to reference | entropy/token | length | EOS |");
    println!("|---|---|---|---|---|---|");
    for (name, s) in [("before", r.before), ("after", r.after)] {
        println!(
            "| {name} | {:.4} | {:.4} | {:.4} | {:.1} | {:.1} % |",
            s.score,
            s.kl,
            s.entropy,
            s.length,
            100.0 * s.eos_rate
        );
    }
    if let Some(t) = r.target_kl {
        println!("KL target (adaptive controller): {t}");
    }
    if r.prompts_cut > 0 {
        println!("{} prompts cut from the left to fit", r.prompts_cut);
    }
    println!("policy: {}", r.policy.display());
    Ok(())
}

#[derive(Debug, clap::Subcommand)]
pub enum AlignCommand {
    /// The alignment tax: a model before and after alignment on held-out evaluations.
    Report(ReportArgs),
}

#[derive(Debug, Args)]
pub struct ReportArgs {
    /// The model before alignment (e.g. the SFT checkpoint).
    #[arg(long)]
    pub before: PathBuf,
    /// The model after alignment (e.g. the DPO checkpoint).
    #[arg(long)]
    pub after: PathBuf,
    /// tokenizer.json (default: the one in --after).
    #[arg(long)]
    pub tokenizer: Option<PathBuf>,
    /// Text for perplexity.
    #[arg(long)]
    pub text: Option<PathBuf>,
    /// QA JSONL for exact match.
    #[arg(long)]
    pub qa: Option<PathBuf>,
    /// {"prompt","answer"} JSONL for exact match.
    #[arg(long)]
    pub prompts: Option<PathBuf>,
    /// Preference pairs: how often the chosen completion is more likely.
    #[arg(long)]
    pub pairs: Option<PathBuf>,
    /// Window length for perplexity.
    #[arg(long, default_value_t = 128)]
    pub context: usize,
}

pub fn align(cmd: &AlignCommand, device: DeviceChoice) -> anyhow::Result<()> {
    let AlignCommand::Report(a) = cmd;
    let device = device.resolve()?;
    let (before, _) = manabi_finetune::load_decoder(&a.before, &device)?;
    let (after, _) = manabi_finetune::load_decoder(&a.after, &device)?;
    let tok = manabi_align::report::report_tokenizer(&a.before, &a.after, a.tokenizer.as_deref())?;
    let inputs = manabi_align::report::ReportInputs {
        text: a.text.clone(),
        qa: a.qa.clone(),
        prompts: a.prompts.clone(),
        pairs: a.pairs.clone(),
        context: a.context,
    };
    let rows = manabi_align::report::report(&before, &after, &tok, &inputs, &device)?;
    println!("| evaluation | before | after | Δ |\n|---|---|---|---|");
    for r in rows {
        println!(
            "| {} | {:.4} | {:.4} | {:+.4} |",
            r.metric,
            r.before,
            r.after,
            r.after - r.before
        );
    }
    Ok(())
}
