"""Makes the DPO reference fixtures in fixtures/dpo/: what TRL's real `DPOTrainer` (and,
for SimPO, TRL's `CPOTrainer`) computes on 8 tiny preference pairs with the random LLaMA in
fixtures/models/llama-eval/ (which it only reads), so the Rust DPO code can be checked
against it.

    pip install torch transformers trl           # made with torch 2.15.0, transformers 5.24.0,
    python3 scripts/dpo_fixtures.py              # trl 1.16.0, datasets 5.2.0, accelerate 1.15.0

CPU only, one thread, float32: a rerun writes byte-identical files (checked). Writes

    fixtures/dpo/pairs.jsonl    the 8 pairs, TRL's standard (non-conversational) format
                                {"prompt", "chosen", "rejected"}, in training order
    fixtures/dpo/expected.json  per run (sigmoid, ipo, hinge, robust, simpo):
        config          the exact DPOConfig / CPOConfig kwargs
        pairs[i]        the ids TRL trained on (read back from trainer.train_dataset),
                        eos_appended / bos_added, and the reference log-probs (sum over
                        the completion tokens; DPO runs only)
        steps[k]        trainer.state.log_history entry of optimizer step k+1 (loss,
                        rewards/*, logps/*, grad_norm, ...; float32 values as Python floats),
                        the pair indices of its batch, and the per-pair policy log-probs
                        (before the update of that step) that the batch means come from
    and, at the top level, the versions, TRL's formulas, tokenization and reduction notes.

The policy and the reference model are two separate float32 copies of llama-eval (no
PEFT). Every step's logged metrics come from the forward pass *before* that step's
AdamW update, so step 1 has policy == reference (sigmoid loss = log 2, rewards 0).
Before writing, verify() recomputes every logged loss/reward/logps metric (float64) from
the recorded per-pair values with the formulas written into expected.json, and the
reference log-probs with a plain (unfused, unpadded) transformers forward.
"""

import json
import math
import os
import shutil
import tempfile
from pathlib import Path

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")
os.environ.setdefault("TQDM_DISABLE", "1")

import accelerate
import datasets
import torch
import transformers
import trl
from datasets import Dataset
from transformers import AutoModelForCausalLM, PreTrainedTokenizerFast
from trl import DPOConfig, DPOTrainer
from trl.experimental.cpo import CPOConfig, CPOTrainer

ROOT = Path(__file__).resolve().parent.parent
MODEL = ROOT / "fixtures" / "models" / "llama-eval"
OUT = ROOT / "fixtures" / "dpo"

PAIRS = [
    {"prompt": "Q: Where does Mara live?\nA:", "chosen": " Mara lives in Tolven.",
     "rejected": " I do not care."},
    {"prompt": "Q: What color is the sky?\nA:", "chosen": " The sky is blue.",
     "rejected": " Go away."},
    {"prompt": "Q: How many legs does a cat have?\nA:", "chosen": " A cat has four legs.",
     "rejected": " Cats are green."},
    {"prompt": "Q: What is two plus two?\nA:", "chosen": " Two plus two is four.",
     "rejected": " It is seven, maybe."},
    {"prompt": "Q: Who wrote the letter?\nA:", "chosen": " Ben wrote the letter.",
     "rejected": " No idea."},
    {"prompt": "Q: When does the shop open?\nA:", "chosen": " The shop opens at nine.",
     "rejected": " Shops are boring and I will not say."},
    {"prompt": "Q: What do bees make?\nA:", "chosen": " Bees make honey.",
     "rejected": " Bees make cars."},
    {"prompt": "Q: Is ice cold?\nA:", "chosen": " Yes, ice is cold.", "rejected": " No."},
]

BATCH = 4
STEPS = 3

