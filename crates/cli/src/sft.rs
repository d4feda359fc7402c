//! `manabi sft --config FILE [--set key=value ...] [--resume] [--dry-run]`.

use clap::Args;
use manabi_finetune::SftConfig;
use manabi_model::DeviceChoice;
use manabi_objectives::Recipe;

#[derive(Debug, Args)]
pub struct SftArgs {
    #[command(flatten)]
    pub recipe: crate::align::RecipeArgs,
    /// Print a few rendered training examples with the trained text marked ⟦…⟧, and stop.
    #[arg(long)]
    pub dry_run: bool,
}

pub fn run(args: &SftArgs, device: Option<DeviceChoice>) -> anyhow::Result<()> {
    let cfg = SftConfig::load(&args.recipe.config, &args.recipe.overrides)?;
    if args.dry_run {
        let p = manabi_finetune::sft::recipe::prepare(&cfg)?;
        print!(
            "{}",
            manabi_finetune::sft::show_examples(&p.train, &p.tokenizer, 3)?
        );
        let s = &p.train.stats;
        println!(
            "train: {} examples, {} trained tokens, {} prompts truncated, {} dropped (response longer than {} tokens), {} invalid lines skipped",
            s.examples, s.trained_tokens, s.truncated, s.dropped, cfg.data.block_size, p.skipped
        );
        println!("val: {} examples", p.val.stats.examples);
        return Ok(());
    }
    let device = device.unwrap_or(cfg.run.device);
    let r = manabi_finetune::sft(&cfg, device, crate::resume_from(&args.recipe.resume))?;
    crate::save_summary(&cfg.run.out, "sft", &r)?;
    let val = r.run.evals.last().map_or(f64::NAN, |&(_, l)| l);
    println!(
        "step {}: train {}, val loss {val:.4}, {:.0} tokens/s, {:.1} s",
        r.run.steps,
        r.run.loss_summary(),
        r.run.tokens_per_s,
        r.run.seconds
    );
    if let (Some(em), Some(eos)) = (r.exact_match, r.eos_rate) {
        println!(
            "validation: exact match {:.1} %, answers ending with EOS {:.1} %",
            100.0 * em,
            100.0 * eos
        );
    }
    let show = |r: [f64; 3]| {
        format!(
            "ROUGE-1 {:.4}, ROUGE-2 {:.4}, ROUGE-L {:.4}",
            r[0], r[1], r[2]
        )
    };
    if let Some(x) = r.rouge {
        println!("validation: {}", show(x));
    }
    if let Some(x) = r.lead_rouge {
        println!(
            "lead-1 baseline (first sentence of each document): {}",
            show(x)
        );
    }
    for (name, s) in [("train", &r.train_stats), ("val", &r.val_stats)] {
        if s.truncated + s.dropped > 0 {
            println!(
                "{name}: {} prompts truncated, {} examples dropped (response too long)",
                s.truncated, s.dropped
            );
        }
    }
    if let Some(c) = &r.run.checkpoint {
        println!("checkpoint: {}", c.display());
    }
    if let Some(p) = &r.predictions {
        println!("predictions: {}", p.display());
    }
    Ok(())
}
