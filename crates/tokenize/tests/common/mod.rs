//! Fixture helpers shared by the parity tests of converted tokenizers (`spm.rs`,
//! `bertja.rs`): fixture folders, gzipped JSON, and the held-out lines of ../shared/data.

#![allow(dead_code)]

use std::io::Read;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use sha2::{Digest, Sha256};

/// `held_out.json.gz`: ids of lines of ../shared/data files, named by file and line.
#[derive(Deserialize)]
pub struct HeldOut {
    pub files: Vec<DataFile>,
    pub cases: Vec<Line>,
}

#[derive(Deserialize)]
pub struct DataFile {
    pub name: String,
    pub sha256: String,
}

#[derive(Deserialize)]
pub struct Line {
    pub file: usize,
    /// 0-based, after the BOM is removed.
    pub line: usize,
    pub ids: Vec<u32>,
    pub decoded: Option<String>,
}

/// fixtures/tokenize/`name`.
pub fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../fixtures/tokenize")
        .join(name)
}

/// A gzipped JSON file.
pub fn gz_json<T: serde::de::DeserializeOwned>(path: &Path) -> T {
    let mut text = String::new();
    flate2::read::GzDecoder::new(std::fs::File::open(path).unwrap())
        .read_to_string(&mut text)
        .unwrap();
    serde_json::from_str(&text).unwrap()
}

/// `../shared/data` beside the repository, found from the crate's manifest folder.
pub fn shared_data() -> Option<PathBuf> {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .map(|dir| dir.join("shared/data"))
        .find(|dir| dir.join("tinyshakespeare.txt").is_file())
}

/// The lines of each file `held` names (BOM removed, split at `\n`, a trailing `\r`
/// removed), after checking that the file is the one the fixture was made from.
pub fn data_lines(data: &Path, held: &HeldOut, script: &str) -> Vec<Vec<String>> {
    held.files
        .iter()
        .map(|f| {
            let bytes = std::fs::read(data.join(&f.name)).unwrap();
            let sha: String = Sha256::digest(&bytes)
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect();
            assert_eq!(
                sha, f.sha256,
                "{}: changed since the fixtures were made (hint: rerun {script})",
                f.name
            );
            let text = String::from_utf8(bytes).unwrap();
            let text = text.strip_prefix('\u{feff}').unwrap_or(&text).to_string();
            text.split('\n')
                .map(|l| l.strip_suffix('\r').unwrap_or(l).to_string())
                .collect()
        })
        .collect()
}
