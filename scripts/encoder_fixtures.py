"""Makes the encoder parity fixtures in fixtures/models/: tiny random BERT and T5 models
(config.json + model.safetensors) and what `transformers` computes for fixed inputs
(expected.json). The Rust test crates/model/tests/encoder_parity/ loads each model and
compares logits.

    pip install torch transformers safetensors
    python3 scripts/encoder_fixtures.py

Notes on transformers 5.x:
- `BertForMaskedLM` has no pooler; `BertForSequenceClassification` has one.
- `T5Config` forces `tie_word_embeddings = True` and keeps the old meaning of the flag in
  `scale_decoder_outputs`. The untied v1.1 fixture is therefore written by hand in the
  layout of the Hub's google/t5-v1_1-* checkpoints (`"tie_word_embeddings": false` and a
  separate `lm_head.weight`), and checked to reload with the same logits.
"""

import json
from pathlib import Path

import torch
from safetensors.torch import save_file
from transformers import (
    BertConfig,
    BertForMaskedLM,
    BertForSequenceClassification,
    BertForTokenClassification,
    T5Config,
    T5ForConditionalGeneration,
)
from transformers.models.t5.modeling_t5 import T5Attention

OUT = Path(__file__).resolve().parent.parent / "fixtures" / "models"


def bert_config(**kw) -> BertConfig:
    return BertConfig(
        vocab_size=80, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
        intermediate_size=48, max_position_embeddings=24, type_vocab_size=2,
        hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0, **kw)


def t5_config(**kw) -> T5Config:
    return T5Config(
        vocab_size=64, d_model=32, num_layers=2, num_heads=4, dropout_rate=0.0,
        decoder_start_token_id=0, pad_token_id=0, eos_token_id=1, **kw)


def perturb(model: torch.nn.Module) -> None:
    # Larger-than-default weights so that mistakes show in the outputs.
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.05)


# A padded batch: the second row has 3 padding tokens (id 0, mask 0) at the end.
BERT_IDS = [[2, 17, 33, 5, 61, 3, 9, 44, 70, 3], [2, 8, 79, 21, 13, 3, 40, 0, 0, 0]]
BERT_MASK = [[1] * 10, [1] * 7 + [0] * 3]
BERT_TYPES = [[0] * 5 + [1] * 5, [0] * 4 + [1] * 3 + [0] * 3]


def bert_case(name: str, model: torch.nn.Module) -> None:
    case = OUT / name
    model.save_pretrained(case, safe_serialization=True)
    ids, mask, types = (torch.tensor(x) for x in (BERT_IDS, BERT_MASK, BERT_TYPES))
    with torch.no_grad():
        out = model(input_ids=ids, attention_mask=mask, token_type_ids=types)
        base = model.bert(input_ids=ids, attention_mask=mask, token_type_ids=types)
    expected = {
        "input_ids": BERT_IDS,
        "attention_mask": BERT_MASK,
        "token_type_ids": BERT_TYPES,
        "logits_shape": list(out.logits.shape),
        "logits": out.logits.flatten().tolist(),
        "hidden": base.last_hidden_state.flatten().tolist(),
    }
    if base.pooler_output is not None:
        expected["pooled"] = base.pooler_output.flatten().tolist()
    (case / "expected.json").write_text(json.dumps(expected) + "\n")
    print(name, tuple(out.logits.shape))


# Encoder input with padding in the second row; labels give the decoder input.
T5_IDS = [[13, 7, 42, 9, 55, 3, 21, 1], [5, 30, 11, 62, 1, 0, 0, 0]]
T5_MASK = [[1] * 8, [1] * 5 + [0] * 3]
T5_LABELS = [[4, 19, 33, 8, 1, -100], [27, 6, 1, -100, -100, -100]]


