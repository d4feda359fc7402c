//! Training throughput benchmark: one optimizer step as the trainer runs it (forward,
//! loss, backward, global-norm clipping, AdamW) on random tokens, next to the same GPT in
//! PyTorch eager (`benches/train_ref.py`), run by this binary on the same machine.
//!
//!     cargo run --release -p manabi-benches --bin bench-train -- --split
//!     cargo run --release -p manabi-benches --features ndarray --bin bench-train -- \
//!         --device ndarray --config a
//!
//! Prints Markdown tables: throughput, MFU (6 × params × tokens/s ÷ measured peak f32
//! matmul FLOP/s) and, with `--split`, where a step's time goes.

use std::path::Path;
use std::process::Command;
use std::time::Instant;

use burn::optim::{GradientsAccumulator, GradientsParams, ModuleOptimizer};
use burn::prelude::*;
use clap::Parser;
use manabi_model::{DecoderLm, DeviceChoice, ModelConfig};
use manabi_objectives::config::TrainConfig;
use manabi_objectives::data::LmBatch;
use manabi_objectives::loss::clm_loss_sum;
use manabi_objectives::optim::{build_optimizer, global_norm, scale_grads};
use manabi_objectives::trainer::loss_and_grads;

/// Learning rate of every timed step (its value does not change the work done).
const LR: f64 = 1e-4;

#[derive(Parser, Debug)]
#[command(about = "Training throughput of manabi next to PyTorch eager")]
struct Args {
    /// Device: cpu, flex, ndarray, wgpu[:N], cuda[:N].
    #[arg(long, default_value = "cpu")]
    device: DeviceChoice,
    /// Configs to run: a, b, gpt2-small (comma-separated).
    #[arg(long, value_delimiter = ',', default_value = "a,b")]
    config: Vec<String>,
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
}

/// One benchmark configuration (GPT-2 layout).
#[derive(Debug, Clone)]
struct Shape {
    name: &'static str,
    vocab: usize,
    layers: usize,
    heads: usize,
    width: usize,
    block: usize,
    batch: usize,
    steps: usize,
}

impl Shape {
    fn get(name: &str, args: &Args) -> Self {
        let (vocab, layers, heads, width, block, batch, steps) = match name {
            "a" => (65, 4, 4, 128, 64, 12, args.steps_a),
            "b" => (65, 6, 6, 384, 256, 8, args.steps_b),
            "gpt2-small" => (50257, 12, 12, 768, 1024, 1, args.steps_small),
            other => panic!("unknown config `{other}` (expected a, b or gpt2-small)"),
        };
        let name = match name {
            "a" => "A",
            "b" => "B",
            _ => "gpt2-small",
        };
        Self {
            name,
            vocab,
            layers,
            heads,
            width,
            block,
            batch,
            steps,
        }
    }

    /// The Hugging Face `config.json` of this GPT-2: LayerNorm, GELU-tanh, biases, tied
    /// embeddings, learned positions, MLP 4×width, no dropout.
    fn hf_json(&self) -> serde_json::Value {
        serde_json::json!({
            "model_type": "gpt2", "vocab_size": self.vocab, "n_positions": self.block,
            "n_embd": self.width, "n_layer": self.layers, "n_head": self.heads,
            "activation_function": "gelu_new", "tie_word_embeddings": true,
        })
    }

    fn model_config(&self) -> ModelConfig {
        let cfg = ModelConfig::from_hf_json(&self.hf_json().to_string()).expect("gpt2 config");
        cfg.validate().expect("valid config");
        cfg
    }

    fn tokens_per_step(&self) -> usize {
        self.batch * self.block
    }
}

/// What one side measured on one config.
#[derive(Debug, Clone, Default)]
struct Measured {
    params: usize,
    ms_per_step: f64,
    tokens_per_s: f64,
    first_loss: f64,
    /// forward+loss, backward, optimizer (clip + AdamW), ms.
    split: Option<[f64; 3]>,
}

