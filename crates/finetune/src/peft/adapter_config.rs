//! PEFT's `adapter_config.json` as one typed struct, [`AdapterConfig`], read and written
//! by every PEFT method here (LoRA and DoRA, IA³, prompt and prefix tuning).
//!
//! Every key manabi reads or writes has a field; the many others PEFT writes
//! (`peft_version`, `auto_mapping`, `loftq_config`, …) are kept as read in
//! [`AdapterConfig::extra`], so a config read and written again keeps them. A key with a
//! value of the wrong type is an error naming the file and the key. What a method makes
//! of the values (LoRA refuses regex `target_modules` and trained biases, IA³ regex
//! module lists, …) is checked where it turns the config into a
//! [`PeftConfig`](super::PeftConfig).
//!
//! Written as PEFT writes it, keys in sorted order (the fields are declared in that
//! order; keys of [`AdapterConfig::extra`] follow them), `rank_pattern` / `alpha_pattern`
//! in their own order: peft takes the first key that matches.

use std::fmt;
use std::path::Path;

use serde::de::{self, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{Map, Value};

use crate::error::{FinetuneError, Result};
use crate::peft::config::Patterns;

/// The file of a PEFT adapter folder that holds its settings.
pub const ADAPTER_CONFIG: &str = "adapter_config.json";

/// The `peft_type`s manabi loads.
const LOADED: [&str; 4] = ["LORA", "IA3", "PROMPT_TUNING", "PREFIX_TUNING"];

/// A key written as `null` by manabi: `None` when absent, `Some(None)` when `null`.
pub type Nullable<T> = Option<Option<T>>;

/// The settings of a PEFT adapter (`adapter_config.json`). `None`: the key is absent (or
/// `null`, except for the [`Nullable`] keys, which keep an explicit `null`).
///
/// Fields are in sorted key order: the order they are written in.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct AdapterConfig {
    /// LoRA: α by module-name regex, in the file's order.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        serialize_with = "pattern_map"
    )]
    pub alpha_pattern: Option<Patterns<f64>>,
    /// The base model the adapter was trained on (manabi writes `null`).
    #[serde(
        default,
        deserialize_with = "nullable",
        skip_serializing_if = "Option::is_none"
    )]
    pub base_model_name_or_path: Nullable<String>,
    /// LoRA: which biases train (`"none"`, `"all"`, `"lora_only"`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bias: Option<String>,
    /// Prefix tuning: the width of the prefix encoder's hidden layer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encoder_hidden_size: Option<usize>,
    /// LoRA and IA³: the base stores weights `[in, out]` (GPT-2's `Conv1D`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fan_in_fan_out: Option<bool>,
    /// IA³: the target modules whose input (not output) is scaled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub feedforward_modules: Option<StringOrList>,
    /// Written for inference (`true`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inference_mode: Option<bool>,
    /// IA³: how the vectors started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub init_ia3_weights: Option<bool>,
    /// LoRA: how the factors started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub init_lora_weights: Option<InitWeights>,
    /// LoRA: what precedes the layer index in a module name (one regex or a list).
    #[serde(
        default,
        deserialize_with = "nullable",
        skip_serializing_if = "Option::is_none"
    )]
    pub layers_pattern: Nullable<StringOrList>,
    /// LoRA: adapt the targets only in these layers.
    #[serde(
        default,
        deserialize_with = "nullable",
        skip_serializing_if = "Option::is_none"
    )]
    pub layers_to_transform: Nullable<LayerIndices>,
    /// LoRA α.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lora_alpha: Option<f64>,
    /// LoRA: a trained bias on `lora_B`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lora_bias: Option<bool>,
    /// LoRA dropout.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lora_dropout: Option<f64>,
    /// Modules trained in full besides the adapter (manabi writes `null`).
    #[serde(
        default,
        deserialize_with = "nullable",
        skip_serializing_if = "Option::is_none"
    )]
    pub modules_to_save: Nullable<Vec<String>>,
    /// Prompt and prefix tuning: the base's attention heads (key/value heads for prefix
    /// tuning).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub num_attention_heads: Option<usize>,
    /// Prompt and prefix tuning: the base's layers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub num_layers: Option<usize>,
    /// Prompt and prefix tuning: 1 for a decoder.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub num_transformer_submodules: Option<usize>,
    /// Prompt and prefix tuning: the virtual tokens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub num_virtual_tokens: Option<usize>,
    /// `LORA`, `IA3`, `PROMPT_TUNING`, `PREFIX_TUNING`, …
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peft_type: Option<String>,
    /// Prefix tuning: an MLP made the prefix while training.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix_projection: Option<bool>,
    /// Prompt tuning: how the soft prompt started (`RANDOM`, `SAMPLE_VOCAB`, `TEXT`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt_tuning_init: Option<String>,
    /// Prompt tuning: the text of a `TEXT` start.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt_tuning_init_text: Option<String>,
    /// LoRA rank.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub r: Option<usize>,
    /// LoRA: rank by module-name regex, in the file's order.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        serialize_with = "pattern_map"
    )]
    pub rank_pattern: Option<Patterns<usize>>,
    /// The base model's revision.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revision: Option<String>,
    /// LoRA and IA³: the adapted modules (a list, or a regex over full module names).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_modules: Option<StringOrList>,
    /// `CAUSAL_LM`, …
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task_type: Option<String>,
    /// Prompt and prefix tuning: the width of a virtual token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_dim: Option<usize>,
    /// Prompt tuning: the tokenizer of a `TEXT` start.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tokenizer_name_or_path: Option<String>,
    /// LoRA: DoRA (a magnitude vector per adapted module).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub use_dora: Option<bool>,
    /// LoRA: rank-stabilised scaling α / √r.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub use_rslora: Option<bool>,
    /// Every other key, as read.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl AdapterConfig {
    /// Reads `adapter_config.json` of the adapter folder `dir` (a leading BOM is skipped).
    /// Errors name the file and, for a value of the wrong type, the key.
    pub fn read(dir: &Path) -> Result<Self> {
        let path = dir.join(ADAPTER_CONFIG);
        let text = std::fs::read_to_string(&path).map_err(|e| FinetuneError::io(&path, e))?;
        Self::from_json(&text).map_err(|message| FinetuneError::Adapter { path, message })
    }

    /// Parses the text of an `adapter_config.json` (a leading BOM is skipped); the error
    /// is one line naming the key at fault.
    pub fn from_json(text: &str) -> std::result::Result<Self, String> {
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        let mut de = serde_json::Deserializer::from_str(text);
        let config: Self = serde_path_to_error::deserialize(&mut de).map_err(|e| {
            let key = e.path().to_string();
            explain(&key, &e.into_inner(), text)
        })?;
        de.end().map_err(|e| format!("not valid JSON: {e}"))?;
        Ok(config)
    }

    /// Writes `adapter_config.json` into `dir` (created if need be), atomically.
    pub fn write(&self, dir: &Path) -> Result<()> {
        std::fs::create_dir_all(dir).map_err(|e| FinetuneError::io(dir, e))?;
        let path = dir.join(ADAPTER_CONFIG);
        let text = serde_json::to_string_pretty(self).map_err(|e| FinetuneError::io(&path, e))?;
        manabi_tokenize::write_atomic(&path, text.as_bytes())?;
        Ok(())
    }

    /// `layers_to_transform` as a list (empty: absent or `null`, every layer).
    pub fn layers_to_transform(&self) -> Vec<usize> {
        match &self.layers_to_transform {
            Some(Some(LayerIndices::One(i))) => vec![*i],
            Some(Some(LayerIndices::List(v))) => v.clone(),
            Some(None) | None => Vec::new(),
        }
    }

    /// `layers_pattern` as a list (empty: absent, `null` or `""`, peft's default).
    pub fn layers_pattern(&self) -> Vec<String> {
        match &self.layers_pattern {
            Some(Some(StringOrList::String(s))) if s.is_empty() => Vec::new(),
            Some(Some(StringOrList::String(s))) => vec![s.clone()],
            Some(Some(StringOrList::List(v))) => v.clone(),
            Some(None) | None => Vec::new(),
        }
    }
}

