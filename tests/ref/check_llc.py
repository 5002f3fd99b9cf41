#!/usr/bin/env python3
"""llc-estimate against independent computations.

1. A model whose loss is exactly quadratic in its parameters: depth 0,
   integer inputs, MSE (a linear map, 3p parameters, non-degenerate).
   With full batches the SGLD chain is a linear Gaussian recursion whose
   stationary law is known: for A = nbeta H + gamma I, mean
   mu = -A^-1 nbeta g and covariance 1/(a (1 - eps a / 4)) along A's
   eigenvectors, so E[nbeta (L(w) - L(w*))] has a closed form.  H and g
   come from PyTorch autograd in float64; the estimate must fall within 4
   standard errors of the closed form, which itself is close to d/2.
2. A real MLP (depth 2, one-hot, cross-entropy): the same SGLD loop
   written in PyTorch (devinterp's update, torch's own noise and minibatch
   order) must give the same LLC within the two runs' error bars; and
   likewise devinterp's rmsprop_sgld against llc-estimate --precond rmsprop.

usage: check_llc.py BINDIR WORKDIR    (prints TAP)"""

import os
import sys

import numpy as np
import torch

from refcommon import Tap, flat, inputs, load_st, loss_fn, model_from, read_jsonl, run


def llc_run(bindir, data_path, ckpt, args):
    out = run([os.path.join(bindir, "llc-estimate"), "--data", data_path] + args + [ckpt])
    return read_jsonl(out)[1]


def quadratic_case(tap, bindir, work):
    p = 7
    data_path = os.path.join(work, "ldata.safetensors")
    run([os.path.join(bindir, "gen-modadd"), "-p", str(p), "--frac", "0.9", "-o", data_path])
    ck = os.path.join(work, "lck0")
    run([os.path.join(bindir, "train-mlp"), "--data", data_path, "--depth", "0", "--encoding", "int",
         "--loss", "mse", "--wd", "0", "--lr", "1e-2", "--steps", "3000", "--log-every", "3000",
         "--ckpt-dir", ck, "--quiet"])
    path = os.path.join(ck, "step-00003000.safetensors")
    _, data = load_st(data_path)
    _, params = load_st(path)
    X = inputs(data["train.x"], p, "int").double()
    Y = torch.tensor(np.array(data["train.y"]), dtype=torch.long)
    n = len(Y)
    w0 = flat(params, 0)
    P = len(w0)

    def loss_of(w):
        W = w[:2 * p].reshape(p, 2)
        b = w[2 * p:]
        return loss_fn(X @ W.T + b, Y, p, "mse")

    H = torch.autograd.functional.hessian(loss_of, w0).numpy()
    g = torch.autograd.functional.jacobian(loss_of, w0).numpy()
    eps, gamma, nbeta = 1e-5, 1.0, 1000.0
    hv, Q = np.linalg.eigh(H)
    a = nbeta * hv + gamma
    gq = Q.T @ g
    mu = -nbeta * gq / a                      # the stationary mean, in H's eigenbasis
    sigma = 1.0 / (a * (1 - eps * a / 4))     # the stationary variances
    exact = nbeta * (gq @ mu + 0.5 * (hv * mu * mu).sum() + 0.5 * (hv * sigma).sum())
    tap.ok(hv.min() > 0, f"depth 0, int, mse: the loss is a non-degenerate quadratic in d = {P} "
           f"(Hessian eigenvalues {hv.min():.3g}..{hv.max():.3g})")
    tap.ok(abs(exact - P / 2) < 0.05 * P / 2, f"closed form {exact:.4f} is near d/2 = {P / 2}")

    rec = llc_run(bindir, data_path, path, ["--batch", str(n), "--epsilon", str(eps), "--gamma", str(gamma),
                                            "--nbeta", str(nbeta), "--chains", "8", "--draws", "40000",
                                            "--burn-in", "10000", "--seed", "3",
                                            "--explode", "10"])
    m, se = rec["llc_mean"], rec["llc_stderr"]
    tap.ok(abs(m - exact) < 4 * se,
           f"llc-estimate {m:.4f} +- {se:.4f} matches the closed form {exact:.4f} within 4 standard errors")
    tap.ok(rec["chains_ok"] == 8 and rec["chains_left"] == 0, "no chain left the basin")


