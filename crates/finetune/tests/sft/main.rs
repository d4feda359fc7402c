//! SFT through the shared Trainer: packing changes nothing but speed, a LoRA run resumes
//! bit for bit, frozen weights stay bitwise unchanged; what the data and config checks
//! say is in [`data`].

use std::path::{Path, PathBuf};

use burn::module::{Module, ModuleVisitor, Param};
use burn::optim::GradientsParams;
use burn::prelude::*;
use manabi_finetune::sft::encode::{self, Encoded};
use manabi_finetune::{SftConfig, load_decoder};
use manabi_model::{DecoderLm, DeviceChoice, ModelConfig, device::test_device};
use manabi_objectives::Recipe;
use manabi_objectives::trainer::loss_and_grads;

mod chat;
mod data;

/// burn's device RNG is process-global and each run seeds it (per step, and before
/// drawing adapters); tests that train run one at a time behind this lock, so each run
/// sees only its own seeds (a real run is one per process).
static DEVICE_RNG: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    DEVICE_RNG.lock().unwrap_or_else(|e| e.into_inner())
}

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn tiny_cfg(vocab: usize) -> ModelConfig {
    toml::from_str(&format!(
        "family = \"llama\"\nvocab_size = {vocab}\nmax_positions = 128\nd_model = 32\nn_layers = 2\nn_heads = 4\nn_kv_heads = 2\nd_ff = 64\npositions = \"rope\"\nnorm = \"rmsnorm\"\nactivation = \"swiglu\"\ntie_embeddings = true"
    ))
    .unwrap()
}

/// Flattened gradients of every parameter, in visiting order.
struct Flat<'a> {
    grads: &'a GradientsParams,
    out: Vec<f32>,
}

impl ModuleVisitor for Flat<'_> {
    fn visit_float<const D: usize>(&mut self, p: &Param<Tensor<D>>) {
        if let Some(g) = self.grads.get::<D>(p.id) {
            self.out.extend(g.into_data().try_to_vec::<f32>().unwrap());
        }
    }
}

#[test]
fn packed_and_unpacked_batches_give_the_same_loss_and_gradients() {
    let _rng = serial();
    let device = test_device().autodiff();
    let model = DecoderLm::init(&tiny_cfg(40), &device, 3);
    let ex = |tokens: &[u32], from: usize| Encoded {
        tokens: tokens.to_vec(),
        trained: (0..tokens.len()).map(|i| i >= from).collect(),
        response_start: from,
    };
    let examples = vec![
        ex(&[5, 6, 7, 8, 9, 3], 3),
        ex(&[10, 11, 12, 3], 2),
        ex(&[13, 14, 15, 16, 17, 18, 19, 3], 5),
        ex(&[20, 21, 3], 1),
    ];
    let unpacked = encode::batch(&examples, &[&[0], &[1], &[2], &[3]], 0, false);
    let packed = encode::batch(&examples, &[&[0, 1], &[2, 3]], 0, true);
    assert_eq!(unpacked.target_count(), packed.target_count());
    let (l1, g1) = loss_and_grads(&model, std::slice::from_ref(&unpacked), &device);
    let (l2, g2) = loss_and_grads(&model, std::slice::from_ref(&packed), &device);
    assert!((l1 - l2).abs() <= 1e-5 * l1.abs(), "{l1} vs {l2}");
    let flat = |g: &GradientsParams| {
        let mut f = Flat {
            grads: g,
            out: Vec::new(),
        };
        model.visit(&mut f);
        f.out
    };
    let (a, b) = (flat(&g1), flat(&g2));
    assert_eq!(a.len(), b.len());
    let scale = a.iter().fold(0f32, |m, x| m.max(x.abs()));
    let diff = a
        .iter()
        .zip(&b)
        .fold(0f32, |m, (x, y)| m.max((x - y).abs()));
    assert!(
        diff <= 1e-5 * scale.max(1.0),
        "max |Δgrad| = {diff} (scale {scale})"
    );
}

/// A base model folder (manabi layout + the bpe-en tokenizer) in `dir`.
fn base_model(dir: &Path) -> PathBuf {
    let base = dir.join("base");
    let model = DecoderLm::init(&tiny_cfg(512), &test_device(), 7);
    manabi_model::save_native(&model, &base).unwrap();
    std::fs::copy(
        root().join("fixtures/tokenize/bpe-en/tokenizer.json"),
        base.join("tokenizer.json"),
    )
    .unwrap();
    base
}

