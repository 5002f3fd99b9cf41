#!/usr/bin/env python3
"""make bench, transformer part: train-transformer's full-batch step and
hess-eig's Hessian-vector product on a transformer, against PyTorch running
the papers' module (tests/ref/check_transformer.py's, float32, one thread
each), in the same run, at Nanda's configuration (p = 113, 30% of the
pairs: 3,830 training rows, d_model 128, 4 heads, d_mlp 512, '=') for each
number of layers; and the peak memory of a short training run of each.

Our step is timed without start-up or evaluation: two runs of S1 and S2
steps, each logging only at its start and end, and (t2 - t1) / (S2 - S1)
from their own wall_seconds.  Our product likewise: hess-eig with K1 and
K2 Lanczos steps (a tolerance never met), (t2 - t1) / (K2 - K1).  The two
sides take turns ROUNDS times and each side's median is reported.

usage: bench_transformer.py BINDIR WORKDIR [LAYERS [P]]"""

import json
import os
import subprocess
import sys
import time

import numpy as np
import torch

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "ref"))
from check_transformer import Transformer, cross_entropy_high_precision  # noqa: E402
from refcommon import load_st, read_jsonl, run  # noqa: E402

ROUNDS = 3
REPS = 10
S1, S2 = 5, 25
K1, K2 = 10, 40


def config(p, layers):
    return {"p": p, "layers": layers, "d_model": 128, "heads": 4, "d_head": 32, "d_mlp": 512,
            "attention": "causal", "alpha": 1.0, "act": "relu", "eq_token": True}


def torch_setup(c, data, params=None):
    torch.manual_seed(0)
    model = Transformer(c)
    if params is not None:
        model.load_state_dict({n: torch.tensor(np.array(t)) for n, t in params.items()}, strict=False)
    pairs = torch.tensor(np.array(data["train.x"]), dtype=torch.long)
    tokens = torch.cat([pairs, torch.full((len(pairs), 1), c["p"])], 1)
    return model, tokens, torch.tensor(np.array(data["train.y"]), dtype=torch.long)


def torch_step_ms(c, data):
    """Median ms of zero_grad, forward, high-precision cross-entropy, backward, AdamW step."""
    model, tokens, labels = torch_setup(c, data)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=1.0, betas=(0.9, 0.98))
    times = []
    for k in range(REPS + 2):
        t = time.perf_counter()
        opt.zero_grad()
        cross_entropy_high_precision(model(tokens)[:, -1], labels).backward()
        opt.step()
        if k >= 2:
            times.append(time.perf_counter() - t)
    return 1e3 * float(np.median(times))


def torch_hvp_ms(c, data, params):
    """Median ms of one double-backward Hessian-vector product over the training set."""
    model, tokens, labels = torch_setup(c, data, params)
    ps = list(model.parameters())
    v = [torch.randn_like(q) for q in ps]
    times = []
    for k in range(REPS + 2):
        t = time.perf_counter()
        g = torch.autograd.grad(cross_entropy_high_precision(model(tokens)[:, -1], labels), ps, create_graph=True)
        torch.autograd.grad(g, ps, grad_outputs=v)
        if k >= 2:
            times.append(time.perf_counter() - t)
    return 1e3 * float(np.median(times))


def ours_step_ms(bindir, data_path, layers):
    def wall(steps):
        out = run([os.path.join(bindir, "train-transformer"), "--data", data_path, "--layers", str(layers),
                   "--steps", str(steps), "--log-every", str(steps), "--quiet"])
        return json.loads(out.splitlines()[-1])["wall_seconds"]
    return 1e3 * (wall(S2) - wall(S1)) / (S2 - S1)


def ours_hvp_ms(bindir, data_path, ckpt):
    def secs(k):
        rec = read_jsonl(run([os.path.join(bindir, "hess-eig"), "--data", data_path, "--top", "1",
                              "--tol", "1e-300", "--max-iter", str(k), ckpt]))[1]
        return rec["seconds"], rec["hvps"]
    (t1, n1), (t2, n2) = secs(K1), secs(K2)
    return 1e3 * (t2 - t1) / (n2 - n1)


PEAK = """
def PEAK():
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return float(line.split()[1]) / 1024
"""

