"""Generates manabi's small supervised fine-tuning (SFT) sample data sets (datasets/sft/).

Everything is synthetic: short facts about a small invented world (people, towns, jobs,
pets, colours, objects), in English and Japanese, built from templates with fixed seeds,
so the files are free of any licence, byte-identical on every run and small enough
(under 3.5 MB in all) for a tiny model to learn from in minutes on two CPU cores.

Every word list is split 80/20 before anything is written. The training-side words make
all the training files (`*.train.jsonl`, `world-*.txt`, instructions, chat, completion,
summarisation); the held-out words make only `qa-*.val.jsonl`. So the held-out QA
questions are about people whose names, towns, jobs, pets, colours, objects and friends
never occur in any training file: a model can answer them only by copying from the
context. `check()` verifies that (and the other promises in datasets/README.md) and
raises before anything is written if one is broken. Run from the repository root:

    python3 datasets/generate_sft.py
"""

import gzip
import json
import random
import re
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
OUT = HERE / "sft"
TINY = HERE / "tiny"
SEED = 20261123
QA_PROMPT = "Context: {context}\nQuestion: {question}\nAnswer:"   # manabi's Format::Qa
VAL_FRACTION = 0.2
# Share of the training QA answers that are invented words (one-off strings of the kind's
# script), so the answer cannot be recalled from a closed list and must be copied.
INVENTED_SHARE = 0.5
MAX_CONTEXT = {"en": 160, "ja": 80}   # characters
MAX_TOTAL_BYTES = 3_500_000
WORLD_BYTES = 300_000
COPY_BYTES = 4_000_000     # each, before gzip: enough that a tiny model cannot memorise it
# The large QA training sets (gzipped): 20,000 examples a language, so 3000 SFT steps of
# 16 see each example about once and the model must learn to copy instead of recalling the
# 6000 answers of the plain training files (which it memorises: train loss 0.09, held-out
# exact match 47 %).
QA_LARGE = 20_000
MAX_GZIP_BYTES = 5_000_000

# ---------------------------------------------------------------------------------------
# Vocabulary

# English: people are CVCV names (Mara, Tovi), pets reduplicated CVCV (Momo, Zuzu), towns
# a CVC head and a suffix (Tolven, Marby): the three shapes never collide.
EN_CONS = "b d f g h j k l m n p r s t v z".split()
EN_NOT_NAMES = {  # real words, places and names that would read oddly, and the names in
    # datasets/generate.py (so held-out names are not in the tiny stories either)
    "Sofa", "Soda", "Lava", "Data", "Kilo", "Memo", "Demo", "Solo", "Halo", "Hero", "Zero",
    "Tuba", "Gala", "Diva", "Coma", "Tofu", "Menu", "Guru", "Judo", "Polo", "Yoga", "Visa",
    "Taco", "Tuna", "Puma", "Lima", "Gaza", "Sumo", "Bali", "Mali", "Fiji", "Peru", "Toga",
    "Ludo", "Logo", "Lego", "Sago", "Mojo", "Hula", "Nova", "Veto", "Lilo", "Mini", "Kiwi",
    "Sari", "Nazi", "Pedo", "Homo", "Puta", "Puto", "Pito", "Fuka", "Fuki", "Fuku", "Hobo",
    "Bozo", "Limo", "Dodo", "Juju", "Rabi", "Jedi", "Kobo", "Dali", "Pisa", "Roma", "Nagu",
    "Dana", "Goro", "Hana", "Mira", "Sora", "Lena", "Olga", "Jun", "Rin", "Kenji", "Aiko",
}
EN_NOT_PETS = {"Kaka", "Pipi", "Pupu", "Dudu", "Titi", "Gaga", "Nana", "Mama", "Papa",
               "Dada", "Baba", "Pepe", "Sisi", "Vivi"}
EN_TOWN_SUFFIXES = ["by", "ford", "ton", "wick", "mere", "dale", "holm", "ven", "field",
                    "brook", "moor", "well"]
EN_JOBS = ["baker", "farmer", "potter", "tailor", "builder", "painter", "teacher", "doctor",
           "nurse", "fisher", "sailor", "miner", "weaver", "singer", "writer", "cook",
           "gardener", "carpenter", "driver", "pilot", "dentist", "florist", "butcher",
           "jeweller", "barber", "clockmaker", "shepherd", "hunter", "ranger", "librarian",
           "plumber", "mason", "brewer", "dancer", "drummer", "poet", "judge", "grocer",
           "cobbler", "beekeeper", "engineer", "astronomer"]
EN_COLOURS = ["red", "blue", "green", "yellow", "orange", "purple", "pink", "brown", "grey",
              "black", "white", "gold", "silver", "teal", "navy", "amber", "violet", "cream",
              "olive", "coral", "maroon", "beige", "lime", "ruby", "jade", "ivory", "indigo",
              "crimson", "scarlet", "lilac", "mint", "peach"]
EN_OBJECTS = ["lamp", "kite", "drum", "flute", "boat", "bike", "map", "clock", "bell", "hat",
              "scarf", "kettle", "ladder", "basket", "candle", "compass", "lantern", "violin",
              "camera", "radio", "globe", "hammer", "shovel", "whistle", "mirror", "teapot",
              "umbrella", "anchor", "easel", "harp", "telescope", "sled", "wagon", "quilt",
              "banjo", "trumpet", "backpack", "notebook"]
