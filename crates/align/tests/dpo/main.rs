//! DPO and its variants against TRL (fixtures made by scripts/dpo_fixtures.py: TRL's
//! DPOTrainer and CPOTrainer on the llama-eval fixture model, 3 AdamW steps): the same
//! token ids, reference log-probs, losses and metrics at every step. Also the reward
//! model and the alignment report; GRPO in [`grpo`].

use std::path::{Path, PathBuf};

use burn::module::Module;
use burn::optim::GradientsParams;
use manabi_align::dpo::{DpoSettings, DpoTask, LossType, pair_batch, reference_logps};
use manabi_align::pref::{TokenPair, read_pairs, tokenize};
use manabi_model::{DecoderLm, device::test_device, load_hf};
use manabi_objectives::Recipe;
use manabi_objectives::config::TrainConfig;
use manabi_objectives::optim::build_optimizer;
use manabi_objectives::{Task, TaskLoss};
use manabi_tokenize::TextTokenizer;
use serde_json::Value;

mod grpo;

/// burn's device RNG is process-global and each run seeds it (per step, and before
/// drawing adapters); tests that train run one at a time behind this lock, so each run
/// sees only its own seeds (a real run is one per process).
static DEVICE_RNG: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    DEVICE_RNG.lock().unwrap_or_else(|e| e.into_inner())
}

/// The losses of a run stopped early followed by those of its resumed rest.
fn joined_losses(
    first: &manabi_objectives::RunReport,
    rest: &manabi_objectives::RunReport,
) -> Vec<(usize, f64)> {
    first.losses.iter().chain(&rest.losses).copied().collect()
}

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn fixture() -> Value {
    let p = root().join("fixtures/dpo/expected.json");
    serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap()
}

fn ids(v: &Value) -> Vec<u32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap() as u32)
        .collect()
}

fn close(name: &str, got: f64, want: f64, tol: f64) {
    let d = (got - want).abs();
    assert!(
        d <= tol * want.abs().max(1.0),
        "{name}: {got} vs TRL {want} (Δ {d})"
    );
}

#[test]
fn tokenisation_matches_trl() {
    let _rng = serial();
    let f = fixture();
    let tok =
        TextTokenizer::load(root().join("fixtures/models/llama-eval/tokenizer.json")).unwrap();
    let pairs = read_pairs(&[root().join("fixtures/dpo/pairs.jsonl")]).unwrap();
    let (got, cut, dropped) = tokenize(&pairs, &tok, 3, 64).unwrap();
    assert_eq!((cut, dropped), (0, 0));
    for (g, want) in got
        .iter()
        .zip(f["runs"]["sigmoid"]["pairs"].as_array().unwrap())
    {
        assert_eq!(g.prompt, ids(&want["prompt_input_ids"]));
        assert_eq!(g.chosen, ids(&want["chosen_input_ids"]));
        assert_eq!(g.rejected, ids(&want["rejected_input_ids"]));
    }
}

