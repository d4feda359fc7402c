//! The Trainer end to end on the sample corpus: falling loss, exact resume, accumulation
//! equivalence, guards, corrupt checkpoints, every config file, and (when the shared
//! data is present) a test-sized nanoGPT quality run.

use std::path::{Path, PathBuf};

use burn::module::{Module, ModuleVisitor, Param};
use burn::optim::GradientsParams;
use burn::prelude::*;
use manabi_model::{DecoderLm, DeviceChoice, device::test_device};
use manabi_objectives::Recipe;
use manabi_objectives::config::PretrainConfig;
use manabi_objectives::data::LmBatch;
use manabi_objectives::trainer::loss_and_grads;
use manabi_objectives::{TrainError, pretrain};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// A tiny GPT on the sample stories: a few milliseconds per step.
fn tiny(out: &Path, extra: &[&str]) -> PretrainConfig {
    let model = r#"
        family = "gpt2"
        vocab_size = 0
        max_positions = 32
        d_model = 32
        n_layers = 2
        n_heads = 4
        d_ff = 64
        positions = "learned"
        norm = "layernorm"
        activation = "gelu_tanh"
        attention_bias = true
        mlp_bias = true
        tie_embeddings = true"#;
    let tokenizer = r#"tokenizer = { kind = "char", vocab_size = 100, min_frequency = 1 }"#;
    let input = root().join("datasets/tiny/stories-en.txt");
    let text = recipe_text(out, model, tokenizer, &input);
    let overrides: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
    PretrainConfig::parse(&text, &overrides).unwrap()
}

/// A 16-step recipe on `input` with seed 7: `model` is the `[model]` section's body,
/// `tokenizer` a `[data]` line (or nothing).
fn recipe_text(out: &Path, model: &str, tokenizer: &str, input: &Path) -> String {
    format!(
        r#"
        [run]
        out = "{out}"
        seed = 7
        [model]
        {model}
        [data]
        inputs = ["{input}"]
        block_size = 32
        {tokenizer}
        [train]
        steps = 16
        batch_size = 4
        warmup_steps = 2
        lr = 3e-3
        eval_every = 8
        eval_batches = 2
        progress = false
        "#,
        out = out.display(),
        input = input.display(),
    )
}

/// burn's device RNG is process-global and each run seeds it per step; tests that train
/// run one at a time behind this lock, so each run sees only its own seeds (a real run
/// is one per process).
static DEVICE_RNG: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    DEVICE_RNG.lock().unwrap_or_else(|e| e.into_inner())
}

#[test]
fn loss_falls_and_the_run_leaves_metrics_a_plot_and_a_checkpoint() {
    let _rng = serial();
    let dir = tempfile::tempdir().unwrap();
    let cfg = tiny(
        dir.path(),
        &["train.steps=150", "train.eval_every=50", "train.lr=1e-2"],
    );
    let report = pretrain(&cfg, DeviceChoice::from_env().unwrap(), false).unwrap();
    assert_eq!(report.steps, 150);
    // Each evaluation is better than the last, and far below the uniform guess ln(vocab).
    assert!(
        report.evals.windows(2).all(|w| w[1].1 < w[0].1),
        "{:?}",
        report.evals
    );
    let tok =
        manabi_tokenize::TextTokenizer::load(dir.path().join("tokenizer/tokenizer.json")).unwrap();
    let uniform = (tok.vocab_size() as f64).ln();
    let last = report.evals.last().unwrap().1;
    assert!(
        last < uniform - 1.0,
        "validation loss {last} vs uniform {uniform}"
    );
    assert!(report.losses.iter().all(|(_, l)| l.is_finite()));
    let metrics = std::fs::read_to_string(dir.path().join("metrics.jsonl")).unwrap();
    let last_line: serde_json::Value =
        serde_json::from_str(metrics.lines().last().unwrap()).unwrap();
    for key in [
        "loss",
        "lr",
        "grad_norm",
        "tokens_per_s",
        "mfu",
        "val_loss",
        "val_ppl",
    ] {
        assert!(last_line[key].is_number(), "{key} missing in {last_line}");
    }
    assert!(
        std::fs::read_to_string(dir.path().join("loss.svg"))
            .unwrap()
            .contains("<svg")
    );
    let ckpt = report.checkpoint.unwrap();
    assert!(ckpt.ends_with("step-0000150"));
    // The checkpoint's model loads as a manabi model and gives the same validation loss.
    let model = manabi_model::load_model(&ckpt, &test_device()).unwrap();
    let tok =
        manabi_tokenize::TextTokenizer::load(dir.path().join("tokenizer/tokenizer.json")).unwrap();
    assert_eq!(model.config().vocab_size, tok.vocab_size());
}