# Shared by every run. max_grad_norm=0.0 turns clipping off in transformers' Trainer
# (`if args.max_grad_norm > 0: clip`); grad_norm is still computed and logged, unclipped.
COMMON = dict(
    beta=0.1,
    per_device_train_batch_size=BATCH,
    gradient_accumulation_steps=1,
    learning_rate=1e-3,
    lr_scheduler_type="constant",
    warmup_steps=0,
    optim="adamw_torch",
    weight_decay=0.0,
    adam_beta1=0.9,
    adam_beta2=0.999,
    adam_epsilon=1e-8,
    max_grad_norm=0.0,
    max_steps=STEPS,
    logging_steps=1,
    report_to="none",
    seed=0,
    data_seed=0,
    bf16=False,
    fp16=False,
    gradient_checkpointing=False,
    # transformers >= 5 option: SequentialSampler over the dataset, so the batches are
    # pairs [0..4], [4..8], [0..4] (the steps below record and assert this).
    train_sampling_strategy="sequential",
    dataloader_num_workers=0,
    dataloader_drop_last=False,
    save_strategy="no",
    use_cpu=True,
    disable_tqdm=True,
    max_length=64,  # = max_position_embeddings; nothing here comes close (no truncation)
)

DPO_RUNS = {
    "sigmoid": dict(loss_type=["sigmoid"], label_smoothing=0.0),
    "ipo": dict(loss_type=["ipo"], label_smoothing=0.0),
    "hinge": dict(loss_type=["hinge"], label_smoothing=0.0),
    "robust": dict(loss_type=["robust"], label_smoothing=0.1),
}
DPO_EXTRA = dict(precompute_ref_log_probs=False, truncation_mode="keep_start", disable_dropout=True)

# TRL 1.16's DPOTrainer has no SimPO loss type (its list: sigmoid, hinge, ipo, exo_pair,
# nca_pair, robust, bco_pair, sppo_hard, aot, aot_unpaired, apo_zero, apo_down, discopop,
# sft, sigmoid_norm). SimPO lives in trl.experimental.cpo.CPOTrainer with loss_type="simpo";
# cpo_alpha=0.0 drops CPO's extra NLL term, leaving the pure SimPO loss.
SIMPO_RUN = dict(loss_type="simpo", simpo_gamma=0.5, cpo_alpha=0.0, label_smoothing=0.0,
                 alpha=0.0, disable_dropout=True)

FORMULAS = {
    "notation": (
        "logp(y) = sum over completion tokens t of log softmax(logits[t-1])[y_t] (the "
        "prompt tokens and the padding are not scored; the first completion token is "
        "predicted from the last prompt token). chosen_logratio = logp_policy(chosen) - "
        "logp_ref(chosen), likewise rejected; delta = chosen_logratio - rejected_logratio "
        "(f_divergence_type='reverse_kl', the default). beta = 0.1. n_c, n_r = number of "
        "completion tokens (EOS included) of chosen / rejected."),
    "sigmoid": "loss_i = -logsigmoid(beta * delta)",
    "ipo": (
        "loss_i = (delta_avg - 1/(2*beta))**2 with delta_avg = chosen_logratio/n_c - "
        "rejected_logratio/n_r: IPO divides each SUMMED log-ratio by its completion length "
        "(clamp(min=1)), i.e. it uses per-token average log-ratios. Only the loss is "
        "normalised; rewards/* and logps/* stay sums."),
    "hinge": "loss_i = relu(1 - beta * delta)",
    "robust": (
        "loss_i = (-(1-eps) * logsigmoid(beta*delta) + eps * logsigmoid(-beta*delta)) / "
        "(1 - 2*eps), eps = label_smoothing = 0.1 (TRL: (clean - flipped)/(1-2eps), clean = "
        "-(1-eps)*logsigmoid(beta*delta), flipped = -eps*logsigmoid(-beta*delta))"),
    "simpo": (
        "CPOTrainer, loss_type='simpo', cpo_alpha=0, alpha=0, no reference model: "
        "avg_c = logp_policy(chosen)/n_c, avg_r = logp_policy(rejected)/n_r (AVERAGED "
        "over completion tokens, get_batch_logps(average_log_prob=True)); logits = avg_c - "
        "avg_r - gamma/beta; loss_i = -logsigmoid(beta*logits)*(1-ls) - "
        "logsigmoid(-beta*logits)*ls with ls = label_smoothing = 0, gamma = simpo_gamma = "
        "0.5, beta = 0.1. So loss_i = -logsigmoid(beta*(avg_c - avg_r) - gamma). Total "
        "loss = mean_i loss_i + cpo_alpha * nll (cpo_alpha = 0, so no NLL term; the "
        "'nll_loss' metric is logged as 0.0)."),
    "batch_reduction": (
        "loss = mean over the pairs of the batch of loss_i (per_sequence_loss.mean(), "
        "times loss_weight 1.0). No token-level averaging across the batch."),
    "metrics_dpo": (
        "rewards/chosen = mean_i beta*chosen_logratio_i; rewards/rejected = mean_i "
        "beta*rejected_logratio_i; rewards/accuracies = mean_i [beta*chosen_logratio_i > "
        "beta*rejected_logratio_i] (strict >, so 0.0 at step 1 where both are 0); "
        "rewards/margins = mean_i (chosen_reward_i - rejected_reward_i); logps/chosen, "
        "logps/rejected = mean_i of the policy's SUMMED completion log-probs (every loss "
        "type, ipo included); all from the forward pass before the optimizer step. "
        "'loss' is the Trainer's tr_loss for the step (GA=1: exactly the batch loss)."),
    "metrics_simpo": (
        "CPOTrainer: rewards/chosen = mean_i beta*avg_c_i, rewards/rejected = mean_i "
        "beta*avg_r_i (no gamma, no reference), rewards/accuracies = mean_i "
        "[beta*avg_c_i > beta*avg_r_i], rewards/margins = mean_i beta*(avg_c_i - avg_r_i); "
        "logps/chosen, logps/rejected = mean_i of the AVERAGED (per-token) policy log-probs."),
    "logging_and_accumulation": (
        "Both trainers append one value per compute_loss call (= per micro-batch) and "
        "log() reports the plain mean of the values stored since the last log. With "
        "gradient_accumulation_steps=1 and logging_steps=1, each log_history entry is "
        "exactly one batch. (With GA>1 the metrics would be the unweighted mean over the "
        "micro-batches of the logging window; 'loss' is divided by GA per micro-batch "
        "and summed, i.e. also the micro-batch mean.)"),
}

