//! End-to-end runs of `curate` on small files: JSONL and text input (BOM, CRLF, gzip
//! not needed), the output and its report, Aozora cleaning split into paragraphs, block
//! lists, determinism, and errors that name the file and line.

use std::path::{Path, PathBuf};

use manabi_curate::{
    CorpusFormat, CurateConfig, CurateJob, DocBoundary, OutputFormat, Report, Rule, curate,
};

/// `n` distinct documents of plain prose that pass every quality rule: six sentences
/// of pseudo-words from a fixed-seed generator.
fn clean_docs(n: usize, seed: u64) -> Vec<String> {
    let mut state = seed;
    let mut next = move || {
        state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        (z ^ (z >> 31)) as usize
    };
    let mut word = || -> String {
        let len = 3 + next() % 6;
        (0..len)
            .map(|_| (b'a' + (next() % 26) as u8) as char)
            .collect()
    };
    (0..n)
        .map(|_| {
            let sentences: Vec<String> = (0..6)
                .map(|_| {
                    let words: Vec<String> = (0..12).map(|_| word()).collect();
                    format!("{}.", words.join(" "))
                })
                .collect();
            sentences.join(" ")
        })
        .collect()
}

fn write(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    path
}

fn read_texts(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            v["text"].as_str().unwrap().to_string()
        })
        .collect()
}

fn run(job: &CurateJob) -> Report {
    curate(job, &mut |_| {}).unwrap()
}

