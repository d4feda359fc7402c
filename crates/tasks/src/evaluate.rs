//! Evaluation and prediction with a sequence-task checkpoint (`manabi task --model`):
//! metrics against gold labels when the files carry them, and one prediction per line
//! next to the example's text fields and gold label.

use std::path::{Path, PathBuf};

use burn::prelude::*;
use manabi_finetune::error::{FinetuneError, Result};
use manabi_finetune::metrics;
use manabi_finetune::sft::Specials;
use manabi_tokenize::TextTokenizer;

use crate::batch::SeqBatch;
use crate::body::{Framing, SeqModel, load_seq_classifier};
use crate::classify::{Encoded, encode, predict, score};
use crate::data::{Example, Label, TaskKind, read_examples};
use crate::report::SplitReport;
use crate::settings::{TASK_FILE, TaskSettings};

#[allow(clippy::too_many_arguments)]
pub(crate) fn evaluate_rows(
    model: &SeqModel,
    settings: &TaskSettings,
    examples: &[Example],
    rows: &[Encoded],
    majority: Option<usize>,
    pad: u32,
    batch_size: usize,
    path: &Path,
    device: &Device,
) -> Result<SplitReport> {
    let out = predict(
        |b: &SeqBatch| model.scores(b, device),
        rows,
        batch_size,
        pad,
    )?;
    write_predictions(path, settings, examples, &out)?;
    let has_gold = rows.iter().any(|r| r.class.is_some() || r.score.is_some());
    let majority_baseline = majority
        .filter(|_| has_gold && !settings.kind.regression())
        .map(|m| {
            let gold: Vec<usize> = rows.iter().filter_map(|r| r.class).collect();
            metrics::accuracy(&gold, &vec![m; gold.len()])
        });
    Ok(SplitReport {
        name: path.display().to_string(),
        examples: rows.len(),
        metrics: if has_gold {
            score(rows, &out, settings.kind.regression())
        } else {
            Vec::new()
        },
        majority_baseline,
        predictions: path.to_path_buf(),
    })
}

/// One JSON line per example: its text fields, `label` (gold, when known), `pred`, and
/// `probs` (classes) or nothing more (scores).
fn write_predictions(
    path: &Path,
    settings: &TaskSettings,
    examples: &[Example],
    outputs: &[Vec<f64>],
) -> Result<()> {
    use std::io::Write;
    let file = std::fs::File::create(path).map_err(|e| FinetuneError::io(path, e))?;
    let mut w = std::io::BufWriter::new(file);
    for (e, o) in examples.iter().zip(outputs) {
        let mut obj = serde_json::Map::new();
        for (f, t) in settings.kind.text_fields().iter().zip(&e.texts) {
            obj.insert((*f).into(), t.clone().into());
        }
        match &e.label {
            Some(Label::Class(c)) => obj.insert("label".into(), c.clone().into()),
            Some(Label::Score(x)) => obj.insert("label".into(), (*x).into()),
            None => None,
        };
        if settings.kind.regression() {
            obj.insert("pred".into(), o[0].into());
        } else {
            let max = o.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            let z: f64 = o.iter().map(|x| (x - max).exp()).sum();
            let probs: Vec<f64> = o.iter().map(|x| (x - max).exp() / z).collect();
            let pred = &settings.labels[manabi_model::argmax_first(o)];
            obj.insert("pred".into(), pred.clone().into());
            obj.insert("probs".into(), probs.into());
        }
        writeln!(w, "{}", serde_json::Value::Object(obj))
            .map_err(|e| FinetuneError::io(path, e))?;
    }
    w.flush().map_err(|e| FinetuneError::io(path, e))
}

/// The paths of `files`, comma-separated.
fn joined(files: &[PathBuf]) -> String {
    files
        .iter()
        .map(|f| f.display().to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

/// Evaluates (when `files` carry labels) and predicts with a task checkpoint: reads its
/// `task.toml`, `head.toml` and `tokenizer.json`, writes predictions to `out`.
pub fn evaluate_task(
    model_dir: &Path,
    files: &[PathBuf],
    out: &Path,
    batch_size: usize,
    device: &Device,
) -> Result<SplitReport> {
    let model_dir = &manabi_model::locate(model_dir)?.dir;
    let spec = model_dir.join(TASK_FILE);
    let text = std::fs::read_to_string(&spec).map_err(|e| {
        FinetuneError::io(
            &spec,
            format!("{e} (is this a checkpoint of `manabi task`?)"),
        )
    })?;
    let settings: TaskSettings = toml::from_str(&text)
        .map_err(|e| FinetuneError::config(spec.display().to_string(), e.message()))?;
    manabi_finetune::head::check_labels(&settings.labels, &format!("{}: labels", spec.display()))?;
    let tokenizer = TextTokenizer::load(model_dir.join("tokenizer.json"))?;
    let specials = Specials::of(&tokenizer)?;
    if settings.kind == TaskKind::Simcse || settings.encoder == crate::pooling::Encoder::Bi {
        let mut r = crate::pairs::evaluate_pairs(
            model_dir, &settings, &tokenizer, files, out, batch_size, device,
        )?;
        r.name = joined(files);
        return Ok(r);
    }
    if settings.kind == TaskKind::Ner {
        let (model, head) = crate::body::load_tagger(model_dir, device)?;
        let mut r = crate::ner::evaluate_ner(
            &model.valid(),
            &settings,
            &head.names,
            &tokenizer,
            files,
            (specials.pad, specials.eos),
            batch_size,
            out,
            device,
        )?;
        r.name = joined(files);
        return Ok(r);
    }
    let (model, head) = load_seq_classifier(model_dir, device)?;
    let framing = Framing::of(model.family(), &tokenizer, specials.eos)?;
    let examples = read_examples(files, settings.kind, &settings.fields, false)?;
    let set = encode(&examples, &settings, &head.names, &tokenizer, framing)?;
    let mut r = evaluate_rows(
        &model.valid(),
        &settings,
        &examples,
        &set.rows,
        None,
        specials.pad,
        batch_size,
        out,
        device,
    )?;
    r.name = joined(files);
    Ok(r)
}
