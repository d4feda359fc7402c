//! The LoRA settings that need no model, checked where a recipe is read and where a
//! model is adapted: pattern ranks and α, the regexes of `rank_pattern`,
//! `alpha_pattern` and `layers_pattern` (compiled as peft's `re.match` runs them).

use regex_lite::Regex;

/// A setting that cannot be read or selects nothing: the `[peft]` key at fault
/// (`targets`, `layers_to_transform`, `rank_pattern`, …) and what is wrong.
#[derive(Debug)]
pub(crate) struct SelectError {
    pub key: &'static str,
    pub message: String,
}

impl SelectError {
    pub(crate) fn new(key: &'static str, message: impl Into<String>) -> Self {
        Self {
            key,
            message: message.into(),
        }
    }

    /// The key as `adapter_config.json` spells it.
    pub fn peft_key(&self) -> &'static str {
        match self.key {
            "targets" => "target_modules",
            "alpha" => "lora_alpha",
            k => k,
        }
    }
}

/// A Python regex of a setting, compiled as `re.match` runs it (anchored at the start).
pub(crate) fn compile(key: &'static str, what: &str, regex: String) -> Result<Regex, SelectError> {
    Regex::new(&regex).map_err(|e| {
        let first = e.to_string();
        let first = first.lines().last().unwrap_or_default().trim().to_string();
        SelectError::new(
            key,
            format!("`{what}` is not a regex this reader takes ({first})"),
        )
    })
}

/// The pattern keys of `rank_pattern` / `alpha_pattern`, compiled, with their values.
pub(crate) fn pattern_regexes<T: Copy>(
    key: &'static str,
    patterns: &[(String, T)],
) -> Result<Vec<(Regex, T)>, SelectError> {
    patterns
        .iter()
        .map(|(k, v)| Ok((compile(key, k, format!(r"^(?:(.*\.)?({k})$)"))?, *v)))
        .collect()
}

/// The layer-index regexes of `layers_pattern` (peft's default without one).
pub(crate) fn layer_regexes(layers_pattern: &[String]) -> Result<Vec<Regex>, SelectError> {
    if layers_pattern.is_empty() {
        // Lazy: the first numbered component, not a nested one (MoE experts).
        return Ok(vec![compile(
            "layers_pattern",
            "(default)",
            r"^(?:.*?\.[^.]*\.(?P<idx>\d+)\.)".to_string(),
        )?]);
    }
    layers_pattern
        .iter()
        .map(|p| {
            compile(
                "layers_pattern",
                p,
                format!(r"^(?:(?:^|.*?\.){p}\.(?P<idx>\d+)\.)"),
            )
        })
        .collect()
}

/// Checks what the settings say on their own: ranks and α of the patterns, and that every
/// pattern compiles.
pub(crate) fn check(
    rank_pattern: &[(String, usize)],
    alpha_pattern: &[(String, f64)],
    layers_pattern: &[String],
    layers_to_transform: &[usize],
) -> Result<(), SelectError> {
    if let Some((k, _)) = rank_pattern.iter().find(|(_, r)| *r == 0) {
        return Err(SelectError::new(
            "rank_pattern",
            format!("`{k}` = 0: a rank must be at least 1"),
        ));
    }
    if let Some((k, a)) = alpha_pattern
        .iter()
        .find(|(_, a)| !(*a > 0.0 && a.is_finite()))
    {
        return Err(SelectError::new(
            "alpha_pattern",
            format!("`{k}` = {a}: α must be positive"),
        ));
    }
    if !layers_pattern.is_empty() && layers_to_transform.is_empty() {
        return Err(SelectError::new(
            "layers_pattern",
            "is read only with layers_to_transform (as in peft); list the layer indices",
        ));
    }
    pattern_regexes("rank_pattern", rank_pattern)?;
    pattern_regexes("alpha_pattern", alpha_pattern)?;
    layer_regexes(layers_pattern)?;
    Ok(())
}
