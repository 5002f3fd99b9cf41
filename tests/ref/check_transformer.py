#!/usr/bin/env python3
"""The transformer against PyTorch: the papers' module (Nanda et al.'s
progress-measures transformer with pizza's attention coefficient alpha),
written here in float64 with their parameter names, on the same weights and
rows as our C kernels.  Loss and gradient to 1e-10 relative, Hessian-vector
products (double backward) to 1e-8, for L = 1 and 2, causal and full
attention, alpha in {0, 0.3, 1}, with and without '=', ReLU and GELU; the
float32 kernels to float32 accuracy (loss and gradient 1e-4, products 1e-3);
the naive C reference to 1e-10.

The C side is the unit-test binary's --ref mode (BINDIR/../test/test_transformer).

Then train-transformer against torch.optim.AdamW in float32 from our step-0
checkpoint, full batch, 100 steps with warm-up: free-running, the training
loss after every step to 1e-4 relative and the final weights to 1e-3; step
by step (PyTorch stepping from our parameters of the step before), every
update to 1e-5.

Last, the analysis tools on a trained transformer checkpoint (float32, so
float32 accuracy): hess-eig's top eigenvalues against Lanczos over
PyTorch's double-backward products, gop-spectrum's spectrum, trace and
per-group traces against J J^T / n from PyTorch's per-example gradients.

usage: check_transformer.py BINDIR WORKDIR    (prints TAP)"""

import json
import os
import struct
import sys

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from refcommon import Tap, load_st, read_jsonl, run

TRAIN_STEPS = 100
EIG_RTOL = 1e-4
GOP_RTOL = 1e-5
FREE_LOSS_RTOL = 1e-4
FREE_RTOL = 1e-3
STEP_RTOL = 1e-5
LOSS_RTOL = 1e-10
GRAD_RTOL = 1e-10
HVP_RTOL = 1e-8
F32_RTOL = 1e-4       # float32 loss and gradient
F32_HVP_RTOL = 1e-3   # float32 H v: a difference of products, with cancellation


# The papers' module, without the hook points: same parameters, shapes,
# initialisation and einsums.  Where ours differs from theirs on purpose
# (alpha under a causal mask, W_U's p columns) it follows docs/design.md.
class Embed(nn.Module):
    def __init__(self, d_vocab, d_model):
        super().__init__()
        self.W_E = nn.Parameter(torch.randn(d_model, d_vocab) / np.sqrt(d_model))

    def forward(self, x):
        return torch.einsum("dbp -> bpd", self.W_E[:, x])


class Unembed(nn.Module):
    def __init__(self, d_out, d_vocab, d_model):
        super().__init__()
        self.W_U = nn.Parameter(torch.randn(d_model, d_out) / np.sqrt(d_vocab))

    def forward(self, x):
        return x @ self.W_U


class PosEmbed(nn.Module):
    def __init__(self, max_ctx, d_model):
        super().__init__()
        self.W_pos = nn.Parameter(torch.randn(max_ctx, d_model) / np.sqrt(d_model))

    def forward(self, x):
        return x + self.W_pos[:x.shape[-2]]


class Attention(nn.Module):
    def __init__(self, d_model, num_heads, d_head, n_ctx, attn_coeff, causal):
        super().__init__()
        self.W_K = nn.Parameter(torch.randn(num_heads, d_head, d_model) / np.sqrt(d_model))
        self.W_Q = nn.Parameter(torch.randn(num_heads, d_head, d_model) / np.sqrt(d_model))
        self.W_V = nn.Parameter(torch.randn(num_heads, d_head, d_model) / np.sqrt(d_model))
        self.W_O = nn.Parameter(torch.randn(d_model, d_head * num_heads) / np.sqrt(d_model))
        self.register_buffer("mask", torch.tril(torch.ones((n_ctx, n_ctx))))
        self.d_head, self.attn_coeff, self.causal = d_head, attn_coeff, causal

    def forward(self, x):
        k = torch.einsum("ihd,bpd->biph", self.W_K, x)
        q = torch.einsum("ihd,bpd->biph", self.W_Q, x)
        v = torch.einsum("ihd,bpd->biph", self.W_V, x)
        scores = torch.einsum("biph,biqh->biqp", k, q)
        n = x.shape[-2]
        if self.causal:
            scores = torch.tril(scores) - 1e10 * (1 - self.mask[:n, :n])
        attn = F.softmax(scores / np.sqrt(self.d_head), dim=-1) * self.attn_coeff + (1 - self.attn_coeff)
        if self.causal:
            attn = attn * self.mask[:n, :n]
        z = torch.einsum("biph,biqp->biqh", v, attn)
        z_flat = z.permute(0, 2, 1, 3).reshape(z.shape[0], n, -1)   # 'b i q h -> b q (i h)'
        return torch.einsum("df,bqf->bqd", self.W_O, z_flat)


