"""An LSTM cell written with ``keras.ops`` only: the gates of Hochreiter & Schmidhuber (1997) with
the forget gate of Gers, Schmidhuber & Cummins (2000), as in ``keras.layers.LSTMCell``.

With x_t the input, h_{t−1} and C_{t−1} the previous output and cell state, [·,·] concatenation
and σ the logistic sigmoid::

    i_t = σ(W_i·[h_{t−1}, x_t] + b_i)          input gate
    f_t = σ(W_f·[h_{t−1}, x_t] + b_f)          forget gate
    g_t = tanh(W_c·[h_{t−1}, x_t] + b_c)       candidate cell state (C̃_t)
    o_t = σ(W_o·[h_{t−1}, x_t] + b_o)          output gate
    C_t = f_t ⊙ C_{t−1} + i_t ⊙ g_t
    h_t = o_t ⊙ tanh(C_t)

The output gate reads the input and the previous output, exactly like the other gates. It is *not*
σ(C_t), as one of the articles this project follows writes: that gate would only re-squash the
cell state, so the cell could not decide to keep something in C_t without showing it in h_t.

The weights are laid out as Keras' own cell lays them out, so a ``keras.layers.LSTM``'s weights load
into ``keras.layers.RNN(ScratchLSTMCell(units))`` unchanged (tests/test_scratch_lstm.py checks the
outputs agree to 1e-5 on every backend): ``kernel`` (input_dim, 4·units) is W_{i,f,c,o} acting on
x_t, ``recurrent_kernel`` (units, 4·units) the same gates acting on h_{t−1}, ``bias`` (4·units);
the four column blocks are the gates in the order i, f, c, o. As in Keras, the forget bias starts
at 1 (Jozefowicz et al., ICML 2015) so that the cell remembers by default at the start of training.

This is a model module: it imports Keras at the top, and the plugin imports it inside its hooks.
"""
from __future__ import annotations

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="dlkit")
class ScratchLSTMCell(keras.layers.Layer):
    """One LSTM step; wrap it in ``keras.layers.RNN`` to run it over a sequence.

    Args:
        units: size of h_t and C_t.

    Example::

        layer = keras.layers.RNN(ScratchLSTMCell(64), return_sequences=True)
        y = layer(np.zeros((8, 200, 32), "float32"))   # (8, 200, 64)
    """

    def __init__(self, units: int, **kwargs):
        super().__init__(**kwargs)
        self.units = units
        self.state_size = [units, units]   # h, C
        self.output_size = units

    def build(self, input_shape):
        input_dim, u = input_shape[-1], self.units
        self.kernel = self.add_weight(shape=(input_dim, 4 * u), initializer="glorot_uniform", name="kernel")
        self.recurrent_kernel = self.add_weight(shape=(u, 4 * u), initializer="orthogonal", name="recurrent_kernel")

        def bias_init(shape, dtype=None):  # zeros, except 1 for the forget gate's block
            return ops.cast(ops.concatenate([ops.zeros((u,)), ops.ones((u,)), ops.zeros((2 * u,))]),
                            dtype or "float32")

        self.bias = self.add_weight(shape=(4 * u,), initializer=bias_init, name="bias")

    def call(self, inputs, states, training=False):
        h_prev, c_prev = states                                               # (B, u) each
        z = ops.matmul(inputs, self.kernel) + ops.matmul(h_prev, self.recurrent_kernel) + self.bias  # (B, 4u)
        z_i, z_f, z_c, z_o = ops.split(z, 4, axis=-1)
        i = ops.sigmoid(z_i)
        f = ops.sigmoid(z_f)
        g = ops.tanh(z_c)
        o = ops.sigmoid(z_o)            # σ(W_o·[h_{t−1}, x_t] + b_o), not σ(C_t)
        c = f * c_prev + i * g
        h = o * ops.tanh(c)
        return h, [h, c]

    def get_initial_state(self, batch_size=None):
        return [ops.zeros((batch_size, self.units), dtype=self.compute_dtype) for _ in range(2)]

    def get_config(self):
        return {**super().get_config(), "units": self.units}
