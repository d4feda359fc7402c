//! A training plan: what training a model on a token budget costs before a step is run —
//! parameters, training FLOPs (Kaplan et al. 2020, "Scaling Laws for Neural Language
//! Models", Table 1), the compute-optimal budget (Hoffmann et al. 2022, "Chinchilla"),
//! memory (weights, gradients, AdamW state, and activations after Korthikanti et al.
//! 2022, "Reducing Activation Recomputation in Large Transformer Models", §4.1), time
//! from a throughput, and data parallelism over N GPUs. Pure arithmetic on a
//! [`ModelConfig`]; measuring a throughput is the CLI's (`manabi plan --measure`).
//! docs/guide/plan.md explains every number.

use std::fmt;
use std::path::Path;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::config::{Family, ModelConfig, Positions};
use crate::error::{ModelError, Result};
use crate::open::Layout;

/// Training tokens per parameter at the compute-optimal point (Hoffmann et al. 2022,
/// Table 3: ≈ 20 over their fits).
pub const CHINCHILLA_TOKENS_PER_PARAM: f64 = 20.0;

/// Default all-reduce bandwidth in GB/s (10⁹ bytes a second): the order of NVLink
/// between GPUs of one node; a PCIe or network link is 10–50× slower.
pub const DEFAULT_BANDWIDTH_GB_PER_S: f64 = 100.0;

const GIB: f64 = 1024.0 * 1024.0 * 1024.0;

/// The number type of the base weights.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Dtype {
    /// f32 everywhere (what manabi trains in today).
    F32,
    /// bf16 weights, gradients and activations with f32 master weights and AdamW moments
    /// (mixed precision).
    Bf16,
}

impl Dtype {
    /// Bytes of one value.
    pub fn bytes(self) -> f64 {
        match self {
            Self::F32 => 4.0,
            Self::Bf16 => 2.0,
        }
    }
}

impl FromStr for Dtype {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "f32" | "fp32" | "float32" => Ok(Self::F32),
            "bf16" | "bfloat16" => Ok(Self::Bf16),
            other => Err(format!("unknown dtype `{other}` (expected f32 or bf16)")),
        }
    }
}

impl fmt::Display for Dtype {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::F32 => "f32",
            Self::Bf16 => "bf16",
        })
    }
}

/// LoRA on some `Linear`s: rank and target modules by Hugging Face name, as
/// `peft.targets` takes them (`q_proj`, `c_attn`, or a full module name).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LoraOptions {
    /// Rank r of every adapter.
    pub rank: usize,
    /// Target modules; empty = PEFT's default, the query and value projections.
    pub targets: Vec<String>,
}

/// Where the tokens-per-second of the time estimate come from.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "source", rename_all = "snake_case")]
pub enum Throughput {
    /// Given by the user (`--tokens-per-second`).
    Given {
        /// Training tokens a second on one device.
        tokens_per_second: f64,
    },
    /// Measured on a device: forward + loss + backward of the model cut to 1 and 2
    /// layers, the per-layer time scaled to the full depth (`--measure`).
    Measured {
        /// Training tokens a second on one device, at the full depth.
        tokens_per_second: f64,
        /// The device (as `--device` names it).
        device: String,
        /// Most layers built for the measurement.
        layers_timed: usize,
        /// Timed steps at each depth (after the warm-up).
        steps: usize,
        /// Seconds a step spends in each layer.
        seconds_per_layer: f64,
        /// Seconds a step spends outside the layers (embeddings, head, loss).
        seconds_fixed: f64,
    },
    /// Not measured, with the reason (e.g. an encoder family).
    NotMeasured {
        /// Why.
        reason: String,
    },
}

impl Throughput {
    /// The tokens a second, when known.
    pub fn tokens_per_second(&self) -> Option<f64> {
        match self {
            Self::Given { tokens_per_second }
            | Self::Measured {
                tokens_per_second, ..
            } => Some(*tokens_per_second),
            Self::NotMeasured { .. } => None,
        }
    }
}

/// What is planned: the budget, the batch, and how the model is trained.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PlanOptions {
    /// Training tokens (D).
    pub tokens: u64,
    /// Sequences per step on each device (no gradient accumulation).
    pub batch: usize,
    /// Tokens per sequence; `None` = the model's `max_positions`.
    pub seq_len: Option<usize>,
    /// Base weights in f32, or bf16 mixed precision.
    pub dtype: Dtype,
    /// LoRA instead of full training.
    pub lora: Option<LoraOptions>,
    /// Gradient checkpointing (keep only each layer's input, recompute the rest).
    pub checkpointing: bool,
    /// Data-parallel devices (1 = one device).
    pub gpus: usize,
    /// All-reduce bandwidth in GB/s (10⁹ bytes a second).
    pub bandwidth_gb_per_s: f64,
    /// Training throughput of one device, for the time estimate.
    pub throughput: Option<Throughput>,
}

impl PlanOptions {
    /// `tokens` on one device in f32, batch 1 at the model's longest sequence, full
    /// training, no checkpointing, no throughput.
    pub fn new(tokens: u64) -> Self {
        Self {
            tokens,
            batch: 1,
            seq_len: None,
            dtype: Dtype::F32,
            lora: None,
            checkpointing: false,
            gpus: 1,
            bandwidth_gb_per_s: DEFAULT_BANDWIDTH_GB_PER_S,
            throughput: None,
        }
    }
}

/// Parameter counts (a tied embedding counted once).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Params {
    /// Every parameter: [`ModelConfig::n_params`].
    pub total: u64,
    /// Vocabulary and position tables: the token embedding, a learned position table,
    /// BERT's token types, and an untied output head (a vocabulary matrix too).
    pub embedding: u64,
    /// `total - embedding`: Kaplan et al.'s N.
    pub non_embedding: u64,
    /// What the optimizer updates: `total`, or the LoRA adapters.
    pub trainable: u64,
}

/// Training FLOPs (multiply-add = 2 FLOPs). Kaplan et al. 2020, Table 1: a forward pass
/// costs `2·N + 2·n_layer·n_ctx·d_attn` FLOPs per token (the matmuls of N weights, and
/// the attention scores QKᵀ and their product with V over a context of `n_ctx`), and the
/// backward twice the forward, hence `6·N + 6·n_layer·n_ctx·d_attn` per token and
/// `C ≈ 6·N·D` for D tokens.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Flops {
    /// `6·N`, N = non-embedding parameters (Kaplan's N).
    pub per_token_non_embedding: f64,
    /// `6·N`, N = all parameters (Chinchilla's N; counts the output head's matmul).
    pub per_token_all: f64,
    /// `6·n_layer·seq_len·d_attn`, `d_attn = n_heads·head_dim`: the attention scores.
    pub per_token_attention: f64,
    /// `6·N·D`, N non-embedding.
    pub non_embedding: f64,
    /// `6·N·D`, all parameters.
    pub all_params: f64,
    /// `(6·N + 6·n_layer·seq_len·d_attn)·D`, all parameters: the fullest estimate.
    pub with_attention: f64,
}

