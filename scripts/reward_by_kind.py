"""Pairwise accuracy of a manabi reward model on the held-out preference pairs, split into
the pairs whose rejected answer is the chosen sentence with a wrong value (they share a
start of three or more characters: " Nidi lives in Sunven." / " Nidi lives in Jirfield.")
and the rest (refusals and rude replies). Scores come from `manabi score`; ties count
half, as in the trainer's `eval/accuracy`.

    cargo build --release -p manabi-cli
    python3 scripts/reward_by_kind.py runs/reward/checkpoints/step-0000300
"""
import json
import os
import subprocess
import sys

VAL = ["datasets/pref/pref-en.val.jsonl", "datasets/pref/pref-ja.val.jsonl"]


def wrong_value(pair: dict) -> bool:
    return len(os.path.commonprefix([pair["chosen"].strip(), pair["rejected"].strip()])) >= 3


def main() -> None:
    model = sys.argv[1]
    pairs = [json.loads(line) for path in VAL for line in open(path, encoding="utf-8")]
    args = ["target/release/manabi", "score", "--model", model]
    for p in pairs:
        args += ["--prompt", p["prompt"], "--response", p["chosen"],
                 "--prompt", p["prompt"], "--response", p["rejected"]]
    lines = subprocess.run(args, capture_output=True, text=True, check=True).stdout
    scores = [float(line.split("\t")[0]) for line in lines.strip().split("\n")]
    right = {True: 0.0, False: 0.0}
    count = {True: 0, False: 0}
    for i, p in enumerate(pairs):
        chosen, rejected = scores[2 * i], scores[2 * i + 1]
        kind = wrong_value(p)
        right[kind] += 1.0 if chosen > rejected else 0.5 if chosen == rejected else 0.0
        count[kind] += 1
    print(f"all pairs      {sum(right.values()) / len(pairs):.3f} ({len(pairs)})")
    print(f"wrong value    {right[True] / max(1, count[True]):.3f} ({count[True]})")
    print(f"other rejected {right[False] / max(1, count[False]):.3f} ({count[False]})")


if __name__ == "__main__":
    main()
