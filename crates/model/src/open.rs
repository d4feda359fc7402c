//! The one way a model folder is found and recognised: [`locate`] takes what a user
//! passes as `--model` (a manabi checkpoint, a run folder, or a Hugging Face folder) and
//! says where the model is, in which layout, of which family and with which head. Every
//! loader starts here, so a missing folder, a folder that holds no model and an unknown
//! `model_type` read the same everywhere, and nothing unknown is taken for GPT-2.

use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::config::{Family, ModelConfig};
use crate::error::{ModelError, Result};

pub use crate::config::{HF_MODEL_TYPES, hf_family};

/// The layout a model folder is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// manabi's own: `model.toml` + `model.bpk` (a checkpoint or an exported folder).
    Native,
    /// Hugging Face: `config.json` + safetensors.
    HuggingFace,
}

/// A model folder, found and recognised (nothing loaded yet).
#[derive(Debug, Clone)]
pub struct ModelDir {
    /// The folder that holds the model (a run folder resolves to its newest checkpoint).
    pub dir: PathBuf,
    /// Its layout.
    pub layout: Layout,
    /// Its family.
    pub family: Family,
    /// `architectures[0]` of a Hugging Face `config.json` (e.g.
    /// `LlamaForSequenceClassification`).
    pub architecture: Option<String>,
}

impl ModelDir {
    /// Whether it carries a classification head: a manabi `head.toml` or a Hugging Face
    /// `*ForSequenceClassification` / `*ForTokenClassification` architecture.
    pub fn has_head(&self) -> bool {
        self.dir.join(HEAD_FILE).exists()
            || self.architecture.as_deref().is_some_and(|a| {
                a.ends_with("ForSequenceClassification") || a.ends_with("ForTokenClassification")
            })
    }

    /// Its model config, read from `model.toml` or `config.json` (no weights loaded).
    pub fn config(&self) -> Result<ModelConfig> {
        match self.layout {
            Layout::Native => read_model_toml(&self.dir),
            Layout::HuggingFace => crate::hf::read_config(&self.dir),
        }
    }

    /// Whether it is encoder-decoder or encoder-only (not a causal LM).
    pub fn is_decoder(&self) -> bool {
        matches!(self.family, Family::Gpt2 | Family::Llama)
    }
}

/// Reads and checks `dir/model.toml`; errors name the file.
pub(crate) fn read_model_toml(dir: &Path) -> Result<ModelConfig> {
    let cfg_path = dir.join("model.toml");
    let text = std::fs::read_to_string(&cfg_path).map_err(|e| ModelError::File {
        path: cfg_path.clone(),
        message: e.to_string(),
    })?;
    let cfg: ModelConfig = toml::from_str(&text).map_err(|e| ModelError::Config {
        key: cfg_path.display().to_string(),
        message: e.to_string(),
    })?;
    cfg.validate()?;
    Ok(cfg)
}

/// Name of the file of a manabi task head (written by the fine-tuning crate).
pub const HEAD_FILE: &str = "head.toml";

/// Complete training checkpoints (`step-NNNNNNN` holding `state.json`) directly under
/// `root`, oldest first. Folders being written (`.step-N.tmp`) or deleted (`.step-N.del`)
/// are never listed.
pub fn checkpoints(root: &Path) -> Vec<(usize, PathBuf)> {
    let Ok(entries) = std::fs::read_dir(root) else {
        return Vec::new();
    };
    let mut out: Vec<(usize, PathBuf)> = entries
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let step = name.strip_prefix("step-")?.parse().ok()?;
            e.path()
                .join("state.json")
                .is_file()
                .then(|| (step, e.path()))
        })
        .collect();
    out.sort();
    out
}

