"""Batch-norm statistics re-estimated once training is done.

Batch normalization (Ioffe & Szegedy, ICML 2015) normalizes with the batch's own mean and variance
while training, and with moving averages of them at inference. Those averages lag the weights: with
Keras' momentum 0.99 they remember about the last 100 steps, which in a short run are steps of a
network still changing fast (a high Adam rate after warmup), so the statistics a model is tested with
belong to an older network than its weights. After one MNIST epoch of ``cnn`` the first layer's
moving variance was 3× the true variance of its inputs; test accuracy went 96.6% → 98.6% once the
statistics were recomputed (docs/plugins.md has the measurements).

:func:`reestimate` recomputes them after the last step, as PyTorch's ``torch.optim.swa_utils.update_bn``
does (Izmailov et al., "Averaging Weights Leads to Wider Optima and Better Generalization", UAI 2018):
forward passes over training batches in training mode, and each batch-norm layer's moving mean and
variance set to the exact mean and variance of its inputs over all of them. ``run.fit`` calls it for
every model that has batch norm; a hand-written loop (a GAN's generator, a U-Net) calls it itself::

    from dlkit.batchnorm import reestimate
    reestimate(generator, (noise(128) for _ in range(100)))

Only Keras 3 public layer attributes are used (``momentum``, ``moving_mean``, ``rate``), so it runs
the same on TensorFlow, JAX and PyTorch.
"""
from __future__ import annotations

import time
from typing import Any, Iterable

from dlkit.api import TrainConfig

#: Training batches a re-estimate averages over by default: ``--bn-batches``' default (docs/plugins.md
#: has accuracy against the number of batches).
BATCHES: int = TrainConfig.bn_batches


def batch_norm_layers(model) -> list:
    """The ``BatchNormalization`` layers whose statistics training updates (nested models included).

    A frozen layer (``trainable = False``) normalizes with its moving statistics even in training mode
    and never updates them: fine-tuning keeps them on purpose, so they are left alone.
    """
    import keras

    return [layer for layer in _all_layers(model)
            if isinstance(layer, keras.layers.BatchNormalization) and layer.trainable and not layer.renorm]


def _all_layers(layer) -> list:
    """``layer`` and every layer inside it: nested models, and layers kept as attributes of custom layers."""
    import keras

    seen: dict[int, Any] = {}
    stack = [layer]
    while stack:
        current = stack.pop()
        if id(current) in seen:
            continue
        seen[id(current)] = current
        # a Sequential/functional model lists its layers; a custom layer holds its sublayers as attributes
        children = list(getattr(current, "layers", []) or [])
        for value in vars(current).values():
            values = value.values() if isinstance(value, dict) else value if isinstance(value, (list, tuple)) else [value]
            children.extend(v for v in values if isinstance(v, keras.layers.Layer))
        stack.extend(children)
    return list(seen.values())


def reestimate(model, batches: Iterable, *, num_batches: int | None = BATCHES, dropout: bool = False) -> dict | None:
    """Set every batch-norm layer's moving mean and variance to those of its inputs over ``batches``.

    ``batches`` yields model inputs (what ``model(x)`` takes, one batch each); at most ``num_batches``
    are used (``None``: all). The model runs in training mode, so each layer sees what it saw while
    training (inputs normalized with batch statistics upstream); ``dropout=False`` sets dropout rates
    to 0 for the pass, since inference runs without dropout. The statistics are exact over all examples
    (the variance of the pooled inputs, not a mean of per-batch variances), weighted by batch size.

    Returns ``{"layers", "batches", "examples", "seconds"}``, or None when the model has no trainable
    batch norm (then nothing runs) or ``batches`` was empty (then nothing changed).
    """
    import keras
    import numpy as np

    layers = batch_norm_layers(model)
    if not layers:
        return None
    started = time.perf_counter()
    momenta = [layer.momentum for layer in layers]
    silenced = [] if dropout else [layer for layer in _all_layers(model)
                                   if isinstance(layer, keras.layers.Dropout) and layer.rate > 0]
    rates = [layer.rate for layer in silenced]
    firsts = [0.0] * len(layers)   # per layer: Σ n·mean over the batches (float64, per channel)
    seconds = [0.0] * len(layers)  # per layer: Σ n·(variance + mean²), so that the pooled variance is exact
    count = used = 0
    try:
        for layer in layers:
            layer.momentum = 0.0  # a training-mode call then leaves exactly this batch's mean and variance
        for layer in silenced:
            layer.rate = 0.0
        for x in batches:
            if num_batches is not None and used >= num_batches:
                break
            n = int(keras.tree.flatten(x)[0].shape[0])
            model(x, training=True)
            for i, layer in enumerate(layers):
                mean = keras.ops.convert_to_numpy(layer.moving_mean).astype(np.float64)
                variance = keras.ops.convert_to_numpy(layer.moving_variance).astype(np.float64)
                firsts[i] = firsts[i] + n * mean
                seconds[i] = seconds[i] + n * (variance + mean ** 2)
            count += n
            used += 1
    finally:
        for layer, momentum in zip(layers, momenta):
            layer.momentum = momentum
        for layer, rate in zip(silenced, rates):
            layer.rate = rate
    if not used:
        return None  # (the last batch's statistics were never written: momentum 0 only acts on a call)
    for layer, first, second in zip(layers, firsts, seconds):
        mean = first / count
        layer.moving_mean.assign(mean.astype("float32"))
        layer.moving_variance.assign(np.maximum(second / count - mean ** 2, 0.0).astype("float32"))
    return {"layers": len(layers), "batches": used, "examples": count,
            "seconds": round(time.perf_counter() - started, 2)}


def training_batches(x, batch_size: int | None, num_batches: int, seed: int = 0) -> Iterable:
    """Model inputs for :func:`reestimate` from what ``model.fit`` was given.

    Arrays (or nested arrays): ``num_batches`` batches of ``batch_size`` drawn without replacement, in a
    seeded order. A ``keras.utils.PyDataset`` or any other iterable of batches (a ``tf.data.Dataset``):
    its first ``num_batches`` batches, their targets dropped.
    """
    import keras
    import numpy as np

    from dlkit.runs import _is_arrays

    if _is_arrays(x):
        size = len(keras.tree.flatten(x)[0])
        batch_size = batch_size or 32
        order = np.random.default_rng(seed).permutation(size)[:num_batches * batch_size]
        for start in range(0, len(order), batch_size):
            index = np.sort(order[start:start + batch_size])
            yield keras.tree.map_structure(lambda a: np.asarray(a[index]), x)
        return
    items = (x[i] for i in range(min(num_batches, len(x)))) if isinstance(x, keras.utils.PyDataset) else x
    for i, item in enumerate(items):
        if i >= num_batches:
            return
        inputs, _, _ = keras.utils.unpack_x_y_sample_weight(item)
        yield keras.tree.map_structure(np.asarray, inputs)

