//! transformers' `BertJapaneseTokenizer` rebuilt from `vocab.txt` + tokenizer_config.json:
//! for each folder under fixtures/tokenize/bertja-* (made by scripts/bertja_fixtures.py
//! with transformers 5.25 and fugashi, on the tiny MeCab dictionary
//! fixtures/tokenize/bertja-dic compiled by mecab-dict-index), the ids, tokens and decoded
//! text equal transformers' on probe texts (NFKC, spaces MeCab skips or keeps, special
//! tokens inside text, characters above U+FFFF, NUL, long unknown runs, empty text) and on
//! held-out lines of ../shared/data (skipped with a message when that folder is absent).
//! Saving keeps the MeCab step (in the sidecar); bad folders are refused in one line.

use std::path::{Path, PathBuf};

mod common;

use common::{HeldOut, data_lines, fixture, gz_json, shared_data};
use manabi_tokenize::TextTokenizer;
use serde::Deserialize;
use serde_json::{Value, json};

const FOLDERS: [&str; 4] = [
    "bertja-mecab-wordpiece",
    "bertja-mecab-lower",
    "bertja-mecab-char",
    "bertja-basic",
];

#[derive(Deserialize)]
struct Expected {
    vocab_size: usize,
    model_max_length: Option<usize>,
    specials: std::collections::BTreeMap<String, (String, u32)>,
    cases: Vec<Case>,
}

#[derive(Deserialize)]
struct Case {
    text: String,
    ids: Vec<u32>,
    tokens: Vec<String>,
    plain_ids: Vec<u32>,
    decoded: String,
}

/// A copy of the folder `name` beside a copy of the dictionary (so `-d ../bertja-dic`
/// still resolves); returns (temp root, folder).
fn copy_of(name: &str) -> (tempfile::TempDir, PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    for dir in [name, "bertja-dic"] {
        let to = tmp.path().join(dir);
        std::fs::create_dir(&to).unwrap();
        for entry in std::fs::read_dir(fixture(dir)).unwrap() {
            let entry = entry.unwrap();
            std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
        }
    }
    let folder = tmp.path().join(name);
    (tmp, folder)
}

fn edit_config(dir: &Path, edit: impl FnOnce(&mut Value)) {
    let path = dir.join("tokenizer_config.json");
    let mut cfg: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    edit(&mut cfg);
    std::fs::write(&path, cfg.to_string()).unwrap();
}

/// The one-line error of loading a copy of `name` after `edit`.
fn refused(name: &str, edit: impl FnOnce(&Path)) -> String {
    let (_tmp, dir) = copy_of(name);
    edit(&dir);
    let err = TextTokenizer::load(&dir).unwrap_err().to_string();
    assert!(!err.contains('\n'), "not one line: {err}");
    err
}

fn check_cases(tok: &TextTokenizer, name: &str, want: &Expected) {
    for case in &want.cases {
        let t = &case.text;
        assert_eq!(
            tok.encode_with_specials(t).unwrap(),
            case.ids,
            "{name}: ids of {t:?}"
        );
        assert_eq!(
            tok.encode(t).unwrap(),
            case.plain_ids,
            "{name}: plain ids of {t:?}"
        );
        assert_eq!(
            tok.tokens(t).unwrap(),
            case.tokens,
            "{name}: tokens of {t:?}"
        );
        assert_eq!(
            tok.decode(&case.ids, true).unwrap(),
            case.decoded,
            "{name}: decode of {t:?}"
        );
    }
}

