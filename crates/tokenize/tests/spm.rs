//! SentencePiece models without tokenizer.json, converted as transformers 5.25 converts
//! them: for each folder under fixtures/tokenize/spm-* (made by scripts/spm_fixtures.py),
//! the converted pipeline is transformers' piece by piece, `encode_with_specials` gives
//! exactly `AutoTokenizer.from_pretrained(folder)(text)["input_ids"]` and `decode` its
//! `decode`, on probe texts and on held-out lines of ../shared/data (skipped with a
//! message when that folder is absent); a file that is not a SentencePiece model, or one
//! transformers does not convert, is refused in one line naming the file.

use std::path::{Path, PathBuf};

mod common;

use common::{HeldOut, data_lines, fixture, gz_json, shared_data};
use manabi_tokenize::TextTokenizer;
use serde::Deserialize;
use serde_json::Value;

const FIXTURES: [&str; 4] = [
    "spm-t5-en",
    "spm-llama-en",
    "spm-rinna-ja",
    "spm-backend-ja",
];

#[derive(Deserialize)]
struct Expected {
    class: String,
    model_file: String,
    model_max_length: Option<usize>,
    vocab_size: usize,
    specials: std::collections::BTreeMap<String, Option<Special>>,
    cases: Vec<Case>,
}

#[derive(Deserialize)]
struct Special {
    token: String,
    id: u32,
}

#[derive(Deserialize)]
struct Case {
    text: String,
    ids: Vec<u32>,
    decoded: String,
    decoded_skip_special: String,
}

fn expected(name: &str) -> Expected {
    let text = std::fs::read_to_string(fixture(name).join("expected.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

fn copy_of(name: &str) -> tempfile::TempDir {
    let tmp = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(fixture(name)).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), tmp.path().join(entry.file_name())).unwrap();
    }
    tmp
}

/// Sets `key` of the folder's tokenizer_config.json to `value`.
fn set(dir: &Path, key: &str, value: Value) {
    let path = dir.join("tokenizer_config.json");
    let mut cfg: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    cfg[key] = value;
    std::fs::write(&path, cfg.to_string()).unwrap();
}

/// The one-line error of loading the folder `name` after `edit`.
fn refused(name: &str, edit: impl FnOnce(&Path)) -> (String, PathBuf) {
    let tmp = copy_of(name);
    edit(tmp.path());
    let err = TextTokenizer::load(tmp.path()).unwrap_err().to_string();
    assert!(!err.contains('\n'), "not one line: {err}");
    let dir = tmp.path().to_path_buf();
    drop(tmp);
    (err, dir)
}

/// Class, special tokens and probe ids / texts of `tok` are transformers'.
fn check_probes(tok: &TextTokenizer, name: &str) {
    let want = expected(name);
    assert_eq!(tok.hf_class(), want.class, "{name}: class");
    assert_eq!(tok.model_max_length(), want.model_max_length, "{name}");
    assert_eq!(tok.vocab_size(), want.vocab_size, "{name}: vocabulary size");
    for (key, special) in &want.specials {
        let got = tok.special(key).map(|(t, id)| (t.to_string(), id));
        let want = special.as_ref().map(|s| (s.token.clone(), s.id));
        assert_eq!(got, want, "{name}: {key}");
    }
    assert!(want.cases.len() >= 50, "{name}: too few probes");
    for case in &want.cases {
        let ids = tok.encode_with_specials(&case.text).unwrap();
        assert_eq!(ids, case.ids, "{name}: ids of {:?}", case.text);
        assert_eq!(
            tok.decode(&ids, false).unwrap(),
            case.decoded,
            "{name}: decode of {:?}",
            case.text
        );
        assert_eq!(
            tok.decode(&ids, true).unwrap(),
            case.decoded_skip_special,
            "{name}: decode without special tokens of {:?}",
            case.text
        );
    }
}

#[test]
fn each_folder_loads_as_transformers_converts_it() {
    for name in FIXTURES {
        let dir = fixture(name);
        assert!(!dir.join("tokenizer.json").exists(), "{name}");
        check_probes(&TextTokenizer::load(&dir).unwrap(), name);
        // The path callers pass for a model folder, though no such file exists.
        check_probes(
            &TextTokenizer::load(dir.join("tokenizer.json")).unwrap(),
            name,
        );
        // The model file itself, read with the configuration beside it.
        let model = dir.join(expected(name).model_file);
        let tok = TextTokenizer::load(&model).unwrap();
        assert_eq!(tok.path(), model.as_path());
        check_probes(&tok, name);
    }
}

