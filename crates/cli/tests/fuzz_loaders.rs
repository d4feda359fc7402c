//! Fuzzing of every loader (issue §5): arbitrary bytes and mutations of valid files fed
//! to each public reader of a file format; a loader may accept an input or refuse it with
//! an error, and a panic is a failure.
//!
//! Targets (one seeded fuzz loop each; the seeds are committed files, or made here):
//! `tokenizer.json` and its `manabi-pretokenize.json` sidecar; the JSONL / text readers of
//! every stage (`read_jsonl`, `read_text_lines`, gzip, corpora, SFT records, preference
//! pairs, RL prompts, task examples, NER, few-shot docs, RAG passages and questions,
//! sentences); Hugging Face folders (`config.json`, `model.safetensors`: GPT-2, LLaMA,
//! BERT and its heads, T5); PEFT adapters (`adapter_config.json`,
//! `adapter_model.safetensors`); a training checkpoint (`state.json`, `model.toml`,
//! `model.bpk`) and its token shards (`meta.json`); every recipe type and `--set` overrides.
//!
//! Inputs are (a) random bytes (or random JSON/TOML-ish text) of length 0..4096 and (b) 1–4
//! stacked mutations of a valid seed: truncation, bit flips, overwritten / inserted /
//! deleted bytes, a duplicated slice; for text also splices of tokens (`{`, `"`, `]`,
//! `-1`, `1e999`, `null`, `\u0000`, 18446744073709551616, invalid UTF-8, …), numbers
//! swapped for extreme ones, deep nesting (`[[[[…`), line edits and long runs of one
//! byte; for length-prefixed containers (safetensors' u64, burnpack's u32) also rewrites
//! of the length field and mutations inside the header. Each input is generated from
//! `MANABI_FUZZ_SEED`, the target's name and the iteration number, so a run is
//! reproducible.
//!
//! Short run (part of the test suite: 300 inputs or 1 s per target, whichever comes first):
//!
//!     cargo test --release -p manabi-cli --test fuzz_loaders
//!
//! Long run (each target runs MANABI_FUZZ_SECS seconds; `--nocapture` shows, per target,
//! the inputs run and how many loaded, were refused with an error, were skipped, panicked):
//!
//!     MANABI_FUZZ_SECS=600 cargo test --release -p manabi-cli --test fuzz_loaders -- --test-threads 1 --nocapture
//!
//! That is 29 targets in 26 tests (`training_checkpoint` holds four), about five hours
//! in all. One test: append its name (e.g. `tokenizer_json`); another sequence of inputs:
//! `MANABI_FUZZ_SEED=<u64 or 0x…>`. A panicking input is saved under the system temporary
//! folder as `manabi-fuzz-<target>-<seed>-<iteration>.bin` and named in the failure. The
//! input being tried is also written to `manabi-fuzz-<target>-<pid>.pending` there (removed
//! when the target ends), so an input that aborts the process (stack overflow, failed
//! allocation) is left behind.
//!
//! Skipped inputs: model configs (`config.json`, `model.toml`) asking for more than
//! 2^26 parameters and LoRA ranks above 4096 are not loaded. The loaders have no size cap
//! and would allocate what the file asks for (gigabytes, or abort on a failed
//! allocation) before any check against the weights; once they refuse such sizes with an
//! error, the guard can go.

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use manabi_model::device::test_device;
use manabi_model::{DecoderLm, ModelConfig};
use manabi_objectives::{PretrainConfig, Recipe};
use manabi_tokenize::TextTokenizer;

// ---------------------------------------------------------------------------------------
// Budget and randomness
// ---------------------------------------------------------------------------------------

/// Inputs per target in the short run (unless `DEFAULT_TIME` runs out first).
const DEFAULT_ITERATIONS: u64 = 300;
/// Time per target in the short run.
const DEFAULT_TIME: Duration = Duration::from_secs(1);
/// `MANABI_FUZZ_SEED` when unset ("manabi").
const DEFAULT_SEED: u64 = 0x6d61_6e61_6269;
/// A target stops after this many panicking inputs.
const MAX_FAILURES: usize = 20;

struct Budget {
    /// `None`: as many as fit in `time`.
    iterations: Option<u64>,
    time: Duration,
    seed: u64,
}

impl Budget {
    fn from_env() -> Self {
        let seed = match std::env::var("MANABI_FUZZ_SEED") {
            Ok(s) => {
                parse_u64(&s).unwrap_or_else(|| panic!("MANABI_FUZZ_SEED={s:?} is not an integer"))
            }
            Err(_) => DEFAULT_SEED,
        };
        match std::env::var("MANABI_FUZZ_SECS") {
            Ok(s) => {
                let secs = s
                    .trim()
                    .parse::<f64>()
                    .ok()
                    .filter(|x| x.is_finite() && *x > 0.0)
                    .unwrap_or_else(|| panic!("MANABI_FUZZ_SECS={s:?} is not a positive number"));
                Self {
                    iterations: None,
                    time: Duration::from_secs_f64(secs),
                    seed,
                }
            }
            Err(_) => Self {
                iterations: Some(DEFAULT_ITERATIONS),
                time: DEFAULT_TIME,
                seed,
            },
        }
    }
}

fn parse_u64(s: &str) -> Option<u64> {
    let s = s.trim();
    match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        Some(hex) => u64::from_str_radix(hex, 16).ok(),
        None => s.parse().ok(),
    }
}

/// xorshift64, seeded through splitmix64 (never zero).
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Self {
        let mut z = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        Self((z ^ (z >> 31)) | 1)
    }

    fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    /// Uniform in `0..n` (0 when `n` is 0).
    fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next_u64() % n as u64) as usize
        }
    }

    /// Uniform in `lo..=hi`.
    fn range(&mut self, lo: usize, hi: usize) -> usize {
        lo + self.below(hi - lo + 1)
    }

    fn one_in(&mut self, n: usize) -> bool {
        self.below(n) == 0
    }

    fn byte(&mut self) -> u8 {
        self.next_u64() as u8
    }

    fn pick<'a, T>(&mut self, xs: &'a [T]) -> &'a T {
        &xs[self.below(xs.len())]
    }
}

