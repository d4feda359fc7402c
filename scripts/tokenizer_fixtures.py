"""Makes the tokenizer parity fixtures in fixtures/tokenize/.

For each case, the manabi binary trains a tokenizer on the sample corpora in
datasets/tiny/, then Python `tokenizers` (the reference) loads the same tokenizer.json
and encodes sample lines. The Rust test `crates/tokenize/tests/parity.rs` loads the
committed tokenizer.json and must produce the same ids.

    pip install tokenizers==0.22.2
    cargo build --release
    python3 scripts/tokenizer_fixtures.py [path/to/manabi]
"""

import json
import os
import subprocess
import sys
from pathlib import Path

from tokenizers import Tokenizer

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "fixtures" / "tokenize"
EN = ROOT / "datasets" / "tiny" / "stories-en.txt"
JA = ROOT / "datasets" / "tiny" / "stories-ja.txt"

# name -> (manabi tokenizer train arguments, corpora)
CASES = {
    "bpe-en": (["--kind", "bpe", "--vocab-size", "512"], [EN]),
    "bpe-ja": (["--kind", "bpe", "--vocab-size", "800", "--pre-tokenize", "japanese", "--nfkc",
                "--sentinels", "4", "--chat-tokens"], [EN, JA]),
    "wordpiece-en": (["--kind", "wordpiece", "--vocab-size", "400", "--lowercase"], [EN]),
    "unigram-ja": (["--kind", "unigram", "--vocab-size", "1000", "--nfkc"], [JA, EN]),
    "char-en": (["--kind", "char", "--vocab-size", "100", "--min-frequency", "1"], [EN]),
}

EXTRA = [
    "",
    "Hello, World!  Two  spaces\tand a tab.",
    "ＦＵＬＬ－ｗｉｄｔｈ ｶﾀｶﾅ and 全角１２３",
    "吾輩は猫である。名前はまだ無い。",
    "emoji 🐱 and symbols ∑≠ <eos> <mask> <|user|>",
    "unseen: qzxj ΩΨ Привет",
]


def sample_lines(path: Path, n: int) -> list[str]:
    lines = [l for l in path.read_text(encoding="utf-8").splitlines() if l.strip()]
    return lines[:n]


def main() -> None:
    manabi = sys.argv[1] if len(sys.argv) > 1 else os.environ.get(
        "MANABI", str(ROOT / "target" / "release" / "manabi"))
    texts = sample_lines(EN, 40) + sample_lines(JA, 40) + EXTRA
    for name, (args, corpora) in CASES.items():
        case = OUT / name
        case.mkdir(parents=True, exist_ok=True)
        cmd = [manabi, "tokenizer", "train", "--quiet", "--out", str(case.relative_to(ROOT)), *args, "--input",
               *[str(c.relative_to(ROOT)) for c in corpora]]
        subprocess.run(cmd, check=True, cwd=ROOT)
        tok = Tokenizer.from_file(str(case / "tokenizer.json"))
        records = [{"text": t, "ids": tok.encode(t, add_special_tokens=False).ids} for t in texts]
        (case / "ids.json").write_text(
            json.dumps({"cmd": cmd[2:], "cases": records}, ensure_ascii=False) + "\n",
            encoding="utf-8")
        print(f"{name}: vocab {tok.get_vocab_size()}, {sum(len(r['ids']) for r in records)} ids")


if __name__ == "__main__":
    main()
