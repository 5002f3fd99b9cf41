#!/usr/bin/env python3
"""hess-eig against PyTorch: on the same checkpoint and data, Hessian-vector
products by double backward in float64, and the top eigenvalues by Lanczos
(full reorthogonalisation) over them, for both encodings and both losses.
Our top eigenvalue must match to 1e-4 relative (we compute in float32).

usage: check_hess.py BINDIR WORKDIR    (prints TAP)"""

import os
import sys

import numpy as np
import torch

from refcommon import Tap, inputs, load_st, loss_fn, model_from, read_jsonl, run

EIG_RTOL = 1e-4

CASES = [
    ("one-hot, cross-entropy, depth 2", ["--depth", "2"]),
    ("one-hot, mse, depth 3", ["--depth", "3", "--loss", "mse"]),
    ("int encoding, cross-entropy, depth 1", ["--depth", "1", "--encoding", "int"]),
    # deep enough that units die: hess-eig then multiplies without them (the live view)
    ("one-hot, cross-entropy, depth 7", ["--depth", "7"]),
]


def torch_hvp_op(model, X, Y, p, loss):
    params = list(model.parameters())

    def hvp(v):
        loss_val = loss_fn(model(X), Y, p, loss)
        grads = torch.autograd.grad(loss_val, params, create_graph=True)
        flat_g = torch.cat([g.reshape(-1) for g in grads])
        hv = torch.autograd.grad(flat_g @ v, params)
        return torch.cat([h.reshape(-1) for h in hv])
    return hvp


def torch_lanczos_top(hvp, n, k, steps, seed):
    g = torch.Generator().manual_seed(seed)
    Q = torch.zeros(steps + 1, n, dtype=torch.float64)
    q = torch.randn(n, generator=g, dtype=torch.float64)
    Q[0] = q / q.norm()
    alpha, beta = [], []
    for j in range(steps):
        w = hvp(Q[j])
        alpha.append(float(Q[j] @ w))
        for _ in range(2):
            w = w - Q[:j + 1].T @ (Q[:j + 1] @ w)
        b = float(w.norm())
        beta.append(b)
        Q[j + 1] = w / b
    T = np.diag(alpha) + np.diag(beta[:-1], 1) + np.diag(beta[:-1], -1)
    return np.sort(np.linalg.eigvalsh(T))[::-1][:k]


def main():
    bindir, work = sys.argv[1], sys.argv[2]
    torch.set_num_threads(1)
    tap = Tap()
    data_path = os.path.join(work, "hdata.safetensors")
    run([os.path.join(bindir, "gen-modadd"), "-p", "13", "--frac", "0.6", "-o", data_path])
    _, data = load_st(data_path)
    p = 13
    for k, (name, args) in enumerate(CASES):
        ck = os.path.join(work, f"hck{k}")
        run([os.path.join(bindir, "train-mlp"), "--data", data_path, "--width", "24", "--steps", "150",
             "--log-every", "150", "--ckpt-dir", ck, "--seed", str(k), "--quiet"] + args)
        path = os.path.join(ck, "step-00000150.safetensors")
        log = read_jsonl(run([os.path.join(bindir, "hess-eig"), "--data", data_path, "--top", "5",
                              "--tol", "1e-6", "--max-iter", "300", path]))
        rec = log[1]
        meta, params = load_st(path)
        depth, enc, loss = int(meta["depth"]), meta["encoding"], meta["loss"]
        model = model_from(params, depth).double()
        X = inputs(data["train.x"], p, enc).double()
        Y = torch.tensor(np.array(data["train.y"]), dtype=torch.long)
        hvp = torch_hvp_op(model, X, Y, p, loss)
        n = sum(q.numel() for q in model.parameters())
        theirs = torch_lanczos_top(hvp, n, 5, min(n, 150), k)
        ours = np.array(rec["eigenvalues"])
        rel = np.max(np.abs(ours - theirs) / np.abs(theirs[0]))
        tap.ok(rec["converged"] and abs(ours[0] - theirs[0]) / abs(theirs[0]) < EIG_RTOL and rel < EIG_RTOL,
               f"{name}: top eigenvalue {ours[0]:.8f} vs torch float64 {theirs[0]:.8f}, top-5 max relative "
               f"diff {rel:.2e} (< {EIG_RTOL:g}), {rec['hvps']} products")
        with torch.no_grad():
            loss_val = float(loss_fn(model(X), Y, p, loss))
            if depth >= 7:
                h, dead = X, 0
                for layer in list(model)[:-1]:
                    h = layer(h)
                    if isinstance(layer, torch.nn.ReLU):
                        dead += int(((h > 0).sum(0) == 0).sum())
                tap.ok(dead > 0, f"{name}: {dead} hidden units dead on every training row, so the "
                       "products above ran on the live view")
        tap.ok(abs(rec["loss"] - loss_val) < 1e-6 * max(1.0, loss_val),
               f"{name}: loss at the checkpoint {rec['loss']:.9f} vs {loss_val:.9f}")
    return tap.done()


if __name__ == "__main__":
    sys.exit(main())