#[test]
fn every_loss_type_follows_trl_for_three_adamw_steps() {
    let _rng = serial();
    let f = fixture();
    for (name, loss_type) in [
        ("sigmoid", LossType::Sigmoid),
        ("ipo", LossType::Ipo),
        ("hinge", LossType::Hinge),
        ("robust", LossType::Robust),
        ("simpo", LossType::Simpo),
    ] {
        let run = &f["runs"][name];
        let cfg = &run["config"];
        let settings = DpoSettings {
            beta: cfg["beta"].as_f64().unwrap(),
            loss_type,
            label_smoothing: cfg["label_smoothing"].as_f64().unwrap_or(0.0),
            simpo_gamma: cfg["simpo_gamma"].as_f64().unwrap_or(0.5),
        };
        // The ids each trainer used (CPOTrainer prepends BOS to the prompt).
        let pairs: Vec<TokenPair> = run["pairs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| TokenPair {
                prompt: ids(&p["prompt_input_ids"]),
                chosen: ids(&p["chosen_input_ids"]),
                rejected: ids(&p["rejected_input_ids"]),
            })
            .collect();
        let plain = test_device();
        let base = load_hf(root().join("fixtures/models/llama-eval"), &plain).unwrap();
        let reference = reference_logps(&base, &pairs, &settings, 8, 0, &plain);
        if settings.uses_reference() {
            for (r, p) in reference.iter().zip(run["pairs"].as_array().unwrap()) {
                close(
                    "reference chosen",
                    r.0,
                    p["ref_logps_chosen"].as_f64().unwrap(),
                    1e-5,
                );
                close(
                    "reference rejected",
                    r.1,
                    p["ref_logps_rejected"].as_f64().unwrap(),
                    1e-5,
                );
            }
        }
        let task = DpoTask {
            train: pairs.clone(),
            train_reference: reference.clone(),
            val: pairs.clone(),
            val_reference: reference.clone(),
            settings: settings.clone(),
            batch_size: 4,
            pad: 0,
            seed: 0,
        };
        let device = test_device().autodiff();
        let mut model: DecoderLm =
            load_hf(root().join("fixtures/models/llama-eval"), &device).unwrap();
        let train = TrainConfig {
            weight_decay: 0.0,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            ..TrainConfig::default()
        };
        let mut optim = build_optimizer(&model, &train);
        for step in run["steps"].as_array().unwrap() {
            let idx: Vec<usize> = step["pairs"]
                .as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_u64().unwrap() as usize)
                .collect();
            let chosen: Vec<&TokenPair> = idx.iter().map(|&i| &pairs[i]).collect();
            let refs: Vec<(f64, f64)> = idx.iter().map(|&i| reference[i]).collect();
            let batch = pair_batch(&chosen, &refs, 0);
            let TaskLoss { sum, metrics } = task.loss(&model, &batch, &device).unwrap();
            let n = DpoTask::targets(&batch) as f64;
            let loss = sum.clone() / n;
            let log = &step["log"];
            let at = format!("{name} step {}", step["step"]);
            close(
                &format!("{at} loss"),
                loss.clone().into_scalar::<f32>() as f64,
                log["loss"].as_f64().unwrap(),
                1e-4,
            );
            for (k, v) in &metrics {
                // At a tie (policy = reference, step 1) the strict `>` of the accuracy
                // sees float noise of another batch padding; the margins show the tie.
                let tie = log["rewards/margins"].as_f64().unwrap().abs() < 1e-6;
                if k == "rewards/accuracies" && tie {
                    continue;
                }
                close(
                    &format!("{at} {k}"),
                    v / n,
                    log[k.as_str()].as_f64().unwrap(),
                    1e-4,
                );
            }
            let grads = GradientsParams::from_grads(loss.backward(), &model);
            model = optim.step(1e-3, model, grads);
        }
        let _ = model.valid();
    }
}

fn tiny_base(dir: &Path) -> PathBuf {
    let cfg: manabi_model::ModelConfig = toml::from_str(
        "family = \"llama\"\nvocab_size = 512\nmax_positions = 128\nd_model = 32\nn_layers = 2\nn_heads = 4\nn_kv_heads = 2\nd_ff = 64\npositions = \"rope\"\nnorm = \"rmsnorm\"\nactivation = \"swiglu\"\ntie_embeddings = true",
    )
    .unwrap();
    let base = dir.join("base");
    manabi_model::save_native(&DecoderLm::init(&cfg, &test_device(), 3), &base).unwrap();
    std::fs::copy(
        root().join("fixtures/tokenize/bpe-en/tokenizer.json"),
        base.join("tokenizer.json"),
    )
    .unwrap();
    base
}

fn recipe(dir: &Path, base: &Path, out: &str) -> String {
    let pref = root().join("datasets/pref");
    format!(
        r#"
[run]
out = "{out}"
seed = 3
[model]
path = "{base}"
[data]
train = ["{train}"]
val = ["{val}"]
max_length = 96
[peft]
method = "lora"
r = 4
targets = ["q_proj", "v_proj", "up_proj"]
[train]
steps = 8
batch_size = 4
lr = 5e-3
warmup_steps = 1
eval_every = 4
eval_batches = 4
checkpoint_every = 4
progress = false
"#,
        out = dir.join(out).display(),
        base = base.display(),
        train = pref.join("pref-implicit-en.jsonl").display(),
        val = pref.join("pref-en.val.jsonl").display(),
    )
}