/// FNV-1a, to give each target its own sequence of inputs.
fn fnv1a(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

// ---------------------------------------------------------------------------------------
// Inputs
// ---------------------------------------------------------------------------------------

/// How a target's files are mutated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// JSON, JSONL, TOML, plain text: byte mutations plus token splices, number swaps,
    /// deep nesting, line edits and long runs.
    Text,
    /// Opaque bytes (gzip): byte mutations only.
    Binary,
    /// A little-endian length field of `len_bytes` bytes at `len_at`, then a header of
    /// that length, then data: byte mutations, plus rewrites of the length field and text
    /// mutations inside the header (the length field following them or not).
    Container { len_at: usize, len_bytes: usize },
}

/// safetensors: u64 header length, then the JSON header.
const SAFETENSORS: Kind = Kind::Container {
    len_at: 0,
    len_bytes: 8,
};
/// burnpack: magic (4), version (2), u32 metadata length, then the CBOR metadata.
const BURNPACK: Kind = Kind::Container {
    len_at: 6,
    len_bytes: 4,
};

/// Spliced into text inputs.
#[rustfmt::skip]
const TOKENS: &[&[u8]] = &[
    b"{", b"}", b"[", b"]", b"\"", b":", b",", b"=", b".", b"\\", b"\\u0000", b"\\ud800",
    b"\\uDFFF", b"\\x", b"\0", b"\n", b"\r\n", b"\r", b"\t", b"#", b"'", b"\"\"\"", b"'''",
    b"[[", b"]]", b"-1", b"0", b"-0", b"1e999", b"-1e999", b"1e-999", b"NaN", b"nan",
    b"inf", b"-inf", b"null", b"true", b"false", b"\"\"", b"[]", b"{}", b"[[]]",
    b"18446744073709551616", b"18446744073709551615", b"9223372036854775808",
    b"-9223372036854775809", b"4294967296", b"\xef\xbb\xbf", b"\xff", b"\xc3", b"\xed\xa0\x80",
    b"\xf4\x90\x80\x80", b"\xc0\x80", "吾輩は猫".as_bytes(), "\u{fffd}".as_bytes(),
    "\u{202e}".as_bytes(), "𝔘".as_bytes(), b"\"peft_type\": \"LORA\"",
    b"\"model_type\": \"gpt2\"", b"\"dtype\":\"F16\"", b"\"dtype\":\"BOOL\"", b"\"shape\":[]",
    b"\"shape\":[0]", b"\"data_offsets\":[0,0]", b"\"__metadata__\":{}",
    b"\"role\": \"assistant\"", b"\"role\": \"system\"", b"\"messages\": []",
    b"\"span\": [3, 1]", b"\"type\": \"BPE\"", b"\"id\": 0",
];

/// What a number in a text input is swapped for.
#[rustfmt::skip]
const NUMBERS: &[&[u8]] = &[
    b"0", b"1", b"-1", b"2", b"3", b"7", b"255", b"256", b"65535", b"65536", b"2147483647",
    b"2147483648", b"4294967295", b"4294967296", b"9007199254740993", b"9223372036854775807",
    b"9223372036854775808", b"18446744073709551615", b"18446744073709551616",
    b"100000000000000000000000000000", b"1e999", b"-1e999", b"1e-999", b"0.0", b"-0.0",
    b"0.5", b"1.5", b"-2.5", b"3.4028235e38", b"1e308", b"NaN", b"inf", b"0x10", b"1_000",
    b"01", b"1e5", b"\"1\"", b"null", b"[]",
];

/// Openings and closings for deep nesting (JSON and TOML).
const NESTING: &[(&[u8], &[u8])] = &[
    (b"[" as &[u8], b"]" as &[u8]),
    (b"{\"a\":" as &[u8], b"}" as &[u8]),
    (b"{a=" as &[u8], b"}" as &[u8]),
    (b"[{\"a\":" as &[u8], b"}]" as &[u8]),
];

/// Lines inserted by line edits.
#[rustfmt::skip]
const ODD_LINES: &[&[u8]] = &[
    b"\n", b"\r\n", b"   \n", b"\t\r\n", b"\xef\xbb\xbf\n", b"\0\n", b"{}\n", b"[]\n",
    b"null\n", b"\"\"\n", b"1\n", b"{\n", b"\xff\xfe\n",
];

/// Bytes an overwrite favours.
const SPECIAL_BYTES: &[u8] = b"\0\xff\x7f\x80\"\\{}[]:,=\n\r .-0123456789eE";

/// Characters of random text.
const SOUP: &[u8] = b" \n\t{}[]\":,=.#-+0123456789abcdefxyz_\\";

/// Bytes of a long run.
const RUN_BYTES: &[u8] = b"a 0\\\"\n\0\xff[{";

/// One input: which seed it came from (a random one for pure random bytes) and its bytes.
fn generate(rng: &mut Rng, seeds: &[Vec<u8>], kind: Kind) -> (usize, Vec<u8>) {
    let which = rng.below(seeds.len());
    if rng.one_in(10) {
        let n = rng.below(4097);
        let bytes = if kind == Kind::Text && rng.one_in(2) {
            soup(rng, n)
        } else {
            (0..n).map(|_| rng.byte()).collect()
        };
        return (which, bytes);
    }
    let mut b = seeds[which].clone();
    for _ in 0..rng.range(1, 4) {
        mutate(rng, &mut b, kind);
    }
    (which, b)
}

/// Random text made of `TOKENS` and `SOUP` characters, about `n` bytes.
fn soup(rng: &mut Rng, n: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(n + 32);
    while out.len() < n {
        if rng.one_in(3) {
            let token: &[u8] = rng.pick::<&[u8]>(TOKENS);
            out.extend_from_slice(token);
        } else {
            out.push(*rng.pick(SOUP));
        }
    }
    out
}

/// A random non-empty slice `a..e` of a buffer of `len > 0` bytes, at most 4096 long.
fn slice(rng: &mut Rng, len: usize) -> (usize, usize) {
    let a = rng.below(len);
    (a, a + rng.range(1, (len - a).min(4096)))
}

/// The number nearest after a random position (wrapping), as `start..end`; an empty
/// range at a random position when there is none.
fn number_at(rng: &mut Rng, b: &[u8]) -> (usize, usize) {
    let at = rng.below(b.len() + 1);
    let Some(d) = (at..b.len()).chain(0..at).find(|&i| b[i].is_ascii_digit()) else {
        return (at, at);
    };
    let in_number = |c: u8| c.is_ascii_digit() || b"-+.eE".contains(&c);
    let (mut s, mut e) = (d, d);
    while s > 0 && in_number(b[s - 1]) {
        s -= 1;
    }
    while e < b.len() && in_number(b[e]) {
        e += 1;
    }
    (s, e)
}

