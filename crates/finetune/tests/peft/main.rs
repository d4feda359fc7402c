//! PEFT parity and contracts: adapters that Python `peft` trained (fixtures made by
//! scripts/peft_fixtures.py) give `peft`'s logits here; exports load back exactly; only
//! adapter parameters get gradients; adapters at initialisation leave the model unchanged.

use std::path::{Path, PathBuf};

use burn::module::{Module, ModuleMapper, Param};
use burn::optim::GradientsParams;
use burn::prelude::*;
use manabi_finetune::peft::{self, Method, PeftConfig, lora};
use manabi_model::hf_names::decoder_linears;
use manabi_model::{DecoderLm, device::test_device, load_hf};
use serde::Deserialize;

mod lora_contracts;
mod lora_patterns;

#[derive(Deserialize)]
struct Expected {
    input_ids: Vec<Vec<i64>>,
    logits: Vec<f32>,
    merged_logits: Option<Vec<f32>>,
}

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn base(name: &str, device: &Device) -> DecoderLm {
    load_hf(root().join("fixtures/models").join(name), device).unwrap()
}

fn expected(adapter: &str) -> Expected {
    let p = root()
        .join("fixtures/peft")
        .join(adapter)
        .join("expected.json");
    serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap()
}

fn ids(e: &Expected, device: &Device) -> Tensor<2, Int> {
    let (b, t) = (e.input_ids.len(), e.input_ids[0].len());
    let flat: Vec<i64> = e.input_ids.iter().flatten().copied().collect();
    Tensor::<1, Int>::from_ints(flat.as_slice(), device).reshape([b, t])
}

fn logits(model: &DecoderLm, ids: Tensor<2, Int>) -> Vec<f32> {
    model.forward(ids).into_data().try_to_vec().unwrap()
}

fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

fn lora_cfg(r: usize, alpha: f64, targets: &[&str]) -> PeftConfig {
    PeftConfig {
        method: Method::Lora,
        r,
        alpha,
        targets: targets.iter().map(|s| s.to_string()).collect(),
        ..PeftConfig::default()
    }
}

#[test]
fn a_prompt_tuning_adapter_from_python_peft_gives_peft_logits() {
    let device = test_device();
    let exp = expected("llama-prompt");
    let (model, cfg) = peft::load_adapter(
        base("llama-gqa", &device),
        &root().join("fixtures/peft/llama-prompt"),
    )
    .unwrap();
    assert_eq!(cfg.virtual_tokens, 4);
    let got = logits(&model, ids(&exp, &device));
    // peft returns the virtual positions' logits too: [2, 4 + 12, 64]; compare the real ones.
    let (b, t, v, n) = (2, 12, 64, 4);
    let want: Vec<f32> = (0..b)
        .flat_map(|r| exp.logits[(r * (n + t) + n) * v..(r + 1) * (n + t) * v].to_vec())
        .collect();
    let d = max_diff(&got, &want);
    assert!(d <= 1e-4, "prompt tuning: max |Δlogit| = {d}");
    // Round trip through the PEFT format.
    let dir = tempfile::tempdir().unwrap();
    peft::save_adapter(&model, &cfg, dir.path()).unwrap();
    let (again, _) = peft::load_adapter(base("llama-gqa", &device), dir.path()).unwrap();
    assert!(max_diff(&logits(&again, ids(&exp, &device)), &got) <= 1e-6);
    // Cached generation equals uncached with a soft prompt.
    let tok_opts = |use_cache| manabi_model::GenerateOptions {
        max_new_tokens: 5,
        use_cache,
        eos_ids: vec![],
        ..manabi_model::GenerateOptions::default()
    };
    let prompts = vec![vec![3u32, 7, 9], vec![5u32, 1]];
    let a = manabi_model::generate(&model, &prompts, &tok_opts(true), None).unwrap();
    let b = manabi_model::generate(&model, &prompts, &tok_opts(false), None).unwrap();
    assert_eq!(a, b);
}