TORCH_RUN = """
import sys, torch, numpy as np
sys.path.insert(0, {ref!r})
from check_transformer import Transformer, cross_entropy_high_precision
from refcommon import load_st
torch.set_num_threads(1); torch.set_flush_denormal(True)
_, d = load_st({data!r})
m = Transformer({c!r})
opt = torch.optim.AdamW(m.parameters(), lr=1e-3, weight_decay=1.0, betas=(0.9, 0.98))
x = torch.tensor(np.array(d["train.x"]), dtype=torch.long)
x = torch.cat([x, torch.full((len(x), 1), {p})], 1); y = torch.tensor(np.array(d["train.y"]), dtype=torch.long)
for s in range(20):
    opt.zero_grad(); cross_entropy_high_precision(m(x)[:, -1], y).backward(); opt.step()
print(PEAK())
"""


def peaks(bindir, data_path, c, layers):
    ref = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "ref"))
    out = run([os.path.join(bindir, "train-transformer"), "--data", data_path, "--layers", str(layers),
               "--steps", "20", "--log-every", "20", "--quiet"])
    ours = json.loads(out.splitlines()[-1])["peak_rss_mib"]
    code = PEAK + TORCH_RUN.format(ref=ref, data=data_path, c=c, p=c["p"])
    theirs = float(subprocess.run([sys.executable, "-c", code], check=True, capture_output=True,
                                  text=True).stdout.split()[-1])
    return ours, theirs


def main():
    bindir, work = sys.argv[1], sys.argv[2]
    layer_list = [int(x) for x in (sys.argv[3] if len(sys.argv) > 3 else "1,2").split(",")]
    p = int(sys.argv[4]) if len(sys.argv) > 4 else 113
    torch.set_num_threads(1)
    torch.set_flush_denormal(True)
    data_path = os.path.join(work, f"tbench-p{p}.safetensors")
    run([os.path.join(bindir, "gen-modadd"), "-p", str(p), "--frac", "0.3", "-o", data_path])
    _, data = load_st(data_path)
    print(f"# transformer, p={p}, n_train={len(data['train.y'])}, d_model 128, 4 heads, d_mlp 512, '=', "
          f"one thread each; torch {torch.__version__}; medians of {ROUNDS} rounds")
    print(f"{'layers':>6} {'step ms':>8} {'torch':>8} {'ratio':>6} {'hvp ms':>8} {'torch':>8} {'ratio':>6} "
          f"{'MiB':>7} {'torch':>7} {'ratio':>6}")
    for layers in layer_list:
        c = config(p, layers)
        ckpt = os.path.join(work, f"tbench-L{layers}.safetensors")
        run([os.path.join(bindir, "train-transformer"), "--data", data_path, "--layers", str(layers),
             "--steps", "50", "--log-every", "50", "--out", ckpt, "--quiet"])
        params = load_st(ckpt)[1]
        s_ours, s_torch, h_ours, h_torch = [], [], [], []
        for _ in range(ROUNDS):
            s_ours.append(ours_step_ms(bindir, data_path, layers))
            s_torch.append(torch_step_ms(c, data))
            h_ours.append(ours_hvp_ms(bindir, data_path, ckpt))
            h_torch.append(torch_hvp_ms(c, data, params))
        m_ours, m_torch = peaks(bindir, data_path, c, layers)
        row = dict(layers=layers, step_ms=float(np.median(s_ours)), torch_step_ms=float(np.median(s_torch)),
                   hvp_ms=float(np.median(h_ours)), torch_hvp_ms=float(np.median(h_torch)),
                   mib=m_ours, torch_mib=m_torch)
        row.update(step_ratio=row["step_ms"] / row["torch_step_ms"], hvp_ratio=row["hvp_ms"] / row["torch_hvp_ms"],
                   mem_ratio=m_ours / m_torch)
        print(f"{layers:>6} {row['step_ms']:>8.2f} {row['torch_step_ms']:>8.2f} {row['step_ratio']:>6.2f} "
              f"{row['hvp_ms']:>8.2f} {row['torch_hvp_ms']:>8.2f} {row['hvp_ratio']:>6.2f} "
              f"{m_ours:>7.1f} {m_torch:>7.1f} {row['mem_ratio']:>6.2f}", flush=True)
        print(json.dumps({"record": "bench", "bench": "transformer", **row}))
    print("# targets: step ratio <= 0.33, HVP ratio <= 0.5, memory ratio <= 0.2")


if __name__ == "__main__":
    main()