fn recipe(dir: &Path, base: &Path, out: &str, extra: &str) -> String {
    let data = root().join("datasets/sft");
    format!(
        r#"
[run]
out = "{out}"
seed = 5
[model]
path = "{base}"
[data]
train = ["{train}"]
val = ["{val}"]
block_size = 96
[peft]
method = "lora"
r = 4
alpha = 8.0
targets = ["q_proj", "v_proj"]
[train]
steps = 8
batch_size = 4
lr = 1e-2
warmup_steps = 2
eval_every = 4
eval_batches = 2
checkpoint_every = 4
progress = false
[eval]
max_examples = 8
max_new_tokens = 4
{extra}
"#,
        out = dir.join(out).display(),
        base = base.display(),
        train = data.join("qa-en.train.jsonl").display(),
        val = data.join("qa-en.val.jsonl").display(),
    )
}

#[test]
fn a_lora_run_resumes_bit_for_bit_and_leaves_the_base_untouched() {
    let _rng = serial();
    let tmp = tempfile::tempdir().unwrap();
    let base = base_model(tmp.path());
    let device = DeviceChoice::from_env().unwrap();

    let straight = SftConfig::parse(&recipe(tmp.path(), &base, "straight", ""), &[]).unwrap();
    let full = manabi_finetune::sft(&straight, device, false).unwrap();
    assert_eq!(full.run.losses.len(), 8);
    assert!(
        full.trainable_params > 0 && full.trainable_params * 20 < full.total_params,
        "LoRA r=4 on q/v trains under 5 % of this tiny model"
    );
    assert!(full.exact_match.is_some() && full.run.eval_metrics.contains_key("eval/exact_match"));

    let stopped = SftConfig::parse(
        &recipe(tmp.path(), &base, "resumed", ""),
        &["train.stop_after=4".into()],
    )
    .unwrap();
    let first = manabi_finetune::sft(&stopped, device, false).unwrap();
    assert_eq!(first.run.steps, 4);
    let again = SftConfig::parse(&recipe(tmp.path(), &base, "resumed", ""), &[]).unwrap();
    let second = manabi_finetune::sft(&again, device, true).unwrap();
    let joined: Vec<(usize, f64)> = first
        .run
        .losses
        .iter()
        .chain(&second.run.losses)
        .copied()
        .collect();
    assert_eq!(
        joined, full.run.losses,
        "resumed losses differ from the straight run"
    );

    // The checkpoint rebuilds the adapted model; its frozen base equals the original.
    let ckpt = full.run.checkpoint.unwrap();
    assert!(ckpt.join("peft.toml").exists());
    let (tuned, peft) = load_decoder(&ckpt, &test_device()).unwrap();
    assert_eq!(peft.unwrap().r, 4);
    let (orig, _) = load_decoder(&base, &test_device()).unwrap();
    // Every linear layer's base weight (the adapted q_proj and v_proj too) is bit for
    // bit the original's.
    let w = |m: &DecoderLm| -> Vec<(String, Vec<f32>)> {
        manabi_model::hf_names::decoder_linears(m)
            .into_iter()
            .map(|(module, lin)| {
                let v = lin.weight.base().into_data().try_to_vec::<f32>().unwrap();
                (module.hf, v)
            })
            .collect()
    };
    let (wt, wo) = (w(&tuned), w(&orig));
    assert_eq!(wt.len(), 2 * 7, "every projection of the base's 2 layers");
    for ((name, a), (_, b)) in wt.iter().zip(&wo) {
        assert!(a == b, "the frozen base weight {name} moved");
    }
    let e = |m: &DecoderLm| {
        m.embed_tokens
            .weight
            .val()
            .into_data()
            .try_to_vec::<f32>()
            .unwrap()
    };
    assert_eq!(e(&tuned), e(&orig));
    // Only trainable parameters have optimizer state: AdamW's two moments, 8 bytes per
    // trainable parameter (plus a little bookkeeping), nothing for the frozen base.
    let (trainable, total) = manabi_finetune::peft::describe(&tuned);
    let state = std::fs::metadata(ckpt.join("optimizer.bpk")).unwrap().len() as usize;
    assert!(
        state >= 8 * trainable && state < 8 * trainable + 16 * 1024 && 8 * trainable < total,
        "{state} bytes of optimizer state for {trainable} trainable of {total} parameters"
    );
    // …and the adapters did train.
    let b = tuned.layers[0]
        .attn
        .q_proj
        .weight
        .adapter()
        .unwrap()
        .b
        .val();
    assert!(b.abs().max().into_scalar::<f32>() > 0.0);

    // A recipe with another PEFT setting cannot resume this run.
    let other = SftConfig::parse(
        &recipe(tmp.path(), &base, "resumed", ""),
        &["peft.r=2".into(), "train.steps=12".into()],
    )
    .unwrap();
    let err = manabi_finetune::sft(&other, device, true)
        .unwrap_err()
        .to_string();
    assert!(err.contains("peft.toml"), "{err}");
}

