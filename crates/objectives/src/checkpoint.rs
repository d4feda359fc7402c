//! Training checkpoints: a folder `step-NNNNNNN` holding the model (manabi layout: burnpack),
//! the optimizer state (burnpack), `state.json` (step, seed, counters, SHA-256 of every
//! file) and the resolved `config.toml`. It is written as `.step-NNNNNNN.tmp`, synced,
//! and renamed, so a crash mid-save leaves the previous checkpoint as the latest
//! complete one. Loading verifies every checksum.

use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};

use burn::optim::ModuleOptimizer;
use burn::prelude::*;

use crate::model::TrainModel;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::{Result, TrainError};

/// `format` of `state.json`.
pub const STATE_FORMAT: &str = "manabi-train-state/1";
const FILES: [&str; 3] = ["model.toml", "model.bpk", "optimizer.bpk"];

/// Everything about the run that is not a tensor.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainState {
    /// Always [`STATE_FORMAT`].
    pub format: String,
    /// Optimizer steps done (the data position: batches are a function of the step).
    pub step: usize,
    /// The run's seed.
    pub seed: u64,
    /// Tokens trained on.
    pub tokens_seen: u64,
    /// Best validation loss so far and its step.
    pub best: Option<(f64, usize)>,
    /// Running mean of the training loss (spike guard).
    pub loss_mean: Option<f64>,
    /// SHA-256 of each file of the checkpoint.
    pub sha256: BTreeMap<String, String>,
}

impl TrainState {
    /// A fresh state.
    pub fn new(seed: u64) -> Self {
        Self {
            format: STATE_FORMAT.into(),
            step: 0,
            seed,
            tokens_seen: 0,
            best: None,
            loss_mean: None,
            sha256: BTreeMap::new(),
        }
    }
}

/// SHA-256 of a file, lower-case hex (read in chunks, never whole).
pub fn sha256_file(path: &Path) -> Result<String> {
    let mut f = File::open(path).map_err(|e| TrainError::io(path, e))?;
    let mut h = Sha256::new();
    std::io::copy(&mut f, &mut h).map_err(|e| TrainError::io(path, e))?;
    Ok(format!("{:x}", h.finalize()))
}

fn sync(path: &Path) -> Result<()> {
    File::open(path)
        .and_then(|f| f.sync_all())
        .map_err(|e| TrainError::io(path, e))
}

/// Name of the checkpoint of `step`.
pub fn name(step: usize) -> String {
    format!("step-{step:07}")
}

/// What a checkpoint holds besides the model's weights and the optimizer state.
#[derive(Debug, Clone, Copy)]
pub struct Extras<'a> {
    /// The resolved recipe, written as `config.toml`.
    pub config_toml: &'a str,
    /// A `tokenizer.json` to copy in, so the folder works as `--model` on its own.
    pub tokenizer: Option<&'a Path>,
    /// Files that say, with `model.toml`, how to rebuild the model (`peft.toml`, `head.toml`):
    /// `(name, text)`, checksummed like the rest.
    pub spec_files: &'a [(String, String)],
    /// The task's own state ([`crate::Task::save_state`]), written as
    /// [`crate::tasks::TASK_STATE_FILE`].
    pub task_state: Option<&'a str>,
}

