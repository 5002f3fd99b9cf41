"""make bench, Hessian part: hess-eig against PyTorch's double-backward
products as PyHessian takes them (the first-order graph built once per
point, every product a backward through it with retain_graph=True), on a
checkpoint trained for 300 steps, float32 both, one thread each and then
all cores each.

- One product at the checkpoint.  Ours is the slope of hess-eig's own
  record time against its product count (power iteration run to 10 and
  to 40 iterations): what one more product costs, the set-up excluded as
  PyTorch's graph building is.
- A solve.  Ours: the top 5 eigenvalues by Lanczos to 1e-4 (--converge
  value), the record's time (checkpoint read, loss and gradient included).
  PyTorch's: PyHessian's power method for the top one, 20 iterations, from
  the model in memory (graph building included).

- A walk: the top 5 on each of a run's last WALK checkpoints (WALK_EVERY
  steps apart, ending at the same step 300) in one hess-eig call with
  --start previous, as the study calls it on a run's checkpoints: the
  first from the seed's Gaussian, each next from the one before's Ritz
  vectors; the records' times summed.  PyTorch's: the same 20-iteration
  top-1 on each checkpoint, summed.  The products of the same walk from
  random starts are shown beside (one run, not timed).

Ours and PyTorch's take turns within each repetition; a ratio is the
median over the repetitions of ours/theirs with its range.
Run alone: run.py --only hess."""

import json
import os

from benchlib import Series, last_record, mode_name, ratios, record, run_ours, table

DEPTHS = (2, 7)
SHORT, LONG = 10, 40   # power iterations of the two runs whose difference is timed
HVP_REPS = 10


WALK, WALK_EVERY = 5, 10


def checkpoint_dir(ctx, depth):
    """A run of 300 steps with a checkpoint every WALK_EVERY (checkpoints
    change nothing in the run)."""
    ck = os.path.join(ctx.work, f"hess-ck-d{depth}")
    if not os.path.isdir(ck):
        run_ours([os.path.join(ctx.bindir, "train-mlp"), "--data", ctx.data, "--depth", str(depth),
                  "--steps", "300", "--log-every", "300", "--ckpt-every", str(WALK_EVERY), "--ckpt-dir", ck,
                  "--quiet"], 1)
    return ck


def checkpoint(ctx, depth):
    return os.path.join(checkpoint_dir(ctx, depth), "step-00000300.safetensors")


def walk_checkpoints(ctx, depth):
    ck = checkpoint_dir(ctx, depth)
    return [os.path.join(ck, f"step-{s:08d}.safetensors") for s in range(300 - WALK_EVERY * (WALK - 1), 301, WALK_EVERY)]


def hess_walk(ctx, threads, cks, start):
    out, _ = run_ours([os.path.join(ctx.bindir, "hess-eig"), "--data", ctx.data, "--threads", str(threads),
                       "--top", "5", "--converge", "value", "--tol", "1e-4", "--start", start, *cks], threads)
    return [r for r in map(json.loads, out.strip().splitlines()) if r["record"] == "hessian"]


def hess_eig(ctx, threads, ck, *flags):
    out, thr = run_ours([os.path.join(ctx.bindir, "hess-eig"), "--data", ctx.data, "--threads", str(threads),
                         *flags, ck], threads)
    return last_record(out), thr


def ours_product_ms(ctx, threads, ck):
    power = ("--method", "power", "--top", "1", "--tol", "1e-12", "--max-iter")
    short, _ = hess_eig(ctx, threads, ck, *power, str(SHORT))
    long, thr = hess_eig(ctx, threads, ck, *power, str(LONG))
    return 1e3 * (long["seconds"] - short["seconds"]) / (long["hvps"] - short["hvps"]), thr


def measure(ctx, threads, depth):
    peer, ck = ctx.peer(threads), checkpoint(ctx, depth)
    m = {k: Series() for k in ("ours_hvp", "torch_hvp", "ours_solve", "torch_solve")}
    thr = {}
    for _ in range(ctx.reps):
        ms, thr["ours"] = ours_product_ms(ctx, threads, ck)
        m["ours_hvp"].add(ms)
        m["torch_hvp"].add(1e3 * peer.call("hvp_time", data=ctx.data, ckpt=ck, depth=depth,
                                           reps=HVP_REPS)["seconds"])
        rec, _ = hess_eig(ctx, threads, ck, "--top", "5", "--converge", "value", "--tol", "1e-4")
        m["ours_solve"].add(rec["seconds"])
        ans = peer.call("power_top1", data=ctx.data, ckpt=ck, depth=depth, iters=20, seed=0)
        m["torch_solve"].add(ans["seconds"])
        thr["torch"] = ans["os_threads"]
    return m, rec, ans["lambda1"], thr