/// The refusal of an adapter whose `peft_type` manabi does not load.
pub(crate) fn not_loaded(peft_type: &str) -> String {
    format!(
        "peft_type \"{peft_type}\": not loaded (manabi loads LORA, IA3, PROMPT_TUNING and \
         PREFIX_TUNING adapters)"
    )
}

/// A deserialisation error of `text` at `key` (serde_path_to_error's path, `.` at the
/// top) as one line: a JSON syntax error as such; a config of a `peft_type` manabi does
/// not load (whose keys may mean other things, AdaLoRA's `rank_pattern`) refused for its
/// type; otherwise the key and what is wrong with its value.
fn explain(key: &str, e: &serde_json::Error, text: &str) -> String {
    use serde_json::error::Category;
    if matches!(
        e.classify(),
        Category::Io | Category::Syntax | Category::Eof
    ) {
        return format!("not valid JSON: {e}");
    }
    let peft_type = serde_json::from_str::<Value>(text).ok().and_then(|v| {
        v.get("peft_type")
            .and_then(Value::as_str)
            .map(str::to_string)
    });
    if let Some(t) = peft_type.filter(|t| !LOADED.contains(&t.as_str())) {
        return not_loaded(&t);
    }
    let message = one_line(&e.to_string());
    match key {
        "" | "." => message,
        key => format!("`{}`: {message}", one_line(key)),
    }
}

