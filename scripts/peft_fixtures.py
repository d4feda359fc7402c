"""Makes the PEFT adapter fixtures in fixtures/peft/: small adapters trained with the real
`peft` library on the tiny base models fixtures/models/gpt2, llama-gqa, neox-parallel
and phi3 (which it only reads), and the logits the PeftModel computes for fixed ids. The Rust side
loads each adapter folder and compares logits; scripts/check_peft_adapter.py checks the
other direction (adapters and merged models exported by manabi, loaded by peft).

    pip install torch transformers peft safetensors
    python3 scripts/peft_fixtures.py [CASE ...]

Each case folder holds what `save_pretrained` writes (adapter_config.json +
adapter_model.safetensors; peft's README.md model card is removed) and expected.json:

    base           "gpt2" or "llama-gqa" (the folder in fixtures/models/)
    input_ids      [2, 12] ids, torch.Generator().manual_seed(1): the same ids as the
                   base's own fixtures/models/<base>/expected.json
    logits         flat float32 logits of the PeftModel in eval mode, shape `shape`
    shape          [2, seq, 64]; seq is 12, or 4 + 12 for prompt tuning (see `note`)
    merged_logits  the same after merge_and_unload() (LoRA and IA3 only)
    num_virtual_tokens, note   prompt and prefix tuning: how peft uses the tensors
    tensors        {name: shape} of adapter_model.safetensors, as peft writes them
    lora_scaling   the factor peft applies to B @ A (LoRA only): alpha / r, or
                   alpha / sqrt(r) with use_rslora

Every adapter is trained 5 AdamW steps (lr 1e-2, causal LM loss, labels = ids) on
seeded random ids so that no tensor is at its initial value (LoRA B zero, IA3 ones).
"""

import json
import math
from pathlib import Path

import torch
from safetensors import safe_open
from transformers import AutoModelForCausalLM
import sys

from peft import IA3Config, LoraConfig, PrefixTuningConfig, PromptTuningConfig, get_peft_model

ROOT = Path(__file__).resolve().parent.parent
BASES = ROOT / "fixtures" / "models"
OUT = ROOT / "fixtures" / "peft"

LLAMA_ALL = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]