/// Deterministic random token batches (xorshift64*), inputs and next-token targets.
fn random_batch(state: &mut u64, s: &Shape) -> LmBatch {
    let mut next = || {
        *state ^= *state >> 12;
        *state ^= *state << 25;
        *state ^= *state >> 27;
        (state.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 33) as usize % s.vocab
    };
    let (b, t) = (s.batch, s.block);
    let rows: Vec<Vec<u32>> = (0..b)
        .map(|_| (0..=t).map(|_| next() as u32).collect())
        .collect();
    LmBatch {
        batch: b,
        seq: t,
        inputs: rows.iter().flat_map(|r| r[..t].to_vec()).collect(),
        targets: rows
            .iter()
            .flat_map(|r| r[1..].iter().map(|&x| x as i64))
            .collect(),
        positions: None,
        documents: None,
    }
}

/// Peak f32 matmul FLOP/s of `device`: best of 3 rounds of 10 products n×n @ n×n.
fn peak_flops(device: &Device, n: usize) -> f64 {
    let dist = burn::tensor::Distribution::Default;
    let a = Tensor::<2>::random([n, n], dist, device);
    let b = Tensor::<2>::random([n, n], dist, device);
    let product = || {
        let c = a.clone().matmul(b.clone());
        c.slice([0..1, 0..1]).into_scalar::<f32>()
    };
    product();
    let reps = 10;
    let best = (0..3)
        .map(|_| {
            let t = Instant::now();
            for _ in 0..reps {
                product();
            }
            t.elapsed().as_secs_f64()
        })
        .fold(f64::INFINITY, f64::min);
    2.0 * (n as f64).powi(3) * reps as f64 / best
}

/// The trainer's step: loss and gradients, clip to global norm 1, AdamW.
fn train_step(
    model: DecoderLm,
    optim: &mut ModuleOptimizer,
    batch: &LmBatch,
    clip: f64,
    ad: &Device,
) -> (DecoderLm, f64) {
    let (loss, mut grads) = loss_and_grads(&model, std::slice::from_ref(batch), ad);
    let norm = global_norm(&model, &grads);
    if norm > clip {
        scale_grads(&model, &mut grads, clip / (norm + 1e-6));
    }
    (optim.step(LR, model, grads), loss)
}

/// The same step in three phases with a device sync after each; returns ms per phase.
fn split_step(
    model: DecoderLm,
    optim: &mut ModuleOptimizer,
    batch: &LmBatch,
    clip: f64,
    ad: &Device,
) -> (DecoderLm, [f64; 3]) {
    let t0 = Instant::now();
    let sum = clm_loss_sum(&model, batch, ad);
    let _loss = sum.clone().into_scalar::<f32>();
    let t1 = Instant::now();
    let scaled = sum / batch.target_count().max(1) as f64;
    let mut acc = GradientsAccumulator::<DecoderLm>::new();
    acc.accumulate(
        &model,
        GradientsParams::from_grads(scaled.backward(), &model),
    );
    let mut grads = acc.grads();
    ad.sync().expect("device sync");
    let t2 = Instant::now();
    let norm = global_norm(&model, &grads);
    if norm > clip {
        scale_grads(&model, &mut grads, clip / (norm + 1e-6));
    }
    let model = optim.step(LR, model, grads);
    ad.sync().expect("device sync");
    let t3 = Instant::now();
    let ms = |a: Instant, b: Instant| (b - a).as_secs_f64() * 1e3;
    (model, [ms(t0, t1), ms(t1, t2), ms(t2, t3)])
}

