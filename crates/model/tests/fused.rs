//! The fused operations against their reference compositions: values and gradients of
//! every input within 1e-5 (relative to the largest magnitude), on the test device with
//! autodiff. On a device without fused kernels both sides are the reference.

use burn::prelude::*;
use burn::tensor::Distribution;
use manabi_model::device::test_device;
use manabi_model::fused::{self, reference};

fn device() -> Device {
    test_device().autodiff()
}

fn random<const D: usize>(shape: [usize; D], device: &Device) -> Tensor<D> {
    Tensor::random(shape, Distribution::Normal(0.0, 1.5), device).require_grad()
}

fn values<const D: usize>(t: &Tensor<D>) -> Vec<f32> {
    t.clone()
        .into_data()
        .try_to_vec::<f32>()
        .expect("f32 tensor")
}

fn assert_close(what: &str, got: &[f32], want: &[f32]) {
    assert_eq!(got.len(), want.len(), "{what}: lengths");
    let scale = want.iter().fold(1e-6f32, |m, v| m.max(v.abs()));
    let worst = got
        .iter()
        .zip(want)
        .map(|(a, b)| (a - b).abs() / scale)
        .fold(0f32, f32::max);
    assert!(worst <= 1e-5, "{what}: max relative difference {worst:e}");
}

/// Runs `f` on fresh copies of `inputs` through the fused and the reference function,
/// backpropagates a fixed random cotangent, and compares outputs and input gradients.
fn check<const D: usize, const O: usize>(
    what: &str,
    inputs: &[Tensor<D>],
    fused: impl Fn(&[Tensor<D>]) -> Tensor<O>,
    reference: impl Fn(&[Tensor<D>]) -> Tensor<O>,
) {
    let run = |f: &dyn Fn(&[Tensor<D>]) -> Tensor<O>| {
        let xs: Vec<Tensor<D>> = inputs
            .iter()
            .map(|x| Tensor::from_data(x.to_data(), &x.device()).require_grad())
            .collect();
        let y = f(&xs);
        let cot = seeded(&y); // the same cotangent in both runs
        let grads = (y.clone() * cot).sum().backward();
        let gs: Vec<Vec<f32>> = xs
            .iter()
            .map(|x| values(&x.grad(&grads).expect("gradient")))
            .collect();
        (values(&y), gs)
    };
    let (yf, gf) = run(&fused);
    let (yr, gr) = run(&reference);
    assert_close(&format!("{what} output"), &yf, &yr);
    for (i, (a, b)) in gf.iter().zip(&gr).enumerate() {
        assert_close(&format!("{what} gradient of input {i}"), a, b);
    }
}

/// A deterministic cotangent shaped like `y`.
fn seeded<const O: usize>(y: &Tensor<O>) -> Tensor<O> {
    let n = y.shape().num_elements();
    let v: Vec<f32> = (0..n).map(|i| ((i as f32) * 0.618).sin()).collect();
    Tensor::<1>::from_floats(v.as_slice(), &y.device()).reshape(y.dims())
}

#[test]
fn gelu_tanh_matches_reference() {
    let d = device();
    check(
        "gelu_tanh",
        &[random([3, 7, 129], &d)],
        |x| fused::gelu_tanh(x[0].clone()),
        |x| reference::gelu_tanh(x[0].clone()),
    );
}

/// Random queries `[b, h, t, hd]`, keys and values `[b, h, tk, hd]`.
/// Queries `[b, t, h, hd]`, keys and values `[b, tk, h, hd]` (token-major, as
/// `fused::attention` takes them).
fn qkv([b, h, t, tk, hd]: [usize; 5], d: &Device) -> [Tensor<4>; 3] {
    [
        random([b, t, h, hd], d),
        random([b, tk, h, hd], d),
        random([b, tk, h, hd], d),
    ]
}

/// A causal mask `[1, 1, t, tk]` over `cached` keys before the `t` queries.
fn causal_mask(t: usize, tk: usize, cached: usize, d: &Device) -> Tensor<4> {
    let mut m = vec![0f32; t * tk];
    for i in 0..t {
        m[i * tk..(i + 1) * tk][(i + cached + 1).min(tk)..].fill(-1e30);
    }
    Tensor::<1>::from_floats(m.as_slice(), d).reshape([1, 1, t, tk])
}

