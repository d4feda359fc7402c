"""Makes fixtures/tokenize/spm-*/: SentencePiece models with no tokenizer.json, in the
folders the Hub has them in, and what transformers 5.25 converts them to
(`AutoTokenizer.from_pretrained(folder)`, the slow-to-fast conversion of
`tokenization_utils_tokenizers.py` `_convert_from_sentencepiece`), for
crates/tokenize/tests/spm.rs:

- `spm-t5-en`: a Unigram model trained on tinyshakespeare, `spiece.model` +
  tokenizer_config.json as `T5Tokenizer.save_pretrained` writes it (tokenizer.json
  deleted). T5's layout: `<pad>` 0, `</s>` 1, `<unk>` 2, 100 `<extra_id_N>`.
- `spm-llama-en`: a BPE model with byte fallback (`tokenizer.model`) and a user-defined
  piece, with a Llama-2-style tokenizer_config.json (`add_bos_token`, `legacy: false`,
  `added_tokens_decoder`, AddedToken objects).
- `spm-rinna-ja`: a Japanese Unigram model as rinna's T5Tokenizer models have them
  (`[PAD]` 0, `<unk>` 1, `<s>` 2, `</s>` 3, `[CLS]` `[SEP]` `[MASK]` control pieces, a
  `<NL>` user-defined piece, byte fallback pieces, `extra_ids: 0`,
  `do_lower_case`), trained on 吾輩は猫である.
- `spm-backend-ja`: a Japanese BPE model (byte fallback, user-defined pieces, extra
  whitespace kept) under `TokenizersBackend`, which follows the model's own
  normalizer spec (`SpmConverter.build_tokenizer_from_spm_proto`).

The Unigram models normalise with a small rule table (NFKC of full-width ASCII,
half-width katakana, ideographic space, a few ligatures) instead of `nmt_nfkc`, whose
compiled character map alone is 240 KB; the table compiles to the same `Precompiled`
structure.

Each folder has expected.json: the class, named special tokens, the added tokens of the
converted tokenizer, and 53 probe texts (written here, not taken from the corpora) with
`tok(text)["input_ids"]` and `tok.decode(ids)`; and held_out.json.gz: for lines of
../shared/data not used in training (file, 0-based line after the BOM is removed, split
at "\\n"), the ids and, for every 10th, the decoded text. The data files are named with
their SHA-256 so the test can tell a changed file from a wrong tokenizer.

    pip install transformers tokenizers sentencepiece protobuf  # made with transformers
    python3 scripts/spm_fixtures.py                              # 5.25.0, tokenizers 0.23.3,
                                                                 # sentencepiece 0.2.x
"""

import gzip
import hashlib
import json
import os
import shutil
import tempfile
import unicodedata
from pathlib import Path

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("TQDM_DISABLE", "1")

import sentencepiece as spm
import tokenizers
import transformers
from transformers import AutoTokenizer, T5Tokenizer
from transformers.utils import logging as hf_logging

hf_logging.set_verbosity_error()

ROOT = Path(__file__).resolve().parent.parent
OUT = Path(os.environ.get("SPM_FIXTURES_OUT", ROOT / "fixtures" / "tokenize"))
DATA = ROOT.parent / "shared" / "data"

SHAKESPEARE = "tinyshakespeare.txt"
WAGAHAI = "aozora-wagahai-wa-neko-de-aru.txt"
KOKORO = "aozora-kokoro.txt"


def read_lines(name):
    """Lines as the Rust test reads them: BOM removed, split at \\n."""
    text = (DATA / name).read_text(encoding="utf-8")
    return text.removeprefix("\ufeff").split("\n")


def sha256(name):
    return hashlib.sha256((DATA / name).read_bytes()).hexdigest()


# Shakespeare: lines before this index train, lines from it on are held out.
EN_SPLIT = 30000
# 吾輩は猫である trains the Japanese models; こころ is held out.

