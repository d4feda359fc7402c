"""Generates manabi's small preference and RL sample data sets (datasets/pref/).

The same invented world as datasets/generate_sft.py (people, towns, jobs, pets, colours,
objects, best friends; English and Japanese), with the same vocabulary and the same 80/20
train/held-out split: the word lists and fact helpers are imported from generate_sft.py,
so the two scripts can never drift apart. On top of it:

- preference pairs for DPO-style training in TRL's standard format
  (`{"prompt", "chosen", "rejected"}`, the prompt in manabi's QA template), plus small
  implicit-prompt, conversational and ranked samples;
- prompts with checkable answers for GRPO / RL: small arithmetic (EN and JA) and QA facts.

Held-out (`*.val.jsonl`) files use only the held-out words (or held-out arithmetic
combinations); `check()` verifies that, and the other promises in datasets/README.md, and
raises before anything is written if one is broken. Everything is seeded, so reruns are
byte-identical. Run from the repository root (Python 3 standard library only):

    python3 datasets/generate_pref.py
"""

import gzip
import hashlib
import json
import random
import re
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.dont_write_bytecode = True   # leave no __pycache__ in datasets/
import generate_sft as sft  # noqa: E402  (the script's folder is on sys.path; importing runs nothing)

OUT = HERE / "pref"
SEED = sft.SEED + 1000
MAX_TOTAL_BYTES = 2_000_000
QA_PROMPT = sft.QA_PROMPT
QA_PROMPT_RE = re.compile(r"^Context: ([^\n]+)\nQuestion: ([^\n]+)\nAnswer:$")

# What a rejected answer may be besides a wrong fact. The words are chosen to contain no
# word of the world (check() verifies that through the held-out scan).
REFUSALS = {
    "en": [" I don't know.", " I can't answer that.", " Sorry, I have no idea."],
    "ja": [" わかりません。", " 答えられません。", " すみません、知りません。"],
}
RUDE = {
    "en": [" Figure it out yourself.", " Why should I tell you?", " Read it yourself."],
    "ja": [" 自分で調べて。", " そんなの知らない。", " 自分で読んで。"],
}
REJECT_KINDS = ["wrong", "refusal", "rude"]


# ---------------------------------------------------------------------------------------
# Preference pairs

def qa_item(lang: str, V: dict, rng: random.Random) -> dict:
    """A QA context about one or two people (built as in sft.qa_example, but a distractor
    is more frequent so that wrong answers can often come from the context), and the fact
    asked about."""
    K = sft.KINDS
    while True:
        p = rng.choice(V["person"])
        q_kind = rng.choice(K)
        used = {k: set() for k in K}
        if rng.random() < 0.6:
            d = rng.choice([x for x in V["person"] if x != p])
            people = [p, d]
            p_kinds = [q_kind] + rng.sample([k for k in K if k != q_kind], rng.randint(0, 1))
            n_d = rng.randint(1, 2)
            if rng.random() < 0.7:
                d_kinds = [q_kind] + rng.sample([k for k in K if k != q_kind], n_d - 1)
            else:
                d_kinds = rng.sample([k for k in K if k != q_kind], n_d)
            target = sft.person_facts(p, p_kinds, V, rng, used, people)
            blocks = [target, sft.person_facts(d, d_kinds, V, rng, used, people)]
        else:
            people = [p]
            p_kinds = [q_kind] + rng.sample([k for k in K if k != q_kind], rng.randint(1, 2))
            target = sft.person_facts(p, p_kinds, V, rng, used, people)
            blocks = [target]
        asked = target[0]
        facts = sft.arrange(blocks, rng)
        context = sft.join(lang, [sft.sentence(lang, f) for f in facts])
        if len(context) <= sft.MAX_CONTEXT[lang]:
            return {"context": context, "question": sft.question(lang, asked, rng),
                    "asked": asked, "facts": facts, "people": people}


def wrong_value(item: dict, V: dict, rng: random.Random) -> str:
    """A value of the asked kind that is not the answer: from the context when it has one
    (the distractor's value, or for a friend another person named there), else from the
    same split's vocabulary."""
    a = item["asked"]
    kind, who, right = a["kind"], a["who"], a["value"]
    near = [f["value"] for f in item["facts"] if f["kind"] == kind and f is not a]
    if kind == "friend":
        near += item["people"]
    near = [v for v in dict.fromkeys(near) if v not in (who, right)]
    if near and rng.random() < 0.8:
        return rng.choice(near)
    pool = V["person"] if kind == "friend" else V[kind]
    return rng.choice([v for v in pool if v not in (who, right)])


