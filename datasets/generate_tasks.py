#!/usr/bin/env python3
"""Sample sets of the downstream tasks (`manabi task`), in JGLUE's field names.

    python3 datasets/generate_tasks.py      # from the repository root; standard library only

Writes `datasets/tasks/{sentiment,nli,sts}-{en,ja}.{train,val,test}.jsonl`:
- sentiment (MARC-ja layout): {"sentence", "label": "positive" | "negative"}; short reviews,
  a quarter of them negated ("was not bad", "面白くなかった"), so word spotting is not enough;
- nli (JNLI layout): {"sentence1", "sentence2", "label": "entailment" | "contradiction" |
  "neutral"}; the premise states two facts about a person of the SFT world, the
  hypothesis repeats one, changes one, or adds one the premise does not settle;
- sts (JSTS layout): {"sentence1", "sentence2", "label": 0.0–5.0}; two scenes of four slots
  (colour, animal, action, place); the score is 5 × shared slots ÷ 4, so similarity is
  defined by the data and a model can learn it.
- ner (Japanese Wikipedia NER layout): {"text", "entities": [{"name", "span": [start, end],
  "type"}]} with character spans (end exclusive) of PER, LOC and PET in short sentences;
  validation and test use generate_sft.py's held-out people, towns and pets only, so the
  model must tag names it never saw;
- summarise: {"document", "summary"} (`manabi sft`, format `summarise`): generate_sft.py's
  summaries (3–5 fact sentences about one person → "Mara is a baker who lives in Tolven."),
  with the training words of its vocabulary, in more examples than sft/ has.
Byte-identical on every run (fixed seeds); names come from generate_sft.py's lists.
"""

import json
import random
import re
from pathlib import Path

from generate_sft import (EN_ANIMALS, EN_JOBS, JA_ANIMALS, JA_JOBS, build_vocab, en_people,
                          en_towns, ja_people, ja_towns, summary_example)

HERE = Path(__file__).resolve().parent
OUT = HERE / "tasks"
SEED = 20261129
SIZES = {"train": 2000, "val": 300, "test": 300}

# ---------------------------------------------------------------- sentiment
EN_THINGS = ["film", "book", "hotel", "restaurant", "concert", "game", "museum", "cafe",
             "train ride", "play", "album", "park", "lesson", "meal", "show", "festival"]
EN_GOOD = ["great", "wonderful", "excellent", "lovely", "delightful", "superb", "brilliant",
           "fantastic", "charming", "enjoyable"]
EN_BAD = ["terrible", "awful", "boring", "dreadful", "disappointing", "dull", "horrible",
          "poor", "tedious", "unpleasant"]
EN_OPENERS = ["", "", "Honestly, ", "Overall, ", "In short, ", "To be fair, ", "Sadly, ",
              "Happily, "]
EN_CLOSERS = ["", "", " I went on a Sunday.", " We were there with friends.",
              " It lasted two hours.", " The tickets were cheap."]
JA_THINGS = ["映画", "本", "ホテル", "レストラン", "コンサート", "ゲーム", "美術館", "カフェ",
             "旅行", "芝居", "アルバム", "公園", "授業", "料理", "番組", "祭り"]
# (affirmative, negated) of each adjective.
JA_GOOD = [("良かった", "良くなかった"), ("面白かった", "面白くなかった"),
           ("楽しかった", "楽しくなかった"), ("素晴らしかった", "素晴らしくなかった"),
           ("美しかった", "美しくなかった"), ("嬉しかった", "嬉しくなかった")]
JA_BAD = [("つまらなかった", "つまらなくなかった"), ("ひどかった", "ひどくなかった"),
          ("退屈だった", "退屈ではなかった"), ("悪かった", "悪くなかった"),
          ("残念だった", "残念ではなかった"), ("うるさかった", "うるさくなかった")]
JA_OPENERS = ["", "", "正直に言うと、", "全体として、", "一言で言えば、", "残念ながら、"]
JA_CLOSERS = ["", "", "日曜日に行った。", "友達と一緒だった。", "二時間くらいだった。",
              "チケットは安かった。"]


def sentiment(lang: str, rng: random.Random) -> dict:
    positive = rng.random() < 0.5
    negated = rng.random() < 0.25
    good = positive != negated  # the adjective's own polarity
    if lang == "en":
        thing = rng.choice(EN_THINGS)
        adj = rng.choice(EN_GOOD if good else EN_BAD)
        core = f"the {thing} was {'not ' if negated else ''}{adj}."
        opener = rng.choice(EN_OPENERS)
        core = core[0].upper() + core[1:] if not opener else core
        text = opener + core + rng.choice(EN_CLOSERS)
    else:
        thing = rng.choice(JA_THINGS)
        pair = rng.choice(JA_GOOD if good else JA_BAD)
        text = (rng.choice(JA_OPENERS) + f"この{thing}は{pair[1 if negated else 0]}。"
                + rng.choice(JA_CLOSERS))
    return {"sentence": text, "label": "positive" if positive else "negative"}


