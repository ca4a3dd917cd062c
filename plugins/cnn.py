"""Convolutional neural network for small images — the seeds' MNIST ConvNet.

LeCun et al., "Gradient-based learning applied to document recognition", Proc. IEEE 1998.
Architecture as in the classic Keras MNIST example: Conv32-Conv64-MaxPool-Dropout-Flatten-Dense128-
Dropout-Dense10. What makes it reach 99.2% in 3 epochs instead of ~12: batch normalization after
each convolution and the dense layer (Ioffe & Szegedy, ICML 2015; ``--no-batch-norm`` gives the
plain net), which tolerates a high Adam rate (5e-3 after a 10% linear warmup, then a cosine to 0),
light dropout (0.1/0.2: the classic 0.25/0.5 held 3-epoch runs back), and label smoothing 0.1
(Szegedy et al., CVPR 2016). The steps that got here, each measured on several seeds and backends,
are in benchmarks/RESULTS.md.
"""
from __future__ import annotations

from dataclasses import dataclass

from dlkit.api import Algorithm, TrainConfig, option


@dataclass
class CNNConfig(TrainConfig):
    epochs: int = option(3, "Passes over the training set.", min=1)
    filters: int = option(32, "Filters of the first convolution (the second has twice as many).", min=1)
    dense: int = option(128, "Units of the hidden dense layer.", min=1)
    dropout: float = option(0.1, "Dropout after the pooling (doubled after the dense layer).", min=0.0, max=0.45)
    batch_norm: bool = option(True, "Batch-normalize the convolutions and the dense layer.")
    bn_momentum: float = option(0.99, "Momentum of batch norm's moving statistics (Keras' default 0.99).",
                                min=0.0, max=0.9999)
    learning_rate: float = option(5e-3, "Peak Adam learning rate (then decays to 0 on a cosine).", min=0.0)
    warmup: float = option(0.1, "Fraction of the steps that warm the learning rate up from 0.", min=0.0, max=0.5)
    label_smoothing: float = option(0.1, "Label smoothing of the cross-entropy (0 = off).", min=0.0, max=0.5)


class CNN(Algorithm):
    name = "cnn"
    summary = "Convolutional network (Conv32-Conv64-MaxPool-Dense128): MNIST digits"
    config = CNNConfig
    datasets = ("mnist", "fashion_mnist", "digits", "cifar10")
    test_config = {"filters": 4, "dense": 8}

    def build(self, cfg: CNNConfig, data):
        import keras
        from keras import layers

        from dlkit.optimizers import adam_cosine

        # with batch norm a layer's bias is redundant (BN's beta replaces it), and ReLU comes after BN
        bias = not cfg.batch_norm

        def batch_norm():
            return [layers.BatchNormalization(momentum=cfg.bn_momentum)] if cfg.batch_norm else []

        model = keras.Sequential([
            keras.Input(shape=data.input_shape),                                    # (B, 28, 28, 1)
            layers.Conv2D(cfg.filters, 3, use_bias=bias), *batch_norm(), layers.ReLU(),      # (B, 26, 26, 32)
            layers.Conv2D(cfg.filters * 2, 3, use_bias=bias), *batch_norm(), layers.ReLU(),  # (B, 24, 24, 64)
            layers.MaxPooling2D(2),                                                 # (B, 12, 12, 64)
            layers.Dropout(cfg.dropout),
            layers.Flatten(),                                                       # (B, 9216)
            layers.Dense(cfg.dense, use_bias=bias), *batch_norm(), layers.ReLU(),            # (B, 128)
            layers.Dropout(2 * cfg.dropout),
            layers.Dense(data.num_classes, activation="softmax"),                   # (B, 10)
        ], name="cnn")
        # Keras smooths labels only in its one-hot loss (train() below makes the labels one-hot for it);
        # a built-in loss keeps model.keras loadable by plain Keras, without dlkit
        loss = keras.losses.CategoricalCrossentropy(label_smoothing=cfg.label_smoothing) if cfg.label_smoothing \
            else "sparse_categorical_crossentropy"
        model.compile(optimizer=adam_cosine(cfg.learning_rate, cfg.epochs, len(data.x_train), cfg.batch_size,
                                            cfg.warmup),
                      loss=loss, metrics=["accuracy"])
        return model

    def train(self, model, data, cfg: CNNConfig, run):
        if cfg.label_smoothing:  # the one-hot loss needs one-hot labels; test labels stay integers
            import dataclasses

            import keras

            def one_hot(labels):
                return None if labels is None else keras.utils.to_categorical(labels, data.num_classes)

            data = dataclasses.replace(data, y_train=one_hot(data.y_train), y_val=one_hot(data.y_val))
        return super().train(model, data, cfg, run)
