//! What a finished stage records (`OUT/<stage>/stage.json`): its metric before →
//! after, its size and time, and its receipt — the SHA-256 of its inputs and of what it
//! wrote — with the hashing that makes them.

use std::path::{Path, PathBuf};

use anyhow::Context;
use manabi_model::DeviceChoice;
use serde::{Deserialize, Serialize};

/// What a finished stage records in `OUT/<stage>/stage.json`.
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

/// SHA-256 of a file, hex (the checkpoints' own checksum).
pub fn sha256_file(path: &Path) -> anyhow::Result<String> {
    Ok(manabi_objectives::checkpoint::sha256_file(path)?)
}

/// SHA-256 of a model's weights: every parameter's values (little-endian f32, in the
/// module's order), not the file, whose parameter ids differ from run to run.
pub fn weights_sha256(dir: &Path, device: DeviceChoice) -> anyhow::Result<String> {
    use burn::module::{ModuleVisitor, Param};
    use burn::prelude::Tensor;
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
    manabi_finetune::open(dir, &device.resolve()?)?
        .model
        .visit(&mut h);
    Ok(format!("{:x}", h.0.finalize()))
}

/// SHA-256 of a file, or of a folder: every file under it (sorted, hidden ones
/// skipped, as the corpus readers walk it) by its relative path and its hash.
pub fn sha256_path(path: &Path) -> anyhow::Result<String> {
    if !path.is_dir() {
        return sha256_file(path);
    }
    fn walk(dir: &Path, base: &Path, out: &mut String) -> anyhow::Result<()> {
        let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
            .with_context(|| format!("{}", dir.display()))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| {
                !p.file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with('.'))
            })
            .collect();
        entries.sort();
        for p in entries {
            if p.is_dir() {
                walk(&p, base, out)?;
            } else {
                let rel = p.strip_prefix(base).unwrap_or(&p).display().to_string();
                out.push_str(&format!("{rel} {}\n", sha256_file(&p)?));
            }
        }
        Ok(())
    }
    let mut listing = String::new();
    walk(path, path, &mut listing)?;
    Ok(sha256_text(&listing))
}

pub fn sha256_text(text: &str) -> String {
    use sha2::{Digest, Sha256};
    format!("{:x}", Sha256::digest(text.as_bytes()))
}

/// A share as `83.0 %`, anything else (a loss, a perplexity) as `4.2100`.
pub fn show(x: f64, share: bool) -> String {
    if share {
        format!("{:.1} %", 100.0 * x)
    } else if x.fract() == 0.0 && x.abs() >= 100.0 {
        format!("{x:.0}")
    } else {
        format!("{x:.4}")
    }
}

impl StageSummary {
    /// `before` or `after`, shown as the metric is read (accuracies as shares).
    pub fn show(&self, x: f64) -> String {
        show(x, !self.lower_is_better)
    }
}