/// The compute-optimal budget (Hoffmann et al. 2022): ≈ 20 tokens per parameter.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Chinchilla {
    /// Tokens per parameter at the optimum (20).
    pub tokens_per_param: f64,
    /// `20·N`: the compute-optimal tokens for this model.
    pub optimal_tokens: f64,
    /// Budget ÷ optimal tokens (> 1: more tokens than compute-optimal, as small models
    /// trained for inference are).
    pub budget_ratio: f64,
    /// `D / 20`: the compute-optimal parameter count for this budget.
    pub optimal_params_for_budget: f64,
}

/// LoRA as planned: the adapted `Linear`s and their parameters.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LoraPlan {
    /// Rank r.
    pub rank: usize,
    /// Target modules (after the default was filled in).
    pub targets: Vec<String>,
    /// manabi `Linear`s that get an adapter (GPT-2's `c_attn` is three: Q, K, V).
    pub adapted_linears: usize,
    /// `Σ r·(in + out)` over the adapted `Linear`s.
    pub trainable: u64,
}

/// Training memory of one way of training, in bytes.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Memory {
    /// e.g. `full f32`, `LoRA r=8 bf16`.
    pub label: String,
    /// Base weights' dtype.
    pub dtype: Dtype,
    /// LoRA (frozen base) or full training.
    pub lora: bool,
    /// Every weight in the base dtype (with LoRA: the frozen base and the adapters).
    pub weights: u64,
    /// One gradient per trainable parameter, in the base dtype.
    pub gradients: u64,
    /// AdamW's two f32 moments per trainable parameter (8 bytes).
    pub optimizer: u64,
    /// bf16 only: an f32 copy of each trainable parameter that the update is applied to.
    pub master_weights: u64,
    /// Activations kept for the backward of one sequence, no checkpointing.
    pub activations_per_sequence: u64,
    /// The same with gradient checkpointing.
    pub activations_per_sequence_checkpointed: u64,
    /// Weights, gradients, optimizer, master weights, and `batch` sequences' activations.
    pub total: u64,
    /// The same with gradient checkpointing.
    pub total_checkpointed: u64,
}

/// Time for the budget on one device.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TimePlan {
    /// Training tokens a second of one device.
    pub tokens_per_second: f64,
    /// `tokens / tokens_per_second`.
    pub seconds: f64,
    /// With checkpointing: each layer's forward runs twice, ≈ 4/3 of the time (a forward
    /// is a third of forward + backward). Only when checkpointing is planned and the
    /// throughput was measured without it.
    pub seconds_checkpointed: Option<f64>,
    /// `FLOPs per token (with attention) × tokens_per_second`: the model FLOP rate the
    /// throughput stands for (compare with the device's peak for the MFU).
    pub model_flops_per_second: f64,
}

/// Data parallelism over `gpus` devices, each with a full replica and `batch` sequences.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DataParallel {
    /// Devices.
    pub gpus: usize,
    /// All-reduce bandwidth, GB/s.
    pub bandwidth_gb_per_s: f64,
    /// Memory of each device: a full replica (the planned run's total).
    pub memory_per_gpu: u64,
    /// With ZeRO stage 1: the optimizer state (moments and master weights) split over the
    /// devices.
    pub memory_per_gpu_zero1: u64,
    /// A ring all-reduce of the gradients sends and receives `2·(N−1)/N` of them per
    /// device: `2·(N−1)/N · trainable · gradient bytes` per step.
    pub allreduce_bytes_per_step: f64,
    /// `allreduce_bytes_per_step / bandwidth`.
    pub allreduce_seconds_per_step: f64,
    /// Steps for the budget: `⌈tokens / (gpus·batch·seq_len)⌉`.
    pub steps: u64,
    /// With a throughput: the single-device time ÷ N.
    pub ideal_seconds: Option<f64>,
    /// With a throughput: `steps × (batch·seq_len / tokens_per_second + all-reduce)`,
    /// communication not overlapped with the backward (an upper bound).
    pub seconds_with_allreduce: Option<f64>,
}

/// Everything `manabi plan` prints, computed from a config and [`PlanOptions`].
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Plan {
    /// The model.
    pub config: ModelConfig,
    /// Training tokens (D).
    pub tokens: u64,
    /// Sequences per step on each device.
    pub batch: usize,
    /// Tokens per sequence.
    pub seq_len: usize,
    /// Base weights' dtype.
    pub dtype: Dtype,
    /// Gradient checkpointing planned.
    pub checkpointing: bool,
    /// Parameter counts.
    pub params: Params,
    /// Training FLOPs for the budget.
    pub flops: Flops,
    /// The compute-optimal budget.
    pub chinchilla: Chinchilla,
    /// LoRA, when planned.
    pub lora: Option<LoraPlan>,
    /// Full f32, full bf16, and with LoRA LoRA f32 and LoRA bf16.
    pub memory: Vec<Memory>,
    /// The planned run's memory (its dtype, LoRA or not).
    pub run_memory: Memory,
    /// Its total, with or without checkpointing as planned.
    pub run_bytes: u64,
    /// The throughput, when given, measured or not measurable.
    pub throughput: Option<Throughput>,
    /// Time on one device, when a throughput is known.
    pub time: Option<TimePlan>,
    /// Data parallelism (one device: no all-reduce).
    pub data_parallel: DataParallel,
}

