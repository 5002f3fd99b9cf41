#!/usr/bin/env python3
"""make bench: train-mlp's full-batch step against the same step in PyTorch,
measured in the same run, on one thread each, with the ratio; then the peak
memory of a short training run of each.

usage: bench_train.py BINDIR TESTDIR DATA [DEPTHS]"""

import json
import os
import subprocess
import sys
import time

import numpy as np
import torch

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "ref"))
from refcommon import inputs, load_st  # noqa: E402

REPS = 30
WIDTH = 128


def torch_step_ms(data, p, depth, reps):
    """Median ms of zero_grad, forward, cross-entropy, backward, AdamW step."""
    torch.manual_seed(0)
    layers = []
    for i in range(depth + 1):
        layers.append(torch.nn.Linear(2 * p if i == 0 else WIDTH, p if i == depth else WIDTH))
        if i < depth:
            layers.append(torch.nn.ReLU())
    model = torch.nn.Sequential(*layers)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=1.0)
    X = inputs(data["train.x"], p, "onehot")
    Y = torch.tensor(np.array(data["train.y"]), dtype=torch.long)
    times = []
    for k in range(reps + 3):
        t = time.perf_counter()
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(X), Y).backward()
        opt.step()
        if k >= 3:
            times.append(time.perf_counter() - t)
    return 1e3 * float(np.median(times))


TORCH_RUN = """
import sys, torch, numpy as np
sys.path.insert(0, {ref!r})
from refcommon import inputs, load_st
torch.set_num_threads(1); torch.set_flush_denormal(True)
_, d = load_st({data!r}); p = {p}; depth = {depth}
layers = []
for i in range(depth + 1):
    layers.append(torch.nn.Linear(2 * p if i == 0 else 128, p if i == depth else 128))
    if i < depth: layers.append(torch.nn.ReLU())
m = torch.nn.Sequential(*layers)
opt = torch.optim.AdamW(m.parameters(), lr=1e-3, weight_decay=1.0)
X = inputs(d["train.x"], p, "onehot"); Y = torch.tensor(np.array(d["train.y"]), dtype=torch.long)
for s in range(20):
    opt.zero_grad(); torch.nn.functional.cross_entropy(m(X), Y).backward(); opt.step()
print(PEAK())
"""

# Both report their own VmHWM: getrusage's ru_maxrss would count the memory
# of this Python process (torch included) that fork shares with the child.
PEAK = """
def PEAK():
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return float(line.split()[1]) / 1024
"""


def torch_peak_mib(code):
    out = subprocess.run([sys.executable, "-c", PEAK + code], check=True, capture_output=True, text=True).stdout
    return float(out.split()[-1])


def ours_peak_mib(cmd):
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return json.loads(out.splitlines()[-1])["peak_rss_mib"]


def main():
    bindir, testdir, data_path = sys.argv[1:4]
    depths = [int(d) for d in (sys.argv[4] if len(sys.argv) > 4 else "1,2,3,5,7").split(",")]
    torch.set_num_threads(1)
    torch.set_flush_denormal(True)
    meta, data = load_st(data_path)
    p = int(meta["p"])
    ref = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "ref"))
    print(f"# full-batch training step, p={p}, n_train={len(data['train.y'])}, width {WIDTH}, one thread each; "
          f"torch {torch.__version__}; medians of {REPS} steps")
    print(f"{'depth':>5} {'ours ms':>9} {'torch ms':>9} {'ratio':>6} {'ours GFLOP/s':>13} {'sgemm GFLOP/s':>14} "
          f"{'of sgemm':>8} {'ours MiB':>9} {'torch MiB':>10} {'mem ratio':>9}")
    rows = []
    for depth in depths:
        out = subprocess.run([os.path.join(testdir, "bench_step"), data_path, str(depth), str(WIDTH), str(REPS)],
                             check=True, capture_output=True, text=True).stdout
        ours = json.loads(out)
        theirs = torch_step_ms(data, p, depth, REPS)
        mem_ours = ours_peak_mib([os.path.join(bindir, "train-mlp"), "--data", data_path, "--depth", str(depth),
                             "--steps", "20", "--log-every", "20", "--quiet"])
        mem_torch = torch_peak_mib(TORCH_RUN.format(ref=ref, data=data_path, p=p, depth=depth))
        row = dict(depth=depth, ours_ms=ours["step_ms"], torch_ms=theirs, ratio=ours["step_ms"] / theirs,
                   gflops=ours["step_gflops"], sgemm_gflops=ours["sgemm_gflops"],
                   of_sgemm=ours["step_gflops"] / ours["sgemm_gflops"],
                   ours_mib=mem_ours, torch_mib=mem_torch, mem_ratio=mem_ours / mem_torch,
                   blas_core=ours["blas_core"])
        rows.append(row)
        print(f"{depth:>5} {row['ours_ms']:>9.2f} {theirs:>9.2f} {row['ratio']:>6.2f} {row['gflops']:>13.1f} "
              f"{row['sgemm_gflops']:>14.1f} {100 * row['of_sgemm']:>7.0f}% {mem_ours:>9.1f} {mem_torch:>10.1f} "
              f"{row['mem_ratio']:>9.3f}", flush=True)
    print(f"# OpenBLAS kernels: {rows[0]['blas_core']}; targets: ratio <= 0.5 at depth 1-3, <= 0.75 at 5-7; "
          f"memory ratio <= 0.2; >= 75% of sgemm's rate")
    for r in rows:
        print(json.dumps({"record": "bench", "bench": "train_step", **r}))


if __name__ == "__main__":
    main()
