//! `manabi dpo --config FILE [--set key=value ...] [--resume]`.

use std::path::PathBuf;

use clap::Args;
use manabi_align::{DpoConfig, GrpoConfig, PpoConfig, RewardConfig};
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

pub fn dpo(args: &RecipeArgs, device: Option<DeviceChoice>) -> anyhow::Result<()> {
    let cfg = DpoConfig::load(&args.config, &args.overrides)?;
    let device = device.unwrap_or(cfg.run.device);
    let r = manabi_align::dpo(&cfg, device, crate::resume_from(&args.resume))?;
    let last = r.run.losses.last().map_or(f64::NAN, |&(_, l)| l);
    println!(
        "step {}: loss {last:.4}, {} pairs, {:.1} s",
        r.run.steps, r.train_pairs, r.run.seconds
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
    let last = r.run.losses.last().map_or(f64::NAN, |&(_, l)| l);
    println!(
        "step {}: loss {last:.4}, {:.1} s",
        r.run.steps, r.run.seconds
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
    let last = r.run.losses.last().map_or(f64::NAN, |&(_, l)| l);
    println!(
        "step {}: loss {last:.4}, {:.1} s",
        r.run.steps, r.run.seconds
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
    let last = r.run.losses.last().map_or(f64::NAN, |&(_, l)| l);
    println!(
        "step {}: loss {last:.4}, {} responses per rollout, {:.1} s",
        r.run.steps, r.rollout_size, r.run.seconds
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
    let tok_path = a
        .tokenizer
        .clone()
        .unwrap_or_else(|| a.after.join("tokenizer.json"));
    let tok = manabi_tokenize::TextTokenizer::load(&tok_path)?;
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
