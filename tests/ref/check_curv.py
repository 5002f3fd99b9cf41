#!/usr/bin/env python3
"""hess-eig's curvature views against PyTorch in float64, on the same
checkpoints: the dense Hessian from double-backward products (one per
column), the Gauss-Newton matrix J^T H_out J from the logits' Jacobian by
forward-mode Jacobian-vector products, and LAPACK's eigenvalues of them.

  --blocks     each layer's diagonal block: top eigenvalues (relative
               EIG_RTOL); its Hutchinson trace against the exact trace
               (within 5 standard errors), and the blocks' estimates
               summing to the block-diagonal estimate of the whole trace
  --matrix ggn top eigenvalues (EIG_RTOL), the bottom ones no more
               negative than float32 rounding (PSD); and H's diagonal
               blocks equal G's (an MLP is piecewise linear in one layer's
               parameters, so the Hessian's extra term vanishes there)
  --alignment  the fraction of |g|^2 in the top-k eigenvectors' span
  --precond    AdamW's lambda_max(P^-1 H), P from the checkpoint's optim.v,
               and its threshold 38/lr; SGD's 2/lr

for MLPs and for a transformer, each for its Hessian and its GGN.

usage: check_curv.py BINDIR WORKDIR    (prints TAP)"""

import os
import sys

import numpy as np
import torch

from refcommon import Tap, inputs, load_st, loss_fn, model_from, read_jsonl, run

# hess-eig multiplies in float32; its eigenvalues of a well-separated top
# agree with float64 to a few float32 roundings of the products.
EIG_RTOL = 1e-6
ALIGN_ATOL = 1e-5

CASES = [
    ("adamw, cross-entropy, depth 2", ["--depth", "2"]),
    ("adamw, mse, depth 3", ["--depth", "3", "--loss", "mse"]),
    ("sgd, cross-entropy, depth 1", ["--depth", "1", "--optim", "sgd", "--lr", "0.1", "--momentum", "0.5", "--wd", "0.01"]),
]


def dense_hessian(model, X, Y, p, loss):
    params = list(model.parameters())
    loss_val = loss_fn(model(X), Y, p, loss)
    grads = torch.autograd.grad(loss_val, params, create_graph=True)
    g = torch.cat([t.reshape(-1) for t in grads])
    n = g.numel()
    H = torch.zeros(n, n, dtype=torch.float64)
    for j in range(n):
        hv = torch.autograd.grad(g[j], params, retain_graph=True)
        H[j] = torch.cat([t.reshape(-1) for t in hv])
    return 0.5 * (H + H.T), g.detach()


def dense_ggn(model, X, Y, p, loss):
    """J^T H_out J: J (N p, n) column by column by forward-mode JVPs, H_out per row of the mean loss."""
    import torch.autograd.forward_ad as fwAD
    theta = [t.detach() for t in model.parameters()]
    shapes = [t.shape for t in theta]
    sizes = [t.numel() for t in theta]

    def logits(flat):
        parts = [q.reshape(s) for q, s in zip(torch.split(flat, sizes), shapes)]
        h = X
        for i in range(0, len(parts), 2):
            h = h @ parts[i].T + parts[i + 1]
            if i + 2 < len(parts):
                h = torch.relu(h)
        return h

    flat = torch.cat([t.reshape(-1) for t in theta])
    n, N = flat.numel(), X.shape[0]
    J = torch.zeros(N * p, n, dtype=torch.float64)
    for j in range(n):
        e = torch.zeros(n, dtype=torch.float64)
        e[j] = 1.0
        with fwAD.dual_level():
            out = logits(fwAD.make_dual(flat, e))
            J[:, j] = fwAD.unpack_dual(out).tangent.reshape(-1)
    with torch.no_grad():
        Z = logits(flat)
        assert torch.allclose(Z, model(X))
    if loss == "mse":
        Hout = torch.eye(N * p, dtype=torch.float64) * 2.0 / (N * p)
    else:
        P = torch.softmax(Z, dim=1)
        Hout = torch.block_diag(*[(torch.diag(P[b]) - torch.outer(P[b], P[b])) / N for b in range(N)])
    G = J.T @ Hout @ J
    return 0.5 * (G + G.T)


