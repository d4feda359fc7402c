//! `tokenizer_config.json` read as transformers 5.25's `AutoTokenizer.from_pretrained`:
//! for each folder under fixtures/tokenize/hf-* (made by
//! scripts/tokenizer_config_fixtures.py), `encode_with_specials` gives exactly the ids of
//! `AutoTokenizer.from_pretrained(folder)(text)["input_ids"]`, the class and the special
//! tokens are transformers', and a configuration manabi cannot follow is refused in one
//! line naming the file and the key.

use std::path::{Path, PathBuf};

use manabi_tokenize::TextTokenizer;
use serde::Deserialize;

#[derive(Deserialize)]
struct Expected {
    class: String,
    model_max_length: Option<usize>,
    bos: Special,
    eos: Special,
    pad: Special,
    unk: Special,
    raw_differs: usize,
    cases: Vec<Case>,
}

#[derive(Deserialize)]
struct Special {
    token: Option<String>,
    id: Option<u32>,
}

#[derive(Deserialize)]
struct Case {
    text: String,
    ids: Vec<u32>,
}

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn fixture(name: &str) -> PathBuf {
    root().join("fixtures/tokenize").join(name)
}

fn expected(dir: &Path) -> Expected {
    serde_json::from_str(&std::fs::read_to_string(dir.join("expected.json")).unwrap()).unwrap()
}

/// The folder `dir` loads as transformers loads it: ids, class, special tokens.
fn check_folder(dir: &Path, name: &str) {
    let want = expected(&fixture(name));
    let tok = TextTokenizer::load(dir).unwrap();
    assert_eq!(tok.hf_class(), want.class, "{name}: class");
    assert_eq!(tok.model_max_length(), want.model_max_length, "{name}");
    for (key, special, id) in [
        ("bos_token", &want.bos, tok.bos_id()),
        ("eos_token", &want.eos, tok.eos_id()),
        ("pad_token", &want.pad, tok.pad_id()),
        ("unk_token", &want.unk, tok.unk_id()),
    ] {
        assert_eq!(id, special.id, "{name}: {key} id");
        assert_eq!(
            tok.special(key).map(|(t, _)| t.to_string()),
            special.token,
            "{name}: {key}"
        );
    }
    assert!(want.cases.len() >= 50, "{name}: too few cases");
    for case in &want.cases {
        assert_eq!(
            tok.encode_with_specials(&case.text).unwrap(),
            case.ids,
            "{name}: ids differ from AutoTokenizer for {:?}",
            case.text
        );
    }
}

fn check(name: &str) {
    check_folder(&fixture(name), name);
}

#[test]
fn llama_style_tokenizer_adds_bos_from_its_post_processor() {
    check("hf-llama-bos");
    let tok = TextTokenizer::load(fixture("hf-llama-bos")).unwrap();
    assert_eq!(tok.specials_prefix(), [1]);
    assert!(tok.specials_suffix().is_empty());
    // encode() stays the ids without special tokens.
    let plain = tok.encode("Hello").unwrap();
    assert_eq!(tok.encode_with_specials("Hello").unwrap()[1..], plain[..]);
}

#[test]
fn add_eos_token_tokenizer_ends_every_sequence_with_eos() {
    check("hf-llama-add-eos");
    let tok = TextTokenizer::load(fixture("hf-llama-add-eos")).unwrap();
    assert_eq!(
        (tok.specials_prefix(), tok.specials_suffix()),
        (&[1][..], &[2][..])
    );
    assert_eq!(tok.frame(vec![7]), [1, 7, 2]);
}

#[test]
fn qwen2_tokenizer_has_no_bos_and_im_end_as_eos() {
    check("hf-qwen2");
    let tok = TextTokenizer::load(fixture("hf-qwen2")).unwrap();
    assert_eq!(tok.bos_id(), None);
    assert_eq!(tok.special("eos_token"), Some(("<|im_end|>", 2)));
}

#[test]
fn gpt2_tokenizer_adds_nothing() {
    check("hf-gpt2");
}

#[test]
fn llama_class_over_a_byte_level_file_is_used_as_is() {
    check("hf-llama3-bytelevel");
}