CASES = {
    # GPT-2's Conv1D stores weights [in, out]: peft needs fan_in_fan_out=True. "c_proj"
    # matches both attn.c_proj and mlp.c_proj.
    "gpt2-lora": ("gpt2", lambda: LoraConfig(
        r=4, lora_alpha=8, target_modules=["c_attn", "c_proj"], lora_dropout=0.0,
        fan_in_fan_out=True)),
    "llama-lora": ("llama-gqa", lambda: LoraConfig(
        r=4, lora_alpha=16, target_modules=LLAMA_ALL, lora_dropout=0.0)),
    "llama-lora-rslora": ("llama-gqa", lambda: LoraConfig(
        r=2, lora_alpha=4, use_rslora=True, target_modules=["q_proj", "v_proj"],
        lora_dropout=0.0)),
    # Fused modules of the other families (issue #30): GPT-NeoX's per-head interleaved
    # query_key_value, Phi-3's qkv_proj (grouped-query: unequal parts) and gate_up_proj.
    "neox-lora": ("neox-parallel", lambda: LoraConfig(
        r=4, lora_alpha=8, target_modules=["query_key_value", "dense", "dense_h_to_4h",
                                           "dense_4h_to_h"], lora_dropout=0.0)),
    "phi3-lora": ("phi3", lambda: LoraConfig(
        r=4, lora_alpha=8, target_modules=["qkv_proj", "o_proj", "gate_up_proj", "down_proj"],
        lora_dropout=0.0)),
    # Per-module rank and alpha (peft's rank_pattern / alpha_pattern: each key a regex that
    # must match a whole module name or a suffix of it after a dot; the first key that
    # matches wins). A full-name key gives layer 1's down_proj its own rank, an escaped
    # regex layer 0's its own alpha.
    "llama-lora-patterns": ("llama-gqa", lambda: LoraConfig(
        r=4, lora_alpha=16, target_modules=["q_proj", "v_proj", "down_proj"],
        rank_pattern={"q_proj": 2, "v_proj": 8, "model.layers.1.mlp.down_proj": 6},
        alpha_pattern={"q_proj": 8, r"layers\.0\.mlp\.down_\w+": 3}, lora_dropout=0.0)),
    # Only layer 1 adapted (layers_to_transform; layers_pattern left to peft's default,
    # the first numbered segment of the module name).
    "llama-lora-layers": ("llama-gqa", lambda: LoraConfig(
        r=4, lora_alpha=8, target_modules=LLAMA_ALL, layers_to_transform=[1],
        lora_dropout=0.0)),
    # DoRA (Liu et al. 2024): a learned magnitude per output row over the direction of
    # W + s·B·A. On GPT-2's Conv1D c_attn (one magnitude over Q | K | V, A shared) and
    # GPT-NeoX's per-head interleaved query_key_value too.
    "llama-dora": ("llama-gqa", lambda: LoraConfig(
        r=4, lora_alpha=8, use_dora=True, target_modules=["q_proj", "v_proj", "down_proj"],
        lora_dropout=0.0)),
    "gpt2-dora": ("gpt2", lambda: LoraConfig(
        r=4, lora_alpha=8, use_dora=True, target_modules=["c_attn", "c_proj"],
        lora_dropout=0.0, fan_in_fan_out=True)),
    "neox-dora": ("neox-parallel", lambda: LoraConfig(
        r=4, lora_alpha=8, use_dora=True, target_modules=["query_key_value", "dense_4h_to_h"],
        lora_dropout=0.0)),
    "neox-ia3": ("neox-parallel", lambda: IA3Config(
        target_modules=["query_key_value", "dense_4h_to_h"],
        feedforward_modules=["dense_4h_to_h"])),
    "llama-ia3": ("llama-gqa", lambda: IA3Config(
        target_modules=["k_proj", "v_proj", "down_proj"], feedforward_modules=["down_proj"])),
    "llama-prompt": ("llama-gqa", lambda: PromptTuningConfig(
        task_type="CAUSAL_LM", num_virtual_tokens=4, prompt_tuning_init="RANDOM")),
    # Prefix tuning: learned keys and values per layer. The LLaMA case trains through
    # peft's MLP reparameterisation; what it saves (prompt_embeddings) is the MLP's output.
    "gpt2-prefix": ("gpt2", lambda: PrefixTuningConfig(
        task_type="CAUSAL_LM", num_virtual_tokens=3)),
    "llama-prefix": ("llama-gqa", lambda: PrefixTuningConfig(
        task_type="CAUSAL_LM", num_virtual_tokens=5, prefix_projection=True)),
}

PROMPT_NOTE = (
    "peft's PeftModelForCausalLM.forward for prompt tuning prepends the num_virtual_tokens "
    "rows of prompt_embeddings (in order 0..n-1, the same for every batch row) before the "
    "word embeddings of input_ids and calls the base model with inputs_embeds and no "
    "position_ids, so the virtual tokens take positions 0..n-1 and the real tokens n..n+seq-1. "
    "An attention_mask, when given, gets n ones prepended (none is given here: plain causal "
    "attention over all n+seq positions); labels get n times -100 prepended. The logits it "
    "returns keep the virtual positions: shape [batch, n + seq, vocab]; the logits of the "
    "real tokens are logits[:, n:]."
)


PREFIX_NOTE = (
    "peft's prefix tuning views prompt_embeddings [n, num_layers*2*token_dim] as "
    "[n, num_layers*2, heads, token_dim/heads] (heads and token_dim of the key/value heads "
    "for grouped-query models), permutes it to [num_layers*2, batch, heads, n, head_dim] and "
    "gives layer l the keys 2l and values 2l+1 as its past key values (keys used as stored, "
    "no rotary embedding applied to them). The real tokens then take positions n..n+seq-1, "
    "the attention mask gets n ones prepended, and the logits are those of the real tokens: "
    "shape [batch, seq, vocab]."
)