class MLP(nn.Module):
    def __init__(self, d_model, d_mlp, act_type):
        super().__init__()
        self.W_in = nn.Parameter(torch.randn(d_mlp, d_model) / np.sqrt(d_model))
        self.b_in = nn.Parameter(torch.zeros(d_mlp))
        self.W_out = nn.Parameter(torch.randn(d_model, d_mlp) / np.sqrt(d_model))
        self.b_out = nn.Parameter(torch.zeros(d_model))
        self.act_type = act_type

    def forward(self, x):
        x = torch.einsum("md,bpd->bpm", self.W_in, x) + self.b_in
        x = F.relu(x) if self.act_type == "relu" else F.gelu(x)
        return torch.einsum("dm,bpm->bpd", self.W_out, x) + self.b_out


class TransformerBlock(nn.Module):
    def __init__(self, d_model, d_mlp, d_head, num_heads, n_ctx, act_type, attn_coeff, causal):
        super().__init__()
        self.attn = Attention(d_model, num_heads, d_head, n_ctx, attn_coeff, causal)
        self.mlp = MLP(d_model, d_mlp, act_type)

    def forward(self, x):
        x = x + self.attn(x)
        return x + self.mlp(x)


class Transformer(nn.Module):
    def __init__(self, c):
        super().__init__()
        d_vocab, n_ctx = c["p"] + c["eq_token"], 2 + c["eq_token"]
        self.embed = Embed(d_vocab, c["d_model"])
        self.pos_embed = PosEmbed(n_ctx, c["d_model"])
        self.blocks = nn.ModuleList([TransformerBlock(c["d_model"], c["d_mlp"], c["d_head"], c["heads"], n_ctx,
                                                      c["act"], c["alpha"], c["attention"] == "causal")
                                     for _ in range(c["layers"])])
        self.unembed = Unembed(c["p"], d_vocab, c["d_model"])

    def forward(self, x):
        x = self.pos_embed(self.embed(x))
        for block in self.blocks:
            x = block(x)
        return self.unembed(x)


def cross_entropy_high_precision(logits, labels):
    logprobs = F.log_softmax(logits.to(torch.float64), dim=-1)
    return -torch.mean(torch.gather(logprobs, index=labels[:, None], dim=-1))


def save_st(path, tensors, meta):
    """A safetensors file of F64 and I32 arrays, without our C code."""
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


