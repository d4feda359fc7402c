//! Train a small BPE tokenizer on the committed sample stories, save it as a standard
//! `tokenizer.json`, load it back, encode and decode a sentence, then encode the whole
//! corpus into memory-mapped token shards (what pre-training reads).
//!
//! Run: `cargo run --release -p manabi-tokenize --example train_and_encode`
//!
//! Writes into `$TMPDIR/manabi-example-tokenize`. Needs no network and no burn.

use std::path::PathBuf;

use manabi_tokenize::{
    CorpusSpec, EncodeOptions, ShardSet, Split, TextTokenizer, TokenizerKind, TrainOptions,
    encode_corpus, train,
};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let stories = PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../datasets/tiny/stories-en.txt"
    ));
    let out = std::env::temp_dir().join("manabi-example-tokenize");
    let _ = std::fs::remove_dir_all(&out);
    std::fs::create_dir_all(&out)?;

    // 1. Train: byte-level BPE, 600 entries, the default special tokens first
    //    (<pad>=0, <unk>=1, <bos>=2, <eos>=3, <mask>=4).
    let corpus = CorpusSpec::new(vec![stories]);
    let mut opts = TrainOptions::new(TokenizerKind::Bpe, 600);
    opts.min_frequency = 1;
    let mut tok = train(&corpus, &opts)?;
    println!("trained {:?}: {} tokens", opts.kind, tok.vocab_size());

    // 2. Save and load: a plain Hugging Face `tokenizer.json`.
    let path = out.join("tokenizer.json");
    tok.save(&path)?;
    let tok = TextTokenizer::load(&path)?;
    println!(
        "saved and reloaded {} (sha256 {:.12}…)",
        path.display(),
        tok.sha256()
    );

    // 3. Encode and decode.
    let text = "Aiko found a lantern at the harbour.";
    let ids = tok.encode(text)?;
    println!("text:    {text}");
    println!("pieces:  {:?}", tok.tokens(text)?);
    println!(
        "ids:     {ids:?} ({} ids for {} bytes)",
        ids.len(),
        text.len()
    );
    println!("decoded: {}", tok.decode(&ids, false)?);
    println!("<eos> id: {:?}", tok.token_id("<eos>"));

    // 4. Token shards: every document, then <eos>; 10 % of the documents to validation.
    let shards = out.join("shards");
    let meta = encode_corpus(&tok, &corpus, &shards, &EncodeOptions::default())?;
    println!(
        "shards in {}: train {} tokens / {} docs, val {} tokens / {} docs ({:?})",
        shards.display(),
        meta.train.tokens,
        meta.train.documents,
        meta.val.tokens,
        meta.val.documents,
        meta.dtype,
    );
    let train_split = ShardSet::open(&shards)?.split(Split::Train)?;
    let head: Vec<u32> = (0..train_split.len().min(12))
        .map(|i| train_split.get(i))
        .collect();
    println!(
        "first train tokens: {head:?} = {:?}",
        tok.decode(&head, false)?
    );
    Ok(())
}
