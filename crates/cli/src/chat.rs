//! `manabi chat`: a conversation with a decoder in the terminal, in the model's own chat
//! template (rendered as `transformers`' `apply_chat_template`), streamed token by token,
//! with the KV cache kept across turns.
//!
//! Each turn renders the whole conversation, encodes it and continues it. The keys and
//! values of the tokens the new prompt shares with the last one (and its answer) are
//! reused, the rest computed ([`manabi_model::generate::generate_cached`]), so a turn costs
//! its own tokens, not the conversation's, and the answer is what a fresh pass would give.

use std::io::{BufRead, IsTerminal, Write};
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};

use clap::Args;
use manabi_model::generate::{SequenceCache, generate_cached};
use manabi_model::{DecoderLm, DeviceChoice, GenerateOptions};
use manabi_tokenize::{ChatTemplate, Message, SpecialTokens, TextTokenizer};

#[derive(Debug, Args)]
pub struct ChatArgs {
    /// Model folder (manabi checkpoint, run folder or Hugging Face).
    #[arg(long)]
    pub model: PathBuf,
    /// tokenizer.json (default: the one in the model folder).
    #[arg(long)]
    pub tokenizer: Option<PathBuf>,
    /// A PEFT LoRA or IA³ adapter folder (adapter_config.json + adapter_model.safetensors) to
    /// apply to the model.
    #[arg(long)]
    pub adapter: Option<PathBuf>,
    /// System message at the start of the conversation (`/system TEXT` changes it).
    #[arg(long)]
    pub system: Option<String>,
    /// One user turn: print the answer and exit (stdin is not read).
    #[arg(long)]
    pub once: Option<String>,
    /// Most tokens per answer (fewer when the conversation nears the model's positions).
    #[arg(long, default_value_t = 256)]
    pub max_new_tokens: usize,
    #[command(flatten)]
    pub sampling: crate::model_cmd::SamplingArgs,
    /// Recompute the whole conversation at every step instead of keeping the KV cache.
    #[arg(long)]
    pub no_cache: bool,
    /// Print each rendered prompt (and how much of it came from the cache) and each
    /// answer's length to stderr.
    #[arg(long)]
    pub show_prompt: bool,
}

/// Printed at the start of an interactive chat (stderr).
const HELP: &str = "/reset starts a new conversation, /system TEXT sets the system message \
                    (/system alone removes it), /exit or Ctrl-D ends; // sends a line that starts with /";

pub fn run(args: &ChatArgs, device: Option<DeviceChoice>) -> anyhow::Result<()> {
    let found = manabi_model::locate(&args.model)?;
    if !found.is_decoder() {
        anyhow::bail!(
            "{}: a {} model does not chat (chat needs a GPT-2 or Llama-family decoder)",
            found.dir.display(),
            found.family
        );
    }
    let mut opts = args.sampling.apply(GenerateOptions {
        max_new_tokens: args.max_new_tokens,
        use_cache: !args.no_cache,
        ..GenerateOptions::default()
    });
    opts.validate()?;
    let device = device.unwrap_or(DeviceChoice::Cpu).resolve()?;
    let dir = &found.dir;
    let model = crate::model_cmd::load_decoder(dir, args.adapter.as_ref(), &device)?;
    let tok =
        crate::model_cmd::tokenizer_for(dir, args.tokenizer.as_ref(), model.config().vocab_size)?;
    let (template, own) = template_of(dir)?;
    // The folder's EOS ids (as `manabi generate` stops), and the token the template ends
    // an assistant turn with.
    opts.eos_ids = crate::model_cmd::stop_ids(dir, &tok, None)?;
    if let Some(id) = end_of_turn(&template, &tok)
        && !opts.eos_ids.contains(&id)
    {
        opts.eos_ids.push(id);
    }
    let interactive = args.once.is_none() && std::io::stdin().is_terminal();
    if !own && (interactive || args.show_prompt) {
        eprintln!(
            "note: {} has no chat template (chat_template.jinja or tokenizer_config.json): \
             using manabi's chat format (<|user|> … <|end|>)",
            dir.display()
        );
    }
    let mut chat = Chat {
        model,
        tok,
        template,
        system: args.system.clone(),
        history: Vec::new(),
        cache: SequenceCache::new(),
        opts,
        answers: 0,
        show_prompt: args.show_prompt,
    };
    let mut out = std::io::stdout();
    if let Some(text) = &args.once {
        return chat.turn(text, &mut out);
    }
    if interactive {
        eprintln!("chat with {}: {HELP}", dir.display());
    }
    let mut stdin = std::io::stdin().lock();
    let mut line = String::new();
    loop {
        if interactive {
            write!(out, "> ")?;
            out.flush()?;
        }
        line.clear();
        if stdin
            .read_line(&mut line)
            .map_err(|e| anyhow::anyhow!("stdin: {e}"))?
            == 0
        {
            if interactive {
                writeln!(out)?;
            }
            return Ok(());
        }
        match Input::parse(&line) {
            Input::Blank => {}
            Input::Exit => return Ok(()),
            Input::Reset => {
                chat.reset();
                if interactive {
                    eprintln!("(new conversation)");
                }
            }
            Input::System(text) => chat.system = text.map(str::to_string),
            Input::Unknown(name) => {
                eprintln!("unknown command /{name}: {HELP}");
            }
            Input::Say(text) => {
                if let Err(e) = chat.turn(text, &mut out) {
                    // At the terminal a failed turn is reported and forgotten; in a
                    // script it ends the run with the error.
                    if !interactive {
                        return Err(e);
                    }
                    eprintln!("error: {e:#}");
                }
            }
        }
    }
}

