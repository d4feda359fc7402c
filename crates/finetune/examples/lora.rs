//! LoRA fine-tuning in a page: a tiny random LLaMA-style base is saved as a model
//! folder, then a recipe (the TOML of `manabi sft --config`) trains rank-4 adapters on
//! `q_proj`/`v_proj` with the loss on answers only, on the committed QA sample data.
//! The checkpoint is reloaded, its adapter exported in the Python `peft` format, and the
//! adapter merged into the weights.
//!
//! Run: `cargo run --release -p manabi-finetune --example lora`
//!
//! Writes into `$TMPDIR/manabi-example-lora`; takes a few seconds on two CPU cores.
//! The base is random, so the answers are noise: the example shows the calls.

use manabi_finetune::{SftConfig, load_decoder, merged, peft, sft};
use manabi_model::{DecoderLm, DeviceChoice, GenerateOptions, ModelConfig, generate, save_native};
use manabi_objectives::Recipe;
use manabi_tokenize::TextTokenizer;

const ROOT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../..");

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = std::env::temp_dir().join("manabi-example-lora");
    let _ = std::fs::remove_dir_all(&dir);
    let choice = DeviceChoice::from_env()?;
    let device = choice.resolve()?;

    // A base model folder: `model.toml` + `model.bpk` and a 512-token BPE tokenizer.
    let base = dir.join("base");
    let cfg: ModelConfig = toml::from_str(
        "family = \"llama\"\nvocab_size = 512\nmax_positions = 128\nd_model = 32\n\
         n_layers = 2\nn_heads = 4\nn_kv_heads = 2\nd_ff = 64\npositions = \"rope\"\n\
         norm = \"rmsnorm\"\nactivation = \"swiglu\"\ntie_embeddings = true",
    )?;
    save_native(&DecoderLm::init(&cfg, &device, 7), &base)?;
    let tokenizer = base.join("tokenizer.json");
    std::fs::copy(
        format!("{ROOT}/fixtures/tokenize/bpe-en/tokenizer.json"),
        &tokenizer,
    )?;

    let recipe = format!(
        r#"
        [run]
        out = "{out}"
        seed = 5
        [model]
        path = "{base}"
        [data]
        train = ["{ROOT}/datasets/sft/qa-en.train.jsonl"]
        val = ["{ROOT}/datasets/sft/qa-en.val.jsonl"]
        block_size = 96
        [peft]
        method = "lora"
        r = 4
        alpha = 8.0
        targets = ["q_proj", "v_proj"]
        [train]
        steps = 30
        batch_size = 8
        lr = 1e-2
        warmup_steps = 2
        eval_every = 10
        eval_batches = 2
        progress = false
        [eval]
        max_examples = 8
        max_new_tokens = 6
        "#,
        out = dir.join("run").display(),
        base = base.display(),
    );
    let cfg = SftConfig::parse(&recipe, &[])?;
    let report = sft(&cfg, choice, false)?;
    let losses = &report.run.losses;
    let (first, last) = (losses[0], losses[losses.len() - 1]);
    let share = 100.0 * report.trainable_params as f64 / report.total_params as f64;
    println!(
        "LoRA trains {} of {} parameters ({share:.2} %)",
        report.trainable_params, report.total_params
    );
    println!(
        "answer loss: {first:?} -> {last:?}; val: {:?}",
        report.run.evals
    );
    println!("exact match: {:?}", report.exact_match);

    // The checkpoint rebuilds base + adapters; export them for Python `peft`, then merge.
    let ckpt = report.run.checkpoint.ok_or("no checkpoint written")?;
    let (tuned, peft_cfg) = load_decoder(&ckpt, &device)?;
    let peft_cfg = peft_cfg.ok_or("the checkpoint has no adapter")?;
    let adapter = dir.join("adapter");
    peft::save_adapter(&tuned, &peft_cfg, &adapter)?;
    println!(
        "{:?} r={} adapter in PEFT format: {}",
        peft_cfg.method,
        peft_cfg.r,
        adapter.display()
    );
    let plain = merged(tuned.clone());
    save_native(&plain, dir.join("merged"))?;

    let tok = TextTokenizer::load(&tokenizer)?;
    let prompt = tok.encode("Bevo works as a singer. Who is Bevo's best friend?")?;
    let opts = GenerateOptions {
        max_new_tokens: 6,
        ..GenerateOptions::default()
    };
    for (name, model) in [("adapted", &tuned), ("merged", &plain)] {
        let ids = generate(model, std::slice::from_ref(&prompt), &opts, Some(&tok))?;
        println!("{name:>8}: {:?}", tok.decode(&ids[0], true)?);
    }
    Ok(())
}
