"""Shared by the PyTorch reference checks: our file formats read with numpy
alone, the PCG32 streams re-implemented from the reference algorithm, the
model as a torch nn.Sequential, and TAP output."""

import json
import struct
import subprocess

import numpy as np
import torch

DTYPES = {"F32": "<f4", "F64": "<f8", "I32": "<i4", "I64": "<i8", "U8": "u1"}


def load_st(path):
    """A safetensors file as (metadata, {name: array}), without our C code."""
    raw = open(path, "rb").read()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + n])
    meta = header.pop("__metadata__", {})
    data = raw[8 + n:]
    out = {}
    for name, t in header.items():
        b, e = t["data_offsets"]
        out[name] = np.frombuffer(data[b:e], dtype=DTYPES[t["dtype"]]).reshape(t["shape"])
    return meta, out


def read_jsonl(text):
    return [json.loads(line) for line in text.splitlines() if line.strip()]


M64 = (1 << 64) - 1


def splitmix64(x):
    x = (x + 0x9E3779B97F4A7C15) & M64
    z = x
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & M64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & M64
    return x, z ^ (z >> 31)


class PCG32:
    """O'Neill's pcg32 (XSH-RR 64/32), seeded as tools/lib/rng.c seeds a stream."""

    SHUFFLE = 3

    def __init__(self, seed, stream):
        _, initstate = splitmix64((seed ^ (stream << 56)) & M64)
        self.state = 0
        self.inc = ((stream << 1) | 1) & M64
        self.next()
        self.state = (self.state + initstate) & M64
        self.next()

    def next(self):
        old = self.state
        self.state = (old * 6364136223846793005 + self.inc) & M64
        xs = (((old >> 18) ^ old) >> 27) & 0xFFFFFFFF
        rot = old >> 59
        return ((xs >> rot) | (xs << ((-rot) & 31))) & 0xFFFFFFFF

    def below(self, bound):
        threshold = ((1 << 32) - bound) % bound
        while True:
            v = self.next()
            if v >= threshold:
                return v % bound

    def shuffle(self, a):
        for i in range(len(a), 1, -1):
            j = self.below(i)
            a[i - 1], a[j] = a[j], a[i - 1]


def model_from(params, depth):
    """nn.Sequential(Linear, ReLU, ..., Linear) holding the checkpoint's tensors."""
    layers = []
    for i in range(depth + 1):
        w = torch.tensor(np.array(params[f"layers.{i}.weight"]))
        lin = torch.nn.Linear(w.shape[1], w.shape[0])
        with torch.no_grad():
            lin.weight.copy_(w)
            lin.bias.copy_(torch.tensor(np.array(params[f"layers.{i}.bias"])))
        layers.append(lin)
        if i < depth:
            layers.append(torch.nn.ReLU())
    return torch.nn.Sequential(*layers)


def inputs(x, p, encoding):
    x = torch.tensor(np.array(x), dtype=torch.long)
    if encoding == "int":
        return x.to(torch.float32)
    return torch.cat([torch.nn.functional.one_hot(x[:, 0], p),
                      torch.nn.functional.one_hot(x[:, 1], p)], dim=1).to(torch.float32)


def loss_fn(logits, y, p, loss):
    if loss == "mse":
        return torch.nn.functional.mse_loss(logits, torch.nn.functional.one_hot(y, p).to(logits.dtype))
    return torch.nn.functional.cross_entropy(logits, y)


def flat(params_or_model, depth):
    if isinstance(params_or_model, torch.nn.Module):
        return torch.cat([t.detach().reshape(-1).to(torch.float64) for t in params_or_model.parameters()])
    return torch.cat([torch.tensor(np.array(params_or_model[f"layers.{i}.{k}"]), dtype=torch.float64).reshape(-1)
                      for i in range(depth + 1) for k in ("weight", "bias")])


class Tap:
    def __init__(self):
        self.n = 0
        self.failed = 0

    def ok(self, cond, msg):
        self.n += 1
        if not cond:
            self.failed += 1
        print(f"{'' if cond else 'not '}ok {self.n} - {msg}", flush=True)

    def done(self):
        print(f"1..{self.n}")
        return 1 if self.failed else 0


def run(cmd, **kw):
    return subprocess.run(cmd, check=True, capture_output=True, text=True, **kw).stdout
