"""Renders conversations with `transformers`' apply_chat_template, using the
tokenizer_config.json of a manabi export, and writes fixtures/chat/rendered.json. The Rust
test crates/finetune/tests/chat_template.rs checks that manabi's own chat rendering (the
text SFT trains on) is exactly this text, and that exports carry this template.

    manabi export --model runs/world-base/checkpoints/step-0000800 --out /tmp/world-hf
    python3 scripts/chat_template_fixtures.py --export /tmp/world-hf

Needs transformers (and jinja2, which it installs).
"""

import argparse
import json
from pathlib import Path

from transformers import AutoTokenizer

ROOT = Path(__file__).resolve().parent.parent


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--export", required=True, type=Path, help="a manabi HF export folder")
    args = ap.parse_args()
    tok = AutoTokenizer.from_pretrained(args.export)
    cases = []
    for name in ("chat-en.jsonl", "chat-ja.jsonl"):
        lines = (ROOT / "datasets" / "sft" / name).read_text(encoding="utf-8").splitlines()
        for line in lines[:5]:
            messages = json.loads(line)["messages"]
            # The prompt a model continues: every turn but the last assistant one.
            prompt = messages[:-1]
            cases.append({
                "messages": messages,
                "text": tok.apply_chat_template(messages, tokenize=False),
                "prompt": tok.apply_chat_template(prompt, tokenize=False, add_generation_prompt=True),
            })
    out = ROOT / "fixtures" / "chat" / "rendered.json"
    out.write_text(json.dumps({"chat_template": tok.chat_template, "cases": cases},
                              ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    print(f"{out}: {len(cases)} conversations rendered by transformers")


if __name__ == "__main__":
    main()
