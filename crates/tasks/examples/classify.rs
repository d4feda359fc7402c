//! Sentiment classification in a page: a tiny random LLaMA-style body is saved as a model
//! folder, then a task recipe (the TOML of `manabi task --config`) puts a `score` head on
//! it and trains body and head on the committed English reviews. `train_task` evaluates
//! the last checkpoint on the validation file (accuracy, macro-F1, the majority
//! baseline, predictions next to gold labels); the checkpoint then labels new sentences
//! on its own through `evaluate_task`.
//!
//! Run: `cargo run --release -p manabi-tasks --example classify`
//!
//! Writes into `$TMPDIR/manabi-example-classify`; takes a few seconds on two CPU cores.
//! The body is random and trains for 30 steps, so accuracy stays near chance: the example
//! shows the calls.

use manabi_model::{DecoderLm, DeviceChoice, ModelConfig, save_native};
use manabi_objectives::Recipe;
use manabi_tasks::{TaskConfig, evaluate_task, train_task};

const ROOT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../..");

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = std::env::temp_dir().join("manabi-example-classify");
    let _ = std::fs::remove_dir_all(&dir);
    let choice = DeviceChoice::from_env()?;
    let device = choice.resolve()?;

    // A body folder: `model.toml` + `model.bpk` and a 512-token BPE tokenizer.
    let base = dir.join("base");
    let cfg: ModelConfig = toml::from_str(
        "family = \"llama\"\nvocab_size = 512\nmax_positions = 128\nd_model = 32\n\
         n_layers = 2\nn_heads = 4\nn_kv_heads = 2\nd_ff = 64\npositions = \"rope\"\n\
         norm = \"rmsnorm\"\nactivation = \"swiglu\"\ntie_embeddings = true",
    )?;
    save_native(&DecoderLm::init(&cfg, &device, 3), &base)?;
    std::fs::copy(
        format!("{ROOT}/fixtures/tokenize/bpe-en/tokenizer.json"),
        base.join("tokenizer.json"),
    )?;

    let recipe = format!(
        r#"
        [run]
        out = "{out}"
        seed = 5
        [model]
        path = "{base}"
        [task]
        kind = "classification"
        labels = ["negative", "positive"]
        max_length = 48
        [data]
        train = ["{ROOT}/datasets/tasks/sentiment-en.train.jsonl"]
        val = ["{ROOT}/datasets/tasks/sentiment-en.val.jsonl"]
        [train]
        steps = 30
        batch_size = 16
        lr = 3e-3
        warmup_steps = 2
        weight_decay = 0.0
        eval_every = 30
        eval_batches = 2
        checkpoint_every = 30
        progress = false
        "#,
        out = dir.join("run").display(),
        base = base.display(),
    );
    let cfg = TaskConfig::parse(&recipe, &[])?;
    let report = train_task(&cfg, choice, false)?;
    let losses = &report.run.losses;
    println!(
        "{} trainable parameters; labels {:?}; loss {:?} -> {:?}",
        report.trainable_params,
        report.label_counts,
        losses.first(),
        losses.last()
    );
    for split in &report.splits {
        println!(
            "{}: {} examples, {:?} (majority baseline {:?}); predictions in {}",
            split.name,
            split.examples,
            split.metrics,
            split.majority_baseline,
            split.predictions.display()
        );
    }

    // The checkpoint alone (task.toml, head.toml, tokenizer.json) labels new sentences.
    let ckpt = report.run.checkpoint.ok_or("no checkpoint written")?;
    let input = dir.join("new.jsonl");
    std::fs::write(
        &input,
        "{\"sentence\": \"The food was wonderful and the staff were kind.\"}\n\
         {\"sentence\": \"Honestly, the hotel was dreadful.\"}\n",
    )?;
    let out = dir.join("new-predictions.jsonl");
    evaluate_task(&ckpt, &[input], &out, 8, &device)?;
    print!("{}", std::fs::read_to_string(&out)?);
    Ok(())
}
