#!/usr/bin/env python3
"""A document collection and questions for retrieval-augmented generation (`manabi rag`).

    python3 datasets/generate_rag.py      # from the repository root; standard library only

Writes `datasets/rag/docs-{en,ja}.jsonl` ({"id", "text"}: one passage per person, 2–4 fact
sentences in generate_sft.py's style) and `datasets/rag/questions-{en,ja}.jsonl`
({"question", "answer", "passage"}: a question about one fact of one passage, in the QA
SFT phrasing). The people and values are generate_sft.py's training words, but every
fact is drawn anew here, so no model has read these documents: without retrieval the
answer can only be guessed. Byte-identical on every run.
"""

import json
import random
from pathlib import Path

from generate_sft import KINDS, build_vocab, join, person_facts, question, sentence

HERE = Path(__file__).resolve().parent
OUT = HERE / "rag"
SEED = 20261130
N_DOCS, N_QUESTIONS = 300, 200


def main() -> None:
    OUT.mkdir(exist_ok=True)
    vocab = build_vocab()
    for l, lang in enumerate(["en", "ja"]):
        V = vocab[lang]["train"]
        rng = random.Random(SEED + l)
        people = rng.sample(V["person"], N_DOCS)
        docs, facts = [], []
        for i, p in enumerate(people):
            kinds = rng.sample([k for k in KINDS if k != "friend"], rng.randint(2, 4))
            used = {k: set() for k in KINDS}
            fs = person_facts(p, kinds, V, rng, used, [p])
            docs.append({"id": f"{lang}-{i:03d}", "text": join(lang, [sentence(lang, f) for f in fs])})
            facts.append(fs)
        questions = []
        for i in rng.sample(range(N_DOCS), N_QUESTIONS):
            f = rng.choice(facts[i])
            questions.append({"question": question(lang, f, rng), "answer": f["value"],
                              "passage": docs[i]["id"]})
        for name, recs in (("docs", docs), ("questions", questions)):
            path = OUT / f"{name}-{lang}.jsonl"
            path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in recs),
                            encoding="utf-8")
            print(f"{path.relative_to(HERE.parent)}: {len(recs)}")


if __name__ == "__main__":
    main()
