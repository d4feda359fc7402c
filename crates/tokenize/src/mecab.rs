//! MeCab's own compiled dictionaries (cargo feature `morph`): the `dicdir` folders that
//! MeCab's `mecab-dict-index` writes (`sys.dic`, `unk.dic`, `matrix.bin`, `char.bin`,
//! `dicrc`) — the form in which the Python packages `unidic-lite`, `ipadic` and `unidic`
//! ship them, and which transformers' `BertJapaneseTokenizer` hands to MeCab through
//! fugashi.
//!
//! vibrato reads only its own format, so the binary files are read here and turned back
//! into the text sources vibrato compiles (`lex.csv`, `matrix.def`, `char.def`,
//! `unk.def`), keeping everything that decides where words split: surfaces, connection
//! ids and costs in MeCab's order, the connection matrix, the character categories with
//! their invoke / group / length flags, and the unknown-word entries. Features (part of
//! speech, readings) are left out: only the split is used. The compiled dictionary is
//! cached (see [`cache_dir`]), since compiling a large one (unidic-lite) takes seconds.
//!
//! Layouts (MeCab 0.996, little-endian): `sys.dic` / `unk.dic` are a 72-byte header
//! (magic `0xef718f77` xor the file size, version 102, type, lexicon size, left and right
//! id counts, sizes of the double array, the tokens and the features, a dummy word and a
//! 32-byte charset name), a Darts double array (8-byte units: `base: i32`,
//! `check: u32`) whose values are `first token << 8 | token count`, 16-byte tokens
//! (`lcAttr`, `rcAttr`, `posid: u16`, `wcost: i16`, `feature`, `compound: u32`) and
//! features; `matrix.bin` is `lsize: u16`, `rsize: u16` and `lsize × rsize` `i16` costs
//! (cost of left `rcAttr` l then right `lcAttr` r at `l + lsize·r`); `char.bin` is the
//! category count, 32-byte names, and 0xFFFF `u32` bit fields (`type: 18`,
//! `default_type: 8`, `length: 4`, `group: 1`, `invoke: 1`).

use std::fmt::Write as _;
use std::io::Read;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::error::{Result, TokenizeError};

/// An environment variable naming the MeCab dictionary folder to use (for every
/// `mecab_dic` name), when the Python packages are not where manabi looks.
pub const DICDIR_ENV: &str = "MANABI_MECAB_DICDIR";
/// An environment variable naming the folder compiled dictionaries are cached in.
pub const CACHE_ENV: &str = "MANABI_CACHE_DIR";
/// The files a MeCab dictionary folder must have.
pub const FILES: [&str; 4] = ["sys.dic", "unk.dic", "matrix.bin", "char.bin"];
/// Bumped when the conversion changes, so old cached dictionaries are not reused.
const CONVERTER: &str = "manabi-mecab-1";
const DIC_MAGIC: u32 = 0xef71_8f77;
const DIC_VERSION: u32 = 102;
const HEADER: usize = 72;
const TOKEN: usize = 16;
/// Dictionaries whose `sys.dic` and `matrix.bin` together pass this size are cached.
const CACHE_ABOVE: u64 = 8 << 20;
/// MeCab's default `max-grouping-size`.
pub const DEFAULT_MAX_GROUPING: usize = 24;

/// A MeCab dictionary folder, converted for vibrato.
pub struct Converted {
    /// The vibrato dictionary.
    pub dictionary: vibrato::Dictionary,
    /// `max-grouping-size` of the folder's `dicrc` (MeCab's default 24 without one).
    pub max_grouping: usize,
    /// A fingerprint of the folder's files (sizes, modification times and samples of
    /// their bytes), hex.
    pub fingerprint: String,
}

impl std::fmt::Debug for Converted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Converted")
            .field("max_grouping", &self.max_grouping)
            .field("fingerprint", &self.fingerprint)
            .finish_non_exhaustive()
    }
}

