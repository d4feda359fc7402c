//! `manabi rag index` (build a passage index), `manabi rag --index DIR --model M --question Q`
//! (retrieve and answer) and `manabi rag eval` (recall@k, exact match with and without
//! retrieval).

use std::path::{Path, PathBuf};

use clap::{Args, Subcommand, ValueEnum};
use manabi_model::DeviceChoice;
use manabi_rag::{self as rag, Embedder, QA_TEMPLATE, RagIndex, Retriever};
use manabi_tasks::embed::{Pooling, SentenceModel};
use manabi_tokenize::TextTokenizer;

#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct RagArgs {
    #[command(subcommand)]
    pub command: Option<RagCommand>,
    #[command(flatten)]
    pub ask: AskArgs,
}

#[derive(Debug, Subcommand)]
pub enum RagCommand {
    /// Build a passage index: BM25 (tantivy), and dense vectors with --embed-model.
    Index(IndexArgs),
    /// Recall@k of gold passages and exact match with and without retrieval.
    Eval(EvalArgs),
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum How {
    /// BM25 over words and character bigrams.
    Bm25,
    /// Cosine of sentence embeddings (needs an index built with --embed-model).
    Dense,
    /// Reciprocal-rank fusion of both.
    Hybrid,
}

impl From<How> for Retriever {
    fn from(h: How) -> Self {
        match h {
            How::Bm25 => Retriever::Bm25,
            How::Dense => Retriever::Dense,
            How::Hybrid => Retriever::Hybrid,
        }
    }
}

#[derive(Debug, Args)]
pub struct IndexArgs {
    /// Documents: .jsonl ({"text", "id"?} per line), text files (a passage per paragraph)
    /// or folders.
    #[arg(long, required = true, num_args = 1..)]
    pub docs: Vec<PathBuf>,
    /// The index folder to write (replaced if it exists).
    #[arg(long)]
    pub out: PathBuf,
    /// A sentence-embedding model (a SimCSE checkpoint of `manabi task`) for dense retrieval.
    #[arg(long)]
    pub embed_model: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct AskArgs {
    /// The index folder (`manabi rag index`).
    #[arg(long)]
    pub index: Option<PathBuf>,
    /// The model that answers (e.g. a QA SFT checkpoint).
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// The question.
    #[arg(long)]
    pub question: Option<String>,
    /// Passages put into the prompt.
    #[arg(long, default_value_t = 1)]
    pub k: usize,
    /// How passages are ranked.
    #[arg(long, value_enum, default_value = "bm25")]
    pub retriever: How,
    /// Prompt template with {context} and {question}.
    #[arg(long, default_value = QA_TEMPLATE)]
    pub template: String,
}

#[derive(Debug, Args)]
pub struct EvalArgs {
    /// The index folder.
    #[arg(long)]
    pub index: PathBuf,
    /// The model that answers.
    #[arg(long)]
    pub model: PathBuf,
    /// Questions: {"question", "answer", "passage"?} per line.
    #[arg(long)]
    pub questions: PathBuf,
    /// k of recall@k.
    #[arg(long, default_value_t = 5)]
    pub k: usize,
    /// Passages put into the prompt.
    #[arg(long, default_value_t = 1)]
    pub context_passages: usize,
    /// How passages are ranked.
    #[arg(long, value_enum, default_value = "bm25")]
    pub retriever: How,
    /// Prompt template with {context} and {question}.
    #[arg(long, default_value = QA_TEMPLATE)]
    pub template: String,
    /// Write every question with its retrieved passages and both answers here.
    #[arg(long)]
    pub predictions: Option<PathBuf>,
}

/// The embedding model an index was built with, loaded.
fn embedder_parts(
    index: &RagIndex,
    device: &burn::tensor::Device,
) -> anyhow::Result<Option<(SentenceModel, TextTokenizer, PathBuf)>> {
    let Some(path) = index.spec().embed_model.clone() else {
        return Ok(None);
    };
    let m = SentenceModel::load(&path, device)?;
    let tok = TextTokenizer::load(path.join("tokenizer.json"))?;
    Ok(Some((m, tok, path)))
}

/// The index's embedder over its loaded parts.
fn index_embedder<'a>(
    index: &RagIndex,
    parts: Option<&'a (SentenceModel, TextTokenizer, PathBuf)>,
    device: &'a burn::tensor::Device,
) -> Option<Embedder<'a>> {
    parts.map(|(m, tok, path)| Embedder {
        model: m,
        tokenizer: tok,
        path: path.clone(),
        pooling: index.spec().pooling,
        max_length: index.spec().max_length,
        device,
    })
}

