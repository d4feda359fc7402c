"""Writes fixtures/metrics/expected.json: deterministic random inputs (random.Random(0)) and the
outputs of the reference metric libraries on them, so that a Rust test can check manabi's own
metric implementations (accuracy / macro-F1, Pearson / Spearman, seqeval entity P/R/F1 in
strict-IOB2 and default/conlleval modes, ROUGE-1/2/L with the default and a per-character
tokenizer) against them.

    pip install scikit-learn scipy seqeval rouge-score
    python3 scripts/metric_fixtures.py

Written with: Python 3, scikit-learn 1.9.1, scipy 1.17.1, seqeval 1.2.2, rouge-score 0.1.2
(the exact versions used are also recorded under "versions" in the JSON). Running it twice
gives byte-identical output.

Sections of the JSON:
  classification: gold/pred int labels; accuracy_score, f1_score(average="macro",
                  zero_division=0), and the labels sklearn used (sorted union of gold and pred).
  correlation:    x/y floats; pearsonr(x, y).statistic and spearmanr(x, y).statistic
                  (average ranks for ties).
  seqeval:        gold/pred lists of IOB2 tag sentences; precision/recall/f1 in
                  mode="strict", scheme=IOB2 and in the default (conlleval) mode.
  rouge:          RougeScorer(["rouge1", "rouge2", "rougeL"], use_stemmer=False)
                  .score(target, prediction) -> precision/recall/fmeasure, plus the tokens the
                  tokenizer produced ("default" = rouge_score's tokenizer, "chars" = one token
                  per non-whitespace character, used for Japanese).
"""

import json
import platform
import random
from importlib.metadata import version
from pathlib import Path

from rouge_score import rouge_scorer, tokenizers
from scipy import stats
from seqeval.metrics import f1_score as seq_f1
from seqeval.metrics import precision_score as seq_precision
from seqeval.metrics import recall_score as seq_recall
from seqeval.scheme import IOB2
from sklearn.metrics import accuracy_score, f1_score

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "fixtures" / "metrics" / "expected.json"


# ---------------------------------------------------------------- classification

def classification_cases(rng: random.Random) -> list:
    def noisy(gold, k, p_correct, allowed=None):
        allowed = list(range(k)) if allowed is None else allowed
        return [g if (rng.random() < p_correct and g in allowed) else rng.choice(allowed)
                for g in gold]

    cases = []
    # 0: binary, random-ish
    n = rng.randint(30, 80)
    gold = [rng.randrange(2) for _ in range(n)]
    cases.append(("binary", gold, noisy(gold, 2, 0.7)))
    # 1: K=3, class 2 never appears in pred
    n = rng.randint(30, 80)
    gold = [rng.randrange(3) for _ in range(n)]
    cases.append(("class_missing_from_pred", gold, noisy(gold, 3, 0.6, allowed=[0, 1])))
    # 2: K=4, class 3 appears only in pred
    n = rng.randint(30, 80)
    gold = [rng.randrange(3) for _ in range(n)]
    cases.append(("class_only_in_pred", gold, noisy(gold, 4, 0.6)))
    # 3: K=5, very noisy
    n = rng.randint(30, 80)
    gold = [rng.randrange(5) for _ in range(n)]
    cases.append(("five_classes_noisy", gold, noisy(gold, 5, 0.3)))
    # 4: K=3 imbalanced, mostly correct
    n = rng.randint(30, 80)
    gold = [rng.choices([0, 1, 2], weights=[6, 3, 1])[0] for _ in range(n)]
    cases.append(("imbalanced_mostly_correct", gold, noisy(gold, 3, 0.9)))

    out = []
    for name, gold, pred in cases:
        out.append({
            "name": name,
            "gold": gold,
            "pred": pred,
            "labels": sorted(set(gold) | set(pred)),
            "accuracy": float(accuracy_score(gold, pred)),
            "macro_f1": float(f1_score(gold, pred, average="macro", zero_division=0)),
        })
    assert 2 not in out[1]["pred"] and 2 in out[1]["gold"]
    assert 3 in out[2]["pred"] and 3 not in out[2]["gold"]
    return out