#[test]
fn adapters_trained_by_python_peft_give_peft_logits() {
    let device = test_device();
    for (base_name, adapter) in [
        ("gpt2", "gpt2-lora"),
        ("llama-gqa", "llama-lora"),
        ("llama-gqa", "llama-lora-rslora"),
        ("llama-gqa", "llama-ia3"),
        // Fused modules: GPT-NeoX's per-head query_key_value, Phi-3's qkv_proj (unequal
        // parts) and gate_up_proj.
        ("neox-parallel", "neox-lora"),
        ("phi3", "phi3-lora"),
        // Per-module rank and α (rank_pattern / alpha_pattern, a full-name key and a
        // regex one), layer 1 only (layers_to_transform), and DoRA — on GPT-2's Conv1D
        // c_attn (one magnitude over Q | K | V) and NeoX's interleaved query_key_value too.
        ("llama-gqa", "llama-lora-patterns"),
        ("llama-gqa", "llama-lora-layers"),
        ("llama-gqa", "llama-dora"),
        ("gpt2", "gpt2-dora"),
        ("neox-parallel", "neox-dora"),
    ] {
        let exp = expected(adapter);
        let plain = base(base_name, &device);
        let base_logits = logits(&plain, ids(&exp, &device));
        let (model, cfg) =
            peft::load_adapter(plain, &root().join("fixtures/peft").join(adapter)).unwrap();
        let got = logits(&model, ids(&exp, &device));
        let d = max_diff(&got, &exp.logits);
        assert!(d <= 1e-4, "{adapter}: max |Δlogit| = {d}");
        // The adapter changes the model (so the test above means something).
        assert!(max_diff(&base_logits, &exp.logits) > 1e-2, "{adapter}");
        // Merged weights give the same logits (peft's merge_and_unload as well).
        let merged = model.clone().materialize();
        let m = logits(&merged, ids(&exp, &device));
        assert!(max_diff(&m, &got) <= 1e-5, "{adapter}: merge");
        if let Some(pm) = &exp.merged_logits {
            assert!(max_diff(&m, pm) <= 1e-4, "{adapter}: merged vs peft");
        }
        // Export and load back: the same adapter.
        let dir = tempfile::tempdir().unwrap();
        peft::save_adapter(&model, &cfg, dir.path()).unwrap();
        let (again, _) = peft::load_adapter(base(base_name, &device), dir.path()).unwrap();
        let d = max_diff(&logits(&again, ids(&exp, &device)), &got);
        assert!(d <= 1e-6, "{adapter}: round trip {d}");
    }
}

#[test]
fn ia3_on_a_biased_output_module_is_refused_not_miscomputed() {
    // PEFT's IA³ scales `(Wx + b)·l`: GPT-NeoX's query_key_value has a bias. The fixture
    // (fixtures/peft/neox-ia3, made by peft) is refused by name rather than loaded into
    // a model that computes something else.
    let device = test_device();
    let err = peft::load_adapter(
        base("neox-parallel", &device),
        &root().join("fixtures/peft/neox-ia3"),
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("`query_key_value`") && err.contains("bias") && !err.contains('\n'),
        "{err}"
    );
}

/// A few optimizer-free updates: gradients of a loss move each adapter its own way.
fn train_a_little(model: DecoderLm, ids: &Tensor<2, Int>) -> DecoderLm {
    train_steps(model, ids).valid()
}

/// Three plain gradient steps on the autodiff device.
fn train_steps(mut model: DecoderLm, ids: &Tensor<2, Int>) -> DecoderLm {
    for _ in 0..3 {
        let loss = model.forward(ids.clone()).powi_scalar(2).mean();
        let grads = GradientsParams::from_grads(loss.backward(), &model);
        model = model.map(&mut Step {
            grads: &grads,
            lr: 0.5,
        });
    }
    model
}

