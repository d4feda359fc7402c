//! manabi-finetune: supervised fine-tuning and parameter-efficient methods. Nothing here yet.
