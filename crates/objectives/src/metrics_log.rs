//! `RUN/metrics.jsonl` as files: dropping the lines a resumed run rewrites, and reading
//! the loss curves back for `loss.svg`.

use std::path::Path;

use crate::error::{Result, TrainError};

/// Keeps the metrics lines of steps ≤ `step` (a resumed run rewrites the rest).
pub(crate) fn truncate_metrics(path: &Path, step: usize) -> Result<()> {
    let Ok(text) = std::fs::read_to_string(path) else {
        return Ok(());
    };
    let kept: Vec<&str> = text
        .lines()
        .filter(|l| {
            serde_json::from_str::<serde_json::Value>(l)
                .ok()
                .and_then(|v| v["step"].as_u64())
                .is_some_and(|s| s as usize <= step)
        })
        .collect();
    let mut body = kept.join("\n");
    if !body.is_empty() {
        body.push('\n');
    }
    std::fs::write(path, body).map_err(|e| TrainError::io(path, e))
}

pub type Curve = Vec<(usize, f64)>;

pub(crate) fn read_curves(path: &Path) -> Result<(Curve, Curve)> {
    let text = std::fs::read_to_string(path).map_err(|e| TrainError::io(path, e))?;
    let (mut train, mut val) = (Vec::new(), Vec::new());
    for v in text
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
    {
        let Some(step) = v["step"].as_u64() else {
            continue;
        };
        if let Some(l) = v["loss"].as_f64() {
            train.push((step as usize, l));
        }
        if let Some(l) = v["val_loss"].as_f64() {
            val.push((step as usize, l));
        }
    }
    Ok((train, val))
}

/// The values of `key` in a run's metrics file, by step (the last value of a step wins).
pub fn read_series(path: &Path, key: &str) -> Result<Curve> {
    let text = std::fs::read_to_string(path).map_err(|e| TrainError::io(path, e))?;
    let mut by_step = std::collections::BTreeMap::new();
    for v in text
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
    {
        if let (Some(step), Some(x)) = (v["step"].as_u64(), v[key].as_f64()) {
            by_step.insert(step as usize, x);
        }
    }
    Ok(by_step.into_iter().collect())
}
