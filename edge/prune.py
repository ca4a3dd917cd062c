"""Magnitude pruning written on Keras 3: works on every backend, leaves a plain Keras 3 model.

Zhu & Gupta, "To prune, or not to prune: exploring the efficacy of pruning for model compression",
ICLR workshop 2018 — the method tfmot's ``prune_low_magnitude`` implements: during fine-tuning, every
few steps the smallest-magnitude weights of each kernel are masked to zero, the sparsity rising on
the polynomial schedule s(t) = s_f · (1 − (1 − t/T)³) from 0 to s_f; after each step the masks are
re-applied, so the optimizer cannot revive a pruned weight. No wrapper layers are added: at the end
"stripping" is a no-op and the model saves as an ordinary ``.keras`` file.

Structured N:M sparsity (``--structured 2:4``): in every group of M consecutive input channels of a
kernel, only the N largest weights are kept (Mishra et al., "Accelerating Sparse Deep Neural
Networks", 2021) — the pattern sparse tensor cores and XNNPACK's sparse kernels can exploit.

Block sparsity (``--block K``): whole runs of K consecutive input-channel weights of one output
channel are kept or pruned together, ranked by their L1 norm (tfmot's ``block_size`` does the same).
TFLite stores kernels input-channel innermost (OHWI / OI), so a pruned block is 4·K zero bytes in a
row in the file: deflate compresses that far better than zeros scattered one weight at a time (the
gzip sizes of both, measured, are in benchmarks/RESULTS.md).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from dlkit.errors import DlkitError
from dlkit.optimizers import adam_cosine

PRUNABLE = ("Conv2D", "Dense")
#: Kernels smaller than this stay dense (a stem convolution has a few hundred weights and all matter).
MIN_WEIGHTS = 1024
# DepthwiseConv2D is not pruned: its 3×3 per-channel filters are a few percent of a MobileNet's
# weights, and halving 9 weights per channel costs far more accuracy than it saves (measured: 50%
# over every kernel, depthwise included, took MobileNetV2 on Fashion-MNIST from 77.3% to 57.6%).


@dataclass
class Pattern:
    n: int
    m: int

    @classmethod
    def parse(cls, text: str) -> Pattern:
        try:
            n, m = (int(part) for part in text.split(":"))
        except ValueError:
            n = m = 0
        if not 0 < n < m:
            raise DlkitError(f"--structured expects N:M with 0 < N < M, e.g. 2:4; got '{text}'")
        return cls(n, m)

    @property
    def group(self) -> int:
        return self.m

    @property
    def label(self) -> str:
        return f"{self.n}of{self.m}"

    @property
    def describe(self) -> str:
        return f"{self.n}:{self.m} structured"


@dataclass
class Block:
    size: int

    @classmethod
    def parse(cls, size: int) -> Block:
        if size < 2:
            raise DlkitError(f"--block takes a block length of at least 2 weights (e.g. 4); got {size}")
        return cls(size)

    @property
    def group(self) -> int:
        return self.size

    @property
    def label(self) -> str:
        return f"block{self.size}"

    @property
    def describe(self) -> str:
        return f"{self.size}-weight block"


def targets(model, pattern: Pattern | Block | None = None) -> list:
    """(layer, kernel variable) pairs to prune. With a pattern: only kernels whose input channels split into
    groups (M of N:M, or the block length)."""
    found = []
    for layer in model.layers:
        kind = type(layer).__name__
        if kind not in PRUNABLE or not hasattr(layer, "kernel") or math.prod(layer.kernel.shape) < MIN_WEIGHTS:
            continue
        if pattern and layer.kernel.shape[-2] % pattern.group:
            continue
        found.append((layer, layer.kernel))
    if not found:
        what = f"{pattern.describe} sparsity (it needs Conv2D/Dense kernels whose input " \
               f"channels are a multiple of {pattern.group})" if pattern else \
            f"pruning (no Conv2D/Dense kernel of {MIN_WEIGHTS}+ weights)"
        raise DlkitError(f"model '{model.name}' has no layer {what} can apply to")
    return found


def magnitude_mask(weights, sparsity: float, pattern: Pattern | Block | None = None):
    """0/1 mask keeping the largest-magnitude weights: a global fraction, N in every M along axis -2, or
    a fraction of the blocks of consecutive weights along axis -2."""
    import numpy as np

    magnitude = np.abs(weights)
    if isinstance(pattern, Block):
        moved = np.moveaxis(magnitude, -2, -1)                             # (..., out, in)
        blocks = moved.reshape(*moved.shape[:-1], -1, pattern.size).sum(-1)  # (..., out, in/K): L1 per block
        keep = magnitude_mask(blocks, sparsity)                            # rank the blocks, not the weights
        keep = np.repeat(keep, pattern.size, axis=-1).reshape(moved.shape)
        return np.moveaxis(keep, -1, -2).astype(weights.dtype)
    if pattern:
        moved = np.moveaxis(magnitude, -2, -1)                       # (..., out, in)
        groups = moved.reshape(*moved.shape[:-1], -1, pattern.m)     # (..., out, in/M, M)
        rank = np.argsort(np.argsort(-groups, axis=-1), axis=-1)     # 0 = largest in its group
        keep = (rank < pattern.n).reshape(moved.shape)
        return np.moveaxis(keep, -1, -2).astype(weights.dtype)
    k = int(round(sparsity * magnitude.size))
    mask = np.ones(magnitude.size, dtype=weights.dtype)
    if k:
        mask[np.argsort(magnitude, axis=None, kind="stable")[:k]] = 0
    return mask.reshape(weights.shape)


def polynomial_sparsity(step: int, end_step: int, final: float, power: int = 3) -> float:
    """tfmot's PolynomialDecay from 0 to ``final`` over [0, end_step]."""
    progress = min(1.0, step / max(1, end_step))
    return final * (1.0 - (1.0 - progress) ** power)


