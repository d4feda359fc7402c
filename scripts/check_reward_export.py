"""Checks that `transformers` scores a manabi reward-model export (a
*ForSequenceClassification folder from `manabi export`) as manabi does.

    manabi score --model runs/reward/checkpoints/step-0000300 --prompt "…" \
        --response "…" --response "…" > /tmp/scores.tsv
    manabi export --model runs/reward/checkpoints/step-0000300 --out /tmp/reward-hf
    python3 scripts/check_reward_export.py --export /tmp/reward-hf --scores /tmp/scores.tsv

Each line of the scores file is `score<TAB>prompt<TAB>response` (escaped as Rust's
escape_debug prints them). The sequence is tokens(prompt) + tokens(response) + EOS, as
manabi builds it; transformers reads the score at the last non-pad token. Exits 1 when a
score differs by more than --tol (default 1e-4).
"""

import argparse
import sys
from pathlib import Path

import torch
from transformers import AutoModelForSequenceClassification, PreTrainedTokenizerFast


def unescape(s: str) -> str:
    """Undoes Rust's escape_debug for the escapes it writes in text (\\n, \\t, quotes, \\\\)."""
    out, i = [], 0
    while i < len(s):
        if s[i] == "\\" and i + 1 < len(s):
            out.append({"n": "\n", "t": "\t", "r": "\r", "0": "\0"}.get(s[i + 1], s[i + 1]))
            i += 2
        else:
            out.append(s[i])
            i += 1
    return "".join(out)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--export", required=True, type=Path)
    ap.add_argument("--scores", required=True, type=Path)
    ap.add_argument("--tol", type=float, default=1e-4)
    args = ap.parse_args()
    model = AutoModelForSequenceClassification.from_pretrained(args.export).eval()
    tok = PreTrainedTokenizerFast(tokenizer_file=str(args.export / "tokenizer.json"))
    eos = tok.convert_tokens_to_ids("<eos>")
    pad = model.config.pad_token_id
    worst = 0.0
    for line in args.scores.read_text(encoding="utf-8").splitlines():
        score, prompt, response = line.split("\t")
        prompt, response = unescape(prompt), unescape(response)
        ids = tok(prompt, add_special_tokens=False).input_ids + tok(response, add_special_tokens=False).input_ids + [eos]
        # One pad at the end, so transformers has to find the last real token (an export
        # whose tokenizer has no pad apart from EOS carries no pad_token_id: as is).
        x = torch.tensor([ids + ([pad] if pad is not None else [])])
        with torch.no_grad():
            got = model(input_ids=x).logits[0, 0].item()
        worst = max(worst, abs(got - float(score)))
        print(f"manabi {float(score):+.6f}  transformers {got:+.6f}  {response!r}")
    print(f"max |Δscore| = {worst:.2e}")
    sys.exit(0 if worst <= args.tol else 1)


if __name__ == "__main__":
    main()
