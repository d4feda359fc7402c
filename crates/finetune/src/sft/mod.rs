//! Supervised fine-tuning (instruction tuning) of decoder-only models: JSONL records →
//! templates → tokens with the loss on response tokens only (EOS trained) → the shared
//! Trainer. Validation reports the loss and, by generation, exact match and how often
//! the model ends its answer with EOS.

pub mod chat;
pub mod data;
pub mod encode;
pub mod recipe;
pub mod seq2seq;
pub mod template;

use std::path::Path;

use burn::prelude::*;
use manabi_model::{DecoderLm, GenerateOptions};
use manabi_objectives::data::LmBatch;
use manabi_objectives::loss::clm_loss_sum;
use manabi_objectives::{Task, TaskLoss};
use manabi_tokenize::TextTokenizer;
use serde::Serialize;

use crate::error::{FinetuneError, Result};
use data::{Dataset, Record};
use encode::{EncodeStats, Encoded};
use template::{Segment, Template};

/// Tokenised examples with what encoding did.
#[derive(Debug, Clone)]
pub struct EncodedSet {
    /// Examples that fit.
    pub examples: Vec<Encoded>,
    /// The record of each example.
    pub records: Vec<Record>,
    /// The gold answer of each example: its final response as the template renders it
    /// (`" (Tolven)"` under `response = " ({answer})"`), or the last assistant message.
    pub answers: Vec<String>,
    /// Truncation and drop counts.
    pub stats: EncodeStats,
}

/// The special tokens SFT needs from a tokenizer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Specials {
    /// End of sequence (appended to every response and trained).
    pub eos: u32,
    /// Padding (never a target; may equal `eos`).
    pub pad: u32,
    /// `<|end|>`, when the tokenizer has chat tokens (ends assistant turns).
    pub end_of_turn: Option<u32>,
}

impl Specials {
    /// The special tokens of `tokenizer`, from the model's files first. EOS is the
    /// `eos_token` its tokenizer_config.json (or special_tokens_map.json, or the class it
    /// names) gives — what TRL appends — else the first of `<eos>`, `</s>`,
    /// `<|endoftext|>`, `[SEP]` it has (manabi's own tokenizers have no
    /// tokenizer_config.json), else the first `eos_token_id` of the model folder it lies in
    /// (generation_config.json, then config.json). Pad likewise: `pad_token`, else `<pad>` /
    /// `[PAD]`, else the folder's `pad_token_id`, else EOS.
    pub fn of(tokenizer: &TextTokenizer) -> Result<Self> {
        let folder = tokenizer
            .path()
            .parent()
            .filter(|d| !d.as_os_str().is_empty());
        let vocab = tokenizer.vocab_size();
        // The first id of `key` (generation_config.json, else config.json) the tokenizer has.
        let folder_id = |key: &str| -> Result<Option<u32>> {
            Ok(match folder {
                Some(dir) => manabi_model::open::token_ids(dir, key)?
                    .unwrap_or_default()
                    .into_iter()
                    .find(|&id| (id as usize) < vocab),
                None => None,
            })
        };
        let by_name = |names: &[&str]| names.iter().find_map(|t| tokenizer.token_id(t));
        let eos = match tokenizer.eos_id() {
            Some(id) => id,
            None => match by_name(&["<eos>", "</s>", "<|endoftext|>", "[SEP]"]) {
                Some(id) => id,
                None => folder_id("eos_token_id")?.ok_or_else(|| {
                    FinetuneError::io(
                        tokenizer.path(),
                        "the tokenizer has no end-of-sequence token (no `eos_token` in \
                         tokenizer_config.json, none of <eos>, </s>, <|endoftext|>, [SEP], no \
                         `eos_token_id` beside it)",
                    )
                })?,
            },
        };
        let pad = match tokenizer.pad_id() {
            Some(id) => id,
            None => match by_name(&["<pad>", "[PAD]"]) {
                Some(id) => id,
                None => folder_id("pad_token_id")?.unwrap_or(eos),
            },
        };
        Ok(Self {
            eos,
            pad,
            end_of_turn: tokenizer.token_id(template::END_OF_TURN),
        })
    }

    /// The padding token when it is not EOS (`pad` falls back to EOS), for exports whose
    /// readers find a sequence's end by its first/last padding token (`transformers`'
    /// `*ForSequenceClassification`): there a pad equal to EOS is no pad at all.
    pub fn distinct_pad(&self) -> Option<u32> {
        (self.pad != self.eos).then_some(self.pad)
    }

