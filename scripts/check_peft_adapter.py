"""Checks that the real `peft` library loads an adapter folder (or that `transformers` loads a
merged model folder) and computes the logits recorded in an expected.json. Used on what
manabi exports; the fixtures in fixtures/peft/ (scripts/peft_fixtures.py) pass it too:

    python3 scripts/check_peft_adapter.py --base fixtures/models/llama-gqa \\
        --adapter fixtures/peft/llama-lora --expected fixtures/peft/llama-lora/expected.json
    python3 scripts/check_peft_adapter.py --merged /tmp/exports/llama-lora-merged \\
        --expected fixtures/peft/llama-lora/expected.json

Adapter mode (--base and --adapter): the base HF folder is loaded with
AutoModelForCausalLM, the adapter with PeftModel.from_pretrained (adapter_config.json +
adapter_model.safetensors). The adapter's tensors must be exactly the ones peft expects
for its config (same names, same shapes: nothing missing, nothing ignored). Compared with
`logits`.

Merged mode (--merged): a plain HF folder (config.json + model.safetensors) is loaded with
AutoModelForCausalLM; loading must report no missing or mismatched tensors. Compared with
`merged_logits` when expected.json has it, else with `logits`.

expected.json: {"input_ids": [[...], ...], "logits": flat list, "shape": [batch, seq, vocab],
optionally "merged_logits"}; for prompt tuning, "shape" may hold only the real positions
(manabi's exports), and the virtual tokens' logits are then left out. Prints the largest |difference| of the logits and exits 1 when
it exceeds --tol (default 1e-4). Needs torch, transformers, peft, safetensors.
"""

import argparse
import json
import sys
from pathlib import Path

import torch
from safetensors import safe_open
from transformers import AutoModelForCausalLM


def load_causal_lm(folder: Path):
    model, info = AutoModelForCausalLM.from_pretrained(folder, output_loading_info=True)
    for what in ("missing_keys", "mismatched_keys"):
        if info.get(what):
            sys.exit(f"FAIL: {folder}: {what}: {sorted(map(str, info[what]))}")
    if info.get("unexpected_keys"):
        print(f"note: unused by {type(model).__name__}: {sorted(info['unexpected_keys'])}")
    return model


def load_adapter(base: Path, adapter: Path):
    from peft import PeftModel
    from peft.utils import get_peft_model_state_dict

    model = PeftModel.from_pretrained(load_causal_lm(base), adapter)
    # peft only warns about adapter tensors it did not use or did not find: be strict.
    want = {k: tuple(v.shape) for k, v in get_peft_model_state_dict(model).items()}
    with safe_open(adapter / "adapter_model.safetensors", "pt") as f:
        got = {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}
    problems = []
    if set(got) - set(want):
        problems.append(f"not used by peft: {sorted(set(got) - set(want))}")
    if set(want) - set(got):
        problems.append(f"missing: {sorted(set(want) - set(got))}")
    problems += [f"{k}: shape {got[k]}, peft wants {want[k]}"
                 for k in sorted(set(got) & set(want)) if got[k] != want[k]]
    if problems:
        sys.exit(f"FAIL: {adapter}: " + "; ".join(problems))
    config = model.active_peft_config
    print(f"{adapter}: {config.peft_type.value if hasattr(config.peft_type, 'value') else config.peft_type}"
          f", {len(got)} tensors, all used")
    return model


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--base", type=Path, help="base HF folder (adapter mode)")
    ap.add_argument("--adapter", type=Path, help="peft adapter folder (adapter mode)")
    ap.add_argument("--merged", type=Path, help="merged HF folder (merged mode)")
    ap.add_argument("--expected", type=Path, required=True, help="expected.json")
    ap.add_argument("--tol", type=float, default=1e-4, help="largest |Δlogit| allowed")
    args = ap.parse_args()

    expected = json.loads(args.expected.read_text())
    if args.merged is not None:
        if args.base is not None or args.adapter is not None:
            ap.error("--merged takes no --base/--adapter")
        model = load_causal_lm(args.merged)
        key = "merged_logits" if "merged_logits" in expected else "logits"
        what = str(args.merged)
    elif args.base is not None and args.adapter is not None:
        model = load_adapter(args.base, args.adapter)
        key = "logits"
        what = f"{args.base} + {args.adapter}"
    else:
        ap.error("give --base and --adapter, or --merged")

    model.eval()
    ids = torch.tensor(expected["input_ids"])
    with torch.no_grad():
        logits = model(input_ids=ids).logits
    want = torch.tensor(expected[key], dtype=torch.float32)
    shape = expected.get("shape")
    # peft's prompt tuning returns logits for its virtual tokens too (before the real
    # ones); an expected.json made by manabi holds the real positions only.
    if shape is not None and logits.shape[1] == ids.shape[1] + getattr(
            getattr(model, "active_peft_config", None), "num_virtual_tokens", 0) \
            and shape[1] == ids.shape[1] and logits.shape[1] > shape[1]:
        logits = logits[:, -shape[1]:]
    if shape is not None and list(logits.shape) != list(shape):
        sys.exit(f"FAIL: logits shape {list(logits.shape)}, expected {shape}")
    if logits.numel() != want.numel():
        sys.exit(f"FAIL: {logits.numel()} logits {list(logits.shape)}, expected {want.numel()}")
    diff = (logits.flatten().float() - want).abs().max().item()
    print(f"{what} vs {args.expected} [{key}]: logits {list(logits.shape)}, max |Δlogit| {diff:.3g}")
    if not diff <= args.tol:  # also fails on NaN
        sys.exit(f"FAIL: {diff:.3g} > {args.tol}")


if __name__ == "__main__":
    main()