#[test]
fn add_bos_token_in_the_config_is_ignored_as_transformers_5_does() {
    // tokenizer.json has no post-processor; tokenizer_config.json asks for BOS and EOS,
    // which transformers 5.25 drops; the pad token comes from special_tokens_map.json.
    check("hf-config-flags-ignored");
    let tok = TextTokenizer::load(fixture("hf-config-flags-ignored")).unwrap();
    assert!(tok.specials_prefix().is_empty() && tok.specials_suffix().is_empty());
}

#[test]
fn classes_that_rebuild_the_pipeline_are_rebuilt() {
    for name in [
        "hf-gpt2-rebuilt",
        "hf-gemma-rebuilt",
        "hf-neox-rebuilt",
        "hf-bert-rebuilt",
    ] {
        let want = expected(&fixture(name));
        assert!(
            want.raw_differs > 10,
            "{name}: the fixture does not test a rebuild"
        );
        check(name);
        // The same tokenizer.json alone (no tokenizer_config.json) is used as is.
        let tmp = tempfile::tempdir().unwrap();
        std::fs::copy(
            fixture(name).join("tokenizer.json"),
            tmp.path().join("tokenizer.json"),
        )
        .unwrap();
        let raw = TextTokenizer::load(tmp.path()).unwrap();
        assert_eq!(raw.hf_class(), "TokenizersBackend");
        assert_eq!(
            raw.eos_id(),
            None,
            "{name}: no named tokens without a config"
        );
        let differ = want
            .cases
            .iter()
            .filter(|c| raw.encode_with_specials(&c.text).unwrap() != c.ids)
            .count();
        assert_eq!(differ, want.raw_differs, "{name}");
    }
}

/// A copy of the fixture folder `name` in a temporary folder.
fn copy_of(name: &str) -> tempfile::TempDir {
    let tmp = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(fixture(name)).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), tmp.path().join(entry.file_name())).unwrap();
    }
    tmp
}

#[test]
fn a_byte_order_mark_is_accepted() {
    let tmp = copy_of("hf-config-flags-ignored");
    for file in ["tokenizer_config.json", "special_tokens_map.json"] {
        let path = tmp.path().join(file);
        let text = std::fs::read_to_string(&path).unwrap();
        std::fs::write(&path, format!("\u{feff}{text}")).unwrap();
    }
    check_folder(tmp.path(), "hf-config-flags-ignored");
}

/// The one-line error of loading a copy of the fixture folder `name` after `edit`, and
/// the path of the copy's tokenizer_config.json.
fn refused(name: &str, edit: impl FnOnce(&Path)) -> (String, PathBuf) {
    let tmp = copy_of(name);
    edit(tmp.path());
    let err = TextTokenizer::load(tmp.path()).unwrap_err().to_string();
    assert!(!err.contains('\n'), "not one line: {err}");
    let config = tmp.path().join("tokenizer_config.json");
    // Keep the folder alive until the message is read.
    drop(tmp);
    (err, config)
}

/// Sets `key` of the folder's tokenizer_config.json to `value`.
fn set(dir: &Path, key: &str, value: serde_json::Value) {
    let path = dir.join("tokenizer_config.json");
    let mut cfg: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    cfg[key] = value;
    std::fs::write(&path, cfg.to_string()).unwrap();
}

#[test]
fn an_unknown_tokenizer_class_is_refused_naming_file_and_key() {
    let (err, config) = refused("hf-gpt2", |d| {
        set(d, "tokenizer_class", "CamembertTokenizer".into())
    });
    assert!(
        err.starts_with(&format!(
            "{}: `tokenizer_class` CamembertTokenizer: manabi does not build",
            config.display()
        )),
        "{err}"
    );
    // BertJapaneseTokenizer is built, from vocab.txt, which this folder lacks.
    let (err, config) = refused("hf-gpt2", |d| {
        set(d, "tokenizer_class", "BertJapaneseTokenizer".into())
    });
    assert!(
        err.starts_with(&format!(
            "{}: names BertJapaneseTokenizer, which reads vocab.txt, but",
            config.display()
        )),
        "{err}"
    );
}