    /// Tokens that end generation.
    pub fn stop_ids(&self) -> Vec<u32> {
        let mut v = vec![self.eos];
        v.extend(self.end_of_turn);
        v
    }
}

/// Renders and tokenises `data` with manabi's templates; rows hold at most `max_tokens`
/// tokens.
pub fn encode_set(
    data: &Dataset,
    template: &Template,
    tokenizer: &TextTokenizer,
    specials: Specials,
    max_tokens: usize,
) -> Result<EncodedSet> {
    encode_set_with(data, template, None, tokenizer, specials, max_tokens)
}

/// [`encode_set`], with conversations rendered by the model's own chat template when
/// `chat` is given ([`chat::encode`]: its tokens, assistant turns trained); templated
/// formats always use `template`.
pub fn encode_set_with(
    data: &Dataset,
    template: &Template,
    chat: Option<&manabi_tokenize::ChatTemplate>,
    tokenizer: &TextTokenizer,
    specials: Specials,
    max_tokens: usize,
) -> Result<EncodedSet> {
    let mut stats = EncodeStats::default();
    let mut examples = Vec::with_capacity(data.records.len());
    let mut records = Vec::with_capacity(data.records.len());
    let mut answers = Vec::with_capacity(data.records.len());
    for (r, src) in data.records.iter().zip(&data.sources) {
        if let (Record::Chat(messages), Some(chat)) = (r, chat) {
            let data_error = |e: FinetuneError| FinetuneError::Data {
                path: src.path.clone(),
                line: src.line,
                message: e.to_string(),
            };
            if let Some(e) = chat::encode(tokenizer, chat, messages, max_tokens, &mut stats)
                .map_err(data_error)?
            {
                examples.push(e);
                records.push(r.clone());
                answers.push(r.final_response().to_string());
            }
            continue;
        }
        let segments = template.render(r).map_err(|e| FinetuneError::Data {
            path: src.path.clone(),
            line: src.line,
            message: e.to_string(),
        })?;
        let chat_tokens_missing = matches!(r, Record::Chat(_)) && specials.end_of_turn.is_none();
        if chat_tokens_missing {
            return Err(FinetuneError::Data {
                path: src.path.clone(),
                line: src.line,
                message: "chat messages need a tokenizer with chat tokens (<|user|>, <|assistant|>, <|end|>): train it with --chat-tokens".into(),
            });
        }
        if let Some(e) = encode::encode(tokenizer, &segments, specials.eos, max_tokens, &mut stats)?
        {
            examples.push(e);
            records.push(r.clone());
            answers.push(gold_answer(r, &segments));
        }
    }
    if examples.is_empty() {
        return Err(FinetuneError::config(
            "data.block_size",
            format!(
                "no example fits in {max_tokens} tokens ({} dropped)",
                stats.dropped
            ),
        ));
    }
    Ok(EncodedSet {
        examples,
        records,
        answers,
        stats,
    })
}

/// What generation is scored against: the rendered final response of a templated record
/// (what was trained, so a response template such as `" ({answer})"` is part of the gold
/// answer), the content of the last assistant message of a conversation (its `<|end|>`
/// stops generation and is not text).
fn gold_answer(record: &Record, segments: &[template::Segment]) -> String {
    match record {
        Record::Chat(_) => record.final_response().to_string(),
        Record::Fields { .. } => segments
            .iter()
            .rev()
            .find(|s| s.trained)
            .map_or_else(|| record.final_response().to_string(), |s| s.text.clone()),
    }
}

/// The prompt tokens of an example: everything before its final response.
pub fn prompt_of(e: &Encoded) -> Vec<u32> {
    e.tokens[..e.response_start].to_vec()
}

/// Generation-based evaluation: prompts, gold answers and decoding settings.
#[derive(Debug, Clone)]
pub struct GenerationEval {
    /// Prompt tokens.
    pub prompts: Vec<Vec<u32>>,
    /// Gold answers.
    pub answers: Vec<String>,
    /// Decodes generated tokens.
    pub tokenizer: TextTokenizer,
    /// Greedy decoding, stopping at EOS / `<|end|>`.
    pub options: GenerateOptions,
    /// Prompts per batch.
    pub batch_size: usize,
    /// Also report ROUGE-1/2/L F1.
    pub rouge: bool,
}

