//! Bad PEFT settings and adapters made for another base are one-line errors naming the
//! key or tensor; LoRA merges and unmerges with the same logits; LoRA dropout acts only
//! while training and only on the adapter input.

use super::*;

#[test]
fn bad_settings_and_foreign_adapters_are_clear_errors() {
    let device = test_device();
    let err = |r: Result<DecoderLm, manabi_finetune::FinetuneError>| r.unwrap_err().to_string();
    let e = err(peft::apply(
        base("llama-gqa", &device),
        &lora_cfg(4, 8.0, &["c_attn"]),
    ));
    assert!(
        e.contains("peft.targets")
            && e.contains("unknown target module `c_attn`")
            && e.contains("q_proj"),
        "{e}"
    );
    let e = err(peft::apply(
        base("gpt2", &device),
        &lora_cfg(0, 8.0, &["c_attn"]),
    ));
    assert!(e.contains("peft.r"), "{e}");
    let e = err(peft::apply(
        base("llama-gqa", &device),
        &PeftConfig {
            method: Method::Bitfit,
            ..PeftConfig::default()
        },
    ));
    assert!(e.contains("bitfit") && e.contains("none"), "{e}");
    // A GPT-2 adapter on a LLaMA base: the modules do not exist.
    let e = lora::load_peft(
        base("llama-gqa", &device),
        &root().join("fixtures/peft/gpt2-lora"),
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("c_attn"), "{e}");
    // The same family with other widths: the tensor and both shapes are named.
    let mut cfg = base("llama-gqa", &device).config().clone();
    cfg.d_model = 48;
    cfg.head_dim = Some(12);
    let other = DecoderLm::new(&cfg, &device);
    let e = lora::load_peft(other, &root().join("fixtures/peft/llama-lora"))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("lora_B.weight` has shape [32, 4], this base needs [48, 4]")
            && e.contains("another base"),
        "{e}"
    );
}

#[test]
fn lora_merges_and_unmerges_with_the_same_logits() {
    let device = test_device().autodiff();
    let ids =
        Tensor::<1, Int>::from_ints([1, 5, 9, 2, 7, 3, 11, 4].as_slice(), &device).reshape([2, 4]);
    let dora = |cfg: PeftConfig| PeftConfig {
        use_dora: true,
        ..cfg
    };
    for (name, cfg) in [
        ("gpt2", lora_cfg(2, 4.0, &["c_attn", "c_proj"])),
        (
            "llama-gqa",
            lora_cfg(4, 8.0, &["q_proj", "v_proj", "down_proj"]),
        ),
        ("llama-gqa", super::lora_patterns::patterned()),
        // DoRA: the merged weight is m · (W + s·A·B) / ‖W + s·A·B‖; unmerging divides by
        // the magnitude and multiplies by the norm kept at merge time, as peft does.
        (
            "llama-gqa",
            dora(lora_cfg(4, 8.0, &["q_proj", "v_proj", "down_proj"])),
        ),
        ("gpt2", dora(lora_cfg(2, 4.0, &["c_attn", "c_proj"]))),
    ] {
        let adapted = peft::apply(base(name, &device), &cfg).unwrap();
        let adapted = train_a_little(adapted, &ids);
        let plain_ids = ids.clone().inner();
        let want = logits(&adapted, plain_ids.clone());
        let (merged, adapters) = lora::merge(&adapted, &cfg);
        assert!(decoder_linears(&merged).iter().all(|(_, l)| {
            l.weight.adapter().is_none()
                && l.weight.reparameterization::<lora::DoraAdapter>().is_none()
        }));
        let d = max_diff(&logits(&merged, plain_ids.clone()), &want);
        assert!(d <= 1e-5, "{name}: merged {d}");
        let back = lora::unmerge(merged, &adapters).unwrap();
        let d = max_diff(&logits(&back, plain_ids.clone()), &want);
        assert!(d <= 1e-5, "{name}: unmerged {d}");
        // The base weights come back, and the adapters train again.
        for ((_, a), (_, b)) in decoder_linears(&adapted).iter().zip(decoder_linears(&back)) {
            let (x, y) = (a.weight.base(), b.weight.base());
            let x: Vec<f32> = x.into_data().try_to_vec().unwrap();
            let y: Vec<f32> = y.into_data().try_to_vec().unwrap();
            assert!(max_diff(&x, &y) <= 1e-5, "{name}: base weight");
        }
        let adapted_count = |m: &DecoderLm| {
            decoder_linears(m)
                .iter()
                .filter(|(_, l)| {
                    l.weight.adapter().is_some()
                        || l.weight.reparameterization::<lora::DoraAdapter>().is_some()
                })
                .count()
        };
        assert!(adapted_count(&back) > 0);
        assert_eq!(adapted_count(&back), adapted_count(&adapted));
    }
}

