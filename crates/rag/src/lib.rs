//! manabi-rag: retrieval-augmented generation (`manabi rag`) on the models of
//! `manabi-finetune` and the sentence embeddings of `manabi-tasks`: passages from text,
//! JSONL or folders; lexical BM25 through tantivy (a word field, and a character-bigram
//! field for Japanese that queries with non-ASCII letters also search); dense retrieval by
//! manabi's own sentence embeddings (cosine); a hybrid by reciprocal-rank fusion. The top
//! passages go into the QA prompt template and the model answers; `rag eval` reports
//! recall@k of the gold passage and exact match with and without retrieval.

use std::path::{Path, PathBuf};

use burn::prelude::*;
use manabi_model::{DecoderLm, GenerateOptions};
use manabi_tokenize::TextTokenizer;
use serde::{Deserialize, Serialize};
use tantivy::collector::TopDocs;
use tantivy::query::{BooleanQuery, Occur, Query, TermQuery};
use tantivy::schema::{
    Field, INDEXED, IndexRecordOption, STORED, Schema, TextFieldIndexing, TextOptions, Value,
};
use tantivy::tokenizer::{LowerCaser, NgramTokenizer, TextAnalyzer};
use tantivy::{Index, IndexWriter, TantivyDocument, Term, doc};

use manabi_finetune::error::{FinetuneError, Result};
use manabi_finetune::sft::Specials;
use manabi_tasks::embed::{self, Pooling};

/// Where the lexical index lives inside a RAG folder.
const BM25_DIR: &str = "bm25";
const PASSAGES: &str = "passages.jsonl";
const VECTORS: &str = "vectors.jsonl";
const SPEC: &str = "rag.toml";
const NGRAM: &str = "char_bigram";

mod data;

pub use data::{Passage, Question, read_passages, read_questions};
use data::{err, read_jsonl_passages};

/// What a RAG folder was built with (`rag.toml`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IndexSpec {
    /// The embedding model of the dense index, if any.
    pub embed_model: Option<PathBuf>,
    /// Its pooling.
    pub pooling: Pooling,
    /// Its longest sentence in tokens.
    pub max_length: usize,
}

fn schema() -> (Schema, Field, Field, Field) {
    let mut sb = Schema::builder();
    let id = sb.add_u64_field("id", INDEXED | STORED);
    let words = sb.add_text_field(
        "words",
        TextOptions::default().set_indexing_options(
            TextFieldIndexing::default()
                .set_tokenizer("default")
                .set_index_option(IndexRecordOption::WithFreqsAndPositions),
        ),
    );
    let grams = sb.add_text_field(
        "grams",
        TextOptions::default().set_indexing_options(
            TextFieldIndexing::default()
                .set_tokenizer(NGRAM)
                .set_index_option(IndexRecordOption::WithFreqsAndPositions),
        ),
    );
    (sb.build(), id, words, grams)
}

fn register(index: &Index) -> Result<()> {
    let ngram = NgramTokenizer::new(2, 2, false)
        .map_err(|e| FinetuneError::config("bm25", e.to_string()))?;
    index.tokenizers().register(
        NGRAM,
        TextAnalyzer::builder(ngram).filter(LowerCaser).build(),
    );
    Ok(())
}

/// A built RAG folder: passages, the BM25 index and (optionally) passage embeddings.
#[derive(Debug)]
pub struct RagIndex {
    /// The passages, by internal number.
    pub passages: Vec<Passage>,
    index: Index,
    fields: (Field, Field, Field),
    vectors: Vec<Vec<f32>>,
    spec: IndexSpec,
}

/// An embedding model for dense retrieval.
#[derive(Debug)]
pub struct Embedder<'a> {
    /// The body (a decoder or BERT).
    pub model: &'a embed::SentenceModel,
    /// Its tokenizer.
    pub tokenizer: &'a TextTokenizer,
    /// Where it lives (recorded in `rag.toml`).
    pub path: PathBuf,
    /// Pooling.
    pub pooling: Pooling,
    /// Longest sentence in tokens.
    pub max_length: usize,
    /// Where tensors live.
    pub device: &'a Device,
}