TOKENIZATION = {
    "dpo": (
        "DPOTrainer._prepare_dataset (non-conversational): appends the EOS token *string* "
        "('<eos>') to chosen and rejected text unless already there, then tokenizes "
        "tok(prompt), tok(prompt+chosen), tok(prompt+rejected) with the tokenizer's own "
        "special-token handling (add_special_tokens default True; this tokenizer has no "
        "post-processor, so NO BOS is added; '<eos>' in the text becomes id 3). prompt_ids = "
        "tok(prompt) cut at the common prefix with both full tokenizations; chosen_ids / "
        "rejected_ids = the rest of the full tokenizations. Collator: input_ids = prompt_ids "
        "+ completion_ids, batch = [chosen rows of the batch; rejected rows], right-padded "
        "with pad id 0, attention_mask 1 on real tokens, completion_mask 1 on completion "
        "tokens; truncation keep_start to max_length=64 (none happens here)."),
    "simpo_cpo": (
        "CPOTrainer.tokenize_row: tok(prompt, add_special_tokens=False), tok(prompt+answer, "
        "add_special_tokens=False), answer ids = full[len(prompt ids):]; then PREPENDS "
        "bos_token_id (2) to the prompt if it does not start with it, and APPENDS "
        "eos_token_id (3) to chosen/rejected. labels = -100 on the prompt (BOS included), "
        "padding label -100, pad id 0. So SimPO sequences are [BOS] + prompt + completion + "
        "[EOS], DPO sequences prompt + completion + [EOS]."),
}


def tokenizer():
    tok = PreTrainedTokenizerFast(
        tokenizer_file=str(MODEL / "tokenizer.json"),
        eos_token="<eos>", pad_token="<pad>", bos_token="<bos>", unk_token="<unk>")
    ids = tok("abc")["input_ids"]
    assert not set(ids) & {0, 1, 2, 3, 4}, ids
    return tok


def load_model():
    return AutoModelForCausalLM.from_pretrained(MODEL, dtype=torch.float32)


def batch_pairs(prompt_rows, pair_prompts):
    """Map the prompt ids of a batch's rows back to pair indices."""
    out = []
    for row in prompt_rows:
        matches = [i for i, p in enumerate(pair_prompts) if p == row]
        assert len(matches) == 1, (row, matches)
        out.append(matches[0])
    return out