def layer_ranges(depth, params):
    out, off = [], 0
    for i in range(depth + 1):
        n = params[f"layers.{i}.weight"].size + params[f"layers.{i}.bias"].size
        out.append((f"layers.{i}", off, off + n))
        off += n
    return out


def top(M, k):
    return np.sort(np.linalg.eigvalsh(M))[::-1][:k]


def check_blocks(tap, name, rec, M, ranges, what):
    for b, (group, lo, hi) in zip(rec["blocks"], ranges):
        theirs = top(M[lo:hi, lo:hi], 1)[0]
        rel = abs(b["lambda_max"] - theirs) / abs(theirs)
        tap.ok(b["group"] == group and b["converged"] and rel < EIG_RTOL,
               f"{name}: {what} block {group} lambda_max {b['lambda_max']:.10g} vs {theirs:.10g} "
               f"(rel {rel:.1e} < {EIG_RTOL:g})")
        exact = float(np.trace(M[lo:hi, lo:hi]))
        tap.ok(abs(b["trace"] - exact) <= 5 * b["stderr"] + 1e-9 * abs(exact),
               f"{name}: {what} block {group} trace {b['trace']:.6g} +- {b['stderr']:.2g} vs exact {exact:.6g}")
    total = sum(b["trace"] for b in rec["blocks"])
    tap.ok(abs(total - rec["blocks_trace"]["mean"]) <= 1e-12 * abs(total),
           f"{name}: {what} blocks' traces sum to the block-diagonal estimate {rec['blocks_trace']['mean']:.10g}")
    exact = float(np.trace(M))
    tap.ok(abs(rec["blocks_trace"]["mean"] - exact) <= 5 * rec["blocks_trace"]["stderr"]
           and abs(rec["trace"]["mean"] - exact) <= 5 * rec["trace"]["stderr"],
           f"{name}: {what} trace: blocks' sum {rec['blocks_trace']['mean']:.6g} +- "
           f"{rec['blocks_trace']['stderr']:.2g} and whole {rec['trace']['mean']:.6g} +- "
           f"{rec['trace']['stderr']:.2g} on the same probes vs exact {exact:.6g}")


def check_alignment(tap, name, rec, M, g, what):
    w, V = np.linalg.eigh(M)
    V = V[:, np.argsort(w)[::-1]]
    k = len(rec["alignment"])
    theirs = np.cumsum((V[:, :k].T @ g) ** 2) / (g @ g)
    err = np.max(np.abs(np.array(rec["alignment"]) - theirs))
    tap.ok(err < ALIGN_ATOL, f"{name}: {what} gradient alignment top-1..{k} {np.round(theirs, 6).tolist()} "
           f"(max diff {err:.1e} < {ALIGN_ATOL:g})")


def check_precond(tap, name, rec, H, meta, st):
    import json
    opt = json.loads(meta["config"])["optim"]
    pc = rec["precond"]
    lr = opt["lr"]
    if opt["name"] == "sgd":
        thr = (2 + 2 * opt["momentum"]) / lr
        lam = top(H, 1)[0]
    else:
        t = int(meta["optim_t"])
        b1, b2, eps = opt["beta1"], opt["beta2"], opt["eps"]
        v = st["optim.v"].astype(np.float64)
        d = 1.0 / ((1 - b1 ** t) * (np.sqrt(v / (1 - b2 ** t)) + eps))
        s = np.sqrt(d)
        lam = top(s[:, None] * H * s[None, :], 1)[0]
        thr = (2 + 2 * b1) / ((1 - b1) * lr)
    rel = abs(pc["lambda_max"] - lam) / abs(lam)
    tap.ok(rel < EIG_RTOL and abs(pc["threshold"] - thr) <= 1e-12 * thr,
           f"{name}: {opt['name']} preconditioned sharpness {pc['lambda_max']:.10g} vs {lam:.10g} "
           f"(rel {rel:.1e}), threshold {pc['threshold']:.8g} = {thr:.8g}")


def hess_eig(bindir, data, path, matrix):
    return read_jsonl(run([os.path.join(bindir, "hess-eig"), "--data", data, "--matrix", matrix,
                           "--top", "3", "--which", "both", "--tol", "1e-9", "--max-iter", "400",
                           "--blocks", "--alignment", "--precond", "--probes", "400", path]))[1]


