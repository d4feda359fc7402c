//! Tokenizer benchmark: training time and encode throughput of manabi next to Python
//! `tokenizers` doing the same job on the same documents, in the same command.
//!
//!     pip install tokenizers==0.22.2
//!     cargo run --release -p manabi-benches --bin bench-tokenizer
//!
//! Corpora: ../shared/data/tinyshakespeare.txt and a generated Japanese corpus (the
//! sample stories of datasets/tiny repeated to ~4 MB). Prints a Markdown table.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use manabi_tokenize::{
    CorpusSpec, EncodeOptions, PreTokenize, ShardWriter, TokenDtype, TokenizerKind, TrainOptions,
};

const VOCAB: usize = 8000;
const REPEATS: usize = 3;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

struct Row {
    name: String,
    mb: f64,
    train_s: f64,
    encode_mb_s: f64,
    shards_mb_s: f64,
    write_mb_s: f64,
    py_train_s: f64,
    py_encode_mb_s: f64,
}

fn best<T>(mut f: impl FnMut() -> T) -> (f64, T) {
    let mut best = f64::INFINITY;
    let mut out = None;
    for _ in 0..REPEATS {
        let t = Instant::now();
        let r = f();
        best = best.min(t.elapsed().as_secs_f64());
        out = Some(r);
    }
    (best, out.expect("REPEATS > 0"))
}

fn run(name: &str, corpus_file: &Path, japanese: bool, work: &Path) -> Row {
    let corpus = CorpusSpec::new(vec![corpus_file.to_path_buf()]);
    let docs: Vec<String> = corpus
        .documents()
        .expect("corpus opens")
        .map(|d| d.expect("corpus reads").text)
        .collect();
    let bytes: usize = docs.iter().map(String::len).sum();
    let mb = bytes as f64 / 1e6;

    let mut opts = TrainOptions::new(TokenizerKind::Bpe, VOCAB);
    if japanese {
        opts.pre_tokenize = PreTokenize::Japanese;
    }
    let (train_s, mut tok) = best(|| manabi_tokenize::train(&corpus, &opts).expect("trains"));
    let tok_path = work.join(format!("{name}.tokenizer.json"));
    tok.save(&tok_path).expect("saves");

    let refs: Vec<&str> = docs.iter().map(String::as_str).collect();
    let (encode_s, ids) = best(|| tok.encode_batch(&refs).expect("encodes"));
    let tokens: usize = ids.iter().map(|d| d.len() + 1).sum();

    let out = work.join(format!("{name}.shards"));
    let enc_opts = EncodeOptions {
        overwrite: true,
        ..EncodeOptions::default()
    };
    let (shards_s, _) =
        best(|| manabi_tokenize::encode_corpus(&tok, &corpus, &out, &enc_opts).expect("shards"));

    // Shard writing alone: the encoded ids written again (u16), 20 passes for a stable time.
    let passes = 20;
    let (write_s, _) = best(|| {
        let mut w = ShardWriter::create(work, "write.bin", TokenDtype::U16).expect("creates");
        let mut scratch = Vec::new();
        for _ in 0..passes {
            for d in &ids {
                w.write_doc(d, 3, &mut scratch).expect("writes");
            }
        }
        w.finish().expect("finishes")
    });
    let written_mb = (tokens * 2 * passes) as f64 / 1e6;

    let docs_path = work.join(format!("{name}.docs.json"));
    std::fs::write(&docs_path, serde_json::to_vec(&docs).expect("json")).expect("writes docs");
    let py = Command::new("python3")
        .arg(root().join("benches/tokenizer_ref.py"))
        .args([docs_path.as_os_str(), tok_path.as_os_str()])
        .args([
            VOCAB.to_string(),
            (if japanese { "japanese" } else { "default" }).to_string(),
        ])
        .arg(REPEATS.to_string())
        .output()
        .expect("python3 runs");
    assert!(
        py.status.success(),
        "python reference failed: {}",
        String::from_utf8_lossy(&py.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&py.stdout).expect("python prints JSON");
    let py_ids: Vec<Vec<u32>> = serde_json::from_value(v["ids_sample"].clone()).expect("ids");
    assert_eq!(
        py_ids[..],
        ids[..py_ids.len()],
        "{name}: Python and manabi ids differ"
    );

    Row {
        name: name.into(),
        mb,
        train_s,
        encode_mb_s: mb / encode_s,
        shards_mb_s: mb / shards_s,
        write_mb_s: written_mb / write_s,
        py_train_s: v["train_s"].as_f64().expect("train_s"),
        py_encode_mb_s: mb / v["encode_s"].as_f64().expect("encode_s"),
    }
}

fn main() {
    let work = tempfile::tempdir().expect("temp dir");
    let mut rows = Vec::new();
    let shakespeare = root().join("../shared/data/tinyshakespeare.txt");
    if shakespeare.exists() {
        rows.push(run("tinyshakespeare", &shakespeare, false, work.path()));
    } else {
        eprintln!(
            "skipping tinyshakespeare: {} is absent",
            shakespeare.display()
        );
    }
    let ja =
        std::fs::read_to_string(root().join("datasets/tiny/stories-ja.txt")).expect("sample data");
    let generated = work.path().join("generated-ja.txt");
    std::fs::write(&generated, ja.repeat(30)).expect("writes corpus");
    rows.push(run("generated-ja", &generated, true, work.path()));

    println!(
        "BPE vocab {VOCAB}, best of {REPEATS}, {} threads",
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );
    println!();
    println!(
        "| corpus | MB | train s (manabi / Python) | ratio | encode MB/s (manabi / Python) | ratio | encode+write shards MB/s | shard writing MB/s |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    for r in rows {
        println!(
            "| {} | {:.2} | {:.2} / {:.2} | {:.2}× | {:.1} / {:.1} | {:.2}× | {:.1} | {:.0} |",
            r.name,
            r.mb,
            r.train_s,
            r.py_train_s,
            r.py_train_s / r.train_s,
            r.encode_mb_s,
            r.py_encode_mb_s,
            r.encode_mb_s / r.py_encode_mb_s,
            r.shards_mb_s,
            r.write_mb_s
        );
    }
    println!("\nratio > 1 means manabi is faster.");
}
