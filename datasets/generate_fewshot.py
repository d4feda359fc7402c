#!/usr/bin/env python3
"""Few-shot evaluation files (`manabi eval --task FILE --pool FILE --few-shot 0,1,5`) about the
world the `world-base` model was pre-trained on (datasets/sft/world-{en,ja}.txt).

    python3 datasets/generate_fewshot.py      # from the repository root; standard library only

Writes `datasets/fewshot/jobs-{en,ja}.{gen,mc}.{eval,pool}.jsonl`: "what does X work as?"
for people whose job the world text states —
- `gen`: {"query", "answer"}, scored by exact match of the greedy answer;
- `mc`: {"query", "choices", "gold"}, four jobs, scored by log-likelihood (acc, acc_norm).
The pre-trained model read "X works as a nurse." but never a question, so without shots it
continues with more world text; shots show the question-answer format. Pool and
evaluation files hold different people. Byte-identical on every run.

Also `qa-{en,ja}.gen.{eval,pool}.jsonl`, reading comprehension: the query is a QA item of
datasets/sft in the QA template (`Context: …\nQuestion: …\nAnswer:`), the answer a word
copied from its context. Evaluation items are the first of `qa-*.val.jsonl` (held-out
words only), the pool the first of `qa-*.train.jsonl`: the answer is in the prompt, so a
model that can copy from its context and learns the format from the shots scores.
"""

import json
import random
import re
from pathlib import Path

HERE = Path(__file__).resolve().parent
WORLD = HERE / "sft"
OUT = HERE / "fewshot"
SEED = 20261129
N_EVAL, N_POOL = 200, 40

PATTERNS = {
    "en": (re.compile(r"(\w+) works as an? ([a-z ]+?)\."),
           "Question: What does {who} work as?\nAnswer:"),
    "ja": (re.compile(r"([ァ-ヴー]+)の仕事は(.+?)です。"), "質問：{who}の仕事は何ですか？\n答え："),
}


def main() -> None:
    OUT.mkdir(exist_ok=True)
    for lang, (pattern, template) in PATTERNS.items():
        text = (WORLD / f"world-{lang}.txt").read_text(encoding="utf-8")
        facts = {}
        for who, job in pattern.findall(text):
            facts.setdefault(who, job)
        jobs = sorted(set(facts.values()))
        people = sorted(facts)
        rng = random.Random(SEED + (lang == "ja"))
        rng.shuffle(people)
        splits = {"eval": people[:N_EVAL], "pool": people[N_EVAL:N_EVAL + N_POOL]}
        for split, who_list in splits.items():
            gen, mc = [], []
            for who in who_list:
                job = facts[who]
                query = template.format(who=who)
                gen.append({"query": query, "answer": job})
                choices = rng.sample([j for j in jobs if j != job], 3) + [job]
                rng.shuffle(choices)
                mc.append({"query": query, "choices": choices, "gold": choices.index(job)})
            for kind, recs in (("gen", gen), ("mc", mc)):
                path = OUT / f"jobs-{lang}.{kind}.{split}.jsonl"
                path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in recs),
                                encoding="utf-8")
                print(f"{path.relative_to(HERE.parent)}: {len(recs)}")


def reading_comprehension() -> None:
    for lang in ("en", "ja"):
        for split, source, n in (("eval", "val", N_EVAL), ("pool", "train", N_POOL)):
            rows = [json.loads(line) for line in
                    (WORLD / f"qa-{lang}.{source}.jsonl").read_text(encoding="utf-8")
                    .splitlines()[:n]]
            recs = [{"query": f"Context: {r['context']}\nQuestion: {r['question']}\nAnswer:",
                     "answer": r["answer"]} for r in rows]
            path = OUT / f"qa-{lang}.gen.{split}.jsonl"
            path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in recs),
                            encoding="utf-8")
            print(f"{path.relative_to(HERE.parent)}: {len(recs)}")


if __name__ == "__main__":
    main()
    reading_comprehension()