#[test]
fn a_malformed_tokenizer_config_is_refused_naming_the_file() {
    for (text, says) in [
        ("{\"tokenizer_class\": ", "not valid JSON"),
        ("[1, 2]", "not a JSON object but a list"),
        ("{\"eos_token\": 5}", "`eos_token` must be a token"),
        (
            "{\"eos_token\": {\"lstrip\": false}}",
            "`eos_token` is an object without a string `content`",
        ),
        (
            "{\"model_max_length\": \"long\"}",
            "`model_max_length` must be a number",
        ),
        (
            "{\"tokenizer_class\": \"GPT2Tokenizer\", \"add_prefix_space\": null}",
            "`add_prefix_space` must be true or false",
        ),
    ] {
        let (err, config) = refused("hf-gpt2", |d| {
            std::fs::write(d.join("tokenizer_config.json"), text).unwrap()
        });
        assert!(
            err.starts_with(&format!("{}: ", config.display())) && err.contains(says),
            "{text}: {err}"
        );
    }
}

#[test]
fn a_bos_token_not_in_the_vocabulary_is_refused() {
    let (err, config) = refused("hf-llama-bos", |d| set(d, "bos_token", "<BOS>".into()));
    assert!(
        err.starts_with(&format!(
            "{}: `bos_token` \"<BOS>\" is not in tokenizer.json's vocabulary",
            config.display()
        )),
        "{err}"
    );
    // A class default the vocabulary lacks is named as such: GPT2Tokenizer's
    // <|endoftext|>, over a tokenizer that has no such token.
    let (err, _) = refused("hf-llama-bos", |d| {
        std::fs::write(
            d.join("tokenizer_config.json"),
            r#"{"tokenizer_class": "GPT2Tokenizer"}"#,
        )
        .unwrap()
    });
    assert!(
        err.contains("the default `bos_token` of GPT2Tokenizer") || err.contains("needs a BPE"),
        "{err}"
    );
    // special_tokens_map.json names the file it came from.
    let (err, _) = refused("hf-config-flags-ignored", |d| {
        std::fs::write(
            d.join("special_tokens_map.json"),
            r#"{"pad_token": "<PAD>"}"#,
        )
        .unwrap()
    });
    assert!(
        err.contains("special_tokens_map.json: `pad_token` \"<PAD>\""),
        "{err}"
    );
}

#[test]
fn a_class_over_a_tokenizer_of_another_model_is_refused() {
    let (err, config) = refused("hf-gpt2", |d| {
        set(d, "tokenizer_class", "BertTokenizerFast".into())
    });
    assert!(
        err.starts_with(&format!(
            "{}: `tokenizer_class` BertTokenizer needs a WordPiece tokenizer.json",
            config.display()
        )),
        "{err}"
    );
}

#[test]
fn a_slow_tokenizer_without_tokenizer_json_is_refused() {
    let (err, _) = refused("hf-llama-bos", |d| {
        std::fs::remove_file(d.join("tokenizer.json")).unwrap();
        set(d, "tokenizer_class", "CamembertTokenizer".into());
    });
    assert!(err.contains("tokenizer.json: missing;"), "{err}");
    assert!(
        err.contains("`tokenizer_class` CamembertTokenizer"),
        "{err}"
    );
}

#[test]
fn the_model_type_of_config_json_can_choose_the_class() {
    // transformers forces Qwen2Tokenizer for model_type qwen2, whatever the config names.
    let tmp = copy_of("hf-qwen2");
    set(
        tmp.path(),
        "tokenizer_class",
        "PreTrainedTokenizerFast".into(),
    );
    std::fs::write(tmp.path().join("config.json"), r#"{"model_type": "qwen2"}"#).unwrap();
    check_folder(tmp.path(), "hf-qwen2");
    // Mistral registers TokenizersBackend: a LlamaTokenizer class is tokenizer.json as is.
    let tmp = copy_of("hf-gpt2-rebuilt");
    set(tmp.path(), "tokenizer_class", "LlamaTokenizerFast".into());
    std::fs::write(
        tmp.path().join("config.json"),
        r#"{"model_type": "mistral"}"#,
    )
    .unwrap();
    assert_eq!(
        TextTokenizer::load(tmp.path()).unwrap().hf_class(),
        "TokenizersBackend"
    );
}

#[test]
fn a_file_not_named_tokenizer_json_is_read_alone() {
    let tmp = copy_of("hf-gpt2");
    std::fs::rename(
        tmp.path().join("tokenizer.json"),
        tmp.path().join("other.json"),
    )
    .unwrap();
    let tok = TextTokenizer::load(tmp.path().join("other.json")).unwrap();
    assert_eq!((tok.hf_class(), tok.eos_id()), ("TokenizersBackend", None));
}
