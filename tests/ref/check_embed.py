#!/usr/bin/env python3
"""The embedding MLP (train-mlp --embed, family mlp-embed) against PyTorch:
enerrio/grokking-mlp's module (net.py: Embedding(p + 2, E), the four
tokens "x + y =" concatenated, Linear, ReLU, ..., Linear(W, p + 2)) written
here in float64 with its state_dict names, on the same weights and rows as
our C code.  The naive double reference's loss and gradient to 1e-10
relative and its R-operator H v to 1e-8 (torch's double backward); the
float32 kernels to float32 accuracy (loss and gradient 1e-5, H v and the
Gauss-Newton product G v = J^T H_out J v, from torch's jvp and vjp,
1e-4).  The C side is the unit-test binary's --ref mode
(BINDIR/../test/test_mlp_embed).

Then train-mlp --embed against torch.optim.AdamW (betas (0.9, 0.98), wd
0.01, the source's optimiser) from our step-0 checkpoint, full batch, 20
steps, the logits cast to float64 before the loss as the source does: the
training loss after every step to 1e-5 relative and the final weights to
1e-4.  Last, hess-eig's top eigenvalues on a trained checkpoint against
Lanczos over torch's double-backward products, and pipeline/embed-pca's
2-D PCA of its embeddings against numpy's SVD.

usage: check_embed.py BINDIR WORKDIR    (prints TAP)"""

import json
import os
import struct
import sys

import numpy as np
import torch
from torch import nn

from check_hess import torch_lanczos_top
from refcommon import Tap, load_st, read_jsonl, run

STEPS = 20
EIG_RTOL = 1e-4


class EmbedMLP(nn.Module):
    """net.py's MLP, with depth hidden layers of width (the source: 1 x 128)."""

    def __init__(self, p, embed, depth, width):
        super().__init__()
        V = p + 2
        layers = [nn.Embedding(V, embed), nn.Flatten()]
        fan = 4 * embed
        for _ in range(depth):
            layers += [nn.Linear(fan, width), nn.ReLU()]
            fan = width
        layers.append(nn.Linear(fan, V))
        self.net = nn.Sequential(*layers)

    def forward(self, tokens):
        return self.net(tokens)


def tokens_of(x, p):
    """Rows (x, y) as the source's token rows [x, +, y, =]."""
    x = torch.as_tensor(np.array(x), dtype=torch.long)
    n = x.shape[0]
    return torch.stack([x[:, 0], torch.full((n,), p), x[:, 1], torch.full((n,), p + 1)], 1)


def save_st(path, tensors, meta):
    header, blobs, off = {"__metadata__": meta}, [], 0
    for name, a in tensors.items():
        a = np.ascontiguousarray(a)
        dtype = {np.float64: "F64", np.int32: "I32"}[a.dtype.type]
        header[name] = {"dtype": dtype, "shape": list(a.shape), "data_offsets": [off, off + a.nbytes]}
        blobs.append(a.tobytes())
        off += a.nbytes
    h = json.dumps(header).encode()
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + b"".join(blobs))


def rel(a, b):
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-300))


