"""Makes fixtures/fewshot/expected.json: what lm-evaluation-harness (its `HFLM` over
transformers) computes for log-likelihood requests on the random LLaMA in
fixtures/models/llama-eval/ (which it only reads), so `manabi eval --task` can be checked
against it.

    pip install torch transformers lm_eval        # made with torch 2.15.0, transformers 5.24.0,
    python3 scripts/fewshot_fixtures.py           # lm_eval 0.4.13

CPU, float32, batch size 1. For every (context, continuation) request — multiple-choice
prompts with zero, one and two shots in English and Japanese, contexts with trailing
spaces (moved to the continuation by `_encode_pair`) and one context longer than the
model's 64 positions (left-truncated) — it records lm-eval's context and continuation
token ids and the summed log-likelihood, and for each document lm-eval's `acc`,
`acc_norm` (÷ characters) and `acc_bytes` (÷ UTF-8 bytes) from those numbers.
"""

import json
from pathlib import Path

import lm_eval
import numpy as np
import torch
import transformers
from lm_eval.api.instance import Instance
from lm_eval.models.huggingface import HFLM

ROOT = Path(__file__).resolve().parent.parent
MODEL = ROOT / "fixtures/models/llama-eval"
OUT = ROOT / "fixtures/fewshot"

# (context, choices, gold); contexts are the prompts manabi builds: shots joined by
# "\n\n", each "query target", then the query; choices are scored as " " + choice.
DOCS = [
    ("Q: 2 + 3 =", ["5", "6", "23"], 0),
    ("Q: 1 + 1 = 2\n\nQ: 2 + 3 =", ["5", "six", "4"], 0),
    ("Q: what colour is the sky?\nA: blue\n\nQ: what colour is grass?\nA:", ["green", "red"], 0),
    ("質問：空の色は？\n答え：", ["青", "赤い色", "緑"], 0),
    ("質問：一足す一は？\n答え： 二\n\n質問：二足す二は？\n答え：", ["四", "五です"], 0),
    ("Trailing space context: ", ["yes", "no"], 1),
    (" ".join(["word"] * 80) + "\nA:", ["end", "more words"], 0),
]


def main() -> None:
    torch.manual_seed(0)
    # tokenizer.json alone: no post-processor (no BOS added), special tokens named here.
    tok = transformers.PreTrainedTokenizerFast(tokenizer_file=str(MODEL / "tokenizer.json"),
                                               bos_token="<bos>", eos_token="<eos>",
                                               pad_token="<pad>")
    lm = HFLM(pretrained=str(MODEL), tokenizer=tok, batch_size=1, device="cpu",
              dtype="float32")
    requests, owners = [], []
    for i, (ctx, choices, _) in enumerate(DOCS):
        for c in choices:
            requests.append(Instance(request_type="loglikelihood", doc={}, arguments=(ctx, " " + c),
                                     idx=len(requests)))
            owners.append(i)
    results = lm.loglikelihood(requests, disable_tqdm=True)
    rows = []
    for req, (ll, greedy) in zip(requests, results):
        ctx, cont = req.arguments
        ctx_enc, cont_enc = lm._encode_pair(ctx, cont)
        rows.append({"context": ctx, "continuation": cont, "context_ids": ctx_enc,
                     "continuation_ids": cont_enc, "loglikelihood": float(ll),
                     "is_greedy": bool(greedy)})
    docs = []
    for i, (ctx, choices, gold) in enumerate(DOCS):
        lls = np.array([r["loglikelihood"] for r, o in zip(rows, owners) if o == i])
        chars = np.array([float(len(c)) for c in choices])
        nbytes = np.array([float(len(c.encode("utf-8"))) for c in choices])
        docs.append({"context": ctx, "choices": choices, "gold": gold,
                     "acc": float(np.argmax(lls) == gold),
                     "acc_norm": float(np.argmax(lls / chars) == gold),
                     "acc_bytes": float(np.argmax(lls / nbytes) == gold)})
    OUT.mkdir(exist_ok=True)
    out = {"versions": {"lm_eval": lm_eval.__version__, "torch": torch.__version__,
                        "transformers": transformers.__version__},
           "max_length": lm.max_length, "requests": rows, "docs": docs}
    (OUT / "expected.json").write_text(json.dumps(out, ensure_ascii=False, indent=1) + "\n",
                                       encoding="utf-8")
    print(f"wrote {OUT / 'expected.json'}: {len(rows)} requests, {len(docs)} docs")


if __name__ == "__main__":
    main()
