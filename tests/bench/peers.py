"""make bench, the PyTorch side: the programs our tools are compared with,
each written as a PyTorch user who cares about speed would write it, in a
process of its own whose environment already limits every thread pool
torch may use (OpenBLAS's, OpenMP's, MKL's; see benchlib.Peer).

Serves one JSON request a line on stdin ({"job": name, "args": {...}}) and
answers one JSON line on stdout; the first line it writes describes itself.
Each job times itself, so the pipe is not in any figure.

usage: peers.py                 serve requests
       peers.py --once REQUEST  answer one request (for peak memory)"""

import ctypes
import json
import os
import sys
import time

import numpy as np
import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "ref"))
from refcommon import inputs, load_st, model_from  # noqa: E402

WIDTH = 128
_data = {}


def dataset(path):
    """(X one-hot float32, Y, p) of a data set's training part, read once."""
    if path not in _data:
        meta, d = load_st(path)
        p = int(meta["p"])
        _data[path] = (inputs(d["train.x"], p, "onehot"), torch.tensor(np.array(d["train.y"]), dtype=torch.long), p)
    return _data[path]


def checkpoint_model(path, depth):
    return model_from(load_st(path)[1], depth)


def blas():
    """The OpenBLAS torch loaded (Debian's torch uses the system's), asked
    directly: its build, kernels and thread count."""
    libs = sorted({line.split()[-1] for line in open("/proc/self/maps") if "libopenblas" in line})
    if not libs:
        return {"library": "no OpenBLAS (" + ";".join(
            s.strip() for s in torch.__config__.show().splitlines() if "BLAS" in s or "MKL" in s) + ")"}
    lib = ctypes.CDLL(libs[0])
    lib.openblas_get_corename.restype = ctypes.c_char_p
    lib.openblas_get_config.restype = ctypes.c_char_p
    config = lib.openblas_get_config().decode()
    return {"library": " ".join(config.split(" ")[:2]), "core": lib.openblas_get_corename().decode(),
            "threads": lib.openblas_get_num_threads(), "config": config}


def describe():
    return {"torch": torch.__version__, "intraop_threads": torch.get_num_threads(),
            "interop_threads": torch.get_num_interop_threads(), "blas": blas()}


def mlp(p, depth):
    torch.manual_seed(0)
    layers = []
    for i in range(depth + 1):
        layers.append(torch.nn.Linear(2 * p if i == 0 else WIDTH, p if i == depth else WIDTH))
        if i < depth:
            layers.append(torch.nn.ReLU())
    return torch.nn.Sequential(*layers)


def optimiser(model):
    # foreach=True (the multi-tensor AdamW) measured no faster here on CPU,
    # within the noise at depths 1 and 7, so the default stays.
    return torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=1.0)


def step(model, opt, X, Y):
    # set_to_none: PyTorch's performance guide's advice (and 2.0's default)
    opt.zero_grad(set_to_none=True)
    torch.nn.functional.cross_entropy(model(X), Y).backward()
    opt.step()


def train_step(data, depth, reps):
    """Median seconds of one full-batch step: zero_grad, forward,
    cross-entropy, backward, AdamW."""
    X, Y, p = dataset(data)
    model = mlp(p, depth)
    opt = optimiser(model)
    times = []
    for k in range(reps + 3):   # the first steps allocate and warm caches
        t = time.perf_counter()
        step(model, opt, X, Y)
        if k >= 3:
            times.append(time.perf_counter() - t)
    return {"seconds": float(np.median(times))}


def train_peak(data, depth, steps):
    """Peak resident memory (VmHWM) of a short training run, this process
    alone: getrusage would count what a parent shares with it."""
    X, Y, p = dataset(data)
    model = mlp(p, depth)
    opt = optimiser(model)
    for _ in range(steps):
        step(model, opt, X, Y)
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return {"peak_mib": float(line.split()[1]) / 1024}
    raise RuntimeError("no VmHWM in /proc/self/status")


def first_order_graph(model, X, Y):
    """PyHessian's set-up: the gradient with its graph, built once per
    point; every product is one more backward through it."""
    params = [q for q in model.parameters()]
    loss = torch.nn.functional.cross_entropy(model(X), Y)
    grads = torch.autograd.grad(loss, params, create_graph=True)
    return params, grads


def hvp(params, grads, v):
    return torch.autograd.grad(grads, params, grad_outputs=v, retain_graph=True)


def hvp_time(data, ckpt, depth, reps):
    """Median seconds of one Hessian-vector product at a checkpoint, the
    first-order graph built beforehand (as PyHessian's products are)."""
    X, Y, _ = dataset(data)
    params, grads = first_order_graph(checkpoint_model(ckpt, depth), X, Y)
    v = [torch.randn_like(q) for q in params]
    times = []
    for k in range(reps + 2):
        t = time.perf_counter()
        hvp(params, grads, v)
        if k >= 2:
            times.append(time.perf_counter() - t)
    return {"seconds": float(np.median(times))}


