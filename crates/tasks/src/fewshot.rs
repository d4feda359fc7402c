//! Prompting without training (`manabi eval --task FILE --few-shot K`), with
//! lm-evaluation-harness semantics:
//! - multiple choice (`{"query", "choices", "gold"}`): each choice is scored by the summed
//!   log-likelihood of `" " + choice` after the prompt; `acc` takes the best, `acc_norm`
//!   the best per character of the choice (lm-eval divides by `len(choice)`, Python
//!   characters) and `acc_bytes` the best per UTF-8 byte;
//! - generation (`{"query", "answer"}`): greedy until `"\n\n"`, the answer extracted
//!   (optionally by a regex's first group, for chain-of-thought), exact match after
//!   trimming.
//!
//! The prompt is `description + shot₁ + "\n\n" + … + shotₖ + "\n\n" + query`, a shot being
//! `query + " " + target` (the gold choice or the answer, preceded by its `rationale` when
//! the pool has one). Shots are drawn without replacement from a separate pool, per
//! question, by a seed. A context and its continuation are encoded as lm-eval's
//! `_encode_pair` does: trailing spaces of the context move to the continuation, the
//! whole is encoded, and the continuation is what follows the context's tokens.

use std::path::{Path, PathBuf};

use burn::prelude::*;
use burn::tensor::activation::log_softmax;
use manabi_finetune::error::{FinetuneError, Result};
use manabi_model::{DecoderLm, GenerateOptions, argmax_first};
use manabi_tokenize::TextTokenizer;
use rand::SeedableRng;
use rand::seq::index::sample;
use rand_chacha::ChaCha8Rng;
use serde::Serialize;

/// Between shots, and the end of a generated answer.
pub const FEWSHOT_DELIMITER: &str = "\n\n";
/// Between a query and its target.
pub const TARGET_DELIMITER: &str = " ";

/// One evaluation document.
#[derive(Debug, Clone, PartialEq)]
pub enum Doc {
    /// Choose among `choices`; `gold` is the right one.
    Choice {
        /// The question as shown.
        query: String,
        /// The candidates.
        choices: Vec<String>,
        /// Index of the right candidate.
        gold: usize,
        /// Reasoning shown before the target when this doc is a shot.
        rationale: Option<String>,
    },
    /// Generate the answer.
    Generate {
        /// The question as shown.
        query: String,
        /// The right answer.
        answer: String,
        /// Reasoning shown before the answer when this doc is a shot.
        rationale: Option<String>,
    },
}

/// The accuracy of guessing uniformly among each multiple-choice document's choices
/// (the mean of 1 / choices), or `None` when no document has choices.
pub fn chance_level(docs: &[Doc]) -> Option<f64> {
    let shares: Vec<f64> = docs
        .iter()
        .filter_map(|d| match d {
            Doc::Choice { choices, .. } => Some(1.0 / choices.len() as f64),
            Doc::Generate { .. } => None,
        })
        .collect();
    (!shares.is_empty()).then(|| shares.iter().sum::<f64>() / shares.len() as f64)
}

impl Doc {
    /// The question.
    pub fn query(&self) -> &str {
        match self {
            Self::Choice { query, .. } | Self::Generate { query, .. } => query,
        }
    }

    /// The text a shot shows after the query: the gold choice or the answer, after the
    /// rationale when there is one.
    pub fn target(&self) -> String {
        let (t, r) = match self {
            Self::Choice {
                choices,
                gold,
                rationale,
                ..
            } => (choices[*gold].as_str(), rationale),
            Self::Generate {
                answer, rationale, ..
            } => (answer.as_str(), rationale),
        };
        match r {
            Some(r) => format!("{r} {t}"),
            None => t.to_string(),
        }
    }
}