def case(c, seed, work, tbin, tap):
    torch.manual_seed(seed)
    model = Transformer(c).double()
    with torch.no_grad():   # non-zero biases, and sharper attention than at initialisation
        for name, t in model.named_parameters():
            t.copy_(0.3 * torch.randn_like(t) if ".b_" in name else 1.5 * t)
    p = c["p"]
    pairs = torch.tensor([(a, b) for a in range(p) for b in range(p)], dtype=torch.long)
    labels = (pairs[:, 0] + pairs[:, 1]) % p
    tokens = torch.cat([pairs, torch.full((len(pairs), 1), p)], 1) if c["eq_token"] else pairs
    params = dict(model.named_parameters())
    v = {n: torch.randn_like(t) for n, t in params.items()}
    tensors = {n: t.detach().numpy() for n, t in params.items()}
    tensors.update({"v." + n: t.numpy() for n, t in v.items()})
    tensors["x"], tensors["y"] = pairs.numpy().astype(np.int32), labels.numpy().astype(np.int32)
    src, dst = os.path.join(work, f"tin{seed}.safetensors"), os.path.join(work, f"tout{seed}.safetensors")
    save_st(src, tensors, {k: str(int(x) if isinstance(x, bool) else x) for k, x in c.items()})
    run([tbin, "--ref", src, dst])
    _, ours = load_st(dst)

    # Our files load into their class as they are (the mask is a buffer, not in the file).
    fresh = Transformer(c).double()
    res = fresh.load_state_dict({n: torch.tensor(tensors[n]) for n in params}, strict=False)
    names = list(params)
    loss = cross_entropy_high_precision(model(tokens)[:, -1], labels)
    grads = torch.autograd.grad(loss, [params[n] for n in names], create_graph=True)
    gv = sum((g * v[n]).sum() for g, n in zip(grads, names))
    hvs = torch.autograd.grad(gv, [params[n] for n in names])
    g = {n: t.detach().numpy() for n, t in zip(names, grads)}
    hv = {n: t.numpy() for n, t in zip(names, hvs)}
    L = float(loss)

    def rel(prefix, theirs):
        scale = max(np.max(np.abs(t)) for t in theirs.values())
        return max(np.max(np.abs(ours[prefix + n] - theirs[n])) for n in names) / scale

    what = (f"L={c['layers']} {c['attention']} alpha={c['alpha']} {'=' if c['eq_token'] else 'no ='} "
            f"{c['act']}")
    dl, dg, dh = abs(ours["loss"][0] - L) / L, rel("grad.", g), rel("hv.", hv)
    tap.ok(not res.unexpected_keys and all(k.endswith(".mask") for k in res.missing_keys),
           f"{what}: our tensors load into the papers' module by name (missing only {len(res.missing_keys)} masks)")
    tap.ok(dl < LOSS_RTOL and dg < GRAD_RTOL, f"{what}: double loss {ours['loss'][0]:.12f} vs torch "
           f"{L:.12f} (rel {dl:.1e}), gradient max rel diff {dg:.1e} (< {GRAD_RTOL:g})")
    tap.ok(dh < HVP_RTOL, f"{what}: double H v (R-operator) vs torch double backward, max rel diff {dh:.1e} "
           f"(< {HVP_RTOL:g})")
    rl, rg = abs(ours["ref.loss"][0] - L) / L, rel("ref.grad.", g)
    tap.ok(rl < LOSS_RTOL and rg < GRAD_RTOL, f"{what}: naive reference loss rel {rl:.1e}, gradient {rg:.1e}")
    fl, fg, fh = abs(ours["loss32"][0] - L) / L, rel("grad32.", g), rel("hv32.", hv)
    tap.ok(fl < F32_RTOL and fg < F32_RTOL and fh < F32_HVP_RTOL, f"{what}: float32 loss rel {fl:.1e}, "
           f"gradient {fg:.1e} (< {F32_RTOL:g}), H v {fh:.1e} (< {F32_HVP_RTOL:g})")
    return max(dl, dg), dh


TRAIN_CASES = [
    ("L=1 causal alpha=1 '=' relu", []),
    ("L=2 full alpha=0.3 no '=' gelu", ["--layers", "2", "--attention", "full", "--attn-coeff", "0.3",
                                        "--no-eq-token", "--act", "gelu"]),
    ("L=1 full alpha=0 no '=' relu, wd 2", ["--attention", "full", "--attn-coeff", "0", "--no-eq-token",
                                            "--wd", "2"]),
]


def torch_setup(config, params, data):
    m, o = config["model"], config["optim"]
    model = Transformer(dict(m, alpha=m["attn_coeff"]))
    model.load_state_dict({n: torch.tensor(np.array(t)) for n, t in params.items()}, strict=False)
    opt = torch.optim.AdamW(model.parameters(), lr=o["lr"], betas=(o["beta1"], o["beta2"]), eps=o["eps"],
                            weight_decay=o["wd"])
    pairs = torch.tensor(np.array(data["train.x"]), dtype=torch.long)
    p = m["p"]
    tokens = torch.cat([pairs, torch.full((len(pairs), 1), p)], 1) if m["eq_token"] else pairs
    # The papers' schedule as they write it: LambdaLR stepped after every update,
    # so the first update runs at learning rate 0 (train-transformer's default).
    warmup = config["warmup"]
    assert warmup == 10 and config.get("warmup_origin", 1) == 0, "not the papers' warm-up"
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(s / warmup, 1))
    return model, (opt, sched), tokens, torch.tensor(np.array(data["train.y"]), dtype=torch.long)


def torch_step(config, model, opt, tokens, labels, s):
    """One update (the s-th, from 1) and the schedule's step after it."""
    opt, sched = opt
    opt.zero_grad()
    cross_entropy_high_precision(model(tokens)[:, -1], labels).backward()
    opt.step()
    sched.step()
    with torch.no_grad():
        return float(cross_entropy_high_precision(model(tokens)[:, -1], labels))


def flat_params(model_or_dict, names):
    if isinstance(model_or_dict, nn.Module):
        d = dict(model_or_dict.named_parameters())
        return torch.cat([d[n].detach().reshape(-1).double() for n in names])
    return torch.cat([torch.tensor(np.array(model_or_dict[n]), dtype=torch.float64).reshape(-1) for n in names])