fn corrupt(path: &Path, message: impl Into<String>) -> TokenizeError {
    TokenizeError::CorruptMecabDictionary {
        path: path.to_path_buf(),
        message: message.into(),
    }
}

/// Whether `dir` looks like a MeCab dictionary folder (it has `sys.dic`).
pub fn is_dicdir(dir: &Path) -> bool {
    dir.join("sys.dic").is_file()
}

/// Where compiled dictionaries are cached: `$MANABI_CACHE_DIR/mecab`, else
/// `$XDG_CACHE_HOME/manabi/mecab`, else `~/.cache/manabi/mecab`.
pub fn cache_dir() -> Option<PathBuf> {
    let var = |k: &str| {
        std::env::var_os(k)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    var(CACHE_ENV)
        .or_else(|| var("XDG_CACHE_HOME").map(|d| d.join("manabi")))
        .or_else(|| var("HOME").map(|d| d.join(".cache").join("manabi")))
        .map(|d| d.join("mecab"))
}

/// The fingerprint of the folder `dir`: each of [`FILES`] and `dicrc` by size,
/// modification time and its first and last 64 KiB (the small files whole).
pub fn fingerprint(dir: &Path) -> Result<String> {
    const SAMPLE: u64 = 64 << 10;
    let mut h = Sha256::new();
    h.update(CONVERTER.as_bytes());
    for name in FILES.iter().chain(&["dicrc"]) {
        let path = dir.join(name);
        let meta = match std::fs::metadata(&path) {
            Ok(m) => m,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && *name == "dicrc" => continue,
            Err(e) => return Err(missing_or_io(dir, &path, e)),
        };
        h.update(name.as_bytes());
        h.update(meta.len().to_le_bytes());
        if let Ok(t) = meta.modified()
            && let Ok(d) = t.duration_since(std::time::UNIX_EPOCH)
        {
            h.update(d.as_nanos().to_le_bytes());
        }
        let mut file = std::fs::File::open(&path).map_err(|e| TokenizeError::io(&path, e))?;
        let mut buf = Vec::new();
        if meta.len() <= 4 * SAMPLE {
            file.read_to_end(&mut buf)
                .map_err(|e| TokenizeError::io(&path, e))?;
        } else {
            use std::io::{Seek, SeekFrom};
            buf.resize(SAMPLE as usize, 0);
            file.read_exact(&mut buf)
                .map_err(|e| TokenizeError::io(&path, e))?;
            h.update(&buf);
            file.seek(SeekFrom::End(-(SAMPLE as i64)))
                .map_err(|e| TokenizeError::io(&path, e))?;
            file.read_exact(&mut buf)
                .map_err(|e| TokenizeError::io(&path, e))?;
        }
        h.update(&buf);
    }
    Ok(crate::strings::hex(&h.finalize()))
}

fn missing_or_io(dir: &Path, path: &Path, e: std::io::Error) -> TokenizeError {
    if e.kind() == std::io::ErrorKind::NotFound {
        corrupt(
            dir,
            format!(
                "no {} (a MeCab dictionary folder holds {})",
                path.file_name().unwrap_or_default().to_string_lossy(),
                FILES.join(", ")
            ),
        )
    } else {
        TokenizeError::io(path, e)
    }
}

/// Opens the MeCab dictionary folder `dir`: from the cache when it holds this folder's
/// conversion, else converted (and then cached when large; a cache that cannot be written
/// is skipped).
pub fn open(dir: &Path) -> Result<Converted> {
    let fingerprint = fingerprint(dir)?;
    let max_grouping = max_grouping(dir)?;
    // Small dictionaries convert in a moment: only large ones are cached.
    let size = |name: &str| std::fs::metadata(dir.join(name)).map_or(0, |m| m.len());
    let large = size("sys.dic") + size("matrix.bin") > CACHE_ABOVE;
    let cached = cache_dir()
        .filter(|_| large)
        .map(|d| d.join(format!("{}.vibrato", &fingerprint[..32])));
    if let Some(path) = &cached
        && let Ok(bytes) = std::fs::read(path)
        && let Ok(Ok(dictionary)) = caught(|| vibrato::Dictionary::read(&bytes[..]))
    {
        return Ok(Converted {
            dictionary,
            max_grouping,
            fingerprint,
        });
    }
    let dictionary = convert(dir)?;
    if let Some(path) = &cached {
        // Best effort: written to a temporary file and renamed, so a killed run leaves no
        // half-written cache entry.
        let mut bytes = Vec::new();
        if dictionary.write(&mut bytes).is_ok()
            && let Some(parent) = path.parent()
            && std::fs::create_dir_all(parent).is_ok()
        {
            let _ = crate::write_atomic(path, &bytes);
        }
    }
    Ok(Converted {
        dictionary,
        max_grouping,
        fingerprint,
    })
}

/// `max-grouping-size` from `dir/dicrc`, else MeCab's default.
fn max_grouping(dir: &Path) -> Result<usize> {
    let path = dir.join("dicrc");
    let text = match std::fs::read(&path) {
        Ok(b) => String::from_utf8_lossy(&b).into_owned(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(DEFAULT_MAX_GROUPING),
        Err(e) => return Err(TokenizeError::io(&path, e)),
    };
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.starts_with(';') || line.starts_with('#') {
            continue;
        }
        if let Some((k, v)) = line.split_once('=')
            && k.trim() == "max-grouping-size"
        {
            return v.trim().parse().map_err(|_| {
                corrupt(
                    &path,
                    format!(
                        "line {}: max-grouping-size {:?} is not a number",
                        i + 1,
                        v.trim()
                    ),
                )
            });
        }
    }
    Ok(DEFAULT_MAX_GROUPING)
}

/// Converts the folder `dir` into a vibrato dictionary (no cache).
pub fn convert(dir: &Path) -> Result<vibrato::Dictionary> {
    let read = |name: &str| {
        let path = dir.join(name);
        std::fs::read(&path).map_err(|e| missing_or_io(dir, &path, e))
    };
    let sys_path = dir.join("sys.dic");
    let sys_bytes = read("sys.dic")?;
    let sys = Dic::parse(&sys_path, &sys_bytes)?;
    let unk_path = dir.join("unk.dic");
    let unk_bytes = read("unk.dic")?;
    let unk = Dic::parse(&unk_path, &unk_bytes)?;
    let matrix_path = dir.join("matrix.bin");
    let matrix_bytes = read("matrix.bin")?;
    let matrix = Matrix::parse(&matrix_path, &matrix_bytes)?;
    let char_path = dir.join("char.bin");
    let char_def = char_def(&char_path, &read("char.bin")?)?;
    if (sys.lsize, sys.rsize) != (matrix.lsize, matrix.rsize) {
        return Err(corrupt(
            &matrix_path,
            format!(
                "a {}×{} matrix, but sys.dic uses {}×{} connection ids: not the matrix of \
                 this dictionary",
                matrix.lsize, matrix.rsize, sys.lsize, sys.rsize
            ),
        ));
    }
    let lex = sys.csv(&sys_path, None)?;
    let unk_def = unk.csv(&unk_path, Some(&char_def.names))?;
    let built = caught(|| {
        vibrato::SystemDictionaryBuilder::from_readers(
            lex.as_bytes(),
            matrix.text(),
            char_def.text.as_bytes(),
            unk_def.as_bytes(),
        )
    })
    .map_err(|m| corrupt(dir, m))?;
    built.map_err(|e| {
        corrupt(
            dir,
            format!("vibrato refused the converted dictionary: {e}"),
        )
    })
}

/// Runs `f`, turning a panic inside vibrato into a message.
fn caught<T>(f: impl FnOnce() -> T) -> std::result::Result<T, String> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f))
        .map_err(|p| format!("vibrato panicked: {}", crate::strings::panic_text(&*p)))
}