/// Writes a checkpoint under `root` and returns its folder.
pub fn save<M: TrainModel>(
    root: &Path,
    model: &M,
    optim: &ModuleOptimizer,
    state: &TrainState,
    extras: Extras<'_>,
) -> Result<PathBuf> {
    let (config_toml, tokenizer) = (extras.config_toml, extras.tokenizer);
    let final_dir = root.join(name(state.step));
    let tmp = root.join(format!(".{}.tmp", name(state.step)));
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp).map_err(|e| TrainError::io(&tmp, e))?;
    }
    std::fs::create_dir_all(&tmp).map_err(|e| TrainError::io(&tmp, e))?;
    save_model(model, &tmp)?;
    // Fault injection for the crash-during-save test: a slow save is easy to interrupt.
    fault_pause("MANABI_FAULT_SLOW_SAVE_MS");
    let opt_path = tmp.join("optimizer.bpk");
    optim
        .save(&opt_path)
        .map_err(|e| TrainError::io(&opt_path, e))?;
    std::fs::write(tmp.join("config.toml"), config_toml)
        .map_err(|e| TrainError::io(tmp.join("config.toml"), e))?;
    let mut state = state.clone();
    // The tokenizer travels with the model, so the folder works as `--model` on its own.
    let mut files: Vec<&str> = FILES.to_vec();
    for (name, text) in extras.spec_files {
        std::fs::write(tmp.join(name), text).map_err(|e| TrainError::io(tmp.join(name), e))?;
        files.push(name);
    }
    if let Some(text) = extras.task_state {
        let name = crate::tasks::TASK_STATE_FILE;
        std::fs::write(tmp.join(name), text).map_err(|e| TrainError::io(tmp.join(name), e))?;
        files.push(name);
    }
    if let Some(tok) = tokenizer {
        let dest = tmp.join("tokenizer.json");
        let (bytes, sidecar) = manabi_tokenize::tokenizer_files(tok)?;
        std::fs::write(&dest, bytes).map_err(|e| TrainError::io(&dest, e))?;
        files.push("tokenizer.json");
        // Word splitting before the pipeline (a --morph-dict tokenizer, a
        // BertJapaneseTokenizer's MeCab step) travels with it.
        if let Some(bytes) = sidecar {
            let name = manabi_tokenize::sidecar::SIDECAR_FILE;
            std::fs::write(tmp.join(name), bytes).map_err(|e| TrainError::io(tmp.join(name), e))?;
            files.push(name);
        }
    }
    for f in &files {
        state
            .sha256
            .insert(f.to_string(), sha256_file(&tmp.join(f))?);
    }
    let json = serde_json::to_vec_pretty(&state).map_err(|e| TrainError::io(&tmp, e))?;
    std::fs::write(tmp.join("state.json"), json)
        .map_err(|e| TrainError::io(tmp.join("state.json"), e))?;
    for f in files.iter().chain(&["config.toml", "state.json"]) {
        sync(&tmp.join(f))?;
    }
    sync(&tmp)?;
    // An older checkpoint of the same step (a run restarted without --resume) moves out of
    // the way first, so no kill leaves a half-deleted folder under a listed name.
    let old = final_dir
        .exists()
        .then(|| discard(root, &final_dir))
        .transpose()?;
    std::fs::rename(&tmp, &final_dir).map_err(|e| TrainError::io(&final_dir, e))?;
    sync(root)?;
    if let Some(old) = old {
        std::fs::remove_dir_all(&old).map_err(|e| TrainError::io(&old, e))?;
    }
    Ok(final_dir)
}

/// Renames the checkpoint `dir` to `.NAME.del` (no longer listed; swept by [`sweep`]) and
/// returns the new path. The rename is the atomic step of deleting a checkpoint.
fn discard(root: &Path, dir: &Path) -> Result<PathBuf> {
    let name = dir.file_name().map(|n| n.to_string_lossy().into_owned());
    let gone = root.join(format!(".{}.del", name.unwrap_or_default()));
    if gone.exists() {
        std::fs::remove_dir_all(&gone).map_err(|e| TrainError::io(&gone, e))?;
    }
    std::fs::rename(dir, &gone).map_err(|e| TrainError::io(dir, e))?;
    sync(root)?;
    Ok(gone)
}

/// Removes what a killed run can leave under `root`: half-written saves (`.step-N.tmp`)
/// and half-deleted checkpoints (`.step-N.del`). Returns how many were removed.
pub fn sweep(root: &Path) -> Result<usize> {
    let Ok(entries) = std::fs::read_dir(root) else {
        return Ok(0);
    };
    let mut removed = 0;
    for e in entries.filter_map(|e| e.ok()) {
        let name = e.file_name().to_string_lossy().into_owned();
        let leftover =
            name.starts_with(".step-") && (name.ends_with(".tmp") || name.ends_with(".del"));
        if leftover {
            let path = e.path();
            std::fs::remove_dir_all(&path).map_err(|e| TrainError::io(&path, e))?;
            removed += 1;
        }
    }
    Ok(removed)
}

/// Complete checkpoints under `root`, oldest first ([`manabi_model::open::checkpoints`]).
pub fn list(root: &Path) -> Vec<(usize, PathBuf)> {
    manabi_model::open::checkpoints(root)
}

/// The newest complete checkpoint.
pub fn latest(root: &Path) -> Option<PathBuf> {
    list(root).pop().map(|(_, p)| p)
}

/// Reads and verifies `state.json` of `dir`.
pub fn read_state(dir: &Path) -> Result<TrainState> {
    let corrupt = |message: String| TrainError::Checkpoint {
        path: dir.to_path_buf(),
        message,
    };
    let path = dir.join("state.json");
    let text = std::fs::read_to_string(&path).map_err(|e| corrupt(format!("state.json: {e}")))?;
    let state: TrainState =
        serde_json::from_str(&text).map_err(|e| corrupt(format!("state.json: {e}")))?;
    if state.format != STATE_FORMAT {
        return Err(corrupt(format!(
            "state.json format {:?}, expected {STATE_FORMAT:?}",
            state.format
        )));
    }
    if let Some(f) = FILES.iter().find(|f| !state.sha256.contains_key(**f)) {
        return Err(corrupt(format!("state.json lists no checksum for {f}")));
    }
    for (f, want) in &state.sha256 {
        let got = sha256_file(&dir.join(f)).map_err(|e| corrupt(e.to_string()))?;
        if &got != want {
            return Err(corrupt(format!(
                "{f} does not match its checksum (truncated or modified)"
            )));
        }
    }
    Ok(state)
}

