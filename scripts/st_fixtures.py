"""Makes the sentence-transformers fixtures of `manabi task --model DIR`
(crates/cli/tests/hf_task_cli.rs): the tiny random BertModel of fixtures/hf_tasks/bert-embed/
(made by scripts/hf_task_fixtures.py, read here and never changed) laid out as a
sentence-transformers folder, and what `SentenceTransformer.encode` makes of
fixtures/hf_tasks/data/sentences.jsonl.

    pip install torch transformers sentence-transformers safetensors
    python3 scripts/st_fixtures.py

Made with sentence-transformers 6.3.0, transformers 5.25.0, torch 2.15 (CPU). The script is
deterministic (no training, no randomness): a re-run writes the same folders and the same
expected vectors, up to the last float32 bits if torch sums in another order. Re-run it
whenever bert-embed/ changes (hf_task_fixtures.py re-draws its weights and vocabulary).

Writes fixtures/hf_tasks/:
- `st-embed/`: bert-embed's config.json, model.safetensors, tokenizer.json and
  tokenizer_config.json (byte copies) plus the layout of a Hub sentence-transformers repo:
  `modules.json` (Transformer at "", Pooling at "1_Pooling", Normalize at "2_Normalize", with
  the classic `sentence_transformers.models.*` type names), `sentence_bert_config.json`
  (`max_seq_length` 12, so that most sentences are cut: tokenizer_config.json still says
  `model_max_length` 128, and sentence_bert_config.json wins), `1_Pooling/config.json` (CLS
  pooling, the classic `pooling_mode_*` booleans) and `2_Normalize/config.json` (what
  sentence-transformers 6 writes; older versions wrote an empty folder, which git drops, so
  Hub repos of those have no 2_Normalize/ at all and a reader must not need it);
- `st-embed-mean/`: the same with mean pooling, no Normalize, `max_seq_length` 128 (the
  model's `max_position_embeddings`; nothing is cut), and modules.json's type names as
  sentence-transformers 6 writes them (`sentence_transformers.base.modules.transformer.
  Transformer`, `sentence_transformers.sentence_transformer.modules.pooling.Pooling`), so
  that both spellings are covered;
- `expected/st-embed.json`, `expected/st-embed-mean.json`: per line of sentences.jsonl its
  `text`, `tokens` (how many ids the model saw, [CLS] and [SEP] included) and `embedding`
  (`SentenceTransformer(DIR, device="cpu").encode(texts, convert_to_numpy=True)`), with the
  versions that made them.

Checks before writing the expected files: the same model built with the sentence-transformers
API (`models.Transformer(copy, max_seq_length=…)`, `models.Pooling(32, pooling_mode=…)`,
`models.Normalize()`) and saved with `save()` keeps bert-embed's weights byte for byte and
encodes the same; a plain-transformers reimplementation (truncate to max_seq_length ids,
special tokens included; pool; L2-normalise) agrees; and untruncated sentences agree with
expected/bert-embed.json's `cls` / `mean` vectors.

Notes on sentence-transformers 6.3, which the Rust side follows:
- `max_seq_length` (sentence_bert_config.json, a legacy key still read) becomes the tokenizer's
  `model_max_length`; texts are tokenised with `truncation="longest_first"`, so a sequence
  keeps at most max_seq_length ids counting [CLS] and [SEP] ([CLS] + 10 pieces + [SEP] for
  12). Without it, `min(tokenizer model_max_length, config max_position_embeddings)`.
- `do_lower_case: true` puts a Lowercase normaliser in front of the tokenizer's own (unless it
  already lowercases); false leaves the tokenizer alone. This tokenizer lowercases anyway.
- Pooling `cls` takes the first unmasked position; `mean` averages the unmasked positions.
"""

import json
import shutil
import tempfile
from pathlib import Path

import numpy as np
import sentence_transformers
import torch
import transformers
from sentence_transformers import SentenceTransformer

