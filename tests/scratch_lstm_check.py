"""Copy a ``keras.layers.LSTM``'s weights into the scratch cell and compare outputs (one backend).

    KERAS_BACKEND=torch python tests/scratch_lstm_check.py

Prints one JSON line: the backend and max |Δ| of the sequence outputs and of the final h and C,
for random (non-default) weights and inputs, with a bias that is not Keras' unit forget bias.
"""
from __future__ import annotations

import json

import keras
import numpy as np

from dlkit.plugins.scratch_lstm import ScratchLSTMCell


class OutputGateOfCellState(ScratchLSTMCell):
    """The articles' variant, h_t = σ(C_t) ⊙ tanh(C_t): the control that shows the check can fail."""

    def call(self, inputs, states, training=False):
        ops = keras.ops
        h_prev, c_prev = states
        z = ops.matmul(inputs, self.kernel) + ops.matmul(h_prev, self.recurrent_kernel) + self.bias
        z_i, z_f, z_c, _ = ops.split(z, 4, axis=-1)
        c = ops.sigmoid(z_f) * c_prev + ops.sigmoid(z_i) * ops.tanh(z_c)
        h = ops.sigmoid(c) * ops.tanh(c)
        return h, [h, c]


def main() -> None:
    rng = np.random.default_rng(0)
    batch, steps, features, units = 4, 30, 7, 12
    x = rng.normal(size=(batch, steps, features)).astype("float32")
    reference = keras.layers.LSTM(units, return_sequences=True, return_state=True)
    reference.build((None, steps, features))
    weights = [rng.normal(scale=0.5, size=w.shape).astype("float32") for w in reference.get_weights()]
    reference.set_weights(weights)
    theirs = [keras.ops.convert_to_numpy(t) for t in reference(x)]

    def run(cell_class):
        layer = keras.layers.RNN(cell_class(units), return_sequences=True, return_state=True)
        layer.build((None, steps, features))
        assert [w.shape for w in layer.get_weights()] == [w.shape for w in weights]
        layer.set_weights(weights)  # the same layout: kernel, recurrent_kernel, bias; gates i, f, c, o
        return [keras.ops.convert_to_numpy(t) for t in layer(x)]

    deltas = {name: float(np.abs(a - b).max()) for name, a, b in zip(("outputs", "h", "c"), run(ScratchLSTMCell),
                                                                       theirs)}
    wrong = float(np.abs(run(OutputGateOfCellState)[0] - theirs[0]).max())
    print(json.dumps({"backend": keras.backend.backend(), **deltas, "sigma_c_output_gate": wrong,
                      "scale": float(np.abs(theirs[0]).max())}))


if __name__ == "__main__":
    main()
