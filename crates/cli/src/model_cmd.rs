//! `manabi generate`, `manabi eval`, `manabi export`: commands that take `--model`
//! (a manabi checkpoint or a Hugging Face folder, detected).

use std::path::{Path, PathBuf};

use anyhow::Context;
use burn::module::Module;
use clap::{Args, ValueEnum};
use manabi_model::{DeviceChoice, Family, GenerateOptions};
use manabi_tokenize::TextTokenizer;

/// Tokens that commonly end a text, in the order they are looked for (only for folders
/// that declare no `eos_token_id`, such as manabi's own checkpoints).
const EOS_CANDIDATES: [&str; 4] = ["<eos>", "<|endoftext|>", "</s>", "<|end|>"];

/// The tokens that end generation from the model at `model`: `--eos-token` when given,
/// else every `eos_token_id` of its `generation_config.json` / `config.json`, else the
/// `eos_token` of its tokenizer_config.json, else the first of [`EOS_CANDIDATES`] the
/// tokenizer has; plus the chat end-of-turn `<|end|>`.
pub(crate) fn stop_ids(
    model: &Path,
    tok: &TextTokenizer,
    eos_token: Option<&String>,
) -> anyhow::Result<Vec<u32>> {
    if let Some(t) = eos_token {
        return Ok(vec![tok.require_token(t)?]);
    }
    let dir = manabi_model::locate(model)?.dir;
    if let Some(ids) = manabi_model::open::eos_ids(&dir)? {
        return Ok(ids);
    }
    let mut ids: Vec<u32> = tok
        .eos_id()
        .into_iter()
        .chain(EOS_CANDIDATES.iter().filter_map(|t| tok.token_id(t)))
        .take(1)
        .collect();
    if let Some(end) = tok.token_id(manabi_finetune::sft::template::END_OF_TURN)
        && !ids.contains(&end)
    {
        ids.push(end);
    }
    Ok(ids)
}

pub(crate) fn tokenizer_for(
    model: &Path,
    explicit: Option<&PathBuf>,
    model_vocab: usize,
) -> anyhow::Result<TextTokenizer> {
    let path = explicit
        .cloned()
        .unwrap_or_else(|| model.join("tokenizer.json"));
    if !path.exists() && explicit.is_none() {
        anyhow::bail!(
            "{}: no tokenizer.json beside the model (hint: pass --tokenizer)",
            path.display()
        );
    }
    let tok = TextTokenizer::load(&path)?;
    manabi_model::open::check_tokenizer(tok.vocab_size(), &path, model_vocab)?;
    Ok(tok)
}

/// How the next token is picked (`generate` and `chat`).
#[derive(Debug, Args)]
pub struct SamplingArgs {
    /// 0 = greedy.
    #[arg(long, default_value_t = 0.0)]
    pub temperature: f32,
    #[arg(long)]
    pub top_k: Option<usize>,
    #[arg(long)]
    pub top_p: Option<f32>,
    #[arg(long, default_value_t = 1.0)]
    pub repetition_penalty: f32,
    /// Sampling seed (`chat`: answer n of a conversation uses seed + n − 1).
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
}

impl SamplingArgs {
    /// These settings on `opts`.
    pub(crate) fn apply(&self, opts: GenerateOptions) -> GenerateOptions {
        GenerateOptions {
            temperature: self.temperature,
            top_k: self.top_k,
            top_p: self.top_p,
            repetition_penalty: self.repetition_penalty,
            seed: self.seed,
            ..opts
        }
    }

    /// Whether anything but greedy decoding was asked for.
    fn samples(&self) -> bool {
        self.temperature != 0.0
            || self.top_k.is_some()
            || self.top_p.is_some()
            || self.repetition_penalty != 1.0
    }
}