/// One generated answer next to its gold answer.
#[derive(Debug, Clone, Serialize)]
pub struct Prediction {
    /// The prompt as text.
    pub prompt: String,
    /// The gold answer.
    pub gold: String,
    /// What the model generated (special tokens dropped).
    pub prediction: String,
    /// Whether they match after trimming whitespace.
    pub exact_match: bool,
    /// Whether generation ended with EOS (or `<|end|>`) rather than the length limit,
    /// after a non-empty answer ([`ended_with_eos`]).
    pub ended_with_eos: bool,
}

impl GenerationEval {
    /// Generates every answer (greedy) and compares it with the gold one. A prompt too
    /// long for the answer to fit the model's positions keeps its last tokens (left
    /// truncation, as lm-evaluation-harness does).
    pub fn predict(&self, model: &DecoderLm) -> Result<Vec<Prediction>> {
        let room = model
            .config()
            .max_positions
            .saturating_sub(self.options.max_new_tokens)
            .max(1);
        self.predict_with(|prompts| {
            let fitted: Vec<Vec<u32>> = prompts
                .iter()
                .map(|p| p[p.len().saturating_sub(room)..].to_vec())
                .collect();
            Ok(manabi_model::generate(
                model,
                &fitted,
                &self.options,
                Some(&self.tokenizer),
            )?)
        })
    }

    /// [`GenerationEval::predict`] with another generator (a seq2seq model's greedy
    /// decoding): `generate` maps a batch of prompts to the new tokens of each, without
    /// the EOS that ended it.
    pub fn predict_with(
        &self,
        generate: impl Fn(&[Vec<u32>]) -> Result<Vec<Vec<u32>>>,
    ) -> Result<Vec<Prediction>> {
        let mut out = Vec::with_capacity(self.prompts.len());
        for (prompts, answers) in self
            .prompts
            .chunks(self.batch_size.max(1))
            .zip(self.answers.chunks(self.batch_size.max(1)))
        {
            let generated = generate(prompts)?;
            for ((p, gold), new) in prompts.iter().zip(answers).zip(generated) {
                let prediction = self.tokenizer.decode(&new, true)?;
                out.push(Prediction {
                    prompt: self.tokenizer.decode(p, false)?,
                    gold: gold.clone(),
                    exact_match: normalise(&prediction) == normalise(gold),
                    ended_with_eos: ended_with_eos(
                        new.len() < self.options.max_new_tokens,
                        &prediction,
                    ),
                    prediction,
                });
            }
        }
        Ok(out)
    }
}

/// Whether a generated answer counts as "ended with EOS" in the reports: generation
/// `stopped` before the length limit AND the answer has some text. An empty (or
/// whitespace-only) answer, EOS at once, is a failure: otherwise a model that answers
/// nothing would score 100 %.
pub fn ended_with_eos(stopped: bool, answer: &str) -> bool {
    stopped && !answer.trim().is_empty()
}

