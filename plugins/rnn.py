"""Elman recurrent network: h_t = tanh(W·x_t + U·h_{t−1} + b), Keras' ``SimpleRNN``.

Elman, "Finding structure in time", Cognitive Science 1990. Its gradient through time is a product
of one Jacobian per step, which shrinks (or explodes) geometrically with the distance: Bengio,
Simard & Frasconi, "Learning long-term dependencies with gradient descent is difficult", IEEE TNN
1994. benchmarks/RESULTS.md measures what that costs on IMDB at 50, 200 and 500 tokens next to the
gated cells (lstm, gru). Data, options and head are shared with them (plugins/recurrent.py).
"""
from __future__ import annotations

from dataclasses import dataclass

from dlkit.plugins.recurrent import Recurrent, RecurrentConfig


@dataclass
class RNNConfig(RecurrentConfig):
    pass


class RNN(Recurrent):
    name = "rnn"
    summary = "Elman recurrent network (SimpleRNN): IMDB review sentiment, Mauna Loa CO₂ forecasting"
    config = RNNConfig

    def layer(self, cfg: RNNConfig, return_sequences: bool):
        import keras

        return keras.layers.SimpleRNN(cfg.units, return_sequences=return_sequences)