#[test]
fn resume_replays_the_same_losses_bit_for_bit() {
    let _rng = serial();
    let device = DeviceChoice::from_env().unwrap();
    let a = tempfile::tempdir().unwrap();
    let straight = pretrain(&tiny(a.path(), &[]), device, false).unwrap();

    let b = tempfile::tempdir().unwrap();
    let first = pretrain(&tiny(b.path(), &["train.stop_after=8"]), device, false).unwrap();
    assert_eq!(first.steps, 8);
    let second = pretrain(&tiny(b.path(), &[]), device, true).unwrap();
    assert_eq!(second.steps, 16);
    let resumed: Vec<(usize, f64)> = first.losses.iter().chain(&second.losses).copied().collect();
    assert_eq!(resumed, straight.losses, "CPU resume is bitwise identical");
    assert_eq!(second.evals.last(), straight.evals.last());
}

fn split_rows(b: &LmBatch, rows: std::ops::Range<usize>) -> LmBatch {
    let t = b.seq;
    LmBatch {
        batch: rows.len(),
        seq: t,
        inputs: b.inputs[rows.start * t..rows.end * t].to_vec(),
        targets: b.targets[rows.start * t..rows.end * t].to_vec(),
        positions: None,
        documents: None,
    }
}

struct Collect<'a>(&'a GradientsParams, Vec<Vec<f32>>);

impl ModuleVisitor for Collect<'_> {
    fn visit_float<const D: usize>(&mut self, p: &Param<Tensor<D>>) {
        if let Some(g) = self.0.get::<D>(p.id) {
            self.1
                .push(g.into_data().convert::<f32>().try_into_vec().unwrap());
        }
    }
}

#[test]
fn accumulating_micro_batches_equals_one_large_batch() {
    let _rng = serial();
    let device = test_device().autodiff();
    let cfg = tiny(Path::new("/unused"), &["model.vocab_size=64"]);
    let model = DecoderLm::init(cfg.model.new_config().unwrap(), &device, 3);
    let t = 32;
    let mut inputs = Vec::new();
    let mut targets = Vec::new();
    for i in 0..4 * t {
        inputs.push(((i * 7 + 3) % 64) as u32);
        // Uneven counts per micro-batch: some targets are ignored.
        targets.push(if i % 5 == 0 && i < 2 * t {
            -1
        } else {
            ((i * 11 + 1) % 64) as i64
        });
    }
    let big = LmBatch {
        batch: 4,
        seq: t,
        inputs,
        targets,
        positions: None,
        documents: None,
    };
    let (loss_big, grads_big) = loss_and_grads(&model, std::slice::from_ref(&big), &device);
    let micro = [split_rows(&big, 0..2), split_rows(&big, 2..4)];
    let (loss_acc, grads_acc) = loss_and_grads(&model, &micro, &device);
    assert!(
        (loss_big - loss_acc).abs() / loss_big <= 1e-5,
        "{loss_big} vs {loss_acc}"
    );
    let (mut a, mut b) = (
        Collect(&grads_big, Vec::new()),
        Collect(&grads_acc, Vec::new()),
    );
    model.visit(&mut a);
    model.visit(&mut b);
    assert_eq!(a.1.len(), b.1.len());
    assert!(!a.1.is_empty());
    for (ga, gb) in a.1.iter().zip(&b.1) {
        let scale = ga.iter().fold(0f32, |m, x| m.max(x.abs())).max(1e-12);
        let diff = ga
            .iter()
            .zip(gb)
            .fold(0f32, |m, (x, y)| m.max((x - y).abs()));
        assert!(
            // relative to the tensor's scale, with a floor for gradients that are zero up
            // to rounding (the key bias, which softmax ignores)
            diff <= 1e-5 * scale + 1e-9,
            "gradient differs by {diff} (scale {scale})"
        );
    }
}