fn load_generator(
    model: &Path,
    device: &burn::tensor::Device,
) -> anyhow::Result<(manabi_model::DecoderLm, TextTokenizer)> {
    let (m, _) = manabi_finetune::load_decoder(model, device)?;
    let tok = TextTokenizer::load(model.join("tokenizer.json"))?;
    Ok((m, tok))
}

pub fn run(args: &RagArgs, device: DeviceChoice) -> anyhow::Result<()> {
    let device = device.resolve()?;
    match &args.command {
        Some(RagCommand::Index(a)) => {
            let passages = rag::read_passages(&a.docs)?;
            let n = passages.len();
            let parts = match &a.embed_model {
                Some(p) => {
                    let m = SentenceModel::load(p, &device)?;
                    let tok = TextTokenizer::load(p.join("tokenizer.json"))?;
                    Some((m, tok, p.clone()))
                }
                None => None,
            };
            let settings = a
                .embed_model
                .as_ref()
                .map(|p| read_embed_settings(p))
                .transpose()?;
            let emb = parts.as_ref().map(|(m, tok, path)| {
                let (pooling, max_length) = settings.unwrap_or((Pooling::Mean, 128));
                Embedder {
                    model: m,
                    tokenizer: tok,
                    path: path.clone(),
                    pooling,
                    max_length,
                    device: &device,
                }
            });
            RagIndex::build(&a.out, passages, emb.as_ref())?;
            println!(
                "{n} passages indexed (BM25{}) -> {}",
                if emb.is_some() { " + dense" } else { "" },
                a.out.display()
            );
            Ok(())
        }
        Some(RagCommand::Eval(a)) => {
            let index = RagIndex::open(&a.index)?;
            let parts = embedder_parts(&index, &device)?;
            let emb = index_embedder(&index, parts.as_ref(), &device);
            let (model, tok) = load_generator(&a.model, &device)?;
            let questions = rag::read_questions(&a.questions)?;
            let (r, rows) = rag::evaluate(
                &index,
                &questions,
                a.retriever.into(),
                emb.as_ref(),
                a.k,
                a.context_passages,
                (&model, &tok),
                &a.template,
            )?;
            if let Some(p) = &a.predictions {
                let text: String = rows.iter().map(|r| format!("{r}\n")).collect();
                std::fs::write(p, text)?;
            }
            println!(
                "{} questions, {:?} retrieval: recall@{} {}, exact match {:.1} % with retrieval ({} passage(s) in the prompt), {:.1} % without",
                r.questions,
                a.retriever,
                r.k,
                r.recall_at_k.map_or("n/a".into(), |x| format!("{:.3}", x)),
                100.0 * r.exact_match_with,
                a.context_passages,
                100.0 * r.exact_match_without
            );
            Ok(())
        }
        None => {
            let a = &args.ask;
            let (Some(index), Some(model), Some(question)) = (&a.index, &a.model, &a.question)
            else {
                anyhow::bail!(
                    "give --index, --model and --question (or use `rag index` / `rag eval`)"
                );
            };
            rag::check_template(&a.template)?;
            let index = RagIndex::open(index)?;
            let parts = embedder_parts(&index, &device)?;
            let emb = index_embedder(&index, parts.as_ref(), &device);
            let top = index.search(question, a.k, a.retriever.into(), emb.as_ref())?;
            let ctx: Vec<&str> = top
                .iter()
                .map(|&i| index.passages[i].text.as_str())
                .collect();
            for &i in &top {
                println!("[{}] {}", index.passages[i].id, index.passages[i].text);
            }
            let (m, tok) = load_generator(model, &device)?;
            let answer = rag::answer(&m, &tok, &[rag::prompt(&a.template, &ctx, question)?], 32)?;
            println!("answer: {}", answer[0]);
            Ok(())
        }
    }
}

/// Pooling and length of a SimCSE checkpoint (its `task.toml`), or the defaults.
fn read_embed_settings(dir: &Path) -> anyhow::Result<(Pooling, usize)> {
    let spec = dir.join(manabi_tasks::settings::TASK_FILE);
    if !spec.exists() {
        return Ok((Pooling::Mean, 128));
    }
    let s: manabi_tasks::settings::TaskSettings = toml::from_str(&std::fs::read_to_string(&spec)?)
        .map_err(|e| anyhow::anyhow!("{}: {}", spec.display(), e.message()))?;
    Ok((s.pooling, s.max_length))
}
