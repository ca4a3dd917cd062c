"""Train recurrent plugins on a small IMDB subset in one process (one backend).

    KERAS_BACKEND=jax python tests/recurrent_check.py OUT_DIR lstm gru lstm-scratch

The same path as ``dlkit train`` (the Python API), several runs sharing one process start; prints
one JSON line per run: its folder and metrics. Used by tests/test_recurrent.py.
"""
from __future__ import annotations

import json
import sys

import dlkit

#: Small enough for CI on two CPU cores, big enough to learn: ~80% after 2 epochs on 2,000 reviews.
SMALL = {"train_samples": 4000, "test_samples": 500, "epochs": 3, "sequence_length": 64, "vocab_size": 5000,
         "units": 16, "embedding": 32, "learning_rate": 1e-2, "val_fraction": 0.1}


def main(out: str, names: list[str]) -> None:
    for name in names:
        algo, _, cell = name.partition("-")
        extra = {"cell": cell} if cell else {}
        run = dlkit.train(algo, out=out, echo=lambda *a, **k: None, **SMALL, **extra)
        print(json.dumps({"name": name, "path": str(run.path), "metrics": run.metrics}), flush=True)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2:])
