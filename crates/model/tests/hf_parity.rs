//! Numerical parity with Hugging Face `transformers` (fixtures made by
//! scripts/model_fixtures.py, scripts/qwen_fixtures.py and
//! scripts/rope_scaling_fixtures.py): same weights, same ids, logits within 1e-4.

use std::path::{Path, PathBuf};

use burn::prelude::*;
use manabi_model::{DecoderLm, ForwardOptions, KvCache, ModelError, device::test_device, load_hf};
use serde::Deserialize;

#[derive(Deserialize)]
struct Expected {
    input_ids: Vec<Vec<i64>>,
    logits: Vec<f32>,
    loss: f64,
    /// Qwen, RoPE-scaling and family fixtures: a prompt and the 8 (32 for
    /// scripts/family_fixtures.py) tokens `generate(do_sample=False)` picks.
    #[serde(default)]
    greedy_prompt: Vec<u32>,
    #[serde(default)]
    greedy: Vec<u32>,
    /// Length-dependent RoPE (`dynamic`, `longrope`): the greedy tokens of one full
    /// forward per step, when they differ from the cached ones (keys in the cache keep
    /// the frequencies of the pass that made them).
    #[serde(default)]
    greedy_nocache: Option<Vec<u32>>,
    /// Length-dependent RoPE: a batch shorter than the switch, and its logits.
    #[serde(default)]
    short_input_ids: Vec<Vec<i64>>,
    #[serde(default)]
    short_logits: Vec<f32>,
}

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../fixtures/models")
        .join(name)
}

fn expected(name: &str) -> Expected {
    serde_json::from_str(&std::fs::read_to_string(fixture(name).join("expected.json")).unwrap())
        .unwrap()
}

fn ids_tensor(ids: &[Vec<i64>], device: &Device) -> Tensor<2, Int> {
    let (b, t) = (ids.len(), ids[0].len());
    let flat: Vec<i64> = ids.iter().flatten().copied().collect();
    Tensor::<1, Int>::from_ints(flat.as_slice(), device).reshape([b, t])
}

fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

fn check(name: &str) -> DecoderLm {
    let device = test_device();
    let model = load_hf(fixture(name), &device).unwrap();
    let exp = expected(name);
    let logits = model.forward(ids_tensor(&exp.input_ids, &device));
    let got: Vec<f32> = logits.clone().into_data().try_to_vec().unwrap();
    let diff = max_abs_diff(&got, &exp.logits);
    assert!(diff <= 1e-4, "{name}: max |Δlogit| = {diff}");

    // Mean next-token cross-entropy, as transformers computes it with labels = ids.
    let [b, t, v] = logits.dims();
    let mut total = 0.0f64;
    for bi in 0..b {
        for ti in 0..t - 1 {
            let row = &got[(bi * t + ti) * v..(bi * t + ti + 1) * v];
            let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
            let lse = max
                + row
                    .iter()
                    .map(|&x| (x as f64 - max).exp())
                    .sum::<f64>()
                    .ln();
            total += lse - row[exp.input_ids[bi][ti + 1] as usize] as f64;
        }
    }
    let loss = total / (b * (t - 1)) as f64;
    assert!(
        (loss - exp.loss).abs() / exp.loss <= 1e-5,
        "{name}: loss {loss} vs {}",
        exp.loss
    );
    model
}

#[test]
fn gpt2_matches_transformers() {
    check("gpt2");
}

#[test]
fn llama_with_grouped_query_attention_matches_transformers() {
    check("llama-gqa");
}

#[test]
fn llama_tied_with_rope_theta_and_bias_matches_transformers() {
    check("llama-tied-theta");
}

#[test]
fn llama_multi_query_with_explicit_head_dim_matches_transformers() {
    check("llama-mqa");
}

#[test]
fn qwen2_with_qkv_bias_only_matches_transformers() {
    let model = check("qwen2");
    let cfg = model.config();
    assert!(
        cfg.qkv_bias && !cfg.attention_bias && !cfg.qk_norm,
        "{cfg:?}"
    );
    assert_eq!(cfg.hf_model_type.as_deref(), Some("qwen2"));
    assert_eq!(cfg.rope_theta, 1_000_000.0);
    let attn = &model.layers[0].attn;
    assert!(attn.q_proj.bias.is_some() && attn.o_proj.bias.is_none());
}

#[test]
fn qwen3_with_qk_norm_and_explicit_head_dim_matches_transformers() {
    let model = check("qwen3");
    let cfg = model.config();
    assert!(
        cfg.qk_norm && !cfg.qkv_bias && cfg.tie_embeddings,
        "{cfg:?}"
    );
    assert_eq!((cfg.head_dim(), cfg.d_model / cfg.n_heads), (16, 8));
}

/// The greedy tokens of fixture `name` are transformers', with and without the cache.
fn check_greedy(name: &str) {
    use manabi_model::{GenerateOptions, generate};
    let device = test_device();
    let model = load_hf(fixture(name), &device).unwrap();
    let exp = expected(name);
    assert!(exp.greedy.len() >= 8, "{name}");
    for use_cache in [true, false] {
        let opts = GenerateOptions {
            max_new_tokens: exp.greedy.len(),
            temperature: 0.0,
            use_cache,
            ..GenerateOptions::default()
        };
        let got = generate(
            &model,
            std::slice::from_ref(&exp.greedy_prompt),
            &opts,
            None,
        )
        .unwrap();
        let want = match (use_cache, &exp.greedy_nocache) {
            (false, Some(nocache)) => nocache,
            _ => &exp.greedy,
        };
        assert_eq!(&got[0], want, "{name} (cache {use_cache})");
    }
}

#[test]
fn qwen_greedy_tokens_match_transformers_with_and_without_the_kv_cache() {
    for name in ["qwen2", "qwen3"] {
        check_greedy(name);
    }
}

#[test]
fn llama3_rope_scaling_matches_transformers() {
    use manabi_model::{RopeScaling, RopeScalingKind};
    let model = check("llama3-rope");
    let cfg = model.config();
    assert_eq!(
        cfg.rope_scaling,
        Some(RopeScaling {
            kind: RopeScalingKind::Llama3,
            factor: 8.0,
            low_freq_factor: Some(1.0),
            high_freq_factor: Some(4.0),
            original_max_position_embeddings: Some(32),
            ..Default::default()
        })
    );
    assert_eq!(cfg.rope_theta, 50_000.0);
    assert!(cfg.tie_embeddings);
}

