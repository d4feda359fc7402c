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
