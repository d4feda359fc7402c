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
    /// Ids of its embedding tables (token, position, token-type, relative-position
    /// tables): the matrices `train.decay_embeddings` decays or not.
    fn embedding_ids(&self) -> Vec<ParamId>;
}

impl TrainModel for DecoderLm {
    fn build(cfg: &ModelConfig, device: &Device) -> Self {
        DecoderLm::new(cfg, device)
    }
    fn model_config(&self) -> &ModelConfig {
        self.config()
    }
    fn embedding_ids(&self) -> Vec<ParamId> {
        DecoderLm::embedding_ids(self)
    }
}

impl TrainModel for BertForMaskedLm {
    fn build(cfg: &ModelConfig, device: &Device) -> Self {
        BertForMaskedLm::new(cfg, device).map(&mut Reinit::default())
    }
    fn model_config(&self) -> &ModelConfig {
        self.bert.config()
    }
    fn embedding_ids(&self) -> Vec<ParamId> {
        self.bert.embedding_ids()
    }
}

impl TrainModel for T5 {
    fn build(cfg: &ModelConfig, device: &Device) -> Self {
        T5::new(cfg, device).map(&mut Reinit::default())
    }
    fn model_config(&self) -> &ModelConfig {
        self.config()
    }
    fn embedding_ids(&self) -> Vec<ParamId> {
        T5::embedding_ids(self)
    }
}

fn innermost(stack: &[String]) -> Option<&str> {
    stack
        .iter()
        .rev()
        .find(|s| s.starts_with("Struct:"))
        .map(String::as_str)
}

/// Collects the ids of every parameter of rank ≥ 2 (weight matrices, embedding tables,
/// LoRA factors, soft prompts): norm gains, biases and IA³ vectors are rank 1.
struct Matrices(Vec<ParamId>);

impl ModuleVisitor for Matrices {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        if D >= 2 {
            self.0.push(param.id);
        }
    }
}

/// Ids of the parameters that get weight decay, chosen by rank as nanoGPT and
/// `transformers`' Trainer do: every parameter with two or more dimensions (weight
/// matrices, LoRA factors, soft prompts), except the embedding tables unless
/// `embeddings`. Norm gains and biases never decay.
pub fn decayed_params<M: TrainModel>(model: &M, embeddings: bool) -> Vec<ParamId> {
    let mut v = Matrices(Vec::new());
    model.visit(&mut v);
    let tables = model.embedding_ids();
    v.0.retain(|id| embeddings || !tables.contains(id));
    v.0
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
    fn embedding_ids(&self) -> Vec<ParamId> {
        self.lm.embedding_ids()
    }
}

impl TrainModel for manabi_model::BertForSequenceClassification {
    fn build(cfg: &ModelConfig, device: &Device) -> Self {
        manabi_model::BertForSequenceClassification::new(cfg, device).map(&mut Reinit::default())
    }
    fn model_config(&self) -> &ModelConfig {
        self.bert.config()
    }
    fn embedding_ids(&self) -> Vec<ParamId> {
        self.bert.embedding_ids()
    }
}

impl TrainModel for manabi_model::BertForTokenClassification {
    fn build(cfg: &ModelConfig, device: &Device) -> Self {
        manabi_model::BertForTokenClassification::new(cfg, device).map(&mut Reinit::default())
    }
    fn model_config(&self) -> &ModelConfig {
        self.bert.config()
    }
    fn embedding_ids(&self) -> Vec<ParamId> {
        self.bert.embedding_ids()
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
    fn embedding_ids(&self) -> Vec<ParamId> {
        manabi_model::BertModel::embedding_ids(self)
    }
}

#[cfg(test)]
mod decay_tests {
    use super::*;

    /// The rule before decay went by rank: `Linear` weights, and `Embedding` tables when
    /// asked, by burn's container type names. The rank rule must choose the same
    /// parameters on every base model.
    struct ByTypeName {
        stack: Vec<String>,
        embeddings: bool,
        ids: Vec<ParamId>,
    }