#[test]
fn linear_rope_scaling_matches_transformers() {
    use manabi_model::{RopeScaling, RopeScalingKind};
    let model = check("llama-rope-linear");
    assert_eq!(
        model.config().rope_scaling,
        Some(RopeScaling {
            kind: RopeScalingKind::Linear,
            factor: 2.0,
            low_freq_factor: None,
            high_freq_factor: None,
            original_max_position_embeddings: None,
            ..Default::default()
        })
    );
}

#[test]
fn yarn_rope_scaling_matches_transformers() {
    use manabi_model::RopeScalingKind;
    let model = check("llama-rope-yarn");
    let s = model.config().rope_scaling.clone().unwrap();
    assert_eq!(s.kind, RopeScalingKind::Yarn);
    assert_eq!(
        (s.factor, s.original_max_position_embeddings, s.beta_fast),
        (4.0, Some(16), Some(8.0))
    );
    assert!((s.attention_factor() - (0.1 * 4f64.ln() + 1.0)).abs() < 1e-12);
    check_greedy("llama-rope-yarn");
    // max_position_embeddings 64 ≠ factor 4 × original 32: `factor` is used as given.
    let model = check("llama-rope-yarn2");
    let s = model.config().rope_scaling.clone().unwrap();
    assert_eq!(
        (s.factor, s.original_max_position_embeddings),
        (4.0, Some(32))
    );
    check_greedy("llama-rope-yarn2");
}

/// The short batch of fixture `name` (RoPE that depends on the length) gives
/// transformers' logits.
fn check_short(name: &str, model: &DecoderLm) {
    let device = test_device();
    let exp = expected(name);
    assert!(!exp.short_input_ids.is_empty(), "{name}: no short batch");
    let logits = model.forward(ids_tensor(&exp.short_input_ids, &device));
    let got: Vec<f32> = logits.into_data().try_to_vec().unwrap();
    let diff = max_abs_diff(&got, &exp.short_logits);
    assert!(diff <= 1e-4, "{name} (short): max |Δlogit| = {diff}");
}

#[test]
fn dynamic_ntk_rope_matches_transformers_before_and_past_its_length() {
    use manabi_model::RopeScalingKind;
    // max_position_embeddings 32: the 48-token batch grows the base, the 20-token one
    // does not; greedy generation from 28 tokens crosses 32 on the way.
    let model = check("llama-rope-dynamic");
    let s = model.config().rope_scaling.clone().unwrap();
    assert_eq!(s.kind, RopeScalingKind::Dynamic);
    assert_eq!((s.factor, s.max_position_embeddings), (2.0, Some(32)));
    check_short("llama-rope-dynamic", &model);
    check_greedy("llama-rope-dynamic");
}

#[test]
fn longrope_matches_transformers_with_short_and_long_factors() {
    use manabi_model::RopeScalingKind;
    // Phi-3's LongRoPE over an original 32 positions (max 64: factor 2): short factors for
    // the 20-token batch, long ones for the 48-token batch, the switch mid-generation;
    // cos / sin scaled by √(1 + ln 2 / ln 32).
    let model = check("phi3-longrope");
    let s = model.config().rope_scaling.clone().unwrap();
    assert_eq!(s.kind, RopeScalingKind::LongRope);
    assert_eq!(s.original_max_position_embeddings, Some(32));
    assert!((s.attention_factor() - (1.0 + 2f64.ln() / 32f64.ln()).sqrt()).abs() < 1e-12);
    check_short("phi3-longrope", &model);
    check_greedy("phi3-longrope");
}

#[test]
fn rope_scaled_greedy_tokens_match_transformers_with_and_without_the_kv_cache() {
    // The prompt is 36 tokens: generation runs past the original 32 positions.
    for name in ["llama3-rope", "llama-rope-linear"] {
        check_greedy(name);
    }
}

#[test]
fn rope_scaling_survives_export_and_native_checkpoints() {
    use manabi_model::{ModelConfig, export_hf, load_model, save_native};
    let device = test_device();
    let dir = tempfile::tempdir().unwrap();
    for (name, kind) in [
        ("llama3-rope", "llama3"),
        ("llama-rope-linear", "linear"),
        ("llama-rope-yarn", "yarn"),
        ("llama-rope-dynamic", "dynamic"),
        ("phi3-longrope", "longrope"),
    ] {
        let model = load_hf(fixture(name), &device).unwrap();
        let ids = ids_tensor(&expected(name).input_ids, &device);
        let want: Vec<f32> = model.forward(ids.clone()).into_data().try_to_vec().unwrap();

        let hf = dir.path().join(format!("{name}-hf"));
        export_hf(&model, &hf, None).unwrap();
        let text = std::fs::read_to_string(hf.join("config.json")).unwrap();
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        let scaling = &v["rope_scaling"];
        assert_eq!(scaling["rope_type"], kind, "{text}");
        let cfg = model.config();
        let s = cfg.rope_scaling.as_ref().unwrap();
        assert_eq!(scaling["factor"], s.factor, "{text}");
        if kind == "llama3" {
            assert_eq!(scaling["original_max_position_embeddings"], 32, "{text}");
            assert_eq!(scaling["low_freq_factor"], 1.0, "{text}");
            assert_eq!(scaling["high_freq_factor"], 4.0, "{text}");
        } else if kind == "yarn" {
            assert_eq!(scaling["original_max_position_embeddings"], 16, "{text}");
            assert_eq!(scaling["beta_fast"], 8.0, "{text}");
        } else if kind == "longrope" {
            assert_eq!(scaling["original_max_position_embeddings"], 32, "{text}");
            assert_eq!(
                scaling["long_factor"],
                serde_json::json!(s.long_factor),
                "{text}"
            );
            assert_eq!(
                scaling["short_factor"],
                serde_json::json!(s.short_factor),
                "{text}"
            );
            assert_eq!(v["model_type"], "phi3", "{text}");
            assert_eq!(v["original_max_position_embeddings"], 32, "{text}");
        } else {
            assert!(scaling.get("low_freq_factor").is_none(), "{text}");
        }
        let want_cfg = ModelConfig {
            head_dim: Some(cfg.head_dim()), // written explicitly
            ..cfg.clone()
        };
        assert_eq!(
            ModelConfig::from_hf_json(&text).unwrap(),
            want_cfg,
            "{name}"
        );

        let native = dir.path().join(format!("{name}-native"));
        save_native(&model, &native).unwrap();
        let toml = std::fs::read_to_string(native.join("model.toml")).unwrap();
        assert!(toml.contains("[rope_scaling]"), "{toml}");
        for path in [hf, native] {
            let again = load_model(&path, &device).unwrap();
            assert_eq!(again.config().rope_scaling, cfg.rope_scaling, "{name}");
            let got: Vec<f32> = again.forward(ids.clone()).into_data().try_to_vec().unwrap();
            assert_eq!(got, want, "{name}: {} changes logits", path.display());
        }
    }
}

