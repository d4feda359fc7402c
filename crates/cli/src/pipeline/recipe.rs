//! The pipeline recipe (`configs/pipeline/life.toml`): the report's settings and one
//! section per stage naming the stage's own recipe, its overrides and the stage it
//! starts from.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::Deserialize;

/// The stages, in the order they run.
pub const STAGES: [&str; 4] = ["pretrain", "sft", "reward", "dpo"];

/// The default pipeline recipe and the stage recipes it names, compiled in: used when
/// the file is not in the current folder.
const COMPILED: [(&str, &str); 5] = [
    (
        "configs/pipeline/life.toml",
        include_str!("../../../../configs/pipeline/life.toml"),
    ),
    (
        "configs/pretrain/world-base.toml",
        include_str!("../../../../configs/pretrain/world-base.toml"),
    ),
    (
        "configs/sft/pref-mixed.toml",
        include_str!("../../../../configs/sft/pref-mixed.toml"),
    ),
    (
        "configs/align/reward.toml",
        include_str!("../../../../configs/align/reward.toml"),
    ),
    (
        "configs/align/dpo.toml",
        include_str!("../../../../configs/align/dpo.toml"),
    ),
];

/// `[pipeline]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// Run folder.
    #[serde(default = "default_out")]
    pub out: PathBuf,
    /// Prompts every stage's model completes (greedy) for the report.
    #[serde(default)]
    pub prompts: Vec<String>,
    /// Tokens generated per prompt.
    #[serde(default = "default_new_tokens")]
    pub max_new_tokens: usize,
    /// A text whose perplexity every model gets (the alignment tax).
    #[serde(default)]
    pub eval_text: Option<String>,
    /// Only its first this many bytes (0 = all).
    #[serde(default)]
    pub eval_text_bytes: usize,
    /// Held-out preference pairs: how often each model prefers the chosen completion.
    #[serde(default)]
    pub eval_pairs: Option<String>,
}

fn default_out() -> PathBuf {
    PathBuf::from("runs/pipeline")
}

fn default_new_tokens() -> usize {
    24
}

/// One stage's section.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Stage {
    /// The stage's own recipe (e.g. `configs/align/dpo.toml`).
    pub recipe: String,
    /// The stage whose newest checkpoint it starts from (default: the stage before).
    #[serde(default)]
    pub from: Option<String>,
    /// Overrides of the stage's recipe, `SECTION.KEY=VALUE`, with `{data}` and `{out}`.
    #[serde(default)]
    pub set: Vec<String>,
}

/// `[curate]`: clean, deduplicate and filter the pre-training corpus first
/// (`manabi data curate`, `docs/guide/curate.md`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CurateStage {
    /// Where a plain-text document ends: `line`, `paragraph` (default) or `file`.
    #[serde(default = "default_unit")]
    pub unit: String,
    /// The `[curate]` settings of `crates/curate/curate.toml` (rules, thresholds,
    /// `disable`, `aozora`, block lists), inline; default: all rules at their defaults.
    #[serde(default)]
    pub rules: toml::Table,
}

fn default_unit() -> String {
    "paragraph".into()
}

impl CurateStage {
    /// The curation settings, checked (errors name the key under `[curate.rules]`).
    pub fn config(&self) -> anyhow::Result<manabi_curate::CurateConfig> {
        let mut doc = toml::Table::new();
        doc.insert("curate".into(), toml::Value::Table(self.rules.clone()));
        let text = toml::to_string(&doc)?;
        manabi_curate::CurateConfig::from_toml_str(&text)
            .map_err(|e| anyhow::anyhow!("[curate.rules]: {e}"))
    }

    /// The document unit.
    pub fn unit(&self) -> anyhow::Result<manabi_curate::DocBoundary> {
        Ok(match self.unit.as_str() {
            "line" => manabi_curate::DocBoundary::Line,
            "paragraph" => manabi_curate::DocBoundary::Paragraph,
            "file" => manabi_curate::DocBoundary::File,
            other => anyhow::bail!("[curate] unit = \"{other}\": expected line, paragraph or file"),
        })
    }

    /// The settings as text (for the receipt).
    pub fn describe(&self) -> anyhow::Result<String> {
        Ok(format!(
            "unit = {:?}\n{}",
            self.unit,
            toml::to_string(&self.rules)?
        ))
    }
}

/// The whole pipeline recipe.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LifeRecipe {
    pub pipeline: Settings,
    #[serde(default)]
    pub curate: Option<CurateStage>,
    #[serde(default)]
    pub pretrain: Option<Stage>,
    #[serde(default)]
    pub sft: Option<Stage>,
    #[serde(default)]
    pub reward: Option<Stage>,
    #[serde(default)]
    pub dpo: Option<Stage>,
}

