"""Chain-of-thought SFT sets for extractive QA, derived from the QA sets of
generate_sft.py: the response first restates the context sentence that answers the
question, then gives the answer in the form `manabi eval --cot` reads.

    Context: Rora has a rabbit called Kuku. Kifa has a pony called Soso.
    Question: What is the name of Rora's rabbit?
    Answer: Let's think step by step.⟦ Rora has a rabbit called Kuku. The answer is Kuku.⟧

Japanese: the cue 「ステップごとに考えましょう。」 and 「…です。答えはククです。」. The prompt is
exactly what `manabi eval --task datasets/fewshot/qa-en.gen.eval.jsonl --cot en` shows
the model, so a model tuned on these files is scored on the held-out QA set (the same
400 questions as datasets/sft/qa-*.val.jsonl) with the answer read from its rationale.

    python3 datasets/generate_cot.py     # writes datasets/sft/qa-cot-*.jsonl(.gz), git-ignored

Deterministic: the same input files give the same bytes.
"""
import gzip
import json
import re
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.dont_write_bytecode = True   # leave no __pycache__ in datasets/
import generate_sft as sft  # noqa: E402  (the script's folder is on sys.path; importing runs nothing)

SFT = HERE / "sft"
CUE = {"en": "Let's think step by step.", "ja": "ステップごとに考えましょう。"}
FINAL = {"en": "The answer is {}.", "ja": "答えは{}です。"}


def sentences(lang: str, context: str) -> list[str]:
    if lang == "en":
        return [s if s.endswith(".") else s + "." for s in re.split(r"(?<=\.) ", context)]
    return [s + "。" for s in context.split("。") if s]


def subject(lang: str, s: str) -> str:
    """The person a fact sentence is about: its first word (English) or the name before
    the first の / は (Japanese)."""
    if lang == "en":
        return re.split(r"[ ']", s, maxsplit=1)[0]
    return re.split(r"[のは]", s, maxsplit=1)[0]


def support(lang: str, rec: dict) -> str:
    """The one context sentence that states the answer about the person asked."""
    a = re.escape(rec["answer"])
    whole = rf"\b{a}\b" if lang == "en" else rf"{a}(?=[をでにが。])"
    found = [s for s in sentences(lang, rec["context"])
             if re.search(whole, s) and subject(lang, s) in rec["question"]]
    if len(found) != 1:
        raise ValueError(f"{len(found)} supporting sentences for {rec}")
    return found[0]


def cot_record(lang: str, rec: dict) -> dict:
    prompt = f"{sft.QA_PROMPT.format(**rec)} {CUE[lang]}"
    space = " " if lang == "en" else ""
    return {"prompt": prompt,
            "completion": f" {support(lang, rec)}{space}{FINAL[lang].format(rec['answer'])}"}


def read(path: Path) -> list[dict]:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def main() -> None:
    for lang in ("en", "ja"):
        for split, src in (("train-large", f"qa-{lang}.train-large.jsonl.gz"),
                           ("val", f"qa-{lang}.val.jsonl")):
            text = sft.jsonl([cot_record(lang, r) for r in read(SFT / src)])
            name = f"qa-cot-{lang}.{split}.jsonl"
            if split == "train-large":
                (SFT / f"{name}.gz").write_bytes(gzip.compress(text.encode("utf-8"), mtime=0))
                name += ".gz"
            else:
                (SFT / name).write_text(text, encoding="utf-8", newline="\n")
            print(f"{name:32} {text.count(chr(10)):6} records")


if __name__ == "__main__":
    main()
