"""Makes fixtures/tokenize/hf-*/: tiny Hugging Face tokenizer folders (tokenizer.json +
tokenizer_config.json, sometimes special_tokens_map.json) and, in each, expected.json:
what `AutoTokenizer.from_pretrained(folder)` gives — the ids of its default call
`tok(text)["input_ids"]` for ~50 English and Japanese lines, its special tokens and ids,
the class it built, `model_max_length` — so `manabi_tokenize::TextTokenizer` can be
checked against it (crates/tokenize/tests/tokenizer_config.rs).

    pip install transformers tokenizers trl      # made with transformers 5.25.0,
    python3 scripts/tokenizer_config_fixtures.py  # tokenizers 0.23.3, trl 1.16.0

What transformers 5.25 does, and these folders pin down:
- `add_bos_token` / `add_eos_token` in tokenizer_config.json are dropped when a
  tokenizer.json is present (`PreTrainedTokenizerBase._from_pretrained`): the special
  tokens a call adds are tokenizer.json's post-processor (written there by the class when
  the tokenizer was saved). `hf-config-flags-ignored` has `add_bos_token: true` and no
  post-processor: no BOS.
- Classes with their own `__init__` (GPT2Tokenizer, LlamaTokenizer, Qwen2Tokenizer,
  GemmaTokenizer, GPTNeoXTokenizer, BertTokenizer, T5Tokenizer) rebuild normalizer,
  pre-tokenizer, decoder and model options from the class, keeping only tokenizer.json's
  vocabulary, merges, added tokens and post-processor (`convert_to_native_format`);
  GPTNeoXTokenizer also replaces the post-processor (no BOS, no EOS). `hf-gemma-rebuilt`,
  `hf-gpt2-rebuilt` and `hf-neox-rebuilt` have a tokenizer.json that differs from what
  their class builds, and so has `hf-bert-rebuilt` (cased, no post-processor: the class
  lower-cases and adds [CLS] … [SEP]). `LlamaTokenizer` over a byte-level tokenizer.json
  loads as `TokenizersBackend` (tokenizer.json as is): `hf-llama3-bytelevel`.
- Special tokens named in tokenizer_config.json / special_tokens_map.json (or the class's
  defaults) that are not in the vocabulary are *added* as new tokens; every folder here
  has them all in its vocabulary (asserted), since manabi refuses the others.

Also writes, for `hf-llama-bos` and `hf-llama-add-eos`, trl.json: the ids TRL 1.16's
DPOTrainer and SFTTrainer prepare (a tiny random LlamaForCausalLM; only the datasets are
read), for the stage tests of crates/align and crates/finetune. TRL 1.16's SFTTrainer
writes `labels` (-100 on the prompt), not a completion mask.
"""

import copy
import json
import os
import shutil
from pathlib import Path

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")
os.environ.setdefault("TQDM_DISABLE", "1")

import tokenizers
import transformers
from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
from transformers import AutoTokenizer, GPT2Tokenizer, LlamaTokenizer, Qwen2Tokenizer
from transformers.utils import logging as hf_logging

hf_logging.set_verbosity_error()

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "fixtures" / "tokenize"

CORPUS = [
    "The quick brown fox jumps over the lazy dog.",
    "Mara lives in Tolven, a small town by the sea.",
    "Where does Mara live? She lives in Tolven.",
    "It was a bright cold day in April, and the clocks were striking thirteen.",
    "Once upon a time there was a little girl who loved stories.",
    "The wind was cold and the rain fell all night.",
    "Q: Is ice cold?\nA: Yes, ice is cold.",
    "Numbers: 1, 2, 3, 42, 1000 and 3.14.",
    "吾輩は猫である。名前はまだ無い。",
    "どこで生れたかとんと見当がつかぬ。",
    "東京都に住んでいます。雨が降っていました。",
    "今日はとても良い天気ですね。明日は雨でしょう。",
    "日本語の文章をトークンに分割します。",
    "カタカナとひらがなと漢字が混ざっています。",
] * 8