def floats(t: torch.Tensor) -> list:
    """Flat list of the float32 values, each written with the fewest digits that read back
    as the same float32 (half the size of Python's float64 repr, no loss)."""
    return [float(str(v)) for v in t.detach().flatten().numpy()]


def logits_of(model, ids: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model(input_ids=ids).logits


def make(name: str, base_name: str, config) -> None:
    case = OUT / name
    base = AutoModelForCausalLM.from_pretrained(BASES / base_name)
    ids = torch.randint(0, 64, (2, 12), generator=torch.Generator().manual_seed(1))
    base_logits = logits_of(base.eval(), ids)

    torch.manual_seed(0)
    model = get_peft_model(base, config)
    # The config records the path the base was loaded from: keep it repo-relative.
    model.peft_config["default"].base_model_name_or_path = f"fixtures/models/{base_name}"
    model.train()
    train_ids = torch.randint(0, 64, (4, 12), generator=torch.Generator().manual_seed(2))
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    losses = []
    for _ in range(5):
        loss = model(input_ids=train_ids, labels=train_ids).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(round(loss.item(), 4))
    model.eval()

    model.save_pretrained(case, safe_serialization=True)
    (case / "README.md").unlink(missing_ok=True)  # peft's model card: not needed here
    # peft keeps target_modules (and IA3's feedforward_modules) as a set and writes it in
    # hash order, which changes from run to run: sort it so that reruns write the same file.
    config_path = case / "adapter_config.json"
    written = json.loads(config_path.read_text())
    for key in ("target_modules", "feedforward_modules"):
        if isinstance(written.get(key), list):
            written[key] = sorted(written[key])
    config_path.write_text(json.dumps(written, indent=2, sort_keys=True) + "\n")
    with safe_open(case / "adapter_model.safetensors", "pt") as f:
        tensors = {k: list(f.get_slice(k).get_shape()) for k in sorted(f.keys())}

    logits = logits_of(model, ids)
    expected = {
        "base": base_name,
        "input_ids": ids.tolist(),
        "logits": floats(logits),
        "shape": list(logits.shape),
    }
    cfg = model.peft_config["default"]
    if isinstance(config, LoraConfig):
        expected["lora_scaling"] = cfg.lora_alpha / (math.sqrt(cfg.r) if cfg.use_rslora else cfg.r)
    if isinstance(config, PromptTuningConfig):
        expected["num_virtual_tokens"] = cfg.num_virtual_tokens
        expected["note"] = PROMPT_NOTE
        shift = cfg.num_virtual_tokens
        merged_diff = None
    elif isinstance(config, PrefixTuningConfig):
        expected["num_virtual_tokens"] = cfg.num_virtual_tokens
        expected["note"] = PREFIX_NOTE
        shift = 0
        merged_diff = None
    else:
        merged = logits_of(model.merge_and_unload(), ids)
        expected["merged_logits"] = floats(merged)
        shift = 0
        merged_diff = (merged - logits).abs().max().item()
    expected["tensors"] = tensors
    (case / "expected.json").write_text(json.dumps(expected) + "\n")

    effect = (logits[:, shift:] - base_logits).abs().max().item()
    print(f"{name}: loss {losses}, logits {list(logits.shape)}, max |peft - base| {effect:.3g}"
          + (f", max |merged - peft| {merged_diff:.3g}" if merged_diff is not None else ""))
    for k, shape in tensors.items():
        print(f"    {k} {shape}")


def main() -> None:
    only = sys.argv[1:]   # case names to (re)make; all when none are given
    for name, (base_name, config) in CASES.items():
        if not only or name in only:
            make(name, base_name, config())


if __name__ == "__main__":
    main()
