//! Training and shard writing on the sample corpora and on the shared real corpora.

use std::path::{Path, PathBuf};

use manabi_tokenize::{
    CorpusSpec, DocBoundary, EncodeOptions, PreTokenize, ShardSet, Split, TokenizeError,
    TokenizerKind, TrainOptions, encode_corpus, train,
};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn tiny(name: &str) -> PathBuf {
    root().join("datasets/tiny").join(name)
}

fn shared(name: &str) -> Option<PathBuf> {
    let path = root().join("../shared/data").join(name);
    if path.exists() {
        Some(path)
    } else {
        eprintln!(
            "skipping: {} is absent (the shared data folder is not beside the repo)",
            path.display()
        );
        None
    }
}

#[test]
fn every_kind_trains_and_round_trips() {
    let corpus = CorpusSpec::new(vec![tiny("stories-en.txt")]);
    for kind in [
        TokenizerKind::Bpe,
        TokenizerKind::Wordpiece,
        TokenizerKind::Unigram,
        TokenizerKind::Char,
    ] {
        let vocab = if kind == TokenizerKind::Char {
            100
        } else {
            400
        };
        let mut opts = TrainOptions::new(kind, vocab);
        opts.min_frequency = 1;
        let tok = train(&corpus, &opts).unwrap();
        assert!(tok.vocab_size() <= vocab, "{kind:?}: {}", tok.vocab_size());
        assert_eq!(tok.token_id("<pad>"), Some(0));
        assert_eq!(tok.token_id("<eos>"), Some(3));
        let text = "Aiko found a lantern at the harbour.";
        let ids = tok.encode(text).unwrap();
        assert!(!ids.is_empty());
        assert!(!ids.contains(&1), "{kind:?}: unknown token in {ids:?}");
        let back = tok.decode(&ids, false).unwrap();
        let squash = |s: &str| s.split_whitespace().collect::<Vec<_>>().join(" ");
        assert_eq!(squash(&back), squash(text), "{kind:?}");
        if kind != TokenizerKind::Char {
            assert!(
                3 * ids.len() < 2 * text.len(),
                "{kind:?} compresses: {} ids",
                ids.len()
            );
        }
    }
}

#[test]
fn japanese_pre_tokenizer_splits_at_script_boundaries() {
    let corpus = CorpusSpec::new(vec![tiny("stories-ja.txt")]);
    let mut opts = TrainOptions::new(TokenizerKind::Wordpiece, 2000);
    opts.pre_tokenize = PreTokenize::Japanese;
    let tok = train(&corpus, &opts).unwrap();
    let pieces = tok.tokens("太郎は図書館でノートを見つけました").unwrap();
    let words: Vec<String> = pieces
        .iter()
        .filter(|p| !p.starts_with("##"))
        .cloned()
        .collect();
    assert_eq!(
        words,
        [
            "太郎",
            "は",
            "図書館",
            "で",
            "ノート",
            "を",
            "見",
            "つけました"
        ],
        "{pieces:?}"
    );
}

#[test]
fn special_tokens_sentinels_and_chat_tokens_get_fixed_ids() {
    let corpus = CorpusSpec::new(vec![tiny("stories-en.txt")]);
    let mut opts = TrainOptions::new(TokenizerKind::Bpe, 600);
    opts.sentinels = 3;
    opts.chat_tokens = true;
    let tok = train(&corpus, &opts).unwrap();
    let expect = [
        "<pad>",
        "<unk>",
        "<bos>",
        "<eos>",
        "<mask>",
        "<extra_id_0>",
        "<extra_id_1>",
        "<extra_id_2>",
        "<|system|>",
        "<|user|>",
        "<|assistant|>",
        "<|end|>",
    ];
    for (id, t) in expect.iter().enumerate() {
        assert_eq!(tok.token_id(t), Some(id as u32), "{t}");
    }
    assert_eq!(tok.encode("<|user|>hi<|end|>").unwrap()[0], 9);
}

