"""make bench, progress-measures part: one checkpoint's full set of
measures at p = 113 (embedding spectra, neuron key frequencies, restricted
and excluded loss, distance irrelevance, gradient symmetricity over all p³
triples) against the numpy float64 reference of the same formulas
(tests/ref/check_progress.py, written as Nanda's helpers and the pizza
notebook write them; symmetricity by autograd), one thread each and then
all cores each.  Both times include reading the checkpoint.  Target: under
a second on one core.  Run alone: run.py --only progress."""

import os

from benchlib import Series, last_record, mode_name, ratios, record, run_ours, table

P, DEPTH, WIDTH, STEPS = 113, 2, 128, 300


def checkpoint(ctx):
    d = os.path.join(ctx.work, "pm-data.safetensors")
    ck = os.path.join(ctx.work, "pm-ck")
    if not os.path.isdir(ck):
        run_ours([os.path.join(ctx.bindir, "gen-modadd"), "-p", str(P), "--frac", "0.3", "-o", d], 1)
        run_ours([os.path.join(ctx.bindir, "train-mlp"), "--data", d, "--depth", str(DEPTH), "--width", str(WIDTH),
                  "--steps", str(STEPS), "--log-every", str(STEPS), "--ckpt-dir", ck, "--quiet"], 1)
    return d, os.path.join(ck, f"step-{STEPS:08d}.safetensors")


def measure(ctx, threads, data, ck, sym):
    peer = ctx.peer(threads)
    ours, theirs, thr = Series(), Series(), {}
    for _ in range(ctx.reps):
        out, thr["ours"] = run_ours([os.path.join(ctx.bindir, "progress-measures"), "--data", data,
                                     "--threads", str(threads)] + ([] if sym else ["--no-symmetricity"]) + [ck],
                                    threads)
        rec = last_record(out)
        ours.add(rec["seconds"])
        ans = peer.call("progress_numpy", data=data, ckpt=ck, depth=DEPTH, op="add", threshold=0.85,
                        symmetricity=sym)
        theirs.add(ans["seconds"])
        thr["reference"] = ans["os_threads"]
    diff = abs(rec["restricted_loss"] - ans["restricted_loss"]) / max(1.0, abs(ans["restricted_loss"]))
    return ours, theirs, thr, diff


def bench(ctx):
    data, ck = checkpoint(ctx)
    for threads in ctx.modes:
        rows = []
        for sym in (True, False):
            ours, theirs, thr, diff = measure(ctx, threads, data, ck, sym)
            r = ratios(ours, theirs)
            rows.append(["all" if sym else "all but symmetricity", ours.fmt(3), theirs.fmt(3),
                         r.fmt(3, spread=True), f"{thr['ours']} / {thr['reference']}", f"{diff:.0e}"])
            record(ctx, bench="progress", threads=threads, p=P, depth=DEPTH, symmetricity=sym,
                   ours_seconds=ours.values, reference_seconds=theirs.values, time_ratio=r.median,
                   time_ratio_range=[min(r.values), max(r.values)], os_threads=thr)
        table(f"progress-measures: one checkpoint's measures at p = {P}, {mode_name(threads)}",
              ["measures", "ours s", "numpy reference s", "ratio (range)", "threads ours / reference",
               "restricted loss diff"], rows,
              [f"MLP depth {DEPTH}, width {WIDTH}, after {STEPS} steps on 30% of the pairs; all {P ** 2:,} "
               f"pairs and {P ** 3:,} triples; medians of {ctx.reps} interleaved repetitions.  With "
               f"symmetricity the reference takes it by autograd over every triple, while ours reports the "
               f"one-hot MLP's 1, which holds by construction (docs/design.md); the second row compares the "
               f"same work."])
