//! Which `Linear`s a LoRA adapts, and with what rank and scale, decided as Python `peft`
//! (0.21) decides it — `check_target_module_exists` and `get_pattern_key` in
//! `peft/tuners/tuners_utils.py` and `peft/utils/other.py`:
//!
//! - a `target_modules` entry names a module in full, or the end of its name after a dot
//!   (`q_proj`, `self_attn.q_proj`);
//! - `layers_to_transform` keeps the targets matched by such an ending whose layer index
//!   is listed: the number after `<layers_pattern>.` (a regex; the first pattern that
//!   matches), or without a pattern the first number that follows two other components
//!   (`model.layers.1.…`, `transformer.h.1.…`). A target named in full is kept whatever
//!   its layer;
//! - `rank_pattern` / `alpha_pattern` keys are regexes matched against the whole name or
//!   its end after a dot (`re.match(r"(.*\.)?(KEY)$", name)`); the first key that matches,
//!   in the order given, sets the module's rank or α, otherwise `r` / `lora_alpha` do.
//!
//! Regexes run on `regex-lite`: Python's syntax less lookaround and backreferences (a key
//! using them is refused by name). Fused modules (GPT-2's `c_attn`) match by their HF name,
//! so every part of one gets the same rank and scale.

use burn::nn::Linear;
use manabi_model::DecoderLm;
use manabi_model::hf_names::{HfModule, decoder_linears};
use regex_lite::Regex;

use crate::peft::config::PeftConfig;
pub(crate) use crate::peft::patterns::SelectError;
use crate::peft::patterns::{layer_regexes, pattern_regexes};

/// One adapted `Linear`: its HF module, the rank of its factors and the factor its update
/// `a·b` is multiplied by.
pub(crate) struct Target<'a> {
    pub module: HfModule,
    pub linear: &'a Linear,
    pub rank: usize,
    pub scale: f64,
}

/// LoRA's scale: α / r, or α / √r with rsLoRA.
pub(crate) fn scale_of(alpha: f64, rank: usize, rslora: bool) -> f64 {
    if rslora {
        alpha / (rank as f64).sqrt()
    } else {
        alpha / rank as f64
    }
}

/// The α that gives `scale` at `rank` (the inverse of [`scale_of`]).
pub(crate) fn alpha_of(scale: f64, rank: usize, rslora: bool) -> f64 {
    if rslora {
        scale * (rank as f64).sqrt()
    } else {
        scale * rank as f64
    }
}

/// Whether a `target_modules` entry names the module `hf`: its full name or the end of
/// it after a dot.
pub(crate) fn names_module(hf: &str, target: &str) -> bool {
    hf == target
        || hf
            .strip_suffix(target)
            .is_some_and(|head| head.ends_with('.'))
}

/// The HF modules `targets` name; an entry naming no module of this model is an error
/// listing the names it has.
pub(crate) fn named_modules(
    model: &DecoderLm,
    targets: &[String],
) -> Result<Vec<HfModule>, SelectError> {
    let all: Vec<HfModule> = decoder_linears(model).into_iter().map(|(m, _)| m).collect();
    if let Some(t) = targets
        .iter()
        .find(|t| !all.iter().any(|m| names_module(&m.hf, t)))
    {
        let mut names: Vec<&str> = all.iter().map(HfModule::short).collect();
        names.sort();
        names.dedup();
        return Err(SelectError::new(
            "targets",
            format!(
                "unknown target module `{t}`; this {} model has: {}",
                family_name(model),
                names.join(", ")
            ),
        ));
    }
    Ok(all
        .into_iter()
        .filter(|m| targets.iter().any(|t| names_module(&m.hf, t)))
        .collect())
}

fn family_name(model: &DecoderLm) -> String {
    let cfg = model.config();
    match &cfg.hf_model_type {
        Some(t) => t.clone(),
        None => cfg.family.to_string(),
    }
}

/// The layer index of module `hf`: from the first regex that matches.
fn layer_index(hf: &str, regexes: &[Regex]) -> Option<usize> {
    let caps = regexes.iter().find_map(|r| r.captures(hf))?;
    caps.name("idx")?.as_str().parse().ok()
}