def measure_walk(ctx, threads, depth):
    peer, cks = ctx.peer(threads), walk_checkpoints(ctx, depth)
    ours, theirs = Series(), Series()
    for _ in range(ctx.reps):
        recs = hess_walk(ctx, threads, cks, "previous")
        ours.add(sum(r["seconds"] for r in recs))
        ans = peer.call("power_top1_walk", data=ctx.data, ckpts=cks, depth=depth, iters=20, seed=0)
        theirs.add(ans["seconds"])
    cold = hess_walk(ctx, threads, cks, "random")
    return ours, theirs, [r["hvps"] for r in recs], [r["hvps"] for r in cold]


def bench_walk(ctx, threads):
    rows = []
    for depth in DEPTHS:
        ours, theirs, warm, cold = measure_walk(ctx, threads, depth)
        r = ratios(ours, theirs)
        rows.append([depth, f"{ours.fmt()} ({sum(warm)})", theirs.fmt(), r.fmt(spread=True),
                     " ".join(map(str, warm)), " ".join(map(str, cold))])
        record(ctx, bench="hessian_walk", threads=threads, depth=depth, ours_walk=ours.values,
               torch_walk=theirs.values, walk_ratio=r.median, walk_ratio_range=[min(r.values), max(r.values)],
               ours_products=warm, ours_products_random=cold)
    table(f"hess-eig: a run's last {WALK} checkpoints in order, {mode_name(threads)}",
          ["depth", "ours top-5 s, all (products)", f"torch {WALK} × 20-iteration top-1 s", "ratio (range)",
           "products per checkpoint, --start previous", "the same from random starts"],
          rows, [f"Checkpoints at steps {300 - WALK_EVERY * (WALK - 1)}, ..., 300 of the run above; ours one "
                 f"hess-eig call, --start previous; the times summed over the checkpoints, medians of {ctx.reps} "
                 f"interleaved repetitions."])


def bench(ctx):
    for threads in ctx.modes:
        rows = []
        for depth in DEPTHS:
            m, rec, lam, thr = measure(ctx, threads, depth)
            rh, rs = ratios(m["ours_hvp"], m["torch_hvp"]), ratios(m["ours_solve"], m["torch_solve"])
            rows.append([depth, m["ours_hvp"].fmt(), m["torch_hvp"].fmt(), rh.fmt(spread=True),
                         f"{m['ours_solve'].fmt()} ({rec['hvps']})", m["torch_solve"].fmt(), rs.fmt(spread=True),
                         f"{thr['ours']} / {thr['torch']}", f"{rec['eigenvalues'][0]:.4f}", f"{lam:.4f}"])
            record(ctx, bench="hessian", threads=threads, depth=depth,
                   **{k: v.values for k, v in m.items()}, hvp_ratio=rh.median,
                   hvp_ratio_range=[min(rh.values), max(rh.values)], solve_ratio=rs.median,
                   solve_ratio_range=[min(rs.values), max(rs.values)], ours_products=rec["hvps"],
                   os_threads=thr, ours_lambda1=rec["eigenvalues"][0], torch_lambda1=lam)
        table(f"hess-eig: Hessian of the training loss, {mode_name(threads)}",
              ["depth", "ours HVP ms", "torch HVP ms", "ratio (range)", "ours top-5 s (products)",
               "torch 20-iteration top-1 s", "ratio (range)", "threads ours / torch", "ours λ₁", "torch λ₁"],
              rows, [f"p = 97, {ctx.n_train} training pairs, width 128, checkpoint after 300 steps; "
                     f"medians of {ctx.reps} interleaved repetitions, ratio = ours / torch. Our HVP: the "
                     f"slope of hess-eig's time from {SHORT} to {LONG} power iterations; torch's: median of "
                     f"{HVP_REPS} products through the first-order graph built once (retain_graph=True)."])
        bench_walk(ctx, threads)
