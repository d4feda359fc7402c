//! Per-module rank and α (`rank_pattern` / `alpha_pattern`), `layers_to_transform` and
//! DoRA: the structure peft's own adapters load into, keys matched as peft matches them,
//! the `[peft]` settings, DoRA's gradients, and bad settings as one-line errors naming
//! the key.

use super::*;
use manabi_finetune::peft::Patterns;
use manabi_finetune::peft::lora::DoraAdapter;

/// The manabi-trained patterned case of `adapters_trained_here_export_and_load_back_exactly`
/// (and of the merge test): q_proj rank 2, layer 1's down_proj rank 6, v_proj α 3.
pub(crate) fn patterned() -> PeftConfig {
    PeftConfig {
        rank_pattern: Patterns(vec![
            ("q_proj".into(), 2),
            (r"layers\.1\.mlp\.down_proj".into(), 6),
        ]),
        alpha_pattern: Patterns(vec![("v_proj".into(), 3.0)]),
        ..lora_cfg(4, 8.0, &["q_proj", "v_proj", "down_proj"])
    }
}

/// What the exports of `adapters_trained_here_export_and_load_back_exactly` say in
/// `adapter_config.json`, for peft to build the same modules.
pub(crate) fn check_export(name: &str, dir: &Path) {
    use serde_json::json;
    let text = std::fs::read_to_string(dir.join("adapter_config.json")).unwrap();
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    match name {
        "llama-lora-patterns" => {
            // Ranks by short name where every layer agrees, by escaped full name where
            // they differ; α only where the scale is not lora_alpha / rank.
            assert_eq!(
                v["rank_pattern"],
                json!({"q_proj": 2, r"model\.layers\.1\.mlp\.down_proj": 6}),
                "{text}"
            );
            assert_eq!(v["alpha_pattern"], json!({"v_proj": 3.0}), "{text}");
            assert_eq!(
                v["target_modules"],
                json!(["down_proj", "q_proj", "v_proj"])
            );
        }
        "llama-lora-layers" => {
            // A target named in full is adapted whatever its layer: short names with
            // layers_to_transform would adapt other modules, so every module is named.
            assert_eq!(
                v["target_modules"],
                json!([
                    "model.layers.0.mlp.down_proj",
                    "model.layers.1.self_attn.q_proj",
                    "model.layers.1.self_attn.v_proj"
                ]),
                "{text}"
            );
            assert!(v["layers_to_transform"].is_null(), "{text}");
        }
        "llama-dora" | "neox-dora-blockdiag" => assert_eq!(v["use_dora"], json!(true)),
        "gpt2-dora-blockdiag" => {
            assert_eq!(v["use_dora"], json!(true));
            assert_eq!(v["rank_pattern"], json!({"c_attn": 6}), "{text}");
        }
        _ => {}
    }
}

/// `(rank, scale, dora)` of the adapter on the module with HF name `hf`.
fn adapter_at(model: &DecoderLm, hf: &str) -> Option<(usize, f64, bool)> {
    let (_, lin) = decoder_linears(model)
        .into_iter()
        .find(|(m, _)| m.hf == hf && m.part.is_none_or(|(k, _)| k == 0))?;
    if let Some(ad) = lin.weight.adapter() {
        return Some((ad.a.val().dims()[1], ad.scale, false));
    }
    let d = lin.weight.reparameterization::<DoraAdapter>()?;
    Some((d.a.val().dims()[1], d.scale, true))
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-9
}