impl Plan {
    /// The plan of training `cfg` as `opts` says. Errors: an invalid config, a budget or
    /// batch of 0, a sequence longer than `max_positions`, no device, a bandwidth or
    /// throughput that is not positive, LoRA on an encoder family, rank 0 or an unknown
    /// target module.
    pub fn new(cfg: &ModelConfig, opts: &PlanOptions) -> Result<Self> {
        cfg.validate()?;
        let seq_len = opts.seq_len.unwrap_or(cfg.max_positions);
        check_options(cfg, opts, seq_len)?;
        let total = cfg.n_params() as u64;
        let embedding = embedding_params(cfg);
        let lora = opts.lora.as_ref().map(|l| lora_plan(cfg, l)).transpose()?;
        let params = Params {
            total,
            embedding,
            non_embedding: total.saturating_sub(embedding),
            trainable: lora.as_ref().map_or(total, |l| l.trainable),
        };
        let d = opts.tokens as f64;
        let per_token_attention =
            6.0 * attention_layers(cfg) as f64 * seq_len as f64 * attention_width(cfg) as f64;
        let flops = Flops {
            per_token_non_embedding: 6.0 * params.non_embedding as f64,
            per_token_all: 6.0 * total as f64,
            per_token_attention,
            non_embedding: 6.0 * params.non_embedding as f64 * d,
            all_params: 6.0 * total as f64 * d,
            with_attention: (6.0 * total as f64 + per_token_attention) * d,
        };
        let optimal_tokens = CHINCHILLA_TOKENS_PER_PARAM * total as f64;
        let chinchilla = Chinchilla {
            tokens_per_param: CHINCHILLA_TOKENS_PER_PARAM,
            optimal_tokens,
            budget_ratio: d / optimal_tokens,
            optimal_params_for_budget: d / CHINCHILLA_TOKENS_PER_PARAM,
        };
        let row =
            |lora: Option<&LoraPlan>, dtype| memory(cfg, total, lora, dtype, opts.batch, seq_len);
        let mut rows = vec![row(None, Dtype::F32), row(None, Dtype::Bf16)];
        if let Some(l) = &lora {
            rows.push(row(Some(l), Dtype::F32));
            rows.push(row(Some(l), Dtype::Bf16));
        }
        let run_memory = row(lora.as_ref(), opts.dtype);
        let run_bytes = if opts.checkpointing {
            run_memory.total_checkpointed
        } else {
            run_memory.total
        };

        let tps = opts
            .throughput
            .as_ref()
            .and_then(Throughput::tokens_per_second);
        let measured = matches!(opts.throughput, Some(Throughput::Measured { .. }));
        let time = tps.map(|tps| {
            let seconds = d / tps;
            TimePlan {
                tokens_per_second: tps,
                seconds,
                seconds_checkpointed: (opts.checkpointing && measured)
                    .then_some(seconds * 4.0 / 3.0),
                model_flops_per_second: (flops.per_token_all + per_token_attention) * tps,
            }
        });

        let n = opts.gpus as f64;
        let tokens_per_step = (opts.gpus * opts.batch * seq_len) as u64;
        let steps = opts.tokens.div_ceil(tokens_per_step);
        let allreduce_bytes = 2.0 * (n - 1.0) / n * params.trainable as f64 * opts.dtype.bytes();
        let allreduce_seconds = allreduce_bytes / (opts.bandwidth_gb_per_s * 1e9);
        let optimizer_state = (run_memory.optimizer + run_memory.master_weights) as f64;
        let data_parallel = DataParallel {
            gpus: opts.gpus,
            bandwidth_gb_per_s: opts.bandwidth_gb_per_s,
            memory_per_gpu: run_bytes,
            memory_per_gpu_zero1: (run_bytes as f64 - optimizer_state * (1.0 - 1.0 / n)) as u64,
            allreduce_bytes_per_step: allreduce_bytes,
            allreduce_seconds_per_step: allreduce_seconds,
            steps,
            ideal_seconds: tps.map(|tps| d / (tps * n)),
            seconds_with_allreduce: tps.map(|tps| {
                steps as f64 * ((opts.batch * seq_len) as f64 / tps + allreduce_seconds)
            }),
        };
        Ok(Self {
            config: cfg.clone(),
            tokens: opts.tokens,
            batch: opts.batch,
            seq_len,
            dtype: opts.dtype,
            checkpointing: opts.checkpointing,
            params,
            flops,
            chinchilla,
            lora,
            memory: rows,
            run_memory,
            run_bytes,
            throughput: opts.throughput.clone(),
            time,
            data_parallel,
        })
    }
}

/// The inputs a user can get wrong, each refused in one line.
fn check_options(cfg: &ModelConfig, opts: &PlanOptions, seq_len: usize) -> Result<()> {
    let bad = |m: String| Err(ModelError::Input(m));
    if opts.tokens == 0 {
        return bad("the token budget is 0 (give at least 1 token, e.g. 1e9 or 2.5B)".into());
    }
    if opts.batch == 0 {
        return bad("the batch is 0 sequences (give at least 1)".into());
    }
    if seq_len == 0 {
        return bad("the sequence length is 0 (give at least 1 token)".into());
    }
    if seq_len > cfg.max_positions {
        return bad(format!(
            "a sequence of {seq_len} tokens is longer than the model's max_positions = {} \
             (plan a shorter sequence)",
            cfg.max_positions
        ));
    }
    if opts.gpus == 0 {
        return bad("0 GPUs (give at least 1)".into());
    }
    // Sizes a step multiplies: refused when they do not fit, never wrapped.
    if opts
        .gpus
        .checked_mul(opts.batch)
        .and_then(|x| x.checked_mul(seq_len))
        .is_none_or(|x| u64::try_from(x).is_err())
    {
        return bad(format!(
            "{} GPUs × batch {} × {seq_len} tokens is too large a step",
            opts.gpus, opts.batch
        ));
    }
    if let Some(lora) = &opts.lora {
        let widest = cfg.d_model.max(cfg.d_ff).max(cfg.vocab_size);
        if lora.rank > widest {
            return bad(format!(
                "LoRA rank {} exceeds every width of the model (at most {widest})",
                lora.rank
            ));
        }
    }
    let bw = opts.bandwidth_gb_per_s;
    if !(bw.is_finite() && bw > 0.0) {
        return bad(format!(
            "the all-reduce bandwidth {bw} GB/s is not positive"
        ));
    }
    if let Some(tps) = opts
        .throughput
        .as_ref()
        .and_then(Throughput::tokens_per_second)
        && !(tps.is_finite() && tps > 0.0)
    {
        return bad(format!("a throughput of {tps} tokens/s is not positive"));
    }
    Ok(())
}

/// Vocabulary and position parameters: the token table, a learned position table, BERT's
/// token types, and an untied output head (`vocab × d_model` too), each counted once.
/// T5's relative-position buckets (`buckets × heads` per stack) are counted as
/// non-embedding, as they are attention biases.
pub fn embedding_params(cfg: &ModelConfig) -> u64 {
    let d = cfg.d_model as u64;
    let tokens = cfg.vocab_size as u64 * d;
    let head = if cfg.tie_embeddings { 0 } else { tokens };
    let positions = if cfg.positions == Positions::Learned {
        cfg.max_positions as u64 * d
    } else {
        0
    };
    match cfg.family {
        // n_params counts BERT without an LM head.
        Family::Bert => tokens + positions + cfg.type_vocab_size.unwrap_or(2) as u64 * d,
        Family::T5 => tokens + head,
        Family::Gpt2 | Family::Llama => tokens + positions + head,
    }
}

/// Attention layers for the FLOPs: every block's self-attention; T5's decoder blocks
/// attend twice (self and cross), both counted over `seq_len`.
fn attention_layers(cfg: &ModelConfig) -> usize {
    match cfg.family {
        Family::T5 => cfg.n_layers + 2 * cfg.decoder_layers(),
        _ => cfg.n_layers,
    }
}

/// Blocks whose activations are kept: T5's encoder and decoder blocks alike.
fn stack_layers(cfg: &ModelConfig) -> usize {
    match cfg.family {
        Family::T5 => cfg.n_layers + cfg.decoder_layers(),
        _ => cfg.n_layers,
    }
}

/// Kaplan's `d_attn`: query heads × head width.
fn attention_width(cfg: &ModelConfig) -> usize {
    cfg.n_heads * cfg.head_dim()
}