    impl ModuleVisitor for ByTypeName {
        fn enter_module(&mut self, _name: &str, container_type: &str) {
            self.stack.push(container_type.to_string());
        }
        fn exit_module(&mut self, _name: &str, _container_type: &str) {
            self.stack.pop();
        }
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            let inner = innermost(&self.stack);
            if D == 2
                && (inner == Some("Struct:Linear")
                    || (self.embeddings && inner == Some("Struct:Embedding")))
            {
                self.ids.push(param.id);
            }
        }
    }

    fn same_as_by_type<M: TrainModel>(m: &M, what: &str) {
        for embeddings in [false, true] {
            let mut v = ByTypeName {
                stack: Vec::new(),
                embeddings,
                ids: Vec::new(),
            };
            m.visit(&mut v);
            let mut old = v.ids;
            let mut new = decayed_params(m, embeddings);
            old.sort_by_key(|id| id.val());
            new.sort_by_key(|id| id.val());
            assert_eq!(new, old, "{what}, embeddings {embeddings}");
            assert!(!new.is_empty(), "{what}");
        }
    }

    fn cfg(text: &str) -> ModelConfig {
        toml::from_str(text).unwrap()
    }

    #[test]
    fn decay_by_rank_chooses_the_linear_weights_on_every_base_model() {
        let device = manabi_model::device::test_device();
        let gpt2 = cfg(
            "family = \"gpt2\"\nvocab_size = 30\nmax_positions = 16\nd_model = 8\n\
                        n_layers = 2\nn_heads = 2\nd_ff = 16\npositions = \"learned\"\n\
                        norm = \"layernorm\"\nactivation = \"gelu_tanh\"\ntie_embeddings = false",
        );
        let llama = cfg(
            "family = \"llama\"\nvocab_size = 30\nmax_positions = 16\nd_model = 8\n\
                         n_layers = 2\nn_heads = 2\nn_kv_heads = 1\nd_ff = 16\n\
                         positions = \"rope\"\nnorm = \"rmsnorm\"\nactivation = \"swiglu\"\n\
                         tie_embeddings = true",
        );
        let bert = cfg(
            "family = \"bert\"\nvocab_size = 30\nmax_positions = 16\nd_model = 8\n\
                        n_layers = 2\nn_heads = 2\nd_ff = 16\npositions = \"learned\"\n\
                        norm = \"layernorm\"\nactivation = \"gelu\"\ntie_embeddings = true\n\
                        num_labels = 3",
        );
        let t5 = cfg(
            "family = \"t5\"\nvocab_size = 30\nmax_positions = 16\nd_model = 8\n\
                      n_layers = 2\nn_heads = 2\nd_ff = 16\npositions = \"relative\"\n\
                      norm = \"rmsnorm\"\nactivation = \"geglu_tanh\"\ntie_embeddings = false",
        );
        same_as_by_type(&DecoderLm::build(&gpt2, &device), "gpt2");
        same_as_by_type(&DecoderLm::build(&llama, &device), "llama");
        same_as_by_type(
            &manabi_model::DecoderClassifier::build(&llama, &device),
            "classifier",
        );
        same_as_by_type(&BertForMaskedLm::build(&bert, &device), "bert mlm");
        same_as_by_type(
            &manabi_model::BertForSequenceClassification::build(&bert, &device),
            "bert classifier",
        );
        same_as_by_type(
            &manabi_model::BertForTokenClassification::build(&bert, &device),
            "bert tagger",
        );
        same_as_by_type(
            &manabi_model::BertModel::build(&bert, &device),
            "bert encoder",
        );
        same_as_by_type(&T5::build(&t5, &device), "t5");
        // Embedding tables are rank 2 and are told apart by the model, not by type name.
        let lm = DecoderLm::build(&gpt2, &device);
        let tables = lm.embedding_ids();
        assert_eq!(tables.len(), 2);
        assert!(
            decayed_params(&lm, false)
                .iter()
                .all(|id| !tables.contains(id))
        );
        assert!(
            tables
                .iter()
                .all(|id| decayed_params(&lm, true).contains(id))
        );
    }
}
