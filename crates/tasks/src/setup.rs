//! The task side of [`Setup`] ([`TaskSetup`], implemented for it): the body of a task run
//! (a decoder with adapters, or a checked BERT encoder), its head, and the spec files its
//! checkpoints carry (`head.toml`, `task.toml`, `peft.toml`).

use burn::module::Module;
use manabi_finetune::error::{FinetuneError, Result};
use manabi_finetune::head::{HEAD_FILE, HeadSpec};
use manabi_finetune::peft::{self, Method, PEFT_FILE};
use manabi_finetune::setup::Setup;
use manabi_finetune::{Model, Opened};
use manabi_model::DecoderClassifier;

use crate::settings::{TASK_FILE, TaskConfig, TaskSettings, spec_toml};

/// What a task run asks of the fine-tuning [`Setup`] beyond what every recipe does.
pub(crate) trait TaskSetup {
    /// The body of `cfg.model` on the training device (adapters merged), after seeding.
    fn body(&self, cfg: &TaskConfig) -> Result<manabi_model::DecoderLm>;

    /// Records the recipe, the tokenizer and the spec files (`head.toml` when there is a
    /// head, `task.toml`, and `peft.toml` when adapted) in the Trainer.
    fn record(
        &mut self,
        cfg: &TaskConfig,
        head: Option<&HeadSpec>,
        settings: &TaskSettings,
    ) -> Result<()>;

    /// The body with a `head` (its LM head dropped), adapted as `cfg.peft` says.
    fn model(
        &mut self,
        cfg: &TaskConfig,
        head: HeadSpec,
        settings: &TaskSettings,
    ) -> Result<(DecoderClassifier, usize)>;

    /// The BERT body of `cfg.model` with the task's head (`wrap`: body, outputs → model);
    /// every parameter trains (PEFT methods adapt decoders only). A folder that already
    /// has this task's head (the same labels, in any order) keeps it (`keep`: the model,
    /// the folder's output of each task label → the model with its outputs in the task's
    /// order, or the model back when it is not of that kind): fine-tuning continues.
    fn bert_model<M: Module>(
        &mut self,
        cfg: &TaskConfig,
        head: HeadSpec,
        settings: &TaskSettings,
        wrap: impl FnOnce(manabi_model::BertModel, usize) -> M,
        keep: impl FnOnce(Model, &[usize]) -> std::result::Result<M, Model>,
    ) -> Result<(M, usize)>;

    /// The BERT encoder of `cfg.model`, after the checks every BERT task makes: PEFT
    /// refused (it adapts decoders only), the tokenizer no larger than the model's
    /// vocabulary.
    fn bert_body(&mut self, cfg: &TaskConfig) -> Result<manabi_model::BertModel>;
}

impl TaskSetup for Setup {
    /// The body of `cfg.model` on the training device (adapters merged), after seeding.
    fn body(&self, cfg: &TaskConfig) -> Result<manabi_model::DecoderLm> {
        self.trainer.device().seed(cfg.run.seed);
        manabi_model::init::seed(cfg.run.seed);
        self.decoder(&cfg.model.path)
    }

    /// Records the recipe, the tokenizer and the spec files (`head.toml` when there is a
    /// head, `task.toml`, and `peft.toml` when adapted) in the Trainer.
    fn record(
        &mut self,
        cfg: &TaskConfig,
        head: Option<&HeadSpec>,
        settings: &TaskSettings,
    ) -> Result<()> {
        let t = &mut self.trainer;
        t.config_toml =
            toml::to_string_pretty(cfg).map_err(|e| FinetuneError::io(&cfg.run.out, e))?;
        t.tokenizer = Some(self.tok_path.clone());
        t.spec_files = head
            .map(|h| (HEAD_FILE.to_string(), h.to_toml()))
            .into_iter()
            .chain([(TASK_FILE.to_string(), spec_toml(settings))])
            .collect();
        if cfg.peft.method != Method::Full {
            t.spec_files
                .push((PEFT_FILE.to_string(), cfg.peft.to_toml()));
        }
        Ok(())
    }

    /// The body with a `head` (its LM head dropped), adapted as `cfg.peft` says.
    fn model(
        &mut self,
        cfg: &TaskConfig,
        head: HeadSpec,
        settings: &TaskSettings,
    ) -> Result<(DecoderClassifier, usize)> {
        let mut model = DecoderClassifier::from_lm(self.body(cfg)?, head.labels);
        model.lm = peft::apply_with_tokenizer(model.lm, &cfg.peft, &self.tokenizer)?;
        let (trainable, total) = peft::describe(&model);
        println!(
            "{} + {} head ({} outputs): {trainable} trainable of {total} parameters",
            cfg.peft.method, head.kind, head.labels
        );
        self.record(cfg, Some(&head), settings)?;
        Ok((model, trainable))
    }