PROBES = [
    "Hello, world!",
    "The quick brown fox jumps over the lazy dog.",
    "First Citizen: Before we proceed any further, hear me speak.",
    "  two leading spaces",
    "trailing spaces  ",
    "inner   runs    of spaces",
    "tabs\tand\nnewlines\n\nand a blank line",
    "\n",
    " ",
    "",
    "a",
    "Numbers 1234567890 and 3.14159",
    "UPPER lower MiXeD",
    "can't won't I'm you're they'll we'd",
    "punctuation!?;:()[]{}<>-_=+*&^%$#@~`|\\/",
    "email: mara@example.com https://example.com/path?q=1",
    "emoji 🐱 and ∑ math",
    "accents: café naïve résumé",
    "ligatures: ﬁne ﬂour",
    "full-width: ＡＢＣ　ｄｅｆ　１２３！",
    "half-width katakana: ｶﾀｶﾅ ｶﾞｷﾞ ﾊﾟﾋﾟ",
    "x" * 40,
    "Hello</s>world",
    "<s> at the start",
    "end </s>",
    "<pad><unk> and <extra_id_0> <extra_id_99>",
    "sentinel<extra_id_3>inside",
    "[CLS] a [SEP] b [MASK] c [PAD]",
    "line<NL>break<NL>",
    "user<|sep|>defined",
    "▁already ▁marked",
    "吾輩は猫である。名前はまだ無い。",
    "どこで生れたかとんと見当がつかぬ。",
    "　私はその人を常に先生と呼んでいた。",
    "東京都に住んでいます。",
    "今日はとても良い天気ですね。明日は雨でしょう。",
    "日本語の文章をトークンに分割します。",
    "カタカナとひらがなと漢字が混ざっています。",
    "ｶﾀｶﾅ半角と全角ＡＢＣ１２３",
    "「こんにちは」と彼は言った。",
    "質問：氷は冷たいですか？\n答え：",
    " はい、冷たいです。",
    "English と 日本語 が混ざった文。",
    "2024年12月7日",
    "猫🐱が好き",
    "　全角スペース　と　半角 スペース",
    "改行\nあり\n",
    "Mara は Tolven に住んでいる。",
    "Q: 吾輩は何ですか？\nA: 猫です。",
    "ラーメン、寿司、天ぷら。",
    "鬱蒼とした龘の森",
    "𠮷野家の𩸽",
    "①②③ ㈱ ㍻",
]


def nfkc_rules(extra=()):
    """A rule table for `normalization_rule_tsv`: NFKC of full-width ASCII, the
    ideographic space, half-width katakana (single and with a following sound mark),
    and `extra` characters."""
    rules = {}
    singles = [chr(c) for c in range(0xFF01, 0xFF5F)] + ["\u3000"]
    singles += [chr(c) for c in range(0xFF61, 0xFFA0)] + list(extra)
    for ch in singles:
        to = unicodedata.normalize("NFKC", ch)
        if to != ch:
            rules[ch] = to
    for base in range(0xFF61, 0xFFA0):
        for mark in ("\uff9e", "\uff9f"):
            src = chr(base) + mark
            to = unicodedata.normalize("NFKC", src)
            if len(to) == 1:
                rules[src] = to
    hexes = lambda s: " ".join(f"{ord(c):X}" for c in s)
    return "".join(f"{hexes(src)}\t{hexes(to)}\n" for src, to in sorted(rules.items()))


def train(prefix, lines, **options):
    """Trains a SentencePiece model on `lines`; returns the .model path."""
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(lines),
        model_prefix=str(prefix),
        minloglevel=2,
        num_threads=1,
        **options,
    )
    Path(f"{prefix}.vocab").unlink()
    return Path(f"{prefix}.model")


def nonblank(lines):
    return [line for line in lines if line.strip()]


