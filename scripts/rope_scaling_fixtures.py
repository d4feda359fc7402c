"""Makes the RoPE-scaling parity fixtures fixtures/models/llama3-rope/ (`rope_type`
`llama3`, Llama 3.1 / 3.2's banded smoothing of the inverse frequencies, tied embeddings
like Llama 3.2) and fixtures/models/llama-rope-linear/ (`linear`, factor 2): tiny random
LlamaForCausalLM models (config.json + model.safetensors, float32) and an expected.json
in the format of scripts/qwen_fixtures.py (input ids, logits, loss, `greedy_prompt` and
the 8 tokens `generate(do_sample=False)` picks after it). The Rust test
crates/model/tests/hf_parity.rs compares them.

The models are small enough for the scaling to matter at 48 tokens: head_dim 16 gives 8
inverse frequencies, whose wavelengths (theta 50000) are 6.3, 24.3, 93.9, ... positions;
with original_max_position_embeddings 32, low_freq_factor 1 and high_freq_factor 4 the
first is kept (< 8), the second smoothed (between 8 and 32), the rest divided by the
factor. The script checks that the scaling changes the logits, and that every greedy
step's top two logits are far apart, so 1e-4 of float noise cannot flip a token.

    pip install torch transformers safetensors
    python3 scripts/rope_scaling_fixtures.py [CASE ...]

fixtures/models/llama-rope-yarn/ is the same with `yarn` (factor 4, original 16,
beta_fast 8, beta_slow 1; cos and sin scaled by 0.1·ln 4 + 1).

Two cases choose their frequencies by the length of each forward pass, L = max(position
id) + 1 (the whole batch, every position alike):

- llama-rope-dynamic: `dynamic` (dynamic NTK), factor 2, max_position_embeddings 32.
  For L > 32 the base becomes theta · (factor · L / 32 − (factor − 1))^(d / (d − 2)),
  d = head_dim; for L <= 32 plain RoPE.
- phi3-longrope: Phi3ForCausalLM with `longrope`, original_max_position_embeddings 32,
  max_position_embeddings 64: inv_freq_i = 1 / (ext_i · theta^(2i/d)) with ext =
  `long_factor` for L > 32, else `short_factor`, and cos / sin always scaled by
  sqrt(1 + ln(64/32) / ln 32).

Their expected.json adds `short_input_ids` (2×20) and `short_logits` (plain / short
frequencies), and their `greedy_prompt` has 28 tokens, so that the frequencies switch
during the 8 cached steps (the 6th step feeds position 32). `greedy` is what
`generate(use_cache=True)` picks; where one full forward per step (no cache) picks other
tokens they are `greedy_nocache` (transformers keeps the keys already in the cache as
they were rotated; Phi3ForCausalLM re-runs the whole sequence once when it first crosses
original_max_position_embeddings).
"""

import json
import sys
from pathlib import Path

import torch
from transformers import LlamaConfig, LlamaForCausalLM, Phi3Config, Phi3ForCausalLM

OUT = Path(__file__).resolve().parent.parent / "fixtures" / "models"

COMMON = dict(
    vocab_size=64, hidden_size=64, intermediate_size=96, num_hidden_layers=2,
    num_attention_heads=4, num_key_value_heads=2, head_dim=16,
    max_position_embeddings=64, rms_norm_eps=1e-5,
)

