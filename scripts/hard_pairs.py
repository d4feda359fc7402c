"""Writes the wrong-value pairs of the large preference sets to
datasets/pref/pref-hard.train-large.jsonl (git-ignored): the 13,334 of the 40,000 pairs
whose rejected answer is the chosen sentence with another value (" Nidi lives in
Sunven." / " Nidi lives in Jirfield."), the kind a reward model finds hard. Same test as
scripts/reward_by_kind.py; English pairs first, then Japanese, in file order.

    python3 scripts/hard_pairs.py
"""
import gzip
import json
from pathlib import Path

from reward_by_kind import wrong_value

PREF = Path(__file__).resolve().parent.parent / "datasets" / "pref"


def main() -> None:
    out = []
    for lang in ("en", "ja"):
        with gzip.open(PREF / f"pref-{lang}.train-large.jsonl.gz", "rt", encoding="utf-8") as fh:
            out += [line for line in fh if line.strip() and wrong_value(json.loads(line))]
    (PREF / "pref-hard.train-large.jsonl").write_text("".join(out), encoding="utf-8")
    print(f"{len(out)} wrong-value pairs -> {PREF / 'pref-hard.train-large.jsonl'}")


if __name__ == "__main__":
    main()