def train_case(name, args, k, bindir, work, data_path, data, tap):
    ck, out = os.path.join(work, f"tck{k}"), os.path.join(work, f"tfinal{k}.safetensors")
    log = read_jsonl(run([os.path.join(bindir, "train-transformer"), "--data", data_path, "--d-model", "32",
                          "--d-mlp", "64", "--steps", str(TRAIN_STEPS), "--log-every", "1", "--ckpt-dir", ck,
                          "--ckpt-every", "1", "--out", out, "--seed", str(k), "--quiet"] + args))
    config = log[0]["config"]
    ours = [r["train_loss"] for r in log if r["record"] == "metrics" and r["step"] > 0]
    ckpts = [load_st(os.path.join(ck, f"step-{s:08d}.safetensors"))[1] for s in range(TRAIN_STEPS + 1)]
    model, opt, tokens, labels = torch_setup(config, ckpts[0], data)
    names = [n for n, _ in model.named_parameters()]
    theirs = [torch_step(config, model, opt, tokens, labels, s) for s in range(1, TRAIN_STEPS + 1)]
    rel = max(abs(a - b) / abs(b) for a, b in zip(ours, theirs))
    final = flat_params(load_st(out)[1], names)
    prel = float((final - flat_params(model, names)).norm() / flat_params(model, names).norm())
    tap.ok(len(ours) == TRAIN_STEPS and rel < FREE_LOSS_RTOL, f"train {name}: free-running training loss at "
           f"each of {TRAIN_STEPS} steps, max rel diff {rel:.1e} (< {FREE_LOSS_RTOL:g}); loss "
           f"{theirs[0]:.4f} -> {theirs[-1]:.4f}")
    tap.ok(prel < FREE_RTOL, f"train {name}: free-running final weights, rel diff {prel:.1e} (< {FREE_RTOL:g})")
    model, opt, tokens, labels = torch_setup(config, ckpts[0], data)
    worst = 0.0
    for s in range(1, TRAIN_STEPS + 1):
        with torch.no_grad():
            for n, q in model.named_parameters():
                q.copy_(torch.tensor(np.array(ckpts[s - 1][n])))
        torch_step(config, model, opt, tokens, labels, s)
        want = flat_params(ckpts[s], names)
        worst = max(worst, float((flat_params(model, names) - want).norm() / want.norm()))
    tap.ok(worst < STEP_RTOL, f"train {name}: step by step, each of {TRAIN_STEPS} AdamW updates lands on our "
           f"weights, max rel diff {worst:.1e} (< {STEP_RTOL:g})")


def torch_lanczos_top(hvp, n, k, steps, seed):
    """Lanczos with full reorthogonalisation in float64: the top k Ritz values."""
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
        beta.append(float(w.norm()))
        Q[j + 1] = w / beta[-1]
    T = np.diag(alpha) + np.diag(beta[:-1], 1) + np.diag(beta[:-1], -1)
    return np.sort(np.linalg.eigvalsh(T))[::-1][:k]


