//! Training throughput benchmark: one optimizer step as the trainer runs it (forward,
//! loss, backward, global-norm clipping, AdamW) on random tokens, next to the same GPT in
//! PyTorch eager (`benches/train_ref.py`), run by this binary on the same machine.
//!
//!     cargo run --release -p manabi-benches --bin bench-train -- --split
//!     cargo run --release -p manabi-benches --features ndarray --bin bench-train -- \
//!         --device flex,ndarray --config a
//!
//! Prints Markdown tables: throughput, MFU (6 × params × tokens/s ÷ measured peak f32
//! matmul FLOP/s at 1024³, the definition the trainer uses too) and, with `--split`, where
//! a step's time goes; medians of `--rounds` rounds in which manabi and PyTorch alternate.

mod setup;
mod train_step;

use burn::prelude::Device;
use clap::Parser;
use manabi_model::DeviceChoice;
use train_step::{Config, Measured, Shape, peak_flops, run_manabi};

#[derive(Parser, Debug)]
#[command(about = "Training throughput of manabi next to PyTorch eager")]
struct Args {
    /// Devices, comma-separated: cpu, flex, ndarray, tch (CPU) or wgpu[:N], cuda[:N]
    /// (GPU), not both kinds in one run. Each gets its own table next to the same
    /// PyTorch rounds.
    #[arg(long, value_delimiter = ',', default_value = "cpu")]
    device: Vec<DeviceChoice>,
    /// Configs to run: a, b, gpt2-small (comma-separated).
    #[arg(long, value_delimiter = ',', default_value = "a,b", ignore_case = true)]
    config: Vec<Config>,
    /// Also run GPT-2 small (124 M parameters; meant for GPUs).
    #[arg(long)]
    gpt2_small: bool,
    /// Untimed steps before timing.
    #[arg(long, default_value_t = 3)]
    warmup: usize,
    /// Timed steps of config A.
    #[arg(long, default_value_t = 30)]
    steps_a: usize,
    /// Timed steps of config B.
    #[arg(long, default_value_t = 5)]
    steps_b: usize,
    /// Timed steps of GPT-2 small.
    #[arg(long, default_value_t = 5)]
    steps_small: usize,
    /// Also time forward+loss, backward and optimizer separately (syncing in between).
    #[arg(long)]
    split: bool,
    /// Threads for both sides (rayon's pool here, `torch.set_num_threads` there);
    /// default: rayon's default, the number of cores.
    #[arg(long)]
    threads: Option<usize>,
    /// Side of the square matmul that measures peak FLOP/s.
    #[arg(long, default_value_t = 1024)]
    peak_n: usize,
    /// Attention of the PyTorch model: sdpa (nanoGPT) or manual (softmax(QKᵀ)V as manabi).
    #[arg(long, default_value = "sdpa")]
    py_attn: String,
    /// Skip the PyTorch reference.
    #[arg(long)]
    no_python: bool,
    /// Rounds; manabi and PyTorch alternate which goes first, and the tables show
    /// medians over rounds.
    #[arg(long, default_value_t = 3)]
    rounds: usize,
}

/// Median of `v` (NaN when empty).
fn median(mut v: Vec<f64>) -> f64 {
    v.retain(|x| x.is_finite());
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    let m = v.len() / 2;
    if v.len() % 2 == 1 {
        v[m]
    } else {
        (v[m - 1] + v[m]) / 2.0
    }
}

/// Per-config medians over rounds (`rounds[r][config]`).
fn medians(rounds: &[Vec<Measured>]) -> Vec<Measured> {
    let configs = rounds.first().map_or(0, Vec::len);
    (0..configs)
        .map(|c| {
            let col =
                |f: &dyn Fn(&Measured) -> f64| median(rounds.iter().map(|r| f(&r[c])).collect());
            let first = &rounds[0][c];
            Measured {
                params: first.params,
                ms_per_step: col(&|m| m.ms_per_step),
                tokens_per_s: col(&|m| m.tokens_per_s),
                first_loss: first.first_loss,
                split: first
                    .split
                    .map(|_| [0, 1, 2].map(|i| col(&|m| m.split.map_or(f64::NAN, |s| s[i])))),
            }
        })
        .collect()
}

/// The 1-minute load average (Linux), to print next to the numbers.
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next().map(str::to_string))
        .unwrap_or_else(|| "n/a".into())
}

