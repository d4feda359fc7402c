//! Per-op times of the fused kernels at config B's shapes (batch 8, block 256, width 384,
//! 6 heads), next to PyTorch eager's same ops in the same command: where a training step's
//! time goes, op by op. Forward alone (autodiff recording, as in training), then forward +
//! backward of `.sum()`; medians of rounds. `MANABI_FUSED=0` times burn's op-by-op path.
//!
//! ```sh
//! cargo run --release -p manabi-benches --bin bench-ops -- --threads 2
//! ```

mod setup;

use std::path::Path;
use std::process::Command;
use std::time::Instant;

use burn::tensor::{Device, Distribution, Tensor};
use clap::Parser;
use manabi_model::device::DeviceChoice;
use manabi_model::fused;

#[derive(Parser, Debug)]
#[command(about = "Per-op times of manabi's fused kernels next to PyTorch eager")]
struct Args {
    /// Device: cpu, flex, ndarray, wgpu[:N].
    #[arg(long, default_value = "cpu")]
    device: DeviceChoice,
    /// Threads for both sides (rayon's pool here, `torch.set_num_threads` there).
    #[arg(long)]
    threads: Option<usize>,
    /// Calls per timing.
    #[arg(long, default_value_t = 10)]
    reps: usize,
    /// Timings per op and mode; the table shows their median.
    #[arg(long, default_value_t = 5)]
    rounds: usize,
    /// Skip the PyTorch reference.
    #[arg(long)]
    no_python: bool,
}

const BATCH: usize = 8;
const T: usize = 256;
const WIDTH: usize = 384;
const HEADS: usize = 6;

/// Median ms per call of `f` over `rounds` timings of `reps` calls (one untimed call first).
fn time(device: &Device, reps: usize, rounds: usize, mut f: impl FnMut()) -> f64 {
    let mut times: Vec<f64> = (0..rounds)
        .map(|_| {
            f();
            device.sync().expect("device sync");
            let start = Instant::now();
            (0..reps).for_each(|_| f());
            device.sync().expect("device sync");
            start.elapsed().as_secs_f64() * 1e3 / reps as f64
        })
        .collect();
    times.sort_by(f64::total_cmp);
    times[times.len() / 2]
}

type Op<'a> = Box<dyn Fn() -> Tensor<3> + 'a>;

fn main() {
    let args = Args::parse();
    let threads = setup::process(args.threads);
    let device = args.device.resolve().expect("device").autodiff();
    device.seed(0);
    let normal = Distribution::Normal(0.0, 1.0);
    let x = Tensor::<3>::random([BATCH, T, WIDTH], normal, &device).require_grad();
    let x4 = Tensor::<3>::random([BATCH, T, 4 * WIDTH], normal, &device).require_grad();
    let head =
        || Tensor::<4>::random([BATCH, T, HEADS, WIDTH / HEADS], normal, &device).require_grad();
    let (q, k, v) = (head(), head(), head());
    let mask = (Tensor::<2>::ones([T, T], &device).triu(1) * -1e30).reshape([1, 1, T, T]);
    let linear = |i, o| burn::nn::LinearConfig::new(i, o).init(&device);
    let (lin, fc, proj) = (
        linear(WIDTH, WIDTH),
        linear(WIDTH, 4 * WIDTH),
        linear(4 * WIDTH, WIDTH),
    );
    let gamma = Tensor::<1>::ones([WIDTH], &device).require_grad();
    let beta = Tensor::<1>::zeros([WIDTH], &device).require_grad();
    let scale = 1.0 / ((WIDTH / HEADS) as f64).sqrt();
    let ops: Vec<(&str, Op)> = vec![
        ("linear d→d", Box::new(|| fused::linear(&lin, x.clone()))),
        ("linear d→4d", Box::new(|| fused::linear(&fc, x.clone()))),
        ("linear 4d→d", Box::new(|| fused::linear(&proj, x4.clone()))),
        ("gelu-tanh 4d", Box::new(|| fused::gelu_tanh(x4.clone()))),
        (
            "layernorm d",
            Box::new(|| fused::layer_norm(x.clone(), gamma.clone(), Some(beta.clone()), 1e-5)),
        ),
        (
            "causal attention",
            Box::new(|| {
                let y = fused::attention(q.clone(), k.clone(), v.clone(), Some(&mask), scale);
                y.reshape([BATCH, T, WIDTH])
            }),
        ),
    ];
    let ours: Vec<[f64; 2]> = ops
        .iter()
        .map(|(_, f)| {
            let forward = time(&device, args.reps, args.rounds, || drop(f()));
            let both = time(&device, args.reps, args.rounds, || {
                drop(f().sum().backward())
            });
            [forward, both]
        })
        .collect();
    let theirs = (!args.no_python)
        .then(|| run_python(&args, threads))
        .flatten();
    println!(
        "\ndevice {} ({}, products on {}), {threads} threads, shapes of config B: batch \
         {BATCH}, block {T}, width {WIDTH}, {HEADS} heads; ms per call, medians of {} timings \
         of {} calls\n",
        args.device,
        args.device.concrete(),
        setup::products(),
        args.rounds,
        args.reps
    );
    println!(
        "| op | manabi fwd | PyTorch fwd | manabi fwd+bwd | PyTorch fwd+bwd | fwd+bwd manabi/PyTorch time |"
    );
    println!("|---|---|---|---|---|---|");
    for ((name, _), [f, fb]) in ops.iter().zip(&ours) {
        let [pf, pfb] = theirs
            .as_ref()
            .and_then(|v| v["ops"][*name].as_array().cloned())
            .map_or([f64::NAN; 2], |a| {
                [0, 1].map(|i| a[i].as_f64().unwrap_or(f64::NAN))
            });
        println!(
            "| {name} | {f:.2} | {} | {fb:.2} | {} | {} |",
            or_na(pf, |v| format!("{v:.2}")),
            or_na(pfb, |v| format!("{v:.2}")),
            or_na(fb / pfb, |v| format!("{v:.2}×")),
        );
    }
}

/// `show(v)`, or "n/a" when `v` is not a number (no PyTorch run).
fn or_na(v: f64, show: impl Fn(f64) -> String) -> String {
    if v.is_finite() { show(v) } else { "n/a".into() }
}

/// Runs `ops_ref.py`; returns its JSON (`{"torch", "ops": {name: [fwd, fwd+bwd]}}`).
fn run_python(args: &Args, threads: usize) -> Option<serde_json::Value> {
    let spec = serde_json::json!({
        "threads": threads, "reps": args.reps, "rounds": args.rounds,
        "batch": BATCH, "t": T, "width": WIDTH, "heads": HEADS,
    });
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("ops_ref.py");
    let out = Command::new("python3")
        .arg(script)
        .arg(spec.to_string())
        .output()
        .ok()?;
    if !out.status.success() {
        eprintln!(
            "PyTorch reference failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        return None;
    }
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
    eprintln!("PyTorch {}", v["torch"].as_str().unwrap_or("?"));
    Some(v)
}