#[test]
fn rope_scaling_errors_name_the_key_on_one_line() {
    use manabi_model::ModelConfig;
    let text = std::fs::read_to_string(fixture("llama3-rope").join("config.json")).unwrap();
    let base: serde_json::Value = serde_json::from_str(&text).unwrap();
    // The error of the config with `edit` applied, which must be one line.
    fn err_of(base: &serde_json::Value, edit: impl Fn(&mut serde_json::Value)) -> String {
        let mut v = base.clone();
        edit(&mut v);
        let err = ModelConfig::from_hf_json(&v.to_string())
            .unwrap_err()
            .to_string();
        assert!(!err.contains('\n'), "{err}");
        err
    }

    let err = err_of(&base, |v| v["rope_parameters"]["rope_type"] = "su".into());
    assert!(
        err.contains("`rope_parameters.rope_type`")
            && err.contains("`su`")
            && err.contains("supported: default, linear, llama3, yarn, dynamic, longrope"),
        "{err}"
    );
    // The transformers 4 layout: `rope_scaling`, older files with `type`.
    let err = err_of(&base, |v| {
        let o = v.as_object_mut().unwrap();
        o.remove("rope_parameters");
        o.insert(
            "rope_scaling".into(),
            serde_json::json!({"type": "ntk-by-parts", "factor": 2.0}),
        );
    });
    assert!(
        err.contains("`rope_scaling.type`") && err.contains("`ntk-by-parts`"),
        "{err}"
    );
    // What `longrope` and `dynamic` need.
    let err = err_of(&base, |v| {
        v["rope_parameters"]["rope_type"] = "longrope".into()
    });
    assert!(
        err.contains("`rope_parameters.long_factor`: missing"),
        "{err}"
    );
    let err = err_of(&base, |v| {
        let r = &mut v["rope_parameters"];
        r["rope_type"] = "longrope".into();
        r["long_factor"] = serde_json::json!([1.0, 2.0]);
        r["short_factor"] = serde_json::json!([1.0, 1.0]);
    });
    assert!(
        err.contains("`rope_scaling.long_factor`")
            && err.contains("has 2 values")
            && err.contains("8 frequencies"),
        "{err}"
    );
    let err = err_of(&base, |v| {
        v["rope_parameters"]["rope_type"] = "dynamic".into();
        v.as_object_mut().unwrap().remove("max_position_embeddings");
    });
    assert!(err.contains("max_position_embeddings"), "{err}");

    for (key, value, named) in [
        ("factor", serde_json::json!(0.0), "`rope_scaling.factor`"),
        ("factor", serde_json::json!(-2.0), "`rope_scaling.factor`"),
        ("factor", serde_json::json!("8"), "`rope_parameters.factor`"),
        (
            "high_freq_factor",
            serde_json::json!(1.0),
            "`rope_scaling.high_freq_factor`",
        ),
        (
            "original_max_position_embeddings",
            serde_json::json!(0),
            "`rope_scaling.original_max_position_embeddings`",
        ),
    ] {
        let err = err_of(&base, |v| v["rope_parameters"][key] = value.clone());
        assert!(err.contains(named), "{key} = {value}: {err}");
    }
    let err = err_of(&base, |v| {
        v["rope_parameters"]
            .as_object_mut()
            .unwrap()
            .remove("factor");
    });
    assert!(err.contains("`rope_parameters.factor`: missing"), "{err}");
}

#[test]
fn older_rope_scaling_layouts_read_the_same() {
    use manabi_model::ModelConfig;
    for name in ["llama3-rope", "llama-rope-linear"] {
        let text = std::fs::read_to_string(fixture(name).join("config.json")).unwrap();
        let want = ModelConfig::from_hf_json(&text).unwrap();
        // transformers 4.45: `rope_scaling` with `rope_type`, `rope_theta` at the top;
        // before that, `type`.
        for kind_key in ["rope_type", "type"] {
            let mut v: serde_json::Value = serde_json::from_str(&text).unwrap();
            let o = v.as_object_mut().unwrap();
            let mut rope = o.remove("rope_parameters").unwrap();
            let r = rope.as_object_mut().unwrap();
            o.insert("rope_theta".into(), r.remove("rope_theta").unwrap());
            let kind = r.remove("rope_type").unwrap();
            r.insert(kind_key.into(), kind);
            o.insert("rope_scaling".into(), rope);
            let got = ModelConfig::from_hf_json(&v.to_string()).unwrap();
            assert_eq!(got, want, "{name} ({kind_key})");
        }
    }
}

#[test]
fn qwen_exports_keep_their_model_type_and_refuse_what_it_cannot_hold() {
    use manabi_model::{ModelConfig, export_hf};
    let device = test_device();
    let dir = tempfile::tempdir().unwrap();
    for (name, arch) in [("qwen2", "Qwen2ForCausalLM"), ("qwen3", "Qwen3ForCausalLM")] {
        let model = load_hf(fixture(name), &device).unwrap();
        let out = dir.path().join(name);
        export_hf(&model, &out, None).unwrap();
        let text = std::fs::read_to_string(out.join("config.json")).unwrap();
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["model_type"], name, "{text}");
        assert_eq!(v["architectures"][0], arch, "{text}");
        let cfg = model.config();
        let want = ModelConfig {
            head_dim: Some(cfg.head_dim()), // written explicitly
            ..cfg.clone()
        };
        assert_eq!(ModelConfig::from_hf_json(&text).unwrap(), want, "{name}");
    }
    // A LLaMA with q/k/v-only biases has no Hugging Face `llama` layout.
    let mut cfg = load_hf(fixture("qwen2"), &device).unwrap().config().clone();
    cfg.hf_model_type = None;
    let model = DecoderLm::new(&cfg, &device);
    let err = export_hf(&model, dir.path().join("bad"), None)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("`hf_model_type`") && err.contains("qkv_bias = true"),
        "{err}"
    );
}

/// The fixtures of scripts/family_fixtures.py: one per switch of the RoPE decoder.
const FAMILIES: [&str; 10] = [
    "mistral-window",
    "qwen2-window",
    "phi3",
    "neox-parallel",
    "neox-sequential",
    "gemma2",
    "gemma3",
    "stablelm",
    "stablelm-parallel",
    "olmo2",
];