try:  # sentence-transformers 6; `sentence_transformers.models` before (still there, deprecated)
    from sentence_transformers.sentence_transformer import modules as models
except ImportError:
    from sentence_transformers import models
from transformers import AutoTokenizer, BertModel

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "fixtures" / "hf_tasks"
SRC = OUT / "bert-embed"
HF_FILES = ["config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"]

CLASSIC_TYPES = {
    "Transformer": "sentence_transformers.models.Transformer",
    "Pooling": "sentence_transformers.models.Pooling",
    "Normalize": "sentence_transformers.models.Normalize",
}
V6_TYPES = {
    "Transformer": "sentence_transformers.base.modules.transformer.Transformer",
    "Pooling": "sentence_transformers.sentence_transformer.modules.pooling.Pooling",
    "Normalize": "sentence_transformers.base.modules.normalize.Normalize",
}

# name, pooling, Normalize module, max_seq_length, modules.json type names
FIXTURES = [
    ("st-embed", "cls", True, 12, CLASSIC_TYPES),
    ("st-embed-mean", "mean", False, 128, V6_TYPES),
]

# The classic Pooling config keys (sentence-transformers 2 to 5), in the order they wrote them.
POOLING_KEYS = {
    "pooling_mode_cls_token": "cls",
    "pooling_mode_mean_tokens": "mean",
    "pooling_mode_max_tokens": "max",
    "pooling_mode_mean_sqrt_len_tokens": "mean_sqrt_len_tokens",
    "pooling_mode_weightedmean_tokens": "weightedmean",
    "pooling_mode_lasttoken": "lasttoken",
}


def read_texts() -> list[str]:
    lines = (OUT / "data" / "sentences.jsonl").read_text(encoding="utf-8").splitlines()
    return [json.loads(line)["sentence"] for line in lines if line.strip()]


def write_json(path: Path, value, indent: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(value, ensure_ascii=False, indent=indent) + "\n", encoding="utf-8")


def dim() -> int:
    return json.loads((SRC / "config.json").read_text())["hidden_size"]


def build(name: str, pooling: str, normalize: bool, max_len: int, types: dict) -> Path:
    d = OUT / name
    if d.exists():
        shutil.rmtree(d)
    d.mkdir(parents=True)
    for f in HF_FILES:
        shutil.copyfile(SRC / f, d / f)
    mods = [("Transformer", ""), ("Pooling", "1_Pooling")] + ([("Normalize", "2_Normalize")] if normalize else [])
    write_json(d / "modules.json",
               [{"idx": i, "name": str(i), "path": path, "type": types[kind]}
                for i, (kind, path) in enumerate(mods)], 2)
    write_json(d / "sentence_bert_config.json", {"max_seq_length": max_len, "do_lower_case": False}, 4)
    write_json(d / "1_Pooling" / "config.json",
               {"word_embedding_dimension": dim(),
                **{k: mode == pooling for k, mode in POOLING_KEYS.items()},
                "include_prompt": True}, 4)
    if normalize:
        write_json(d / "2_Normalize" / "config.json",
                   {"module_input_name": "sentence_embedding", "module_output_name": "sentence_embedding"}, 4)
    return d


def encode(model: SentenceTransformer, texts: list[str]) -> np.ndarray:
    return model.encode(texts, convert_to_numpy=True)


def api_model(pooling: str, normalize: bool, max_len: int, tmp: Path) -> np.ndarray:
    """The same model built with the sentence-transformers API, saved with `save()` and loaded
    back: the weights stay bert-embed's, the embeddings are the same."""
    copy = tmp / "hf"
    shutil.copytree(SRC, copy)
    mods = [models.Transformer(str(copy), max_seq_length=max_len, do_lower_case=False),
            models.Pooling(dim(), pooling_mode=pooling)]
    if normalize:
        mods.append(models.Normalize())
    m = SentenceTransformer(modules=mods, device="cpu")
    saved = tmp / "saved"
    m.save(str(saved))
    for f in ["model.safetensors", "tokenizer.json"]:
        assert (saved / f).read_bytes() == (SRC / f).read_bytes(), f"save() changed {f}"
    a = encode(m, TEXTS)
    b = encode(SentenceTransformer(str(saved), device="cpu"), TEXTS)
    assert np.allclose(a, b, atol=1e-6), "the saved API model encodes differently"
    return a