#[test]
fn prefix_tuning_adapters_from_python_peft_give_peft_logits() {
    let device = test_device();
    // GPT-2 (no projection) and grouped-query LLaMA (trained through peft's MLP, saved as
    // its output).
    for (base_name, adapter, n) in [("gpt2", "gpt2-prefix", 3), ("llama-gqa", "llama-prefix", 5)] {
        let exp = expected(adapter);
        let (model, cfg) = peft::load_adapter(
            base(base_name, &device),
            &root().join("fixtures/peft").join(adapter),
        )
        .unwrap();
        assert_eq!((cfg.method, cfg.virtual_tokens), (Method::Prefix, n));
        let got = logits(&model, ids(&exp, &device));
        let d = max_diff(&got, &exp.logits);
        assert!(d <= 1e-4, "{adapter}: max |Δlogit| = {d}");
        let plain = logits(&base(base_name, &device), ids(&exp, &device));
        assert!(
            max_diff(&plain, &exp.logits) > 0.1,
            "{adapter}: the prefix changes nothing"
        );
        // Round trip through the PEFT format.
        let dir = tempfile::tempdir().unwrap();
        peft::save_adapter(&model, &cfg, dir.path()).unwrap();
        let (again, _) = peft::load_adapter(base(base_name, &device), dir.path()).unwrap();
        assert!(max_diff(&logits(&again, ids(&exp, &device)), &got) <= 1e-6);
        // Cached generation (the prefix is the cache's start) equals uncached, with
        // left-padded prompts of different lengths.
        let opts = |use_cache| manabi_model::GenerateOptions {
            max_new_tokens: 5,
            use_cache,
            eos_ids: vec![],
            ..manabi_model::GenerateOptions::default()
        };
        let prompts = vec![vec![3u32, 7, 9], vec![5u32, 1]];
        let a = manabi_model::generate(&model, &prompts, &opts(true), None).unwrap();
        let b = manabi_model::generate(&model, &prompts, &opts(false), None).unwrap();
        assert_eq!(a, b, "{adapter}");
        // A full HF export would drop the prefix: refused.
        let e = manabi_model::export_hf(&model, dir.path().join("hf"), None)
            .unwrap_err()
            .to_string();
        assert!(e.contains("virtual tokens") && e.contains("peft"), "{e}");
    }
    // Only the prefix (and its MLP) gets gradients.
    let ad = test_device().autodiff();
    let cfg = PeftConfig {
        method: Method::Prefix,
        virtual_tokens: 2,
        prefix_projection: true,
        ..PeftConfig::default()
    };
    let model = peft::apply(base("llama-gqa", &ad), &cfg).unwrap();
    let x = Tensor::<1, Int>::from_ints([3, 1, 4, 1, 5, 9].as_slice(), &ad).reshape([2, 3]);
    let loss = model.forward(x).powi_scalar(2).mean();
    let grads = GradientsParams::from_grads(loss.backward(), &model);
    let (trainable, total) = peft::describe(&model);
    assert!(trainable > 0 && trainable < total);
    assert!(grads.get::<2>(model.embed_tokens.weight.id).is_none());
    assert_eq!(count_grads(&model, &grads), trainable);
    // An adapter for another base: the shape names the tensor.
    let e = peft::load_adapter(
        base("llama-gqa", &device),
        &root().join("fixtures/peft/gpt2-prefix"),
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("prompt_embeddings") && e.contains("another base"),
        "{e}"
    );
}

