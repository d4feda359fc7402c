"""PyTorch + peft reference for benches/lora_step.rs: one LoRA step (r 16, alpha 32 on q,
k, v, o; loss, backward, clipping to norm 1, AdamW with the trainer's betas and weight
decay) on the folder manabi exported, after one untimed step. Argument: one JSON spec
(dir, rows, threads, lr). Prints JSON: the timed step's seconds, the first step's loss,
versions."""

import json
import sys
import time

import peft
import torch
import transformers
from peft import LoraConfig, get_peft_model
from transformers import AutoModelForCausalLM


def main():
    spec = json.loads(sys.argv[1])
    torch.set_num_threads(spec["threads"])
    model = AutoModelForCausalLM.from_pretrained(spec["dir"], dtype=torch.float32)
    model = get_peft_model(model, LoraConfig(r=16, lora_alpha=32, lora_dropout=0.0,
                                             target_modules=["q_proj", "k_proj", "v_proj",
                                                             "o_proj"]))
    model.train()
    rows = torch.tensor(spec["rows"])
    ids, labels = rows[:, :-1], rows[:, 1:]
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=spec["lr"], betas=(0.9, 0.99), weight_decay=0.1)
    loss_fn = torch.nn.CrossEntropyLoss()

    def step():
        logits = model(input_ids=ids).logits
        loss = loss_fn(logits.reshape(-1, logits.shape[-1]), labels.reshape(-1))
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        return loss.item()

    first_loss = step()
    t = time.perf_counter()
    step()
    step_s = time.perf_counter() - t
    print(json.dumps({"step_s": step_s, "first_loss": first_loss, "torch": torch.__version__,
                      "transformers": transformers.__version__, "peft": peft.__version__}))


if __name__ == "__main__":
    main()