def answers(lang: str, item: dict, V: dict, rng: random.Random) -> dict:
    """The possible responses to an item, each starting with a space."""
    a = item["asked"]
    wrong = wrong_value(item, V, rng)
    return {
        "polite": " " + sft.sentence(lang, a),
        "curt": f" {a['value']}." if lang == "en" else f" {a['value']}。",
        "wrong": " " + sft.sentence(lang, {**a, "value": wrong}),
        "wrong_value": wrong,
        "refusal": rng.choice(REFUSALS[lang]),
        "rude": rng.choice(RUDE[lang]),
    }


def meta(item: dict, ans: dict) -> dict:
    """The world words a record uses (for check(), not written)."""
    words = set(item["people"]) | {f["value"] for f in item["facts"]} | {ans["wrong_value"]}
    return {"words": sorted(words), "answer": item["asked"]["value"]}


def unique_items(lang: str, V: dict, n: int, seed: int) -> list[dict]:
    rng = random.Random(seed)
    out, seen = [], set()
    while len(out) < n:
        item = qa_item(lang, V, rng)
        key = (item["context"], item["question"])
        if key not in seen:
            seen.add(key)
            out.append(item)
    return out


def pref_set(lang: str, V: dict, n: int, seed: int) -> tuple[list[dict], list[dict]]:
    """n pairs {"prompt", "chosen", "rejected"}, rejected kinds balanced 1/3 each."""
    rng = random.Random(seed)
    items = unique_items(lang, V, n, seed + 500)
    kinds = [REJECT_KINDS[i % 3] for i in range(n)]
    rng.shuffle(kinds)
    records, metas = [], []
    for item, kind in zip(items, kinds):
        ans = answers(lang, item, V, rng)
        records.append({"prompt": QA_PROMPT.format(**item), "chosen": ans["polite"],
                        "rejected": ans[kind]})
        metas.append({**meta(item, ans), "reject": kind})
    return records, metas


def implicit_set(V: dict, n: int, seed: int) -> tuple[list[dict], list[dict]]:
    """TRL's implicit-prompt format: the prompt is the shared start of both texts."""
    pairs, metas = pref_set("en", V, n, seed)
    return [{"chosen": r["prompt"] + r["chosen"], "rejected": r["prompt"] + r["rejected"]}
            for r in pairs], metas


def chat_set(V: dict, n: int, seed: int) -> tuple[list[dict], list[dict]]:
    """TRL's conversational format: the user states the facts and asks; the assistant's
    replies have no leading space (the chat template separates the turns)."""
    pairs, metas = pref_set("en", V, n, seed)
    out = []
    for r in pairs:
        context, q = QA_PROMPT_RE.match(r["prompt"]).groups()
        out.append({"prompt": [{"role": "user", "content": f"{context} {q}"}],
                    "chosen": [{"role": "assistant", "content": r["chosen"].strip()}],
                    "rejected": [{"role": "assistant", "content": r["rejected"].strip()}]})
    return out, metas


def ranked_set(V: dict, n: int, seed: int) -> tuple[list[dict], list[dict]]:
    """Three responses, best first: correct and polite, correct and curt, wrong."""
    rng = random.Random(seed)
    records, metas = [], []
    for item in unique_items("en", V, n, seed + 500):
        ans = answers("en", item, V, rng)
        records.append({"prompt": QA_PROMPT.format(**item),
                        "responses": [ans["polite"], ans["curt"], ans["wrong"]]})
        metas.append(meta(item, ans))
    return records, metas


# ---------------------------------------------------------------------------------------
# RL prompts with checkable answers

ARITH_MAX = 20
ARITH_PROMPTS = {
    "en": {"+": ["Q: What is {a} + {b}?\nA:", "Q: What is {a} plus {b}?\nA:",
                 "Q: How much is {a} + {b}?\nA:"],
           "-": ["Q: What is {a} - {b}?\nA:", "Q: What is {a} minus {b}?\nA:",
                 "Q: How much is {a} - {b}?\nA:"]},
    "ja": {"+": ["問: {a} たす {b} は？\n答:", "問: {a} + {b} は？\n答:",
                 "問: {a} たす {b} はいくつですか？\n答:"],
           "-": ["問: {a} ひく {b} は？\n答:", "問: {a} - {b} は？\n答:",
                 "問: {a} ひく {b} はいくつですか？\n答:"]},
}
ARITH_RE = {
    "en": re.compile(r"^Q: (?:What|How much) is (\d+) (\+|-|plus|minus) (\d+)\?\nA:$"),
    "ja": re.compile(r"^問: (\d+) (\+|-|たす|ひく) (\d+) は(?:|いくつですか)？\n答:$"),
}
OP_WORDS = {"+": "+", "-": "-", "plus": "+", "minus": "-", "たす": "+", "ひく": "-"}