#[test]
fn peft_patterns_layers_and_dora_load_into_the_modules_peft_builds() {
    let device = test_device();
    let load = |base_name: &str, adapter: &str| {
        peft::load_adapter(
            base(base_name, &device),
            &root().join("fixtures/peft").join(adapter),
        )
        .unwrap()
    };
    // r = 4, α = 16; q_proj r 2 α 8, v_proj r 8, layer 1's down_proj r 6 (a full-name
    // key), layer 0's down_proj α 3 (a regex key).
    let (m, cfg) = load("llama-gqa", "llama-lora-patterns");
    assert_eq!((cfg.r, cfg.alpha), (4, 16.0));
    for (hf, rank, scale) in [
        ("model.layers.0.self_attn.q_proj", 2, 4.0),
        ("model.layers.1.self_attn.q_proj", 2, 4.0),
        ("model.layers.0.self_attn.v_proj", 8, 2.0),
        ("model.layers.0.mlp.down_proj", 4, 0.75),
        ("model.layers.1.mlp.down_proj", 6, 16.0 / 6.0),
    ] {
        let (r, s, dora) = adapter_at(&m, hf).unwrap();
        assert!(
            r == rank && close(s, scale) && !dora,
            "{hf}: rank {r}, scale {s}"
        );
    }
    // Layer 1 only: nothing on layer 0.
    let (m, cfg) = load("llama-gqa", "llama-lora-layers");
    assert_eq!(cfg.layers_to_transform, vec![1]);
    for (module, lin) in decoder_linears(&m) {
        let adapted = lin.weight.adapter().is_some();
        assert_eq!(adapted, module.hf.contains("layers.1."), "{}", module.hf);
    }
    // DoRA everywhere it targets; GPT-2's c_attn parts share A (rank 4 each).
    let (m, cfg) = load("llama-gqa", "llama-dora");
    assert!(cfg.use_dora);
    assert_eq!(
        adapter_at(&m, "model.layers.1.mlp.down_proj"),
        Some((4, 2.0, true))
    );
    let (m, _) = load("gpt2", "gpt2-dora");
    let parts: Vec<_> = decoder_linears(&m)
        .into_iter()
        .filter(|(mm, _)| mm.hf == "transformer.h.0.attn.c_attn")
        .map(|(_, lin)| {
            let d = lin.weight.reparameterization::<DoraAdapter>().unwrap();
            let a: Vec<f32> = d.a.val().into_data().try_to_vec().unwrap();
            (a, d.magnitude.val().dims()[0])
        })
        .collect();
    assert_eq!(parts.len(), 3);
    assert!(parts.iter().all(|p| p.0 == parts[0].0 && p.1 == 32));
}

#[test]
fn pattern_keys_match_as_peft_matches_them() {
    // get_pattern_key: a regex matched against the whole name or its end after a dot;
    // the first matching key wins; a key matching no adapted module is ignored (peft
    // warns).
    let device = test_device();
    let cfg = PeftConfig {
        rank_pattern: Patterns(vec![
            ("q_proj".into(), 2),
            (r"layers\.0\..*".into(), 6),
            ("self_attn.k_proj".into(), 3),
            ("proj".into(), 7),
        ]),
        alpha_pattern: Patterns(vec![("model.layers.1.self_attn.v_proj".into(), 1.0)]),
        ..lora_cfg(4, 8.0, &["q_proj", "k_proj", "v_proj", "o_proj"])
    };
    let m = peft::apply(base("llama-gqa", &device), &cfg).unwrap();
    for (hf, rank, scale) in [
        ("model.layers.0.self_attn.q_proj", 2, 4.0),
        ("model.layers.0.self_attn.k_proj", 6, 8.0 / 6.0),
        ("model.layers.0.self_attn.o_proj", 6, 8.0 / 6.0),
        ("model.layers.1.self_attn.q_proj", 2, 4.0),
        ("model.layers.1.self_attn.k_proj", 3, 8.0 / 3.0),
        ("model.layers.1.self_attn.v_proj", 4, 0.25),
        ("model.layers.1.self_attn.o_proj", 4, 2.0),
    ] {
        let (r, s, _) = adapter_at(&m, hf).unwrap();
        assert!(r == rank && close(s, scale), "{hf}: rank {r}, scale {s}");
    }
    // Targets: a full name or a dotted ending; with layers_to_transform only the endings
    // are restricted to the layers (peft's check_target_module_exists).
    let cfg = PeftConfig {
        layers_to_transform: vec![0],
        ..lora_cfg(4, 8.0, &["self_attn.q_proj", "model.layers.1.mlp.up_proj"])
    };
    let m = peft::apply(base("llama-gqa", &device), &cfg).unwrap();
    let adapted: Vec<String> = decoder_linears(&m)
        .into_iter()
        .filter(|(_, l)| l.weight.adapter().is_some())
        .map(|(mm, _)| mm.hf)
        .collect();
    assert_eq!(
        adapted,
        [
            "model.layers.0.self_attn.q_proj",
            "model.layers.1.mlp.up_proj"
        ]
    );
}

