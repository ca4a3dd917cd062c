"""Keras' LSTM and GRU on PyTorch with dlkit.torch_rnn's fused kernels against Keras' own CPU loop.

Run by tests/test_backends.py in a PyTorch process; prints one JSON line per case with the largest
differences of the outputs and of the gradients with respect to every weight and the inputs.
"""
from __future__ import annotations

import importlib
import json
import os

os.environ["KERAS_BACKEND"] = "torch"

from dlkit import backends  # noqa: E402

backends.activate("torch")  # installs the fused kernels (dlkit.torch_rnn)

import keras  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
rnn = importlib.import_module("keras.src.backend.torch.rnn")  # the module, not the function of that name


def grads(layer, x):
    """Outputs and the gradients of a fixed random projection of them w.r.t. the weights and inputs."""
    x = torch.tensor(x, requires_grad=True)
    out = layer(x)
    out = out[0] if isinstance(out, (list, tuple)) else out  # return_state: the outputs
    probe = torch.tensor(np.random.default_rng(1).normal(size=tuple(out.shape)).astype("float32"))
    (out * probe).sum().backward()
    found = [out.detach().numpy(), x.grad.numpy()] + [w.value.grad.numpy() for w in layer.trainable_weights]
    for w in layer.trainable_weights:
        w.value.grad = None
    return found


def compare(make, x):
    layer = make()
    layer.build(x.shape)
    fused = grads(layer, x)
    patched = rnn._fallback_lstm, rnn._fallback_gru
    rnn._fallback_lstm, rnn._fallback_gru = patched[0].keras_loop, patched[1].keras_loop
    try:
        loop = grads(layer, x)
    finally:
        rnn._fallback_lstm, rnn._fallback_gru = patched
    return [float(np.max(np.abs(a - b))) for a, b in zip(fused, loop)]


def main() -> None:
    from dlkit import torch_rnn

    print(json.dumps({"installed": torch_rnn.install(), "patched": hasattr(rnn._fallback_lstm, "keras_loop")}))
    x = np.random.default_rng(0).normal(size=(3, 17, 5)).astype("float32")
    keras.utils.set_random_seed(0)
    cases = {
        "lstm": lambda: keras.layers.LSTM(6, return_sequences=True),
        "lstm last": lambda: keras.layers.LSTM(6),
        "lstm backwards": lambda: keras.layers.LSTM(6, return_sequences=True, go_backwards=True),
        "lstm states": lambda: keras.layers.LSTM(6, return_state=True),
        "gru": lambda: keras.layers.GRU(6, return_sequences=True),
        "gru last": lambda: keras.layers.GRU(6),
        "gru backwards": lambda: keras.layers.GRU(6, go_backwards=True),
        "bidirectional lstm": lambda: keras.layers.Bidirectional(keras.layers.LSTM(4, return_sequences=True)),
    }
    for name, make in cases.items():
        print(json.dumps({"case": name, "max_abs_diff": compare(make, x)}))


if __name__ == "__main__":
    main()