EN_ANIMALS = ["cat", "dog", "bird", "fish", "rabbit", "hamster", "goat", "pony", "turtle",
              "parrot"]   # shared by train and val: they are never an answer

# Japanese: people are three-mora katakana names without voiced or p-sounds (ホハナ), pets
# two kana made only of p/b-sounds and ン (ポポ, ベン), towns two kanji and 町 (北山町):
# no name can occur inside another of a different kind.
JA_NAME_KANA = "カキクケコサシスセソタチトナニノハヒフホマミムメモヤユヨラリルレロ"
JA_PET_KANA = "パピプペポバビブベボ"
JA_NOT_IN_NAMES = ["クソ", "シネ", "コロス", "キモ", "カス", "シリ", "ハルキ", "ミナ"]
JA_TOWN_HEADS = "北南東西上中新古大小高本若"
JA_TOWN_TAILS = "山川森野原田浜谷岡島沢坂橋宮崎池"
JA_JOBS = ["パン屋", "花屋", "本屋", "魚屋", "八百屋", "肉屋", "靴屋", "時計屋", "鍛冶屋",
           "仕立て屋", "大工", "医者", "教師", "画家", "歌手", "漁師", "農家", "料理人", "庭師",
           "船乗り", "消防士", "看護師", "薬剤師", "陶芸家", "写真家", "作家", "通訳", "運転手",
           "司書", "建築家", "獣医", "美容師", "猟師", "菓子職人", "木こり", "羊飼い",
           "郵便配達員", "駅員", "警察官", "研究者", "音楽家", "記者", "弁護士", "銀行員"]
JA_COLOURS = ["赤色", "青色", "緑色", "黄色", "白色", "黒色", "紫色", "茶色", "灰色", "水色",
              "金色", "銀色", "紺色", "桃色", "空色", "藍色", "朱色", "橙色", "桜色", "藤色",
              "栗色", "若草色", "山吹色", "小麦色", "琥珀色", "茜色", "群青色", "象牙色",
              "黄緑色", "小豆色", "珊瑚色", "翡翠色"]
JA_OBJECTS = ["傘", "鍵", "地図", "帽子", "時計", "笛", "太鼓", "凧", "提灯", "鏡", "鞄", "手紙",
              "自転車", "望遠鏡", "毛布", "花瓶", "茶碗", "風鈴", "扇子", "手帳", "鉛筆", "箒",
              "籠", "水筒", "眼鏡", "釣り竿", "人形", "財布", "指輪", "風車", "ランプ", "カメラ",
              "ラジオ", "ギター", "ノート", "ボール"]
JA_ANIMALS = ["猫", "犬", "鳥", "金魚", "うさぎ", "ハムスター", "亀", "インコ", "ヤギ", "ポニー"]

# The categories whose words are split between train and val (people and every kind of
# answer); animals are shared.
SPLIT_KINDS = ["person", "town", "job", "pet", "colour", "object"]


def en_people() -> list[str]:
    out = []
    for c1 in EN_CONS:
        for v1 in "aeiou":
            for c2 in EN_CONS:
                for v2 in "aiou":
                    if c1 + v1 != c2 + v2:
                        out.append((c1 + v1 + c2 + v2).capitalize())
    return [n for n in out if n not in EN_NOT_NAMES]


def en_pets() -> list[str]:
    out = [(c + v + c + v).capitalize() for c in EN_CONS if c != "h" for v in "aeiou"]
    return [p for p in out if p not in EN_NOT_PETS]


def en_towns() -> list[str]:
    heads = [c + v + k for c in EN_CONS for v in "aeiou" for k in "lnrm"]
    return [(h + s).capitalize() for h in heads for s in EN_TOWN_SUFFIXES]


def ja_people() -> list[str]:
    k = JA_NAME_KANA
    out = [a + b + c for a in k for b in k for c in k if a != b and b != c]
    return [n for n in out if not any(bad in n for bad in JA_NOT_IN_NAMES)]


def ja_pets() -> list[str]:
    return [a + b for a in JA_PET_KANA for b in JA_PET_KANA + "ン"
            if a + b not in ("パン", "パパ", "ババ", "ベビ")]


def ja_towns() -> list[str]:
    return [a + b + "町" for a in JA_TOWN_HEADS for b in JA_TOWN_TAILS]


def reserved_words() -> tuple[set[str], list[str]]:
    """Words of datasets/generate.py's lists: they occur in the tiny stories, so none of
    them is held out (EN as lower-case words, JA as strings)."""
    sys.path.insert(0, str(HERE))
    sys.dont_write_bytecode = True   # leave no __pycache__ in datasets/
    try:
        import generate  # noqa: E402  (the tiny-stories generator; importing runs nothing)
    finally:
        sys.path.pop(0)
    en = set()
    for name in ["EN_NAMES", "EN_PLACES", "EN_THINGS", "EN_VERBS", "EN_FEEL", "EN_WEATHER",
                 "EN_END"]:
        for phrase in getattr(generate, name):
            en.update(w.lower() for w in re.findall(r"[A-Za-z]+", phrase))
    # Words the story templates themselves write ("At 3 o'clock, …").
    en.update({"o", "clock", "said", "days", "ago", "felt", "asked", "walked"})
    ja = []
    for name in ["JA_NAMES", "JA_PLACES", "JA_THINGS", "JA_VERBS", "JA_FEEL", "JA_WEATHER",
                 "JA_END"]:
        ja.extend(getattr(generate, name))
    return en, ja