impl LifeRecipe {
    /// Reads `path`, or the compiled-in `configs/pipeline/life.toml`.
    pub fn load(path: Option<&Path>) -> anyhow::Result<Self> {
        let (name, text) = match path {
            Some(p) => (
                p.display().to_string(),
                std::fs::read_to_string(p).with_context(|| format!("{}", p.display()))?,
            ),
            None => (
                COMPILED[0].0.to_string(),
                stage_text(COMPILED[0].0)?.to_string(),
            ),
        };
        let text = text.strip_prefix('\u{feff}').unwrap_or(&text);
        let r: Self = toml::from_str(text).map_err(|e| {
            let line = e
                .span()
                .map(|s| format!(" (line {})", text[..s.start].lines().count().max(1)))
                .unwrap_or_default();
            anyhow::anyhow!("{name}: {}{line}", e.message())
        })?;
        if let Some(c) = &r.curate {
            c.config().map_err(|e| anyhow::anyhow!("{name}: {e}"))?;
            c.unit().map_err(|e| anyhow::anyhow!("{name}: {e}"))?;
            if r.pretrain.is_none() {
                anyhow::bail!(
                    "{name}: [curate] cleans the pre-training corpus: it needs [pretrain]"
                );
            }
        }
        if r.stages().next().is_none() {
            anyhow::bail!("{name}: no stage (give [pretrain], [sft], [reward] or [dpo])");
        }
        if r.pretrain.is_none() && r.stages().any(|(n, s)| r.parent_of(n, s).is_none()) {
            anyhow::bail!("{name}: without [pretrain], every stage needs a `from`");
        }
        for (n, s) in r.stages() {
            for set in &s.set {
                check_override(n, set).map_err(|e| anyhow::anyhow!("{name}: [{e}"))?;
            }
            if let Some(f) = &s.from {
                let before: Vec<&str> =
                    r.stages().map(|(m, _)| m).take_while(|m| *m != n).collect();
                if !before.contains(&f.as_str()) {
                    anyhow::bail!(
                        "{name}: [{n}] from = \"{f}\": not a stage run before it ({})",
                        before.join(", ")
                    );
                }
            }
        }
        Ok(r)
    }

    /// The stages the recipe has, in order.
    pub fn stages(&self) -> impl Iterator<Item = (&'static str, &Stage)> {
        STAGES
            .into_iter()
            .zip([&self.pretrain, &self.sft, &self.reward, &self.dpo])
            .filter_map(|(n, s)| s.as_ref().map(|s| (n, s)))
    }

    /// The stage `name` starts from: its `from`, else the stage before it (none for the
    /// first stage).
    pub fn parent_of(&self, name: &str, stage: &Stage) -> Option<String> {
        if let Some(f) = &stage.from {
            return Some(f.clone());
        }
        let names: Vec<&str> = self.stages().map(|(n, _)| n).collect();
        let i = names.iter().position(|n| *n == name)?;
        (i > 0 && name != "pretrain").then(|| names[i - 1].to_string())
    }
}

/// The text of a stage recipe: the file when it exists, else the compiled-in copy.
pub fn stage_text(path: &str) -> anyhow::Result<String> {
    if Path::new(path).is_file() {
        return std::fs::read_to_string(path).with_context(|| path.to_string());
    }
    COMPILED
        .iter()
        .find(|(p, _)| *p == path)
        .map(|(_, t)| t.to_string())
        .with_context(|| format!("{path}: no such recipe (and none compiled in by that name)"))
}

/// `s` with `{data}` and `{out}` filled in.
pub fn fill(s: &str, data: &Path, out: &Path) -> String {
    s.replace("{data}", &data.display().to_string())
        .replace("{out}", &out.display().to_string())
}

/// Refuses an override the pipeline owns: a stage's run folder (`OUT/<stage>`) and the
/// model it starts from (its `from` stage's checkpoint).
pub fn check_override(stage: &str, set: &str) -> anyhow::Result<()> {
    let key = set.split('=').next().unwrap_or("").trim();
    match key {
        "run.out" => {
            anyhow::bail!("{stage}: `{set}`: a stage runs in OUT/{stage}; choose OUT with --out")
        }
        "model.path" => anyhow::bail!(
            "{stage}: `{set}`: a stage starts from the checkpoint of the stage its `from` names"
        ),
        _ => Ok(()),
    }
}

/// `--set STAGE.SECTION.KEY=VALUE` split by stage.
pub fn split_overrides(sets: &[String]) -> anyhow::Result<BTreeMap<&'static str, Vec<String>>> {
    let mut out: BTreeMap<&'static str, Vec<String>> = BTreeMap::new();
    for s in sets {
        let stage = STAGES
            .into_iter()
            .find(|st| s.strip_prefix(st).is_some_and(|r| r.starts_with('.')));
        let Some(stage) = stage else {
            anyhow::bail!(
                "--set {s}: name the stage first, STAGE.SECTION.KEY=VALUE (stages: {}), \
                 e.g. --set pretrain.train.steps=50",
                STAGES.join(", ")
            );
        };
        let set = &s[stage.len() + 1..];
        check_override(stage, set).map_err(|e| anyhow::anyhow!("--set {e}"))?;
        out.entry(stage).or_default().push(set.to_string());
    }
    Ok(out)
}