def make_models(work):
    """Trains the four models in `work`; returns {fixture: (model file, held-out (file, line) pairs)}."""
    en = read_lines(SHAKESPEARE)
    wagahai = read_lines(WAGAHAI)
    kokoro = read_lines(KOKORO)
    en_train = nonblank(en[:EN_SPLIT])
    held_en = [(SHAKESPEARE, i) for i in range(EN_SPLIT, len(en)) if en[i].strip()]
    held_ja = [(KOKORO, i) for i in range(len(kokoro)) if kokoro[i].strip()]
    ja_train = nonblank(wagahai)
    rules = work / "rules.tsv"
    rules.write_text(nfkc_rules(extra="ﬁﬂ①②③㈱㍻½"), encoding="utf-8")

    models = {}
    # T5: Unigram, T5's special ids, no BOS.
    models["spm-t5-en"] = (
        train(work / "t5", en_train, model_type="unigram",
              vocab_size=800, normalization_rule_tsv=str(rules),
              pad_id=0, eos_id=1, unk_id=2, bos_id=-1),
        held_en[:900] + held_ja[:100],
    )
    # Llama: BPE with byte fallback, SentencePiece's default ids, identity normaliser.
    models["spm-llama-en"] = (
        train(work / "llama", en_train + ja_train[:300], model_type="bpe",
              vocab_size=900, character_coverage=0.98, byte_fallback=True,
              normalization_rule_name="identity",
              user_defined_symbols=["<|sep|>"]),
        held_en[900:1800] + held_ja[100:200],
    )
    # rinna: Japanese Unigram with [PAD] 0, <unk> 1, <s> 2, </s> 3.
    models["spm-rinna-ja"] = (
        train(work / "rinna", ja_train + en_train[:2000], model_type="unigram",
              vocab_size=2000, character_coverage=0.98, byte_fallback=True,
              normalization_rule_tsv=str(rules), pad_id=0, pad_piece="[PAD]",
              unk_id=1, bos_id=2, eos_id=3, control_symbols=["[CLS]", "[SEP]", "[MASK]"],
              user_defined_symbols=["<NL>"]),
        held_ja[200:900] + held_en[1800:1900],
    )
    # TokenizersBackend: Japanese BPE, SentencePiece's own whitespace handling kept.
    models["spm-backend-ja"] = (
        train(work / "backend", ja_train + en_train[:2000], model_type="bpe",
              vocab_size=2000, character_coverage=0.98, byte_fallback=True,
              normalization_rule_name="identity", remove_extra_whitespaces=False,
              user_defined_symbols=["<NL>", "<|sep|>"]),
        held_ja[900:] + held_en[1900:2000],
    )
    return models


def added(content, special=True, normalized=False):
    return {"content": content, "lstrip": False, "normalized": normalized, "rstrip": False,
            "single_word": False, "special": special}