#[test]
fn a_lora_run_on_a_bf16_base_resumes_bit_for_bit_and_stores_its_base_in_bf16() {
    let _rng = serial();
    let tmp = tempfile::tempdir().unwrap();
    let base = base_model(tmp.path());
    let device = DeviceChoice::from_env().unwrap();
    let parse = |out: &str, sets: &[&str]| {
        let mut all = vec!["model.dtype=\"bf16\"".to_string()];
        all.extend(sets.iter().map(|s| s.to_string()));
        SftConfig::parse(&recipe(tmp.path(), &base, out, ""), &all)
    };
    let full = manabi_finetune::sft(&parse("bf16", &[]).unwrap(), device, false).unwrap();
    let f32_run = SftConfig::parse(&recipe(tmp.path(), &base, "f32", ""), &[]).unwrap();
    let f32_run = manabi_finetune::sft(&f32_run, device, false).unwrap();
    // The same run up to bf16's rounding of the base: close losses, not equal ones.
    for ((step, a), (_, b)) in full.run.losses.iter().zip(&f32_run.run.losses) {
        assert!(
            (a - b).abs() <= 0.05 * b.abs(),
            "step {step}: bf16 base {a}, f32 base {b}"
        );
    }
    assert_ne!(full.run.losses, f32_run.run.losses);
    let first = first_loss(&full.run.losses);
    assert!(full.run.losses.last().unwrap().1 < first, "the loss falls");

    let stopped = parse("resumed", &["train.stop_after=4"]).unwrap();
    let head = manabi_finetune::sft(&stopped, device, false).unwrap();
    let tail = manabi_finetune::sft(&parse("resumed", &[]).unwrap(), device, true).unwrap();
    let joined: Vec<(usize, f64)> = head
        .run
        .losses
        .iter()
        .chain(&tail.run.losses)
        .copied()
        .collect();
    assert_eq!(
        joined, full.run.losses,
        "resumed losses differ from the straight run"
    );

    // Gradient checkpointing recomputes the same bf16 products.
    let ckpt = parse("recomputed", &["train.gradient_checkpointing=true"]).unwrap();
    let recomputed = manabi_finetune::sft(&ckpt, device, false).unwrap();
    assert_eq!(recomputed.run.losses, full.run.losses);

    // The checkpoint keeps the frozen base in bf16: about half the f32 run's bytes.
    let size = |r: &manabi_finetune::SftReport| {
        let dir = r.run.checkpoint.as_ref().unwrap();
        std::fs::metadata(dir.join("model.bpk")).unwrap().len() as f64
    };
    let ratio = size(&full) / size(&f32_run);
    assert!(
        (0.45..0.6).contains(&ratio),
        "bf16 / f32 checkpoint bytes {ratio}"
    );

    // A folder read back is f32 again, whatever the run kept in bf16 (a later stage may
    // train it); rounded again on request, with its adapters merged or kept apart.
    let (tuned, _) = load_decoder(full.run.checkpoint.as_ref().unwrap(), &test_device()).unwrap();
    assert_eq!(
        tuned.embed_tokens.weight.val().dtype(),
        burn::tensor::DType::F32
    );
    let houlsby = parse("houlsby", &["peft.method=\"houlsby\"", "train.lr=3e-3"]).unwrap();
    let houlsby = manabi_finetune::sft(&houlsby, device, false).unwrap();
    let (with_adapters, _) =
        load_decoder(houlsby.run.checkpoint.as_ref().unwrap(), &test_device()).unwrap();
    let half = manabi_finetune::merged(with_adapters).with_bf16_base();
    let out = manabi_model::generate(
        &half,
        &[vec![1u32, 2, 3]],
        &manabi_model::GenerateOptions {
            max_new_tokens: 4,
            ..Default::default()
        },
        None,
    )
    .unwrap();
    assert_eq!(
        out[0].len(),
        4,
        "a bf16 base with bottleneck adapters generates"
    );

    // Methods that change the base's matrices are refused by key.
    for method in ["full", "ia3"] {
        let cfg = parse(
            &format!("no-{method}"),
            &[&format!("peft.method=\"{method}\"")],
        )
        .unwrap();
        let err = manabi_finetune::sft(&cfg, device, false)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("model.dtype") && err.contains("bf16"),
            "{method}: {err}"
        );
    }
    let err = parse("bad", &["model.dtype=\"f16\""])
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("model.dtype") || err.contains("dtype"),
        "{err}"
    );
}