/// Bytes of activations one block keeps for its backward, per sequence of `s` tokens:
/// Korthikanti et al. 2022 §4.1 (no tensor or sequence parallelism, no recomputation),
/// `s·b·h·(34 + 5·a·s/h)` bytes with 16-bit activations and b = 1, i.e.
/// `34·s·h + 5·a·s²` with h = `d_model`, a = `n_heads`. The 34 is 11·s·h for attention
/// (its input, Q, K, V, the output projection's input, a dropout mask), 19·s·h for a
/// 4h MLP and 4·s·h for two norms; the `5·a·s²` is the softmax's input and output and a
/// dropout mask. f32 activations double it. It assumes d_ff = 4h and as many K/V heads
/// as queries, so it is approximate for SwiGLU and grouped-query attention.
pub fn layer_activation_bytes(cfg: &ModelConfig, s: usize, dtype: Dtype) -> f64 {
    let (s, h, a) = (s as f64, cfg.d_model as f64, cfg.n_heads as f64);
    (34.0 * s * h + 5.0 * a * s * s) * dtype.bytes() / 2.0
}

/// Bytes the output layer keeps per sequence (Korthikanti §4.1): the final norm's input
/// and the head's input (`2·s·h` each at 16 bits) and the logits of the cross-entropy in
/// f32 (`4·s·V`).
pub fn output_activation_bytes(cfg: &ModelConfig, s: usize, dtype: Dtype) -> f64 {
    let (s, h, v) = (s as f64, cfg.d_model as f64, cfg.vocab_size as f64);
    4.0 * s * h * dtype.bytes() / 2.0 + 4.0 * s * v
}

/// Activations of one sequence, without and with gradient checkpointing. Without: every
/// block's and the output layer's. With: each block's input (`s·h` values) is kept, and
/// during the backward one block's full activations are recomputed at a time.
pub fn activation_bytes(cfg: &ModelConfig, s: usize, dtype: Dtype) -> (f64, f64) {
    let layers = stack_layers(cfg) as f64;
    let layer = layer_activation_bytes(cfg, s, dtype);
    let output = output_activation_bytes(cfg, s, dtype);
    let inputs = layers * s as f64 * cfg.d_model as f64 * dtype.bytes();
    (layers * layer + output, inputs + layer + output)
}

/// The memory of training `total` parameters in `dtype`, fully or with LoRA.
fn memory(
    cfg: &ModelConfig,
    total: u64,
    lora: Option<&LoraPlan>,
    dtype: Dtype,
    batch: usize,
    seq_len: usize,
) -> Memory {
    let b = dtype.bytes();
    // LoRA: the base is frozen and the adapters are extra weights; full: all trainable.
    let (frozen, trainable) = match lora {
        Some(l) => (total as f64, l.trainable as f64),
        None => (0.0, total as f64),
    };
    let weights = (frozen + trainable) * b;
    let gradients = trainable * b;
    let optimizer = trainable * 8.0;
    let master_weights = if dtype == Dtype::Bf16 {
        trainable * 4.0
    } else {
        0.0
    };
    let (act, act_ckpt) = activation_bytes(cfg, seq_len, dtype);
    let states = weights + gradients + optimizer + master_weights;
    let batch = batch as f64;
    Memory {
        label: match lora {
            Some(l) => format!("LoRA r={} {dtype}", l.rank),
            None => format!("full {dtype}"),
        },
        dtype,
        lora: lora.is_some(),
        weights: weights as u64,
        gradients: gradients as u64,
        optimizer: optimizer as u64,
        master_weights: master_weights as u64,
        activations_per_sequence: act as u64,
        activations_per_sequence_checkpointed: act_ckpt as u64,
        total: (states + batch * act) as u64,
        total_checkpointed: (states + batch * act_ckpt) as u64,
    }
}

/// One `Linear` of a decoder, from the config alone, named as
/// [`crate::hf_names::decoder_linears`] names it (a test checks that they agree).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinearShape {
    /// manabi path, e.g. `layers.0.attn.q_proj`.
    pub path: String,
    /// Full Hugging Face module name (the fused module for a part of one).
    pub hf: String,
    /// Input width.
    pub d_in: usize,
    /// Output width (of this part).
    pub d_out: usize,
}

impl LinearShape {
    /// The last component of the HF name: what PEFT's `target_modules` names.
    pub fn short(&self) -> &str {
        self.hf.rsplit('.').next().unwrap_or(&self.hf)
    }
}

/// Every `Linear` of a decoder of `cfg` with its HF module, in `decoder_linears`' order.
pub fn decoder_linear_shapes(cfg: &ModelConfig) -> Vec<LinearShape> {
    let names = crate::hf_names::decoder_names(cfg);
    let block = crate::hf_names::block_modules(cfg);
    let mut out = Vec::new();
    for i in 0..cfg.n_layers {
        for (hf, paths, _) in &block {
            for path in paths {
                let (d_in, d_out) = crate::hf_names::linear_shape(cfg, path);
                out.push(LinearShape {
                    path: format!("layers.{i}.{path}"),
                    hf: format!("{}.{}.{i}.{hf}", names.root, names.layers),
                    d_in,
                    d_out,
                });
            }
        }
    }
    if !cfg.tie_embeddings {
        out.push(LinearShape {
            path: "lm_head".into(),
            hf: names.head.into(),
            d_in: cfg.d_model,
            d_out: cfg.vocab_size,
        });
    }
    out
}

/// PEFT's default LoRA targets: the modules holding the query and value projections
/// (`c_attn` for GPT-2, `q_proj` and `v_proj` for LLaMA, `qkv_proj` for Phi-3).
pub fn default_lora_targets(cfg: &ModelConfig) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for m in decoder_linear_shapes(cfg) {
        let qv = m.path.ends_with("attn.q_proj") || m.path.ends_with("attn.v_proj");
        if qv && !out.iter().any(|t| t == m.short()) {
            out.push(m.short().to_string());
        }
    }
    out
}

/// LoRA's trainable parameters: `r·(in + out)` for each adapted `Linear` (A is
/// `[in, r]`, B `[r, out]`). The targets follow `finetune`'s `peft.targets`: a short
/// HF name selects every module ending in it, a full name one module; a fused module
/// (GPT-2's `c_attn`) adapts each of its manabi `Linear`s with its own rank-r adapter.
fn lora_plan(cfg: &ModelConfig, lora: &LoraOptions) -> Result<LoraPlan> {
    if matches!(cfg.family, Family::Bert | Family::T5) {
        return Err(ModelError::Input(format!(
            "LoRA is built for decoder families (gpt2, llama) only, not {}; plan full \
             training",
            cfg.family
        )));
    }
    if lora.rank == 0 {
        return Err(ModelError::Input(
            "LoRA rank 0 trains nothing (give a rank of at least 1)".into(),
        ));
    }
    let targets = if lora.targets.is_empty() {
        default_lora_targets(cfg)
    } else {
        lora.targets.clone()
    };
    let all = decoder_linear_shapes(cfg);
    for t in &targets {
        if !all.iter().any(|m| m.short() == t || m.hf == *t) {
            let mut names: Vec<&str> = all.iter().map(LinearShape::short).collect();
            names.sort_unstable();
            names.dedup();
            let kind = cfg.hf_model_type.as_deref().unwrap_or(match cfg.family {
                Family::Gpt2 => "gpt2",
                _ => "llama",
            });
            return Err(ModelError::Input(format!(
                "unknown LoRA target module `{t}`; this {kind} model has: {}",
                names.join(", ")
            )));
        }
    }
    let adapted: Vec<&LinearShape> = all
        .iter()
        .filter(|m| targets.iter().any(|t| m.short() == t || m.hf == *t))
        .collect();
    let trainable = adapted
        .iter()
        .map(|m| (lora.rank * (m.d_in + m.d_out)) as u64)
        .sum();
    Ok(LoraPlan {
        rank: lora.rank,
        targets,
        adapted_linears: adapted.len(),
        trainable,
    })
}