#[test]
fn attention_matches_reference_with_and_without_masks() {
    let d = device();
    let (b, h, t, tk, hd) = (2, 3, 5, 8, 16);
    let inputs = qkv([b, h, t, tk, hd], &d);
    let causal = causal_mask(t, tk, 3, &d);
    let pad = Tensor::<4>::random([b, 1, 1, tk], Distribution::Normal(0.0, 1.0), &d);
    let alibi = Tensor::<4>::random([1, h, t, tk], Distribution::Normal(0.0, 1.0), &d);
    for (name, bias) in [
        ("no bias", None),
        ("causal", Some(causal.clone())),
        ("causal + per-batch", Some(causal + pad)),
        ("per-head", Some(alibi)),
    ] {
        check(
            &format!("attention, {name}"),
            &inputs,
            |x| {
                fused::attention(
                    x[0].clone(),
                    x[1].clone(),
                    x[2].clone(),
                    bias.as_ref(),
                    0.25,
                )
            },
            |x| {
                reference::attention(
                    x[0].clone(),
                    x[1].clone(),
                    x[2].clone(),
                    bias.as_ref(),
                    0.25,
                )
            },
        );
    }
}

#[test]
fn attention_tiles_read_only_visible_keys_and_match_reference() {
    // Several tiles of query rows, a causal mask with 5 cached keys before the queries,
    // and per-batch key padding: left padding that hides every key the first rows of
    // batch element 1 could see (those rows are computed whole, as without tiles) and
    // right padding that hides the last keys of element 0.
    let d = device();
    let (b, h, t, tk, hd) = (2, 2, 70, 75, 8);
    let inputs = qkv([b, h, t, tk, hd], &d);
    let causal = causal_mask(t, tk, 5, &d);
    let mut pad = vec![0f32; b * tk];
    pad[60..tk].fill(-1e30); // element 0: right padding
    pad[tk..tk + 8].fill(-1e30); // element 1: left padding
    let pad = Tensor::<1>::from_floats(pad.as_slice(), &d).reshape([b, 1, 1, tk]);
    for (name, bias) in [
        ("causal", causal.clone()),
        ("causal + padding", causal + pad),
    ] {
        check(
            &format!("tiled attention, {name}"),
            &inputs,
            |x| fused::attention(x[0].clone(), x[1].clone(), x[2].clone(), Some(&bias), 0.3),
            |x| reference::attention(x[0].clone(), x[1].clone(), x[2].clone(), Some(&bias), 0.3),
        );
    }
}

#[test]
fn norms_match_reference() {
    let d = device();
    let x = random([2, 9, 48], &d) + 3.0; // off-centre rows
    let x = Tensor::from_data(x.to_data(), &d).require_grad();
    let gamma = random([48], &d);
    let beta = random([48], &d);
    let as3 = |t: &Tensor<1>| t.clone().reshape([1, 1, 48]);
    let inputs = [x, as3(&gamma), as3(&beta)];
    let flat = |t: &Tensor<3>| t.clone().reshape([48]);
    check(
        "layer_norm",
        &inputs,
        |t| fused::layer_norm(t[0].clone(), flat(&t[1]), Some(flat(&t[2])), 1e-5),
        |t| reference::layer_norm(t[0].clone(), flat(&t[1]), Some(flat(&t[2])), 1e-5),
    );
    check(
        "layer_norm without beta",
        &inputs[..2],
        |t| fused::layer_norm(t[0].clone(), flat(&t[1]), None, 1e-5),
        |t| reference::layer_norm(t[0].clone(), flat(&t[1]), None, 1e-5),
    );
    check(
        "rms_norm",
        &inputs[..2],
        |t| fused::rms_norm(t[0].clone(), flat(&t[1]), 1e-6),
        |t| reference::rms_norm(t[0].clone(), flat(&t[1]), 1e-6),
    );
}

