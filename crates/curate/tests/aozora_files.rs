//! Aozora cleaning on the real texts of `../shared/data` (『こころ』 and 『吾輩は猫である』,
//! UTF-8 with BOM, header block and 底本 footer kept, ruby markers ｜ and bare ※ gaiji
//! marks in the body). Skips with a message when the folder is absent.

use std::path::PathBuf;

use manabi_curate::{CurateJob, DocBoundary, Rule, aozora, curate};

/// `../shared/data` beside the repository, found from the crate's manifest folder.
fn shared_data() -> Option<PathBuf> {
    let crate_dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    crate_dir
        .ancestors()
        .map(|dir| dir.join("shared/data"))
        .find(|dir| dir.join("aozora-kokoro.txt").is_file())
}

const MARKERS: [&str; 8] = [
    "《",
    "》",
    "｜",
    "［＃",
    "※",
    "底本",
    "【テキスト中に現れる記号について】",
    "-------",
];

#[test]
fn the_shared_novels_lose_header_footer_and_markup() {
    let Some(dir) = shared_data() else {
        eprintln!("skipping: ../shared/data absent");
        return;
    };
    for (file, first) in [
        ("aozora-kokoro.txt", "上　先生と私"),
        ("aozora-wagahai-wa-neko-de-aru.txt", "一"),
    ] {
        let raw = std::fs::read_to_string(dir.join(file)).unwrap();
        let clean = aozora::clean(&raw);
        for mark in MARKERS {
            assert!(!clean.contains(mark), "{file}: `{mark}` left");
        }
        assert!(!clean.starts_with('\u{feff}'));
        assert_eq!(clean.lines().next(), Some(first), "{file}");
        assert!(!clean.contains("青空文庫"), "{file}: footer left");
        // Only markup, header and footer go: the body is almost all of the text.
        let (before, after) = (raw.chars().count(), clean.chars().count());
        assert!(
            after * 100 > before * 98,
            "{file}: {before} → {after} chars"
        );
    }
}

#[test]
fn curating_the_shared_novels_keeps_their_paragraphs() {
    let Some(dir) = shared_data() else {
        eprintln!("skipping: ../shared/data absent");
        return;
    };
    let out = tempfile::tempdir().unwrap();
    let output = out.path().join("aozora.jsonl");
    let inputs = vec![dir.join("aozora-kokoro.txt")];
    let mut job = CurateJob::new(inputs, output.clone());
    job.config.aozora = true;
    job.unit = DocBoundary::File;
    let report = curate(&job, &mut |_| {}).unwrap();
    assert_eq!(
        (report.docs_in, report.docs_kept),
        (1, 1),
        "{}",
        report.table()
    );
    assert_eq!(report.japanese_docs, 1);
    let text = std::fs::read_to_string(&output).unwrap();
    for mark in MARKERS {
        assert!(!text.contains(mark), "`{mark}` in the output");
    }

    // Paragraph units: short ones (chapter numbers) go, the prose stays.
    job.unit = DocBoundary::Paragraph;
    let report = curate(&job, &mut |_| {}).unwrap();
    assert!(report.docs_in > 100, "{}", report.table());
    assert!(report.removed(Rule::JaCharCount) > 0, "{}", report.table());
    assert!(report.docs_kept > 0, "{}", report.table());
}
