#!/usr/bin/env python3
"""train-mlp's per-example gradient statistics against PyTorch.

For each case train-mlp trains a few steps with a checkpoint at every log
point; at each, PyTorch (float64, autograd, one backward per training
example) recomputes from the checkpoint the statistics the
log reports: the mean and largest |g_i|, the mean of |g_i|^2 (the trace
of G = (1/n) sum g_i g_i^T) and the noise scale (mean |g_i|^2 -
|gbar|^2) / |gbar|^2, over the whole training set (also when training
took minibatches).

usage: check_norms.py BINDIR WORKDIR    (prints TAP)"""

import os
import sys

import numpy as np
import torch

from refcommon import Tap, inputs, load_st, loss_fn, model_from, read_jsonl, run

RTOL = 1e-4          # float32 passes against float64
FIELDS = ("example_grad_norm_mean", "example_grad_norm_max", "example_grad_sq_mean", "noise_scale")

CASES = [
    ("one-hot ce depth 2, full batch", ["--depth", "2"]),
    ("int mse depth 1, Adam", ["--depth", "1", "--encoding", "int", "--loss", "mse", "--optim", "adam", "--wd", "0"]),
    ("one-hot ce depth 3, minibatch 40", ["--depth", "3", "--batch", "40"]),
    ("one-hot ce depth 0 (linear)", ["--depth", "0"]),
]


def reference(ckpt, X, Y, p, depth, encoding, loss):
    model = model_from(load_st(ckpt)[1], depth).to(torch.float64)
    xin = inputs(X, p, encoding).to(torch.float64)
    y = torch.tensor(np.array(Y), dtype=torch.long)
    rows = []
    for i in range(len(y)):
        model.zero_grad()
        loss_fn(model(xin[i:i + 1]), y[i:i + 1], p, loss).backward()
        rows.append(torch.cat([q.grad.reshape(-1) for q in model.parameters()]))
    flatg = torch.stack(rows)   # (n, P)
    sq = (flatg ** 2).sum(1)
    gbar2 = float((flatg.mean(0) ** 2).sum())
    return {
        "example_grad_norm_mean": float(sq.sqrt().mean()),
        "example_grad_norm_max": float(sq.sqrt().max()),
        "example_grad_sq_mean": float(sq.mean()),
        "noise_scale": (float(sq.mean()) - gbar2) / gbar2,
    }, gbar2 ** 0.5


def main():
    bindir, work = sys.argv[1], sys.argv[2]
    tap = Tap()
    data = os.path.join(work, "norms.safetensors")
    run([f"{bindir}/gen-modadd", "-p", "11", "--frac", "0.6", "--seed", "3", "-o", data])
    _, st = load_st(data)
    X, Y = st["train.x"], st["train.y"]
    for name, args in CASES:
        ck = os.path.join(work, "norms-ckpt-" + str(CASES.index((name, args))))
        log = read_jsonl(run([f"{bindir}/train-mlp", "--data", data, "--width", "12", "--steps", "30",
                              "--log-every", "15", "--lr", "1e-2", "--ckpt-dir", ck, "--quiet"] + args))
        depth = int(args[args.index("--depth") + 1])
        enc = args[args.index("--encoding") + 1] if "--encoding" in args else "onehot"
        loss = args[args.index("--loss") + 1] if "--loss" in args else "ce"
        for rec in (r for r in log if r["record"] == "metrics"):
            ref, gnorm = reference(os.path.join(ck, "step-%08d.safetensors" % rec["step"]), X, Y, 11,
                                   depth, enc, loss)
            worst = max(abs(rec[f] - ref[f]) / abs(ref[f]) for f in FIELDS)
            tap.ok(worst < RTOL and abs(rec["grad_norm"] - gnorm) < RTOL * gnorm,
                   f"{name}, step {rec['step']}: per-example statistics against PyTorch float64 (one backward per example), "
                   f"worst rel. err {worst:.1e} (noise scale {rec['noise_scale']:.4g} vs {ref['noise_scale']:.4g})")
    return tap.done()


if __name__ == "__main__":
    sys.exit(main())
