"""Long short-term memory: a cell state C_t that gates write (input), keep (forget) and show (output).

Hochreiter & Schmidhuber, "Long short-term memory", Neural Computation 1997; the forget gate is from
Gers, Schmidhuber & Cummins, "Learning to forget", Neural Computation 2000. ``--cell keras`` uses
``keras.layers.LSTM``; ``--cell scratch`` the same cell written with ``keras.ops``
(plugins/scratch_lstm.py, equations in its docstring: the output gate is σ(W_o·[h_{t−1}, x_t] + b_o),
not σ(C_t)), which a test matches to Keras' to 1e-5 on every backend. Data, options and head are
shared with rnn and gru (plugins/recurrent.py).
"""
from __future__ import annotations

from dataclasses import dataclass

from dlkit.api import option
from dlkit.plugins.recurrent import Recurrent, RecurrentConfig


@dataclass
class LSTMConfig(RecurrentConfig):
    cell: str = option("keras", "Which implementation of the cell: Keras' LSTM, or the one written with "
                                "keras.ops (plugins/scratch_lstm.py).", choices=("keras", "scratch"))


class LSTM(Recurrent):
    name = "lstm"
    summary = "Long short-term memory (Keras' cell or one from scratch): IMDB sentiment, Mauna Loa CO₂ forecasting"
    config = LSTMConfig
    # the contract test (every backend, save/load round trip) runs the scratch cell; Keras' own is in e2e
    test_config = {**Recurrent.test_config, "cell": "scratch"}

    def layer(self, cfg: LSTMConfig, return_sequences: bool):
        import keras

        if cfg.cell == "scratch":
            from dlkit.plugins.scratch_lstm import ScratchLSTMCell

            return keras.layers.RNN(ScratchLSTMCell(cfg.units), return_sequences=return_sequences)
        return keras.layers.LSTM(cfg.units, return_sequences=return_sequences)

    def custom_objects(self):
        from dlkit.plugins.scratch_lstm import ScratchLSTMCell

        return {"dlkit>ScratchLSTMCell": ScratchLSTMCell}
