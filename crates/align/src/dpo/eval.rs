//! A policy against any reference: the reference model of `dpo.reference`
//! ([`load_reference`]), and `manabi dpo eval` ([`dpo_eval`]): TRL's evaluation metrics
//! (`rewards/*`, `logps/*` and the loss) of a trained policy on preference files, without
//! training — the numbers the Trainer logs as `eval/…` when its validation batches cover
//! the same pairs once, computed by the same [`DpoTask::loss`].

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use burn::prelude::*;
use manabi_finetune::sft::Specials;
use manabi_finetune::{load_decoder, merged};
use manabi_model::DecoderLm;
use manabi_objectives::Task;
use manabi_tokenize::TextTokenizer;
use serde::Serialize;

use super::{DpoSettings, DpoTask, pair_batch, reference_logps};
use crate::error::{AlignError, Result};
use crate::pref::{TokenPair, read_pairs, tokenize};

/// The reference model in `path` — a manabi checkpoint, a run folder (its newest
/// complete checkpoint) or a Hugging Face folder, found by [`manabi_model::locate`];
/// adapters merged — on `device`. It must share the policy's vocabulary: a
/// `tokenizer.json` beside it must hold as many tokens as the policy's `tokenizer`
/// (without one, its embedding must have the policy's `policy_vocab` rows), and it must
/// embed every token of `tokenizer`. Otherwise one line naming the file.
pub fn load_reference(
    path: &Path,
    tokenizer: &TextTokenizer,
    policy_vocab: usize,
    device: &Device,
) -> Result<DecoderLm> {
    let found = manabi_model::locate(path)?;
    if !found.is_decoder() {
        return Err(AlignError::io(
            &found.dir,
            "the reference must be a decoder (GPT-2 or LLaMA layout)",
        ));
    }
    let dir = found.dir;
    let (model, adapted) = load_decoder(&dir, device)?;
    let model = if adapted.is_some() {
        merged(model)
    } else {
        model
    };
    let embeds = model.config().vocab_size;
    let ours = tokenizer.vocab_size();
    let own = dir.join("tokenizer.json");
    if own.is_file() {
        let theirs = TextTokenizer::load(&own)?.vocab_size();
        if theirs != ours {
            return Err(AlignError::io(
                &own,
                format!(
                    "the reference's tokenizer has {theirs} tokens, the policy's ({}) {ours}: \
                     the reference must share the policy's vocabulary",
                    tokenizer.path().display()
                ),
            ));
        }
    } else if embeds != policy_vocab {
        return Err(AlignError::io(
            &dir,
            format!(
                "the reference embeds {embeds} tokens, the policy {policy_vocab}: \
                 the reference must share the policy's vocabulary"
            ),
        ));
    }
    if ours > embeds {
        return Err(AlignError::io(
            &dir,
            format!(
                "the reference embeds {embeds} tokens but the policy's tokenizer ({}) has \
                 {ours}: the reference must share the policy's vocabulary",
                tokenizer.path().display()
            ),
        ));
    }
    Ok(model)
}

/// What [`dpo_eval`] measured: TRL's `DPOTrainer.evaluate()` numbers (there prefixed
/// `eval_`), means over the pairs.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DpoEval {
    /// Pairs scored.
    pub pairs: usize,
    /// Prompts cut from the left to fit `max_length`.
    pub cut: usize,
    /// Pairs dropped (a completion alone too long, or no prompt token left).
    pub dropped: usize,
    /// Mean loss of the loss type over the pairs.
    pub loss: f64,
    /// `rewards/chosen`, `rewards/rejected`, `rewards/accuracies`, `rewards/margins`,
    /// `logps/chosen`, `logps/rejected`.
    #[serde(flatten)]
    pub metrics: BTreeMap<String, f64>,
}

/// What `manabi dpo eval` takes.
#[derive(Debug, Clone)]
pub struct EvalOptions {
    /// The trained policy: any decoder folder (manabi, run folder or Hugging Face;
    /// adapters merged).
    pub model: PathBuf,
    /// Its `tokenizer.json` (default: the one in the policy's folder).
    pub tokenizer: Option<PathBuf>,
    /// Preference files, in any layout [`read_pairs`] reads.
    pub data: Vec<PathBuf>,
    /// β, the loss type, label smoothing, SimPO's γ, and `reference`: the model to
    /// compare with (required unless the loss is reference-free `simpo`).
    pub settings: DpoSettings,
    /// Pairs per forward pass.
    pub batch_size: usize,
    /// Longest prompt + completion, in tokens (prompts are cut from the left), as
    /// `data.max_length` of the recipe.
    pub max_length: usize,
}

