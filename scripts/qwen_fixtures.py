"""Makes the Qwen parity fixtures fixtures/models/qwen2/ and fixtures/models/qwen3/:
tiny random Hugging Face models (config.json + model.safetensors, float32) and an
expected.json in the format of scripts/model_fixtures.py (input ids, logits, loss) plus
`greedy`: 8 tokens `generate(do_sample=False)` picks with the KV cache after
`greedy_prompt`. The Rust test crates/model/tests/hf_parity.rs compares both.

    pip install torch transformers safetensors
    python3 scripts/qwen_fixtures.py
"""

import json
from pathlib import Path

import torch
from transformers import Qwen2Config, Qwen2ForCausalLM, Qwen3Config, Qwen3ForCausalLM

OUT = Path(__file__).resolve().parent.parent / "fixtures" / "models"

# name -> (model, scale of the noise added to every weight). qwen3 gets more noise: at
# 0.05 its greedy continuation is one token repeated, which tests little.
CASES = {
    # q/k/v biases (not o_proj), untied head, rope_theta other than LLaMA's default.
    "qwen2": (lambda: Qwen2ForCausalLM(Qwen2Config(
        vocab_size=64, hidden_size=32, intermediate_size=48, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=32,
        tie_word_embeddings=False, rope_theta=1000000.0, rms_norm_eps=1e-6,
        use_sliding_window=False)), 0.05),
    # q_norm/k_norm per head, head_dim 16 != 32 / 4, tied embeddings, no biases.
    "qwen3": (lambda: Qwen3ForCausalLM(Qwen3Config(
        vocab_size=64, hidden_size=32, intermediate_size=48, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, head_dim=16,
        max_position_embeddings=32, tie_word_embeddings=True, rope_theta=1000000.0,
        rms_norm_eps=1e-6, attention_bias=False, use_sliding_window=False)), 0.2),
}

GREEDY_PROMPT = [5, 9, 13, 2, 40, 7]


def main() -> None:
    for name, (make, noise) in CASES.items():
        torch.manual_seed(0)
        model = make().eval()
        # Larger-than-default weights so that mistakes show in the logits (biases and
        # q/k norm weights included).
        with torch.no_grad():
            for p in model.parameters():
                p.add_(torch.randn_like(p) * noise)
        model.generation_config.eos_token_id = None
        model.generation_config.bos_token_id = None
        model.generation_config.pad_token_id = 0
        case = OUT / name
        model.save_pretrained(case, safe_serialization=True)
        ids = torch.randint(0, 64, (2, 12), generator=torch.Generator().manual_seed(1))
        with torch.no_grad():
            out = model(input_ids=ids, labels=ids)
            gen = model.generate(torch.tensor([GREEDY_PROMPT]), do_sample=False,
                                 max_new_tokens=8, use_cache=True)
        greedy = gen[0, len(GREEDY_PROMPT):].tolist()
        assert len(greedy) == 8, greedy
        (case / "expected.json").write_text(json.dumps({
            "input_ids": ids.tolist(),
            "logits": out.logits.flatten().tolist(),
            "loss": out.loss.item(),
            "greedy_prompt": GREEDY_PROMPT,
            "greedy": greedy,
        }) + "\n")
        print(name, tuple(out.logits.shape), f"loss {out.loss.item():.5f}", greedy)


if __name__ == "__main__":
    main()