/// Reads a task file (JSONL, one doc per line); errors name file, line and field.
pub fn read_docs(path: &Path) -> Result<Vec<Doc>> {
    let mut out = Vec::new();
    for record in manabi_tokenize::read_jsonl(path) {
        let manabi_tokenize::JsonLine { line, value: v } = record?;
        let err = |message: String| FinetuneError::Data {
            path: path.to_path_buf(),
            line,
            message,
        };
        let text = |k: &str| -> Result<String> {
            match &v[k] {
                serde_json::Value::String(s) if !s.trim().is_empty() => Ok(s.clone()),
                serde_json::Value::Null => Err(err(format!("missing field `{k}`"))),
                _ => Err(err(format!("field `{k}` must be a non-empty string"))),
            }
        };
        let query = text("query")?;
        let rationale = match &v["rationale"] {
            serde_json::Value::Null => None,
            serde_json::Value::String(s) => Some(s.clone()),
            _ => return Err(err("field `rationale` must be a string".into())),
        };
        let doc = if v.get("choices").is_some() {
            let choices: Vec<String> = v["choices"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|c| c.as_str().map(str::to_string))
                        .collect()
                })
                .unwrap_or_default();
            if choices.len() < 2 || Some(choices.len()) != v["choices"].as_array().map(Vec::len) {
                return Err(err(
                    "field `choices` must be a list of at least two strings".into(),
                ));
            }
            if choices.iter().any(|c| c.trim().is_empty()) {
                return Err(err("field `choices` holds an empty string".into()));
            }
            if let Some((i, c)) = choices
                .iter()
                .enumerate()
                .find(|(i, c)| choices[..*i].contains(c))
            {
                let first = choices.iter().position(|x| x == c).unwrap_or(0);
                return Err(err(format!(
                    "field `choices` lists \"{c}\" twice (indices {first} and {i}): \
                     the gold one could not be told apart"
                )));
            }
            let last = choices.len() - 1;
            let gold = match v.get("gold") {
                None => {
                    return Err(err(format!(
                        "missing field `gold` (the index of the right choice, 0 to {last})"
                    )));
                }
                Some(g) => g
                    .as_u64()
                    .map(|g| g as usize)
                    .filter(|&g| g < choices.len())
                    .ok_or_else(|| {
                        err(format!(
                            "field `gold` must be the index of a choice, 0 to {last}; got {g}"
                        ))
                    })?,
            };
            Doc::Choice {
                query,
                choices,
                gold,
                rationale,
            }
        } else {
            Doc::Generate {
                query,
                answer: text("answer")?,
                rationale,
            }
        };
        out.push(doc);
    }
    if out.is_empty() {
        return Err(FinetuneError::io(path, "no documents in this file"));
    }
    Ok(out)
}

/// How prompts are built and answers read.
#[derive(Debug, Clone, PartialEq)]
pub struct PromptSettings {
    /// Text before the shots (an instruction).
    pub description: String,
    /// Text after the query, before the target (chain-of-thought: "Let's think step by
    /// step." / "ステップごとに考えましょう。").
    pub query_suffix: String,
    /// A regex whose first group is the answer in a generation (default: all of it).
    pub answer_pattern: Option<String>,
    /// Seed of the shots drawn for each question.
    pub seed: u64,
    /// Longest generated answer, in tokens.
    pub max_new_tokens: usize,
}

impl Default for PromptSettings {
    fn default() -> Self {
        Self {
            description: String::new(),
            query_suffix: String::new(),
            answer_pattern: None,
            seed: 1234,
            max_new_tokens: 32,
        }
    }
}

/// The chain-of-thought cue and answer pattern of a language: `en` or `ja`.
pub fn chain_of_thought(lang: &str) -> Option<(&'static str, &'static str)> {
    match lang {
        "en" => Some(("Let's think step by step.", r"The answer is (.+?)\.?$")),
        "ja" => Some(("ステップごとに考えましょう。", r"答えは(.+?)(?:です)?。?$")),
        _ => None,
    }
}

/// The prompt of question `i` with `k` shots from `pool` (never the question itself when
/// the pool is the evaluated file).
pub fn prompt(doc: &Doc, i: usize, k: usize, pool: &[Doc], s: &PromptSettings) -> Result<String> {
    let candidates: Vec<&Doc> = pool.iter().filter(|d| *d != doc).collect();
    if k > candidates.len() {
        return Err(FinetuneError::config(
            "--few-shot",
            format!(
                "{k} shots asked but the pool has {} other documents",
                candidates.len()
            ),
        ));
    }
    let mut rng =
        ChaCha8Rng::seed_from_u64(s.seed ^ (i as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15));
    let mut text = s.description.clone();
    for j in sample(&mut rng, candidates.len(), k) {
        let shot = candidates[j];
        text.push_str(&shown_query(shot.query(), s));
        text.push_str(TARGET_DELIMITER);
        text.push_str(&shot.target());
        text.push_str(FEWSHOT_DELIMITER);
    }
    text.push_str(&shown_query(doc.query(), s));
    Ok(text)
}