/// Exports adapters trained here and checks that they load back exactly. The exports,
/// with the logits they must give, are left in `$CARGO_TARGET_TMPDIR/peft-export/` for
/// `scripts/check_peft_adapter.py` (Python `peft` on the same HF base; a LoRA's merged
/// model, in `merged/`, for `transformers` alone).
#[test]
fn adapters_trained_here_export_and_load_back_exactly() {
    let cases = [
        (
            "gpt2",
            "gpt2-lora-blockdiag",
            lora_cfg(2, 4.0, &["c_attn", "c_proj"]),
        ),
        (
            "llama-gqa",
            "llama-lora",
            lora_cfg(4, 8.0, &["q_proj", "v_proj", "down_proj"]),
        ),
        (
            "llama-gqa",
            "llama-dora",
            PeftConfig {
                use_dora: true,
                ..lora_cfg(4, 8.0, &["q_proj", "v_proj", "down_proj"])
            },
        ),
        (
            "gpt2",
            "gpt2-dora-blockdiag",
            PeftConfig {
                use_dora: true,
                ..lora_cfg(2, 4.0, &["c_attn", "c_proj"])
            },
        ),
        (
            "neox-parallel",
            "neox-dora-blockdiag",
            PeftConfig {
                use_dora: true,
                ..lora_cfg(2, 4.0, &["query_key_value", "dense_4h_to_h"])
            },
        ),
        (
            "llama-gqa",
            "llama-lora-patterns",
            lora_patterns::patterned(),
        ),
        (
            "llama-gqa",
            "llama-lora-layers",
            PeftConfig {
                layers_to_transform: vec![1],
                layers_pattern: vec!["layers".into()],
                ..lora_cfg(
                    4,
                    8.0,
                    &["q_proj", "v_proj", "model.layers.0.mlp.down_proj"],
                )
            },
        ),
        (
            "llama-gqa",
            "llama-ia3",
            PeftConfig {
                method: Method::Ia3,
                targets: vec!["k_proj".into(), "v_proj".into(), "down_proj".into()],
                ..PeftConfig::default()
            },
        ),
        (
            "llama-gqa",
            "llama-prompt",
            PeftConfig {
                method: Method::Prompt,
                virtual_tokens: 3,
                ..PeftConfig::default()
            },
        ),
        (
            "llama-gqa",
            "llama-prefix-mlp",
            PeftConfig {
                method: Method::Prefix,
                virtual_tokens: 3,
                prefix_projection: true,
                ..PeftConfig::default()
            },
        ),
    ];
    // And a LoRA of every other family, through its own module names.
    let families = FAMILY_TARGETS
        .iter()
        .map(|&(base, targets)| (base, format!("{base}-lora"), lora_cfg(4, 8.0, targets)));
    let cases = cases
        .into_iter()
        .map(|(base, name, cfg)| (base, name.to_string(), cfg))
        .chain(families);
    let out = Path::new(env!("CARGO_TARGET_TMPDIR")).join("peft-export");
    for (base_name, name, cfg) in cases {
        let device = test_device().autodiff();
        let ids = Tensor::<1, Int>::from_ints([1, 5, 9, 2, 7, 3, 11, 4].as_slice(), &device)
            .reshape([2, 4]);
        let model = train_a_little(peft::apply(base(base_name, &device), &cfg).unwrap(), &ids);
        if name == "gpt2-lora-blockdiag" {
            // Fresh factors are drawn apart (a PEFT `c_attn` adapter shares A).
            let a = |i: usize| {
                let lin = decoder_linears(&model)[i].1;
                lin.weight
                    .adapter()
                    .unwrap()
                    .a
                    .val()
                    .into_data()
                    .try_to_vec::<f32>()
                    .unwrap()
            };
            assert_ne!(a(0), a(1));
        }
        let plain = test_device();
        let ids = ids.inner();
        let want = logits(&model, ids.clone());
        let base_logits = logits(&base(base_name, &plain), ids.clone());
        assert!(
            max_diff(&want, &base_logits) > 1e-3,
            "{name}: training moved nothing"
        );
        let dir = out.join(&name);
        peft::save_adapter(&model, &cfg, &dir).unwrap();
        if name == "gpt2-lora-blockdiag" {
            let text = std::fs::read_to_string(dir.join("adapter_config.json")).unwrap();
            assert!(text.contains("\"c_attn\": 6"), "{text}");
        }
        lora_patterns::check_export(&name, &dir);
        let (again, _) = peft::load_adapter(base(base_name, &plain), &dir).unwrap();
        let d = max_diff(&logits(&again, ids.clone()), &want);
        assert!(d <= 1e-5, "{name}: round trip {d}");
        let ids_json: Vec<Vec<i64>> = ids
            .clone()
            .into_data()
            .convert::<i64>()
            .try_to_vec::<i64>()
            .unwrap()
            .chunks(4)
            .map(<[i64]>::to_vec)
            .collect();
        let mut expected = serde_json::json!({
            // Prompt tuning's logits leave out the virtual tokens' positions.
            "base": base_name, "input_ids": ids_json, "logits": want,
            "shape": [2, want.len() / (2 * 64), 64],
        });
        if cfg.method == Method::Lora {
            // The merged model as a plain Hugging Face folder (the script's `--merged`).
            let merged = model.clone().materialize();
            let m = logits(&merged, ids.clone());
            assert!(max_diff(&m, &want) <= 1e-5, "{name}: merge");
            manabi_model::export_hf(&merged, dir.join("merged"), None).unwrap();
            expected["merged_logits"] = serde_json::json!(m);
        }
        std::fs::write(dir.join("expected.json"), expected.to_string()).unwrap();
    }
}

/// Plain gradient descent on the parameters that have gradients.
struct Step<'a> {
    grads: &'a GradientsParams,
    lr: f64,
}

impl ModuleMapper for Step<'_> {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        let Some(g) = self.grads.get::<D>(param.id) else {
            return param;
        };
        let g = g.clone();
        let lr = self.lr;
        param.map(|t| {
            let grad = t.is_require_grad();
            Tensor::from_inner(t.inner() - g.inner() * lr).set_require_grad(grad)
        })
    }
}