#[test]
fn non_finite_loss_stops_with_step_and_last_checkpoint_or_is_skipped() {
    let _rng = serial();
    let device = DeviceChoice::from_env().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let wild = [
        "train.lr=1e9",
        "train.min_lr=0.0",
        "train.warmup_steps=0",
        "train.grad_clip=0.0",
        "train.checkpoint_every=1",
        "train.steps=30",
    ];
    let err = pretrain(&tiny(dir.path(), &wild), device, false).unwrap_err();
    let TrainError::NotFinite {
        step,
        ref last_good,
        ..
    } = err
    else {
        panic!("{err}")
    };
    let msg = err.to_string();
    assert!(
        msg.contains(&format!("step {step}")) && msg.contains("last good checkpoint"),
        "{msg}"
    );
    assert!(last_good.contains(&format!("step-{step:07}")), "{msg}");

    let dir = tempfile::tempdir().unwrap();
    let mut skip: Vec<&str> = wild.to_vec();
    skip.extend(["train.on_nan=\"skip\"", "train.checkpoint_every=0"]);
    let report = pretrain(&tiny(dir.path(), &skip), device, false).unwrap();
    assert_eq!(report.steps, 30);
}

#[test]
fn corrupt_or_missing_checkpoints_are_clear_errors() {
    let _rng = serial();
    let device = DeviceChoice::from_env().unwrap();
    let dir = tempfile::tempdir().unwrap();
    // --resume before any checkpoint exists (a run killed before its first save) starts
    // from the beginning.
    let fresh = pretrain(&tiny(dir.path(), &["train.stop_after=4"]), device, true).unwrap();
    assert_eq!(fresh.losses.first().map(|l| l.0), Some(1));
    assert_eq!(fresh.steps, 4);
    std::fs::remove_dir_all(dir.path().join("checkpoints")).unwrap();

    pretrain(&tiny(dir.path(), &["train.stop_after=4"]), device, false).unwrap();
    let ckpt = dir.path().join("checkpoints/step-0000004");
    let model = ckpt.join("model.bpk");
    let bytes = std::fs::read(&model).unwrap();
    std::fs::write(&model, &bytes[..bytes.len() - 10]).unwrap();
    let err = pretrain(&tiny(dir.path(), &[]), device, true)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("no checkpoint verifies")
            && err.contains(
                "step-0000004: corrupt checkpoint: model.bpk does not match its checksum"
            ),
        "{err}"
    );
    assert!(!err.contains('\n'), "{err}");
    // `--resume PATH` names one checkpoint; a corrupt one is an error too.
    let err = pretrain(
        &tiny(dir.path(), &[]),
        device,
        manabi_objectives::Resume::From(ckpt.clone()),
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("model.bpk does not match its checksum"),
        "{err}"
    );
    let err = pretrain(
        &tiny(dir.path(), &[]),
        device,
        manabi_objectives::Resume::From(dir.path().join("checkpoints")),
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("not a training checkpoint (no state.json)"),
        "{err}"
    );
    std::fs::write(&model, &bytes).unwrap();

    let state = ckpt.join("state.json");
    let text = std::fs::read_to_string(&state).unwrap();
    std::fs::write(&state, text.replace("\"step\": 4", "\"step\": \"four\"")).unwrap();
    let err = pretrain(&tiny(dir.path(), &[]), device, true)
        .unwrap_err()
        .to_string();
    assert!(err.contains("corrupt checkpoint: state.json"), "{err}");
    std::fs::write(&state, text).unwrap();

    std::fs::remove_file(ckpt.join("optimizer.bpk")).unwrap();
    let err = pretrain(&tiny(dir.path(), &[]), device, true)
        .unwrap_err()
        .to_string();
    assert!(err.contains("optimizer.bpk"), "{err}");
}

#[test]
fn every_config_file_loads() {
    let _rng = serial();
    let dir = root().join("configs");
    let mut n = 0;
    for entry in std::fs::read_dir(dir.join("pretrain")).unwrap() {
        let path = entry.unwrap().path();
        PretrainConfig::load(&path, &[]).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        n += 1;
    }
    assert!(n >= 2);
    let bad = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(bad.path(), "[run]\nseed = 1\nsede = 2\n").unwrap();
    let err = PretrainConfig::load(bad.path(), &[])
        .unwrap_err()
        .to_string();
    assert!(err.contains("unknown field `sede`"), "{err}");
}