fn one_line(s: &str) -> String {
    s.replace('\n', "\\n").replace('\r', "\\r")
}

/// A key that may be `null`: `Some(None)` for `null`, `Some(Some(v))` for a value (with
/// `#[serde(default)]`, `None` when absent).
fn nullable<'de, D, T>(d: D) -> std::result::Result<Nullable<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(d).map(Some)
}

/// `rank_pattern` / `alpha_pattern` as a JSON object in their own order (a
/// [`Patterns`] out of sorted order would otherwise be written as pairs).
fn pattern_map<T, S>(patterns: &Option<Patterns<T>>, s: S) -> std::result::Result<S::Ok, S::Error>
where
    T: Serialize,
    S: Serializer,
{
    match patterns {
        Some(p) => s.collect_map(p.0.iter().map(|(k, v)| (k, v))),
        None => s.serialize_none(),
    }
}

/// A string or a list of strings: `target_modules` and `feedforward_modules` (peft reads
/// a string as a regex over full module names), `layers_pattern` (one pattern or several).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum StringOrList {
    /// One string.
    String(String),
    /// A list of strings.
    List(Vec<String>),
}

impl<'de> Deserialize<'de> for StringOrList {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = StringOrList;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string or a list of strings")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> std::result::Result<StringOrList, E> {
                Ok(StringOrList::String(v.to_string()))
            }
            fn visit_seq<A: SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> std::result::Result<StringOrList, A::Error> {
                let mut out = Vec::new();
                while let Some(s) = seq.next_element::<String>()? {
                    out.push(s);
                }
                Ok(StringOrList::List(out))
            }
        }
        d.deserialize_any(V)
    }
}

/// `layers_to_transform`: a layer index or a list of them.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum LayerIndices {
    /// One layer.
    One(usize),
    /// A list of layers.
    List(Vec<usize>),
}

impl<'de> Deserialize<'de> for LayerIndices {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = LayerIndices;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a layer index or a list of them")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> std::result::Result<LayerIndices, E> {
                usize::try_from(v)
                    .map(LayerIndices::One)
                    .map_err(|_| E::custom(format!("{v} is not a layer index")))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> std::result::Result<LayerIndices, E> {
                usize::try_from(v)
                    .map(LayerIndices::One)
                    .map_err(|_| E::custom(format!("{v} is not a layer index")))
            }
            fn visit_seq<A: SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> std::result::Result<LayerIndices, A::Error> {
                let mut out = Vec::new();
                while let Some(i) = seq.next_element::<usize>()? {
                    out.push(i);
                }
                Ok(LayerIndices::List(out))
            }
        }
        d.deserialize_any(V)
    }
}

