//! The one reader of line-per-record files — JSONL and plain text — for every stage of
//! the pipeline (SFT, tasks, few-shot, RAG, embeddings, preferences, GRPO prompts).
//!
//! Files are opened with [`crate::open_reader`] (so `.gz` works), a UTF-8 byte order mark
//! at the start of the file is dropped, lines may end in `\n` or `\r\n`, and lines that
//! are blank after trimming are skipped while still counted: every record and every error
//! carries the 1-based physical line it is on, and errors read `file:line: message`.

use std::io::BufRead;
use std::path::{Path, PathBuf};

/// The UTF-8 byte order mark.
const BOM: &[u8] = b"\xEF\xBB\xBF";

/// One JSON value of a JSONL file and the line it is on.
#[derive(Debug, Clone, PartialEq)]
pub struct JsonLine {
    /// 1-based line number (blank lines counted).
    pub line: usize,
    /// The parsed value (not necessarily an object: callers check the shape).
    pub value: serde_json::Value,
}

/// A line that could not be read, or a file that could not be opened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LineError {
    /// The file could not be opened (`line` is `None`) or reading it failed at `line`.
    Io {
        /// The file.
        path: PathBuf,
        /// 1-based line being read when it failed; `None` when the file did not open.
        line: Option<usize>,
        /// What the operating system (or the gzip decoder) said.
        message: String,
    },
    /// A line is not valid UTF-8.
    InvalidUtf8 {
        /// The file.
        path: PathBuf,
        /// 1-based line.
        line: usize,
    },
    /// A line of a JSONL file is not valid JSON.
    Json {
        /// The file.
        path: PathBuf,
        /// 1-based line.
        line: usize,
        /// What the JSON parser said.
        message: String,
    },
}

impl LineError {
    /// The file.
    pub fn path(&self) -> &Path {
        match self {
            Self::Io { path, .. } | Self::InvalidUtf8 { path, .. } | Self::Json { path, .. } => {
                path
            }
        }
    }

    /// The 1-based line, when the error is on one.
    pub fn line(&self) -> Option<usize> {
        match self {
            Self::Io { line, .. } => *line,
            Self::InvalidUtf8 { line, .. } | Self::Json { line, .. } => Some(*line),
        }
    }

    /// What went wrong, without the `file:line: ` prefix (`invalid UTF-8`,
    /// `invalid JSON: …`, or the operating system's words).
    pub fn message(&self) -> String {
        match self {
            Self::Io { message, .. } => message.clone(),
            Self::InvalidUtf8 { .. } => "invalid UTF-8".to_string(),
            Self::Json { message, .. } => format!("invalid JSON: {message}"),
        }
    }

    /// The file, the line (if any) and [`LineError::message`], for mapping into another
    /// crate's `Data { path, line, message }` / `File { path, message }` errors without
    /// repeating the `file:line` prefix.
    pub fn into_parts(self) -> (PathBuf, Option<usize>, String) {
        let (line, message) = (self.line(), self.message());
        let path = match self {
            Self::Io { path, .. } | Self::InvalidUtf8 { path, .. } | Self::Json { path, .. } => {
                path
            }
        };
        (path, line, message)
    }
}

impl std::fmt::Display for LineError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let path = self.path().display();
        match self.line() {
            Some(line) => write!(f, "{path}:{line}: {}", self.message()),
            None => write!(f, "{path}: {}", self.message()),
        }
    }
}

impl std::error::Error for LineError {}

/// Iterator over the non-blank lines of a text file; see [`read_text_lines`].
pub struct TextLines {
    path: PathBuf,
    reader: Option<Box<dyn BufRead + Send>>,
    /// The error of opening the file, yielded first.
    pending: Option<LineError>,
    line: usize,
    buf: Vec<u8>,
}

impl std::fmt::Debug for TextLines {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TextLines")
            .field("path", &self.path)
            .field("line", &self.line)
            .finish_non_exhaustive()
    }
}

impl TextLines {
    /// The file being read.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Iterator for TextLines {
    type Item = Result<(usize, String), LineError>;