# name -> (config kwargs, noise added to every weight, torch seed: the first from 0 whose
# greedy path has no near tie)
CASES = {
    "llama3-rope": (dict(COMMON, tie_word_embeddings=True, rope_parameters={
        "rope_type": "llama3", "rope_theta": 50000.0, "factor": 8.0,
        "low_freq_factor": 1.0, "high_freq_factor": 4.0,
        "original_max_position_embeddings": 32,
    }), 0.1),
    "llama-rope-linear": (dict(COMMON, tie_word_embeddings=False, rope_parameters={
        "rope_type": "linear", "rope_theta": 10000.0, "factor": 2.0,
    }), 0.1),
    # YaRN (Qwen2.5 / DeepSeek long-context): factor 4 over an original 16 positions,
    # beta_fast 8 so that the ramp falls inside the 8 frequencies, attention factor
    # 0.1·ln 4 + 1 on cos / sin.
    "llama-rope-yarn": (dict(COMMON, tie_word_embeddings=False, rope_parameters={
        "rope_type": "yarn", "rope_theta": 10000.0, "factor": 4.0,
        "original_max_position_embeddings": 16, "beta_fast": 8.0, "beta_slow": 1.0,
    }), 0.1),
    # The same where max_position_embeddings (64) is not factor × original (4 × 32):
    # transformers 5.25 uses `factor` as given (older releases took the ratio).
    "llama-rope-yarn2": (dict(COMMON, tie_word_embeddings=False, rope_parameters={
        "rope_type": "yarn", "rope_theta": 10000.0, "factor": 4.0,
        "original_max_position_embeddings": 32, "beta_fast": 8.0, "beta_slow": 1.0,
    }), 0.1),
    # Dynamic NTK: plain RoPE up to max_position_embeddings (32), past it a larger base
    # computed from the length of the forward pass.
    "llama-rope-dynamic": (dict(COMMON, tie_word_embeddings=False, max_position_embeddings=32,
                                rope_parameters={
        "rope_type": "dynamic", "rope_theta": 10000.0, "factor": 2.0,
    }), 0.1),
    # Phi-3 LongRoPE (Phi-3-mini-128k, Phi-3.5): per-frequency divisors, short up to
    # original_max_position_embeddings (top-level, as Phi-3 checkpoints have it), long
    # past it; no `factor`, so the attention factor comes from 64 / 32.
    "phi3-longrope": (dict(
        vocab_size=64, hidden_size=64, intermediate_size=96, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64,
        original_max_position_embeddings=32, rms_norm_eps=1e-5, tie_word_embeddings=False,
        pad_token_id=0, bos_token_id=1, eos_token_id=2, rope_parameters={
            "rope_type": "longrope", "rope_theta": 10000.0,
            "short_factor": [1.0, 1.02, 1.05, 1.08, 1.12, 1.17, 1.23, 1.3],
            "long_factor": [1.5, 1.9, 2.4, 3.0, 3.8, 4.9, 6.2, 8.0],
        }), 0.1),
}

# Cases that are not LlamaForCausalLM.
FAMILY = {"phi3-longrope": (Phi3Config, Phi3ForCausalLM)}
# Cases whose frequencies depend on the length of the forward pass: 28-token greedy
# prompt and the short input.
LENGTH_DEPENDENT = {"llama-rope-dynamic", "phi3-longrope"}
# Cases whose seed must also make the cached and the uncached greedy paths part (the
# first seed from 0 with no near tie where they do), so that the fixture pins which
# rotation the keys already in the cache keep. (phi3-longrope's never part: see above.)
DIVERGE = {"llama-rope-dynamic"}

# 36 tokens: the 8 generated ones sit at positions 36..43, past the original 32.
GREEDY_PROMPT = [5, 9, 13, 2, 40, 7, 33, 21, 60, 11, 3, 48, 17, 29, 52, 6, 44, 38,
                 12, 25, 57, 8, 19, 36, 61, 4, 27, 50, 15, 42, 23, 31, 58, 10, 46, 1]
MIN_GAP = 1e-2  # top-1 minus top-2 logit at every greedy step
# 20 tokens, under the 32 where the length-dependent cases switch.
SHORT_LEN = 20


def with_rope(model, rope_parameters: dict):
    """The same weights with other RoPE parameters."""
    cfg = model.config.to_dict()
    cfg["rope_parameters"] = rope_parameters
    other = type(model)(type(model.config)(**cfg)).eval()
    other.load_state_dict(model.state_dict())
    return other


def unscaled(model):
    """The same weights with plain RoPE."""
    return with_rope(model, {"rope_type": "default",
                             "rope_theta": model.config.rope_parameters["rope_theta"]})


class NearTie(Exception):
    pass