fn shown_query(q: &str, s: &PromptSettings) -> String {
    if s.query_suffix.is_empty() {
        q.to_string()
    } else {
        format!("{q}{TARGET_DELIMITER}{}", s.query_suffix)
    }
}

/// lm-eval's `_encode_pair`: (context tokens, continuation tokens).
pub fn encode_pair(
    tokenizer: &TextTokenizer,
    context: &str,
    continuation: &str,
) -> Result<(Vec<u32>, Vec<u32>)> {
    let trimmed = context.trim_end();
    let moved = &context[trimmed.len()..];
    let whole = tokenizer.encode(&format!("{trimmed}{moved}{continuation}"))?;
    let ctx = tokenizer.encode(trimmed)?;
    let cont = whole[ctx.len().min(whole.len())..].to_vec();
    Ok((ctx, cont))
}

/// Summed log-probability of each continuation after its context, `batch_size` rows per
/// forward pass. Contexts longer than the model's positions keep their last tokens.
pub fn loglikelihoods(
    model: &DecoderLm,
    rows: &[(Vec<u32>, Vec<u32>)],
    batch_size: usize,
    pad: u32,
    device: &Device,
) -> Result<Vec<f64>> {
    let max = model.config().max_positions;
    let mut out = Vec::with_capacity(rows.len());
    for chunk in rows.chunks(batch_size.max(1)) {
        let mut seqs = Vec::with_capacity(chunk.len());
        for (ctx, cont) in chunk {
            if cont.is_empty() {
                return Err(FinetuneError::config(
                    "choices",
                    "a continuation encodes to no tokens",
                ));
            }
            let all: Vec<u32> = ctx.iter().chain(cont).copied().collect();
            // Inputs are all but the last token, at most `max` of them.
            let start = (all.len() - 1).saturating_sub(max);
            seqs.push((all[start..].to_vec(), cont.len()));
        }
        let seq = seqs
            .iter()
            .map(|(s, _)| s.len() - 1)
            .max()
            .unwrap_or(1)
            .max(1);
        let (b, mut ids, mut idx, mut keep) = (seqs.len(), Vec::new(), Vec::new(), Vec::new());
        for (s, n_cont) in &seqs {
            let n = s.len() - 1;
            ids.extend(s[..n].iter().map(|&x| x as i64));
            ids.extend(std::iter::repeat_n(pad as i64, seq - n));
            for p in 0..seq {
                let scored = p < n && p + 1 >= s.len() - n_cont;
                idx.push(if p < n { s[p + 1] as i64 } else { 0 });
                keep.push(if scored { 1.0f32 } else { 0.0 });
            }
        }
        let ids = Tensor::<1, Int>::from_ints(ids.as_slice(), device).reshape([b, seq]);
        let logits = model.forward(ids);
        let v = logits.dims()[2];
        let logp = log_softmax(logits.reshape([b * seq, v]), 1);
        let idx = Tensor::<1, Int>::from_ints(idx.as_slice(), device).reshape([b * seq, 1]);
        let keep = Tensor::<1>::from_floats(keep.as_slice(), device);
        let sums = (logp.gather(1, idx).reshape([b * seq]) * keep)
            .reshape([b, seq])
            .sum_dim(1)
            .into_data()
            .convert::<f64>()
            .try_into_vec::<f64>()
            .unwrap_or_default();
        out.extend(sums);
    }
    Ok(out)
}

/// Scores of one `k`.
#[derive(Debug, Clone, Serialize)]
pub struct ShotScores {
    /// Shots per prompt.
    pub k: usize,
    /// Documents scored.
    pub docs: usize,
    /// Multiple choice: accuracy by summed log-likelihood.
    pub acc: Option<f64>,
    /// Multiple choice: accuracy by log-likelihood per character of the choice.
    pub acc_norm: Option<f64>,
    /// Multiple choice: accuracy by log-likelihood per UTF-8 byte of the choice.
    pub acc_bytes: Option<f64>,
    /// Generation: exact match of the extracted answer.
    pub exact_match: Option<f64>,
}