def by_hand(pooling: str, normalize: bool, max_len: int) -> tuple[np.ndarray, list[int], list[int]]:
    """Plain transformers, one text at a time: the first `max_len` ids (specials included)."""
    tok = AutoTokenizer.from_pretrained(SRC)
    m = BertModel.from_pretrained(SRC).eval()
    out, seen, full = [], [], []
    with torch.no_grad():
        for t in TEXTS:
            full.append(len(tok(t)["input_ids"]))
            enc = tok(t, truncation=True, max_length=max_len, return_tensors="pt")
            ids = enc["input_ids"][0].tolist()
            assert ids[0] == tok.cls_token_id and ids[-1] == tok.sep_token_id
            seen.append(len(ids))
            h = m(**enc).last_hidden_state[0]
            v = h[0] if pooling == "cls" else h.mean(0)
            if normalize:
                v = torch.nn.functional.normalize(v, dim=-1)
            out.append(v.numpy())
    return np.stack(out), seen, full


def main() -> None:
    bert_embed = json.loads((OUT / "expected" / "bert-embed.json").read_text())["outputs"]
    for name, pooling, normalize, max_len, types in FIXTURES:
        d = build(name, pooling, normalize, max_len, types)
        st = SentenceTransformer(str(d), device="cpu")
        assert st.max_seq_length == max_len, (name, st.max_seq_length)
        kinds = [type(m).__name__ for m in st]
        assert kinds == ["Transformer", "Pooling"] + (["Normalize"] if normalize else []), kinds
        assert st[1].pooling_mode == pooling, st[1].pooling_mode
        got = encode(st, TEXTS)
        assert got.shape == (len(TEXTS), dim()) and got.dtype == np.float32

        with tempfile.TemporaryDirectory() as tmp:
            api = api_model(pooling, normalize, max_len, Path(tmp))
        assert np.allclose(got, api, atol=1e-6), f"{name}: folder and API model differ"
        hand, seen, full = by_hand(pooling, normalize, max_len)
        diff = float(np.abs(got - hand).max())
        assert diff < 1e-5, f"{name}: sentence-transformers vs by hand, max |Δ| = {diff}"
        cut = sum(f > max_len for f in full)
        if max_len < 128:
            assert 3 <= cut <= len(TEXTS) - 3, f"{name}: {cut} of {len(TEXTS)} cut"
        for v, w, f in zip(got, bert_embed, full):
            if f <= max_len:
                ref = np.array(w[pooling], dtype=np.float32)
                if normalize:
                    ref = ref / np.linalg.norm(ref)
                assert np.abs(v - ref).max() < 1e-5, f"{name}: differs from bert-embed.json"
        if normalize:
            assert np.allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)

        write_json(OUT / "expected" / f"{name}.json", {
            "sentence_transformers_version": sentence_transformers.__version__,
            "transformers_version": transformers.__version__,
            "max_seq_length": max_len,
            "pooling": pooling,
            "normalize": normalize,
            "outputs": [{"text": t, "tokens": n, "embedding": v.tolist()}
                        for t, n, v in zip(TEXTS, seen, got)],
        }, 1)
        print(f"{name}: {pooling} pooling, normalize {normalize}, max_seq_length {max_len}: "
              f"{cut} of {len(TEXTS)} texts cut; max |Δ| vs by hand {diff:.1e}")


TEXTS = read_texts()

if __name__ == "__main__":
    main()
