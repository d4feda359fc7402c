"""Checks issue #2's acceptance: for each tokenizer kind, `manabi tokenizer train` on a
real corpus, then Python `tokenizers` and `manabi tokenizer encode` must give the same
ids for the first 1,000 lines. Needs `pip install tokenizers==0.22.2` and a built binary.

    python3 scripts/check_tokenizer_parity.py [path/to/manabi]
"""

import subprocess
import sys
import tempfile
from pathlib import Path

from tokenizers import Tokenizer

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT.parent / "shared" / "data"
CASES = [
    ("bpe", DATA / "tinyshakespeare.txt", ["--kind", "bpe", "--vocab-size", "512"]),
    ("wordpiece", DATA / "tinyshakespeare.txt", ["--kind", "wordpiece", "--vocab-size", "512"]),
    ("unigram", DATA / "tinyshakespeare.txt", ["--kind", "unigram", "--vocab-size", "512"]),
    ("char", DATA / "tinyshakespeare.txt", ["--kind", "char", "--vocab-size", "100", "--min-frequency", "1"]),
    ("bpe-ja", DATA / "aozora-kokoro.txt", ["--kind", "bpe", "--vocab-size", "2000", "--pre-tokenize", "japanese", "--nfkc"]),
    ("unigram-ja", DATA / "aozora-kokoro.txt", ["--kind", "unigram", "--vocab-size", "4000", "--nfkc"]),
    ("wordpiece-ja", DATA / "aozora-wagahai-wa-neko-de-aru.txt", ["--kind", "wordpiece", "--vocab-size", "6000", "--pre-tokenize", "japanese"]),
]


def main() -> None:
    manabi = sys.argv[1] if len(sys.argv) > 1 else str(ROOT / "target" / "release" / "manabi")
    failures = 0
    with tempfile.TemporaryDirectory() as tmp:
        for name, corpus, args in CASES:
            out = Path(tmp) / name
            subprocess.run([manabi, "tokenizer", "train", "--quiet", "--out", str(out), *args,
                            "--input", str(corpus)], check=True, capture_output=True)
            raw = corpus.read_text(encoding="utf-8-sig").splitlines()
            lines = [l for l in raw if l.strip()][:1000]
            sample = Path(tmp) / f"{name}.txt"
            sample.write_text("\n".join(lines) + "\n", encoding="utf-8")
            got = subprocess.run([manabi, "tokenizer", "encode", "--tokenizer", str(out), "--print-ids",
                                  "--doc-boundary", "line", "--input", str(sample)],
                                 check=True, capture_output=True, text=True).stdout.splitlines()
            tok = Tokenizer.from_file(str(out / "tokenizer.json"))
            want = [" ".join(map(str, tok.encode(l, add_special_tokens=False).ids)) for l in lines]
            same = sum(a == b for a, b in zip(got, want))
            ids = sum(len(w.split()) for w in want)
            ok = same == len(want) == len(got)
            failures += not ok
            print(f"{name:11} {corpus.name:36} {len(lines)} lines, {ids} ids: "
                  f"{'identical' if ok else f'{same}/{len(want)} lines identical'}")
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