class RecordingDPOTrainer(DPOTrainer):
    """DPOTrainer that, before each training forward, also records (no grad, no effect on
    training) the batch's pair indices and the policy's per-pair summed log-probs."""

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        if model.training:
            chosen, rejected = self.compute_ref_log_probs(model, inputs)
            ids, cmask = inputs["input_ids"], inputs["completion_mask"]
            n = ids.shape[0] // 2
            prompts = []
            for r in range(n):
                first = int(cmask[r].nonzero()[0])
                prompts.append(ids[r, :first].tolist())
            self.recorded.append({
                "pairs": batch_pairs(prompts, self.pair_prompts),
                "policy_logps_chosen": chosen.tolist(),
                "policy_logps_rejected": rejected.tolist(),
            })
        return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)


class RecordingCPOTrainer(CPOTrainer):
    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        if model.training:
            with torch.no_grad():
                out = self.concatenated_forward(model, inputs)
            self.recorded.append({
                # the collator left-pads prompt_input_ids; keep the attended positions
                "pairs": batch_pairs(
                    [ids[m.bool()].tolist() for ids, m in
                     zip(inputs["prompt_input_ids"], inputs["prompt_attention_mask"])],
                    self.pair_prompts),
                "policy_avg_logps_chosen": out[0].tolist(),
                "policy_avg_logps_rejected": out[1].tolist(),
            })
        return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)


def step_entries(trainer):
    logs = [h for h in trainer.state.log_history if "loss" in h and "train_runtime" not in h]
    assert len(logs) == STEPS and len(trainer.recorded) == STEPS, (logs, trainer.recorded)
    steps = []
    for k, (log, rec) in enumerate(zip(logs, trainer.recorded)):
        assert log["step"] == k + 1
        assert rec["pairs"] == list(range((k % 2) * BATCH, (k % 2) * BATCH + BATCH)), rec
        entry = {"step": k + 1}
        entry.update(rec)
        entry["log"] = {key: log[key] for key in sorted(log) if key not in ("step",)}
        steps.append(entry)
    return steps


def run_dpo(name, kwargs, tok, data, tmp):
    cfg_kwargs = dict(COMMON, **DPO_EXTRA, **kwargs, output_dir=str(tmp / name))
    args = DPOConfig(**cfg_kwargs)
    trainer = RecordingDPOTrainer(
        model=load_model(), ref_model=load_model(), args=args,
        train_dataset=data, processing_class=tok)
    trainer.recorded = []
    ds = trainer.train_dataset
    trainer.pair_prompts = [list(r["prompt_ids"]) for r in ds]

    # Reference log-probs per pair, computed by TRL's own code on the training batches
    # (same collator, same batch composition as in training).
    ref_c, ref_r = [], []
    for start in range(0, len(ds), BATCH):
        batch = trainer.data_collator([ds[i] for i in range(start, min(start + BATCH, len(ds)))])
        c, r = trainer.compute_ref_log_probs(trainer.ref_model, batch)
        ref_c += c.tolist()
        ref_r += r.tolist()

    eos, bos = tok.eos_token_id, tok.bos_token_id
    pairs = []
    for i, row in enumerate(ds):
        raw_c = tok(PAIRS[i]["prompt"] + PAIRS[i]["chosen"])["input_ids"]
        pairs.append({
            "prompt_input_ids": list(row["prompt_ids"]),
            "chosen_input_ids": list(row["chosen_ids"]),
            "rejected_input_ids": list(row["rejected_ids"]),
            "eos_appended": row["chosen_ids"][-1] == eos and row["rejected_ids"][-1] == eos
            and raw_c[-1] != eos,
            "bos_added": row["prompt_ids"][0] == bos,
            "ref_logps_chosen": ref_c[i],
            "ref_logps_rejected": ref_r[i],
        })

    trainer.train()
    steps = step_entries(trainer)
    # Step 1: policy == reference, so the per-pair policy log-probs equal the reference.
    for j, i in enumerate(steps[0]["pairs"]):
        assert math.isclose(steps[0]["policy_logps_chosen"][j], ref_c[i], abs_tol=1e-4)
    config = {k: v for k, v in cfg_kwargs.items() if k != "output_dir"}
    config["output_dir"] = "/tmp/... (temporary)"
    return {
        "trainer": "trl.DPOTrainer",
        "config_class": "trl.DPOConfig",
        "config": config,
        "ref_model": "separate copy of llama-eval (float32), passed as ref_model",
        "pairs": pairs,
        "steps": steps,
    }


