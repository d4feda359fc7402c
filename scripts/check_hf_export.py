"""Checks that `transformers` loads a BERT or T5 folder written by manabi's
`export_bert_hf` / `export_t5_hf` and computes what it computed for a fixture.

    MANABI_KEEP_EXPORTS=/tmp/exports cargo test --release -p manabi-model --test encoder_export
    python3 scripts/check_hf_export.py /tmp/exports/bert bert
    python3 scripts/check_hf_export.py /tmp/exports/t5-v1_1 t5-v1_1

FOLDER is the export, FIXTURE a folder name in fixtures/models/ whose expected.json holds
the inputs and the outputs of the original transformers model (see
scripts/encoder_fixtures.py). The class comes from `architectures` in the export's
config.json, loaded through the matching Auto class; loading must report no missing
tensors (unused ones are listed). Compared: logits (and T5's loss and greedy tokens); for a bare `BertModel`, the
hidden states and, when the export has a pooler, the pooled states. Prints the largest
absolute difference and exits 1 when it exceeds 1e-4. Not run by `cargo test`.
"""

import argparse
import json
import sys
from pathlib import Path

import torch
from safetensors import safe_open
from transformers import (
    AutoConfig,
    AutoModel,
    AutoModelForMaskedLM,
    AutoModelForSeq2SeqLM,
    AutoModelForSequenceClassification,
    AutoModelForTokenClassification,
)

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "models"
TOLERANCE = 1e-4

AUTO = {
    "BertModel": AutoModel,
    "BertForMaskedLM": AutoModelForMaskedLM,
    "BertForSequenceClassification": AutoModelForSequenceClassification,
    "BertForTokenClassification": AutoModelForTokenClassification,
    "T5ForConditionalGeneration": AutoModelForSeq2SeqLM,
}


def max_diff(got: torch.Tensor, want: list) -> float:
    want = torch.tensor(want, dtype=torch.float32)
    if got.numel() != want.numel():
        sys.exit(f"shape mismatch: {tuple(got.shape)} vs {want.numel()} values")
    return (got.flatten().float() - want).abs().max().item()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("folder", type=Path, help="the exported folder")
    ap.add_argument("fixture", help="fixture name in fixtures/models/ (bert, t5-v1_0, ...)")
    args = ap.parse_args()

    expected = json.loads((FIXTURES / args.fixture / "expected.json").read_text())
    config = AutoConfig.from_pretrained(args.folder)
    arch = config.architectures[0]
    if arch not in AUTO:
        sys.exit(f"unsupported architectures {config.architectures}")
    kwargs = {}
    if arch == "BertModel":
        # transformers adds a pooler by default: only ask for one when the export has it.
        with safe_open(args.folder / "model.safetensors", "pt") as f:
            kwargs["add_pooling_layer"] = "pooler.dense.weight" in f.keys()
    model, info = AUTO[arch].from_pretrained(args.folder, output_loading_info=True, **kwargs)
    model.eval()
    for what in ("missing_keys", "mismatched_keys"):
        if info.get(what):
            sys.exit(f"{arch}: {what}: {sorted(info[what])}")
    if info.get("unexpected_keys"):
        # e.g. the pooler of a masked-LM export whose encoder had one: kept, not used.
        print(f"note: unused by {arch}: {sorted(info['unexpected_keys'])}")

    diffs = {}
    with torch.no_grad():
        if config.model_type == "bert":
            x = {k: torch.tensor(expected[k]) for k in ("input_ids", "attention_mask", "token_type_ids")}
            out = model(**x)
            if arch == "BertModel":
                diffs["hidden"] = max_diff(out.last_hidden_state, expected["hidden"])
                if kwargs["add_pooling_layer"]:
                    diffs["pooled"] = max_diff(out.pooler_output, expected["pooled"])
            else:
                diffs["logits"] = max_diff(out.logits, expected["logits"])
        else:
            x = {k: torch.tensor(expected[k]) for k in ("input_ids", "attention_mask", "labels")}
            out = model(**x)
            diffs["logits"] = max_diff(out.logits, expected["logits"])
            diffs["loss"] = abs(out.loss.item() - expected["loss"])
            # use_cache=False as in encoder_fixtures.py (transformers 5.23 sizes its cache
            # by `num_layers`).
            gen = model.generate(
                input_ids=x["input_ids"], attention_mask=x["attention_mask"],
                max_new_tokens=len(expected["generated"][0]) - 1, do_sample=False,
                num_beams=1, use_cache=False)
            if gen.tolist() != expected["generated"]:
                sys.exit(f"greedy tokens differ: {gen.tolist()} vs {expected['generated']}")
            diffs["generated"] = 0.0

    worst = max(diffs.values())
    report = ", ".join(f"{k} {v:.3g}" for k, v in diffs.items())
    print(f"{args.folder} ({arch}) vs {args.fixture}: max |diff| {report}")
    if worst > TOLERANCE:
        sys.exit(f"FAIL: {worst:.3g} > {TOLERANCE}")


if __name__ == "__main__":
    main()
