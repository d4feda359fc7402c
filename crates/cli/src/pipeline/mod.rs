//! `manabi pipeline`: the life of a model in one command. One recipe
//! (`configs/pipeline/life.toml`, compiled in) drives pre-training → SFT → reward model
//! → DPO, each stage a recipe of its own run in `OUT/<stage>` from the run folder of the
//! stage before; then every stage's model is evaluated on the same held-out data, sampled
//! on the same prompts, the final model exported, and `report.md`, `report.json` and
//! `report.html` written.
//!
//! A stage that finished writes `OUT/<stage>/summary.json` last (atomically), with the
//! SHA-256 of its inputs (recipe after overrides, data files, parent weights) and of its
//! weights. Running again skips a stage whose summary records the same inputs, resumes a
//! stage that has checkpoints but no summary (bitwise, so a run killed at any moment
//! finishes with the same numbers), and reruns a stage whose inputs changed, and every
//! stage after it. `--from STAGE` reruns from that stage.

mod recipe;
mod report;

use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::Args;
use manabi_model::DeviceChoice;
use serde::{Deserialize, Serialize};

pub use recipe::{LifeRecipe, STAGES};

/// The data compiled into the binary, written to `OUT/data` (`{data}` in the recipe).
const EMBEDDED: [(&str, &str); 7] = [
    (
        "world-en.txt",
        include_str!("../../../../datasets/sft/world-en.txt"),
    ),
    (
        "world-ja.txt",
        include_str!("../../../../datasets/sft/world-ja.txt"),
    ),
    (
        "sft-mixed-en.train.jsonl",
        include_str!("../../../../datasets/pref/sft-mixed-en.train.jsonl"),
    ),
    (
        "pref-en.train.jsonl",
        include_str!("../../../../datasets/pref/pref-en.train.jsonl"),
    ),
    (
        "pref-ja.train.jsonl",
        include_str!("../../../../datasets/pref/pref-ja.train.jsonl"),
    ),
    (
        "pref-en.val.jsonl",
        include_str!("../../../../datasets/pref/pref-en.val.jsonl"),
    ),
    (
        "pref-ja.val.jsonl",
        include_str!("../../../../datasets/pref/pref-ja.val.jsonl"),
    ),
];

#[derive(Debug, Args)]
pub struct PipelineArgs {
    /// The pipeline recipe (default: configs/pipeline/life.toml, compiled in).
    #[arg(long)]
    pub recipe: Option<PathBuf>,
    /// Run folder for everything the pipeline writes (default: the recipe's
    /// `pipeline.out`, runs/pipeline).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Your own pre-training corpus (files or folders) instead of the compiled-in text.
    #[arg(long = "input", num_args = 1..)]
    pub inputs: Vec<PathBuf>,
    /// Rerun from this stage on (pretrain, sft, reward, dpo, eval), even when its
    /// summary is complete.
    #[arg(long)]
    pub from: Option<String>,
    /// The seed of every stage (`run.seed` of each recipe).
    #[arg(long)]
    pub seed: Option<u64>,
    /// Override a value of a stage's recipe, STAGE.SECTION.KEY=VALUE, e.g.
    /// --set pretrain.train.steps=50 --set dpo.dpo.beta=0.2.
    #[arg(long = "set")]
    pub overrides: Vec<String>,
}

/// What a finished stage records in `OUT/<stage>/summary.json`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct StageSummary {
    /// `pretrain`, `sft`, `reward` or `dpo`.
    pub stage: String,
    /// The stage's own metric, e.g. `validation loss (nats/token)`.
    pub metric: String,
    /// Whether lower is better.
    pub lower_is_better: bool,
    /// Before training (the starting model) …
    pub before: f64,
    /// … and after.
    pub after: f64,
    /// Optimizer steps.
    pub steps: usize,
    /// Training examples (pairs, or pre-training tokens for `pretrain`).
    pub data_size: usize,
    /// What `data_size` counts.
    pub data_unit: String,
    /// Wall time of the training loop in this process, seconds (0 when resumed finished).
    pub seconds: f64,
    /// Training throughput.
    pub tokens_per_s: f64,
    /// Parameters, and those that trained.
    pub params: usize,
    pub trainable_params: usize,
    /// The checkpoint the next stage starts from.
    pub checkpoint: PathBuf,
    /// SHA-256 of the inputs and of the weights written.
    pub receipt: Receipt,
}

/// The SHA-256 chain of one stage: its inputs and its output weights.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
pub struct Receipt {
    /// `recipe` (the stage recipe with every override applied, as text), each data file
    /// by path, and `parent` (the weights it started from).
    pub inputs: std::collections::BTreeMap<String, String>,
    /// The weights it wrote (`model.bpk` of its last checkpoint).
    pub output: String,
}

