"""Hard extractive-QA training sets: every context is about two people, and the other
person always has a fact of the asked kind, so the answer must be found by who it
belongs to (" Kezu has a hamster called Dodo. Nena has a hamster called Fafa." — "What is
the name of Kezu's hamster?"). In the QA sets of generate_sft.py these are about a third
of the items and hold most of a small model's errors (the distractor's value). Same
world, training vocabulary, invented words and template as generate_sft.py; other seeds;
no held-out word.

    python3 datasets/generate_qa_hard.py   # datasets/sft/qa-{en,ja}.train-hard.jsonl.gz, git-ignored

Deterministic: the same code gives the same bytes.
"""
import gzip
import random
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.dont_write_bytecode = True   # leave no __pycache__ in datasets/
import generate_sft as sft  # noqa: E402  (the script's folder is on sys.path; importing runs nothing)

N = 20_000   # examples a language
SEED = sft.SEED + 20


def hard_example(lang: str, V: dict, rng: random.Random) -> dict:
    """Two people, each with 1–3 facts, both with a fact of the asked kind."""
    while True:
        p = rng.choice(V["person"])
        d = rng.choice([x for x in V["person"] if x != p])
        q_kind = rng.choice(sft.KINDS)
        used = {k: set() for k in sft.KINDS}
        others = [k for k in sft.KINDS if k != q_kind]
        p_kinds = [q_kind] + rng.sample(others, rng.randint(0, 2))
        d_kinds = [q_kind] + rng.sample(others, rng.randint(0, 2))
        target = sft.person_facts(p, p_kinds, V, rng, used, [p, d])
        blocks = [target, sft.person_facts(d, d_kinds, V, rng, used, [p, d])]
        asked = target[0]
        context = sft.join(lang, [sft.sentence(lang, f) for f in sft.arrange(blocks, rng)])
        if len(context) <= sft.MAX_CONTEXT[lang]:
            return {"context": context, "question": sft.question(lang, asked, rng),
                    "answer": asked["value"]}


def main() -> None:
    vocab = sft.build_vocab()
    held = {w for lang in vocab for k in sft.SPLIT_KINDS for w in vocab[lang]["val"][k]}
    for i, lang in enumerate(("en", "ja")):
        V = dict(vocab[lang]["train"], invent=sft.Inventor(lang, vocab[lang]))
        rng = random.Random(SEED + i)
        out, seen = [], set()
        while len(out) < N:
            ex = hard_example(lang, V, rng)
            if (ex["context"], ex["question"]) not in seen:
                seen.add((ex["context"], ex["question"]))
                out.append(ex)
        if any(ex["answer"] in held for ex in out):
            raise ValueError("a held-out word in a training answer")
        text = sft.jsonl(out)
        path = HERE / "sft" / f"qa-{lang}.train-hard.jsonl.gz"
        path.write_bytes(gzip.compress(text.encode("utf-8"), mtime=0))
        print(f"{path.name:30} {len(out)} examples")


if __name__ == "__main__":
    main()
