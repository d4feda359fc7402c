//! The task side of [`Setup`] ([`TaskSetup`], implemented for it): the body of a task run
//! (a decoder with adapters, or a checked BERT encoder), its head, and the spec files its
//! checkpoints carry (`head.toml`, `task.toml`, `peft.toml`).

use burn::module::Module;
use manabi_finetune::error::{FinetuneError, Result};
use manabi_finetune::head::{HEAD_FILE, HeadSpec};
use manabi_finetune::peft::{self, Method, PEFT_FILE};
use manabi_finetune::setup::Setup;
use manabi_model::DecoderClassifier;

use crate::body::load_bert_body;
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
    /// every parameter trains (PEFT methods adapt decoders only).
    fn bert_model<M: Module>(
        &mut self,
        cfg: &TaskConfig,
        head: HeadSpec,
        settings: &TaskSettings,
        wrap: impl FnOnce(manabi_model::BertModel, usize) -> M,
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

    /// The BERT body of `cfg.model` with the task's head (`wrap`: body, outputs → model);
    /// every parameter trains (PEFT methods adapt decoders only).
    fn bert_model<M: Module>(
        &mut self,
        cfg: &TaskConfig,
        head: HeadSpec,
        settings: &TaskSettings,
        wrap: impl FnOnce(manabi_model::BertModel, usize) -> M,
    ) -> Result<(M, usize)> {
        let model = wrap(self.bert_body(cfg)?, head.labels);
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
        if cfg.peft.method != Method::Full {
            return Err(FinetuneError::config(
                "peft.method",
                format!(
                    "`{}` adapts decoders (gpt2 / llama) only; a BERT body trains with `full`",
                    cfg.peft.method
                ),
            ));
        }
        self.trainer.device().seed(cfg.run.seed);
        manabi_model::init::seed(cfg.run.seed);
        let body = load_bert_body(&cfg.model.path, self.trainer.device())?;
        if self.tokenizer.vocab_size() > body.config().vocab_size {
            return Err(FinetuneError::Config {
                key: "model.tokenizer".into(),
                message: format!(
                    "{}: the tokenizer has more tokens than the model: not this model's tokenizer",
                    self.tok_path.display()
                ),
            });
        }
        Ok(body)
    }
}
