//! The alignment tax (`manabi align report`): a model before and after alignment on the
//! evaluations that exist — held-out perplexity of a text, exact match on QA / checkable
//! prompts, and how often the model itself prefers the chosen completion of held-out
//! preference pairs (summed log-probs) — with the differences.

use std::path::{Path, PathBuf};

use burn::prelude::*;
use manabi_finetune::sft::Specials;
use manabi_finetune::sft::data::Format;
use manabi_finetune::sft::template::{Template, TemplateConfig};
use manabi_model::DecoderLm;
use manabi_tokenize::TextTokenizer;
use serde::Serialize;

use crate::dpo::pair_logps;
use crate::error::{AlignError, Result};
use crate::pref::{read_pairs, tokenize};

/// What to evaluate.
#[derive(Debug, Clone, Default)]
pub struct ReportInputs {
    /// A text file: perplexity in windows of `context` tokens.
    pub text: Option<PathBuf>,
    /// QA JSONL (`context`, `question`, `answer`): greedy exact match.
    pub qa: Option<PathBuf>,
    /// `{"prompt","answer"}` JSONL: greedy exact match (first line).
    pub prompts: Option<PathBuf>,
    /// Preference JSONL: share of pairs whose chosen completion is more likely.
    pub pairs: Option<PathBuf>,
    /// Window length for the perplexity.
    pub context: usize,
}

/// One row of the report.
#[derive(Debug, Clone, Serialize)]
pub struct ReportRow {
    /// The evaluation.
    pub metric: String,
    /// Before alignment.
    pub before: f64,
    /// After.
    pub after: f64,
}

/// Every evaluation of `inputs` for one model, as (name, value) rows.
pub fn metrics(
    model: &DecoderLm,
    tok: &TextTokenizer,
    inputs: &ReportInputs,
    device: &Device,
) -> Result<Vec<(String, f64)>> {
    let specials = Specials::of(tok)?;
    let mut out = Vec::new();
    if let Some(path) = &inputs.text {
        let text = std::fs::read_to_string(path).map_err(|e| AlignError::io(path, e))?;
        // As `manabi eval`: the tokenizer's BOS first when it adds one.
        let ids = tok.encode_with_specials(&text)?;
        if ids.len() < 2 {
            return Err(AlignError::io(
                path,
                format!("{} tokens: a perplexity needs at least 2", ids.len()),
            ));
        }
        let positions = model.config().max_positions;
        if !(2..=positions).contains(&inputs.context) {
            return Err(AlignError::config(
                "--context",
                format!(
                    "{} is outside 2 to {positions}, the model's positions",
                    inputs.context
                ),
            ));
        }
        let r = manabi_model::evaluate(model, &ids, inputs.context, 8)?;
        out.push((format!("perplexity ({})", path.display()), r.perplexity));
    }
    if let Some(path) = &inputs.qa {
        let data = manabi_finetune::sft::data::read_files(
            std::slice::from_ref(path),
            Format::Qa,
            &Default::default(),
            false,
        )?;
        let template = Template::new(TemplateConfig::default(), Format::Qa)?;
        let set = manabi_finetune::sft::encode_set(
            &data,
            &template,
            tok,
            specials,
            model.config().max_positions,
        )?;
        let g = manabi_finetune::sft::GenerationEval {
            prompts: set
                .examples
                .iter()
                .map(manabi_finetune::sft::prompt_of)
                .collect(),
            answers: set.answers.clone(),
            tokenizer: tok.clone(),
            options: manabi_model::GenerateOptions {
                max_new_tokens: 16,
                eos_ids: specials.stop_ids(),
                pad_id: specials.pad,
                ..Default::default()
            },
            batch_size: 32,
            rouge: false,
        };
        let (em, _) = manabi_finetune::sft::scores(&g.predict(model)?);
        out.push((format!("exact match ({})", path.display()), em));
    }
    if let Some(path) = &inputs.prompts {
        let p = crate::grpo::read_prompts(std::slice::from_ref(path))?;
        let em = crate::grpo::greedy_exact_match(model, tok, &p, specials.eos, specials.pad, 8)?;
        out.push((format!("exact match ({})", path.display()), em));
    }
    if let Some(path) = &inputs.pairs {
        let max = model.config().max_positions;
        // manabi's rendering of conversations (the report compares models that may not
        // share a template).
        let (pairs, _, dropped) = tokenize(
            &read_pairs(std::slice::from_ref(path))?,
            tok,
            specials.eos,
            max,
            None,
        )?;
        if pairs.is_empty() {
            return Err(AlignError::io(
                path,
                format!("no pair fits the model's {max} positions ({dropped} dropped)"),
            ));
        }
        let logps = pair_logps(model, &pairs, 16, specials.pad, device);
        let wins = logps.iter().filter(|(c, r)| c > r).count() as f64;
        out.push((
            format!("prefers chosen ({})", path.display()),
            wins / pairs.len().max(1) as f64,
        ));
    }
    Ok(out)
}

/// Every evaluation of `inputs` for both models, side by side.
pub fn report(
    before: &DecoderLm,
    after: &DecoderLm,
    tok: &TextTokenizer,
    inputs: &ReportInputs,
    device: &Device,
) -> Result<Vec<ReportRow>> {
    if inputs.text.is_none()
        && inputs.qa.is_none()
        && inputs.prompts.is_none()
        && inputs.pairs.is_none()
    {
        return Err(AlignError::config(
            "report",
            "nothing to evaluate: give --text, --qa, --prompts or --pairs",
        ));
    }
    for (which, model) in [("--before", before), ("--after", after)] {
        let vocab = model.config().vocab_size;
        manabi_model::open::check_tokenizer(tok.vocab_size(), tok.path(), vocab)
            .map_err(|e| AlignError::config(which, e.to_string()))?;
    }
    let a = metrics(before, tok, inputs, device)?;
    let b = metrics(after, tok, inputs, device)?;
    Ok(a.into_iter()
        .zip(b)
        .map(|((metric, before), (_, after))| ReportRow {
            metric,
            before,
            after,
        })
        .collect())
}

/// The one tokenizer a report scores both models with: `given` (`--tokenizer`), else the
/// `tokenizer.json` of each model folder (`before`, `after`: model or run folders, found
/// by [`manabi_model::locate`]), refused when the two differ — scored with the other's
/// tokenizer a model reads ids it was never trained on, and perplexities over different
/// vocabularies do not compare. The error names both files.
pub fn report_tokenizer(
    before: &Path,
    after: &Path,
    given: Option<&Path>,
) -> Result<TextTokenizer> {
    let before = manabi_model::locate(before)?.dir.join("tokenizer.json");
    let after = manabi_model::locate(after)?.dir.join("tokenizer.json");
    if let Some(path) = given {
        return Ok(TextTokenizer::load(path)?);
    }
    let (b, a) = (TextTokenizer::load(&before)?, TextTokenizer::load(&after)?);
    let same = b.sha256() == a.sha256()
        || serde_json::from_str::<serde_json::Value>(b.to_json()).ok()
            == serde_json::from_str::<serde_json::Value>(a.to_json()).ok();
    if !same {
        return Err(AlignError::io(
            &before,
            format!(
                "differs from {}: the report scores both models with one tokenizer \
                 (compare models that share one, or name it with --tokenizer)",
                after.display()
            ),
        ));
    }
    Ok(a)
}
