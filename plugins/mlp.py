"""Multilayer perceptron trained by back-propagation — the classic "BP network".

Rumelhart, Hinton & Williams, "Learning representations by back-propagating errors", Nature 1986.
The hidden activation is an option because the comparison of sigmoid, tanh and ReLU is the lesson:
sigmoid saturates and learns slowest (Glorot & Bengio, AISTATS 2010), ReLU trains fastest.
"""
from __future__ import annotations

from dataclasses import dataclass

from dlkit.api import Algorithm, TrainConfig, option


@dataclass
class MLPConfig(TrainConfig):
    epochs: int = option(10, "Passes over the training set.", min=1)
    hidden: str = option("512,256", "Hidden layer widths, comma separated.")
    activation: str = option("relu", "Hidden-layer activation.", choices=("relu", "tanh", "sigmoid"))
    dropout: float = option(0.2, "Dropout after each hidden layer.", min=0.0, max=0.9)
    learning_rate: float = option(1e-3, "Adam learning rate (decays to 0 on a cosine over the run).", min=0.0)


def hidden_widths(text: str) -> list[int]:
    try:
        widths = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        widths = []
    if not widths or min(widths) < 1:
        from dlkit.errors import DlkitError

        raise DlkitError(f"--hidden expects positive integers separated by commas, e.g. 512,256; got {text!r}")
    return widths


class MLP(Algorithm):
    name = "mlp"
    summary = "Back-propagation multilayer perceptron (relu/tanh/sigmoid): MNIST digits"
    config = MLPConfig
    datasets = ("mnist", "fashion_mnist", "digits", "cifar10")

    def build(self, cfg: MLPConfig, data):
        import keras
        from keras import layers

        from dlkit.optimizers import adam_cosine

        inputs = keras.Input(shape=data.input_shape)
        x = layers.Flatten()(inputs)  # (B, H*W*C): an MLP sees pixels, not images
        for width in hidden_widths(cfg.hidden):
            x = layers.Dense(width, activation=cfg.activation)(x)
            x = layers.Dropout(cfg.dropout)(x)
        outputs = layers.Dense(data.num_classes, activation="softmax")(x)
        model = keras.Model(inputs, outputs, name="mlp")
        model.compile(optimizer=adam_cosine(cfg.learning_rate, cfg.epochs, len(data.x_train), cfg.batch_size),
                      loss="sparse_categorical_crossentropy", metrics=["accuracy"])
        return model