def build(name: str, kwargs: dict, noise: float, seed: int):
    """A model drawn with `seed` and its expected.json, or NearTie."""
    config_cls, model_cls = FAMILY.get(name, (LlamaConfig, LlamaForCausalLM))
    length_dependent = name in LENGTH_DEPENDENT
    prompt = GREEDY_PROMPT[:28] if length_dependent else GREEDY_PROMPT
    torch.manual_seed(seed)
    model = model_cls(config_cls(**kwargs)).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * noise)
    # No EOS anywhere: generation must run its 8 steps (in transformers and in Rust).
    for c in (model.config, model.generation_config):
        c.eos_token_id = None
        c.bos_token_id = None
    model.generation_config.pad_token_id = 0
    ids = torch.randint(0, 64, (2, 48), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        out = model(input_ids=ids, labels=ids)
        gen = model.generate(torch.tensor([prompt]), do_sample=False,
                             max_new_tokens=8, use_cache=True, output_logits=True,
                             return_dict_in_generate=True)
        # The greedy path without the cache, one full forward per step.
        seq = torch.tensor([prompt])
        for _ in range(8):
            logits = model(input_ids=seq).logits[0, -1]
            top = torch.topk(logits, 2).values
            if (top[0] - top[1]).item() <= MIN_GAP:
                raise NearTie
            seq = torch.cat([seq, logits.argmax().view(1, 1)], dim=1)
        plain = unscaled(model)(input_ids=ids).logits
        if length_dependent:
            short_ids = torch.randint(0, 64, (2, SHORT_LEN),
                                      generator=torch.Generator().manual_seed(2))
            short = model(input_ids=short_ids).logits
            short_plain = unscaled(model)(input_ids=short_ids).logits
    greedy = gen.sequences[0, len(prompt):].tolist()
    assert len(greedy) == 8, greedy
    nocache = seq[0, len(prompt):].tolist()
    if not length_dependent:
        assert nocache == greedy, (seq, greedy)
    for step in gen.logits:
        top = torch.topk(step[0], 2).values
        if (top[0] - top[1]).item() <= MIN_GAP:
            raise NearTie
    if len(set(greedy)) < 6:  # one token repeated tests little
        raise NearTie
    change = (plain - out.logits).abs().max().item()
    assert change > 1e-2, f"the scaling changes the logits by only {change}"
    expected = {
        "input_ids": ids.tolist(),
        "logits": out.logits.flatten().tolist(),
        "loss": out.loss.item(),
        "greedy_prompt": prompt,
        "greedy": greedy,
    }
    if length_dependent:
        rope = model.config.rope_parameters
        short_change = (short_plain - short).abs().max().item()
        if rope["rope_type"] == "dynamic":
            # Up to max_position_embeddings dynamic NTK is plain RoPE.
            assert short_change < 1e-5, short_change
        else:
            # Short factors and the attention factor move the short logits off plain
            # RoPE, and the long factors would give other ones.
            assert short_change > 1e-2, short_change
            with torch.no_grad():
                long = with_rope(model, dict(rope, short_factor=rope["long_factor"]))(
                    input_ids=short_ids).logits
            long_change = (long - short).abs().max().item()
            assert long_change > 1e-2, f"short and long factors differ by only {long_change}"
        expected["short_input_ids"] = short_ids.tolist()
        expected["short_logits"] = short.flatten().tolist()
        if nocache != greedy:
            expected["greedy_nocache"] = nocache
    return model, expected, change


def main() -> None:
    only = sys.argv[1:]   # case names to (re)make; all when none are given
    for name, (kwargs, noise) in CASES.items():
        if only and name not in only:
            continue
        for seed in range(50):
            try:
                model, expected, change = build(name, kwargs, noise, seed)
            except NearTie:
                continue
            if name not in DIVERGE or "greedy_nocache" in expected:
                break
        else:
            raise SystemExit(f"{name}: no seed without a near tie"
                             + (" whose cached and uncached paths part" if name in DIVERGE else ""))
        case = OUT / name
        model.save_pretrained(case, safe_serialization=True)
        (case / "expected.json").write_text(json.dumps(expected) + "\n")
        print(name, f"seed {seed}", f"loss {expected['loss']:.5f}", expected["greedy"],
              f"scaling moves logits by {change:.3f}",
              f"no cache: {expected.get('greedy_nocache', 'the same')}")


if __name__ == "__main__":
    main()
