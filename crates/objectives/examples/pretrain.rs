//! Pre-train a tiny GPT on the committed sample stories from a recipe written inline:
//! a character tokenizer is trained, the corpus is encoded into shards, and the shared
//! Trainer runs AdamW with warm-up + cosine, evaluates, logs `metrics.jsonl`, draws
//! `loss.svg` and writes a checkpoint. The checkpoint is then loaded and sampled.
//!
//! Run: `cargo run --release -p manabi-objectives --example pretrain`
//!
//! Writes into `$TMPDIR/manabi-example-pretrain`; takes a few seconds on two CPU cores.

use manabi_model::{DeviceChoice, GenerateOptions, generate, load_model};
use manabi_objectives::{PretrainConfig, Recipe, pretrain};
use manabi_tokenize::TextTokenizer;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let out = std::env::temp_dir().join("manabi-example-pretrain");
    let _ = std::fs::remove_dir_all(&out);
    let stories = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../datasets/tiny/stories-en.txt"
    );
    // The same keys as configs/*.toml; `vocab_size = 0` takes the tokenizer's size.
    let recipe = format!(
        r#"
        [run]
        out = "{out}"
        seed = 7
        [model]
        family = "gpt2"
        vocab_size = 0
        max_positions = 32
        d_model = 32
        n_layers = 2
        n_heads = 4
        d_ff = 64
        positions = "learned"
        norm = "layernorm"
        activation = "gelu_tanh"
        attention_bias = true
        mlp_bias = true
        tie_embeddings = true
        [data]
        inputs = ["{stories}"]
        block_size = 32
        tokenizer = {{ kind = "char", vocab_size = 100, min_frequency = 1 }}
        [train]
        steps = 120
        batch_size = 4
        warmup_steps = 5
        lr = 1e-2
        eval_every = 40
        eval_batches = 2
        progress = false
        "#,
        out = out.display(),
    );
    // Overrides work as `--set` does on the command line.
    let cfg = PretrainConfig::parse(&recipe, &["train.batch_size=8".to_string()])?;
    let device = DeviceChoice::from_env()?;
    let report = pretrain(&cfg, device, false)?;

    let (first, last) = (report.losses[0], report.losses[report.losses.len() - 1]);
    println!(
        "{} parameters, {} steps in {:.1} s",
        report.params, report.steps, report.seconds
    );
    println!(
        "train loss: step {} {:.3} -> step {} {:.3}",
        first.0, first.1, last.0, last.1
    );
    for (step, loss) in &report.evals {
        println!("  val loss at step {step}: {loss:.3}");
    }
    println!(
        "{:.0} tokens/s; metrics and loss.svg in {}",
        report.tokens_per_s,
        out.display()
    );

    // The checkpoint is an ordinary manabi model folder.
    let ckpt = report.checkpoint.ok_or("no checkpoint written")?;
    let model = load_model(&ckpt, &device.resolve()?)?;
    let tok = TextTokenizer::load(out.join("tokenizer/tokenizer.json"))?;
    let prompt = tok.encode("The wind was")?;
    let opts = GenerateOptions {
        max_new_tokens: 16,
        ..GenerateOptions::default()
    };
    let ids = generate(&model, std::slice::from_ref(&prompt), &opts, Some(&tok))?;
    let text = tok.decode(&[prompt, ids[0].clone()].concat(), true)?;
    println!("{} -> greedy sample: {text:?}", ckpt.display());
    Ok(())
}
