//! `manabi plan --model FOLDER --tokens 2.5B [...]`: parameters, training FLOPs, the
//! Chinchilla budget, memory, time and data parallelism for training a model on a token
//! budget ([`manabi_model::plan`]); `--measure` times forward + backward steps of the
//! model cut to its first layers on the device and scales them to the full depth.

use std::path::PathBuf;
use std::time::Instant;

use burn::tensor::Device;
use clap::Args;
use manabi_model::plan::{
    DEFAULT_BANDWIDTH_GB_PER_S, Dtype, LoraOptions, Plan, PlanOptions, Throughput,
};
use manabi_model::{DecoderLm, DeviceChoice, Family, ModelConfig};
use manabi_objectives::data::LmBatch;

/// Untimed steps before the timed ones (lazy initialisation, kernel compilation and
/// autotuning on a GPU, the allocator's first growth on a CPU).
const WARMUP_STEPS: usize = 2;

#[derive(Debug, Args)]
pub struct PlanArgs {
    /// Model folder: manabi model or checkpoint (model.toml), run folder (its newest
    /// checkpoint) or Hugging Face folder (config.json).
    #[arg(long, required_unless_present = "config", conflicts_with = "config")]
    pub model: Option<PathBuf>,
    /// A config file instead of a folder: model.toml, a recipe with a [model] table
    /// (configs/pretrain/*.toml) or a Hugging Face config.json.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Training tokens: 20000, 1e9, 2.5B, 300M, 1.4T (k, M, B/G, T suffixes).
    #[arg(long, value_parser = parse_tokens)]
    pub tokens: u64,
    /// Sequences per step on each device.
    #[arg(long, default_value_t = 1)]
    pub batch: usize,
    /// Tokens per sequence (default: the model's max_positions).
    #[arg(long)]
    pub seq_len: Option<usize>,
    /// Base weights: f32, or bf16 (mixed precision: f32 master weights and moments).
    #[arg(long, default_value = "f32")]
    pub dtype: Dtype,
    /// Plan LoRA of this rank instead of full training.
    #[arg(long)]
    pub lora_rank: Option<usize>,
    /// LoRA target modules by Hugging Face name, comma-separated (default: the query and
    /// value projections, c_attn for GPT-2, q_proj,v_proj for LLaMA).
    #[arg(long, value_delimiter = ',', requires = "lora_rank")]
    pub lora_targets: Vec<String>,
    /// Plan gradient checkpointing (keep layer inputs, recompute the rest).
    #[arg(long)]
    pub checkpointing: bool,
    /// Data-parallel GPUs.
    #[arg(long, default_value_t = 1)]
    pub gpus: usize,
    /// All-reduce bandwidth between the GPUs in GB/s (gigabytes a second; ~100 for
    /// NVLink, ~10–25 for PCIe, ~3–50 across machines).
    #[arg(long, default_value_t = DEFAULT_BANDWIDTH_GB_PER_S)]
    pub bandwidth_gbps: f64,
    /// Training tokens a second of one device, for the time (e.g. from a pretrain log).
    #[arg(long, value_parser = parse_rate, conflicts_with = "measure")]
    pub tokens_per_second: Option<f64>,
    /// Measure the tokens a second on --device: forward + loss + backward of the model
    /// built with 1 and 2 of its layers, at --batch × --seq-len, scaled to every layer.
    #[arg(long)]
    pub measure: bool,
    /// Timed steps at each depth for --measure (after 2 untimed).
    #[arg(long, default_value_t = 3)]
    pub measure_steps: usize,
    /// Print the plan as JSON.
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: &PlanArgs, device: Option<DeviceChoice>) -> anyhow::Result<()> {
    let Some(path) = args.model.as_ref().or(args.config.as_ref()) else {
        anyhow::bail!("give --model FOLDER or --config FILE");
    };
    let cfg = manabi_model::plan::read_config(path)?;
    let seq_len = args.seq_len.unwrap_or(cfg.max_positions);
    let mut opts = PlanOptions {
        tokens: args.tokens,
        batch: args.batch,
        seq_len: Some(seq_len),
        dtype: args.dtype,
        lora: args.lora_rank.map(|rank| LoraOptions {
            rank,
            targets: args.lora_targets.clone(),
        }),
        checkpointing: args.checkpointing,
        gpus: args.gpus,
        bandwidth_gb_per_s: args.bandwidth_gbps,
        throughput: args
            .tokens_per_second
            .map(|tokens_per_second| Throughput::Given { tokens_per_second }),
    };
    // Refuse bad input before a measurement spends minutes.
    Plan::new(&cfg, &opts)?;
    if args.measure {
        let choice = device.unwrap_or(DeviceChoice::Cpu);
        opts.throughput = Some(measure(
            &cfg,
            args.batch,
            seq_len,
            choice,
            args.measure_steps,
        )?);
    }
    let plan = Plan::new(&cfg, &opts)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&plan)?);
    } else {
        print!("{plan}");
    }
    Ok(())
}

