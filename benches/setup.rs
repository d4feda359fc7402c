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
