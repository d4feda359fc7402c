//! Streaming corpus readers: plain text and JSONL files, folders of them, gzip optional.
//!
//! A corpus is read one document at a time, so corpora larger than memory work. Every
//! document remembers the file and line it came from, and every error names them.

use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::error::{Result, TokenizeError};

/// How a file's lines become documents.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CorpusFormat {
    /// `.jsonl` / `.jsonl.gz` files are JSONL, everything else plain text.
    #[default]
    Auto,
    /// Plain UTF-8 text.
    Text,
    /// One JSON object per line; the text is in [`CorpusSpec::field`].
    Jsonl,
}

/// Where one plain-text document ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DocBoundary {
    /// Every non-empty line is a document.
    Line,
    /// Blank lines separate documents (lines inside one keep their newlines).
    #[default]
    Paragraph,
    /// A whole file is one document.
    File,
}

/// What to read and how.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CorpusSpec {
    /// Files or folders (folders are walked recursively, in sorted order).
    pub inputs: Vec<PathBuf>,
    /// File format.
    pub format: CorpusFormat,
    /// JSONL field that holds the text.
    pub field: String,
    /// Document boundaries in plain text.
    pub boundary: DocBoundary,
    /// Count and skip bad lines instead of failing on the first.
    pub skip_invalid: bool,
}

impl CorpusSpec {
    /// Plain defaults for `inputs`: auto format, field `text`, paragraphs, strict.
    pub fn new(inputs: Vec<PathBuf>) -> Self {
        Self {
            inputs,
            format: CorpusFormat::Auto,
            field: "text".to_string(),
            boundary: DocBoundary::Paragraph,
            skip_invalid: false,
        }
    }

    /// Every file the inputs name, folders expanded, in a stable order.
    pub fn files(&self) -> Result<Vec<PathBuf>> {
        let mut files = Vec::new();
        for input in &self.inputs {
            let meta = std::fs::metadata(input).map_err(|e| TokenizeError::io(input, e))?;
            if meta.is_dir() {
                walk(input, &mut files)?;
            } else {
                files.push(input.clone());
            }
        }
        if files.is_empty() {
            return Err(TokenizeError::EmptyCorpus(self.describe()));
        }
        Ok(files)
    }

    /// Streams the documents of every input.
    pub fn documents(&self) -> Result<Documents> {
        let files = self.files()?;
        Ok(Documents {
            spec: self.clone(),
            files: files.into_iter(),
            current: None,
            skipped: 0,
        })
    }

    /// The inputs, for messages.
    pub fn describe(&self) -> String {
        self.inputs
            .iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(", ")
    }
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| TokenizeError::io(dir, e))?
        .map(|entry| entry.map(|e| e.path()))
        .collect::<std::io::Result<_>>()
        .map_err(|e| TokenizeError::io(dir, e))?;
    entries.sort();
    for path in entries {
        let hidden = path
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with('.'));
        if hidden {
            continue;
        }
        if path.is_dir() {
            walk(&path, out)?;
        } else {
            out.push(path);
        }
    }
    Ok(())
}

/// One document and where it starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Document {
    /// The text.
    pub text: String,
    /// The file it came from.
    pub path: Arc<Path>,
    /// One-based line where it starts.
    pub line: u64,
}

struct FileReader {
    path: Arc<Path>,
    reader: Box<dyn BufRead + Send>,
    jsonl: bool,
    line: u64,
    buf: Vec<u8>,
}

/// Opens a file for buffered reading, decompressing it when its name ends in `.gz`
/// (several concatenated gzip members are read as one stream). Every JSONL reader of the
/// workspace opens its files through this, so `data.jsonl.gz` works wherever `data.jsonl`
/// does.
pub fn open_reader(path: &Path) -> std::io::Result<Box<dyn BufRead + Send>> {
    let file = File::open(path)?;
    let gz = path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("gz"));
    let reader: Box<dyn Read + Send> = if gz {
        Box::new(flate2::read::MultiGzDecoder::new(file))
    } else {
        Box::new(file)
    };
    Ok(Box::new(BufReader::with_capacity(1 << 20, reader)))
}

/// Iterator over the documents of a corpus; see [`CorpusSpec::documents`].
pub struct Documents {
    spec: CorpusSpec,
    files: std::vec::IntoIter<PathBuf>,
    current: Option<FileReader>,
    skipped: u64,
}

