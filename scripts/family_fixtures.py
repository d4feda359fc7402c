"""Makes the parity fixtures of the RoPE decoder families beyond LLaMA and Qwen (issue
#30): tiny random Hugging Face models (config.json + model.safetensors, float32) in
fixtures/models/<name>/, each with an expected.json in the format of
scripts/qwen_fixtures.py (input ids, logits, loss, a prompt and the 32 tokens
`generate(do_sample=False)` picks with the KV cache). Each config switches on the
feature it tests:

- mistral-window:  sliding window 5, shorter than the 12-token inputs and than the
                   prompt + 32 generated tokens (cached generation past the window).
- qwen2-window:    `use_sliding_window` on the layers from `max_window_layers` = 1 on
                   (full attention below, a window above).
- phi3:            fused `qkv_proj` (grouped-query: unequal parts) and `gate_up_proj`,
                   partial rotary 0.5, a sliding window of 6.
- neox-parallel:   GPT-NeoX (rinna / open-calm / Pythia): per-head fused
                   `query_key_value`, `rotary_pct` 0.25, parallel residual, LayerNorm with
                   bias, untied `embed_out`, exact GELU.
- neox-sequential: the same with `use_parallel_residual` false and `rotary_pct` 0.5.
- gemma2, gemma3, stablelm, stablelm-parallel, olmo2: see the comments in CASES.

    pip install torch transformers safetensors
    python3 scripts/family_fixtures.py [CASE ...]

The Rust test crates/model/tests/hf_parity.rs compares logits (1e-4), loss and the
greedy tokens with and without the cache.
"""

import json
import sys
from pathlib import Path

import torch
from transformers import (Gemma2Config, Gemma2ForCausalLM, Gemma3ForCausalLM,
                          Gemma3TextConfig, GPTNeoXConfig, GPTNeoXForCausalLM, MistralConfig,
                          Olmo2Config, Olmo2ForCausalLM, StableLmConfig, StableLmForCausalLM,
                          MistralForCausalLM, Phi3Config, Phi3ForCausalLM, Qwen2Config,
                          Qwen2ForCausalLM)

OUT = Path(__file__).resolve().parent.parent / "fixtures" / "models"
V = 64