def t5_case(name: str, model: T5ForConditionalGeneration, untied: bool) -> None:
    case = OUT / name
    if untied:
        sd = {k: v.contiguous() for k, v in model.state_dict().items()
              if k not in ("encoder.embed_tokens.weight", "decoder.embed_tokens.weight")}
        case.mkdir(parents=True, exist_ok=True)
        save_file(sd, case / "model.safetensors", metadata={"format": "pt"})
        cfg = model.config.to_dict()
        cfg.pop("scale_decoder_outputs", None)
        cfg["tie_word_embeddings"] = False
        (case / "config.json").write_text(json.dumps(cfg, indent=2, sort_keys=True) + "\n")
    else:
        model.save_pretrained(case, safe_serialization=True)
    ids, mask, labels = (torch.tensor(x) for x in (T5_IDS, T5_MASK, T5_LABELS))
    with torch.no_grad():
        out = model(input_ids=ids, attention_mask=mask, labels=labels)
        # use_cache=False: transformers 5.23 sizes its decoder cache by `num_layers`, which
        # fails when `num_decoder_layers` differs. Greedy tokens do not depend on it.
        gen = model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=8,
                             do_sample=False, num_beams=1, use_cache=False)
        again = T5ForConditionalGeneration.from_pretrained(case).eval()
        check = again(input_ids=ids, attention_mask=mask, labels=labels).logits
    assert torch.equal(check, out.logits), f"{name}: reloaded model differs"
    expected = {
        "input_ids": T5_IDS,
        "attention_mask": T5_MASK,
        "labels": T5_LABELS,
        "decoder_input_ids": model._shift_right(labels).tolist(),
        "logits_shape": list(out.logits.shape),
        "logits": out.logits.flatten().tolist(),
        "loss": out.loss.item(),
        "generated": gen.tolist(),
    }
    if not untied:
        # Relative-position buckets of transformers, to pin down the float rounding.
        rel = torch.arange(-300, 301)
        expected["bucket_range"] = [-300, 300]
        for bidirectional in (True, False):
            key = "buckets_bidirectional" if bidirectional else "buckets_causal"
            expected[key] = T5Attention._relative_position_bucket(
                rel, bidirectional, model.config.relative_attention_num_buckets,
                model.config.relative_attention_max_distance).tolist()
    (case / "expected.json").write_text(json.dumps(expected) + "\n")
    print(name, tuple(out.logits.shape), f"loss {out.loss.item():.5f}", "generated", gen.tolist())


def main() -> None:
    torch.manual_seed(0)
    model = BertForMaskedLM(bert_config()).eval()
    perturb(model)
    bert_case("bert", model)

    torch.manual_seed(1)
    model = BertForSequenceClassification(bert_config(num_labels=3)).eval()
    perturb(model)
    bert_case("bert-cls", model)

    torch.manual_seed(2)
    model = BertForTokenClassification(bert_config(num_labels=5, hidden_act="gelu_new")).eval()
    perturb(model)
    bert_case("bert-token", model)

    # T5 v1.0: ReLU MLP, tied embeddings (decoder output scaled by d_model^-0.5), and a
    # deeper decoder than encoder.
    torch.manual_seed(3)
    model = T5ForConditionalGeneration(t5_config(
        d_kv=8, d_ff=48, num_decoder_layers=3, feed_forward_proj="relu")).eval()
    perturb(model)
    t5_case("t5-v1_0", model, untied=False)

    # T5 v1.1: gated-GELU MLP, separate lm_head, no output scaling; heads wider than
    # d_model / num_heads and few buckets so that the logarithmic buckets are used.
    torch.manual_seed(4)
    model = T5ForConditionalGeneration(t5_config(
        d_kv=12, d_ff=40, feed_forward_proj="gated-gelu", tie_word_embeddings=False,
        relative_attention_num_buckets=8, relative_attention_max_distance=12)).eval()
    assert not model.config.scale_decoder_outputs
    model.lm_head.weight = torch.nn.Parameter(model.shared.weight.detach().clone())
    perturb(model)
    t5_case("t5-v1_1", model, untied=True)


if __name__ == "__main__":
    main()
