"""make bench: the machine a table was measured on, as one line to print
with it: CPU model, cores, both sides' OpenBLAS kernels and versions, and
the load average (others' work on the machine moves every timing).

usage: machine.py BINDIR DATA        prints the line for our side alone"""

import json
import os
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from benchlib import NCPU, ours_env  # noqa: E402


def cpu_model():
    fields = {}
    with open("/proc/cpuinfo") as f:
        for line in f:
            if ":" in line:
                k, v = (s.strip() for s in line.split(":", 1))
                fields.setdefault(k, v)
            elif fields:
                break
    name = fields.get("model name", "unknown CPU")
    fam, mod = fields.get("cpu family"), fields.get("model")
    return f"{name} (family {fam}, model {mod})" if fam else name


def ours_blas(bindir, data):
    """Our tools' OpenBLAS, from a train-mlp header: what the tools run on
    after their own set-up (blas.c may choose the kernels)."""
    with tempfile.TemporaryDirectory() as d:
        out = subprocess.run([os.path.join(bindir, "train-mlp"), "--data", data, "--steps", "1",
                              "--ckpt-dir", d, "--quiet"], check=True, capture_output=True, text=True,
                             env=ours_env()).stdout
    return json.loads(out.splitlines()[0])["blas"]


def load():
    return "{:.1f}".format(os.getloadavg()[0])


def line(ours, peer_hello=None, defaults=None):
    """`ours` is a train-mlp header's blas object; `peer_hello` the torch
    peer's description of itself, `defaults` torch's with no thread
    variable set."""
    env_core = os.environ.get("OPENBLAS_CORETYPE")
    parts = [f"{cpu_model()}, {NCPU} cores"]
    parts.append(f"ours: {ours['config'].split(' ')[0]} {ours['config'].split(' ')[1]}, {ours['core']} kernels")
    if peer_hello:
        b = peer_hello["blas"]
        parts.append(f"torch {peer_hello['torch']}: {b.get('library', '?')}, {b.get('core', '?')} kernels")
    if defaults:
        parts.append(f"torch's defaults here: intra-op threads {defaults['intraop_threads']}, OpenBLAS threads "
                     f"{defaults['blas'].get('threads', '?')}")
    if env_core:
        parts.append(f"OPENBLAS_CORETYPE={env_core} set in the environment")
    return "Machine: " + "; ".join(parts) + "."


if __name__ == "__main__":
    print(line(ours_blas(sys.argv[1], sys.argv[2])))