#[derive(Debug, Args)]
pub struct GenerateArgs {
    /// Model folder (manabi checkpoint or Hugging Face).
    #[arg(long)]
    pub model: PathBuf,
    /// tokenizer.json (default: the one in the model folder).
    #[arg(long)]
    pub tokenizer: Option<PathBuf>,
    /// Prompt text; repeat for a batch.
    #[arg(long, required = true)]
    pub prompt: Vec<String>,
    #[arg(long, default_value_t = 64)]
    pub max_new_tokens: usize,
    #[arg(long, default_value_t = 0)]
    pub min_new_tokens: usize,
    #[command(flatten)]
    pub sampling: SamplingArgs,
    /// Stop when the generated text contains this string (repeatable).
    #[arg(long)]
    pub stop: Vec<String>,
    /// End-of-text token (default: every `eos_token_id` of the model folder's
    /// generation_config.json / config.json; for a folder without one, the first of <eos>,
    /// <|endoftext|>, </s> present, and <|end|>).
    #[arg(long)]
    pub eos_token: Option<String>,
    /// Recompute every position at every step instead of using the KV cache.
    #[arg(long)]
    pub no_cache: bool,
    /// A PEFT LoRA or IA³ adapter folder (adapter_config.json + adapter_model.safetensors) to
    /// apply to the model.
    #[arg(long)]
    pub adapter: Option<PathBuf>,
    /// Type the weight matrices are kept in: `bf16` halves the memory and, on the CPU,
    /// the bytes read per new token, `int8` quarters them (each product still sums in
    /// f32; the logits move by the rounding of the weights).
    #[arg(long, value_enum, default_value_t = WeightsDtype::F32)]
    pub dtype: WeightsDtype,
}

/// The type `generate` and `eval` keep a model's weight matrices in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum WeightsDtype {
    /// As trained: 32-bit floats.
    F32,
    /// bfloat16 (8-bit mantissa), products summed in f32.
    Bf16,
    /// Weight-only int8, one f32 scale per block of 32 values of a row; products summed
    /// in f32.
    Int8,
}

impl std::fmt::Display for WeightsDtype {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::F32 => "f32",
            Self::Bf16 => "bf16",
            Self::Int8 => "int8",
        })
    }
}

/// `model` with its weight matrices in `dtype` (`--dtype` of `generate` and `eval`):
/// adapters (LoRA, IA³, DoRA) merged into the base first, then the base rounded.
fn with_weights_dtype(
    model: manabi_model::DecoderLm,
    dtype: WeightsDtype,
    device: &burn::tensor::Device,
) -> anyhow::Result<manabi_model::DecoderLm> {
    if dtype == WeightsDtype::F32 {
        return Ok(model);
    }
    if !manabi_model::fused::active_on(device) {
        anyhow::bail!(
            "--dtype {dtype} needs the fused kernels of the flex CPU backend (--device cpu or flex, MANABI_FUSED unset or 1); keep f32 here"
        );
    }
    let model = manabi_finetune::merged(model);
    Ok(match dtype {
        WeightsDtype::F32 => model,
        WeightsDtype::Bf16 => model.with_bf16_base(),
        WeightsDtype::Int8 => model.with_int8_base(),
    })
}

/// A decoder folder (adapters included when its checkpoint records them), with an
/// optional PEFT adapter on top (`--adapter` of `generate`, `eval` and `export`).
pub(crate) fn load_decoder(
    model: &Path,
    adapter: Option<&PathBuf>,
    device: &burn::tensor::Device,
) -> anyhow::Result<manabi_model::DecoderLm> {
    if let Some(dir) = adapter
        && !dir.is_dir()
    {
        anyhow::bail!(
            "{}: no such adapter folder (expected a PEFT adapter: adapter_config.json + adapter_model.safetensors)",
            dir.display()
        );
    }
    let (m, _) = manabi_finetune::load_decoder(model, device)?;
    Ok(match adapter {
        Some(dir) => manabi_finetune::peft::load_adapter(m, dir)?.0,
        None => m,
    })
}

