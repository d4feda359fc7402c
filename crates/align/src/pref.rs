//! Preference data in TRL's conventions: `{"prompt", "chosen", "rejected"}`; implicit
//! prompts `{"chosen", "rejected"}` (the shared beginning is the prompt); conversational
//! message lists (rendered with manabi's chat template); and ranked lists
//! `{"prompt", "responses": [best, …, worst]}` expanded into every ordered pair.

use std::path::PathBuf;

use manabi_finetune::sft::data::Format;
use manabi_finetune::sft::data::Message;
use manabi_finetune::sft::template::{END_OF_TURN, Template, TemplateConfig, joined};
use manabi_tokenize::TextTokenizer;
use serde_json::Value;

use crate::error::{AlignError, Result};

/// One preference: the prompt and two completions, the first preferred.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pair {
    /// The prompt text (chat prompts end with the assistant header).
    pub prompt: String,
    /// The preferred completion.
    pub chosen: String,
    /// The other completion.
    pub rejected: String,
    /// The messages of a conversational pair, which a model with its own chat template
    /// renders with it ([`tokenize`]); the texts above are manabi's rendering.
    pub chat: Option<ChatPair>,
}

/// A conversational preference's messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChatPair {
    /// The conversation before the answer.
    pub prompt: Vec<manabi_tokenize::Message>,
    /// The preferred assistant message.
    pub chosen: manabi_tokenize::Message,
    /// The other one.
    pub rejected: manabi_tokenize::Message,
}

/// Reads preference files of any of the supported layouts (detected per line).
pub fn read_pairs(paths: &[PathBuf]) -> Result<Vec<Pair>> {
    let mut out = Vec::new();
    for path in paths {
        let before = out.len();
        for record in manabi_tokenize::read_jsonl(path) {
            let manabi_tokenize::JsonLine { line, value } = record?;
            let bad = |message: String| AlignError::Data {
                path: path.clone(),
                line,
                message,
            };
            out.extend(parse(&value).map_err(bad)?);
        }
        if out.len() == before {
            return Err(AlignError::io(path, "no preference pairs in the file"));
        }
    }
    Ok(out)
}

fn text(v: &Value, field: &str) -> std::result::Result<String, String> {
    match v.get(field) {
        Some(Value::String(s)) if !s.trim().is_empty() => Ok(s.clone()),
        Some(Value::String(_)) => Err(format!("field `{field}` is empty")),
        Some(_) => Err(format!("field `{field}` must be a string")),
        None => Err(format!("missing field `{field}`")),
    }
}

fn messages(v: &Value, field: &str) -> std::result::Result<Vec<Message>, String> {
    serde_json::from_value(v[field].clone())
        .map_err(|e| format!("field `{field}`: {e} (expected [{{\"role\", \"content\"}}, …])"))
}

/// The pairs of one JSON object.
pub fn parse(v: &Value) -> std::result::Result<Vec<Pair>, String> {
    let o = v.as_object().ok_or("expected a JSON object")?;
    if let Some(list) = o.get("responses") {
        let prompt = text(v, "prompt")?;
        let list = list
            .as_array()
            .ok_or("field `responses` must be a list of strings")?;
        let responses: Vec<&str> = list.iter().filter_map(Value::as_str).collect();
        if responses.len() != list.len() || responses.len() < 2 {
            return Err("field `responses` must hold at least two strings, best first".into());
        }
        for (i, r) in responses.iter().enumerate() {
            if r.trim().is_empty() {
                return Err(format!(
                    "field `responses`: response {} of {} is empty",
                    i + 1,
                    responses.len()
                ));
            }
            if let Some(j) = responses[..i].iter().position(|x| x == r) {
                return Err(format!(
                    "field `responses`: responses {} and {} (counting from 1) are the same text",
                    j + 1,
                    i + 1
                ));
            }
        }
        let mut pairs = Vec::new();
        for i in 0..responses.len() {
            for j in i + 1..responses.len() {
                pairs.push(Pair {
                    prompt: prompt.clone(),
                    chosen: responses[i].to_string(),
                    rejected: responses[j].to_string(),
                    chat: None,
                });
            }
        }
        return Ok(pairs);
    }
    let conversational = o.get("chosen").is_some_and(Value::is_array);
    if conversational {
        let t = Template::new(TemplateConfig::default(), Format::Messages)
            .map_err(|e| e.to_string())?;
        let prompt_msgs = if o.contains_key("prompt") {
            messages(v, "prompt")?
        } else {
            Vec::new()
        };
        let reply = |field: &str| -> std::result::Result<String, String> {
            let m = messages(v, field)?;
            match m.as_slice() {
                [one] if one.role == manabi_finetune::sft::data::Role::Assistant => {
                    if one.content.trim().is_empty() {
                        return Err(format!("field `{field}`: the assistant message is empty"));
                    }
                    Ok(format!("{}{END_OF_TURN}", one.content))
                }
                _ => Err(format!("field `{field}` must hold one assistant message")),
            }
        };
        let as_msg = |m: &Message| manabi_tokenize::Message::new(m.role.as_str(), &m.content);
        let only = |field: &str| -> std::result::Result<manabi_tokenize::Message, String> {
            Ok(as_msg(&messages(v, field)?[0]))
        };
        return distinct(Pair {
            prompt: joined(&t.render_chat(&prompt_msgs, true)),
            chosen: reply("chosen")?,
            rejected: reply("rejected")?,
            chat: Some(ChatPair {
                prompt: prompt_msgs.iter().map(as_msg).collect(),
                chosen: only("chosen")?,
                rejected: only("rejected")?,
            }),
        });
    }
    let chosen = text(v, "chosen")?;
    let rejected = text(v, "rejected")?;
    if o.contains_key("prompt") {
        return distinct(Pair {
            prompt: text(v, "prompt")?,
            chosen,
            rejected,
            chat: None,
        });
    }
    if chosen == rejected {
        return Err(SAME.into());
    }
    // Implicit prompt: the longest shared beginning, cut back to a character boundary.
    let shared = chosen
        .char_indices()
        .zip(rejected.chars())
        .take_while(|((_, a), b)| a == b)
        .last()
        .map_or(0, |((i, c), _)| i + c.len_utf8());
    if shared == 0 {
        return Err("`chosen` and `rejected` share no prompt; give a `prompt` field".into());
    }
    for (field, rest) in [
        ("chosen", &chosen[shared..]),
        ("rejected", &rejected[shared..]),
    ] {
        if rest.trim().is_empty() {
            return Err(format!(
                "`{field}` is empty once the shared prompt \"{}\" is split off; give a \
                 `prompt` field",
                &chosen[..shared]
            ));
        }
    }
    distinct(Pair {
        prompt: chosen[..shared].to_string(),
        chosen: chosen[shared..].to_string(),
        rejected: rejected[shared..].to_string(),
        chat: None,
    })
}