/// Training tokens a second of `cfg` on `choice`: a decoder built with 1 and with 2
/// layers (1 when it has only one), `WARMUP_STEPS` untimed and `steps` timed steps of
/// forward, summed cross-entropy and backward (no optimizer step) each, on random tokens
/// at `batch × seq`. The difference of the two depths is one layer's time, the rest is
/// the embeddings, head and loss; the full step is the rest plus `n_layers` layers. The
/// model is f32 whatever the planned dtype (manabi trains in f32).
fn measure(
    cfg: &ModelConfig,
    batch: usize,
    seq: usize,
    choice: DeviceChoice,
    steps: usize,
) -> anyhow::Result<Throughput> {
    if !matches!(cfg.family, Family::Gpt2 | Family::Llama) {
        return Ok(Throughput::NotMeasured {
            reason: format!(
                "--measure builds decoder families (gpt2, llama) only, not {}; give \
                 --tokens-per-second",
                cfg.family
            ),
        });
    }
    let steps = steps.max(1);
    let ad = choice.resolve()?.autodiff();
    let depths: Vec<usize> = if cfg.n_layers >= 2 {
        vec![1, 2]
    } else {
        vec![1]
    };
    let data = random_batch(batch, seq, cfg.vocab_size);
    let mut seconds = Vec::new();
    for &layers in &depths {
        let mut small = cfg.clone();
        small.n_layers = layers;
        let model = DecoderLm::init(&small, &ad, 0);
        for _ in 0..WARMUP_STEPS {
            step(&model, &data, &ad);
        }
        sync(&ad)?;
        let t = Instant::now();
        for _ in 0..steps {
            step(&model, &data, &ad);
        }
        sync(&ad)?;
        seconds.push(t.elapsed().as_secs_f64() / steps as f64);
    }
    // `depths` is [1] or [1, 2]: `seconds` has one or two entries.
    let t1 = seconds[0];
    let (fixed, per_layer) = match seconds.get(1) {
        Some(&t2) => split_layers(t1, t2),
        None => (0.0, t1),
    };
    let step_seconds = fixed + cfg.n_layers as f64 * per_layer;
    Ok(Throughput::Measured {
        tokens_per_second: (batch * seq) as f64 / step_seconds,
        device: choice.to_string(),
        layers_timed: depths.len(),
        steps,
        seconds_per_layer: per_layer,
        seconds_fixed: fixed,
    })
}

/// `(outside the layers, per layer)` from the step times at 1 and 2 layers: a layer is
/// `t2 − t1`, the rest `t1 − layer`. Timing noise can break that: when the second layer
/// seems free (`t2 ≤ t1`) the layers are taken as negligible; when it seems to cost more
/// than the whole first step, the rest is taken as 0 and a layer as `t2 / 2`.
fn split_layers(t1: f64, t2: f64) -> (f64, f64) {
    let layer = (t2 - t1).max(0.0);
    let rest = t1 - layer;
    if rest >= 0.0 {
        (rest, layer)
    } else {
        (0.0, t2 / 2.0)
    }
}

/// Forward, summed next-token cross-entropy and backward, as the Trainer's step does
/// them (the gradients are dropped).
fn step(model: &DecoderLm, data: &LmBatch, ad: &Device) {
    let _ = manabi_objectives::trainer::loss_and_grads(model, std::slice::from_ref(data), ad);
}

