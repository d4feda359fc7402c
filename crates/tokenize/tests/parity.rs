//! Hugging Face compatibility: tokenizers trained by manabi (committed under
//! fixtures/tokenize/, made by scripts/tokenizer_fixtures.py) must give exactly the ids
//! that Python `tokenizers` 0.22.2 gave for the same texts.

use std::path::{Path, PathBuf};

use manabi_tokenize::TextTokenizer;
use serde::Deserialize;

#[derive(Deserialize)]
struct Fixture {
    cases: Vec<Case>,
}

#[derive(Deserialize)]
struct Case {
    text: String,
    ids: Vec<u32>,
}

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn check(name: &str) {
    let dir = root().join("fixtures/tokenize").join(name);
    let tokenizer = TextTokenizer::load(dir.join("tokenizer.json")).unwrap();
    let fixture: Fixture =
        serde_json::from_str(&std::fs::read_to_string(dir.join("ids.json")).unwrap()).unwrap();
    assert!(fixture.cases.len() > 80, "{name}: too few cases");
    let texts: Vec<&str> = fixture.cases.iter().map(|c| c.text.as_str()).collect();
    let batch = tokenizer.encode_batch(&texts).unwrap();
    for (case, batched) in fixture.cases.iter().zip(batch) {
        let ids = tokenizer.encode(&case.text).unwrap();
        assert_eq!(
            ids, case.ids,
            "{name}: ids differ from Python for {:?}",
            case.text
        );
        assert_eq!(
            batched, case.ids,
            "{name}: batch ids differ for {:?}",
            case.text
        );
    }
}

#[test]
fn byte_level_bpe_matches_python() {
    check("bpe-en");
}

#[test]
fn japanese_bpe_with_nfkc_sentinels_and_chat_tokens_matches_python() {
    check("bpe-ja");
}

#[test]
fn wordpiece_matches_python() {
    check("wordpiece-en");
}

#[test]
fn unigram_on_japanese_matches_python() {
    check("unigram-ja");
}

#[test]
fn char_level_matches_python() {
    check("char-en");
}

#[test]
fn byte_level_bpe_round_trips_any_text() {
    let tokenizer = TextTokenizer::load(root().join("fixtures/tokenize/bpe-ja")).unwrap();
    for text in [
        "吾輩は猫である。名前はまだ無い。",
        "emoji 🐱 ∑ and\ttabs\n",
        "",
        "  ",
    ] {
        let ids = tokenizer.encode(text).unwrap();
        // NFKC changes nothing in these strings, so decoding gives them back.
        assert_eq!(tokenizer.decode(&ids, false).unwrap(), text);
    }
}
