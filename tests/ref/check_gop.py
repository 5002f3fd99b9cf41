#!/usr/bin/env python3
"""gop-spectrum against PyTorch: on the same checkpoint and data, the
per-example gradients by autograd in float64 (one backward per example),
J J^T / n and its eigenvalues by eigvalsh.  The largest 10 eigenvalues
must agree to 1e-5 relative and the trace to 1e-6; also the centred
spectrum, |mean gradient|^2 and each layer's trace.

usage: check_gop.py BINDIR WORKDIR    (prints TAP)"""

import os
import sys

import numpy as np
import torch

from refcommon import Tap, inputs, load_st, loss_fn, model_from, read_jsonl, run

EIG_RTOL = 1e-5
TRACE_RTOL = 1e-6

CASES = [
    ("one-hot, cross-entropy, depth 2", ["--depth", "2"]),
    ("one-hot, mse, depth 3", ["--depth", "3", "--loss", "mse"]),
    ("int encoding, cross-entropy, depth 1", ["--depth", "1", "--encoding", "int"]),
]


def main():
    bindir, work = sys.argv[1], sys.argv[2]
    torch.set_num_threads(1)
    tap = Tap()
    data_path = os.path.join(work, "gdata.safetensors")
    run([os.path.join(bindir, "gen-modadd"), "-p", "13", "--frac", "0.6", "-o", data_path])
    _, data = load_st(data_path)
    p = 13
    for k, (name, args) in enumerate(CASES):
        ck = os.path.join(work, f"gck{k}")
        run([os.path.join(bindir, "train-mlp"), "--data", data_path, "--width", "24", "--steps", "150",
             "--log-every", "150", "--ckpt-dir", ck, "--seed", str(k), "--quiet"] + args)
        path = os.path.join(ck, "step-00000150.safetensors")
        rec = read_jsonl(run([os.path.join(bindir, "gop-spectrum"), "--data", data_path, "--per-layer", path]))[1]
        meta, params = load_st(path)
        depth, enc, loss = int(meta["depth"]), meta["encoding"], meta["loss"]
        model = model_from(params, depth).double()
        X = inputs(data["train.x"], p, enc).double()
        Y = torch.tensor(np.array(data["train.y"]), dtype=torch.long)
        n = len(Y)
        rows = []
        for b in range(n):
            model.zero_grad()
            loss_fn(model(X[b:b + 1]), Y[b:b + 1], p, loss).backward()
            rows.append(torch.cat([q.grad.reshape(-1) for q in model.parameters()]))
        J = torch.stack(rows)
        K = J @ J.T / n
        ev = torch.linalg.eigvalsh(K).flip(0).numpy()
        ours = np.array(rec["gop"]["top"])
        rel = np.max(np.abs(ours - ev[:10]) / ev[:10])
        tap.ok(rel < EIG_RTOL, f"{name}: largest 10 eigenvalues, max relative diff {rel:.2e} (< {EIG_RTOL:g})")
        tr = float(torch.trace(K))
        tap.ok(abs(rec["gop"]["trace"] - tr) / tr < TRACE_RTOL,
               f"{name}: trace {rec['gop']['trace']:.10f} vs {tr:.10f} (< {TRACE_RTOL:g} relative)")
        gbar = J.mean(0)
        g2 = float(gbar @ gbar)
        C = (J - gbar) @ (J - gbar).T / n
        evc = torch.linalg.eigvalsh(C).flip(0).numpy()
        crel = np.max(np.abs(np.array(rec["centred"]["top"]) - evc[:10]) / evc[:10])
        tap.ok(abs(rec["mean_grad_sq"] - g2) / g2 < 1e-5 and crel < EIG_RTOL,
               f"{name}: |mean gradient|^2 {rec['mean_grad_sq']:.6e} vs {g2:.6e}; centred top-10 max relative "
               f"diff {crel:.2e}")
        sizes = [q.numel() for q in model.parameters()]
        off, worst = 0, 0.0
        for i in range(depth + 1):
            cols = sizes[2 * i] + sizes[2 * i + 1]
            Ji = J[:, off:off + cols]
            off += cols
            tri = float((Ji * Ji).sum() / n)
            worst = max(worst, abs(rec["layers"][i]["trace"] - tri) / tri)
        tap.ok(worst < TRACE_RTOL * 10, f"{name}: each layer's trace, max relative diff {worst:.2e}")
    return tap.done()


if __name__ == "__main__":
    sys.exit(main())
