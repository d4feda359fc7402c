//! Generation benchmark: greedy decoding with and without the KV cache on a small
//! LLaMA-layout model with random weights, batch 1; checks that both give the same tokens.
//! The same weights, exported to a Hugging Face folder, are decoded by `transformers`
//! (`benches/generate_ref.py`, run by this binary) as a reference, in alternating rounds.
//!
//! `--shape qwen2.5-0.5b` / `--shape llama-3.2-1b` builds a model of that real shape
//! instead (random weights, no download) and times the prompt and the new tokens apart
//! (KV cache only), next to the machine's memory bandwidth: decoding one token reads
//! every weight once, so bandwidth / weight bytes bounds the new tokens per second.
//!
//!     cargo run --release -p manabi-benches --bin bench-generate
//!     cargo run --release -p manabi-benches --bin bench-generate -- --shape qwen2.5-0.5b --threads 2

mod setup;
mod shapes;

use std::time::Instant;

use clap::Parser;
use manabi_model::{DecoderLm, DeviceChoice, GenerateOptions, ModelConfig, generate};
use shapes::Shape;

#[derive(Parser, Debug)]
#[command(about = "Generation tokens/s with and without the KV cache")]
struct Args {
    /// Device: cpu, flex, ndarray, wgpu[:N], cuda[:N].
    #[arg(long, default_value = "cpu")]
    device: DeviceChoice,
    /// A real model's shape (random weights); times the prompt and the new tokens apart,
    /// with the KV cache only, and measures the memory bandwidth.
    #[arg(long)]
    shape: Option<Shape>,
    /// New tokens per run (default 256; 128 with `--shape`).
    #[arg(long)]
    new_tokens: Option<usize>,
    /// Prompt tokens (default 16; 128 with `--shape`).
    #[arg(long)]
    prompt: Option<usize>,
    /// Timed rounds, manabi and transformers alternating; the best of each counts.
    #[arg(long, alias = "repeats", default_value_t = 3)]
    rounds: usize,
    /// Blocks of the model (without `--shape`).
    #[arg(long, default_value_t = 4)]
    layers: usize,
    /// Width of the model (without `--shape`).
    #[arg(long, default_value_t = 256)]
    width: usize,
    /// Vocabulary size (without `--shape`).
    #[arg(long, default_value_t = 1024)]
    vocab: usize,
    /// Threads for both sides (rayon's pool here, `torch.set_num_threads` there).
    #[arg(long)]
    threads: Option<usize>,
    /// Skip the transformers reference.
    #[arg(long)]
    no_python: bool,
    /// Keep manabi's weight matrices in bf16 (`manabi generate --dtype bf16`);
    /// transformers stays in f32, the reference users compare with.
    #[arg(long, conflicts_with = "int8")]
    bf16: bool,
    /// Keep manabi's weight matrices in weight-only int8 (`manabi generate --dtype
    /// int8`); transformers stays in f32.
    #[arg(long)]
    int8: bool,
}

/// Index of the first differing token, if any (a length difference counts).
fn first_difference(a: &[u32], b: &[u32]) -> Option<usize> {
    let n = a.iter().zip(b).take_while(|(x, y)| x == y).count();
    (n < a.len().max(b.len())).then_some(n)
}

/// Best timings of one side over the rounds.
#[derive(Debug, Clone, Copy)]
struct Times {
    /// Prompt + the first new token, KV cache.
    first_s: f64,
    /// Prompt + all new tokens, KV cache.
    cached_s: f64,
    /// All new tokens without the cache (NaN when not run).
    uncached_s: f64,
    /// `cached_s - first_s` of one round: the new tokens after the first.
    decode_s: f64,
}

impl Times {
    fn new() -> Self {
        Times {
            first_s: f64::INFINITY,
            cached_s: f64::INFINITY,
            uncached_s: f64::INFINITY,
            decode_s: f64::INFINITY,
        }
    }

    /// One round's timings.
    fn round(first_s: f64, cached_s: f64, uncached_s: f64) -> Times {
        Times {
            first_s,
            cached_s,
            uncached_s,
            decode_s: cached_s - first_s,
        }
    }

    fn best(self, o: Times) -> Times {
        Times {
            first_s: self.first_s.min(o.first_s),
            cached_s: self.cached_s.min(o.cached_s),
            uncached_s: self.uncached_s.min(o.uncached_s),
            decode_s: self.decode_s.min(o.decode_s),
        }
    }

    /// New tokens per second after the first (the decode rate), from the best round's
    /// difference (not the difference of two best times, which may come from two rounds).
    fn decode_rate(self, new_tokens: usize) -> f64 {
        (new_tokens.saturating_sub(1)) as f64 / self.decode_s
    }
}

