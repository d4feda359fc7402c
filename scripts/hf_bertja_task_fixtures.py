"""Makes the Japanese-tokenizer fixtures of `manabi task --model HF_DIR`
(crates/cli/tests/hf_task_cli.rs): two tiny random BERT task models whose tokenizer is
transformers' slow `BertJapaneseTokenizer` (vocab.txt + tokenizer_config.json, MeCab words,
WordPiece subwords, no tokenizer.json), as cl-tohoku/bert-base-japanese-style fine-tunes
ship on the Hub, the Japanese inputs they are run on, and what transformers' `pipeline()`
makes of them.

    pip install torch "transformers==5.25.*" fugashi safetensors
    python3 scripts/hf_bertja_task_fixtures.py      # made with transformers 5.25.0,
                                                    # torch 2.15, fugashi 1.5.2

Rerunning gives byte-identical files (seeded torch on one CPU thread, rows picked with
seeded `random`, no trainer). It reads, and never rewrites, the tokenizer fixtures of
scripts/bertja_fixtures.py, and leaves the other fixtures of scripts/hf_task_fixtures.py
alone (that script's tokenizer trainers are not deterministic: do not rerun it for these).

Writes fixtures/hf_tasks/:
- `bertja-sentiment/`: BertForSequenceClassification, id2label negative / positive;
- `bertja-ner/`: BertForTokenClassification, BIO tags of the types of
  datasets/tasks/ner-ja.train.jsonl in sorted order (B-LOC B-PER B-PET I-LOC I-PER I-PET
  O, unlike manabi's own O-first order);
  each with config.json + model.safetensors (`save_pretrained`), a copy of
  fixtures/tokenize/bertja-mecab-wordpiece/vocab.txt (4,000 tokens: the models'
  vocab_size) and its tokenizer_config.json with `mecab_option` "-d ../../tokenize/bertja-dic"
  (the tiny MeCab dictionary, relative to the model folder; manabi resolves a relative
  `-d` from the tokenizer folder, MeCab from the working directory, so this script loads
  the tokenizer with the model folder as working directory and MECABRC pointing at
  bertja-dic/mecabrc, as scripts/bertja_fixtures.py does);
- `data/sentiment-ja.jsonl`: 15 lines of datasets/tasks/sentiment-ja.test.jsonl as they
  are (`sentence`, gold `label`); `data/ner-ja.jsonl`: 10 lines of
  datasets/tasks/ner-ja.test.jsonl as they are (`text`, gold `entities`);
- `expected/bertja-sentiment.json`: `{"outputs": [{"label", "scores"} per line] (as
  expected/bert-sentiment.json: pipeline("text-classification", top_k=None), scores in id
  order), "accuracy", "ids", "tokens", "logits"}`;
- `expected/bertja-ner.json`: `{"outputs": [[{"type", "start", "end", "score", "word"}] per
  line] (as expected/bert-ner.json: pipeline("token-classification",
  aggregation_strategy="simple")), "ids", "tokens", "logits"}`;
  where `ids[i]` = `tok(text)["input_ids"]`, `tokens[i]` their tokens, and `logits[i]` the
  model's raw logits on `tok(text, return_tensors="pt")` (`[classes]` for the sentiment
  model, `[tokens][tags]` for the NER model, [CLS] and [SEP] included).

What transformers 5.25's token-classification pipeline does with this slow tokenizer (it
has no offset mapping, `is_fast` is False):
- `start` and `end` of every entity are None (null in the JSON): without
  `return_offsets_mapping` the pipeline never maps tokens to characters;
- every token counts as a word of its own (`is_subword` False), so "simple" grouping is
  the same as with a fast tokenizer (argmax tag per token, neighbours grouped while the
  type stays the same and the tag is not B-, `O` dropped, score = mean of the tokens' top
  probabilities); "first" / "average" / "max" refuse a slow tokenizer;
- `word` is `tok.convert_tokens_to_string(tokens of the group)`, i.e.
  `" ".join(tokens).replace(" ##", "").strip()`: MeCab words are joined by a space
  ("西沢 町"), a "##" piece is glued to the token before it, and a group that starts with a
  "##" piece keeps its "##"; an [UNK] token stays "[UNK]" (with offsets the pipeline would
  have put the text under it there).
"""

import importlib.metadata
import json
import os
import random
import shutil
from pathlib import Path

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("TQDM_DISABLE", "1")

