"""Checks that `transformers` loads a decoder folder written by `manabi export --format hf`
and computes what the original model of a fixture computed (issue #30: export loaded by
transformers with the same logits).

    manabi export --model fixtures/models/qwen3 --format hf --out /tmp/qwen3-export
    python3 scripts/check_decoder_export.py /tmp/qwen3-export qwen3

FIXTURE is a folder name in fixtures/models/ whose expected.json holds `input_ids` and
`logits` (and, for the Qwen fixtures, `greedy_prompt` / `greedy`). Loading must report no
missing tensors. Prints the largest absolute logit difference and exits 1 above 1e-4 or
when the greedy tokens differ. Not run by `cargo test`.
"""

import json
import sys
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "models"


def main(folder, fixture):
    expected = json.loads((FIXTURES / fixture / "expected.json").read_text())
    model, info = AutoModelForCausalLM.from_pretrained(folder, output_loading_info=True)
    if info["missing_keys"]:
        sys.exit(f"missing tensors: {info['missing_keys']}")
    model.eval()
    ids = torch.tensor(expected["input_ids"])
    with torch.no_grad():
        logits = model(ids).logits
    want = torch.tensor(expected["logits"]).reshape(logits.shape)
    diff = (logits - want).abs().max().item()
    print(f"{type(model).__name__}: max |Δlogit| {diff:.2e}")
    ok = diff <= 1e-4
    if "greedy" in expected:
        prompt = torch.tensor([expected["greedy_prompt"]])
        out = model.generate(prompt, max_new_tokens=len(expected["greedy"]), do_sample=False)
        tokens = out[0, prompt.shape[1]:].tolist()
        print(f"greedy {tokens} (expected {expected['greedy']})")
        ok = ok and tokens == expected["greedy"]
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