#[test]
fn olmo2_post_norms_and_whole_projection_qk_norm_match_transformers() {
    let model = check("olmo2");
    let cfg = model.config();
    assert!(
        cfg.post_norms_only && cfg.post_norms && cfg.qk_norm_whole,
        "{cfg:?}"
    );
    assert!(model.layers[0].attn_norm.is_none());
    check_greedy("olmo2");
}

#[test]
fn stablelm_with_layernorm_qkv_bias_and_partial_rotary_matches_transformers() {
    let model = check("stablelm");
    let cfg = model.config();
    assert!(cfg.qkv_bias && !cfg.attention_bias, "{cfg:?}");
    assert_eq!(cfg.rotary_dim(), 2);
    check_greedy("stablelm");
    assert!(!cfg.parallel_residual && !cfg.qk_norm, "{cfg:?}");
}

#[test]
fn stablelm_shared_norm_parallel_residual_and_per_head_qk_layernorm_match_transformers() {
    // StableLM 2 12B's layout: attention and MLP read one norm; q and k each get a
    // bias-free LayerNorm per head with its own weights (GQA: two for k, four for q).
    let model = check("stablelm-parallel");
    let cfg = model.config();
    assert!(cfg.parallel_residual && cfg.shared_norm, "{cfg:?}");
    assert!(
        cfg.qk_norm && cfg.qk_norm_heads && !cfg.qk_norm_whole,
        "{cfg:?}"
    );
    assert!(model.layers[0].mlp_norm.is_none());
    let widths = |n: &Option<burn::nn::RmsNorm>| n.as_ref().map(|n| n.gamma.dims()[0]);
    let attn = &model.layers[0].attn;
    assert_eq!(
        (widths(&attn.q_norm), widths(&attn.k_norm)),
        (Some(32), Some(16))
    );
    check_greedy("stablelm-parallel");
    // A per-head norm of the wrong width names its tensor.
    let dir = tempfile::tempdir().unwrap();
    let bytes = std::fs::read(fixture("stablelm-parallel").join("model.safetensors")).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let short = [0u8; 4 * 4];
    let bad = "model.layers.1.self_attn.k_layernorm.norms.1.weight";
    let views: Vec<(String, safetensors::tensor::TensorView)> = st
        .tensors()
        .into_iter()
        .map(|(n, v)| {
            if n == bad {
                let view =
                    safetensors::tensor::TensorView::new(safetensors::Dtype::F32, vec![4], &short)
                        .unwrap();
                (n, view)
            } else {
                (n, v)
            }
        })
        .collect();
    safetensors::serialize_to_file(views, None, &dir.path().join("model.safetensors")).unwrap();
    std::fs::copy(
        fixture("stablelm-parallel").join("config.json"),
        dir.path().join("config.json"),
    )
    .unwrap();
    let err = load_hf(dir.path(), &test_device()).unwrap_err().to_string();
    assert!(err.contains(bad), "{err}");
}

#[test]
fn gemma2_and_gemma3_match_transformers() {
    // Gemma 2: soft caps, post-norms, (1 + w) norms, √d embeddings, alternating windows,
    // tied; Gemma 3: per-head q/k norms and a second RoPE base for sliding layers.
    let model = check("gemma2");
    let cfg = model.config();
    assert_eq!(
        (cfg.attn_softcap, cfg.final_softcap),
        (Some(2.0), Some(5.0))
    );
    assert_eq!(cfg.query_pre_attn_scalar, Some(24.0));
    assert!(cfg.post_norms && cfg.embed_scale && cfg.tie_embeddings && !cfg.qk_norm);
    assert_eq!((cfg.window_of(0), cfg.window_of(1)), (Some(4), None));
    check_greedy("gemma2");
    let model = check("gemma3");
    let cfg = model.config();
    assert!(cfg.qk_norm && cfg.attn_softcap.is_none());
    assert_eq!(
        (cfg.rope_theta, cfg.rope_local_theta),
        (1e6, Some(10_000.0))
    );
    assert_eq!(cfg.rope_scaling.as_ref().map(|s| s.factor), Some(2.0));
    assert_eq!((cfg.window_of(1), cfg.window_of(2)), (Some(5), None));
    check_greedy("gemma3");
}

#[test]
fn mistral_sliding_window_matches_transformers_past_the_window() {
    // 12-token inputs and a 40-token generation with a window of 5.
    let model = check("mistral-window");
    let cfg = model.config();
    assert_eq!(cfg.hf_model_type.as_deref(), Some("mistral"));
    assert_eq!(cfg.sliding_window, Some(5));
    assert_eq!((cfg.window_of(0), cfg.window_of(1)), (Some(5), Some(5)));
    check_greedy("mistral-window");
}

#[test]
fn qwen2_sliding_window_on_upper_layers_matches_transformers() {
    let model = check("qwen2-window");
    let cfg = model.config();
    assert_eq!((cfg.window_of(0), cfg.window_of(1)), (None, Some(4)));
    check_greedy("qwen2-window");
}

#[test]
fn phi3_fused_projections_match_transformers() {
    let model = check("phi3");
    let cfg = model.config();
    assert_eq!(cfg.hf_model_type.as_deref(), Some("phi3"));
    assert_eq!((cfg.rotary_dim(), cfg.sliding_window), (4, Some(6)));
    check_greedy("phi3");
}

#[test]
fn gpt_neox_parallel_and_sequential_residuals_match_transformers() {
    for (name, parallel, rotary) in [("neox-parallel", true, 2), ("neox-sequential", false, 4)] {
        let model = check(name);
        let cfg = model.config();
        assert_eq!(cfg.parallel_residual, parallel, "{name}");
        assert_eq!(cfg.rotary_dim(), rotary, "{name}");
        assert!(
            cfg.attention_bias && cfg.mlp_bias && !cfg.tie_embeddings,
            "{name}"
        );
        check_greedy(name);
    }
}

