#!/usr/bin/env python3
"""nanda-split.py OUT [P] [FRAC] [SEED]: the progress-measures paper's own
train/test split of x + y mod P, as a gen-modadd data set.

The paper's `gen_train_test` lists the pairs (i, j) in row-major order,
shuffles them with Python's `random.seed(SEED); random.shuffle(pairs)`
and takes the first int(FRAC * P^2) as the training set (3,830 of 12,769
at P = 113, FRAC = 0.3, SEED = 0; gen-modadd rounds, 3,831).  Written in
gen-modadd's safetensors layout (train.x I32 [n, 2], train.y, test.x,
test.y, its metadata, the rows in the shuffled order), so that
train-transformer trains on exactly the pairs the paper's model saw.
Defaults: P 113, FRAC 0.3, SEED 0, the paper's.
"""
import json
import random
import struct
import sys


def split(p, frac, seed):
    pairs = [(i, j) for i in range(p) for j in range(p)]
    random.seed(seed)
    random.shuffle(pairs)
    div = int(frac * len(pairs))
    return pairs[:div], pairs[div:]


def safetensors(p, frac, seed, train, test):
    meta = {"p": str(p), "op": "add", "frac": repr(frac), "split": "random",
            "seed": str(seed), "generator": "nanda-split.py (random.shuffle)",
            "format": "modadd-v1", "holdout": ""}
    blobs, header, off = [], {"__metadata__": meta}, 0
    for name, rows in (("train", train), ("test", test)):
        for part, shape, vals in (
                ("x", [len(rows), 2], [v for r in rows for v in r]),
                ("y", [len(rows)], [(i + j) % p for i, j in rows])):
            b = struct.pack(f"<{len(vals)}i", *vals)
            header[f"{name}.{part}"] = {"dtype": "I32", "shape": shape,
                                        "data_offsets": [off, off + len(b)]}
            blobs.append(b)
            off += len(b)
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    return struct.pack("<Q", len(h)) + h + b"".join(blobs)


def main(argv):
    if not 2 <= len(argv) <= 5:
        print("usage: nanda-split.py OUT [P] [FRAC] [SEED]", file=sys.stderr)
        return 2
    try:
        p = int(argv[2]) if len(argv) > 2 else 113
        frac = float(argv[3]) if len(argv) > 3 else 0.3
        seed = int(argv[4]) if len(argv) > 4 else 0
    except ValueError as e:
        print(f"nanda-split.py: {e}", file=sys.stderr)
        return 2
    if not (2 <= p <= 4096 and 0 < frac < 1):
        print("nanda-split.py: P must be 2..4096 and FRAC in (0, 1)", file=sys.stderr)
        return 2
    train, test = split(p, frac, seed)
    try:
        with open(argv[1], "wb") as f:
            f.write(safetensors(p, frac, seed, train, test))
    except OSError as e:
        print(f"nanda-split.py: {argv[1]}: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