fn first_loss(losses: &[(usize, f64)]) -> f64 {
    losses.first().expect("at least one logged loss").1
}

#[test]
fn gradient_checkpointing_works_with_every_method() {
    let _rng = serial();
    let tmp = tempfile::tempdir().unwrap();
    let base = base_model(tmp.path());
    for method in [
        "full", "lora", "ia3", "prompt", "prefix", "houlsby", "pfeiffer",
    ] {
        let run = |out: &str, ckpt: bool| {
            let cfg = SftConfig::parse(
                &recipe(tmp.path(), &base, out, ""),
                &[
                    format!("peft.method=\"{method}\""),
                    "peft.targets=[\"q_proj\", \"v_proj\", \"down_proj\"]".into(),
                    "train.steps=3".into(),
                    "train.checkpoint_every=0".into(),
                    "eval.generate=false".into(),
                    format!("train.gradient_checkpointing={ckpt}"),
                ],
            )
            .unwrap();
            manabi_finetune::sft(&cfg, DeviceChoice::from_env().unwrap(), false).unwrap()
        };
        let plain = run(&format!("{method}-plain"), false);
        let ckpt = run(&format!("{method}-ckpt"), true);
        assert_eq!(plain.trainable_params, ckpt.trainable_params);
        // Every method's checkpoint loads back on a plain device (as generate/export do).
        let dir = plain.run.checkpoint.clone().unwrap();
        let (_, spec) = load_decoder(&dir, &test_device()).unwrap();
        assert_eq!(spec.is_some(), method != "full", "{method}");
        for ((s1, l1), (_, l2)) in plain.run.losses.iter().zip(&ckpt.run.losses) {
            assert!(
                (l1 - l2).abs() <= 1e-5 * l1,
                "{method} step {s1}: {l1} vs {l2}"
            );
        }
    }
}

#[test]
fn sft_loss_falls_on_the_qa_set() {
    let _rng = serial();
    let tmp = tempfile::tempdir().unwrap();
    let base = base_model(tmp.path());
    let cfg = SftConfig::parse(
        &recipe(tmp.path(), &base, "full", ""),
        &[
            "peft.method=\"full\"".into(),
            "train.steps=30".into(),
            "train.lr=3e-3".into(),
            "train.eval_every=30".into(),
            "train.checkpoint_every=0".into(),
            "eval.generate=false".into(),
        ],
    )
    .unwrap();
    let r = manabi_finetune::sft(&cfg, DeviceChoice::from_env().unwrap(), false).unwrap();
    let first: f64 = r.run.losses[..3].iter().map(|x| x.1).sum::<f64>() / 3.0;
    let last: f64 = r.run.losses[27..].iter().map(|x| x.1).sum::<f64>() / 3.0;
    assert!(last < 0.85 * first, "loss {first:.3} -> {last:.3}");
    assert_eq!(r.trainable_params, r.total_params);
}

