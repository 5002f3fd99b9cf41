"""make bench, the PyTorch side of the transformer part: the papers' module
as written (tests/ref/check_transformer.py's Transformer, float32), trained
and differentiated as Nanda et al.'s script does.  Serves requests as
peers.py does, with its jobs and these; started, like it, in a process
whose environment already limits every thread pool torch may use.

usage: peers_transformer.py                 serve requests
       peers_transformer.py --once REQUEST  answer one request (for peak memory)"""

import os
import sys
import time

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "ref"))
import peers  # noqa: E402
from check_transformer import Transformer, cross_entropy_high_precision  # noqa: E402
from refcommon import load_st  # noqa: E402

_data = {}


def nanda(p, layers):
    """Nanda et al.'s configuration (train-transformer's defaults)."""
    return {"p": p, "layers": layers, "d_model": 128, "heads": 4, "d_head": 32, "d_mlp": 512,
            "attention": "causal", "alpha": 1.0, "act": "relu", "eq_token": True}


def dataset(path):
    """(tokens x, y, '=' (n, 3), labels, p) of a data set's training part, read once."""
    if path not in _data:
        meta, d = load_st(path)
        p = int(meta["p"])
        pairs = torch.tensor(np.array(d["train.x"]), dtype=torch.long)
        tokens = torch.cat([pairs, torch.full((len(pairs), 1), p)], 1)
        _data[path] = (tokens, torch.tensor(np.array(d["train.y"]), dtype=torch.long), p)
    return _data[path]


def model(p, layers, ckpt=None):
    torch.manual_seed(0)
    m = Transformer(nanda(p, layers))
    if ckpt:
        m.load_state_dict({n: torch.tensor(np.array(t)) for n, t in load_st(ckpt)[1].items()}, strict=False)
    return m


def optimiser(m):
    return torch.optim.AdamW(m.parameters(), lr=1e-3, weight_decay=1.0, betas=(0.9, 0.98))


def step(m, opt, X, Y):
    opt.zero_grad(set_to_none=True)
    cross_entropy_high_precision(m(X)[:, -1], Y).backward()
    opt.step()


def tfm_train_step(data, layers, reps):
    """Median seconds of one full-batch step: zero_grad, forward of every
    position, the papers' float64 cross-entropy at the last, backward, AdamW."""
    X, Y, p = dataset(data)
    m = model(p, layers)
    opt = optimiser(m)
    times = []
    for k in range(reps + 3):   # the first steps allocate and warm caches
        t = time.perf_counter()
        step(m, opt, X, Y)
        if k >= 3:
            times.append(time.perf_counter() - t)
    return {"seconds": float(np.median(times))}


def tfm_train_peak(data, layers, steps):
    """Peak resident memory (VmHWM) of a short training run, this process alone."""
    X, Y, p = dataset(data)
    m = model(p, layers)
    opt = optimiser(m)
    for _ in range(steps):
        step(m, opt, X, Y)
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return {"peak_mib": float(line.split()[1]) / 1024}
    raise RuntimeError("no VmHWM in /proc/self/status")


def tfm_hvp_time(data, ckpt, layers, reps):
    """Median seconds of one Hessian-vector product over the training set at a
    checkpoint, the first-order graph built beforehand (PyHessian's way)."""
    X, Y, p = dataset(data)
    m = model(p, layers, ckpt)
    params = list(m.parameters())
    grads = torch.autograd.grad(cross_entropy_high_precision(m(X)[:, -1], Y), params, create_graph=True)
    v = [torch.randn_like(q) for q in params]
    times = []
    for k in range(reps + 2):
        t = time.perf_counter()
        torch.autograd.grad(grads, params, grad_outputs=v, retain_graph=True)
        if k >= 2:
            times.append(time.perf_counter() - t)
    return {"seconds": float(np.median(times))}


peers.JOBS.update({f.__name__: f for f in (tfm_train_step, tfm_train_peak, tfm_hvp_time)})

if __name__ == "__main__":
    peers.main()
