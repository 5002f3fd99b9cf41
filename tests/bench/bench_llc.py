#!/usr/bin/env python3
"""make bench, LLC part: llc-estimate's SGLD draws per second against the
same SGLD loop in PyTorch (devinterp's update: forward and backward on a
minibatch of 32, drift, localisation and Gaussian noise per parameter), in
the same run, one thread each, float32 both, on a checkpoint trained for
300 steps.  Our time is the record's own (checkpoint read, L(w*) and every
chain); PyTorch's is its loop alone.

usage: bench_llc.py BINDIR DATA WORKDIR [DEPTHS]"""

import json
import os
import sys
import time

import numpy as np
import torch

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "ref"))
from refcommon import inputs, load_st, model_from, run  # noqa: E402

CHAINS, DRAWS, BATCH = 4, 500, 32
EPS, GAMMA = 1e-3, 100.0


def torch_draws(model, X, Y):
    nbeta = BATCH / np.log(BATCH)
    w_star = [q.detach().clone() for q in model.parameters()]
    gen = torch.Generator().manual_seed(0)
    t = time.perf_counter()
    for _ in range(CHAINS):
        with torch.no_grad():
            for q, s in zip(model.parameters(), w_star):
                q.copy_(s)
        order, pos = torch.randperm(len(Y), generator=gen), 0
        for _ in range(DRAWS):
            if pos + BATCH > len(Y):
                order, pos = torch.randperm(len(Y), generator=gen), 0
            idx = order[pos:pos + BATCH]
            pos += BATCH
            model.zero_grad()
            loss = torch.nn.functional.cross_entropy(model(X[idx]), Y[idx])
            loss.backward()
            float(loss)
            with torch.no_grad():
                for q, s in zip(model.parameters(), w_star):
                    q.add_(nbeta * q.grad + GAMMA * (q - s), alpha=-0.5 * EPS)
                    q.add_(torch.normal(0.0, 1.0, q.shape, generator=gen), alpha=EPS ** 0.5)
    return CHAINS * DRAWS / (time.perf_counter() - t)


def main():
    bindir, data_path, work = sys.argv[1:4]
    depths = [int(d) for d in (sys.argv[4] if len(sys.argv) > 4 else "2,7").split(",")]
    torch.set_num_threads(1)
    torch.set_flush_denormal(True)
    meta, data = load_st(data_path)
    p = int(meta["p"])
    X = inputs(data["train.x"], p, "onehot")
    Y = torch.tensor(np.array(data["train.y"]), dtype=torch.long)
    print(f"# LLC by SGLD, p={p}, batch {BATCH}, {CHAINS} chains x {DRAWS} draws, width 128, one thread each, "
          f"float32; torch {torch.__version__}")
    print(f"{'depth':>5} {'params':>8} {'ours draws/s':>13} {'torch draws/s':>14} {'time ratio':>11} "
          f"{'ours llc':>9}")
    for depth in depths:
        ck = os.path.join(work, f"bench-llc-d{depth}")
        run([os.path.join(bindir, "train-mlp"), "--data", data_path, "--depth", str(depth), "--steps", "300",
             "--log-every", "300", "--ckpt-dir", ck, "--quiet"])
        path = os.path.join(ck, "step-00000300.safetensors")
        rec = json.loads(run([os.path.join(bindir, "llc-estimate"), "--data", data_path, "--chains", str(CHAINS),
                              "--draws", str(DRAWS), "--batch", str(BATCH), path]).splitlines()[-1])
        ours = rec["steps"] / rec["seconds"]
        theirs = torch_draws(model_from(load_st(path)[1], depth), X, Y)
        print(f"{depth:>5} {rec['params']:>8} {ours:>13.0f} {theirs:>14.0f} {theirs / ours:>11.2f} "
              f"{rec['llc_mean']:>9.3f}", flush=True)
        print(json.dumps({"record": "bench", "bench": "llc", "depth": depth, "params": rec["params"],
                          "ours_draws_per_second": ours, "torch_draws_per_second": theirs,
                          "time_ratio": theirs / ours, "ours_llc": rec["llc_mean"]}))
    print("# time ratio: our time per draw over PyTorch's (below 1: faster)")


if __name__ == "__main__":
    main()