#[test]
fn only_adapter_parameters_get_gradients_and_fresh_adapters_change_nothing() {
    let device = test_device().autodiff();
    let ids =
        Tensor::<1, Int>::from_ints([3, 1, 4, 1, 5, 9, 2, 6].as_slice(), &device).reshape([2, 4]);
    let plain = base("gpt2", &device);
    let want = logits(&plain.valid(), ids.clone().inner());
    for cfg in [
        lora_cfg(4, 8.0, &["c_attn"]),
        PeftConfig {
            method: Method::Houlsby,
            adapter_size: 4,
            ..PeftConfig::default()
        },
        PeftConfig {
            method: Method::Pfeiffer,
            adapter_size: 4,
            ..PeftConfig::default()
        },
        PeftConfig {
            method: Method::Bitfit,
            ..PeftConfig::default()
        },
    ] {
        let model = peft::apply(base("gpt2", &device), &cfg).unwrap();
        let got = logits(&model.valid(), ids.clone().inner());
        assert!(
            max_diff(&got, &want) <= 1e-6,
            "{:?} changes the model at initialisation",
            cfg.method
        );
        let (trainable, total) = peft::describe(&model);
        assert!(
            trainable > 0 && trainable < total,
            "{:?}: {trainable} of {total}",
            cfg.method
        );
        let loss = model.forward(ids.clone()).powi_scalar(2).mean();
        let grads = GradientsParams::from_grads(loss.backward(), &model);
        // Frozen: embeddings and (except for BitFit's biases) every Linear weight.
        assert!(
            grads.get::<2>(model.embed_tokens.weight.id).is_none(),
            "{:?}",
            cfg.method
        );
        for (m, lin) in decoder_linears(&model) {
            assert!(
                grads.get::<2>(lin.weight.id).is_none(),
                "{:?}: {} has a gradient",
                cfg.method,
                m.path
            );
        }
        let with_grad = count_grads(&model, &grads);
        assert_eq!(with_grad, trainable, "{:?}", cfg.method);
    }
}

struct CountGrads<'a> {
    grads: &'a GradientsParams,
    n: usize,
}

impl burn::module::ModuleVisitor for CountGrads<'_> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        if self.grads.get::<D>(param.id).is_some() {
            self.n += param.base().shape().num_elements();
        }
    }
}

fn count_grads(model: &DecoderLm, grads: &GradientsParams) -> usize {
    let mut c = CountGrads { grads, n: 0 };
    model.visit(&mut c);
    c.n
}

#[test]
fn a_soft_prompt_can_start_from_a_text() {
    // PEFT's `TEXT` start: the text's token embeddings, repeated to the prompt's length.
    let device = test_device().autodiff();
    let dir = root().join("fixtures/models/llama-eval");
    let model = base("llama-eval", &device);
    let table: Vec<f32> = model
        .embed_tokens
        .weight
        .val()
        .into_data()
        .try_to_vec()
        .unwrap();
    let d = model.config().d_model;
    let tok = manabi_tokenize::TextTokenizer::load(dir.join("tokenizer.json")).unwrap();
    let text = "the cat";
    let ids = tok.encode(text).unwrap();
    assert!(ids.len() >= 2 && ids.len() < 5, "{ids:?}");
    let cfg = PeftConfig {
        method: Method::Prompt,
        virtual_tokens: 5,
        prompt_init_text: text.into(),
        ..PeftConfig::default()
    };
    let adapted = peft::apply_with_tokenizer(model.clone(), &cfg, &tok).unwrap();
    let prompt: Vec<f32> = adapted
        .soft_prompt
        .as_ref()
        .unwrap()
        .val()
        .into_data()
        .try_to_vec()
        .unwrap();
    for (k, row) in prompt.chunks(d).enumerate() {
        let t = ids[k % ids.len()] as usize;
        assert_eq!(row, &table[t * d..(t + 1) * d], "virtual token {k}");
    }
    // Only the soft prompt trains.
    assert_eq!(peft::describe(&adapted).0, 5 * d);
    // A text start belongs to prompt tuning only.
    let lora = PeftConfig {
        prompt_init_text: text.into(),
        ..lora_cfg(2, 4.0, &["q_proj"])
    };
    let err = peft::apply_with_tokenizer(model, &lora, &tok)
        .unwrap_err()
        .to_string();
    assert!(err.contains("peft.prompt_init_text"), "{err}");
}

/// Mean next-token cross-entropy of `ids` under `model`.
fn clm_loss(model: &DecoderLm, ids: &Tensor<2, Int>) -> Tensor<1> {
    let [b, t] = ids.dims();
    let logits = model.forward(ids.clone().slice([0..b, 0..t - 1]));
    let v = logits.dims()[2];
    let logp = burn::tensor::activation::log_softmax(logits, 2).reshape([b * (t - 1), v]);
    let target = ids.clone().slice([0..b, 1..t]).reshape([b * (t - 1), 1]);
    logp.gather(1, target).mean().neg()
}