/// Runs `train_ref.py` on every config; returns its peak FLOP/s and measurements.
fn run_python(
    shapes: &[Shape],
    args: &Args,
    threads: usize,
    gpu: bool,
) -> Option<(f64, Vec<Measured>)> {
    let spec = serde_json::json!({
        "threads": threads, "warmup": args.warmup, "split": args.split,
        "peak_n": args.peak_n, "attn": args.py_attn, "device": if gpu { "cuda" } else { "cpu" },
        "configs": shapes.iter().map(|s| serde_json::json!({
            "name": s.name, "config": s.hf_json(), "batch": s.batch, "steps": s.steps,
        })).collect::<Vec<_>>(),
    });
    let v = setup::python_json("train_ref.py", &spec, "PyTorch")?;
    let f = |x: &serde_json::Value, k: &str| x[k].as_f64().unwrap_or(f64::NAN);
    let rows = v["configs"]
        .as_array()
        .expect("configs")
        .iter()
        .map(|c| Measured {
            params: c["params"].as_u64().unwrap_or(0) as usize,
            ms_per_step: f(c, "ms_per_step"),
            tokens_per_s: f(c, "tokens_per_s"),
            first_loss: f(c, "first_loss"),
            split: c["split"]
                .as_array()
                .map(|a| [0, 1, 2].map(|i| a[i].as_f64().unwrap_or(f64::NAN))),
        })
        .collect();
    eprintln!("PyTorch {}", v["torch"].as_str().unwrap_or("?"));
    Some((f(&v, "peak_flops"), rows))
}

/// Whether `d` is a GPU device.
fn is_gpu(d: DeviceChoice) -> bool {
    matches!(d.concrete(), DeviceChoice::Cuda(_) | DeviceChoice::Wgpu(_))
}

/// One device's measurements over the rounds.
struct DeviceRuns {
    choice: DeviceChoice,
    device: Device,
    peaks: Vec<f64>,
    rounds: Vec<Vec<Measured>>,
}

fn main() {
    let args = Args::parse();
    let threads = setup::process(args.threads);
    let mut configs = args.config.clone();
    if args.gpt2_small && !configs.contains(&Config::Gpt2Small) {
        configs.push(Config::Gpt2Small);
    }
    let shapes: Vec<Shape> = configs
        .iter()
        .map(|&c| Shape::get(c, [args.steps_a, args.steps_b, args.steps_small]))
        .collect();
    let gpu = args.device.iter().any(|&d| is_gpu(d));
    if gpu && !args.device.iter().all(|&d| is_gpu(d)) {
        eprintln!(
            "error: --device mixes CPU and GPU devices; PyTorch runs on one of them, so run each kind in its own command"
        );
        std::process::exit(2);
    }
    let mut runs: Vec<DeviceRuns> = args
        .device
        .iter()
        .map(|&choice| DeviceRuns {
            choice,
            device: choice.resolve().unwrap_or_else(|e| {
                eprintln!("error: {e}");
                std::process::exit(2)
            }),
            peaks: Vec::new(),
            rounds: Vec::new(),
        })
        .collect();
    let load_before = load_average();
    let rounds = args.rounds.max(1);
    let (mut py_peaks, mut py_rounds) = (Vec::new(), Vec::new());
    for r in 0..rounds {
        let ours = |runs: &mut Vec<DeviceRuns>| {
            for run in runs.iter_mut() {
                run.peaks.push(peak_flops(&run.device, args.peak_n));
                let rows = shapes
                    .iter()
                    .map(|s| {
                        let m = run_manabi(s, &run.device, args.warmup, args.split);
                        eprintln!(
                            "round {r}: manabi {} {}: {:.1} ms/step",
                            run.choice, s.name, m.ms_per_step
                        );
                        m
                    })
                    .collect();
                run.rounds.push(rows);
            }
        };
        let theirs = || {
            if args.no_python {
                None
            } else {
                run_python(&shapes, &args, threads, gpu)
            }
        };
        // Alternate which side goes first, so drift on a noisy machine hits both.
        let t = if r % 2 == 0 {
            ours(&mut runs);
            theirs()
        } else {
            let t = theirs();
            ours(&mut runs);
            t
        };
        if let Some((p, rows)) = t {
            for (s, m) in shapes.iter().zip(&rows) {
                eprintln!(
                    "round {r}: PyTorch {}: {:.1} ms/step",
                    s.name, m.ms_per_step
                );
            }
            py_peaks.push(p);
            py_rounds.push(rows);
        }
    }
    let (py_peak, py_rows) = if py_rounds.is_empty() {
        (f64::NAN, vec![None; shapes.len()])
    } else {
        (
            median(py_peaks),
            medians(&py_rounds).into_iter().map(Some).collect(),
        )
    };
    let load_after = load_average();
    let peaks: Vec<f64> = runs.iter().map(|run| median(run.peaks.clone())).collect();
    // One MFU denominator for every table and column: the best peak measured in this run.
    let machine_peak = peaks
        .iter()
        .copied()
        .chain(py_peak.is_finite().then_some(py_peak))
        .fold(f64::NAN, f64::max);
    for (i, (run, &peak)) in runs.iter().zip(&peaks).enumerate() {
        if i > 0 {
            println!();
        }
        let products = if run.choice.concrete() == DeviceChoice::Flex {
            format!("fused products on {}", setup::products())
        } else {
            "no fused kernels".to_string()
        };
        let header = format!(
            "device {} ({}, {products}), {threads} threads, warm-up {} steps, medians of {rounds} alternating rounds, load average {load_before} before / {load_after} after",
            run.choice,
            run.choice.concrete(),
            args.warmup,
        );
        let ours = medians(&run.rounds);
        let run_peaks = [peak, py_peak, machine_peak];
        print_tables(&header, &shapes, &ours, &py_rows, run_peaks, &args);
    }
}