def arith_combos(seed: int) -> tuple[list[tuple], list[tuple]]:
    """Every (a, op, b) with 0 <= a, b <= ARITH_MAX and a result >= 0, split 80/20 at
    random: the held-out 20% occur only in the val files (the same split for EN and JA)."""
    combos = [(a, op, b) for op in "+-" for a in range(ARITH_MAX + 1)
              for b in range(ARITH_MAX + 1) if op == "+" or a >= b]
    rng = random.Random(seed)
    rng.shuffle(combos)
    n_val = round(len(combos) * sft.VAL_FRACTION)
    return sorted(combos[n_val:]), sorted(combos[:n_val])


def arith_set(lang: str, combos: list[tuple], n: int, seed: int) -> list[dict]:
    """n distinct prompts (a combination in one of the phrasings) without repeats."""
    rng = random.Random(seed)
    pool = [(a, op, b, t) for (a, op, b) in combos
            for t in range(len(ARITH_PROMPTS[lang][op]))]
    if len(pool) < n:
        raise ValueError(f"arith {lang}: only {len(pool)} distinct prompts for {n}")
    out = []
    for a, op, b, t in rng.sample(pool, n):
        value = a + b if op == "+" else a - b
        out.append({"prompt": ARITH_PROMPTS[lang][op][t].format(a=a, b=b),
                    "answer": str(value)})
    return out


def facts_set(V: dict, n: int, seed: int) -> list[dict]:
    """QA prompts whose answer (one word, a substring of the context) a reward can check."""
    return [{"prompt": QA_PROMPT.format(**ex), "answer": ex["answer"]}
            for ex in sft.qa_set("en", V, n, seed)]


# ---------------------------------------------------------------------------------------
# Checks

COUNTS = {
    "pref-en.train.jsonl": 1500, "pref-en.val.jsonl": 200,
    "pref-ja.train.jsonl": 1500, "pref-ja.val.jsonl": 200,
    "pref-implicit-en.jsonl": 50, "pref-chat-en.jsonl": 50, "ranked-en.jsonl": 100,
    "rl-arith-en.train.jsonl": 1000, "rl-arith-en.val.jsonl": 200,
    "rl-arith-ja.train.jsonl": 1000, "rl-arith-ja.val.jsonl": 200,
    "rl-facts-en.train.jsonl": 500, "rl-facts-en.val.jsonl": 100,
    "sft-mixed-en.train.jsonl": 3000,
    # Larger training pairs, gzipped: enough that a reward model sees each pair about once
    # and must learn to check an answer against the context instead of recalling pairs.
    "pref-en.train-large.jsonl.gz": 20000, "pref-ja.train-large.jsonl.gz": 20000,
}


def lang_of(name: str) -> str:
    return "ja" if "-ja." in name else "en"


