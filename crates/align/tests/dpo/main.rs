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

mod chat;
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
    let (got, cut, dropped) = tokenize(&pairs, &tok, 3, 64, None).unwrap();
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

/// TRL 1.16's DPOTrainer tokenises the prompt alone and prompt + completion jointly, and
/// starts the completion where they first differ: where a BPE merge crosses the boundary
/// (a prompt ending in a space or mid-word; implicit prompts, whose shared text ends in a
/// space), the merged token belongs to the completion. Fixture: scripts/dpo_boundary_fixtures.py.
#[test]
fn tokenisation_across_the_prompt_boundary_matches_trl() {
    let f: Value = serde_json::from_str(
        &std::fs::read_to_string(root().join("fixtures/dpo/boundary.json")).unwrap(),
    )
    .unwrap();
    let tok =
        TextTokenizer::load(root().join("fixtures/models/llama-eval/tokenizer.json")).unwrap();
    let eos = f["eos"].as_u64().unwrap() as u32;
    let mut apart_differs = Vec::new();
    for want in f["pairs"].as_array().unwrap() {
        let line = &want["line"];
        let pairs = manabi_align::pref::parse(line).unwrap();
        let (got, cut, dropped) = tokenize(&pairs, &tok, eos, 64, None).unwrap();
        assert_eq!((got.len(), cut, dropped), (1, 0, 0), "{line}");
        let g = &got[0];
        assert_eq!(g.prompt, ids(&want["prompt_ids"]), "{line}");
        assert_eq!(g.chosen, ids(&want["chosen_ids"]), "{line}");
        assert_eq!(g.rejected, ids(&want["rejected_ids"]), "{line}");
        // Prompt and completions tokenised apart give other ids exactly at the merges.
        let apart = |text: &str, end: bool| {
            let mut v = tok.encode(text).unwrap();
            v.extend(end.then_some(eos));
            v
        };
        let p = &pairs[0];
        apart_differs.push(
            (
                apart(&p.prompt, false),
                apart(&p.chosen, true),
                apart(&p.rejected, true),
            ) != (g.prompt.clone(), g.chosen.clone(), g.rejected.clone()),
        );
    }
    assert_eq!(apart_differs, [true, true, true, false, true, true]);
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
            reference: None,
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
    tiny_model(dir, "base", 3, 512, Some("bpe-en"))
}

