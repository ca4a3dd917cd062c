"""Optimizer recipes plugins share."""
from __future__ import annotations

import math


def adam_cosine(learning_rate: float, epochs: int, train_size: int, batch_size: int):
    """Adam whose learning rate follows a cosine from ``learning_rate`` to 0 over the whole run.

    Decaying to zero by the last step is what lets short runs (1–3 epochs) reach their best accuracy
    (Loshchilov & Hutter, "SGDR", ICLR 2017).
    """
    import keras

    steps = max(1, epochs * math.ceil(train_size / batch_size))
    return keras.optimizers.Adam(keras.optimizers.schedules.CosineDecay(learning_rate, steps))