import torch
import transformers
from transformers import (
    AutoTokenizer,
    BertConfig,
    BertForSequenceClassification,
    BertForTokenClassification,
    pipeline,
)
from transformers.utils import logging as hf_logging

# MeCab resolves a relative `-d` from the working directory and needs a mecabrc without
# `-r`: the fixtures' loader sets both (scripts/ is on the path when run as a script).
from bertja_fixtures import in_folder  # noqa: E402
from hf_task_fixtures import (fresh, labels, read_jsonl, scale, write_json,  # noqa: E402
                              write_jsonl)

hf_logging.set_verbosity_error()

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "datasets" / "tasks"
OUT = ROOT / "fixtures" / "hf_tasks"
TOKENIZE = ROOT / "fixtures" / "tokenize"
SOURCE_TOKENIZER = TOKENIZE / "bertja-mecab-wordpiece"


def load_tokenizer(folder: Path):
    with in_folder(folder):
        tok = AutoTokenizer.from_pretrained(str(folder))
    assert type(tok).__name__ == "BertJapaneseTokenizer", type(tok)
    assert not tok.is_fast
    return tok


def save_tokenizer(d: Path) -> None:
    """vocab.txt as it is; tokenizer_config.json with the dictionary path made relative to
    `d` (fixtures/hf_tasks/NAME -> fixtures/tokenize/bertja-dic)."""
    shutil.copy(SOURCE_TOKENIZER / "vocab.txt", d / "vocab.txt")
    config = json.loads((SOURCE_TOKENIZER / "tokenizer_config.json").read_text(encoding="utf-8"))
    assert config["mecab_kwargs"]["mecab_option"] == "-d ../bertja-dic", config
    config["mecab_kwargs"]["mecab_option"] = "-d ../../tokenize/bertja-dic"
    (d / "tokenizer_config.json").write_text(
        json.dumps(config, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def check_tokenizer(d: Path, reference, texts: list[str]):
    """The model folder's tokenizer is the committed bertja-mecab-wordpiece one."""
    tok = load_tokenizer(d)
    for t in texts:
        assert tok(t)["input_ids"] == reference(t)["input_ids"], (d.name, t)
    return tok


def bert_config(vocab: int, **kw) -> BertConfig:
    return BertConfig(
        vocab_size=vocab, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
        intermediate_size=64, max_position_embeddings=512, type_vocab_size=2,
        hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0, pad_token_id=0, **kw)


def pick(path: Path, n: int, seed: str) -> list[dict]:
    return random.Random(seed).sample(read_jsonl(path), n)


def raw(model, tok, texts: list[str]) -> dict:
    """ids, tokens and raw logits of `model` (as saved) on `tok(text, return_tensors="pt")`."""
    model.eval()
    ids, tokens, logits = [], [], []
    with torch.no_grad():
        for t in texts:
            enc = tok(t, return_tensors="pt")
            assert enc["input_ids"][0].tolist() == tok(t)["input_ids"]
            ids.append(enc["input_ids"][0].tolist())
            tokens.append(tok.convert_ids_to_tokens(ids[-1]))
            logits.append(model(**enc).logits[0].tolist())
    return {"ids": ids, "tokens": tokens, "logits": logits}


def versions() -> dict:
    return {"transformers": transformers.__version__, "torch": torch.__version__,
            "fugashi": importlib.metadata.version("fugashi")}


def main() -> None:
    torch.set_num_threads(1)  # the same float sums on every machine and run
    reference = load_tokenizer(SOURCE_TOKENIZER)
    vocab = len(reference)
    assert vocab == 4000, vocab

    # Sentiment: single sentences with gold labels, kept as they are.
    rows = pick(DATA / "sentiment-ja.test.jsonl", 15, "bertja-sentiment")
    texts = [r["sentence"] for r in rows]
    write_jsonl(OUT / "data" / "sentiment-ja.jsonl", rows)
    d = fresh("bertja-sentiment")
    # Seed and scale chosen (from a few tried) so that both classes are predicted and no
    # line is near a tie (the top class wins by at least 0.015 of probability).
    torch.manual_seed(18)
    m = BertForSequenceClassification(bert_config(vocab, **labels(["negative", "positive"])))
    scale(m, 0.5)
    m.save_pretrained(d)
    save_tokenizer(d)
    tok = check_tokenizer(d, reference, texts)
    m = BertForSequenceClassification.from_pretrained(d)
    clf = pipeline("text-classification", model=m, tokenizer=tok, device="cpu")
    id2label = m.config.id2label
    outputs = []
    for t in texts:
        r = clf(t, top_k=None)
        by_label = {e["label"]: float(e["score"]) for e in r}
        outputs.append({"label": r[0]["label"],
                        "scores": [by_label[id2label[i]] for i in range(len(id2label))]})
    got = raw(m, tok, texts)
    for o, lg in zip(outputs, got["logits"]):
        p = torch.tensor(lg).softmax(-1).tolist()
        assert all(abs(a - b) < 1e-6 for a, b in zip(p, o["scores"])), (p, o)
    predicted = {o["label"] for o in outputs}
    assert predicted == {"negative", "positive"}, f"one class only: {predicted}"
    assert all(abs(o["scores"][0] - 0.5) > 0.005 for o in outputs), "a near tie"
    accuracy = sum(o["label"] == r["label"] for o, r in zip(outputs, rows)) / len(rows)
    write_json(OUT / "expected" / "bertja-sentiment.json",
               {"outputs": outputs, "accuracy": accuracy, **got, "versions": versions()})
    print(f"bertja-sentiment: {len(rows)} lines, "
          f"{sum(o['label'] == 'positive' for o in outputs)} positive, accuracy {accuracy:.4f}")

    # NER: BIO tags, id order unlike manabi's (O first, then B-T, I-T, ...).
    rows = pick(DATA / "ner-ja.test.jsonl", 10, "bertja-ner")
    texts = [r["text"] for r in rows]
    write_jsonl(OUT / "data" / "ner-ja.jsonl", rows)
    types = sorted({e["type"] for r in read_jsonl(DATA / "ner-ja.train.jsonl") for e in r["entities"]})
    tags = sorted([f"B-{t}" for t in types] + [f"I-{t}" for t in types]) + ["O"]
    d = fresh("bertja-ner")
    # Seed, scale and O bias chosen (from a few tried) so that every tag is predicted,
    # about 60% of the tokens are O (so that groups end), and no token is near a tie. With
    # scale 0.3, as in hf_task_fixtures.py, this model gives one tag to nearly every
    # token of a line.
    torch.manual_seed(19)
    m = BertForTokenClassification(bert_config(vocab, **labels(tags)))
    scale(m, 0.2)
    with torch.no_grad():
        m.classifier.bias[tags.index("O")] += 2.0
    m.save_pretrained(d)
    save_tokenizer(d)
    tok = check_tokenizer(d, reference, texts)
    m = BertForTokenClassification.from_pretrained(d)
    ner = pipeline("token-classification", model=m, tokenizer=tok, device="cpu",
                   aggregation_strategy="simple")
    outputs = []
    for t in texts:
        line = []
        for e in ner(t):
            # No offsets with a slow tokenizer: start / end are None, recorded as such.
            assert e["start"] is None and e["end"] is None, e
            line.append({"type": e["entity_group"], "start": e["start"], "end": e["end"],
                         "score": float(e["score"]), "word": e["word"]})
        outputs.append(line)
    got = raw(m, tok, texts)
    n = sum(map(len, outputs))
    assert n > 10, "too few entities to test grouping"
    argmax = []
    for lg in got["logits"]:
        probs = torch.tensor(lg)[1:-1].softmax(-1)  # without [CLS] and [SEP]
        top = probs.topk(2, -1).values
        assert (top[:, 0] - top[:, 1]).min() > 1e-4, "a near tie"
        argmax += probs.argmax(-1).tolist()
    assert set(argmax) == set(range(len(tags))), "a tag never predicted"
    o_share = argmax.count(tags.index("O")) / len(argmax)
    assert 0.3 < o_share < 0.8, o_share
    assert any(" " in e["word"] for line in outputs for e in line), "no group of several words"
    write_json(OUT / "expected" / "bertja-ner.json",
               {"outputs": outputs, **got, "versions": versions()})
    print(f"bertja-ner: {len(rows)} lines, {n} entities, tags {tags}")

    for name in ["bertja-sentiment", "bertja-ner"]:
        size = sum(p.stat().st_size for p in (OUT / name).iterdir())
        print(f"{OUT / name}: {size} bytes")


if __name__ == "__main__":
    main()