#[test]
fn the_converted_pipeline_is_transformers_piece_by_piece() {
    for name in FIXTURES {
        let tok = TextTokenizer::load(fixture(name)).unwrap();
        let mine: Value = serde_json::from_str(tok.to_json()).unwrap();
        let theirs: Value = gz_json(&fixture(name).join("converted.json.gz"));
        for key in [
            "added_tokens",
            "normalizer",
            "pre_tokenizer",
            "post_processor",
            "decoder",
        ] {
            assert_eq!(mine[key], theirs[key], "{name}: {key}");
        }
        // The model: options, vocabulary (with Unigram scores to the bit) and merges.
        let (m, t) = (&mine["model"], &theirs["model"]);
        let fields: Vec<&String> = t.as_object().unwrap().keys().collect();
        for field in fields {
            assert_eq!(m[field], t[field], "{name}: model.{field}");
        }
    }
}

#[test]
fn a_saved_conversion_is_a_tokenizer_json_that_encodes_the_same() {
    let tmp = tempfile::tempdir().unwrap();
    for name in FIXTURES {
        let mut tok = TextTokenizer::load(fixture(name)).unwrap();
        let path = tmp.path().join(format!("{name}.json"));
        tok.save(&path).unwrap();
        let plain = TextTokenizer::load(&path).unwrap();
        assert_eq!(plain.hf_class(), "TokenizersBackend");
        for case in expected(name).cases {
            assert_eq!(
                plain.encode_with_specials(&case.text).unwrap(),
                case.ids,
                "{name}: saved tokenizer.json, {:?}",
                case.text
            );
        }
    }
}

#[test]
fn held_out_corpus_lines_match_transformers() {
    let Some(data) = shared_data() else {
        eprintln!("skipping: ../shared/data absent (the probes of each_folder_loads_… ran)");
        return;
    };
    let mut total = 0;
    for name in FIXTURES {
        let held: HeldOut = gz_json(&fixture(name).join("held_out.json.gz"));
        let tok = TextTokenizer::load(fixture(name)).unwrap();
        let files = data_lines(&data, &held, "scripts/spm_fixtures.py");
        let texts: Vec<&str> = held
            .cases
            .iter()
            .map(|c| files[c.file][c.line].as_str())
            .collect();
        let batch = tok.encode_batch(&texts).unwrap();
        for ((case, text), ids) in held.cases.iter().zip(&texts).zip(batch) {
            let file = &held.files[case.file].name;
            let ids = tok.frame(ids);
            assert_eq!(ids, case.ids, "{name}: {file}:{}: {text:?}", case.line + 1);
            if let Some(decoded) = &case.decoded {
                assert_eq!(
                    &tok.decode(&ids, false).unwrap(),
                    decoded,
                    "{name}: decode of {file}:{}",
                    case.line + 1
                );
            }
        }
        assert!(held.cases.len() >= 500, "{name}: too few held-out lines");
        total += held.cases.len();
    }
    assert!(total >= 2000, "{total} held-out lines");
}

#[test]
fn rinna_style_t5_maps_unknown_characters_to_id_2_as_transformers_does() {
    // T5Tokenizer fixes the Unigram unknown id at 2 (T5's `<unk>`); rinna's models have
    // `<s>` there, and transformers 5.25 gives its id for a character outside the pieces.
    let tok = TextTokenizer::load(fixture("spm-rinna-ja")).unwrap();
    assert_eq!(tok.unk_id(), Some(1));
    assert_eq!(tok.bos_id(), Some(2));
    let ids = tok.encode("龘").unwrap();
    assert!(ids.contains(&2), "{ids:?}");
    assert_eq!(tok.specials_suffix(), [3]);
}

#[test]
fn a_tokenizer_model_that_is_not_sentencepiece_is_refused_naming_it() {
    let cases: [(&str, &[u8]); 3] = [
        ("tiktoken", b"IQ== 0\nIg== 1\nIw== 2\nJA== 3\n"),
        (
            "random bytes",
            b"\x8f\x12\xff\x00\x9a\x77\x01\x02garbage\xfe",
        ),
        ("empty", b""),
    ];
    for (what, bytes) in cases {
        let (err, dir) = refused("spm-llama-en", |d| {
            std::fs::write(d.join("tokenizer.model"), bytes).unwrap();
        });
        let model = dir.join("tokenizer.model");
        assert!(
            err.starts_with(&format!("{}: not a SentencePiece model:", model.display())),
            "{what}: {err}"
        );
        assert_eq!(
            err.contains("tiktoken"),
            what == "tiktoken",
            "{what}: {err}"
        );
    }
}