    fn next(&mut self) -> Option<Self::Item> {
        if let Some(e) = self.pending.take() {
            return Some(Err(e));
        }
        loop {
            let reader = self.reader.as_mut()?;
            self.buf.clear();
            let read = reader.read_until(b'\n', &mut self.buf);
            let n = match read {
                Ok(n) => n,
                Err(e) => {
                    // Nothing sensible follows a failed read: end after reporting it.
                    self.reader = None;
                    return Some(Err(LineError::Io {
                        path: self.path.clone(),
                        line: Some(self.line + 1),
                        message: e.to_string(),
                    }));
                }
            };
            if n == 0 {
                self.reader = None;
                return None;
            }
            self.line += 1;
            let mut bytes = self.buf.as_slice();
            if self.line == 1 {
                bytes = bytes.strip_prefix(BOM).unwrap_or(bytes);
            }
            bytes = bytes.strip_suffix(b"\n").unwrap_or(bytes);
            bytes = bytes.strip_suffix(b"\r").unwrap_or(bytes);
            let Ok(text) = std::str::from_utf8(bytes) else {
                return Some(Err(LineError::InvalidUtf8 {
                    path: self.path.clone(),
                    line: self.line,
                }));
            };
            if text.trim().is_empty() {
                continue;
            }
            return Some(Ok((self.line, text.to_string())));
        }
    }
}

/// Reads the lines of a plain-text file (gzip when named `.gz`): each non-blank line
/// with its 1-based number, the UTF-8 byte order mark and the line ending (`\n` or
/// `\r\n`) removed, other whitespace kept. An error on one line (invalid UTF-8) does not
/// end the iteration; a file that does not open, or a failed read, does.
pub fn read_text_lines(path: &Path) -> TextLines {
    let (reader, pending) = match crate::open_reader(path) {
        Ok(r) => (Some(r), None),
        Err(e) => (
            None,
            Some(LineError::Io {
                path: path.to_path_buf(),
                line: None,
                message: e.to_string(),
            }),
        ),
    };
    TextLines {
        path: path.to_path_buf(),
        reader,
        pending,
        line: 0,
        buf: Vec::new(),
    }
}

/// Iterator over the JSON values of a JSONL file; see [`read_jsonl`].
#[derive(Debug)]
pub struct JsonLines {
    lines: TextLines,
}

impl JsonLines {
    /// The file being read.
    pub fn path(&self) -> &Path {
        self.lines.path()
    }
}

impl Iterator for JsonLines {
    type Item = Result<JsonLine, LineError>;

    fn next(&mut self) -> Option<Self::Item> {
        let (line, text) = match self.lines.next()? {
            Ok(l) => l,
            Err(e) => return Some(Err(e)),
        };
        Some(
            serde_json::from_str(&text)
                .map(|value| JsonLine { line, value })
                .map_err(|e| LineError::Json {
                    path: self.lines.path.clone(),
                    line,
                    message: e.to_string(),
                }),
        )
    }
}