/// The model folder's chat template, and whether it is its own (`false`: the folder has
/// none, and manabi's chat format — what `manabi sft` trains on chat data — is used).
fn template_of(dir: &Path) -> anyhow::Result<(ChatTemplate, bool)> {
    if let Some(t) = ChatTemplate::from_model_dir(dir)? {
        return Ok((t, true));
    }
    let manabi = ChatTemplate::from_source(
        manabi_finetune::sft::template::HF_CHAT_TEMPLATE,
        "manabi chat format",
        SpecialTokens::default(),
    )?;
    Ok((manabi, false))
}

/// Tokens that end assistant turns in common templates, looked for besides the
/// tokenizer's special tokens and the template's own (`eos_token`, …).
const END_OF_TURN_NAMES: [&str; 8] = [
    "<|eot_id|>",
    "<|im_end|>",
    "<end_of_turn>",
    "<|end|>",
    "<|endoftext|>",
    "<|end_of_text|>",
    "</s>",
    "<eos>",
];

/// Stands for an answer when the template is asked what follows one.
const PROBE: &str = "manabi-chat-probe";

/// The id of the token `template` ends an assistant turn with (`<|eot_id|>`,
/// `<|im_end|>`, `<end_of_turn>`, `</s>`, `<|end|>`, …), if it is one token of `tok`.
fn end_of_turn(template: &ChatTemplate, tok: &TextTokenizer) -> Option<u32> {
    let names: Vec<String> = tok
        .special_tokens()
        .into_values()
        .chain(template.special_tokens().iter().map(|(_, t)| t.to_string()))
        .chain(END_OF_TURN_NAMES.map(str::to_string))
        .filter(|name| tok.token_id(name).is_some())
        .collect();
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    tok.token_id(&end_of_turn_text(template, &names)?)
}

/// The first of `names` in what `template` renders right after an assistant message's
/// text (the longest where two start at the same place); `None` when the template
/// cannot render a user + assistant exchange or puts none of them there.
fn end_of_turn_text(template: &ChatTemplate, names: &[&str]) -> Option<String> {
    let turn = [Message::new("user", "Hi"), Message::new("assistant", PROBE)];
    let text = template.render(&turn, false).ok()?;
    let after = &text[text.rfind(PROBE)? + PROBE.len()..];
    names
        .iter()
        .filter(|n| !n.is_empty())
        .filter_map(|n| after.find(n).map(|at| (at, *n)))
        .min_by(|a, b| a.0.cmp(&b.0).then(b.1.len().cmp(&a.1.len())))
        .map(|(_, n)| n.to_string())
}