#[test]
fn linear_matches_reference_with_and_without_bias() {
    let d = device();
    // The three before the last two are large enough (rows · in · out ≥ 192³) for the
    // products to split over the thread pool, forward and backward (odd rows: uneven
    // parts); the third of them also for a BLAS build to take them (≥ 64·2²⁰).
    for (bias, rows, inn, out) in [
        (true, 9, 48, 70),
        (false, 9, 33, 5),
        (true, 9, 256, 300),
        (true, 67, 256, 300),
        (false, 67, 300, 256),
        (true, 201, 384, 384),
        // Three rows in all (decoding) and in·out ≥ 2¹⁶: the row-streamed product.
        (true, 1, 256, 300),
        (false, 1, 300, 257),
    ] {
        let x = random([3, rows, inn], &d);
        let layer = burn::nn::LinearConfig::new(inn, out)
            .with_bias(bias)
            .init(&d);
        // Both paths through the same layer: its weight and bias are the graph's leaves.
        let run = |f: fn(&burn::nn::Linear, Tensor<3>) -> Tensor<3>| {
            let y = f(&layer, x.clone());
            let grads = (y.clone() * seeded(&y)).sum().backward();
            let grad = |t: Tensor<1>| values(&t.grad(&grads).expect("gradient"));
            let w = layer.weight.val();
            let [wi, wo] = w.dims();
            let mut gs = vec![
                values(&x.grad(&grads).expect("input gradient")),
                values(&w.grad(&grads).expect("weight gradient").reshape([wi * wo])),
            ];
            if let Some(b) = &layer.bias {
                gs.push(grad(b.val()));
            }
            (values(&y), gs)
        };
        let what = format!("linear (bias {bias}, {} rows, {inn}→{out})", 3 * rows);
        let (yf, gf) = run(fused::linear);
        let (yr, gr) = run(reference::linear);
        assert_close(&format!("{what} output"), &yf, &yr);
        for (i, (a, b)) in gf.iter().zip(&gr).enumerate() {
            assert_close(&format!("{what} gradient {i}"), a, b);
        }
    }
}

#[test]
fn frozen_linear_passes_the_input_gradient_and_no_weight_gradient() {
    use burn::module::Module;
    let d = device();
    let x = random([2, 5, 24], &d);
    let layer = burn::nn::LinearConfig::new(24, 31).init(&d).no_grad();
    let input_grad = |f: fn(&burn::nn::Linear, Tensor<3>) -> Tensor<3>| {
        let y = f(&layer, x.clone());
        let grads = (y.clone() * seeded(&y)).sum().backward();
        assert!(
            layer.weight.val().grad(&grads).is_none(),
            "frozen weight got a gradient"
        );
        values(&x.grad(&grads).expect("input gradient"))
    };
    assert_close(
        "frozen linear, input gradient",
        &input_grad(fused::linear),
        &input_grad(reference::linear),
    );
}

#[test]
fn tied_output_layer_matches_reference() {
    let d = device();
    // Small, large enough for the products to split over the thread pool, and for a BLAS
    // build to take them.
    for [rows, d_in, out] in [[13, 40, 70], [301, 160, 170], [801, 300, 320]] {
        check(
            "x · wᵀ",
            &[random([rows, d_in], &d), random([out, d_in], &d)],
            |t| fused::matmul_transposed(t[0].clone(), t[1].clone()),
            |t| reference::matmul_transposed(t[0].clone(), t[1].clone()),
        );
    }
}

#[test]
fn cross_entropy_matches_reference_and_skips_ignored_rows() {
    let d = device();
    let logits = random([11, 70], &d);
    let targets: Vec<i64> = (0..11)
        .map(|i| {
            if i % 4 == 3 {
                -100
            } else {
                (i * 13 % 70) as i64
            }
        })
        .collect();
    check(
        "cross_entropy_sum",
        &[logits],
        |x| fused::cross_entropy_sum(x[0].clone(), &targets),
        |x| reference::cross_entropy_sum(x[0].clone(), &targets),
    );
}