def transformer_case(tap, bindir, work, data_path, data, p):
    """Every view on a transformer: its Hessian and its GGN."""
    import json
    import struct
    from check_transformer import Transformer, cross_entropy_high_precision
    ck = os.path.join(work, "tck")
    run([os.path.join(bindir, "train-transformer"), "--data", data_path, "--d-model", "8", "--heads", "2",
         "--d-head", "4", "--d-mlp", "16", "--act", "gelu", "--steps", "60", "--log-every", "60",
         "--ckpt-dir", ck, "--ckpt-optim", "--seed", "3", "--quiet"])
    path = os.path.join(ck, "step-00000060.safetensors")
    meta, st = load_st(path)
    raw = open(path, "rb").read()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + n])
    header.pop("__metadata__")
    # theta's order is the file's data order
    names = [k for k in sorted(header, key=lambda k: header[k]["data_offsets"][0]) if not k.startswith("optim.")]
    c = json.loads(meta["config"])["model"]
    model = Transformer(dict(c, alpha=c["attn_coeff"])).double()
    model.load_state_dict({k: torch.tensor(np.array(st[k])) for k in names}, strict=False)
    named = dict(model.named_parameters())
    ps = [named[k] for k in names]
    pairs = torch.tensor(np.array(data["train.x"]), dtype=torch.long)
    tokens = torch.cat([pairs, torch.full((len(pairs), 1), p)], 1)
    labels = torch.tensor(np.array(data["train.y"]), dtype=torch.long)
    g = torch.autograd.grad(cross_entropy_high_precision(model(tokens)[:, -1], labels), ps, create_graph=True)
    g = torch.cat([t.reshape(-1) for t in g])
    H = torch.zeros(g.numel(), g.numel(), dtype=torch.float64)
    for j in range(g.numel()):
        H[j] = torch.cat([t.reshape(-1) for t in torch.autograd.grad(g[j], ps, retain_graph=True)])
    H = (0.5 * (H + H.T)).numpy()
    ranges, off = [], 0
    for k in names:
        group = k.split(".")[0] if not k.startswith("blocks.") else ".".join(k.split(".")[:3])
        group = "embed" if group == "pos_embed" else group
        if ranges and ranges[-1][0] == group:
            ranges[-1] = (group, ranges[-1][1], off + st[k].size)
        else:
            ranges.append((group, off, off + st[k].size))
        off += st[k].size
    G = transformer_ggn(model, names, tokens, p)
    name = "transformer (gelu, 1 block)"
    for matrix, M in (("hessian", H), ("ggn", G)):
        rec = hess_eig(bindir, data_path, path, matrix)
        theirs = top(M, 3)
        rel = np.max(np.abs(np.array(rec["eigenvalues"]) - theirs) / abs(theirs[0]))
        tap.ok(rec["matrix"] == matrix and rel < EIG_RTOL,
               f"{name}: {matrix} top-3 {np.round(theirs, 8).tolist()}, max rel diff {rel:.1e}")
        if matrix == "ggn":
            low = min(rec["bottom_eigenvalues"])
            tap.ok(low >= -1e-6 * rec["eigenvalues"][0] and np.linalg.eigvalsh(G)[0] >= -1e-12 * theirs[0],
                   f"{name}: GGN positive semi-definite: smallest {low:.2e}, float64 {np.linalg.eigvalsh(G)[0]:.2e}")
            lo, hi = ranges[-1][1], ranges[-1][2]
            diff = np.max(np.abs(H[lo:hi, lo:hi] - G[lo:hi, lo:hi]))
            tap.ok(ranges[-1][0] == "unembed" and diff < 1e-12 * np.max(np.abs(H)),
                   f"{name}: the unembedding's block of H equals G's (the logits are linear in W_U; diff {diff:.1e})")
        check_blocks(tap, name, rec, M, ranges, matrix)
        check_alignment(tap, name, rec, M, g.detach().numpy(), matrix)
        check_precond(tap, name, rec, M, meta, st)


