"""Checks a BERT NER checkpoint exported by `manabi export` against transformers.

    manabi export --model runs/ner-bert/checkpoints/step-0000400 --out /tmp/ner-bert-hf
    python3 scripts/check_bert_tagger_export.py /tmp/ner-bert-hf runs/ner-bert/predictions-test.jsonl

Reads each text (English and Japanese) as manabi does ([CLS] tokens [SEP]), runs
`BertForTokenClassification`, takes the best tag of every token, turns the tags into
entities with seqeval's strict IOB2 scheme and the tokens' character offsets (the space a
byte-level token carries trimmed off), and compares them with the entities manabi
predicted (`predicted` in its predictions file).
"""
import json
import sys

import torch
from seqeval.scheme import IOB2, Entities
from tokenizers import Tokenizer
from transformers import BertForTokenClassification

hf, preds = sys.argv[1], sys.argv[2]
model = BertForTokenClassification.from_pretrained(hf).eval()
names = [model.config.id2label[i] for i in range(model.config.num_labels)]
tok = Tokenizer.from_file(f"{hf}/tokenizer.json")
cls, sep = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
rows = [json.loads(line) for line in open(preds, encoding="utf-8")]
same = 0
for r in rows:
    text = r["text"]
    enc = tok.encode(text, add_special_tokens=False)
    with torch.no_grad():
        logits = model(input_ids=torch.tensor([[cls] + enc.ids + [sep]])).logits[0, 1:-1]
    tags = [names[i] for i in logits.argmax(-1).tolist()]
    found = []
    for e in Entities([tags], IOB2).entities[0]:
        start, end = enc.offsets[e.start][0], enc.offsets[e.end - 1][1]
        while start < end and text[start].isspace():
            start += 1
        while end > start and text[end - 1].isspace():
            end -= 1
        found.append({"name": text[start:end], "span": [start, end], "type": e.tag})
    key = lambda es: sorted((e["span"][0], e["span"][1], e["type"]) for e in es)
    same += key(found) == key(r["predicted"])
print(f"{len(rows)} texts, tags {names}: the same entities in {same}")
sys.exit(0 if same == len(rows) else 1)
