//! One LoRA SFT step at a real shape, manabi against PyTorch + peft in the same command:
//! r 16, α 32 on q, k, v and o; one row of 512 tokens; loss, backward, clipping to norm 1
//! and AdamW, as the trainer runs a step. Random weights of the shape (no download), the
//! same weights and token ids on both sides (exported to a Hugging Face folder that
//! `benches/lora_step_ref.py` loads into transformers + peft), 2 threads by default,
//! alternating rounds (one Python process per round); each round times one step after
//! one untimed step, and the best round of each side counts.
//!
//!     cargo run --release -p manabi-benches --bin bench-lora -- --shape qwen2.5-0.5b
//!     cargo run --release -p manabi-benches --bin bench-lora -- --shape qwen2.5-0.5b --bf16

mod setup;
mod shapes;

use std::time::Instant;

use burn::optim::ModuleOptimizer;
use burn::prelude::*;
use clap::Parser;
use manabi_finetune::{Method, PeftConfig};
use manabi_model::{DecoderLm, DeviceChoice, ModelConfig};
use manabi_objectives::config::TrainConfig;
use manabi_objectives::data::LmBatch;
use manabi_objectives::optim::{build_optimizer, global_norm, scale_grads};
use manabi_objectives::trainer::loss_and_grads;
use shapes::Shape;

/// Learning rate of every step (its value does not change the work done).
const LR: f64 = 1e-4;