def write_json(path, value):
    path.write_text(json.dumps(value, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def make_folder(name, model, folder):
    """Writes the tokenizer folder `name` (its SentencePiece `model` and configuration
    files) into `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    if name == "spm-t5-en":
        # As T5Tokenizer.save_pretrained writes it, without the tokenizer.json.
        src = folder.parent / f"{name}.src"
        src.mkdir(exist_ok=True)
        shutil.copy(model, src / "spiece.model")
        T5Tokenizer.from_pretrained(src).save_pretrained(folder)
        shutil.rmtree(src)
        (folder / "tokenizer.json").unlink()
        shutil.copy(model, folder / "spiece.model")
    elif name == "spm-llama-en":
        # Llama 2's layout: AddedToken objects, `added_tokens_decoder`, `add_bos_token`.
        shutil.copy(model, folder / "tokenizer.model")
        obj = lambda c: {"__type": "AddedToken", "content": c, "lstrip": False,
                         "normalized": False, "rstrip": False, "single_word": False}
        write_json(folder / "tokenizer_config.json", {
            "add_bos_token": True,
            "add_eos_token": False,
            "added_tokens_decoder": {"0": added("<unk>"), "1": added("<s>"), "2": added("</s>")},
            "bos_token": obj("<s>"),
            "clean_up_tokenization_spaces": False,
            "eos_token": obj("</s>"),
            "legacy": False,
            "model_max_length": 4096,
            "pad_token": None,
            "padding_side": "right",
            "sp_model_kwargs": {},
            "tokenizer_class": "LlamaTokenizer",
            "unk_token": obj("<unk>"),
        })
    elif name == "spm-rinna-ja":
        # rinna's layout: T5Tokenizer without sentinels, BERT-style names, the legacy
        # special_tokens_map.json beside it.
        shutil.copy(model, folder / "spiece.model")
        specials = {"bos_token": "<s>", "cls_token": "[CLS]", "eos_token": "</s>",
                    "mask_token": "[MASK]", "pad_token": "[PAD]", "sep_token": "[SEP]",
                    "unk_token": "<unk>"}
        write_json(folder / "tokenizer_config.json", {
            "additional_special_tokens": [],
            "do_lower_case": True,
            "extra_ids": 0,
            "model_max_length": 2048,
            "sp_model_kwargs": {},
            "tokenizer_class": "T5Tokenizer",
            **specials,
        })
        write_json(folder / "special_tokens_map.json", specials)
    elif name == "spm-backend-ja":
        # No model class: TokenizersBackend follows the model's own normaliser spec.
        shutil.copy(model, folder / "tokenizer.model")
        write_json(folder / "tokenizer_config.json", {
            "add_bos_token": True,
            "add_eos_token": True,
            "added_tokens_decoder": {"0": added("<unk>"), "1": added("<s>", normalized=True),
                                     "2": added("</s>")},
            "model_max_length": 1024,
            "tokenizer_class": "TokenizersBackend",
        })
    else:
        raise ValueError(name)


KEYS = ["bos_token", "eos_token", "unk_token", "sep_token", "pad_token", "cls_token", "mask_token"]


def expected(tok, folder, probes):
    """What AutoTokenizer built from `folder`: class, special tokens, probe ids and texts."""
    cases = []
    for text in probes:
        ids = tok(text)["input_ids"]
        cases.append({"text": text, "ids": ids, "decoded": tok.decode(ids),
                      "decoded_skip_special": tok.decode(ids, skip_special_tokens=True)})
    max_len = tok.model_max_length
    return {
        "versions": {"transformers": transformers.__version__, "tokenizers": tokenizers.__version__,
                     "sentencepiece": spm.__version__},
        "how": "AutoTokenizer.from_pretrained(folder); ids = tok(text)['input_ids']; "
               "tok.decode(ids), tok.decode(ids, skip_special_tokens=True)",
        "class": type(tok).__name__,
        "model_file": next(p.name for p in folder.iterdir() if p.suffix == ".model"),
        "model_max_length": max_len if max_len < 1e12 else None,
        "vocab_size": len(tok),
        "specials": {key: ({"token": str(getattr(tok, key)), "id": getattr(tok, key + "_id")}
                           if getattr(tok, key) is not None else None) for key in KEYS},
        "cases": cases,
    }


def held_out(tok, pairs):
    """Ids of held-out corpus lines, named by file and line; every 10th also decoded."""
    names = sorted({name for name, _ in pairs})
    lines = {name: read_lines(name) for name in names}
    cases = []
    for k, (name, i) in enumerate(pairs):
        ids = tok(lines[name][i])["input_ids"]
        case = {"file": names.index(name), "line": i, "ids": ids}
        if k % 10 == 0:
            case["decoded"] = tok.decode(ids)
        cases.append(case)
    return {"files": [{"name": n, "sha256": sha256(n)} for n in names], "cases": cases}


def write_gz(path, value):
    data = json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    path.write_bytes(gzip.compress(data, mtime=0))


def main():
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        for name, (model, pairs) in make_models(work).items():
            folder = OUT / name
            if folder.exists():
                shutil.rmtree(folder)
            make_folder(name, model, folder)
            tok = AutoTokenizer.from_pretrained(folder)
            assert not (folder / "tokenizer.json").exists()
            write_json(folder / "expected.json", expected(tok, folder, PROBES))
            write_gz(folder / "held_out.json.gz", held_out(tok, pairs))
            # The converted pipeline, to compare with manabi's conversion piece by piece.
            write_gz(folder / "converted.json.gz", json.loads(tok.backend_tokenizer.to_str()))
            size = sum(p.stat().st_size for p in folder.iterdir())
            print(f"{folder}: {type(tok).__name__}, {len(pairs)} held-out lines, {size} bytes")


if __name__ == "__main__":
    main()