def build_vocab() -> dict:
    """{lang: {"train": {kind: [...]}, "val": {kind: [...]}}}, deterministic."""
    rng = random.Random(SEED)
    res_en, res_ja = reserved_words()
    pools = {
        "en": {"person": rng.sample(en_people(), 1500), "town": rng.sample(en_towns(), 800),
               "job": EN_JOBS, "pet": en_pets(), "colour": EN_COLOURS, "object": EN_OBJECTS},
        "ja": {"person": rng.sample(ja_people(), 1500), "town": rng.sample(ja_towns(), 200),
               "job": JA_JOBS, "pet": ja_pets(), "colour": JA_COLOURS, "object": JA_OBJECTS},
    }
    animals = {"en": EN_ANIMALS, "ja": JA_ANIMALS}
    vocab = {}
    for lang, kinds in pools.items():
        every = [w for ws in kinds.values() for w in ws] + animals[lang]
        if len({w.lower() for w in every}) != len(every):
            raise ValueError(f"{lang}: a word is in two lists")
        # A word that contains or is contained in another word (EN: as a whole word) is
        # never held out, nor one that the tiny stories use.
        if lang == "en":
            def clash(a, b):
                return re.search(rf"\b{re.escape(a.lower())}\b", b.lower()) is not None
            unsafe = {w for w in every if w.lower() in res_en}
        else:
            def clash(a, b):
                return a in b
            unsafe = {w for w in every if any(w in r or r in w for r in res_ja)}
        for a in every:
            for b in every:
                if a != b and (clash(a, b) or clash(b, a)):
                    unsafe.add(a)
        train, val = {}, {}
        for kind, words in kinds.items():
            words = sorted(set(words))
            rng.shuffle(words)
            n_val = round(len(words) * VAL_FRACTION)
            held = [w for w in words if w not in unsafe][:n_val]
            held_set = set(held)
            val[kind] = held
            train[kind] = [w for w in words if w not in held_set]
        train["animal"] = list(animals[lang])
        val["animal"] = list(animals[lang])
        vocab[lang] = {"train": train, "val": val}
    return vocab


# ---------------------------------------------------------------------------------------
# Facts and their sentences

KINDS = ["town", "job", "pet", "colour", "object", "friend"]


def article(word: str) -> str:
    return "an" if word[0] in "aeiou" else "a"


def sentence(lang: str, f: dict) -> str:
    p, k, v = f["who"], f["kind"], f["value"]
    if lang == "en":
        if k == "town":
            return f"{p} lives in {v}."
        if k == "job":
            return f"{p} works as {article(v)} {v}."
        if k == "pet":
            return f"{p} has {article(f['animal'])} {f['animal']} called {v}."
        if k == "colour":
            return f"{p}'s favourite colour is {v}."
        if k == "object":
            return f"{p} owns {article(v)} {v}."
        return f"{p}'s best friend is {v}."
    if k == "town":
        return f"{p}は{v}に住んでいます。"
    if k == "job":
        return f"{p}の仕事は{v}です。"
    if k == "pet":
        return f"{p}の{f['animal']}の名前は{v}です。"
    if k == "colour":
        return f"{p}の好きな色は{v}です。"
    if k == "object":
        return f"{p}は{v}を持っています。"
    return f"{p}の親友は{v}です。"


QUESTIONS = {
    "en": {
        "town": ["Where does {p} live?", "Which town does {p} live in?"],
        "job": ["What does {p} do?", "What is {p}'s job?"],
        "pet": ["What is the name of {p}'s {a}?"],
        "colour": ["What is {p}'s favourite colour?"],
        "object": ["What does {p} own?"],
        "friend": ["Who is {p}'s best friend?"],
    },
    "ja": {
        "town": ["{p}はどこに住んでいますか？", "{p}はどの町に住んでいますか？"],
        "job": ["{p}の仕事は何ですか？"],
        "pet": ["{p}の{a}の名前は何ですか？"],
        "colour": ["{p}の好きな色は何ですか？"],
        "object": ["{p}は何を持っていますか？"],
        "friend": ["{p}の親友は誰ですか？"],
    },
}


def question(lang: str, f: dict, rng: random.Random) -> str:
    return rng.choice(QUESTIONS[lang][f["kind"]]).format(p=f["who"], a=f.get("animal"))


def new_fact(who: str, kind: str, V: dict, rng: random.Random, used: dict,
             people: list[str]) -> dict:
    """A fact whose value differs from the values of that kind already in `used`."""
    f = {"who": who, "kind": kind}
    if kind == "friend":
        others = [x for x in people if x != who]
        if others and rng.random() < 0.3:
            f["value"] = rng.choice(others)
        else:
            f["value"] = rng.choice([x for x in V["person"]
                                     if x != who and x not in people and x not in used[kind]])
    else:
        f["value"] = rng.choice([x for x in V[kind] if x not in used[kind]])
    invent = V.get("invent")
    if invent is not None and rng.random() < INVENTED_SHARE and f["value"] not in people:
        f["value"] = invent(kind, rng, used[kind])
    if kind == "pet":
        f["animal"] = rng.choice(V["animal"])
    used[kind].add(f["value"])
    return f


