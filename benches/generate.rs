//! Generation benchmark: greedy decoding with and without the KV cache on a small
//! LLaMA-layout model with random weights, batch 1; checks that both give the same tokens.
//! The same weights, exported to a Hugging Face folder, are decoded by `transformers`
//! (`benches/generate_ref.py`, run by this binary) as a reference.
//!
//!     cargo run --release -p manabi-benches --bin bench-generate

mod setup;

use std::path::Path;
use std::process::Command;
use std::time::Instant;

use clap::Parser;
use manabi_model::{DecoderLm, DeviceChoice, GenerateOptions, ModelConfig, generate};

#[derive(Parser, Debug)]
#[command(about = "Generation tokens/s with and without the KV cache")]
struct Args {
    /// Device: cpu, flex, ndarray, wgpu[:N], cuda[:N].
    #[arg(long, default_value = "cpu")]
    device: DeviceChoice,
    /// New tokens per run.
    #[arg(long, default_value_t = 256)]
    new_tokens: usize,
    /// Prompt tokens.
    #[arg(long, default_value_t = 16)]
    prompt: usize,
    /// Timed runs of each mode; the best counts.
    #[arg(long, default_value_t = 3)]
    repeats: usize,
    /// Blocks of the model.
    #[arg(long, default_value_t = 4)]
    layers: usize,
    /// Width of the model.
    #[arg(long, default_value_t = 256)]
    width: usize,
    /// Vocabulary size.
    #[arg(long, default_value_t = 1024)]
    vocab: usize,
    /// Threads for both sides (rayon's pool here, `torch.set_num_threads` there).
    #[arg(long)]
    threads: Option<usize>,
    /// Skip the transformers reference.
    #[arg(long)]
    no_python: bool,
}

/// Best wall time of `repeats` runs of `f`, and the last result.
fn best<T>(repeats: usize, mut f: impl FnMut() -> T) -> (f64, T) {
    let mut best = f64::INFINITY;
    let mut out = None;
    for _ in 0..repeats.max(1) {
        let t = Instant::now();
        let r = f();
        best = best.min(t.elapsed().as_secs_f64());
        out = Some(r);
    }
    (best, out.expect("at least one run"))
}

/// Index of the first differing token, if any (a length difference counts).
fn first_difference(a: &[u32], b: &[u32]) -> Option<usize> {
    let n = a.iter().zip(b).take_while(|(x, y)| x == y).count();
    (n < a.len().max(b.len())).then_some(n)
}

fn main() {
    let args = Args::parse();
    let threads = setup::process(args.threads);
    let device = args.device.resolve().unwrap_or_else(|e| panic!("{e}"));
    // LLaMA layout: RoPE, RMSNorm, SwiGLU, no biases, untied head; head width 64.
    let hf = serde_json::json!({
        "model_type": "llama", "vocab_size": args.vocab,
        "max_position_embeddings": (args.prompt + args.new_tokens).max(512),
        "hidden_size": args.width, "num_hidden_layers": args.layers,
        "num_attention_heads": (args.width / 64).max(1), "intermediate_size": args.width * 8 / 3,
    });
    let cfg = ModelConfig::from_hf_json(&hf.to_string()).expect("llama config");
    cfg.validate().expect("valid config");
    let model = DecoderLm::init(&cfg, &device, 0);
    let params = cfg.n_params();
    let prompt: Vec<u32> = (0..args.prompt)
        .map(|i| (i * 37 + 11) as u32 % args.vocab as u32)
        .collect();
    let opts = |use_cache: bool, max_new_tokens: usize| GenerateOptions {
        max_new_tokens,
        use_cache,
        ..GenerateOptions::default()
    };
    let run = |use_cache: bool| {
        let prompts = [prompt.clone()];
        let out = generate(&model, &prompts, &opts(use_cache, args.new_tokens), None);
        out.expect("generates").remove(0)
    };

    // Warm-up: a few tokens each way (allocations, thread pool).
    for c in [true, false] {
        generate(&model, std::slice::from_ref(&prompt), &opts(c, 8), None).expect("warm-up");
    }
    let (cached_s, cached) = best(args.repeats, || run(true));
    let (full_s, full) = best(args.repeats, || run(false));
    assert_eq!(cached.len(), args.new_tokens, "stopped early");
    let same = first_difference(&cached, &full);

    let py = (!args.no_python).then(|| {
        let dir = tempfile::tempdir().expect("temp dir");
        manabi_model::export_hf(&model, dir.path(), None).expect("exports");
        let spec = serde_json::json!({
            "dir": dir.path(), "prompt": prompt, "new_tokens": args.new_tokens,
            "repeats": args.repeats, "threads": threads,
        });
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("generate_ref.py");
        let out = Command::new("python3")
            .arg(script)
            .arg(spec.to_string())
            .output()
            .expect("python3 runs");
        if !out.status.success() {
            eprintln!(
                "transformers reference failed:\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
            return None;
        }
        serde_json::from_slice::<serde_json::Value>(&out.stdout).ok()
    });
    let py = py.flatten();

    let n = args.new_tokens as f64;
    println!(
        "LLaMA layout, {} layers, width {}, vocab {}, {:.2} M params, random weights; greedy, batch 1, {}-token prompt, {} new tokens; device {} ({}, fused products on {}), {threads} threads, best of {}",
        cfg.n_layers,
        cfg.d_model,
        cfg.vocab_size,
        params as f64 / 1e6,
        args.prompt,
        args.new_tokens,
        args.device,
        args.device.concrete(),
        setup::products(),
        args.repeats
    );
    println!();
    println!(
        "| | KV cache tokens/s | no cache tokens/s | speed-up | same tokens with and without cache |"
    );
    println!("|---|---|---|---|---|");
    let same_text = |d: Option<usize>| match d {
        None => "yes".to_string(),
        Some(i) => format!("no (first difference at token {i})"),
    };
    println!(
        "| manabi | {:.1} | {:.1} | {:.2}× | {} |",
        n / cached_s,
        n / full_s,
        full_s / cached_s,
        same_text(same)
    );
    if let Some(v) = &py {
        let f = |k: &str| v[k].as_f64().unwrap_or(f64::NAN);
        let ids =
            |k: &str| -> Vec<u32> { serde_json::from_value(v[k].clone()).unwrap_or_default() };
        let (c, u) = (ids("cached"), ids("uncached"));
        println!(
            "| transformers {} | {:.1} | {:.1} | {:.2}× | {} |",
            v["transformers"].as_str().unwrap_or("?"),
            n / f("cached_s"),
            n / f("uncached_s"),
            f("uncached_s") / f("cached_s"),
            same_text(first_difference(&c, &u))
        );
        println!(
            "\nmanabi/transformers speed: {:.2}× with the cache, {:.2}× without. Same greedy tokens as manabi (same weights): {}.",
            f("cached_s") / cached_s,
            f("uncached_s") / full_s,
            same_text(first_difference(&cached, &c))
        );
    }
    if let Some(i) = same {
        eprintln!(
            "warning: cached and uncached greedy tokens differ from token {i} (near-tied logits?)"
        );
    }
}
