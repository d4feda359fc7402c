//! Direct preference optimisation in a page: a tiny random LLaMA-style policy is saved
//! as a model folder, then a DPO recipe (the TOML of `manabi dpo --config`) trains it on
//! the committed English preference pairs (correct answers chosen over refusals) against
//! itself as the frozen reference, logging TRL's metric names.
//!
//! Run: `cargo run --release -p manabi-align --example dpo`
//!
//! Writes into `$TMPDIR/manabi-example-dpo`; takes a few seconds on two CPU cores.

use manabi_align::{DpoConfig, dpo};
use manabi_model::{DecoderLm, DeviceChoice, ModelConfig, save_native};
use manabi_objectives::Recipe;

const ROOT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../..");

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = std::env::temp_dir().join("manabi-example-dpo");
    let _ = std::fs::remove_dir_all(&dir);
    let choice = DeviceChoice::from_env()?;

    // The policy to start from (usually an SFT checkpoint): any decoder folder.
    let base = dir.join("base");
    let cfg: ModelConfig = toml::from_str(
        "family = \"llama\"\nvocab_size = 512\nmax_positions = 128\nd_model = 32\n\
         n_layers = 2\nn_heads = 4\nn_kv_heads = 2\nd_ff = 64\npositions = \"rope\"\n\
         norm = \"rmsnorm\"\nactivation = \"swiglu\"\ntie_embeddings = true",
    )?;
    save_native(&DecoderLm::init(&cfg, &choice.resolve()?, 3), &base)?;
    std::fs::copy(
        format!("{ROOT}/fixtures/tokenize/bpe-en/tokenizer.json"),
        base.join("tokenizer.json"),
    )?;

    let recipe = format!(
        r#"
        [run]
        out = "{out}"
        seed = 3
        [model]
        path = "{base}"
        [data]
        train = ["{ROOT}/datasets/pref/pref-en.train.jsonl"]
        val = ["{ROOT}/datasets/pref/pref-en.val.jsonl"]
        max_length = 128
        [peft]
        method = "lora"
        r = 4
        targets = ["q_proj", "v_proj", "up_proj"]
        [dpo]
        beta = 0.1
        loss_type = "sigmoid"
        [train]
        steps = 40
        batch_size = 8
        lr = 5e-3
        warmup_steps = 2
        eval_every = 20
        eval_batches = 4
        progress = false
        "#,
        out = dir.join("run").display(),
        base = base.display(),
    );
    // Overrides as `--set` gives them: e.g. "dpo.loss_type=\"ipo\"" or "peft.method=\"full\"".
    let cfg = DpoConfig::parse(&recipe, &[])?;
    let report = dpo(&cfg, choice, false)?;

    let losses = &report.run.losses;
    let (first, last) = (losses[0], losses[losses.len() - 1]);
    println!(
        "{} pairs ({} prompts cut, {} dropped); {} parameters trained",
        report.train_pairs, report.cut, report.dropped, report.trainable_params
    );
    println!(
        "DPO loss: step {} {:.4} -> step {} {:.4}",
        first.0, first.1, last.0, last.1
    );
    println!(
        "held-out preference accuracy: {:.1} % before, {:.1} % after",
        100.0 * report.accuracy_before,
        100.0 * report.accuracy_after
    );
    for (name, value) in &report.run.eval_metrics {
        println!("  {name} = {value:.4}");
    }
    if let Some(ckpt) = &report.run.checkpoint {
        println!("checkpoint: {}", ckpt.display());
    }
    Ok(())
}