#[test]
fn a_dpo_run_logs_trl_metrics_and_resumes_bit_for_bit() {
    let _rng = serial();
    let tmp = tempfile::tempdir().unwrap();
    let base = tiny_base(tmp.path());
    let device = manabi_model::DeviceChoice::from_env().unwrap();
    let straight = manabi_align::DpoConfig::parse(&recipe(tmp.path(), &base, "a"), &[]).unwrap();
    let full = manabi_align::dpo(&straight, device, false).unwrap();
    assert_eq!(full.run.losses.len(), 8);
    assert!(
        full.run.losses[0].1 > 0.69 && full.run.losses[0].1 < 0.70,
        "{:?}",
        full.run.losses[0]
    );
    for k in [
        "rewards/chosen",
        "rewards/rejected",
        "rewards/accuracies",
        "rewards/margins",
        "logps/chosen",
        "logps/rejected",
    ] {
        assert!(
            full.run.eval_metrics.contains_key(&format!("eval/{k}")),
            "{k}"
        );
    }
    let metrics = std::fs::read_to_string(tmp.path().join("a/metrics.jsonl")).unwrap();
    assert!(metrics.contains("\"rewards/margins\""), "{metrics}");
    assert_eq!(full.accuracy_before, 0.5);

    let first = manabi_align::DpoConfig::parse(
        &recipe(tmp.path(), &base, "b"),
        &["train.stop_after=4".into()],
    )
    .unwrap();
    let r1 = manabi_align::dpo(&first, device, false).unwrap();
    let second = manabi_align::DpoConfig::parse(&recipe(tmp.path(), &base, "b"), &[]).unwrap();
    let r2 = manabi_align::dpo(&second, device, true).unwrap();
    let joined = joined_losses(&r1.run, &r2.run);
    assert_eq!(joined, full.run.losses);
}

#[test]
fn bad_preference_data_and_settings_are_clear_errors() {
    let _rng = serial();
    let tmp = tempfile::tempdir().unwrap();
    let base = tiny_base(tmp.path());
    let bad = tmp.path().join("bad.jsonl");
    std::fs::write(&bad, "{\"prompt\":\"Q:\",\"chosen\":\" a\",\"rejected\":\" b\"}\n{\"prompt\":\"Q:\",\"chosen\":\" a\"}\n").unwrap();
    let text = recipe(tmp.path(), &base, "x").replace(
        &root()
            .join("datasets/pref/pref-implicit-en.jsonl")
            .display()
            .to_string(),
        &bad.display().to_string(),
    );
    let cfg = manabi_align::DpoConfig::parse(&text, &[]).unwrap();
    let device = manabi_model::DeviceChoice::from_env().unwrap();
    let e = manabi_align::dpo(&cfg, device, false)
        .unwrap_err()
        .to_string();
    assert!(e.contains("bad.jsonl:2") && e.contains("`rejected`"), "{e}");
    let e = manabi_align::DpoConfig::parse(&text, &["dpo.beta=0".into()])
        .unwrap_err()
        .to_string();
    assert!(e.contains("dpo.beta"), "{e}");
    let e = manabi_align::DpoConfig::parse(&text, &["dpo.loss_type=\"kto\"".into()])
        .unwrap_err()
        .to_string();
    assert!(e.contains("dpo.loss_type") && e.contains("kto"), "{e}");
}

#[test]
fn every_align_config_file_loads() {
    let _rng = serial();
    for entry in std::fs::read_dir(root().join("configs/align")).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        let r = if name.starts_with("reward") {
            manabi_align::RewardConfig::load(&path, &[]).map(|_| ())
        } else if name.starts_with("grpo") {
            manabi_align::GrpoConfig::load(&path, &[]).map(|_| ())
        } else if name.starts_with("ppo") {
            manabi_align::PpoConfig::load(&path, &[]).map(|_| ())
        } else {
            manabi_align::DpoConfig::load(&path, &[]).map(|_| ())
        };
        r.unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    }
}