/// One line of input.
#[derive(Debug, PartialEq, Eq)]
enum Input<'a> {
    /// A user turn.
    Say(&'a str),
    /// `/reset`.
    Reset,
    /// `/system TEXT` (`None`: `/system` alone).
    System(Option<&'a str>),
    /// `/exit` or `/quit`.
    Exit,
    /// Another `/word`.
    Unknown(&'a str),
    /// Nothing but whitespace.
    Blank,
}

impl<'a> Input<'a> {
    fn parse(line: &'a str) -> Self {
        let line = line.trim();
        if line.is_empty() {
            return Self::Blank;
        }
        let Some(rest) = line.strip_prefix('/') else {
            return Self::Say(line);
        };
        if rest.starts_with('/') {
            return Self::Say(rest);
        }
        let (name, arg) = rest.split_once(char::is_whitespace).unwrap_or((rest, ""));
        let arg = arg.trim();
        match name {
            "exit" | "quit" => Self::Exit,
            "reset" => Self::Reset,
            "system" => Self::System((!arg.is_empty()).then_some(arg)),
            _ => Self::Unknown(name),
        }
    }
}

/// A conversation with one model.
struct Chat {
    model: DecoderLm,
    tok: TextTokenizer,
    template: ChatTemplate,
    system: Option<String>,
    /// User and assistant turns so far.
    history: Vec<Message>,
    /// Keys and values of the last prompt and its answer.
    cache: SequenceCache,
    opts: GenerateOptions,
    /// Answers given in this conversation (each one's seed is `seed + answers`).
    answers: u64,
    show_prompt: bool,
}

impl Chat {
    /// Starts a new conversation with the same system message. The cache is kept: a new
    /// prompt reuses only what it shares with the old one (the system message, say).
    fn reset(&mut self) {
        self.history.clear();
        self.answers = 0;
    }

    /// Answers `text`, streaming the answer to `out` as it is generated, and adds both to
    /// the conversation.
    fn turn(&mut self, text: &str, out: &mut impl Write) -> anyhow::Result<()> {
        let user = Message::new("user", text);
        let mut messages: Vec<Message> = self
            .system
            .iter()
            .map(|s| Message::new("system", s.as_str()))
            .collect();
        messages.extend(self.history.iter().cloned());
        messages.push(user.clone());
        let prompt = self.template.render(&messages, true)?;
        let ids = self.tok.encode(&prompt)?;
        let positions = self.model.config().max_positions;
        let room = positions.saturating_sub(self.model.virtual_tokens() + ids.len());
        if room == 0 {
            anyhow::bail!(
                "the conversation is {} tokens, the model holds {positions}: /reset starts a new one",
                ids.len()
            );
        }
        let opts = GenerateOptions {
            max_new_tokens: self.opts.max_new_tokens.min(room),
            seed: self.opts.seed.wrapping_add(self.answers),
            ..self.opts.clone()
        };
        if self.show_prompt {
            let cached = if opts.use_cache {
                self.cache.reusable(&ids)
            } else {
                0
            };
            eprintln!(
                "[prompt: {} tokens, {cached} from the cache]\n{prompt}",
                ids.len()
            );
        }
        let mut stream = TextStream::default();
        let mut failed: Option<anyhow::Error> = None;
        let tok = &self.tok;
        let new = generate_cached(&self.model, &ids, &opts, None, &mut self.cache, |id| {
            let shown = stream.push(tok, id).and_then(|piece| {
                out.write_all(piece.as_bytes())?;
                out.flush()?;
                Ok(())
            });
            match shown {
                Ok(()) => ControlFlow::Continue(()),
                Err(e) => {
                    failed = Some(e);
                    ControlFlow::Break(())
                }
            }
        })?;
        if let Some(e) = failed {
            return Err(e);
        }
        writeln!(out, "{}", stream.finish(tok)?)?;
        out.flush()?;
        let limited = new.len() == opts.max_new_tokens;
        if self.show_prompt {
            let why = if limited {
                "the token limit"
            } else {
                "an end token"
            };
            eprintln!("[answer: {} tokens, stopped at {why}]", new.len());
        }
        if limited && opts.max_new_tokens < self.opts.max_new_tokens {
            eprintln!(
                "note: the conversation fills the model's {positions} positions: /reset starts a new one"
            );
        }
        let answer = self.tok.decode(&new, true)?;
        self.history.push(user);
        // Kept as the template writes an assistant turn: without the space the model put
        // after the role marker (the template has its own).
        self.history.push(Message::new("assistant", answer.trim()));
        self.answers += 1;
        Ok(())
    }
}

/// The text of a growing sequence of tokens, handed out as it becomes final (the way
/// text-generation-inference streams): each new piece is the decoded window
/// `ids[prefix..]` minus the decoded `ids[prefix..read]`, so a decoder that treats the
/// first token of a text differently (SentencePiece's leading space) sees the same
/// context both times, and nothing is handed out while the text ends in U+FFFD, which is
/// a character whose bytes are split over tokens (byte-level BPE, byte fallback) not yet
/// complete — Japanese text prints whole characters.
#[derive(Debug, Default)]
struct TextStream {
    ids: Vec<u32>,
    prefix: usize,
    read: usize,
}

impl TextStream {
    /// Adds `id`; returns the text that became final (often empty).
    fn push(&mut self, tok: &TextTokenizer, id: u32) -> anyhow::Result<String> {
        self.ids.push(id);
        let before = tok.decode(&self.ids[self.prefix..self.read], true)?;
        let now = tok.decode(&self.ids[self.prefix..], true)?;
        if now.ends_with(char::REPLACEMENT_CHARACTER) {
            return Ok(String::new());
        }
        match now.strip_prefix(before.as_str()) {
            Some(new) if !new.is_empty() => {
                self.prefix = self.read;
                self.read = self.ids.len();
                Ok(new.to_string())
            }
            _ => Ok(String::new()),
        }
    }

    /// What is left when the sequence ends (an incomplete character prints as U+FFFD).
    fn finish(&mut self, tok: &TextTokenizer) -> anyhow::Result<String> {
        let before = tok.decode(&self.ids[self.prefix..self.read], true)?;
        let now = tok.decode(&self.ids[self.prefix..], true)?;
        self.prefix = self.ids.len();
        self.read = self.ids.len();
        let shared = before
            .char_indices()
            .zip(now.chars())
            .find(|((_, a), b)| a != b)
            .map_or(before.len().min(now.len()), |((at, _), _)| at);
        Ok(now.get(shared..).unwrap_or_default().to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(path: &str) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../fixtures")
            .join(path)
    }

    #[test]
    fn the_end_of_turn_is_what_follows_an_answer() {
        for (name, want) in [
            ("gemma-2", "<end_of_turn>"),
            ("llama-3.1", "<|eot_id|>"),
            ("llm-jp-3", "</s>"),
            ("mistral-v0.3", "</s>"),
            ("qwen2.5", "<|im_end|>"),
        ] {
            let t = ChatTemplate::load(fixture("chat_templates").join(name)).unwrap();
            let mut names: Vec<&str> = t.special_tokens().iter().map(|(_, s)| s).collect();
            names.extend(END_OF_TURN_NAMES);
            assert_eq!(
                end_of_turn_text(&t, &names).as_deref(),
                Some(want),
                "{name}"
            );
        }
        let (manabi, own) = template_of(&fixture("models/llama-eval")).unwrap();
        assert!(!own, "llama-eval has no chat template");
        assert_eq!(
            end_of_turn_text(&manabi, &END_OF_TURN_NAMES).as_deref(),
            Some("<|end|>")
        );
        assert_eq!(end_of_turn_text(&manabi, &["<|im_end|>"]), None);
    }

    #[test]
    fn streamed_text_is_whole_characters() {
        // llama-eval's tokenizer is a byte-level BPE of 512 tokens: each kana and kanji
        // is split over three byte tokens.
        let tok = TextTokenizer::load(fixture("models/llama-eval/tokenizer.json")).unwrap();
        let text = "日本語のテスト, and some English.";
        let ids = tok.encode(text).unwrap();
        let mut stream = TextStream::default();
        let mut pieces = Vec::new();
        for &id in &ids {
            pieces.push(stream.push(&tok, id).unwrap());
        }
        pieces.push(stream.finish(&tok).unwrap());
        assert!(
            pieces
                .iter()
                .all(|p| !p.contains(char::REPLACEMENT_CHARACTER)),
            "{pieces:?}"
        );
        assert_eq!(pieces.concat(), text);
        assert!(pieces.iter().filter(|p| !p.is_empty()).count() > 10);

        // A sequence that stops inside a character ends with U+FFFD, as decoding does.
        let both = tok.encode("日本").unwrap();
        let cut = &both[..5];
        let mut stream = TextStream::default();
        let mut shown: String = cut
            .iter()
            .map(|&id| stream.push(&tok, id).unwrap())
            .collect();
        assert_eq!(shown, "日");
        shown.push_str(&stream.finish(&tok).unwrap());
        assert_eq!(shown, tok.decode(cut, true).unwrap());
        assert_eq!(shown, "日\u{fffd}");
    }

    #[test]
    fn lines_are_turns_or_commands() {
        assert_eq!(Input::parse("  hello there \n"), Input::Say("hello there"));
        assert_eq!(Input::parse("\n"), Input::Blank);
        assert_eq!(Input::parse("/reset\n"), Input::Reset);
        assert_eq!(Input::parse("/exit"), Input::Exit);
        assert_eq!(Input::parse("/quit"), Input::Exit);
        assert_eq!(
            Input::parse("/system  Be brief. \n"),
            Input::System(Some("Be brief."))
        );
        assert_eq!(Input::parse("/system"), Input::System(None));
        assert_eq!(Input::parse("/usr/bin"), Input::Unknown("usr/bin"));
        assert_eq!(Input::parse("//usr/bin"), Input::Say("/usr/bin"));
    }
}
