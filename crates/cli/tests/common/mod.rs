//! Helpers shared by the CLI tests: run the real binary and read its one-line errors.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub fn manabi(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_manabi"))
        .args(args)
        .current_dir(root())
        .env_remove("MANABI_DEVICE")
        .output()
        .expect("runs the manabi binary")
}

pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Runs `args`, expects failure, and returns the single stderr line.
pub fn fails(args: &[&str]) -> String {
    let out = manabi(args);
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(!out.status.success(), "{args:?} succeeded: {stderr}");
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(
        lines.len(),
        1,
        "{args:?}: expected one line, got {stderr:?}"
    );
    assert!(lines[0].starts_with("error: "), "{}", lines[0]);
    lines[0].to_string()
}

pub fn ok(args: &[&str]) -> String {
    let out = manabi(args);
    assert!(
        out.status.success(),
        "{args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).to_string()
}

pub fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}