impl Embedder<'_> {
    fn embed(&self, texts: &[String]) -> Result<Vec<Vec<f32>>> {
        let s = Specials::of(self.tokenizer)?;
        embed::embed_texts(
            self.model,
            self.tokenizer,
            texts,
            (self.pooling, self.max_length),
            (self.model.framing(self.tokenizer)?, s.pad),
            32,
            self.device,
        )
    }
}

/// How passages are ranked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Retriever {
    /// BM25 over words and character bigrams.
    Bm25,
    /// Cosine of sentence embeddings.
    Dense,
    /// Reciprocal-rank fusion of both (k = 60).
    Hybrid,
}

impl RagIndex {
    /// Builds a RAG folder `dir` from `passages` (BM25 always; dense when an embedder is
    /// given). An existing folder is replaced.
    pub fn build(dir: &Path, passages: Vec<Passage>, embedder: Option<&Embedder>) -> Result<Self> {
        if dir.exists() {
            std::fs::remove_dir_all(dir).map_err(|e| err(dir, e))?;
        }
        let bm = dir.join(BM25_DIR);
        std::fs::create_dir_all(&bm).map_err(|e| err(&bm, e))?;
        let (schema, id, words, grams) = schema();
        let index = Index::create_in_dir(&bm, schema).map_err(|e| err(&bm, e))?;
        register(&index)?;
        let mut w: IndexWriter = index.writer(50_000_000).map_err(|e| err(&bm, e))?;
        for (i, p) in passages.iter().enumerate() {
            w.add_document(doc!(id => i as u64, words => p.text.clone(), grams => p.text.clone()))
                .map_err(|e| err(&bm, e))?;
        }
        w.commit().map_err(|e| err(&bm, e))?;
        let mut lines = String::new();
        for p in &passages {
            lines.push_str(&serde_json::to_string(p).map_err(|e| err(dir, e))?);
            lines.push('\n');
        }
        std::fs::write(dir.join(PASSAGES), lines).map_err(|e| err(dir, e))?;
        let (vectors, spec) = match embedder {
            Some(e) => {
                let texts: Vec<String> = passages.iter().map(|p| p.text.clone()).collect();
                let v = e.embed(&texts)?;
                embed::write_embeddings(&dir.join(VECTORS), &texts, &v)?;
                let spec = IndexSpec {
                    embed_model: Some(e.path.clone()),
                    pooling: e.pooling,
                    max_length: e.max_length,
                };
                (v, spec)
            }
            None => (
                Vec::new(),
                IndexSpec {
                    embed_model: None,
                    pooling: Pooling::Mean,
                    max_length: 0,
                },
            ),
        };
        std::fs::write(
            dir.join(SPEC),
            toml::to_string_pretty(&spec).unwrap_or_default(),
        )
        .map_err(|e| err(dir, e))?;
        Ok(Self {
            passages,
            index,
            fields: (id, words, grams),
            vectors,
            spec,
        })
    }

    /// Opens a RAG folder written by [`RagIndex::build`].
    pub fn open(dir: &Path) -> Result<Self> {
        let spec_path = dir.join(SPEC);
        let text = std::fs::read_to_string(&spec_path).map_err(|e| {
            err(
                &spec_path,
                format!("{e} (build it with `manabi rag index`)"),
            )
        })?;
        let spec: IndexSpec = toml::from_str(&text)
            .map_err(|e| FinetuneError::config(spec_path.display().to_string(), e.message()))?;
        let passages = read_jsonl_passages(&dir.join(PASSAGES))?;
        let bm = dir.join(BM25_DIR);
        let index = Index::open_in_dir(&bm).map_err(|e| err(&bm, e))?;
        register(&index)?;
        let schema = index.schema();
        let field = |n: &str| schema.get_field(n).map_err(|e| err(&bm, e));
        let fields = (field("id")?, field("words")?, field("grams")?);
        let vectors = if spec.embed_model.is_some() {
            // One width for every vector (a vector of another width is an error naming its
            // line, not compared over the shorter one).
            manabi_tasks::embed::read_embeddings(&dir.join(VECTORS), None)?
        } else {
            Vec::new()
        };
        if !vectors.is_empty() && vectors.len() != passages.len() {
            return Err(err(
                dir,
                "vectors.jsonl and passages.jsonl differ in length",
            ));
        }
        Ok(Self {
            passages,
            index,
            fields,
            vectors,
            spec,
        })
    }