/// A tiny LLaMA of `vocab` tokens drawn from `seed` in `dir/name`, with the tokenizer of
/// `fixtures/tokenize/<tokenizer>` (or none).
fn tiny_model(dir: &Path, name: &str, seed: u64, vocab: usize, tokenizer: Option<&str>) -> PathBuf {
    let cfg: manabi_model::ModelConfig = toml::from_str(&format!(
        "family = \"llama\"\nvocab_size = {vocab}\nmax_positions = 128\nd_model = 32\nn_layers = 2\nn_heads = 4\nn_kv_heads = 2\nd_ff = 64\npositions = \"rope\"\nnorm = \"rmsnorm\"\nactivation = \"swiglu\"\ntie_embeddings = true",
    ))
    .unwrap();
    let out = dir.join(name);
    manabi_model::save_native(&DecoderLm::init(&cfg, &test_device(), seed), &out).unwrap();
    if let Some(t) = tokenizer {
        std::fs::copy(
            root().join(format!("fixtures/tokenize/{t}/tokenizer.json")),
            out.join("tokenizer.json"),
        )
        .unwrap();
    }
    out
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
        chat: None,
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

#[test]
fn bad_preference_lines_are_one_line_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let good = "{\"prompt\":\"Q:\",\"chosen\":\" a\",\"rejected\":\" b\"}";
    let cases = [
        (
            "{\"prompt\":\"Q:\",\"chosen\":\" a\",\"rejected\":\" a\"}",
            "chosen and rejected are the same text",
        ),
        (
            "{\"chosen\":\"Q: A yes\",\"rejected\":\"Q: A yes\"}",
            "chosen and rejected are the same text",
        ),
        (
            "{\"chosen\":\"Q: A\",\"rejected\":\"Q: A no\"}",
            "`chosen` is empty once the shared prompt \"Q: A\" is split off",
        ),
        (
            "{\"chosen\":\"Q: A no\",\"rejected\":\"Q: A\"}",
            "`rejected` is empty once the shared prompt \"Q: A\" is split off",
        ),
        (
            "{\"prompt\":\"Q:\",\"responses\":[\" a\",\" b\",\" a\"]}",
            "field `responses`: responses 1 and 3 (counting from 1) are the same text",
        ),
        (
            "{\"prompt\":\"Q:\",\"responses\":[\" a\",\"  \"]}",
            "field `responses`: response 2 of 2 is empty",
        ),
        (
            "{\"prompt\":[{\"role\":\"user\",\"content\":\"Hi\"}],\"chosen\":[{\"role\":\"assistant\",\"content\":\"Yo\"}],\"rejected\":[{\"role\":\"assistant\",\"content\":\"Yo\"}]}",
            "chosen and rejected are the same text",
        ),
        (
            "{\"prompt\":[{\"role\":\"user\",\"content\":\"Hi\"}],\"chosen\":[{\"role\":\"assistant\",\"content\":\" \"}],\"rejected\":[{\"role\":\"assistant\",\"content\":\"Yo\"}]}",
            "field `chosen`: the assistant message is empty",
        ),
        (
            "{\"prompt\":\" \",\"chosen\":\" a\",\"rejected\":\" b\"}",
            "field `prompt` is empty",
        ),
        (
            "{\"prompt\":\"Q:\",\"chosen\":\" a\",\"rejected\":\"\"}",
            "field `rejected` is empty",
        ),
        ("[1]", "expected a JSON object"),
    ];
    for (i, (line, want)) in cases.iter().enumerate() {
        let p = tmp.path().join(format!("p{i}.jsonl"));
        std::fs::write(&p, format!("{good}\n{line}\n")).unwrap();
        let e = read_pairs(&[p]).unwrap_err().to_string();
        assert!(!e.contains('\n'), "{e}");
        assert!(e.contains(&format!("p{i}.jsonl:2: {want}")), "{e}");
    }
    let empty = tmp.path().join("empty.jsonl");
    std::fs::write(&empty, "\n").unwrap();
    let e = read_pairs(&[empty]).unwrap_err().to_string();
    assert!(e.contains("empty.jsonl: no preference pairs"), "{e}");
}

