//! One training step as the trainer runs it (loss and gradients, global-norm clipping,
//! AdamW), timed on random token batches; shared by `bench-train` and `bench-backends`.

use std::time::Instant;

use burn::optim::{GradientsAccumulator, GradientsParams, ModuleOptimizer};
use burn::prelude::*;
use manabi_model::{DecoderLm, ModelConfig};
use manabi_objectives::config::TrainConfig;
use manabi_objectives::data::LmBatch;
use manabi_objectives::loss::clm_loss_sum;
use manabi_objectives::optim::{build_optimizer, global_norm, scale_grads};
use manabi_objectives::trainer::loss_and_grads;
pub use manabi_objectives::trainer::peak_flops;

/// Learning rate of every timed step (its value does not change the work done).
const LR: f64 = 1e-4;

/// One benchmark configuration (GPT-2 layout).
#[derive(Debug, Clone)]
pub struct Shape {
    pub name: &'static str,
    pub vocab: usize,
    pub layers: usize,
    pub heads: usize,
    pub width: usize,
    pub block: usize,
    pub batch: usize,
    pub steps: usize,
}

/// The benchmark's model configs, as `--config` names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Config {
    A,
    B,
    Gpt2Small,
}

impl Shape {
    /// The shape of `config`, with its number of timed steps from `steps` (A, B, GPT-2
    /// small).
    pub fn get(config: Config, steps: [usize; 3]) -> Self {
        let (name, vocab, layers, heads, width, block, batch, steps) = match config {
            Config::A => ("A", 65, 4, 4, 128, 64, 12, steps[0]),
            Config::B => ("B", 65, 6, 6, 384, 256, 8, steps[1]),
            Config::Gpt2Small => ("gpt2-small", 50257, 12, 12, 768, 1024, 1, steps[2]),
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
    pub fn hf_json(&self) -> serde_json::Value {
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

    pub fn tokens_per_step(&self) -> usize {
        self.batch * self.block
    }
}

/// What one side measured on one config.
#[derive(Debug, Clone, Default)]
pub struct Measured {
    pub params: usize,
    pub ms_per_step: f64,
    pub tokens_per_s: f64,
    pub first_loss: f64,
    /// forward+loss, backward, optimizer (clip + AdamW), ms.
    pub split: Option<[f64; 3]>,
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

pub fn run_manabi(s: &Shape, device: &Device, warmup: usize, split: bool) -> Measured {
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