    fn bert_model<M: Module>(
        &mut self,
        cfg: &TaskConfig,
        head: HeadSpec,
        settings: &TaskSettings,
        wrap: impl FnOnce(manabi_model::BertModel, usize) -> M,
        keep: impl FnOnce(Model, &[usize]) -> std::result::Result<M, Model>,
    ) -> Result<(M, usize)> {
        let mut opened = bert_opened(self, cfg)?;
        let theirs = opened.head.take();
        let order = theirs.as_ref().and_then(|t| head_order(t, &head));
        let model = match order {
            Some(order) => match keep(opened.model, &order) {
                Ok(m) => {
                    println!(
                        "continuing from the {} head of {} (outputs {})",
                        head.kind,
                        opened.found.dir.display(),
                        describe_outputs(&head)
                    );
                    m
                }
                Err(model) => {
                    opened.model = model;
                    wrap(opened.into_bert_body()?, head.labels)
                }
            },
            None => {
                if let Some(t) = &theirs {
                    println!(
                        "note: {} has a {} head with outputs {}, the task needs {}: a new head",
                        opened.found.dir.display(),
                        t.kind,
                        describe_outputs(t),
                        describe_outputs(&head)
                    );
                }
                wrap(opened.into_bert_body()?, head.labels)
            }
        };
        let n = model.num_params();
        println!(
            "BERT + {} head ({} outputs): {n} trainable of {n} parameters",
            head.kind, head.labels
        );
        self.record(cfg, Some(&head), settings)?;
        Ok((model, n))
    }

    /// The BERT encoder of `cfg.model`, after the checks every BERT task makes: PEFT
    /// refused (it adapts decoders only), the tokenizer no larger than the model's
    /// vocabulary.
    fn bert_body(&mut self, cfg: &TaskConfig) -> Result<manabi_model::BertModel> {
        bert_opened(self, cfg)?.into_bert_body()
    }
}

/// `cfg.model` opened for a BERT task of `setup`, after the checks every BERT task
/// makes: PEFT refused (it adapts decoders only), the tokenizer no larger than the
/// model's vocabulary.
fn bert_opened(setup: &mut Setup, cfg: &TaskConfig) -> Result<Opened> {
    if cfg.peft.method != Method::Full {
        return Err(FinetuneError::config(
            "peft.method",
            format!(
                "`{}` adapts decoders (gpt2 / llama) only; a BERT body trains with `full`",
                cfg.peft.method
            ),
        ));
    }
    setup.trainer.device().seed(cfg.run.seed);
    manabi_model::init::seed(cfg.run.seed);
    let opened = manabi_finetune::open(&cfg.model.path, setup.trainer.device())?;
    let vocab = match &opened.model {
        Model::BertEncoder(m) => Some(m.config().vocab_size),
        Model::BertMaskedLm(m) => Some(m.bert.config().vocab_size),
        Model::BertClassifier(m) => Some(m.bert.config().vocab_size),
        Model::BertTagger(m) => Some(m.bert.config().vocab_size),
        _ => None,
    };
    if let Some(vocab) = vocab
        && setup.tokenizer.vocab_size() > vocab
    {
        return Err(FinetuneError::Config {
            key: "model.tokenizer".into(),
            message: format!(
                "{}: the tokenizer has more tokens than the model: not this model's tokenizer",
                setup.tok_path.display()
            ),
        });
    }
    Ok(opened)
}

/// For each output of the task's head `ours`, the output of the folder's head `theirs`
/// that has its label, when the two heads are of one kind with the same labels (in any
/// order; a regressor's single unnamed output matches itself).
fn head_order(theirs: &HeadSpec, ours: &HeadSpec) -> Option<Vec<usize>> {
    if theirs.kind != ours.kind || theirs.labels != ours.labels {
        return None;
    }
    if ours.names.is_empty() && theirs.names.is_empty() {
        return Some((0..ours.labels).collect());
    }
    if theirs.names.len() != ours.names.len() {
        return None;
    }
    ours.names
        .iter()
        .map(|n| theirs.names.iter().position(|t| t == n))
        .collect()
}

/// `[a, b, c]`, or `1 (a score)` for an unnamed output.
fn describe_outputs(h: &HeadSpec) -> String {
    if h.names.is_empty() {
        format!("{} (unnamed)", h.labels)
    } else {
        format!("[{}]", h.names.join(", "))
    }
}
