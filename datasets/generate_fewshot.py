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
Also the in-context learning set (`in_context()`): `kinds-{en,ja}.{mc,gen}.{eval,pool}.jsonl`
ask for the kind of a word (job, colour, thing or animal: `Word: cat\nKind: animal`), and
`kinds-{en,ja}.metaicl.jsonl.gz` trains a model to learn from its context: "episodes" of
the same two-line format in which every kind gets a label drawn anew (`Word: cat\nKind:
zefo`), cut before a last label that only the earlier lines tell (MetaICL, Min et al.
2022; bursty data, Chan et al. 2022). The real kind names occur among the labels, but
never bound to their kind more often than chance: without shots the evaluation is at
chance by construction, and what shots add is the model's in-context learning.
Also `answer_formats()`: `qa-format-{en,ja}-{paren,angle,bar}.gen.{eval,pool}.jsonl`, the
reading-comprehension items with answers in a format only shots show (`(Kuku)`), and the
meta-training set `qa-format.metaicl.jsonl.gz` (written here, git-ignored, not committed).
"""

import gzip
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


KINDS = {
    "en": {"job": None, "colour": None, "thing": None, "animal": ["cat", "dog", "bird", "fish",
           "rabbit", "hamster", "goat", "pony", "turtle", "parrot", "horse", "sheep", "cow",
           "duck", "fox", "owl", "frog", "bear", "mouse", "deer", "wolf", "lion", "tiger",
           "swan", "crab", "snail", "bee", "whale", "seal", "camel"]},
    "ja": {"仕事": None, "色": None, "物": None, "動物": ["猫", "犬", "鳥", "金魚", "うさぎ",
           "ハムスター", "亀", "インコ", "ヤギ", "ポニー", "馬", "羊", "牛", "鴨", "狐",
           "梟", "蛙", "熊", "鼠", "鹿", "狼", "ライオン", "虎", "白鳥", "蟹", "蝸牛", "蜂",
           "鯨", "アザラシ", "ラクダ"]},
}
KIND_TEMPLATE = {"en": ("Word: {}\nKind:", " "), "ja": ("単語：{}\n種類：", " ")}
EPISODES = 20_000          # a language: more than 1,500 SFT steps of 16 use
EN_LABEL_CONS = "b d f g k l m n p r s t v z".split()
JA_LABEL_KANA = "かきくけこさしすせそたちつてとなにぬねのはひふへほまみむめもらりるれろ"


def kind_words(lang: str) -> dict[str, list[str]]:
    import sys
    sys.path.insert(0, str(HERE))
    import generate_sft as g
    lists = {"en": [g.EN_JOBS, g.EN_COLOURS, g.EN_OBJECTS], "ja": [g.JA_JOBS, g.JA_COLOURS,
                                                                g.JA_OBJECTS]}[lang]
    kinds = dict(KINDS[lang])
    for kind, words in zip(list(kinds), lists):
        kinds[kind] = list(words)
    return kinds


def label_words(lang: str, rng: random.Random, n: int) -> list[str]:
    """Invented label words (`zefo`, `みれ`), distinct, none a word of the kinds."""
    labels: set[str] = set()
    while len(labels) < n:
        if lang == "en":
            labels.add("".join(rng.choice(EN_LABEL_CONS) + rng.choice("aeiou") for _ in range(2)))
        else:
            labels.add("".join(rng.choice(JA_LABEL_KANA) for _ in range(2)))
    return sorted(labels)


def episode(lang: str, kinds: dict[str, list[str]], labels: list[str],
            rng: random.Random) -> str:
    """8–16 examples of 2–4 kinds, each kind labelled by a word drawn for this episode (a
    real kind name a third of the time, any kind's, so no name prefers its own kind)."""
    chosen = rng.sample(list(kinds), rng.randint(2, 4))
    pool = labels if rng.random() < 2 / 3 else list(kinds)
    label = dict(zip(chosen, rng.sample(pool, len(chosen))))
    # A few words of each kind, so that words recur within an episode (copying a word's
    # label back is what starts in-context learning) and new words of a kind seen before
    # teach that the label goes with the kind.
    words = {k: rng.sample(kinds[k], rng.randint(2, 6)) for k in chosen}
    template, gap = KIND_TEMPLATE[lang]
    shots = []
    for _ in range(rng.randint(8, 16)):
        kind = rng.choice(chosen)
        shots.append(template.format(rng.choice(words[kind])) + gap + label[kind])
    return "\n\n".join(shots)


def metaicl_example(lang: str, kinds: dict[str, list[str]], labels: list[str],
                    rng: random.Random) -> dict:
    """An episode cut before its last label (`{"prompt", "completion"}`), the last word
    of a kind the episode has shown: meta-training for in-context learning (MetaICL, Min
    et al. 2022) — the label can only be read from the earlier lines."""
    while True:
        text = episode(lang, kinds, labels, rng)
        shots = text.split("\n\n")
        *seen, last = shots
        head, label = last.rsplit(KIND_TEMPLATE[lang][1], 1)
        if any(s.endswith(KIND_TEMPLATE[lang][1] + label) for s in seen):
            return {"prompt": "\n\n".join(seen) + "\n\n" + head, "completion": " " + label}


def in_context() -> None:
    for lang in ("en", "ja"):
        rng = random.Random(SEED + 10 + (lang == "ja"))
        kinds = kind_words(lang)
        labels = label_words(lang, rng, 400)
        meta = random.Random(SEED + 20 + (lang == "ja"))
        text = "".join(json.dumps(metaicl_example(lang, kinds, labels, meta), ensure_ascii=False)
                       + "\n" for _ in range(EPISODES))
        path = OUT / f"kinds-{lang}.metaicl.jsonl.gz"
        path.write_bytes(gzip.compress(text.encode("utf-8"), mtime=0))
        print(f"{path.relative_to(HERE.parent)}: {EPISODES} examples, "
              f"{len(text.encode())} bytes ({path.stat().st_size} gzipped)")
        names = list(kinds)
        template, _ = KIND_TEMPLATE[lang]
        for split, n in (("eval", N_EVAL), ("pool", N_POOL)):
            gen, mc = [], []
            for _ in range(n):
                kind = rng.choice(names)
                query = template.format(rng.choice(kinds[kind]))
                gen.append({"query": query, "answer": kind})
                mc.append({"query": query, "choices": names, "gold": names.index(kind)})
            for form, recs in (("gen", gen), ("mc", mc)):
                path = OUT / f"kinds-{lang}.{form}.{split}.jsonl"
                path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n"
                                        for r in recs), encoding="utf-8")
                print(f"{path.relative_to(HERE.parent)}: {len(recs)}")