#[test]
fn bad_data_is_a_clear_error() {
    let _rng = serial();
    let device = DeviceChoice::from_env().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.txt");
    let cfg = tiny(
        dir.path(),
        &[&format!("data.inputs=[\"{}\"]", missing.display())],
    );
    let err = pretrain(&cfg, device, false).unwrap_err().to_string();
    assert!(err.contains("missing.txt"), "{err}");
    let small = dir.path().join("small.txt");
    std::fs::write(&small, "a tiny corpus\n\nwith two documents\n").unwrap();
    let cfg = tiny(
        dir.path().join("run").as_path(),
        &[&format!("data.inputs=[\"{}\"]", small.display())],
    );
    let err = pretrain(&cfg, device, false).unwrap_err().to_string();
    assert!(
        err.contains("cannot fill one sequence") || err.contains("validation split"),
        "{err}"
    );
}

#[test]
fn tinyshakespeare_char_gpt_learns_in_a_test_sized_run() {
    let _rng = serial();
    let data = root().join("../shared/data/tinyshakespeare.txt");
    if !data.exists() {
        eprintln!("skipping: {} is absent", data.display());
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let cfg = PretrainConfig::load(
        &root().join("configs/pretrain/gpt-char-shakespeare.toml"),
        &[
            format!("run.out=\"{}\"", dir.path().display()),
            format!("data.inputs=[\"{}\"]", data.display()),
            "train.steps=250".into(),
            "train.eval_every=250".into(),
            "train.checkpoint_every=0".into(),
            "train.progress=false".into(),
        ],
    )
    .unwrap();
    let report = pretrain(&cfg, DeviceChoice::from_env().unwrap(), false).unwrap();
    let val = report.evals.last().unwrap().1;
    // The full 2000-step run reaches ≤ 1.90 (docs/results/pretraining.md); 250 steps reach ~2.4.
    assert!(val < 2.55, "validation loss after 250 steps: {val}");
}

fn encoder_recipe(out: &Path, model: &str, tokenizer: &str, extra: &[&str]) -> PretrainConfig {
    let text = format!(
        r#"
        [run]
        out = "{out}"
        [model]
        {model}
        [data]
        inputs = ["{input}"]
        block_size = 32
        tokenizer = {tokenizer}
        [train]
        steps = 80
        batch_size = 8
        warmup_steps = 5
        lr = 3e-3
        eval_every = 20
        eval_batches = 4
        progress = false
        "#,
        out = out.display(),
        input = root().join("datasets/tiny/stories-en.txt").display(),
    );
    let overrides: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
    PretrainConfig::parse(&text, &overrides).unwrap()
}

#[test]
fn bert_masked_lm_validation_loss_falls() {
    let _rng = serial();
    let dir = tempfile::tempdir().unwrap();
    let model = r#"family = "bert"
        vocab_size = 0
        max_positions = 32
        d_model = 32
        n_layers = 2
        n_heads = 4
        d_ff = 64
        positions = "learned"
        norm = "layernorm"
        activation = "gelu"
        attention_bias = true
        mlp_bias = true
        tie_embeddings = true"#;
    let cfg = encoder_recipe(
        dir.path(),
        model,
        r#"{ kind = "wordpiece", vocab_size = 300 }"#,
        &[],
    );
    let report = pretrain(&cfg, DeviceChoice::from_env().unwrap(), false).unwrap();
    let evals: Vec<f64> = report.evals.iter().map(|e| e.1).collect();
    assert!(evals.windows(2).all(|w| w[1] < w[0]), "{evals:?}");
    // Well below the uniform guess ln(300) = 5.70.
    assert!(evals[evals.len() - 1] < 5.2, "{evals:?}");
}

#[test]
fn t5_span_corruption_validation_loss_falls() {
    let _rng = serial();
    let dir = tempfile::tempdir().unwrap();
    let model = r#"family = "t5"
        vocab_size = 0
        max_positions = 64
        d_model = 32
        n_layers = 2
        n_heads = 4
        d_ff = 64
        positions = "relative"
        norm = "rmsnorm"
        activation = "geglu_tanh"
        tie_embeddings = false"#;
    let tok = r#"{ kind = "unigram", vocab_size = 400, sentinels = 8 }"#;
    let cfg = encoder_recipe(dir.path(), model, tok, &[]);
    let report = pretrain(&cfg, DeviceChoice::from_env().unwrap(), false).unwrap();
    let evals: Vec<f64> = report.evals.iter().map(|e| e.1).collect();
    assert!(evals.windows(2).all(|w| w[1] < w[0]), "{evals:?}");
    assert!(evals[evals.len() - 1] < evals[0] - 0.5, "{evals:?}");
    // Too few sentinels for the spans of a window is a clear error.
    let dir = tempfile::tempdir().unwrap();
    let few = r#"{ kind = "unigram", vocab_size = 400, sentinels = 1 }"#;
    let err = pretrain(
        &encoder_recipe(dir.path(), model, few, &[]),
        DeviceChoice::from_env().unwrap(),
        false,
    )
    .unwrap_err();
    assert!(err.to_string().contains("needs 2 sentinels"), "{err}");
    // An objective that does not fit the family.
    let text =
        std::fs::read_to_string(root().join("configs/pretrain/t5-span-shakespeare.toml")).unwrap();
    let err = PretrainConfig::parse(&text, &["objective.kind=\"clm\"".into()])
        .unwrap_err()
        .to_string();
    assert!(err.contains("`objective.kind`"), "{err}");
}

#[test]
fn packed_batches_restart_positions_and_attention_at_document_boundaries() {
    let _rng = serial();
    use manabi_objectives::config::Sampling;
    use manabi_objectives::data::{Batcher, TokenStream};
    use manabi_tokenize::{
        CorpusSpec, EncodeOptions, ShardSet, Split, TokenizerKind, TrainOptions,
    };
    let dir = tempfile::tempdir().unwrap();
    let corpus = CorpusSpec::new(vec![root().join("datasets/tiny/stories-en.txt")]);
    let tok = manabi_tokenize::train(&corpus, &TrainOptions::new(TokenizerKind::Bpe, 400)).unwrap();
    let out = dir.path().join("shards");
    let meta =
        manabi_tokenize::encode_corpus(&tok, &corpus, &out, &EncodeOptions::default()).unwrap();
    let stream = TokenStream::new(std::sync::Arc::new(
        ShardSet::open(&out).unwrap().split(Split::Train).unwrap(),
    ));
    let eos = meta.eos_id;
    let packed = Batcher::new(stream.clone(), Sampling::Packed, 64, 4, eos, 1).unwrap();
    let b = packed.get(3, 0, 1);
    let (pos, docs) = (b.positions.clone().unwrap(), b.documents.clone().unwrap());
    let mut boundaries = 0;
    for r in 0..4 {
        for j in 0..64 {
            let i = r * 64 + j;
            if b.inputs[i] == eos {
                boundaries += 1;
                assert_eq!(
                    b.targets[i],
                    manabi_model::IGNORE_INDEX,
                    "nothing is predicted across a boundary"
                );
                if j + 1 < 64 {
                    assert_eq!(pos[i + 1], 0, "positions restart after EOS");
                    assert_eq!(docs[i + 1], docs[i] + 1);
                }
            } else if j + 1 < 64 {
                assert_eq!(b.targets[i], b.inputs[i + 1] as i64);
            }
        }
    }
    assert!(
        boundaries > 0,
        "a 64-token block of short stories crosses documents"
    );
    // The mask lets a token see only earlier tokens of its own document.
    let mask: Vec<f32> = b
        .mask_tensor(&test_device())
        .unwrap()
        .into_data()
        .try_to_vec()
        .unwrap();
    for r in 0..4 {
        for i in 0..64 {
            for j in 0..64 {
                let open = mask[(r * 64 + i) * 64 + j] == 0.0;
                assert_eq!(open, j <= i && docs[r * 64 + i] == docs[r * 64 + j]);
            }
        }
    }
    // Deterministic: the same (seed, step, micro) gives the same batch; random windows too.
    assert_eq!(packed.get(3, 0, 1), b);
    let random = Batcher::new(stream, Sampling::Random, 64, 4, eos, 1).unwrap();
    assert_eq!(random.get(5, 1, 2), random.get(5, 1, 2));
    assert_ne!(random.get(5, 1, 2), random.get(5, 0, 2));
}

#[test]
fn gradient_checkpointing_gives_the_same_losses() {
    let _rng = serial();
    let device = DeviceChoice::from_env().unwrap();
    let a = tempfile::tempdir().unwrap();
    let plain = pretrain(&tiny(a.path(), &["train.steps=6"]), device, false).unwrap();
    let b = tempfile::tempdir().unwrap();
    let ckpt = pretrain(
        &tiny(
            b.path(),
            &["train.steps=6", "train.gradient_checkpointing=true"],
        ),
        device,
        false,
    )
    .unwrap();
    for ((s1, l1), (s2, l2)) in plain.losses.iter().zip(&ckpt.losses) {
        assert_eq!(s1, s2);
        assert!((l1 - l2).abs() <= 1e-5 * l1, "step {s1}: {l1} vs {l2}");
    }
}

#[test]
fn resume_skips_a_corrupt_newest_checkpoint_and_still_matches_the_straight_run() {
    let _rng = serial();
    let device = DeviceChoice::from_env().unwrap();
    let a = tempfile::tempdir().unwrap();
    let every = ["train.checkpoint_every=4", "train.keep_last=10"];
    let straight = pretrain(&tiny(a.path(), &every), device, false).unwrap();

    let b = tempfile::tempdir().unwrap();
    let mut stop = every.to_vec();
    stop.push("train.stop_after=8");
    let first = pretrain(&tiny(b.path(), &stop), device, false).unwrap();
    assert_eq!(first.steps, 8);
    // The newest checkpoint is damaged (a disk error, a truncated copy): --resume falls
    // back to step 4, which verifies, and redoes steps 5..16.
    let model = b.path().join("checkpoints/step-0000008/model.bpk");
    let bytes = std::fs::read(&model).unwrap();
    std::fs::write(&model, &bytes[..bytes.len() / 2]).unwrap();
    let second = pretrain(&tiny(b.path(), &every), device, true).unwrap();
    assert_eq!(second.losses.first().map(|l| l.0), Some(5));
    assert_eq!(second.losses, straight.losses[4..]);
    assert_eq!(second.evals.last(), straight.evals.last());
    // The damaged step 8 was overwritten by a complete save.
    manabi_objectives::checkpoint::read_state(&b.path().join("checkpoints/step-0000008")).unwrap();
}

#[test]
fn leftovers_of_a_killed_save_or_cleanup_are_swept_and_never_listed() {
    use manabi_objectives::checkpoint;
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("checkpoints");
    // What a kill -9 leaves: a half-written save and a half-deleted checkpoint (renamed
    // out of the listing first, then being removed file by file).
    for leftover in [".step-0000003.tmp", ".step-0000002.del"] {
        std::fs::create_dir_all(root.join(leftover)).unwrap();
        std::fs::write(root.join(leftover).join("state.json"), "{}").unwrap();
    }
    std::fs::create_dir_all(root.join("step-0000001")).unwrap();
    std::fs::write(root.join("step-0000001/state.json"), "{}").unwrap();
    assert_eq!(checkpoint::list(&root).len(), 1);
    assert_eq!(checkpoint::sweep(&root).unwrap(), 2);
    assert!(!root.join(".step-0000003.tmp").exists());
    assert!(!root.join(".step-0000002.del").exists());
    assert!(
        root.join("step-0000001").exists(),
        "complete checkpoints are kept"
    );
}

#[test]
fn one_run_folder_has_one_writer() {
    let device = manabi_model::device::test_device();
    let dir = tempfile::tempdir().unwrap();
    let train = tiny(dir.path(), &[]).train;
    let first = manabi_objectives::Trainer::new(&device, train.clone(), dir.path(), 1).unwrap();
    let err = manabi_objectives::Trainer::new(&device, train.clone(), dir.path(), 1)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("is being written by another run (pid"),
        "{err}"
    );
    // A second pre-training run into the folder is refused before it touches anything.
    let err = pretrain(
        &tiny(dir.path(), &[]),
        DeviceChoice::from_env().unwrap(),
        true,
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("is being written by another run"), "{err}");
    drop(first);
    manabi_objectives::Trainer::new(&device, train, dir.path(), 1).unwrap();
}

