//! One stage of the pipeline: its recipe parsed with the pipeline's overrides, run (or
//! resumed) through the library entry point every command uses, and summarised by the
//! stage's own metric before → after.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::Context;
use manabi_align::{DpoConfig, RewardConfig};
use manabi_finetune::SftConfig;
use manabi_model::DeviceChoice;
use manabi_objectives::{PretrainConfig, Recipe, Resume};

use super::summary::{Receipt, StageSummary, sha256_file, weights_sha256};

/// Runs stage `name` (resuming from its newest checkpoint when it has one).
pub fn run(
    name: &str,
    text: &str,
    sets: &[String],
    inputs: BTreeMap<String, String>,
    device: DeviceChoice,
) -> anyhow::Result<StageSummary> {
    let mut s = match name {
        "pretrain" => pretrain(text, sets, device)?,
        "sft" => sft(text, sets, device)?,
        "reward" => reward(text, sets, device)?,
        "dpo" => dpo(text, sets, device)?,
        other => anyhow::bail!("no stage `{other}`"),
    };
    s.receipt = Receipt {
        inputs,
        output: weights_sha256(&s.checkpoint, device)?,
    };
    Ok(s)
}

/// The data files stage `name` reads, as its recipe (after overrides) names them.
pub fn data_files(name: &str, text: &str, sets: &[String]) -> anyhow::Result<Vec<PathBuf>> {
    Ok(match name {
        "pretrain" => PretrainConfig::parse(text, sets)?.data.inputs,
        "sft" => {
            let c = SftConfig::parse(text, sets)?;
            c.data.train.into_iter().chain(c.data.val).collect()
        }
        "reward" => {
            let c = RewardConfig::parse(text, sets)?;
            c.data.train.into_iter().chain(c.data.val).collect()
        }
        "dpo" => {
            let c = DpoConfig::parse(text, sets)?;
            c.data.train.into_iter().chain(c.data.val).collect()
        }
        other => anyhow::bail!("no stage `{other}`"),
    })
}

/// The first and the last logged value of `key` in a run's `metrics.jsonl`: with
/// `train.eval_at_start`, the starting model's (step 0) and the final model's. Read from
/// the file, so a resumed run reports the same numbers as one that was not stopped.
fn first_last(run: &Path, key: &str) -> anyhow::Result<(f64, f64)> {
    let path = run.join("metrics.jsonl");
    let series = manabi_objectives::metrics_log::read_series(&path, key)?;
    match (series.first(), series.last()) {
        (Some(a), Some(b)) => Ok((a.1, b.1)),
        _ => anyhow::bail!("{}: no `{key}` logged", path.display()),
    }
}

/// Resume from the newest checkpoint when the stage saved one (a run killed earlier),
/// else start afresh (metrics of a run killed before its first save are rewritten).
fn resume(run: &Path) -> Resume {
    match manabi_model::open::checkpoints(&run.join("checkpoints")).is_empty() {
        true => Resume::No,
        false => Resume::Latest,
    }
}

fn checkpoint(c: Option<PathBuf>, run: &Path) -> anyhow::Result<PathBuf> {
    c.or_else(|| {
        manabi_model::open::checkpoints(&run.join("checkpoints"))
            .pop()
            .map(|c| c.1)
    })
    .with_context(|| format!("{}: the run saved no checkpoint", run.display()))
}

fn pretrain(text: &str, sets: &[String], device: DeviceChoice) -> anyhow::Result<StageSummary> {
    let cfg = PretrainConfig::parse(text, sets)?;
    let r = manabi_objectives::pretrain(&cfg, device, resume(&cfg.run.out))?;
    let (before, after) = first_last(&cfg.run.out, "val_loss")?;
    Ok(StageSummary {
        stage: "pretrain".into(),
        metric: "validation loss (nats/token)".into(),
        lower_is_better: true,
        before,
        after,
        steps: r.steps,
        data_size: cfg.train.steps
            * cfg.train.batch_size
            * cfg.train.grad_accum
            * cfg.data.block_size,
        data_unit: "tokens trained".into(),
        seconds: r.seconds,
        tokens_per_s: r.tokens_per_s,
        params: r.params,
        trainable_params: r.trainable_params,
        checkpoint: checkpoint(r.checkpoint, &cfg.run.out)?,
        receipt: Receipt::default(),
    })
}