/// Reads a JSONL file (gzip when named `.gz`): one JSON value per non-blank line, with
/// its 1-based line number; see [`read_text_lines`] for what is accepted. A line that is
/// not JSON (or not UTF-8) is an error naming it, and the iteration goes on after it, so
/// callers may count and skip bad lines.
pub fn read_jsonl(path: &Path) -> JsonLines {
    JsonLines {
        lines: read_text_lines(path),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn file(dir: &tempfile::TempDir, name: &str, bytes: &[u8]) -> PathBuf {
        let p = dir.path().join(name);
        std::fs::write(&p, bytes).unwrap();
        p
    }

    #[test]
    fn a_bom_on_the_first_line_and_crlf_endings_are_accepted() {
        let dir = tempfile::tempdir().unwrap();
        let p = file(
            &dir,
            "a.jsonl",
            b"\xEF\xBB\xBF{\"a\": 1}\r\n{\"b\": \"x y\"}\r\n{\"c\": 3}",
        );
        let got: Vec<JsonLine> = read_jsonl(&p).map(Result::unwrap).collect();
        assert_eq!(
            got,
            vec![
                JsonLine {
                    line: 1,
                    value: json!({"a": 1})
                },
                JsonLine {
                    line: 2,
                    value: json!({"b": "x y"})
                },
                JsonLine {
                    line: 3,
                    value: json!({"c": 3})
                },
            ]
        );
    }

    #[test]
    fn blank_lines_are_skipped_but_counted() {
        let dir = tempfile::tempdir().unwrap();
        let p = file(&dir, "b.jsonl", b"\n  \r\n{\"a\": 1}\n\t\n\n[2]\n \n");
        let got: Vec<(usize, serde_json::Value)> = read_jsonl(&p)
            .map(|r| r.map(|l| (l.line, l.value)).unwrap())
            .collect();
        assert_eq!(got, vec![(3, json!({"a": 1})), (6, json!([2]))]);
        // A BOM alone on the first line makes it blank.
        let p = file(&dir, "c.txt", b"\xEF\xBB\xBF\r\n  one two \r\n\r\nthree");
        let got: Vec<(usize, String)> = read_text_lines(&p).map(Result::unwrap).collect();
        assert_eq!(
            got,
            vec![(2, "  one two ".to_string()), (4, "three".to_string())]
        );
    }

    #[test]
    fn malformed_json_names_its_line_and_reading_goes_on() {
        let dir = tempfile::tempdir().unwrap();
        let p = file(&dir, "d.jsonl", b"{\"a\": 1}\n\n{\"a\": \n{\"a\": 2}\n");
        let got: Vec<Result<JsonLine, LineError>> = read_jsonl(&p).collect();
        assert_eq!(got.len(), 3);
        let e = got[1].clone().unwrap_err();
        assert_eq!(e.line(), Some(3));
        assert_eq!(e.path(), p.as_path());
        assert!(matches!(e, LineError::Json { line: 3, .. }), "{e:?}");
        assert!(e.message().starts_with("invalid JSON: "), "{e}");
        assert!(
            e.to_string()
                .starts_with(&format!("{}:3: invalid JSON: ", p.display())),
            "{e}"
        );
        assert_eq!(
            got[2].clone().unwrap(),
            JsonLine {
                line: 4,
                value: json!({"a": 2})
            }
        );
    }

    #[test]
    fn invalid_utf8_names_its_line() {
        let dir = tempfile::tempdir().unwrap();
        let p = file(
            &dir,
            "e.jsonl",
            b"{\"a\": 1}\r\n{\"a\": \"\xFF\"}\r\n{\"a\": 2}\r\n",
        );
        let got: Vec<Result<JsonLine, LineError>> = read_jsonl(&p).collect();
        assert_eq!(got.len(), 3);
        assert_eq!(
            got[1],
            Err(LineError::InvalidUtf8 {
                path: p.clone(),
                line: 2
            })
        );
        assert_eq!(
            got[1].clone().unwrap_err().to_string(),
            format!("{}:2: invalid UTF-8", p.display())
        );
        assert_eq!(got[2].as_ref().map(|l| l.line), Ok(3));
    }

    #[test]
    fn a_missing_file_names_its_path_without_a_line() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("missing.jsonl");
        let got: Vec<Result<JsonLine, LineError>> = read_jsonl(&p).collect();
        assert_eq!(got.len(), 1);
        let e = got[0].clone().unwrap_err();
        assert!(matches!(e, LineError::Io { line: None, .. }), "{e:?}");
        assert_eq!(e.path(), p.as_path());
        let (path, line, message) = e.clone().into_parts();
        assert_eq!((path, line), (p.clone(), None));
        assert_eq!(e.to_string(), format!("{}: {message}", p.display()));
        assert!(!message.is_empty());
    }

    #[test]
    fn gzip_files_are_read_too() {
        use std::io::Write;
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f.jsonl.gz");
        let mut gz = flate2::write::GzEncoder::new(
            std::fs::File::create(&p).unwrap(),
            flate2::Compression::default(),
        );
        gz.write_all(b"\xEF\xBB\xBF{\"a\": 1}\r\n\r\n{\"a\": 2}\r\n")
            .unwrap();
        gz.finish().unwrap();
        let got: Vec<usize> = read_jsonl(&p).map(|r| r.unwrap().line).collect();
        assert_eq!(got, vec![1, 3]);
    }
}
