"""make bench, the parent side shared by its parts: running our tools and the
PyTorch peer (tests/bench/peers.py, a process of its own) on the threads
each claims, checking that they did, interleaving their repetitions, and
printing markdown tables.

No torch here: torch reads its thread settings when it is imported, so it
is imported only in a peer process started with them in its environment.
"""

import collections
import json
import os
import select
import statistics
import struct
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
NCPU = len(os.sched_getaffinity(0))
THREAD_VARS = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")
POLL = 0.005   # seconds between thread-count samples


class BenchError(Exception):
    pass


def note(msg):
    """Progress for the person waiting: stderr, so stdout stays the tables."""
    print(f"bench: {msg}", file=sys.stderr, flush=True)


def st_header(path):
    """A safetensors file's header (tensor shapes, __metadata__), read
    without numpy or torch."""
    with open(path, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        return json.loads(f.read(n))


class ThreadWatch:
    """Samples how many threads a process has while it runs.

    `steady` is the count held for most of the samples, `peak` the largest:
    our tools re-execute themselves once at start (blas.c) and the first
    image may start OpenBLAS's pool before it does, a transient that is not
    the run's thread count."""

    def __init__(self, pid):
        self.pid = pid
        self.counts = collections.Counter()

    def sample(self):
        try:
            with open(f"/proc/{self.pid}/status") as f:
                for line in f:
                    if line.startswith("Threads:"):
                        self.counts[int(line.split()[1])] += 1
                        return
        except OSError:   # it has just exited
            pass

    def result(self):
        if not self.counts:
            return {"steady": None, "peak": None}
        return {"steady": self.counts.most_common(1)[0][0], "peak": max(self.counts)}


def check_threads(who, watched, want):
    if watched["steady"] is not None and watched["steady"] != want:
        raise BenchError(f"{who} ran on {watched['steady']} threads, not the {want} it claims")


def ours_env():
    """Our tools set OPENBLAS_NUM_THREADS themselves from --threads; a value
    inherited from the caller would override them, so none is passed on."""
    env = dict(os.environ)
    for v in THREAD_VARS:
        env.pop(v, None)
    return env


def run_ours(cmd, threads):
    """Run one of our programs, watching its threads; its stdout, and the
    thread count (which must be `threads`)."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(cmd, stdout=out, stderr=err, env=ours_env())
        watch = ThreadWatch(proc.pid)
        while proc.poll() is None:
            watch.sample()
            time.sleep(POLL)
        out.seek(0)
        err.seek(0)
        if proc.returncode != 0:
            raise BenchError(f"{' '.join(cmd)}: exit {proc.returncode}: {err.read().decode().strip()}")
        watched = watch.result()
        check_threads(os.path.basename(cmd[0]), watched, threads)
        return out.read().decode(), watched["steady"]


def last_record(text):
    return json.loads(text.strip().splitlines()[-1])


def peer_env(threads, coretype):
    """The peer's environment: every pool torch may use limited before it
    loads, and OpenBLAS on the same kernels as ours."""
    env = dict(os.environ)
    for v in THREAD_VARS:
        env[v] = str(threads)
    if coretype:
        env["OPENBLAS_CORETYPE"] = coretype
    return env


class Peer:
    """The PyTorch side, a child process answering one JSON request a line.

    `threads` is what every pool of it gets (1, or all cores).  Each call's
    thread count is watched from here while it runs, and in the one-thread
    peer must be exactly one."""

    def __init__(self, threads, coretype, script="peers.py"):
        self.threads = threads
        self.proc = subprocess.Popen([sys.executable, os.path.join(HERE, script)], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, env=peer_env(threads, coretype))
        self.buf = b""
        self.hello = self._answer(ThreadWatch(self.proc.pid))
        blas = self.hello["blas"]
        if blas.get("threads") not in (None, threads) or self.hello["intraop_threads"] != threads:
            raise BenchError(f"torch peer: OpenBLAS {blas.get('threads')} and intra-op "
                             f"{self.hello['intraop_threads']} threads, not {threads}")

    def _answer(self, watch):
        fd = self.proc.stdout.fileno()
        while b"\n" not in self.buf:
            watch.sample()
            ready, _, _ = select.select([fd], [], [], POLL)
            if ready:
                chunk = os.read(fd, 1 << 16)
                if not chunk:
                    raise BenchError(f"torch peer exited (status {self.proc.wait()})")
                self.buf += chunk
        line, self.buf = self.buf.split(b"\n", 1)
        ans = json.loads(line)
        if "error" in ans:
            raise BenchError(f"torch peer: {ans['error']}")
        ans["os_threads"] = watch.result()["steady"]
        return ans

    def call(self, job, **args):
        self.proc.stdin.write((json.dumps({"job": job, "args": args}) + "\n").encode())
        self.proc.stdin.flush()
        ans = self._answer(ThreadWatch(self.proc.pid))
        if self.threads == 1:
            check_threads(f"torch peer ({job})", {"steady": ans["os_threads"]}, 1)
        return ans

    def close(self):
        self.proc.stdin.close()
        self.proc.wait()


def peer_once(threads, coretype, job, script="peers.py", **args):
    """One job in a fresh peer process (for peak memory, which must not
    include an earlier job's); script: a peer that adds jobs to peers.py's."""
    out = subprocess.run([sys.executable, os.path.join(HERE, script), "--once",
                          json.dumps({"job": job, "args": args})], env=peer_env(threads, coretype),
                         check=True, capture_output=True, text=True).stdout
    return json.loads(out.splitlines()[-1])


def peer_defaults():
    """What torch uses on this machine left to its defaults (no thread
    variable set): the all-cores peer sets them, so this is said beside."""
    env = {k: v for k, v in os.environ.items() if k not in THREAD_VARS}
    out = subprocess.run([sys.executable, os.path.join(HERE, "peers.py"), "--once",
                          json.dumps({"job": "describe", "args": {}})], env=env, check=True, capture_output=True,
                         text=True).stdout
    return json.loads(out.splitlines()[-1])


class Series:
    """Repeated measurements of one quantity: median and range."""

    def __init__(self, values=None):
        self.values = list(values or [])

    def add(self, v):
        self.values.append(v)

    @property
    def median(self):
        return statistics.median(self.values)

    def fmt(self, digits=2, spread=False):
        s = f"{self.median:.{digits}f}"
        if spread:
            s += f" ({min(self.values):.{digits}f}–{max(self.values):.{digits}f})"
        return s


def ratios(ours, theirs):
    """Rep by rep: each ratio is of two measurements taken back to back."""
    return Series(o / t for o, t in zip(ours.values, theirs.values))


def table(title, head, rows, notes=()):
    """A markdown table with a title line and notes under it."""
    lines = [f"**{title}**", "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    if notes:
        lines += [""] + list(notes)
    print("\n".join(lines) + "\n", flush=True)


def mode_name(threads):
    return "one thread each" if threads == 1 else f"all {threads} cores each"


def record(ctx, **rec):
    """A JSON record of every figure, for the whole-study estimate."""
    ctx.records.write(json.dumps({"record": "bench", **rec}) + "\n")
    ctx.records.flush()
