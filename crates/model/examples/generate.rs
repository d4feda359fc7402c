//! Build a tiny LLaMA-style decoder from a config, generate from it, save and reload it;
//! then open the committed Hugging Face fixture `fixtures/models/llama-eval` with its
//! `tokenizer.json`, generate text and measure perplexity.
//!
//! Run: `cargo run --release -p manabi-model --example generate`
//! (`MANABI_DEVICE=ndarray|wgpu|cuda` picks another backend when compiled in.)
//!
//! The models are random, so the text is noise: the example shows the calls.

use manabi_model::{
    DecoderLm, DeviceChoice, GenerateOptions, ModelConfig, evaluate, generate, load_model,
    save_native,
};
use manabi_tokenize::TextTokenizer;

const LLAMA: &str = r#"
family = "llama"
vocab_size = 256
max_positions = 64
d_model = 32
n_layers = 2
n_heads = 4
n_kv_heads = 2
d_ff = 64
positions = "rope"
norm = "rmsnorm"
activation = "swiglu"
tie_embeddings = true
"#;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let device = DeviceChoice::from_env()?.resolve()?;

    // 1. A model from a config (the same keys as `[model]` in a recipe / `model.toml`).
    let cfg: ModelConfig = toml::from_str(LLAMA)?;
    cfg.validate()?;
    let model = DecoderLm::init(&cfg, &device, 42);
    println!("{:?} decoder, {} parameters", cfg.family, cfg.n_params());

    let prompts = vec![vec![5, 17, 42], vec![9, 1]];
    let greedy = GenerateOptions {
        max_new_tokens: 8,
        ..GenerateOptions::default()
    };
    let out = generate(&model, &prompts, &greedy, None)?;
    for (p, o) in prompts.iter().zip(&out) {
        println!("greedy {p:?} -> {o:?}");
    }

    // 2. Save in the manabi layout (`model.toml` + `model.bpk`) and load back.
    let dir = std::env::temp_dir().join("manabi-example-model");
    save_native(&model, &dir)?;
    let again = load_model(&dir, &device)?;
    assert_eq!(generate(&again, &prompts, &greedy, None)?, out);
    println!("saved to {} and reloaded: same tokens", dir.display());

    // 3. A Hugging Face folder (config.json + model.safetensors) and its tokenizer.
    let hf = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../fixtures/models/llama-eval"
    );
    let model = load_model(hf, &device)?;
    let tok = TextTokenizer::load(format!("{hf}/tokenizer.json"))?;
    let prompt = tok.encode("The wind was cold.")?;
    let sampled = GenerateOptions {
        max_new_tokens: 12,
        temperature: 0.8,
        top_k: Some(50),
        seed: 1,
        eos_ids: tok.token_id("<eos>").into_iter().collect(),
        ..GenerateOptions::default()
    };
    let new = generate(&model, std::slice::from_ref(&prompt), &sampled, Some(&tok))?;
    println!("llama-eval: {prompt:?} -> {:?}", new[0]);
    println!("  text: {:?}", tok.decode(&new[0], true)?);

    // 4. Perplexity on the committed evaluation text, in windows of 64 tokens.
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../fixtures/models/eval.txt"
    ))?;
    let r = evaluate(&model, &tok.encode(&text)?, 64, 4)?;
    println!(
        "eval.txt: loss {:.4}, perplexity {:.1} over {} tokens in {} windows",
        r.loss, r.perplexity, r.tokens, r.windows
    );
    Ok(())
}
