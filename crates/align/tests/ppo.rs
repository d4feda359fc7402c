//! RLHF with PPO: GAE, whitening and the adaptive KL controller against hand-computed
//! values; a run on a tiny policy and reward model that logs TRL's metrics, starts each
//! rollout at ratio 1, adapts β, resumes bit for bit from the middle of a rollout and
//! leaves a policy folder that loads as a decoder; config, reward- and value-model errors.

use std::path::{Path, PathBuf};

use manabi_align::ppo::{adapt_kl, gae, whiten};
use manabi_align::{PpoConfig, ppo};
use manabi_model::{DecoderClassifier, DecoderLm, device::test_device};
use manabi_objectives::Recipe;
use serde_json::Value;

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

fn close(got: f64, want: f64) {
    assert!((got - want).abs() < 1e-12, "{got} vs {want}");
}

#[test]
fn gae_follows_the_recursion_and_ends_at_a_terminal_state() {
    let _rng = serial();
    // δ_t = r_t + γ V_{t+1} − V_t (V after the last token = 0), A_t = δ_t + γλ A_{t+1}.
    let (adv, ret) = gae(&[0.0, 0.0, 1.0], &[0.5, 0.2, 0.1], 1.0, 0.95);
    let a2 = 1.0 - 0.1;
    let a1 = (0.1 - 0.2) + 0.95 * a2;
    let a0 = (0.2 - 0.5) + 0.95 * a1;
    for (g, w) in adv.iter().zip([a0, a1, a2]) {
        close(*g, w);
    }
    for (g, w) in ret.iter().zip([a0 + 0.5, a1 + 0.2, a2 + 0.1]) {
        close(*g, w);
    }
    // λ = 1, γ = 1: returns are the rewards still to come, whatever the values.
    let (_, ret) = gae(&[0.5, -1.0, 2.0], &[3.0, -4.0, 7.0], 1.0, 1.0);
    for (g, w) in ret.iter().zip([1.5, 1.0, 2.0]) {
        assert!((g - w).abs() < 1e-12, "{g} vs {w}");
    }
    // λ = 0: one-step TD errors.
    let (adv, _) = gae(&[1.0, 2.0], &[0.5, 0.25], 0.9, 0.0);
    close(adv[0], 1.0 + 0.9 * 0.25 - 0.5);
    close(adv[1], 2.0 - 0.25);
}

#[test]
fn whitening_and_the_adaptive_kl_controller() {
    let _rng = serial();
    let mut x = vec![1.0, 2.0, 3.0, 6.0];
    whiten(&mut x, true);
    let mean = x.iter().sum::<f64>() / 4.0;
    let var = x.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / 3.0;
    assert!(mean.abs() < 1e-12 && (var - 1.0).abs() < 1e-6, "{x:?}");
    let mut y = vec![1.0, 2.0, 3.0, 6.0];
    whiten(&mut y, false);
    assert!((y.iter().sum::<f64>() / 4.0 - 3.0).abs() < 1e-12, "{y:?}");
    // KL above target raises β, below lowers it; the error is clipped to ±0.2.
    close(
        adapt_kl(0.1, 12.0, 6.0, 100, 1000.0),
        0.1 * (1.0 + 0.2 * 0.1),
    );
    close(
        adapt_kl(0.1, 3.0, 6.0, 100, 1000.0),
        0.1 * (1.0 - 0.2 * 0.1),
    );
    close(
        adapt_kl(0.1, 6.6, 6.0, 100, 1000.0),
        0.1 * (1.0 + 0.1 * 0.1),
    );
}

fn tiny(dir: &Path) -> (PathBuf, PathBuf) {
    let cfg: manabi_model::ModelConfig = toml::from_str(
        "family = \"llama\"\nvocab_size = 512\nmax_positions = 128\nd_model = 32\nn_layers = 2\nn_heads = 4\nn_kv_heads = 2\nd_ff = 64\npositions = \"rope\"\nnorm = \"rmsnorm\"\nactivation = \"swiglu\"\ntie_embeddings = true",
    )
    .unwrap();
    let tok = root().join("fixtures/tokenize/bpe-en/tokenizer.json");
    let base = dir.join("base");
    manabi_model::save_native(&DecoderLm::init(&cfg, &test_device(), 3), &base).unwrap();
    std::fs::copy(&tok, base.join("tokenizer.json")).unwrap();
    // A random reward model in the Hugging Face layout, with the same tokenizer.
    let rm = dir.join("rm");
    manabi_model::init::seed(5);
    DecoderClassifier::new(&cfg, 1, &test_device())
        .export_hf(&rm, Some(&tok), Some(0), &[])
        .unwrap();
    (base, rm)
}

