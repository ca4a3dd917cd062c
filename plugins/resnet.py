"""CIFAR-style residual networks: ResNet-20/32/56.

He, Zhang, Ren & Sun, "Deep Residual Learning for Image Recognition", CVPR 2016, §4.2 (CIFAR-10).
A 3×3 convolution with 16 filters, then three stages of n basic blocks (two 3×3 conv + batch norm)
with 16, 32 and 64 filters on feature maps of 32², 16² and 8²; global average pooling and a
10-way softmax. Depth = 6n + 2 (n = 3, 5, 9 → 20, 32, 56 layers). The paper's ResNet-20 reaches
91.25% on CIFAR-10 with its full schedule (64k iterations).

Shortcuts are identities, and 1×1 projections with batch norm where the shape changes (the
paper's option B). The paper's CIFAR runs use option A (zero-padded strided identity), which would
need a custom layer; option B is at least as accurate (paper, Table 3) and is made of standard
layers only, so the model converts to TFLite and mirrors into tf_keras for QAT without extra code.

``--schedule paper`` is §4.2's recipe: SGD with momentum 0.9, learning rate 0.1 divided by 10 at
50% and 75% of training, weight decay 1e-4, random crop (4-pixel padding) and horizontal flip.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from dlkit.api import Algorithm, TrainConfig, option


#: Batch-norm moving-average momentum: 0.9, PyTorch's default (its 0.1) and what CIFAR reproductions of the
#: paper use. Keras' 0.99 leaves the moving statistics near their initial values after a short run
#: (measured: ResNet-20, 3 epochs on 8k Fashion-MNIST images, 49.8% test accuracy with 0.99).
BN_MOMENTUM = 0.9


@dataclass
class ResNetConfig(TrainConfig):
    epochs: int = option(10, "Passes over the training set (the paper: 64k iterations ≈ 182 epochs).", min=1)
    depth: int = option(20, "Layers: 20, 32, 56 (any 6n+2: n blocks per stage).", min=8)
    schedule: str = option("adam-cosine", "'paper': SGD 0.9, lr 0.1 ÷10 at 50% and 75%, weight decay 1e-4, "
                           "crop+flip augmentation. 'adam-cosine': Adam, cosine decay, no augmentation "
                           "(better for short runs).", choices=("paper", "adam-cosine"))
    learning_rate: float = option(0.0, "Initial learning rate (0 = the schedule's: 0.1 paper, 1e-3 adam).", min=0.0)
    weight_decay: float = option(1e-4, "Weight decay (SGD-style, i.e. L2 of wd/2 on every kernel).", min=0.0)
    augment: str = option("auto", "Random crop + horizontal flip: auto (on with the paper schedule), on, off.",
                          choices=("auto", "on", "off"))


def basic_block(layers, regularizer, x, filters: int, stride: int, name: str):
    """Two 3×3 conv-BN layers plus a shortcut; a projection where the shape changes."""
    conv = dict(padding="same", use_bias=False, kernel_initializer="he_normal", kernel_regularizer=regularizer)
    y = layers.Conv2D(filters, 3, strides=stride, name=f"{name}_conv1", **conv)(x)
    y = layers.BatchNormalization(momentum=BN_MOMENTUM, name=f"{name}_bn1")(y)
    y = layers.ReLU(name=f"{name}_relu1")(y)
    y = layers.Conv2D(filters, 3, name=f"{name}_conv2", **conv)(y)
    y = layers.BatchNormalization(momentum=BN_MOMENTUM, name=f"{name}_bn2")(y)
    shortcut = x
    if stride != 1 or x.shape[-1] != filters:  # option B: 1×1 projection to the new shape
        shortcut = layers.Conv2D(filters, 1, strides=stride, name=f"{name}_proj", **conv)(x)
        shortcut = layers.BatchNormalization(momentum=BN_MOMENTUM, name=f"{name}_proj_bn")(shortcut)
    return layers.ReLU(name=f"{name}_out")(layers.Add(name=f"{name}_add")([y, shortcut]))


def augmented_batches(data, cfg: ResNetConfig):
    """A keras.utils.PyDataset of randomly cropped and flipped batches (NumPy, so every backend runs it)."""
    import keras
    import numpy as np

    class CropFlip(keras.utils.PyDataset):
        def __init__(self):
            super().__init__()
            self.rng = np.random.default_rng(cfg.seed)
            self.order = self.rng.permutation(len(data.x_train))

        def __len__(self):
            return math.ceil(len(data.x_train) / cfg.batch_size)

        def __getitem__(self, i):
            idx = self.order[i * cfg.batch_size:(i + 1) * cfg.batch_size]
            x, y = data.x_train[idx], data.y_train[idx]
            n, h, w, _ = x.shape
            padded = np.pad(x, ((0, 0), (4, 4), (4, 4), (0, 0)))  # (B, H+8, W+8, C)
            dy, dx = self.rng.integers(0, 9, size=(2, n))
            out = np.stack([padded[k, dy[k]:dy[k] + h, dx[k]:dx[k] + w] for k in range(n)])
            flip = self.rng.random(n) < 0.5
            out[flip] = out[flip, :, ::-1]
            return out, y

        def on_epoch_end(self):
            self.order = self.rng.permutation(len(data.x_train))

    return CropFlip()


class ResNet(Algorithm):
    name = "resnet"
    summary = "CIFAR-style residual networks (ResNet-20/32/56, He et al. 2016): CIFAR-10"
    config = ResNetConfig
    datasets = ("cifar10", "fashion_mnist", "mnist")
    test_config = {"depth": 8}

    def build(self, cfg: ResNetConfig, data):
        import keras
        from keras import layers

        if (cfg.depth - 2) % 6:
            from dlkit.errors import DlkitError

            raise DlkitError(f"--depth must be 6n+2 (20, 32, 56, 110…); got {cfg.depth}")
        n = (cfg.depth - 2) // 6
        regularizer = keras.regularizers.L2(cfg.weight_decay / 2) if cfg.weight_decay else None
        inputs = keras.Input(shape=data.input_shape)                                  # (B, 32, 32, 3)
        x = layers.Conv2D(16, 3, padding="same", use_bias=False, kernel_initializer="he_normal",
                          kernel_regularizer=regularizer, name="stem_conv")(inputs)    # (B, 32, 32, 16)
        x = layers.ReLU(name="stem_relu")(layers.BatchNormalization(momentum=BN_MOMENTUM, name="stem_bn")(x))
        for stage, filters in enumerate((16, 32, 64)):                                # 32² → 16² → 8²
            for block in range(n):
                stride = 2 if stage > 0 and block == 0 else 1
                x = basic_block(layers, regularizer, x, filters, stride, f"stage{stage + 1}_block{block + 1}")
        x = layers.GlobalAveragePooling2D(name="pool")(x)                             # (B, 64)
        outputs = layers.Dense(data.num_classes, activation="softmax", kernel_regularizer=regularizer,
                               name="classifier")(x)
        model = keras.Model(inputs, outputs, name=f"resnet{cfg.depth}")

        if cfg.schedule == "paper":
            lr = cfg.learning_rate or 0.1
            steps = max(1, cfg.epochs * math.ceil(len(data.x_train) / cfg.batch_size))
            schedule = keras.optimizers.schedules.PiecewiseConstantDecay(
                [int(steps * 0.5), int(steps * 0.75)], [lr, lr / 10, lr / 100])
            optimizer = keras.optimizers.SGD(schedule, momentum=0.9)
        else:
            from dlkit.optimizers import adam_cosine

            optimizer = adam_cosine(cfg.learning_rate or 1e-3, cfg.epochs, len(data.x_train), cfg.batch_size)
        model.compile(optimizer=optimizer, loss="sparse_categorical_crossentropy", metrics=["accuracy"])
        return model

    def train(self, model, data, cfg: ResNetConfig, run):
        augment = cfg.augment == "on" or (cfg.augment == "auto" and cfg.schedule == "paper")
        if not augment:
            return super().train(model, data, cfg, run)
        validation = (data.x_val, data.y_val) if data.x_val is not None else None
        return run.fit(model, augmented_batches(data, cfg), validation_data=validation)