/// The refusal of a pair whose two completions are one text: it teaches nothing (its
/// margin is zero whatever the model), and in data it is a copying mistake.
const SAME: &str = "chosen and rejected are the same text";

/// `pair` as the one pair of a line, unless its completions are the same text.
fn distinct(pair: Pair) -> std::result::Result<Vec<Pair>, String> {
    if pair.chosen == pair.rejected {
        return Err(SAME.into());
    }
    Ok(vec![pair])
}

/// A tokenised pair: prompt ids and both completions (EOS appended).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenPair {
    /// Prompt tokens, starting with the tokenizer's BOS when its post-processor adds one.
    pub prompt: Vec<u32>,
    /// Chosen completion tokens, EOS last (then the tokenizer's suffix, if any).
    pub chosen: Vec<u32>,
    /// Rejected completion tokens, EOS last (then the tokenizer's suffix, if any).
    pub rejected: Vec<u32>,
}

/// Length of the longest common beginning of `a` and `b`.
fn shared_prefix(a: &[u32], b: &[u32]) -> usize {
    a.iter().zip(b).take_while(|(x, y)| x == y).count()
}

/// `prompt + completion` tokenised as one text, followed by `eos` unless it already ends
/// with it, with the special tokens the tokenizer's post-processor adds around a
/// sequence: TRL's `processing_class(text=prompt + completion + eos_token)` (its
/// `add_eos` leaves a completion that ends with the EOS text alone). What the reward
/// model and the DPO pairs are both built from.
pub fn joint_ids(
    tokenizer: &TextTokenizer,
    prompt: &str,
    completion: &str,
    eos: u32,
) -> Result<Vec<u32>> {
    let mut ids = tokenizer.encode(&format!("{prompt}{completion}"))?;
    if ids.last() != Some(&eos) {
        ids.push(eos);
    }
    Ok(tokenizer.frame(ids))
}

