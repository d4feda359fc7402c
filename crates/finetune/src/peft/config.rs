//! What `[peft]` says: the [`Method`] and its settings ([`PeftConfig`], saved as
//! [`PEFT_FILE`] in every adapted checkpoint), checked before any method is applied.

use std::fmt;
use std::marker::PhantomData;

use serde::de::{self, MapAccess, SeqAccess, Visitor};
use serde::ser::SerializeMap;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::{FinetuneError, Result};

/// The spec file an adapted checkpoint carries besides `model.toml`.
pub const PEFT_FILE: &str = "peft.toml";

/// The PEFT method.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Method {
    /// Full fine-tuning.
    #[default]
    Full,
    /// Low-rank adapters on the target modules.
    Lora,
    /// Learned rescaling vectors (IA³).
    Ia3,
    /// A trainable soft prompt before the input (prompt tuning).
    Prompt,
    /// Trainable keys and values before the input at every layer (prefix tuning).
    Prefix,
    /// Biases only.
    Bitfit,
    /// Bottleneck adapters after attention and after the MLP.
    Houlsby,
    /// A bottleneck adapter after the MLP only.
    Pfeiffer,
}

/// The name `peft.method` takes (`lora`, `ia3`, …), for messages.
impl std::fmt::Display for Method {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&format!("{self:?}").to_lowercase())
    }
}

/// `[peft]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PeftConfig {
    /// Method.
    pub method: Method,
    /// LoRA rank.
    pub r: usize,
    /// LoRA α: the update is scaled by α / r (α / √r with `rslora`).
    pub alpha: f64,
    /// LoRA dropout on the adapter's input while training (PEFT's `lora_dropout`), in
    /// [0, 1).
    pub dropout: f64,
    /// LoRA target modules by Hugging Face name (`q_proj`, `v_proj`, `c_attn`, …).
    pub targets: Vec<String>,
    /// Rank-stabilised scaling α / √r.
    pub rslora: bool,
    /// Prompt and prefix tuning: virtual tokens prepended to the input.
    pub virtual_tokens: usize,
    /// Prompt tuning: start the soft prompt from the embeddings of this text's tokens,
    /// repeated or cut to `virtual_tokens` (PEFT's `prompt_tuning_init = "TEXT"`, except
    /// that no special token is added: PEFT's tokenizer call adds a BOS where the
    /// tokenizer's template has one); empty: from vocabulary rows spread over the table.
    pub prompt_init_text: String,
    /// Prefix tuning: make the prefix with a two-layer MLP while training (PEFT's
    /// `prefix_projection`; exports write its output).
    pub prefix_projection: bool,
    /// IA³: the target modules whose input (not output) is scaled.
    pub feedforward: Vec<String>,
    /// Bottleneck width of `houlsby` / `pfeiffer` adapters.
    pub adapter_size: usize,
    /// LoRA: weight-decomposed LoRA (DoRA, Liu et al. 2024; PEFT's `use_dora`): a learned
    /// magnitude per output times the direction of `W + s·B·A`. Needs `dropout = 0`.
    #[serde(skip_serializing_if = "is_false")]
    pub use_dora: bool,
    /// LoRA: adapt the targets only in these layers (PEFT's `layers_to_transform`: an
    /// index or a list; empty: every layer). A target named in full is adapted whatever
    /// its layer, as in PEFT.
    #[serde(deserialize_with = "layer_list", skip_serializing_if = "Vec::is_empty")]
    pub layers_to_transform: Vec<usize>,
    /// LoRA: what precedes the layer index in a module name, a regex (PEFT's
    /// `layers_pattern`: one or a list, `layers`, `h`, …); empty: the first numbered
    /// component after two others. Read only with `layers_to_transform`.
    #[serde(deserialize_with = "name_list", skip_serializing_if = "Vec::is_empty")]
    pub layers_pattern: Vec<String>,
    /// LoRA: rank by module (PEFT's `rank_pattern`, `{ q_proj = 2 }`, or
    /// `[["q_proj", 2], …]` where the order of overlapping keys matters): each key a
    /// regex matched against a module's full HF name or its end after a dot; the first
    /// key that matches, in the order given, wins; other targets take `r`. On a fused module
    /// (`c_attn`, `qkv_proj`, `query_key_value`, `gate_up_proj`) each part gets the rank,
    /// as with `r`.
    #[serde(skip_serializing_if = "Patterns::is_empty")]
    pub rank_pattern: Patterns<usize>,
    /// LoRA: α by module (PEFT's `alpha_pattern`), matched as `rank_pattern`; other
    /// targets take `alpha`. The scale is each module's α over its rank (or √rank).
    #[serde(skip_serializing_if = "Patterns::is_empty")]
    pub alpha_pattern: Patterns<f64>,
}

