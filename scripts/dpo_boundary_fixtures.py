"""Makes fixtures/dpo/boundary.json: the token ids TRL's real `DPOTrainer` prepares for
preference pairs whose prompt/completion boundary falls inside a BPE word (a prompt that
ends with a space or mid-word, an implicit prompt), with the llama-eval tokenizer, so the
Rust tokenisation (`manabi_align::pref::tokenize`) can be checked against it.

    pip install torch transformers trl           # made with torch 2.15.0, transformers 5.25.0,
    python3 scripts/dpo_boundary_fixtures.py     # trl 1.16.0, datasets 5.2.0

TRL >= 1.0 (`DPOTrainer._prepare_dataset`, non-conversational) appends the EOS *string*
to each completion unless it already ends with it, tokenises the prompt alone and
prompt + completion *jointly* (`processing_class(text=...)`), and starts the completion
where the prompt's ids and the joint ids first differ (`common_prefix_length`, the
minimum over chosen and rejected). A prompt whose last characters merge with the
completion's first ones therefore loses its last token(s): they are scored as part of the
completion. Tokenising prompt and completion separately (what manabi did before, and
what `separate_*` records) gives other ids for these pairs.

Writes, per pair: the text (after TRL's `extract_prompt` for implicit pairs), TRL's
`prompt_ids` / `chosen_ids` / `rejected_ids`, and `separate_*` = tok(prompt), tok(chosen)
+ [EOS], tok(rejected) + [EOS] (add_special_tokens=False; this tokenizer has no
post-processor, so TRL's add_special_tokens=True adds nothing either).
"""

import json
import os
from pathlib import Path

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")
os.environ.setdefault("TQDM_DISABLE", "1")

import datasets
import torch
import transformers
import trl
from datasets import Dataset
from transformers import AutoModelForCausalLM, PreTrainedTokenizerFast
from trl import DPOConfig, DPOTrainer

ROOT = Path(__file__).resolve().parent.parent
MODEL = ROOT / "fixtures" / "models" / "llama-eval"
OUT = ROOT / "fixtures" / "dpo" / "boundary.json"

# Explicit prompts whose boundary cuts a BPE word ("Ġ" + "does" vs "Ġd" "o" ...).
EXPLICIT = [
    {"prompt": "Q: Where does Mara live?\nA: Mara ", "chosen": "lives in Tolven.",
     "rejected": "is not here."},
    {"prompt": "Q: Where ", "chosen": "does Mara live?", "rejected": "is the shop?"},
    {"prompt": "Q: Where does Ma", "chosen": "ra live?", "rejected": "x live?"},
    # No merge across the boundary: both ways give the same ids.
    {"prompt": "Q: Is ice cold?\nA:", "chosen": " Yes, ice is cold.", "rejected": " No."},
]
# Implicit prompts: TRL's extract_prompt moves a trailing space into the completions.
IMPLICIT = [
    {"chosen": "Q: Where does Mara live?\nA: Mara lives in Tolven.",
     "rejected": "Q: Where does Mara live?\nA: Mara is not here."},
    {"chosen": "The sky is blue.", "rejected": "The sky is green."},
]


def main():
    torch.set_num_threads(1)
    tok = PreTrainedTokenizerFast(
        tokenizer_file=str(MODEL / "tokenizer.json"),
        eos_token="<eos>", pad_token="<pad>", bos_token="<bos>", unk_token="<unk>")
    model = AutoModelForCausalLM.from_pretrained(MODEL, dtype=torch.float32)
    args = DPOConfig(output_dir="/tmp/dpo_boundary", report_to="none", use_cpu=True,
                     max_length=64, save_strategy="no", disable_tqdm=True)
    trainer = DPOTrainer(model=model, args=args, train_dataset=Dataset.from_list(EXPLICIT),
                         eval_dataset=Dataset.from_list(IMPLICIT), processing_class=tok)
    eos = tok.eos_token_id

    def plain(text):
        return tok(text, add_special_tokens=False)["input_ids"]

    pairs = []
    for source, rows in ((EXPLICIT, trainer.train_dataset), (IMPLICIT, trainer.eval_dataset)):
        for raw, row in zip(source, rows):
            text = trl.extract_prompt(raw) if "prompt" not in raw else raw
            entry = {
                "line": raw,
                "prompt": text["prompt"],
                "chosen": text["chosen"],
                "rejected": text["rejected"],
                "prompt_ids": list(row["prompt_ids"]),
                "chosen_ids": list(row["chosen_ids"]),
                "rejected_ids": list(row["rejected_ids"]),
                "separate_prompt_ids": plain(text["prompt"]),
                "separate_chosen_ids": plain(text["chosen"]) + [eos],
                "separate_rejected_ids": plain(text["rejected"]) + [eos],
            }
            entry["joint_differs"] = (
                entry["prompt_ids"] != entry["separate_prompt_ids"]
                or entry["chosen_ids"] != entry["separate_chosen_ids"]
                or entry["rejected_ids"] != entry["separate_rejected_ids"])
            # What TRL scores is always the joint tokenisation of prompt + completion.
            for side in ("chosen", "rejected"):
                joint = plain(text["prompt"] + text[side] + tok.eos_token)
                assert entry["prompt_ids"] + entry[f"{side}_ids"] == joint, (entry, side)
            pairs.append(entry)
    assert [p["joint_differs"] for p in pairs] == [True, True, True, False, False, False], pairs

    out = {
        "versions": {"trl": trl.__version__, "transformers": transformers.__version__,
                     "torch": torch.__version__, "datasets": datasets.__version__},
        "tokenizer": "fixtures/models/llama-eval/tokenizer.json (no post-processor)",
        "eos": eos,
        "how": ("DPOTrainer(train_dataset=explicit pairs, eval_dataset=implicit pairs); ids "
                "read back from trainer.train_dataset / trainer.eval_dataset"),
        "pairs": pairs,
    }
    with open(OUT, "w") as f:
        json.dump(out, f, indent=1, ensure_ascii=False)
        f.write("\n")
    print("wrote", OUT)


if __name__ == "__main__":
    main()
