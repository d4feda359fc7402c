//! `manabi dpo --config FILE [--set key=value ...] [--resume]`.

use std::path::PathBuf;

use clap::Args;
use manabi_align::DpoConfig;
use manabi_model::DeviceChoice;

#[derive(Debug, Args)]
pub struct DpoArgs {
    /// Recipe (see configs/align/).
    #[arg(long)]
    pub config: PathBuf,
    /// Override a value: section.key=value (repeatable), e.g. --set dpo.loss_type=ipo.
    #[arg(long = "set")]
    pub overrides: Vec<String>,
    /// Continue from the newest complete checkpoint of the run folder.
    #[arg(long)]
    pub resume: bool,
}

pub fn dpo(args: &DpoArgs, device: Option<DeviceChoice>) -> anyhow::Result<()> {
    let cfg = DpoConfig::load(&args.config, &args.overrides)?;
    let device = device.unwrap_or(cfg.run.device);
    let r = manabi_align::dpo(&cfg, device, args.resume)?;
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