fn is_false(b: &bool) -> bool {
    !*b
}

/// Values by module-name pattern, in the order given; the first key that matches a
/// module wins, as in PEFT. Read from a table (`{ q_proj = 2 }`; PEFT's JSON object) or,
/// where the order of overlapping keys matters, a list of `[key, value]` pairs (a TOML
/// table may be read in sorted key order). Written as a table when its keys are in
/// sorted order, otherwise as pairs, so that `peft.toml` reads back in the same order.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Patterns<T>(pub Vec<(String, T)>);

impl<T> Patterns<T> {
    /// No patterns.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl<T: Serialize> Serialize for Patterns<T> {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        if self.0.windows(2).all(|w| w[0].0 < w[1].0) {
            let mut map = s.serialize_map(Some(self.0.len()))?;
            for (k, v) in &self.0 {
                map.serialize_entry(k, v)?;
            }
            map.end()
        } else {
            self.0.serialize(s)
        }
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Patterns<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        struct V<T>(PhantomData<T>);
        impl<'de, T: Deserialize<'de>> Visitor<'de> for V<T> {
            type Value = Patterns<T>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a table of module-name patterns and values, or [pattern, value] pairs")
            }
            fn visit_map<A: MapAccess<'de>>(
                self,
                mut map: A,
            ) -> std::result::Result<Self::Value, A::Error> {
                // In the order read; a repeated key keeps its first place and its last
                // value, as Python's `json` reads it.
                let mut out: Vec<(String, T)> = Vec::new();
                while let Some((k, v)) = map.next_entry::<String, T>()? {
                    match out.iter_mut().find(|(key, _)| *key == k) {
                        Some(entry) => entry.1 = v,
                        None => out.push((k, v)),
                    }
                }
                Ok(Patterns(out))
            }
            fn visit_seq<A: SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> std::result::Result<Self::Value, A::Error> {
                let mut out = Vec::new();
                while let Some(pair) = seq.next_element::<(String, T)>()? {
                    out.push(pair);
                }
                Ok(Patterns(out))
            }
        }
        d.deserialize_any(V(PhantomData))
    }
}

/// A layer index or a list of them.
fn layer_list<'de, D: Deserializer<'de>>(d: D) -> std::result::Result<Vec<usize>, D::Error> {
    struct V;
    impl<'de> Visitor<'de> for V {
        type Value = Vec<usize>;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a layer index or a list of layer indices")
        }
        fn visit_u64<E: de::Error>(self, v: u64) -> std::result::Result<Vec<usize>, E> {
            usize::try_from(v)
                .map(|v| vec![v])
                .map_err(|_| E::custom(format!("{v} is not a layer index")))
        }
        fn visit_i64<E: de::Error>(self, v: i64) -> std::result::Result<Vec<usize>, E> {
            usize::try_from(v)
                .map(|v| vec![v])
                .map_err(|_| E::custom(format!("{v} is not a layer index")))
        }
        fn visit_seq<A: SeqAccess<'de>>(
            self,
            mut seq: A,
        ) -> std::result::Result<Vec<usize>, A::Error> {
            let mut out = Vec::new();
            while let Some(i) = seq.next_element::<usize>()? {
                out.push(i);
            }
            Ok(out)
        }
    }
    d.deserialize_any(V)
}

/// A name or a list of names.
fn name_list<'de, D: Deserializer<'de>>(d: D) -> std::result::Result<Vec<String>, D::Error> {
    struct V;
    impl<'de> Visitor<'de> for V {
        type Value = Vec<String>;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a string or a list of strings")
        }
        fn visit_str<E: de::Error>(self, v: &str) -> std::result::Result<Vec<String>, E> {
            Ok(vec![v.to_string()])
        }
        fn visit_seq<A: SeqAccess<'de>>(
            self,
            mut seq: A,
        ) -> std::result::Result<Vec<String>, A::Error> {
            let mut out = Vec::new();
            while let Some(s) = seq.next_element::<String>()? {
                out.push(s);
            }
            Ok(out)
        }
    }
    d.deserialize_any(V)
}

