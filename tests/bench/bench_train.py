"""make bench, training part: train-mlp's full-batch step (bench_step:
forward, loss, backward, AdamW) against the same step of an nn.Sequential
in PyTorch (peers.train_step), one thread each and then all cores each;
then the peak memory of a 20-step training run of each.

Each repetition times STEPS steps of ours, then STEPS of PyTorch's; a
ratio is the median over the repetitions of ours/theirs, each pair taken
back to back, with its range.  Run alone: run.py --only train."""

import os

from benchlib import Series, last_record, mode_name, peer_once, ratios, record, run_ours, table

WIDTH = 128
STEPS = 30
DEPTHS = (1, 2, 3, 5, 7)


def measure(ctx, threads, depth):
    peer = ctx.peer(threads)
    ours, theirs, thr = Series(), Series(), {}
    for _ in range(ctx.reps):
        out, thr["ours"] = run_ours([os.path.join(ctx.benchdir, "bench_step"), ctx.data, str(depth), str(WIDTH),
                                     str(STEPS), str(threads)], threads)
        o = last_record(out)
        ours.add(o["step_ms"])
        ans = peer.call("train_step", data=ctx.data, depth=depth, reps=STEPS)
        theirs.add(1e3 * ans["seconds"])
        thr["torch"] = ans["os_threads"]
    return o, ours, theirs, thr


def memory(ctx, depth):
    out, _ = run_ours([os.path.join(ctx.bindir, "train-mlp"), "--data", ctx.data, "--depth", str(depth),
                       "--steps", "20", "--log-every", "20", "--quiet"], 1)
    ours = last_record(out)["peak_rss_mib"]
    theirs = peer_once(1, ctx.coretype, "train_peak", data=ctx.data, depth=depth, steps=20)["peak_mib"]
    return ours, theirs


def bench(ctx):
    for threads in ctx.modes:
        rows = []
        for depth in DEPTHS:
            o, ours, theirs, thr = measure(ctx, threads, depth)
            r = ratios(ours, theirs)
            row = [depth, ours.fmt(), theirs.fmt(), r.fmt(spread=True), f"{thr['ours']} / {thr['torch']}"]
            if threads == 1:
                mo, mt = memory(ctx, depth)
                row += [f"{o['step_gflops']:.1f}", f"{o['sgemm_gflops']:.1f}", f"{o['gemm_gflops']:.1f} ({o['gemm']})",
                        f"{100 * o['step_gflops'] / o['sgemm_gflops']:.0f}%", f"{mo:.1f}", f"{mt:.1f}",
                        f"{mo / mt:.3f}"]
                record(ctx, bench="train_step", threads=threads, depth=depth, ours_ms=ours.values,
                       torch_ms=theirs.values, ratio=r.median, ratio_range=[min(r.values), max(r.values)],
                       os_threads=thr, ours_mib=mo, torch_mib=mt, gflops=o["step_gflops"],
                       sgemm_gflops=o["sgemm_gflops"], gemm_gflops=o["gemm_gflops"], gemm=o["gemm"])
            else:
                record(ctx, bench="train_step", threads=threads, depth=depth, ours_ms=ours.values,
                       torch_ms=theirs.values, ratio=r.median, ratio_range=[min(r.values), max(r.values)],
                       os_threads=thr)
            rows.append(row)
        head = ["depth", "ours ms", "torch ms", "ratio (range)", "threads ours / torch"]
        if threads == 1:
            head += ["ours GFLOP/s", "sgemm GFLOP/s, same shapes", "our products' GFLOP/s (kernel)", "of sgemm", "ours MiB", "torch MiB",
                     "memory ratio"]
        table(f"train-mlp: full-batch training step, {mode_name(threads)}",
              head, rows, [f"p = 97, {ctx.n_train} training pairs, width {WIDTH}; each side's median of {STEPS} "
                           f"steps a repetition, medians of {ctx.reps} interleaved repetitions; ratio = ours / "
                           f"torch, median (range) over the repetitions; threads: counted in /proc while each ran."
                           + (" sgemm: the step's products alone through OpenBLAS; our products: the same calls"
                              " through train-mlp's route (gemm.c's kernel, or OpenBLAS), timed back to back."
                              " Memory: peak RSS (VmHWM) of a 20-step run of each, torch's import included."
                              if threads == 1 else "")])
