#!/usr/bin/env python3
"""train-mlp against PyTorch: the same data set file, the same initial
parameters (our step-0 checkpoint), the same minibatch order (PCG32
re-implemented here), N steps of each optimiser, two ways:

- free-running: each trains on its own; the full-training-set loss after
  every step must agree.  Over many steps a pre-activation that sits at the
  ReLU kink can fall on different sides in the two (rounding decides), and
  the trajectories then part by far more than rounding, by an amount that
  depends on the BLAS kernels' rounding: on an AMD EPYC with OpenBLAS's
  Haswell kernels, plain Adam's final parameters differed by 2e-2 while
  every one of its 100 updates agreed to 2e-8 step by step.  So the final
  parameters of the free runs are printed as a diagnostic, not asserted:
  a bound loose enough to hold on every kernel could catch nothing that
  the step-by-step check does not.
- step by step: before every step PyTorch is given our parameters of the
  step before (its optimiser moments accumulate from gradients taken at our
  points), takes one step, and must land on our next parameters.  This
  checks all N updates to rounding, with nothing to amplify a difference.

usage: check_train.py BINDIR WORKDIR    (prints TAP)"""

import os
import sys

import numpy as np
import torch

from refcommon import PCG32, Tap, flat, inputs, load_st, loss_fn, model_from, read_jsonl, run

STEPS = 100
STEP_RTOL = 1e-5     # step by step: the loss and the parameters after every update, relative
FREE_LOSS_RTOL = 1e-4   # free-running loss at every step (see above)

CASES = [
    ("adam, full batch", ["--optim", "adam", "--lr", "1e-3", "--wd", "0"]),
    ("adam with L2 decay, full batch", ["--optim", "adam", "--lr", "1e-3", "--wd", "0.1"]),
    ("adamw wd 1, full batch", ["--optim", "adamw", "--lr", "1e-3", "--wd", "1"]),
    ("sgd momentum 0.9 wd 1e-3, full batch", ["--optim", "sgd", "--lr", "0.5", "--momentum", "0.9", "--wd", "1e-3"]),
    ("sgd nesterov, minibatch 64", ["--optim", "sgd", "--lr", "0.2", "--momentum", "0.8", "--nesterov", "--batch", "64"]),
    ("adamw, minibatch 50, warm-up 10", ["--optim", "adamw", "--lr", "3e-3", "--wd", "0.5", "--batch", "50", "--warmup", "10"]),
    ("adamw, int encoding, mse loss", ["--optim", "adamw", "--lr", "1e-3", "--encoding", "int", "--loss", "mse"]),
    ("adamw, depth 3, mse loss", ["--optim", "adamw", "--lr", "1e-3", "--depth", "3", "--loss", "mse"]),
]


def option(args, name, default):
    return args[args.index(name) + 1] if name in args else default


def without(args, name):
    """args less the option name and its value."""
    if name not in args:
        return list(args)
    i = args.index(name)
    return args[:i] + args[i + 2:]


def setup(config, data, init):
    """PyTorch's model, optimiser, data and minibatch order for our config."""
    m, o = config["model"], config["optim"]
    p, depth, enc = m["p"], m["depth"], m["encoding"]
    lr, wd = o["lr"], o["wd"]
    model = model_from(init, depth)
    if o["name"] == "adam":
        opt = torch.optim.Adam(model.parameters(), lr=lr, betas=(o["beta1"], o["beta2"]), eps=o["eps"], weight_decay=wd)
    elif o["name"] == "adamw":
        opt = torch.optim.AdamW(model.parameters(), lr=lr, betas=(o["beta1"], o["beta2"]), eps=o["eps"], weight_decay=wd)
    else:
        opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=o["momentum"], nesterov=o["nesterov"], weight_decay=wd)
    X = inputs(data["train.x"], p, enc)
    Y = torch.tensor(np.array(data["train.y"]), dtype=torch.long)
    return model, opt, X, Y


def batches(config, n, seed):
    """The row indices of each step's batch, as train-mlp draws them."""
    B = n if config["batch"] == "full" else config["batch"]
    rng = PCG32(seed, PCG32.SHUFFLE)
    perm, pos = list(range(n)), 0
    for _ in range(STEPS):
        if B == n:
            yield list(range(n))
            continue
        if pos == 0:
            rng.shuffle(perm)
        idx = perm[pos:pos + B]
        pos = 0 if pos + len(idx) == n else pos + len(idx)
        yield idx


