//! `manabi pipeline`: the life of a model in one command. One recipe
//! (`configs/pipeline/life.toml`, compiled in) drives pre-training → SFT → reward model
//! → DPO, each stage a recipe of its own run in `OUT/<stage>` from the run folder of the
//! stage before; then every stage's model is evaluated on the same held-out data, sampled
//! on the same prompts, the final model exported, and `report.md`, `report.json` and
//! `report.html` written.
//!
//! A stage that finished writes `OUT/<stage>/stage.json` last (atomically), with the
//! SHA-256 of its inputs (recipe after overrides, data files, parent weights) and of its
//! weights. Running again skips a stage whose summary records the same inputs, resumes a
//! stage that has checkpoints but no summary (bitwise, so a run killed at any moment
//! finishes with the same numbers), and reruns a stage whose inputs changed, and every
//! stage after it. `--from STAGE` reruns from that stage.

mod recipe;
mod report;
mod summary;

use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::Args;
use manabi_model::DeviceChoice;

pub use recipe::LifeRecipe;
pub use summary::StageSummary;
use summary::{sha256_path, sha256_text, weights_sha256};

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
    /// Clean Aozora Bunko markup in curation (header, 底本 footer, ruby, annotations):
    /// for `--input` of Aozora Bunko texts.
    #[arg(long)]
    pub aozora: bool,
    /// The seed of every stage (`run.seed` of each recipe).
    #[arg(long)]
    pub seed: Option<u64>,
    /// Override a value of a stage's recipe, STAGE.SECTION.KEY=VALUE, e.g.
    /// --set pretrain.train.steps=50 --set dpo.dpo.beta=0.2.
    #[arg(long = "set")]
    pub overrides: Vec<String>,
}

