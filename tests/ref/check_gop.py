#!/usr/bin/env python3
"""gop-spectrum against PyTorch: on the same checkpoint and data, the
per-example gradients by autograd in float64 (one backward per example),
J J^T / n and its eigenvalues by eigvalsh.  The largest 10 eigenvalues
must agree to 1e-5 relative and the trace to 1e-6; also the centred
spectrum, |mean gradient|^2 and each layer's trace.  The statistics with a
tolerance (numerical rank at n 2^-23 times the largest eigenvalue, the
condition number and log-determinant over that rank, the effective rank)
are recomputed by numpy from the float64 eigenvalues of the explicit Gram;
an eigenvalue within RANK_BAND of the tolerance could fall either side of
it in float32, so the rank must lie between the counts above
(1 + RANK_BAND) tol and above (1 - RANK_BAND) tol, and the condition number
and log-determinant must match at either count.  Each case reports how many
eigenvalues lie between tol / n and tol, where a tolerance without its
factor n would count them; over the cases there must be some, or the check
could not tell the two rules apart.

usage: check_gop.py BINDIR WORKDIR    (prints TAP)"""

import os
import sys

import numpy as np
import torch

from refcommon import Tap, inputs, load_st, loss_fn, model_from, read_jsonl, run

EIG_RTOL = 1e-5
TRACE_RTOL = 1e-6
RANK_BAND = 0.05
STAT_RTOL = 1e-6

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
    band_total = 0
    for k, (name, args) in enumerate(CASES):
        ck = os.path.join(work, f"gck{k}")
        run([os.path.join(bindir, "train-mlp"), "--data", data_path, "--width", "24", "--steps", "150",
             "--log-every", "150", "--ckpt-dir", ck, "--seed", str(k), "--quiet"] + args)
        path = os.path.join(ck, "step-00000150.safetensors")
        rec = read_jsonl(run([os.path.join(bindir, "gop-spectrum"), "--data", data_path, "--per-layer", "--full",
                              path]))[1]
        cheap = read_jsonl(run([os.path.join(bindir, "gop-spectrum"), "--data", data_path, path]))[1]
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
        band_total += check_stats(tap, name, rec["gop"], ev, n)
        check_cheap(tap, name, cheap["gop"], ev, n)
        # the centred covariance on the ones vector's complement: its spectrum less the ones vector's zero
        check_cheap(tap, name + ", centred", cheap["centred"], evc[:-1], n - 1, rows=n)
    tap.ok(band_total > 0, f"{band_total} eigenvalues over the cases lie between tol / n and tol "
           "(the rank check tells the tolerance rule apart)")
    return tap.done()


def check_stats(tap, name, ours, ev, n):
    """Rank, condition number, log-determinant and effective rank of our
    record against numpy on the reference eigenvalues ev (descending)."""
    tol = n * 2.0**-23 * ev[0]
    lo, hi = int(np.sum(ev > tol * (1 + RANK_BAND))), int(np.sum(ev > tol * (1 - RANK_BAND)))
    band = int(np.sum((ev > tol / n) & (ev <= tol)))
    rank = ours["rank"]
    tap.ok(abs(ours["rank_tol"] - tol) <= 1e-5 * tol and lo <= rank <= hi,
           f"{name}: rank {rank}, numpy's count above n 2^-23 x largest: {lo}..{hi} "
           f"(tol {ours['rank_tol']:.3e} vs {tol:.3e}; {band} eigenvalues between tol/n and tol)")
    conds = [ev[0] / ev[r - 1] for r in range(max(lo, 1), hi + 1)]
    logdets = [float(np.sum(np.log(ev[:r]))) for r in range(max(lo, 1), hi + 1)]
    at = rank - max(lo, 1)
    cond_ok = 0 <= at < len(conds) and abs(ours["condition"] - conds[at]) <= 1e-3 * conds[at]
    # each counted eigenvalue is known to about 1e-7 of the largest, absolutely
    ld_tol = 1e-3 + float(np.sum(1e-7 * ev[0] / ev[:rank]))
    ld_ok = 0 <= at < len(logdets) and abs(ours["logdet"] - logdets[at]) <= ld_tol
    tap.ok(cond_ok and ld_ok,
           f"{name}: condition {ours['condition']:.6e} vs {conds[at] if cond_ok else conds}, log-determinant "
           f"{ours['logdet']:.6f} vs {logdets[at] if 0 <= at < len(logdets) else logdets} (+- {ld_tol:.2e})")
    pos = ev[ev > 0]
    q = pos / pos.sum()
    eff = float(np.exp(-np.sum(q * np.log(q))))
    tap.ok(abs(ours["effective_rank"] - eff) <= STAT_RTOL * eff,
           f"{name}: effective rank {ours['effective_rank']:.8f} vs numpy {eff:.8f}")
    return band


def check_cheap(tap, name, ours, ev, n, rows=None):
    """The default record (no spectrum: Lanczos, inertia, Cholesky) against
    numpy on the reference eigenvalues: the top 10, the rank in the same
    band as the full route's, and the log-determinant and condition number
    where its route gives them (every one of the n eigenvalues counted).
    rows: the data's rows, whose count sets the tolerance (default n)."""
    tol = (rows or n) * 2.0**-23 * ev[0]
    lo, hi = int(np.sum(ev > tol * (1 + RANK_BAND))), int(np.sum(ev > tol * (1 - RANK_BAND)))
    rel = np.max(np.abs(np.array(ours["top"]) - ev[:10]) / ev[:10])
    ok = rel < EIG_RTOL and lo <= ours["rank"] <= hi and ours["routes"]["top"] == "lanczos"
    detail = f"top-10 max relative diff {rel:.2e}, rank {ours['rank']} in {lo}..{hi}"
    if ours["routes"]["logdet"] is not None:
        ld = float(np.sum(np.log(ev[:ours["rank"]])))
        ld_tol = 1e-3 + float(np.sum(1e-7 * ev[0] / ev[:ours["rank"]]))
        cond = ev[0] / ev[n - 1]
        ok = (ok and ours["rank"] == n and abs(ours["logdet"] - ld) <= ld_tol
              and abs(ours["condition"] - cond) <= 1e-3 * cond)
        detail += (f", log-determinant ({ours['routes']['logdet']}) {ours['logdet']:.6f} vs {ld:.6f}, "
                   f"condition {ours['condition']:.6e} vs {cond:.6e}")
    routes = ", ".join(r for r in (ours["routes"]["top"], ours["routes"]["rank"], ours["routes"].get("centring")) if r)
    tap.ok(ok, f"{name}: default record (routes {routes}): {detail}")


if __name__ == "__main__":
    sys.exit(main())
