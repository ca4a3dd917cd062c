"""MobileNets: the lightweight convolutional family built for phones and microcontrollers.

- V1: Howard et al., "MobileNets: Efficient Convolutional Neural Networks for Mobile Vision
  Applications", arXiv:1704.04861 (2017) — depthwise-separable convolutions, width multiplier α.
- V2: Sandler et al., "MobileNetV2: Inverted Residuals and Linear Bottlenecks", CVPR 2018.
- V3-Small: Howard et al., "Searching for MobileNetV3", ICCV 2019 — h-swish, squeeze-excite.

The networks are ``keras.applications``' own (``weights=None``: trained from scratch, any number of
input channels), not rewritten here. Those builders refuse inputs under 32×32, so images smaller
than ``--input-size`` (Fashion-MNIST's 28×28) are resized inside the model by a ``Resizing`` layer:
the exported ``.tflite`` then takes the dataset's own images, and the int8 representative data is
the plugin's training data unchanged. A ``Rescaling`` layer maps [0, 1] to the [-1, 1] the
applications expect (their ``preprocess_input``), again inside the model for the same reason.
At 32×32 the stride-32 backbones end on a 1×1 feature map; ``--input-size 64`` buys accuracy for
four times the compute.

The default is the original, V1 at α 1.0 (``keras.applications.MobileNet``'s own default, and the
network of tfmot's published pruning result). Smaller variants shrink less under int8: the file
stores a float scale and a 64-bit zero point for every output channel, which weighs more the fewer
weights each channel has (int8/float32 file size, measured: V1 α1.0 0.275×; V1 α0.5, V2 α1.0 and
V3-Small 0.30–0.31×; V2 α0.5 0.353×; benchmarks/RESULTS.md).
"""
from __future__ import annotations

from dataclasses import dataclass

from dlkit.api import Algorithm, TrainConfig, option

APPLICATIONS = {"v1": "MobileNet", "v2": "MobileNetV2", "v3small": "MobileNetV3Small"}


@dataclass
class MobileNetConfig(TrainConfig):
    epochs: int = option(5, "Passes over the training set.", min=1)
    variant: str = option("v1", "v1 (depthwise-separable), v2 (inverted residuals) or v3small.",
                          choices=tuple(APPLICATIONS))
    alpha: float = option(1.0, "Width multiplier α (v1: 0.25/0.5/0.75/1; v2: 0.35–1.4; v3small: 0.75/1).",
                          min=0.1, max=1.4)
    input_size: int = option(32, "Side the images are resized to inside the model (≥ 32).", min=32, max=224)
    dropout: float = option(1e-3, "Dropout before the classifier (v1, v3small).", min=0.0, max=0.9)
    bn_momentum: float = option(0.9, "Batch-norm moving-average momentum (the applications' 0.999 suits "
                                "ImageNet-length runs only).", min=0.0, max=0.9999)
    learning_rate: float = option(2e-3, "Adam learning rate (decays to 0 on a cosine over the run).", min=0.0)


class MobileNet(Algorithm):
    name = "mobilenet"
    summary = "MobileNet V1/V2/V3-Small (keras.applications, width multiplier α): Fashion-MNIST"
    config = MobileNetConfig
    datasets = ("fashion_mnist", "cifar10", "mnist")
    test_config = {"alpha": 0.25}

    def build(self, cfg: MobileNetConfig, data):
        import keras
        from keras import layers

        from dlkit.optimizers import adam_cosine

        height, width, channels = data.input_shape
        size = max(cfg.input_size, height, width)
        inputs = keras.Input(shape=data.input_shape, name="image")                  # (B, 28, 28, 1)
        x = inputs
        if (height, width) != (size, size):
            x = layers.Resizing(size, size, name="resize")(x)                        # (B, 32, 32, 1)
        x = layers.Rescaling(2.0, offset=-1.0, name="to_minus1_1")(x)             # [0,1] → [-1,1]
        kwargs = dict(input_tensor=x, weights=None, classes=data.num_classes, alpha=cfg.alpha,
                      classifier_activation="softmax")
        if cfg.variant in ("v1", "v3small"):
            kwargs["dropout_rate" if cfg.variant == "v3small" else "dropout"] = cfg.dropout
        if cfg.variant == "v3small":
            kwargs["include_preprocessing"] = False  # our Rescaling above does it for [0, 1] images
        try:
            backbone = getattr(keras.applications, APPLICATIONS[cfg.variant])(**kwargs)
        except ValueError as exc:  # e.g. an α the application does not offer
            from dlkit.errors import DlkitError, first_line

            raise DlkitError(f"mobilenet {cfg.variant} with alpha {cfg.alpha}: {first_line(exc)}") from None
        # input_tensor= makes the application one flat graph from our Input: no nested model, so
        # every layer is visible to pruning, to the tf_keras mirror (QAT) and to the TFLite converter.
        model = keras.Model(inputs, backbone.output, name=f"mobilenet_{cfg.variant}")
        for layer in model.layers:
            if isinstance(layer, layers.BatchNormalization):
                # The applications use momentum 0.999 (V2, V3), tuned for ImageNet's thousands of steps per
                # epoch. After a few hundred steps the moving statistics are still near their initial values
                # and test accuracy collapses to chance (measured: 82% train, 10% test). 0.9 follows the data.
                layer.momentum = cfg.bn_momentum
        model.compile(optimizer=adam_cosine(cfg.learning_rate, cfg.epochs, len(data.x_train), cfg.batch_size),
                      loss="sparse_categorical_crossentropy", metrics=["accuracy"])
        return model
