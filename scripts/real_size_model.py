"""Builds a random model of Qwen2.5-0.5B's shape (d 896, 24 layers, 14 / 2 heads, d_ff
4,864, vocab 151,936, tied; 494 M parameters, 1.98 GB of f32 safetensors) for the
real-size measurements of issue #33 (docs/results/real-sizes.md), with the
tokenizer of fixtures/tokenize/hf-qwen2 beside it. No download.

    python3 scripts/real_size_model.py /tmp/qwen05/model
"""

import shutil
import sys
from pathlib import Path

import torch
from transformers import Qwen2Config, Qwen2ForCausalLM

out = Path(sys.argv[1] if len(sys.argv) > 1 else "/tmp/qwen05/model")
torch.manual_seed(0)
cfg = Qwen2Config(vocab_size=151936, hidden_size=896, intermediate_size=4864,
                  num_hidden_layers=24, num_attention_heads=14, num_key_value_heads=2,
                  max_position_embeddings=32768, tie_word_embeddings=True,
                  rope_theta=1000000.0, use_sliding_window=False)
model = Qwen2ForCausalLM(cfg).eval()
model.generation_config.eos_token_id = None
model.save_pretrained(out, safe_serialization=True, max_shard_size="50GB")
tok = Path(__file__).resolve().parent.parent / "fixtures" / "tokenize" / "hf-qwen2"
for f in ("tokenizer.json", "tokenizer_config.json"):
    shutil.copy(tok / f, out / f)
print(out, sum(p.numel() for p in model.parameters()), "parameters")
