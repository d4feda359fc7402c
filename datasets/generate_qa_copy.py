"""QA training sets that teach copying any word, in each language's own token shape.

Two faults of the QA sets of generate_sft.py, found in the errors of the best QA model
(docs/results/fine-tuning.md):

- English invented answers are consonant-vowel syllables (`hihafe`, `subora`), while the
  held-out jobs, colours and objects are English words with clusters and double letters
  (`dancer`, `amber`, `whistle`, `yellow`). A model tuned on the former copies the first
  token of the latter and then drifts (`dancer` → `danumuer`). Here half of the invented
  jobs, colours and objects have English-like spelling (onset clusters, vowel digraphs,
  codas, endings such as -er, -le, -ow), still never a real word of either split.
- The QA template answers after a space (`Answer: 魚屋`). With a byte-level BPE the space
  changes the answer's tokens: ` 魚屋` is `Ġé Ń ļ å±ĭ`, `魚屋` in the context is `éŃļ
  å±ĭ`, so for Japanese the answer is never a copy of context tokens (true of all 200
  held-out questions). The Japanese sets here are `{"prompt", "completion"}` lines whose
  completion follows `Answer:` directly, so the answer's tokens are the context's.
  `qa-ja.val-nospace.jsonl` is the committed held-out file `qa-ja.val.jsonl` in that
  form (the same 200 questions and answers).

Each language: 10,000 items as generate_sft.py's QA sets and 10,000 hard two-person items
as generate_qa_hard.py's, other seeds, no held-out word.

    python3 datasets/generate_qa_copy.py   # datasets/sft/qa-{en,ja}.train-copy.jsonl.gz
                                           # and qa-ja.val-nospace.jsonl, git-ignored

Deterministic: the same code gives the same bytes.
"""
import gzip
import json
import random
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.dont_write_bytecode = True   # leave no __pycache__ in datasets/
import generate_sft as sft  # noqa: E402  (the script's folder is on sys.path; importing runs nothing)
import generate_qa_hard as hard  # noqa: E402

N = 10_000   # items of each kind (plain, hard) a language
SEED = sft.SEED + 40

ONSETS = ["", "", "b", "bl", "br", "c", "ch", "cl", "cr", "d", "dr", "f", "fl", "fr", "g",
          "gl", "gr", "h", "j", "k", "l", "m", "n", "p", "pl", "pr", "qu", "r", "s", "sc",
          "sh", "sk", "sl", "sm", "sn", "sp", "st", "str", "sw", "t", "th", "tr", "tw", "v",
          "w", "wh", "y", "z"]
VOWELS = ["a", "e", "i", "o", "u", "a", "e", "i", "o", "u", "ee", "oo", "ai", "ea", "ou",
          "oa", "ie", "y"]
CODAS = ["", "", "", "b", "ck", "d", "ff", "ft", "g", "l", "ll", "lt", "m", "mb", "mp",
         "n", "nc", "nd", "ng", "nk", "nt", "p", "r", "rd", "rn", "s", "sh", "ss", "st", "t",
         "tch", "th", "x", "mm", "nn", "pp", "tt", "rr"]
ENDINGS = ["er", "er", "le", "ow", "et", "y", "el", "on", "ist", "or", "in", "ard", "ette"]


class CopyInventor(sft.Inventor):
    """generate_sft's inventor; for English jobs, colours and objects half the words are
    English-like (`strimbow`, `cleppist`) instead of consonant-vowel syllables."""

    def _candidate(self, kind: str, rng: random.Random) -> str:
        while True:
            w = self._shape(kind, rng)
            # Stricter than generate_sft for English too: no held-out word inside an
            # invented one (`boath`) or the other way round.
            if self.lang == "ja" or not any(h in w.lower() or w.lower() in h
                                            for h in self.held):
                return w

    def _shape(self, kind: str, rng: random.Random) -> str:
        if self.lang != "en" or kind not in ("job", "colour", "object") or rng.random() < 0.5:
            return super()._candidate(kind, rng)
        while True:
            w = "".join(rng.choice(ONSETS) + rng.choice(VOWELS) + rng.choice(CODAS)
                        for _ in range(rng.randint(1, 2)))
            if rng.random() < 0.5:
                w += rng.choice(ENDINGS)
            if 3 <= len(w) <= 10 and w.isalpha():
                return w


def prompt_completion(ex: dict) -> dict:
    """A QA item as `Answer:` + the answer, no space between."""
    return {"prompt": sft.QA_PROMPT.format(**ex), "completion": ex["answer"]}


def main() -> None:
    vocab = sft.build_vocab()
    held = {w for lang in vocab for k in sft.SPLIT_KINDS for w in vocab[lang]["val"][k]}
    for i, lang in enumerate(("en", "ja")):
        V = dict(vocab[lang]["train"], invent=CopyInventor(lang, vocab[lang]))
        rng = random.Random(SEED + i)
        out, seen = [], set()
        for make in (sft.qa_example, hard.hard_example):
            n = 0
            while n < N:
                ex = make(lang, V, rng)
                if (ex["context"], ex["question"]) not in seen:
                    seen.add((ex["context"], ex["question"]))
                    out.append(ex)
                    n += 1
        if any(ex["answer"] in held for ex in out):
            raise ValueError("a held-out word in a training answer")
        rng.shuffle(out)
        if lang == "ja":
            out = [prompt_completion(ex) for ex in out]
        path = HERE / "sft" / f"qa-{lang}.train-copy.jsonl.gz"
        path.write_bytes(gzip.compress(sft.jsonl(out).encode("utf-8"), mtime=0))
        print(f"{path.name:30} {len(out)} examples")
    val = [json.loads(line) for line in (HERE / "sft" / "qa-ja.val.jsonl").open(encoding="utf-8")]
    path = HERE / "sft" / "qa-ja.val-nospace.jsonl"
    path.write_text(sft.jsonl([prompt_completion(ex) for ex in val]), encoding="utf-8")
    print(f"{path.name:30} {len(val)} examples")


if __name__ == "__main__":
    main()
