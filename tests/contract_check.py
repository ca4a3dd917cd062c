"""Contract check for every registered plugin on one backend (run as a script: a backend per process).

    KERAS_BACKEND=jax python tests/contract_check.py [NAME ...]

For each plugin: build on tiny real data, forward shape, no NaN, save/load round trip with the same
predictions, one training epoch through the plugin's own train(), evaluate() has its headline metric.
Prints one JSON line per plugin; exits 1 if any fails.
"""
from __future__ import annotations

import json
import sys
import tempfile
import traceback
from pathlib import Path

from dlkit import backends, data, registry
from dlkit.config import make_config
from dlkit.training import prepare


def pick_dataset(algo) -> str:
    """The smallest dataset the plugin takes that is on this machine (digits needs no download)."""
    if "digits" in algo.datasets:
        return "digits"
    for name in algo.datasets:
        if name not in data.IMAGE_DATASETS or not data.missing_files(name):
            return name
    return algo.datasets[0] if algo.datasets else ""


def check(entry, backend: str, workdir: Path) -> dict:
    import numpy as np

    from dlkit.runs import Run

    algo = entry.cls
    plugin = entry.algorithm()
    cfg = make_config(algo.config, {"epochs": 1, "batch_size": 16, "train_samples": 64, "test_samples": 32,
                                    "data": pick_dataset(algo)})
    tiny = prepare(plugin.load_data(cfg), cfg)
    model = plugin.build(cfg, tiny)
    x = tiny.x_test[:4]
    before = np.asarray(model.predict(x, verbose=0))
    assert before.shape[0] == 4, f"forward shape {before.shape}"
    assert np.isfinite(before).all(), "NaN/inf in the untrained forward pass"
    path = workdir / f"{entry.name}.keras"
    model.save(path)
    import keras

    reloaded = keras.saving.load_model(path, custom_objects=plugin.custom_objects(), safe_mode=True)
    after = np.asarray(reloaded.predict(x, verbose=0))
    assert np.allclose(before, after, atol=1e-5), "save/load changed the predictions"
    run = Run.create(workdir / "runs", entry.name, backend)
    plugin.train(model, tiny, cfg, run)
    trained = np.asarray(model.predict(x, verbose=0))
    assert np.isfinite(trained).all(), "NaN/inf after one training epoch"
    metrics = plugin.evaluate(model, tiny, cfg)
    assert algo.headline_metric in metrics, f"evaluate() lacks {algo.headline_metric}"
    return {"plugin": entry.name, "ok": True, "dataset": cfg.data, "output_shape": list(before.shape)}


def main(names: list[str]) -> int:
    backend = backends.activate(None)
    failures = 0
    with tempfile.TemporaryDirectory() as tmp:
        for entry in registry.discover():
            if entry.cls is None or entry.shadowed_by or (names and entry.name not in names):
                continue
            if backend not in entry.cls.backends:
                continue
            try:
                result = check(entry, backend, Path(tmp))
            except Exception as exc:
                failures += 1
                result = {"plugin": entry.name, "ok": False, "error": f"{type(exc).__name__}: {exc}",
                          "traceback": traceback.format_exc()[-1500:]}
            print(json.dumps(result), flush=True)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
