"""Checks manabi's BertJapaneseTokenizer against transformers' with the real MeCab
dictionaries of the Python packages (too large to commit, so not in the fixtures that
scripts/bertja_fixtures.py makes with its tiny dictionary): for `unidic_lite` and
`ipadic`, a WordPiece vocab of 8,000 (specials [PAD] [UNK] [CLS] [SEP] [MASK] first) is
trained on 吾輩は猫である split by transformers' MecabTokenizer with that dictionary, and
a tokenizer folder is written with `"mecab_kwargs": {"mecab_dic": NAME}` (as
cl-tohoku/bert-base-japanese-v3 has it); a third folder uses unidic_lite with
`subword_tokenizer_type: "character"`. Then for every non-empty line of こころ and every
non-empty line of tinyshakespeare after the first 20,000 (none of them seen in training),
`tok(line, add_special_tokens=False)["input_ids"]` from transformers must equal the
line `manabi tokenizer encode --tokenizer DIR --print-ids --doc-boundary line` prints.
For each folder it reports lines, ids, identical lines and the first 3 differing lines
with both token sequences; it exits 1 on any difference.

manabi finds the dictionaries of the installed Python packages itself (or through
MANABI_MECAB_DICDIR); the folders name only the dictionary.

    pip install "transformers==5.25.*" tokenizers fugashi ipadic unidic-lite
    python3 scripts/check_bertja_parity.py [path/to/manabi]
    python3 scripts/check_bertja_parity.py --python-only   # the transformers half only
"""

import collections
import json
import os
import subprocess
import sys
import tempfile
import time
import unicodedata
from pathlib import Path

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TQDM_DISABLE", "1")

from transformers import AutoTokenizer
from transformers.models.bert_japanese.tokenization_bert_japanese import MecabTokenizer
from transformers.utils import logging as hf_logging

# The deterministic WordPiece trainer and the line reader of the fixtures script.
sys.path.insert(0, str(Path(__file__).resolve().parent))
from bertja_fixtures import SPECIALS, read_lines, train_wordpiece  # noqa: E402

hf_logging.set_verbosity_error()

ROOT = Path(__file__).resolve().parent.parent
SHAKESPEARE = "tinyshakespeare.txt"
WAGAHAI = "aozora-wagahai-wa-neko-de-aru.txt"
KOKORO = "aozora-kokoro.txt"
EN_SPLIT = 20000

# (folder, dictionary, subword tokenizer)
CASES = [
    ("unidic_lite-wordpiece", "unidic_lite", "wordpiece"),
    ("ipadic-wordpiece", "ipadic", "wordpiece"),
    ("unidic_lite-char", "unidic_lite", "character"),
]

# Characters a line reader might take for a line end; lines holding one are left out.
LINE_BREAKS = set("\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029")


def held_out_lines():
    kokoro = [l for l in read_lines(KOKORO) if l.strip()]
    en = [l for l in read_lines(SHAKESPEARE)[EN_SPLIT:] if l.strip()]
    lines = kokoro + en
    kept = [l for l in lines if not LINE_BREAKS & set(l)]
    return kept, len(kokoro), len(en), len(lines) - len(kept)


def make_folder(folder, dic, subword, vocabs):
    folder.mkdir(parents=True)
    key = (dic, subword)
    if key not in vocabs:
        train = [l for l in read_lines(WAGAHAI) if l.strip()]
        if subword == "wordpiece":
            mecab = MecabTokenizer(do_lower_case=False, mecab_dic=dic)
            words = [" ".join(mecab.tokenize(l)) for l in train]
            vocabs[key] = train_wordpiece(words, 8000, limit_alphabet=2500)
        else:
            counts = collections.Counter()
            for l in train:
                counts.update(unicodedata.normalize("NFKC", l))
            ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
            vocabs[key] = SPECIALS + [c for c, _ in ranked if not c.isspace()][:3000]
    (folder / "vocab.txt").write_text("".join(t + "\n" for t in vocabs[key]), encoding="utf-8")
    config = {
        "tokenizer_class": "BertJapaneseTokenizer",
        "do_lower_case": False,
        "word_tokenizer_type": "mecab",
        "subword_tokenizer_type": subword,
        "mecab_kwargs": {"mecab_dic": dic},
        "model_max_length": 512,
    }
    (folder / "tokenizer_config.json").write_text(json.dumps(config, indent=2) + "\n",
                                                   encoding="utf-8")


def main() -> None:
    args = sys.argv[1:]
    python_only = "--python-only" in args
    args = [a for a in args if a != "--python-only"]
    manabi = args[0] if args else str(ROOT / "target" / "release" / "manabi")
    lines, n_ja, n_en, dropped = held_out_lines()
    print(f"held-out: {n_ja} lines of {KOKORO}, {n_en} of {SHAKESPEARE} after line {EN_SPLIT}"
          f"{f', {dropped} left out for a line-break character' if dropped else ''}")
    failures = 0
    vocabs = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, dic, subword in CASES:
            folder = Path(tmp) / name
            make_folder(folder, dic, subword, vocabs)
            tok = AutoTokenizer.from_pretrained(str(folder))
            assert type(tok).__name__ == "BertJapaneseTokenizer", type(tok)
            start = time.time()
            want_ids = [tok(l, add_special_tokens=False)["input_ids"] for l in lines]
            seconds = time.time() - start
            # A line with no ids would print as an empty line, which a reader may skip.
            keep = [i for i, ids in enumerate(want_ids) if ids]
            sample_lines = [lines[i] for i in keep]
            want = [" ".join(map(str, want_ids[i])) for i in keep]
            ids = sum(len(want_ids[i]) for i in keep)
            unk = sum(want_ids[i].count(tok.unk_token_id) for i in keep)
            head = (f"{name:22} {len(sample_lines)} lines, {ids} ids ({unk} [UNK], "
                    f"vocab {len(tok)}, transformers {seconds:.1f} s)")
            if python_only:
                print(f"{head}: python only")
                continue
            sample = Path(tmp) / f"{name}.txt"
            sample.write_text("\n".join(sample_lines) + "\n", encoding="utf-8")
            run = subprocess.run([manabi, "tokenizer", "encode", "--tokenizer", str(folder),
                                  "--print-ids", "--doc-boundary", "line", "--input", str(sample)],
                                 capture_output=True, text=True)
            if run.returncode != 0:
                failures += 1
                print(f"{head}: manabi failed ({run.returncode}):\n{run.stderr.strip()}")
                continue
            got = run.stdout.splitlines()
            same = sum(a == b for a, b in zip(got, want))
            ok = same == len(want) == len(got)
            failures += not ok
            verdict = "identical" if ok else f"{same}/{len(want)} lines identical"
            if len(got) != len(want):
                verdict += f", manabi printed {len(got)} lines"
            print(f"{head}: {verdict}")
            shown = 0
            for k, (a, b) in enumerate(zip(got, want)):
                if a != b and shown < 3:
                    shown += 1
                    got_ids = [int(x) for x in a.split() if x.lstrip("-").isdigit()]
                    print(f"  line {k}: {sample_lines[k][:120]!r}")
                    print(f"    transformers: {tok.convert_ids_to_tokens(want_ids[keep[k]])}")
                    print(f"    manabi:       {tok.convert_ids_to_tokens(got_ids)}")
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
