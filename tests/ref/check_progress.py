#!/usr/bin/env python3
"""progress-measures against numpy and PyTorch float64, on trained checkpoints.

Two independent checks per case:
- the arrays the tool computed its measures from (--arrays: the float32
  logits and neuron activations of all p^2 pairs) against a float64
  forward pass of the checkpoint in PyTorch, to float32 rounding (1e-5
  relative to the largest logit);
- every measure recomputed in numpy float64 from those same arrays, written
  the way Nanda et al.'s helpers.py and the pizza paper's evaluation
  notebook write them (Fourier basis rows, fft2d, extract_freq_2d,
  get_component_cos_xpy / sin_xpy with bias correction, the (a+b, a-b)
  table of correct logits), to 1e-9; for mul the same code runs on the
  tables re-indexed by discrete logarithms.  Gradient symmetricity over all
  p^3 triples by autograd in float64, to 1e-6.

The MLP cases train with train-mlp; the transformer cases with
train-transformer, checked against the papers' module in float64
(check_transformer.py's): neurons are the last block's MLP activations at
the last position, both operands embed through W_E, and the gradients are
taken with respect to the looked-up vectors W_E[:, x] and W_E[:, y] before
the positional embedding is added.

usage: check_progress.py BINDIR WORKDIR    (prints TAP)"""

import math
import os
import sys

import numpy as np
import torch

from refcommon import Tap, load_st, read_jsonl, run

RTOL = 1e-9
LOGIT_RTOL = 1e-5
SYM_TOL = 1e-6

# (name, p, op, trainer, its arguments)
CASES = [
    ("add, depth 1, grokking", 23, "add", "train-mlp", ["--depth", "1", "--width", "48", "--steps", "3000",
                                                     "--lr", "3e-3", "--wd", "1"]),
    ("sub, depth 2", 19, "sub", "train-mlp", ["--depth", "2", "--width", "32", "--steps", "1500"]),
    ("mul (discrete logarithms), depth 1", 23, "mul", "train-mlp",
     ["--depth", "1", "--width", "48", "--steps", "2000"]),
    ("add, depth 0 (logits as neurons)", 17, "add", "train-mlp", ["--depth", "0", "--steps", "800"]),
    ("add, transformer, one layer with '='", 23, "add", "train-transformer",
     ["--d-model", "32", "--d-mlp", "64", "--steps", "400"]),
    ("sub, transformer, two layers, full attention, alpha 0.5, no '='", 19, "sub", "train-transformer",
     ["--layers", "2", "--d-model", "24", "--heads", "3", "--d-mlp", "48", "--attention", "full",
      "--attn-coeff", "0.5", "--no-eq-token", "--act", "gelu", "--steps", "300"]),
]


