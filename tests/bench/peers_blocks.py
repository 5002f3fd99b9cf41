"""make bench, the PyTorch side of the blocks part: every tensor group's
diagonal block of the Hessian at an MLP checkpoint, as a PyTorch user
would take it: the first-order graph built once (PyHessian's way), each
block's product a masked double backward (the group's gradients against
the group's parameters, retain_graph=True), Lanczos with full
reorthogonalisation in float64 on the flattened block, and Hutchinson
traces of the whole and of every block on the same Rademacher probes.
Serves requests as peers.py does, with its jobs and this one, in a process
whose environment already limits every thread pool torch may use.

usage: peers_blocks.py                 serve requests
       peers_blocks.py --once REQUEST  answer one request"""

import os
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import peers  # noqa: E402


def lanczos_top(apply, n, steps, gen):
    """The top Ritz value after `steps` Lanczos steps (full
    reorthogonalisation), from a Gaussian start."""
    Q = torch.zeros(steps, n, dtype=torch.float64)
    q = torch.randn(n, generator=gen, dtype=torch.float64)
    q /= q.norm()
    alpha, beta = [], []
    for j in range(steps):
        Q[j] = q
        w = apply(q)
        a = float(w @ q)
        w -= Q[:j + 1].T @ (Q[:j + 1] @ w)
        w -= Q[:j + 1].T @ (Q[:j + 1] @ w)
        alpha.append(a)
        b = float(w.norm())
        if j == steps - 1 or b == 0.0:
            break
        beta.append(b)
        q = w / b
    k = len(alpha)
    T = torch.diag(torch.tensor(alpha, dtype=torch.float64))
    if k > 1:
        off = torch.tensor(beta[:k - 1], dtype=torch.float64)
        T += torch.diag(off, 1) + torch.diag(off, -1)
    return float(torch.linalg.eigvalsh(T)[-1])


def block_spectra(data, ckpt, depth, main_steps, block_steps, probes, seed):
    """hess-eig --blocks' work, product for product: a top-1 solve of the
    whole Hessian in main_steps products, each group's top-1 in its
    block_steps[g] products, and `probes` probes of the whole and block
    traces.  Timed from the model in memory (graph building included)."""
    X, Y, _ = peers.dataset(data)
    model = peers.checkpoint_model(ckpt, depth)
    gen = torch.Generator().manual_seed(seed)
    t = time.perf_counter()
    params, grads = peers.first_order_graph(model, X, Y)
    groups = [(2 * i, 2 * i + 2) for i in range(depth + 1)]   # layers.i: weight, bias

    def operator(lo, hi):
        ps, gs = params[lo:hi], grads[lo:hi]
        shapes = [q.shape for q in ps]
        sizes = [q.numel() for q in ps]

        def apply(x):
            vs = [c.reshape(s).to(torch.float32) for c, s in zip(torch.split(x, sizes), shapes)]
            hv = torch.autograd.grad(gs, ps, grad_outputs=vs, retain_graph=True)
            return torch.cat([h.reshape(-1) for h in hv]).to(torch.float64)
        return apply, sum(sizes)

    whole, n = operator(0, len(params))
    top = lanczos_top(whole, n, main_steps, gen)
    blocks = [operator(lo, hi) for lo, hi in groups]
    lam = [lanczos_top(a, m, k, gen) for (a, m), k in zip(blocks, block_steps)]
    tr, btr = 0.0, [0.0] * len(blocks)
    for _ in range(probes):
        z = torch.randint(0, 2, (n,), generator=gen).to(torch.float64) * 2 - 1
        tr += float(z @ whole(z))
        lo = 0
        for g, (a, m) in enumerate(blocks):
            zg = z[lo:lo + m]
            btr[g] += float(zg @ a(zg))
            lo += m
    return {"seconds": time.perf_counter() - t, "lambda1": top, "block_lambda": lam,
            "trace": tr / probes, "block_trace": [b / probes for b in btr]}


peers.JOBS.update({block_spectra.__name__: block_spectra})

if __name__ == "__main__":
    peers.main()