#[test]
fn linear_cross_entropy_matches_the_logits_then_the_loss() {
    // The output layer and the loss in one chunked operation: the loss and the gradients
    // of the hidden states and of the weight (untied `[d, vocab]` and tied `[vocab, d]`)
    // as the logits followed by cross-entropy give them; a frozen weight gets none.
    use burn::module::Param;
    let d = device();
    let targets: Vec<i64> = (0..9)
        .map(|i| if i == 2 { -100 } else { (i * 7 % 40) as i64 })
        .collect();
    for transposed in [false, true] {
        let w = if transposed {
            random([40, 6], &d)
        } else {
            random([6, 40], &d)
        };
        check(
            "linear_cross_entropy_sum",
            &[random([9, 6], &d), w],
            |x| {
                let w = Param::from_tensor(x[1].clone());
                fused::linear_cross_entropy_sum(x[0].clone(), &w, transposed, &targets)
            },
            |x| {
                let logits = if transposed {
                    reference::matmul_transposed(x[0].clone(), x[1].clone())
                } else {
                    x[0].clone().matmul(x[1].clone())
                };
                reference::cross_entropy_sum(logits, &targets)
            },
        );
    }
    // A frozen weight: the hidden states' gradient only.
    let x = random([9, 6], &d);
    let w = Param::from_tensor(random([40, 6], &d)).set_require_grad(false);
    let grads = fused::linear_cross_entropy_sum(x.clone(), &w, true, &targets).backward();
    assert!(x.grad(&grads).is_some());
    assert!(w.val().grad(&grads).is_none());
}

#[test]
fn decoder_loss_beyond_one_chunk_equals_the_loss_of_the_logits() {
    // 3 × 80 positions × 70,000 tokens = 16.8 M logits, more than one chunk: `loss_sum`
    // takes the chunked operation. Its loss and gradients (embedding or output layer, a
    // projection) equal those of the full logits, tied and untied.
    let d = device();
    if !chunked_loss_on(&d) {
        return;
    }
    for tied in [true, false] {
        let (cfg, ids, targets) = beyond_one_chunk(tied, &d);
        let model = manabi_model::DecoderLm::new(&cfg, &d);
        let grads_of = |loss: Tensor<1>| {
            let value = values(&loss);
            let grads = loss.backward();
            let head = match &model.lm_head {
                Some(h) => h.weight.grad(&grads),
                None => model.embed_tokens.weight.grad(&grads),
            };
            let q = model.layers[0].attn.q_proj.weight.grad(&grads);
            (value, values(&head.unwrap()), values(&q.unwrap()))
        };
        let (chunked, whole) = chunked_and_whole(&model, ids, &targets, grads_of);
        assert_close("loss", &chunked.0, &whole.0);
        assert_close("output layer gradient", &chunked.1, &whole.1);
        assert_close("q_proj gradient", &chunked.2, &whole.2);
    }
}

#[test]
fn a_bf16_output_layer_takes_the_chunked_loss_with_the_loss_of_its_whole_logits() {
    // The same with the model's matrices frozen in bf16 (`with_bf16_base`): the chunked
    // operation reads the bf16 weight; its loss, and the gradient of the one parameter
    // left to train (the final norm), equal the whole logits', tied and untied.
    use burn::module::{Module, ParamGroup};
    use manabi_model::decoder::Norm;
    let d = device();
    if !chunked_loss_on(&d) {
        return;
    }
    for tied in [true, false] {
        let (cfg, ids, targets) = beyond_one_chunk(tied, &d);
        let model = manabi_model::DecoderLm::init(&cfg, &d, 1);
        let Norm::Rms(norm) = &model.final_norm else {
            panic!("an RMSNorm model");
        };
        let gamma = norm.gamma.id;
        let model = model
            .freeze()
            .with_bf16_base()
            .unfreeze_group(ParamGroup::from_ids(vec![gamma]));
        assert_eq!(
            model.embed_tokens.weight.val().dtype(),
            burn::tensor::DType::BF16
        );
        let grads_of = |loss: Tensor<1>| {
            let value = values(&loss);
            let grads = loss.backward();
            let Norm::Rms(norm) = &model.final_norm else {
                unreachable!()
            };
            (
                value,
                values(&norm.gamma.grad(&grads).expect("norm gradient")),
            )
        };
        let (chunked, whole) = chunked_and_whole(&model, ids, &targets, grads_of);
        assert_close("loss", &chunked.0, &whole.0);
        assert_close("final norm gradient", &chunked.1, &whole.1);
    }
}