#[derive(Parser, Debug)]
#[command(about = "One LoRA step at a real shape: manabi against PyTorch + peft")]
struct Args {
    /// The model's shape (random weights of it).
    #[arg(long, value_enum, default_value = "qwen2.5-0.5b")]
    shape: Shape,
    /// Device: cpu, flex, ndarray, wgpu[:N], cuda[:N].
    #[arg(long, default_value = "cpu")]
    device: DeviceChoice,
    /// Tokens in the row.
    #[arg(long, default_value_t = 512)]
    seq: usize,
    /// Rows per step.
    #[arg(long, default_value_t = 1)]
    batch: usize,
    /// Timed rounds, manabi and PyTorch alternating; the best of each counts.
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Threads for both sides (rayon's pool here, `torch.set_num_threads` there).
    #[arg(long, default_value_t = 2)]
    threads: usize,
    /// Skip the PyTorch reference.
    #[arg(long)]
    no_python: bool,
    /// Keep manabi's frozen base in bf16 (`[model] dtype = "bf16"`); PyTorch stays f32.
    #[arg(long)]
    bf16: bool,
}

/// Deterministic random token rows (xorshift64*), `seq + 1` tokens each.
fn random_rows(batch: usize, seq: usize, vocab: usize) -> Vec<Vec<u32>> {
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = || {
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        (state.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 33) as usize % vocab
    };
    (0..batch)
        .map(|_| (0..=seq).map(|_| next() as u32).collect())
        .collect()
}

/// The trainer's step: loss and gradients, clip to global norm 1, AdamW; the loss.
fn step(
    model: DecoderLm,
    optim: &mut ModuleOptimizer,
    batch: &LmBatch,
    ad: &Device,
) -> (DecoderLm, f64) {
    let (loss, mut grads) = loss_and_grads(&model, std::slice::from_ref(batch), ad);
    let norm = global_norm(&model, &grads);
    if norm > 1.0 {
        scale_grads(&model, &mut grads, 1.0 / (norm + 1e-6));
    }
    (optim.step(LR, model, grads), loss)
}

fn main() {
    let args = Args::parse();
    let threads = setup::process(Some(args.threads));
    let device = args.device.resolve().unwrap_or_else(|e| panic!("{e}"));
    let hf = args.shape.config(args.seq);
    let cfg = ModelConfig::from_hf_json(&hf.to_string()).expect("shape config");
    cfg.validate().expect("valid config");
    let ad = device.clone().autodiff();
    ad.seed(0);
    let model = DecoderLm::init(&cfg, &ad, 0);
    let params = cfg.n_params();
    // Exported before LoRA and any rounding: PyTorch gets the f32 base.
    let dir = tempfile::tempdir().expect("temp dir");
    if !args.no_python {
        manabi_model::export_hf(&model, dir.path(), None).expect("exports");
    }
    let peft = PeftConfig {
        method: Method::Lora,
        r: 16,
        alpha: 32.0,
        targets: ["q_proj", "k_proj", "v_proj", "o_proj"]
            .map(String::from)
            .to_vec(),
        ..PeftConfig::default()
    };
    let mut model = manabi_finetune::peft::apply(model, &peft).expect("LoRA");
    if args.bf16 {
        model = model.with_bf16_base();
    }
    let (trainable, _) = manabi_finetune::peft::describe(&model);
    let mut optim = build_optimizer(&model, &TrainConfig::default());
    let rows = random_rows(args.batch, args.seq, cfg.vocab_size);
    let batch = LmBatch {
        batch: args.batch,
        seq: args.seq,
        inputs: rows.iter().flat_map(|r| r[..args.seq].to_vec()).collect(),
        targets: rows
            .iter()
            .flat_map(|r| r[1..].iter().map(|&x| i64::from(x)))
            .collect(),
        positions: None,
        documents: None,
    };

    let python_round = || -> Option<serde_json::Value> {
        let spec = serde_json::json!({
            "dir": dir.path(), "rows": rows, "threads": threads, "lr": LR,
        });
        setup::python_json("lora_step_ref.py", &spec, "PyTorch")
    };

    // One untimed step (allocations, the optimizer's moments), then one timed step per
    // round.
    let first_loss;
    (model, first_loss) = step(model, &mut optim, &batch, &ad);
    let (mut ours, mut theirs) = (f64::INFINITY, f64::INFINITY);
    let (mut py_loss, mut versions) = (f64::NAN, String::new());
    for _ in 0..args.rounds.max(1) {
        ad.sync().expect("device sync");
        let t = Instant::now();
        (model, _) = step(model, &mut optim, &batch, &ad);
        ad.sync().expect("device sync");
        ours = ours.min(t.elapsed().as_secs_f64());
        if args.no_python {
            continue;
        }
        if let Some(v) = python_round() {
            theirs = theirs.min(v["step_s"].as_f64().unwrap_or(f64::NAN));
            py_loss = v["first_loss"].as_f64().unwrap_or(f64::NAN);
            versions = format!(
                "PyTorch {}, transformers {}, peft {}",
                v["torch"].as_str().unwrap_or("?"),
                v["transformers"].as_str().unwrap_or("?"),
                v["peft"].as_str().unwrap_or("?")
            );
        }
    }
    println!(
        "{} shape, {:.2} M params ({:.2} M trainable: LoRA r 16 on q, k, v, o), random weights; {} × {} tokens, AdamW, clipping; device {} ({}, fused products on {}), {threads} threads, best of {} alternating rounds; manabi's base in {}",
        args.shape.name(),
        params as f64 / 1e6,
        trainable as f64 / 1e6,
        args.batch,
        args.seq,
        args.device,
        args.device.concrete(),
        setup::products(),
        args.rounds.max(1),
        if args.bf16 { "bf16" } else { "f32" }
    );
    println!();
    println!("| | seconds per step | tokens/s | loss of the first step |");
    println!("|---|---|---|---|");
    let tokens = (args.batch * args.seq) as f64;
    println!(
        "| manabi | {ours:.2} | {:.0} | {first_loss:.4} |",
        tokens / ours
    );
    if theirs.is_finite() {
        println!(
            "| {versions}, f32 | {theirs:.2} | {:.0} | {py_loss:.4} |",
            tokens / theirs
        );
        println!(
            "\nmanabi/PyTorch + peft speed: {:.2}× (the same first loss means the same model and tokens: {}).",
            theirs / ours,
            if (first_loss - py_loss).abs() <= 1e-3 * first_loss.abs() {
                "yes"
            } else {
                "no"
            }
        );
    }
}