/// A parsed `sys.dic` / `unk.dic`.
struct Dic<'a> {
    lsize: u32,
    rsize: u32,
    units: &'a [u8],
    tokens: &'a [u8],
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

fn u16_at(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}

impl<'a> Dic<'a> {
    fn parse(path: &Path, b: &'a [u8]) -> Result<Self> {
        if b.len() < HEADER {
            return Err(corrupt(
                path,
                format!("{} bytes, shorter than a MeCab header", b.len()),
            ));
        }
        let magic = u32_at(b, 0) ^ DIC_MAGIC;
        if magic as usize != b.len() {
            return Err(corrupt(
                path,
                "not a MeCab dictionary (its magic number does not match the file size)",
            ));
        }
        let version = u32_at(b, 4);
        if version != DIC_VERSION {
            return Err(corrupt(
                path,
                format!("MeCab dictionary version {version}; manabi reads version {DIC_VERSION}"),
            ));
        }
        let (lsize, rsize) = (u32_at(b, 16), u32_at(b, 20));
        let (dsize, tsize, fsize) = (
            u32_at(b, 24) as usize,
            u32_at(b, 28) as usize,
            u32_at(b, 32) as usize,
        );
        let charset: String = b[40..72]
            .iter()
            .take_while(|&&c| c != 0)
            .map(|&c| c as char)
            .collect();
        if !matches!(charset.to_ascii_lowercase().as_str(), "utf-8" | "utf8") {
            return Err(corrupt(
                path,
                format!(
                    "charset {charset:?}: manabi reads UTF-8 dictionaries (recompile it with \
                     mecab-dict-index -t utf-8)"
                ),
            ));
        }
        let end = HEADER
            .checked_add(dsize)
            .and_then(|x| x.checked_add(tsize))
            .and_then(|x| x.checked_add(fsize));
        if end != Some(b.len()) || dsize % 8 != 0 || tsize % TOKEN != 0 || dsize == 0 {
            return Err(corrupt(
                path,
                "section sizes do not add up to the file size",
            ));
        }
        Ok(Self {
            lsize,
            rsize,
            units: &b[HEADER..HEADER + dsize],
            tokens: &b[HEADER + dsize..HEADER + dsize + tsize],
        })
    }