/// `init_lora_weights`: `true` / `false`, or the name of an initialisation (`"gaussian"`,
/// `"pissa"`, `"olora"`, …).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum InitWeights {
    /// PEFT's default start (`true`), or random factors (`false`).
    Bool(bool),
    /// A named initialisation.
    Named(String),
}

impl<'de> Deserialize<'de> for InitWeights {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = InitWeights;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("true, false or the name of an initialisation")
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> std::result::Result<InitWeights, E> {
                Ok(InitWeights::Bool(v))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> std::result::Result<InitWeights, E> {
                Ok(InitWeights::Named(v.to_string()))
            }
        }
        d.deserialize_any(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A LoRA config as peft writes it, with keys manabi does not read, `null`s, and
    /// patterns out of sorted order.
    const LORA: &str = r#"{
  "alpha_pattern": {"v_proj": 3, "q_proj": 8.5},
  "auto_mapping": {"base_model_class": "LlamaForCausalLM", "parent_library": "transformers"},
  "base_model_name_or_path": null,
  "bias": "none",
  "fan_in_fan_out": false,
  "inference_mode": true,
  "init_lora_weights": "gaussian",
  "layers_pattern": "layers",
  "layers_to_transform": [0, 1],
  "loftq_config": {},
  "lora_alpha": 16,
  "lora_bias": false,
  "lora_dropout": 0.05,
  "modules_to_save": null,
  "peft_type": "LORA",
  "peft_version": "0.21.2",
  "r": 4,
  "rank_pattern": {"v_proj": 8, "model\\.layers\\.1\\.mlp\\.down_proj": 6, "q_proj": 2},
  "revision": null,
  "target_modules": ["q_proj", "v_proj", "down_proj"],
  "task_type": null,
  "use_dora": false,
  "use_rslora": true
}"#;