#[test]
fn recipes_set_patterns_layers_and_dora_in_peft() {
    let text = r#"
method = "lora"
r = 4
targets = ["q_proj", "v_proj", "down_proj"]
use_dora = true
layers_to_transform = 1
layers_pattern = "layers"
rank_pattern = { q_proj = 2, "layers\\.1\\.mlp\\..*" = 8 }
alpha_pattern = { q_proj = 8 }
"#;
    let cfg: PeftConfig = toml::from_str(text).unwrap();
    assert!(cfg.use_dora);
    assert_eq!(cfg.layers_to_transform, vec![1]);
    assert_eq!(cfg.layers_pattern, vec!["layers".to_string()]);
    let mut ranks = cfg.rank_pattern.0.clone();
    ranks.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(
        ranks,
        vec![(r"layers\.1\.mlp\..*".to_string(), 8), ("q_proj".into(), 2)]
    );
    assert_eq!(cfg.alpha_pattern.0, vec![("q_proj".to_string(), 8.0)]);
    cfg.validate().unwrap();
    // peft.toml keeps them; a config without them writes what it wrote before.
    let again: PeftConfig = toml::from_str(&cfg.to_toml()).unwrap();
    assert_eq!(again, cfg);
    let plain = lora_cfg(4, 8.0, &["q_proj"]).to_toml();
    for key in ["use_dora", "layers_", "_pattern"] {
        assert!(!plain.contains(key), "{plain}");
    }
    // Lists too; unknown keys are still refused.
    let cfg: PeftConfig =
        toml::from_str("layers_to_transform = [0, 1]\nlayers_pattern = [\"h\", \"layers\"]")
            .unwrap();
    assert_eq!(cfg.layers_to_transform, vec![0, 1]);
    assert_eq!(cfg.layers_pattern.len(), 2);
    assert!(toml::from_str::<PeftConfig>("rank_patern = { q_proj = 2 }").is_err());
    // The DoRA model: only layer 1, and its q_proj at rank 2.
    let device = test_device();
    let cfg: PeftConfig = toml::from_str(text).unwrap();
    let m = peft::apply(base("llama-gqa", &device), &cfg).unwrap();
    assert_eq!(
        adapter_at(&m, "model.layers.1.self_attn.q_proj"),
        Some((2, 4.0, true))
    );
    assert_eq!(adapter_at(&m, "model.layers.0.self_attn.q_proj"), None);
}

#[test]
fn fresh_dora_changes_nothing_and_only_its_parameters_train() {
    let device = test_device().autodiff();
    let ids =
        Tensor::<1, Int>::from_ints([3, 1, 4, 1, 5, 9, 2, 6].as_slice(), &device).reshape([2, 4]);
    for (name, targets) in [
        ("llama-gqa", &["q_proj", "v_proj", "down_proj"][..]),
        ("gpt2", &["c_attn", "c_proj"][..]),
    ] {
        let want = logits(&base(name, &device).valid(), ids.clone().inner());
        let cfg = PeftConfig {
            use_dora: true,
            ..lora_cfg(4, 8.0, targets)
        };
        let model = peft::apply(base(name, &device), &cfg).unwrap();
        let got = logits(&model.valid(), ids.clone().inner());
        assert!(max_diff(&got, &want) <= 1e-6, "{name}: fresh DoRA");
        // A, B and the magnitude of each adapted `Linear`: r·(in + out) + out.
        let expected: usize = decoder_linears(&model)
            .iter()
            .filter_map(|(_, l)| l.weight.reparameterization::<DoraAdapter>())
            .map(|d| {
                let [i, r] = d.a.val().dims();
                let o = d.b.val().dims()[1];
                r * (i + o) + o
            })
            .sum();
        let (trainable, _) = peft::describe(&model);
        assert!(expected > 0);
        assert_eq!(trainable, expected, "{name}");
        let loss = model.forward(ids.clone()).powi_scalar(2).mean();
        let grads = GradientsParams::from_grads(loss.backward(), &model);
        for (m, lin) in decoder_linears(&model) {
            assert!(grads.get::<2>(lin.weight.id).is_none(), "{}", m.path);
            if let Some(d) = lin.weight.reparameterization::<DoraAdapter>() {
                assert!(grads.get::<1>(d.magnitude.id).is_some(), "{}", m.path);
            }
        }
        assert_eq!(count_grads(&model, &grads), trainable, "{name}");
    }
}