#[test]
fn bad_report_inputs_are_one_line_errors() {
    let _rng = serial();
    use manabi_align::report::{ReportInputs, report, report_tokenizer};
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let base = tiny_base(d);
    let device = test_device();
    let model = manabi_model::load_native(&base, &device).unwrap();
    let tok = TextTokenizer::load(base.join("tokenizer.json")).unwrap();
    let file = |name: &str, text: &str| {
        let p = d.join(name);
        std::fs::write(&p, text).unwrap();
        Some(p)
    };
    let at = |context: usize| ReportInputs {
        context,
        ..ReportInputs::default()
    };
    let long = format!(
        "{{\"prompt\":\"Q:\",\"chosen\":\"{}\",\"rejected\":\" no\"}}\n",
        " yes".repeat(300)
    );
    // (what to evaluate, what the error must say)
    let cases: Vec<(ReportInputs, Vec<String>)> = vec![
        (
            ReportInputs {
                text: Some(d.join("missing.txt")),
                ..at(64)
            },
            vec![format!("{}: ", d.join("missing.txt").display())],
        ),
        (
            ReportInputs {
                text: file("empty.txt", ""),
                ..at(64)
            },
            vec!["empty.txt: ".into(), "a perplexity needs at least 2".into()],
        ),
        (
            ReportInputs {
                text: Some(root().join("datasets/tiny/stories-en.txt")),
                ..at(4096)
            },
            vec![
                "invalid config `--context`".into(),
                "4096 is outside 2 to 128, the model's positions".into(),
            ],
        ),
        (
            ReportInputs {
                prompts: file("p.jsonl", "{\"prompt\":\"1+1=\",\"answer\":\" \"}\n"),
                ..at(64)
            },
            vec!["p.jsonl:1: field `answer` is empty".into()],
        ),
        (
            ReportInputs {
                pairs: file(
                    "pairs.jsonl",
                    "{\"prompt\":\"Q:\",\"chosen\":\" a\",\"rejected\":\" a\"}\n",
                ),
                ..at(64)
            },
            vec!["pairs.jsonl:1: chosen and rejected are the same text".into()],
        ),
        (
            ReportInputs {
                pairs: file("long.jsonl", &long),
                ..at(64)
            },
            vec!["long.jsonl: no pair fits the model's 128 positions (1 dropped)".into()],
        ),
        (
            ReportInputs {
                qa: file("qa.jsonl", "{\"context\":\"c\",\"question\":\"q\"}\n"),
                ..at(64)
            },
            vec!["qa.jsonl:1".into(), "missing field `answer`".into()],
        ),
    ];
    for (inputs, want) in cases {
        let e = report(&model, &model, &tok, &inputs, &device)
            .unwrap_err()
            .to_string();
        assert!(!e.contains('\n'), "{e}");
        for w in want {
            assert!(e.contains(&w), "`{w}` not in: {e}");
        }
    }
    // A tokenizer with ids past a model's embedding is refused naming the model's flag.
    let mut small = model.config().clone();
    small.vocab_size = 8;
    let small = DecoderLm::init(&small, &device, 1);
    let text = ReportInputs {
        text: Some(root().join("datasets/tiny/stories-en.txt")),
        ..at(64)
    };
    let e = report(&model, &small, &tok, &text, &device)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("invalid config `--after`")
            && e.contains("but the model embeds 8: not this model's tokenizer"),
        "{e}"
    );
    // Both models are scored with one tokenizer: the two folders' must be the same file.
    let other = d.join("other");
    std::fs::create_dir_all(&other).unwrap();
    for f in std::fs::read_dir(&base).unwrap() {
        let f = f.unwrap().path();
        std::fs::copy(&f, other.join(f.file_name().unwrap())).unwrap();
    }
    std::fs::copy(
        root().join("fixtures/tokenize/char-en/tokenizer.json"),
        other.join("tokenizer.json"),
    )
    .unwrap();
    assert!(report_tokenizer(&base, &base, None).is_ok());
    let e = report_tokenizer(&base, &other, None)
        .map(|_| ())
        .unwrap_err()
        .to_string();
    assert!(
        e.starts_with(&format!(
            "{}: differs from {}:",
            base.join("tokenizer.json").display(),
            other.join("tokenizer.json").display()
        )),
        "{e}"
    );
    let given = base.join("tokenizer.json");
    assert!(report_tokenizer(&base, &other, Some(given.as_path())).is_ok());
    let e = report_tokenizer(&d.join("nope"), &other, None)
        .map(|_| ())
        .unwrap_err()
        .to_string();
    assert!(e.ends_with("nope: no such model folder"), "{e}");
}

