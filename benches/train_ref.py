"""PyTorch eager reference for benches/train.rs: the same GPT-2-layout model written
nanoGPT-style (separate q/k/v projections as in manabi, learned positions, LayerNorm,
GELU-tanh, biases, tied embeddings, no dropout), trained the same way: cross-entropy,
backward, global-norm clipping to 1.0, AdamW betas (0.9, 0.99), eps 1e-8, weight decay
0.1 on Linear weights only (as manabi's `decayed_params`). Argument: one JSON spec
(threads, warmup, split, peak_n, attn, device, configs). Prints JSON."""

import json
import math
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F


class Attention(nn.Module):
    def __init__(self, d, heads, block, attn):
        super().__init__()
        self.heads, self.attn = heads, attn
        self.q, self.k, self.v, self.o = (nn.Linear(d, d) for _ in range(4))
        self.register_buffer("mask", torch.full((block, block), float("-inf")).triu(1))

    def forward(self, x):
        b, t, d = x.shape
        # [b, t, d] -> [b, heads, t, hd]
        q, k, v = (p(x).view(b, t, self.heads, -1).transpose(1, 2) for p in (self.q, self.k, self.v))
        if self.attn == "sdpa":
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        else:  # softmax(QKᵀ/√d + mask)V written out, as manabi does
            s = q @ k.transpose(-2, -1) / math.sqrt(q.size(-1)) + self.mask[:t, :t]
            y = F.softmax(s, dim=-1) @ v
        return self.o(y.transpose(1, 2).reshape(b, t, d))


class Block(nn.Module):
    def __init__(self, d, heads, block, attn):
        super().__init__()
        self.ln_1, self.ln_2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.attn = Attention(d, heads, block, attn)
        self.fc, self.proj = nn.Linear(d, 4 * d), nn.Linear(4 * d, d)

    def forward(self, x):
        x = x + self.attn(self.ln_1(x))
        return x + self.proj(F.gelu(self.fc(self.ln_2(x)), approximate="tanh"))


class GPT(nn.Module):
    def __init__(self, c, attn):
        super().__init__()
        d, block = c["n_embd"], c["n_positions"]
        self.wte, self.wpe = nn.Embedding(c["vocab_size"], d), nn.Embedding(block, d)
        self.blocks = nn.ModuleList(Block(d, c["n_head"], block, attn) for _ in range(c["n_layer"]))
        self.ln_f = nn.LayerNorm(d)
        self.lm_head = nn.Linear(d, c["vocab_size"], bias=False)
        self.lm_head.weight = self.wte.weight  # tied
        for name, p in self.named_parameters():
            if name.endswith("bias"):
                nn.init.zeros_(p)
            elif p.dim() == 2:
                std = 0.02 / math.sqrt(2 * c["n_layer"]) if name.endswith(("o.weight", "proj.weight")) else 0.02
                nn.init.normal_(p, 0.0, std)

    def forward(self, idx, targets):
        b, t = idx.shape
        x = self.wte(idx) + self.wpe(torch.arange(t, device=idx.device))
        for blk in self.blocks:
            x = blk(x)
        logits = self.lm_head(self.ln_f(x))
        return F.cross_entropy(logits.view(b * t, -1), targets.reshape(-1), ignore_index=-1)


def peak_flops(n, device, sync):
    a, b = torch.rand(n, n, device=device), torch.rand(n, n, device=device)
    a @ b
    sync()
    best = float("inf")
    for _ in range(3):
        t = time.perf_counter()
        for _ in range(10):
            a @ b
        sync()
        best = min(best, time.perf_counter() - t)
    return 2 * n**3 * 10 / best


def run(cfg, spec, device, sync):
    c, batch, steps, warmup = cfg["config"], cfg["batch"], cfg["steps"], spec["warmup"]
    torch.manual_seed(0)
    model = GPT(c, spec["attn"]).to(device).train()
    decay = [p for n, p in model.named_parameters() if p.dim() == 2 and not n.startswith(("wte", "wpe"))]
    other = [p for n, p in model.named_parameters() if not (p.dim() == 2 and not n.startswith(("wte", "wpe")))]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1}, {"params": other, "weight_decay": 0.0}],
                            lr=1e-4, betas=(0.9, 0.99), eps=1e-8)
    t, v = c["n_positions"], c["vocab_size"]
    g = torch.Generator().manual_seed(0)
    data = [torch.randint(v, (batch, t + 1), generator=g).to(device) for _ in range(warmup + steps)]
    data = [(d[:, :-1].contiguous(), d[:, 1:].contiguous()) for d in data]

    def step(d, times=None):
        t0 = time.perf_counter()
        loss = model(*d)
        if times is not None:
            loss.item()
        t1 = time.perf_counter()
        loss.backward()
        if times is not None:
            sync()
        t2 = time.perf_counter()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        if times is not None:
            sync()
            t3 = time.perf_counter()
            for i, (a, b) in enumerate(((t0, t1), (t1, t2), (t2, t3))):
                times[i] += (b - a) * 1e3 / steps
        return loss

    first = step(data[0]).item()
    for d in data[1:warmup]:
        step(d)
    sync()
    t0 = time.perf_counter()
    for d in data[warmup:]:
        step(d)
    sync()
    secs = time.perf_counter() - t0
    out = {"name": cfg["name"], "params": sum(p.numel() for p in model.parameters()),
           "ms_per_step": secs * 1e3 / steps, "tokens_per_s": batch * t * steps / secs, "first_loss": first}
    if spec["split"]:
        times = [0.0, 0.0, 0.0]
        for d in data[warmup:]:
            step(d, times)
        out["split"] = times
    return out


def main():
    spec = json.loads(sys.argv[1])
    torch.set_num_threads(spec["threads"])
    device = spec["device"]
    if device == "cuda" and not torch.cuda.is_available():
        sys.exit("the PyTorch reference needs CUDA for a GPU run, and torch.cuda is not available")
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    peak = peak_flops(spec["peak_n"], device, sync)
    rows = [run(c, spec, device, sync) for c in spec["configs"]]
    print(json.dumps({"torch": torch.__version__, "threads": torch.get_num_threads(),
                      "peak_flops": peak, "configs": rows}))


if __name__ == "__main__":
    main()