def person_facts(who: str, kinds: list[str], V, rng, used, people) -> list[dict]:
    return [new_fact(who, k, V, rng, used, people) for k in kinds]


def join(lang: str, sentences: list[str]) -> str:
    return (" " if lang == "en" else "").join(sentences)


def arrange(blocks: list[list[dict]], rng: random.Random, mix: float = 0.25) -> list[dict]:
    """Facts grouped by person in a random order (or, with probability `mix`, shuffled)."""
    for b in blocks:
        rng.shuffle(b)
    rng.shuffle(blocks)
    facts = [f for b in blocks for f in b]
    if len(blocks) > 1 and rng.random() < mix:
        rng.shuffle(facts)
    return facts


# ---------------------------------------------------------------------------------------
# 1. Extractive QA and the world text

def qa_example(lang: str, V: dict, rng: random.Random) -> dict:
    while True:
        p = rng.choice(V["person"])
        q_kind = rng.choice(KINDS)
        used = {k: set() for k in KINDS}
        if rng.random() < 0.5:   # a distractor person, often with a fact of the same kind
            d = rng.choice([x for x in V["person"] if x != p])
            people = [p, d]
            n_p = rng.randint(1, 2)
            n_d = rng.randint(1, 2)
            p_kinds = [q_kind] + rng.sample([k for k in KINDS if k != q_kind], n_p - 1)
            if rng.random() < 0.7:
                d_kinds = [q_kind] + rng.sample([k for k in KINDS if k != q_kind], n_d - 1)
            else:
                d_kinds = rng.sample([k for k in KINDS if k != q_kind], n_d)
            target = person_facts(p, p_kinds, V, rng, used, people)
            blocks = [target, person_facts(d, d_kinds, V, rng, used, people)]
        else:
            people = [p]
            n_p = rng.randint(2, 4)
            p_kinds = [q_kind] + rng.sample([k for k in KINDS if k != q_kind], n_p - 1)
            target = person_facts(p, p_kinds, V, rng, used, people)
            blocks = [target]
        asked = target[0]
        context = join(lang, [sentence(lang, f) for f in arrange(blocks, rng)])
        if len(context) <= MAX_CONTEXT[lang]:
            return {"context": context, "question": question(lang, asked, rng),
                    "answer": asked["value"]}


class Inventor:
    """Invented words for the training QA sets and the copy text: towns, jobs, pet names,
    colours, objects and friends' names that occur nowhere else. A real word of either split, or
    one that contains or is contained in a held-out word, is never produced."""

    KANA = "アイウエオカキクケコサシスセソタチツテトナニヌネノハヒフヘホマミムメモヤユヨラリルレロワ"
    VOICED = "ガギグゲゴザジズゼゾダデドバビブベボ"
    JOB_TAILS = ["屋", "師", "家", "士", "職人", "", ""]

    def __init__(self, lang: str, vocab: dict):
        self.lang = lang
        self.real = {w.lower() for split in vocab.values() for ws in split.values()
                     for w in ws} | {w.lower() for w in EN_NOT_NAMES | EN_NOT_PETS}
        self.held = [w.lower() for k in SPLIT_KINDS for w in vocab["val"][k]]
        self.words: set[str] = set()
        # Japanese invented words are written with the kanji of the real words (both
        # splits: a character is not a word) plus as many other kanji, so a model with a
        # character vocabulary has seen every kanji a held-out word is written with.
        real_kanji = sorted({c for w in self.real for c in w if "\u4e00" <= c <= "\u9fff"})
        other = random.Random(SEED + 99).sample(
            [chr(c) for c in range(0x4E00, 0x9FA6) if chr(c) not in real_kanji],
            len(real_kanji))
        self.kanji = real_kanji + sorted(other)

    def _candidate(self, kind: str, rng: random.Random) -> str:
        if self.lang == "en":
            def syllables(lo, hi):
                return "".join(rng.choice(EN_CONS) + rng.choice("aeiou")
                               for _ in range(rng.randint(lo, hi)))
            if kind == "town":
                return (syllables(1, 1) + rng.choice("lnrm")
                        + rng.choice(EN_TOWN_SUFFIXES)).capitalize()
            if kind in ("pet", "friend"):
                return syllables(2, 3).capitalize()
            return syllables(2, 3) + (rng.choice(EN_CONS) if rng.random() < 0.5 else "")

        def kanji(lo, hi):
            return "".join(rng.choice(self.kanji) for _ in range(rng.randint(lo, hi)))
        if kind == "town":
            return kanji(2, 2) + "町"
        if kind == "job":
            return kanji(2, 3) + rng.choice(self.JOB_TAILS)
        if kind == "colour":
            return kanji(1, 2) + "色"
        if kind == "object":
            return kanji(1, 3)
        # friends and pets: katakana with a voiced sound, unlike any real name
        n = 3 if kind == "friend" else 2
        chars = [rng.choice(self.KANA) for _ in range(n - 1)] + [rng.choice(self.VOICED)]
        rng.shuffle(chars)
        return "".join(chars)

    def __call__(self, kind: str, rng: random.Random, used: set[str]) -> str:
        while True:
            w = self._candidate(kind, rng)
            low = w.lower()
            if low in self.real or w in used:
                continue
            if self.lang == "ja" and any(h in w or w in h for h in self.held):
                continue
            self.words.add(w)
            return w


