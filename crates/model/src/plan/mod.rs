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

mod display;
mod read;
pub use read::read_config;

#[cfg(test)]
mod tests;