/// SHA-256 of a file, hex.
fn sha256_file(path: &Path) -> anyhow::Result<String> {
    use sha2::{Digest, Sha256};
    let mut f = std::fs::File::open(path).with_context(|| format!("{}", path.display()))?;
    let mut h = Sha256::new();
    std::io::copy(&mut f, &mut h).with_context(|| format!("{}", path.display()))?;
    Ok(format!("{:x}", h.finalize()))
}

/// SHA-256 of a model's weights: every parameter's values (little-endian f32, in the
/// module's order), not the file, whose parameter ids differ from run to run.
pub(crate) fn weights_sha256(dir: &Path, device: DeviceChoice) -> anyhow::Result<String> {
    use burn::module::{Module, ModuleVisitor, Param};
    use burn::prelude::Tensor;
    use manabi_finetune::Model;
    use sha2::{Digest, Sha256};
    struct Hash(Sha256);
    impl ModuleVisitor for Hash {
        fn visit_float<const D: usize>(&mut self, p: &Param<Tensor<D>>) {
            let data = p.val().into_data();
            for d in data.shape().iter() {
                self.0.update((*d as u64).to_le_bytes());
            }
            self.0.update(data.as_bytes());
        }
    }
    let mut h = Hash(Sha256::new());
    match manabi_finetune::open(dir, &device.resolve()?)?.model {
        Model::Decoder(m) => m.visit(&mut h),
        Model::Classifier(m) => m.visit(&mut h),
        Model::BertMaskedLm(m) => m.visit(&mut h),
        Model::BertEncoder(m) => m.visit(&mut h),
        Model::BertClassifier(m) => m.visit(&mut h),
        Model::BertTagger(m) => m.visit(&mut h),
        Model::T5(m) => m.visit(&mut h),
    }
    Ok(format!("{:x}", h.0.finalize()))
}

fn sha256_text(text: &str) -> String {
    use sha2::{Digest, Sha256};
    format!("{:x}", Sha256::digest(text.as_bytes()))
}

pub fn run(args: PipelineArgs, device: DeviceChoice) -> anyhow::Result<()> {
    let started = std::time::Instant::now();
    let recipe = LifeRecipe::load(args.recipe.as_deref())?;
    let out = args
        .out
        .clone()
        .unwrap_or_else(|| recipe.pipeline.out.clone());
    if let Some(from) = &args.from
        && !STAGES.contains(&from.as_str())
        && from != "eval"
    {
        anyhow::bail!(
            "--from {from}: no such stage (the stages: {}, eval)",
            STAGES.join(", ")
        );
    }
    let per_stage = recipe::split_overrides(&args.overrides)?;
    std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
    // One pipeline at a time in one folder (each stage also locks its own run folder).
    let _lock = manabi_objectives::lock::RunLock::acquire(&out)?;
    let data = out.join("data");
    for (name, text) in EMBEDDED {
        let path = data.join(name);
        if std::fs::read_to_string(&path).ok().as_deref() != Some(text) {
            manabi_tokenize::write_atomic(&path, text.as_bytes())?;
        }
    }
    println!(
        "manabi pipeline — device {}, {} → {}",
        device.concrete(),
        recipe
            .stages()
            .map(|(n, _)| n)
            .collect::<Vec<_>>()
            .join(" → "),
        out.display()
    );
    let fill = |s: &str| recipe::fill(s, &data, &out);
    let mut summaries: Vec<StageSummary> = Vec::new();
    let mut rerun = false;
    let total = recipe.stages().count() + 1;
    for (i, (name, stage)) in recipe.stages().enumerate() {
        rerun |= args.from.as_deref() == Some(name);
        let mut sets: Vec<String> = stage.set.iter().map(|s| fill(s)).collect();
        if name == "pretrain" && !args.inputs.is_empty() {
            let quoted: Vec<String> = args
                .inputs
                .iter()
                .map(|p| format!("{:?}", p.display().to_string()))
                .collect();
            sets.push(format!("data.inputs=[{}]", quoted.join(", ")));
        }
        let parent = match recipe.parent_of(name, stage) {
            Some(p) => {
                let s = summaries.iter().find(|s| s.stage == p).with_context(|| {
                    format!("stage `{name}`: `from = \"{p}\"` names no stage run before it")
                })?;
                sets.push(format!(
                    "model.path={:?}",
                    s.checkpoint.display().to_string()
                ));
                Some(s.checkpoint.clone())
            }
            None => None,
        };
        let dir = out.join(name);
        sets.push(format!("run.out={:?}", dir.display().to_string()));
        sets.push("train.eval_at_start=true".into());
        if let Some(seed) = args.seed {
            sets.push(format!("run.seed={seed}"));
        }
        sets.extend(per_stage.get(name).cloned().unwrap_or_default());
        let text = recipe::stage_text(&stage.recipe)?;
        let unfill = |x: &str| {
            x.replace(&data.display().to_string(), "{data}")
                .replace(&out.display().to_string(), "{out}")
        };
        let inputs = stage_inputs(name, &text, &sets, &unfill, parent.as_deref(), device)?;
        let summary_path = dir.join("summary.json");
        let previous: Option<StageSummary> = std::fs::read_to_string(&summary_path)
            .ok()
            .and_then(|t| serde_json::from_str(&t).ok());
        let summary = match previous {
            Some(p) if !rerun && p.receipt.inputs == inputs => {
                println!(
                    "[{}/{total}] {name}: complete, skipped ({} {} → {})",
                    i + 1,
                    p.metric,
                    p.show(p.before),
                    p.show(p.after)
                );
                p
            }
            previous => {
                if previous.is_some() || rerun {
                    // Changed inputs or --from: this stage and every later one start over.
                    rerun = true;
                    remove_run(&dir)?;
                }
                let s = stages::run(name, &text, &sets, inputs, device)
                    .with_context(|| format!("stage `{name}` ({})", stage.recipe))?;
                let json = serde_json::to_string_pretty(&s)?;
                manabi_tokenize::write_atomic(&summary_path, json.as_bytes())?;
                println!(
                    "[{}/{total}] {name}: {} {} → {} ({} steps, {:.1} s)",
                    i + 1,
                    s.metric,
                    s.show(s.before),
                    s.show(s.after),
                    s.steps,
                    s.seconds
                );
                s
            }
        };
        summaries.push(summary);
    }
    let settings = &recipe.pipeline;
    let eval = report::evaluate(&summaries, settings, &fill, &out, device)?;
    println!(
        "[{total}/{total}] evaluation: {} models on {} metrics, {} prompts",
        eval.models.len(),
        eval.metrics.len(),
        settings.prompts.len()
    );
    // The final decoder, exported in the Hugging Face layout (transformers loads it).
    if let Some(last) = summaries.iter().rev().find(|s| s.stage != "reward") {
        let dev = device.resolve()?;
        let (model, _) = manabi_finetune::load_decoder(&last.checkpoint, &dev)?;
        let hf = out.join("model-hf");
        let tok = last.checkpoint.join("tokenizer.json");
        manabi_model::export_hf(&manabi_finetune::load::merged(model), &hf, Some(&tok))?;
        println!("export: the {} model -> {}", last.stage, hf.display());
    }
    let written = report::write(&out, &summaries, &eval, device, started.elapsed())?;
    println!(
        "done in {:.1} s — report: {}",
        started.elapsed().as_secs_f64(),
        written.display()
    );
    Ok(())
}