TEXTS = [
    "Hello, world!",
    "The quick brown fox jumps over the lazy dog.",
    "Mara lives in Tolven.",
    "Where does Mara live?",
    "Q: Is ice cold?\nA:",
    " Yes, ice is cold.",
    "  two leading spaces",
    "trailing space ",
    "tabs\tand\nnewlines\n\nand a blank line",
    "Numbers 1234567890 and 3.14159",
    "UPPER lower MiXeD",
    "It was a bright cold day in April.",
    "can't won't I'm you're they'll we'd",
    "a",
    "",
    " ",
    "punctuation!?;:()[]{}<>-_=+*&^%$#@~`|\\/",
    "email: mara@example.com",
    "https://example.com/path?query=1",
    "emoji 🐱 and ∑ math",
    "accents: café naïve résumé",
    "Once upon a time there was a little girl.",
    "The wind was cold.",
    "x" * 40,
    "repeat repeat repeat repeat",
    "Hello</s>world",
    "<s> at the start",
    "end <|endoftext|> middle",
    "<|im_start|>user\nHi<|im_end|>\n",
    "吾輩は猫である。",
    "名前はまだ無い。",
    "どこで生れたかとんと見当がつかぬ。",
    "東京都に住んでいます。",
    "雨が降っていました。",
    "今日はとても良い天気ですね。",
    "日本語の文章をトークンに分割します。",
    "カタカナとひらがなと漢字",
    "ｶﾀｶﾅ半角と全角ＡＢＣ１２３",
    "「こんにちは」と彼は言った。",
    "質問：氷は冷たいですか？\n答え：",
    " はい、冷たいです。",
    "English と 日本語 が混ざった文。",
    "2024年12月7日",
    "猫🐱が好き",
    "　全角スペース",
    "改行\nあり\n",
    "Mara は Tolven に住んでいる。",
    "Q: 吾輩は何ですか？\nA: 猫です。",
    "ラーメン、寿司、天ぷら。",
    "最後の行です。",
]