def check(files: dict[str, str], vocab: dict, records: dict[str, list[dict]],
          metas: dict[str, list[dict]], combos: dict[str, list[tuple]]) -> None:
    """Raises ValueError if a promise of datasets/README.md is broken."""
    problems = []
    if sorted(files) != sorted(COUNTS):
        problems.append(f"files {sorted(files)} are not {sorted(COUNTS)}")
    for name, n in COUNTS.items():
        if len(records.get(name, [])) != n or files.get(name, "").count("\n") != n:
            problems.append(f"{name}: not {n} lines")

    # The world words: splits disjoint; each record's words from its own split; no word of
    # the other split anywhere in a file's text (EN as a whole word, JA as a substring).
    split = {lang: {s: {w for k in sft.SPLIT_KINDS for w in vocab[lang][s][k]}
                    for s in ("train", "val")} for lang in vocab}
    for lang, s in split.items():
        if s["train"] & s["val"]:
            problems.append(f"{lang}: words in both splits: {sorted(s['train'] & s['val'])}")

    def finder(words: set[str], lang: str):
        alt = "|".join(map(re.escape, sorted(words, key=lambda w: (-len(w), w))))
        rx = re.compile(rf"\b(?:{alt})\b" if lang == "en" else alt)
        return lambda text: sorted(set(rx.findall(text)))

    find = {(lang, s): finder(split[lang][s], lang) for lang in split for s in split[lang]}
    for name, text in files.items():
        held_out = ".val." in name
        if held_out:   # a val file has no training-side word of its language
            hits = find[(lang_of(name), "train")](text)
        else:          # a training file has no held-out word of either language
            hits = find[("en", "val")](text) + find[("ja", "val")](text)
        if hits:
            problems.append(f"{name}: {'training' if held_out else 'held-out'} words "
                            f"{hits[:10]}")
        own = split[lang_of(name)]["val" if held_out else "train"]
        for m in metas.get(name, []):
            bad = [w for w in m["words"] if w not in own]
            if bad:
                problems.append(f"{name}: words {bad} not of its split")

    # Preference pairs: the QA prompt template; chosen states the answer; rejected differs;
    # the rejected kinds are balanced.
    for name, recs in records.items():
        lang = lang_of(name)
        if name.startswith("pref-") or name.startswith("ranked-") or name.startswith("rl-facts"):
            for r, m in zip(recs, metas.get(name, [{}] * len(recs))):
                if name == "pref-implicit-en.jsonl":
                    prompt = r["chosen"][:r["chosen"].index("\nAnswer:") + 8]
                    if not (r["rejected"].startswith(prompt) and r["chosen"] != r["rejected"]):
                        problems.append(f"{name}: no shared prompt: {r}")
                    continue
                if name == "pref-chat-en.jsonl":
                    roles = ([t["role"] for t in r["prompt"]], [t["role"] for t in r["chosen"]],
                             [t["role"] for t in r["rejected"]])
                    if roles != (["user"], ["assistant"], ["assistant"]):
                        problems.append(f"{name}: roles {roles}")
                    if m["answer"] not in r["chosen"][0]["content"]:
                        problems.append(f"{name}: chosen lacks the answer: {r}")
                    continue
                match = QA_PROMPT_RE.match(r["prompt"])
                if not match:
                    problems.append(f"{name}: prompt not in the QA template: {r['prompt']!r}")
                    continue
                if name.startswith("rl-facts"):
                    if r["answer"] not in match.group(1):
                        problems.append(f"{name}: answer not in context: {r}")
                    own = split["en"]["val" if ".val." in name else "train"]
                    if r["answer"] not in own:
                        problems.append(f"{name}: answer {r['answer']!r} not of its split")
                    continue
                texts = r["responses"] if name.startswith("ranked-") else [r["chosen"],
                                                                          r["rejected"]]
                if len(set(texts)) != len(texts) or not all(t.startswith(" ") for t in texts):
                    problems.append(f"{name}: responses equal or without a leading space: {r}")
                if m["answer"] not in texts[0] or m["answer"] not in match.group(1):
                    problems.append(f"{name}: best response or context lacks the answer: {r}")
        if name.startswith("pref-") and ".jsonl" in name and "chat" not in name \
                and "implicit" not in name:
            kinds = [m["reject"] for m in metas[name]]
            counts = {k: kinds.count(k) for k in REJECT_KINDS}
            if max(counts.values()) - min(counts.values()) > 1:
                problems.append(f"{name}: rejected kinds not balanced: {counts}")
        # No prompt twice in a file (the mixed SFT set has each twice, once per answer).
        prompts = [json.dumps([r.get("prompt", r.get("chosen")), r.get("completion")],
                              ensure_ascii=False) for r in recs]
        if len(set(prompts)) != len(prompts):
            problems.append(f"{name}: a prompt occurs twice")

    # Arithmetic: every prompt parses to its combination and answer; the held-out
    # combinations (and so prompts) never occur in training.
    train_c, val_c = set(combos["train"]), set(combos["val"])
    if train_c & val_c:
        problems.append(f"arith: combinations in both splits: {sorted(train_c & val_c)[:10]}")
    for lang in ("en", "ja"):
        seen = {}
        for s in ("train", "val"):
            name = f"rl-arith-{lang}.{s}.jsonl"
            seen[s] = set()
            for r in records[name]:
                m = ARITH_RE[lang].match(r["prompt"])
                if not m:
                    problems.append(f"{name}: prompt does not parse: {r['prompt']!r}")
                    continue
                a, op, b = int(m.group(1)), OP_WORDS[m.group(2)], int(m.group(3))
                value = a + b if op == "+" else a - b
                if r["answer"] != str(value) or value < 0 or max(a, b) > ARITH_MAX:
                    problems.append(f"{name}: bad item {r}")
                if (a, op, b) not in (train_c if s == "train" else val_c):
                    problems.append(f"{name}: {(a, op, b)} not of its split")
                seen[s].add((a, op, b))
        if seen["train"] & seen["val"]:
            problems.append(f"rl-arith-{lang}: val combinations in train: "
                            f"{sorted(seen['train'] & seen['val'])[:10]}")

    # Val prompts never occur in a training file.
    prompt_sets = {}
    for name, recs in records.items():
        if "prompt" in (recs[0] if recs else {}):
            prompt_sets[name] = {json.dumps(r["prompt"], ensure_ascii=False) for r in recs}
    for vname in [n for n in prompt_sets if ".val." in n]:
        for tname in [n for n in prompt_sets if ".val." not in n]:
            if prompt_sets[vname] & prompt_sets[tname]:
                problems.append(f"{vname}: prompts also in {tname}")

    total = sum(len(t.encode("utf-8")) for n, t in files.items() if not n.endswith(".gz"))
    if total >= MAX_TOTAL_BYTES:
        problems.append(f"datasets/pref would be {total} bytes (limit {MAX_TOTAL_BYTES})")
    if problems:
        raise ValueError("generate_pref.py check failed:\n  " + "\n  ".join(problems))