/// Mean loss and TRL's metrics (means over the pairs) of `policy` on `pairs`, given their
/// reference log-probs (chosen, rejected; zeros for SimPO), `batch_size` pairs per
/// batch in order, each through [`DpoTask::loss`] as the Trainer's evaluation does.
pub fn evaluate_pairs(
    policy: &DecoderLm,
    pairs: &[TokenPair],
    reference: &[(f64, f64)],
    settings: &DpoSettings,
    batch_size: usize,
    pad: u32,
    device: &Device,
) -> Result<(f64, BTreeMap<String, f64>)> {
    let bs = batch_size.max(1);
    let task = DpoTask {
        train: Vec::new(),
        train_reference: Vec::new(),
        val: Vec::new(),
        val_reference: Vec::new(),
        settings: settings.clone(),
        batch_size: bs,
        pad,
        seed: 0,
    };
    let (mut loss, mut count) = (0.0, 0usize);
    let mut sums: BTreeMap<String, f64> = BTreeMap::new();
    for (chunk, refs) in pairs.chunks(bs).zip(reference.chunks(bs)) {
        let rows: Vec<&TokenPair> = chunk.iter().collect();
        let b = pair_batch(&rows, refs, pad);
        let out = task.loss(policy, &b, device)?;
        loss += out.sum.into_scalar::<f32>() as f64;
        count += DpoTask::targets(&b);
        for (k, v) in out.metrics {
            *sums.entry(k).or_insert(0.0) += v;
        }
    }
    let n = count.max(1) as f64;
    let metrics = sums.into_iter().map(|(k, v)| (k, v / n)).collect();
    Ok((loss / n, metrics))
}

/// `manabi dpo eval`: the policy `o.model` against the reference `o.settings.reference`
/// on the pairs of `o.data`, tokenised as training tokenises them, without training.
pub fn dpo_eval(o: &EvalOptions, device: &Device) -> Result<DpoEval> {
    let s = &o.settings;
    let reference = match (&s.reference, s.uses_reference()) {
        (Some(path), true) => Some(path),
        (None, true) => {
            return Err(AlignError::config(
                "reference",
                "give the reference to compare with (e.g. the checkpoint the policy started from)",
            ));
        }
        (Some(_), false) => {
            return Err(AlignError::config(
                "reference",
                "simpo is reference-free: give no reference",
            ));
        }
        (None, false) => None,
    };
    let policy_dir = manabi_model::locate(&o.model)?.dir;
    let tok_path = o
        .tokenizer
        .clone()
        .unwrap_or_else(|| policy_dir.join("tokenizer.json"));
    let tokenizer = TextTokenizer::load(&tok_path)?;
    let specials = Specials::of(&tokenizer)?;
    let (policy, adapted) = load_decoder(&policy_dir, device)?;
    let policy = if adapted.is_some() {
        merged(policy)
    } else {
        policy
    };
    let vocab = policy.config().vocab_size;
    manabi_model::open::check_tokenizer(tokenizer.vocab_size(), &tok_path, vocab)?;
    let pairs = read_pairs(&o.data)?;
    let chat = match tok_path.parent() {
        Some(dir) => manabi_finetune::sft::chat::model_template(dir)?,
        None => None,
    };
    let (pairs, cut, dropped) = tokenize(
        &pairs,
        &tokenizer,
        specials.eos,
        o.max_length,
        chat.as_ref(),
    )?;
    if pairs.is_empty() {
        return Err(AlignError::config(
            "max_length",
            format!("no pair fits in {} tokens", o.max_length),
        ));
    }
    let bs = o.batch_size.max(1);
    let refs = match reference {
        Some(path) => {
            let r = load_reference(path, &tokenizer, vocab, device)?;
            reference_logps(&r, &pairs, s, bs, specials.pad, device)
        }
        None => vec![(0.0, 0.0); pairs.len()],
    };
    let (loss, metrics) = evaluate_pairs(&policy, &pairs, &refs, s, bs, specials.pad, device)?;
    Ok(DpoEval {
        pairs: pairs.len(),
        cut,
        dropped,
        loss,
        metrics,
    })
}