impl std::fmt::Debug for Documents {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Documents")
            .field("spec", &self.spec)
            .field("skipped", &self.skipped)
            .finish_non_exhaustive()
    }
}

impl Documents {
    /// Lines skipped so far under `skip_invalid`.
    pub fn skipped(&self) -> u64 {
        self.skipped
    }

    fn open(&self, path: PathBuf) -> Result<FileReader> {
        let reader = open_reader(&path).map_err(|e| TokenizeError::io(&path, e))?;
        let name = path.to_string_lossy().to_lowercase();
        let jsonl = match self.spec.format {
            CorpusFormat::Jsonl => true,
            CorpusFormat::Text => false,
            CorpusFormat::Auto => {
                let stem = name.strip_suffix(".gz").unwrap_or(&name);
                stem.ends_with(".jsonl") || stem.ends_with(".ndjson")
            }
        };
        Ok(FileReader {
            path: Arc::from(path.as_path()),
            reader,
            jsonl,
            line: 0,
            buf: Vec::new(),
        })
    }

    /// Reads the next line of the current file: `Ok(None)` at its end.
    fn next_line(&mut self) -> Result<Option<(String, u64)>> {
        loop {
            let Some(f) = self.current.as_mut() else {
                return Ok(None);
            };
            f.buf.clear();
            let n = f
                .reader
                .read_until(b'\n', &mut f.buf)
                .map_err(|e| TokenizeError::io(f.path.as_ref(), e))?;
            if n == 0 {
                return Ok(None);
            }
            f.line += 1;
            let mut bytes = f.buf.as_slice();
            if f.line == 1 {
                bytes = bytes.strip_prefix("\u{feff}".as_bytes()).unwrap_or(bytes);
            }
            while let Some(rest) = bytes.strip_suffix(b"\n").or(bytes.strip_suffix(b"\r")) {
                bytes = rest;
            }
            match std::str::from_utf8(bytes) {
                Ok(s) => return Ok(Some((s.to_owned(), f.line))),
                Err(_) if self.spec.skip_invalid => self.skipped += 1,
                Err(_) => {
                    return Err(TokenizeError::InvalidUtf8 {
                        path: f.path.to_path_buf(),
                        line: f.line,
                    });
                }
            }
        }
    }

    fn next_jsonl(&mut self) -> Result<Option<Document>> {
        while let Some((line, no)) = self.next_line()? {
            if line.trim().is_empty() {
                continue;
            }
            let path = self.current_path();
            match parse_record(&line, &self.spec.field, &path, no) {
                Ok(text) => {
                    return Ok(Some(Document {
                        text,
                        path,
                        line: no,
                    }));
                }
                Err(_) if self.spec.skip_invalid => self.skipped += 1,
                Err(e) => return Err(e),
            }
        }
        Ok(None)
    }

    fn next_text(&mut self) -> Result<Option<Document>> {
        let boundary = self.spec.boundary;
        let mut text = String::new();
        let mut start = 0;
        while let Some((line, no)) = self.next_line()? {
            let blank = line.trim().is_empty();
            match boundary {
                DocBoundary::Line if !blank => {
                    return Ok(Some(Document {
                        text: line,
                        path: self.current_path(),
                        line: no,
                    }));
                }
                DocBoundary::Line => {}
                DocBoundary::Paragraph if blank => {
                    if !text.is_empty() {
                        break;
                    }
                }
                DocBoundary::Paragraph | DocBoundary::File => {
                    if text.is_empty() && start == 0 {
                        start = no;
                    } else {
                        text.push('\n');
                    }
                    text.push_str(&line);
                }
            }
        }
        if text.trim().is_empty() {
            return Ok(None);
        }
        Ok(Some(Document {
            text,
            path: self.current_path(),
            line: start.max(1),
        }))
    }

    fn current_path(&self) -> Arc<Path> {
        self.current
            .as_ref()
            .map(|f| f.path.clone())
            .unwrap_or_else(|| Arc::from(Path::new("")))
    }
}

