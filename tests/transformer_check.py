"""Checks of the transformer plugin on one backend, in one process (one backend per process).

    KERAS_BACKEND=jax python tests/transformer_check.py OUT_DIR

Prints one JSON line per check, used by tests/test_transformer.py:

- ``padding``: the padding mask. A review padded to 32 and to 64 tokens gives the same output; noise
  written into the padded positions of the block inputs changes nothing, and changes the output when
  the mask is left out (so the check could fail).
- ``order``: the position embeddings. Reversing a review's tokens changes the output; with the position
  embeddings zeroed it does not (self-attention and the mean over tokens alone ignore order).
- ``batches``: ``LengthBatches`` on 1,000 random front-padded rows of up to 400 tokens: the widths,
  what is cut, which reviews come out, the order from one epoch to the next.
- ``train``: a small IMDB run through ``dlkit.train`` (the real path), and the probabilities of two
  texts from the trained model in this process, for predict on another backend to match.
"""
from __future__ import annotations

import json
import sys

import numpy as np

import dlkit

#: Small enough for CI on two CPU cores, big enough to learn.
SMALL = {"train_samples": 3000, "test_samples": 500, "epochs": 2, "sequence_length": 64, "vocab_size": 5000,
         "width": 32, "heads": 2, "ff": 64, "batch_size": 32, "learning_rate": 3e-3, "patience": 0}
TEXTS = ["a wonderful, beautiful film: great acting and a brilliant story",
         "awful, boring and stupid: the worst film, a waste of time"]


def tiny_model():
    from dlkit.plugins.transformer_model import transformer_classifier

    return transformer_classifier(50, 64, 2, depth=2, heads=2, width=16, ff=32)


def reviews(rng, lengths, width):
    x = np.zeros((len(lengths), width), "int32")
    for row, n in zip(x, lengths):
        row[width - n:] = rng.integers(2, 50, n)
    return x


def blocks_and_pool(model, x, mask):
    from keras import ops

    from dlkit.plugins.transformer_model import EncoderBlock

    for layer in model.layers:
        if isinstance(layer, EncoderBlock):
            x = layer(x, mask=mask)
    return ops.convert_to_numpy(model.get_layer("pool")(x, mask=mask))


def check_padding() -> dict:
    from keras import ops

    model = tiny_model()
    rng = np.random.default_rng(0)
    x = reviews(rng, [5, 20, 32], 64)
    wide, narrow = model.predict(x, verbose=0), model.predict(x[:, -32:], verbose=0)
    embedding = model.get_layer("embedding")
    mask = embedding.compute_mask(ops.convert_to_tensor(x))
    h = ops.convert_to_numpy(embedding(x))
    noisy = np.where(x[..., None] != 0, h, rng.normal(size=h.shape) * 3).astype("float32")
    with_mask = np.abs(blocks_and_pool(model, h, mask) - blocks_and_pool(model, noisy, mask)).max()
    without_mask = np.abs(blocks_and_pool(model, h, None) - blocks_and_pool(model, noisy, None)).max()
    return {"check": "padding", "wide_vs_narrow": float(np.abs(wide - narrow).max()),
            "noise_with_mask": float(with_mask), "noise_without_mask": float(without_mask)}


def check_order() -> dict:
    model = tiny_model()
    x = reviews(np.random.default_rng(1), [12, 30, 64], 64)
    reversed_ = x.copy()
    for row in reversed_:
        real = row != 0
        row[real] = row[real][::-1]
    changed = np.abs(model.predict(x, verbose=0) - model.predict(reversed_, verbose=0)).max()
    positions = model.get_layer("embedding").positions
    positions.set_weights([np.zeros_like(positions.get_weights()[0])])
    unchanged = np.abs(model.predict(x, verbose=0) - model.predict(reversed_, verbose=0)).max()
    return {"check": "order", "reversed": float(changed), "reversed_without_positions": float(unchanged)}


def check_batches() -> dict:
    from dlkit.plugins.transformer_model import LengthBatches, widths

    rng = np.random.default_rng(0)
    lengths = rng.integers(1, 401, 1000)
    x = reviews(rng, lengths, 400)
    batches = LengthBatches(x, np.arange(1000), 64, shuffle=True, seed=3)
    epoch = [batches[i] for i in range(len(batches))]
    batches.on_epoch_end()
    again = [batches[i] for i in range(len(batches))]
    return {"check": "batches", "widths_400": widths(400), "widths_16": widths(16),
            "batch_widths": sorted({xb.shape[1] for xb, _ in epoch}),
            "largest_batch": max(len(xb) for xb, _ in epoch),
            "tokens_cut": int(sum(lengths[yb].sum() - (xb != 0).sum() for xb, yb in epoch)),
            "wider_than_needed": int(sum(xb.shape[1] - 80 >= (xb != 0).sum(axis=1).max() for xb, _ in epoch)),
            "reviews_seen": sorted(int(i) for _, yb in epoch for i in yb),
            "first_two_widths_differ": epoch[0][0].shape[1] != epoch[1][0].shape[1],
            "new_order_next_epoch": [yb.tolist() for _, yb in epoch] != [yb.tolist() for _, yb in again],
            "order_matches_batches": bool((np.concatenate([yb for _, yb in again]) == batches.order).all())}


def check_train(out: str) -> dict:
    from dlkit import training

    run = dlkit.train("transformer", out=out, echo=lambda *a, **k: None, **SMALL)
    probs = [r["probability"] if r["label"] == "positive" else 1 - r["probability"]
             for r in training.predict(str(run.path), TEXTS)]
    return {"check": "train", "path": str(run.path), "metrics": run.metrics, "p_positive": probs}


def main(out: str) -> None:
    from dlkit import backends

    backends.activate(None)  # $KERAS_BACKEND, before anything imports Keras
    import keras

    keras.utils.set_random_seed(0)
    for result in (check_padding(), check_order(), check_batches(), check_train(out)):
        print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main(sys.argv[1])