# ---------------------------------------------------------------- correlation

def correlation_cases(rng: random.Random) -> list:
    r4 = lambda v: round(v, 4)
    cases = []
    # 0: positive linear + noise
    n = rng.randint(20, 50)
    x = [r4(rng.gauss(0, 1)) for _ in range(n)]
    cases.append(("positive_linear", x, [r4(2 * v + rng.gauss(0, 0.8)) for v in x]))
    # 1: negative, different scales
    n = rng.randint(20, 50)
    x = [r4(rng.uniform(-10, 10)) for _ in range(n)]
    cases.append(("negative_linear", x, [r4(-0.3 * v + rng.gauss(5, 1.5)) for v in x]))
    # 2: many ties (values from a small set, 1 decimal)
    n = rng.randint(20, 50)
    vals = [0.1, 0.5, 1.0, 1.5, 2.0]
    x = [rng.choice(vals) for _ in range(n)]
    y = [round(v + rng.choice([-0.5, 0.0, 0.0, 0.5]), 1) for v in x]
    cases.append(("many_ties", x, y))
    # 3: monotone nonlinear (Spearman high, Pearson lower)
    n = rng.randint(20, 50)
    x = [r4(rng.uniform(0, 4)) for _ in range(n)]
    cases.append(("monotone_nonlinear", x, [r4(2.718281828 ** (1.5 * v)) for v in x]))
    # 4: independent
    n = rng.randint(20, 50)
    cases.append(("independent", [r4(rng.gauss(0, 1)) for _ in range(n)],
                  [r4(rng.gauss(0, 1)) for _ in range(n)]))

    out = []
    for name, x, y in cases:
        out.append({
            "name": name,
            "x": x,
            "y": y,
            "pearson": float(stats.pearsonr(x, y).statistic),
            "spearman": float(stats.spearmanr(x, y).statistic),
        })
    return out


# ---------------------------------------------------------------- seqeval

TYPES = ["PER", "LOC", "ORG"]


def gold_sentence(rng: random.Random) -> list:
    n = rng.randint(5, 15)
    tags = []
    while len(tags) < n:
        if rng.random() < 0.45:
            t = rng.choice(TYPES)
            length = min(rng.choice([1, 1, 2, 2, 3]), n - len(tags))
            tags += ["B-" + t] + ["I-" + t] * (length - 1)
        else:
            tags.append("O")
    return tags


def perturb(rng: random.Random, gold: list) -> list:
    pred = list(gold)
    for i, tag in enumerate(pred):
        r = rng.random()
        if r < 0.08:
            pred[i] = "O"
        elif r < 0.14:
            pred[i] = "B-" + rng.choice(TYPES)
        elif r < 0.20 and tag != "O":
            pred[i] = tag[:2] + rng.choice(TYPES)  # type change (may create B-X I-Y)
    return pred


def inject_invalid(rng: random.Random, sents: list) -> None:
    """Puts an I- tag without a preceding B-/I- of its type, and a B-PER I-LOC switch, in pred."""
    s = sents[0]
    i = rng.randrange(len(s))
    s[i] = "I-" + rng.choice(TYPES)
    if i > 0:
        s[i - 1] = "O"  # make sure it is an orphan I-
    s = sents[-1]
    j = rng.randrange(len(s) - 1)
    s[j], s[j + 1] = "B-PER", "I-LOC"
    if j + 2 < len(s) and s[j + 2].startswith("I-"):
        s[j + 2] = "O"