# ---------------------------------------------------------------------------------------

def main() -> None:
    vocab = sft.build_vocab()   # the same vocabulary and split as datasets/sft/
    T = {lang: vocab[lang]["train"] for lang in vocab}
    H = {lang: vocab[lang]["val"] for lang in vocab}
    records, metas = {}, {}
    for name, (recs, ms) in {
        "pref-en.train.jsonl": pref_set("en", T["en"], 1500, SEED + 1),
        "pref-en.val.jsonl": pref_set("en", H["en"], 200, SEED + 2),
        "pref-ja.train.jsonl": pref_set("ja", T["ja"], 1500, SEED + 3),
        "pref-ja.val.jsonl": pref_set("ja", H["ja"], 200, SEED + 4),
        "pref-implicit-en.jsonl": implicit_set(T["en"], 50, SEED + 5),
        "pref-chat-en.jsonl": chat_set(T["en"], 50, SEED + 6),
        "ranked-en.jsonl": ranked_set(T["en"], 100, SEED + 7),
        "pref-en.train-large.jsonl.gz": pref_set("en", T["en"], 20000, SEED + 15),
        "pref-ja.train-large.jsonl.gz": pref_set("ja", T["ja"], 20000, SEED + 16),
    }.items():
        records[name], metas[name] = recs, ms
    train_c, val_c = arith_combos(SEED + 8)
    combos = {"train": train_c, "val": val_c}
    for i, lang in enumerate(("en", "ja")):
        records[f"rl-arith-{lang}.train.jsonl"] = arith_set(lang, train_c, 1000, SEED + 9 + 2 * i)
        records[f"rl-arith-{lang}.val.jsonl"] = arith_set(lang, val_c, 200, SEED + 10 + 2 * i)
    records["rl-facts-en.train.jsonl"] = facts_set(T["en"], 500, SEED + 13)
    records["rl-facts-en.val.jsonl"] = facts_set(H["en"], 100, SEED + 14)
    # An SFT set whose responses are the chosen and the rejected answer of every English
    # training pair: a policy tuned on it answers well half the time, and RLHF (PPO with
    # the reward model) has something to move.
    records["sft-mixed-en.train.jsonl"] = [
        {"prompt": r["prompt"], "completion": r[side]}
        for r in records["pref-en.train.jsonl"] for side in ("chosen", "rejected")]
    files = {name: sft.jsonl(recs) for name, recs in records.items()}
    check(files, vocab, records, metas, combos)
    OUT.mkdir(parents=True, exist_ok=True)
    for name in sorted(files):
        if name.endswith(".gz"):
            (OUT / name).write_bytes(gzip.compress(files[name].encode("utf-8"), mtime=0))
            continue
        with open(OUT / name, "w", encoding="utf-8", newline="\n") as fh:
            fh.write(files[name])
    total = sum(len(t.encode("utf-8")) for n, t in files.items() if not n.endswith(".gz"))
    for name in sorted(files):
        data = files[name].encode("utf-8")
        print(f"{name:26} {files[name].count(chr(10)):5} lines {len(data):8} bytes  "
              f"sha256 {hashlib.sha256(data).hexdigest()[:16]}")
    print(f"arith combinations train/val: {len(train_c)}/{len(val_c)}")
    print(f"total {total} bytes; held-out words and arithmetic combinations occur in no "
          f"training file")


if __name__ == "__main__":
    main()