/// Waits for the device to finish the queued work, so the clock measures it.
fn sync(ad: &Device) -> anyhow::Result<()> {
    ad.sync()
        .map_err(|e| anyhow::anyhow!("device sync: {}", e.to_string().replace('\n', " ")))
}

/// Random tokens (xorshift64*, fixed seed): `batch` rows of `seq` inputs and their
/// next-token targets.
fn random_batch(batch: usize, seq: usize, vocab: usize) -> LmBatch {
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = || {
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        (state.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 33) as usize % vocab.max(1)
    };
    let rows: Vec<Vec<u32>> = (0..batch)
        .map(|_| (0..=seq).map(|_| next() as u32).collect())
        .collect();
    LmBatch {
        batch,
        seq,
        inputs: rows.iter().flat_map(|r| r[..seq].to_vec()).collect(),
        targets: rows
            .iter()
            .flat_map(|r| r[1..].iter().map(|&x| x as i64))
            .collect(),
        positions: None,
        documents: None,
    }
}

/// A count as people write it: `20000`, `1_000_000`, `1,000`, `1e9`, `2.5B`, `300M`,
/// `20k`, `1.4T` (k = 10³, M = 10⁶, B or G = 10⁹, T = 10¹²; case-insensitive).
fn parse_count(s: &str) -> Result<f64, String> {
    let t: String = s
        .trim()
        .chars()
        .filter(|c| *c != '_' && *c != ',')
        .collect();
    let (number, scale) = match t.chars().last().map(|c| c.to_ascii_lowercase()) {
        Some('k') => (&t[..t.len() - 1], 1e3),
        Some('m') => (&t[..t.len() - 1], 1e6),
        Some('b' | 'g') => (&t[..t.len() - 1], 1e9),
        Some('t') => (&t[..t.len() - 1], 1e12),
        _ => (t.as_str(), 1.0),
    };
    let x: f64 = number
        .trim()
        .parse()
        .map_err(|_| format!("`{s}` is not a count (e.g. 20000, 1e9, 2.5B, 300M)"))?;
    let x = x * scale;
    if !x.is_finite() || x < 0.0 {
        return Err(format!("`{s}` is not a count of 0 or more"));
    }
    Ok(x)
}

/// `--tokens`: a whole number of tokens (the budget 0 is refused by the plan).
fn parse_tokens(s: &str) -> Result<u64, String> {
    let x = parse_count(s)?;
    if x > u64::MAX as f64 {
        return Err(format!("`{s}` tokens is too many"));
    }
    Ok(x.round() as u64)
}

/// `--tokens-per-second`: a positive rate (`12000`, `12.5k`).
fn parse_rate(s: &str) -> Result<f64, String> {
    let x = parse_count(s)?;
    if x <= 0.0 {
        return Err(format!("`{s}` tokens a second is not positive"));
    }
    Ok(x)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_take_exponents_and_suffixes() {
        for (s, want) in [
            ("20000", 20_000),
            ("1e9", 1_000_000_000),
            ("2.5B", 2_500_000_000),
            ("300M", 300_000_000),
            ("20k", 20_000),
            ("1.4T", 1_400_000_000_000),
            ("1_000", 1_000),
            ("3,000,000", 3_000_000),
            (" 7g ", 7_000_000_000),
        ] {
            assert_eq!(parse_tokens(s), Ok(want), "{s}");
        }
        for bad in ["", "B", "ten", "-5", "1e400", "nan"] {
            assert!(parse_tokens(bad).is_err(), "{bad}");
        }
        assert_eq!(parse_rate("12.5k"), Ok(12_500.0));
        assert!(parse_rate("0").is_err());
    }

    #[test]
    fn layer_time_is_the_difference_of_two_depths() {
        assert_eq!(split_layers(3.0, 4.0), (2.0, 1.0));
        assert_eq!(split_layers(3.0, 2.5), (3.0, 0.0));
        assert_eq!(split_layers(1.0, 4.0), (0.0, 2.0));
    }
}
