//! Morphological word splitting (feature `morph`) with a toy MeCab dictionary built here,
//! and the errors a build without the feature gives.

use std::path::Path;

use manabi_tokenize::sidecar::SIDECAR_FILE;
use manabi_tokenize::{
    CorpusSpec, TextTokenizer, TokenizeError, TokenizerKind, TrainOptions, train,
};

/// A few sentences, repeated so every word is frequent.
const SENTENCES: [&str; 6] = [
    "東京都に住む。",
    "京都に住む。",
    "東京に行く。",
    "都に住む人。",
    "猫が東京にいる。",
    "東京都で猫が住む。",
];

fn corpus(dir: &Path) -> CorpusSpec {
    let path = dir.join("ja.txt");
    let mut text = String::new();
    for _ in 0..5 {
        for s in SENTENCES {
            text.push_str(s);
            text.push_str("\n\n");
        }
    }
    std::fs::write(&path, text).unwrap();
    CorpusSpec::new(vec![path])
}

fn opts(kind: TokenizerKind, vocab_size: usize, dict: Option<&Path>) -> TrainOptions {
    let mut o = TrainOptions::new(kind, vocab_size);
    o.min_frequency = 1;
    o.morph_dict = dict.map(Path::to_path_buf);
    o
}

fn train_plain(dir: &Path) -> TextTokenizer {
    train(&corpus(dir), &opts(TokenizerKind::Wordpiece, 200, None)).unwrap()
}

#[cfg(feature = "morph")]
mod with_feature {
    use std::path::PathBuf;

    use manabi_tokenize::sidecar::Sidecar;

    use super::*;

    /// `東京` + `都` (cost 200) beats `東` + `京都` (cost 600), so `東京都` splits as
    /// 東京/都. One connection id, so the path cost is the sum of word costs.
    const LEXICON: &str = "\
東京,0,0,100,名詞,固有名詞
都,0,0,100,名詞,普通名詞
京都,0,0,100,名詞,固有名詞
東,0,0,500,名詞,普通名詞
に,0,0,100,助詞,格助詞
で,0,0,100,助詞,格助詞
が,0,0,100,助詞,格助詞
住む,0,0,100,動詞,自立
行く,0,0,100,動詞,自立
いる,0,0,100,動詞,自立
猫,0,0,100,名詞,普通名詞
人,0,0,100,名詞,普通名詞
";
    const MATRIX: &str = "1 1\n0 0 0\n";
    const CHAR_DEF: &str = "\
DEFAULT 0 1 0
SPACE 0 1 0
KANJI 0 0 2
HIRAGANA 0 1 0
KATAKANA 1 1 0
ALPHA 1 1 0
NUMERIC 1 1 0

0x0020 SPACE
0x0030..0x0039 NUMERIC
0x0041..0x005A ALPHA
0x0061..0x007A ALPHA
0x3040..0x309F HIRAGANA
0x30A0..0x30FF KATAKANA
0x4E00..0x9FFF KANJI
";
    const UNK_DEF: &str = "\
DEFAULT,0,0,10000,記号
SPACE,0,0,10000,空白
KANJI,0,0,10000,名詞
HIRAGANA,0,0,10000,助詞
KATAKANA,0,0,10000,名詞
ALPHA,0,0,10000,名詞
NUMERIC,0,0,10000,名詞
";

    /// Compiles `lexicon` into vibrato's binary format.
    fn dictionary_bytes(lexicon: &str) -> Vec<u8> {
        let dict = vibrato::SystemDictionaryBuilder::from_readers(
            lexicon.as_bytes(),
            MATRIX.as_bytes(),
            CHAR_DEF.as_bytes(),
            UNK_DEF.as_bytes(),
        )
        .unwrap();
        let mut bytes = Vec::new();
        dict.write(&mut bytes).unwrap();
        bytes
    }