/// `dpo.reference`: the reference log-probs come from another model folder. Against the
/// initial policy every reward is 0 before training (the first loss is log 2); against
/// another model they are not. `dpo_eval` of the trained policy against the same reference
/// gives what the run logged at its last evaluation.
#[test]
fn dpo_reference_replaces_the_initial_policy_and_dpo_eval_matches_the_run() {
    let _rng = serial();
    use manabi_align::dpo::{EvalOptions, dpo_eval};
    let tmp = tempfile::tempdir().unwrap();
    let base = tiny_base(tmp.path());
    let other = tiny_model(tmp.path(), "other", 77, 512, Some("bpe-en"));
    let device = manabi_model::DeviceChoice::from_env().unwrap();
    let plain = test_device();
    // Eight held-out pairs: two validation batches of four cover each once.
    let val = tmp.path().join("val.jsonl");
    let lines: Vec<String> =
        std::fs::read_to_string(root().join("datasets/pref/pref-en.val.jsonl"))
            .unwrap()
            .lines()
            .take(8)
            .map(String::from)
            .collect();
    std::fs::write(&val, lines.join("\n") + "\n").unwrap();
    let options = |model: &Path, reference: &Path| EvalOptions {
        model: model.to_path_buf(),
        tokenizer: None,
        data: vec![val.clone()],
        settings: DpoSettings {
            reference: Some(reference.to_path_buf()),
            ..DpoSettings::default()
        },
        batch_size: 4,
        max_length: 96,
    };

    // Before training: the policy against itself, then against another model.
    let same = dpo_eval(&options(&base, &base), &plain).unwrap();
    assert_eq!(same.pairs, 8);
    for k in ["rewards/chosen", "rewards/rejected", "rewards/margins"] {
        assert!(same.metrics[k].abs() < 1e-6, "{k} {}", same.metrics[k]);
    }
    close("loss", same.loss, std::f64::consts::LN_2, 1e-6);
    let apart = dpo_eval(&options(&base, &other), &plain).unwrap();
    for k in ["rewards/chosen", "rewards/rejected", "rewards/margins"] {
        assert!(apart.metrics[k].abs() > 1e-6, "{k} {}", apart.metrics[k]);
    }
    let chosen = same.metrics["logps/chosen"];
    close("logps/chosen", apart.metrics["logps/chosen"], chosen, 1e-7);

    // Training against `other`: the first loss is not log 2; the default's is.
    let text = recipe(tmp.path(), &base, "r")
        .replace(
            &root()
                .join("datasets/pref/pref-en.val.jsonl")
                .display()
                .to_string(),
            &val.display().to_string(),
        )
        .replace(
            "[train]",
            &format!("[dpo]\nreference = \"{}\"\n[train]", other.display()),
        );
    let sets = ["train.steps=4".to_string(), "train.eval_batches=2".into()];
    let cfg = manabi_align::DpoConfig::parse(&text, &sets).unwrap();
    assert_eq!(cfg.dpo.reference.as_deref(), Some(other.as_path()));
    let run = manabi_align::dpo(&cfg, device, false).unwrap();
    let first = run.run.losses[0].1;
    assert!((first - std::f64::consts::LN_2).abs() > 1e-5, "{first}");

    // The trained policy against the same reference, without training: the run's last
    // evaluation (LoRA merged here, unmerged there: float rounding only).
    let ckpt = run.run.checkpoint.clone().unwrap();
    let got = dpo_eval(&options(&ckpt, &other), &plain).unwrap();
    for (k, v) in &got.metrics {
        close(k, *v, run.run.eval_metrics[&format!("eval/{k}")], 1e-4);
    }
    assert_eq!(got.metrics.len(), 6);
    close("loss", got.loss, run.run.evals.last().unwrap().1, 1e-4);
}

