//! CPU backends side by side (flex vs ndarray by default): the trainer's step on one
//! config, devices alternating within each round, medians over rounds. Decides what
//! `--device cpu` should mean.
//!
//!     cargo run --release -p manabi-benches --features ndarray --bin bench-backends

mod setup;
mod train_step;

use clap::Parser;
use manabi_model::DeviceChoice;
use train_step::{Config, Shape, peak_flops, run_manabi};

#[derive(Parser, Debug)]
#[command(about = "Training step time on several backends, alternating, medians")]
struct Args {
    /// Devices to compare (comma-separated).
    #[arg(long, value_delimiter = ',', default_value = "flex,ndarray")]
    devices: Vec<DeviceChoice>,
    /// Config: a, b or gpt2-small.
    #[arg(long, default_value = "a", ignore_case = true)]
    config: Config,
    /// Rounds; each runs every device once.
    #[arg(long, default_value_t = 5)]
    rounds: usize,
    /// Timed steps per run.
    #[arg(long, default_value_t = 30)]
    steps: usize,
    /// Untimed steps before each run.
    #[arg(long, default_value_t = 3)]
    warmup: usize,
    /// Threads of rayon's pool (default: the number of cores).
    #[arg(long)]
    threads: Option<usize>,
    /// Side of the square matmul that measures peak FLOP/s.
    #[arg(long, default_value_t = 1024)]
    peak_n: usize,
    /// Also time forward+loss, backward and optimizer separately (median ms of each).
    #[arg(long)]
    split: bool,
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

fn main() {
    let args = Args::parse();
    setup::process(args.threads);
    let shape = Shape::get(args.config, [args.steps; 3]);
    let devices: Vec<_> = args
        .devices
        .iter()
        .map(|d| d.resolve().unwrap_or_else(|e| panic!("{e}")))
        .collect();
    let peaks: Vec<f64> = devices.iter().map(|d| peak_flops(d, args.peak_n)).collect();
    let mut runs = vec![Vec::new(); devices.len()];
    for round in 0..args.rounds {
        for (i, device) in devices.iter().enumerate() {
            let m = run_manabi(&shape, device, args.warmup, args.split);
            eprintln!(
                "round {round}: {} {:.0} tokens/s, {:.1} ms/step, first loss {:.4}",
                args.devices[i], m.tokens_per_s, m.ms_per_step, m.first_loss
            );
            runs[i].push(m);
        }
    }
    println!(
        "config {} ({:.2} M params, {} sequences × {} tokens), {} rounds of {} steps after {} warm-up steps, devices alternating, {} threads, flex's fused products on {}",
        shape.name,
        runs[0][0].params as f64 / 1e6,
        shape.batch,
        shape.block,
        args.rounds,
        shape.steps,
        args.warmup,
        rayon::current_num_threads(),
        setup::products()
    );
    println!();
    println!(
        "| device | median tokens/s | median ms/step | tokens/s of each round | peak matmul {n}³ GFLOP/s | first loss |",
        n = args.peak_n
    );
    println!("|---|---|---|---|---|---|");
    let medians: Vec<f64> = runs
        .iter()
        .map(|r| median(r.iter().map(|m| m.tokens_per_s).collect()))
        .collect();
    for (i, r) in runs.iter().enumerate() {
        let each: Vec<String> = r.iter().map(|m| format!("{:.0}", m.tokens_per_s)).collect();
        println!(
            "| {} | {:.0} | {:.1} | {} | {:.1} | {:.4} |",
            args.devices[i],
            medians[i],
            median(r.iter().map(|m| m.ms_per_step).collect()),
            each.join(", "),
            peaks[i] / 1e9,
            r[0].first_loss
        );
    }
    if args.split {
        println!("\n| device | forward + loss ms | backward ms | clip + AdamW ms |");
        println!("|---|---|---|---|");
        for (i, r) in runs.iter().enumerate() {
            let phase = |k: usize| median(r.iter().filter_map(|m| m.split.map(|s| s[k])).collect());
            println!(
                "| {} | {:.1} | {:.1} | {:.1} |",
                args.devices[i],
                phase(0),
                phase(1),
                phase(2)
            );
        }
    }
    let best = (0..medians.len())
        .max_by(|&a, &b| medians[a].total_cmp(&medians[b]))
        .expect("at least one device");
    for (i, m) in medians.iter().enumerate() {
        if i != best {
            println!(
                "\n{} is {:.2}× as fast as {} (median tokens/s).",
                args.devices[best],
                medians[best] / m,
                args.devices[i]
            );
        }
    }
}