impl Default for PeftConfig {
    fn default() -> Self {
        Self {
            method: Method::Full,
            r: 8,
            alpha: 16.0,
            dropout: 0.0,
            targets: vec!["q_proj".into(), "v_proj".into()],
            rslora: false,
            virtual_tokens: 8,
            prompt_init_text: String::new(),
            prefix_projection: false,
            feedforward: vec!["down_proj".into()],
            adapter_size: 16,
            use_dora: false,
            layers_to_transform: Vec::new(),
            layers_pattern: Vec::new(),
            rank_pattern: Patterns::default(),
            alpha_pattern: Patterns::default(),
        }
    }
}

impl PeftConfig {
    /// The factor LoRA's update is multiplied by.
    pub fn lora_scale(&self) -> f64 {
        if self.rslora {
            self.alpha / (self.r as f64).sqrt()
        } else {
            self.alpha / self.r as f64
        }
    }

    /// Checks values the types do not.
    pub fn validate(&self) -> Result<()> {
        if self.method == Method::Lora {
            if self.r == 0 {
                return Err(FinetuneError::config(
                    "peft.r",
                    "LoRA rank must be at least 1",
                ));
            }
            if !(self.alpha > 0.0 && self.alpha.is_finite()) {
                return Err(FinetuneError::config("peft.alpha", "must be positive"));
            }
            if !(0.0..1.0).contains(&self.dropout) {
                return Err(FinetuneError::config(
                    "peft.dropout",
                    format!("{} is not in [0, 1)", self.dropout),
                ));
            }
            if self.targets.is_empty() {
                return Err(FinetuneError::config("peft.targets", "no target modules"));
            }
            if self.use_dora && self.dropout > 0.0 {
                return Err(FinetuneError::config(
                    "peft.dropout",
                    "DoRA (use_dora) runs without LoRA dropout here; set dropout = 0",
                ));
            }
            crate::peft::patterns::check(
                &self.rank_pattern.0,
                &self.alpha_pattern.0,
                &self.layers_pattern,
                &self.layers_to_transform,
            )
            .map_err(|e| FinetuneError::config(format!("peft.{}", e.key), e.message))?;
        } else {
            let lora_only = [
                ("peft.use_dora", self.use_dora),
                (
                    "peft.layers_to_transform",
                    !self.layers_to_transform.is_empty(),
                ),
                ("peft.layers_pattern", !self.layers_pattern.is_empty()),
                ("peft.rank_pattern", !self.rank_pattern.is_empty()),
                ("peft.alpha_pattern", !self.alpha_pattern.is_empty()),
            ];
            if let Some((key, _)) = lora_only.iter().find(|(_, set)| *set) {
                return Err(FinetuneError::config(
                    *key,
                    format!(
                        "only LoRA reads it (method = \"lora\"), not `{}`",
                        self.method
                    ),
                ));
            }
        }
        if self.method == Method::Ia3 && self.targets.is_empty() {
            return Err(FinetuneError::config("peft.targets", "no target modules"));
        }
        if self.method != Method::Prompt && !self.prompt_init_text.is_empty() {
            return Err(FinetuneError::config(
                "peft.prompt_init_text",
                "only prompt tuning starts from a text (method = \"prompt\")",
            ));
        }
        if matches!(self.method, Method::Prompt | Method::Prefix) && self.virtual_tokens == 0 {
            return Err(FinetuneError::config(
                "peft.virtual_tokens",
                "must be at least 1",
            ));
        }
        if matches!(self.method, Method::Houlsby | Method::Pfeiffer) && self.adapter_size == 0 {
            return Err(FinetuneError::config(
                "peft.adapter_size",
                "must be at least 1",
            ));
        }
        Ok(())
    }

    /// Refuses the methods a sequence or token head cannot use: prompt and prefix tuning
    /// act through the language model's own forward pass, which a head's body skips.
    pub fn validate_for_head(&self) -> Result<()> {
        self.validate()?;
        if self.virtual_positions() > 0 {
            return Err(FinetuneError::config(
                "peft.method",
                format!(
                    "`{}` tuning is for generation (a head reads the body's hidden states without virtual tokens); choose full, lora, ia3, bitfit, houlsby or pfeiffer",
                    self.method
                ),
            ));
        }
        Ok(())
    }

    /// Positions the method takes before the first real token.
    pub fn virtual_positions(&self) -> usize {
        match self.method {
            Method::Prompt | Method::Prefix => self.virtual_tokens,
            _ => 0,
        }
    }

    /// The `peft.toml` text saved in checkpoints.
    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).unwrap_or_default()
    }
}