/// A reference of another vocabulary is refused in one line naming its file, in the
/// recipe and in `dpo eval`; SimPO takes no reference.
#[test]
fn a_reference_with_another_vocabulary_is_refused_in_one_line() {
    let _rng = serial();
    use manabi_align::dpo::load_reference;
    let tmp = tempfile::tempdir().unwrap();
    let base = tiny_base(tmp.path());
    let plain = test_device();
    let tok = TextTokenizer::load(base.join("tokenizer.json")).unwrap();
    // Its tokenizer.json has 67 tokens, the policy's 512.
    let chars = tiny_model(tmp.path(), "chars", 5, 512, Some("char-en"));
    let e = load_reference(&chars, &tok, 512, &plain)
        .map(|_| ())
        .unwrap_err()
        .to_string();
    let file = chars.join("tokenizer.json").display().to_string();
    assert!(
        e.starts_with(&file) && e.contains("67 tokens") && e.contains("512") && !e.contains('\n'),
        "{e}"
    );
    // No tokenizer.json: its embedding must have the policy's rows.
    let wide = tiny_model(tmp.path(), "wide", 5, 600, None);
    let e = load_reference(&wide, &tok, 512, &plain)
        .map(|_| ())
        .unwrap_err()
        .to_string();
    assert!(
        e.starts_with(&wide.display().to_string()) && e.contains("600"),
        "{e}"
    );
    let e = load_reference(&tmp.path().join("nope"), &tok, 512, &plain)
        .map(|_| ())
        .unwrap_err()
        .to_string();
    assert!(e.contains("nope: no such model folder"), "{e}");
    // The same tokenizer: accepted.
    assert!(load_reference(&base, &tok, 512, &plain).is_ok());

    // Through the recipe.
    let text = recipe(tmp.path(), &base, "v").replace(
        "[train]",
        &format!("[dpo]\nreference = \"{}\"\n[train]", chars.display()),
    );
    let cfg = manabi_align::DpoConfig::parse(&text, &[]).unwrap();
    let device = manabi_model::DeviceChoice::from_env().unwrap();
    let e = manabi_align::dpo(&cfg, device, false)
        .unwrap_err()
        .to_string();
    assert!(e.starts_with(&file) && !e.contains('\n'), "{e}");
    let e = manabi_align::DpoConfig::parse(&text, &["dpo.loss_type=\"simpo\"".into()])
        .unwrap_err()
        .to_string();
    assert!(e.contains("dpo.reference") && e.contains("simpo"), "{e}");
}

/// With a Llama-style tokenizer (BOS from its post-processor; EOS too with
/// `add_eos_token`) the pairs are the ids TRL 1.16's DPOTrainer prepares
/// (fixtures/tokenize/hf-llama-*/trl.json, scripts/tokenizer_config_fixtures.py): BOS
/// once, at the start of the prompt; EOS the tokenizer's `eos_token`, not appended to a
/// completion that ends with its text. A reward model reads prompt + completion as one
/// sequence: the same ids, joined.
#[test]
fn tokenisation_with_a_bos_adding_tokenizer_matches_trl() {
    for name in ["hf-llama-bos", "hf-llama-add-eos"] {
        let dir = root().join("fixtures/tokenize").join(name);
        let tok = TextTokenizer::load(&dir).unwrap();
        let f: Value =
            serde_json::from_str(&std::fs::read_to_string(dir.join("trl.json")).unwrap()).unwrap();
        let eos = manabi_finetune::sft::Specials::of(&tok).unwrap().eos;
        assert_eq!(eos as u64, f["eos"].as_u64().unwrap(), "{name}");
        for want in f["dpo"].as_array().unwrap() {
            let line = &want["line"];
            let pairs = manabi_align::pref::parse(line).unwrap();
            let (got, cut, dropped) = tokenize(&pairs, &tok, eos, 128, None).unwrap();
            assert_eq!((got.len(), cut, dropped), (1, 0, 0), "{line}");
            let g = &got[0];
            assert_eq!(g.prompt, ids(&want["prompt_ids"]), "{name}: {line}");
            assert_eq!(g.chosen, ids(&want["chosen_ids"]), "{name}: {line}");
            assert_eq!(g.rejected, ids(&want["rejected_ids"]), "{name}: {line}");
            let p = &pairs[0];
            let joined: Vec<u32> = g.prompt.iter().chain(&g.chosen).copied().collect();
            assert_eq!(
                manabi_align::pref::joint_ids(&tok, &p.prompt, &p.chosen, eos).unwrap(),
                joined,
                "{name}: {line}"
            );
            // Cut to fit, the prompt keeps its BOS.
            let longest = g.chosen.len().max(g.rejected.len());
            let (short, cut, _) = tokenize(&pairs, &tok, eos, longest + 3, None).unwrap();
            assert_eq!(cut, 1, "{line}");
            assert_eq!(short[0].prompt[0], tok.bos_id().unwrap(), "{line}");
            assert_eq!(
                short[0].prompt[1..],
                g.prompt[g.prompt.len() - 2..],
                "{line}"
            );
        }
    }
}
