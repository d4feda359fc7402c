//! Lexical retrieval in a page: the committed English passages are indexed with BM25
//! (tantivy) into a RAG folder, the folder is reopened, and the top passages of a few
//! committed questions are printed with their gold passage and the QA prompt they would
//! go into. No model is needed: BM25 works on words and character bigrams alone (dense
//! and hybrid retrieval add an `Embedder`, see `manabi rag index --model`).
//!
//! Run: `cargo run --release -p manabi-rag --example retrieve`
//!
//! Writes into `$TMPDIR/manabi-example-retrieve`; takes well under a second.

use std::path::PathBuf;

use manabi_rag::{QA_TEMPLATE, RagIndex, Retriever, prompt, read_passages, read_questions};

const ROOT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../..");

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = std::env::temp_dir().join("manabi-example-retrieve");
    let _ = std::fs::remove_dir_all(&dir);

    // Passages `{"id", "text"}` a line; text files and folders read the same way.
    let docs = PathBuf::from(format!("{ROOT}/datasets/rag/docs-en.jsonl"));
    let passages = read_passages(&[docs])?;
    println!("{} passages", passages.len());
    RagIndex::build(&dir.join("index"), passages, None)?;

    // The folder reopens on its own (`bm25/`, `passages.jsonl`, `rag.toml`).
    let index = RagIndex::open(&dir.join("index"))?;
    let questions = read_questions(&PathBuf::from(format!(
        "{ROOT}/datasets/rag/questions-en.jsonl"
    )))?;
    let mut found = 0;
    for (n, q) in questions.iter().enumerate() {
        let top = index.search(&q.question, 3, Retriever::Bm25, None)?;
        let ids: Vec<&str> = top.iter().map(|&i| index.passages[i].id.as_str()).collect();
        found += usize::from(q.passage.as_deref().is_some_and(|p| ids.contains(&p)));
        if n < 3 {
            println!(
                "\n{} (gold {}, answer {:?})",
                q.question,
                q.passage.as_deref().unwrap_or("-"),
                q.answer
            );
            for &i in &top {
                println!("  {:>7}  {}", index.passages[i].id, index.passages[i].text);
            }
        }
    }
    println!(
        "\nrecall@3: {found} of {} questions find their gold passage",
        questions.len()
    );

    // What a generator would read: the best passage in the QA template.
    let q = &questions[0];
    let best = index.search(&q.question, 1, Retriever::Bm25, None)?;
    let context = [index.passages[best[0]].text.as_str()];
    println!("\n{}", prompt(QA_TEMPLATE, &context, &q.question)?);
    Ok(())
}