#[test]
fn family_exports_are_the_checkpoints_transformers_wrote() {
    use manabi_model::{ModelConfig, export_hf, load_model, save_native};
    let device = test_device();
    let dir = tempfile::tempdir().unwrap();
    for name in FAMILIES {
        let model = load_hf(fixture(name), &device).unwrap();
        let ids = ids_tensor(&expected(name).input_ids, &device);
        let want: Vec<f32> = model.forward(ids.clone()).into_data().try_to_vec().unwrap();
        let hf = dir.path().join(format!("{name}-hf"));
        export_hf(&model, &hf, None).unwrap();
        let text = std::fs::read_to_string(hf.join("config.json")).unwrap();
        let theirs = std::fs::read_to_string(fixture(name).join("config.json")).unwrap();
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        let t: serde_json::Value = serde_json::from_str(&theirs).unwrap();
        assert_eq!(v["model_type"], t["model_type"], "{name}");
        assert_eq!(v["architectures"], t["architectures"], "{name}");
        // The exported config reads back as the same model.
        let back = ModelConfig::from_hf_json(&text).unwrap();
        let cfg = model.config();
        let mut want_cfg = cfg.clone();
        if back.head_dim.is_some() {
            want_cfg.head_dim = Some(cfg.head_dim()); // written explicitly
        }
        assert_eq!(back, want_cfg, "{name}");
        // Same tensor names and bytes as the fixture transformers saved.
        let ours = std::fs::read(hf.join("model.safetensors")).unwrap();
        let orig = std::fs::read(fixture(name).join("model.safetensors")).unwrap();
        let (a, b) = (
            safetensors::SafeTensors::deserialize(&ours).unwrap(),
            safetensors::SafeTensors::deserialize(&orig).unwrap(),
        );
        let mut names_a: Vec<String> = a.names().into_iter().map(String::from).collect();
        let mut names_b: Vec<String> = b.names().into_iter().map(String::from).collect();
        names_a.sort();
        names_b.sort();
        assert_eq!(names_a, names_b, "{name}");
        for n in &names_a {
            let (x, y) = (a.tensor(n).unwrap(), b.tensor(n).unwrap());
            if name.starts_with("gemma") && n.contains("norm") {
                // Gemma's norm weights went w → 1 + w → (1 + w) − 1: equal up to the
                // rounding of 1 + w, which is the scale both sides compute with.
                let f = |d: &[u8]| -> Vec<f32> {
                    d.chunks_exact(4)
                        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                        .collect()
                };
                let (fx, fy) = (f(x.data()), f(y.data()));
                for (p, q) in fx.iter().zip(&fy) {
                    assert_eq!(1.0 + p, 1.0 + q, "{name}: {n}");
                }
                continue;
            }
            assert_eq!(x.data(), y.data(), "{name}: {n}");
        }
        let native = dir.path().join(format!("{name}-native"));
        save_native(&model, &native).unwrap();
        for path in [hf, native] {
            let again = load_model(&path, &device).unwrap();
            let got: Vec<f32> = again.forward(ids.clone()).into_data().try_to_vec().unwrap();
            assert_eq!(got, want, "{name}: {} changes logits", path.display());
        }
    }
}

#[test]
fn family_config_errors_name_the_key() {
    use manabi_model::ModelConfig;
    let read = |name: &str| -> serde_json::Value {
        serde_json::from_str(&std::fs::read_to_string(fixture(name).join("config.json")).unwrap())
            .unwrap()
    };
    let err_of = |mut v: serde_json::Value, edit: &dyn Fn(&mut serde_json::Value)| {
        edit(&mut v);
        let err = ModelConfig::from_hf_json(&v.to_string())
            .unwrap_err()
            .to_string();
        assert!(!err.contains('\n'), "{err}");
        err
    };
    let err = err_of(read("mistral-window"), &|v| v["sliding_window"] = 0.into());
    assert!(err.contains("`sliding_window`"), "{err}");
    let err = err_of(read("qwen2-window"), &|v| {
        v["layer_types"] = serde_json::json!(["full_attention"]);
    });
    assert!(
        err.contains("`layer_types`") && err.contains("1 entries"),
        "{err}"
    );
    let err = err_of(read("qwen2-window"), &|v| {
        v["layer_types"] = serde_json::json!(["full_attention", "chunked_attention"]);
    });
    assert!(err.contains("`layer_types`"), "{err}");
    let err = err_of(read("neox-parallel"), &|v| v["hidden_act"] = "swish".into());
    assert!(
        err.contains("`hidden_act`") && err.contains("`swish`"),
        "{err}"
    );
    let err = err_of(read("neox-parallel"), &|v| {
        v.as_object_mut().unwrap().remove("hidden_size");
    });
    assert!(err.contains("`hidden_size`"), "{err}");
    let err = err_of(read("phi3"), &|v| v["model_type"] = "phi4flash".into());
    assert!(
        err.contains("`phi4flash`") && err.contains("phi3") && err.contains("gpt_neox"),
        "{err}"
    );
}

#[test]
fn a_fused_tensor_of_the_wrong_size_is_named() {
    let device = test_device();
    let dir = tempfile::tempdir().unwrap();
    for (name, key, to) in [
        (
            "phi3",
            "\"num_key_value_heads\": 2",
            "\"num_key_value_heads\": 4",
        ),
        (
            "neox-parallel",
            "\"intermediate_size\": 64",
            "\"intermediate_size\": 60",
        ),
    ] {
        let d = dir.path().join(name);
        std::fs::create_dir_all(&d).unwrap();
        std::fs::copy(
            fixture(name).join("model.safetensors"),
            d.join("model.safetensors"),
        )
        .unwrap();
        let cfg = std::fs::read_to_string(fixture(name).join("config.json"))
            .unwrap()
            .replace(key, to);
        std::fs::write(d.join("config.json"), cfg).unwrap();
        let err = load_hf(&d, &device).unwrap_err();
        assert!(matches!(err, ModelError::Shape { .. }), "{name}: {err}");
        let err = err.to_string();
        let module = if name == "phi3" {
            "qkv_proj"
        } else {
            "dense_h_to_4h"
        };
        assert!(err.contains(module), "{name}: {err}");
    }
}

#[test]
fn kv_cache_gives_the_same_logits_as_a_full_pass() {
    let device = test_device();
    let names = ["gpt2", "llama-gqa", "qwen2", "qwen3", "llama3-rope"];
    for name in names.into_iter().chain(FAMILIES) {
        let model = load_hf(fixture(name), &device).unwrap();
        let exp = expected(name);
        let ids = ids_tensor(&exp.input_ids, &device);
        let [b, t] = ids.dims();
        let full: Vec<f32> = model.forward(ids.clone()).into_data().try_to_vec().unwrap();
        let mut cache = KvCache::new(model.config().n_layers);
        let mut steps = Vec::new();
        // A 5-token prefix, then one token at a time.
        let prefix = model.forward_with(
            ids.clone().slice([0..b, 0..5]),
            &ForwardOptions::default(),
            Some(&mut cache),
        );
        steps.push(prefix);
        for i in 5..t {
            steps.push(model.forward_with(
                ids.clone().slice([0..b, i..i + 1]),
                &ForwardOptions::default(),
                Some(&mut cache),
            ));
        }
        assert_eq!(cache.len(), t);
        let cached: Vec<f32> = Tensor::cat(steps, 1).into_data().try_to_vec().unwrap();
        let diff = max_abs_diff(&cached, &full);
        assert!(diff <= 1e-4, "{name}: cache changes logits by {diff}");
    }
}

