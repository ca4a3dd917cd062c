"""Data-parallel check on JAX with two simulated CPU devices (run as a script; the test sets XLA_FLAGS).

    XLA_FLAGS=--xla_force_host_platform_device_count=2 KERAS_BACKEND=jax python tests/distribute_check.py OUT

The same mlp config on 1 and on 2 devices in one process (same global batch, no dropout), then the refusals
that need the devices: more devices than present, a batch size the devices do not divide. Prints one JSON line.
"""
from __future__ import annotations

import json
import sys

import dlkit
from dlkit.errors import DlkitError

RECIPE = {"data": "digits", "train_samples": 1280, "epochs": 3, "batch_size": 128, "hidden": (64,), "dropout": 0.0}


def main(out: str) -> dict:
    found = {}
    for devices in (1, 2):
        run = dlkit.train("mlp", backend="jax", out=f"{out}/{devices}", echo=lambda *a: None,
                          distribute="data-parallel", devices=devices, **RECIPE)
        found[devices] = {"path": str(run.path), "metrics": run.metrics, "loss": run.history["loss"]}
    for options in ({"devices": 3}, {"devices": 2, "batch_size": 33}):
        try:
            dlkit.train("mlp", backend="jax", out=f"{out}/refused", echo=lambda *a: None,
                        distribute="data-parallel", **{**RECIPE, **options})
            found[f"refused {options}"] = "trained"
        except DlkitError as exc:
            found[f"refused {options}"] = str(exc)
    return found


if __name__ == "__main__":
    print(json.dumps(main(sys.argv[1])), flush=True)