    fn write_dictionary(dir: &Path) -> PathBuf {
        let path = dir.join("dicts/system.dic");
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, dictionary_bytes(LEXICON)).unwrap();
        path
    }

    #[test]
    fn words_follow_the_dictionary() {
        let dir = tempfile::tempdir().unwrap();
        let dict = write_dictionary(dir.path());
        let tok = train(
            &corpus(dir.path()),
            &opts(TokenizerKind::Wordpiece, 200, Some(&dict)),
        )
        .unwrap();
        assert_eq!(
            tok.pre_split("東京都に住む。").unwrap(),
            "東京 都 に 住む 。"
        );
        assert_eq!(
            tok.tokens("東京都に住む").unwrap(),
            ["東京", "都", "に", "住む"]
        );
        assert_eq!(tok.tokens("京都に住む").unwrap(), ["京都", "に", "住む"]);
        assert_eq!(tok.morph_dictionary(), Some(dict.as_path()));
        // Without the dictionary, WordPiece's whitespace split keeps the phrase whole.
        let plain = train_plain(dir.path());
        assert_eq!(plain.morph_dictionary(), None);
        assert_ne!(plain.tokens("東京都に住む").unwrap().len(), 4);

        // Byte-level BPE: spaces mark the words, so decoding shows them.
        let bpe = train(
            &corpus(dir.path()),
            &opts(TokenizerKind::Bpe, 400, Some(&dict)),
        )
        .unwrap();
        let ids = bpe.encode("東京都に住む").unwrap();
        assert_eq!(ids.len(), 4, "{:?}", bpe.tokens("東京都に住む").unwrap());
        assert_eq!(bpe.decode(&ids, false).unwrap(), "東京 都 に 住む");
    }

    #[test]
    fn reload_gives_the_same_ids_and_keeps_special_tokens_whole() {
        let dir = tempfile::tempdir().unwrap();
        let dict = write_dictionary(dir.path());
        for kind in [
            TokenizerKind::Wordpiece,
            TokenizerKind::Bpe,
            TokenizerKind::Unigram,
        ] {
            let mut tok = train(&corpus(dir.path()), &opts(kind, 400, Some(&dict))).unwrap();
            let out = dir.path().join(format!("{kind:?}"));
            tok.save(out.join("tokenizer.json")).unwrap();
            let sidecar = Sidecar::read(&out.join(SIDECAR_FILE)).unwrap().unwrap();
            assert_eq!(sidecar.tokenizer_sha256, tok.sha256());
            assert_eq!(sidecar.morph.dictionary, dict);

            let loaded = TextTokenizer::load(&out).unwrap();
            assert_eq!(loaded.morph_dictionary(), Some(dict.as_path()));
            let texts = [
                "東京都に住む",
                "猫が京都で住む。\n\n東京に行く人",
                "Tokyo 東京都  に",
                "",
            ];
            let batch = loaded.encode_batch(&texts).unwrap();
            for (text, ids) in texts.iter().zip(&batch) {
                assert_eq!(*ids, tok.encode(text).unwrap(), "{kind:?} {text:?}");
                assert_eq!(*ids, loaded.encode(text).unwrap(), "{kind:?} {text:?}");
            }
            assert_eq!(
                loaded.tokens("東京都").unwrap(),
                tok.tokens("東京都").unwrap()
            );

            let bos = loaded.require_token("<bos>").unwrap();
            let eos = loaded.require_token("<eos>").unwrap();
            let ids = loaded.encode("<bos>東京都に住む<eos>").unwrap();
            let inner = loaded.encode("東京都に住む").unwrap();
            assert_eq!(ids, [vec![bos], inner, vec![eos]].concat(), "{kind:?}");
        }
    }

    #[test]
    fn a_moved_changed_or_missing_dictionary_is_reported() {
        let dir = tempfile::tempdir().unwrap();
        let dict = write_dictionary(dir.path());
        let mut tok = train(
            &corpus(dir.path()),
            &opts(TokenizerKind::Wordpiece, 200, Some(&dict)),
        )
        .unwrap();
        let out = dir.path().join("tok");
        tok.save(out.join("tokenizer.json")).unwrap();
        let ids = tok.encode("東京都に住む").unwrap();

        // Moved beside the tokenizer: found there.
        let beside = out.join("system.dic");
        std::fs::rename(&dict, &beside).unwrap();
        let loaded = TextTokenizer::load(&out).unwrap();
        assert_eq!(loaded.morph_dictionary(), Some(beside.as_path()));
        assert_eq!(loaded.encode("東京都に住む").unwrap(), ids);

        // Missing everywhere.
        std::fs::remove_file(&beside).unwrap();
        let err = TextTokenizer::load(&out).unwrap_err();
        assert!(
            matches!(err, TokenizeError::MorphDictionaryMissing { .. }),
            "{err}"
        );
        let msg = err.to_string();
        assert!(msg.starts_with(&format!("{}:", dict.display())), "{msg}");
        assert!(msg.contains(SIDECAR_FILE), "{msg}");

        // Changed: another lexicon under the same name.
        let other = format!("{LEXICON}東京都,0,0,50,名詞,固有名詞\n");
        std::fs::write(&dict, dictionary_bytes(&other)).unwrap();
        let err = TextTokenizer::load(&out).unwrap_err();
        assert!(
            matches!(err, TokenizeError::MorphDictionaryChanged { .. }),
            "{err}"
        );
        let msg = err.to_string();
        assert!(msg.starts_with(&format!("{}:", dict.display())), "{msg}");
        assert!(
            msg.contains("changed since the tokenizer was trained"),
            "{msg}"
        );
    }

    #[test]
    fn corrupt_dictionaries_are_errors_not_panics() {
        let dir = tempfile::tempdir().unwrap();
        let good = dictionary_bytes(LEXICON);
        let mut zstd_garbage = vec![0x28, 0xb5, 0x2f, 0xfd];
        zstd_garbage.extend([0x55; 64]);
        let mut header_then_garbage = b"VibratoTokenizer 0.5\n".to_vec();
        header_then_garbage.extend([0xff; 256]);
        let cases: [(&str, Vec<u8>, &str); 6] = [
            ("empty.dic", vec![], "no vibrato header"),
            ("lex.csv", LEXICON.as_bytes().to_vec(), "no vibrato header"),
            (
                "old.dic",
                b"VibratoTokenizer 0.4\nxxxx".to_vec(),
                "another vibrato version",
            ),
            ("truncated.dic", good[..good.len() / 2].to_vec(), ""),
            ("garbage.dic", header_then_garbage, ""),
            ("garbage.dic.zst", zstd_garbage, "zstd"),
        ];
        for (name, bytes, expect) in cases {
            let path = dir.path().join(name);
            std::fs::write(&path, bytes).unwrap();
            let err = train(
                &corpus(dir.path()),
                &opts(TokenizerKind::Wordpiece, 200, Some(&path)),
            )
            .unwrap_err();
            assert!(
                matches!(err, TokenizeError::CorruptMorphDictionary { .. }),
                "{name}: {err}"
            );
            let msg = err.to_string();
            assert!(msg.contains(name) && msg.contains(expect), "{name}: {msg}");
        }

        let missing = dir.path().join("nope.dic");
        let err = train(
            &corpus(dir.path()),
            &opts(TokenizerKind::Bpe, 400, Some(&missing)),
        )
        .unwrap_err();
        assert!(
            matches!(err, TokenizeError::MorphDictionaryMissing { .. }),
            "{err}"
        );
        assert!(err.to_string().contains("nope.dic"), "{err}");

        let err = train(
            &corpus(dir.path()),
            &opts(TokenizerKind::Char, 100, Some(&missing)),
        )
        .unwrap_err();
        assert!(err.to_string().contains("`morph-dict`"), "{err}");
        let mut o = opts(TokenizerKind::Bpe, 400, Some(&missing));
        o.pre_tokenize = manabi_tokenize::PreTokenize::None;
        let err = train(&corpus(dir.path()), &o).unwrap_err().to_string();
        assert!(err.contains("does not split at the spaces"), "{err}");
    }

    #[test]
    fn a_zstd_compressed_dictionary_splits_the_same() {
        let dir = tempfile::tempdir().unwrap();
        let dict = write_dictionary(dir.path());
        let zst = dir.path().join("system.dic.zst");
        let bytes = std::fs::read(&dict).unwrap();
        let compressed = ruzstd::encoding::compress_to_vec(
            bytes.as_slice(),
            ruzstd::encoding::CompressionLevel::Fastest,
        );
        assert!(compressed.len() < bytes.len());
        std::fs::write(&zst, compressed).unwrap();
        let a = train(
            &corpus(dir.path()),
            &opts(TokenizerKind::Wordpiece, 200, Some(&dict)),
        )
        .unwrap();
        let mut b = train(
            &corpus(dir.path()),
            &opts(TokenizerKind::Wordpiece, 200, Some(&zst)),
        )
        .unwrap();
        // (Not the JSON: WordPiece's trainer orders ties by hash, differently per run.)
        for text in SENTENCES {
            assert_eq!(a.pre_split(text).unwrap(), b.pre_split(text).unwrap());
        }
        b.save(dir.path().join("z/tokenizer.json")).unwrap();
        let loaded = TextTokenizer::load(dir.path().join("z")).unwrap();
        assert_eq!(
            loaded.tokens("東京都に住む").unwrap(),
            ["東京", "都", "に", "住む"]
        );
    }

    #[test]
    fn a_stale_sidecar_is_refused_and_a_plain_save_removes_it() {
        let dir = tempfile::tempdir().unwrap();
        let dict = write_dictionary(dir.path());
        let mut tok = train(
            &corpus(dir.path()),
            &opts(TokenizerKind::Wordpiece, 200, Some(&dict)),
        )
        .unwrap();
        let out = dir.path().join("tok");
        tok.save(out.join("tokenizer.json")).unwrap();
        let sidecar = out.join(SIDECAR_FILE);

        // Another tokenizer.json beside the sidecar.
        let mut plain = train_plain(dir.path());
        let other = dir.path().join("other");
        plain.save(other.join("tokenizer.json")).unwrap();
        std::fs::copy(&sidecar, other.join(SIDECAR_FILE)).unwrap();
        let err = TextTokenizer::load(&other).unwrap_err();
        assert!(matches!(err, TokenizeError::CorruptSidecar { .. }), "{err}");
        assert!(err.to_string().contains("was written for"), "{err}");

        // Saving a plain tokenizer over the morph one drops its sidecar.
        plain.save(out.join("tokenizer.json")).unwrap();
        assert!(!sidecar.exists());
        let loaded = TextTokenizer::load(&out).unwrap();
        assert_eq!(loaded.morph_dictionary(), None);
        assert_eq!(
            loaded.encode("東京都に住む").unwrap(),
            plain.encode("東京都に住む").unwrap()
        );
    }
}

