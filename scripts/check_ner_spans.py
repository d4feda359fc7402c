"""seqeval on the spans `manabi task` wrote (issue #29 §4): the printed NER metrics must
be seqeval's on the predictions file, gold and predicted spans turned into
character-level IOB2 tags.

    python3 scripts/check_ner_spans.py runs/ner/predictions-test.jsonl
"""
import json
import sys

from seqeval.metrics import f1_score, precision_score, recall_score
from seqeval.scheme import IOB2


def char_tags(text, entities):
    tags = ["O"] * len(text)
    for e in entities:
        a, b = e["span"]
        for i in range(a, b):
            tags[i] = ("B-" if i == a else "I-") + e["type"]
    return tags


def main(path):
    gold, pred = [], []
    with open(path, encoding="utf-8") as f:
        for line in f:
            row = json.loads(line)
            spans = sorted((e["span"] for e in row["predicted"]))
            for (a0, b0), (a1, b1) in zip(spans, spans[1:]):
                assert b0 <= a1, f"overlapping predicted spans in {row['text']!r}"
            gold.append(char_tags(row["text"], row["entities"]))
            pred.append(char_tags(row["text"], row["predicted"]))
    strict = dict(mode="strict", scheme=IOB2)
    print(
        f"strict:  precision {precision_score(gold, pred, **strict):.4f}, "
        f"recall {recall_score(gold, pred, **strict):.4f}, f1 {f1_score(gold, pred, **strict):.4f}"
    )
    print(
        f"default: precision {precision_score(gold, pred):.4f}, "
        f"recall {recall_score(gold, pred):.4f}, f1 {f1_score(gold, pred):.4f}"
    )


if __name__ == "__main__":
    main(sys.argv[1])