pub fn generate(args: &GenerateArgs, device: DeviceChoice) -> anyhow::Result<()> {
    let device = device.resolve()?;
    let family = manabi_model::locate(&args.model)?.family;
    match family {
        Family::T5 if args.dtype != WeightsDtype::F32 => anyhow::bail!(
            "{}: --dtype {} applies to decoder-only models (GPT-2, LLaMA families), not T5",
            args.model.display(),
            args.dtype
        ),
        Family::T5 => return generate_t5(args, &device),
        Family::Bert => anyhow::bail!(
            "{}: a BERT model does not generate text",
            args.model.display()
        ),
        Family::Gpt2 | Family::Llama => {}
    }
    let model = load_decoder(&args.model, args.adapter.as_ref(), &device)?;
    let model = with_weights_dtype(model, args.dtype, &device)?;
    let tok = tokenizer_for(
        &args.model,
        args.tokenizer.as_ref(),
        model.config().vocab_size,
    )?;
    let eos_ids = stop_ids(&args.model, &tok, args.eos_token.as_ref())?;
    // Left padding is masked out; it only has to be a token the model embeds.
    let vocab = model.config().vocab_size;
    let folder_pad = manabi_model::open::pad_id(&manabi_model::locate(&args.model)?.dir)?;
    let pad_id = tok
        .pad_id()
        .or_else(|| tok.token_id("<pad>"))
        .into_iter()
        .chain(folder_pad)
        .chain(eos_ids.iter().copied())
        .find(|&id| (id as usize) < vocab)
        .unwrap_or(0);
    // As transformers' text-generation pipeline: `tokenizer(prompt)`, the tokenizer's
    // special tokens included (a Llama-style BOS first).
    let prompts = args
        .prompt
        .iter()
        .map(|p| tok.encode_with_specials(p))
        .collect::<Result<Vec<_>, _>>()?;
    let opts = args.sampling.apply(GenerateOptions {
        max_new_tokens: args.max_new_tokens,
        min_new_tokens: args.min_new_tokens,
        eos_ids,
        pad_id,
        stop_strings: args.stop.clone(),
        use_cache: !args.no_cache,
        ..GenerateOptions::default()
    });
    let started = std::time::Instant::now();
    let outputs = manabi_model::generate(&model, &prompts, &opts, Some(&tok))?;
    let secs = started.elapsed().as_secs_f64();
    let mut total = 0;
    for (prompt, out) in args.prompt.iter().zip(&outputs) {
        let mut text = tok.decode(out, true)?;
        if let Some(cut) = args.stop.iter().filter_map(|s| text.find(s.as_str())).min() {
            text.truncate(cut);
        }
        println!("{prompt}{text}");
        total += out.len();
    }
    eprintln!(
        "{total} tokens in {secs:.2} s ({:.1} tokens/s)",
        total as f64 / secs.max(1e-9)
    );
    Ok(())
}

