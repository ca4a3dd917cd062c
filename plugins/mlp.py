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
    hidden: tuple[int, ...] = option((512, 256), "Hidden layer widths, comma separated.", min=1)
    activation: str = option("relu", "Hidden-layer activation.", choices=("relu", "tanh", "sigmoid"))
    dropout: float = option(0.2, "Dropout after each hidden layer.", min=0.0, max=0.9)
    learning_rate: float = option(1e-3, "Adam learning rate (decays to 0 on a cosine over the run).", min=0.0)


class MLP(Algorithm):
    name = "mlp"
    summary = "Back-propagation multilayer perceptron (relu/tanh/sigmoid): MNIST digits"
    config = MLPConfig
    datasets = ("mnist", "fashion_mnist", "digits", "cifar10")
    test_config = {"hidden": (16,)}

    def build(self, cfg: MLPConfig, data):
        import keras
        from keras import layers

        from dlkit.optimizers import adam_cosine

        inputs = keras.Input(shape=data.input_shape)
        x = layers.Flatten()(inputs)  # (B, H*W*C): an MLP sees pixels, not images
        for width in cfg.hidden:
            x = layers.Dense(width, activation=cfg.activation)(x)
            x = layers.Dropout(cfg.dropout)(x)
        outputs = layers.Dense(data.num_classes, activation="softmax")(x)
        model = keras.Model(inputs, outputs, name="mlp")
        model.compile(optimizer=adam_cosine(cfg.learning_rate, cfg.epochs, len(data.x_train), cfg.batch_size),
                      loss="sparse_categorical_crossentropy", metrics=["accuracy"])
        return model