/// `RUN@best`: the checkpoint of a run folder with the best validation loss, as its
/// newest checkpoint's `state.json` records it (`best: [loss, step]`; the Trainer never
/// deletes that checkpoint).
fn best_checkpoint(run: &Path) -> Result<PathBuf> {
    let err = |message: String| ModelError::File {
        path: PathBuf::from(format!("{}@best", run.display())),
        message,
    };
    let root = run.join("checkpoints");
    let Some((_, newest)) = checkpoints(&root).pop() else {
        return Err(err(match run.is_dir() {
            true => "not a run folder with a complete checkpoint".into(),
            false => "no such run folder".into(),
        }));
    };
    let state = newest.join("state.json");
    let text = std::fs::read_to_string(&state).map_err(|e| ModelError::File {
        path: state.clone(),
        message: e.to_string(),
    })?;
    let v: Value = serde_json::from_str(&text).map_err(|e| ModelError::File {
        path: state.clone(),
        message: e.to_string(),
    })?;
    let Some(step) = v.pointer("/best/1").and_then(Value::as_u64) else {
        return Err(err(
            "the run has no validation loss yet (no evaluation has run): use the run folder".into(),
        ));
    };
    let dir = root.join(format!("step-{step:07}"));
    if !dir.join("state.json").is_file() {
        return Err(err(format!(
            "its best checkpoint (step {step}) is not there any more"
        )));
    }
    Ok(dir)
}

/// Finds the model `path` names: a folder with `model.toml` (manabi) or `config.json`
/// (Hugging Face), or a run folder, which stands for its newest complete checkpoint (a
/// finished PPO run folder for its `policy/`).
pub fn locate(path: &Path) -> Result<ModelDir> {
    let err = |message: String| ModelError::File {
        path: path.to_path_buf(),
        message,
    };
    if let Some(run) = path.to_str().and_then(|p| p.strip_suffix("@best")) {
        return locate(&best_checkpoint(Path::new(run))?);
    }
    if !path.exists() {
        return Err(err("no such model folder".into()));
    }
    if !path.is_dir() {
        return Err(err(
            "not a folder (a model is a folder with model.toml or config.json)".into(),
        ));
    }
    let native = path.join("model.toml");
    if native.is_file() {
        let text = std::fs::read_to_string(&native).map_err(|e| ModelError::File {
            path: native.clone(),
            message: e.to_string(),
        })?;
        let cfg: ModelConfig = toml::from_str(&text).map_err(|e| ModelError::Config {
            key: native.display().to_string(),
            message: e.message().to_string(),
        })?;
        return Ok(ModelDir {
            dir: path.to_path_buf(),
            layout: Layout::Native,
            family: cfg.family,
            architecture: None,
        });
    }
    let hf = path.join("config.json");
    if hf.is_file() {
        let text = std::fs::read_to_string(&hf).map_err(|e| ModelError::File {
            path: hf.clone(),
            message: e.to_string(),
        })?;
        let text = text.strip_prefix('\u{feff}').unwrap_or(&text);
        let v: Value = serde_json::from_str(text).map_err(|e| ModelError::File {
            path: hf.clone(),
            message: format!("not valid JSON: {e}"),
        })?;
        let family =
            hf_family(v.get("model_type").and_then(Value::as_str)).map_err(|e| match e {
                ModelError::Config { key, message } => ModelError::Config {
                    key: format!("{}: {key}", hf.display()),
                    message,
                },
                other => other,
            })?;
        return Ok(ModelDir {
            dir: path.to_path_buf(),
            layout: Layout::HuggingFace,
            family,
            architecture: v
                .pointer("/architectures/0")
                .and_then(Value::as_str)
                .map(str::to_string),
        });
    }
    // A finished PPO run: its policy (its checkpoints hold the policy and the value
    // model together, for resuming).
    if path.join("policy").join("model.toml").is_file() {
        return locate(&path.join("policy"));
    }
    // A run folder: its newest complete checkpoint.
    let root = path.join("checkpoints");
    if root.is_dir() {
        return match checkpoints(&root).pop() {
            Some((_, newest)) => locate(&newest),
            None => Err(err(
                "a run folder without a complete checkpoint yet (checkpoints/ is empty)".into(),
            )),
        };
    }
    Err(err(
        "holds no model: neither model.toml (manabi), config.json (Hugging Face) nor \
         checkpoints/ (a run folder)"
            .into(),
    ))
}