# Answer formats learned from the shots (`answer_formats()`).
FORMAT_CHARS = "[](){}<>*'\"_#!=-~.@:^%&$;?,`"   # training wrappers: never | / +
FORMAT_EVAL = {"paren": "({})", "angle": "<{}>", "bar": "|{}|"}
FORMAT_SEED = 8
FORMAT_EPISODES = OUT / "qa-format.metaicl.jsonl.gz"


def answer_formats() -> None:
    """`qa-format-{en,ja}-{paren,angle,bar}.gen.{eval,pool}.jsonl`: the reading-comprehension
    items above with the answer in a format that only the shots show (`(Kuku)`, `<Kuku>`:
    each one of ~9,000 wrappers the training set draws, 5 and 14 times in its 30,000
    episodes with shots; `|Kuku|`: a character no training wrapper uses), so every answer
    is wrong without shots. And the
    meta-training set `qa-format.metaicl.jsonl.gz` (prompt/completion, 40,000 examples, 3.5
    MB: written here, not committed): each QA item of `datasets/sft/qa-*.train-large` after
    0–2 shots of other items whose answers are wrapped the same way, by a random wrapper of
    other characters (`[Kuku]`, `_Kuku~`, `#Kuku`); with no shots, or 15 % of the time,
    the answer is plain."""
    for lang in ("en", "ja"):
        for tag, wrap in FORMAT_EVAL.items():
            for split in ("eval", "pool"):
                rows = [json.loads(line) for line in
                        (OUT / f"qa-{lang}.gen.{split}.jsonl").read_text(encoding="utf-8")
                        .splitlines()]
                path = OUT / f"qa-format-{lang}-{tag}.gen.{split}.jsonl"
                path.write_text("".join(json.dumps({"query": r["query"],
                                                    "answer": wrap.replace("{}", r["answer"])},
                                                   ensure_ascii=False) + "\n" for r in rows),
                                encoding="utf-8")
                print(f"{path.relative_to(HERE.parent)}: {len(rows)}")

    def wrapper(rng: random.Random) -> str:
        left = "".join(rng.choice(FORMAT_CHARS) for _ in range(rng.choice([0, 1, 1, 2])))
        right = "".join(rng.choice(FORMAT_CHARS) for _ in range(rng.choice([0, 1, 1, 2])))
        if not left and not right:
            left = rng.choice(FORMAT_CHARS)
        return left + "{}" + right

    def shot(item: dict, wrap: str) -> str:
        return item["query"] + " " + wrap.replace("{}", item["answer"])

    rng = random.Random(FORMAT_SEED)
    out = []
    for lang in ("en", "ja"):
        with gzip.open(WORLD / f"qa-{lang}.train-large.jsonl.gz", "rt", encoding="utf-8") as fh:
            items = [json.loads(line) for line in fh]
        items = [{"query": f"Context: {r['context']}\nQuestion: {r['question']}\nAnswer:",
                  "answer": r["answer"]} for r in items]
        for item in items:
            k = rng.choice([0, 1, 2, 2])
            wrap = "{}" if k == 0 or rng.random() < 0.15 else wrapper(rng)
            shots = [items[j] for j in rng.sample(range(len(items)), k)]
            out.append({"prompt": "".join(shot(s, wrap) + "\n\n" for s in shots) + item["query"],
                        "completion": " " + wrap.replace("{}", item["answer"])})
    rng.shuffle(out)
    text = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in out)
    FORMAT_EPISODES.write_bytes(gzip.compress(text.encode("utf-8"), mtime=0))
    print(f"{FORMAT_EPISODES.relative_to(HERE.parent)}: {len(out)} (not committed)")


if __name__ == "__main__":
    main()
    reading_comprehension()
    in_context()
    answer_formats()