/// Whitespace-insensitive form for exact match.
pub fn normalise(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Exact match and EOS rate of predictions.
pub fn scores(p: &[Prediction]) -> (f64, f64) {
    let n = p.len().max(1) as f64;
    (
        p.iter().filter(|x| x.exact_match).count() as f64 / n,
        p.iter().filter(|x| x.ended_with_eos).count() as f64 / n,
    )
}

/// Mean ROUGE-1/2/L F1 of predictions against their gold answers.
pub fn rouge_scores(p: &[Prediction]) -> [f64; 3] {
    let pairs: Vec<(&str, &str)> = p
        .iter()
        .map(|x| (x.gold.as_str(), x.prediction.as_str()))
        .collect();
    crate::metrics::rouge_f1(&pairs)
}

/// SFT as a [`Task`] of the shared Trainer.
#[derive(Debug)]
pub struct SftTask {
    /// Training examples.
    pub train: Vec<Encoded>,
    /// Training rows (example indices; several when packed).
    pub rows: Vec<Vec<usize>>,
    /// Validation examples, one per row.
    pub val: Vec<Encoded>,
    /// Rows per micro-batch.
    pub batch_size: usize,
    /// Padding token.
    pub pad: u32,
    /// Packed rows (block-diagonal attention).
    pub pack: bool,
    /// Seed of the data order.
    pub seed: u64,
    /// Exact match by generation at every evaluation.
    pub generation: Option<GenerationEval>,
}

impl Task for SftTask {
    type Model = DecoderLm;
    type Batch = LmBatch;
    fn loss_label(&self) -> &'static str {
        "cross-entropy of the responses (nats/token)"
    }
    fn key_metric(&self) -> Option<(&'static str, &'static str)> {
        self.generation
            .as_ref()
            .map(|_| ("eval/exact_match", "held-out exact match"))
    }

    fn batch(
        &self,
        _: &DecoderLm,
        step: usize,
        micro: usize,
        per_step: usize,
    ) -> manabi_objectives::Result<LmBatch> {
        let g = step * per_step + micro;
        let idx = encode::schedule(self.rows.len(), self.batch_size, g, self.seed);
        let rows: Vec<&[usize]> = idx.iter().map(|&i| self.rows[i].as_slice()).collect();
        Ok(encode::batch(&self.train, &rows, self.pad, self.pack))
    }

    fn val_batch(&self, i: usize) -> manabi_objectives::Result<LmBatch> {
        let ids: Vec<[usize; 1]> = encode::val_indices(self.val.len(), self.batch_size, i)
            .into_iter()
            .map(|k| [k])
            .collect();
        let rows: Vec<&[usize]> = ids.iter().map(|r| r.as_slice()).collect();
        Ok(encode::batch(&self.val, &rows, self.pad, false))
    }

    fn loss(
        &self,
        model: &DecoderLm,
        batch: &LmBatch,
        device: &Device,
    ) -> manabi_objectives::Result<TaskLoss> {
        Ok(TaskLoss::new(clm_loss_sum(model, batch, device)))
    }

    fn targets(batch: &LmBatch) -> usize {
        batch.target_count()
    }

    fn tokens(batch: &LmBatch) -> usize {
        batch.batch * batch.seq
    }

    fn evaluate(
        &self,
        model: &DecoderLm,
        _device: &Device,
    ) -> manabi_objectives::Result<Vec<(String, f64)>> {
        let Some(g) = &self.generation else {
            return Ok(Vec::new());
        };
        let p = g.predict(model)?;
        Ok(generation_metrics(&p, g.rouge))
    }
}

/// The `eval/…` metrics of generated answers: exact match, EOS rate, and ROUGE-1/2/L F1
/// with `rouge`.
pub fn generation_metrics(p: &[Prediction], rouge: bool) -> Vec<(String, f64)> {
    let (em, eos) = scores(p);
    let mut out = vec![("exact_match".into(), em), ("eos_rate".into(), eos)];
    if rouge {
        let r = rouge_scores(p);
        out.extend(
            ["rouge1", "rouge2", "rougeL"]
                .iter()
                .map(|k| k.to_string())
                .zip(r),
        );
    }
    out
}

/// Rendered examples with the trained text marked `⟦…⟧`, for `--dry-run`.
pub fn show_examples(set: &EncodedSet, tokenizer: &TextTokenizer, n: usize) -> Result<String> {
    let mut out = String::new();
    for (k, e) in set.examples.iter().take(n).enumerate() {
        out.push_str(&format!(
            "── example {k} ({} tokens, {} trained)\n",
            e.tokens.len(),
            e.trained.iter().filter(|&&t| t).count()
        ));
        let mut start = 0;
        while start < e.tokens.len() {
            let t = e.trained[start];
            let end = (start..e.tokens.len())
                .find(|&i| e.trained[i] != t)
                .unwrap_or(e.tokens.len());
            let text = tokenizer.decode(&e.tokens[start..end], false)?;
            if t {
                out.push_str(&format!("⟦{text}⟧"));
            } else {
                out.push_str(&text);
            }
            start = end;
        }
        out.push('\n');
    }
    Ok(out)
}

/// Segments of a record, for callers that render without encoding.
pub fn render(template: &Template, record: &Record) -> Result<Vec<Segment>> {
    template.render(record)
}

/// Writes predictions as JSONL.
pub fn write_predictions(path: &Path, predictions: &[Prediction]) -> Result<()> {
    let mut text = String::new();
    for p in predictions {
        text.push_str(&serde_json::to_string(p).map_err(|e| FinetuneError::io(path, e))?);
        text.push('\n');
    }
    manabi_tokenize::write_atomic(path, text.as_bytes())?;
    Ok(())
}
