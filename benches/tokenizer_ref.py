"""Python reference for benches/tokenizer.rs: the same BPE training and encoding with
Hugging Face `tokenizers`. Arguments: DOCS_JSON TOKENIZER_JSON VOCAB PRE_TOKENIZE REPEATS.
Prints JSON: best training and encoding seconds, and the first ids for a parity check."""

import json
import sys
import time

from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers

JAPANESE = (r"\s?\p{Han}+[々〆ヶ]*|\s?\p{Hiragana}+|\s?[\p{Katakana}ーｰ]+|\s?\p{Latin}+|\s?\p{N}+"
            r"|\s?[^\s\p{Han}\p{Hiragana}\p{Katakana}ーｰ\p{Latin}\p{N}]+|\s+")


def main() -> None:
    docs_path, tok_path, vocab, pre, repeats = sys.argv[1:6]
    docs = json.load(open(docs_path, encoding="utf-8"))
    repeats = int(repeats)

    def train() -> float:
        tok = Tokenizer(models.BPE())
        if pre == "japanese":
            tok.pre_tokenizer = pre_tokenizers.Sequence([
                pre_tokenizers.Split(Regex(JAPANESE), "isolated"),
                pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
        else:
            tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tok.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(
            vocab_size=int(vocab), min_frequency=2, show_progress=False,
            special_tokens=["<pad>", "<unk>", "<bos>", "<eos>", "<mask>"],
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
        t = time.perf_counter()
        tok.train_from_iterator(docs, trainer=trainer)
        return time.perf_counter() - t

    train_s = min(train() for _ in range(repeats))
    tok = Tokenizer.from_file(tok_path)
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        encs = tok.encode_batch_fast(docs, add_special_tokens=False)
        best = min(best, time.perf_counter() - t)
    print(json.dumps({"train_s": train_s, "encode_s": best,
                      "ids_sample": [e.ids for e in encs[:50]]}))


if __name__ == "__main__":
    main()