/// A share as `83.0 %`, anything else (a loss, a perplexity) as `4.2100`.
pub(crate) fn show(x: f64, share: bool) -> String {
    if share {
        format!("{:.1} %", 100.0 * x)
    } else {
        format!("{x:.4}")
    }
}

impl StageSummary {
    /// `before` or `after`, shown as the metric is read (accuracies as shares).
    pub(crate) fn show(&self, x: f64) -> String {
        show(x, !self.lower_is_better)
    }
}

/// Moves a stage's run folder aside and deletes it, so a kill leaves either the old
/// folder or nothing (a `.del` leftover is swept on the next run).
fn remove_run(dir: &Path) -> anyhow::Result<()> {
    let aside = dir.with_extension("del");
    if aside.exists() {
        std::fs::remove_dir_all(&aside).with_context(|| format!("{}", aside.display()))?;
    }
    if dir.exists() {
        std::fs::rename(dir, &aside).with_context(|| format!("{}", dir.display()))?;
        std::fs::remove_dir_all(&aside).with_context(|| format!("{}", aside.display()))?;
    }
    Ok(())
}

/// The receipt's inputs of a stage: the recipe after overrides, every data file it
/// reads, and the parent's weights.
fn stage_inputs(
    name: &str,
    text: &str,
    sets: &[String],
    unfill: &dyn Fn(&str) -> String,
    parent: Option<&Path>,
    device: DeviceChoice,
) -> anyhow::Result<std::collections::BTreeMap<String, String>> {
    let mut inputs = std::collections::BTreeMap::new();
    // The overrides that name the run folder or the parent's path change with `--out`;
    // the parent's weights are hashed instead.
    let resolved: Vec<&String> = sets
        .iter()
        .filter(|s| !s.starts_with("run.out=") && !s.starts_with("model.path="))
        .collect();
    let recipe_text = format!(
        "{text}\n# --set\n{}",
        resolved
            .iter()
            .map(|s| unfill(s))
            .collect::<Vec<_>>()
            .join("\n")
    );
    inputs.insert("recipe".into(), sha256_text(&recipe_text));
    for file in stages::data_files(name, text, sets)? {
        let key = format!(
            "data:{}",
            file.file_name().unwrap_or_default().to_string_lossy()
        );
        let hash = if file.is_dir() {
            sha256_text(&file.display().to_string())
        } else {
            sha256_file(&file)?
        };
        inputs.insert(key, hash);
    }
    if let Some(p) = parent {
        inputs.insert("parent".into(), weights_sha256(p, device)?);
    }
    Ok(inputs)
}

mod stages;