    fn base(&self, i: usize) -> i32 {
        u32_at(self.units, 8 * i) as i32
    }

    fn check(&self, i: usize) -> u32 {
        u32_at(self.units, 8 * i + 4)
    }

    /// Every key of the double array with its value, in key order.
    fn keys(&self, path: &Path) -> Result<Vec<(Vec<u8>, u32)>> {
        let n = self.units.len() / 8;
        let mut out = Vec::new();
        let leaf = |b: u32, out: &mut Vec<(Vec<u8>, u32)>, key: &[u8]| {
            let p = b as usize;
            if p < n && self.check(p) == b && self.base(p) < 0 {
                out.push((key.to_vec(), (-(self.base(p) as i64) - 1) as u32));
            }
        };
        let root = self.base(0);
        if root <= 0 {
            return Ok(out);
        }
        let mut key: Vec<u8> = Vec::new();
        // (node base, next code to try)
        let mut stack: Vec<(u32, u32)> = vec![(root as u32, 0)];
        leaf(root as u32, &mut out, &key);
        let mut visits = 0usize;
        while let Some(top) = stack.last_mut() {
            let (b, c) = *top;
            if c == 256 {
                stack.pop();
                key.pop();
                continue;
            }
            top.1 += 1;
            let p = b as usize + c as usize + 1;
            if p < n && self.check(p) == b {
                let child = self.base(p);
                if child <= 0 {
                    continue;
                }
                visits += 1;
                if visits > n || stack.len() > 4096 {
                    return Err(corrupt(path, "the double array has a cycle"));
                }
                key.push(c as u8);
                leaf(child as u32, &mut out, &key);
                stack.push((child as u32, 0));
            }
        }
        Ok(out)
    }