QWEN_REGEX = (r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|"""
              r"""\s*[\r\n]+|\s+(?!\S)|\s+""")


def train(tok, vocab_size, specials, alphabet=None):
    kw = {"vocab_size": vocab_size, "special_tokens": specials, "show_progress": False}
    if alphabet is not None:
        kw["initial_alphabet"] = alphabet
    tok.train_from_iterator(CORPUS, trainers.BpeTrainer(**kw))
    model = json.loads(tok.to_str())["model"]
    return model["vocab"], [tuple(m.split(" ")) if isinstance(m, str) else tuple(m)
                            for m in model["merges"]]


def metaspace_vocab(specials):
    """A SentencePiece-style BPE (Metaspace, byte fallback) as Llama 2 / Gemma use, its
    merges learnt within words (SentencePiece never merges across a space)."""
    t = Tokenizer(models.BPE(unk_token="<unk>", byte_fallback=True, fuse_unk=True))
    t.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="first", split=True)
    return train(t, 420, specials + [f"<0x{i:02X}>" for i in range(256)])


def byte_level_vocab(specials, regex=None, nfc=False):
    t = Tokenizer(models.BPE())
    if nfc:
        t.normalizer = normalizers.NFC()
    if regex is None:
        t.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    else:
        t.pre_tokenizer = pre_tokenizers.Sequence([
            pre_tokenizers.Split(Regex(regex), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    return train(t, 520, specials, pre_tokenizers.ByteLevel.alphabet())


def fresh(name):
    d = OUT / name
    shutil.rmtree(d, ignore_errors=True)
    d.mkdir(parents=True)
    return d


def edit_json(path, fn):
    data = json.loads(path.read_text(encoding="utf-8"))
    fn(data)
    path.write_text(json.dumps(data, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")


def build():
    """Each folder as a user would have it; returns their names."""
    names = []

    # Llama 2 style: the class writes a BOS post-processor into tokenizer.json.
    vocab, merges = metaspace_vocab(["<unk>", "<s>", "</s>"])
    for name, add_eos in (("hf-llama-bos", False), ("hf-llama-add-eos", True)):
        tok = LlamaTokenizer(vocab=copy.deepcopy(vocab), merges=list(merges),
                             add_bos_token=True, add_eos_token=add_eos, legacy=False,
                             model_max_length=2048)
        tok.save_pretrained(fresh(name))
        names.append(name)

    # Qwen2: no BOS, <|im_end|> ends turns and is the EOS, <|endoftext|> pads.
    vocab, merges = byte_level_vocab(["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
                                     regex=QWEN_REGEX, nfc=True)
    tok = Qwen2Tokenizer(vocab=vocab, merges=merges, eos_token="<|im_end|>",
                         pad_token="<|endoftext|>", unk_token=None, model_max_length=32768,
                         extra_special_tokens=["<|im_start|>", "<|im_end|>"])
    tok.save_pretrained(fresh("hf-qwen2"))
    names.append("hf-qwen2")

    # GPT-2: <|endoftext|> is BOS, EOS and UNK; no post-processor.
    vocab, merges = byte_level_vocab(["<|endoftext|>"])
    tok = GPT2Tokenizer(vocab=copy.deepcopy(vocab), merges=list(merges), model_max_length=1024)
    d = fresh("hf-gpt2")
    tok.save_pretrained(d)
    names.append("hf-gpt2")
    # The same, but tokenizer.json's pre-tokenizer adds a prefix space: GPT2Tokenizer
    # rebuilds its own (add_prefix_space = false) and ignores it.
    d2 = fresh("hf-gpt2-rebuilt")
    for f in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(d / f, d2 / f)
    edit_json(d2 / "tokenizer.json",
              lambda j: j["pre_tokenizer"].update({"add_prefix_space": True}))
    names.append("hf-gpt2-rebuilt")

    # Llama 3 style: byte-level tokenizer.json declared as LlamaTokenizerFast, BOS from
    # the post-processor; AutoTokenizer loads it as TokenizersBackend (as is).
    vocab, merges = byte_level_vocab(["<|begin_of_text|>", "<|end_of_text|>", "<|eot_id|>"])
    t = Tokenizer(models.BPE(vocab=vocab, merges=merges, ignore_merges=True))
    t.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    t.decoder = decoders.ByteLevel()
    t.add_special_tokens(["<|begin_of_text|>", "<|end_of_text|>", "<|eot_id|>"])
    t.post_processor = tokenizers.processors.TemplateProcessing(
        single="<|begin_of_text|> $A", pair="<|begin_of_text|> $A <|begin_of_text|> $B",
        special_tokens=[("<|begin_of_text|>", t.token_to_id("<|begin_of_text|>"))])
    d = fresh("hf-llama3-bytelevel")
    t.save(str(d / "tokenizer.json"))
    (d / "tokenizer_config.json").write_text(json.dumps({
        "tokenizer_class": "LlamaTokenizerFast", "bos_token": "<|begin_of_text|>",
        "eos_token": "<|eot_id|>", "add_bos_token": True, "model_max_length": 131072,
        "clean_up_tokenization_spaces": True}, indent=1) + "\n", encoding="utf-8")
    names.append("hf-llama3-bytelevel")

    # tokenizer.json with no post-processor and a config asking for BOS and EOS: transformers
    # 5 drops add_bos_token / add_eos_token. special_tokens_map.json (read because the
    # config has no added_tokens_decoder) names the pad token, as a dict.
    vocab, merges = byte_level_vocab(["<unk>", "<s>", "</s>", "<pad>"])
    t = Tokenizer(models.BPE(vocab=vocab, merges=merges))
    t.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    t.decoder = decoders.ByteLevel()
    t.add_special_tokens(["<unk>", "<s>", "</s>", "<pad>"])
    d = fresh("hf-config-flags-ignored")
    t.save(str(d / "tokenizer.json"))
    (d / "tokenizer_config.json").write_text(json.dumps({
        "tokenizer_class": "PreTrainedTokenizerFast", "add_bos_token": True,
        "add_eos_token": True, "bos_token": {"__type": "AddedToken", "content": "<s>", "lstrip": False,
                                             "normalized": False, "rstrip": False,
                                             "single_word": False, "special": True},
        "eos_token": "</s>", "unk_token": "<unk>"}, indent=1) + "\n", encoding="utf-8")
    (d / "special_tokens_map.json").write_text(json.dumps({
        "pad_token": {"content": "<pad>", "lstrip": False, "normalized": False,
                      "rstrip": False, "single_word": False}}, indent=1) + "\n",
        encoding="utf-8")
    names.append("hf-config-flags-ignored")

    # GemmaTokenizer over a Llama-style tokenizer.json: the class rebuilds its own
    # pipeline (normalizer Replace " " → "▁", Split on " ", no prefix space).
    vocab, merges = metaspace_vocab(["<pad>", "<eos>", "<bos>", "<unk>", "<mask>"])
    t = Tokenizer(models.BPE(vocab=vocab, merges=merges, unk_token="<unk>", byte_fallback=True,
                             fuse_unk=True))
    t.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="first",
                                               split=False)
    t.decoder = decoders.Sequence([decoders.Replace("▁", " "), decoders.ByteFallback(),
                                   decoders.Fuse(), decoders.Strip(" ", 1, 0)])
    t.add_special_tokens(["<pad>", "<eos>", "<bos>", "<unk>", "<mask>"])
    t.post_processor = tokenizers.processors.TemplateProcessing(
        single="<bos> $A", pair="<bos> $A <bos> $B",
        special_tokens=[("<bos>", t.token_to_id("<bos>"))])
    d = fresh("hf-gemma-rebuilt")
    t.save(str(d / "tokenizer.json"))
    (d / "tokenizer_config.json").write_text(json.dumps({
        "tokenizer_class": "GemmaTokenizer", "model_max_length": 8192}, indent=1) + "\n",
        encoding="utf-8")
    names.append("hf-gemma-rebuilt")

    # GPTNeoXTokenizer over a byte-level tokenizer.json with a BOS post-processor: the
    # class replaces the post-processor (no BOS) and adds NFC.
    vocab, merges = byte_level_vocab(["<|endoftext|>", "<|padding|>"])
    t = Tokenizer(models.BPE(vocab=vocab, merges=merges))
    t.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    t.decoder = decoders.ByteLevel()
    t.add_special_tokens(["<|endoftext|>", "<|padding|>"])
    t.post_processor = tokenizers.processors.TemplateProcessing(
        single="<|endoftext|> $A", pair="<|endoftext|> $A <|endoftext|> $B",
        special_tokens=[("<|endoftext|>", t.token_to_id("<|endoftext|>"))])
    d = fresh("hf-neox-rebuilt")
    t.save(str(d / "tokenizer.json"))
    (d / "tokenizer_config.json").write_text(json.dumps({
        "tokenizer_class": "GPTNeoXTokenizerFast"}, indent=1) + "\n", encoding="utf-8")
    names.append("hf-neox-rebuilt")

    # BertTokenizer over a cased WordPiece tokenizer.json without a post-processor: the
    # class lower-cases (do_lower_case defaults to true) and frames [CLS] … [SEP].
    t = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    t.normalizer = normalizers.BertNormalizer(lowercase=False)
    t.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    t.decoder = decoders.WordPiece()
    t.train_from_iterator(CORPUS, trainers.WordPieceTrainer(
        vocab_size=600, special_tokens=["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"],
        show_progress=False))
    d = fresh("hf-bert-rebuilt")
    t.save(str(d / "tokenizer.json"))
    (d / "tokenizer_config.json").write_text(json.dumps({
        "tokenizer_class": "BertTokenizerFast", "model_max_length": 512}, indent=1) + "\n",
        encoding="utf-8")
    names.append("hf-bert-rebuilt")
    return names


def token_info(tok, attr):
    value = getattr(tok, attr)
    return {"token": None if value is None else str(value), "id": getattr(tok, attr + "_id")}


def expected(name):
    d = OUT / name
    raw = Tokenizer.from_file(str(d / "tokenizer.json"))
    tok = AutoTokenizer.from_pretrained(d)
    # Nothing was added on load: every named special token is in tokenizer.json.
    assert len(tok) == raw.get_vocab_size(with_added_tokens=True), (name, len(tok))
    max_len = tok.model_max_length
    cases = [{"text": t, "ids": tok(t)["input_ids"]} for t in TEXTS]
    assert len(tok("")["input_ids"]) <= 2
    out = {
        "versions": {"transformers": transformers.__version__,
                     "tokenizers": tokenizers.__version__},
        "how": "AutoTokenizer.from_pretrained(folder); ids = tok(text)['input_ids']",
        "class": type(tok).__name__,
        "model_max_length": max_len if max_len < 1e12 else None,
        "bos": token_info(tok, "bos_token"),
        "eos": token_info(tok, "eos_token"),
        "pad": token_info(tok, "pad_token"),
        "unk": token_info(tok, "unk_token"),
        "raw_differs": sum(raw.encode(t).ids != c["ids"] for t, c in zip(TEXTS, cases)),
        "cases": cases,
    }
    (d / "expected.json").write_text(json.dumps(out, ensure_ascii=False, indent=1) + "\n",
                                     encoding="utf-8")
    return out


def apart(tok, prompt, completion):
    """manabi's SFT ids for a prompt/completion pair (`sft::encode::encode`)."""
    plain = tok("Hello", add_special_tokens=False)["input_ids"]
    full = tok("Hello")["input_ids"]
    i = next(i for i in range(len(full)) if full[i:i + len(plain)] == plain)
    prefix, suffix = full[:i], full[i + len(plain):]
    ids = prefix + (tok(prompt, add_special_tokens=False)["input_ids"]
                    + tok(completion, add_special_tokens=False)["input_ids"])
    if len(ids) == len(prefix) or ids[-1] != tok.eos_token_id:
        ids.append(tok.eos_token_id)
    return ids + suffix


def trl_ids(name):
    """The ids TRL's DPOTrainer and SFTTrainer prepare with the folder's tokenizer."""
    import torch
    from datasets import Dataset
    from transformers import LlamaConfig, LlamaForCausalLM
    import trl
    from trl import DPOConfig, DPOTrainer, SFTConfig, SFTTrainer

    d = OUT / name
    tok = AutoTokenizer.from_pretrained(d)
    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(vocab_size=len(tok), hidden_size=16, intermediate_size=32,
                                         num_hidden_layers=1, num_attention_heads=2,
                                         num_key_value_heads=2, max_position_embeddings=128))
    model.save_pretrained("/tmp/tc_model")
    model = "/tmp/tc_model"  # DPOTrainer loads its reference model from the path
    pairs = [
        {"prompt": "Q: Where does Mara live?\nA:", "chosen": " Mara lives in Tolven.",
         "rejected": " She is not here."},
        {"prompt": "Q: Where does Mara live?\nA: Mara ", "chosen": "lives in Tolven.",
         "rejected": "is not here."},
        {"prompt": "質問：吾輩は何ですか？\n答え：", "chosen": "猫です。", "rejected": "犬です。"},
        {"prompt": "Q: Is ice cold?\nA:", "chosen": " Yes.</s>", "rejected": " No."},
    ]
    dpo = DPOTrainer(model=model, processing_class=tok, train_dataset=Dataset.from_list(pairs),
                     args=DPOConfig(output_dir="/tmp/tc_dpo", report_to="none", use_cpu=True,
                                    max_length=128, save_strategy="no", disable_tqdm=True))
    sft_rows = [{"prompt": p["prompt"], "completion": p["chosen"]} for p in pairs]
    sft = SFTTrainer(model=model, processing_class=tok, train_dataset=Dataset.from_list(sft_rows),
                     args=SFTConfig(output_dir="/tmp/tc_sft", report_to="none", use_cpu=True,
                                    max_length=128, save_strategy="no", disable_tqdm=True,
                                    packing=False))
    out = {
        "versions": {"trl": trl.__version__, "transformers": transformers.__version__},
        "how": ("DPOTrainer / SFTTrainer(train_dataset=pairs) with "
                "AutoTokenizer.from_pretrained(folder); ids read back from train_dataset"),
        "eos": tok.eos_token_id,
        "dpo": [{"line": p, "prompt_ids": list(r["prompt_ids"]), "chosen_ids": list(r["chosen_ids"]),
                 "rejected_ids": list(r["rejected_ids"])}
                for p, r in zip(pairs, dpo.train_dataset)],
        "sft": [{"line": p, "input_ids": list(r["input_ids"]), "labels": list(r["labels"]),
                 # manabi's SFT tokenises prompt and completion apart (between the
                 # tokenizer's prefix and suffix): the same ids only where no token
                 # merges across the boundary and the completion alone tokenises as
                 # inside the whole.
                 "apart_equal": apart(tok, p["prompt"], p["completion"]) == list(r["input_ids"])}
                for p, r in zip(sft_rows, sft.train_dataset)],
    }
    assert any(e["apart_equal"] for e in out["sft"]), name
    # A reward model (TRL's RewardTrainer) reads prompt + completion + EOS in one call:
    # the DPO prompt followed by the completion.
    for p, r in zip(pairs, out["dpo"]):
        eos = "" if p["chosen"].endswith(tok.eos_token) else tok.eos_token
        assert tok(p["prompt"] + p["chosen"] + eos)["input_ids"] == r["prompt_ids"] + r["chosen_ids"]
    (d / "trl.json").write_text(json.dumps(out, ensure_ascii=False, indent=1) + "\n",
                                encoding="utf-8")


def main():
    names = build()
    for name in names:
        e = expected(name)
        size = sum(f.stat().st_size for f in (OUT / name).iterdir())
        print(f"{name}: {e['class']}, bos {e['bos']['id']} eos {e['eos']['id']} "
              f"pad {e['pad']['id']}, {e['raw_differs']} texts differ from tokenizer.json "
              f"as is, {size // 1024} KB")
        assert size < 100_000, name
    for name in ("hf-llama-bos", "hf-llama-add-eos"):
        trl_ids(name)
        print(f"{name}: trl.json")


if __name__ == "__main__":
    main()