/// One scored document, for the predictions file.
#[derive(Debug, Clone, Serialize)]
pub struct Scored {
    /// Shots.
    pub k: usize,
    /// The prompt.
    pub prompt: String,
    /// Log-likelihood of each choice (multiple choice).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub loglikelihoods: Vec<f64>,
    /// The generation and the answer read from it (generation).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub generation: Option<String>,
    /// The chosen index or extracted answer.
    pub prediction: serde_json::Value,
    /// Whether it was right.
    pub correct: bool,
}

/// Everything needed to score a file.
#[derive(Debug)]
pub struct Evaluator<'a> {
    /// The model (no autodiff).
    pub model: &'a DecoderLm,
    /// Its tokenizer.
    pub tokenizer: &'a TextTokenizer,
    /// Padding token.
    pub pad: u32,
    /// End-of-sequence token (stops a generation).
    pub eos: u32,
    /// Rows per forward pass.
    pub batch_size: usize,
    /// Where tensors live.
    pub device: &'a Device,
}

impl Evaluator<'_> {
    /// Scores `docs` with `k` shots from `pool`.
    pub fn score(
        &self,
        docs: &[Doc],
        pool: &[Doc],
        k: usize,
        s: &PromptSettings,
    ) -> Result<(ShotScores, Vec<Scored>)> {
        let pattern = match &s.answer_pattern {
            Some(p) => Some(
                regex_lite::Regex::new(p)
                    .map_err(|e| FinetuneError::config("--answer-pattern", e.to_string()))?,
            ),
            None => None,
        };
        let prompts: Vec<String> = docs
            .iter()
            .enumerate()
            .map(|(i, d)| prompt(d, i, k, pool, s))
            .collect::<Result<_>>()?;
        let mut rows = Vec::new();
        for (d, p) in docs.iter().zip(&prompts) {
            if let Doc::Choice { choices, .. } = d {
                for c in choices {
                    rows.push(encode_pair(
                        self.tokenizer,
                        p,
                        &format!("{TARGET_DELIMITER}{c}"),
                    )?);
                }
            }
        }
        let lls = loglikelihoods(self.model, &rows, self.batch_size, self.pad, self.device)?;
        let mut lls = lls.into_iter();
        let gen_idx: Vec<usize> = (0..docs.len())
            .filter(|&i| matches!(docs[i], Doc::Generate { .. }))
            .collect();
        let generations = self.generate(
            &gen_idx
                .iter()
                .map(|&i| prompts[i].clone())
                .collect::<Vec<_>>(),
            s,
        )?;
        let mut generations = generations.into_iter();
        let (mut acc, mut em) = ((0usize, 0usize), (0usize, 0usize));
        let (mut acc_norm, mut acc_bytes) = (0usize, 0usize);
        let mut scored = Vec::with_capacity(docs.len());
        for (d, p) in docs.iter().zip(prompts) {
            match d {
                Doc::Choice { choices, gold, .. } => {
                    let ll: Vec<f64> = lls.by_ref().take(choices.len()).collect();
                    let [best, by_char, by_byte] = choice_picks(&ll, choices);
                    acc.0 += usize::from(best == *gold);
                    acc.1 += 1;
                    acc_norm += usize::from(by_char == *gold);
                    acc_bytes += usize::from(by_byte == *gold);
                    scored.push(Scored {
                        k,
                        prompt: p,
                        loglikelihoods: ll,
                        generation: None,
                        prediction: best.into(),
                        correct: best == *gold,
                    });
                }
                Doc::Generate { answer, .. } => {
                    let g = generations.next().unwrap_or_default();
                    let extracted = extract(&g, pattern.as_ref());
                    let ok = extracted == answer.trim();
                    em.0 += usize::from(ok);
                    em.1 += 1;
                    scored.push(Scored {
                        k,
                        prompt: p,
                        loglikelihoods: Vec::new(),
                        generation: Some(g),
                        prediction: extracted.into(),
                        correct: ok,
                    });
                }
            }
        }
        let frac = |n: usize, d: usize| (d > 0).then(|| n as f64 / d as f64);
        Ok((
            ShotScores {
                k,
                docs: docs.len(),
                acc: frac(acc.0, acc.1),
                acc_norm: frac(acc_norm, acc.1),
                acc_bytes: frac(acc_bytes, acc.1),
                exact_match: frac(em.0, em.1),
            },
            scored,
        ))
    }

    /// Greedy continuations of `prompts`, cut at the first `"\n\n"`.
    fn generate(&self, prompts: &[String], s: &PromptSettings) -> Result<Vec<String>> {
        let opts = GenerateOptions {
            max_new_tokens: s.max_new_tokens,
            temperature: 0.0,
            eos_ids: vec![self.eos],
            pad_id: self.pad,
            stop_strings: vec![FEWSHOT_DELIMITER.to_string()],
            ..GenerateOptions::default()
        };
        let out = greedy(self.model, self.tokenizer, prompts, &opts, self.batch_size)?;
        Ok(out
            .into_iter()
            .map(|t| t.split(FEWSHOT_DELIMITER).next().unwrap_or("").to_string())
            .collect())
    }
}

