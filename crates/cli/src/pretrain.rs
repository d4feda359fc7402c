//! `manabi pretrain --config FILE [--set key=value ...] [--resume]`.

use std::path::PathBuf;

use clap::Args;
use manabi_model::DeviceChoice;
use manabi_objectives::PretrainConfig;
use manabi_objectives::Recipe;

#[derive(Debug, Args)]
pub struct PretrainArgs {
    /// Recipe (see configs/pretrain/).
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

pub fn run(args: &PretrainArgs, device: Option<DeviceChoice>) -> anyhow::Result<()> {
    let cfg = PretrainConfig::load(&args.config, &args.overrides)?;
    let device = device.unwrap_or(cfg.run.device);
    let report = manabi_objectives::pretrain(&cfg, device, crate::resume_from(&args.resume))?;
    crate::save_summary(&cfg.run.out, "pretrain", &report)?;
    let val = report.evals.last().map_or(f64::NAN, |&(_, l)| l);
    println!(
        "step {}: train {}, val loss {val:.4}, {:.0} tokens/s, {:.1} s, {} parameters",
        report.steps,
        report.loss_summary(),
        report.tokens_per_s,
        report.seconds,
        report.params
    );
    if let Some(c) = &report.checkpoint {
        println!("checkpoint: {}", c.display());
    }
    Ok(())
}
