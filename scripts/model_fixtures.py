"""Makes the model parity fixtures in fixtures/models/: tiny random Hugging Face models
(config.json + model.safetensors) and the logits `transformers` computes for fixed ids.
The Rust test crates/model/tests/hf_parity.rs loads each model and compares logits.

    pip install torch transformers safetensors
    python3 scripts/model_fixtures.py
"""

import json
from pathlib import Path

import torch
from transformers import GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM

OUT = Path(__file__).resolve().parent.parent / "fixtures" / "models"

CASES = {
    "gpt2": lambda: GPT2LMHeadModel(GPT2Config(
        vocab_size=64, n_positions=32, n_embd=32, n_layer=2, n_head=4,
        resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0)),
    "llama-gqa": lambda: LlamaForCausalLM(LlamaConfig(
        vocab_size=64, hidden_size=32, intermediate_size=48, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=32,
        tie_word_embeddings=False)),
    "llama-tied-theta": lambda: LlamaForCausalLM(LlamaConfig(
        vocab_size=64, hidden_size=32, intermediate_size=40, num_hidden_layers=2,
        num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=32,
        tie_word_embeddings=True, rope_theta=500000.0, attention_bias=True,
        rms_norm_eps=1e-5)),
    "llama-mqa": lambda: LlamaForCausalLM(LlamaConfig(
        vocab_size=64, hidden_size=48, intermediate_size=64, num_hidden_layers=1,
        num_attention_heads=6, num_key_value_heads=1, max_position_embeddings=32,
        head_dim=16)),
}


# Models with the bpe-en tokenizer (vocab 512) for `manabi eval` parity.
EVAL_CASES = {
    "gpt2-eval": lambda: GPT2LMHeadModel(GPT2Config(
        vocab_size=512, n_positions=64, n_embd=32, n_layer=2, n_head=4,
        resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0)),
    "llama-eval": lambda: LlamaForCausalLM(LlamaConfig(
        vocab_size=512, hidden_size=32, intermediate_size=48, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64)),
}


def eval_fixtures() -> None:
    from tokenizers import Tokenizer
    root = OUT.parent.parent
    text = (root / "datasets" / "tiny" / "stories-en.txt").read_text(encoding="utf-8")[:6000]
    (OUT / "eval.txt").write_text(text, encoding="utf-8")
    tok_path = root / "fixtures" / "tokenize" / "bpe-en" / "tokenizer.json"
    ids = Tokenizer.from_file(str(tok_path)).encode(text, add_special_tokens=False).ids
    for name, make in EVAL_CASES.items():
        torch.manual_seed(0)
        model = make().eval()
        with torch.no_grad():
            for p in model.parameters():
                p.add_(torch.randn_like(p) * 0.2)
        case = OUT / name
        model.save_pretrained(case, safe_serialization=True)
        (case / "tokenizer.json").write_bytes(tok_path.read_bytes())
        results = {}
        for context in (64, 40):
            nll, count = 0.0, 0
            for start in range(0, len(ids), context):
                window = ids[start:start + context]
                if len(window) < 2:
                    continue
                x = torch.tensor([window])
                with torch.no_grad():
                    logp = torch.log_softmax(model(input_ids=x).logits[0, :-1].double(), -1)
                nll -= logp.gather(1, x[0, 1:, None]).sum().item()
                count += len(window) - 1
            results[str(context)] = {"loss": nll / count, "tokens": count}
        # transformers' own loss on one window, as a cross-check of the procedure.
        with torch.no_grad():
            one = model(input_ids=torch.tensor([ids[:64]]), labels=torch.tensor([ids[:64]])).loss.item()
        (case / "expected_eval.json").write_text(json.dumps({"results": results, "first_window_loss": one}) + "\n")
        print(name, results)


def main() -> None:
    for name, make in CASES.items():
        torch.manual_seed(0)
        model = make().eval()
        # Larger-than-default weights so that mistakes show in the logits.
        with torch.no_grad():
            for p in model.parameters():
                p.add_(torch.randn_like(p) * 0.05)
        case = OUT / name
        model.save_pretrained(case, safe_serialization=True)
        ids = torch.randint(0, 64, (2, 12), generator=torch.Generator().manual_seed(1))
        with torch.no_grad():
            out = model(input_ids=ids, labels=ids)
        (case / "expected.json").write_text(json.dumps({
            "input_ids": ids.tolist(),
            "logits": out.logits.flatten().tolist(),
            "loss": out.loss.item(),
        }) + "\n")
        print(name, tuple(out.logits.shape), f"loss {out.loss.item():.5f}")
    eval_fixtures()


if __name__ == "__main__":
    main()