#[test]
fn a_reward_model_learns_exports_for_transformers_and_resumes() {
    let _rng = serial();
    let tmp = tempfile::tempdir().unwrap();
    let base = tiny_base(tmp.path());
    let device = manabi_model::DeviceChoice::from_env().unwrap();
    let text =
        recipe(tmp.path(), &base, "rm").replace("[train]", "[reward]\nmargin = 0.0\n[train]");
    let sets = [
        "train.steps=20".to_string(),
        "train.eval_every=20".into(),
        "train.checkpoint_every=10".into(),
    ];
    let cfg = manabi_align::RewardConfig::parse(&text, &sets).unwrap();
    let r = manabi_align::train_reward(&cfg, device, false).unwrap();
    let first: f64 = r.run.losses[..4].iter().map(|x| x.1).sum::<f64>() / 4.0;
    let last: f64 = r.run.losses[16..].iter().map(|x| x.1).sum::<f64>() / 4.0;
    assert!(last < first, "loss {first} -> {last}");
    for k in [
        "eval/accuracy",
        "eval/margin",
        "eval/mean_reward",
        "eval/min_reward",
        "eval/max_reward",
    ] {
        assert!(r.run.eval_metrics.contains_key(k), "{k}");
    }
    // Export as LlamaForSequenceClassification and read it back: the same scores.
    let ckpt = r.checkpoint.unwrap();
    assert!(ckpt.join("head.toml").exists());
    let plain = test_device();
    let m = manabi_align::load_reward(&ckpt, &plain).unwrap();
    let hf = tmp.path().join("rm-hf");
    m.clone()
        .materialize()
        .export_hf(&hf, None, Some(0), &[])
        .unwrap();
    let cfg_json = std::fs::read_to_string(hf.join("config.json")).unwrap();
    assert!(
        cfg_json.contains("LlamaForSequenceClassification")
            && cfg_json.contains("\"num_labels\": 1"),
        "{cfg_json}"
    );
    let back = manabi_model::load_classifier_hf(&hf, &plain).unwrap();
    let tok = TextTokenizer::load(base.join("tokenizer.json")).unwrap();
    let texts = vec![
        ("Q: hi\nA:".to_string(), " hello".to_string()),
        ("Q: x\nA:".to_string(), " no".to_string()),
    ];
    let a = manabi_align::score_texts(&m, &tok, &texts, &plain).unwrap();
    let b = manabi_align::score_texts(&back, &tok, &texts, &plain).unwrap();
    for (x, y) in a.iter().zip(&b) {
        assert!((x - y).abs() < 1e-5, "{a:?} vs {b:?}");
    }
    // Resume: 10 steps, then the rest, equal to the straight run.
    let other = text.replace("/rm\"", "/rm2\"");
    let stop_sets = [sets.to_vec(), vec!["train.stop_after=10".into()]].concat();
    let r1 = manabi_align::train_reward(
        &manabi_align::RewardConfig::parse(&other, &stop_sets).unwrap(),
        device,
        false,
    )
    .unwrap();
    let r2 = manabi_align::train_reward(
        &manabi_align::RewardConfig::parse(&other, &sets).unwrap(),
        device,
        true,
    )
    .unwrap();
    let joined = joined_losses(&r1.run, &r2.run);
    assert_eq!(joined, r.run.losses);
}

#[test]
fn the_alignment_report_compares_two_models_on_each_evaluation() {
    let _rng = serial();
    use manabi_align::report::{ReportInputs, report};
    let tmp = tempfile::tempdir().unwrap();
    let base = tiny_base(tmp.path());
    let device = test_device();
    let before = manabi_model::load_native(&base, &device).unwrap();
    let after = DecoderLm::init(before.config(), &device, 77);
    let tok = TextTokenizer::load(base.join("tokenizer.json")).unwrap();
    let inputs = ReportInputs {
        text: Some(root().join("datasets/tiny/stories-en.txt")),
        prompts: Some(root().join("datasets/pref/rl-arith-en.val.jsonl")),
        pairs: Some(root().join("datasets/pref/pref-implicit-en.jsonl")),
        context: 64,
        ..ReportInputs::default()
    };
    let rows = report(&before, &after, &tok, &inputs, &device).unwrap();
    assert_eq!(rows.len(), 3);
    assert!(
        rows[0].metric.starts_with("perplexity")
            && rows[0].before > 1.0
            && rows[0].before != rows[0].after
    );
    assert!(rows.iter().skip(1).all(|r| (0.0..=1.0).contains(&r.before)));
    let same = report(&before, &before, &tok, &inputs, &device).unwrap();
    assert!(same.iter().all(|r| r.before == r.after));
    let none = report(&before, &after, &tok, &ReportInputs::default(), &device)
        .unwrap_err()
        .to_string();
    assert!(none.contains("nothing to evaluate"), "{none}");
}