def kernels_case(c, seed, work, tbin, tap):
    p, E, depth, width = c
    torch.manual_seed(seed)
    model = EmbedMLP(p, E, depth, width).double()
    with torch.no_grad():   # biases away from zero, so that their derivatives count
        for name, t in model.named_parameters():
            if name.endswith("bias"):
                t.copy_(0.3 * torch.randn_like(t))
    pairs = np.array([(a, b) for a in range(p) for b in range(p)], dtype=np.int32)
    labels = ((pairs[:, 0] + pairs[:, 1]) % p).astype(np.int32)
    T, Y = tokens_of(pairs, p), torch.tensor(labels, dtype=torch.long)
    params = dict(model.named_parameters())
    names = list(params)
    v = {n: torch.randn_like(t) for n, t in params.items()}
    tensors = {n: t.detach().numpy() for n, t in params.items()}
    tensors.update({"v." + n: t.numpy() for n, t in v.items()})
    tensors["x"], tensors["y"] = pairs, labels
    inp, out = os.path.join(work, f"e{seed}.st"), os.path.join(work, f"e{seed}.out.st")
    save_st(inp, tensors, {"p": str(p), "embed": str(E), "depth": str(depth), "width": str(width)})
    run([tbin, "--ref", inp, out])
    _, o = load_st(out)

    def logits_of(*qs):
        """The module's forward as a function of its parameters (state_dict order)."""
        a = qs[0][T].reshape(T.shape[0], -1)
        for i in range(1, len(qs), 2):
            a = a @ qs[i].T + qs[i + 1]
            if i + 2 < len(qs):
                a = torch.relu(a)
        return a

    def loss_of(*qs):
        return nn.functional.cross_entropy(logits_of(*qs), Y)

    ps = tuple(params[n] for n in names)
    with torch.no_grad():
        assert torch.equal(logits_of(*ps), model(T)), "the functional forward is the module's"
    vs = tuple(v[n] for n in names)
    loss = loss_of(*ps)
    grads = torch.autograd.grad(loss, ps, create_graph=True)
    hv = torch.autograd.grad(sum((g * w).sum() for g, w in zip(grads, vs)), ps)
    g = torch.cat([t.detach().reshape(-1) for t in grads]).numpy()
    hv = torch.cat([t.reshape(-1) for t in hv]).numpy()

    # G v = J^T H_out J v: J v by jvp of the logits, H_out of the mean cross-entropy, J^T by vjp
    z, jv = torch.autograd.functional.jvp(logits_of, ps, vs)
    q = torch.softmax(z, -1)
    hjv = (q * jv - q * (q * jv).sum(-1, keepdim=True)) / len(labels)
    _, vj = torch.autograd.functional.vjp(logits_of, ps, hjv)
    gv = torch.cat([t.reshape(-1) for t in vj]).detach().numpy()

    # progress-measures' probe: d logit 1 / d (x's and y's looked-up vectors), row by row
    a = params["net.0.weight"].detach()[T].clone().requires_grad_(True)
    h = a.reshape(T.shape[0], -1)
    for i in range(1, len(ps), 2):
        h = h @ ps[i].detach().T + ps[i + 1].detach()
        if i + 2 < len(ps):
            h = torch.relu(h)
    (ga,) = torch.autograd.grad(h[:, 1].sum(), a)

    what = f"p={p} E={E} depth {depth} width {width}"
    pr = max(rel(o["probe.gx"], ga[:, 0].numpy()), rel(o["probe.gy"], ga[:, 2].numpy()))
    tap.ok(pr < 1e-5, f"{what}: the probes' gradients of logit 1 w.r.t. x's and y's embeddings, "
           f"relative {pr:.1e} (< 1e-5)")
    L = float(loss)
    tap.ok(abs(o["ref.loss"][0] - L) < 1e-10 * L and rel(o["ref.grad"], g) < 1e-10,
           f"{what}: double reference loss {o['ref.loss'][0]:.12f} vs torch {L:.12f}, gradient "
           f"relative {rel(o['ref.grad'], g):.1e} (< 1e-10)")
    tap.ok(rel(o["ref.hv"], hv) < 1e-8,
           f"{what}: double reference H v vs torch double backward, relative {rel(o['ref.hv'], hv):.1e} (< 1e-8)")
    tap.ok(abs(o["loss32"][0] - L) < 1e-5 * L and rel(o["grad32"], g) < 1e-5,
           f"{what}: float kernels' loss {o['loss32'][0]:.7f}, gradient relative "
           f"{rel(o['grad32'], g):.1e} (< 1e-5)")
    tap.ok(rel(o["hv32"], hv) < 1e-4,
           f"{what}: float kernels' H v relative {rel(o['hv32'], hv):.1e} (< 1e-4)")
    tap.ok(rel(o["gv32"], gv) < 1e-4 and rel(gv, hv) > 1e-2,
           f"{what}: float kernels' G v vs torch J^T H_out J v, relative {rel(o['gv32'], gv):.1e} "
           f"(< 1e-4; G differs from H by {rel(gv, hv):.1e})")


def adamw_case(bindir, work, tap):
    data = os.path.join(work, "edata.st")
    run([os.path.join(bindir, "gen-modadd"), "-p", "11", "--frac", "0.8", "--seed", "3", "-o", data])
    ck = os.path.join(work, "eck")
    log = read_jsonl(run([os.path.join(bindir, "train-mlp"), "--data", data, "--embed", "6", "--depth", "1",
                          "--width", "16", "--optim", "adamw", "--lr", "1e-2", "--beta1", "0.9", "--beta2",
                          "0.98", "--wd", "0.01", "--batch", "full", "--steps", str(STEPS), "--log-every", "1",
                          "--ckpt-every", str(STEPS), "--ckpt-dir", ck, "--seed", "5", "--quiet"]))
    _, d = load_st(data)
    p = 11
    meta, p0 = load_st(os.path.join(ck, "step-00000000.safetensors"))
    _, pN = load_st(os.path.join(ck, f"step-{STEPS:08d}.safetensors"))
    tap.ok(meta.get("family") == "mlp-embed" and sorted(p0) == sorted(
        ["net.0.weight", "net.2.weight", "net.2.bias", "net.4.weight", "net.4.bias"]),
        f"checkpoint: family {meta.get('family')}, tensors {sorted(p0)} (net.py's state_dict names)")
    model = EmbedMLP(p, 6, 1, 16)
    model.load_state_dict({k: torch.tensor(np.array(a)) for k, a in p0.items()})
    T, Y = tokens_of(d["train.x"], p), torch.tensor(np.array(d["train.y"]), dtype=torch.long)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2, betas=(0.9, 0.98), weight_decay=0.01, eps=1e-8)
    ours = [r["train_loss"] for r in log if r.get("record") == "metrics"]
    theirs = []
    for _ in range(STEPS):
        opt.zero_grad()
        loss = nn.functional.cross_entropy(model(T).double(), Y)
        loss.backward()
        opt.step()
        with torch.no_grad():
            theirs.append(float(nn.functional.cross_entropy(model(T).double(), Y)))
    worst = max(abs(a - b) / b for a, b in zip(ours[1:], theirs))
    tap.ok(len(ours) == STEPS + 1 and worst < 1e-5,
           f"AdamW (0.9, 0.98), wd 0.01: training loss after each of {STEPS} steps vs torch.optim.AdamW, "
           f"worst relative {worst:.1e} (< 1e-5)")
    sd = model.state_dict()
    wrel = max(rel(np.array(pN[k]), sd[k].numpy()) for k in pN)
    tap.ok(wrel < 1e-4, f"final weights after {STEPS} steps, worst tensor relative {wrel:.1e} (< 1e-4)")
    last = [r for r in log if r.get("record") == "metrics"][-1]["spectral_norms"]
    sv = [float(np.linalg.norm(np.array(pN[k], dtype=np.float64), 2)) for k in ("net.2.weight", "net.4.weight")]
    srel = rel(last, sv)
    tap.ok(len(last) == 2 and srel < 1e-12, f"the log's spectral norms {last} vs numpy's largest singular "
           f"values of the final checkpoint's weights, relative {srel:.1e} (< 1e-12)")
    return data, os.path.join(ck, f"step-{STEPS:08d}.safetensors")