def step(config, model, opt, X, Y, idx, s):
    o = config["optim"]
    warmup = config["warmup"]
    for g in opt.param_groups:
        g["lr"] = o["lr"] * s / warmup if warmup and s < warmup else o["lr"]
    opt.zero_grad()
    loss_fn(model(X[idx]), Y[idx], config["model"]["p"], config["model"]["loss"]).backward()
    opt.step()


def free_run(config, data, init, seed):
    """PyTorch on its own: the training loss after every step, and the final parameters."""
    model, opt, X, Y = setup(config, data, init)
    losses = []
    for s, idx in enumerate(batches(config, len(Y), seed), 1):
        step(config, model, opt, X, Y, idx, s)
        with torch.no_grad():
            losses.append(float(loss_fn(model(X), Y, config["model"]["p"], config["model"]["loss"])))
    return losses, flat(model, config["model"]["depth"])


def step_by_step(config, data, ckpts, losses, seed):
    """Largest relative differences between our parameters and training loss
    after each step and PyTorch's, one step from our parameters of the step
    before."""
    depth, p, loss = config["model"]["depth"], config["model"]["p"], config["model"]["loss"]
    model, opt, X, Y = setup(config, data, ckpts[0])
    worst = worst_loss = 0.0
    for s, idx in enumerate(batches(config, len(Y), seed), 1):
        with torch.no_grad():
            for q, t in zip(model.parameters(), [ckpts[s - 1][f"layers.{i}.{k}"]
                                                 for i in range(depth + 1) for k in ("weight", "bias")]):
                q.copy_(torch.tensor(np.array(t)))
        step(config, model, opt, X, Y, idx, s)
        ours = flat(ckpts[s], depth)
        worst = max(worst, float((flat(model, depth) - ours).norm() / ours.norm()))
        with torch.no_grad():
            theirs = float(loss_fn(model(X), Y, p, loss))
        worst_loss = max(worst_loss, abs(theirs - losses[s - 1]) / abs(theirs))
    return worst, worst_loss


def main():
    bindir, work = sys.argv[1], sys.argv[2]
    torch.set_num_threads(1)
    torch.set_flush_denormal(True)
    tap = Tap()
    data_path = os.path.join(work, "data.safetensors")
    run([os.path.join(bindir, "gen-modadd"), "-p", "23", "--frac", "0.5", "--seed", "3", "-o", data_path])
    _, data = load_st(data_path)
    for k, (name, args) in enumerate(CASES):
        depth = int(option(args, "--depth", "2"))
        ck = os.path.join(work, f"ck{k}")
        out = os.path.join(work, f"final{k}.safetensors")
        cmd = [os.path.join(bindir, "train-mlp"), "--data", data_path, "--width", "32", "--depth", str(depth),
               "--steps", str(STEPS), "--log-every", "1", "--ckpt-dir", ck, "--ckpt-every", "1",
               "--out", out, "--seed", str(k), "--quiet"] + without(args, "--depth")
        log = read_jsonl(run(cmd))
        config = log[0]["config"]
        ours = [r["train_loss"] for r in log if r["record"] == "metrics" and r["step"] > 0]
        ckpts = [load_st(os.path.join(ck, f"step-{s:08d}.safetensors"))[1] for s in range(STEPS + 1)]
        theirs, tparams = free_run(config, data, ckpts[0], k)
        rel = max(abs(a - b) / abs(b) for a, b in zip(ours, theirs))
        worst, worst_loss = step_by_step(config, data, ckpts, ours, k)
        tap.ok(len(ours) == STEPS and worst_loss < STEP_RTOL,
               f"{name}: step by step, train loss after each of {STEPS} updates, "
               f"max relative diff {worst_loss:.2e} (< {STEP_RTOL:g})")
        tap.ok(worst < STEP_RTOL, f"{name}: step by step, each of {STEPS} updates lands on our parameters, "
               f"max relative diff {worst:.2e} (< {STEP_RTOL:g})")
        tap.ok(rel < FREE_LOSS_RTOL, f"{name}: free-running train loss at each of {STEPS} steps, max relative "
               f"diff {rel:.2e} (< {FREE_LOSS_RTOL:g}); loss {theirs[0]:.4f} -> {theirs[-1]:.4f}")
        ours_p = flat(load_st(out)[1], depth)
        prel = float((ours_p - tparams).norm() / tparams.norm())
        print(f"# {name}: free-running final parameters, relative diff {prel:.2e} (diagnostic, see above)")
    return tap.done()


if __name__ == "__main__":
    sys.exit(main())
