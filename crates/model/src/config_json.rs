//! Typed reads of one key of a Hugging Face `config.json`, naming the key at fault: a leaf
//! that `config_hf.rs`, `hf_bert.rs` and `hf_t5.rs` share (through `crate::config::{get,
//! opt}`), so the family key tables do not depend back on the module that dispatches to them.

use serde_json::Value;

use crate::error::{ModelError, Result};

/// The value of `key`, `None` when absent or `null`.
pub(crate) fn opt<T: serde::de::DeserializeOwned>(v: &Value, key: &str) -> Result<Option<T>> {
    match v.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(x) => serde_json::from_value(x.clone())
            .map(Some)
            .map_err(|e| ModelError::Config {
                key: key.into(),
                message: e.to_string(),
            }),
    }
}

/// The value of `key`, which must be present.
pub(crate) fn get<T: serde::de::DeserializeOwned>(v: &Value, key: &str) -> Result<T> {
    opt(v, key)?.ok_or_else(|| ModelError::Config {
        key: key.into(),
        message: "missing".into(),
    })
}