def qa_set(lang: str, V: dict, n: int, seed: int) -> list[dict]:
    rng = random.Random(seed)
    out, seen = [], set()
    while len(out) < n:
        ex = qa_example(lang, V, rng)
        key = (ex["context"], ex["question"])
        if key not in seen:
            seen.add(key)
            out.append(ex)
    return out


RECAP = {"en": "So {}", "ja": "つまり、{}"}
LIST = {"en": ("{p} says: {w}. Again: {w}.", " "), "ja": ("{p}の言葉：{w}。もう一度：{w}。", " ")}


def list_line(lang: str, V: dict, rng: random.Random) -> str:
    """3-6 words said twice, separated by spaces only (no comma after every word): each
    token of the repeat follows the same token as in the first half, the plainest case
    of in-context copying (an induction head's job)."""
    invent = V["invent"]
    words: list[str] = []
    for _ in range(rng.randint(3, 6)):
        kind = rng.choice(KINDS)
        if rng.random() < INVENTED_SHARE:
            words.append(invent(kind, rng, set(words)))
        else:
            pool = V["person"] if kind == "friend" else V[kind]
            words.append(rng.choice([w for w in pool if w not in words]))
    person = rng.choice(V["person"])
    template, sep = LIST[lang]
    return template.format(p=person, w=sep.join(words))


def world_text(lang: str, V: dict, seed: int, size_bytes: int = WORLD_BYTES) -> str:
    """Paragraphs (one a line) of fact sentences about 1-3 people, about `size_bytes`.

    With an inventor in `V` (the copy text), half the people and half the values are
    invented words, each paragraph ends by restating its facts in another order
    ("So Mara lives in Tolven."): a restated value can only be predicted by finding the
    person's sentence earlier in the line and copying from it; and half the lines are
    words said twice (`list_line`)."""
    rng = random.Random(seed)
    invent = V.get("invent")
    lines, size = [], 0
    while size < size_bytes:
        if invent is not None and rng.random() < 0.5:
            line = list_line(lang, V, rng)
            lines.append(line)
            size += len(line.encode("utf-8")) + 1
            continue
        people = rng.sample(V["person"], rng.randint(1, 3))
        if invent is not None:
            people = [invent("friend", rng, set(people)) if rng.random() < INVENTED_SHARE
                      else p for p in people]
        used = {k: set() for k in KINDS}
        blocks = [person_facts(p, rng.sample(KINDS, rng.randint(2, 5)), V, rng, used, people)
                  for p in people]
        facts = arrange(blocks, rng, mix=0.15)
        sentences = [sentence(lang, f) for f in facts]
        if invent is not None:
            for f in rng.sample(facts, len(facts)):
                sentences.append(RECAP[lang].format(sentence(lang, f)))
        line = join(lang, sentences)
        lines.append(line)
        size += len(line.encode("utf-8")) + 1
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------------------
# 2. Instructions

EN_NUMBER_WORDS = {2: "two", 3: "three", 4: "four"}


