"""Makes fixtures/chat_sft/: SFT and DPO on conversational data with a model's own chat
template, as `transformers` 5.25 and TRL 1.16 tokenise it. The Rust tests
crates/finetune/tests/sft/chat.rs and crates/align/tests/dpo/chat.rs must give the same ids.

For each family (llama-3.1, qwen2.5) a small model folder: tokenizer.json,
tokenizer_config.json and the family's chat template copied from fixtures/chat_templates/.
- qwen2.5: fixtures/tokenize/hf-qwen2 (it has <|im_start|>, <|im_end|>, <|endoftext|>).
- llama-3.1: fixtures/tokenize/hf-llama3-bytelevel plus the two header tokens the template
  needs (<|start_header_id|>, <|end_header_id|>), added as special tokens with the next ids.

expected.json holds, per conversation:
- sft: `input_ids` = apply_chat_template(messages, tokenize=True) (the rendering encoded
  with add_special_tokens=False, as transformers does) and `assistant_mask`: 1 for a token
  whose first character lies in an assistant span. A span is the text that
  render(messages[:i+1]) adds to render(messages[:i], add_generation_prompt=True), for each
  assistant message i (offsets from the fast tokenizer's offset_mapping).
- dpo: `prompt_ids`, `chosen_ids`, `rejected_ids` as TRL 1.16's DPOTrainer tokenize_fn makes
  them for conversational data: trl.data_utils._tokenize of prompt (generation prompt),
  prompt + chosen and prompt + rejected, split at trl.data_utils.common_prefix_length.

    pip install transformers trl jinja2
    python3 scripts/chat_sft_fixtures.py
"""

import json
import shutil
from pathlib import Path

import transformers
import trl
from transformers import AutoTokenizer
from trl.data_utils import _tokenize, common_prefix_length

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "fixtures" / "chat_sft"
TEMPLATES = ROOT / "fixtures" / "chat_templates"
TOKENIZE = ROOT / "fixtures" / "tokenize"

CONVERSATIONS = [
    {
        "name": "english",
        "messages": [
            {"role": "user", "content": "What is the capital of France?"},
            {"role": "assistant", "content": "Paris."},
        ],
        "rejected": "Lyon, I think.",
    },
    {
        "name": "japanese",
        "messages": [
            {"role": "system", "content": "丁寧に答えてください。"},
            {"role": "user", "content": "日本で一番高い山は何ですか？"},
            {"role": "assistant", "content": "富士山です。高さは3776メートルです。"},
        ],
        "rejected": "北岳だと思います。",
    },
    {
        "name": "multi-turn",
        "messages": [
            {"role": "user", "content": "Hi!"},
            {"role": "assistant", "content": "Hello! How can I help?"},
            {"role": "user", "content": "Add 2 and 3."},
            {"role": "assistant", "content": "2 + 3 = 5"},
        ],
        "rejected": "2 + 3 = 6",
    },
]


def make_llama(folder: Path):
    src = TOKENIZE / "hf-llama3-bytelevel"
    tok = json.loads((src / "tokenizer.json").read_text())
    next_id = max([*tok["model"]["vocab"].values(), *(a["id"] for a in tok["added_tokens"])]) + 1
    for i, content in enumerate(["<|start_header_id|>", "<|end_header_id|>"]):
        tok["added_tokens"].append(
            {"id": next_id + i, "content": content, "single_word": False, "lstrip": False,
             "rstrip": False, "normalized": False, "special": True}
        )
    (folder / "tokenizer.json").write_text(json.dumps(tok, ensure_ascii=False, indent=1))
    shutil.copy(src / "tokenizer_config.json", folder / "tokenizer_config.json")
    shutil.copy(TEMPLATES / "llama-3.1" / "chat_template.jinja", folder / "chat_template.jinja")


def make_qwen(folder: Path):
    src = TOKENIZE / "hf-qwen2"
    shutil.copy(src / "tokenizer.json", folder / "tokenizer.json")
    config = json.loads((src / "tokenizer_config.json").read_text())
    template = json.loads((TEMPLATES / "qwen2.5" / "tokenizer_config.json").read_text())
    config["chat_template"] = template["chat_template"]
    (folder / "tokenizer_config.json").write_text(json.dumps(config, ensure_ascii=False, indent=2) + "\n")


def sft_case(tok, messages):
    full = tok.apply_chat_template(messages, tokenize=False)
    spans = []
    for i, m in enumerate(messages):
        if m["role"] != "assistant":
            continue
        before = tok.apply_chat_template(messages[:i], tokenize=False, add_generation_prompt=True)
        upto = tok.apply_chat_template(messages[: i + 1], tokenize=False)
        assert upto.startswith(before) and full.startswith(upto)
        spans.append((len(before), len(upto)))
    ids = tok.apply_chat_template(messages, tokenize=True, return_dict=True)["input_ids"]
    enc = tok(full, add_special_tokens=False, return_offsets_mapping=True)
    assert enc["input_ids"] == ids
    mask = [int(any(s <= a < e for s, e in spans)) for a, _ in enc["offset_mapping"]]
    return {"text": full, "input_ids": ids, "assistant_mask": mask}


def dpo_case(tok, messages, rejected):
    prompt = messages[:-1]
    chosen = [messages[-1]]
    rejected = [{"role": "assistant", "content": rejected}]
    prompt_ids = _tokenize(tok, prompt, add_generation_prompt=True, tools=None)["input_ids"]
    chosen_ids = _tokenize(tok, prompt + chosen, tools=None)["input_ids"]
    rejected_ids = _tokenize(tok, prompt + rejected, tools=None)["input_ids"]
    n = min(common_prefix_length(prompt_ids, chosen_ids), common_prefix_length(prompt_ids, rejected_ids))
    return {
        "prompt": prompt,
        "chosen": chosen,
        "rejected": rejected,
        "prompt_ids": prompt_ids[:n],
        "chosen_ids": chosen_ids[n:],
        "rejected_ids": rejected_ids[n:],
    }


def main():
    for family, make in [("llama-3.1", make_llama), ("qwen2.5", make_qwen)]:
        folder = OUT / family
        if folder.exists():
            shutil.rmtree(folder)
        folder.mkdir(parents=True)
        make(folder)
        tok = AutoTokenizer.from_pretrained(folder)
        cases = []
        for c in CONVERSATIONS:
            cases.append({
                "name": c["name"],
                "messages": c["messages"],
                "sft": sft_case(tok, c["messages"]),
                "dpo": dpo_case(tok, c["messages"], c["rejected"]),
            })
        expected = {
            "transformers": transformers.__version__,
            "trl": trl.__version__,
            "cases": cases,
        }
        (folder / "expected.json").write_text(json.dumps(expected, ensure_ascii=False, indent=1) + "\n")
        print(family, [len(c["sft"]["input_ids"]) for c in cases])


if __name__ == "__main__":
    main()
