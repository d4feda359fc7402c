//! Exports of fine-tuned decoders: merged Hugging Face weights plus what `transformers`
//! needs to use them as chat models (`tokenizer_config.json` with the special tokens and
//! the Jinja `chat_template`, `generation_config.json` with EOS and pad), or the LoRA
//! adapter alone in the PEFT format.

use std::path::Path;

use manabi_model::DecoderLm;
use manabi_tokenize::TextTokenizer;
use serde_json::{Map, Value, json};

use crate::error::Result;
use crate::sft::Specials;
use crate::sft::template::HF_CHAT_TEMPLATE;

/// Writes `model` (LoRA merged) in the Hugging Face layout with the tokenizer and the
/// chat files.
pub fn export_hf_chat(model: DecoderLm, tokenizer: &TextTokenizer, dir: &Path) -> Result<()> {
    let model = crate::load::merged(model);
    manabi_model::export_hf(&model, dir, Some(tokenizer.path()))?;
    write_chat_files(dir, tokenizer, model.config().max_positions)
}

/// `tokenizer_config.json` and `generation_config.json` for `tokenizer`; the same BOS /
/// EOS / pad ids go into `config.json` when `dir` has one. The configuration names
/// `PreTrainedTokenizerFast`, so transformers uses tokenizer.json as is: for a tokenizer
/// whose class rebuilt its pipeline (`TextTokenizer::hf_class`), the tokenizer.json in
/// `dir` is replaced by the pipeline manabi encoded with. Named special tokens are the
/// tokenizer's own (its tokenizer_config.json), else manabi's `<bos>`, `<unk>`, `<mask>`.
pub fn write_chat_files(dir: &Path, tokenizer: &TextTokenizer, max_len: usize) -> Result<()> {
    let specials = Specials::of(tokenizer)?;
    let name = |id: u32| tokenizer.id_to_token(id).map_or(Value::Null, Value::String);
    let mut cfg = Map::new();
    cfg.insert("tokenizer_class".into(), json!("PreTrainedTokenizerFast"));
    cfg.insert("eos_token".into(), name(specials.eos));
    cfg.insert("pad_token".into(), name(specials.pad));
    for (key, tok) in [
        ("bos_token", "<bos>"),
        ("unk_token", "<unk>"),
        ("mask_token", "<mask>"),
    ] {
        match tokenizer.special(key) {
            Some((own, _)) => {
                cfg.insert(key.into(), json!(own));
            }
            None if tokenizer.token_id(tok).is_some() => {
                cfg.insert(key.into(), json!(tok));
            }
            None => {}
        }
    }
    if tokenizer.hf_class() != "TokenizersBackend" {
        let text = tokenizer
            .inner()
            .to_string(true)
            .map_err(|e| crate::FinetuneError::io(dir.join("tokenizer.json"), e))?;
        manabi_tokenize::write_atomic(&dir.join("tokenizer.json"), text.as_bytes())?;
    }
    cfg.insert("model_max_length".into(), json!(max_len));
    cfg.insert("clean_up_tokenization_spaces".into(), json!(false));
    if specials.end_of_turn.is_some() {
        cfg.insert("chat_template".into(), json!(HF_CHAT_TEMPLATE));
    }
    let write = |file: &str, v: &Value| -> Result<()> {
        let text = serde_json::to_string_pretty(v)
            .map_err(|e| crate::FinetuneError::io(dir.join(file), e))?;
        manabi_tokenize::write_atomic(&dir.join(file), text.as_bytes())?;
        Ok(())
    };
    write("tokenizer_config.json", &Value::Object(cfg))?;
    let mut gen_cfg = Map::new();
    let stops = specials.stop_ids();
    gen_cfg.insert(
        "eos_token_id".into(),
        if stops.len() == 1 {
            json!(stops[0])
        } else {
            json!(stops)
        },
    );
    gen_cfg.insert("pad_token_id".into(), json!(specials.pad));
    if let Some(bos) = tokenizer.bos_id().or_else(|| tokenizer.token_id("<bos>")) {
        gen_cfg.insert("bos_token_id".into(), json!(bos));
    }
    write("generation_config.json", &Value::Object(gen_cfg.clone()))?;
    // `config.json` carries the same ids (`null` BOS when there is none): transformers
    // reads them there too, and would otherwise fall back to the family's defaults.
    let path = dir.join("config.json");
    if path.is_file() {
        let text =
            std::fs::read_to_string(&path).map_err(|e| crate::FinetuneError::io(&path, e))?;
        let mut config: Value =
            serde_json::from_str(&text).map_err(|e| crate::FinetuneError::io(&path, e))?;
        if let Some(obj) = config.as_object_mut() {
            for key in ["bos_token_id", "eos_token_id", "pad_token_id"] {
                obj.insert(key.into(), gen_cfg.get(key).cloned().unwrap_or(Value::Null));
            }
            write("config.json", &config)?;
        }
    }
    Ok(())
}
