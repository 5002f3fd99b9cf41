#!/usr/bin/env python3
"""The whole study's time: a finished study's results tree split by tool
(the seconds its own records give), and an estimate of the same study's
time written in PyTorch, from the per-tool ratios of a `make bench` run.

Measured, per tool: train-mlp's `wall_seconds` (final record of each
log.jsonl), and the `seconds` of every hess-eig, gop-spectrum and
llc-estimate record (one per checkpoint).  Not counted: gen-modadd, the
LLC calibration (its records go to a table without their times), the
summaries and plots.

Estimated, per record: our seconds / the bench's one-thread ratio for that
tool (ours / torch) at the record's depth, interpolated linearly between
the depths the bench measured (the nearest one outside them); for
gop-spectrum also between the bench's two set sizes, linearly in log n.
The ratios used: train-mlp, the training step's (applied to the whole run,
evaluation and checkpoints included); hess-eig, the solve's (our top-k
Lanczos against PyHessian's 20-iteration top-1 power method, which
finds one eigenvalue where the study asks for three: an estimate that
favours PyTorch); gop-spectrum, the default record's (centred spectrum
too) against the closed-form Gram + eigvalsh; llc-estimate, the time per
draw.  The bench runs at p = 97; the study's own sizes differ.

usage: study_time.py RESULTS BENCH_RECORDS     prints a markdown table"""

import bisect
import glob
import json
import math
import os
import re
import sys


def jsonl(path):
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def interp(points, x):
    """Piecewise-linear through sorted (x, y) points, flat outside."""
    xs = [p[0] for p in points]
    if x <= xs[0]:
        return points[0][1]
    if x >= xs[-1]:
        return points[-1][1]
    i = bisect.bisect_right(xs, x)
    (x0, y0), (x1, y1) = points[i - 1], points[i]
    return y0 + (y1 - y0) * (x - x0) / (x1 - x0)


class Ratios:
    """The bench's one-thread ratios, tool by tool, as functions of depth
    (and of n for gop-spectrum)."""

    def __init__(self, records):
        one = [r for r in records if r.get("record") == "bench" and r.get("threads") == 1]
        self.by = {}
        for tool, bench, key in (("train-mlp", "train_step", "ratio"), ("hess-eig", "hessian", "solve_ratio"),
                                 ("llc-estimate", "llc", "time_ratio")):
            self.by[tool] = sorted((r["depth"], r[key]) for r in one if r["bench"] == bench)
        self.gop = {}
        for r in one:
            if r["bench"] == "gop":
                self.gop.setdefault(r["n"], []).append((r["depth"], r["centred_ratio"]))
        missing = [t for t, v in self.by.items() if not v] + ([] if self.gop else ["gop-spectrum"])
        if missing:
            sys.exit(f"study_time: no one-thread ratio for {', '.join(missing)} in the bench records")

    def __call__(self, tool, depth, n=None):
        if tool != "gop-spectrum":
            return interp(self.by[tool], depth)
        pts = sorted((math.log(size), interp(sorted(v), depth)) for size, v in self.gop.items())
        return interp(pts, math.log(n))


def run_depth(path):
    m = re.match(r"d(\d+)-s", os.path.basename(os.path.dirname(path)))
    return int(m.group(1)) if m else None


def study_records(results):
    """(tool, depth, n, seconds) for every timed record of the tree's MLP
    runs (the bench's ratios are the MLP's), and the seconds of the other
    families' records, which are left out of the estimate."""
    out, other = [], 0.0
    for log in glob.glob(os.path.join(results, "*", "*", "log.jsonl")):
        recs = jsonl(log)
        final = [r for r in recs if r.get("record") == "final"]
        if not final:
            continue
        if recs[0].get("family", "mlp") != "mlp":
            other += final[-1]["wall_seconds"]
            continue
        out.append(("train-mlp", run_depth(log), None, final[-1]["wall_seconds"]))
    for tool, name, kind in (("hess-eig", "hessian.jsonl", "hessian"), ("gop-spectrum", "gop.jsonl", "gop"),
                             ("llc-estimate", "llc.jsonl", "llc")):
        for path in glob.glob(os.path.join(results, "*", "*", name)):
            for r in jsonl(path):
                if r.get("record") != kind:
                    continue
                if r.get("family", "mlp") != "mlp":
                    other += r["seconds"]
                else:
                    out.append((tool, r.get("depth", run_depth(path)), r.get("n"), r["seconds"]))
    return out, other


def main():
    if len(sys.argv) != 3:
        print("usage: study_time.py RESULTS BENCH_RECORDS", file=sys.stderr)
        return 2
    results, bench = sys.argv[1:]
    ratio = Ratios(jsonl(bench))
    recs, other = study_records(results)
    if not recs:
        sys.exit(f"study_time: {results}: no finished records")
    tools = ("train-mlp", "hess-eig", "gop-spectrum", "llc-estimate")
    ours = {t: sum(s for tt, _, _, s in recs if tt == t) for t in tools}
    theirs = {t: sum(s / ratio(t, d, n) for tt, d, n, s in recs if tt == t) for t in tools}
    count = {t: sum(1 for r in recs if r[0] == t) for t in tools}
    total, total_t = sum(ours.values()), sum(theirs.values())
    print("| tool | records | ours s | share | PyTorch, estimated s | ours / PyTorch |")
    print("|---|---|---|---|---|---|")
    for t in tools:
        if count[t]:
            print(f"| {t} | {count[t]} | {ours[t]:,.0f} | {100 * ours[t] / total:.0f}% | {theirs[t]:,.0f} | "
                  f"{ours[t] / theirs[t]:.2f} |")
    print(f"| all | {len(recs)} | {total:,.0f} | 100% | {total_t:,.0f} | {total / total_t:.2f} |")
    if other:
        print(f"\n(The other families' training and analysis records, {other:,.0f} s, are not in the estimate: "
              "the bench's ratios are the MLP's.)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
