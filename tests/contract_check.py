"""Contract check for every registered plugin on one backend (run as a script: a backend per process).

    KERAS_BACKEND=jax python tests/contract_check.py [NAME ...]

For each plugin, at its tiny ``test_config`` (keras-hub's small ``init_kwargs``), so the time does not
grow with the size of the real models: build on tiny real data, forward shape, no NaN, save/load round
trip with the same predictions, one epoch (or a few steps) through the plugin's own train(), evaluate()
has its headline metric. Prints one JSON line per plugin; exits 1 if any fails.
"""
from __future__ import annotations

import dataclasses
import json
import sys
import tempfile
import traceback
from pathlib import Path

from dlkit import backends, data, registry
from dlkit.config import field_types, make_config
from dlkit.errors import DataUnavailable
from dlkit.training import call_hook, prepare

#: Budget and data sizes for plugins whose config has these fields (array data trained in epochs).
TINY = {"epochs": 1, "batch_size": 16, "train_samples": 64, "test_samples": 32}


def pick_dataset(algo) -> str:
    """The smallest dataset the plugin takes that is on this machine (digits needs no download)."""
    if "digits" in algo.datasets:
        return "digits"
    for name in algo.datasets:
        if name not in data.IMAGE_DATASETS or not data.missing_files(name):
            return name
    return algo.datasets[0] if algo.datasets else ""


def check(entry, backend: str, workdir: Path) -> dict:
    import keras
    import numpy as np

    from dlkit.runs import Run

    algo = entry.cls
    plugin = entry.algorithm()
    fields = field_types(algo.config)
    values = {k: v for k, v in TINY.items() if k in fields}
    if "data" in fields:
        values["data"] = pick_dataset(algo)
    cfg = make_config(algo.config, {**values, **algo.test_config}, algo.datasets)
    run = Run.create(workdir / "runs", entry.name, backend, algo.budget_unit)
    plugin.run, run.cfg = run, cfg
    try:
        raw = call_hook(entry, plugin, "load_data", cfg)
    except DataUnavailable as exc:  # no offline copy and no network: said, not passed off as checked
        return {"plugin": entry.name, "ok": True, "skipped": str(exc)}
    if raw.fixed_splits:  # a Planetoid-style graph or a time series: its splits are part of the data
        cfg = dataclasses.replace(cfg, **{k: 0 for k in ("train_samples", "test_samples") if k in fields})
        run.cfg = cfg
    tiny = prepare(raw, cfg)
    model = call_hook(entry, plugin, "build", cfg, tiny)
    x = sample_inputs(model)  # what the model takes (images, token ids, noise), whatever the data's shape
    before = np.asarray(keras.tree.flatten(model.predict(x, verbose=0))[0])
    assert before.shape[0] == 4, f"forward shape {before.shape}"
    assert np.isfinite(before).all(), "NaN/inf in the untrained forward pass"
    path = workdir / f"{entry.name}.keras"
    model.save(path)
    reloaded = keras.saving.load_model(path, custom_objects=plugin.custom_objects(), safe_mode=True)
    after = np.asarray(keras.tree.flatten(reloaded.predict(x, verbose=0))[0])
    assert np.allclose(before, after, atol=1e-5), "save/load changed the predictions"
    call_hook(entry, plugin, "train", model, tiny, cfg, run)
    trained = np.asarray(keras.tree.flatten(model.predict(x, verbose=0))[0])
    assert np.isfinite(trained).all(), "NaN/inf after training"
    metrics = call_hook(entry, plugin, "evaluate", model, tiny, cfg)
    assert algo.headline_metric in metrics, f"evaluate() lacks {algo.headline_metric}"
    return {"plugin": entry.name, "ok": True, "dataset": getattr(cfg, "data", "") or tiny.name,
            "output_shape": list(before.shape)}


def sample_inputs(model, batch: int = 4):
    """A batch for each of the model's inputs: integers where it takes ids, small floats otherwise."""
    import numpy as np

    rng = np.random.default_rng(0)
    arrays = []
    for spec in model.inputs:
        shape = [batch] + [d if d is not None else 8 for d in spec.shape[1:]]
        if "int" in str(spec.dtype):
            arrays.append(np.zeros(shape, dtype=str(spec.dtype)))
        else:
            arrays.append(rng.normal(size=shape).astype("float32").clip(-1, 1) * 0.5 + 0.5)
    return arrays[0] if len(arrays) == 1 else arrays


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