/// Writes `model.toml` and `model.bpk` ([`manabi_model::checkpoint::save_module`]); the
/// layout [`manabi_model::load_native`] reads for decoders.
pub fn save_model<M: TrainModel>(model: &M, dir: &Path) -> Result<()> {
    Ok(manabi_model::checkpoint::save_module(
        model,
        model.model_config(),
        dir,
    )?)
}

/// Reads a model written by [`save_model`].
pub fn load_model<M: TrainModel>(dir: &Path, device: &Device) -> Result<M> {
    Ok(manabi_model::checkpoint::load_module(
        dir,
        device,
        |cfg, device| Ok(M::build(cfg, device)),
    )?)
}

/// Loads weights and optimizer state from `dir`, whose `state` [`read_state`] verified,
/// into `model`, which the caller built with the same structure (base, head, adapters).
/// The optimizer is built by `build` for the loaded model, whose parameter ids are the
/// saved ones.
pub fn load_into<M: TrainModel>(
    dir: &Path,
    state: TrainState,
    mut model: M,
    build: impl FnOnce(&M) -> ModuleOptimizer,
) -> Result<(M, ModuleOptimizer, TrainState)> {
    manabi_model::checkpoint::load_weights(&mut model, &dir.join("model.bpk"))?;
    let optim = build(&model);
    let path = dir.join("optimizer.bpk");
    let optim = optim.load(&path).map_err(|e| TrainError::Checkpoint {
        path: path.clone(),
        message: e.to_string(),
    })?;
    Ok((model, optim, state))
}

/// Deletes checkpoints beyond the newest `keep_last`, sparing the best one. Each goes in
/// one atomic rename (it is then no longer listed) before its files are removed, so a kill
/// at any instant leaves every listed checkpoint complete.
pub fn retain(root: &Path, keep_last: usize, best_step: Option<usize>) -> Result<()> {
    let all = list(root);
    let cut = all.len().saturating_sub(keep_last.max(1));
    for (step, path) in &all[..cut] {
        if Some(*step) != best_step {
            let gone = discard(root, path)?;
            // Fault injection for the kill-during-cleanup test.
            fault_pause("MANABI_FAULT_SLOW_DELETE_MS");
            std::fs::remove_dir_all(&gone).map_err(|e| TrainError::io(&gone, e))?;
        }
    }
    Ok(())
}

/// Sleeps for the milliseconds in the environment variable `var`, if set: fault injection
/// that makes a save or a cleanup slow enough for the kill -9 tests to land inside it.
fn fault_pause(var: &str) {
    if let Some(ms) = std::env::var(var).ok().and_then(|v| v.parse::<u64>().ok()) {
        std::thread::sleep(std::time::Duration::from_millis(ms));
    }
}

/// Where `--resume` continues from.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Resume {
    /// Start from step 0 (the run folder's metrics are rewritten).
    #[default]
    No,
    /// The newest checkpoint that verifies; from the beginning when there is none yet.
    Latest,
    /// This checkpoint folder.
    From(PathBuf),
}

impl From<bool> for Resume {
    fn from(resume: bool) -> Self {
        if resume { Self::Latest } else { Self::No }
    }
}

impl From<Option<PathBuf>> for Resume {
    /// `None` = the newest checkpoint, `Some(path)` = that one.
    fn from(path: Option<PathBuf>) -> Self {
        path.map_or(Self::Latest, Self::From)
    }
}

/// The newest checkpoint under `root` whose files verify, with its state. Checkpoints that
/// fail verification are skipped with a warning naming each; `Ok(None)` when there is no
/// checkpoint at all, an error when there are some and none verifies.
pub fn newest_verified(root: &Path) -> Result<Option<(PathBuf, TrainState)>> {
    let all = list(root);
    if all.is_empty() {
        return Ok(None);
    }
    let mut skipped: Vec<(PathBuf, String)> = Vec::new();
    for (_, dir) in all.into_iter().rev() {
        match read_state(&dir) {
            Ok(state) => {
                for (path, why) in &skipped {
                    tracing::warn!(
                        "skipping checkpoint {} ({why}); resuming from {}",
                        path.display(),
                        dir.display()
                    );
                }
                return Ok(Some((dir, state)));
            }
            Err(e) => skipped.push((dir, e.to_string())),
        }
    }
    let reasons: Vec<String> = skipped.into_iter().map(|(_, why)| why).collect();
    Err(TrainError::File {
        path: root.to_path_buf(),
        message: format!("no checkpoint verifies ({})", reasons.join("; ")),
    })
}