def fourier_basis(n):
    """Nanda's basis: constant, then cos and sin of each frequency, unit rows."""
    rows = [np.ones(n)]
    for k in range(1, n // 2 + 1):
        rows.append(np.cos(2 * np.pi * k * np.arange(n) / n))
        if 2 * k != n:
            rows.append(np.sin(2 * np.pi * k * np.arange(n) / n))
    B = np.array(rows)
    return B / np.linalg.norm(B, axis=1, keepdims=True)


def group(p, op):
    """(n, residue of each coordinate, sign): the op as a sum in Z_n."""
    sign = 1 if op in ("add", "mul") else -1
    if op in ("add", "sub"):
        return p, np.arange(p), sign
    g = next(g for g in range(2, p) if len({pow(g, e, p) for e in range(p - 1)}) == p - 1)
    return p - 1, np.array([pow(g, e, p) for e in range(p - 1)]), sign


def xent(logits, labels):
    z = logits - logits.max(axis=1, keepdims=True)
    return float(np.mean(np.log(np.exp(z).sum(axis=1)) - z[np.arange(len(labels)), labels]))


def term(B, i, j):
    """fourier_2d_basis_term: the outer product of basis rows i (x) and j (y), flattened."""
    return (B[i][:, None] * B[j][None, :]).flatten()


def xpy_directions(B, n, k, sign):
    """cos and sin of w_k (u + sign v), unit, as get_component_cos_xpy / sin_xpy build them."""
    if 2 * k == n:
        return [term(B, n - 1, n - 1)]
    c, s = 2 * k - 1, 2 * k
    cos = (term(B, c, c) - sign * term(B, s, s)) / np.sqrt(2)
    sin = (term(B, s, c) + sign * term(B, c, s)) / np.sqrt(2)
    return [cos, sin]


def reference(arr, p, op, threshold, fixed=None):
    """Every measure from the tool's own arrays, in float64 (fixed: the key frequencies given)."""
    n, res, sign = group(p, op)
    rows = (res[:, None] * p + res[None, :]).flatten()      # the group's pairs, (u, v) order
    logits = arr["logits"].astype(np.float64)[rows]          # (n^2, p)
    labels = arr["labels"][rows]
    train = arr["train"][rows].astype(bool)
    B = fourier_basis(n)
    out = {}
    acts = arr["neurons"] if "neurons" in arr else arr["logits"]
    acts = acts.astype(np.float64)[rows]
    acts = acts - acts.mean(axis=0)
    F = np.einsum("xyz,fx,Fy->fFz", acts.reshape(n, n, -1), B, B)
    best, share = [], []
    for j in range(F.shape[2]):
        total = (F[:, :, j] ** 2).sum()
        fr = []
        for k in range(1, n // 2 + 1):
            idx = [0, 2 * k - 1] + ([2 * k] if 2 * k != n else [])
            fr.append((F[np.ix_(idx, idx, [j])] ** 2).sum() / total if total > 0 else 0)
        best.append(int(np.argmax(fr)) + 1 if total > 0 and max(fr) > 0 else 0)
        share.append(max(fr) if total > 0 else 0)
    out["neuron_freq"], out["neuron_share"] = np.array(best), np.array(share)
    keys = fixed or sorted({b for b, s in zip(best, share) if s >= threshold})
    out["key_freqs"] = keys
    trig = np.zeros_like(logits)
    for k in keys:
        for d in xpy_directions(B, n, k, sign):
            trig += d[:, None] @ (d[None, :] @ logits)
    restricted = (logits - trig).mean(axis=0, keepdims=True) + trig   # bias correction
    out["loss_all"] = xent(logits, labels)
    out["restricted_loss"] = xent(restricted, labels)
    out["excluded_loss"] = xent((logits - trig)[train], labels[train])
    centred = logits - logits.mean(axis=0, keepdims=True)
    out["key_var_frac"] = float((trig ** 2).sum() / (centred ** 2).sum())
    if n % 2:
        table = np.zeros((n, n))
        u, v = np.divmod(np.arange(n * n), n)
        table[(u + sign * v) % n, (u - sign * v) % n] = logits[np.arange(n * n), labels]
        out["distance_irrelevance"] = float(np.mean(np.std(table, axis=0)) / np.std(table.flatten()))
    else:
        out["distance_irrelevance"] = None
    return out, res


def embed_spectrum(W0, p, res, n, col0):
    """Norm fraction per frequency of the columns col0 + residue, over the group."""
    B = fourier_basis(n)
    E = W0[:, col0 + res].astype(np.float64)      # (d, n), group order
    c2 = ((E @ B.T) ** 2).sum(axis=0)
    per = [c2[2 * k - 1] + (c2[2 * k] if 2 * k != n else 0) for k in range(1, n // 2 + 1)]
    return np.array(per) / c2[1:].sum()


def mlp_forward64(params, depth, p):
    """Logits and last hidden activations of every pair (x p + y), float64, and a function of the first layer's inputs."""
    W = [torch.tensor(np.array(params[f"layers.{i}.weight"]), dtype=torch.float64) for i in range(depth + 1)]
    b = [torch.tensor(np.array(params[f"layers.{i}.bias"]), dtype=torch.float64) for i in range(depth + 1)]

    def from_embedded(ex, ey):
        h = ex + ey + b[0]
        acts = None
        for i in range(1, depth + 1):
            h = torch.relu(h)
            acts = h
            h = h @ W[i].T + b[i]
        return h, acts

    x, y = np.divmod(np.arange(p * p), p)
    ex, ey = W[0][:, x].T, W[0][:, p + y].T
    return from_embedded, ex, ey


def transformer_forward64(params, meta, p):
    """As mlp_forward64 for the papers' module (check_transformer.py's) in float64: the
    embedded x and y are the vectors W_E[:, x], W_E[:, y] before W_pos is added, and the
    neurons the last block's MLP activations at the last position."""
    from check_transformer import Transformer
    c = {"p": p, "layers": int(meta["layers"]), "d_model": int(meta["d_model"]), "heads": int(meta["heads"]),
         "d_head": int(meta["d_head"]), "d_mlp": int(meta["d_mlp"]), "attention": meta["attention"],
         "alpha": float(meta["attn_coeff"]), "act": meta["act"], "eq_token": bool(int(meta["eq_token"]))}
    model = Transformer(c).double()
    model.load_state_dict({n: torch.tensor(np.array(t), dtype=torch.float64) for n, t in params.items()},
                          strict=False)
    W_E = model.embed.W_E.detach()

    def from_embedded(ex, ey):
        cols = [ex, ey] + ([W_E[:, p].expand_as(ex)] if c["eq_token"] else [])
        x = model.pos_embed(torch.stack(cols, dim=1))
        for block in model.blocks[:-1]:
            x = block(x)
        last = model.blocks[-1]
        x = x + last.attn(x)
        h = torch.einsum("md,bpd->bpm", last.mlp.W_in, x) + last.mlp.b_in
        h = torch.relu(h) if c["act"] == "relu" else torch.nn.functional.gelu(h)
        x = x + torch.einsum("dm,bpm->bpd", last.mlp.W_out, h) + last.mlp.b_out
        return model.unembed(x)[:, -1], h[:, -1]

    x, y = np.divmod(np.arange(p * p), p)
    return from_embedded, W_E[:, x].T, W_E[:, y].T


def symmetricity64(from_embedded, ex, ey, labels, p):
    """The mean cosine over all (x, y, c) between d logit_c / d e_x and / d e_y, and over the labels."""
    ex, ey = ex.clone().requires_grad_(True), ey.clone().requires_grad_(True)
    logits, _ = from_embedded(ex, ey)
    cos = []
    for c in range(p):
        gx, gy = torch.autograd.grad(logits[:, c].sum(), [ex, ey], retain_graph=True)
        cos.append(torch.nn.functional.cosine_similarity(gx, gy, dim=1))
    cos = torch.stack(cos, dim=1)                 # (p^2, p)
    ok = torch.isfinite(cos)
    rows = torch.arange(p * p)
    lab = torch.tensor(labels, dtype=torch.long)
    has = lab >= 0
    correct = cos[rows[has], lab[has]]
    return float(cos[ok].mean()), float(correct[torch.isfinite(correct)].mean())


def close(a, b, tol):
    return a is not None and b is not None and math.isfinite(a) and abs(a - b) <= tol * max(1.0, abs(b))


def check_case(tap, bindir, work, k, name, p, op, trainer, args):
    data = os.path.join(work, f"pdata{k}.safetensors")
    run([os.path.join(bindir, "gen-modadd"), "-p", str(p), "--op", op, "--frac", "0.5", "--seed", str(k),
         "-o", data])
    ck = os.path.join(work, f"pck{k}")
    steps = args[args.index("--steps") + 1]
    run([os.path.join(bindir, trainer), "--data", data, "--ckpt-dir", ck, "--log-every", steps,
         "--seed", str(k), "--quiet"] + args)
    path = os.path.join(ck, f"step-{int(steps):08d}.safetensors")
    arrays = os.path.join(work, f"parr{k}.safetensors")
    rec = [r for r in read_jsonl(run([os.path.join(bindir, "progress-measures"), "--data", data,
                                      "--arrays", arrays, path])) if r["record"] == "progress"][0]
    _, arr = load_st(arrays)
    meta, params = load_st(path)
    tfm = trainer == "train-transformer"
    if tfm:
        from_embedded, ex, ey = transformer_forward64(params, meta, p)
    else:
        from_embedded, ex, ey = mlp_forward64(params, rec["depth"], p)
    with torch.no_grad():
        logits64, acts64 = from_embedded(ex, ey)
    scale = float(logits64.abs().max())
    dl = float((torch.tensor(arr["logits"], dtype=torch.float64) - logits64).abs().max()) / scale
    da = 0.0
    if acts64 is not None:
        da = float((torch.tensor(arr["neurons"], dtype=torch.float64) - acts64).abs().max()) / \
            float(acts64.abs().max())
    tap.ok(dl < LOGIT_RTOL and da < LOGIT_RTOL,
           f"{name}: the tool's logits and neurons are the checkpoint's (float64 forward), "
           f"max relative diff {dl:.1e} and {da:.1e} (< {LOGIT_RTOL:g})")

    ref, res = reference(arr, p, op, rec["neurons"]["threshold"])
    n = len(res)
    bad = int((np.array(arr["neuron_freq"]) != ref["neuron_freq"]).sum())
    dshare = float(np.abs(np.array(arr["neuron_share"]) - ref["neuron_share"]).max())
    tap.ok(bad == 0 and dshare < RTOL, f"{name}: every neuron's frequency ({bad} differ) and share "
           f"(max diff {dshare:.1e}) as Nanda's fft2d / extract_freq_2d")
    tap.ok(rec["key_freqs"] == ref["key_freqs"], f"{name}: key frequencies {rec['key_freqs']} "
           f"(reference {ref['key_freqs']})")
    for f in ("loss_all", "restricted_loss", "excluded_loss", "key_var_frac"):
        tap.ok(close(rec[f], ref[f], RTOL), f"{name}: {f} {rec[f]} against {ref[f]} (< {RTOL:g})")
    di = rec["distance_irrelevance"]
    if ref["distance_irrelevance"] is None:
        tap.ok(di is None, f"{name}: distance irrelevance null for the even group order {n}")
    else:
        tap.ok(close(di, ref["distance_irrelevance"], RTOL),
               f"{name}: distance irrelevance {di} against {ref['distance_irrelevance']} (< {RTOL:g})")
    # The MLP's one-hot first layer: x in columns 0..p-1, y in p..2p-1; the transformer's W_E for both.
    W0 = np.array(params["embed.W_E" if tfm else "layers.0.weight"])
    worst = 0.0
    for i, side in enumerate(("x", "y")):
        want = embed_spectrum(W0, p, res, n, 0 if tfm else i * p)
        worst = max(worst, float(np.abs(np.array(rec["embedding"][side]["freq_frac"]) - want).max()))
    tap.ok(worst < RTOL, f"{name}: embedding spectra of x and y, max diff {worst:.1e} (< {RTOL:g})")
    # The projections with several key frequencies, whatever the training found.
    fixed = [1, 3, n // 2]
    rk = [r for r in read_jsonl(run([os.path.join(bindir, "progress-measures"), "--data", data,
                                     "--keys", ",".join(map(str, fixed)), "--no-symmetricity", path]))
          if r["record"] == "progress"][0]
    refk, _ = reference(arr, p, op, rec["neurons"]["threshold"], fixed)
    good = all(close(rk[f], refk[f], RTOL) for f in ("restricted_loss", "excluded_loss", "key_var_frac"))
    tap.ok(good and rk["key_freqs"] == fixed and rk["gradient_symmetricity"] is None,
           f"{name}: --keys {fixed}: restricted {rk['restricted_loss']}, excluded {rk['excluded_loss']}, "
           f"variance share {rk['key_var_frac']} against {refk['restricted_loss']}, {refk['excluded_loss']}, "
           f"{refk['key_var_frac']}")
    sym, symc = symmetricity64(from_embedded, ex, ey, arr["labels"], p)
    tap.ok(close(rec["gradient_symmetricity"], sym, SYM_TOL) and
           close(rec["gradient_symmetricity_correct"], symc, SYM_TOL),
           f"{name}: gradient symmetricity over {p ** 3} triples {rec['gradient_symmetricity']} and "
           f"{rec['gradient_symmetricity_correct']} against autograd's {sym} and {symc}")
    return ref


def main():
    bindir, work = sys.argv[1], sys.argv[2]
    torch.set_num_threads(1)
    tap = Tap()
    keys_seen = 0
    for k, (name, p, op, trainer, args) in enumerate(CASES):
        ref = check_case(tap, bindir, work, k, name, p, op, trainer, args)
        keys_seen += len(ref["key_freqs"])
    # The restricted and excluded losses are only tested where there are key frequencies.
    tap.ok(keys_seen > 0, f"the cases have key frequencies to restrict to ({keys_seen} in all)")
    return tap.done()


if __name__ == "__main__":
    sys.exit(main())