#[test]
fn summaries_are_scored_by_rouge_next_to_the_lead_baseline() {
    let _rng = serial();
    let tmp = tempfile::tempdir().unwrap();
    let base = base_model(tmp.path());
    let tasks = root().join("datasets/tasks");
    let text = recipe(tmp.path(), &base, "summ", "rouge = true")
        .replace(
            &root()
                .join("datasets/sft/qa-en.train.jsonl")
                .display()
                .to_string(),
            &tasks.join("summarise-en.train.jsonl").display().to_string(),
        )
        .replace(
            &root()
                .join("datasets/sft/qa-en.val.jsonl")
                .display()
                .to_string(),
            &tasks.join("summarise-ja.val.jsonl").display().to_string(),
        );
    let cfg = SftConfig::parse(&text, &[]).unwrap();
    let r = manabi_finetune::sft(&cfg, DeviceChoice::from_env().unwrap(), false).unwrap();
    for k in ["eval/rouge1", "eval/rouge2", "eval/rougeL"] {
        assert!(r.run.eval_metrics.contains_key(k), "{k}");
    }
    let rouge = r.rouge.unwrap();
    assert!(rouge.iter().all(|x| (0.0..=1.0).contains(x)));
    // The lead baseline of the first 8 Japanese documents, with character tokens: the
    // first sentence shares the name and the job with the summary, so it scores > 0.
    let lead = r.lead_rouge.unwrap();
    assert!(lead[0] > 0.2 && lead[2] > 0.2, "{lead:?}");
    // Predictions written with their gold summaries.
    let preds = std::fs::read_to_string(r.predictions.unwrap()).unwrap();
    assert_eq!(preds.lines().count(), 8);
    assert!(preds.contains("に住む"), "{preds}");
}

/// A tiny T5 (v1.1 layout) in manabi's folder layout with the BPE fixture tokenizer.
fn t5_base(dir: &Path) -> PathBuf {
    let cfg: ModelConfig = toml::from_str(
        "family = \"t5\"\nvocab_size = 512\nmax_positions = 128\nd_model = 32\nn_layers = 2\nn_heads = 4\nd_ff = 64\npositions = \"relative\"\nnorm = \"rmsnorm\"\nactivation = \"geglu_tanh\"\nnorm_eps = 1e-6\ntie_embeddings = false\npad_token_id = 0\neos_token_id = 3",
    )
    .unwrap();
    let base = dir.join("t5");
    manabi_model::init::seed(4);
    let model = manabi_model::T5::new(&cfg, &test_device());
    manabi_model::checkpoint::save_module(&model, &cfg, &base).unwrap();
    std::fs::copy(
        root().join("fixtures/tokenize/bpe-en/tokenizer.json"),
        base.join("tokenizer.json"),
    )
    .unwrap();
    base
}

#[test]
fn seq2seq_sft_on_t5_learns_evaluates_and_resumes_bit_for_bit() {
    let _rng = serial();
    let tmp = tempfile::tempdir().unwrap();
    let base = t5_base(tmp.path());
    let full = [
        "peft.method=\"full\"".to_string(),
        "train.steps=12".into(),
        "train.eval_every=6".into(),
        "train.checkpoint_every=6".into(),
    ];
    let device = DeviceChoice::from_env().unwrap();
    let cfg = SftConfig::parse(&recipe(tmp.path(), &base, "a", ""), &full).unwrap();
    let a = manabi_finetune::sft(&cfg, device, false).unwrap();
    assert_eq!(a.trainable_params, a.total_params);
    let first = a.run.losses[0].1;
    let last = a.run.losses[11].1;
    assert!(last < 0.8 * first, "loss {first:.3} -> {last:.3}");
    // Greedy answers of the T5 checkpoint, scored and written next to the gold ones.
    assert!(a.run.eval_metrics.contains_key("eval/exact_match"));
    assert!(a.exact_match.is_some() && a.eos_rate.is_some());
    let preds = std::fs::read_to_string(a.predictions.unwrap()).unwrap();
    assert_eq!(preds.lines().count(), 8);
    // Stopped at step 6 and resumed: the same losses.
    let mut stop = full.to_vec();
    stop.push("train.stop_after=6".into());
    let r1 = manabi_finetune::sft(
        &SftConfig::parse(&recipe(tmp.path(), &base, "b", ""), &stop).unwrap(),
        device,
        false,
    )
    .unwrap();
    let r2 = manabi_finetune::sft(
        &SftConfig::parse(&recipe(tmp.path(), &base, "b", ""), &full).unwrap(),
        device,
        true,
    )
    .unwrap();
    let joined: Vec<(usize, f64)> = r1
        .run
        .losses
        .iter()
        .chain(&r2.run.losses)
        .copied()
        .collect();
    assert_eq!(joined, a.run.losses);
    // PEFT methods are for decoders: a clear error naming the key.
    let e = manabi_finetune::sft(
        &SftConfig::parse(&recipe(tmp.path(), &base, "c", ""), &[]).unwrap(),
        device,
        false,
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("peft.method") && e.contains("T5"), "{e}");
}

