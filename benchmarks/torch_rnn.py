"""Seconds per training step of the default IMDB LSTM's shape (batch 64, 400 tokens, vocabulary 20,000,
embedding 128, 64 units, max over time) on one backend, with PyTorch's fused kernels (dlkit.torch_rnn,
what ``dlkit train`` uses) or with Keras' own CPU loop (``--keras-loop``):

    python benchmarks/torch_rnn.py torch                 # dlkit's route
    python benchmarks/torch_rnn.py torch --keras-loop    # Keras' CPU loop, as before dlkit.torch_rnn
    python benchmarks/torch_rnn.py tensorflow
"""
from __future__ import annotations

import os
import sys
import time

backend, keras_loop = sys.argv[1], "--keras-loop" in sys.argv
os.environ["KERAS_BACKEND"] = backend
if not keras_loop:
    from dlkit import backends

    backends.activate(backend)  # on torch: installs dlkit.torch_rnn

import keras  # noqa: E402
import numpy as np  # noqa: E402

inputs = keras.Input((400,), dtype="int32")
x = keras.layers.Embedding(20000, 128)(inputs)
x = keras.layers.GlobalMaxPooling1D()(keras.layers.LSTM(64, return_sequences=True)(x))
model = keras.Model(inputs, keras.layers.Dense(2, activation="softmax")(x))
model.compile("adam", "sparse_categorical_crossentropy")
rng = np.random.default_rng(0)
tokens, labels = rng.integers(0, 20000, (64 * 3, 400)).astype("int32"), rng.integers(0, 2, 64 * 3)
model.fit(tokens[:64], labels[:64], batch_size=64, verbose=0)  # the first step compiles
started = time.perf_counter()
model.fit(tokens, labels, batch_size=64, verbose=0)
print(f"{backend}{' (Keras loop)' if keras_loop else ''}: {(time.perf_counter() - started) / 3:.2f} s per step, "
      f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'default')}, load average "
      f"{' '.join(f'{v:.2f}' for v in os.getloadavg())}")