#[test]
fn bad_checkpoints_are_clear_errors() {
    let device = test_device();
    let dir = tempfile::tempdir().unwrap();
    let copy = |name: &str| {
        let d = dir.path().join(name);
        std::fs::create_dir_all(&d).unwrap();
        for f in ["config.json", "model.safetensors"] {
            std::fs::copy(fixture("llama-gqa").join(f), d.join(f)).unwrap();
        }
        d
    };

    let err = load_hf(dir.path().join("nothing"), &device)
        .unwrap_err()
        .to_string();
    assert!(err.contains("config.json"), "{err}");

    let d = copy("truncated");
    let bytes = std::fs::read(d.join("model.safetensors")).unwrap();
    std::fs::write(d.join("model.safetensors"), &bytes[..bytes.len() / 2]).unwrap();
    let err = load_hf(&d, &device).unwrap_err().to_string();
    assert!(err.contains("model.safetensors"), "{err}");

    let d = copy("garbage");
    std::fs::write(d.join("model.safetensors"), b"this is not safetensors").unwrap();
    assert!(
        load_hf(&d, &device)
            .unwrap_err()
            .to_string()
            .contains("model.safetensors")
    );

    let d = copy("no-weights");
    std::fs::remove_file(d.join("model.safetensors")).unwrap();
    std::fs::write(d.join("pytorch_model.bin"), b"pickle").unwrap();
    let err = load_hf(&d, &device).unwrap_err().to_string();
    assert!(err.contains("pickle checkpoints are not loaded"), "{err}");

    // A config that disagrees with the weights: wrong width, then more layers.
    let d = copy("shape");
    let cfg = std::fs::read_to_string(d.join("config.json"))
        .unwrap()
        .replace("\"intermediate_size\": 48", "\"intermediate_size\": 40");
    std::fs::write(d.join("config.json"), cfg).unwrap();
    let err = load_hf(&d, &device).unwrap_err();
    assert!(matches!(err, ModelError::Shape { .. }), "{err}");
    let err = err.to_string();
    assert!(
        err.contains("`model.layers.0.mlp.gate_proj.weight` has shape [48, 32], expected [40, 32]"),
        "{err}"
    );

    let d = copy("layers");
    let cfg = std::fs::read_to_string(d.join("config.json"))
        .unwrap()
        .replace("\"num_hidden_layers\": 2", "\"num_hidden_layers\": 3");
    std::fs::write(d.join("config.json"), cfg).unwrap();
    let err = load_hf(&d, &device).unwrap_err().to_string();
    assert!(err.contains("missing tensors: model.layers.2."), "{err}");

    let d = copy("fewer");
    let cfg = std::fs::read_to_string(d.join("config.json"))
        .unwrap()
        .replace("\"num_hidden_layers\": 2", "\"num_hidden_layers\": 1");
    std::fs::write(d.join("config.json"), cfg).unwrap();
    let err = load_hf(&d, &device).unwrap_err().to_string();
    assert!(err.contains("unexpected tensors: model.layers.1."), "{err}");

    let d = copy("badcfg");
    std::fs::write(
        d.join("config.json"),
        r#"{"model_type": "llama", "hidden_size": 30, "num_attention_heads": 4}"#,
    )
    .unwrap();
    let err = load_hf(&d, &device).unwrap_err().to_string();
    assert!(err.contains("config.json"), "{err}");
}

#[test]
fn export_and_native_checkpoints_round_trip() {
    use manabi_model::{export_hf, load_model, save_native};
    let device = test_device();
    let dir = tempfile::tempdir().unwrap();
    for name in ["gpt2", "llama-gqa", "llama-tied-theta", "qwen2", "qwen3"] {
        let model = load_hf(fixture(name), &device).unwrap();
        let exp = expected(name);
        let ids = ids_tensor(&exp.input_ids, &device);
        let want: Vec<f32> = model.forward(ids.clone()).into_data().try_to_vec().unwrap();

        let hf = dir.path().join(format!("{name}-hf"));
        export_hf(&model, &hf, None).unwrap();
        // The tensor type and the special ids are written out (`null`: a config read from
        // Hugging Face keeps no ids), never left to the family's defaults.
        let v: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(hf.join("config.json")).unwrap())
                .unwrap();
        for (key, want) in [
            ("dtype", serde_json::json!("float32")),
            ("torch_dtype", serde_json::json!("float32")),
            ("bos_token_id", serde_json::Value::Null),
            ("eos_token_id", serde_json::Value::Null),
            ("pad_token_id", serde_json::Value::Null),
        ] {
            assert_eq!(v.get(key), Some(&want), "{name}: {key}");
        }
        let native = dir.path().join(format!("{name}-native"));
        save_native(&model, &native).unwrap();
        for path in [hf, native] {
            let again = load_model(&path, &device).unwrap();
            let got: Vec<f32> = again.forward(ids.clone()).into_data().try_to_vec().unwrap();
            assert_eq!(got, want, "{name}: {} changes logits", path.display());
        }
        // The exported tensors are the fixture's tensors, names and layouts included.
        let ours = std::fs::read(dir.path().join(format!("{name}-hf/model.safetensors"))).unwrap();
        let theirs = std::fs::read(fixture(name).join("model.safetensors")).unwrap();
        let (a, b) = (
            safetensors::SafeTensors::deserialize(&ours).unwrap(),
            safetensors::SafeTensors::deserialize(&theirs).unwrap(),
        );
        let mut names_a: Vec<String> = a.names().into_iter().map(String::from).collect();
        let mut names_b: Vec<String> = b
            .names()
            .into_iter()
            .filter(|n| !n.ends_with(".attn.bias"))
            .map(String::from)
            .collect();
        names_a.sort();
        names_b.sort();
        if name == "gpt2" {
            // transformers drops the tied lm_head; so do we.
            names_b.retain(|n| n != "lm_head.weight");
        }
        assert_eq!(names_a, names_b, "{name}");
        for n in &names_a {
            assert_eq!(
                a.tensor(n).unwrap().data(),
                b.tensor(n).unwrap().data(),
                "{name}: {n}"
            );
        }
    }
}