/// Checks the settings that need no model (see [`crate::peft::patterns::check`]).
pub(crate) fn check(cfg: &PeftConfig) -> Result<(), SelectError> {
    crate::peft::patterns::check(
        &cfg.rank_pattern.0,
        &cfg.alpha_pattern.0,
        &cfg.layers_pattern,
        &cfg.layers_to_transform,
    )
}

/// The `Linear`s `cfg` adapts, in model order, with their rank and scale. Errors: a
/// target this model lacks, a layer index past its last layer, settings that select
/// nothing (peft's error too). Pattern keys that match no adapted module are ignored
/// with a warning, as peft does.
pub(crate) fn select<'a>(
    model: &'a DecoderLm,
    cfg: &PeftConfig,
) -> Result<Vec<Target<'a>>, SelectError> {
    check(cfg)?;
    if cfg.targets.is_empty() {
        return Err(SelectError::new("targets", "no target modules"));
    }
    named_modules(model, &cfg.targets)?;
    let n_layers = model.layers.len();
    if let Some(i) = cfg.layers_to_transform.iter().find(|&&i| i >= n_layers) {
        return Err(SelectError::new(
            "layers_to_transform",
            format!(
                "layer {i} does not exist: this model has {n_layers} layers (0..={})",
                n_layers.saturating_sub(1)
            ),
        ));
    }
    let layers = layer_regexes(&cfg.layers_pattern)?;
    let ranks = pattern_regexes("rank_pattern", &cfg.rank_pattern.0)?;
    let alphas = pattern_regexes("alpha_pattern", &cfg.alpha_pattern.0)?;
    let mut out = Vec::new();
    for (module, linear) in decoder_linears(model) {
        if !is_selected(&module.hf, cfg, &layers) {
            continue;
        }
        let rank = first_match(&ranks, &module.hf).unwrap_or(cfg.r);
        let alpha = first_match(&alphas, &module.hf).unwrap_or(cfg.alpha);
        out.push(Target {
            scale: scale_of(alpha, rank, cfg.rslora),
            module,
            linear,
            rank,
        });
    }
    if out.is_empty() {
        let key = if cfg.layers_pattern.is_empty() {
            "layers_to_transform"
        } else {
            "layers_pattern"
        };
        return Err(SelectError::new(
            key,
            format!(
                "no target module is in layers {:?}{}",
                cfg.layers_to_transform,
                match cfg.layers_pattern.is_empty() {
                    true => String::new(),
                    false => format!(" named by layers_pattern {:?}", cfg.layers_pattern),
                }
            ),
        ));
    }
    warn_unmatched("rank_pattern", &cfg.rank_pattern.0, &ranks, &out);
    warn_unmatched("alpha_pattern", &cfg.alpha_pattern.0, &alphas, &out);
    Ok(out)
}

/// peft's `check_target_module_exists` for a list of targets.
fn is_selected(hf: &str, cfg: &PeftConfig, layers: &[Regex]) -> bool {
    if cfg.targets.iter().any(|t| t == hf) {
        return true;
    }
    if !cfg.targets.iter().any(|t| names_module(hf, t)) {
        return false;
    }
    if cfg.layers_to_transform.is_empty() {
        return true;
    }
    layer_index(hf, layers).is_some_and(|i| cfg.layers_to_transform.contains(&i))
}

/// The value of the first pattern that matches `hf`.
fn first_match<T: Copy>(patterns: &[(Regex, T)], hf: &str) -> Option<T> {
    patterns.iter().find(|(r, _)| r.is_match(hf)).map(|p| p.1)
}

/// peft's warning for pattern keys that match no adapted module.
fn warn_unmatched<T>(
    name: &str,
    keys: &[(String, T)],
    regexes: &[(Regex, T)],
    adapted: &[Target<'_>],
) {
    let unmatched: Vec<&str> = keys
        .iter()
        .zip(regexes)
        .filter(|(_, (r, _))| !adapted.iter().any(|t| r.is_match(&t.module.hf)))
        .map(|((k, _), _)| k.as_str())
        .collect();
    if !unmatched.is_empty() {
        tracing::warn!(
            "peft.{name}: {unmatched:?} match no adapted module and are ignored (as peft does)"
        );
    }
}
