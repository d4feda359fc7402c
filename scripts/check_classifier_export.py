"""Checks that `transformers` gives a manabi classifier export the scores manabi gives:
a `*ForSequenceClassification` or `*ForTokenClassification` folder (from `manabi
export`, or from the NER test, which leaves one in target/tmp/token-export) with an
expected.json of `{"input_ids": [[...]], "logits": [flat float32]}` computed by manabi.

    cargo test --release -p manabi-tasks --test tasks an_ner_tagger
    python3 scripts/check_classifier_export.py --export target/tmp/token-export

Exits 1 when a logit differs by more than --tol (default 1e-4).
"""

import argparse
import json
import sys
from pathlib import Path

import torch
from transformers import AutoModelForSequenceClassification, AutoModelForTokenClassification


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--export", required=True, type=Path)
    ap.add_argument("--expected", type=Path, help="default: EXPORT/expected.json")
    ap.add_argument("--tol", type=float, default=1e-4)
    args = ap.parse_args()
    expected = json.loads((args.expected or args.export / "expected.json").read_text())
    arch = json.loads((args.export / "config.json").read_text())["architectures"][0]
    auto = (AutoModelForTokenClassification if arch.endswith("ForTokenClassification")
            else AutoModelForSequenceClassification)
    model = auto.from_pretrained(args.export).eval()
    with torch.no_grad():
        got = model(input_ids=torch.tensor(expected["input_ids"])).logits.flatten()
    want = torch.tensor(expected["logits"])
    worst = (got - want).abs().max().item()
    print(f"{args.export} ({arch}, labels {model.config.id2label}): "
          f"{got.numel()} logits, max |Δlogit| {worst:.2e}")
    sys.exit(0 if worst <= args.tol else 1)


if __name__ == "__main__":
    main()