fn mutate(rng: &mut Rng, b: &mut Vec<u8>, kind: Kind) {
    if let Kind::Container { len_at, len_bytes } = kind
        && b.len() >= len_at + len_bytes
        && rng.one_in(2)
    {
        mutate_container(rng, b, len_at, len_bytes);
        return;
    }
    let ops = if kind == Kind::Text { 11 } else { 6 };
    match rng.below(ops) {
        // Truncate.
        0 => {
            let at = rng.below(b.len());
            b.truncate(at);
        }
        // Flip bits.
        1 => {
            for _ in 0..rng.range(1, 16) {
                if b.is_empty() {
                    break;
                }
                let i = rng.below(b.len());
                b[i] ^= 1 << rng.below(8);
            }
        }
        // Overwrite bytes.
        2 => {
            for _ in 0..rng.range(1, 16) {
                if b.is_empty() {
                    break;
                }
                let i = rng.below(b.len());
                b[i] = if rng.one_in(2) {
                    *rng.pick(SPECIAL_BYTES)
                } else {
                    rng.byte()
                };
            }
        }
        // Insert random bytes.
        3 => {
            let at = rng.below(b.len() + 1);
            let new: Vec<u8> = (0..rng.range(1, 16)).map(|_| rng.byte()).collect();
            b.splice(at..at, new);
        }
        // Duplicate a slice somewhere.
        4 => {
            if !b.is_empty() {
                let (s, e) = slice(rng, b.len());
                let copy = b[s..e].to_vec();
                let at = rng.below(b.len() + 1);
                b.splice(at..at, copy);
            }
        }
        // Delete a slice.
        5 => {
            if !b.is_empty() {
                let (s, e) = slice(rng, b.len());
                b.drain(s..e);
            }
        }
        // Splice a token in (inserted, or over a few bytes).
        6 => {
            let token = rng.pick(TOKENS).to_vec();
            let at = rng.below(b.len() + 1);
            let end = if rng.one_in(2) {
                (at + rng.range(1, 8)).min(b.len())
            } else {
                at
            };
            b.splice(at..end, token);
        }
        // Swap a number for an extreme one.
        7 => {
            let n = rng.pick(NUMBERS).to_vec();
            let (s, e) = number_at(rng, b);
            b.splice(s..e, n);
        }
        // Deep nesting where a value was.
        8 => {
            let (open, close) = *rng.pick(NESTING);
            let depth = if rng.one_in(8) {
                rng.range(1_000, 20_000)
            } else {
                rng.range(2, 300)
            };
            let mut nest = open.repeat(depth);
            nest.push(b'1');
            if !rng.one_in(4) {
                nest.extend(close.repeat(depth));
            }
            let (s, e) = number_at(rng, b);
            b.splice(s..e, nest);
        }
        // Duplicate, delete or swap lines, or add an odd one.
        9 => {
            let mut lines: Vec<Vec<u8>> = b
                .split_inclusive(|&c| c == b'\n')
                .map(<[u8]>::to_vec)
                .collect();
            if lines.is_empty() {
                lines.push(Vec::new());
            }
            let i = rng.below(lines.len());
            match rng.below(4) {
                0 => {
                    let line = lines[i].clone();
                    lines.insert(i, line);
                }
                1 => {
                    lines.remove(i);
                }
                2 => {
                    let j = rng.below(lines.len());
                    lines.swap(i, j);
                }
                _ => lines.insert(i, rng.pick(ODD_LINES).to_vec()),
            }
            *b = lines.concat();
        }
        // A long run of one byte.
        _ => {
            let at = rng.below(b.len() + 1);
            let n = rng.range(1, 1 << 16);
            let byte = *rng.pick(RUN_BYTES);
            b.splice(at..at, std::iter::repeat_n(byte, n));
        }
    }
}

/// Writes `v` into the little-endian field `b[at..at + width]`.
fn set_le(b: &mut [u8], at: usize, width: usize, v: u64) {
    for (i, byte) in b[at..at + width].iter_mut().enumerate() {
        *byte = (v >> (8 * i)) as u8;
    }
}

/// Rewrites the length field, or mutates the header it announces.
fn mutate_container(rng: &mut Rng, b: &mut Vec<u8>, at: usize, width: usize) {
    let header_len = b[at..at + width]
        .iter()
        .rev()
        .fold(0u64, |v, &x| (v << 8) | u64::from(x));
    let start = at + width;
    let max = if width >= 8 {
        u64::MAX
    } else {
        (1u64 << (8 * width)) - 1
    };
    if rng.one_in(3) {
        let file = b.len() as u64;
        let v = match rng.below(8) {
            0 => 0,
            1 => header_len.wrapping_sub(1),
            2 => header_len.wrapping_add(1),
            3 => file - start as u64,
            4 => file + 1,
            5 => max,
            6 => 1u64 << rng.below(8 * width),
            _ => rng.next_u64(),
        };
        set_le(b, at, width, v & max);
    } else {
        let end = start
            .saturating_add(usize::try_from(header_len).unwrap_or(usize::MAX))
            .min(b.len());
        let mut header = b[start..end].to_vec();
        mutate(rng, &mut header, Kind::Text);
        if !rng.one_in(4) {
            set_le(b, at, width, header.len() as u64 & max);
        }
        b.splice(start..end, header);
    }
}

// ---------------------------------------------------------------------------------------
// The driver
// ---------------------------------------------------------------------------------------

thread_local! {
    /// Set while a loader runs on this thread: its panics are recorded, not printed.
    static QUIET: Cell<bool> = const { Cell::new(false) };
    /// The last panic message (with its location) on this thread while `QUIET`.
    static LAST_PANIC: RefCell<Option<String>> = const { RefCell::new(None) };
}

/// Replaces the panic hook once: quiet (recording the message) on a thread running a
/// loader, the default hook everywhere else.
fn install_quiet_hook() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if QUIET.with(Cell::get) {
                LAST_PANIC.with(|p| *p.borrow_mut() = Some(info.to_string()));
            } else {
                default(info);
            }
        }));
    });
}