def torch_sgld(model, X, Y, p, loss, w_star, eps, gamma, nbeta, batch, chains, draws, seed, rms=None):
    """devinterp's SGLD loop: the loss at w before each step is the draw.
    rms = (alpha, delta): devinterp's rmsprop_sgld, v <- alpha v + (1 - alpha) g^2 from
    the raw gradient, G = 1 / (sqrt(v) + delta) scaling drift, localisation and (as
    sqrt(G)) the noise."""
    with torch.no_grad():
        for q, s in zip(model.parameters(), w_star):
            q.copy_(s)
    init = float(loss_fn(model(X), Y, p, loss))   # L(w*), whatever a previous run left in model
    gen = torch.Generator().manual_seed(seed)
    llcs = []
    for _ in range(chains):
        with torch.no_grad():
            for q, s in zip(model.parameters(), w_star):
                q.copy_(s)
        losses = []
        v = [torch.zeros_like(q) for q in model.parameters()]
        order = torch.randperm(len(Y), generator=gen)
        pos = 0
        for _ in range(draws):
            if pos + batch > len(Y):
                order = torch.randperm(len(Y), generator=gen)
                pos = 0
            idx = order[pos:pos + batch]
            pos += batch
            model.zero_grad()
            lb = loss_fn(model(X[idx]), Y[idx], p, loss)
            lb.backward()
            losses.append(float(lb))
            with torch.no_grad():
                for q, s, vq in zip(model.parameters(), w_star, v):
                    G = 1.0
                    if rms:
                        vq.mul_(rms[0]).addcmul_(q.grad, q.grad, value=1 - rms[0])
                        G = 1.0 / (vq.sqrt() + rms[1])
                    dw = G * (nbeta * q.grad) + G * (gamma * (q - s))
                    q.add_(dw, alpha=-0.5 * eps)
                    noise = torch.normal(0.0, 1.0, q.shape, generator=gen)
                    q.add_((G ** 0.5) * noise if rms else noise, alpha=eps ** 0.5)
        llcs.append(nbeta * (np.mean(losses) - init))
    llcs = np.array(llcs)
    return llcs.mean(), llcs.std(ddof=1) / np.sqrt(chains)


def mlp_case(tap, bindir, work):
    p = 13
    data_path = os.path.join(work, "ldata2.safetensors")
    run([os.path.join(bindir, "gen-modadd"), "-p", str(p), "--frac", "0.6", "-o", data_path])
    ck = os.path.join(work, "lck1")
    run([os.path.join(bindir, "train-mlp"), "--data", data_path, "--depth", "2", "--width", "24",
         "--steps", "400", "--log-every", "400", "--ckpt-dir", ck, "--quiet"])
    path = os.path.join(ck, "step-00000400.safetensors")
    _, data = load_st(data_path)
    _, params = load_st(path)
    model = model_from(params, 2)
    w_star = [q.detach().clone() for q in model.parameters()]
    X = inputs(data["train.x"], p, "onehot")
    Y = torch.tensor(np.array(data["train.y"]), dtype=torch.long)
    ref = float(loss_fn(model_from(params, 2).double()(X.double()), Y, p, "ce"))
    settings = dict(eps=1e-3, gamma=100.0, nbeta=16 / np.log(16), batch=16, chains=16, draws=300)
    rec = llc_run(bindir, data_path, path, ["--batch", "16", "--chains", "16", "--draws", "300"])
    tm, tse = torch_sgld(model, X, Y, p, "ce", w_star, settings["eps"], settings["gamma"], settings["nbeta"],
                         settings["batch"], settings["chains"], settings["draws"], 0)
    m, se = rec["llc_mean"], rec["llc_stderr"]
    tol = 4 * np.hypot(se, tse)
    tap.ok(abs(m - tm) < tol, f"depth 2, one-hot, ce: llc-estimate {m:.3f} +- {se:.3f}, "
           f"PyTorch's SGLD loop {tm:.3f} +- {tse:.3f} (|diff| < {tol:.3f})")
    # devinterp's rmsprop_sgld against llc-estimate --precond rmsprop (a larger step: G ~ 1 / (|g| + 0.1)).
    rec = llc_run(bindir, data_path, path, ["--batch", "16", "--chains", "16", "--draws", "300", "--precond", "rmsprop",
                                            "--epsilon", "1e-4"])
    tm, tse = torch_sgld(model, X, Y, p, "ce", w_star, 1e-4, settings["gamma"], settings["nbeta"],
                         settings["batch"], settings["chains"], settings["draws"], 1, rms=(0.99, 0.1))
    m, se = rec["llc_mean"], rec["llc_stderr"]
    tol = 4 * np.hypot(se, tse)
    tap.ok(abs(m - tm) < tol and rec["settings"]["precond"] == "rmsprop",
           f"RMSprop-SGLD: llc-estimate {m:.3f} +- {se:.3f}, PyTorch's devinterp loop {tm:.3f} +- {tse:.3f} "
           f"(|diff| < {tol:.3f})")
    tap.ok(abs(rec["init_loss"] - ref) < 1e-5 * max(1.0, ref),
           f"L(w*) {rec['init_loss']:.8g} agrees with PyTorch's float64 {ref:.8g}")


def main():
    bindir, work = sys.argv[1], sys.argv[2]
    torch.set_num_threads(1)
    torch.manual_seed(0)
    tap = Tap()
    quadratic_case(tap, bindir, work)
    mlp_case(tap, bindir, work)
    return tap.done()


if __name__ == "__main__":
    sys.exit(main())