    /// The entries as MeCab source CSV lines `surface,left,right,cost,*`, in token order.
    /// For `unk.dic` (`categories` given), keys must be category names.
    fn csv(&self, path: &Path, categories: Option<&[String]>) -> Result<String> {
        let ntokens = self.tokens.len() / TOKEN;
        let mut entries: Vec<(usize, &[u8])> = Vec::with_capacity(ntokens);
        let keys = self.keys(path)?;
        for (key, value) in &keys {
            let (first, count) = ((value >> 8) as usize, (value & 0xff) as usize);
            if first + count > ntokens {
                return Err(corrupt(
                    path,
                    format!(
                        "an entry points at tokens {first}..{} of {ntokens}",
                        first + count
                    ),
                ));
            }
            for t in first..first + count {
                entries.push((t, key.as_slice()));
            }
        }
        entries.sort_by_key(|&(t, _)| t);
        let mut out = String::with_capacity(entries.len() * 24);
        for (t, key) in entries {
            let surface = std::str::from_utf8(key)
                .map_err(|_| corrupt(path, format!("token {t}: its surface is not UTF-8")))?;
            if let Some(names) = categories
                && !names.iter().any(|n| n == surface)
            {
                return Err(corrupt(
                    path,
                    format!("unknown-word entry for {surface:?}, which char.bin does not define"),
                ));
            }
            let at = t * TOKEN;
            let (l, r) = (u16_at(self.tokens, at), u16_at(self.tokens, at + 2));
            let cost = u16_at(self.tokens, at + 6) as i16;
            if u32::from(l) >= self.rsize || u32::from(r) >= self.lsize {
                return Err(corrupt(
                    path,
                    format!(
                        "token {t} ({surface:?}) has connection ids {l}/{r}, outside the \
                         {}×{} matrix",
                        self.lsize, self.rsize
                    ),
                ));
            }
            csv_field(&mut out, surface);
            let _ = writeln!(out, ",{l},{r},{cost},*");
        }
        Ok(out)
    }
}

/// `s` as one CSV field.
fn csv_field(out: &mut String, s: &str) {
    if s.contains([',', '"', '\n', '\r']) {
        out.push('"');
        out.push_str(&s.replace('"', "\"\""));
        out.push('"');
    } else {
        out.push_str(s);
    }
}

/// A parsed `matrix.bin`.
struct Matrix<'a> {
    lsize: u32,
    rsize: u32,
    costs: &'a [u8],
}

impl<'a> Matrix<'a> {
    fn parse(path: &Path, b: &'a [u8]) -> Result<Self> {
        if b.len() < 4 {
            return Err(corrupt(path, "shorter than a matrix header"));
        }
        let (l, r) = (u32::from(u16_at(b, 0)), u32::from(u16_at(b, 2)));
        if b.len() != 4 + 2 * (l as usize) * (r as usize) {
            return Err(corrupt(
                path,
                format!(
                    "{} bytes, but a {l}×{r} matrix takes {}",
                    b.len(),
                    4 + 2 * l * r
                ),
            ));
        }
        Ok(Self {
            lsize: l,
            rsize: r,
            costs: &b[4..],
        })
    }

    /// `matrix.def` text, generated as it is read.
    fn text(&self) -> MatrixText<'_> {
        MatrixText {
            m: self,
            next: 0,
            buf: format!("{} {}\n", self.lsize, self.rsize).into_bytes(),
            at: 0,
        }
    }
}

/// A reader of `matrix.def` lines (`left right cost`) made from `matrix.bin`.
struct MatrixText<'a> {
    m: &'a Matrix<'a>,
    next: usize,
    buf: Vec<u8>,
    at: usize,
}