def prune(model, x_train, y_train, sparsity: float, *, pattern: Pattern | Block | None = None, epochs: int = 2,
          batch_size: int = 128, learning_rate: float = 1e-4, echo=print) -> dict:
    """Prune ``model`` in place to ``sparsity`` while fine-tuning on (x_train, y_train); return a summary."""
    import keras

    pairs = targets(model, pattern)
    steps = max(1, epochs * math.ceil(len(x_train) / batch_size))
    end_step = max(1, int(0.75 * steps))   # the last quarter fine-tunes at the final sparsity
    frequency = max(1, end_step // 20)      # tfmot's default is every 100 steps; 20 updates here
    masks = [keras.ops.ones(var.shape, dtype=var.dtype) for _, var in pairs]

    def update_masks(step: int) -> None:
        level = sparsity if isinstance(pattern, Pattern) else polynomial_sparsity(step, end_step, sparsity)
        for i, (_, var) in enumerate(pairs):
            masks[i] = keras.ops.convert_to_tensor(magnitude_mask(keras.ops.convert_to_numpy(var), level, pattern))

    def apply_masks() -> None:
        for (_, var), mask in zip(pairs, masks):
            var.assign(keras.ops.multiply(var.value, mask))

    class Pruning(keras.callbacks.Callback):
        step = 0

        def on_train_batch_begin(self, batch, logs=None):
            if self.step % frequency == 0 and self.step <= end_step:
                update_masks(self.step)
                apply_masks()

        def on_train_batch_end(self, batch, logs=None):
            apply_masks()
            self.step += 1

    # Batch norm runs in inference mode while fine-tuning (the usual fine-tuning rule): a short
    # fine-tune would otherwise drag the moving statistics away from the ones the weights were
    # trained with (measured: a BN cnn fell from 78% to 34% after 8 steps at learning rate 0).
    frozen = [layer for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization) and layer.trainable]
    for layer in frozen:
        layer.trainable = False
    # plain cross-entropy on the integer labels, whatever the run trained with (one-hot label smoothing…)
    model.compile(optimizer=adam_cosine(learning_rate, epochs, len(x_train), batch_size),
                  loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    echo(f"pruning {len(pairs)} kernels to {sparsity:.0%} "
         f"({pattern.describe if pattern else 'magnitude, polynomial schedule'}), "
         f"fine-tuning {epochs} epoch(s) on {len(x_train)} examples")
    model.fit(x_train, y_train, batch_size=batch_size, epochs=epochs, callbacks=[Pruning()], verbose=2)
    update_masks(end_step)  # the final sparsity, exactly
    apply_masks()
    for layer in frozen:
        layer.trainable = True
    return {"layers": [layer.name for layer, _ in pairs], "target": sparsity, **measure(model, pairs)}


def measure(model, pairs=None) -> dict:
    """Zero fraction of the prunable kernels, and of all weights."""
    import keras
    import numpy as np

    if pairs is None:  # every kernel, pruned or not
        pairs = [(layer, layer.kernel) for layer in model.layers
                 if type(layer).__name__ in (*PRUNABLE, "DepthwiseConv2D") and hasattr(layer, "kernel")]
    kernels = [keras.ops.convert_to_numpy(var) for _, var in pairs]
    zeros = sum(int(np.count_nonzero(k == 0)) for k in kernels)
    size = sum(k.size for k in kernels)
    all_weights = [keras.ops.convert_to_numpy(w) for w in model.weights]
    total = sum(w.size for w in all_weights)
    return {"kernel_sparsity": zeros / max(size, 1),
            "model_sparsity": sum(int(np.count_nonzero(w == 0)) for w in all_weights) / max(total, 1)}