/// What a loader returns for an input deliberately not loaded (see the module docs).
const SKIPPED: &str = "\0skipped";

fn skip() -> Result<(), String> {
    Err(SKIPPED.to_string())
}

fn msg(e: impl std::fmt::Display) -> String {
    e.to_string()
}

enum Ran {
    Loaded,
    Refused(String),
    Skipped,
    Panicked(String),
}

fn run_one<F: FnMut(usize, &[u8]) -> Result<(), String>>(
    load: &mut F,
    which: usize,
    input: &[u8],
) -> Ran {
    QUIET.with(|q| q.set(true));
    LAST_PANIC.with(|p| p.borrow_mut().take());
    let result = catch_unwind(AssertUnwindSafe(|| load(which, input)));
    QUIET.with(|q| q.set(false));
    match result {
        Ok(Ok(())) => Ran::Loaded,
        Ok(Err(e)) if e == SKIPPED => Ran::Skipped,
        Ok(Err(e)) => Ran::Refused(e),
        Err(payload) => Ran::Panicked(LAST_PANIC.with(|p| p.borrow_mut().take()).unwrap_or_else(
            || {
                payload
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| payload.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "(a panic without a message)".into())
            },
        )),
    }
}

/// Feeds `load` generated inputs (mutations of `seeds`, or random bytes) until the
/// budget runs out; `load(i, bytes)` gets the index of the seed the input came from.
/// Fails when a seed does not load (the target is wired wrong) or when any input panics.
fn fuzz(
    name: &str,
    seeds: &[Vec<u8>],
    kind: Kind,
    mut load: impl FnMut(usize, &[u8]) -> Result<(), String>,
) {
    install_quiet_hook();
    assert!(!seeds.is_empty(), "{name}: no seeds");
    for (i, seed) in seeds.iter().enumerate() {
        match run_one(&mut load, i, seed) {
            Ran::Loaded => {}
            Ran::Skipped => panic!("{name}: seed {i} is skipped by the size guard"),
            Ran::Refused(e) => panic!("{name}: seed {i} does not load: {e}"),
            Ran::Panicked(p) => panic!("{name}: seed {i} panics: {p}"),
        }
    }
    let budget = Budget::from_env();
    let tmp = std::env::temp_dir();
    let pending = tmp.join(format!("manabi-fuzz-{name}-{}.pending", std::process::id()));
    let start = Instant::now();
    let mut last_report = start;
    let (mut loaded, mut refused, mut skipped, mut done) = (0u64, 0u64, 0u64, 0u64);
    let mut failures: Vec<String> = Vec::new();
    while budget.iterations.is_none_or(|n| done < n) && start.elapsed() < budget.time {
        let mut rng =
            Rng::new(budget.seed ^ fnv1a(name) ^ done.wrapping_mul(0x9E37_79B9_7F4A_7C15));
        let (which, input) = generate(&mut rng, seeds, kind);
        let _ = std::fs::write(&pending, &input);
        match run_one(&mut load, which, &input) {
            Ran::Loaded => loaded += 1,
            Ran::Refused(_) => refused += 1,
            Ran::Skipped => skipped += 1,
            Ran::Panicked(p) => {
                let saved = tmp.join(format!("manabi-fuzz-{name}-{:x}-{done}.bin", budget.seed));
                let _ = std::fs::write(&saved, &input);
                failures.push(format!(
                    "input {done} (from seed {which}, {} bytes, saved as {}): {p}",
                    input.len(),
                    saved.display()
                ));
            }
        }
        done += 1;
        if failures.len() >= MAX_FAILURES {
            break;
        }
        if last_report.elapsed() >= Duration::from_secs(60) {
            last_report = Instant::now();
            println!(
                "fuzz {name}: {done} inputs after {:.0} s, {} panicked so far",
                start.elapsed().as_secs_f64(),
                failures.len()
            );
        }
    }
    let _ = std::fs::remove_file(&pending);
    println!(
        "fuzz {name}: {done} inputs in {:.1} s (MANABI_FUZZ_SEED={:#x}, {} seeds): \
         {loaded} loaded, {refused} refused with an error, {skipped} skipped, {} panicked",
        start.elapsed().as_secs_f64(),
        budget.seed,
        seeds.len(),
        failures.len()
    );
    assert!(
        failures.is_empty(),
        "{name}: {} of {done} inputs panicked (MANABI_FUZZ_SEED={:#x}); a loader must \
         return an error, never panic:\n  {}",
        failures.len(),
        budget.seed,
        failures.join("\n  ")
    );
}