#[test]
fn continued_pretraining_reads_manabi_runs_and_hugging_face_folders() {
    // `[model] path`: an existing model trained further with its own architecture and
    // tokenizer (a manabi run folder, or a Hugging Face folder with `model.tokenizer`).
    let _rng = serial();
    let dir = tempfile::tempdir().unwrap();
    // The stories in lower-case letters, spaces and full stops: a character tokenizer
    // small enough for the Hugging Face fixtures' 64 embeddings.
    let stories = std::fs::read_to_string(root().join("datasets/tiny/stories-en.txt")).unwrap();
    let plain: String = stories
        .to_lowercase()
        .chars()
        .filter(|c| c.is_ascii_lowercase() || matches!(c, ' ' | '.' | '\n'))
        .collect();
    let input = dir.path().join("stories.txt");
    std::fs::write(&input, plain).unwrap();
    let first = dir.path().join("first");
    let inputs = format!("data.inputs=[\"{}\"]", input.display());
    let cfg = tiny(&first, &[&inputs]);
    let device = DeviceChoice::from_env().unwrap();
    let fresh = pretrain(&cfg, device, false).unwrap();
    let recipe = |out: &Path, model: &str| recipe_text(out, model, "", &input);
    // From the run folder: it starts where the first run ended, so after 8 more steps
    // it is ahead of the fresh run at step 8.
    let more = dir.path().join("more");
    let text = recipe(&more, &format!("path = \"{}\"", first.display()));
    let cont = pretrain(&PretrainConfig::parse(&text, &[]).unwrap(), device, false).unwrap();
    assert!(
        cont.evals[0].1 < fresh.evals[0].1,
        "continued {:?} vs fresh {:?}",
        cont.evals,
        fresh.evals
    );
    // From a Hugging Face Qwen3 folder with the first run's 60-token tokenizer: the loss
    // falls and the checkpoint stays a Qwen3.
    let tok = first.join("tokenizer/tokenizer.json");
    let qwen = root().join("fixtures/models/qwen3");
    let out = dir.path().join("qwen3");
    let model = format!(
        "path = \"{}\"\ntokenizer = \"{}\"",
        qwen.display(),
        tok.display()
    );
    let text = recipe(&out, &model);
    let cfg = PretrainConfig::parse(&text, &["train.eval_at_start=true".into()]).unwrap();
    let report = pretrain(&cfg, device, false).unwrap();
    assert_eq!(report.evals[0].0, 0, "{:?}", report.evals);
    assert!(
        report.evals.last().unwrap().1 < report.evals[0].1 - 0.1,
        "{:?}",
        report.evals
    );
    let saved = report.checkpoint.unwrap();
    let toml = std::fs::read_to_string(saved.join("model.toml")).unwrap();
    assert!(toml.contains("hf_model_type = \"qwen3\""), "{toml}");
    // What cannot mean what the user wants is refused, naming the key.
    for (set, key) in [
        ("model.d_model=8", "unknown field `d_model`"),
        ("data.tokenizer.kind=\"char\"", "data.tokenizer"),
        ("data.tokenizer.vocab_size=10", "data.tokenizer"),
    ] {
        let err = PretrainConfig::parse(&text, &[set.into()])
            .unwrap_err()
            .to_string();
        assert!(err.contains(key), "{set}: {err}");
    }
    let bad = dir.path().join("bad");
    let cfg =
        PretrainConfig::parse(&recipe(&bad, &model), &["data.block_size=100".into()]).unwrap();
    let err = pretrain(&cfg, device, false).unwrap_err().to_string();
    assert!(
        err.contains("data.block_size") && err.contains("32"),
        "{err}"
    );
    assert!(!bad.join("shards").exists(), "tokenised before refusing");
    // A 512-token tokenizer does not fit the model's 64 embeddings.
    let big = root().join("fixtures/tokenize/bpe-en/tokenizer.json");
    let text = recipe(&bad, &model);
    let cfg =
        PretrainConfig::parse(&text, &[format!("model.tokenizer={}", big.display())]).unwrap();
    let err = pretrain(&cfg, device, false).unwrap_err().to_string();
    assert!(
        err.contains("model.tokenizer") && err.contains("512"),
        "{err}"
    );
}