/// Continuations of text prompts under `opts`, `batch_size` at a time; prompts longer
/// than the model's positions (less the new tokens) keep their end.
pub fn greedy(
    model: &DecoderLm,
    tokenizer: &TextTokenizer,
    prompts: &[String],
    opts: &GenerateOptions,
    batch_size: usize,
) -> Result<Vec<String>> {
    let max = model
        .config()
        .max_positions
        .saturating_sub(opts.max_new_tokens);
    let mut out = Vec::with_capacity(prompts.len());
    for chunk in prompts.chunks(batch_size.max(1)) {
        let ids: Vec<Vec<u32>> = chunk
            .iter()
            .map(|p| {
                let ids = tokenizer.encode(p)?;
                Ok(ids[ids.len().saturating_sub(max)..].to_vec())
            })
            .collect::<Result<_>>()?;
        for new in manabi_model::generate(model, &ids, opts, Some(tokenizer))? {
            out.push(tokenizer.decode(&new, true)?);
        }
    }
    Ok(out)
}

/// The answer in a generation: the pattern's first group (or whole match), else the
/// trimmed text.
pub fn extract(generation: &str, pattern: Option<&regex_lite::Regex>) -> String {
    let g = generation.trim();
    match pattern.and_then(|p| p.captures(g)) {
        Some(c) => c
            .get(1)
            .or_else(|| c.get(0))
            .map_or("", |m| m.as_str())
            .trim()
            .to_string(),
        None if pattern.is_some() => String::new(),
        None => g.to_string(),
    }
}

/// The choice picked by summed log-likelihood, by log-likelihood per character (lm-eval's
/// `acc_norm`) and per UTF-8 byte (`acc_bytes`).
pub fn choice_picks(lls: &[f64], choices: &[String]) -> [usize; 3] {
    let per = |len: &dyn Fn(&str) -> usize| -> Vec<f64> {
        lls.iter()
            .zip(choices)
            .map(|(l, c)| l / len(c).max(1) as f64)
            .collect()
    };
    [
        argmax_first(lls),
        argmax_first(&per(&|c| c.chars().count())),
        argmax_first(&per(&str::len)),
    ]
}

/// Writes the scored documents as JSONL.
pub fn write_scored(path: &PathBuf, scored: &[Scored]) -> Result<()> {
    let mut text = String::new();
    for s in scored {
        text.push_str(&serde_json::to_string(s).map_err(|e| FinetuneError::io(path, e))?);
        text.push('\n');
    }
    std::fs::write(path, text).map_err(|e| FinetuneError::io(path, e))
}

#[cfg(test)]
mod chance_tests {
    use super::{Doc, chance_level};

    #[test]
    fn chance_is_the_mean_of_one_over_the_choices() {
        let choice = |n: usize| Doc::Choice {
            query: "q".into(),
            choices: (0..n).map(|i| i.to_string()).collect(),
            gold: 0,
            rationale: None,
        };
        let generate = Doc::Generate {
            query: "q".into(),
            answer: "a".into(),
            rationale: None,
        };
        assert_eq!(
            chance_level(&[choice(2), choice(4), generate.clone()]),
            Some(0.375)
        );
        assert_eq!(chance_level(&[generate]), None);
    }
}