    /// The settings it was built with.
    pub fn spec(&self) -> &IndexSpec {
        &self.spec
    }

    /// Passage numbers of the best `k` by BM25.
    pub fn bm25(&self, query: &str, k: usize) -> Result<Vec<usize>> {
        check_query(query, k)?;
        let reader = self
            .index
            .reader()
            .map_err(|e| FinetuneError::config("bm25", e.to_string()))?;
        let searcher = reader.searcher();
        let (id, words, grams) = self.fields;
        // Character bigrams are for scripts without spaces (Japanese); on English they
        // match fragments of common words ("wh", "at"), so English queries use words only.
        let fields = if query.chars().any(|c| c.is_alphanumeric() && !c.is_ascii()) {
            vec![words, grams]
        } else {
            vec![words]
        };
        // Every analysed term is one optional clause: BM25 over the bag of terms (a query
        // parser would turn the bigrams of an unspaced Japanese question into one phrase).
        let mut clauses: Vec<(Occur, Box<dyn Query>)> = Vec::new();
        for f in fields {
            let mut analyzer = self
                .index
                .tokenizer_for_field(f)
                .map_err(|e| FinetuneError::config("bm25", e.to_string()))?;
            let mut stream = analyzer.token_stream(query);
            while stream.advance() {
                let term = Term::from_field_text(f, &stream.token().text);
                clauses.push((
                    Occur::Should,
                    Box::new(TermQuery::new(term, IndexRecordOption::WithFreqs)),
                ));
            }
        }
        let q = BooleanQuery::new(clauses);
        let top = searcher
            .search(&q, &TopDocs::with_limit(k))
            .map_err(|e| FinetuneError::config("bm25", e.to_string()))?;
        let mut out = Vec::with_capacity(top.len());
        for (_, addr) in top {
            let d: TantivyDocument = searcher
                .doc(addr)
                .map_err(|e| FinetuneError::config("bm25", e.to_string()))?;
            if let Some(n) = d.get_first(id).and_then(|v| v.as_u64()) {
                out.push(n as usize);
            }
        }
        Ok(out)
    }

    /// Passage numbers of the best `k` by cosine with the query's embedding.
    pub fn dense(&self, query: &str, k: usize, embedder: &Embedder) -> Result<Vec<usize>> {
        check_query(query, k)?;
        if self.vectors.is_empty() {
            return Err(FinetuneError::config(
                "--retriever",
                "this index has no embeddings (build it with --embed-model)",
            ));
        }
        let q = embedder.embed(&[query.to_string()])?.remove(0);
        let mut scored: Vec<(usize, f64)> = self
            .vectors
            .iter()
            .enumerate()
            .map(|(i, v)| (i, embed::cosine(&q, v)))
            .collect();
        scored.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        Ok(scored.into_iter().take(k).map(|(i, _)| i).collect())
    }

    /// The best `k` passages of `query` by `how`.
    pub fn search(
        &self,
        query: &str,
        k: usize,
        how: Retriever,
        embedder: Option<&Embedder>,
    ) -> Result<Vec<usize>> {
        check_query(query, k)?;
        let need = || {
            embedder.ok_or_else(|| {
                FinetuneError::config(
                    "--retriever",
                    "dense retrieval needs the index's embedding model",
                )
            })
        };
        match how {
            Retriever::Bm25 => self.bm25(query, k),
            Retriever::Dense => self.dense(query, k, need()?),
            Retriever::Hybrid => {
                let depth = (4 * k).max(20);
                let lists = [self.bm25(query, depth)?, self.dense(query, depth, need()?)?];
                Ok(reciprocal_rank_fusion(&lists, k))
            }
        }
    }
}