/// The `ModelConfig` of what a user names: a model or run folder
/// ([`crate::open::locate`]: `model.toml` or `config.json`), a `config.json` file, or a
/// TOML file that is a `model.toml` or holds one as its `[model]` table (a pre-training
/// recipe: its `vocab_size = 0`, the tokenizer's size, becomes `[data.tokenizer]
/// vocab_size`). Validated; errors name the file.
pub fn read_config(path: &Path) -> Result<ModelConfig> {
    let cfg = if path.is_dir() {
        let found = crate::open::locate(path)?;
        match found.layout {
            Layout::Native => read_toml(&found.dir.join("model.toml"))?,
            Layout::HuggingFace => crate::hf::read_config(&found.dir)?,
        }
    } else if !path.exists() {
        return Err(ModelError::File {
            path: path.to_path_buf(),
            message: "no such file or folder (give a model folder, model.toml or config.json)"
                .into(),
        });
    } else if path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("json"))
    {
        let text = read_text(path)?;
        ModelConfig::from_hf_json(text.strip_prefix('\u{feff}').unwrap_or(&text))
            .map_err(|e| in_file(path, e))?
    } else {
        read_toml(path)?
    };
    cfg.validate().map_err(|e| in_file(path, e))?;
    Ok(cfg)
}

fn read_text(path: &Path) -> Result<String> {
    std::fs::read_to_string(path).map_err(|e| ModelError::File {
        path: path.to_path_buf(),
        message: e.to_string(),
    })
}

/// A config error with the file in front of its key.
fn in_file(path: &Path, e: ModelError) -> ModelError {
    match e {
        ModelError::Config { key, message } if !key.starts_with(&*path.to_string_lossy()) => {
            ModelError::Config {
                key: format!("{}: {key}", path.display()),
                message,
            }
        }
        other => other,
    }
}

/// A `model.toml`, or the `[model]` table of a recipe.
fn read_toml(path: &Path) -> Result<ModelConfig> {
    let text = read_text(path)?;
    let bad = |message: String| ModelError::Config {
        key: path.display().to_string(),
        message,
    };
    let mut table: toml::Table = toml::from_str(&text).map_err(|e| bad(e.message().into()))?;
    let recipe_vocab = table
        .get("data")
        .and_then(|d| d.get("tokenizer"))
        .and_then(|t| t.get("vocab_size"))
        .and_then(toml::Value::as_integer);
    let model = match table.remove("model") {
        Some(toml::Value::Table(m)) => m,
        Some(_) => return Err(bad("`model` is not a table".into())),
        None => table,
    };
    let mut cfg =
        ModelConfig::deserialize(toml::Value::Table(model)).map_err(|e| bad(e.to_string()))?;
    if cfg.vocab_size == 0 {
        match recipe_vocab {
            Some(v) if v > 0 => cfg.vocab_size = v as usize,
            _ => {
                return Err(ModelError::Config {
                    key: format!("{}: model.vocab_size", path.display()),
                    message: "0 stands for the tokenizer's size, which a plan cannot know: \
                              set it"
                        .into(),
                });
            }
        }
    }
    Ok(cfg)
}

// ---- Display: the table `manabi plan` prints. ----

/// `1.10B`, `300.0M`, `20.0k`.
fn count(n: f64) -> String {
    let a = n.abs();
    if a >= 1e12 {
        format!("{:.2}T", n / 1e12)
    } else if a >= 1e9 {
        format!("{:.2}B", n / 1e9)
    } else if a >= 1e6 {
        format!("{:.1}M", n / 1e6)
    } else if a >= 1e3 {
        format!("{:.1}k", n / 1e3)
    } else {
        format!("{n:.0}")
    }
}