impl Read for MatrixText<'_> {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        if self.at == self.buf.len() {
            self.buf.clear();
            self.at = 0;
            let total = self.m.costs.len() / 2;
            let lsize = self.m.lsize as usize;
            while self.next < total && self.buf.len() < 64 << 10 {
                let i = self.next;
                let cost = u16_at(self.m.costs, 2 * i) as i16;
                let _ = std::io::Write::write_fmt(
                    &mut self.buf,
                    format_args!("{} {} {cost}\n", i % lsize, i / lsize),
                );
                self.next += 1;
            }
        }
        let n = out.len().min(self.buf.len() - self.at);
        out[..n].copy_from_slice(&self.buf[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }
}

/// `char.def` text made from `char.bin`, and the category names.
struct CharDef {
    text: String,
    names: Vec<String>,
}

fn char_def(path: &Path, b: &[u8]) -> Result<CharDef> {
    const CHARS: usize = 0xffff;
    if b.len() < 4 {
        return Err(corrupt(path, "shorter than a char.bin header"));
    }
    let csize = u32_at(b, 0) as usize;
    if csize == 0 || csize > 18 || b.len() != 4 + 32 * csize + 4 * CHARS {
        return Err(corrupt(
            path,
            format!(
                "{} bytes: not MeCab's char.bin for {csize} categories",
                b.len()
            ),
        ));
    }
    let names: Vec<String> = (0..csize)
        .map(|i| {
            let raw = &b[4 + 32 * i..4 + 32 * (i + 1)];
            let raw = &raw[..raw.iter().position(|&c| c == 0).unwrap_or(32)];
            String::from_utf8_lossy(raw).into_owned()
        })
        .collect();
    if !names.iter().any(|n| n == "DEFAULT") {
        return Err(corrupt(path, "no DEFAULT category"));
    }
    let info = |c: usize| u32_at(b, 4 + 32 * csize + 4 * c);
    // Per category: invoke, group, length, from a character whose default it is.
    let mut flags: Vec<Option<(u32, u32, u32)>> = vec![None; csize];
    for c in 0..CHARS {
        let v = info(c);
        let (ty, def) = (v & 0x3ffff, ((v >> 18) & 0xff) as usize);
        if def >= csize || ty >> csize != 0 {
            return Err(corrupt(
                path,
                format!("character U+{c:04X} names a category beyond the {csize} defined"),
            ));
        }
        flags[def].get_or_insert(((v >> 31) & 1, (v >> 30) & 1, (v >> 26) & 0xf));
    }
    let mut text = String::new();
    for (name, f) in names.iter().zip(&flags) {
        let (invoke, group, length) = f.unwrap_or((0, 0, 0));
        let _ = writeln!(text, "{name} {invoke} {group} {length}");
    }
    let mut start = 0;
    while start < CHARS {
        let v = info(start);
        let mut end = start;
        while end + 1 < CHARS && info(end + 1) == v {
            end += 1;
        }
        let def = ((v >> 18) & 0xff) as usize;
        let _ = write!(text, "0x{start:04X}..0x{end:04X} {}", names[def]);
        for (i, name) in names.iter().enumerate() {
            if i != def && v & (1 << i) != 0 {
                let _ = write!(text, " {name}");
            }
        }
        text.push('\n');
        start = end + 1;
    }
    Ok(CharDef { text, names })
}

