//! What the trainer needs of a model, for the three pre-training families: build one
//! from a config, report the config, and say which parameters get weight decay.

use burn::module::{Module, ModuleMapper, ModuleVisitor, Param, ParamId};
use burn::prelude::*;
use manabi_model::{BertForMaskedLm, DecoderLm, ModelConfig, T5};

/// A model the Trainer can train.
pub trait TrainModel: Module + Clone + std::fmt::Debug + Sized {
    /// A freshly initialised model (call [`manabi_model::init::seed`] first).
    fn build(cfg: &ModelConfig, device: &Device) -> Self;
    /// Its configuration.
    fn model_config(&self) -> &ModelConfig;
}

impl TrainModel for DecoderLm {
    fn build(cfg: &ModelConfig, device: &Device) -> Self {
        DecoderLm::new(cfg, device)
    }
    fn model_config(&self) -> &ModelConfig {
        self.config()
    }
}

impl TrainModel for BertForMaskedLm {
    fn build(cfg: &ModelConfig, device: &Device) -> Self {
        BertForMaskedLm::new(cfg, device).map(&mut Reinit::default())
    }
    fn model_config(&self) -> &ModelConfig {
        self.bert.config()
    }
}

impl TrainModel for T5 {
    fn build(cfg: &ModelConfig, device: &Device) -> Self {
        T5::new(cfg, device).map(&mut Reinit::default())
    }
    fn model_config(&self) -> &ModelConfig {
        self.config()
    }
}

fn innermost(stack: &[String]) -> Option<&str> {
    stack
        .iter()
        .rev()
        .find(|s| s.starts_with("Struct:"))
        .map(String::as_str)
}

/// Collects the ids of `Linear` weights (and embedding tables when asked).
struct DecayIds {
    stack: Vec<String>,
    embeddings: bool,
    ids: Vec<ParamId>,
}

impl ModuleVisitor for DecayIds {
    fn enter_module(&mut self, _name: &str, container_type: &str) {
        self.stack.push(container_type.to_string());
    }
    fn exit_module(&mut self, _name: &str, _container_type: &str) {
        self.stack.pop();
    }
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        let inner = innermost(&self.stack);
        let decays = D == 2
            && (inner == Some("Struct:Linear")
                || (self.embeddings && inner == Some("Struct:Embedding")));
        if decays {
            self.ids.push(param.id);
        }
    }
}

/// Ids of the parameters that get weight decay: every `Linear` weight matrix, and the
/// embedding tables when `embeddings`. Norm gains and biases never decay.
pub fn decayed_params<M: Module>(model: &M, embeddings: bool) -> Vec<ParamId> {
    let mut v = DecayIds {
        stack: Vec::new(),
        embeddings,
        ids: Vec::new(),
    };
    model.visit(&mut v);
    v.ids
}

/// Re-initialises `Linear` and `Embedding` parameters the GPT-2 / BERT way
/// (N(0, 0.02) weights, zero biases) from the seeded host generator; norms keep
/// burn's ones and zeros.
#[derive(Default)]
struct Reinit {
    stack: Vec<String>,
}

impl ModuleMapper for Reinit {
    fn enter_module(&mut self, _name: &str, container_type: &str) {
        self.stack.push(container_type.to_string());
    }
    fn exit_module(&mut self, _name: &str, _container_type: &str) {
        self.stack.pop();
    }
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        let inner = innermost(&self.stack).map(str::to_string);
        param
            .map(|t| {
                let device = t.device();
                let dims = t.dims();
                match (inner.as_deref(), D) {
                    (Some("Struct:Linear" | "Struct:Embedding"), 2) => {
                        manabi_model::init::normal(dims, manabi_model::init::STD, &device)
                    }
                    (Some("Struct:Linear"), 1) => Tensor::zeros(dims, &device),
                    _ => t,
                }
            })
            // A fresh tensor is not tracked: keep every parameter trainable.
            .set_require_grad(true)
    }
}

/// Counts the parameters that receive gradients (on an autodiff device).
struct Trainable(usize);

impl ModuleVisitor for Trainable {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        let t = param.base();
        if t.is_require_grad() {
            self.0 += t.shape().num_elements();
        }
    }
}

/// Parameters of `model` that train (LoRA factors, unfrozen weights); the rest are frozen.
pub fn trainable_params<M: Module>(model: &M) -> usize {
    let mut v = Trainable(0);
    model.visit(&mut v);
    v.0
}

impl TrainModel for manabi_model::DecoderClassifier {
    fn build(cfg: &ModelConfig, device: &Device) -> Self {
        manabi_model::DecoderClassifier::new(cfg, 1, device)
    }
    fn model_config(&self) -> &ModelConfig {
        self.lm.config()
    }
}

impl TrainModel for manabi_model::BertForSequenceClassification {
    fn build(cfg: &ModelConfig, device: &Device) -> Self {
        manabi_model::BertForSequenceClassification::new(cfg, device).map(&mut Reinit::default())
    }
    fn model_config(&self) -> &ModelConfig {
        self.bert.config()
    }
}

impl TrainModel for manabi_model::BertForTokenClassification {
    fn build(cfg: &ModelConfig, device: &Device) -> Self {
        manabi_model::BertForTokenClassification::new(cfg, device).map(&mut Reinit::default())
    }
    fn model_config(&self) -> &ModelConfig {
        self.bert.config()
    }
}

/// The BERT encoder alone (no pooler): sentence embeddings (SimCSE, bi-encoders).
impl TrainModel for manabi_model::BertModel {
    fn build(cfg: &ModelConfig, device: &Device) -> Self {
        manabi_model::BertModel::new(cfg, false, device).map(&mut Reinit::default())
    }
    fn model_config(&self) -> &ModelConfig {
        self.config()
    }
}