fn parse_record(line: &str, field: &str, path: &Arc<Path>, no: u64) -> Result<String> {
    let value: serde_json::Value =
        serde_json::from_str(line).map_err(|e| TokenizeError::MalformedJson {
            path: path.to_path_buf(),
            line: no,
            message: e.to_string(),
        })?;
    match value.get(field) {
        Some(serde_json::Value::String(s)) => Ok(s.clone()),
        _ => Err(TokenizeError::MissingField {
            path: path.to_path_buf(),
            line: no,
            field: field.to_string(),
        }),
    }
}

impl Iterator for Documents {
    type Item = Result<Document>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if self.current.is_none() {
                let path = self.files.next()?;
                match self.open(path) {
                    Ok(f) => self.current = Some(f),
                    Err(e) => return Some(Err(e)),
                }
            }
            let jsonl = self.current.as_ref().is_some_and(|f| f.jsonl);
            let doc = if jsonl {
                self.next_jsonl()
            } else {
                self.next_text()
            };
            match doc {
                Ok(Some(doc)) => return Some(Ok(doc)),
                Ok(None) => self.current = None,
                Err(e) => {
                    // A failed file is not read further.
                    self.current = None;
                    self.files = Vec::new().into_iter();
                    return Some(Err(e));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn write(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, bytes).unwrap();
        path
    }

    fn texts(spec: &CorpusSpec) -> Result<Vec<String>> {
        spec.documents()?.map(|d| d.map(|d| d.text)).collect()
    }

    #[test]
    fn paragraphs_lines_and_files() {
        let dir = tempfile::tempdir().unwrap();
        let p = write(dir.path(), "a.txt", b"\xef\xbb\xbfone\ntwo\n\n\nthree\r\n");
        let mut spec = CorpusSpec::new(vec![p]);
        assert_eq!(texts(&spec).unwrap(), ["one\ntwo", "three"]);
        spec.boundary = DocBoundary::Line;
        assert_eq!(texts(&spec).unwrap(), ["one", "two", "three"]);
        spec.boundary = DocBoundary::File;
        assert_eq!(texts(&spec).unwrap(), ["one\ntwo\n\n\nthree"]);
    }

    #[test]
    fn jsonl_field_and_gzip_in_a_folder() {
        let dir = tempfile::tempdir().unwrap();
        write(
            dir.path(),
            "a.jsonl",
            b"{\"text\":\"x\"}\n\n{\"text\":\"y\",\"id\":1}\n",
        );
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all("{\"text\":\"猫\"}\n".as_bytes()).unwrap();
        write(dir.path(), "b.jsonl.gz", &gz.finish().unwrap());
        let spec = CorpusSpec::new(vec![dir.path().to_path_buf()]);
        assert_eq!(texts(&spec).unwrap(), ["x", "y", "猫"]);
    }

    #[test]
    fn bad_lines_name_file_and_line() {
        let dir = tempfile::tempdir().unwrap();
        let p = write(
            dir.path(),
            "c.jsonl",
            b"{\"text\":\"ok\"}\n{\"text\": \n{\"body\":\"b\"}\n",
        );
        let spec = CorpusSpec::new(vec![p.clone()]);
        let err = texts(&spec).unwrap_err().to_string();
        assert!(err.contains("c.jsonl:2: malformed JSON"), "{err}");

        let p2 = write(dir.path(), "d.jsonl", b"{\"body\":\"b\"}\n");
        let err = texts(&CorpusSpec::new(vec![p2])).unwrap_err().to_string();
        assert!(err.contains("d.jsonl:1: no string field `text`"), "{err}");

        let p3 = write(dir.path(), "e.txt", b"fine\n\xff\xfe bad\n");
        let err = texts(&CorpusSpec::new(vec![p3.clone()]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("e.txt:2: invalid UTF-8"), "{err}");

        let mut lenient = CorpusSpec::new(vec![p, p3]);
        lenient.skip_invalid = true;
        lenient.boundary = DocBoundary::Line;
        let mut docs = lenient.documents().unwrap();
        let got: Vec<String> = docs.by_ref().map(|d| d.unwrap().text).collect();
        assert_eq!(got, ["ok", "fine"]);
        assert_eq!(docs.skipped(), 3);
    }

    #[test]
    fn missing_file_is_named() {
        let spec = CorpusSpec::new(vec![PathBuf::from("/no/such/corpus.txt")]);
        let err = texts(&spec).unwrap_err().to_string();
        assert!(err.starts_with("/no/such/corpus.txt:"), "{err}");
    }
}
