#!/usr/bin/env python3
"""nanda-sweep.py FILE [FRAC] [EVERY]: the loss curves the progress-measures
paper's own code saved, as a train-transformer log.

FILE is saved_runs/mod_addition_frac_train_sweep.pth of the paper's
repository (github.com/mechanistic-interpretability-grokking/
progress-measures-paper): its `transformers.py` run at p = 113 for ten
training fractions, each stopped once test loss fell below its
stopping threshold, the train and test loss of every epoch (full batch:
an epoch is a step).  Prints, for the run at training fraction FRAC
(default 0.3), a header and a metrics record every EVERY steps (default
100, train-transformer's --log-every of the README's runs, so that both
are read on the same grid) with train_loss and test_loss, the last step
always included, for pipeline/phases.jq.  The file is a torch zip whose
pickle holds only lists of floats: it is read with zipfile and an
unpickler that refuses every class, so neither torch nor any code in the
file runs.
"""
import io
import json
import pickle
import sys
import zipfile


class _Plain(pickle.Unpickler):
    def find_class(self, module, name):
        raise pickle.UnpicklingError(f"{module}.{name}: not plain data")


def curves(path):
    with zipfile.ZipFile(path) as z:
        name = next((n for n in z.namelist() if n.endswith("/data.pkl")), None)
        if name is None:
            raise ValueError("no data.pkl: not a torch zip file")
        fracs, lists = _Plain(io.BytesIO(z.read(name))).load()
    if len(lists) != 2 * len(fracs):
        raise ValueError(f"{len(fracs)} fractions but {len(lists)} curves")
    # [train_0, test_0, train_1, test_1, ...], in the order of fracs
    return {f: (lists[2 * i], lists[2 * i + 1]) for i, f in enumerate(fracs)}


def main(argv):
    if not 2 <= len(argv) <= 4:
        print("usage: nanda-sweep.py FILE [FRAC] [EVERY]", file=sys.stderr)
        return 2
    try:
        frac = float(argv[2]) if len(argv) > 2 else 0.3
        every = int(argv[3]) if len(argv) > 3 else 100
    except ValueError as e:
        print(f"nanda-sweep.py: {e}", file=sys.stderr)
        return 2
    if every < 1:
        print("nanda-sweep.py: EVERY must be at least 1", file=sys.stderr)
        return 2
    try:
        runs = curves(argv[1])
    except (OSError, ValueError, zipfile.BadZipFile, pickle.UnpicklingError) as e:
        print(f"nanda-sweep.py: {argv[1]}: {e}", file=sys.stderr)
        return 1
    if frac not in runs:
        print(f"nanda-sweep.py: no run at fraction {frac} (has {sorted(runs)})",
              file=sys.stderr)
        return 1
    train, test = runs[frac]
    print(json.dumps({"record": "header", "tool": "nanda-sweep.py",
                      "seed": None, "config": {"model": {"p": 113},
                                               "tag": f"paper-frac{frac}"}}))
    for k in range(len(test)):
        if k % every == 0 or k == len(test) - 1:
            print(json.dumps({"record": "metrics", "step": k,
                              "train_loss": train[k], "test_loss": test[k]}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
