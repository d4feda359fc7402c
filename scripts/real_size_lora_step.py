"""PyTorch + peft's side of the real-size LoRA step (issue #33, docs/results/real-sizes.md,
"Chunked loss"): loads the folder made by scripts/real_size_model.py in f32 on 2
threads, adds LoRA (r 16, alpha 32, on q, k, v, o) with peft, and times one AdamW step
(forward, loss, backward, update) on 2 rows of 512 tokens, then one evaluation batch of
the same size without gradients, as `manabi sft` does with `train.steps = 1`,
`train.batch_size = 2`, `data.block_size = 512`. Run it under `/usr/bin/time -v` for the
peak RSS, next to manabi on the same folder.

    /usr/bin/time -v python3 scripts/real_size_lora_step.py /tmp/qwen05/model
"""

import sys
import time

import torch
from peft import LoraConfig, get_peft_model
from transformers import AutoModelForCausalLM

torch.set_num_threads(2)
torch.manual_seed(0)
start = time.time()
model = AutoModelForCausalLM.from_pretrained(sys.argv[1], dtype=torch.float32)
model = get_peft_model(model, LoraConfig(r=16, lora_alpha=32, lora_dropout=0.0,
                                         target_modules=["q_proj", "k_proj", "v_proj",
                                                         "o_proj"]))
loaded = time.time()
ids = torch.randint(0, model.config.vocab_size, (2, 512))
opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3)
model.train()
t0 = time.time()
loss = model(input_ids=ids, labels=ids).loss
loss.backward()
opt.step()
opt.zero_grad()
t1 = time.time()
model.eval()
with torch.no_grad():
    val = model(input_ids=ids, labels=ids).loss
t2 = time.time()
print(f"load {loaded - start:.1f} s, step {t1 - t0:.1f} s, eval batch {t2 - t1:.1f} s, "
      f"loss {loss.item():.4f}")
