"""Checks a BERT sequence-task checkpoint exported by `manabi export` against transformers.

    manabi export --model runs/nli-bert/checkpoints/step-0001200 --out /tmp/nli-bert-hf
    python3 scripts/check_bert_task_export.py /tmp/nli-bert-hf runs/nli-bert/predictions-val.jsonl

Frames each English pair as manabi does ([CLS] a [SEP] b [SEP], segment ids 0 / 1), runs
`BertForSequenceClassification` and compares its class probabilities with the `probs`
manabi wrote into its predictions file (same label order, from `id2label`).
"""
import json
import sys

import torch
from tokenizers import Tokenizer
from transformers import BertForSequenceClassification

hf, preds = sys.argv[1], sys.argv[2]
model = BertForSequenceClassification.from_pretrained(hf).eval()
tok = Tokenizer.from_file(f"{hf}/tokenizer.json")
cls, sep = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
rows = [json.loads(line) for line in open(preds, encoding="utf-8")]
rows = [r for r in rows if r["sentence1"].isascii()][:100]
worst = 0.0
for r in rows:
    a = tok.encode(r["sentence1"], add_special_tokens=False).ids
    b = tok.encode(r["sentence2"], add_special_tokens=False).ids
    ids = [cls] + a + [sep] + b + [sep]
    types = [0] * (len(a) + 2) + [1] * (len(b) + 1)
    with torch.no_grad():
        logits = model(input_ids=torch.tensor([ids]), token_type_ids=torch.tensor([types])).logits
    p = torch.softmax(logits[0].double(), -1).tolist()
    worst = max(worst, max(abs(x - y) for x, y in zip(p, r["probs"])))
print(f"{len(rows)} pairs, labels {model.config.id2label}: max |Δprob| = {worst:.2e}")
sys.exit(0 if worst < 1e-4 else 1)