#[test]
fn the_body_of_a_task_checkpoint_is_a_base_model() {
    let tmp = tempfile::tempdir().unwrap();
    let device = test_device();
    let body = DecoderLm::init(&tiny_cfg(512), &device, 11);
    let ids = Tensor::<2, Int>::from_ints([[5, 6, 7, 8]], &device);
    let x = body.embed_tokens.forward(ids.clone());
    let want = body.hidden_states(x, &Default::default(), None);
    // A classifier checkpoint as `manabi task` writes it: model.toml, model.bpk, head.toml.
    let cls = manabi_model::DecoderClassifier::from_lm(body, 3);
    let dir = tmp.path().join("nli");
    manabi_model::checkpoint::save_module(&cls, cls.lm.config(), &dir).unwrap();
    let head = manabi_finetune::head::HeadSpec::score(3, vec![]);
    std::fs::write(dir.join(manabi_finetune::head::HEAD_FILE), head.to_toml()).unwrap();
    let (lm, peft) = load_decoder(&dir, &device).unwrap();
    assert!(peft.is_none());
    let x = lm.embed_tokens.forward(ids);
    let got = lm.hidden_states(x, &Default::default(), None);
    let diff = (got - want).abs().max().into_scalar::<f32>();
    assert_eq!(diff, 0.0);
}

#[test]
fn an_empty_answer_does_not_count_as_ending_with_eos() {
    use manabi_finetune::sft::{GenerationEval, ended_with_eos, scores};
    let tok = manabi_tokenize::TextTokenizer::load(
        root().join("fixtures/tokenize/bpe-en/tokenizer.json"),
    )
    .unwrap();
    let yes = tok.encode("yes").unwrap();
    let g = GenerationEval {
        prompts: vec![yes.clone(); 3],
        answers: vec!["yes".into(); 3],
        tokenizer: tok.clone(),
        options: manabi_model::GenerateOptions {
            max_new_tokens: 8,
            ..Default::default()
        },
        batch_size: 3,
        rouge: false,
    };
    // EOS at once (empty), a real answer then EOS, the length limit.
    let p = g
        .predict_with(|_| Ok(vec![Vec::new(), yes.clone(), vec![yes[0]; 8]]))
        .unwrap();
    let ended: Vec<bool> = p.iter().map(|x| x.ended_with_eos).collect();
    assert_eq!(ended, [false, true, false]);
    assert_eq!(scores(&p).1, 1.0 / 3.0);
    assert!(!ended_with_eos(true, ""));
    assert!(!ended_with_eos(true, " \n"));
    assert!(ended_with_eos(true, "a"));
    assert!(!ended_with_eos(false, "a"));
}

#[test]
fn the_chat_export_writes_the_special_ids_into_config_json_too() {
    let _rng = serial();
    // bpe-en: <pad> 0, <bos> 2, <eos> 3, no chat tokens.
    let tok = manabi_tokenize::TextTokenizer::load(
        root().join("fixtures/tokenize/bpe-en/tokenizer.json"),
    )
    .unwrap();
    let device = test_device();
    let model = DecoderLm::new(&tiny_cfg(tok.vocab_size()), &device);
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("hf");
    manabi_finetune::export::export_hf_chat(model, &tok, &out).unwrap();
    let read = |file: &str| -> serde_json::Value {
        serde_json::from_str(&std::fs::read_to_string(out.join(file)).unwrap()).unwrap()
    };
    let (config, generation) = (read("config.json"), read("generation_config.json"));
    assert_eq!(
        generation,
        serde_json::json!({"bos_token_id": 2, "eos_token_id": 3, "pad_token_id": 0})
    );
    for (key, want) in [
        ("bos_token_id", serde_json::json!(2)),
        ("eos_token_id", serde_json::json!(3)),
        ("pad_token_id", serde_json::json!(0)),
        ("dtype", serde_json::json!("float32")),
        ("torch_dtype", serde_json::json!("float32")),
    ] {
        assert_eq!(config.get(key), Some(&want), "{key}");
    }
    // The rest of config.json is the model's.
    assert_eq!(config["model_type"], "llama");
    assert_eq!(
        config["architectures"],
        serde_json::json!(["LlamaForCausalLM"])
    );
}

