//! Conversations rendered with the model's own chat template (`manabi_tokenize::ChatTemplate`,
//! byte-identical to `transformers`' `apply_chat_template`), the loss on assistant turns only.
//!
//! The assistant spans are found without `{% generation %}` markers (which most Hub
//! templates lack, and which TRL 1.16's `assistant_only_loss` needs): for each assistant
//! message `i`, the text that `render(messages[..=i])` adds to
//! `render(messages[..i], add_generation_prompt)` is that turn — its content and the
//! template's end-of-turn text. The first must be a string prefix of the second (and the
//! second of the whole rendering), or the template is refused by name.
//!
//! The whole rendering is tokenised once, without adding special tokens, as
//! `apply_chat_template(tokenize=True)` does in transformers 5.25 (it passes
//! `add_special_tokens=False` whatever the template writes; templates write their BOS
//! text themselves), so the ids are the ones the model sees at inference. Tokens are then
//! marked trained by character offsets (`encode_with_offsets`): a token is trained when
//! its first character lies in an assistant span. Tokenising span by span instead would
//! give other ids wherever a BPE merge crosses a span boundary.

use manabi_tokenize::{ChatTemplate, Message as TemplateMessage, TextTokenizer};

use crate::error::{FinetuneError, Result};
use crate::sft::data::{Message, Role};
use crate::sft::encode::{EncodeStats, Encoded};

/// A conversation rendered by the model's template: the text and the byte spans of its
/// assistant turns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendered {
    /// `apply_chat_template(messages, tokenize=False)`.
    pub text: String,
    /// `[start, end)` byte ranges of `text`, one per assistant message, in order.
    pub assistant: Vec<(usize, usize)>,
}

fn to_template(messages: &[Message]) -> Vec<TemplateMessage> {
    messages
        .iter()
        .map(|m| TemplateMessage::new(m.role.as_str(), m.content.clone()))
        .collect()
}

/// The error for a template whose renderings do not extend each other.
fn not_a_prefix(template: &ChatTemplate, turn: usize, what: &str) -> FinetuneError {
    FinetuneError::io(
        template.path(),
        format!(
            "the chat template renders message {turn} (assistant) so that {what}, so its \
             assistant tokens cannot be found; use a template that renders earlier turns \
             the same way (or remove it to use manabi's own chat format)"
        ),
    )
}

/// The model's own chat template in `dir` (its `chat_template.jinja`, or
/// `tokenizer_config.json`'s `chat_template`), if it has one other than the template
/// manabi writes into its own exports (that one renders manabi's format, which keeps its
/// own path). Conversations of SFT and DPO are rendered with it.
pub fn model_template(dir: &std::path::Path) -> Result<Option<ChatTemplate>> {
    Ok(ChatTemplate::from_model_dir(dir)?
        .filter(|t| t.source().trim_end() != crate::sft::template::HF_CHAT_TEMPLATE))
}

/// Renders `messages` with `template` and finds each assistant turn's span.
pub fn render(template: &ChatTemplate, messages: &[Message]) -> Result<Rendered> {
    let all = to_template(messages);
    let text = template.render(&all, false)?;
    let mut assistant = Vec::new();
    for (i, m) in messages.iter().enumerate() {
        if m.role != Role::Assistant {
            continue;
        }
        let before = template.render(&all[..i], true)?;
        let upto = template.render(&all[..=i], false)?;
        if !upto.starts_with(&before) {
            return Err(not_a_prefix(
                template,
                i,
                "the conversation before it with the generation prompt is not a prefix of the conversation through it",
            ));
        }
        if !text.starts_with(&upto) {
            return Err(not_a_prefix(
                template,
                i,
                "the conversation through it is not a prefix of the whole conversation",
            ));
        }
        assistant.push((before.len(), upto.len()));
    }
    Ok(Rendered { text, assistant })
}

/// Tokens of `rendered` (no special tokens added) and whether each is trained: its first
/// character lies in an assistant span.
pub fn tokens_and_mask(
    tokenizer: &TextTokenizer,
    rendered: &Rendered,
) -> Result<(Vec<u32>, Vec<bool>)> {
    let with_offsets = tokenizer.encode_with_offsets(&rendered.text)?;
    // Byte spans → character spans (the offsets are in characters).
    let char_at = |byte: usize| rendered.text[..byte].chars().count();
    let spans: Vec<(usize, usize)> = rendered
        .assistant
        .iter()
        .map(|&(s, e)| (char_at(s), char_at(e)))
        .collect();
    let mut ids = Vec::with_capacity(with_offsets.len());
    let mut trained = Vec::with_capacity(with_offsets.len());
    for (id, start, _) in with_offsets {
        ids.push(id);
        trained.push(spans.iter().any(|&(s, e)| s <= start && start < e));
    }
    Ok((ids, trained))
}

/// One conversation as a training example under the model's template: the rendering's
/// tokens, assistant turns trained, no EOS appended (the template ends each turn with its
/// own end-of-turn token, trained with the turn; TRL adds none to conversational data).
/// Over `max_tokens`, the conversation loses its first tokens after a leading BOS; it is
/// dropped (`None`) when its final assistant turn alone does not fit.
pub fn encode(
    tokenizer: &TextTokenizer,
    template: &ChatTemplate,
    messages: &[Message],
    max_tokens: usize,
    stats: &mut EncodeStats,
) -> Result<Option<Encoded>> {
    let rendered = render(template, messages)?;
    let (mut tokens, mut trained) = tokens_and_mask(tokenizer, &rendered)?;
    // Nothing to learn from (no assistant turn, or one the template renders empty): not
    // an example, counted with the dropped ones (a zero-token example would make a
    // batch's loss 0 / 0).
    if !trained.iter().skip(1).any(|&t| t) {
        stats.dropped += 1;
        return Ok(None);
    }
    // The final response starts at the last trained run.
    let last = trained.iter().rposition(|&t| t).unwrap_or(tokens.len());
    let mut response_start = trained[..last]
        .iter()
        .rposition(|&t| !t)
        .map_or(0, |i| i + 1);
    let keep = match (tokenizer.bos_id(), tokens.first()) {
        (Some(bos), Some(&first)) if bos == first => 1,
        _ => 0,
    };
    if tokens.len() > max_tokens {
        if tokens.len() - response_start + keep > max_tokens {
            stats.dropped += 1;
            return Ok(None);
        }
        let cut = tokens.len() - max_tokens;
        tokens.drain(keep..keep + cut);
        trained.drain(keep..keep + cut);
        response_start -= cut;
        stats.truncated += 1;
    }
    stats.examples += 1;
    stats.trained_tokens += trained.iter().skip(1).filter(|&&t| t).count();
    Ok(Some(Encoded {
        tokens,
        trained,
        response_start,
    }))
}