#[test]
fn jsonl_with_bom_and_crlf_is_filtered_deduplicated_and_reported() {
    let dir = tempfile::tempdir().unwrap();
    let docs = clean_docs(3, 1);
    let line = |t: &str| serde_json::json!({ "body": t, "id": 1 }).to_string();
    let near = docs[0].replacen(' ', "  ", 1).replace(". ", "! ");
    let lines = [
        line(&docs[0]),
        line(&docs[1]),
        line(&docs[0].to_uppercase()), // exact duplicate once normalised
        line("Too short."),
        line("   "),
        line(&near), // same words, other punctuation: a near duplicate
        line(&docs[2]),
    ];
    let mut bytes = b"\xEF\xBB\xBF".to_vec();
    bytes.extend(lines.join("\r\n").into_bytes());
    let input = write(dir.path(), "in.jsonl", &bytes);
    let output = dir.path().join("out/clean.jsonl");
    let mut job = CurateJob::new(vec![input], output.clone());
    job.field = "body".to_string();
    let report = run(&job);

    assert_eq!(read_texts(&output), docs);
    assert_eq!((report.docs_in, report.docs_kept), (7, 3));
    assert_eq!(report.removed(Rule::ExactDedup), 1);
    assert_eq!(report.removed(Rule::GopherWordCount), 1);
    assert_eq!(report.removed(Rule::Empty), 1);
    assert_eq!(report.removed(Rule::NearDedup), 1);
    let total: u64 = report.rules.iter().map(|c| c.removed).sum();
    assert_eq!(total + report.docs_kept, report.docs_in);
    assert!(report.bytes_out < report.bytes_in);

    let saved: serde_json::Value =
        serde_json::from_slice(&std::fs::read(Report::path_for(&output)).unwrap()).unwrap();
    assert_eq!(saved["docs_kept"], 3);
    assert_eq!(saved["rules"][1]["rule"], "exact_dedup");
    assert_eq!(saved["rules"][1]["removed"], 1);
    // Nothing else beside the output: the temporary file was renamed.
    let names: Vec<String> = std::fs::read_dir(dir.path().join("out"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names.len(), 2, "{names:?}");
}

#[test]
fn text_paragraphs_to_text_output_and_dedup_switches() {
    let dir = tempfile::tempdir().unwrap();
    let docs = clean_docs(2, 7);
    let text = format!("{}\r\n\r\n{}\r\n\r\n{}\r\n", docs[0], docs[1], docs[0]);
    let input = write(dir.path(), "in.txt", text.as_bytes());
    let output = dir.path().join("out.txt");
    let job = CurateJob::new(vec![input.clone()], output.clone());
    assert_eq!(job.output_format, OutputFormat::Text);
    let report = run(&job);
    assert_eq!(report.docs_kept, 2);
    let written = std::fs::read_to_string(&output).unwrap();
    assert_eq!(written, format!("{}\n\n{}\n\n", docs[0], docs[1]));

    let mut job = CurateJob::new(vec![input], dir.path().join("all.jsonl"));
    job.config.disable = vec![Rule::ExactDedup, Rule::NearDedup];
    assert_eq!(run(&job).docs_kept, 3);
}

#[test]
fn runs_are_deterministic() {
    let dir = tempfile::tempdir().unwrap();
    let mut docs = clean_docs(40, 3);
    for i in 0..10 {
        let copy = docs[i * 3].replacen(' ', " and ", 2);
        docs.push(copy);
    }
    let body: Vec<String> = docs.iter().map(|d| format!("{d}\n")).collect();
    let input = write(dir.path(), "in.txt", body.concat().as_bytes());
    let out = |name: &str| {
        let mut job = CurateJob::new(vec![input.clone()], dir.path().join(name));
        job.unit = DocBoundary::Line;
        run(&job);
        std::fs::read(dir.path().join(name)).unwrap()
    };
    assert_eq!(out("a.jsonl"), out("b.jsonl"));
}

#[test]
fn aozora_files_are_cleaned_then_split_into_paragraphs() {
    let dir = tempfile::tempdir().unwrap();
    let body = "　今朝はいつもより早く起きて、近くの公園まで｜散歩《さんぽ》に出かけた。\
                空気はまだ冷たく、木々の葉には細かな露が光っていた。";
    let text = format!(
        "\u{feff}題名\r\n著者\r\n\r\n-------------------------------------------------------\r\n\
         【テキスト中に現れる記号について】\r\n\r\n《》：ルビ\r\n\
         -------------------------------------------------------\r\n\r\n\
         ［＃３字下げ］一［＃「一」は中見出し］\r\n\r\n{body}\r\n\r\n葉を※［＃「てへん＋劣」、第3水準1-84-77］ぎ取った。\r\n\r\n\
         底本：「テスト」\r\n入力：誰か\r\n"
    );
    let input = write(dir.path(), "work.txt", text.as_bytes());
    let output = dir.path().join("work.jsonl");
    let mut job = CurateJob::new(vec![input], output.clone());
    job.config.aozora = true;
    // Paragraphs this short fail the Japanese rules; this test is about cleaning.
    job.config.disable = vec![Rule::JaCharCount, Rule::JaTerminalPunct];
    let report = run(&job);
    let texts = read_texts(&output);
    // Three paragraphs: the heading 一 (no hiragana: removed), the body, the gaiji line.
    assert_eq!(report.docs_in, 3, "{texts:?}");
    assert_eq!(report.removed(Rule::JaHiragana), 1, "{texts:?}");
    assert_eq!(texts.len(), 2, "{texts:?}");
    assert_eq!(texts[0], body.replace('｜', "").replace("《さんぽ》", ""));
    assert_eq!(texts[1], "葉をぎ取った。");
    for t in &texts {
        for mark in [
            "《",
            "》",
            "｜",
            "［＃",
            "※",
            "底本",
            "テキスト中に現れる記号",
        ] {
            assert!(!t.contains(mark), "{mark} in {t}");
        }
    }
}

#[test]
fn block_lists_remove_documents_by_language() {
    let dir = tempfile::tempdir().unwrap();
    let mut docs = clean_docs(3, 11);
    docs[1] = format!("{} Forbiddenword here.", docs[1]);
    let input = write(dir.path(), "in.txt", docs.join("\n\n").as_bytes());
    write(dir.path(), "en.txt", b"# words\nforbiddenword\n");
    let cfg_path = write(
        dir.path(),
        "curate.toml",
        b"[curate.blocklist]\nfiles = { en = \"en.txt\" }\n",
    );
    let mut job = CurateJob::new(vec![input], dir.path().join("out.jsonl"));
    job.config = CurateConfig::load(&cfg_path).unwrap();
    let report = run(&job);
    assert_eq!(report.removed(Rule::Blocklist), 1);
    assert_eq!(report.docs_kept, 2);
}

#[test]
fn bad_input_is_an_error_naming_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let docs = clean_docs(1, 5);
    let good = serde_json::json!({ "text": docs[0] }).to_string();
    let input = write(
        dir.path(),
        "bad.jsonl",
        format!("{good}\n{{\"text\": \n").as_bytes(),
    );
    let output = dir.path().join("out.jsonl");
    let job = CurateJob::new(vec![input.clone()], output.clone());
    let err = curate(&job, &mut |_| {}).unwrap_err().to_string();
    assert!(err.contains("bad.jsonl:2"), "{err}");
    assert!(!output.exists());
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        1,
        "temporary file left"
    );

    let mut job = CurateJob::new(vec![input.clone()], output.clone());
    job.skip_invalid = true;
    let report = run(&job);
    assert_eq!((report.docs_kept, report.skipped_lines), (1, 1));

    let missing = CurateJob::new(vec![dir.path().join("nope.txt")], output.clone());
    let err = curate(&missing, &mut |_| {}).unwrap_err().to_string();
    assert!(err.contains("nope.txt"), "{err}");

    let mut same = CurateJob::new(vec![input.clone()], input.clone());
    same.format = CorpusFormat::Jsonl;
    let err = curate(&same, &mut |_| {}).unwrap_err().to_string();
    assert!(err.contains("also an input"), "{err}");
}
