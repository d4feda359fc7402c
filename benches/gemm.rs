//! f32 matmul throughput (GFLOP/s) at the shapes a training step runs: burn's flex
//! (`Tensor::matmul`), manabi's fused linear layer (the `gemm` crate, or OpenBLAS with the
//! `openblas` feature), the `gemm` crate flex calls with its own rayon split (into a reused
//! and into a freshly zeroed output), and `gemm` with the output columns split over the
//! pool by hand, next to PyTorch (`torch.mm`, same
//! thread count) run by this binary.
//!
//!     cargo run --release -p manabi-benches --bin bench-gemm -- --threads 2

mod setup;

use std::process::Command;
use std::time::Instant;

use burn::prelude::*;
use clap::Parser;
use rayon::prelude::*;

#[derive(Parser, Debug)]
#[command(about = "f32 matmul GFLOP/s: flex, gemm, gemm split by hand, PyTorch")]
struct Args {
    /// rayon threads here, `torch.set_num_threads` there.
    #[arg(long, default_value_t = 2)]
    threads: usize,
    /// Shapes `MxKxN`, comma-separated (default: config B's linears and their backward, 1024³).
    #[arg(long, value_delimiter = ',')]
    shapes: Vec<String>,
    /// Timed repetitions per shape (best of 3 runs).
    #[arg(long, default_value_t = 10)]
    reps: usize,
}

fn parse(s: &str) -> Option<[usize; 3]> {
    let v: Vec<usize> = s
        .split('x')
        .map(|p| p.parse().ok())
        .collect::<Option<_>>()?;
    (v.len() == 3).then(|| [v[0], v[1], v[2]])
}

/// Best seconds of one call of `f` over 3 runs of `reps`.
fn best(reps: usize, mut f: impl FnMut()) -> f64 {
    f();
    (0..3)
        .map(|_| {
            let t = Instant::now();
            for _ in 0..reps {
                f();
            }
            t.elapsed().as_secs_f64() / reps as f64
        })
        .fold(f64::INFINITY, f64::min)
}

/// `c = a · b`, row-major with row strides `lda`, `ldb`, `ldc` (`a` m×k, `b` k×n).
#[allow(unsafe_code, clippy::too_many_arguments)]
fn gemm_call(
    c: &mut [f32],
    ldc: usize,
    a: &[f32],
    lda: usize,
    b: &[f32],
    ldb: usize,
    [m, k, n]: [usize; 3],
    parallelism: gemm::Parallelism,
) {
    assert!(c.len() >= (m - 1) * ldc + n && a.len() >= (m - 1) * lda + k);
    assert!(b.len() >= (k - 1) * ldb + n);
    // SAFETY: every pointer is valid for the extent its strides address (asserted above),
    // and `c` does not alias `a` or `b`.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            c.as_mut_ptr(),
            1,
            ldc as isize,
            false,
            a.as_ptr(),
            1,
            lda as isize,
            b.as_ptr(),
            1,
            ldb as isize,
            0.0,
            1.0,
            false,
            false,
            false,
            parallelism,
        );
    }
}