/// Refuses what would retrieve nothing, silently: `k = 0` or an empty query.
fn check_query(query: &str, k: usize) -> Result<()> {
    if k == 0 {
        return Err(FinetuneError::config(
            "--k",
            "must be at least 1 (the number of passages retrieved)",
        ));
    }
    if query.trim().is_empty() {
        return Err(FinetuneError::config("--question", "the question is empty"));
    }
    Ok(())
}

/// Reciprocal-rank fusion (Cormack et al. 2009): score = Σ 1 / (60 + rank).
pub fn reciprocal_rank_fusion(lists: &[Vec<usize>], k: usize) -> Vec<usize> {
    let mut score: std::collections::BTreeMap<usize, f64> = std::collections::BTreeMap::new();
    for list in lists {
        for (rank, &id) in list.iter().enumerate() {
            *score.entry(id).or_default() += 1.0 / (60.0 + rank as f64 + 1.0);
        }
    }
    let mut v: Vec<(usize, f64)> = score.into_iter().collect();
    v.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    v.into_iter().take(k).map(|(i, _)| i).collect()
}

/// Where the retrieved passages go in a prompt template.
pub const CONTEXT: &str = "{context}";
/// Where the question goes in a prompt template.
pub const QUESTION: &str = "{question}";

/// Refuses a template without both placeholders, [`CONTEXT`] and [`QUESTION`]: without
/// the first the passages would be dropped, without the second the question.
pub fn check_template(template: &str) -> Result<()> {
    for (placeholder, what) in [
        (QUESTION, "the question goes"),
        (CONTEXT, "the retrieved passages go"),
    ] {
        if !template.contains(placeholder) {
            return Err(FinetuneError::config(
                "--template",
                format!(
                    "has no `{placeholder}` placeholder, where {what} (a RAG template needs `{CONTEXT}` and `{QUESTION}`)"
                ),
            ));
        }
    }
    Ok(())
}

/// The prompt: `template` with [`CONTEXT`] replaced by the passages joined by a space and
/// [`QUESTION`] by the question, in one pass (a passage or question that itself holds a
/// placeholder is not expanded); every other brace is literal. A template without both
/// placeholders is an error ([`check_template`]).
pub fn prompt(template: &str, passages: &[&str], question: &str) -> Result<String> {
    check_template(template)?;
    let context = passages.join(" ");
    let mut out = String::with_capacity(template.len() + context.len() + question.len());
    let mut rest = template;
    while let Some(i) = rest.find('{') {
        out.push_str(&rest[..i]);
        let tail = &rest[i..];
        let (value, skip) = if tail.starts_with(CONTEXT) {
            (context.as_str(), CONTEXT.len())
        } else if tail.starts_with(QUESTION) {
            (question, QUESTION.len())
        } else {
            ("{", 1)
        };
        out.push_str(value);
        rest = &tail[skip..];
    }
    out.push_str(rest);
    Ok(out)
}

/// The QA template the SFT recipes train with.
pub const QA_TEMPLATE: &str = "Context: {context}\nQuestion: {question}\nAnswer:";

/// Greedy answers of `prompts` (cut at the first line break).
pub fn answer(
    model: &DecoderLm,
    tokenizer: &TextTokenizer,
    prompts: &[String],
    max_new_tokens: usize,
) -> Result<Vec<String>> {
    let s = Specials::of(tokenizer)?;
    let opts = GenerateOptions {
        max_new_tokens,
        temperature: 0.0,
        eos_ids: s.stop_ids(),
        pad_id: s.pad,
        ..GenerateOptions::default()
    };
    let out = manabi_tasks::fewshot::greedy(model, tokenizer, prompts, &opts, 16)?;
    Ok(out
        .iter()
        .map(|t| t.lines().next().unwrap_or("").trim().to_string())
        .collect())
}

/// `rag eval` results.
#[derive(Debug, Clone, Serialize)]
pub struct RagReport {
    /// Questions.
    pub questions: usize,
    /// Share whose gold passage is among the top k (questions with a `passage`).
    pub recall_at_k: Option<f64>,
    /// k of recall.
    pub k: usize,
    /// Exact match with the top passages in the prompt.
    pub exact_match_with: f64,
    /// Exact match with an empty context.
    pub exact_match_without: f64,
}