#[test]
fn chunked_token_losses_equal_the_log_probabilities_of_the_whole_logits() {
    // Preference training's per-token losses over a frozen output layer (LoRA, or a bf16
    // base), a chunk at a time: each position's value and the gradient of a weighted sum
    // of them (other weights per row) with respect to a projection that trains equal
    // those of the whole logits; tied and untied, f32 and bf16 matrices.
    use burn::module::{Module, ParamGroup};
    use burn::tensor::activation::log_softmax;
    let d = device();
    if !chunked_loss_on(&d) {
        return;
    }
    for (tied, bf16) in [(true, false), (false, false), (true, true), (false, true)] {
        let (cfg, ids, targets) = beyond_one_chunk(tied, &d);
        let model = manabi_model::DecoderLm::init(&cfg, &d, 2).freeze();
        let q = model.layers[0].attn.q_proj.weight.id;
        // The projection trains (f32); every other matrix is frozen, in bf16 or not.
        let model = model.unfreeze_group(ParamGroup::from_ids(vec![q]));
        let model = if bf16 { model.with_bf16_base() } else { model };
        let n = targets.len();
        let weights: Vec<f32> = (0..n).map(|i| ((i % 7) as f32 - 3.0) * 0.25).collect();
        let weights = Tensor::<1>::from_floats(weights.as_slice(), &d);
        let grads_of = |losses: Tensor<1>| {
            let value = values(&losses);
            let grads = (losses * weights.clone()).sum().backward();
            let q = model.layers[0].attn.q_proj.weight.grad(&grads);
            (value, values(&q.expect("q_proj gradient")))
        };
        let opts = manabi_model::ForwardOptions::default();
        let chunked = model
            .chunked_token_losses(ids.clone(), &opts, &targets)
            .expect("the chunked path applies");
        let chunked = grads_of(chunked);
        let [b, t] = ids.dims();
        let logp = log_softmax(
            model
                .forward_with(ids, &opts, None)
                .reshape([b * t, cfg.vocab_size]),
            1,
        );
        let idx: Vec<i64> = targets.iter().map(|&t| t.max(0)).collect();
        let keep: Vec<f32> = targets
            .iter()
            .map(|&t| f32::from(u8::from(t >= 0)))
            .collect();
        let idx = Tensor::<1, Int>::from_ints(idx.as_slice(), &d).reshape([n, 1]);
        let keep = Tensor::<1>::from_floats(keep.as_slice(), &d);
        let whole = grads_of(logp.gather(1, idx).reshape([n]).neg() * keep);
        let what = format!("tied {tied}, bf16 {bf16}");
        assert_close(&format!("{what}: token losses"), &chunked.0, &whole.0);
        assert_close(&format!("{what}: q_proj gradient"), &chunked.1, &whole.1);
    }
}

/// Whether `loss_sum` chunks on `d`; says why a test skips when it does not./// Whether `loss_sum` chunks on `d`; says why a test skips when it does not.
fn chunked_loss_on(d: &Device) -> bool {
    let on = fused::active_on(d) && fused::chunked_loss();
    if !on {
        eprintln!(
            "skipping: no chunked loss on this device (flex, MANABI_FUSED and MANABI_CHUNKED_LOSS on)"
        );
    }
    on
}

