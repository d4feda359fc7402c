"""PyTorch eager reference for benches/ops.rs: the same ops at the same shapes, timed the
same way (forward alone with autograd recording, then forward + backward of `.sum()`), medians of rounds.
Argument: one JSON spec (threads, reps, rounds, batch, t, width, heads). Prints JSON."""

import json
import sys
import time

import torch
import torch.nn.functional as F


def main():
    spec = json.loads(sys.argv[1])
    torch.set_num_threads(spec["threads"])
    torch.manual_seed(0)
    b, t, c, h = spec["batch"], spec["t"], spec["width"], spec["heads"]
    x = torch.randn(b, t, c, requires_grad=True)
    x4 = torch.randn(b, t, 4 * c, requires_grad=True)
    qkv = [torch.randn(b, h, t, c // h, requires_grad=True) for _ in range(3)]
    lin = torch.nn.Linear(c, c)
    fc = torch.nn.Linear(c, 4 * c)
    proj = torch.nn.Linear(4 * c, c)
    ln = torch.nn.LayerNorm(c)
    ops = {
        "linear d→d": lambda: lin(x),
        "linear d→4d": lambda: fc(x),
        "linear 4d→d": lambda: proj(x4),
        "gelu-tanh 4d": lambda: F.gelu(x4, approximate="tanh"),
        "layernorm d": lambda: ln(x),
        "causal attention": lambda: F.scaled_dot_product_attention(*qkv, is_causal=True),
    }
    out = {}
    for name, f in ops.items():
        rows = []
        for backward in (False, True):
            times = []
            for _ in range(spec["rounds"]):
                f().sum().backward() if backward else f()
                start = time.perf_counter()
                for _ in range(spec["reps"]):
                    if backward:
                        f().sum().backward()
                    else:
                        f()  # with autograd recording, as in training
                times.append((time.perf_counter() - start) * 1e3 / spec["reps"])
            times.sort()
            rows.append(times[len(times) // 2])
        out[name] = rows
    print(json.dumps({"torch": torch.__version__, "ops": out}))


if __name__ == "__main__":
    main()