pub fn run(args: PipelineArgs, device: DeviceChoice) -> anyhow::Result<()> {
    let started = std::time::Instant::now();
    let mut recipe = LifeRecipe::load(args.recipe.as_deref())?;
    if args.aozora {
        let Some(c) = &mut recipe.curate else {
            anyhow::bail!("--aozora: the recipe has no [curate] stage to clean the markup in");
        };
        c.rules.insert("aozora".into(), toml::Value::Boolean(true));
    }
    let out = args
        .out
        .clone()
        .unwrap_or_else(|| recipe.pipeline.out.clone());
    let names: Vec<&str> = recipe
        .curate
        .as_ref()
        .map(|_| "curate")
        .into_iter()
        .chain(recipe.stages().map(|(n, _)| n))
        .chain(["eval"])
        .collect();
    if let Some(from) = &args.from
        && !names.contains(&from.as_str())
    {
        anyhow::bail!(
            "--from {from}: not a stage of this recipe (its stages: {})",
            names.join(", ")
        );
    }
    let per_stage = recipe::split_overrides(&args.overrides)?;
    std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
    // One pipeline at a time in one folder (each stage also locks its own run folder).
    let _lock = manabi_objectives::lock::RunLock::acquire(&out)?;
    // Stage folders a killed run was deleting (`remove_run`) go first.
    for e in std::fs::read_dir(&out)?.flatten() {
        if e.path().extension().is_some_and(|x| x == "del") {
            std::fs::remove_dir_all(e.path()).with_context(|| format!("{}", e.path().display()))?;
        }
    }
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
            .curate
            .as_ref()
            .map(|_| "curate")
            .into_iter()
            .chain(recipe.stages().map(|(n, _)| n))
            .collect::<Vec<_>>()
            .join(" → "),
        out.display()
    );
    let fill = |s: &str| recipe::fill(s, &data, &out);
    let mut summaries: Vec<StageSummary> = Vec::new();
    let mut rerun = false;
    let total = recipe.stages().count() + usize::from(recipe.curate.is_some()) + 1;
    let quote = |paths: &[PathBuf]| {
        let quoted: Vec<String> = paths
            .iter()
            .map(|p| format!("{:?}", p.display().to_string()))
            .collect();
        format!("data.inputs=[{}]", quoted.join(", "))
    };
    let unfill = |x: &str| {
        x.replace(&data.display().to_string(), "{data}")
            .replace(&out.display().to_string(), "{out}")
    };
    for (name, stage) in recipe.stages() {
        let mut sets: Vec<String> = stage.set.iter().map(|s| fill(s)).collect();
        if name == "pretrain" && !args.inputs.is_empty() {
            sets.push(quote(&args.inputs));
        }
        let dir = out.join(name);
        sets.push(format!("run.out={:?}", dir.display().to_string()));
        sets.push("train.eval_at_start=true".into());
        if let Some(seed) = args.seed {
            sets.push(format!("run.seed={seed}"));
        }
        sets.extend(per_stage.get(name).cloned().unwrap_or_default());
        if name == "pretrain"
            && let Some(c) = &recipe.curate
        {
            // Curation cleans the corpus these settings name; pre-training reads its
            // output instead (pushed last, so it wins).
            rerun |= args.from.as_deref() == Some("curate");
            let number = (summaries.len() + 1, total);
            let summary = curate_step(c, &stage.recipe, &sets, &out, &unfill, number, &mut rerun)?;
            sets.push(quote(std::slice::from_ref(&summary.checkpoint)));
            summaries.push(summary);
        }
        rerun |= args.from.as_deref() == Some(name);
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
        let text = recipe::stage_text(&stage.recipe)?;
        let inputs = stage_inputs(name, &text, &sets, &unfill, parent.as_deref(), device)?;
        let step = Step {
            name,
            number: (summaries.len() + 1, total),
            dir: &dir,
            inputs: &inputs,
        };
        let summary = step.run_or_skip(&mut rerun, || {
            stages::run(name, &text, &sets, inputs.clone(), device)
                .with_context(|| format!("stage `{name}` ({})", stage.recipe))
        })?;
        summaries.push(summary);
    }
    let mut own = recipe.pipeline.clone();
    if !args.inputs.is_empty() {
        // The user's corpus replaced the recipe's pre-training text, and so replaces it
        // in the perplexity row too: its curated text where curation ran, else the first
        // input file.
        let curated = summaries.iter().find(|s| s.stage == "curate");
        let text = match curated {
            Some(c) => Some(curated_text(&c.checkpoint, own.eval_text_bytes, &out)?),
            None => args.inputs.iter().find(|p| p.is_file()).cloned(),
        };
        if let Some(t) = text {
            own.eval_text = Some(t.display().to_string());
        }
    }
    let settings = &own;
    let eval = report::evaluate(&summaries, settings, &fill, &out, device)?;
    println!(
        "[{total}/{total}] evaluation: {} models on {} metrics, {} prompts",
        eval.models.len(),
        eval.metrics.len(),
        settings.prompts.len()
    );
    // The final decoder, exported in the Hugging Face layout (transformers loads it).
    if let Some(last) = summaries
        .iter()
        .rev()
        .find(|s| s.stage != "reward" && s.stage != "curate")
    {
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

/// The text of the curated corpus `jsonl` (its `text` fields, one document a line), at
/// least `bytes` of it (0 = all), written to `OUT/eval/curated-input.txt`.
fn curated_text(jsonl: &Path, bytes: usize, out: &Path) -> anyhow::Result<PathBuf> {
    use std::io::BufRead;
    let file = std::fs::File::open(jsonl).with_context(|| format!("{}", jsonl.display()))?;
    let mut text = String::new();
    for (i, line) in std::io::BufReader::new(file).lines().enumerate() {
        let line = line.with_context(|| format!("{}:{}", jsonl.display(), i + 1))?;
        let v: serde_json::Value = serde_json::from_str(&line)
            .with_context(|| format!("{}:{}", jsonl.display(), i + 1))?;
        if let Some(t) = v.get("text").and_then(serde_json::Value::as_str) {
            text.push_str(t);
            text.push('\n');
        }
        if bytes > 0 && text.len() >= bytes {
            break;
        }
    }
    let dir = out.join("eval");
    std::fs::create_dir_all(&dir).with_context(|| format!("{}", dir.display()))?;
    let path = dir.join("curated-input.txt");
    manabi_tokenize::write_atomic(&path, text.as_bytes())?;
    Ok(path)
}

/// Curation first: the pre-training corpus (`--input`, else the pre-training recipe's
/// `data.inputs` after `sets`) cleaned, deduplicated and filtered into `OUT/curate`.
fn curate_step(
    c: &recipe::CurateStage,
    pretrain_recipe: &str,
    sets: &[String],
    out: &Path,
    unfill: &dyn Fn(&str) -> String,
    number: (usize, usize),
    rerun: &mut bool,
) -> anyhow::Result<StageSummary> {
    let text = recipe::stage_text(pretrain_recipe)?;
    let corpus = stages::data_files("pretrain", &text, sets)?;
    let dir = out.join("curate");
    let mut inputs = std::collections::BTreeMap::new();
    inputs.insert("settings".into(), sha256_text(&c.describe()?));
    inputs.insert("manabi".into(), env!("CARGO_PKG_VERSION").into());
    for (i, f) in corpus.iter().enumerate() {
        inputs.insert(data_key(i, f, unfill), sha256_path(f)?);
    }
    let step = Step {
        name: "curate",
        number,
        dir: &dir,
        inputs: &inputs,
    };
    step.run_or_skip(rerun, || {
        stages::curate(c, &corpus, &dir, inputs.clone()).context("stage `curate`")
    })
}

/// The receipt's key of a stage's `i`-th data file: its place and its path as the
/// recipe names it (`{data}` and `{out}` put back), so two files of one name differ and
/// moving OUT changes nothing.
fn data_key(i: usize, path: &Path, unfill: &dyn Fn(&str) -> String) -> String {
    format!("data:{i}:{}", unfill(&path.display().to_string()))
}

/// One stage's place in the run: skipped when its summary records the same inputs (and
/// no earlier stage reran), else run in a fresh or resumed folder.
struct Step<'a> {
    name: &'a str,
    number: (usize, usize),
    dir: &'a Path,
    inputs: &'a std::collections::BTreeMap<String, String>,
}