// ---------------------------------------------------------------------------------------
// Files and seeds
// ---------------------------------------------------------------------------------------

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn read(path: &Path) -> Vec<u8> {
    std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Writes `bytes` as a new file (a new inode: nothing still mapping the old one sees
/// it change).
fn write_fresh(path: &Path, bytes: &[u8]) {
    let _ = std::fs::remove_file(path);
    std::fs::write(path, bytes).unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
}

/// Copies the plain files of `from` (not its folders) into `to`.
fn copy_files(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        if entry.file_type().unwrap().is_file() {
            std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
        }
    }
}

/// Lines of each seed taken from the (long) data files.
const SEED_LINES: usize = 12;

/// The first `SEED_LINES` lines of each repository file, with its file name.
fn heads(paths: &[&str]) -> Vec<(String, Vec<u8>)> {
    paths
        .iter()
        .map(|p| {
            let bytes = read(&root().join(p));
            let end = bytes
                .iter()
                .enumerate()
                .filter(|(_, b)| **b == b'\n')
                .nth(SEED_LINES - 1)
                .map_or(bytes.len(), |(i, _)| i + 1);
            let name = Path::new(p)
                .file_name()
                .unwrap()
                .to_string_lossy()
                .into_owned();
            (name, bytes[..end].to_vec())
        })
        .collect()
}

/// Fuzzes a reader of single files: each input is written under its seed's file name
/// (the readers look at the extension) and `load(seed index, path)` reads it.
fn fuzz_files(
    name: &str,
    kind: Kind,
    files: Vec<(String, Vec<u8>)>,
    load: impl Fn(usize, &Path) -> Result<(), String>,
) {
    let work = tempfile::tempdir().unwrap();
    let (names, seeds): (Vec<String>, Vec<Vec<u8>>) = files.into_iter().unzip();
    fuzz(name, &seeds, kind, |i, bytes| {
        let path = work.path().join(&names[i]);
        write_fresh(&path, bytes);
        load(i, path.as_path())
    });
}

/// Both results: the first error, if any (every call runs, whatever the first gave).
fn both(a: Result<(), String>, b: Result<(), String>) -> Result<(), String> {
    a.and(b)
}

/// `bytes` as a gzip file of stored (uncompressed) deflate blocks: a valid seed for the
/// `.gz` readers without a compressor.
fn gzip_stored(bytes: &[u8]) -> Vec<u8> {
    let mut out = vec![0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff];
    if bytes.is_empty() {
        out.extend([1, 0, 0, 0xff, 0xff]);
    }
    let mut chunks = bytes.chunks(0xffff).peekable();
    while let Some(chunk) = chunks.next() {
        out.push(u8::from(chunks.peek().is_none()));
        let n = chunk.len() as u16;
        out.extend(n.to_le_bytes());
        out.extend((!n).to_le_bytes());
        out.extend_from_slice(chunk);
    }
    let mut crc = !0u32;
    for &b in bytes {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    out.extend((!crc).to_le_bytes());
    out.extend((bytes.len() as u32).to_le_bytes());
    out
}

// ---------------------------------------------------------------------------------------
// Size guard (see the module docs)
// ---------------------------------------------------------------------------------------

/// Most parameters a fuzzed model config may ask for and still be loaded.
const MAX_PARAMS: usize = 1 << 26;
/// Largest LoRA rank a fuzzed adapter config may ask for and still be loaded.
const MAX_LORA_RANK: u64 = 4096;

/// A generous upper bound of the parameters of `c` over `MAX_PARAMS`.
fn oversize(c: &ModelConfig) -> bool {
    let heads = c.n_heads.max(c.n_kv_heads.unwrap_or(0));
    let d = c.d_model.max(c.head_dim.unwrap_or(0).saturating_mul(heads));
    let rows = [
        c.vocab_size,
        c.max_positions,
        c.d_ff,
        c.type_vocab_size.unwrap_or(0),
        c.num_labels.unwrap_or(0),
        c.relative_attention_num_buckets
            .unwrap_or(0)
            .saturating_mul(heads),
    ]
    .into_iter()
    .max()
    .unwrap_or(0);
    let layers = c
        .n_layers
        .saturating_add(c.n_decoder_layers.unwrap_or(c.n_layers))
        .saturating_add(2);
    let block = d.saturating_mul(d.saturating_mul(8).saturating_add(c.d_ff.saturating_mul(4)));
    layers
        .saturating_mul(block)
        .saturating_add(rows.saturating_mul(d).saturating_mul(4))
        > MAX_PARAMS
}

fn hf_config_oversize(bytes: &[u8]) -> bool {
    std::str::from_utf8(bytes)
        .ok()
        .and_then(|t| ModelConfig::from_hf_json(t.strip_prefix('\u{feff}').unwrap_or(t)).ok())
        .is_some_and(|c| oversize(&c))
}

fn toml_config_oversize(bytes: &[u8]) -> bool {
    std::str::from_utf8(bytes)
        .ok()
        .and_then(|t| toml::from_str::<ModelConfig>(t).ok())
        .is_some_and(|c| oversize(&c))
}

fn lora_rank_oversize(bytes: &[u8]) -> bool {
    serde_json::from_slice::<serde_json::Value>(bytes)
        .ok()
        .and_then(|v| v["r"].as_u64())
        .is_some_and(|r| r > MAX_LORA_RANK)
}

// ---------------------------------------------------------------------------------------
// Tokenizers
// ---------------------------------------------------------------------------------------

#[test]
fn tokenizer_json() {
    let work = tempfile::tempdir().unwrap();
    let path = work.path().join("tokenizer.json");
    let seeds = ["bpe-en", "bpe-ja", "char-en", "unigram-ja", "wordpiece-en"].map(|t| {
        read(
            &root()
                .join("fixtures/tokenize")
                .join(t)
                .join("tokenizer.json"),
        )
    });
    fuzz("tokenizer_json", &seeds, Kind::Text, |_, bytes| {
        write_fresh(&path, bytes);
        TextTokenizer::load(&path).map(drop).map_err(msg)
    });
}

/// tokenizer_config.json beside a tokenizer.json (each seed with its own tokenizer.json,
/// fixtures/tokenize/hf-*): classes, special tokens, class arguments.
#[test]
fn tokenizer_config_json() {
    let work = tempfile::tempdir().unwrap();
    let names = [
        "hf-llama-bos",
        "hf-qwen2",
        "hf-gpt2-rebuilt",
        "hf-config-flags-ignored",
        "hf-gemma-rebuilt",
        "hf-neox-rebuilt",
        "hf-bert-rebuilt",
    ];
    let seeds = names.map(|t| {
        let from = root().join("fixtures/tokenize").join(t);
        let to = work.path().join(t);
        std::fs::create_dir_all(&to).unwrap();
        std::fs::copy(from.join("tokenizer.json"), to.join("tokenizer.json")).unwrap();
        read(&from.join("tokenizer_config.json"))
    });
    fuzz(
        "tokenizer_config_json",
        &seeds,
        Kind::Text,
        |which, bytes| {
            let dir = work.path().join(names[which]);
            write_fresh(&dir.join("tokenizer_config.json"), bytes);
            TextTokenizer::load(&dir).map(drop).map_err(msg)
        },
    );
}

#[test]
fn tokenizer_sidecar() {
    use manabi_tokenize::sidecar::{self, Sidecar};
    let work = tempfile::tempdir().unwrap();
    let tok = work.path().join("tokenizer.json");
    std::fs::copy(
        root().join("fixtures/tokenize/char-en/tokenizer.json"),
        &tok,
    )
    .unwrap();
    let sha = TextTokenizer::load(&tok).unwrap().sha256();
    let seed = serde_json::to_vec_pretty(&serde_json::json!({
        "format": sidecar::SIDECAR_FORMAT,
        "version": sidecar::SIDECAR_VERSION,
        "tokenizer_sha256": sha,
        "morph": {
            "engine": sidecar::MORPH_ENGINE,
            "dictionary": "system.dic.zst",
            "dictionary_sha256": "0".repeat(64),
            "separator": sidecar::MORPH_SEPARATOR,
        },
    }))
    .unwrap();
    let side = sidecar::sidecar_path(&tok);
    fuzz("tokenizer_sidecar", &[seed], Kind::Text, |_, bytes| {
        write_fresh(&side, bytes);
        let read = Sidecar::read(&side).map(drop).map_err(msg);
        // With the sidecar beside it the tokenizer is refused (no `morph` feature, or no
        // such dictionary): only a panic counts here.
        let _ = TextTokenizer::load(work.path());
        read
    });
}

// ---------------------------------------------------------------------------------------
// JSONL and text readers
// ---------------------------------------------------------------------------------------

/// The first error of a line iterator.
fn first_error<T, E: std::fmt::Display, I: Iterator<Item = Result<T, E>>>(
    lines: I,
) -> Result<(), String> {
    let errors: Vec<String> = lines.filter_map(|r| r.err().map(msg)).collect();
    errors.into_iter().next().map_or(Ok(()), Err)
}

#[test]
fn jsonl_lines() {
    let files = heads(&[
        "datasets/sft/chat-en.jsonl",
        "datasets/pref/pref-chat-en.jsonl",
        "datasets/tasks/ner-ja.val.jsonl",
        "datasets/rag/docs-ja.jsonl",
    ]);
    fuzz_files("jsonl_lines", Kind::Text, files, |_, path| {
        both(
            first_error(manabi_tokenize::read_jsonl(path)),
            first_error(manabi_tokenize::read_text_lines(path)),
        )
    });
}

#[test]
fn jsonl_gzip() {
    let files = heads(&[
        "datasets/sft/qa-en.val.jsonl",
        "datasets/pref/rl-arith-ja.val.jsonl",
    ])
    .into_iter()
    .map(|(name, bytes)| (format!("{name}.gz"), gzip_stored(&bytes)))
    .collect();
    fuzz_files("jsonl_gzip", Kind::Binary, files, |_, path| {
        first_error(manabi_tokenize::read_jsonl(path))
    });
}

#[test]
fn corpus_documents() {
    use manabi_tokenize::{CorpusFormat, CorpusSpec, DocBoundary};
    let files = heads(&["datasets/rag/docs-en.jsonl", "datasets/tiny/stories-en.txt"]);
    fuzz_files("corpus_documents", Kind::Text, files, |i, path| {
        let mut results = Vec::new();
        for boundary in [DocBoundary::Line, DocBoundary::Paragraph, DocBoundary::File] {
            let mut spec = CorpusSpec::new(vec![path.to_path_buf()]);
            spec.format = if i == 0 {
                CorpusFormat::Jsonl
            } else {
                CorpusFormat::Text
            };
            spec.boundary = boundary;
            spec.skip_invalid = boundary == DocBoundary::Line;
            results.push(spec.documents().map_err(msg).and_then(first_error));
        }
        results.into_iter().fold(Ok(()), both)
    });
}

#[test]
fn sft_records() {
    use manabi_finetune::sft::data::{Format, read_files};
    let files = heads(&[
        "datasets/sft/chat-en.jsonl",
        "datasets/sft/instructions-en.jsonl",
        "datasets/sft/completion-en.jsonl",
        "datasets/sft/qa-en.val.jsonl",
        "datasets/sft/summarise-ja.jsonl",
    ]);
    fuzz_files("sft_records", Kind::Text, files, |_, path| {
        let paths = [path.to_path_buf()];
        let strict = read_files(&paths, Format::Auto, &BTreeMap::new(), false);
        let lenient = read_files(&paths, Format::Auto, &BTreeMap::new(), true);
        both(
            strict.map(drop).map_err(msg),
            lenient.map(drop).map_err(msg),
        )
    });
}

#[test]
fn preference_pairs() {
    let files = heads(&[
        "fixtures/dpo/pairs.jsonl",
        "datasets/pref/pref-en.val.jsonl",
        "datasets/pref/pref-chat-en.jsonl",
        "datasets/pref/pref-implicit-en.jsonl",
        "datasets/pref/ranked-en.jsonl",
    ]);
    fuzz_files("preference_pairs", Kind::Text, files, |_, path| {
        manabi_align::pref::read_pairs(&[path.to_path_buf()])
            .map(drop)
            .map_err(msg)
    });
}

#[test]
fn rl_prompts() {
    use manabi_align::grpo::{read_prompt_texts, read_prompts};
    let files = heads(&[
        "datasets/pref/rl-arith-en.val.jsonl",
        "datasets/pref/rl-facts-en.val.jsonl",
        "datasets/pref/rl-arith-ja.val.jsonl",
    ]);
    fuzz_files("rl_prompts", Kind::Text, files, |_, path| {
        let paths = [path.to_path_buf()];
        both(
            read_prompts(&paths).map(drop).map_err(msg),
            read_prompt_texts(&paths).map(drop).map_err(msg),
        )
    });
}

#[test]
fn task_examples() {
    use manabi_tasks::TaskKind;
    use manabi_tasks::data::read_examples;
    let files = heads(&[
        "datasets/tasks/sentiment-en.val.jsonl",
        "datasets/tasks/nli-ja.val.jsonl",
        "datasets/tasks/sts-en.val.jsonl",
    ]);
    let kinds = [TaskKind::Classification, TaskKind::Nli, TaskKind::Sts];
    fuzz_files("task_examples", Kind::Text, files, |i, path| {
        let paths = [path.to_path_buf()];
        both(
            read_examples(&paths, kinds[i], &BTreeMap::new(), true)
                .map(drop)
                .map_err(msg),
            read_examples(&paths, kinds[i], &BTreeMap::new(), false)
                .map(drop)
                .map_err(msg),
        )
    });
}

#[test]
fn ner_examples() {
    use manabi_tasks::ner::read_ner;
    let files = heads(&[
        "datasets/tasks/ner-en.val.jsonl",
        "datasets/tasks/ner-ja.val.jsonl",
    ]);
    fuzz_files("ner_examples", Kind::Text, files, |_, path| {
        let paths = [path.to_path_buf()];
        both(
            read_ner(&paths, &BTreeMap::new(), true)
                .map(drop)
                .map_err(msg),
            read_ner(&paths, &BTreeMap::new(), false)
                .map(drop)
                .map_err(msg),
        )
    });
}

#[test]
fn fewshot_docs() {
    let files = heads(&[
        "datasets/fewshot/qa-en.gen.pool.jsonl",
        "datasets/fewshot/jobs-en.mc.pool.jsonl",
        "datasets/fewshot/kinds-ja.mc.pool.jsonl",
        "datasets/fewshot/qa-format-ja-angle.gen.pool.jsonl",
    ]);
    fuzz_files("fewshot_docs", Kind::Text, files, |_, path| {
        manabi_tasks::fewshot::read_docs(path)
            .map(drop)
            .map_err(msg)
    });
}

#[test]
fn rag_files() {
    use manabi_rag::{read_passages, read_questions};
    // Passages as JSONL and as paragraphs of text; questions.
    let files = heads(&[
        "datasets/rag/docs-en.jsonl",
        "datasets/sft/world-en.txt",
        "datasets/rag/questions-en.jsonl",
    ]);
    fuzz_files("rag_files", Kind::Text, files, |i, path| {
        if i == 2 {
            read_questions(path).map(drop).map_err(msg)
        } else {
            read_passages(&[path.to_path_buf()]).map(drop).map_err(msg)
        }
    });
}

#[test]
fn sentences() {
    let files = heads(&[
        "datasets/tasks/sts-en.val.jsonl",
        "datasets/tasks/sentiment-ja.val.jsonl",
        "datasets/sft/world-ja.txt",
    ]);
    fuzz_files("sentences", Kind::Text, files, |_, path| {
        manabi_tasks::embed::read_sentences(&[path.to_path_buf()], &BTreeMap::new())
            .map(drop)
            .map_err(msg)
    });
}

// ---------------------------------------------------------------------------------------
// Hugging Face model folders
// ---------------------------------------------------------------------------------------

/// Fixtures of `fixtures/models` and their loaders (in `fuzz_hf`).
const HF_FIXTURES: [&str; 7] = [
    "gpt2",
    "llama-gqa",
    "llama-mqa",
    "bert",
    "bert-cls",
    "bert-token",
    "t5-v1_1",
];

/// Fuzzes `file` of copies of the HF fixtures, loading each with its family's loader.
fn fuzz_hf(name: &str, file: &str, kind: Kind) {
    let device = test_device();
    let work = tempfile::tempdir().unwrap();
    let mut dirs = Vec::new();
    let mut seeds = Vec::new();
    for fixture in HF_FIXTURES {
        let dir = work.path().join(fixture);
        std::fs::create_dir_all(&dir).unwrap();
        for part in ["config.json", "model.safetensors"] {
            let from = root().join("fixtures/models").join(fixture).join(part);
            std::fs::copy(&from, dir.join(part))
                .unwrap_or_else(|e| panic!("{}: {e}", from.display()));
        }
        seeds.push(read(&dir.join(file)));
        dirs.push(dir);
    }
    fuzz(name, &seeds, kind, |i, bytes| {
        let dir = &dirs[i];
        write_fresh(&dir.join(file), bytes);
        if file == "config.json" && hf_config_oversize(bytes) {
            return skip();
        }
        let loaded = match HF_FIXTURES[i] {
            "gpt2" => manabi_model::load_hf(dir, &device).map(drop),
            // Through `locate`, which reads config.json on its own first.
            "llama-gqa" | "llama-mqa" => manabi_model::load_model(dir, &device).map(drop),
            "bert" => manabi_model::load_bert(dir, &device).map(drop),
            "bert-cls" => manabi_model::load_bert_sequence_classifier(dir, &device).map(drop),
            "bert-token" => manabi_model::load_bert_token_classifier(dir, &device).map(drop),
            _ => manabi_model::load_t5(dir, &device).map(drop),
        };
        loaded.map_err(msg)
    });
}

#[test]
fn hf_config_json() {
    fuzz_hf("hf_config_json", "config.json", Kind::Text);
}

#[test]
fn hf_model_safetensors() {
    fuzz_hf("hf_model_safetensors", "model.safetensors", SAFETENSORS);
}

// ---------------------------------------------------------------------------------------
// PEFT adapters
// ---------------------------------------------------------------------------------------

/// Fuzzes `file` of copies of the PEFT fixtures, loading each onto its base model.
fn fuzz_adapters(name: &str, file: &str, kind: Kind) {
    const ADAPTERS: [&str; 7] = [
        "gpt2-lora",
        "gpt2-prefix",
        "llama-ia3",
        "llama-lora",
        "llama-lora-rslora",
        "llama-prefix",
        "llama-prompt",
    ];
    let device = test_device();
    let work = tempfile::tempdir().unwrap();
    let mut bases: BTreeMap<String, DecoderLm> = BTreeMap::new();
    let (mut dirs, mut seeds, mut base_of) = (Vec::new(), Vec::new(), Vec::new());
    for adapter in ADAPTERS {
        let src = root().join("fixtures/peft").join(adapter);
        let expected: serde_json::Value =
            serde_json::from_slice(&read(&src.join("expected.json"))).unwrap();
        let base = expected["base"].as_str().unwrap().to_string();
        if !bases.contains_key(&base) {
            let model =
                manabi_model::load_hf(root().join("fixtures/models").join(&base), &device).unwrap();
            bases.insert(base.clone(), model);
        }
        let dir = work.path().join(adapter);
        std::fs::create_dir_all(&dir).unwrap();
        for part in ["adapter_config.json", "adapter_model.safetensors"] {
            std::fs::copy(src.join(part), dir.join(part)).unwrap();
        }
        seeds.push(read(&dir.join(file)));
        dirs.push(dir);
        base_of.push(base);
    }
    fuzz(name, &seeds, kind, |i, bytes| {
        write_fresh(&dirs[i].join(file), bytes);
        if file == "adapter_config.json" && lora_rank_oversize(bytes) {
            return skip();
        }
        let base = bases[base_of[i].as_str()].clone();
        manabi_finetune::peft::load_adapter(base, &dirs[i])
            .map(drop)
            .map_err(msg)
    });
}

#[test]
fn adapter_config_json() {
    fuzz_adapters("adapter_config_json", "adapter_config.json", Kind::Text);
}

#[test]
fn adapter_model_safetensors() {
    fuzz_adapters(
        "adapter_model_safetensors",
        "adapter_model.safetensors",
        SAFETENSORS,
    );
}

// ---------------------------------------------------------------------------------------
// Training checkpoints and token shards
// ---------------------------------------------------------------------------------------

/// A two-step GPT pre-training run in `out` (as `crates/objectives/tests/pretrain.rs`);
/// returns its checkpoint folder.
fn tiny_run(out: &Path) -> PathBuf {
    let text = format!(
        r#"
        [run]
        out = "{out}"
        seed = 7
        [model]
        family = "gpt2"
        vocab_size = 0
        max_positions = 32
        d_model = 32
        n_layers = 2
        n_heads = 4
        d_ff = 64
        positions = "learned"
        norm = "layernorm"
        activation = "gelu_tanh"
        attention_bias = true
        mlp_bias = true
        tie_embeddings = true
        [data]
        inputs = ["{input}"]
        block_size = 32
        tokenizer = {{ kind = "char", vocab_size = 100, min_frequency = 1 }}
        [train]
        steps = 2
        batch_size = 2
        warmup_steps = 1
        lr = 1e-3
        eval_every = 2
        eval_batches = 1
        progress = false
        "#,
        out = out.display(),
        input = root().join("datasets/tiny/stories-en.txt").display(),
    );
    let cfg = PretrainConfig::parse(&text, &[]).unwrap();
    let device = manabi_model::DeviceChoice::from_env().unwrap();
    let report = manabi_objectives::pretrain(&cfg, device, false).unwrap();
    report.checkpoint.expect("the run saves a checkpoint")
}

#[test]
fn training_checkpoint() {
    use manabi_tokenize::{ShardSet, Split};
    let run = tempfile::tempdir().unwrap();
    let ckpt = tiny_run(run.path());
    let device = test_device();
    let work = tempfile::tempdir().unwrap();

    // state.json: read and verified (format, checksums of the files it lists).
    let dir = work.path().join("state");
    copy_files(&ckpt, &dir);
    let seed = read(&dir.join("state.json"));
    fuzz("checkpoint_state_json", &[seed], Kind::Text, |_, bytes| {
        write_fresh(&dir.join("state.json"), bytes);
        manabi_objectives::checkpoint::read_state(&dir)
            .map(drop)
            .map_err(msg)
    });

    // model.toml and model.bpk: the model in the manabi layout.
    for (name, file, kind) in [
        ("checkpoint_model_toml", "model.toml", Kind::Text),
        ("checkpoint_model_bpk", "model.bpk", BURNPACK),
    ] {
        let dir = work.path().join(file);
        copy_files(&ckpt, &dir);
        let seed = read(&dir.join(file));
        fuzz(name, &[seed], kind, |_, bytes| {
            write_fresh(&dir.join(file), bytes);
            if file == "model.toml" && toml_config_oversize(bytes) {
                return skip();
            }
            manabi_model::load_model(&dir, &device)
                .map(drop)
                .map_err(msg)
        });
    }

    // The run's token shards: meta.json, then both splits mapped and checked.
    let dir = work.path().join("shards");
    copy_files(&run.path().join("shards"), &dir);
    let seed = read(&dir.join("meta.json"));
    fuzz("shards_meta_json", &[seed], Kind::Text, |_, bytes| {
        write_fresh(&dir.join("meta.json"), bytes);
        let set = ShardSet::open(&dir).map_err(msg)?;
        both(
            set.split(Split::Train).map(drop).map_err(msg),
            set.split(Split::Val).map(drop).map_err(msg),
        )
    });
}

// ---------------------------------------------------------------------------------------
// Recipes
// ---------------------------------------------------------------------------------------

/// The recipe files of `paths` (a folder stands for its `*.toml` files).
fn recipe_seeds(paths: &[&str]) -> Vec<Vec<u8>> {
    let mut files = Vec::new();
    for p in paths {
        let path = root().join(p);
        if path.is_dir() {
            let mut inside: Vec<PathBuf> = std::fs::read_dir(&path)
                .unwrap()
                .map(|e| e.unwrap().path())
                .filter(|f| f.extension().is_some_and(|e| e == "toml"))
                .collect();
            inside.sort();
            files.extend(inside);
        } else {
            files.push(path);
        }
    }
    files.iter().map(|f| read(f)).collect()
}

/// Fuzzes the TOML text of a recipe type (through `Recipe::parse`, no overrides).
fn fuzz_recipe<T: Recipe>(name: &str, paths: &[&str])
where
    T::Error: std::fmt::Display,
{
    fuzz(name, &recipe_seeds(paths), Kind::Text, |_, bytes| {
        T::parse(&String::from_utf8_lossy(bytes), &[])
            .map(drop)
            .map_err(msg)
    });
}

#[test]
fn recipe_pretrain() {
    fuzz_recipe::<PretrainConfig>("recipe_pretrain", &["configs/pretrain"]);
}

#[test]
fn recipe_sft() {
    fuzz_recipe::<manabi_finetune::SftConfig>("recipe_sft", &["configs/sft"]);
}

#[test]
fn recipe_task() {
    fuzz_recipe::<manabi_tasks::TaskConfig>("recipe_task", &["configs/tasks"]);
}

#[test]
fn recipe_dpo() {
    fuzz_recipe::<manabi_align::DpoConfig>("recipe_dpo", &["configs/align/dpo.toml"]);
}

#[test]
fn recipe_reward() {
    fuzz_recipe::<manabi_align::RewardConfig>("recipe_reward", &["configs/align/reward.toml"]);
}

#[test]
fn recipe_grpo() {
    fuzz_recipe::<manabi_align::GrpoConfig>("recipe_grpo", &["configs/align/grpo.toml"]);
}

#[test]
fn recipe_ppo() {
    fuzz_recipe::<manabi_align::PpoConfig>("recipe_ppo", &["configs/align/ppo.toml"]);
}

/// `--set section.key=value` overrides (one per line of the input) on a valid recipe.
#[test]
fn recipe_overrides() {
    let text =
        std::fs::read_to_string(root().join("configs/pretrain/gpt-char-shakespeare.toml")).unwrap();
    let seed = b"train.lr=3e-4\ntrain.steps=10\nrun.seed=3\ntrain.schedule=linear\n\
                 data.tokenizer.vocab_size=80\n"
        .to_vec();
    fuzz("recipe_overrides", &[seed], Kind::Text, |_, bytes| {
        let overrides: Vec<String> = String::from_utf8_lossy(bytes)
            .lines()
            .map(str::to_string)
            .collect();
        PretrainConfig::parse(&text, &overrides)
            .map(drop)
            .map_err(msg)
    });
}