#[test]
fn probes_match_transformers() {
    for name in FOLDERS {
        let want: Expected = serde_json::from_str(
            &std::fs::read_to_string(fixture(name).join("expected.json")).unwrap(),
        )
        .unwrap();
        let tok = TextTokenizer::load(fixture(name)).unwrap();
        assert_eq!(tok.hf_class(), "BertJapaneseTokenizer", "{name}");
        assert_eq!(tok.vocab_size(), want.vocab_size, "{name}");
        assert_eq!(tok.model_max_length(), want.model_max_length, "{name}");
        for (key, (token, id)) in &want.specials {
            let got = tok.special(&format!("{key}_token"));
            assert_eq!(got, Some((token.as_str(), *id)), "{name}: {key}_token");
        }
        assert_eq!(
            tok.morph_dictionary().is_some(),
            name.contains("mecab"),
            "{name}"
        );
        check_cases(&tok, name, &want);
        assert!(
            want.cases.len() >= 50,
            "{name}: {} probes",
            want.cases.len()
        );
    }
}

#[test]
fn held_out_corpus_lines_match_transformers() {
    let Some(data) = shared_data() else {
        eprintln!("skipping: ../shared/data absent (probes_match_transformers ran)");
        return;
    };
    let mut total = 0;
    for name in FOLDERS {
        let held: HeldOut = gz_json(&fixture(name).join("held_out.json.gz"));
        let files = data_lines(&data, &held, "scripts/bertja_fixtures.py");
        let tok = TextTokenizer::load(fixture(name)).unwrap();
        let texts: Vec<&str> = held
            .cases
            .iter()
            .map(|c| files[c.file][c.line].as_str())
            .collect();
        let batch = tok.encode_batch(&texts).unwrap();
        for ((case, text), ids) in held.cases.iter().zip(&texts).zip(batch) {
            assert_eq!(
                tok.frame(ids),
                case.ids,
                "{name}: {}:{}: {text:?}",
                held.files[case.file].name,
                case.line + 1
            );
        }
        total += held.cases.len();
    }
    assert!(total >= 2000, "{total} held-out lines");
}