/// SFT examples with a Llama-style tokenizer (its post-processor adds BOS; with
/// `add_eos_token` also EOS) are the ids TRL 1.16's SFTTrainer prepares for
/// `prompt + completion` (fixtures/tokenize/hf-llama-*/trl.json, made by
/// scripts/tokenizer_config_fixtures.py): BOS once at the start and untrained, EOS as the
/// tokenizer's `eos_token`, the completion (EOS included) trained. manabi tokenises the
/// prompt and the completion apart, so only pairs whose boundary merges no token and
/// whose completion tokenises alone as inside the whole (`apart_equal`) are compared.
#[test]
fn a_bos_adding_tokenizer_gives_trls_sft_ids() {
    for name in ["hf-llama-bos", "hf-llama-add-eos"] {
        let dir = root().join("fixtures/tokenize").join(name);
        let tok = manabi_tokenize::TextTokenizer::load(&dir).unwrap();
        let f: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(dir.join("trl.json")).unwrap()).unwrap();
        let specials = manabi_finetune::sft::Specials::of(&tok).unwrap();
        assert_eq!(specials.eos as u64, f["eos"].as_u64().unwrap(), "{name}");
        let bos = tok.bos_id().unwrap();
        let mut compared = 0;
        for want in f["sft"].as_array().unwrap() {
            let segments = [("prompt", false), ("completion", true)].map(|(field, trained)| {
                manabi_finetune::sft::template::Segment {
                    text: want["line"][field].as_str().unwrap().into(),
                    trained,
                }
            });
            let mut stats = encode::EncodeStats::default();
            let e = encode::encode(&tok, &segments, specials.eos, 128, &mut stats)
                .unwrap()
                .unwrap();
            assert_eq!(e.tokens[0], bos, "{name}");
            assert_eq!(e.tokens.iter().filter(|&&t| t == bos).count(), 1, "{name}");
            assert!(!e.trained[0], "{name}: BOS is never a target");
            if !want["apart_equal"].as_bool().unwrap() {
                continue;
            }
            let ids: Vec<u32> = want["input_ids"]
                .as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_u64().unwrap() as u32)
                .collect();
            let labelled: Vec<bool> = want["labels"]
                .as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_i64().unwrap() != -100)
                .collect();
            assert_eq!(e.tokens, ids, "{name}: {}", want["line"]);
            assert_eq!(e.trained, labelled, "{name}: {}", want["line"]);
            compared += 1;
        }
        assert!(compared >= 2, "{name}: {compared} pairs compared");
        // Cut to fit, the prompt loses its first tokens after the BOS.
        let segments = [
            ("Q: Where does Mara live?\nA:", false),
            (" In Tolven.", true),
        ]
        .map(|(text, trained)| manabi_finetune::sft::template::Segment {
            text: text.into(),
            trained,
        });
        let mut stats = encode::EncodeStats::default();
        let whole = encode::encode(&tok, &segments, specials.eos, 128, &mut stats)
            .unwrap()
            .unwrap();
        let cut = encode::encode(
            &tok,
            &segments,
            specials.eos,
            whole.tokens.len() - 3,
            &mut stats,
        )
        .unwrap()
        .unwrap();
        assert_eq!(stats.truncated, 1);
        assert_eq!(cut.tokens[0], bos, "{name}");
        assert_eq!(cut.tokens[1..], whole.tokens[4..], "{name}");
        assert_eq!(cut.response_start, whole.response_start - 3, "{name}");
    }
}
