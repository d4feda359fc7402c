//! manabi-model: decoder-only language models (GPT-2 and LLaMA layouts), the BERT encoder
//! and the T5 encoder-decoder, their building blocks, generation, Hugging Face weights,
//! and the one place devices are chosen.

pub mod adapter;
pub mod attention;
pub mod bert;
pub mod checkpoint;
pub mod classifier;
pub mod config;
mod config_hf;
mod config_json;
pub mod decoder;
pub mod device;
pub mod error;
pub mod eval;
pub mod fused;
pub mod generate;
pub mod hf;
pub mod hf_bert;
pub mod hf_names;
pub mod hf_t5;
pub mod init;
mod inputs;
pub mod mlp;
pub mod open;
pub mod plan;
pub mod prefix;
pub mod rope;
pub mod t5;
pub mod t5_attention;

/// The label of a position that is not trained, in every crate (Hugging Face's -100):
/// padding, prompt tokens in SFT, unmasked tokens in MLM, document boundaries.
pub const IGNORE_INDEX: i64 = -100;

/// Index of the largest value, in every crate that picks one (greedy decoding, multiple
/// choice, classification, majority class): the FIRST one on ties, as `torch.argmax`,
/// `numpy.argmax` and lm-evaluation-harness. A NaN counts as the largest (the first NaN
/// wins, as in both); an empty slice gives 0.
pub fn argmax_first<T: PartialOrd>(v: &[T]) -> usize {
    let is_nan = |x: &T| x.partial_cmp(x).is_none();
    let mut best = 0;
    for (i, x) in v.iter().enumerate().skip(1) {
        if is_nan(&v[best]) {
            break;
        }
        if is_nan(x) || *x > v[best] {
            best = i;
        }
    }
    best
}

pub use attention::KvCache;
pub use bert::{
    BertForMaskedLm, BertForSequenceClassification, BertForTokenClassification, BertModel,
    BertOutput,
};
pub use checkpoint::{
    DEFAULT_MAX_SHARD_BYTES, export_hf, export_hf_sharded, load_model, load_native, save_native,
};
pub use classifier::{DecoderClassifier, load_classifier_hf, load_classifier_hf_kind};
pub use config::{
    Activation, Family, LayerType, ModelConfig, NormKind, Positions, RopeScaling, RopeScalingKind,
};
pub use decoder::{BaseDtype, DecoderLm, ForwardOptions};
pub use device::{DeviceChoice, DeviceError};
pub use error::{ModelError, Result};
pub use eval::{EvalReport, evaluate};
pub use generate::{GenerateOptions, generate};
pub use hf::load_hf;
pub use hf_bert::{
    BertRef, export_bert_hf, load_bert, load_bert_masked_lm, load_bert_sequence_classifier,
    load_bert_token_classifier,
};
pub use hf_t5::{export_t5_hf, load_t5};
pub use open::{Layout, ModelDir, locate};
pub use t5::{T5, T5Cache, T5GreedyOptions};

#[cfg(test)]
mod tests {
    use super::argmax_first;

    #[test]
    fn argmax_first_takes_the_first_of_equal_maxima() {
        assert_eq!(argmax_first(&[0.5f64, 2.0, 2.0, 1.0]), 1);
        assert_eq!(argmax_first(&[3.0f32, 3.0, 3.0]), 0);
        assert_eq!(argmax_first(&[f32::NEG_INFINITY, f32::NEG_INFINITY]), 0);
        assert_eq!(argmax_first(&[1.0f64, f64::NAN, 5.0, f64::NAN]), 1);
        assert_eq!(argmax_first(&[4usize, 7, 7]), 1);
        assert_eq!(argmax_first::<f32>(&[]), 0);
    }
}