/// T5: greedy decoding of each prompt as an encoder input (append EOS when the tokenizer
/// has one, as T5 inputs end with it).
fn generate_t5(args: &GenerateArgs, device: &burn::tensor::Device) -> anyhow::Result<()> {
    if args.sampling.samples() {
        anyhow::bail!(
            "T5 decoding is greedy only: drop --temperature, --top-k, --top-p and --repetition-penalty"
        );
    }
    let model = manabi_finetune::open(&args.model, device)?.into_t5()?;
    let tok = tokenizer_for(
        &args.model,
        args.tokenizer.as_ref(),
        model.config().vocab_size,
    )?;
    // Stop at the folder's (or --eos-token's) ids; a folder that declares none keeps the
    // config's `eos_token_id`. Sources end with the first of them, or the first EOS name.
    let declared = match &args.eos_token {
        Some(t) => Some(vec![tok.require_token(t)?]),
        None => manabi_model::open::eos_ids(&manabi_model::locate(&args.model)?.dir)?,
    };
    let eos = match &declared {
        Some(ids) => ids.first().copied(),
        None => tok
            .eos_id()
            .or_else(|| EOS_CANDIDATES.iter().find_map(|t| tok.token_id(t))),
    };
    let sources = args
        .prompt
        .iter()
        .map(|p| {
            // T5Tokenizer's post-processor ends a source with </s>; manabi's own T5
            // tokenizers have none, so EOS is appended unless already last.
            let mut ids = tok.encode_with_specials(p)?;
            if ids.last() != eos.as_ref() {
                ids.extend(eos);
            }
            Ok(ids)
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let opts = manabi_model::T5GreedyOptions {
        max_new_tokens: args.max_new_tokens,
        use_cache: !args.no_cache,
        eos_ids: declared,
    };
    let started = std::time::Instant::now();
    let outputs = model.greedy(&sources, &opts)?;
    let total: usize = outputs.iter().map(Vec::len).sum();
    for out in &outputs {
        println!("{}", tok.decode(out, false)?);
    }
    let secs = started.elapsed().as_secs_f64();
    eprintln!(
        "{total} tokens in {secs:.2} s ({:.1} tokens/s)",
        total as f64 / secs.max(1e-9)
    );
    Ok(())
}

#[derive(Debug, Args)]
pub struct EvalArgs {
    /// Model folder (manabi checkpoint or Hugging Face).
    #[arg(long)]
    pub model: PathBuf,
    /// Text file to score (loss and perplexity).
    #[arg(long, required_unless_present = "task", conflicts_with = "task")]
    pub data: Option<PathBuf>,
    /// tokenizer.json (default: the one in the model folder).
    #[arg(long)]
    pub tokenizer: Option<PathBuf>,
    /// Window length (default: the model's max positions).
    #[arg(long)]
    pub context: Option<usize>,
    /// Windows (or, with --task, rows) per forward pass.
    #[arg(long, default_value_t = 8)]
    pub batch: usize,
    /// Print one JSON object.
    #[arg(long)]
    pub json: bool,
    /// A task file to prompt without training (JSONL: {"query","choices","gold"} multiple
    /// choice, or {"query","answer"} generation), scored as lm-evaluation-harness does.
    #[arg(long)]
    pub task: Option<PathBuf>,
    /// Where shots come from (default: the task file itself, never the question asked).
    #[arg(long, requires = "task")]
    pub pool: Option<PathBuf>,
    /// Shots per prompt, one table row each (e.g. 0,1,5).
    #[arg(long, value_delimiter = ',', default_value = "0", requires = "task")]
    pub few_shot: Vec<usize>,
    /// Seed of the shots drawn for each question.
    #[arg(long, default_value_t = 1234)]
    pub seed: u64,
    /// Text before the shots (an instruction).
    #[arg(long, default_value = "")]
    pub description: String,
    /// Chain-of-thought: `en` adds "Let's think step by step." after each query and reads
    /// the answer from "The answer is X."; `ja`: 「ステップごとに考えましょう。」 and 「答えはXです。」.
    #[arg(long)]
    pub cot: Option<String>,
    /// A regex whose first group is the answer in a generation (overrides --cot's).
    #[arg(long)]
    pub answer_pattern: Option<String>,
    /// Longest generated answer in tokens.
    #[arg(long, default_value_t = 32)]
    pub max_new_tokens: usize,
    /// Write every scored prompt (prompt, log-likelihoods or generation, correct) here.
    #[arg(long)]
    pub predictions: Option<PathBuf>,
    /// A PEFT adapter folder (adapter_config.json + adapter_model.safetensors) to apply to
    /// the model before scoring (--data or --task).
    #[arg(long)]
    pub adapter: Option<PathBuf>,
    /// Type the weight matrices are kept in while scoring --data (as `generate --dtype`):
    /// the perplexity of a bf16 or int8 model against the f32 one.
    #[arg(long, value_enum, default_value_t = WeightsDtype::F32, conflicts_with = "task")]
    pub dtype: WeightsDtype,
}

fn eval_task(args: &EvalArgs, task: &Path, device: &burn::tensor::Device) -> anyhow::Result<()> {
    use manabi_tasks::fewshot::{self, Evaluator, PromptSettings};
    let model = load_decoder(&args.model, args.adapter.as_ref(), device)?;
    let tok = tokenizer_for(
        &args.model,
        args.tokenizer.as_ref(),
        model.config().vocab_size,
    )?;
    let specials = manabi_finetune::sft::Specials::of(&tok)?;
    let docs = fewshot::read_docs(task)?;
    let pool = match &args.pool {
        Some(p) => fewshot::read_docs(p)?,
        None => docs.clone(),
    };
    let mut settings = PromptSettings {
        description: args.description.clone(),
        answer_pattern: args.answer_pattern.clone(),
        seed: args.seed,
        max_new_tokens: args.max_new_tokens,
        ..PromptSettings::default()
    };
    if let Some(lang) = &args.cot {
        let (cue, pattern) = fewshot::chain_of_thought(lang)
            .with_context(|| format!("--cot {lang}: expected en or ja"))?;
        settings.query_suffix = cue.into();
        settings
            .answer_pattern
            .get_or_insert_with(|| pattern.into());
    }
    let ev = Evaluator {
        model: &model,
        tokenizer: &tok,
        pad: specials.pad,
        eos: specials.eos,
        batch_size: args.batch,
        device,
    };
    let mut rows = Vec::new();
    let mut all = Vec::new();
    for &k in &args.few_shot {
        let (scores, scored) = ev.score(&docs, &pool, k, &settings)?;
        rows.push(scores);
        all.extend(scored);
    }
    if let Some(p) = &args.predictions {
        fewshot::write_scored(p, &all)?;
    }
    if args.json {
        println!("{}", serde_json::to_string(&rows)?);
        return Ok(());
    }
    let cell = |x: Option<f64>| x.map_or("–".to_string(), |v| format!("{:.1} %", 100.0 * v));
    println!("{} ({} documents)\n", task.display(), docs.len());
    println!("| shots | acc | acc_norm | acc_bytes | exact match |");
    println!("|---|---|---|---|---|");
    for r in &rows {
        println!(
            "| {} | {} | {} | {} | {} |",
            r.k,
            cell(r.acc),
            cell(r.acc_norm),
            cell(r.acc_bytes),
            cell(r.exact_match)
        );
    }
    if let Some(chance) = fewshot::chance_level(&docs) {
        println!(
            "| chance | {} | {} | {} | – |",
            cell(Some(chance)),
            cell(Some(chance)),
            cell(Some(chance))
        );
    }
    Ok(())
}

pub fn eval(args: &EvalArgs, device: DeviceChoice) -> anyhow::Result<()> {
    let device = device.resolve()?;
    if let Some(task) = &args.task {
        return eval_task(args, task, &device);
    }
    let Some(data) = &args.data else {
        anyhow::bail!("give --data (a text file) or --task (a task file)");
    };
    let model = load_decoder(&args.model, args.adapter.as_ref(), &device)?;
    let model = with_weights_dtype(model, args.dtype, &device)?;
    let tok = tokenizer_for(
        &args.model,
        args.tokenizer.as_ref(),
        model.config().vocab_size,
    )?;
    let text = std::fs::read_to_string(data).with_context(|| format!("{}", data.display()))?;
    // `tokenizer(text)` as transformers' perplexity recipe: a BOS first when the
    // tokenizer adds one (it is context, never predicted).
    let ids = tok.encode_with_specials(&text)?;
    let context = args.context.unwrap_or(model.config().max_positions);
    let report = manabi_model::evaluate(&model, &ids, context, args.batch)
        .with_context(|| format!("{}", data.display()))?;
    if args.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        println!(
            "{}: {} tokens predicted in {} windows of {}: loss {:.4} nats/token, perplexity {:.3}",
            data.display(),
            report.tokens,
            report.windows,
            report.context,
            report.loss,
            report.perplexity
        );
    }
    Ok(())
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum ExportFormat {
    /// Hugging Face `config.json` + `model.safetensors` (+ `tokenizer.json`); LoRA merged,
    /// and `tokenizer_config.json` (chat template) + `generation_config.json` for decoders.
    Hf,
    /// The LoRA or IA³ adapter alone in the PEFT format (`adapter_config.json` +
    /// `adapter_model.safetensors`), for `PeftModel.from_pretrained` on the HF base.
    Peft,
}

#[derive(Debug, Args)]
pub struct ExportArgs {
    /// Model folder (manabi checkpoint or Hugging Face).
    #[arg(long)]
    pub model: PathBuf,
    #[arg(long, value_enum, default_value = "hf")]
    pub format: ExportFormat,
    /// Output folder.
    #[arg(long)]
    pub out: PathBuf,
    /// A PEFT adapter folder to merge into a decoder `--model` before exporting
    /// (`--format hf` only).
    #[arg(long)]
    pub adapter: Option<PathBuf>,
    /// Largest weight file of a decoder export (`5GB`, `500MB`, `2GiB` or bytes): above
    /// it the weights are written as `model-0000i-of-0000n.safetensors` shards with
    /// `model.safetensors.index.json`, as transformers' `max_shard_size`.
    #[arg(long, value_parser = parse_size, default_value = "5GB")]
    pub max_shard_size: u64,
}

/// `5GB`, `500MB`, `2GiB`, `1.5G`, `123456` (bytes) as bytes; decimal units are 1000s,
/// binary (`KiB`, `MiB`, `GiB`) 1024s, as transformers reads `max_shard_size`.
fn parse_size(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: f64 = num
        .parse()
        .map_err(|_| format!("`{text}` is not a size (e.g. 5GB, 500MB, 2GiB)"))?;
    let mult = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1.0,
        "k" | "kb" => 1e3,
        "m" | "mb" => 1e6,
        "g" | "gb" => 1e9,
        "t" | "tb" => 1e12,
        "kib" => 1024.0,
        "mib" => 1024.0 * 1024.0,
        "gib" => 1024.0 * 1024.0 * 1024.0,
        other => return Err(format!("unknown size unit `{other}` in `{text}`")),
    };
    let bytes = n * mult;
    if !(bytes.is_finite() && bytes >= 1.0) {
        return Err(format!("`{text}` is not a positive size"));
    }
    Ok(bytes as u64)
}

pub fn export(args: &ExportArgs, device: DeviceChoice) -> anyhow::Result<()> {
    use manabi_finetune::Model;
    let device = device.resolve()?;
    let tok = args.model.join("tokenizer.json");
    let tok = tok.exists().then_some(tok.as_path());
    let opened = manabi_finetune::open(&args.model, &device)?;
    let family = opened.found.family;
    if let Some(a) = &args.adapter {
        let why = match (&opened.model, args.format) {
            (_, ExportFormat::Peft) | (Model::Decoder(_), _) => None,
            (Model::Classifier(_), _) => Some("into a decoder, not a classifier"),
            _ => Some("into a GPT-2 or Llama decoder exported with --format hf"),
        };
        if matches!(args.format, ExportFormat::Peft) || why.is_some() {
            anyhow::bail!(
                "{}: --adapter merges {}",
                a.display(),
                why.unwrap_or("into a GPT-2 or Llama decoder exported with --format hf")
            );
        }
    }
    if matches!(args.format, ExportFormat::Peft) {
        let dir = opened.dir().to_path_buf();
        let (model, peft) = opened.into_decoder()?;
        let peft = peft.ok_or_else(|| {
            anyhow::anyhow!(
                "{}: not an adapter checkpoint (no peft.toml: LoRA, IA³, prompt or prefix tuning); export --format hf instead",
                dir.display()
            )
        })?;
        manabi_finetune::peft::save_adapter(&model, &peft, &args.out)?;
        eprintln!(
            "exported the {} adapter -> {}",
            peft.method,
            args.out.display()
        );
        return Ok(());
    }
    let names = opened
        .head
        .as_ref()
        .map(|h| h.names.clone())
        .unwrap_or_default();
    let params = opened.model.num_params();
    match opened.model {
        Model::Classifier(m) => {
            let token = opened.head.as_ref().is_some_and(|h| h.kind == "token");
            // The tokenizer's own pad, never EOS (transformers would then score the token
            // before the final EOS); none known, no pad_token_id is written.
            let pad = match tok {
                Some(t) => {
                    manabi_finetune::sft::Specials::of(&TextTokenizer::load(t)?)?.distinct_pad()
                }
                None => None,
            };
            let m = m.valid().materialize();
            m.export_hf_as(&args.out, tok, pad, &names, token)?;
        }
        Model::Decoder(m) => {
            let m = match &args.adapter {
                Some(dir) => manabi_finetune::peft::load_adapter(*m, dir)?.0,
                None => *m,
            };
            let merged = manabi_finetune::load::merged(m);
            manabi_model::export_hf_sharded(&merged, &args.out, tok, args.max_shard_size)?;
            if let Some(t) = tok {
                let tok = TextTokenizer::load(t)?;
                let max_len = merged.config().max_positions;
                manabi_finetune::export::write_chat_files(&args.out, &tok, max_len)?;
            }
        }
        Model::T5(m) => manabi_model::export_t5_hf(&m, &args.out, tok)?,
        Model::BertTagger(m) => {
            manabi_tasks::body::export_bert_tagger(&m.valid(), &args.out, tok, &names)?
        }
        Model::BertClassifier(m) => {
            manabi_tasks::body::export_bert_classifier(&m.valid(), &args.out, tok, &names)?
        }
        // SimCSE / bi-encoder: the encoder alone, as transformers' `BertModel`.
        Model::BertEncoder(m) => manabi_model::export_bert_hf(&*m, &args.out, tok)?,
        Model::BertMaskedLm(m) => manabi_model::export_bert_hf(&*m, &args.out, tok)?,
    }
    // The Hugging Face model type written (`qwen2`, `gemma2`, …), not only the family.
    let written = std::fs::read_to_string(args.out.join("config.json"))
        .ok()
        .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
        .and_then(|v| v["model_type"].as_str().map(String::from))
        .unwrap_or_else(|| family.to_string());
    eprintln!(
        "exported {params} parameters ({written}) -> {}",
        args.out.display()
    );
    Ok(())
}

#[cfg(test)]
mod size_tests {
    #[test]
    fn shard_sizes_read_as_transformers_reads_them() {
        assert_eq!(super::parse_size("5GB"), Ok(5_000_000_000));
        assert_eq!(super::parse_size("500MB"), Ok(500_000_000));
        assert_eq!(super::parse_size("2GiB"), Ok(2 * 1024 * 1024 * 1024));
        assert_eq!(super::parse_size("40000"), Ok(40_000));
        assert!(super::parse_size("5XB").is_err());
        assert!(super::parse_size("0").is_err());
    }
}