def seqeval_cases(rng: random.Random) -> list:
    out = []
    for c in range(5):
        n = rng.randint(5, 12)
        gold = [gold_sentence(rng) for _ in range(n)]
        pred = [perturb(rng, s) for s in gold]
        inject_invalid(rng, pred)
        if c == 4:
            # a run of orphan I- tags in the middle of a sentence: I-ORG I-ORG after O
            s = pred[len(pred) // 2]
            if len(s) >= 5:
                s[1], s[2], s[3], s[4] = "O", "I-ORG", "I-ORG", "O"

        def prf(**kw):
            return {
                "precision": float(seq_precision(gold, pred, **kw)),
                "recall": float(seq_recall(gold, pred, **kw)),
                "f1": float(seq_f1(gold, pred, **kw)),
            }

        strict = prf(mode="strict", scheme=IOB2)
        default = prf()
        out.append({"name": f"case{c}", "gold": gold, "pred": pred,
                    "strict": strict, "default": default})
    assert any(o["strict"] != o["default"] for o in out)
    return out


# ---------------------------------------------------------------- rouge

class CharTokenizer(tokenizers.Tokenizer):
    """One token per character, whitespace dropped (for Japanese)."""

    def tokenize(self, text):
        return [ch for ch in text if not ch.isspace()]


ROUGE_EN = [
    ("The Tokyo Tower, completed in 1958, is 333 meters tall and painted orange & white.",
     "Tokyo Tower was completed in 1958; it is 333 m tall, painted white and orange!"),
    ("Dr. Smith's lab trained 3 models on 1,200 GPUs in under 48 hours.",
     "In under 48 hours, the lab of Dr. Smith trained three models on 1200 GPUs."),
    ("Is it raining in Osaka today? The forecast said 70% chance of rain after 3pm.",
     "The forecast for Osaka said rain is likely today, a 70% chance after 3 PM."),
]

ROUGE_JA = [
    ("今日は東京で雨が降っています。", "東京では今日、雨が降っている。"),
    ("私は毎朝7時に起きてコーヒーを飲みます。", "毎朝 7時に起きて、私は紅茶を飲む。"),
    ("富士山は日本で一番高い山です。", "日本で最も高い山は富士山だ。"),
]


def rouge_cases() -> list:
    types = ["rouge1", "rouge2", "rougeL"]
    default = rouge_scorer.RougeScorer(types, use_stemmer=False)
    default_tok = tokenizers.DefaultTokenizer(use_stemmer=False)
    chars = rouge_scorer.RougeScorer(types, use_stemmer=False, tokenizer=CharTokenizer())
    char_tok = CharTokenizer()
    out = []
    for lang, pairs, scorer, tok, tok_name in (
        ("en", ROUGE_EN, default, default_tok, "default"),
        ("ja", ROUGE_JA, chars, char_tok, "chars"),
    ):
        for i, (target, prediction) in enumerate(pairs):
            scores = scorer.score(target, prediction)
            out.append({
                "name": f"{lang}{i}",
                "lang": lang,
                "tokenizer": tok_name,
                "target": target,
                "prediction": prediction,
                "target_tokens": tok.tokenize(target),
                "prediction_tokens": tok.tokenize(prediction),
                "scores": {
                    t: {"precision": float(s.precision), "recall": float(s.recall),
                        "fmeasure": float(s.fmeasure)}
                    for t, s in scores.items()
                },
            })
    return out


def main() -> None:
    rng = random.Random(0)
    data = {
        "versions": {
            "python": platform.python_version(),
            "scikit-learn": version("scikit-learn"),
            "scipy": version("scipy"),
            "numpy": version("numpy"),
            "seqeval": version("seqeval"),
            "rouge-score": version("rouge-score"),
        },
        "classification": classification_cases(rng),
        "correlation": correlation_cases(rng),
        "seqeval": seqeval_cases(rng),
        "rouge": rouge_cases(),
    }
    OUT.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(data, ensure_ascii=False, indent=1) + "\n"
    OUT.write_text(text, encoding="utf-8")
    print(f"wrote {OUT.relative_to(ROOT)} ({len(text.encode('utf-8'))} bytes)")


if __name__ == "__main__":
    main()