impl Step<'_> {
    fn run_or_skip(
        &self,
        rerun: &mut bool,
        run: impl FnOnce() -> anyhow::Result<StageSummary>,
    ) -> anyhow::Result<StageSummary> {
        let (i, total) = self.number;
        let name = self.name;
        let summary_path = self.dir.join("stage.json");
        let inputs_path = self.dir.join("inputs.json");
        let previous: Option<StageSummary> = std::fs::read_to_string(&summary_path)
            .ok()
            .and_then(|t| serde_json::from_str(&t).ok());
        if let Some(mut p) = previous.clone()
            && !*rerun
            && &p.receipt.inputs == self.inputs
        {
            println!(
                "[{i}/{total}] {name}: complete, skipped ({} {} → {})",
                p.metric,
                p.show(p.before),
                p.show(p.after)
            );
            // Saved relative to the stage folder, so OUT can be moved or copied.
            p.checkpoint = self.dir.join(&p.checkpoint);
            return Ok(p);
        }
        // A stage started with the same inputs and killed resumes; anything else — a
        // summary of other inputs, --from, an earlier stage rerun, a folder started with
        // other inputs — starts over, and so does every stage after it.
        let started: Option<std::collections::BTreeMap<String, String>> =
            std::fs::read_to_string(&inputs_path)
                .ok()
                .and_then(|t| serde_json::from_str(&t).ok());
        if previous.is_some() || *rerun || started.as_ref() != Some(self.inputs) {
            *rerun |= previous.is_some();
            remove_run(self.dir)?;
        }
        std::fs::create_dir_all(self.dir).with_context(|| format!("{}", self.dir.display()))?;
        manabi_tokenize::write_atomic(
            &inputs_path,
            serde_json::to_string_pretty(self.inputs)?.as_bytes(),
        )?;
        let s = run()?;
        let mut saved = s.clone();
        if let Ok(rel) = s.checkpoint.strip_prefix(self.dir) {
            saved.checkpoint = rel.to_path_buf();
        }
        let json = serde_json::to_string_pretty(&saved)?;
        manabi_tokenize::write_atomic(&summary_path, json.as_bytes())?;
        println!(
            "[{i}/{total}] {name}: {} {} → {} ({} steps, {:.1} s)",
            s.metric,
            s.show(s.before),
            s.show(s.after),
            s.steps,
            s.seconds
        );
        Ok(s)
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
    // Another manabi may train differently: a new version reruns the stage.
    inputs.insert("manabi".into(), env!("CARGO_PKG_VERSION").into());
    for (i, file) in stages::data_files(name, text, sets)?.iter().enumerate() {
        inputs.insert(data_key(i, file, unfill), sha256_path(file)?);
    }
    if let Some(p) = parent {
        inputs.insert("parent".into(), weights_sha256(p, device)?);
    }
    Ok(inputs)
}

mod stages;
