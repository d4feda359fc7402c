"""transformers reference for benches/generate.rs: greedy decoding of the same weights (a
folder exported by manabi), batch 1, with the KV cache (the prompt with the first new
token timed apart) and, unless `uncached` is false, without it. Argument: one JSON spec
(dir, prompt, new_tokens, repeats, threads, uncached). Prints JSON: best seconds of each
mode and the new tokens."""

import json
import sys
import time

import torch
import transformers
from transformers import AutoModelForCausalLM


def main():
    spec = json.loads(sys.argv[1])
    torch.set_num_threads(spec["threads"])
    model = AutoModelForCausalLM.from_pretrained(spec["dir"], dtype=torch.float32).eval()
    gc = model.generation_config
    gc.eos_token_id = gc.bos_token_id = None  # never stop early: exactly new_tokens tokens
    gc.pad_token_id = 0
    ids = torch.tensor([spec["prompt"]])
    n = spec["new_tokens"]

    def run(use_cache, new_tokens=n):
        with torch.inference_mode():
            out = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=new_tokens,
                                 min_new_tokens=new_tokens, do_sample=False, use_cache=use_cache)
        return out[0, ids.shape[1]:].tolist()

    def best(use_cache, new_tokens):
        secs = float("inf")
        for _ in range(spec["repeats"]):
            t = time.perf_counter()
            toks = run(use_cache, new_tokens)
            secs = min(secs, time.perf_counter() - t)
        assert len(toks) == new_tokens, f"generated {len(toks)} tokens, expected {new_tokens}"
        return secs, toks

    out = {"transformers": transformers.__version__}
    run(True, 8)  # warm-up
    out["first_s"], _ = best(True, 1)
    out["cached_s"], out["cached"] = best(True, n)
    if spec.get("uncached", True):
        run(False, 8)
        out["uncached_s"], out["uncached"] = best(False, n)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
