"""Gated recurrent unit: an update gate z and a reset gate r instead of the LSTM's three gates and
separate cell state, Keras' ``GRU``.

Cho et al., "Learning phrase representations using RNN encoder-decoder for statistical machine
translation", EMNLP 2014; compared with the LSTM in Chung et al., "Empirical evaluation of gated
recurrent neural networks on sequence modeling", 2014. Data, options and head are shared with rnn
and lstm (plugins/recurrent.py).
"""
from __future__ import annotations

from dataclasses import dataclass

from dlkit.plugins.recurrent import Recurrent, RecurrentConfig


@dataclass
class GRUConfig(RecurrentConfig):
    pass


class GRU(Recurrent):
    name = "gru"
    summary = "Gated recurrent unit: IMDB review sentiment, Mauna Loa CO₂ forecasting"
    config = GRUConfig

    def layer(self, cfg: GRUConfig, return_sequences: bool):
        import keras

        return keras.layers.GRU(cfg.units, return_sequences=return_sequences)
