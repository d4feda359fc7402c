"""Checks a BERT sentence-embedding checkpoint (SimCSE, `manabi task`) exported by
`manabi export` against transformers: the same vectors as `manabi embed`.

    M=runs/simcse-bert-mean/checkpoints/step-0000300
    manabi export --model $M --out /tmp/simcse-bert-hf
    manabi embed --model $M --input datasets/tasks/sts-en.test.jsonl --out /tmp/vectors.jsonl
    python3 scripts/check_bert_embed_export.py /tmp/simcse-bert-hf /tmp/vectors.jsonl mean

Frames each sentence as manabi does ([CLS] sentence [SEP]), runs `BertModel` and pools
its last hidden states as sentence-transformers does (`mean`: every token, [CLS] and
[SEP] included; `cls`: the [CLS] state), then compares with manabi's vectors.
"""
import json
import sys

import torch
from tokenizers import Tokenizer
from transformers import BertModel

hf, vectors, pooling = sys.argv[1], sys.argv[2], sys.argv[3]
model = BertModel.from_pretrained(hf, add_pooling_layer=False).eval()
tok = Tokenizer.from_file(f"{hf}/tokenizer.json")
cls, sep = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
rows = [json.loads(line) for line in open(vectors, encoding="utf-8")][:200]
worst = 0.0
for r in rows:
    ids = [cls] + tok.encode(r["text"], add_special_tokens=False).ids + [sep]
    with torch.no_grad():
        h = model(input_ids=torch.tensor([ids])).last_hidden_state[0]
    v = h.mean(0) if pooling == "mean" else h[0]
    worst = max(worst, max(abs(a - b) for a, b in zip(v.tolist(), r["embedding"])))
print(f"{len(rows)} sentences, {pooling} pooling: max |Δ| = {worst:.2e}")
sys.exit(0 if worst < 1e-4 else 1)
