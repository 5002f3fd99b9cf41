#!/usr/bin/env python3
"""make bench: our tools against the PyTorch programs a user would write
for the same work (tests/bench/peers.py), measured in one run, one thread
each and then all cores each, printed as markdown tables under a line
that says on what machine; every figure also as a JSON record in RECORDS
(for study_time.py).

Fair by construction, and checked: every PyTorch peer runs in a process
started with OPENBLAS_NUM_THREADS, OMP_NUM_THREADS and MKL_NUM_THREADS set
(torch reads them when it loads) and with OpenBLAS on our kernels; our
tools get --threads and set OpenBLAS up themselves.  Both sides' threads
are counted in /proc while they run and printed beside every figure; a
one-thread figure from a process that had more threads stops the bench.
Each ratio is the median of REPS repetitions in which the two sides take
turns, with its range.

usage: run.py [--only PARTS] [--reps N] [--one-thread] BINDIR BENCHDIR DATA RECORDS
  PARTS  comma-separated: train,hess,blocks,gop,llc,progress,transformer,eig (default all)"""

import argparse
import json
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench_blocks  # noqa: E402
import bench_gop  # noqa: E402
import bench_hess  # noqa: E402
import bench_llc  # noqa: E402
import bench_progress  # noqa: E402
import bench_train  # noqa: E402
import bench_transformer  # noqa: E402
import machine  # noqa: E402
from benchlib import NCPU, BenchError, Peer, note, peer_defaults, run_ours, st_header, table  # noqa: E402

PARTS = {"train": bench_train.bench, "hess": bench_hess.bench, "blocks": bench_blocks.bench, "gop": bench_gop.bench,
         "llc": bench_llc.bench,
         "progress": bench_progress.bench, "transformer": bench_transformer.bench}


class Context:
    def __init__(self, args, work, records):
        self.bindir, self.benchdir, self.data = args.bindir, args.benchdir, args.data
        self.work, self.records, self.reps = work, records, args.reps
        self.modes = [1] if args.one_thread or NCPU == 1 else [1, NCPU]
        self.n_train = f"{st_header(args.data)['train.y']['shape'][0]:,}"
        self.ours_blas = machine.ours_blas(self.bindir, self.data)
        # The peer's OpenBLAS gets our kernels: the comparison is of the
        # programs, not of two kernel families.
        self.coretype = self.ours_blas["core"]
        self.peers = {}

    def peer(self, threads):
        if threads not in self.peers:
            self.peers[threads] = Peer(threads, self.coretype)
            b = self.peers[threads].hello["blas"]
            if b.get("core") and b["core"].lower() != self.coretype.lower():
                raise BenchError(f"torch's OpenBLAS runs {b['core']} kernels, ours {self.coretype}")
        return self.peers[threads]

    def close(self):
        for p in self.peers.values():
            p.close()


def eig(ctx):
    out, thr = run_ours([os.path.join(ctx.benchdir, "bench_eig"), "2823"], 1)
    r = json.loads(out)
    table("LAPACK on a GOP-sized matrix (n = 2,823), one thread",
          ["dsyevd s", "dsyevd_2stage s", "dsyevr top-10 s", "Gram: dsytrd_2stage s", "dsterf s", "dpteqr s"],
          [[r["dsyevd_seconds"], r["dsyevd_2stage_seconds"], r["dsyevr_top10_seconds"],
            r["gram_dsytrd_2stage_seconds"], r["gram_dsterf_seconds"], r["gram_dpteqr_seconds"]]],
          ["One run of `bench_eig 2823`: dsyevd is what torch.linalg.eigvalsh calls; the two-stage form is "
           "gop-spectrum's; the Gram row is the two-stage route's parts on a positive definite matrix."])


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", default="train,hess,blocks,gop,llc,progress,transformer,eig")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--one-thread", action="store_true")
    ap.add_argument("bindir")
    ap.add_argument("benchdir")
    ap.add_argument("data")
    ap.add_argument("records")
    args = ap.parse_args()
    parts = args.only.split(",")
    unknown = [p for p in parts if p not in PARTS and p != "eig"]
    if unknown or args.reps < 3:
        ap.error(f"unknown part {unknown[0]}" if unknown else "--reps must be at least 3")
    load_start, t0 = machine.load(), time.time()
    with tempfile.TemporaryDirectory() as work, open(args.records + "+", "w") as records:
        ctx = Context(args, work, records)
        try:
            hello, defaults = ctx.peer(1).hello, peer_defaults()
            print(machine.line(ctx.ours_blas, hello, defaults) + "\n", flush=True)
            records.write(json.dumps({"record": "machine", "cpu": machine.cpu_model(), "cores": NCPU,
                                      "ours_blas": ctx.ours_blas, "torch": hello, "torch_defaults": defaults})
                          + "\n")
            for p in parts:
                note(f"{p} ...")
                if p == "eig":
                    eig(ctx)
                else:
                    PARTS[p](ctx)
        except BenchError as e:
            print(f"bench: {e}", file=sys.stderr)
            return 1
        finally:
            ctx.close()
        print(f"Load average {load_start} at the start, {machine.load()} at the end; "
              f"the bench took {time.time() - t0:.0f} s.")
    os.replace(args.records + "+", args.records)
    return 0


if __name__ == "__main__":
    sys.exit(main())