#[test]
fn word_and_char_models_are_refused_by_name() {
    for (kind, number) in [("WORD", 3u8), ("CHAR", 4)] {
        let (err, dir) = refused("spm-t5-en", |d| {
            // A second trainer_spec is merged into the first: model_type = number.
            let path = d.join("spiece.model");
            let mut bytes = std::fs::read(&path).unwrap();
            bytes.extend_from_slice(&[0x12, 2, 0x18, number]);
            std::fs::write(path, bytes).unwrap();
        });
        let model = dir.join("spiece.model");
        assert!(err.starts_with(&format!("{}:", model.display())), "{err}");
        assert!(err.contains(&format!("model_type {kind}")), "{err}");
    }
}

#[test]
fn other_slow_classes_and_missing_models_are_refused() {
    let (err, _) = refused("spm-rinna-ja", |d| {
        set(d, "tokenizer_class", "CamembertTokenizer".into())
    });
    assert!(err.contains("tokenizer.json: missing;"), "{err}");
    assert!(
        err.contains("`tokenizer_class` CamembertTokenizer"),
        "{err}"
    );
    // LlamaTokenizer reads tokenizer.model; a spiece.model is not its file.
    let (err, _) = refused("spm-llama-en", |d| {
        std::fs::rename(d.join("tokenizer.model"), d.join("spiece.model")).unwrap();
    });
    assert!(err.contains("tokenizer.json: missing;"), "{err}");
    assert!(err.contains("`tokenizer_class` LlamaTokenizer"), "{err}");
}

#[test]
fn a_special_token_outside_the_pieces_is_refused_naming_file_and_key() {
    let (err, dir) = refused("spm-llama-en", |d| set(d, "pad_token", "<pad>".into()));
    let config = dir.join("tokenizer_config.json");
    assert!(
        err.starts_with(&format!(
            "{}: `pad_token` \"<pad>\" is not among the pieces of tokenizer.model",
            config.display()
        )),
        "{err}"
    );
    let (err, _) = refused("spm-t5-en", |d| set(d, "eos_token", Value::Null));
    assert!(err.contains("T5Tokenizer needs an `eos_token`"), "{err}");
}

#[test]
fn add_bos_and_eos_token_count_without_a_tokenizer_json() {
    // transformers drops them only when a tokenizer.json exists.
    let tmp = copy_of("spm-llama-en");
    let tok = TextTokenizer::load(tmp.path()).unwrap();
    assert_eq!(
        (tok.specials_prefix(), tok.specials_suffix()),
        (&[1][..], &[][..])
    );
    set(tmp.path(), "add_bos_token", false.into());
    set(tmp.path(), "add_eos_token", true.into());
    let tok = TextTokenizer::load(tmp.path()).unwrap();
    assert_eq!(
        (tok.specials_prefix(), tok.specials_suffix()),
        (&[][..], &[2][..])
    );
}

#[test]
fn a_converted_tokenizer_is_stored_as_its_json_not_the_model_bytes() {
    // Checkpoints and exports store `tokenizer_json_bytes(path)`: for a SentencePiece
    // folder (no tokenizer.json on disk) that is the converted pipeline, which loads alone.
    let dir = fixture("spm-llama-en");
    let bytes = manabi_tokenize::tokenizer_json_bytes(&dir.join("tokenizer.json")).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let saved = tmp.path().join("tokenizer.json");
    std::fs::write(&saved, &bytes).unwrap();
    let original = manabi_tokenize::TextTokenizer::load(&dir).unwrap();
    let again = manabi_tokenize::TextTokenizer::load(&saved).unwrap();
    for text in ["Hello world", "To be, or not to be", "吾輩は猫である"] {
        assert_eq!(
            again.encode(text).unwrap(),
            original.encode(text).unwrap(),
            "{text}"
        );
    }
    // A tokenizer.json on disk is kept byte for byte.
    let json = fixture("hf-gpt2").join("tokenizer.json");
    assert_eq!(
        manabi_tokenize::tokenizer_json_bytes(&json).unwrap(),
        std::fs::read(&json).unwrap()
    );
}
