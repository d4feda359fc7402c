//! manabi-finetune