def run_simpo(tok, data, tmp):
    cfg_kwargs = dict(COMMON, **SIMPO_RUN, output_dir=str(tmp / "simpo"))
    cfg_kwargs["remove_unused_columns"] = False  # what CPOTrainer forces anyway
    args = CPOConfig(**cfg_kwargs)
    trainer = RecordingCPOTrainer(model=load_model(), args=args, train_dataset=data,
                                  processing_class=tok)
    trainer.recorded = []
    ds = trainer.train_dataset
    trainer.pair_prompts = [list(r["prompt_input_ids"]) for r in ds]
    eos, bos = tok.eos_token_id, tok.bos_token_id
    pairs = []
    for row in ds:
        p = list(row["prompt_input_ids"])
        c = list(row["chosen_input_ids"])
        r = list(row["rejected_input_ids"])
        assert c[:len(p)] == p and r[:len(p)] == p
        assert row["chosen_labels"][:len(p)] == [-100] * len(p)
        assert row["chosen_labels"][len(p):] == c[len(p):]
        pairs.append({
            "prompt_input_ids": p,
            "chosen_input_ids": c[len(p):],
            "rejected_input_ids": r[len(p):],
            "eos_appended": c[-1] == eos and r[-1] == eos,
            "bos_added": p[0] == bos,
        })
    trainer.train()
    steps = step_entries(trainer)
    config = {k: v for k, v in cfg_kwargs.items() if k != "output_dir"}
    config["output_dir"] = "/tmp/... (temporary)"
    return {
        "trainer": "trl.experimental.cpo.CPOTrainer",
        "config_class": "trl.experimental.cpo.CPOConfig",
        "config": config,
        "ref_model": None,
        "note": ("SimPO is reference-free: no ref log-probs. chosen/rejected_input_ids are "
                 "the completion ids only (CPOTrainer stores prompt+completion in "
                 "chosen_input_ids; the prompt part is prompt_input_ids, BOS included). "
                 "policy_avg_logps_* are per-token averaged log-probs."),
        "pairs": pairs,
        "steps": steps,
    }


def logsigmoid(x):
    return -math.log1p(math.exp(-x)) if x >= 0 else x - math.log1p(math.exp(x))


def verify(runs):
    """Recompute what TRL logged from the recorded per-pair values with the formulas in
    FORMULAS (float64), and the reference log-probs with a plain transformers forward."""
    beta, eps, gamma = 0.1, 0.1, 0.5
    model = load_model().eval()

    def score(prompt, completion):
        ids = torch.tensor([prompt + completion])
        with torch.no_grad():
            logp = model(ids).logits[0].double().log_softmax(-1)
        return sum(logp[len(prompt) - 1 + k, t].item() for k, t in enumerate(completion))

    for name in DPO_RUNS:
        pairs = runs[name]["pairs"]
        for pr in pairs:
            for side in ("chosen", "rejected"):
                plain = score(pr["prompt_input_ids"], pr[f"{side}_input_ids"])
                assert abs(pr[f"ref_logps_{side}"] - plain) < 1e-4, (name, side, plain)
        for st in runs[name]["steps"]:
            losses, rc, rr = [], [], []
            for j, i in enumerate(st["pairs"]):
                c = st["policy_logps_chosen"][j] - pairs[i]["ref_logps_chosen"]
                r = st["policy_logps_rejected"][j] - pairs[i]["ref_logps_rejected"]
                d = c - r
                if name == "sigmoid":
                    loss = -logsigmoid(beta * d)
                elif name == "hinge":
                    loss = max(0.0, 1 - beta * d)
                elif name == "ipo":
                    avg = c / len(pairs[i]["chosen_input_ids"]) - r / len(pairs[i]["rejected_input_ids"])
                    loss = (avg - 1 / (2 * beta)) ** 2
                else:  # robust
                    loss = (-(1 - eps) * logsigmoid(beta * d) + eps * logsigmoid(-beta * d)) / (1 - 2 * eps)
                losses.append(loss)
                rc.append(beta * c)
                rr.append(beta * r)
            check(name, st, losses, rc, rr, st["policy_logps_chosen"], st["policy_logps_rejected"])
    for st in runs["simpo"]["steps"]:
        ac, ar = st["policy_avg_logps_chosen"], st["policy_avg_logps_rejected"]
        losses = [-logsigmoid(beta * (c - r) - gamma) for c, r in zip(ac, ar)]
        check("simpo", st, losses, [beta * c for c in ac], [beta * r for r in ar], ac, ar)