def power_top1(data, ckpt, depth, iters, seed):
    """PyHessian's `eigenvalues(top_n=1)` with a fixed number of
    iterations: build the graph, then power iteration on products.  Timed
    from the model in memory to the eigenvalue."""
    X, Y, _ = dataset(data)
    model = checkpoint_model(ckpt, depth)
    torch.manual_seed(seed)
    t = time.perf_counter()
    params, grads = first_order_graph(model, X, Y)
    v = [torch.randn_like(q) for q in params]
    norm = torch.sqrt(sum((x * x).sum() for x in v))
    v = [x / norm for x in v]
    lam = 0.0
    for _ in range(iters):
        hv = hvp(params, grads, v)
        lam = float(sum((a * b).sum() for a, b in zip(hv, v)))
        norm = torch.sqrt(sum((x * x).sum() for x in hv))
        v = [x / norm for x in hv]
    return {"seconds": time.perf_counter() - t, "lambda1": lam}


def power_top1_walk(data, ckpts, depth, iters, seed):
    """power_top1 on each of a run's checkpoints in turn, as a walk over
    them would: the seconds summed, each checkpoint's timed from its model
    in memory; the top eigenvalue of each."""
    seconds, lams = 0.0, []
    for ck in ckpts:
        ans = power_top1(data, ck, depth, iters, seed)
        seconds += ans["seconds"]
        lams.append(ans["lambda1"])
    return {"seconds": seconds, "lambda1": lams}


def gop_closed_form(data, ckpt, depth):
    """The Gram matrix of per-example gradients by the layer identity
    K = sum over layers of (D D^T) * (A A^T + 1) / n (D the per-example
    output deltas from one backward pass of the summed loss), then
    eigvalsh in float64: the same algorithm as gop-spectrum's."""
    X, Y, _ = dataset(data)
    model = checkpoint_model(ckpt, depth)
    t = time.perf_counter()
    n = len(Y)
    acts, zs, a = [X], [], X
    layers = [m for m in model if isinstance(m, torch.nn.Linear)]
    for i, lin in enumerate(layers):
        z = lin(a)
        zs.append(z)
        a = torch.relu(z) if i < depth else z
        if i < depth:
            acts.append(a)
    loss = torch.nn.functional.cross_entropy(zs[-1], Y, reduction="sum")
    deltas = torch.autograd.grad(loss, zs)
    with torch.no_grad():
        K = torch.zeros(n, n, dtype=torch.float64)
        for i in range(depth + 1):
            d, ai = deltas[i].double(), acts[i].double()
            K += (d @ d.T) * (ai @ ai.T + 1)
        ev = torch.linalg.eigvalsh(K / n)
    return {"seconds": time.perf_counter() - t, "top": sorted(ev.tolist(), reverse=True)[:10]}


def gop_vmap(data, ckpt, depth):
    """The generic route: per-example gradients by vmap (functorch), J J^T."""
    import functorch
    X, Y, _ = dataset(data)
    fmodel, params = functorch.make_functional(checkpoint_model(ckpt, depth))
    t = time.perf_counter()

    def loss1(q, x, y):
        return torch.nn.functional.cross_entropy(fmodel(q, x[None]), y[None])
    grads = functorch.vmap(functorch.grad(loss1), in_dims=(None, 0, 0))(params, X, Y)
    with torch.no_grad():
        J = torch.cat([g.reshape(len(Y), -1) for g in grads], dim=1).double()
        torch.linalg.eigvalsh(J @ J.T / len(Y))
    return {"seconds": time.perf_counter() - t}