#[test]
fn corrupt_native_checkpoint_is_an_error() {
    use manabi_model::{load_model, save_native};
    let device = test_device();
    let dir = tempfile::tempdir().unwrap();
    let model = load_hf(fixture("llama-gqa"), &device).unwrap();
    save_native(&model, dir.path()).unwrap();
    let path = dir.path().join("model.bpk");
    let bytes = std::fs::read(&path).unwrap();
    std::fs::write(&path, &bytes[..bytes.len() - 100]).unwrap();
    let err = load_model(dir.path(), &device).unwrap_err().to_string();
    assert!(
        err.contains("model.bpk") && err.contains("truncated"),
        "{err}"
    );
    std::fs::write(
        dir.path().join("model.toml"),
        "family = \"llama\"\nbogus = 1\n",
    )
    .unwrap();
    let err = load_model(dir.path(), &device).unwrap_err().to_string();
    assert!(err.contains("model.toml") && err.contains("bogus"), "{err}");
}

#[test]
fn token_classification_heads_export_in_each_family_layout_and_load_back() {
    use manabi_model::{DecoderClassifier, load_classifier_hf_kind};
    let device = test_device();
    for (name, arch, head) in [
        ("gpt2", "GPT2ForTokenClassification", "classifier"),
        ("llama-gqa", "LlamaForTokenClassification", "score"),
    ] {
        let lm = load_hf(fixture(name), &device).unwrap();
        manabi_model::init::seed(3);
        let m = DecoderClassifier::from_lm(lm, 3);
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("token-head-{name}"));
        let _ = std::fs::remove_dir_all(&dir);
        let names: Vec<String> = ["O", "B-X", "I-X"].iter().map(|s| s.to_string()).collect();
        m.export_hf_as(&dir, None, Some(0), &names, true).unwrap();
        let cfg = std::fs::read_to_string(dir.join("config.json")).unwrap();
        assert!(cfg.contains(arch) && cfg.contains("B-X"), "{cfg}");
        let st = std::fs::read(dir.join("model.safetensors")).unwrap();
        let header = String::from_utf8_lossy(&st[8..4096.min(st.len())]).to_string();
        assert!(
            header.contains(&format!("\"{head}.weight\"")),
            "{name}: {header}"
        );
        assert!(
            header.contains(&format!("\"{head}.bias\"")),
            "{name}: {header}"
        );
        let (back, token) = load_classifier_hf_kind(&dir, &device).unwrap();
        assert!(token);
        let ids = ids_tensor(&[vec![1, 5, 9, 2]], &device);
        let a: Vec<f32> = m
            .forward_tokens(ids.clone())
            .into_data()
            .try_to_vec::<f32>()
            .unwrap();
        let b: Vec<f32> = back
            .forward_tokens(ids)
            .into_data()
            .try_to_vec::<f32>()
            .unwrap();
        let d = a
            .iter()
            .zip(&b)
            .map(|(x, y)| (x - y).abs())
            .fold(0.0, f32::max);
        assert!(d < 1e-6, "{name}: {d}");
        let expected = serde_json::json!({"input_ids": [[1, 5, 9, 2]], "logits": a});
        std::fs::write(dir.join("expected.json"), expected.to_string()).unwrap();
    }
}

#[test]
fn sequence_classifier_exports_never_write_eos_as_pad_token_id() {
    use manabi_model::{DecoderClassifier, ModelConfig};
    let device = test_device();
    let mut cfg: ModelConfig = toml::from_str(
        "family = \"llama\"\nvocab_size = 64\nmax_positions = 16\nd_model = 16\nn_layers = 1\nn_heads = 2\nd_ff = 32\npositions = \"rope\"\nnorm = \"rmsnorm\"\nactivation = \"swiglu\"\ntie_embeddings = true",
    )
    .unwrap();
    cfg.eos_token_id = Some(3);
    // The base model pads with EOS (as a tokenizer without `<pad>` does).
    cfg.pad_token_id = Some(3);
    let config_of = |dir: &Path| -> serde_json::Value {
        serde_json::from_str(&std::fs::read_to_string(dir.join("config.json")).unwrap()).unwrap()
    };
    // The language model's export carries the config's ids and the tensor type.
    let lm_dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("lm-token-ids");
    let _ = std::fs::remove_dir_all(&lm_dir);
    manabi_model::export_hf(&DecoderLm::new(&cfg, &device), &lm_dir, None).unwrap();
    let v = config_of(lm_dir.as_path());
    for (key, want) in [
        ("bos_token_id", serde_json::Value::Null),
        ("eos_token_id", serde_json::json!(3)),
        ("pad_token_id", serde_json::json!(3)),
        ("dtype", serde_json::json!("float32")),
        ("torch_dtype", serde_json::json!("float32")),
    ] {
        assert_eq!(v.get(key), Some(&want), "{key}");
    }
    let m = DecoderClassifier::new(&cfg, 1, &device);
    let pad_written = |pad: Option<u32>| {
        let name = format!("seq-head-pad-{}", pad.map_or(-1, i64::from));
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(name);
        let _ = std::fs::remove_dir_all(&dir);
        m.export_hf(&dir, None, pad, &[]).unwrap();
        let v = config_of(dir.as_path());
        // EOS and the tensor type are written whatever the pad.
        assert_eq!(v.get("eos_token_id"), Some(&serde_json::json!(3)));
        assert_eq!(v.get("bos_token_id"), Some(&serde_json::Value::Null));
        assert_eq!(v.get("dtype"), Some(&serde_json::json!("float32")));
        assert_eq!(v.get("torch_dtype"), Some(&serde_json::json!("float32")));
        v.get("pad_token_id").cloned()
    };
    // A real pad token is written; none, or one equal to EOS, writes no pad_token_id
    // (transformers would read the score before the final EOS), not even the config's
    // own (EOS here).
    assert_eq!(pad_written(Some(0)), Some(serde_json::json!(0)));
    assert_eq!(pad_written(None), None);
    assert_eq!(pad_written(Some(3)), None);
}