/// The MeCab dictionary a BertJapaneseTokenizer configuration names, as
/// `MecabTokenizer` finds it: `-d DIR` in `mecab_option` (relative to the tokenizer
/// folder when it exists there), else [`DICDIR_ENV`], else the `dicdir` of the Python
/// package `mecab_dic` names (`unidic_lite` by default, `ipadic`, `unidic`) in the usual
/// site-packages folders. `config` names the file in messages.
pub fn locate(
    mecab_dic: Option<&str>,
    mecab_option: Option<&str>,
    folder: &Path,
    config: &Path,
) -> Result<PathBuf> {
    let bad = |message: String| TokenizeError::TokenizerConfig {
        path: config.to_path_buf(),
        message,
    };
    let mut dicdir: Option<String> = None;
    if let Some(option) = mecab_option {
        let words = shell_words(option);
        let mut i = 0;
        while i < words.len() {
            let w = &words[i];
            let value = |i: &mut usize| -> Result<String> {
                *i += 1;
                words
                    .get(*i)
                    .cloned()
                    .ok_or_else(|| bad(format!("`mecab_kwargs.mecab_option`: {w} needs a value")))
            };
            match w.as_str() {
                "-d" | "--dicdir" => dicdir = Some(value(&mut i)?),
                "-u" | "--userdic" => {
                    return Err(bad(
                        "`mecab_kwargs.mecab_option`: user dictionaries (-u) are not read by \
                         manabi; merge the entries into the system dictionary"
                            .into(),
                    ));
                }
                "-r" | "--rcfile" | "-O" | "--output-format-type" | "-F" | "--node-format" => {
                    value(&mut i)?;
                }
                _ if w.starts_with("--dicdir=") => dicdir = Some(w["--dicdir=".len()..].into()),
                _ if w.starts_with("-d") && w.len() > 2 => dicdir = Some(w[2..].into()),
                _ if w.starts_with("-u") || w.starts_with("--userdic") => {
                    return Err(bad(
                        "`mecab_kwargs.mecab_option`: user dictionaries (-u) are not read by \
                         manabi"
                            .into(),
                    ));
                }
                _ => {}
            }
            i += 1;
        }
    }
    if let Some(d) = dicdir {
        let p = PathBuf::from(&d);
        let p = if p.is_relative() && folder.join(&p).exists() {
            folder.join(&p)
        } else {
            p
        };
        if !p.exists() {
            return Err(TokenizeError::MorphDictionaryMissing {
                path: p,
                hint: format!(
                    "`mecab_kwargs.mecab_option` of {} names it",
                    config.display()
                ),
            });
        }
        return Ok(p);
    }
    if let Some(d) = std::env::var_os(DICDIR_ENV).filter(|v| !v.is_empty()) {
        let p = PathBuf::from(d);
        if !p.exists() {
            return Err(TokenizeError::MorphDictionaryMissing {
                path: p,
                hint: format!("the environment variable {DICDIR_ENV} names it"),
            });
        }
        return Ok(p);
    }
    let Some(name) = mecab_dic else {
        return Err(bad(
            "`mecab_kwargs` names no dictionary (`mecab_dic` is null and `mecab_option` has \
             no -d DIR)"
                .into(),
        ));
    };
    let package = match name {
        "unidic_lite" | "ipadic" | "unidic" => name,
        other => {
            return Err(bad(format!(
                "`mecab_kwargs.mecab_dic` {other:?}: transformers knows unidic_lite, ipadic and \
                 unidic"
            )));
        }
    };
    let roots = site_packages();
    for root in &roots {
        let d = root.join(package).join("dicdir");
        if is_dicdir(&d) {
            return Ok(d);
        }
    }
    let pip = package.replace('_', "-");
    let extra = if package == "unidic" {
        " and `python -m unidic download` (the unidic package downloads its dictionary)"
    } else {
        " (the package ships the compiled dictionary; nothing is downloaded at run time)"
    };
    Err(bad(format!(
        "`mecab_kwargs.mecab_dic` {name:?}: MeCab dictionary not found in {} folder(s) \
         searched ({}) (hint: `pip install {pip}` once{extra}, or set {DICDIR_ENV} to a \
         MeCab dictionary folder holding {})",
        roots.len(),
        roots
            .iter()
            .take(4)
            .map(|r| r.display().to_string())
            .collect::<Vec<_>>()
            .join(", "),
        FILES.join(", ")
    )))
}

