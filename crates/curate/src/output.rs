//! The output file: JSONL `{"text": …}` or plain text, written to a temporary file
//! beside it and renamed into place when the run succeeds, so a failed or killed run
//! never leaves a half-written output behind.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{CurateError, Result};

/// How kept documents are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum OutputFormat {
    /// One JSON object `{"text": …}` per line.
    Jsonl,
    /// Plain text, one document per paragraph: blank lines inside a document are
    /// dropped and a blank line follows each, so `--unit paragraph` reads it back.
    Text,
}

impl OutputFormat {
    /// Text for `.txt` files, JSONL otherwise.
    pub fn for_path(path: &Path) -> Self {
        let txt = path
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("txt"));
        if txt { Self::Text } else { Self::Jsonl }
    }
}

/// A name beside `path` for writing before the rename (hidden, so a folder input
/// never reads it).
fn temp_sibling(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "out".into());
    path.with_file_name(format!(".{name}.tmp-{}", std::process::id()))
}

fn create_parent(path: &Path) -> Result<()> {
    match path.parent().filter(|p| !p.as_os_str().is_empty()) {
        Some(parent) => std::fs::create_dir_all(parent).map_err(|e| CurateError::io(parent, e)),
        None => Ok(()),
    }
}

/// Writes `bytes` to `path` through a temporary file and a rename.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    create_parent(path)?;
    let tmp = temp_sibling(path);
    let write = || -> std::io::Result<()> {
        let mut f = File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    };
    write().map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        CurateError::io(path, e)
    })
}

/// The output being written.
#[derive(Debug)]
pub(crate) struct OutputWriter {
    path: PathBuf,
    tmp: PathBuf,
    file: BufWriter<File>,
    format: OutputFormat,
}

#[derive(Serialize)]
struct Record<'a> {
    text: &'a str,
}

impl OutputWriter {
    /// Starts writing `path` (its folders are created).
    pub(crate) fn create(path: &Path, format: OutputFormat) -> Result<Self> {
        create_parent(path)?;
        let tmp = temp_sibling(path);
        let file = File::create(&tmp).map_err(|e| CurateError::io(&tmp, e))?;
        Ok(Self {
            path: path.to_path_buf(),
            tmp,
            file: BufWriter::with_capacity(1 << 20, file),
            format,
        })
    }

    /// Appends one document.
    pub(crate) fn write(&mut self, text: &str) -> Result<()> {
        let result = match self.format {
            OutputFormat::Jsonl => serde_json::to_writer(&mut self.file, &Record { text })
                .map_err(std::io::Error::from)
                .and_then(|()| self.file.write_all(b"\n")),
            OutputFormat::Text => write_paragraph(&mut self.file, text),
        };
        result.map_err(|e| CurateError::io(&self.tmp, e))
    }

    /// Flushes, syncs and renames the file into place.
    pub(crate) fn finish(self) -> Result<()> {
        let Self {
            path, tmp, file, ..
        } = self;
        let done = file
            .into_inner()
            .map_err(|e| e.into_error())
            .and_then(|f| f.sync_all())
            .and_then(|()| std::fs::rename(&tmp, &path));
        done.map_err(|e| {
            let _ = std::fs::remove_file(&tmp);
            CurateError::io(&path, e)
        })
    }

    /// Drops the temporary file after a failed run.
    pub(crate) fn abort(self) {
        let tmp = self.tmp.clone();
        drop(self);
        let _ = std::fs::remove_file(tmp);
    }
}

/// The non-blank lines of `text`, then a blank line.
fn write_paragraph(w: &mut impl Write, text: &str) -> std::io::Result<()> {
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        w.write_all(line.as_bytes())?;
        w.write_all(b"\n")?;
    }
    w.write_all(b"\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jsonl_and_text_outputs_appear_only_when_finished() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/out.jsonl");
        let mut w = OutputWriter::create(&path, OutputFormat::for_path(&path)).unwrap();
        w.write("a \"quoted\"\nline").unwrap();
        assert!(!path.exists());
        w.finish().unwrap();
        let got = std::fs::read_to_string(&path).unwrap();
        assert_eq!(got, "{\"text\":\"a \\\"quoted\\\"\\nline\"}\n");

        let path = dir.path().join("out.txt");
        let mut w = OutputWriter::create(&path, OutputFormat::for_path(&path)).unwrap();
        w.write("one\n\ntwo").unwrap();
        w.write("three").unwrap();
        w.finish().unwrap();
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            "one\ntwo\n\nthree\n\n"
        );

        let path = dir.path().join("aborted.jsonl");
        let w = OutputWriter::create(&path, OutputFormat::Jsonl).unwrap();
        w.abort();
        // `sub` and `out.txt`; no temporary file left.
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 2);
    }
}
