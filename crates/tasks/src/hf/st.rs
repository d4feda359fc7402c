//! sentence-transformers folders: a `modules.json` beside the transformer's files lists
//! what `SentenceTransformer(dir).encode(texts)` runs after it — a `Pooling` module (its
//! `config.json` says CLS or mean), optionally `Normalize` (unit vectors) — and
//! `sentence_bert_config.json` sets the tokens read (`max_seq_length`, special tokens
//! included) and lower-casing (`do_lower_case`). Any other module (`Dense`, …) or pooling
//! mode (max, mean of square roots, weighted mean, last token, several at once) is refused
//! in one line rather than embedded differently.

use std::path::Path;

use manabi_finetune::error::{FinetuneError, Result};
use serde_json::Value;

use crate::pooling::Pooling;

/// What a sentence-transformers folder does after its transformer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Modules {
    /// Its Pooling module's mode.
    pub(crate) pooling: Pooling,
    /// A `Normalize` module: vectors scaled to unit length.
    pub(crate) normalize: bool,
    /// `max_seq_length`: tokens read, special tokens included.
    pub(crate) max_seq_length: Option<usize>,
    /// `do_lower_case`: texts lower-cased before tokenisation.
    pub(crate) lower: bool,
}

const PACKAGE: &str = "sentence_transformers.";

fn bad(path: &Path, message: impl std::fmt::Display) -> FinetuneError {
    FinetuneError::io(path, message.to_string())
}

fn read_object(path: &Path) -> Result<Value> {
    let text = std::fs::read_to_string(path).map_err(|e| FinetuneError::io(path, e))?;
    let text = text.strip_prefix('\u{feff}').unwrap_or(&text);
    let v: Value =
        serde_json::from_str(text).map_err(|e| bad(path, format!("not valid JSON: {e}")))?;
    Ok(v)
}

/// The modules of the sentence-transformers folder `dir`; `None` without `modules.json`.
pub(crate) fn read(dir: &Path) -> Result<Option<Modules>> {
    let path = dir.join("modules.json");
    if !path.is_file() {
        return Ok(None);
    }
    let list = read_object(&path)?;
    let Some(list) = list.as_array() else {
        return Err(bad(&path, "not a list of modules"));
    };
    let mut pooling = None;
    let mut normalize = false;
    for (i, m) in list.iter().enumerate() {
        let ty = m["type"].as_str().unwrap_or_default();
        let sub = m["path"].as_str().unwrap_or_default();
        // `sentence_transformers.models.Pooling` (2.x–5.x) or the module path of 6.x
        // (`sentence_transformers.sentence_transformer.modules.pooling.Pooling`).
        let short = ty.rsplit('.').next().unwrap_or(ty);
        if !ty.starts_with(PACKAGE) {
            return Err(bad(
                &path,
                format!("module {i} ({ty:?}) is not a sentence-transformers module"),
            ));
        }
        match (i, short) {
            (0, "Transformer") => {
                if !sub.is_empty() {
                    return Err(bad(
                        &path,
                        format!(
                            "module 0 (Transformer) lives in {sub:?}; manabi reads the \
                             transformer from the folder itself"
                        ),
                    ));
                }
            }
            (0, _) => {
                return Err(bad(
                    &path,
                    format!("module 0 is {ty:?}, not the Transformer manabi runs"),
                ));
            }
            (_, "Pooling") if pooling.is_none() => {
                pooling = Some(pooling_mode(&dir.join(sub).join("config.json"))?);
            }
            (_, "Normalize") => normalize = true,
            _ => {
                return Err(bad(
                    &path,
                    format!(
                        "module {i} ({ty}) is not reproduced: manabi runs Transformer, \
                         Pooling (CLS or mean) and Normalize"
                    ),
                ));
            }
        }
    }
    let Some(pooling) = pooling else {
        return Err(bad(&path, "no Pooling module"));
    };
    let (mut max_seq_length, mut lower) = (None, false);
    let cfg_path = dir.join("sentence_bert_config.json");
    if cfg_path.is_file() {
        let cfg = read_object(&cfg_path)?;
        match &cfg["max_seq_length"] {
            Value::Null => {}
            v => {
                max_seq_length = Some(v.as_u64().filter(|&n| n >= 2).ok_or_else(|| {
                    bad(
                        &cfg_path,
                        format!("`max_seq_length` {v} is not a length ≥ 2"),
                    )
                })? as usize);
            }
        }
        match &cfg["do_lower_case"] {
            Value::Null => {}
            Value::Bool(b) => lower = *b,
            v => {
                return Err(bad(
                    &cfg_path,
                    format!("`do_lower_case` must be true or false, not {v}"),
                ));
            }
        }
    }
    Ok(Some(Modules {
        pooling,
        normalize,
        max_seq_length,
        lower,
    }))
}