/// Every `Linear` of a block in LLaMA's names.
const EVERY_LLAMA_LINEAR: &[&str] = &[
    "q_proj",
    "k_proj",
    "v_proj",
    "o_proj",
    "gate_proj",
    "up_proj",
    "down_proj",
];

/// Every decoder family fixture beyond LLaMA and GPT-2, with Hugging Face module names
/// to adapt.
const FAMILY_TARGETS: [(&str, &[&str]); 11] = [
    ("mistral-window", EVERY_LLAMA_LINEAR),
    ("qwen2-window", &["q_proj", "v_proj", "down_proj"]),
    ("phi3", &["qkv_proj", "o_proj", "gate_up_proj", "down_proj"]),
    (
        "neox-parallel",
        &["query_key_value", "dense", "dense_h_to_4h", "dense_4h_to_h"],
    ),
    ("neox-sequential", &["query_key_value", "dense_4h_to_h"]),
    ("gemma2", EVERY_LLAMA_LINEAR),
    ("gemma3", &["q_proj", "v_proj", "up_proj"]),
    ("qwen3", &["q_proj", "k_proj", "v_proj", "o_proj"]),
    ("stablelm", &["q_proj", "v_proj", "gate_proj"]),
    ("stablelm-parallel", EVERY_LLAMA_LINEAR),
    ("olmo2", &["q_proj", "k_proj", "o_proj", "down_proj"]),
];

#[test]
fn lora_trains_every_family_through_its_own_module_names() {
    // Every switch of the one decoder under autodiff: sliding windows, fused and
    // interleaved projections, parallel residual, Gemma's soft caps and post-norms. All
    // of a family's `Linear`s adapted by their Hugging Face names; 15 AdamW steps on one
    // batch must lower the loss, and the saved adapter must load back exactly.
    use burn::optim::AdamWConfig;
    let device = test_device().autodiff();
    let ids = Tensor::<1, Int>::from_ints(
        (0..2 * 16)
            .map(|i| (i * 7 + 3) % 64)
            .collect::<Vec<i64>>()
            .as_slice(),
        &device,
    )
    .reshape([2, 16]);
    for (name, targets) in FAMILY_TARGETS {
        let cfg = lora_cfg(4, 8.0, targets);
        let mut model = lora::apply(base(name, &device), &cfg).unwrap();
        let mut optim = AdamWConfig::new().with_weight_decay(0.0).init();
        let first: f32 = clm_loss(&model, &ids).into_scalar();
        for _ in 0..15 {
            let loss = clm_loss(&model, &ids);
            let grads = GradientsParams::from_grads(loss.backward(), &model);
            model = optim.step(1e-2, model, grads);
        }
        let last: f32 = clm_loss(&model, &ids).into_scalar();
        assert!(
            last < first - 0.1,
            "{name}: loss {first} -> {last} after 15 LoRA steps"
        );
        let dir = tempfile::tempdir().unwrap();
        peft::save_adapter(&model, &cfg, dir.path()).unwrap();
        let plain = test_device();
        let (again, _) = peft::load_adapter(base(name, &plain), dir.path()).unwrap();
        let ids = ids.clone().inner();
        let d = max_diff(
            &logits(&again, ids.clone()),
            &logits(&model.clone().valid(), ids),
        );
        assert!(d <= 1e-5, "{name}: adapter round trip {d}");
    }
}

#[test]
fn lora_factors_and_soft_prompts_decay_by_rank_and_ia3_vectors_do_not() {
    // Weight decay goes by rank (nanoGPT, transformers' Trainer): LoRA's A and B are
    // matrices and decay when `train.weight_decay` > 0; IA³'s scaling vectors never do.
    use manabi_objectives::model::decayed_params;
    let device = test_device();
    let plain = base("llama-gqa", &device);
    let layers = plain.config().n_layers;
    let before = decayed_params(&plain, false).len();
    let lora = peft::apply(plain.clone(), &lora_cfg(4, 8.0, &["q_proj", "v_proj"])).unwrap();
    assert_eq!(decayed_params(&lora, false).len(), before + 2 * 2 * layers);
    let ia3 = PeftConfig {
        method: Method::Ia3,
        targets: vec!["k_proj".into(), "v_proj".into(), "down_proj".into()],
        feedforward: vec!["down_proj".into()],
        ..PeftConfig::default()
    };
    let ia3 = peft::apply(plain, &ia3).unwrap();
    assert_eq!(decayed_params(&ia3, false).len(), before);
}