fn run_manabi(s: &Shape, device: &Device, warmup: usize, split: bool) -> Measured {
    let train = TrainConfig::default(); // AdamW β (0.9, 0.99), weight decay 0.1, clip 1
    let ad = device.clone().autodiff();
    ad.seed(0);
    let mut model = DecoderLm::init(&s.model_config(), &ad, 0);
    let params = model.num_params();
    let mut optim = build_optimizer(&model, &train);
    let mut rng = 0x9e37_79b9_7f4a_7c15u64;
    let batches: Vec<LmBatch> = (0..warmup + s.steps)
        .map(|_| random_batch(&mut rng, s))
        .collect();
    let mut first_loss = f64::NAN;
    for (i, b) in batches[..warmup].iter().enumerate() {
        let loss;
        (model, loss) = train_step(model, &mut optim, b, train.grad_clip, &ad);
        if i == 0 {
            first_loss = loss;
        }
    }
    ad.sync().expect("device sync");
    let t = Instant::now();
    for b in &batches[warmup..] {
        (model, _) = train_step(model, &mut optim, b, train.grad_clip, &ad);
    }
    ad.sync().expect("device sync");
    let secs = t.elapsed().as_secs_f64();
    let split = split.then(|| {
        let mut total = [0.0; 3];
        for b in &batches[warmup..] {
            let ms;
            (model, ms) = split_step(model, &mut optim, b, train.grad_clip, &ad);
            (0..3).for_each(|i| total[i] += ms[i] / s.steps as f64);
        }
        total
    });
    Measured {
        params,
        ms_per_step: secs * 1e3 / s.steps as f64,
        tokens_per_s: (s.tokens_per_step() * s.steps) as f64 / secs,
        first_loss,
        split,
    }
}

/// Runs `train_ref.py` on every config; returns its peak FLOP/s and measurements.
fn run_python(shapes: &[Shape], args: &Args, threads: usize) -> Option<(f64, Vec<Measured>)> {
    let gpu = matches!(
        args.device.concrete(),
        DeviceChoice::Cuda(_) | DeviceChoice::Wgpu(_)
    );
    let spec = serde_json::json!({
        "threads": threads, "warmup": args.warmup, "split": args.split,
        "peak_n": args.peak_n, "attn": args.py_attn, "device": if gpu { "cuda" } else { "cpu" },
        "configs": shapes.iter().map(|s| serde_json::json!({
            "name": s.name, "config": s.hf_json(), "batch": s.batch, "steps": s.steps,
        })).collect::<Vec<_>>(),
    });
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("train_ref.py");
    let out = Command::new("python3")
        .arg(script)
        .arg(spec.to_string())
        .output()
        .expect("python3 runs");
    if !out.status.success() {
        eprintln!(
            "PyTorch reference failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        return None;
    }
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("python prints JSON");
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

fn main() {
    let args = Args::parse();
    if let Some(n) = args.threads {
        rayon::ThreadPoolBuilder::new()
            .num_threads(n)
            .build_global()
            .expect("rayon pool");
    }
    let threads = rayon::current_num_threads();
    let mut names = args.config.clone();
    if args.gpt2_small && !names.iter().any(|n| n == "gpt2-small") {
        names.push("gpt2-small".into());
    }
    let shapes: Vec<Shape> = names.iter().map(|n| Shape::get(n, &args)).collect();
    let device = args.device.resolve().unwrap_or_else(|e| panic!("{e}"));
    let peak = peak_flops(&device, args.peak_n);
    let ours: Vec<Measured> = shapes
        .iter()
        .map(|s| {
            let m = run_manabi(s, &device, args.warmup, args.split);
            eprintln!("manabi {}: {:.1} ms/step", s.name, m.ms_per_step);
            m
        })
        .collect();
    let theirs = if args.no_python {
        None
    } else {
        run_python(&shapes, &args, threads)
    };
    let (py_peak, py_rows) = match theirs {
        Some((p, r)) => (p, r.into_iter().map(Some).collect()),
        None => (f64::NAN, vec![None; shapes.len()]),
    };
    // One denominator for both MFU columns: the better of the two measured peaks.
    let machine_peak = if py_peak.is_finite() {
        peak.max(py_peak)
    } else {
        peak
    };
    println!(
        "device {} ({}), {threads} threads, warm-up {} steps; peak f32 matmul {n}³: manabi {:.1} GFLOP/s, PyTorch {:.1} GFLOP/s; MFU uses {:.1} GFLOP/s",
        args.device,
        args.device.concrete(),
        args.warmup,
        peak / 1e9,
        py_peak / 1e9,
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
    for ((s, m), p) in shapes.iter().zip(&ours).zip(&py_rows) {
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
        for ((s, m), p) in shapes.iter().zip(&ours).zip(&py_rows) {
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