#[test]
fn bad_training_inputs_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let empty = dir.path().join("empty.txt");
    std::fs::write(&empty, "\n\n  \n").unwrap();
    let err = train(
        &CorpusSpec::new(vec![empty]),
        &TrainOptions::new(TokenizerKind::Bpe, 1000),
    )
    .unwrap_err();
    assert!(matches!(err, TokenizeError::EmptyCorpus(_)), "{err}");
    assert!(err.to_string().contains("empty.txt"), "{err}");

    let corpus = CorpusSpec::new(vec![tiny("stories-en.txt")]);
    let err = train(&corpus, &TrainOptions::new(TokenizerKind::Bpe, 100)).unwrap_err();
    assert!(
        err.to_string()
            .contains("vocab size 100 is too small: 261 entries"),
        "{err}"
    );

    let ja = CorpusSpec::new(vec![tiny("stories-ja.txt")]);
    for kind in [TokenizerKind::Char, TokenizerKind::Wordpiece] {
        let err = train(&ja, &TrainOptions::new(kind, 50)).unwrap_err();
        assert!(
            matches!(err, TokenizeError::VocabTooSmall { .. }),
            "{kind:?}: {err}"
        );
    }

    let err = train(&ja, &TrainOptions::new(TokenizerKind::Unigram, 60)).unwrap_err();
    assert!(
        err.to_string()
            .contains("`vocab-size`: 60 cannot hold every character"),
        "{err}"
    );

    let mut no_unk = TrainOptions::new(TokenizerKind::Wordpiece, 300);
    no_unk.special_tokens = vec!["<pad>".into()];
    let err = train(&corpus, &no_unk).unwrap_err();
    assert!(err.to_string().contains("`<unk>`"), "{err}");

    let mut twice = TrainOptions::new(TokenizerKind::Bpe, 300);
    twice.special_tokens.push("<pad>".into());
    assert!(
        train(&corpus, &twice)
            .unwrap_err()
            .to_string()
            .contains("listed twice")
    );

    let missing = CorpusSpec::new(vec![dir.path().join("nope.txt")]);
    let err = train(&missing, &TrainOptions::new(TokenizerKind::Bpe, 300)).unwrap_err();
    assert!(err.to_string().contains("nope.txt"), "{err}");
}

#[test]
fn shards_round_trip_split_by_documents() {
    let dir = tempfile::tempdir().unwrap();
    let corpus = CorpusSpec::new(vec![tiny("stories-en.txt"), tiny("stories-ja.txt")]);
    let mut opts = TrainOptions::new(TokenizerKind::Bpe, 700);
    opts.pre_tokenize = PreTokenize::Japanese;
    let tok = train(&corpus, &opts).unwrap();
    let out = dir.path().join("shards");
    let meta = encode_corpus(&tok, &corpus, &out, &EncodeOptions::default()).unwrap();
    assert_eq!(meta.train.documents + meta.val.documents, 800);
    assert_eq!(meta.val.documents, 80, "exactly 10 % of documents");
    assert_eq!(meta.tokenizer_sha256, tok.sha256());

    let set = ShardSet::open(&out).unwrap();
    assert_eq!(set.meta, meta);
    let train_split = set.split(Split::Train).unwrap();
    let val_split = set.split(Split::Val).unwrap();
    assert_eq!(train_split.len() as u64, meta.train.tokens);
    // Rebuild every document from the corpus and compare with the shards.
    let (mut t, mut v) = (Vec::new(), Vec::new());
    for (i, doc) in corpus.documents().unwrap().enumerate() {
        let mut ids = tok.encode(&doc.unwrap().text).unwrap();
        ids.push(meta.eos_id);
        if manabi_tokenize::shards::is_validation(i as u64, 0.1) {
            v.extend(ids)
        } else {
            t.extend(ids)
        }
    }
    assert_eq!(train_split.to_vec(0..train_split.len()), t);
    assert_eq!(val_split.to_vec(0..val_split.len()), v);
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        1,
        "no temporary folders left"
    );

    // An existing output is refused unless asked to overwrite.
    let err = encode_corpus(&tok, &corpus, &out, &EncodeOptions::default()).unwrap_err();
    assert!(matches!(err, TokenizeError::OutputExists(_)), "{err}");
    let again = EncodeOptions {
        overwrite: true,
        ..EncodeOptions::default()
    };
    assert_eq!(encode_corpus(&tok, &corpus, &out, &again).unwrap(), meta);
}