/// Tokenises pairs as TRL's `DPOTrainer` does (TRL 1.x, `_prepare_dataset`): the prompt
/// alone and prompt + completion jointly ([`joint_ids`]), each with the special tokens
/// of the tokenizer's post-processor (`add_special_tokens=True`: a Llama-style BOS
/// first, an EOS last with `add_eos_token`); the completion starts where the prompt's ids
/// and both joint tokenisations first differ, so a token that merges across the
/// boundary (a prompt ending in a space or mid-word) belongs to the completion and the
/// prompt keeps the shared ids only. Each sequence is kept within `max_len` tokens by
/// cutting the prompt from the left, after its BOS. Returns the pairs and how many
/// prompts were cut and pairs dropped.
pub fn tokenize(
    pairs: &[Pair],
    tokenizer: &TextTokenizer,
    eos: u32,
    max_len: usize,
    template: Option<&manabi_tokenize::ChatTemplate>,
) -> Result<(Vec<TokenPair>, usize, usize)> {
    let (mut cut, mut dropped) = (0, 0);
    let mut out = Vec::with_capacity(pairs.len());
    for p in pairs {
        // A conversational pair for a model with its own template: TRL's rendering.
        let (mut prompt, chosen, rejected) = match (&p.chat, template) {
            (Some(c), Some(t)) => {
                let tp = tokenize_chat_pair(t, tokenizer, &c.prompt, &c.chosen, &c.rejected)?;
                (tp.prompt, tp.chosen, tp.rejected)
            }
            _ => {
                let alone = tokenizer.encode_with_specials(&p.prompt)?;
                let with_chosen = joint_ids(tokenizer, &p.prompt, &p.chosen, eos)?;
                let with_rejected = joint_ids(tokenizer, &p.prompt, &p.rejected, eos)?;
                let start =
                    shared_prefix(&alone, &with_chosen).min(shared_prefix(&alone, &with_rejected));
                (
                    alone[..start].to_vec(),
                    with_chosen[start..].to_vec(),
                    with_rejected[start..].to_vec(),
                )
            }
        };
        // The BOS (or whatever the tokenizer puts first) stays when the prompt is cut.
        let bos = tokenizer.specials_prefix();
        let keep = if prompt.starts_with(bos) {
            bos.len()
        } else {
            0
        };
        let longest = chosen.len().max(rejected.len());
        if longest + keep.max(1) > max_len {
            dropped += 1;
            continue;
        }
        if prompt.len() + longest > max_len {
            let excess = prompt.len() + longest - max_len;
            prompt.drain(keep..keep + excess);
            cut += 1;
        }
        if prompt.is_empty() {
            dropped += 1;
            continue;
        }
        out.push(TokenPair {
            prompt,
            chosen,
            rejected,
        });
    }
    Ok((out, cut, dropped))
}

/// A conversational pair tokenised with the model's own chat template, as TRL 1.16's
/// `DPOTrainer` (`tokenize_fn`, conversational case) does: the prompt messages rendered
/// with the generation prompt, and prompt + chosen and prompt + rejected rendered whole,
/// each tokenised as `apply_chat_template(tokenize=True)` does (no special tokens added:
/// the template writes its own BOS); the completions start where the prompt's ids and
/// both joint ids first differ (`common_prefix_length`), and no EOS is appended (the
/// template ends the assistant turn with its own end-of-turn token).
pub fn tokenize_chat_pair(
    template: &manabi_tokenize::ChatTemplate,
    tokenizer: &TextTokenizer,
    prompt: &[manabi_tokenize::Message],
    chosen: &manabi_tokenize::Message,
    rejected: &manabi_tokenize::Message,
) -> Result<TokenPair> {
    let with = |reply: &manabi_tokenize::Message| -> Result<Vec<u32>> {
        let mut all = prompt.to_vec();
        all.push(reply.clone());
        Ok(tokenizer.encode(&template.render(&all, false)?)?)
    };
    let alone = tokenizer.encode(&template.render(prompt, true)?)?;
    let with_chosen = with(chosen)?;
    let with_rejected = with(rejected)?;
    let start = shared_prefix(&alone, &with_chosen).min(shared_prefix(&alone, &with_rejected));
    Ok(TokenPair {
        prompt: alone[..start].to_vec(),
        chosen: with_chosen[start..].to_vec(),
        rejected: with_rejected[start..].to_vec(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(line: &str) -> std::result::Result<Vec<Pair>, String> {
        parse(&serde_json::from_str(line).unwrap())
    }

    #[test]
    fn every_layout_becomes_pairs() {
        let p = one(r#"{"prompt":"Q:","chosen":" yes","rejected":" no"}"#).unwrap();
        assert_eq!(p[0].prompt, "Q:");
        let p = one(r#"{"chosen":"Q: A yes","rejected":"Q: A no"}"#).unwrap();
        assert_eq!(
            (p[0].prompt.as_str(), p[0].chosen.as_str()),
            ("Q: A ", "yes")
        );
        let p = one(r#"{"prompt":"Q:","responses":[" a"," b"," c"]}"#).unwrap();
        let got: Vec<(&str, &str)> = p
            .iter()
            .map(|p| (p.chosen.as_str(), p.rejected.as_str()))
            .collect();
        assert_eq!(got, [(" a", " b"), (" a", " c"), (" b", " c")]);
        let p = one(r#"{"prompt":[{"role":"user","content":"Hi"}],"chosen":[{"role":"assistant","content":"Hello"}],"rejected":[{"role":"assistant","content":"Go"}]}"#).unwrap();
        assert_eq!(p[0].prompt, "<|user|>\nHi<|end|>\n<|assistant|>\n");
        assert_eq!(p[0].chosen, "Hello<|end|>");
    }

    #[test]
    fn bad_lines_name_the_field() {
        assert!(
            one(r#"{"prompt":"Q:","chosen":" yes"}"#)
                .unwrap_err()
                .contains("`rejected`")
        );
        assert!(
            one(r#"{"prompt":"Q:","chosen":"","rejected":"x"}"#)
                .unwrap_err()
                .contains("`chosen` is empty")
        );
        assert!(
            one(r#"{"prompt":"Q:","responses":[" a"]}"#)
                .unwrap_err()
                .contains("responses")
        );
        assert!(
            one(r#"{"chosen":"abc","rejected":"xyz"}"#)
                .unwrap_err()
                .contains("share no prompt")
        );
    }
}