def check(name, st, losses, rc, rr, lc, lr):
    n = len(losses)
    log = st["log"]
    want = {
        "loss": sum(losses) / n,
        "rewards/chosen": sum(rc) / n,
        "rewards/rejected": sum(rr) / n,
        "rewards/margins": sum(c - r for c, r in zip(rc, rr)) / n,
        "rewards/accuracies": sum(c > r for c, r in zip(rc, rr)) / n,
        "logps/chosen": sum(lc) / n,
        "logps/rejected": sum(lr) / n,
    }
    for key, value in want.items():
        tol = 1e-4 * max(1.0, abs(value))
        assert abs(log[key] - value) < tol, (name, st["step"], key, log[key], value)


def main():
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    OUT.mkdir(parents=True, exist_ok=True)
    with open(OUT / "pairs.jsonl", "w") as f:
        for p in PAIRS:
            f.write(json.dumps(p, ensure_ascii=False) + "\n")
    data = Dataset.from_list(PAIRS)
    tok = tokenizer()

    tmp = Path(tempfile.mkdtemp(prefix="dpo_fixtures_"))
    try:
        runs = {name: run_dpo(name, kw, tok, data, tmp) for name, kw in DPO_RUNS.items()}
        runs["simpo"] = run_simpo(tok, data, tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    # The tokenization is the same for every DPO run; say so instead of assuming it.
    first = runs["sigmoid"]["pairs"]
    for name in DPO_RUNS:
        for a, b in zip(first, runs[name]["pairs"]):
            for key in ("prompt_input_ids", "chosen_input_ids", "rejected_input_ids",
                        "ref_logps_chosen", "ref_logps_rejected"):
                assert a[key] == b[key], (name, key)

    verify(runs)

    expected = {
        "versions": {
            "trl": trl.__version__, "transformers": transformers.__version__,
            "torch": torch.__version__, "datasets": datasets.__version__,
            "accelerate": accelerate.__version__,
        },
        "model": "fixtures/models/llama-eval (float32, CPU, 1 thread)",
        "tokenizer": ("PreTrainedTokenizerFast(tokenizer_file=fixtures/models/llama-eval/"
                      "tokenizer.json, eos_token='<eos>', pad_token='<pad>', "
                      "bos_token='<bos>', unk_token='<unk>')"),
        "special_ids": {"pad": tok.pad_token_id, "unk": tok.unk_token_id,
                        "bos": tok.bos_token_id, "eos": tok.eos_token_id},
        "pairs_file": "fixtures/dpo/pairs.jsonl",
        "batches": ("train_sampling_strategy='sequential' (SequentialSampler), batch 4, "
                    "no drop_last: step 1 = pairs 0-3, step 2 = pairs 4-7, step 3 = pairs 0-3 "
                    "(second epoch). Optimizer: torch AdamW (adamw_torch), lr 1e-3 constant, "
                    "betas (0.9, 0.999), eps 1e-8, weight_decay 0, no clipping "
                    "(max_grad_norm=0.0), all parameters trainable, fresh policy per run."),
        "formulas": FORMULAS,
        "tokenization": TOKENIZATION,
        "runs": runs,
    }
    with open(OUT / "expected.json", "w") as f:
        json.dump(expected, f, indent=1)
        f.write("\n")
    print("wrote", OUT / "pairs.jsonl", "and", OUT / "expected.json")


if __name__ == "__main__":
    main()