/// The one pooling mode a Pooling module's `config.json` turns on: CLS or mean — as
/// 6.x writes it (`"pooling_mode": "cls"`, or a list) or as earlier versions did (one
/// `pooling_mode_*` flag; none at all means mean, as sentence-transformers reads it).
fn pooling_mode(path: &Path) -> Result<Pooling> {
    let cfg = read_object(path)?;
    let named = |name: &str| match name {
        "cls" => Ok(Pooling::Cls),
        "mean" => Ok(Pooling::Mean),
        other => Err(bad(
            path,
            format!("`pooling_mode` {other:?}: manabi pools by cls or mean only"),
        )),
    };
    match &cfg["pooling_mode"] {
        Value::Null => {}
        Value::String(m) => return named(m),
        Value::Array(list) => {
            return match list.as_slice() {
                [Value::String(m)] => named(m),
                _ => Err(bad(
                    path,
                    format!(
                        "`pooling_mode` {}: manabi pools one way",
                        cfg["pooling_mode"]
                    ),
                )),
            };
        }
        v => {
            return Err(bad(
                path,
                format!("`pooling_mode` must be a string, not {v}"),
            ));
        }
    }
    let on = |key: &str| cfg[key].as_bool().unwrap_or(false);
    let modes = [
        ("pooling_mode_cls_token", Some(Pooling::Cls)),
        ("pooling_mode_mean_tokens", Some(Pooling::Mean)),
        ("pooling_mode_max_tokens", None),
        ("pooling_mode_mean_sqrt_len_tokens", None),
        ("pooling_mode_weightedmean_tokens", None),
        ("pooling_mode_lasttoken", None),
    ];
    let set: Vec<&(&str, Option<Pooling>)> = modes.iter().filter(|(k, _)| on(k)).collect();
    match set.as_slice() {
        [(_, Some(p))] => Ok(*p),
        [(key, None)] => Err(bad(
            path,
            format!("`{key}`: manabi pools by CLS or mean tokens only"),
        )),
        [] => Ok(Pooling::Mean),
        many => Err(bad(
            path,
            format!(
                "{} pooling modes at once ({}): manabi pools one way",
                many.len(),
                many.iter().map(|(k, _)| *k).collect::<Vec<_>>().join(", ")
            ),
        )),
    }
}

/// `v` scaled to unit length (as `torch.nn.functional.normalize`, norm at least 1e-12).
pub(crate) fn normalize(v: &mut [f32]) {
    let norm = v.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>().sqrt();
    let scale = 1.0 / norm.max(1e-12);
    for x in v {
        *x = (f64::from(*x) * scale) as f32;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn folder(modules: Value, pooling: Value, cfg: Option<Value>) -> tempfile::TempDir {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("modules.json"), modules.to_string()).unwrap();
        std::fs::create_dir(d.path().join("1_Pooling")).unwrap();
        std::fs::write(d.path().join("1_Pooling/config.json"), pooling.to_string()).unwrap();
        if let Some(cfg) = cfg {
            std::fs::write(d.path().join("sentence_bert_config.json"), cfg.to_string()).unwrap();
        }
        d
    }

    fn modules(extra: &[(&str, &str)]) -> Value {
        let mut list = vec![
            json!({"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"}),
            json!({"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"}),
        ];
        for (i, (path, ty)) in extra.iter().enumerate() {
            list.push(
                json!({"idx": i + 2, "name": (i + 2).to_string(), "path": path,
                              "type": format!("sentence_transformers.models.{ty}")}),
            );
        }
        Value::Array(list)
    }

    #[test]
    fn modules_are_read_and_the_rest_refused() {
        let cls = json!({"pooling_mode_cls_token": true, "pooling_mode_mean_tokens": false});
        let d = folder(
            modules(&[("2_Normalize", "Normalize")]),
            cls.clone(),
            Some(json!({"max_seq_length": 12, "do_lower_case": true})),
        );
        assert_eq!(
            read(d.path()).unwrap(),
            Some(Modules {
                pooling: Pooling::Cls,
                normalize: true,
                max_seq_length: Some(12),
                lower: true
            })
        );
        let d = folder(
            modules(&[]),
            json!({"pooling_mode_mean_tokens": true}),
            None,
        );
        let m = read(d.path()).unwrap().unwrap();
        assert_eq!(
            (m.pooling, m.normalize, m.max_seq_length),
            (Pooling::Mean, false, None)
        );

        let err = |m: Value, p: Value| read(folder(m, p, None).path()).unwrap_err().to_string();
        let e = err(modules(&[("2_Dense", "Dense")]), cls.clone());
        assert!(
            e.contains("module 2 (sentence_transformers.models.Dense) is not reproduced"),
            "{e}"
        );
        let e = err(modules(&[]), json!({"pooling_mode_max_tokens": true}));
        assert!(
            e.contains("`pooling_mode_max_tokens`: manabi pools by CLS or mean"),
            "{e}"
        );
        let e = err(
            modules(&[]),
            json!({"pooling_mode_cls_token": true, "pooling_mode_mean_tokens": true}),
        );
        assert!(e.contains("2 pooling modes at once"), "{e}");
        let e = err(modules(&[]), json!({"pooling_mode": "lasttoken"}));
        assert!(e.contains("`pooling_mode` \"lasttoken\""), "{e}");
        let six = folder(modules(&[]), json!({"pooling_mode": "cls"}), None);
        assert_eq!(read(six.path()).unwrap().unwrap().pooling, Pooling::Cls);
        let none = folder(modules(&[]), json!({"word_embedding_dimension": 8}), None);
        assert_eq!(read(none.path()).unwrap().unwrap().pooling, Pooling::Mean);
        let e = err(json!({"a": 1}), cls);
        assert!(e.contains("not a list of modules"), "{e}");
        assert!(read(tempfile::tempdir().unwrap().path()).unwrap().is_none());
    }

    #[test]
    fn normalised_vectors_have_unit_length() {
        let mut v = [3.0f32, 4.0];
        normalize(&mut v);
        assert_eq!(v, [0.6, 0.8]);
        let mut zero = [0.0f32; 3];
        normalize(&mut zero);
        assert_eq!(zero, [0.0; 3]);
    }
}
