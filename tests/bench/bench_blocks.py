"""make bench, blocks part: hess-eig --blocks on a depth-7 MLP checkpoint
(every layer's diagonal block of the Hessian: its top eigenvalue by
Lanczos to 1e-4, --converge value, and its Hutchinson trace on PROBES
probes shared with the whole trace's), against

- one whole-Hessian top-5 solve of ours on the same checkpoint (Lanczos to
  1e-4, --converge value): what the per-layer view costs over the usual
  sharpness (the target: at most 3 times);
- PyTorch doing the same block spectra product for product
  (peers_blocks.py: the first-order graph built once, each block's product
  a masked double backward, Lanczos with as many products per block as
  ours took, traces on as many probes): the target, at most a third of
  its time.

Both of ours are the record's own time (checkpoint read, loss and
gradient included); PyTorch's from the model in memory, graph building
included.  One thread each.  The three take turns within each repetition;
a ratio is the median over the repetitions with its range.
Run alone: run.py --only blocks."""

import os

import bench_hess
from benchlib import Peer, Series, mode_name, ratios, record, table

DEPTH = 7
PROBES = 20
SCRIPT = "peers_blocks.py"


def measure(ctx, ck):
    peer = Peer(1, ctx.coretype, script=SCRIPT)
    m = {k: Series() for k in ("ours_top5", "ours_blocks", "torch_blocks")}
    thr = {}
    try:
        for _ in range(ctx.reps):
            top5, _ = bench_hess.hess_eig(ctx, 1, ck, "--top", "5", "--converge", "value", "--tol", "1e-4")
            m["ours_top5"].add(top5["seconds"])
            rec, thr["ours"] = bench_hess.hess_eig(ctx, 1, ck, "--top", "1", "--converge", "value",
                                                   "--tol", "1e-4", "--blocks", "--probes", str(PROBES))
            m["ours_blocks"].add(rec["seconds"])
            ans = peer.call("block_spectra", data=ctx.data, ckpt=ck, depth=DEPTH, main_steps=rec["iterations"],
                            block_steps=[b["iterations"] for b in rec["blocks"]], probes=PROBES, seed=0)
            m["torch_blocks"].add(ans["seconds"])
            thr["torch"] = ans["os_threads"]
    finally:
        peer.close()
    return m, rec, ans, thr


def bench(ctx):
    ck = bench_hess.checkpoint(ctx, DEPTH)
    m, rec, ans, thr = measure(ctx, ck)
    rw, rt = ratios(m["ours_blocks"], m["ours_top5"]), ratios(m["ours_blocks"], m["torch_blocks"])
    ours_lam = [b["lambda_max"] for b in rec["blocks"]]
    g = max(range(len(ours_lam)), key=lambda i: ours_lam[i])
    rel = max(abs(a - b) / abs(a) for a, b in zip(ours_lam, ans["block_lambda"]))
    table(f"hess-eig --blocks: every layer's Hessian block at depth {DEPTH}, {mode_name(1)}",
          ["ours top-5 s", "ours blocks s (products)", "blocks / top-5 (range)", "torch blocks s",
           "ours / torch (range)", "threads ours / torch",
           f"sharpest block λ₁ ours / torch ({rec['blocks'][g]['group']})", "largest block λ₁ difference"],
          [[m["ours_top5"].fmt(), f"{m['ours_blocks'].fmt()} ({rec['hvps']})", rw.fmt(spread=True),
            m["torch_blocks"].fmt(), rt.fmt(spread=True), f"{thr['ours']} / {thr['torch']}",
            f"{ours_lam[g]:.6g} / {ans['block_lambda'][g]:.6g}", f"{rel:.1e}"]],
          [f"p = 97, {ctx.n_train} training pairs, width 128, depth {DEPTH} ({len(ours_lam)} blocks), checkpoint "
           f"after 300 steps; medians of {ctx.reps} interleaved repetitions.  Blocks: each block's top-1 to "
           f"1e-4 and its trace on {PROBES} probes, with the whole trace on the same probes and the whole "
           f"top-1; torch takes as many products per block as ours did (masked double backward through "
           f"the first-order graph built once).  The λ₁ difference: relative, largest over the blocks; ours "
           f"converged to 1e-4, torch's took as many steps from another start vector, so it need not be."])
    record(ctx, bench="blocks", threads=1, depth=DEPTH, probes=PROBES, **{k: v.values for k, v in m.items()},
           blocks_over_top5=rw.median, blocks_over_top5_range=[min(rw.values), max(rw.values)],
           ours_over_torch=rt.median, ours_over_torch_range=[min(rt.values), max(rt.values)],
           ours_products=rec["hvps"], os_threads=thr, ours_block_lambda=ours_lam,
           torch_block_lambda=ans["block_lambda"])
