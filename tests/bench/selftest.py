#!/usr/bin/env python3
"""Tests of make bench's own machinery, TAP output: that a process on more
threads than it claims is caught (ours and the PyTorch peer's), that a
pinned peer is on one thread, the interleaved ratios' median and range,
and the whole-study estimate on a made-up results tree.

usage: selftest.py       (about ten seconds; needs torch)"""

import json
import os
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import benchlib  # noqa: E402
import study_time  # noqa: E402
from benchlib import BenchError, Peer, Series, ThreadWatch, ratios, run_ours  # noqa: E402

n = failed = 0


def ok(cond, msg):
    global n, failed
    n += 1
    failed += not cond
    print(f"{'' if cond else 'not '}ok {n} - {msg}", flush=True)


def raises(f, *a, **kw):
    try:
        f(*a, **kw)
    except BenchError as e:
        return str(e)
    return None


THREADED = [sys.executable, "-c", "import threading, time\n"
            "ts = [threading.Thread(target=time.sleep, args=(0.3,)) for _ in range(3)]\n"
            "[t.start() for t in ts]; [t.join() for t in ts]"]


def test_watch():
    out, thr = run_ours([sys.executable, "-c", "import time; time.sleep(0.2)"], 1)
    ok(thr == 1, f"a one-thread process is counted on 1 thread (got {thr})")
    msg = raises(run_ours, THREADED, 1)
    ok(msg is not None and "4 threads" in msg, f"a process on 4 threads claiming 1 is caught: {msg}")
    out, thr = run_ours(THREADED, 4)
    ok(thr == 4, f"and claiming 4 it passes (got {thr})")
    w = ThreadWatch(os.getpid())
    w.sample()
    ok(w.result()["steady"] == 1, "this process, sampled, has one thread")


def test_peer():
    p = Peer(1, None)
    ans = p.call("describe")
    p.close()
    ok(ans["os_threads"] == 1 and ans["blas"].get("threads") in (None, 1) and ans["intraop_threads"] == 1,
       f"the pinned peer runs on one thread: {ans['os_threads']} OS, OpenBLAS {ans['blas'].get('threads')}, "
       f"intra-op {ans['intraop_threads']}")
    saved = benchlib.peer_env
    benchlib.peer_env = lambda threads, core: {**saved(threads, core), "OPENBLAS_NUM_THREADS": "2",
                                               "OMP_NUM_THREADS": "2"}
    try:
        msg = raises(Peer, 1, None)
    finally:
        benchlib.peer_env = saved
    ok(msg is not None and "not 1" in msg, f"a peer left on two threads is refused: {msg}")


def test_series():
    r = ratios(Series([1.0, 2.0, 3.0]), Series([2.0, 2.0, 2.0]))
    ok(r.values == [0.5, 1.0, 1.5] and r.median == 1.0, "ratios are taken pair by pair, median of them")
    ok(r.fmt(spread=True) == "1.00 (0.50–1.50)", f"with their range: {r.fmt(spread=True)}")


def test_study_time():
    ok(study_time.interp([(2, 0.5), (7, 1.0)], 4.5) == 0.75, "interpolation between measured depths")
    ok(study_time.interp([(2, 0.5), (7, 1.0)], 1) == 0.5, "flat below them")
    bench = [{"record": "bench", "threads": 1, "bench": "train_step", "depth": 2, "ratio": 0.5},
             {"record": "bench", "threads": 1, "bench": "train_step", "depth": 7, "ratio": 1.0},
             {"record": "bench", "threads": 2, "bench": "train_step", "depth": 2, "ratio": 9.0},
             {"record": "bench", "threads": 1, "bench": "hessian", "depth": 2, "solve_ratio": 0.25},
             {"record": "bench", "threads": 1, "bench": "llc", "depth": 2, "time_ratio": 2.0},
             {"record": "bench", "threads": 1, "bench": "gop", "depth": 2, "n": 100, "centred_ratio": 0.5},
             {"record": "bench", "threads": 1, "bench": "gop", "depth": 2, "n": 10000, "centred_ratio": 1.0}]
    r = study_time.Ratios(bench)
    ok(abs(r("gop-spectrum", 2, 1000) - 0.75) < 1e-12, "gop's ratio is interpolated in log n")
    ok(r("train-mlp", 2) == 0.5, "the all-cores ratios are not used")
    with tempfile.TemporaryDirectory() as d:
        os.makedirs(f"{d}/grok/d2-s0")
        with open(f"{d}/grok/d2-s0/log.jsonl", "w") as f:
            f.write(json.dumps({"record": "final", "wall_seconds": 10.0}) + "\n")
        with open(f"{d}/grok/d2-s0/hessian.jsonl", "w") as f:
            for s in (1.0, 2.0):
                f.write(json.dumps({"record": "hessian", "depth": 2, "seconds": s}) + "\n")
        os.makedirs(f"{d}/nanda/d1-s0")
        with open(f"{d}/nanda/d1-s0/log.jsonl", "w") as f:
            f.write(json.dumps({"record": "header", "family": "transformer"}) + "\n")
            f.write(json.dumps({"record": "final", "wall_seconds": 5.0}) + "\n")
        with open(f"{d}/nanda/d1-s0/hessian.jsonl", "w") as f:
            f.write(json.dumps({"record": "hessian", "family": "transformer", "depth": 1, "seconds": 0.5}) + "\n")
        recs, other = study_time.study_records(d)
        recs = sorted(recs)
        ok(recs == [("hess-eig", 2, None, 1.0), ("hess-eig", 2, None, 2.0), ("train-mlp", 2, None, 10.0)],
           f"the tree's timed MLP records: {recs}")
        ok(other == 5.5, f"the transformer's records are left out of the estimate, and counted: {other}")
        ok(sum(s / r(t, dep, nn) for t, dep, nn, s in recs) == 32.0, "estimate: 10/0.5 + 3/0.25 = 32 s")


def main():
    for t in (test_watch, test_peer, test_series, test_study_time):
        t()
    print(f"1..{n}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