def instruction_example(lang: str, V: dict, rng: random.Random) -> dict:
    en = lang == "en"
    sep = ", " if en else "、"
    listable = V["object"] + V["colour"] + V["animal"]
    task = rng.randrange(14)

    def words(lo, hi):
        return rng.sample(listable, rng.randint(lo, hi))

    def person_text(kinds_first):
        p = rng.choice(V["person"])
        used = {k: set() for k in KINDS}
        extra = rng.sample([k for k in KINDS if k != kinds_first], rng.randint(0, 2))
        facts = person_facts(p, [kinds_first] + extra, V, rng, used, [p])
        asked = facts[0]
        rng.shuffle(facts)
        return join(lang, [sentence(lang, f) for f in facts]), asked

    if task == 0:
        ws = words(2, 5)
        ins = "Copy the list exactly." if en else "次の言葉をそのまま書き写してください。"
        return {"instruction": ins, "input": sep.join(ws), "output": sep.join(ws)}
    if task == 1:
        ws = words(2, 5)
        ins = ("Reverse the order of the words in the list." if en
               else "次の言葉を逆の順番に並べてください。")
        return {"instruction": ins, "input": sep.join(ws), "output": sep.join(ws[::-1])}
    if task == 2:
        ws = words(1, 5)
        ins = ("How many words are in the list? Answer with a number." if en
               else "言葉はいくつありますか？数字で答えてください。")
        return {"instruction": ins, "input": sep.join(ws), "output": str(len(ws))}
    if task in (3, 4):
        ws = words(2, 5)
        if task == 3:
            ins = "What is the first word in the list?" if en else "最初の言葉は何ですか？"
            return {"instruction": ins, "input": sep.join(ws), "output": ws[0]}
        ins = "What is the last word in the list?" if en else "最後の言葉は何ですか？"
        return {"instruction": ins, "input": sep.join(ws), "output": ws[-1]}
    if task == 5:
        text, asked = person_text("town")
        ins = ("Which town does the person live in?" if en
               else "この文の人はどの町に住んでいますか？")
        return {"instruction": ins, "input": text, "output": asked["value"]}
    if task == 6:
        text, asked = person_text("job")
        ins = "What is the person's job?" if en else "この文の人の仕事は何ですか？"
        return {"instruction": ins, "input": text, "output": asked["value"]}
    if task == 7:
        text, asked = person_text(rng.choice(["town", "job", "pet", "colour", "object"]))
        ins = "Who is the text about?" if en else "この文は誰についての文ですか？"
        return {"instruction": ins, "input": text, "output": asked["who"]}
    if task == 8:
        text, asked = person_text("pet")
        ins = "What is the name of the pet?" if en else "ペットの名前は何ですか？"
        return {"instruction": ins, "input": text, "output": asked["value"]}
    if task == 9:
        n = rng.randint(2, 9)
        nums = [str(i) for i in range(1, n + 1)]
        ins = f"Count from 1 to {n}." if en else f"1から{n}まで数えてください。"
        return {"instruction": ins, "input": "", "output": sep.join(nums)}
    if task == 10:
        w, n = rng.choice(listable), rng.randint(2, 4)
        ins = (f'Repeat the word "{w}" {EN_NUMBER_WORDS[n]} times.' if en
               else f"「{w}」を{n}回繰り返してください。")
        return {"instruction": ins, "input": "", "output": (" " if en else "、").join([w] * n)}
    if task == 11:
        w = rng.choice(V["person"] + V["town"] + V["object"] + V["pet"])
        if en:
            ins = "How many letters are in the word? Answer with a number."
        else:
            ins = "この言葉は何文字ですか？数字で答えてください。"
        return {"instruction": ins, "input": w, "output": str(len(w))}
    if task == 12 and en:
        w = rng.choice(V["person"] + V["town"] + V["object"] + V["job"] + V["colour"])
        if rng.random() < 0.5:
            return {"instruction": "Write the word in capital letters.", "input": w,
                    "output": w.upper()}
        return {"instruction": f'Write the word "{w}" in capital letters.', "input": "",
                "output": w.upper()}
    if task == 13 and en:
        ws = words(2, 5)
        return {"instruction": "Sort the words in alphabetical order.",
                "input": sep.join(ws), "output": sep.join(sorted(ws))}
    # Japanese for 12 and 13: the friend of a person.
    text, asked = person_text("friend")
    return {"instruction": "この文の人の親友は誰ですか？", "input": text,
            "output": asked["value"]}


def unique(make, n: int, seed: int) -> list[dict]:
    rng = random.Random(seed)
    out, seen = [], set()
    while len(out) < n:
        ex = make(rng)
        key = json.dumps(ex, ensure_ascii=False)
        if key not in seen:
            seen.add(key)
            out.append(ex)
    return out


# ---------------------------------------------------------------------------------------
# 3. Chat

CHAT = {
    "en": {
        "system": ["You are a helpful assistant.",
                   "You are a helpful assistant. Answer using only the facts the user gives you.",
                   "Answer briefly, using the facts from the conversation."],
        "intro": ["Here are some facts.", "Please remember this.", "Listen to this.", ""],
        "ack": ["Okay, I will remember that.", "Got it.", "Understood."],
        "also": ["Also, ", "One more thing: ", ""],
    },
    "ja": {
        "system": ["あなたは親切なアシスタントです。",
                   "あなたは親切なアシスタントです。ユーザーが教えた事実だけを使って答えてください。",
                   "会話の中の事実を使って、短く答えてください。"],
        "intro": ["次のことを覚えてください。", "聞いてください。", ""],
        "ack": ["わかりました。覚えておきます。", "はい、わかりました。", "覚えました。"],
        "also": ["それから、", "もう一つ。", ""],
    },
}


def chat_example(lang: str, V: dict, rng: random.Random) -> dict:
    C = CHAT[lang]
    people = rng.sample(V["person"], rng.randint(1, 2))
    used = {k: set() for k in KINDS}
    blocks = [person_facts(p, rng.sample(KINDS, rng.randint(1, 3) if len(people) == 2
                                         else rng.randint(2, 4)), V, rng, used, people)
              for p in people]
    facts = arrange(blocks, rng)
    turns = rng.randint(2, 3)
    msgs = []
    if rng.random() < 0.5:
        msgs.append({"role": "system", "content": rng.choice(C["system"])})
    stated = join(lang, [sentence(lang, f) for f in facts])
    intro = rng.choice(C["intro"])
    opening = join(lang, [intro, stated]) if intro else stated
    asked = rng.sample(facts, min(len(facts), turns))
    pattern = rng.randrange(3)
    if pattern == 0:   # facts, acknowledgement, then questions
        msgs.append({"role": "user", "content": opening})
        msgs.append({"role": "assistant", "content": rng.choice(C["ack"])})
        questions = asked[:turns - 1]
    else:              # facts with the first question, then more questions
        questions = asked[:turns]
    for i, f in enumerate(questions):
        q = question(lang, f, rng)
        if pattern != 0 and i == 0:
            q = join(lang, [opening, q])
        elif pattern == 2 and i == len(questions) - 1:
            # the last turn brings a new fact and asks about it
            who = rng.choice(people)
            left = [k for k in KINDS if k not in {g["kind"] for g in facts if g["who"] == who}]
            if left:
                f = new_fact(who, rng.choice(left), V, rng, used, people)
                facts.append(f)
                q = join(lang, [rng.choice(C["also"]) + sentence(lang, f), question(lang, f, rng)])
        msgs.append({"role": "user", "content": q})
        msgs.append({"role": "assistant", "content": sentence(lang, f)})
    return {"messages": msgs}


