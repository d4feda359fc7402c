//! `manabi task`: trains (or resumes) the model of a task recipe — by `task.kind`, NER,
//! SimCSE, the bi-encoder STS task, or a sequence task (classification, NLI,
//! cross-encoder STS) — then evaluates its last checkpoint on the validation and test
//! files.

use manabi_objectives::Resume;

use manabi_finetune::error::{FinetuneError, Result};
use manabi_finetune::head::HeadSpec;
use manabi_finetune::setup::Setup;
use manabi_model::{BertForSequenceClassification, DecoderClassifier, DeviceChoice, Family};

use crate::body::{Framing, bert_classifier, body_family, load_seq_classifier};
use crate::classify::{Encoded, SeqTask, encode, evaluate_rows, majority_class};
use crate::data::{Example, TaskKind, class_counts, label_set, read_examples};
use crate::report::TaskReport;
use crate::settings::TaskConfig;
use crate::setup::TaskSetup;

/// Trains (or resumes) a task model, then evaluates the last checkpoint on the
/// validation and test files and writes `predictions-<split>.jsonl` into the run folder.
pub fn train_task(
    cfg: &TaskConfig,
    device_choice: DeviceChoice,
    resume: impl Into<Resume>,
) -> Result<TaskReport> {
    match cfg.task.kind {
        TaskKind::Ner => return crate::ner::train_ner(cfg, device_choice, resume),
        TaskKind::Simcse => return crate::simcse::train_simcse(cfg, device_choice, resume),
        TaskKind::Sts if cfg.task.encoder == crate::pooling::Encoder::Bi => {
            return crate::pairs::train_bi_sts(cfg, device_choice, resume);
        }
        _ => {}
    }
    cfg.model.f32_only("manabi task")?;
    let mut run = Setup::new(&cfg.run, &cfg.train, &cfg.model, device_choice)?;
    let (tokenizer, specials) = (&run.tokenizer, run.specials);
    let family = body_family(&cfg.model.path)?;
    let framing = Framing::of(family, tokenizer, specials.eos)?;
    let kind = cfg.task.kind;
    let train_ex = read_examples(&cfg.data.train, kind, &cfg.task.fields, true)?;
    let val_ex = read_examples(&cfg.data.val, kind, &cfg.task.fields, true)?;
    let test_ex = if cfg.data.test.is_empty() {
        Vec::new()
    } else {
        read_examples(&cfg.data.test, kind, &cfg.task.fields, true)?
    };
    let names = if kind.regression() {
        Vec::new()
    } else {
        label_set(&cfg.task.labels, &train_ex)
    };
    if !kind.regression() {
        manabi_finetune::head::check_labels(&names, "task.labels")?;
    }
    if !kind.regression() && names.len() < 2 {
        let found = match names.first() {
            Some(one) => format!("only \"{one}\""),
            None => "none".into(),
        };
        let source = if cfg.task.labels.is_empty() {
            "the training data has"
        } else {
            "task.labels lists"
        };
        return Err(FinetuneError::config(
            "task.labels",
            format!("a classifier needs at least two classes; {source} {found}"),
        ));
    }
    let mut settings = cfg.task.clone();
    settings.labels = names.clone();
    let enc = |ex: &[Example]| encode(ex, &settings, &names, tokenizer, framing);
    let (train, val, test) = (enc(&train_ex)?, enc(&val_ex)?, enc(&test_ex)?);
    let counts = class_counts(
        &train.rows.iter().map(|r| r.class).collect::<Vec<_>>(),
        names.len(),
    );
    let label_counts: Vec<(String, usize)> = names.iter().cloned().zip(counts).collect();
    let outputs_n = if kind.regression() { 1 } else { names.len() };
    let head = HeadSpec::score(outputs_n, names.clone());
    let (device, out, specials) = (run.device.clone(), cfg.run.out.clone(), run.specials);
    fn task<M>(cfg: &TaskConfig, train: Vec<Encoded>, val: Vec<Encoded>, pad: u32) -> SeqTask<M> {
        SeqTask {
            train,
            val,
            regression: cfg.task.kind.regression(),
            batch_size: cfg.train.batch_size,
            pad,
            seed: cfg.run.seed,
            body: std::marker::PhantomData,
        }
    }
    let (rows, val_rows) = (train.rows, val.rows.clone());
    let (run, trainable) = if family == Family::Bert {
        let (model, trainable) = run.bert_model(
            cfg,
            head,
            &settings,
            bert_classifier,
            crate::body::keep_bert_classifier,
        )?;
        let task = task::<BertForSequenceClassification>(cfg, rows, val_rows, specials.pad);
        (run.trainer.fit(&task, model, resume)?, trainable)
    } else {
        let (model, trainable) = run.model(cfg, head, &settings)?;
        let task = task::<DecoderClassifier>(cfg, rows, val_rows, specials.pad);
        (run.trainer.fit(&task, model, resume)?, trainable)
    };
    let majority = majority_class(&label_counts);
    let mut splits = Vec::new();
    if let Some(dir) = &run.checkpoint {
        let (m, _) = load_seq_classifier(dir, &device)?;
        let m = m.valid();
        for (name, ex, set) in [("val", &val_ex, &val), ("test", &test_ex, &test)] {
            if ex.is_empty() {
                continue;
            }
            let path = out.join(format!("predictions-{name}.jsonl"));
            splits.push(evaluate_rows(
                &m,
                &settings,
                ex,
                &set.rows,
                majority,
                specials.pad,
                cfg.train.batch_size,
                &path,
                &device,
            )?);
            if let Some(s) = splits.last_mut() {
                s.name = name.into();
            }
        }
    }
    Ok(TaskReport {
        run,
        label_counts,
        cut: train.cut + val.cut + test.cut,
        trainable_params: trainable,
        splits,
    })
}
