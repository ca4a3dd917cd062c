"""The shared smoothed cross-entropy: same numbers as Keras' one-hot loss, and it survives save/load."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

CHECK = r"""
import os, tempfile
import numpy as np
import keras
from dlkit.losses import SparseCategoricalCrossentropySmoothed, sparse_crossentropy

rng = np.random.default_rng(0)
y_pred = rng.dirichlet(np.ones(10), size=32).astype("float32")
y_true = rng.integers(0, 10, size=32)
ours = float(SparseCategoricalCrossentropySmoothed(0.1)(y_true, y_pred))
keras_one_hot = float(keras.losses.CategoricalCrossentropy(label_smoothing=0.1)(np.eye(10)[y_true], y_pred))
plain = float(keras.losses.SparseCategoricalCrossentropy()(y_true, y_pred))
assert abs(ours - keras_one_hot) < 1e-5, (ours, keras_one_hot)
assert abs(ours - plain) > 1e-3  # smoothing changes the value
assert sparse_crossentropy(0.0) == "sparse_categorical_crossentropy"

model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, activation="softmax")])
model.compile(loss=sparse_crossentropy(0.2), optimizer="adam")
run_dir = tempfile.mkdtemp()
model.save(os.path.join(run_dir, "model.keras"))
print(run_dir)
"""

# a fresh process that never imported dlkit.losses: dlkit's loader must register it, safe mode on
LOAD = r"""
import sys
from dlkit.runs import Run
loaded = Run(sys.argv[1]).load_model()
assert type(loaded.loss).__name__ == "SparseCategoricalCrossentropySmoothed", loaded.loss
assert loaded.loss.label_smoothing == 0.2
print("ok")
"""


@pytest.mark.parametrize("backend", ["tensorflow", "jax", "torch"])
def test_smoothed_loss_matches_keras_and_reloads(backend):
    env = {**os.environ, "KERAS_BACKEND": backend}
    saved = subprocess.run([sys.executable, "-c", CHECK], capture_output=True, text=True, env=env, timeout=300)
    assert saved.returncode == 0, saved.stderr[-2000:]
    run_dir = saved.stdout.strip().splitlines()[-1]
    loaded = subprocess.run([sys.executable, "-c", LOAD, run_dir], capture_output=True, text=True, env=env,
                            timeout=300)
    assert loaded.returncode == 0, loaded.stderr[-2000:]
    assert loaded.stdout.strip().endswith("ok")
