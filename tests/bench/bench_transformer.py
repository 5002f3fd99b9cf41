"""make bench, transformer part: train-transformer's full-batch step and
hess-eig's Hessian-vector product on a transformer, against PyTorch running
the papers' module as written (peers_transformer.py: check_transformer.py's
Transformer, float32, every position through every layer), one thread each,
at Nanda et al.'s configuration (p = 113, 30% of the pairs: 3,830 training
rows, d_model 128, 4 heads, d_mlp 512, '=') for one and two layers; then the
peak memory of a 20-step training run of each.  Issue 17's targets: step
<= 0.33x PyTorch's, product <= 0.5x, peak memory <= 1/5.

Our step is timed without start-up or evaluation: two runs of S1 and S2
steps, each logging only at its start and end, (t2 - t1) / (S2 - S1) of
their own wall_seconds.  Our product likewise: hess-eig with K1 and K2
Lanczos steps (a tolerance never met), (t2 - t1) / (hvps2 - hvps1).
PyTorch's product is one backward through the first-order graph, built
beforehand (PyHessian's way), as hess-eig prepares its point once.  Each
repetition measures ours then theirs, back to back; a ratio is the median
over the repetitions of ours / theirs, with its range.

Run alone: run.py --only transformer.  BENCH_TRANSFORMER_P and
BENCH_TRANSFORMER_LAYERS (e.g. 23 and 1) shrink it to check that it works;
the table says so."""

import json
import os

from benchlib import Peer, Series, last_record, peer_once, ratios, record, run_ours, table

S1, S2 = 5, 25           # our step: two runs' lengths
K1, K2 = 10, 40          # our product: two runs' Lanczos steps
STEPS = 10               # torch's step: a repetition's median of this many
PRODUCTS = 10            # torch's product: likewise
PEAK_STEPS = 20
SCRIPT = "peers_transformer.py"


def sizes():
    p = int(os.environ.get("BENCH_TRANSFORMER_P", "113"))
    layers = [int(x) for x in os.environ.get("BENCH_TRANSFORMER_LAYERS", "1,2").split(",")]
    return p, layers


def data_set(ctx, p):
    path = os.path.join(ctx.work, f"transformer-p{p}.safetensors")
    run_ours([os.path.join(ctx.bindir, "gen-modadd"), "-p", str(p), "--frac", "0.3", "-o", path], 1)
    return path


def our_step_ms(ctx, data, layers):
    def wall(steps):
        out, thr = run_ours([os.path.join(ctx.bindir, "train-transformer"), "--data", data, "--layers", str(layers),
                             "--steps", str(steps), "--log-every", str(steps), "--quiet", "--threads", "1"], 1)
        return last_record(out)["wall_seconds"], thr
    (t1, _), (t2, thr) = wall(S1), wall(S2)
    return 1e3 * (t2 - t1) / (S2 - S1), thr


def our_hvp_ms(ctx, data, ckpt):
    def secs(k):
        out, thr = run_ours([os.path.join(ctx.bindir, "hess-eig"), "--data", data, "--top", "1", "--tol", "1e-300",
                             "--max-iter", str(k), "--threads", "1", ckpt], 1)
        rec = [r for r in map(json.loads, out.splitlines()) if r.get("record") == "hessian"][0]
        return rec["seconds"], rec["hvps"], thr
    (t1, n1, _), (t2, n2, thr) = secs(K1), secs(K2)
    return 1e3 * (t2 - t1) / (n2 - n1), thr


def memory(ctx, data, layers):
    out, _ = run_ours([os.path.join(ctx.bindir, "train-transformer"), "--data", data, "--layers", str(layers),
                       "--steps", str(PEAK_STEPS), "--log-every", str(PEAK_STEPS), "--quiet"], 1)
    ours = last_record(out)["peak_rss_mib"]
    theirs = peer_once(1, ctx.coretype, "tfm_train_peak", script=SCRIPT, data=data, layers=layers,
                       steps=PEAK_STEPS)["peak_mib"]
    return ours, theirs


def measure(ctx, peer, data, layers, ckpt):
    s_ours, s_theirs, h_ours, h_theirs, thr = Series(), Series(), Series(), Series(), {}
    for _ in range(ctx.reps):
        ms, thr["ours"] = our_step_ms(ctx, data, layers)
        s_ours.add(ms)
        ans = peer.call("tfm_train_step", data=data, layers=layers, reps=STEPS)
        s_theirs.add(1e3 * ans["seconds"])
        ms, _ = our_hvp_ms(ctx, data, ckpt)
        h_ours.add(ms)
        ans = peer.call("tfm_hvp_time", data=data, ckpt=ckpt, layers=layers, reps=PRODUCTS)
        h_theirs.add(1e3 * ans["seconds"])
        thr["torch"] = ans["os_threads"]
    return s_ours, s_theirs, h_ours, h_theirs, thr


def bench(ctx):
    p, layer_list = sizes()
    data = data_set(ctx, p)
    peer = Peer(1, ctx.coretype, script=SCRIPT)
    rows = []
    try:
        for layers in layer_list:
            ckpt = os.path.join(ctx.work, f"transformer-L{layers}.safetensors")
            run_ours([os.path.join(ctx.bindir, "train-transformer"), "--data", data, "--layers", str(layers),
                      "--steps", "50", "--log-every", "50", "--out", ckpt, "--quiet"], 1)
            s_o, s_t, h_o, h_t, thr = measure(ctx, peer, data, layers, ckpt)
            sr, hr = ratios(s_o, s_t), ratios(h_o, h_t)
            mo, mt = memory(ctx, data, layers)
            rows.append([layers, s_o.fmt(), s_t.fmt(), sr.fmt(spread=True), h_o.fmt(), h_t.fmt(),
                         hr.fmt(spread=True), f"{mo:.1f}", f"{mt:.1f}", f"{mo / mt:.3f}",
                         f"{thr['ours']} / {thr['torch']}"])
            record(ctx, bench="transformer", threads=1, p=p, layers=layers, step_ms=s_o.values,
                   torch_step_ms=s_t.values, step_ratio=sr.median, step_ratio_range=[min(sr.values), max(sr.values)],
                   hvp_ms=h_o.values, torch_hvp_ms=h_t.values, hvp_ratio=hr.median,
                   hvp_ratio_range=[min(hr.values), max(hr.values)], ours_mib=mo, torch_mib=mt, os_threads=thr)
    finally:
        peer.close()
    size = "Nanda's configuration" if p == 113 else f"p = {p}, NOT Nanda's p = 113 (a check that the bench works)"
    table("train-transformer and hess-eig on the papers' transformer, one thread each",
          ["layers", "step ms", "torch ms", "ratio (range)", "H v ms", "torch ms", "ratio (range)", "ours MiB",
           "torch MiB", "memory ratio", "threads ours / torch"], rows,
          [f"{size}: 30% of the pairs as training rows, d_model 128, 4 heads, d_mlp 512, '='; full batch. "
           f"Ours: differences of runs of {S1} and {S2} steps, and of hess-eig with {K1} and {K2} Lanczos steps; "
           f"torch: the papers' module as written, a repetition's median of {STEPS} steps and of {PRODUCTS} "
           f"products through a first-order graph built beforehand; medians of {ctx.reps} interleaved "
           f"repetitions, ratio = ours / torch with its range. Memory: peak RSS (VmHWM) of a {PEAK_STEPS}-step "
           f"run of each, torch's import included. Targets (issue 17): step <= 0.33, H v <= 0.5, memory <= 0.2."])