def analysis_case(bindir, work, data_path, data, tap):
    ck = os.path.join(work, "tana.safetensors")
    args = ["--layers", "2", "--attention", "full", "--attn-coeff", "0.5", "--act", "gelu"]
    run([os.path.join(bindir, "train-transformer"), "--data", data_path, "--d-model", "16", "--d-mlp", "32",
         "--steps", "60", "--out", ck, "--seed", "9", "--quiet"] + args)
    meta, params = load_st(ck)
    c = {"p": int(meta["p"]), "layers": 2, "d_model": 16, "heads": 4, "d_head": 4, "d_mlp": 32,
         "attention": "full", "alpha": 0.5, "act": "gelu", "eq_token": True}
    model = Transformer(c).double()
    model.load_state_dict({n: torch.tensor(np.array(t)) for n, t in params.items()}, strict=False)
    pairs = torch.tensor(np.array(data["train.x"]), dtype=torch.long)
    tokens = torch.cat([pairs, torch.full((len(pairs), 1), c["p"])], 1)
    labels = torch.tensor(np.array(data["train.y"]), dtype=torch.long)
    ps = list(model.parameters())
    n_par = sum(q.numel() for q in ps)

    def hvp(v):
        g = torch.autograd.grad(cross_entropy_high_precision(model(tokens)[:, -1], labels), ps, create_graph=True)
        flat_g = torch.cat([x.reshape(-1) for x in g])
        return torch.cat([x.reshape(-1) for x in torch.autograd.grad(flat_g @ v, ps)])
    rec = read_jsonl(run([os.path.join(bindir, "hess-eig"), "--data", data_path, "--top", "5", "--tol", "1e-6",
                          "--max-iter", "300", ck]))[1]
    theirs = torch_lanczos_top(hvp, n_par, 5, 200, 0)
    rel = float(np.max(np.abs(np.array(rec["eigenvalues"]) - theirs)) / abs(theirs[0]))
    tap.ok(rec["converged"] and rel < EIG_RTOL, f"hess-eig on a transformer: top-5 eigenvalues "
           f"{rec['eigenvalues'][0]:.6f}... vs torch float64 Lanczos {theirs[0]:.6f}..., max rel diff {rel:.1e} "
           f"(< {EIG_RTOL:g})")
    rows = []
    for b in range(len(labels)):
        g = torch.autograd.grad(cross_entropy_high_precision(model(tokens[b:b + 1])[:, -1], labels[b:b + 1]), ps)
        rows.append(torch.cat([x.reshape(-1) for x in g]))
    J = torch.stack(rows)
    n = len(labels)
    K = J @ J.T / n
    ev = torch.linalg.eigvalsh(K).flip(0).numpy()
    grec = read_jsonl(run([os.path.join(bindir, "gop-spectrum"), "--data", data_path, "--per-layer", ck]))[1]
    erel = float(np.max(np.abs(np.array(grec["gop"]["top"]) - ev[:10]) / ev[:10]))
    tr = float(torch.trace(K))
    trel = abs(grec["gop"]["trace"] - tr) / tr
    tap.ok(erel < GOP_RTOL and trel < GOP_RTOL, f"gop-spectrum on a transformer: top-10 eigenvalues of J J^T / n "
           f"max rel diff {erel:.1e}, trace {grec['gop']['trace']:.8f} vs {tr:.8f} (< {GOP_RTOL:g})")
    bounds = {"embed": (0, 2), "unembed": (len(ps) - 1, len(ps))}
    groups = [bounds["embed"]] + [(2 + 8 * l + 4 * h, 2 + 8 * l + 4 * h + 4) for l in range(2) for h in range(2)]
    groups.append(bounds["unembed"])
    sizes = np.cumsum([0] + [q.numel() for q in ps])
    worst = 0.0
    for i, (a, b) in enumerate(groups):
        Ji = J[:, sizes[a]:sizes[b]]
        want = float((Ji * Ji).sum() / n)
        worst = max(worst, abs(grec["layers"][i]["trace"] - want) / want)
    tap.ok(len(grec["layers"]) == 6 and worst < GOP_RTOL, f"gop-spectrum on a transformer: the traces of the 6 "
           f"groups (embed, blocks.l.attn/mlp, unembed), max rel diff {worst:.1e}")


def main():
    bindir, work = sys.argv[1], sys.argv[2]
    tbin = os.path.join(bindir, "..", "test", "test_transformer")
    torch.set_num_threads(1)
    tap = Tap()
    worst_g = worst_h = 0.0
    seed = 0
    for layers in (1, 2):
        for attention in ("causal", "full"):
            for alpha in (0.0, 0.3, 1.0):
                for eq in (True, False):
                    for act in ("relu", "gelu"):
                        c = {"p": 11, "layers": layers, "d_model": 16, "heads": 3, "d_head": 5, "d_mlp": 24,
                             "attention": attention, "alpha": alpha, "act": act, "eq_token": eq}
                        seed += 1
                        g, h = case(c, seed, work, tbin, tap)
                        worst_g, worst_h = max(worst_g, g), max(worst_h, h)
    print(f"# worst over {seed} configurations: loss/gradient rel {worst_g:.1e}, H v rel {worst_h:.1e}")
    data_path = os.path.join(work, "tdata.safetensors")
    run([os.path.join(bindir, "gen-modadd"), "-p", "23", "--frac", "0.5", "--seed", "3", "-o", data_path])
    _, data = load_st(data_path)
    torch.set_flush_denormal(True)
    for k, (name, args) in enumerate(TRAIN_CASES):
        train_case(name, args, k, bindir, work, data_path, data, tap)
    analysis_case(bindir, work, data_path, data, tap)
    return tap.done()


if __name__ == "__main__":
    sys.exit(main())
