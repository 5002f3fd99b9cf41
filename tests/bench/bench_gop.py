"""make bench, GOP part: gop-spectrum's spectrum of the per-example
gradient Gram matrix against PyTorch's closed-form Gram (the same
layer-by-layer identity, with autograd's per-example deltas) + eigvalsh,
float64 eigensolvers both, one thread each and then all cores each; and,
once and on one thread at the smaller size, against the generic vmap
route (functorch per-example gradients, then J J^T).

Ours is timed twice a repetition: with --no-centred (one spectrum, as
PyTorch's) and as the study runs it (the centred spectrum too).  The
times are the record's own (checkpoint read included); PyTorch's from
the model in memory.  A ratio is the median over the interleaved
repetitions of ours/theirs with its range.  Run alone: run.py --only gop."""

import os

from benchlib import Series, last_record, mode_name, ratios, record, run_ours, table

DEPTHS = (2, 7)
FRACS = ("0.1", "0.3")


def setup(ctx, frac, depth):
    data = os.path.join(ctx.work, f"gop-{frac}.safetensors")
    if not os.path.exists(data):
        run_ours([os.path.join(ctx.bindir, "gen-modadd"), "-p", "97", "--frac", frac, "-o", data], 1)
    ck = os.path.join(ctx.work, f"gop-ck-{frac}-{depth}")
    if not os.path.isdir(ck):
        run_ours([os.path.join(ctx.bindir, "train-mlp"), "--data", data, "--depth", str(depth), "--steps", "200",
                  "--log-every", "200", "--ckpt-dir", ck, "--quiet"], 1)
    return data, os.path.join(ck, "step-00000200.safetensors")


def gop(ctx, threads, data, ck, *flags):
    out, thr = run_ours([os.path.join(ctx.bindir, "gop-spectrum"), "--data", data, "--threads", str(threads),
                         *flags, ck], threads)
    return last_record(out), thr


def measure(ctx, threads, frac, depth):
    peer = ctx.peer(threads)
    data, ck = setup(ctx, frac, depth)
    m = {k: Series() for k in ("ours", "ours_centred", "torch")}
    thr = {}
    for _ in range(ctx.reps):
        rec, thr["ours"] = gop(ctx, threads, data, ck, "--no-centred")
        m["ours"].add(rec["seconds"])
        ans = peer.call("gop_closed_form", data=data, ckpt=ck, depth=depth)
        m["torch"].add(ans["seconds"])
        thr["torch"] = ans["os_threads"]
        full, _ = gop(ctx, threads, data, ck)
        m["ours_centred"].add(full["seconds"])
    top = ans["top"]
    diff = max(abs(a - b) / b for a, b in zip(rec["gop"]["top"], top))
    vmap = None
    if threads == 1 and frac == FRACS[0]:
        vmap = peer.call("gop_vmap", data=data, ckpt=ck, depth=depth)["seconds"]
    return m, rec, diff, vmap, thr


def bench(ctx):
    for threads in ctx.modes:
        rows = []
        for frac in FRACS:
            for depth in DEPTHS:
                m, rec, diff, vmap, thr = measure(ctx, threads, frac, depth)
                r, rc = ratios(m["ours"], m["torch"]), ratios(m["ours_centred"], m["torch"])
                rows.append([depth, frac, f"{rec['n']:,}", m["ours"].fmt(), m["torch"].fmt(), r.fmt(spread=True),
                             m["ours_centred"].fmt(), rc.fmt(spread=True),
                             f"{vmap:.2f}" if vmap is not None else "–", f"{thr['ours']} / {thr['torch']}",
                             f"{rec['peak_rss_mib']:.1f}", f"{diff:.0e}"])
                record(ctx, bench="gop", threads=threads, depth=depth, frac=float(frac), n=rec["n"],
                       **{k: v.values for k, v in m.items()}, ratio=r.median, ratio_range=[min(r.values),
                       max(r.values)], centred_ratio=rc.median, centred_ratio_range=[min(rc.values),
                       max(rc.values)], torch_vmap_seconds=vmap, os_threads=thr,
                       ours_peak_rss_mib=rec["peak_rss_mib"], top10_max_rel_diff=diff)
        table(f"gop-spectrum: GOP spectrum of the training set, {mode_name(threads)}",
              ["depth", "frac", "n", "ours s (--no-centred)", "torch closed-form Gram + eigvalsh s",
               "ratio (range)", "ours s (default, + centred)", "ratio (range)", "torch vmap route s",
               "threads ours / torch", "ours MiB", "top-10 max rel diff"],
              rows, [f"p = 97, width 128, checkpoints after 200 steps; medians of {ctx.reps} interleaved "
                     f"repetitions, ratio = ours / torch closed form. The vmap route runs once, one thread, "
                     f"at the smaller n only (it takes minutes at the larger)."])