def sgld_draws(data, ckpt, depth, chains, draws, batch, epsilon, gamma, precond="none", mala_every=0,
               alpha=0.99, delta=0.1):
    """devinterp's SGLD loop (forward and backward on a minibatch, drift,
    localisation and Gaussian noise per parameter); draws per second.
    precond "rmsprop": devinterp's rmsprop_sgld.  mala_every > 0: with the
    diagnostics llc-estimate computes as it goes, devinterp's MALA
    acceptance every step (MalaAcceptanceRate: energies, proposal densities)
    and the same acceptance on the proposal's own minibatch every
    mala_every-th step (one more forward and backward)."""
    X, Y, _ = dataset(data)
    model = checkpoint_model(ckpt, depth)
    nbeta = batch / np.log(batch)
    params = list(model.parameters())
    w_star = [q.detach().clone() for q in params]
    gen = torch.Generator().manual_seed(0)
    h = 0.5 * epsilon

    def energy_grad(idx):
        model.zero_grad(set_to_none=True)
        loss = torch.nn.functional.cross_entropy(model(X[idx]), Y[idx])
        loss.backward()
        with torch.no_grad():
            r2 = sum(float(((q - s) ** 2).sum()) for q, s in zip(params, w_star))
            gU = [nbeta * q.grad + gamma * (q - s) for q, s in zip(params, w_star)]
        return float(loss), nbeta * float(loss) + 0.5 * gamma * r2, gU

    def accept(U0, U1, w0, w1, mf, G, gU1):
        fwd = sum(float(((b - m) ** 2 / g).sum()) for b, m, g in zip(w1, mf, G))
        rev = sum(float(((a - (b - h * g * u)) ** 2 / g).sum()) for a, b, g, u in zip(w0, w1, G, gU1))
        la = U0 - U1 + (fwd - rev) / (2 * epsilon)
        return 1.0 if la >= 0 else float(np.exp(la))

    t = time.perf_counter()
    for _ in range(chains):
        with torch.no_grad():
            for q, s in zip(params, w_star):
                q.copy_(s)
        v = [torch.zeros_like(q) for q in params]
        G = [torch.ones_like(q) for q in params]
        prev, acc, acc_batch = None, [], []
        order, pos = torch.randperm(len(Y), generator=gen), 0
        for step in range(draws):
            if pos + batch > len(Y):
                order, pos = torch.randperm(len(Y), generator=gen), 0
            idx = order[pos:pos + batch]
            pos += batch
            _, U, gU = energy_grad(idx)   # the draw: devinterp records every loss
            with torch.no_grad():
                if mala_every and prev is not None:
                    acc.append(accept(prev[0], U, prev[1], params, prev[2], prev[3], gU))
                if precond == "rmsprop":
                    for j, q in enumerate(params):
                        v[j].mul_(alpha).add_((1 - alpha) * q.grad * q.grad)
                        G[j] = 1.0 / (v[j].sqrt() + delta)
                if mala_every:
                    w0 = [q.detach().clone() for q in params]
                    mf = [q - h * g * u for q, g, u in zip(params, G, gU)]
                    prev = (U, w0, mf, [g.clone() for g in G])
                for q, s, g in zip(params, w_star, G):
                    dp = g * (nbeta * q.grad) + g * (gamma * (q - s))
                    q.add_(dp, alpha=-h)
                    q.add_(g.sqrt() * torch.normal(0.0, 1.0, q.shape, generator=gen), alpha=epsilon ** 0.5)
            if mala_every and step % mala_every == 0:
                _, U1, gU1 = energy_grad(idx)
                with torch.no_grad():
                    acc_batch.append(accept(prev[0], U1, prev[1], params, prev[2], prev[3], gU1))
    return {"draws_per_second": chains * draws / (time.perf_counter() - t)}


def progress_numpy(data, ckpt, depth, op, threshold, symmetricity=True):
    """progress-measures' full set on one MLP checkpoint, as the numpy
    float64 reference of tests/ref/check_progress.py computes it (Nanda's
    helpers and the pizza notebook; symmetricity by autograd): seconds."""
    import check_progress as cp
    t = time.perf_counter()
    meta, d = load_st(data)
    p = int(meta["p"])
    params = load_st(ckpt)[1]
    from_embedded, ex, ey = cp.mlp_forward64(params, depth, p)
    with torch.no_grad():
        logits, acts = from_embedded(ex, ey)
    labels = np.full(p * p, -1, dtype=np.int32)
    train = np.zeros(p * p, dtype=np.int32)
    for split, flag in (("train", 1), ("test", 0)):
        x, y = np.array(d[f"{split}.x"]), np.array(d[f"{split}.y"])
        labels[x[:, 0] * p + x[:, 1]] = y
        train[x[:, 0] * p + x[:, 1]] = flag
    arr = {"logits": logits.numpy(), "labels": labels, "train": train}
    if acts is not None:
        arr["neurons"] = acts.numpy()
    ref, res = cp.reference(arr, p, op, threshold)
    W0 = np.array(params["layers.0.weight"])
    for i in range(2):
        cp.embed_spectrum(W0, p, res, len(res), i * p)
    sym = cp.symmetricity64(from_embedded, ex, ey, labels, p) if symmetricity else (None, None)
    return {"seconds": time.perf_counter() - t, "restricted_loss": ref["restricted_loss"], "symmetricity": sym[0]}


JOBS = {f.__name__: f for f in (describe, train_step, train_peak, hvp_time, power_top1, power_top1_walk,
                                  gop_closed_form, gop_vmap, sgld_draws, progress_numpy)}


def answer(line):
    req = json.loads(line)
    try:
        return JOBS[req["job"]](**req["args"])
    except Exception as e:  # noqa: BLE001 - the parent reports it and stops
        return {"error": f"{req['job']}: {type(e).__name__}: {e}"}


def main():
    torch.set_flush_denormal(True)   # as our tools do (util.c)
    if len(sys.argv) == 3 and sys.argv[1] == "--once":
        print(json.dumps(answer(sys.argv[2])), flush=True)
        return
    print(json.dumps(describe()), flush=True)
    for line in sys.stdin:
        print(json.dumps(answer(line)), flush=True)


if __name__ == "__main__":
    main()