#[test]
fn lora_dropout_acts_only_while_training_and_only_on_the_adapter_input() {
    let device = test_device().autodiff();
    let ids =
        Tensor::<1, Int>::from_ints([3, 1, 4, 1, 5, 9, 2, 6].as_slice(), &device).reshape([2, 4]);
    let targets = [
        "q_proj",
        "k_proj",
        "v_proj",
        "o_proj",
        "up_proj",
        "down_proj",
    ];
    let cfg = PeftConfig {
        dropout: 0.5,
        ..lora_cfg(4, 8.0, &targets)
    };
    // A few steps with dropout on make B non-zero, so the adapters matter.
    let trained = train_steps(peft::apply(base("llama-gqa", &device), &cfg).unwrap(), &ids);
    let (ids_v, model) = (ids.clone().inner(), trained.valid());
    let folded = logits(&model.clone().with_lora_dropout(0.0), ids_v.clone());
    let plain = logits(&base("llama-gqa", &test_device()), ids_v.clone());
    assert!(
        max_diff(&folded, &plain) > 1e-3,
        "the adapters were trained"
    );
    // Outside training the dropout passes the input through: burn's folded LoRA.
    let eval = logits(&model, ids_v);
    assert!(
        max_diff(&eval, &folded) <= 1e-5,
        "{}",
        max_diff(&eval, &folded)
    );

    // While training each forward pass draws a new mask on the adapter input only.
    let train = trained.clone();
    let sample = || logits(&train, ids.clone());
    let (one, two) = (sample(), sample());
    assert!(max_diff(&one, &two) > 1e-4, "two passes drew the same mask");
    // One adapted layer is linear in the dropped input, so the mean over passes tends to
    // its output without dropout (inverted dropout keeps the expectation).
    let (q, dropout) = (
        &train.layers[0].attn.q_proj,
        &train.layers[0].attn.lora_dropout,
    );
    let x = Tensor::<3>::random(
        [2, 4, q.weight.dims()[0]],
        burn::tensor::Distribution::Default,
        &device,
    );
    let want: Vec<f32> = manabi_model::fused::linear(q, x.clone())
        .into_data()
        .try_to_vec()
        .unwrap();
    let pass = || -> Vec<f32> {
        manabi_model::fused::lora_linear(q, x.clone(), dropout)
            .into_data()
            .try_to_vec()
            .unwrap()
    };
    let mean_abs = |a: &[f32]| a.iter().zip(&want).map(|(x, y)| (x - y).abs()).sum::<f32>();
    let single = mean_abs(&pass());
    let n = 100;
    let mut mean = vec![0.0f32; want.len()];
    for _ in 0..n {
        for (m, x) in mean.iter_mut().zip(pass()) {
            *m += x / n as f32;
        }
    }
    let averaged = mean_abs(&mean);
    assert!(
        single > 1e-4 && averaged * 4.0 < single,
        "mean {averaged} vs one pass {single}"
    );
    // Without adapters on a layer's path nothing is dropped: the base weights stay frozen
    // and only the factors get gradients.
    let loss = train.forward(ids.clone()).powi_scalar(2).mean();
    let grads = GradientsParams::from_grads(loss.backward(), &train);
    for (m, lin) in decoder_linears(&train) {
        assert!(grads.get::<2>(lin.weight.id).is_none(), "{}", m.path);
        if let Some(ad) = lin.weight.adapter() {
            assert!(grads.get::<2>(ad.a.id).is_some(), "{}", m.path);
        }
    }
    let e = peft::apply(
        base("llama-gqa", &device),
        &PeftConfig {
            dropout: 1.0,
            ..lora_cfg(4, 8.0, &["q_proj"])
        },
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("peft.dropout") && e.contains("[0, 1)"), "{e}");
}
