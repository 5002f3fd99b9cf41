#!/usr/bin/env python3
"""make bench, GOP part: gop-spectrum's full spectrum of the per-example
gradient Gram matrix against PyTorch's closed-form Gram (the same
layer-by-layer identity, with autograd's per-example deltas) + eigvalsh,
and against its vmap per-example route (functorch: J, then J J^T), in the
same run, one thread each, float64 eigensolvers both.  Our time is the
record's own with --no-centred (one spectrum, like PyTorch's); the default
run, which adds the centred spectrum, is shown too.  Ours and the
closed-form route take turns, SOLVES times each, and each side's median is
reported (one run of either can be off by a third on a shared machine);
the vmap route, slower by far, runs once.

usage: bench_gop.py BINDIR WORKDIR [DEPTHS] [FRACS]"""

import json
import os
import sys
import time

import numpy as np
import torch

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "ref"))
from refcommon import inputs, load_st, model_from, run  # noqa: E402

SOLVES = 3


def closed_form(model, X, Y, depth):
    """K = sum over layers of (D D^T) * (A A^T + 1) / n, D per-example deltas."""
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
    K = torch.zeros(n, n, dtype=torch.float64)
    for i in range(depth + 1):
        d = deltas[i].double()
        ai = acts[i].double()
        K += (d @ d.T) * (ai @ ai.T + 1)
    return torch.linalg.eigvalsh(K.detach() / n)


def vmap_route(model, X, Y):
    import functorch
    fmodel, params = functorch.make_functional(model)

    def loss1(p, x, y):
        return torch.nn.functional.cross_entropy(fmodel(p, x[None]), y[None])
    grads = functorch.vmap(functorch.grad(loss1), in_dims=(None, 0, 0))(params, X, Y)
    J = torch.cat([g.reshape(len(Y), -1) for g in grads], dim=1).double()
    return torch.linalg.eigvalsh(J.detach() @ J.detach().T / len(Y))


def timed(f):
    t = time.perf_counter()
    out = f()
    return out, time.perf_counter() - t


def main():
    bindir, work = sys.argv[1:3]
    depths = [int(d) for d in (sys.argv[3] if len(sys.argv) > 3 else "2,7").split(",")]
    fracs = (sys.argv[4] if len(sys.argv) > 4 else "0.1,0.3").split(",")
    torch.set_num_threads(1)
    print(f"# GOP full spectrum (train set, p=97, width 128, one thread each); torch {torch.__version__}")
    print(f"{'depth':>5} {'frac':>5} {'n':>5} {'ours s':>7} {'ours+centred s':>14} {'torch closed s':>14} {'ratio':>6} "
          f"{'torch vmap s':>12} {'ours MiB':>9} {'max rel diff':>12}")
    for frac in fracs:
        data_path = os.path.join(work, f"gop-{frac}.safetensors")
        run([os.path.join(bindir, "gen-modadd"), "-p", "97", "--frac", frac, "-o", data_path])
        _, data = load_st(data_path)
        X = inputs(data["train.x"], 97, "onehot")
        Y = torch.tensor(np.array(data["train.y"]), dtype=torch.long)
        for depth in depths:
            ck = os.path.join(work, f"gop-ck-{frac}-{depth}")
            run([os.path.join(bindir, "train-mlp"), "--data", data_path, "--depth", str(depth), "--steps", "200",
                 "--log-every", "200", "--ckpt-dir", ck, "--quiet"])
            path = os.path.join(ck, "step-00000200.safetensors")
            model = model_from(load_st(path)[1], depth)
            ours_t, closed_t = [], []
            for _ in range(SOLVES):
                ours = json.loads(run([os.path.join(bindir, "gop-spectrum"), "--data", data_path, "--no-centred",
                                       path]).splitlines()[-1])
                ours_t.append(ours["seconds"])
                ev, t = timed(lambda: closed_form(model, X, Y, depth))
                closed_t.append(t)
            ours["seconds"], t_closed = float(np.median(ours_t)), float(np.median(closed_t))
            full = json.loads(run([os.path.join(bindir, "gop-spectrum"), "--data", data_path, path]).splitlines()[-1])
            try:
                _, t_vmap = timed(lambda: vmap_route(model, X, Y))
                vm = f"{t_vmap:>12.2f}"
            except Exception as e:  # noqa: BLE001 - report, do not hide
                t_vmap, vm = None, f"{'failed':>12}"
                print(f"# vmap route failed: {e}", file=sys.stderr)
            top = np.sort(ev.numpy())[::-1][:10]
            diff = float(np.max(np.abs(np.array(ours["gop"]["top"]) - top) / top))
            print(f"{depth:>5} {frac:>5} {ours['n']:>5} {ours['seconds']:>7.2f} {full['seconds']:>14.2f} "
                  f"{t_closed:>14.2f} {ours['seconds'] / t_closed:>6.2f} {vm} {ours['peak_rss_mib']:>9.1f} "
                  f"{diff:>12.1e}", flush=True)
            print(json.dumps({"record": "bench", "bench": "gop", "depth": depth, "frac": float(frac), "n": ours["n"],
                              "ours_seconds": ours["seconds"], "ours_with_centred_seconds": full["seconds"],
                              "torch_closed_form_seconds": t_closed, "ratio": ours["seconds"] / t_closed,
                              "torch_vmap_seconds": t_vmap, "ours_peak_rss_mib": ours["peak_rss_mib"],
                              "top10_max_rel_diff": diff}))
    print("# target: ratio <= 0.5 against the closed-form route; memory O(n^2), never O(P^2)")


if __name__ == "__main__":
    main()