#[test]
fn corrupt_shards_and_unknown_eos_are_errors() {
    let dir = tempfile::tempdir().unwrap();
    let corpus = CorpusSpec::new(vec![tiny("stories-en.txt")]);
    let tok = train(&corpus, &TrainOptions::new(TokenizerKind::Bpe, 400)).unwrap();
    let out = dir.path().join("s");
    let bad_eos = EncodeOptions {
        eos_token: "</s>".into(),
        ..EncodeOptions::default()
    };
    let err = encode_corpus(&tok, &corpus, &out, &bad_eos).unwrap_err();
    assert!(err.to_string().contains("no token `</s>`"), "{err}");
    assert!(!out.exists());

    encode_corpus(&tok, &corpus, &out, &EncodeOptions::default()).unwrap();
    // Truncate the training file: the length no longer matches meta.json.
    let train_bin = out.join("train.bin");
    let len = std::fs::metadata(&train_bin).unwrap().len();
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(&train_bin)
        .unwrap();
    f.set_len(len - 3).unwrap();
    let err = ShardSet::open(&out)
        .unwrap()
        .split(Split::Train)
        .unwrap_err()
        .to_string();
    assert!(err.contains("train.bin: corrupt shard set"), "{err}");
    // An id beyond the vocabulary.
    let val_bin = out.join("val.bin");
    let mut bytes = std::fs::read(&val_bin).unwrap();
    bytes[0] = 0xff;
    bytes[1] = 0xff;
    std::fs::write(&val_bin, bytes).unwrap();
    let err = ShardSet::open(&out)
        .unwrap()
        .split(Split::Val)
        .unwrap_err()
        .to_string();
    assert!(err.contains("beyond the vocabulary size"), "{err}");
    std::fs::write(out.join("meta.json"), "{\"format\": 1}").unwrap();
    let err = ShardSet::open(&out).unwrap_err().to_string();
    assert!(err.contains("meta.json: corrupt shard set"), "{err}");
}

#[test]
fn tinyshakespeare_char_level_has_nanogpt_vocabulary() {
    let Some(path) = shared("tinyshakespeare.txt") else {
        return;
    };
    let mut corpus = CorpusSpec::new(vec![path]);
    corpus.boundary = DocBoundary::File;
    let mut opts = TrainOptions::new(TokenizerKind::Char, 100);
    opts.min_frequency = 1;
    opts.special_tokens = vec!["<unk>".into()];
    let tok = train(&corpus, &opts).unwrap();
    // nanoGPT's shakespeare_char has 65 characters.
    assert_eq!(tok.vocab_size(), 1 + 65);
}

#[test]
fn aozora_novel_trains_a_japanese_bpe() {
    let Some(path) = shared("aozora-kokoro.txt") else {
        return;
    };
    let corpus = CorpusSpec::new(vec![path.clone()]);
    let mut opts = TrainOptions::new(TokenizerKind::Bpe, 4000);
    opts.pre_tokenize = PreTokenize::Japanese;
    opts.nfkc = true;
    let tok = train(&corpus, &opts).unwrap();
    assert_eq!(tok.vocab_size(), 4000);
    let report = manabi_tokenize::inspect(&tok, Some(&corpus), 0).unwrap();
    assert!(
        report.chars_per_token() > 1.3,
        "{}",
        report.chars_per_token()
    );
    assert_eq!(report.unknown_tokens, 0);
}

#[test]
fn an_alphabet_puts_unseen_characters_in_the_vocabulary() {
    // The Japanese stories have no Latin capitals: a template such as "Question:" would
    // encode to <unk> without `alphabet`.
    let ja = CorpusSpec::new(vec![tiny("stories-ja.txt")]);
    let text = "Question: 何？";
    for kind in [TokenizerKind::Char, TokenizerKind::Unigram] {
        let mut opts = TrainOptions::new(kind, 2000);
        let plain = train(&ja, &opts).unwrap();
        let unk = plain.require_token("<unk>").unwrap();
        assert!(plain.encode(text).unwrap().contains(&unk), "{kind:?}");
        opts.alphabet = "Question: 何？".into();
        let tok = train(&ja, &opts).unwrap();
        let ids = tok.encode(text).unwrap();
        assert!(!ids.contains(&unk), "{kind:?}: {ids:?}");
        assert_eq!(
            tok.decode(&ids, true).unwrap().replace(' ', ""),
            "Question:何？",
            "{kind:?}"
        );
    }
    let mut wordpiece = TrainOptions::new(TokenizerKind::Wordpiece, 2000);
    wordpiece.alphabet = "Q".into();
    let err = train(&ja, &wordpiece).unwrap_err().to_string();
    assert!(
        err.contains("alphabet") && err.contains("WordPiece"),
        "{err}"
    );
}