/// Splits a MeCab option string as a shell would (quotes removed).
fn shell_words(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quote: Option<char> = None;
    let mut any = false;
    for c in s.chars() {
        match quote {
            Some(q) if c == q => quote = None,
            Some(_) => cur.push(c),
            None if c == '"' || c == '\'' => {
                quote = Some(c);
                any = true;
            }
            None if c.is_whitespace() => {
                if any || !cur.is_empty() {
                    out.push(std::mem::take(&mut cur));
                }
                any = false;
            }
            None => cur.push(c),
        }
    }
    if any || !cur.is_empty() {
        out.push(cur);
    }
    out
}

/// Python site-packages folders where `pip install` puts packages: the active virtual
/// or conda environment, `PYTHONPATH`, the user's, pyenv's and the system's.
fn site_packages() -> Vec<PathBuf> {
    let var = |k: &str| {
        std::env::var_os(k)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    let mut prefixes: Vec<PathBuf> = Vec::new();
    let mut out: Vec<PathBuf> = Vec::new();
    if let Some(pp) = std::env::var_os("PYTHONPATH") {
        out.extend(std::env::split_paths(&pp));
    }
    prefixes.extend(var("VIRTUAL_ENV"));
    prefixes.extend(var("CONDA_PREFIX"));
    if let Some(home) = var("HOME") {
        prefixes.push(home.join(".local"));
        if let Ok(rd) = std::fs::read_dir(home.join(".pyenv/versions")) {
            let mut v: Vec<PathBuf> = rd.flatten().map(|e| e.path()).collect();
            v.sort();
            prefixes.extend(v);
        }
    }
    prefixes.extend(
        ["/usr/local", "/usr", "/opt/conda", "/opt/homebrew"]
            .iter()
            .map(PathBuf::from),
    );
    for prefix in prefixes {
        let lib = prefix.join("lib");
        let Ok(rd) = std::fs::read_dir(&lib) else {
            continue;
        };
        let mut pythons: Vec<PathBuf> = rd
            .flatten()
            .map(|e| e.path())
            .filter(|p| {
                p.file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with("python3"))
            })
            .collect();
        pythons.sort();
        for py in pythons {
            for sub in ["site-packages", "dist-packages"] {
                if py.join(sub).is_dir() {
                    out.push(py.join(sub));
                }
            }
        }
    }
    out.dedup();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_split_like_a_shell() {
        assert_eq!(
            shell_words(r#"-d "/a b/dic" -r '/x/mecabrc'  -Owakati"#),
            ["-d", "/a b/dic", "-r", "/x/mecabrc", "-Owakati"]
        );
        assert_eq!(shell_words(""), Vec::<String>::new());
        assert_eq!(shell_words(r#"-d """#), ["-d", ""]);
    }

    #[test]
    fn csv_fields_are_quoted_when_needed() {
        let mut s = String::new();
        csv_field(&mut s, "a,b");
        s.push('|');
        csv_field(&mut s, "x\"y");
        s.push('|');
        csv_field(&mut s, "猫");
        assert_eq!(s, "\"a,b\"|\"x\"\"y\"|猫");
    }

    #[test]
    fn broken_binaries_are_named() {
        let p = Path::new("d/sys.dic");
        let e = Dic::parse(p, &[0u8; 10]).err().unwrap().to_string();
        assert!(e.starts_with("d/sys.dic: "), "{e}");
        let e = Dic::parse(p, &[0u8; 100]).err().unwrap().to_string();
        assert!(e.contains("magic number"), "{e}");
        let e = Matrix::parse(Path::new("m.bin"), &[2, 0, 2, 0, 1, 0])
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("2×2 matrix takes 12"), "{e}");
        let e = char_def(Path::new("c.bin"), &[1, 0, 0, 0])
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("not MeCab's char.bin"), "{e}");
    }
}
