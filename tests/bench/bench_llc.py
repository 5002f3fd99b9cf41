"""make bench, LLC part: llc-estimate's SGLD draws per second against the
same SGLD loop in PyTorch (devinterp's update: forward and backward on a
minibatch of 32, drift, localisation and Gaussian noise per parameter),
float32 both, on a checkpoint trained for 300 steps, one thread each and
then all cores each.  Our time is the record's own (checkpoint read, L(w*)
and every chain); PyTorch's is its loop alone.  A ratio (time per draw,
ours over theirs) is the median over the interleaved repetitions with its
range.  Run alone: run.py --only llc."""

import os

from benchlib import Series, last_record, mode_name, ratios, record, run_ours, table

DEPTHS = (2, 7)
CHAINS, DRAWS, BATCH = 4, 500, 32
EPSILON, GAMMA = 1e-3, 100.0


def checkpoint(ctx, depth):
    ck = os.path.join(ctx.work, f"llc-ck-d{depth}")
    if not os.path.isdir(ck):
        run_ours([os.path.join(ctx.bindir, "train-mlp"), "--data", ctx.data, "--depth", str(depth),
                  "--steps", "300", "--log-every", "300", "--ckpt-dir", ck, "--quiet"], 1)
    return os.path.join(ck, "step-00000300.safetensors")


def measure(ctx, threads, depth):
    peer, ck = ctx.peer(threads), checkpoint(ctx, depth)
    ours, theirs, thr = Series(), Series(), {}
    for _ in range(ctx.reps):
        out, thr["ours"] = run_ours([os.path.join(ctx.bindir, "llc-estimate"), "--data", ctx.data,
                                     "--threads", str(threads), "--chains", str(CHAINS), "--draws", str(DRAWS),
                                     "--batch", str(BATCH), "--epsilon", str(EPSILON), "--gamma", str(GAMMA),
                                     ck], threads)
        rec = last_record(out)
        ours.add(rec["steps"] / rec["seconds"])
        ans = peer.call("sgld_draws", data=ctx.data, ckpt=ck, depth=depth, chains=CHAINS, draws=DRAWS,
                        batch=BATCH, epsilon=EPSILON, gamma=GAMMA)
        theirs.add(ans["draws_per_second"])
        thr["torch"] = ans["os_threads"]
    return ours, theirs, rec, thr


def bench(ctx):
    for threads in ctx.modes:
        rows = []
        for depth in DEPTHS:
            ours, theirs, rec, thr = measure(ctx, threads, depth)
            r = ratios(theirs, ours)   # draws/s: time per draw is its inverse
            rows.append([depth, f"{rec['params']:,}", ours.fmt(0), theirs.fmt(0), r.fmt(spread=True),
                         f"{thr['ours']} / {thr['torch']}", f"{rec['llc_mean']:.2f}"])
            record(ctx, bench="llc", threads=threads, depth=depth, params=rec["params"],
                   ours_draws_per_second=ours.values, torch_draws_per_second=theirs.values, time_ratio=r.median,
                   time_ratio_range=[min(r.values), max(r.values)], os_threads=thr, ours_llc=rec["llc_mean"])
        table(f"llc-estimate: SGLD draws, {mode_name(threads)}",
              ["depth", "params", "ours draws/s", "torch draws/s", "time ratio (range)", "threads ours / torch",
               "ours LLC"],
              rows, [f"p = 97, {CHAINS} chains × {DRAWS} draws, batch {BATCH}, ε = {EPSILON:g}, γ = {GAMMA:g}, "
                     f"checkpoint after 300 steps; medians of {ctx.reps} interleaved repetitions; time ratio = "
                     f"our time per draw / torch's."])