/// `124,439,808`.
fn commas(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// `1.23 GiB`, `512.0 MiB`, `84.0 KiB`: the largest binary unit the value reaches.
fn gib(bytes: u64) -> String {
    let b = bytes as f64;
    let (mib, kib) = (GIB / 1024.0, GIB / (1024.0 * 1024.0));
    if b >= GIB {
        format!("{:.2} GiB", b / GIB)
    } else if b >= mib {
        format!("{:.1} MiB", b / mib)
    } else {
        format!("{:.1} KiB", b / kib)
    }
}

/// `42.0 s`, `3.5 min`, `7.2 h`, `18.8 days`, `2.1 years`.
fn duration(s: f64) -> String {
    let (m, h, day) = (60.0, 3600.0, 86_400.0);
    if s < 2.0 * m {
        format!("{s:.1} s")
    } else if s < 2.0 * h {
        format!("{:.1} min", s / m)
    } else if s < 2.0 * day {
        format!("{:.1} h", s / h)
    } else if s < 730.0 * day {
        format!("{:.1} days", s / day)
    } else {
        format!("{:.1} years", s / (365.0 * day))
    }
}

impl fmt::Display for Plan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let c = &self.config;
        let layers = match c.family {
            Family::T5 => format!("{} + {} layers", c.n_layers, c.decoder_layers()),
            _ => format!("{} layers", c.n_layers),
        };
        let kv = if c.kv_heads() == c.n_heads {
            String::new()
        } else {
            format!(" ({} kv)", c.kv_heads())
        };
        writeln!(
            f,
            "model    {} · {layers} · d_model {} · {} heads{kv} × {} · d_ff {} · vocab {} · \
             max_positions {}",
            c.hf_model_type.as_deref().unwrap_or(&c.family.to_string()),
            c.d_model,
            c.n_heads,
            c.head_dim(),
            c.d_ff,
            c.vocab_size,
            c.max_positions
        )?;
        let dp = &self.data_parallel;
        let gpus = if dp.gpus == 1 {
            "1 device".to_string()
        } else {
            format!("{} GPUs", dp.gpus)
        };
        writeln!(
            f,
            "budget   {} tokens · batch {} × seq {} = {} tokens/step per device · {gpus} → {} steps",
            count(self.tokens as f64),
            self.batch,
            self.seq_len,
            commas((self.batch * self.seq_len) as u64),
            commas(dp.steps)
        )?;

        let p = &self.params;
        writeln!(f, "\nparameters")?;
        fn row(f: &mut fmt::Formatter<'_>, name: &str, n: u64, note: &str) -> fmt::Result {
            writeln!(
                f,
                "  {name:<16}{:>18}  {:>8}  {note}",
                commas(n),
                count(n as f64)
            )
        }
        row(f, "total", p.total, "")?;
        let untied = if c.tie_embeddings || c.family == Family::Bert {
            ""
        } else {
            " + untied head"
        };
        let positions = if c.positions == Positions::Learned {
            " + positions"
        } else {
            ""
        };
        row(
            f,
            "embedding",
            p.embedding,
            &format!("(tokens{positions}{untied})"),
        )?;
        row(f, "non-embedding", p.non_embedding, "(Kaplan's N)")?;
        let how = match &self.lora {
            Some(l) => format!(
                "(LoRA r={} on {}: {} Linears × r·(in+out))",
                l.rank,
                l.targets.join(","),
                l.adapted_linears
            ),
            None => "(full training)".into(),
        };
        row(f, "trainable", p.trainable, &how)?;

        let fl = &self.flops;
        writeln!(
            f,
            "\ntraining compute (D = {} tokens; forward 2N, backward 4N per token)",
            count(self.tokens as f64)
        )?;
        writeln!(
            f,
            "  6·N·D, N non-embedding (Kaplan)        {:>10.3e} FLOP",
            fl.non_embedding
        )?;
        writeln!(
            f,
            "  6·N·D, N all parameters                {:>10.3e} FLOP",
            fl.all_params
        )?;
        writeln!(
            f,
            "  + attention 6·L·s·d_attn·D             {:>10.3e} FLOP  ({:.3e} FLOP/token)",
            fl.with_attention,
            fl.per_token_all + fl.per_token_attention
        )?;

        let ch = &self.chinchilla;
        let verdict = if ch.budget_ratio > 1.05 {
            "more tokens than compute-optimal"
        } else if ch.budget_ratio < 0.95 {
            "fewer tokens than compute-optimal"
        } else {
            "about compute-optimal"
        };
        writeln!(
            f,
            "\nChinchilla (≈ {} tokens per parameter)",
            ch.tokens_per_param
        )?;
        writeln!(
            f,
            "  optimal tokens for this model          {:>10}",
            count(ch.optimal_tokens)
        )?;
        writeln!(
            f,
            "  budget / optimal                       {:>9.2}×  ({verdict})",
            ch.budget_ratio
        )?;
        writeln!(
            f,
            "  optimal model for this budget          {:>10} parameters",
            count(ch.optimal_params_for_budget)
        )?;

        writeln!(
            f,
            "\nmemory (batch {} × seq {}; AdamW = 2 f32 moments; bf16 adds f32 master weights)",
            self.batch, self.seq_len
        )?;
        writeln!(
            f,
            "  {:<16}{:>11}{:>11}{:>11}{:>11}{:>11}{:>12}{:>11}{:>12}",
            "", "weights", "grads", "AdamW", "master", "act/seq", "act/seq ck", "total", "total ck"
        )?;
        for m in &self.memory {
            writeln!(
                f,
                "  {:<16}{:>11}{:>11}{:>11}{:>11}{:>11}{:>12}{:>11}{:>12}",
                m.label,
                gib(m.weights),
                gib(m.gradients),
                gib(m.optimizer),
                gib(m.master_weights),
                gib(m.activations_per_sequence),
                gib(m.activations_per_sequence_checkpointed),
                gib(m.total),
                gib(m.total_checkpointed)
            )?;
        }
        writeln!(
            f,
            "  (ck = gradient checkpointing; activations after Korthikanti et al. 2022)"
        )?;
        writeln!(
            f,
            "  this run: {}, {} → {}",
            self.run_memory.label,
            if self.checkpointing {
                "checkpointing"
            } else {
                "no checkpointing"
            },
            gib(self.run_bytes)
        )?;

        writeln!(f, "\ntime")?;
        match &self.throughput {
            None => writeln!(
                f,
                "  no throughput: give --tokens-per-second, or --measure on a device"
            )?,
            Some(Throughput::NotMeasured { reason }) => {
                writeln!(f, "  not measured: {reason}")?;
            }
            Some(Throughput::Given { tokens_per_second }) => writeln!(
                f,
                "  throughput {} tokens/s (given)",
                commas(tokens_per_second.round() as u64)
            )?,
            Some(Throughput::Measured {
                tokens_per_second,
                device,
                layers_timed,
                steps,
                seconds_per_layer,
                seconds_fixed,
            }) => writeln!(
                f,
                "  throughput {} tokens/s (measured on {device}: up to {layers_timed} of {} \
                 layers built, {steps} timed steps each, f32 forward + loss + backward; \
                 {:.1} ms per layer + {:.1} ms outside the layers, per step)",
                commas(tokens_per_second.round() as u64),
                c.n_layers,
                seconds_per_layer * 1e3,
                seconds_fixed * 1e3
            )?,
        }
        if let Some(t) = &self.time {
            writeln!(
                f,
                "  {} tokens on one device: {}  ({:.3e} model FLOP/s)",
                count(self.tokens as f64),
                duration(t.seconds),
                t.model_flops_per_second
            )?;
            if let Some(s) = t.seconds_checkpointed {
                writeln!(
                    f,
                    "  with checkpointing (each forward twice, ≈ 4/3): {}",
                    duration(s)
                )?;
            }
        }

        if dp.gpus > 1 {
            writeln!(
                f,
                "\ndata parallel ({} GPUs, all-reduce at {} GB/s)",
                dp.gpus, dp.bandwidth_gb_per_s
            )?;
            writeln!(
                f,
                "  memory per GPU: full replica {}; ZeRO-1 (optimizer state ÷ {}) {}",
                gib(dp.memory_per_gpu),
                dp.gpus,
                gib(dp.memory_per_gpu_zero1)
            )?;
            writeln!(
                f,
                "  all-reduce per step: 2·(N−1)/N × {} params × {} B = {:.3} GB → {:.3} s",
                commas(p.trainable),
                self.dtype.bytes(),
                dp.allreduce_bytes_per_step / 1e9,
                dp.allreduce_seconds_per_step
            )?;
            if let (Some(ideal), Some(real)) = (dp.ideal_seconds, dp.seconds_with_allreduce) {
                writeln!(
                    f,
                    "  time: ideal (÷ {}) {}; with the all-reduce after each step {}",
                    dp.gpus,
                    duration(ideal),
                    duration(real)
                )?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// GPT-2 small as transformers' `GPT2Config()`.
    fn gpt2_small() -> ModelConfig {
        ModelConfig::from_hf_json(
            r#"{"model_type": "gpt2", "vocab_size": 50257, "n_positions": 1024,
                "n_embd": 768, "n_layer": 12, "n_head": 12}"#,
        )
        .unwrap()
    }

    /// TinyLlama-1.1B's config.json (the keys that matter).
    fn tinyllama() -> ModelConfig {
        ModelConfig::from_hf_json(
            r#"{"model_type": "llama", "vocab_size": 32000, "hidden_size": 2048,
                "num_hidden_layers": 22, "num_attention_heads": 32,
                "num_key_value_heads": 4, "intermediate_size": 5632,
                "max_position_embeddings": 2048, "tie_word_embeddings": false}"#,
        )
        .unwrap()
    }

    fn opts(tokens: u64) -> PlanOptions {
        PlanOptions::new(tokens)
    }

    fn close(a: f64, b: f64) {
        assert!((a - b).abs() <= 1e-9 * b.abs().max(1.0), "{a} != {b}");
    }

    #[test]
    fn parameter_counts_match_the_hand_counts() {
        // GPT-2 small: wte 50257·768 = 38,597,376; wpe 1024·768 = 786,432; per block
        // attention 4·768² + 4·768 (c_attn 3·768 + c_proj 768) = 2,362,368, MLP
        // 2·768·3072 + 3072 + 768 = 4,722,432, two LayerNorms 4·768 = 3,072, so 7,087,872;
        // 12 blocks 85,054,464; ln_f 1,536. Tied head. Total 124,439,808.
        let p = Plan::new(&gpt2_small(), &opts(1_000_000_000))
            .unwrap()
            .params;
        assert_eq!(p.total, 124_439_808);
        assert_eq!(p.embedding, 38_597_376 + 786_432);
        assert_eq!(p.non_embedding, 85_056_000);
        assert_eq!(p.trainable, p.total);
        // TinyLlama: embed 32000·2048 = 65,536,000 and an untied lm_head as many; per
        // block q 2048·2048 + k, v 2048·256 each + o 2048·2048 = 9,437,184, SwiGLU
        // 3·2048·5632 = 34,603,008, two RMSNorms 4,096: 44,044,288; 22 blocks
        // 968,974,336; final norm 2,048. Total 1,100,048,384.
        let p = Plan::new(&tinyllama(), &opts(1_000_000_000))
            .unwrap()
            .params;
        assert_eq!(p.total, 1_100_048_384);
        assert_eq!(p.embedding, 131_072_000);
        assert_eq!(p.non_embedding, 968_976_384);
    }

    #[test]
    fn flops_are_six_n_d_plus_attention() {
        let plan = Plan::new(&gpt2_small(), &opts(1_000_000_000)).unwrap();
        let fl = &plan.flops;
        close(fl.all_params, 6.0 * 124_439_808.0 * 1e9); // 7.46638848e17
        close(fl.non_embedding, 6.0 * 85_056_000.0 * 1e9); // 5.10336e17
        // 6 · 12 layers · 1024 tokens · 768 = 56,623,104 per token.
        close(fl.per_token_attention, 56_623_104.0);
        close(fl.with_attention, 8.03261952e17);
        // A shorter sequence shrinks only the attention term.
        let short = Plan::new(
            &gpt2_small(),
            &PlanOptions {
                seq_len: Some(256),
                ..opts(1_000_000_000)
            },
        )
        .unwrap();
        close(short.flops.per_token_attention, 56_623_104.0 / 4.0);
        close(short.flops.all_params, fl.all_params);
    }

    #[test]
    fn chinchilla_is_twenty_tokens_per_parameter() {
        let ch = Plan::new(&gpt2_small(), &opts(1_000_000_000))
            .unwrap()
            .chinchilla;
        close(ch.optimal_tokens, 2_488_796_160.0);
        close(ch.budget_ratio, 1e9 / 2_488_796_160.0); // 0.4018
        close(ch.optimal_params_for_budget, 5e7);
        // TinyLlama was trained on 3T tokens: 136× its compute-optimal 22.0B.
        let ch = Plan::new(&tinyllama(), &opts(3_000_000_000_000))
            .unwrap()
            .chinchilla;
        close(ch.optimal_tokens, 22_000_967_680.0);
        assert!(
            (ch.budget_ratio - 136.357).abs() < 1e-3,
            "{}",
            ch.budget_ratio
        );
    }

    #[test]
    fn memory_of_full_training_and_lora_in_f32_and_bf16() {
        let lora = LoraOptions {
            rank: 8,
            targets: vec!["c_attn".into()],
        };
        let plan = Plan::new(
            &gpt2_small(),
            &PlanOptions {
                lora: Some(lora),
                ..opts(1_000_000_000)
            },
        )
        .unwrap();
        let n = 124_439_808u64;
        // Activations of one 1024-token sequence in f32: per layer
        // 2·(34·1024·768 + 5·12·1024²) = 2·89,653,248 = 179,306,496; 12 layers
        // 2,151,677,952; output 4·1024·768·2 + 4·1024·50257 = 212,144,128.
        // Checkpointed: 12 layer inputs 12·1024·768·4 = 37,748,736 + one layer + output.
        let full = &plan.memory[0];
        assert_eq!(full.label, "full f32");
        assert_eq!(
            (
                full.weights,
                full.gradients,
                full.optimizer,
                full.master_weights
            ),
            (4 * n, 4 * n, 8 * n, 0)
        );
        assert_eq!(full.activations_per_sequence, 2_363_822_080);
        assert_eq!(full.activations_per_sequence_checkpointed, 429_199_360);
        assert_eq!(full.total, 16 * n + 2_363_822_080); // 4,354,859,008
        assert_eq!(full.total_checkpointed, 2_420_236_288);
        assert!(full.total_checkpointed < full.total);
        // bf16: 2 + 2 + 8 + 4 = 16 bytes a parameter too; 16-bit activations are half
        // the layers' (1,075,838,976) and 208,998,400 for the output (f32 logits kept).
        let bf16 = &plan.memory[1];
        assert_eq!(
            (
                bf16.weights,
                bf16.gradients,
                bf16.optimizer,
                bf16.master_weights
            ),
            (2 * n, 2 * n, 8 * n, 4 * n)
        );
        assert_eq!(bf16.activations_per_sequence, 1_075_838_976 + 208_998_400);
        // LoRA r=8 on c_attn: Q, K, V each 8·(768 + 768) = 12,288, 12 layers: 442,368.
        let l = plan.lora.as_ref().unwrap();
        assert_eq!((l.adapted_linears, l.trainable), (36, 442_368));
        assert_eq!(plan.params.trainable, 442_368);
        let lf = &plan.memory[2];
        assert_eq!(lf.label, "LoRA r=8 f32");
        assert_eq!(lf.weights, 4 * (n + 442_368)); // 499,528,704
        assert_eq!(
            (lf.gradients, lf.optimizer, lf.master_weights),
            (1_769_472, 3_538_944, 0)
        );
        assert_eq!(lf.total, 504_837_120 + 2_363_822_080);
        assert!(lf.total < full.total);
        let lb = &plan.memory[3];
        assert_eq!(lb.weights, 2 * (n + 442_368));
        assert_eq!(lb.master_weights, 4 * 442_368);
        // The planned run is LoRA in f32 without checkpointing.
        assert_eq!(plan.run_memory, *lf);
        assert_eq!(plan.run_bytes, lf.total);
    }

    #[test]
    fn lora_on_llama_and_its_errors() {
        let cfg = tinyllama();
        // q_proj: 8·(2048 + 2048) = 32,768; v_proj 8·(2048 + 256) = 18,432; 22 layers.
        let plan = Plan::new(
            &cfg,
            &PlanOptions {
                lora: Some(LoraOptions {
                    rank: 8,
                    targets: vec![],
                }),
                ..opts(1_000_000_000)
            },
        )
        .unwrap();
        let l = plan.lora.unwrap();
        assert_eq!(l.targets, ["q_proj", "v_proj"]);
        assert_eq!(l.trainable, 22 * (32_768 + 18_432)); // 1,126,400
        assert_eq!(default_lora_targets(&gpt2_small()), ["c_attn"]);
        let err = |o: PlanOptions, cfg: &ModelConfig| Plan::new(cfg, &o).unwrap_err().to_string();
        let bad_target = PlanOptions {
            lora: Some(LoraOptions {
                rank: 8,
                targets: vec!["c_attn".into()],
            }),
            ..opts(1)
        };
        let e = err(bad_target, &cfg);
        assert!(e.contains("`c_attn`") && e.contains("q_proj"), "{e}");
        let rank0 = PlanOptions {
            lora: Some(LoraOptions {
                rank: 0,
                targets: vec![],
            }),
            ..opts(1)
        };
        assert!(err(rank0, &cfg).contains("rank 0"));
        assert!(err(opts(0), &cfg).contains("token budget is 0"));
        let long = PlanOptions {
            seq_len: Some(4096),
            ..opts(1)
        };
        let e = err(long, &cfg);
        assert!(
            e.contains("4096") && e.contains("max_positions = 2048"),
            "{e}"
        );
        let no_gpu = PlanOptions { gpus: 0, ..opts(1) };
        assert!(err(no_gpu, &cfg).contains("0 GPUs"));
    }

    #[test]
    fn data_parallel_all_reduce_and_time() {
        let plan = Plan::new(
            &gpt2_small(),
            &PlanOptions {
                batch: 8,
                gpus: 8,
                throughput: Some(Throughput::Given {
                    tokens_per_second: 10_000.0,
                }),
                ..opts(1_000_000_000)
            },
        )
        .unwrap();
        let dp = &plan.data_parallel;
        // 2·7/8 · 124,439,808 · 4 B = 871,078,656 B; at 100 GB/s 8.71 ms a step.
        close(dp.allreduce_bytes_per_step, 871_078_656.0);
        close(dp.allreduce_seconds_per_step, 0.008_710_786_56);
        // 8 GPUs · 8 · 1024 = 65,536 tokens a step: ⌈1e9 / 65,536⌉ = 15,259 steps.
        assert_eq!(dp.steps, 15_259);
        let time = plan.time.as_ref().unwrap();
        close(time.seconds, 100_000.0);
        close(dp.ideal_seconds.unwrap(), 12_500.0);
        close(
            dp.seconds_with_allreduce.unwrap(),
            15_259.0 * (0.8192 + 0.008_710_786_56),
        );
        // ZeRO-1 splits the 8·N bytes of AdamW moments over 8 GPUs.
        let full = 16 * 124_439_808 + 8 * 2_363_822_080u64;
        assert_eq!(dp.memory_per_gpu, full);
        assert_eq!(dp.memory_per_gpu_zero1, full - 7 * 124_439_808);
        // One device sends nothing.
        let one = Plan::new(&gpt2_small(), &opts(1_000)).unwrap();
        assert_eq!(one.data_parallel.allreduce_bytes_per_step, 0.0);
        let text = plan.to_string();
        assert!(text.contains("data parallel (8 GPUs"), "{text}");
        assert!(text.contains("15,259 steps"), "{text}");
    }

    #[test]
    fn the_shape_table_matches_hf_names() {
        let device = crate::device::test_device();
        let tiny = |extra: &str| -> ModelConfig {
            toml::from_str(&format!(
                "family = \"llama\"\nvocab_size = 40\nmax_positions = 16\nd_model = 16\n\
                 n_layers = 2\nn_heads = 4\nn_kv_heads = 2\nd_ff = 24\npositions = \"rope\"\n\
                 norm = \"rmsnorm\"\nactivation = \"swiglu\"\n{extra}"
            ))
            .unwrap()
        };
        let gpt2: ModelConfig = toml::from_str(
            "family = \"gpt2\"\nvocab_size = 40\nmax_positions = 16\nd_model = 16\n\
             n_layers = 2\nn_heads = 4\nd_ff = 64\npositions = \"learned\"\n\
             norm = \"layernorm\"\nactivation = \"gelu_tanh\"\nattention_bias = true\n\
             mlp_bias = true\ntie_embeddings = true",
        )
        .unwrap();
        for cfg in [
            gpt2,
            tiny(""),
            tiny("tie_embeddings = true"),
            tiny("hf_model_type = \"phi3\""),
            tiny("hf_model_type = \"gpt_neox\""),
        ] {
            let model = crate::decoder::DecoderLm::new(&cfg, &device);
            let want: Vec<LinearShape> = crate::hf_names::decoder_linears(&model)
                .into_iter()
                .map(|(m, lin)| {
                    let [d_in, d_out] = lin.weight.dims();
                    LinearShape {
                        path: m.path,
                        hf: m.hf,
                        d_in,
                        d_out,
                    }
                })
                .collect();
            assert_eq!(decoder_linear_shapes(&cfg), want, "{:?}", cfg.hf_model_type);
        }
    }

    #[test]
    fn reads_folders_json_and_recipe_tables() {
        let dir = tempfile::tempdir().unwrap();
        let hf = dir.path().join("hf");
        std::fs::create_dir(&hf).unwrap();
        std::fs::write(
            hf.join("config.json"),
            gpt2_small().to_hf_json().to_string(),
        )
        .unwrap();
        assert_eq!(read_config(&hf).unwrap().n_params(), 124_439_808);
        assert_eq!(
            read_config(&hf.join("config.json")).unwrap().n_params(),
            124_439_808
        );
        let recipe = dir.path().join("recipe.toml");
        let model = toml::to_string(&ModelConfig {
            vocab_size: 0,
            ..tinyllama()
        })
        .unwrap();
        std::fs::write(
            &recipe,
            format!("[model]\n{model}\n[data.tokenizer]\nvocab_size = 32000\n"),
        )
        .unwrap();
        assert_eq!(read_config(&recipe).unwrap(), tinyllama());
        let e = read_config(&dir.path().join("missing")).unwrap_err();
        assert!(e.to_string().contains("no such file"), "{e}");
    }
}