# ---------------------------------------------------------------- NLI
EN_FOODS = ["apples", "soup", "rice", "cheese", "bread", "noodles", "cake", "fish"]
JA_FOODS = ["りんご", "スープ", "ご飯", "チーズ", "パン", "うどん", "ケーキ", "魚"]


def nli(lang: str, rng: random.Random, people, towns) -> dict:
    name = rng.choice(people)
    town, other_town = rng.sample(towns, 2)
    jobs = EN_JOBS if lang == "en" else JA_JOBS
    job, other_job = rng.sample(jobs, 2)
    label = rng.choice(["entailment", "contradiction", "neutral"])
    about = rng.choice(["town", "job"])
    if lang == "en":
        premise = f"{name} lives in {town} and works as a {job}."
        if label == "entailment":
            hyp = f"{name} lives in {town}." if about == "town" else f"{name} works as a {job}."
        elif label == "contradiction":
            hyp = (f"{name} lives in {other_town}." if about == "town"
                   else f"{name} works as a {other_job}.")
        else:
            hyp = rng.choice([f"{name} has a {rng.choice(EN_ANIMALS)}.",
                              f"{name} likes {rng.choice(EN_FOODS)}.",
                              f"{name} was born in {other_town}."])
    else:
        premise = f"{name}は{town}に住んでいて、{job}として働いている。"
        if label == "entailment":
            hyp = f"{name}は{town}に住んでいる。" if about == "town" else f"{name}は{job}として働いている。"
        elif label == "contradiction":
            hyp = (f"{name}は{other_town}に住んでいる。" if about == "town"
                   else f"{name}は{other_job}として働いている。")
        else:
            hyp = rng.choice([f"{name}は{rng.choice(JA_ANIMALS)}を飼っている。",
                              f"{name}は{rng.choice(JA_FOODS)}が好きだ。",
                              f"{name}は{other_town}で生まれた。"])
    return {"sentence1": premise, "sentence2": hyp, "label": label}


# ---------------------------------------------------------------- STS
EN_COLOURS = ["red", "blue", "green", "black", "white", "brown", "grey", "yellow"]
EN_ACTIONS = ["sleeping", "running", "eating", "playing", "sitting", "jumping", "swimming",
              "hiding"]
EN_PLACES = ["garden", "kitchen", "park", "forest", "field", "river", "street", "barn"]
JA_COLOURS = ["赤い", "青い", "緑の", "黒い", "白い", "茶色の", "灰色の", "黄色い"]
JA_ACTIONS = ["眠って", "走って", "食べて", "遊んで", "座って", "跳ねて", "泳いで", "隠れて"]
JA_PLACES = ["庭", "台所", "公園", "森", "野原", "川", "通り", "納屋"]


def scene(lang: str, slots: tuple) -> str:
    c, a, act, p = slots
    if lang == "en":
        return f"A {EN_COLOURS[c]} {EN_ANIMALS[a]} is {EN_ACTIONS[act]} in the {EN_PLACES[p]}."
    return f"{JA_COLOURS[c]}{JA_ANIMALS[a]}が{JA_PLACES[p]}で{JA_ACTIONS[act]}いる。"


def sts(lang: str, rng: random.Random) -> dict:
    sizes = (8, min(len(EN_ANIMALS), len(JA_ANIMALS), 8), 8, 8)
    first = tuple(rng.randrange(n) for n in sizes)
    shared = rng.randint(0, 4)
    keep = set(rng.sample(range(4), shared))
    second = tuple(v if i in keep else rng.choice([x for x in range(sizes[i]) if x != v])
                   for i, v in enumerate(first))
    return {"sentence1": scene(lang, first), "sentence2": scene(lang, second),
            "label": round(5.0 * shared / 4.0, 2)}


# ---------------------------------------------------------------- NER
EN_NER = [
    "{P} lives in {L}.",
    "{P} and {P} walked to {L} with {PET}.",
    "{P} has a {animal} called {PET}.",
    "Yesterday {P} visited {P} in {L}.",
    "The road from {L} to {L} is long.",
    "{P}'s best friend is {P}.",
    "In {L}, {P} found a {animal} and named it {PET}.",
    "Everyone in {L} knows {P}.",
]
JA_NER = [
    "{P}は{L}に住んでいます。",
    "{P}と{P}は{PET}を連れて{L}へ歩いた。",
    "{P}の{animal}の名前は{PET}です。",
    "昨日、{P}は{L}で{P}に会った。",
    "{L}から{L}までの道は長い。",
    "{P}の親友は{P}です。",
    "{L}で{P}は{animal}を見つけて{PET}と名付けた。",
    "{L}の人はみんな{P}を知っている。",
]
NER_TYPES = {"P": ("PER", "person"), "L": ("LOC", "town"), "PET": ("PET", "pet")}


