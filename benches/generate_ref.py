"""transformers reference for benches/generate.rs: greedy decoding of the same LLaMA
weights (a folder exported by manabi) with `use_cache` True and False, batch 1.
Argument: one JSON spec (dir, prompt, new_tokens, repeats, threads). Prints JSON: best
seconds of each mode and the new tokens."""

import json
import sys
import time

import torch
import transformers
from transformers import LlamaForCausalLM


def main():
    spec = json.loads(sys.argv[1])
    torch.set_num_threads(spec["threads"])
    model = LlamaForCausalLM.from_pretrained(spec["dir"], dtype=torch.float32).eval()
    gc = model.generation_config
    gc.eos_token_id = gc.bos_token_id = None  # never stop early: exactly new_tokens tokens
    gc.pad_token_id = 0
    ids = torch.tensor([spec["prompt"]])
    n = spec["new_tokens"]

    def run(use_cache, new_tokens=n):
        with torch.inference_mode():
            out = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=new_tokens,
                                 do_sample=False, use_cache=use_cache)
        return out[0, ids.shape[1]:].tolist()

    out = {"transformers": transformers.__version__}
    for use_cache, key in ((True, "cached"), (False, "uncached")):
        run(use_cache, 8)  # warm-up
        best = float("inf")
        for _ in range(spec["repeats"]):
            t = time.perf_counter()
            toks = run(use_cache)
            best = min(best, time.perf_counter() - t)
        assert len(toks) == n, f"generated {len(toks)} tokens, expected {n}"
        out[key + "_s"], out[key] = best, toks
    print(json.dumps(out))


if __name__ == "__main__":
    main()