/// One device's throughput table (and split, with `--split`) next to PyTorch's rows.
fn print_tables(
    header: &str,
    shapes: &[Shape],
    ours: &[Measured],
    py_rows: &[Option<Measured>],
    [peak, py_peak, machine_peak]: [f64; 3],
    args: &Args,
) {
    println!(
        "{header}; peak f32 matmul {n}³: manabi {:.1} GFLOP/s, PyTorch {} GFLOP/s; MFU uses {:.1} GFLOP/s",
        peak / 1e9,
        if py_peak.is_finite() {
            format!("{:.1}", py_peak / 1e9)
        } else {
            "n/a".into()
        },
        machine_peak / 1e9,
        n = args.peak_n,
    );
    println!();
    println!(
        "| config | params | steps | manabi tokens/s | PyTorch tokens/s | ratio (manabi/PyTorch) | manabi ms/step | PyTorch ms/step | MFU manabi | MFU PyTorch | first loss (manabi / PyTorch) |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|");
    let mfu = |m: &Measured| 6.0 * m.params as f64 * m.tokens_per_s / machine_peak * 100.0;
    let na = || "n/a".to_string();
    for ((s, m), p) in shapes.iter().zip(ours).zip(py_rows) {
        let pf = |f: &dyn Fn(&Measured) -> String| p.as_ref().map_or_else(na, f);
        println!(
            "| {} | {:.2} M | {} | {:.0} | {} | {} | {:.1} | {} | {:.1} % | {} | {:.3} / {} |",
            s.name,
            m.params as f64 / 1e6,
            s.steps,
            m.tokens_per_s,
            pf(&|p| format!("{:.0}", p.tokens_per_s)),
            pf(&|p| format!("{:.2}×", m.tokens_per_s / p.tokens_per_s)),
            m.ms_per_step,
            pf(&|p| format!("{:.1}", p.ms_per_step)),
            mfu(m),
            pf(&|p| format!("{:.1} %", mfu(p))),
            m.first_loss,
            pf(&|p| format!("{:.3}", p.first_loss)),
        );
        if let Some(p) = p
            && p.params != m.params
        {
            eprintln!(
                "warning: {}: parameter counts differ ({} vs {})",
                s.name, m.params, p.params
            );
        }
    }
    println!("\nratio > 1 means manabi is faster.");
    if args.split {
        println!("\n| config | phase | manabi ms | PyTorch ms | manabi/PyTorch time |");
        println!("|---|---|---|---|---|");
        for ((s, m), p) in shapes.iter().zip(ours).zip(py_rows) {
            let Some(ms) = m.split else { continue };
            let theirs = p.as_ref().and_then(|p| p.split);
            for (i, phase) in ["forward + loss", "backward", "clip + AdamW"]
                .iter()
                .enumerate()
            {
                let (py, ratio) = theirs.map_or_else(
                    || (na(), na()),
                    |t| (format!("{:.1}", t[i]), format!("{:.2}×", ms[i] / t[i])),
                );
                println!("| {} | {phase} | {:.1} | {py} | {ratio} |", s.name, ms[i]);
            }
        }
    }
}
