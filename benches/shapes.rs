//! The real model shapes of the benchmarks (`--shape`): random weights of them, no
//! download.

use clap::ValueEnum;

/// A real model's shape (random weights of it).
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Shape {
    /// Qwen2.5-0.5B: d 896, 24 layers, 14 / 2 heads, d_ff 4,864, vocab 151,936, tied.
    #[value(name = "qwen2.5-0.5b")]
    Qwen05,
    /// Llama-3.2-1B: d 2,048, 16 layers, 32 / 8 heads, d_ff 8,192, vocab 128,256, tied.
    #[value(name = "llama-3.2-1b")]
    Llama1b,
}

impl Shape {
    pub fn name(self) -> &'static str {
        match self {
            Shape::Qwen05 => "Qwen2.5-0.5B",
            Shape::Llama1b => "Llama-3.2-1B",
        }
    }

    /// The Hugging Face `config.json` of the shape, positions for `context` tokens.
    pub fn config(self, context: usize) -> serde_json::Value {
        let positions = context.max(512);
        match self {
            Shape::Qwen05 => serde_json::json!({
                "model_type": "qwen2", "vocab_size": 151_936, "hidden_size": 896,
                "intermediate_size": 4864, "num_hidden_layers": 24, "num_attention_heads": 14,
                "num_key_value_heads": 2, "max_position_embeddings": positions,
                "tie_word_embeddings": true, "rope_theta": 1_000_000.0, "rms_norm_eps": 1e-6,
            }),
            Shape::Llama1b => serde_json::json!({
                "model_type": "llama", "vocab_size": 128_256, "hidden_size": 2048,
                "intermediate_size": 8192, "num_hidden_layers": 16, "num_attention_heads": 32,
                "num_key_value_heads": 8, "max_position_embeddings": positions,
                "tie_word_embeddings": true, "rope_theta": 500_000.0, "rms_norm_eps": 1e-5,
            }),
        }
    }
}