# ---------------------------------------------------------------------------------------
# 4. Completion and summarisation

EN_SO = {
    "town": ("So {p} lives in", " {v}."),
    "job": ("So {p} works as", " {art} {v}."),
    "pet": ("So {p}'s {a} is called", " {v}."),
    "colour": ("So {p}'s favourite colour is", " {v}."),
    "object": ("So {p} owns", " {art} {v}."),
    "friend": ("So {p}'s best friend is", " {v}."),
}


def completion_example(V: dict, rng: random.Random) -> dict:
    r = rng.random()
    if r < 0.12:
        start, n = rng.randint(1, 10), rng.randint(3, 5)
        nums = [str(i) for i in range(start, start + n + 3)]
        return {"prompt": "Count: " + ", ".join(nums[:n]) + ",",
                "completion": " " + ", ".join(nums[n:])}
    if r < 0.55:
        ex = qa_example("en", V, rng)
        return {"prompt": f"{ex['context']}\nQuestion: {ex['question']}\nAnswer:",
                "completion": " " + ex["answer"]}
    # continue a sentence about a fact from the context
    people = rng.sample(V["person"], rng.randint(1, 2))
    used = {k: set() for k in KINDS}
    blocks = [person_facts(p, rng.sample(KINDS, rng.randint(1, 2)), V, rng, used, people)
              for p in people]
    facts = arrange(blocks, rng)
    f = rng.choice(facts)
    head, tail = EN_SO[f["kind"]]
    fill = {"p": f["who"], "v": f["value"], "a": f.get("animal"), "art": article(f["value"])}
    context = join("en", [sentence("en", g) for g in facts])
    return {"prompt": f"{context} {head.format(**fill)}", "completion": tail.format(**fill)}


def summary_example(lang: str, V: dict, rng: random.Random) -> dict:
    p = rng.choice(V["person"])
    used = {k: set() for k in KINDS}
    kinds = ["town", "job"] + rng.sample(["pet", "colour", "object", "friend"],
                                         rng.randint(1, 3))
    facts = person_facts(p, kinds, V, rng, used, [p])
    town, job = facts[0]["value"], facts[1]["value"]
    rng.shuffle(facts)
    doc = join(lang, [sentence(lang, f) for f in facts])
    if lang == "en":
        summary = f"{p} is {article(job)} {job} who lives in {town}."
    else:
        summary = f"{p}は{town}に住む{job}です。"
    return {"document": doc, "summary": summary}


# ---------------------------------------------------------------------------------------
# Checks

def check(files: dict[str, str], vocab: dict, records: dict[str, list[dict]],
          invented: dict[str, set[str]]) -> None:
    """Raises ValueError if a promise of datasets/README.md is broken."""
    problems = []
    # The held-out words and the training words are disjoint, kind by kind.
    val_words, train_words = {"en": set(), "ja": set()}, {"en": set(), "ja": set()}
    for lang, v in vocab.items():
        for kind in SPLIT_KINDS:
            both = set(v["train"][kind]) & set(v["val"][kind])
            if both:
                problems.append(f"{lang} {kind}: in train and val: {sorted(both)}")
            val_words[lang].update(v["val"][kind])
            train_words[lang].update(v["train"][kind])
        if val_words[lang] & train_words[lang]:
            problems.append(f"{lang}: words in both splits: {val_words[lang] & train_words[lang]}")

    def finder(words: set[str], lang: str):
        words = sorted(words, key=lambda w: (-len(w), w))
        if lang == "en":
            rx = re.compile(r"\b(?:" + "|".join(map(re.escape, words)) + r")\b")
        else:
            rx = re.compile("|".join(map(re.escape, words)))
        return lambda text: sorted(set(rx.findall(text)))

    find_val = {lang: finder(val_words[lang], lang) for lang in val_words}
    find_train = {lang: finder(train_words[lang], lang) for lang in train_words}
    stories = {p.name: p.read_text(encoding="utf-8") for p in sorted(TINY.glob("*.txt"))}
    for name, text in list(files.items()) + list(stories.items()):
        held_out = name.endswith(".val.jsonl")
        for lang in ("en", "ja"):
            if held_out:   # held-out files use no training word
                hits = find_train[lang](text) if f"-{lang}." in name else []
            else:          # no training file (nor tiny story) uses a held-out word
                hits = find_val[lang](text)
            if hits:
                problems.append(f"{name}: {'training' if held_out else 'held-out'} "
                                f"{lang} words {hits[:10]}")
    # Every QA answer is a verbatim substring of a short enough context, and the answers of
    # the held-out examples are held-out words.
    for name, recs in records.items():
        if not name.startswith("qa-"):
            continue
        lang = name[3:5]
        for r in recs:
            if r["answer"] not in r["context"]:
                problems.append(f"{name}: answer not in context: {r}")
            if len(r["context"]) > MAX_CONTEXT[lang]:
                problems.append(f"{name}: context over {MAX_CONTEXT[lang]} chars: {r}")
            if name.endswith(".val.jsonl"):
                ok = r["answer"] in val_words[lang]
            else:
                ok = r["answer"] in train_words[lang] or r["answer"] in invented[lang]
            if not ok:
                problems.append(f"{name}: answer {r['answer']!r} not of its split")
    total = sum(len(t.encode("utf-8")) for n, t in files.items() if not n.endswith(".gz"))
    if total >= MAX_TOTAL_BYTES:
        problems.append(f"datasets/sft would be {total} bytes (limit {MAX_TOTAL_BYTES})")
    if problems:
        raise ValueError("generate_sft.py check failed:\n  " + "\n  ".join(problems))