/// The end-of-sequence ids a model folder declares, as `transformers` reads them:
/// `eos_token_id` of `generation_config.json`, else of `config.json` — an integer or a
/// list of integers. `None` when neither file has one (absent, `null` or `[]`), as in
/// manabi's own `model.toml` folders; a value of another type is an error naming the
/// file and the key.
pub fn eos_ids(dir: &Path) -> Result<Option<Vec<u32>>> {
    token_ids(dir, "eos_token_id")
}

/// The padding id a model folder declares (`pad_token_id`, read as [`eos_ids`]; the
/// first of a list).
pub fn pad_id(dir: &Path) -> Result<Option<u32>> {
    Ok(token_ids(dir, "pad_token_id")?.and_then(|ids| ids.first().copied()))
}

/// `key` (a token id or a list of them) of `generation_config.json`, else of
/// `config.json`, in `dir`.
pub fn token_ids(dir: &Path, key: &str) -> Result<Option<Vec<u32>>> {
    for file in ["generation_config.json", "config.json"] {
        let path = dir.join(file);
        if !path.is_file() {
            continue;
        }
        let err = |message: String| ModelError::File {
            path: path.clone(),
            message,
        };
        let text = std::fs::read_to_string(&path).map_err(|e| err(e.to_string()))?;
        let text = text.strip_prefix('\u{feff}').unwrap_or(&text);
        let v: Value =
            serde_json::from_str(text).map_err(|e| err(format!("not valid JSON: {e}")))?;
        let Some(obj) = v.as_object() else {
            return Err(err("not a JSON object".into()));
        };
        let bad = |found: &Value| {
            err(format!(
                "`{key}` must be a token id (an integer ≥ 0) or a list of them, not {found}"
            ))
        };
        let id = |x: &Value| {
            x.as_u64()
                .and_then(|n| u32::try_from(n).ok())
                .ok_or_else(|| bad(x))
        };
        let ids = match obj.get(key) {
            None | Some(Value::Null) => continue,
            Some(Value::Array(list)) => list.iter().map(id).collect::<Result<Vec<_>>>()?,
            Some(x) => vec![id(x)?],
        };
        if !ids.is_empty() {
            return Ok(Some(ids));
        }
    }
    Ok(None)
}

/// Refuses a tokenizer (at `path`) that can produce ids the model has no embedding for:
/// such ids would reach an embedding lookup out of range.
pub fn check_tokenizer(tokenizer_vocab: usize, path: &Path, model_vocab: usize) -> Result<()> {
    if tokenizer_vocab > model_vocab {
        return Err(ModelError::File {
            path: path.to_path_buf(),
            message: format!(
                "the tokenizer has {tokenizer_vocab} tokens but the model embeds {model_vocab}: \
                 not this model's tokenizer"
            ),
        });
    }
    Ok(())
}