/// Recall@k, and exact match with `context_passages` retrieved passages vs none.
///
/// Refused before anything is retrieved: `k` or `context_passages` of 0, a template
/// without both placeholders, no questions, an empty question or gold answer, and a gold
/// passage id the index does not hold (each named by its file and line when the
/// question came from [`read_questions`]).
#[allow(clippy::too_many_arguments)]
pub fn evaluate(
    index: &RagIndex,
    questions: &[Question],
    how: Retriever,
    embedder: Option<&Embedder>,
    k: usize,
    context_passages: usize,
    generator: (&DecoderLm, &TextTokenizer),
    template: &str,
) -> Result<(RagReport, Vec<serde_json::Value>)> {
    check_eval(index, questions, k, context_passages, template)?;
    let (mut hits, mut with_gold) = (0usize, 0usize);
    let (mut with_prompts, mut without_prompts) = (Vec::new(), Vec::new());
    let mut retrieved = Vec::new();
    for q in questions {
        let top = index.search(&q.question, k.max(context_passages), how, embedder)?;
        if let Some(g) = &q.passage {
            with_gold += 1;
            hits += usize::from(top.iter().take(k).any(|&i| index.passages[i].id == *g));
        }
        let ctx: Vec<&str> = top
            .iter()
            .take(context_passages)
            .map(|&i| index.passages[i].text.as_str())
            .collect();
        with_prompts.push(prompt(template, &ctx, &q.question)?);
        without_prompts.push(prompt(template, &[], &q.question)?);
        retrieved.push(
            top.iter()
                .map(|&i| index.passages[i].id.clone())
                .collect::<Vec<_>>(),
        );
    }
    let (model, tok) = generator;
    let a_with = answer(model, tok, &with_prompts, 16)?;
    let a_without = answer(model, tok, &without_prompts, 16)?;
    let norm = |s: &str| s.trim().trim_end_matches(['.', '。']).trim().to_string();
    let mut rows = Vec::with_capacity(questions.len());
    let (mut em_with, mut em_without) = (0usize, 0usize);
    for (i, q) in questions.iter().enumerate() {
        let (w, wo) = (
            norm(&a_with[i]) == norm(&q.answer),
            norm(&a_without[i]) == norm(&q.answer),
        );
        em_with += usize::from(w);
        em_without += usize::from(wo);
        rows.push(serde_json::json!({
            "question": q.question, "answer": q.answer, "retrieved": retrieved[i],
            "with_retrieval": a_with[i], "without_retrieval": a_without[i],
        }));
    }
    let n = questions.len().max(1) as f64;
    Ok((
        RagReport {
            questions: questions.len(),
            recall_at_k: (with_gold > 0).then(|| hits as f64 / with_gold as f64),
            k,
            exact_match_with: em_with as f64 / n,
            exact_match_without: em_without as f64 / n,
        },
        rows,
    ))
}

/// What [`evaluate`] refuses up front.
fn check_eval(
    index: &RagIndex,
    questions: &[Question],
    k: usize,
    context_passages: usize,
    template: &str,
) -> Result<()> {
    if k == 0 {
        return Err(FinetuneError::config(
            "--k",
            "must be at least 1 (recall@k of the gold passage)",
        ));
    }
    if context_passages == 0 {
        return Err(FinetuneError::config(
            "--context-passages",
            "must be at least 1 (with none, the answers with and without retrieval are the same)",
        ));
    }
    check_template(template)?;
    if questions.is_empty() {
        return Err(FinetuneError::config("--questions", "no questions"));
    }
    let ids: std::collections::HashSet<&str> =
        index.passages.iter().map(|p| p.id.as_str()).collect();
    for (i, q) in questions.iter().enumerate() {
        q.check(i + 1)?;
        if let Some(g) = q.passage.as_deref().filter(|g| !ids.contains(g)) {
            return Err(q.error(
                i + 1,
                format!(
                    "gold passage `{}` is not in the index ({} passages; an id is a passage's `id` or `FILE#N`)",
                    g.escape_debug(),
                    index.passages.len()
                ),
            ));
        }
    }
    Ok(())
}