def hess_case(bindir, data, path, tap):
    rec = read_jsonl(run([os.path.join(bindir, "hess-eig"), "--data", data, "--top", "3", "--tol", "1e-6",
                          "--max-iter", "300", path]))[1]
    _, params = load_st(path)
    _, d = load_st(data)
    p = 11
    model = EmbedMLP(p, 6, 1, 16).double()
    model.load_state_dict({k: torch.tensor(np.array(a), dtype=torch.float64) for k, a in params.items()})
    T, Y = tokens_of(d["train.x"], p), torch.tensor(np.array(d["train.y"]), dtype=torch.long)
    ps = list(model.parameters())

    def hvp(v):
        loss = nn.functional.cross_entropy(model(T), Y)
        gr = torch.autograd.grad(loss, ps, create_graph=True)
        fg = torch.cat([t.reshape(-1) for t in gr])
        return torch.cat([t.reshape(-1) for t in torch.autograd.grad(fg @ v, ps)])
    n = sum(q.numel() for q in ps)
    theirs = torch_lanczos_top(hvp, n, 3, min(n, 150), 0)
    ours = np.array(rec["eigenvalues"])
    r = float(np.max(np.abs(ours - theirs) / abs(theirs[0])))
    tap.ok(rec["converged"] and r < EIG_RTOL,
           f"hess-eig on an mlp-embed checkpoint: top eigenvalue {ours[0]:.8f} vs torch float64 Lanczos "
           f"{theirs[0]:.8f}, top-3 max relative diff {r:.1e} (< {EIG_RTOL:g})")


def pca_case(path, tap):
    """pipeline/embed-pca (od and awk) against numpy's SVD of the centred residue embeddings."""
    script = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "pipeline", "embed-pca")
    out = run([script, path]).splitlines()
    shares = [float(t) for t in out[0].split()[-2:]]
    ours = np.array([[float(t) for t in line.split("\t")[1:]] for line in out[2:]])
    meta, params = load_st(path)
    p = int(meta["p"])
    X = np.array(params["net.0.weight"], dtype=np.float64)[:p]
    X = X - X.mean(0)
    U, S, _ = np.linalg.svd(X, full_matrices=False)
    theirs = U[:, :2] * S[:2]
    # the plane's coordinates up to a rotation (PCA's signs): compare the pairwise distances
    dist = lambda Z: np.linalg.norm(Z[:, None, :] - Z[None, :, :], axis=-1)
    r = rel(dist(ours), dist(theirs))
    sr = rel(shares, S[:2] ** 2 / (S ** 2).sum())
    tap.ok(len(ours) == p and r < 1e-5 and sr < 1e-5,
           f"embed-pca: {p} residues' 2-D PCA vs numpy's SVD, pairwise distances relative {r:.1e}, "
           f"variance shares {shares} relative {sr:.1e} (< 1e-5)")


def main():
    bindir, work = sys.argv[1], sys.argv[2]
    torch.set_num_threads(1)
    tap = Tap()
    tbin = os.path.join(bindir, "..", "test", "test_mlp_embed")
    for k, c in enumerate([(7, 3, 1, 8), (5, 4, 2, 6), (7, 2, 0, 1)]):
        kernels_case(c, k, work, tbin, tap)
    data, path = adamw_case(bindir, work, tap)
    hess_case(bindir, data, path, tap)
    pca_case(path, tap)
    return tap.done()


if __name__ == "__main__":
    sys.exit(main())