    fn write_text(text: &str) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(ADAPTER_CONFIG), text).unwrap();
        dir
    }

    fn read_err(text: &str) -> String {
        let dir = write_text(text);
        AdapterConfig::read(dir.path()).unwrap_err().to_string()
    }

    #[test]
    fn read_write_read_is_the_same_config() {
        let first = AdapterConfig::read(write_text(LORA).path()).unwrap();
        assert_eq!(first.peft_type.as_deref(), Some("LORA"));
        assert_eq!(first.r, Some(4));
        assert_eq!(first.lora_alpha, Some(16.0));
        assert_eq!(first.use_rslora, Some(true));
        assert_eq!(first.layers_to_transform(), vec![0, 1]);
        assert_eq!(first.layers_pattern(), vec!["layers".to_string()]);
        assert_eq!(first.modules_to_save, Some(None));
        assert_eq!(
            first.init_lora_weights,
            Some(InitWeights::Named("gaussian".into()))
        );
        // The file's order: peft takes the first key that matches.
        let keys: Vec<&str> = first
            .rank_pattern
            .as_ref()
            .unwrap()
            .0
            .iter()
            .map(|(k, _)| k.as_str())
            .collect();
        assert_eq!(
            keys,
            ["v_proj", r"model\.layers\.1\.mlp\.down_proj", "q_proj"]
        );
        assert!(first.extra.contains_key("peft_version"));
        assert!(first.extra.contains_key("auto_mapping"));
        let out = tempfile::tempdir().unwrap();
        first.write(out.path()).unwrap();
        let text = std::fs::read_to_string(out.path().join(ADAPTER_CONFIG)).unwrap();
        assert!(text.contains("\"modules_to_save\": null"), "{text}");
        assert!(text.contains("\"peft_version\": \"0.21.2\""), "{text}");
        let again = AdapterConfig::read(out.path()).unwrap();
        assert_eq!(again, first);
    }

    #[test]
    fn written_keys_are_sorted_as_peft_writes_them() {
        // Every field set: written directly it must read as the same text as through a
        // (sorted) JSON object.
        let config = AdapterConfig {
            alpha_pattern: Some(Patterns(vec![("v_proj".into(), 3.0)])),
            base_model_name_or_path: Some(None),
            bias: Some("none".into()),
            encoder_hidden_size: Some(16),
            fan_in_fan_out: Some(false),
            feedforward_modules: Some(StringOrList::List(vec!["down_proj".into()])),
            inference_mode: Some(true),
            init_ia3_weights: Some(true),
            init_lora_weights: Some(InitWeights::Bool(true)),
            layers_pattern: Some(Some(StringOrList::String("layers".into()))),
            layers_to_transform: Some(Some(LayerIndices::List(vec![1]))),
            lora_alpha: Some(8.0),
            lora_bias: Some(false),
            lora_dropout: Some(0.0),
            modules_to_save: Some(None),
            num_attention_heads: Some(2),
            num_layers: Some(2),
            num_transformer_submodules: Some(1),
            num_virtual_tokens: Some(4),
            peft_type: Some("LORA".into()),
            prefix_projection: Some(false),
            prompt_tuning_init: Some("RANDOM".into()),
            prompt_tuning_init_text: Some("hi".into()),
            r: Some(4),
            rank_pattern: Some(Patterns(vec![("q_proj".into(), 2)])),
            revision: Some("main".into()),
            target_modules: Some(StringOrList::List(vec!["q_proj".into()])),
            task_type: Some("CAUSAL_LM".into()),
            token_dim: Some(32),
            tokenizer_name_or_path: Some("tok".into()),
            use_dora: Some(false),
            use_rslora: Some(false),
            extra: Map::new(),
        };
        let direct = serde_json::to_string_pretty(&config).unwrap();
        let sorted = serde_json::to_string_pretty(&serde_json::to_value(&config).unwrap()).unwrap();
        assert_eq!(direct, sorted);
        let ia3 = AdapterConfig {
            peft_type: Some("IA3".into()),
            target_modules: Some(StringOrList::List(vec!["k_proj".into()])),
            modules_to_save: Some(None),
            ..AdapterConfig::default()
        };
        assert_eq!(
            serde_json::to_string_pretty(&ia3).unwrap(),
            "{\n  \"modules_to_save\": null,\n  \"peft_type\": \"IA3\",\n  \"target_modules\": [\n    \"k_proj\"\n  ]\n}"
        );
    }

    #[test]
    fn a_key_of_the_wrong_type_is_named() {
        let e = read_err(r#"{"peft_type": "LORA", "r": "eight", "lora_alpha": 16}"#);
        assert!(
            e.contains(ADAPTER_CONFIG) && e.contains("`r`") && !e.contains('\n'),
            "{e}"
        );
        let e = read_err(r#"{"peft_type": "LORA", "rank_pattern": {"q_proj": "two"}}"#);
        assert!(e.contains("`rank_pattern.q_proj`"), "{e}");
        let e = read_err(r#"{"peft_type": "LORA", "layers_to_transform": [0, -1]}"#);
        assert!(e.contains("`layers_to_transform[1]`"), "{e}");
        let e = read_err(r#"{"peft_type": "IA3", "target_modules": 3}"#);
        assert!(
            e.contains("`target_modules`") && e.contains("a string or a list of strings"),
            "{e}"
        );
        // Not JSON at all.
        let e = read_err(r#"{"peft_type": "LORA", "r": 4"#);
        assert!(e.contains("not valid JSON") && !e.contains('\n'), "{e}");
        // A type manabi does not load, whose keys mean other things (AdaLoRA's masks).
        let e = read_err(r#"{"peft_type": "ADALORA", "rank_pattern": {"q_proj": [true]}}"#);
        assert!(e.contains("not loaded (manabi loads LORA, IA3"), "{e}");
    }

    #[test]
    fn a_bom_is_skipped() {
        let config = AdapterConfig::read(write_text(&format!("\u{feff}{LORA}")).path()).unwrap();
        assert_eq!(config.peft_type.as_deref(), Some("LORA"));
        assert_eq!(config, AdapterConfig::from_json(LORA).unwrap());
    }
}