CASES = {
    "mistral-window": lambda: MistralForCausalLM(MistralConfig(
        vocab_size=V, hidden_size=32, intermediate_size=48, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64,
        sliding_window=5, rope_theta=10000.0, tie_word_embeddings=False)),
    "qwen2-window": lambda: Qwen2ForCausalLM(Qwen2Config(
        vocab_size=V, hidden_size=32, intermediate_size=48, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64,
        use_sliding_window=True, sliding_window=4, max_window_layers=1,
        tie_word_embeddings=False)),
    "phi3": lambda: Phi3ForCausalLM(Phi3Config(
        vocab_size=V, hidden_size=32, intermediate_size=48, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64,
        original_max_position_embeddings=64, sliding_window=6,
        partial_rotary_factor=0.5, pad_token_id=0, bos_token_id=1, eos_token_id=2,
        tie_word_embeddings=False)),
    "neox-parallel": lambda: GPTNeoXForCausalLM(GPTNeoXConfig(
        vocab_size=V, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=4, max_position_embeddings=64, rotary_pct=0.25,
        rotary_emb_base=10000, use_parallel_residual=True, hidden_act="gelu",
        tie_word_embeddings=False)),
    "neox-sequential": lambda: GPTNeoXForCausalLM(GPTNeoXConfig(
        vocab_size=V, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=4, max_position_embeddings=64, rotary_pct=0.5,
        rotary_emb_base=10000, use_parallel_residual=False, hidden_act="gelu",
        tie_word_embeddings=False)),
    # Gemma 2: (1 + w) RMSNorm, post-norms, embeddings × √d, gated GELU-tanh, attention
    # and final soft-capping (low caps so that they bite), query_pre_attn_scalar ≠
    # head_dim, sliding / full layers alternating (window 4).
    "gemma2": lambda: Gemma2ForCausalLM(Gemma2Config(
        vocab_size=V, hidden_size=32, intermediate_size=48, num_hidden_layers=4,
        num_attention_heads=4, num_key_value_heads=2, head_dim=16, max_position_embeddings=64,
        query_pre_attn_scalar=24, sliding_window=4, attn_logit_softcapping=2.0,
        final_logit_softcapping=5.0, pad_token_id=0, bos_token_id=1, eos_token_id=2)),
    # Gemma 3 text: per-head q/k (1 + w) norms, two RoPE bases (local 10k, global 1e6
    # with linear scaling 2), every third layer full (pattern 3), window 5, untied.
    "gemma3": lambda: Gemma3ForCausalLM(Gemma3TextConfig(
        vocab_size=V, hidden_size=32, intermediate_size=48, num_hidden_layers=3,
        num_attention_heads=4, num_key_value_heads=2, head_dim=8, max_position_embeddings=64,
        query_pre_attn_scalar=8, sliding_window=5, layer_types=[
            "sliding_attention", "sliding_attention", "full_attention"],
        rope_parameters={
            "full_attention": {"rope_type": "linear", "factor": 2.0, "rope_theta": 1e6},
            "sliding_attention": {"rope_type": "default", "rope_theta": 10000.0}},
        tie_word_embeddings=False, pad_token_id=0, bos_token_id=1, eos_token_id=2)),
    # StableLM 2: LayerNorm with bias, q/k/v biases, partial rotary 0.25, GQA.
    "stablelm": lambda: StableLmForCausalLM(StableLmConfig(
        vocab_size=V, hidden_size=32, intermediate_size=48, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64,
        use_qkv_bias=True, partial_rotary_factor=0.25, use_parallel_residual=False,
        qk_layernorm=False, tie_word_embeddings=False)),
    # StableLM 2 12B's layout: a parallel residual whose attention and MLP read one
    # norm, and `qk_layernorm` (a bias-free LayerNorm per head, each head its own
    # weights; GQA, so k has fewer), with partial rotary 0.5.
    "stablelm-parallel": lambda: StableLmForCausalLM(StableLmConfig(
        vocab_size=V, hidden_size=32, intermediate_size=48, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64,
        use_qkv_bias=False, partial_rotary_factor=0.5, use_parallel_residual=True,
        qk_layernorm=True, tie_word_embeddings=False)),
    # OLMo 2: norms only after attention and MLP, RMSNorm over the whole q / k projections
    # (GQA: k's is narrower), untied.
    "olmo2": lambda: Olmo2ForCausalLM(Olmo2Config(
        vocab_size=V, hidden_size=32, intermediate_size=48, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64,
        tie_word_embeddings=False, pad_token_id=0, bos_token_id=None, eos_token_id=2)),
}

# More noise where 0.2 makes the continuation one token repeated after a few steps.
NOISE = {"phi3": 0.5, "neox-parallel": 0.5, "gemma2": 0.4, "gemma3": 1.0}

GREEDY_PROMPT = [5, 9, 13, 2, 40, 7, 33, 21]
NEW_TOKENS = 32


def main() -> None:
    only = sys.argv[1:]   # case names to (re)make; all when none are given
    for name, make in CASES.items():
        if only and name not in only:
            continue
        torch.manual_seed(0)
        model = make().eval()
        # Larger-than-default weights so that mistakes show in the logits, and a
        # continuation that is not one token repeated.
        with torch.no_grad():
            for p in model.parameters():
                p.add_(torch.randn_like(p) * NOISE.get(name, 0.2))
        model.generation_config.eos_token_id = None
        model.generation_config.bos_token_id = None
        model.generation_config.pad_token_id = 0
        case = OUT / name
        model.save_pretrained(case, safe_serialization=True)
        ids = torch.randint(0, V, (2, 12), generator=torch.Generator().manual_seed(1))
        with torch.no_grad():
            out = model(input_ids=ids, labels=ids)
            gen = model.generate(torch.tensor([GREEDY_PROMPT]), do_sample=False,
                                 max_new_tokens=NEW_TOKENS, use_cache=True)
        greedy = gen[0, len(GREEDY_PROMPT):].tolist()
        assert len(greedy) == NEW_TOKENS, greedy
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