fn main() {
    let args = Args::parse();
    setup::process(Some(args.threads));
    let shapes: Vec<[usize; 3]> = if args.shapes.is_empty() {
        vec![
            [2048, 384, 1152],
            [2048, 384, 1536],
            [2048, 1536, 384],
            [384, 2048, 1536],
            [2048, 384, 65],
            [1024, 1024, 1024],
        ]
    } else {
        args.shapes.iter().filter_map(|s| parse(s)).collect()
    };
    let device = manabi_model::DeviceChoice::Flex
        .resolve()
        .expect("flex compiled in");
    println!(
        "| m×k×n | flex | manabi's fused linear ({}) | gemm, own rayon split | gemm, fresh zeroed output | gemm, columns split by hand | PyTorch |",
        setup::products()
    );
    println!("|---|---|---|---|---|---|---|");
    let py = python(&shapes, &args);
    for (i, &[m, k, n]) in shapes.iter().enumerate() {
        let flops = 2.0 * (m * k * n) as f64;
        let a = Tensor::<2>::random([m, k], burn::tensor::Distribution::Default, &device);
        let b = Tensor::<2>::random([k, n], burn::tensor::Distribution::Default, &device);
        let flex = best(args.reps, || {
            let c = a.clone().matmul(b.clone());
            let _ = c.slice([0..1, 0..1]).into_scalar::<f32>();
        });
        let av: Vec<f32> = a.to_data().try_to_vec().unwrap_or_default();
        let bv: Vec<f32> = b.to_data().try_to_vec().unwrap_or_default();
        // What the training step runs: a fresh output per product, as burn's ops have.
        let fused = best(args.reps, || {
            let y = manabi_model::fused::kernels::linear(&av, &bv, None, false, [m, k, n]);
            std::hint::black_box(y);
        });
        let product = |c: &mut [f32]| {
            gemm_call(c, n, &av, k, &bv, n, [m, k, n], gemm::Parallelism::Rayon(0));
        };
        let mut c = vec![0f32; m * n];
        let own = best(args.reps, || product(&mut c));
        let fresh = best(args.reps, || {
            let mut c = vec![0f32; m * n];
            product(&mut c);
            std::hint::black_box(c);
        });
        // Bands of output columns, one per thread, each a single-threaded gemm.
        let parts = args.threads.max(1);
        let cols = n.div_ceil(parts);
        let bands: Vec<(Vec<f32>, usize)> = (0..parts)
            .map(|p| {
                let (c0, c1) = (p * cols, ((p + 1) * cols).min(n));
                let band = (0..k).flat_map(|r| bv[r * n + c0..r * n + c1].to_vec());
                (band.collect(), c1 - c0)
            })
            .collect();
        let mut outs: Vec<Vec<f32>> = bands.iter().map(|(_, w)| vec![0f32; m * w]).collect();
        let split = best(args.reps, || {
            outs.par_iter_mut()
                .zip(&bands)
                .for_each(|(out, (band, w))| {
                    if *w > 0 {
                        gemm_call(
                            out,
                            *w,
                            &av,
                            k,
                            band,
                            *w,
                            [m, k, *w],
                            gemm::Parallelism::None,
                        );
                    }
                });
        });
        println!(
            "| {m}×{k}×{n} | {:.1} | {:.1} | {:.1} | {:.1} | {:.1} | {} |",
            flops / flex / 1e9,
            flops / fused / 1e9,
            flops / own / 1e9,
            flops / fresh / 1e9,
            flops / split / 1e9,
            py.as_ref()
                .and_then(|p| p.get(i))
                .map_or("–".into(), |g| format!("{g:.1}"))
        );
    }
}

/// PyTorch GFLOP/s per shape, or `None` without Python and torch.
fn python(shapes: &[[usize; 3]], args: &Args) -> Option<Vec<f64>> {
    let code = format!(
        "import torch, time\ntorch.set_num_threads({})\nout=[]\nfor m,k,n in {:?}:\n a=torch.rand(m,k); b=torch.rand(k,n); torch.mm(a,b)\n best=1e9\n for _ in range(3):\n  t=time.perf_counter()\n  for _ in range({}): torch.mm(a,b)\n  best=min(best,(time.perf_counter()-t)/{})\n out.append(2*m*k*n/best/1e9)\nprint(' '.join(str(x) for x in out))",
        args.threads,
        shapes.iter().map(|s| s.to_vec()).collect::<Vec<_>>(),
        args.reps,
        args.reps
    );
    let out = Command::new("python3").args(["-c", &code]).output().ok()?;
    String::from_utf8(out.stdout)
        .ok()?
        .split_whitespace()
        .map(|v| v.parse().ok())
        .collect()
}