/// A tiny LLaMA with a 70,000-token vocabulary, 3 × 80 ids and their targets (every
/// ninth not counted): 16.8 M logits, more than one chunk.
fn beyond_one_chunk(
    tied: bool,
    d: &Device,
) -> (manabi_model::ModelConfig, Tensor<2, Int>, Vec<i64>) {
    let cfg: manabi_model::ModelConfig = toml::from_str(&format!(
        "family = \"llama\"\nvocab_size = 70000\nmax_positions = 128\nd_model = 8\n\
         n_layers = 1\nn_heads = 2\nd_ff = 16\npositions = \"rope\"\n\
         norm = \"rmsnorm\"\nactivation = \"swiglu\"\ntie_embeddings = {tied}"
    ))
    .unwrap();
    let (b, t) = (3, 80);
    assert!(b * t * cfg.vocab_size > fused::CE_CHUNK_VALUES);
    let ids: Vec<i64> = (0..b * t).map(|i| (i * 7919 % 70_000) as i64).collect();
    let ids = Tensor::<1, Int>::from_ints(ids.as_slice(), d).reshape([b, t]);
    let targets: Vec<i64> = (0..b * t)
        .map(|i| {
            if i % 9 == 0 {
                -100
            } else {
                (i * 104_729 % 70_000) as i64
            }
        })
        .collect();
    (cfg, ids, targets)
}

/// `grads_of` the chunked `loss_sum` and of the cross-entropy of the whole logits.
fn chunked_and_whole<T>(
    model: &manabi_model::DecoderLm,
    ids: Tensor<2, Int>,
    targets: &[i64],
    grads_of: impl Fn(Tensor<1>) -> T,
) -> (T, T) {
    let opts = manabi_model::ForwardOptions::default();
    let [b, t] = ids.dims();
    let chunked = grads_of(model.loss_sum(ids.clone(), &opts, targets));
    let logits = model
        .forward_with(ids, &opts, None)
        .reshape([b * t, model.config().vocab_size]);
    (chunked, grads_of(fused::cross_entropy_sum(logits, targets)))
}

#[test]
fn flex_takes_the_fused_path() {
    let on_flex = matches!(
        manabi_model::DeviceChoice::from_env().map(|c| c.concrete()),
        Ok(manabi_model::DeviceChoice::Flex)
    );
    if on_flex && fused::enabled() {
        assert!(fused::active_on(&device()));
        assert!(fused::active_on(&test_device()));
    }
}

#[test]
fn inference_device_takes_the_same_values() {
    // Without autodiff the fused path runs the same kernels (used by generation).
    let d = test_device();
    let x = Tensor::<2>::random([4, 33], Distribution::Normal(0.0, 2.0), &d);
    assert_close(
        "gelu_tanh (no autodiff)",
        &values(&fused::gelu_tanh(x.clone())),
        &values(&reference::gelu_tanh(x)),
    );
}

#[test]
fn training_forward_equals_inference_forward_for_every_layout() {
    // The training path (autodiff: fused attention on flex, views from `swap_dims`, GQA
    // repeats, ALiBi and RoPE) against the inference path (burn's `attention()`).
    let train = device();
    let infer = test_device();
    for extra in [
        "family = \"gpt2\"\npositions = \"learned\"\nnorm = \"layernorm\"\nactivation = \"gelu_tanh\"",
        "family = \"llama\"\npositions = \"rope\"\nnorm = \"rmsnorm\"\nactivation = \"swiglu\"\nn_kv_heads = 1",
        "family = \"gpt2\"\npositions = \"alibi\"\nnorm = \"layernorm\"\nactivation = \"gelu_tanh\"",
    ] {
        let cfg: manabi_model::ModelConfig = toml::from_str(&format!(
            "vocab_size = 40\nmax_positions = 16\nd_model = 32\nn_layers = 2\nn_heads = 4\nd_ff = 64\n{extra}"
        ))
        .expect("config");
        let model = manabi_model::DecoderLm::init(&cfg, &train, 7);
        let ids = [3, 9, 1, 22, 5, 8, 13, 2, 30, 4, 11, 6];
        let logits = |m: &manabi_model::DecoderLm, d: &Device| {
            let x = Tensor::<1, Int>::from_ints(ids.as_slice(), d).reshape([2, 6]);
            values(&m.forward(x))
        };
        let trained = logits(&model, &train);
        let inferred = logits(&model.valid(), &infer);
        assert_close(&format!("logits, {extra}"), &trained, &inferred);
    }
}
