"""Checks of dlkit.batchnorm that need Keras on one backend, run as a script (a backend per process).

    KERAS_BACKEND=jax python tests/batchnorm_check.py OUT [--full]

does, in one process: reestimate on a small model with NumPy-drawn weights and batches of unequal size,
against the statistics computed by hand (a sub-model for the first layer's inputs, NumPy for the second's);
a model without batch norm left untouched; a tiny cnn run whose model.keras holds the re-estimated
statistics; with --full also a run with --bn-batches 0, an mlp run, and a cnn run interrupted during the
re-estimate and resumed. Prints one JSON line of findings;
tests/test_batchnorm.py asserts on them.
"""
from __future__ import annotations

import json
import sys

EPS = 1e-3  # BatchNormalization's default epsilon
SIZES = (8, 8, 5)  # unequal batches: the pooled statistics weight each batch by its size
#: A cnn run of a few seconds on sklearn's digits (no download).
TINY = {"data": "digits", "epochs": 2, "filters": 4, "dense": 8, "batch_size": 64, "test_samples": 100}


def small_model():
    """Conv → BN → ReLU → Dropout → Dense → BN (inside a custom layer) → Dense → frozen BN."""
    import keras
    import numpy as np

    class Normalized(keras.layers.Layer):  # batch norm held as an attribute: found like a sublayer
        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            self.norm = keras.layers.BatchNormalization(name="inner_bn")

        def call(self, x, training=None):
            return self.norm(x, training=training)

    inputs = keras.Input((5, 5, 2))
    conv = keras.layers.Conv2D(3, 3, name="conv")(inputs)                           # (B, 3, 3, 3)
    x = keras.layers.BatchNormalization(momentum=0.9, name="bn")(conv)
    x = keras.layers.Dropout(0.5, name="drop")(keras.layers.ReLU()(x))
    x = keras.layers.Dense(4, name="dense")(keras.layers.Flatten()(x))              # (B, 4)
    x = Normalized(name="wrapped")(x)
    x = keras.layers.Dense(2, name="head")(x)
    frozen = keras.layers.BatchNormalization(name="frozen_bn")
    frozen.trainable = False
    model = keras.Model(inputs, frozen(x))
    rng = np.random.default_rng(3)
    for v in model.weights:  # weights, gammas, betas and statistics drawn by NumPy: the same on every backend
        shape = tuple(v.shape)
        value = rng.uniform(0.5, 1.5, shape) if "variance" in v.path or "gamma" in v.path else rng.normal(0, 0.7, shape)
        v.assign(value.astype("float32"))
    batches = [rng.normal(1.0, 2.0, (n, 5, 5, 2)).astype("float32") for n in SIZES]
    return model, batches


def by_hand(model, batches):
    """The exact mean and variance of the inputs of bn and inner_bn over all batches (dropout off)."""
    import keras
    import numpy as np

    conv = keras.Model(model.input, model.get_layer("conv").output)
    bn = model.get_layer("bn")
    gamma, beta = (keras.ops.convert_to_numpy(w).astype("float64") for w in (bn.gamma, bn.beta))
    kernel, bias = (keras.ops.convert_to_numpy(w).astype("float64") for w in model.get_layer("dense").weights)
    first, second = [], []
    for x in batches:
        c = keras.ops.convert_to_numpy(conv(x)).astype("float64")                  # (n, 3, 3, 3)
        first.append(c.reshape(-1, 3))
        # bn in training mode: the batch's own (biased) moments
        normalized = (c - c.mean((0, 1, 2))) / np.sqrt(c.var((0, 1, 2)) + EPS) * gamma + beta
        second.append(np.maximum(normalized, 0).reshape(len(x), -1) @ kernel + bias)  # (n, 4)
    return [(np.concatenate(s).mean(0), np.concatenate(s).var(0)) for s in (first, second)]


def statistics(layer):
    import keras

    return [keras.ops.convert_to_numpy(v).tolist() for v in (layer.moving_mean, layer.moving_variance)]