fn recipe(dir: &Path, base: &Path, rm: &Path, out: &str) -> String {
    let pref = root().join("datasets/pref");
    format!(
        r#"
[run]
out = "{out}"
seed = 11
[model]
path = "{base}"
[data]
train = ["{train}"]
val = ["{val}"]
eval_prompts = 4
[peft]
method = "lora"
r = 4
targets = ["q_proj", "v_proj"]
[ppo]
reward_model = "{rm}"
max_new_tokens = 4
temperature = 1.0
num_ppo_epochs = 2
num_mini_batches = 2
kl_coef = 0.1
target_kl = 0.001
kl_horizon = 10.0
missing_eos_penalty = 0.5
[train]
steps = 12
batch_size = 2
grad_accum = 2
lr = 1e-2
warmup_steps = 0
eval_every = 4
eval_batches = 1
log_every = 1
checkpoint_every = 3
keep_last = 3
progress = false
"#,
        out = dir.join(out).display(),
        base = base.display(),
        rm = rm.display(),
        train = pref.join("rl-facts-en.train.jsonl").display(),
        val = pref.join("rl-facts-en.val.jsonl").display(),
    )
}

fn metrics(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn a_ppo_run_logs_trl_metrics_adapts_beta_and_resumes_mid_rollout_bit_for_bit() {
    let _rng = serial();
    let tmp = tempfile::tempdir().unwrap();
    let (base, rm) = tiny(tmp.path());
    let device = manabi_model::DeviceChoice::from_env().unwrap();
    let text = |out: &str| recipe(tmp.path(), &base, &rm, out);
    let full = ppo(&PpoConfig::parse(&text("p"), &[]).unwrap(), device, false).unwrap();
    // 8 responses per rollout (2 × 2 × 2), 4 steps per rollout (2 epochs × 2 minibatches).
    assert_eq!(full.rollout_size, 8);
    assert_eq!(full.run.losses.len(), 12);
    let m = metrics(&tmp.path().join("p/metrics.jsonl"));
    for k in [
        "objective/kl",
        "objective/entropy",
        "objective/non_score_reward",
        "objective/rlhf_reward",
        "objective/scores",
        "objective/kl_coef",
        "policy/clipfrac_avg",
        "policy/approxkl_avg",
        "policy/entropy_avg",
        "loss/policy_avg",
        "loss/value_avg",
        "val/clipfrac_avg",
        "val/ratio",
        "val/num_eos_tokens",
        "completions/mean_length",
    ] {
        assert!(m[0].get(k).is_some(), "{k} missing: {}", m[0]);
    }
    assert!(m[3].get("eval/score").is_some() && m[3].get("eval/kl").is_some());
    // The first minibatch of a rollout is scored by the policy that sampled it.
    let ratio = m[0]["val/ratio"].as_f64().unwrap();
    assert!((ratio - 1.0).abs() < 1e-5, "{ratio}");
    assert_eq!(m[0]["policy/clipfrac_avg"].as_f64(), Some(0.0));
    // The first rollout is the reference itself: KL 0, below the 0.001 target, so β falls
    // by the clipped 20 % × 8 responses / horizon 10. Then the policy has moved, the KL is
    // above the target, and β rises for the third rollout.
    let kl = |i: usize| m[i]["objective/kl"].as_f64().unwrap();
    let beta = |i: usize| m[i]["objective/kl_coef"].as_f64().unwrap();
    assert_eq!(kl(0), 0.0);
    assert_eq!(beta(0), 0.1);
    close(beta(4), 0.1 * (1.0 - 0.2 * 0.8));
    assert!(kl(4) > 0.001, "{}", kl(4));
    close(beta(8), beta(4) * (1.0 + 0.2 * 0.8));
    // The value model learns: its loss is positive and finite.
    assert!(m[0]["loss/value_avg"].as_f64().unwrap() > 0.0);

    // Stopped at step 3, inside the first rollout, and resumed.
    let r1 = ppo(
        &PpoConfig::parse(&text("q"), &["train.stop_after=3".into()]).unwrap(),
        device,
        false,
    )
    .unwrap();
    let r2 = ppo(&PpoConfig::parse(&text("q"), &[]).unwrap(), device, true).unwrap();
    let joined: Vec<(usize, f64)> = r1
        .run
        .losses
        .iter()
        .chain(&r2.run.losses)
        .copied()
        .collect();
    assert_eq!(joined, full.run.losses);
    assert_eq!(r2.after, full.after);
    // Resumed again from the checkpoint of step 6 (`--resume PATH`), inside the second
    // rollout, after β and the KL have moved off their first values: every logged number,
    // not only the loss, is the straight run's to the bit (floats read back from the saved
    // state are exact); only the timings differ.
    let step6 = tmp.path().join("q/checkpoints/step-0000006");
    let r3 = ppo(
        &PpoConfig::parse(&text("q"), &[]).unwrap(),
        device,
        manabi_objectives::Resume::From(step6),
    )
    .unwrap();
    assert_eq!(r3.run.losses, full.run.losses[6..]);
    let timing = ["tokens_per_s", "elapsed_s", "mfu"];
    let strip = |rows: Vec<Value>| -> Vec<Value> {
        rows.into_iter()
            .map(|mut r| {
                for k in timing {
                    r.as_object_mut().unwrap().remove(k);
                }
                r
            })
            .collect()
    };
    // (From step 4 on: the line of step 3 also holds the evaluation that ends a stopped run.)
    let from4 = |rows: Vec<Value>| -> Vec<Value> {
        rows.into_iter()
            .filter(|r| r["step"].as_u64().unwrap() >= 4)
            .collect()
    };
    let straight = from4(strip(metrics(&tmp.path().join("p/metrics.jsonl"))));
    let resumed = from4(strip(metrics(&tmp.path().join("q/metrics.jsonl"))));
    assert_eq!(resumed.len(), 9);
    assert_eq!(resumed.len(), straight.len());
    for (a, b) in resumed.iter().zip(&straight) {
        assert_eq!(
            a, b,
            "a resumed metrics line differs from the straight run's"
        );
    }

    // The policy folder is a decoder (with its LoRA spec) that generates.
    let (policy, peft) = manabi_finetune::load_decoder(&full.policy, &test_device()).unwrap();
    assert!(peft.is_some());
    let out = manabi_model::generate(
        &policy,
        &[vec![5, 6, 7]],
        &manabi_model::GenerateOptions {
            max_new_tokens: 3,
            ..Default::default()
        },
        None,
    )
    .unwrap();
    assert_eq!(out[0].len(), 3);
}

#[test]
fn ppo_settings_and_value_models_are_checked() {
    let _rng = serial();
    let tmp = tempfile::tempdir().unwrap();
    let (base, rm) = tiny(tmp.path());
    let text = recipe(tmp.path(), &base, &rm, "x");
    for (set, key) in [
        ("ppo.cliprange=1.5", "ppo.cliprange"),
        ("ppo.num_mini_batches=0", "ppo.num_mini_batches"),
        ("ppo.lam=-0.1", "ppo.lam"),
        ("ppo.target_kl=0.0", "ppo.target_kl"),
        ("ppo.kl_estimator=\"k2\"", "ppo.kl_estimator"),
    ] {
        let e = PpoConfig::parse(&text, &[set.into()])
            .unwrap_err()
            .to_string();
        assert!(e.contains(key), "{set}: {e}");
    }
    let no_rm = text.replace(&format!("reward_model = \"{}\"", rm.display()), "");
    let e = PpoConfig::parse(&no_rm, &[]).unwrap_err().to_string();
    assert!(e.contains("ppo.reward_model"), "{e}");
    // A value model must read the policy's tokens: another tokenizer is refused.
    // The reward model's weights with another tokenizer (`fixtures/tokenize/NAME`).
    let with_tokenizer = |name: &str| {
        let dir = tmp.path().join(format!("rm-{name}"));
        std::fs::create_dir_all(&dir).unwrap();
        for f in ["config.json", "model.safetensors"] {
            std::fs::copy(rm.join(f), dir.join(f)).unwrap();
        }
        let tok = root()
            .join("fixtures/tokenize")
            .join(name)
            .join("tokenizer.json");
        std::fs::copy(tok, dir.join("tokenizer.json")).unwrap();
        dir
    };
    let other = with_tokenizer("wordpiece-en");
    let cfg =
        PpoConfig::parse(&text, &[format!("ppo.value_model=\"{}\"", other.display())]).unwrap();
    let device = manabi_model::DeviceChoice::from_env().unwrap();
    let e = ppo(&cfg, device, false).unwrap_err().to_string();
    assert!(
        e.contains("ppo.value_model") && e.contains("tokenizer"),
        "{e}"
    );
    // So must the reward model unless `reward_own_tokenizer` lets it re-encode the
    // decoded text; a tokenizer with more ids than its embedding is refused either way.
    let rm_other = format!("ppo.reward_model=\"{}\"", other.display());
    let cfg = PpoConfig::parse(&text, std::slice::from_ref(&rm_other)).unwrap();
    let e = ppo(&cfg, device, false).unwrap_err().to_string();
    assert!(
        e.contains("ppo.reward_model") && e.contains("ppo.reward_own_tokenizer = true"),
        "{e}"
    );
    let wide = with_tokenizer("bpe-ja");
    let cfg = PpoConfig::parse(
        &text,
        &[
            format!("ppo.reward_model=\"{}\"", wide.display()),
            "ppo.reward_own_tokenizer=true".into(),
        ],
    )
    .unwrap();
    let e = ppo(&cfg, device, false).unwrap_err().to_string();
    assert!(
        e.contains("ppo.reward_model") && e.contains("embeds 512"),
        "{e}"
    );
    // The reward model itself (same tokenizer) is a valid value model, and a reward
    // model with another tokenizer scores the text when allowed to.
    let cfg = PpoConfig::parse(
        &text,
        &[
            rm_other,
            "ppo.reward_own_tokenizer=true".into(),
            format!("ppo.value_model=\"{}\"", rm.display()),
            "train.steps=1".into(),
            "train.eval_every=0".into(),
            "train.checkpoint_every=1".into(),
        ],
    )
    .unwrap();
    let r = ppo(&cfg, device, false).unwrap();
    assert_eq!(r.run.losses.len(), 1);
}

#[derive(Default)]
struct Ids(Vec<burn::module::ParamId>);

impl burn::module::ModuleVisitor for Ids {
    fn visit_float<const D: usize>(
        &mut self,
        param: &burn::module::Param<burn::prelude::Tensor<D>>,
    ) {
        self.0.push(param.id);
    }
}

#[test]
fn the_value_model_never_shares_a_parameter_with_the_policy() {
    let _rng = serial();
    use burn::module::Module;
    // The optimizer keys its state and the gradients by parameter id: a value body cloned
    // from the policy must not share ids with it, or the value loss would move the policy.
    let tmp = tempfile::tempdir().unwrap();
    let (base, _) = tiny(tmp.path());
    let policy = manabi_model::load_model(&base, &test_device()).unwrap();
    let value = DecoderClassifier::from_lm(policy.clone(), 1);
    let pv = manabi_align::ppo::PolicyValue::new(policy, value);
    let (mut p, mut v) = (Ids::default(), Ids::default());
    pv.policy.visit(&mut p);
    pv.value.visit(&mut v);
    assert!(!p.0.is_empty() && !v.0.is_empty());
    assert!(v.0.iter().all(|id| !p.0.contains(id)));
    // The values are the policy's body all the same.
    assert_eq!(
        pv.value.lm.embed_tokens.weight.val().into_data(),
        pv.policy.embed_tokens.weight.val().into_data()
    );
}