fn sft(text: &str, sets: &[String], device: DeviceChoice) -> anyhow::Result<StageSummary> {
    let cfg = SftConfig::parse(text, sets)?;
    let r = manabi_finetune::sft(&cfg, device, resume(&cfg.run.out))?;
    let (before, after) = first_last(&cfg.run.out, "val_loss")?;
    Ok(StageSummary {
        stage: "sft".into(),
        metric: "validation loss on responses (nats/token)".into(),
        lower_is_better: true,
        before,
        after,
        steps: r.run.steps,
        data_size: r.train_stats.examples,
        data_unit: "examples".into(),
        seconds: r.run.seconds,
        tokens_per_s: r.run.tokens_per_s,
        params: r.total_params,
        trainable_params: r.trainable_params,
        checkpoint: checkpoint(r.run.checkpoint, &cfg.run.out)?,
        receipt: Receipt::default(),
    })
}

fn reward(text: &str, sets: &[String], device: DeviceChoice) -> anyhow::Result<StageSummary> {
    let cfg = RewardConfig::parse(text, sets)?;
    let r = manabi_align::train_reward(&cfg, device, resume(&cfg.run.out))?;
    let (before, after) = first_last(&cfg.run.out, "eval/accuracy")?;
    Ok(StageSummary {
        stage: "reward".into(),
        metric: "held-out pairwise accuracy".into(),
        lower_is_better: false,
        before,
        after,
        steps: r.run.steps,
        data_size: manabi_align::pref::read_pairs(&cfg.data.train)?.len(),
        data_unit: "pairs".into(),
        seconds: r.run.seconds,
        tokens_per_s: r.run.tokens_per_s,
        params: r.run.params,
        trainable_params: r.trainable_params,
        checkpoint: checkpoint(r.checkpoint, &cfg.run.out)?,
        receipt: Receipt::default(),
    })
}

fn dpo(text: &str, sets: &[String], device: DeviceChoice) -> anyhow::Result<StageSummary> {
    let cfg = DpoConfig::parse(text, sets)?;
    let r = manabi_align::dpo(&cfg, device, resume(&cfg.run.out))?;
    Ok(StageSummary {
        stage: "dpo".into(),
        metric: "held-out preference accuracy (implicit reward)".into(),
        lower_is_better: false,
        before: r.accuracy_before,
        after: r.accuracy_after,
        steps: r.run.steps,
        data_size: r.train_pairs,
        data_unit: "pairs".into(),
        seconds: r.run.seconds,
        tokens_per_s: r.run.tokens_per_s,
        params: r.run.params,
        trainable_params: r.trainable_params,
        checkpoint: checkpoint(r.run.checkpoint, &cfg.run.out)?,
        receipt: Receipt::default(),
    })
}

/// Curates `corpus` into `dir/corpus.jsonl` (with its per-rule report beside it).
pub fn curate(
    c: &super::recipe::CurateStage,
    corpus: &[PathBuf],
    dir: &Path,
    inputs: BTreeMap<String, String>,
) -> anyhow::Result<StageSummary> {
    std::fs::create_dir_all(dir).with_context(|| format!("{}", dir.display()))?;
    let output = dir.join("corpus.jsonl");
    let mut job = manabi_curate::CurateJob::new(corpus.to_vec(), output.clone());
    job.unit = c.unit()?;
    job.config = c.config()?;
    let r = manabi_curate::curate(&job, &mut |_| {})?;
    // The rules that removed something, for the report.
    let removed: Vec<String> = r
        .rules
        .iter()
        .filter(|x| x.removed > 0)
        .map(|x| format!("{} {}", x.rule, x.removed))
        .collect();
    Ok(StageSummary {
        stage: "curate".into(),
        metric: format!(
            "documents in → kept ({})",
            if removed.is_empty() {
                "nothing removed".into()
            } else {
                removed.join(", ")
            }
        ),
        lower_is_better: true,
        before: r.docs_in as f64,
        after: r.docs_kept as f64,
        steps: 0,
        data_size: r.bytes_in as usize,
        data_unit: "bytes read".into(),
        seconds: r.elapsed_secs,
        tokens_per_s: 0.0,
        params: 0,
        trainable_params: 0,
        receipt: Receipt {
            inputs,
            output: sha256_file(&output)?,
        },
        checkpoint: output,
    })
}
