"""transformers' side of the real-size generation check (issue #33, docs/results/real-sizes.md
"Real sizes"): loads the folder made by scripts/real_size_model.py in f32 on 2 threads
and generates 16 greedy tokens after an 11-token prompt. Run it under `/usr/bin/time -v`
for the wall time and peak RSS, next to `manabi generate` on the same folder.

    /usr/bin/time -v python3 scripts/real_size_generate.py /tmp/qwen05/model
"""

import sys
import time

import torch
from transformers import AutoModelForCausalLM

torch.set_num_threads(2)
start = time.time()
model = AutoModelForCausalLM.from_pretrained(sys.argv[1], dtype=torch.float32).eval()
ids = torch.tensor([[9, 707, 879, 11, 419, 374, 264, 273, 315, 279, 815]])
with torch.no_grad():
    t1 = time.time()
    model.generate(ids, max_new_tokens=16, min_new_tokens=16, do_sample=False)
    t2 = time.time()
print(f"load {t1 - start:.1f} s, 16 tokens {t2 - t1:.2f} s")