#[test]
fn a_saved_tokenizer_keeps_the_mecab_step() {
    let name = "bertja-mecab-lower";
    let want: Expected = serde_json::from_str(
        &std::fs::read_to_string(fixture(name).join("expected.json")).unwrap(),
    )
    .unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("tokenizer.json");
    TextTokenizer::load(fixture(name))
        .unwrap()
        .save(&path)
        .unwrap();
    let sidecar: Value = serde_json::from_str(
        &std::fs::read_to_string(tmp.path().join("manabi-pretokenize.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(sidecar["morph"]["mecab"], json!(true));
    assert_eq!(sidecar["morph"]["nfkc"], json!(true));
    let saved = TextTokenizer::load(&path).unwrap();
    for case in &want.cases {
        assert_eq!(
            saved.encode_with_specials(&case.text).unwrap(),
            case.ids,
            "{:?}",
            case.text
        );
    }
}

#[test]
fn bad_folders_are_refused_in_one_line() {
    let name = "bertja-mecab-wordpiece";
    let mecab = |v: Value| move |d: &Path| edit_config(d, |c| c["mecab_kwargs"] = v);

    let err = refused(
        name,
        mecab(json!({"mecab_dic": null, "mecab_option": "-d nowhere"})),
    );
    assert!(
        err.contains("nowhere: morphological dictionary not found"),
        "{err}"
    );
    assert!(err.contains("`mecab_kwargs.mecab_option`"), "{err}");

    let err = refused(name, mecab(json!({"mecab_dic": "kyoto"})));
    assert!(
        err.contains("tokenizer_config.json: `mecab_kwargs.mecab_dic` \"kyoto\""),
        "{err}"
    );

    let err = refused(name, mecab(json!({"mecab_dic": null})));
    assert!(err.contains("names no dictionary"), "{err}");

    let err = refused(
        name,
        mecab(json!({"mecab_dic": null, "mecab_option": "-d ../bertja-dic -u user.dic"})),
    );
    assert!(err.contains("user dictionaries (-u)"), "{err}");

    let err = refused(name, mecab(json!({"dicdir": "x"})));
    assert!(err.contains("`mecab_kwargs.dicdir`"), "{err}");

    let err = refused(name, |d| {
        edit_config(d, |c| c["word_tokenizer_type"] = json!("sudachi"))
    });
    assert!(err.contains("`word_tokenizer_type` \"sudachi\""), "{err}");
    assert!(err.contains("SudachiPy"), "{err}");

    let err = refused(name, |d| {
        edit_config(d, |c| c["subword_tokenizer_type"] = json!("bpe"))
    });
    assert!(err.contains("`subword_tokenizer_type` \"bpe\""), "{err}");

    let err = refused(name, |d| {
        edit_config(d, |c| c["mask_token"] = json!("<mask>"))
    });
    assert!(err.contains("`mask_token` \"<mask>\" is not in"), "{err}");

    let err = refused(name, |d| {
        edit_config(d, |c| c["do_lower_case"] = json!("yes"))
    });
    assert!(
        err.contains("`do_lower_case` must be true or false"),
        "{err}"
    );

    let err = refused(name, |d| std::fs::remove_file(d.join("vocab.txt")).unwrap());
    assert!(err.contains("which reads vocab.txt, but"), "{err}");

    // The dictionary's files: missing, truncated, swapped, not UTF-8.
    let dic = |d: &Path| d.parent().unwrap().join("bertja-dic");
    let err = refused(name, |d| {
        std::fs::remove_file(dic(d).join("matrix.bin")).unwrap()
    });
    assert!(
        err.contains("not a usable MeCab dictionary: no matrix.bin"),
        "{err}"
    );
    let err = refused(name, |d| {
        let p = dic(d).join("sys.dic");
        let b = std::fs::read(&p).unwrap();
        std::fs::write(&p, &b[..b.len() - 100]).unwrap();
    });
    assert!(
        err.contains("sys.dic: not a usable MeCab dictionary"),
        "{err}"
    );
    assert!(err.contains("magic number"), "{err}");
    let err = refused(name, |d| {
        std::fs::write(dic(d).join("matrix.bin"), [1, 0, 1, 0, 0, 0]).unwrap();
    });
    assert!(
        err.contains("matrix.bin: not a usable MeCab dictionary"),
        "{err}"
    );
    let err = refused(name, |d| {
        std::fs::write(dic(d).join("char.bin"), b"not a char table").unwrap();
    });
    assert!(
        err.contains("char.bin: not a usable MeCab dictionary"),
        "{err}"
    );
    let err = refused(name, |d| {
        let p = dic(d).join("sys.dic");
        let mut b = std::fs::read(&p).unwrap();
        b[40..45].copy_from_slice(b"EUC\0\0");
        std::fs::write(&p, b).unwrap();
    });
    assert!(err.contains("charset \"EUC\""), "{err}");
}

/// NFKC of `s`, as Python's `unicodedata.normalize("NFKC", s)`.
fn nfkc(s: &str) -> String {
    use tokenizers::tokenizer::Normalizer;
    let mut n = tokenizers::NormalizedString::from(s);
    tokenizers::normalizers::unicode::NFKC
        .normalize(&mut n)
        .unwrap();
    n.get().to_string()
}

#[test]
fn offsets_point_into_the_original_text() {
    // MeCab mode NFKC-normalises and splits the text first; each token's span is still a
    // span of the text given, whose NFKC form (lower-cased where the folder lower-cases)
    // holds the token.
    for name in [
        "bertja-mecab-wordpiece",
        "bertja-mecab-lower",
        "bertja-mecab-char",
    ] {
        let want: Expected = serde_json::from_str(
            &std::fs::read_to_string(fixture(name).join("expected.json")).unwrap(),
        )
        .unwrap();
        let tok = TextTokenizer::load(fixture(name)).unwrap();
        let mut checked = 0;
        for case in &want.cases {
            let text = &case.text;
            let chars: Vec<char> = text.chars().collect();
            let got = tok.encode_with_offsets(text).unwrap();
            let ids: Vec<u32> = got.iter().map(|&(id, _, _)| id).collect();
            assert_eq!(ids, case.plain_ids, "{name}: {text:?}");
            let mut last = 0;
            for (&(id, s, e), token) in got.iter().zip(&case.tokens) {
                assert!(
                    s <= e && e <= chars.len() && s >= last,
                    "{name}: {text:?}: {s}..{e}"
                );
                last = s;
                if Some(id) == tok.unk_id() || token.starts_with('[') {
                    continue;
                }
                let span: String = chars[s..e].iter().collect();
                let mut span = nfkc(&span);
                if name.ends_with("lower") {
                    span = span.to_lowercase();
                }
                // One character may normalise to several tokens (㈱ → ( 株 )).
                assert!(
                    span.contains(token.trim_start_matches("##")),
                    "{name}: {text:?}: token {token:?} at {s}..{e} ({span:?})"
                );
                checked += 1;
            }
        }
        assert!(checked > 200, "{name}: {checked} tokens checked");
    }
}

#[test]
fn checkpoints_store_the_pipeline_and_its_mecab_step() {
    // What a checkpoint copies for a BertJapaneseTokenizer folder: the rebuilt pipeline as
    // tokenizer.json and a sidecar for it, which load back to the same ids.
    let name = "bertja-mecab-wordpiece";
    let src = fixture(name).join("tokenizer.json");
    let (json, side) = manabi_tokenize::tokenizer_files(&src).unwrap();
    let side = side.expect("a sidecar for the MeCab step");
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(tmp.path().join("tokenizer.json"), json).unwrap();
    std::fs::write(tmp.path().join("manabi-pretokenize.json"), side).unwrap();
    let copy = TextTokenizer::load(tmp.path()).unwrap();
    let original = TextTokenizer::load(fixture(name)).unwrap();
    for text in ["吾輩は猫である。名前はまだ無い。", "ｶﾀｶﾅ と [MASK] ＡＢＣ"]
    {
        assert_eq!(
            copy.encode(text).unwrap(),
            original.encode(text).unwrap(),
            "{text:?}"
        );
    }
    // A folder without word splitting stores no sidecar.
    let basic = fixture("bertja-basic").join("tokenizer.json");
    assert!(
        manabi_tokenize::tokenizer_files(&basic)
            .unwrap()
            .1
            .is_none()
    );
}

#[test]
fn the_path_a_bert_japanese_tokenizer_reports_loads_it_again() {
    // Recipes store `tokenizer.path()` (vocab.txt here) in checkpoints: it must give the
    // rebuilt pipeline, not the vocabulary file.
    let tok = TextTokenizer::load(fixture("bertja-mecab-char")).unwrap();
    assert!(
        tok.path().ends_with("vocab.txt"),
        "{}",
        tok.path().display()
    );
    let (json, sidecar) = manabi_tokenize::tokenizer_files(tok.path()).unwrap();
    assert_eq!(json, tok.to_json().as_bytes());
    assert!(sidecar.is_some());
    let again = TextTokenizer::load(tok.path()).unwrap();
    assert_eq!(
        again.encode("猫である").unwrap(),
        tok.encode("猫である").unwrap()
    );
}

#[test]
fn a_vocab_txt_with_a_bom_and_crlf_lines_reads_the_same() {
    let name = "bertja-mecab-wordpiece";
    let (_tmp, dir) = copy_of(name);
    let vocab = std::fs::read_to_string(dir.join("vocab.txt")).unwrap();
    let crlf = format!("\u{feff}{}", vocab.replace('\n', "\r\n"));
    std::fs::write(dir.join("vocab.txt"), crlf).unwrap();
    let (plain, edited) = (
        TextTokenizer::load(fixture(name)).unwrap(),
        TextTokenizer::load(&dir).unwrap(),
    );
    assert_eq!(edited.vocab_size(), plain.vocab_size());
    for text in ["吾輩は猫である。名前はまだ無い。", "[CLS] ＡＢＣ [MASK]"] {
        assert_eq!(
            edited.encode_with_specials(text).unwrap(),
            plain.encode_with_specials(text).unwrap()
        );
    }
}