/// Read bandwidth of this machine in bytes/s, as decoding uses it: the threads of
/// rayon's pool sum a 1 GiB `f32` array (far beyond any cache), best of five passes.
fn read_bandwidth() -> f64 {
    use rayon::prelude::*;
    let data = vec![1.0f32; 1 << 28];
    let mut best = f64::INFINITY;
    let mut total = 0.0f32;
    for _ in 0..5 {
        let t = Instant::now();
        let s: f32 = data
            .par_chunks(1 << 16)
            .map(|c| {
                // Eight accumulators so the adds vectorise and overlap.
                let mut acc = [0.0f32; 8];
                for v in c.chunks_exact(8) {
                    for (a, x) in acc.iter_mut().zip(v) {
                        *a += x;
                    }
                }
                acc.iter().sum::<f32>()
            })
            .sum();
        best = best.min(t.elapsed().as_secs_f64());
        total += s;
    }
    std::hint::black_box(total);
    (data.len() * 4) as f64 / best
}

fn main() {
    let args = Args::parse();
    let threads = setup::process(args.threads);
    let device = args.device.resolve().unwrap_or_else(|e| panic!("{e}"));
    let prompt_len = args
        .prompt
        .unwrap_or(if args.shape.is_some() { 128 } else { 16 });
    let new_tokens = args
        .new_tokens
        .unwrap_or(if args.shape.is_some() { 128 } else { 256 })
        .max(2);
    let uncached = args.shape.is_none();
    let hf = match args.shape {
        Some(shape) => shape.config(prompt_len + new_tokens),
        // LLaMA layout: RoPE, RMSNorm, SwiGLU, no biases, untied head; head width 64.
        None => serde_json::json!({
            "model_type": "llama", "vocab_size": args.vocab,
            "max_position_embeddings": (prompt_len + new_tokens).max(512),
            "hidden_size": args.width, "num_hidden_layers": args.layers,
            "num_attention_heads": (args.width / 64).max(1),
            "intermediate_size": args.width * 8 / 3, "tie_word_embeddings": false,
        }),
    };
    let cfg = ModelConfig::from_hf_json(&hf.to_string()).expect("model config");
    cfg.validate().expect("valid config");
    let model = DecoderLm::init(&cfg, &device, 0);
    let params = cfg.n_params();
    // Exported before any rounding: transformers gets the f32 weights.
    let dir = tempfile::tempdir().expect("temp dir");
    if !args.no_python {
        manabi_model::export_hf(&model, dir.path(), None).expect("exports");
    }
    let model = if args.bf16 {
        model.with_bf16_base()
    } else if args.int8 {
        model.with_int8_base()
    } else {
        model
    };
    let dtype = if args.bf16 {
        "bf16"
    } else if args.int8 {
        "int8"
    } else {
        "f32"
    };
    let vocab = cfg.vocab_size as u32;
    let prompt: Vec<u32> = (0..prompt_len)
        .map(|i| (i as u32 * 7919 + 11) % vocab)
        .collect();
    let opts = |use_cache: bool, max_new_tokens: usize| GenerateOptions {
        max_new_tokens,
        use_cache,
        ..GenerateOptions::default()
    };
    let run = |use_cache: bool, n: usize| {
        let prompts = [prompt.clone()];
        let t = Instant::now();
        let out = generate(&model, &prompts, &opts(use_cache, n), None);
        (t.elapsed().as_secs_f64(), out.expect("generates").remove(0))
    };

    // The transformers side: the same weights, exported above; one process per round.
    let python_round = || -> Option<serde_json::Value> {
        let spec = serde_json::json!({
            "dir": dir.path(), "prompt": prompt, "new_tokens": new_tokens,
            "repeats": 1, "threads": threads, "uncached": uncached,
        });
        setup::python_json("generate_ref.py", &spec, "transformers")
    };

    // Warm-up: a few tokens each way (allocations, thread pool).
    run(true, 8);
    if uncached {
        run(false, 8);
    }
    let mut ours = Times::new();
    let mut theirs = Times::new();
    let (mut cached, mut full, mut py_cached, mut py_full) = (vec![], vec![], vec![], vec![]);
    let mut py_version = None;
    for _ in 0..args.rounds.max(1) {
        let (first_s, _) = run(true, 1);
        let (cached_s, c) = run(true, new_tokens);
        let uncached_s = if uncached {
            let (s, f) = run(false, new_tokens);
            full = f;
            s
        } else {
            f64::NAN
        };
        cached = c;
        ours = ours.best(Times::round(first_s, cached_s, uncached_s));
        if args.no_python {
            continue;
        }
        if let Some(v) = python_round() {
            let f = |k: &str| v[k].as_f64().unwrap_or(f64::NAN);
            let ids = |k: &str| serde_json::from_value(v[k].clone()).unwrap_or_default();
            theirs = theirs.best(Times::round(f("first_s"), f("cached_s"), f("uncached_s")));
            py_cached = ids("cached");
            py_full = ids("uncached");
            py_version = v["transformers"].as_str().map(str::to_string);
        }
    }
    assert_eq!(cached.len(), new_tokens, "stopped early");
    let same_text = |d: Option<usize>| match d {
        None => "yes".to_string(),
        Some(i) => format!("no (first difference at token {i})"),
    };
    let what = match args.shape {
        Some(s) => format!(
            "{} shape ({})",
            s.name(),
            hf["model_type"].as_str().unwrap_or("?")
        ),
        None => "LLaMA layout".to_string(),
    };
    println!(
        "{what}, {} layers, width {}, vocab {}, {:.2} M params, random weights; greedy, batch 1, {prompt_len}-token prompt, {new_tokens} new tokens; device {} ({}, fused products on {}), {threads} threads, best of {} alternating rounds",
        cfg.n_layers,
        cfg.d_model,
        cfg.vocab_size,
        params as f64 / 1e6,
        args.device,
        args.device.concrete(),
        setup::products(),
        args.rounds.max(1)
    );
    println!();
    let n = new_tokens as f64;
    if uncached {
        let same = first_difference(&cached, &full);
        println!(
            "| | KV cache tokens/s | no cache tokens/s | speed-up | same tokens with and without cache |"
        );
        println!("|---|---|---|---|---|");
        println!(
            "| manabi | {:.1} | {:.1} | {:.2}× | {} |",
            n / ours.cached_s,
            n / ours.uncached_s,
            ours.uncached_s / ours.cached_s,
            same_text(same)
        );
        if let Some(version) = &py_version {
            println!(
                "| transformers {version} | {:.1} | {:.1} | {:.2}× | {} |",
                n / theirs.cached_s,
                n / theirs.uncached_s,
                theirs.uncached_s / theirs.cached_s,
                same_text(first_difference(&py_cached, &py_full))
            );
            println!(
                "\nmanabi/transformers speed: {:.2}× with the cache, {:.2}× without. Same greedy tokens as manabi (same weights): {}.",
                theirs.cached_s / ours.cached_s,
                theirs.uncached_s / ours.uncached_s,
                same_text(first_difference(&cached, &py_cached))
            );
        }
        if let Some(i) = same {
            eprintln!(
                "warning: cached and uncached greedy tokens differ from token {i} (near-tied logits?)"
            );
        }
        return;
    }
    // Decoding reads every weight once per token (the tied embedding as the output layer);
    // with `--bf16` the matrices take 2 bytes, with `--int8` one byte and a 4-byte scale
    // per 32 (the norms' few f32 values are left out).
    let weight_bytes = params as f64
        * match dtype {
            "bf16" => 2.0,
            "int8" => 1.0 + 4.0 / 32.0,
            _ => 4.0,
        };
    let bandwidth = read_bandwidth();
    let limit = bandwidth / weight_bytes;
    println!(
        "Memory read bandwidth ({threads} threads, sum of a 1 GiB array): {:.1} GB/s; manabi's weights {:.2} GB ({}), so at most {limit:.2} new tokens/s (each row's share is of the limit for its own weights).",
        bandwidth / 1e9,
        weight_bytes / 1e9,
        dtype
    );
    println!();
    println!(
        "| | prompt tokens/s (to the first new token) | new tokens/s | share of the bandwidth limit |"
    );
    println!("|---|---|---|---|");
    let row = |name: &str, t: Times, limit: f64| {
        println!(
            "| {name} | {:.1} ({:.2} s) | {:.2} | {:.0} % |",
            prompt_len as f64 / t.first_s,
            t.first_s,
            t.decode_rate(new_tokens),
            100.0 * t.decode_rate(new_tokens) / limit
        );
    };
    row(
        &if dtype == "f32" {
            "manabi".to_string()
        } else {
            format!("manabi, {dtype} weights")
        },
        ours,
        limit,
    );
    if let Some(version) = &py_version {
        row(
            &format!("transformers {version}, f32"),
            theirs,
            bandwidth / (params as f64 * 4.0),
        );
        println!(
            "\nmanabi/transformers: prompt {:.2}×, new tokens {:.2}×. Same greedy tokens as manabi (same weights): {}.",
            theirs.first_s / ours.first_s,
            ours.decode_rate(new_tokens) / theirs.decode_rate(new_tokens),
            same_text(first_difference(&cached, &py_cached))
        );
    }
}