#[cfg(not(feature = "morph"))]
#[test]
fn without_the_feature_morph_is_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let dict = dir.path().join("system.dic");
    let err = train(
        &corpus(dir.path()),
        &opts(TokenizerKind::Wordpiece, 200, Some(&dict)),
    )
    .unwrap_err();
    assert!(
        matches!(err, TokenizeError::MorphFeatureDisabled { .. }),
        "{err}"
    );
    assert!(err.to_string().contains("cargo feature `morph`"), "{err}");

    // A sidecar written by a morph build.
    let mut tok = train_plain(dir.path());
    let out = dir.path().join("tok");
    tok.save(out.join("tokenizer.json")).unwrap();
    let sidecar = serde_json::json!({
        "format": "manabi-pretokenize",
        "version": 1,
        "tokenizer_sha256": tok.sha256(),
        "morph": {
            "engine": "vibrato",
            "dictionary": dict,
            "dictionary_sha256": "00",
            "separator": " ",
        },
    });
    std::fs::write(out.join(SIDECAR_FILE), sidecar.to_string()).unwrap();
    let err = TextTokenizer::load(&out).unwrap_err();
    assert!(
        matches!(err, TokenizeError::MorphFeatureDisabled { .. }),
        "{err}"
    );
    let msg = err.to_string();
    assert!(msg.contains("cargo feature `morph`"), "{msg}");
    assert!(msg.contains("system.dic"), "{msg}");
}