#[test]
fn preference_accuracy_uses_dpo_margins_or_simpo_length_normalised_ones() {
    let _rng = serial();
    use manabi_align::dpo::preference_accuracy;
    // DPO: the policy moved chosen up relative to the reference in pair 0, down in pair 1;
    // pair 2 is a tie (counts half).
    let policy = [(-10.0, -12.0), (-9.0, -8.0), (-5.0, -5.0)];
    let reference = [(-11.0, -11.0), (-9.0, -9.0), (-5.0, -5.0)];
    let lengths = [(4, 4), (2, 8), (1, 1)];
    assert_eq!(
        preference_accuracy(&policy, Some(&reference), &lengths),
        1.5 / 3.0
    );
    // SimPO: per-token averages, which can disagree with the sums.
    let policy = [(-12.0, -6.0), (-3.0, -2.0)];
    let lengths = [(6, 2), (1, 1)];
    // Pair 0: −2.0 per token vs −3.0 → chosen wins although its sum is lower.
    // Pair 1: −3.0 vs −2.0 → rejected wins.
    assert_eq!(preference_accuracy(&policy, None, &lengths), 0.5);
}

#[test]
fn preference_files_with_a_bom_and_crlf_lines_are_read() {
    use manabi_align::pref::Pair;
    let tmp = tempfile::tempdir().unwrap();
    let p = tmp.path().join("bom.jsonl");
    std::fs::write(
        &p,
        "\u{feff}{\"prompt\":\"Q:\",\"chosen\":\" yes\",\"rejected\":\" no\"}\r\n\r\n{\"prompt\":\"R:\",\"responses\":[\" a\",\" b\"]}\r\n",
    )
    .unwrap();
    let pair = |prompt: &str, chosen: &str, rejected: &str| Pair {
        prompt: prompt.into(),
        chosen: chosen.into(),
        rejected: rejected.into(),
    };
    assert_eq!(
        read_pairs(std::slice::from_ref(&p)).unwrap(),
        vec![pair("Q:", " yes", " no"), pair("R:", " a", " b")]
    );
    // A bad line after a blank one is named by its physical line.
    std::fs::write(
        &p,
        "\u{feff}{\"prompt\":\"Q:\",\"chosen\":\" yes\",\"rejected\":\" no\"}\r\n\r\n{\"prompt\":\r\n",
    )
    .unwrap();
    let e = read_pairs(&[p]).unwrap_err().to_string();
    assert!(e.contains("bom.jsonl:3: not valid JSON"), "{e}");
}

#[test]
fn only_a_one_output_score_head_loads_as_a_reward_model() {
    use manabi_align::reward::{HEAD_FILE, HeadSpec};
    use manabi_model::DecoderClassifier;
    let tmp = tempfile::tempdir().unwrap();
    let device = test_device();
    let err = |dir: &Path| {
        manabi_align::load_reward(dir, &device)
            .unwrap_err()
            .to_string()
    };
    // A plain decoder: no head at all.
    let base = tiny_base(tmp.path());
    assert_eq!(
        err(&base),
        format!("{}: not a reward model (no score head)", base.display())
    );
    // A two-class classifier, as `manabi task` writes it and as exported for transformers.
    let body = manabi_model::load_native(&base, &device).unwrap();
    let cls = DecoderClassifier::from_lm(body, 2);
    let native = tmp.path().join("nli");
    manabi_model::checkpoint::save_module(&cls, cls.lm.config(), &native).unwrap();
    std::fs::write(native.join(HEAD_FILE), HeadSpec::score(2, vec![]).to_toml()).unwrap();
    assert_eq!(
        err(&native),
        format!(
            "{}: not a reward model (2 labels, needs 1)",
            native.display()
        )
    );
    let hf = tmp.path().join("nli-hf");
    cls.export_hf(&hf, None, None, &[]).unwrap();
    assert_eq!(
        err(&hf),
        format!("{}: not a reward model (2 labels, needs 1)", hf.display())
    );
}
