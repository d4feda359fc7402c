//! What every benchmark binary does first.

/// Keeps freed memory for reuse (`reuse_freed_memory`, as the `manabi` binary does) and
/// sizes rayon's global pool to `threads` (default: rayon's, the number of cores);
/// returns the pool's size.
pub fn process(threads: Option<usize>) -> usize {
    manabi_model::device::reuse_freed_memory();
    if let Some(n) = threads {
        rayon::ThreadPoolBuilder::new()
            .num_threads(n)
            .build_global()
            .expect("rayon pool");
    }
    rayon::current_num_threads()
}

/// Where the fused kernels' matrix products run in this build.
pub fn products() -> &'static str {
    if cfg!(feature = "mkl") {
        "MKL"
    } else if cfg!(feature = "openblas") {
        "OpenBLAS"
    } else {
        "the gemm crate"
    }
}

/// Runs the Python reference `script` (beside this file) with `spec` as its one JSON
/// argument and parses the JSON it prints; `None`, with its stderr printed, when it
/// fails (`what` names it in that message).
#[allow(dead_code)] // not every benchmark has a Python side
pub fn python_json(
    script: &str,
    spec: &serde_json::Value,
    what: &str,
) -> Option<serde_json::Value> {
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(script);
    let out = std::process::Command::new("python3")
        .arg(script)
        .arg(spec.to_string())
        .output()
        .expect("python3 runs");
    if !out.status.success() {
        eprintln!(
            "{what} reference failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        return None;
    }
    serde_json::from_slice(&out.stdout).ok()
}