#[test]
fn bad_patterns_and_layers_are_one_line_errors_naming_the_key() {
    let device = test_device();
    let err = |cfg: PeftConfig| {
        let e = peft::apply(base("llama-gqa", &device), &cfg)
            .unwrap_err()
            .to_string();
        assert!(!e.contains('\n'), "{e}");
        e
    };
    let q = || lora_cfg(4, 8.0, &["q_proj"]);
    let e = err(PeftConfig {
        layers_to_transform: vec![0, 2],
        ..q()
    });
    assert!(
        e.contains("peft.layers_to_transform") && e.contains("layer 2") && e.contains("2 layers"),
        "{e}"
    );
    let e = err(PeftConfig {
        rank_pattern: Patterns(vec![("q_proj".into(), 0)]),
        ..q()
    });
    assert!(
        e.contains("peft.rank_pattern") && e.contains("q_proj"),
        "{e}"
    );
    let e = err(PeftConfig {
        alpha_pattern: Patterns(vec![("q_(proj".into(), 2.0)]),
        ..q()
    });
    assert!(
        e.contains("peft.alpha_pattern") && e.contains("q_(proj"),
        "{e}"
    );
    let e = err(PeftConfig {
        layers_pattern: vec!["layers".into()],
        ..q()
    });
    assert!(
        e.contains("peft.layers_pattern") && e.contains("layers_to_transform"),
        "{e}"
    );
    let e = err(PeftConfig {
        layers_to_transform: vec![0],
        layers_pattern: vec!["blocks".into()],
        ..q()
    });
    assert!(
        e.contains("peft.layers_pattern") && e.contains("no target module"),
        "{e}"
    );
    let e = err(PeftConfig {
        use_dora: true,
        dropout: 0.1,
        ..q()
    });
    assert!(e.contains("peft.dropout") && e.contains("DoRA"), "{e}");
    let e = err(PeftConfig {
        method: Method::Ia3,
        rank_pattern: Patterns(vec![("k_proj".into(), 2)]),
        targets: vec!["k_proj".into()],
        ..PeftConfig::default()
    });
    assert!(
        e.contains("peft.rank_pattern") && e.contains("only LoRA"),
        "{e}"
    );
    // peft ignores (with a warning) a pattern key that matches no adapted module.
    let cfg = PeftConfig {
        rank_pattern: Patterns(vec![("v_proj".into(), 2)]),
        ..q()
    };
    let m = peft::apply(base("llama-gqa", &device), &cfg).unwrap();
    assert_eq!(
        adapter_at(&m, "model.layers.0.self_attn.q_proj"),
        Some((4, 2.0, false))
    );
    // An adapter file asking for a layer the base lacks: the file and the key.
    let dir = tempfile::tempdir().unwrap();
    let src = root().join("fixtures/peft/llama-lora-layers");
    for f in ["adapter_config.json", "adapter_model.safetensors"] {
        std::fs::copy(src.join(f), dir.path().join(f)).unwrap();
    }
    let path = dir.path().join("adapter_config.json");
    let mut v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    v["layers_to_transform"] = serde_json::json!([5]);
    std::fs::write(&path, v.to_string()).unwrap();
    let e = peft::load_adapter(base("llama-gqa", &device), dir.path())
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("adapter_config.json")
            && e.contains("`layers_to_transform`")
            && e.contains("layer 5")
            && !e.contains('\n'),
        "{e}"
    );
}

#[test]
fn a_dora_checkpoint_with_ordered_patterns_rebuilds_from_peft_toml() {
    // Overlapping keys out of sorted order: layer 1's q_proj takes the first (rank 2),
    // the rest of layer 1 the second (rank 6). peft.toml writes them as [key, value]
    // pairs, so the checkpoint rebuilds the same ranks.
    let device = test_device().autodiff();
    let ids =
        Tensor::<1, Int>::from_ints([1, 5, 9, 2, 7, 3, 11, 4].as_slice(), &device).reshape([2, 4]);
    let cfg = PeftConfig {
        use_dora: true,
        rank_pattern: Patterns(vec![("q_proj".into(), 2), (r"layers\.1\..*".into(), 6)]),
        ..lora_cfg(4, 8.0, &["q_proj", "v_proj", "down_proj"])
    };
    let model = train_a_little(peft::apply(base("llama-gqa", &device), &cfg).unwrap(), &ids);
    let dir = tempfile::tempdir().unwrap();
    manabi_model::checkpoint::save_module(&model, model.config(), dir.path()).unwrap();
    std::fs::write(dir.path().join(peft::PEFT_FILE), cfg.to_toml()).unwrap();
    let (again, spec) = manabi_finetune::load_decoder(dir.path(), &test_device()).unwrap();
    assert_eq!(spec.unwrap().rank_pattern, cfg.rank_pattern);
    assert_eq!(
        adapter_at(&again, "model.layers.1.self_attn.q_proj"),
        Some((2, 4.0, true))
    );
    assert_eq!(
        adapter_at(&again, "model.layers.1.mlp.down_proj").map(|a| a.0),
        Some(6)
    );
    let ids = ids.inner();
    let d = max_diff(&logits(&again, ids.clone()), &logits(&model, ids));
    assert!(d <= 1e-6, "checkpoint round trip {d}");
}
