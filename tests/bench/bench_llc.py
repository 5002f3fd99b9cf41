"""make bench, LLC part: llc-estimate's SGLD draws per second against the
same SGLD loop in PyTorch (devinterp's update: forward and backward on a
minibatch of 32, drift, localisation and Gaussian noise per parameter),
float32 both, on a checkpoint trained for 300 steps, one thread each and
then all cores each, for two samplers:

  plain   devinterp's sgld; llc-estimate's diagnostics as always (its
          devinterp MALA every step, its same-minibatch MALA every 10th
          draw step, drift, R-hat, ESS), the PyTorch loop without them
  rmsprop devinterp's rmsprop_sgld with the diagnostics on both sides: the
          PyTorch loop computes devinterp's MALA acceptance every step and
          the same-minibatch one every 10th (one more forward and backward),
          as llc-estimate does

Our time is the record's own (checkpoint read, L(w*), every chain and
every diagnostic); PyTorch's is its loop alone.  A ratio (draws per
second, ours over theirs) is the median over the interleaved repetitions
with its range; the target is at least 3.  Run alone: run.py --only llc."""

import os

from benchlib import Series, last_record, mode_name, ratios, record, run_ours, table

DEPTHS = (2, 7)
CHAINS, DRAWS, BATCH = 4, 500, 32
EPSILON, GAMMA = 1e-3, 100.0
MALA_EVERY = 10
SAMPLERS = {
    "plain": ([], {}),
    "rmsprop": (["--precond", "rmsprop", "--mala-every", str(MALA_EVERY)],
                {"precond": "rmsprop", "mala_every": MALA_EVERY}),
}


def checkpoint(ctx, depth):
    ck = os.path.join(ctx.work, f"llc-ck-d{depth}")
    if not os.path.isdir(ck):
        run_ours([os.path.join(ctx.bindir, "train-mlp"), "--data", ctx.data, "--depth", str(depth),
                  "--steps", "300", "--log-every", "300", "--ckpt-dir", ck, "--quiet"], 1)
    return os.path.join(ck, "step-00000300.safetensors")


def measure(ctx, threads, depth, sampler):
    peer, ck = ctx.peer(threads), checkpoint(ctx, depth)
    flags, peer_args = SAMPLERS[sampler]
    ours, theirs, thr = Series(), Series(), {}
    for _ in range(ctx.reps):
        out, thr["ours"] = run_ours([os.path.join(ctx.bindir, "llc-estimate"), "--data", ctx.data,
                                     "--threads", str(threads), "--chains", str(CHAINS), "--draws", str(DRAWS),
                                     "--batch", str(BATCH), "--epsilon", str(EPSILON), "--gamma", str(GAMMA),
                                     *flags, ck], threads)
        rec = last_record(out)
        ours.add(rec["steps"] / rec["seconds"])
        ans = peer.call("sgld_draws", data=ctx.data, ckpt=ck, depth=depth, chains=CHAINS, draws=DRAWS,
                        batch=BATCH, epsilon=EPSILON, gamma=GAMMA, **peer_args)
        theirs.add(ans["draws_per_second"])
        thr["torch"] = ans["os_threads"]
    return ours, theirs, rec, thr


def bench(ctx):
    for threads in ctx.modes:
        rows = []
        for sampler in SAMPLERS:
            for depth in DEPTHS:
                ours, theirs, rec, thr = measure(ctx, threads, depth, sampler)
                r = ratios(theirs, ours)   # draws/s: time per draw is its inverse
                rate = ratios(ours, theirs)
                rows.append([sampler, depth, f"{rec['params']:,}", ours.fmt(0), theirs.fmt(0), rate.fmt(spread=True),
                             r.fmt(spread=True), f"{thr['ours']} / {thr['torch']}", f"{rec['llc_mean']:.2f}"])
                # study_time.py reads bench "llc", the study's sampler (plain SGLD).
                record(ctx, bench="llc" if sampler == "plain" else "llc-" + sampler, sampler=sampler, threads=threads, depth=depth, params=rec["params"],
                       ours_draws_per_second=ours.values, torch_draws_per_second=theirs.values, time_ratio=r.median,
                       time_ratio_range=[min(r.values), max(r.values)], rate_ratio=rate.median,
                       os_threads=thr, ours_llc=rec["llc_mean"])
        table(f"llc-estimate: SGLD draws, {mode_name(threads)}",
              ["sampler", "depth", "params", "ours draws/s", "torch draws/s", "rate ratio (range)",
               "time ratio (range)", "threads ours / torch", "ours LLC"],
              rows, [f"p = 97, {CHAINS} chains × {DRAWS} draws, batch {BATCH}, ε = {EPSILON:g}, γ = {GAMMA:g}, "
                     f"checkpoint after 300 steps; rmsprop: devinterp's rmsprop_sgld with MALA (every step, and on "
                     f"the proposal's own minibatch every {MALA_EVERY}th) on both sides; medians of {ctx.reps} "
                     f"interleaved repetitions; rate ratio = our draws/s / torch's (target ≥ 3), time ratio its "
                     f"inverse."])