def ner(lang: str, rng: random.Random, words: dict) -> dict:
    template = rng.choice(EN_NER if lang == "en" else JA_NER)
    text, entities, used = "", [], set()
    for i, part in enumerate(re.split(r"\{(\w+)\}", template)):
        if i % 2 == 0:
            text += part
            continue
        if part == "animal":
            text += rng.choice(words["animal"])
            continue
        kind, pool = NER_TYPES[part]
        word = rng.choice([w for w in words[pool] if w not in used])
        used.add(word)
        entities.append({"name": word, "span": [len(text), len(text) + len(word)], "type": kind})
        text += word
    return {"text": text, "entities": entities}


def unique(make, n_total: int, rng: random.Random, key) -> list[dict]:
    seen, out = set(), []
    while len(out) < n_total:
        r = make(rng)
        k = key(r)
        if k not in seen:
            seen.add(k)
            out.append(r)
    return out


def main() -> None:
    OUT.mkdir(exist_ok=True)
    total = sum(SIZES.values())
    people = {"en": en_people(), "ja": ja_people()}
    towns = {"en": en_towns(), "ja": ja_towns()}
    vocab = build_vocab()
    makers = {
        "sentiment": (lambda lang: lambda r: sentiment(lang, r), lambda x: x["sentence"]),
        "nli": (lambda lang: lambda r: nli(lang, r, people[lang], towns[lang]),
                lambda x: (x["sentence1"], x["sentence2"])),
        "sts": (lambda lang: lambda r: sts(lang, r), lambda x: (x["sentence1"], x["sentence2"])),
        "summarise": (lambda lang: lambda r: summary_example(lang, vocab[lang]["train"], r),
                      lambda x: x["document"]),
    }
    for t, (task, (make, key)) in enumerate(makers.items()):
        for l, lang in enumerate(["en", "ja"]):
            rng = random.Random(SEED + 100 * t + l)
            rows = unique(make(lang), total, rng, key)
            splits = {"val": rows[:SIZES["val"]],
                      "test": rows[SIZES["val"]:SIZES["val"] + SIZES["test"]],
                      "train": rows[SIZES["val"] + SIZES["test"]:]}
            for split, recs in splits.items():
                path = OUT / f"{task}-{lang}.{split}.jsonl"
                path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in recs),
                                encoding="utf-8")
                print(f"{path.relative_to(HERE.parent)}: {len(recs)}")
    # NER: training sentences from the training words, validation and test from the
    # held-out ones.
    for l, lang in enumerate(["en", "ja"]):
        rng = random.Random(SEED + 500 + l)
        key = lambda x: x["text"]  # noqa: E731
        train = unique(lambda r: ner(lang, r, vocab[lang]["train"]), SIZES["train"], rng, key)
        held = unique(lambda r: ner(lang, r, vocab[lang]["val"]), SIZES["val"] + SIZES["test"],
                      rng, key)
        for split, recs in {"train": train, "val": held[:SIZES["val"]],
                            "test": held[SIZES["val"]:]}.items():
            for r in recs:
                for e in r["entities"]:
                    assert r["text"][e["span"][0]:e["span"][1]] == e["name"], r
            path = OUT / f"ner-{lang}.{split}.jsonl"
            path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in recs),
                            encoding="utf-8")
            print(f"{path.relative_to(HERE.parent)}: {len(recs)}")


def large_nli(n: int = 20_000) -> None:
    """`nli-{en,ja}.train-large.jsonl.gz`: n more training pairs a language, from another
    seed, none of them in the validation or test file."""
    import gzip
    people = {"en": en_people(), "ja": ja_people()}
    towns = {"en": en_towns(), "ja": ja_towns()}
    for l, lang in enumerate(["en", "ja"]):
        held = set()
        for split in ("val", "test"):
            for line in (OUT / f"nli-{lang}.{split}.jsonl").read_text(encoding="utf-8").splitlines():
                r = json.loads(line)
                held.add((r["sentence1"], r["sentence2"]))
        rng = random.Random(SEED + 900 + l)
        rows, seen = [], set(held)
        while len(rows) < n:
            r = nli(lang, rng, people[lang], towns[lang])
            k = (r["sentence1"], r["sentence2"])
            if k not in seen:
                seen.add(k)
                rows.append(r)
        text = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)
        path = OUT / f"nli-{lang}.train-large.jsonl.gz"
        path.write_bytes(gzip.compress(text.encode("utf-8"), mtime=0))
        print(f"{path.relative_to(HERE.parent)}: {len(rows)}")


if __name__ == "__main__":
    main()
    large_nli()
