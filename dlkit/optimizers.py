"""Optimizer recipes plugins share."""
from __future__ import annotations

import math


def adam_cosine(learning_rate: float, epochs: int, train_size: int, batch_size: int, warmup: float = 0.0, *,
                keras=None):
    """Adam whose learning rate follows a cosine from ``learning_rate`` to 0 over the whole run.

    Decaying to zero by the last step is what lets short runs (1–3 epochs) reach their best accuracy
    (Loshchilov & Hutter, "SGDR", ICLR 2017). ``warmup`` is the fraction of the steps spent rising
    linearly from 0 to ``learning_rate`` first (Goyal et al. 2017), which lets a high rate start safely.
    ``keras`` is the Keras module to build it with: Keras 3 unless given (QAT passes ``tf_keras``,
    whose optimizers and ``CosineDecay`` take the same arguments).
    """
    if keras is None:
        import keras

    steps = max(1, epochs * math.ceil(train_size / batch_size))
    warmup_steps = int(warmup * steps)
    if warmup_steps:
        schedule = keras.optimizers.schedules.CosineDecay(0.0, steps - warmup_steps, warmup_target=learning_rate,
                                                          warmup_steps=warmup_steps)
    else:
        schedule = keras.optimizers.schedules.CosineDecay(learning_rate, steps)
    return keras.optimizers.Adam(schedule)