def reestimated() -> dict:
    import keras
    import numpy as np

    from dlkit import batchnorm

    model, batches = small_model()
    expected = by_hand(model, batches)
    frozen_before = statistics(model.get_layer("frozen_bn"))
    info = batchnorm.reestimate(model, iter(batches))
    inner = model.get_layer("wrapped").norm
    got = [statistics(model.get_layer("bn")), statistics(inner)]
    error = max(float(np.max(np.abs(np.array(g[i]) - e[i]) / (np.abs(e[i]) + 1e-3)))
                for g, e in zip(got, expected) for i in (0, 1))
    only_two = batchnorm.reestimate(model, iter(batches), num_batches=2)
    plain = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2), keras.layers.Dropout(0.5)])
    weights = [w.copy() for w in plain.get_weights()]
    return {"info": info, "relative_error": error, "layers": sorted(layer.name for layer in batchnorm.batch_norm_layers(model)),
            "frozen_unchanged": statistics(model.get_layer("frozen_bn")) == frozen_before,
            "momentum": model.get_layer("bn").momentum, "dropout": model.get_layer("drop").rate,
            "two_batches": only_two,
            "plain": batchnorm.reestimate(plain, iter([np.ones((4, 3), "float32")])),
            "plain_unchanged": all(np.array_equal(a, b) for a, b in zip(weights, plain.get_weights())),
            "empty": batchnorm.reestimate(small_model()[0], iter([]))}


def saved_statistics_are_reestimated(run) -> float:
    """How far model.keras's statistics are from a fresh re-estimate on the same batches (0: they are one)."""
    import numpy as np

    from dlkit import batchnorm, training

    _, entry, cfg = training.open_run(run.path)
    plugin, model = training.load_run_model(run, entry, cfg, None)
    data = training.load_prepared(entry, plugin, cfg)
    layers = batchnorm.batch_norm_layers(model)
    saved = [statistics(layer) for layer in layers]
    batchnorm.reestimate(model, batchnorm.training_batches(data.x_train, cfg.batch_size, cfg.bn_batches or batchnorm.BATCHES,
                                                           cfg.seed))
    return max(float(np.max(np.abs(np.array(s) - np.array(statistics(layer)))))
               for s, layer in zip(saved, layers))


def runs(out: str, full: bool) -> dict:
    import dlkit
    from dlkit import batchnorm, training
    from dlkit.errors import TrainingInterrupted

    found = {}
    run = dlkit.train("cnn", out=out, echo=lambda *a: None, **TINY)
    found["train"] = {"batchnorm": run.metrics.get("batchnorm_reestimated"),
                      "distance": saved_statistics_are_reestimated(run)}
    if not full:  # what follows is the core's logic, the same on every backend
        return found
    off = dlkit.train("cnn", out=out, echo=lambda *a: None, bn_batches=0, **TINY)
    found["off"] = {"batchnorm": off.metrics.get("batchnorm_reestimated"),
                    "distance": saved_statistics_are_reestimated(off)}
    plain = dlkit.train("mlp", out=out, echo=lambda *a: None, data="digits", epochs=1, hidden=(8,), test_samples=50)
    found["mlp"] = {"batchnorm": plain.metrics.get("batchnorm_reestimated"), "status": plain.metrics["status"]}

    # Ctrl-C during the re-estimate: every epoch is checkpointed, the run is interrupted; --resume
    # trains nothing more, re-estimates and completes
    original = batchnorm.reestimate

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    batchnorm.reestimate = interrupted
    try:
        dlkit.train("cnn", out=f"{out}/resumed", echo=lambda *a: None, **TINY)
        found["interrupted"] = "not interrupted"
    except TrainingInterrupted as exc:
        found["interrupted"] = str(exc)
    finally:
        batchnorm.reestimate = original
    import pathlib

    folder = next(pathlib.Path(out, "resumed", "cnn").iterdir())
    before = json.loads((folder / "metrics.json").read_text())
    resumed = training.resume(folder, echo=lambda *a: None)
    found["resumed"] = {"status_before": before["status"], "epochs_before": before.get("epochs_completed"),
                        "status": resumed.metrics["status"], "epochs": resumed.metrics.get("epochs_completed"),
                        "batchnorm": resumed.metrics.get("batchnorm_reestimated"),
                        "distance": saved_statistics_are_reestimated(resumed),
                        "history_rows": len(resumed.history.get("epoch", []))}
    return found


if __name__ == "__main__":
    import keras

    print(json.dumps({"backend": keras.backend.backend(), "reestimated": reestimated(),
                      **runs(sys.argv[1], full="--full" in sys.argv)}))