#[test]
fn exports_above_the_shard_size_are_sharded_and_load_back() {
    use manabi_model::{export_hf, export_hf_sharded, load_model};
    let device = test_device();
    let model = load_hf(fixture("llama-gqa"), &device).unwrap();
    let ids = ids_tensor(&expected("llama-gqa").input_ids, &device);
    let want: Vec<f32> = model.forward(ids.clone()).into_data().try_to_vec().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("sharded");
    export_hf(&model, &out, None).unwrap();
    // 15 kB shards: the weights need several; then back to one file.
    export_hf_sharded(&model, &out, None, 15_000).unwrap();
    let index: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(out.join("model.safetensors.index.json")).unwrap(),
    )
    .unwrap();
    let map = index["weight_map"].as_object().unwrap();
    let files: std::collections::BTreeSet<&str> =
        map.values().map(|f| f.as_str().unwrap()).collect();
    let n = files.len();
    assert!(n >= 3, "{files:?}");
    assert!(files.contains(format!("model-00001-of-{n:05}.safetensors").as_str()));
    assert!(
        !out.join("model.safetensors").exists(),
        "no stale single file"
    );
    let total: u64 = files
        .iter()
        .map(|f| {
            let bytes = std::fs::read(out.join(f)).unwrap();
            let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
            st.tensors()
                .iter()
                .map(|(_, v)| v.data().len() as u64)
                .sum::<u64>()
        })
        .sum();
    assert_eq!(index["metadata"]["total_size"].as_u64(), Some(total));
    let got: Vec<f32> = load_model(&out, &device)
        .unwrap()
        .forward(ids.clone())
        .into_data()
        .try_to_vec()
        .unwrap();
    assert_eq!(got, want);
    export_hf(&model, &out, None).unwrap();
    assert!(out.join("model.safetensors").exists());
    assert!(!out.join("model.safetensors.index.json").exists());
    for f in files {
        assert!(!out.join(f).exists(), "stale shard {f}");
    }
}

/// One fixture per decoder family (and per length-dependent RoPE).
const DECODER_FAMILIES: [&str; 14] = [
    "gpt2",
    "llama-gqa",
    "mistral-window",
    "qwen2",
    "qwen3",
    "phi3",
    "phi3-longrope",
    "gemma2",
    "gemma3",
    "neox-parallel",
    "olmo2",
    "stablelm",
    "stablelm-parallel",
    "llama-rope-dynamic",
];

#[test]
fn every_family_trains_through_repeated_backward_passes() {
    // A training step per pass: parameters loaded as a sum (Gemma's `1 + w` norms) must
    // be leaves, or the first backward pass consumes their graph and the second fails.
    use manabi_model::decoder::Norm;
    let device = test_device().autodiff();
    for name in DECODER_FAMILIES {
        let model = load_hf(fixture(name), &device).unwrap();
        let ids = ids_tensor(&[vec![1, 5, 9, 3, 7, 2, 4, 8]], &device);
        for step in 0..2 {
            let grads = model.forward(ids.clone()).sum().backward();
            let has = match &model.final_norm {
                Norm::Rms(n) => n.gamma.grad(&grads).is_some(),
                Norm::Layer(n) => n.gamma.grad(&grads).is_some(),
            };
            assert!(has, "{name}: no gradient for the final norm at pass {step}");
            assert!(
                model.embed_tokens.weight.grad(&grads).is_some(),
                "{name}: no gradient for the embeddings at pass {step}"
            );
        }
    }
}

/// A tensor to write: name, shape, little-endian bytes.
type Stored = (String, Vec<usize>, Vec<u8>);

/// An f32 rounded to a 16-bit float: its bits and their exact f32 value.
type Round16 = fn(f32) -> (u16, f32);

#[test]
fn every_family_reads_bf16_and_f16_checkpoints() {
    // Checkpoints ship in bf16 or f16: each family fixture rewritten with 16-bit tensors
    // must give exactly the logits of the same weights rounded to 16 bits (to nearest,
    // ties to even, as torch's `.to()`) and stored as f32 (the reader widens both exactly;
    // every family's tensor names and fused layouts go through it).
    use half::{bf16, f16};
    use safetensors::{Dtype, SafeTensors, tensor::TensorView};
    let device = test_device();
    let tmp = tempfile::tempdir().unwrap();
    let kinds: [(&str, Dtype, Round16); 2] = [
        ("bf16", Dtype::BF16, |x| {
            let h = bf16::from_f32(x);
            (h.to_bits(), h.to_f32())
        }),
        ("f16", Dtype::F16, |x| {
            let h = f16::from_f32(x);
            (h.to_bits(), h.to_f32())
        }),
    ];
    for name in DECODER_FAMILIES {
        let bytes = std::fs::read(fixture(name).join("model.safetensors")).unwrap();
        let st = SafeTensors::deserialize(&bytes).unwrap();
        for (kind, dtype, round) in kinds {
            let (mut half, mut wide): (Vec<Stored>, Vec<Stored>) = (Vec::new(), Vec::new());
            for (tensor, view) in st.tensors() {
                assert_eq!(view.dtype(), Dtype::F32, "{name}: {tensor}");
                let rounded: Vec<(u16, f32)> = view
                    .data()
                    .chunks_exact(4)
                    .map(|c| round(f32::from_le_bytes([c[0], c[1], c[2], c[3]])))
                    .collect();
                let shape = view.shape().to_vec();
                half.push((
                    tensor.clone(),
                    shape.clone(),
                    rounded.iter().flat_map(|h| h.0.to_le_bytes()).collect(),
                ));
                wide.push((
                    tensor,
                    shape,
                    rounded.iter().flat_map(|h| h.1.to_le_bytes()).collect(),
                ));
            }
            let mut logits = Vec::new();
            for (suffix, dtype, tensors) in [(kind, dtype, &half), ("f32", Dtype::F32, &wide)] {
                let dir = tmp.path().join(format!("{name}-{kind}-{suffix}"));
                std::fs::create_dir_all(&dir).unwrap();
                std::fs::copy(fixture(name).join("config.json"), dir.join("config.json")).unwrap();
                let views: Vec<(String, TensorView)> = tensors
                    .iter()
                    .map(|(n, shape, data)| {
                        (
                            n.clone(),
                            TensorView::new(dtype, shape.clone(), data).unwrap(),
                        )
                    })
                    .collect();
                safetensors::serialize_to_file(views, None, &dir.join("model.safetensors"))
                    .unwrap();
                let model = load_hf(&dir, &device).unwrap();
                let out: Vec<f32> = model
                    .forward(ids_tensor(&expected(name).input_ids, &device))
                    .into_data()
                    .try_to_vec()
                    .unwrap();
                logits.push(out);
            }
            assert_eq!(logits[0], logits[1], "{name}: {kind} read differently");
            // The rounding did happen (the fixtures' weights are not 16-bit already).
            let diff = max_abs_diff(&logits[0], &expected(name).logits);
            assert!(
                diff > 0.0 && diff.is_finite(),
                "{name}: {kind} moves logits by {diff}"
            );
        }
    }
}