def transformer_ggn(model, names, tokens, p):
    """J^T H_out J of the last position's mean cross-entropy, J by forward-mode JVPs."""
    import torch.autograd.forward_ad as fwAD
    from torch.nn.utils.stateless import functional_call
    named = dict(model.named_parameters())
    shapes = [named[k].shape for k in names]
    sizes = [named[k].numel() for k in names]
    flat = torch.cat([named[k].detach().reshape(-1) for k in names])

    def logits(th):
        d = {k: q.reshape(s) for k, q, s in zip(names, torch.split(th, sizes), shapes)}
        return functional_call(model, d, (tokens,))[:, -1]

    n, N = flat.numel(), tokens.shape[0]
    J = torch.zeros(N * p, n, dtype=torch.float64)
    for j in range(n):
        e = torch.zeros(n, dtype=torch.float64)
        e[j] = 1.0
        with fwAD.dual_level():
            J[:, j] = fwAD.unpack_dual(logits(fwAD.make_dual(flat, e))).tangent.reshape(-1)
    with torch.no_grad():
        P = torch.softmax(logits(flat), dim=1)
    Hout = torch.block_diag(*[(torch.diag(P[b]) - torch.outer(P[b], P[b])) / N for b in range(N)])
    G = J.T @ Hout @ J
    return (0.5 * (G + G.T)).numpy()


def main():
    bindir, work = sys.argv[1], sys.argv[2]
    torch.set_num_threads(1)
    tap = Tap()
    data_path = os.path.join(work, "cdata.safetensors")
    p = 11
    run([os.path.join(bindir, "gen-modadd"), "-p", str(p), "--frac", "0.6", "-o", data_path])
    _, data = load_st(data_path)
    for k, (name, args) in enumerate(CASES):
        ck = os.path.join(work, f"cck{k}")
        run([os.path.join(bindir, "train-mlp"), "--data", data_path, "--width", "12", "--steps", "120",
             "--log-every", "120", "--ckpt-dir", ck, "--ckpt-optim", "--seed", str(k), "--quiet"] + args)
        path = os.path.join(ck, "step-00000120.safetensors")
        meta, st = load_st(path)
        depth, enc, loss = int(meta["depth"]), meta["encoding"], meta["loss"]
        model = model_from(st, depth).double()
        X = inputs(data["train.x"], p, enc).double()
        Y = torch.tensor(np.array(data["train.y"]), dtype=torch.long)
        H, g = dense_hessian(model, X, Y, p, loss)
        G = dense_ggn(model, X, Y, p, loss)
        H, G, g = H.numpy(), G.numpy(), g.numpy()
        ranges = layer_ranges(depth, st)
        for matrix, M in (("hessian", H), ("ggn", G)):
            rec = hess_eig(bindir, data_path, path, matrix)
            theirs = top(M, 3)
            rel = np.max(np.abs(np.array(rec["eigenvalues"]) - theirs) / abs(theirs[0]))
            # the bottom end (a cluster at zero for the GGN) may stop short of --tol; the top must not
            res = max(r / abs(e) for r, e in zip(rec["residuals"], rec["eigenvalues"]))
            tap.ok(rec["matrix"] == matrix and res < 1e-6 and rel < EIG_RTOL,
                   f"{name}: {matrix} top-3 {np.round(theirs, 8).tolist()}, max rel diff {rel:.1e} < {EIG_RTOL:g}, "
                   f"relative residuals <= {res:.1e}")
            if matrix == "ggn":
                low = min(rec["bottom_eigenvalues"])
                tap.ok(low >= -1e-6 * rec["eigenvalues"][0] and np.linalg.eigvalsh(G)[0] >= -1e-12 * theirs[0],
                       f"{name}: GGN positive semi-definite: smallest {low:.2e} (float32 rounding), "
                       f"float64 {np.linalg.eigvalsh(G)[0]:.2e}")
                diff = max(np.max(np.abs(H[lo:hi, lo:hi] - G[lo:hi, lo:hi])) for _, lo, hi in ranges)
                tap.ok(diff < 1e-12 * np.max(np.abs(H)),
                       f"{name}: each layer's diagonal block of H equals G's in float64 (max diff {diff:.1e})")
            check_blocks(tap, name, rec, M, ranges, matrix)
            check_alignment(tap, name, rec, M, g, matrix)
            check_precond(tap, name, rec, M, meta, st)
    transformer_case(tap, bindir, work, data_path, data, p)
    return tap.done()


if __name__ == "__main__":
    sys.exit(main())