# ---------------------------------------------------------------------------------------

def jsonl(records: list[dict]) -> str:
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records)


def main() -> None:
    vocab = build_vocab()
    T = {lang: vocab[lang]["train"] for lang in vocab}
    H = {lang: vocab[lang]["val"] for lang in vocab}
    inventors = {lang: Inventor(lang, vocab[lang]) for lang in vocab}
    qa_train = {lang: dict(T[lang], invent=inventors[lang]) for lang in vocab}
    records = {
        "qa-en.train.jsonl": qa_set("en", qa_train["en"], 3000, SEED + 1),
        "qa-en.val.jsonl": qa_set("en", H["en"], 200, SEED + 2),
        "qa-ja.train.jsonl": qa_set("ja", qa_train["ja"], 3000, SEED + 3),
        "qa-ja.val.jsonl": qa_set("ja", H["ja"], 200, SEED + 4),
        "instructions-en.jsonl": unique(lambda r: instruction_example("en", T["en"], r), 500,
                                        SEED + 7),
        "instructions-ja.jsonl": unique(lambda r: instruction_example("ja", T["ja"], r), 500,
                                        SEED + 8),
        "chat-en.jsonl": unique(lambda r: chat_example("en", T["en"], r), 300, SEED + 9),
        "chat-ja.jsonl": unique(lambda r: chat_example("ja", T["ja"], r), 300, SEED + 10),
        "completion-en.jsonl": unique(lambda r: completion_example(T["en"], r), 200, SEED + 11),
        "summarise-en.jsonl": unique(lambda r: summary_example("en", T["en"], r), 200,
                                     SEED + 12),
        "summarise-ja.jsonl": unique(lambda r: summary_example("ja", T["ja"], r), 200,
                                     SEED + 13),
    }
    files = {name: jsonl(recs) for name, recs in records.items()}
    files["world-en.txt"] = world_text("en", T["en"], SEED + 5)
    files["world-ja.txt"] = world_text("ja", T["ja"], SEED + 6)
    copy_text = {
        "world-copy-en.txt.gz": world_text("en", qa_train["en"], SEED + 14, COPY_BYTES),
        "world-copy-ja.txt.gz": world_text("ja", qa_train["ja"], SEED + 15, COPY_BYTES),
    }
    large = {
        "qa-en.train-large.jsonl.gz": qa_set("en", qa_train["en"], QA_LARGE, SEED + 16),
        "qa-ja.train-large.jsonl.gz": qa_set("ja", qa_train["ja"], QA_LARGE, SEED + 17),
    }
    records.update(large)
    copy_text.update({name: jsonl(recs) for name, recs in large.items()})
    check({**files, **copy_text}, vocab, records,
          {lang: inv.words for lang, inv in inventors.items()})
    packed = {name: gzip.compress(text.encode("utf-8"), mtime=0)
              for name, text in copy_text.items()}
    if sum(map(len, packed.values())) >= MAX_GZIP_BYTES:
        raise ValueError(f"the copy text would be over {MAX_GZIP_BYTES} bytes gzipped")
    OUT.mkdir(parents=True, exist_ok=True)
    for name in sorted(files):
        with open(OUT / name, "w", encoding="utf-8", newline="\n") as fh:
            fh.write(files[name])
    for name, data in packed.items():
        (OUT / name).write_bytes(data)
        text = copy_text[name]
        print(f"{name:24} {text.count(chr(10)):5} lines {len(text.encode('utf-8')):8} bytes "
              f"({len(data)} gzipped)")
    total = sum(len(t.encode("utf-8")) for t in files.values())
    for name in sorted(files):
        text = files[name]
        print(f"{name:24} {text.count(chr(10)):5} lines {len(text.encode('utf-8')):8} bytes")
    for lang in ("en", "ja"):
        longest = max(len(r["context"]) for n, rs in records.items()
                      if n.startswith(f"qa-{lang}") for r in rs)
        sizes = {k: (len(T[lang][k]), len(H[lang][k])) for k in SPLIT_KINDS}
        print(f"qa-{lang}: longest context {longest} chars; words train/val {sizes}")
    print(f"total {total} bytes; held-out names and answers occur in no training file")


if __name__ == "__main__":
    main()