/// `read` (a head's tensor read as `labels` outputs), with a tensor of `head` (`score`,
/// `classifier`) of another number of outputs turned into an error naming the key of
/// `dir/config.json` that set `labels`: `id2label` (or `num_labels`, or transformers'
/// default of 2 when neither is there).
pub(crate) fn head_shape<T>(read: Result<T>, dir: &Path, head: &str, labels: usize) -> Result<T> {
    read.map_err(|e| match e {
        ModelError::Shape { name, found, .. }
            if name.starts_with(&format!("{head}."))
                && found.first().is_some_and(|&n| n != labels) =>
        {
            let path = dir.join("config.json");
            let v: Option<serde_json::Value> = std::fs::read_to_string(&path)
                .ok()
                .and_then(|t| serde_json::from_str(t.trim_start_matches('\u{feff}')).ok());
            let has = |key: &str| v.as_ref().is_some_and(|v| !v[key].is_null());
            let (key, says) = if has("id2label") {
                ("id2label", format!("names {labels} labels"))
            } else if has("num_labels") {
                ("num_labels", format!("is {labels}"))
            } else {
                (
                    "id2label",
                    format!("is missing, so transformers' default of {labels} labels applies"),
                )
            };
            ModelError::Config {
                key: format!("{}: {key}", path.display()),
                message: format!(
                    "{says}, but the head `{name}` has {} outputs: give one label per output \
                     in `id2label`",
                    found[0]
                ),
            }
        }
        other => other,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folders_are_recognised_or_refused_with_the_reason() {
        let tmp = tempfile::tempdir().unwrap();
        let missing = tmp.path().join("nope");
        let e = locate(&missing).unwrap_err().to_string();
        assert!(e.ends_with("nope: no such model folder"), "{e}");

        let empty = tmp.path().join("empty");
        std::fs::create_dir(&empty).unwrap();
        let e = locate(&empty).unwrap_err().to_string();
        assert!(e.contains("empty: holds no model"), "{e}");

        let hf = tmp.path().join("hf");
        std::fs::create_dir(&hf).unwrap();
        std::fs::write(hf.join("config.json"), r#"{"model_type": "mamba"}"#).unwrap();
        let e = locate(&hf).unwrap_err().to_string();
        assert!(
            e.contains(
                "config.json: model_type`: unsupported `mamba` (supported: gpt2, llama, mistral, qwen2, qwen3, phi3, gpt_neox, gemma2, gemma3_text, stablelm, olmo2, bert, t5)"
            ),
            "{e}"
        );
        std::fs::write(hf.join("config.json"), "{}").unwrap();
        let e = locate(&hf).unwrap_err().to_string();
        assert!(e.contains("model_type`: missing"), "{e}");
        std::fs::write(
            hf.join("config.json"),
            "\u{feff}{\"model_type\": \"llama\", \"architectures\": [\"LlamaForSequenceClassification\"]}",
        )
        .unwrap();
        let m = locate(&hf).unwrap();
        assert_eq!((m.family, m.layout), (Family::Llama, Layout::HuggingFace));
        assert!(m.has_head() && m.is_decoder());

        // A run folder stands for its newest complete checkpoint.
        let run = tmp.path().join("run");
        let ckpts = run.join("checkpoints");
        std::fs::create_dir_all(&ckpts).unwrap();
        let e = locate(&run).unwrap_err().to_string();
        assert!(e.contains("without a complete checkpoint yet"), "{e}");
        let toml = toml::to_string(&ModelConfig::empty(Family::Bert)).unwrap();
        for step in ["step-0000004", "step-0000008", ".step-0000012.tmp"] {
            let d = ckpts.join(step);
            std::fs::create_dir_all(&d).unwrap();
            std::fs::write(d.join("model.toml"), &toml).unwrap();
            std::fs::write(d.join("state.json"), "{}").unwrap();
        }
        let m = locate(&run).unwrap();
        assert_eq!(m.dir, ckpts.join("step-0000008"));
        assert_eq!((m.family, m.layout), (Family::Bert, Layout::Native));
        assert!(!m.is_decoder() && !m.has_head());

        // RUN@best: the checkpoint with the best validation loss.
        let e = locate(&PathBuf::from(format!("{}@best", run.display()))).unwrap_err();
        assert!(e.to_string().contains("no validation loss yet"), "{e}");
        std::fs::write(
            ckpts.join("step-0000008/state.json"),
            r#"{"best": [1.25, 4]}"#,
        )
        .unwrap();
        let best = locate(&PathBuf::from(format!("{}@best", run.display()))).unwrap();
        assert_eq!(best.dir, ckpts.join("step-0000004"));
        std::fs::remove_file(ckpts.join("step-0000004/state.json")).unwrap();
        let e = locate(&PathBuf::from(format!("{}@best", run.display()))).unwrap_err();
        assert!(e.to_string().contains("step 4) is not there"), "{e}");
        std::fs::write(ckpts.join("step-0000004/state.json"), "{}").unwrap();

        // A finished PPO run stands for its policy, not its policy + value checkpoints.
        std::fs::create_dir_all(run.join("policy")).unwrap();
        std::fs::write(run.join("policy/model.toml"), &toml).unwrap();
        assert_eq!(locate(&run).unwrap().dir, run.join("policy"));
    }

    #[test]
    fn eos_ids_come_from_generation_config_then_config() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        let write = |file: &str, text: &str| std::fs::write(dir.join(file), text).unwrap();
        // No files (a manabi folder): none.
        assert_eq!(eos_ids(dir).unwrap(), None);
        assert_eq!(pad_id(dir).unwrap(), None);
        // config.json alone: an int.
        write(
            "config.json",
            r#"{"model_type": "llama", "eos_token_id": 2}"#,
        );
        assert_eq!(eos_ids(dir).unwrap(), Some(vec![2]));
        // generation_config.json wins; a list is kept in order.
        write(
            "generation_config.json",
            "\u{feff}{\"eos_token_id\": [7, 2], \"pad_token_id\": [0, 5]}",
        );
        assert_eq!(eos_ids(dir).unwrap(), Some(vec![7, 2]));
        assert_eq!(pad_id(dir).unwrap(), Some(0));
        // null, an empty list or a missing key fall through to config.json.
        for g in [r#"{"eos_token_id": null}"#, r#"{"eos_token_id": []}"#, "{}"] {
            write("generation_config.json", g);
            assert_eq!(eos_ids(dir).unwrap(), Some(vec![2]), "{g}");
        }
        write(
            "config.json",
            r#"{"model_type": "llama", "eos_token_id": null}"#,
        );
        assert_eq!(eos_ids(dir).unwrap(), None);
        assert_eq!(pad_id(dir).unwrap(), None);
    }

    #[test]
    fn a_wrong_eos_id_is_one_line_naming_file_and_key() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        for (file, text, found) in [
            (
                "generation_config.json",
                r#"{"eos_token_id": "</s>"}"#,
                "\"</s>\"",
            ),
            ("generation_config.json", r#"{"eos_token_id": -1}"#, "-1"),
            (
                "generation_config.json",
                r#"{"eos_token_id": [1, 2.5]}"#,
                "2.5",
            ),
            (
                "generation_config.json",
                r#"{"eos_token_id": [1, null]}"#,
                "null",
            ),
            ("config.json", r#"{"eos_token_id": true}"#, "true"),
            (
                "config.json",
                r#"{"eos_token_id": 4294967296}"#,
                "4294967296",
            ),
        ] {
            let _ = std::fs::remove_file(dir.join("generation_config.json"));
            std::fs::write(dir.join(file), text).unwrap();
            let e = eos_ids(dir).unwrap_err().to_string();
            assert_eq!(
                e,
                format!(
                    "{}: `eos_token_id` must be a token id (an integer ≥ 0) or a list of them, not {found}",
                    dir.join(file).display()
                ),
                "{text}"
            );
            assert_eq!(e.lines().count(), 1);
        }
        std::fs::write(dir.join("generation_config.json"), "{oops").unwrap();
        let e = eos_ids(dir).unwrap_err().to_string();
        assert!(e.contains("generation_config.json: not valid JSON"), "{e}");
        std::fs::write(dir.join("generation_config.json"), "[1]").unwrap();
        let e = eos_ids(dir).unwrap_err().to_string();
        assert!(
            e.ends_with("generation_config.json: not a JSON object"),
            "{e}"
        );
    }

    #[test]
    fn a_tokenizer_larger_than_the_embedding_is_refused() {
        check_tokenizer(100, Path::new("t.json"), 100).unwrap();
        let e = check_tokenizer(101, Path::new("t.json"), 100)
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            "t.json: the tokenizer has 101 tokens but the model embeds 100: not this model's tokenizer"
        );
    }
}
