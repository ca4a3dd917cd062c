"""The denoising autoencoder's layers and network: Keras at the top, backend-neutral (``keras.ops`` only).

Vincent, Larochelle, Bengio & Manzagol, "Extracting and composing robust features with denoising
autoencoders", ICML 2008 (the masking noise); Masci, Meier, Cireşan & Schmidhuber, "Stacked
convolutional auto-encoders for hierarchical feature extraction", ICANN 2011 (the convolutions).

This module is imported by the plugin's hooks, after dlkit has chosen the backend, never by
``dlkit list``: importing it imports Keras. Importing it also registers ``MaskingNoise``, which is
what lets ``model.keras`` load in safe mode.
"""
from __future__ import annotations

import keras
from keras import layers, ops


@keras.saving.register_keras_serializable(package="dlkit_autoencoder")
class MaskingNoise(layers.Layer):
    """Zero each input value with probability ``rate`` while training; identity at inference.

    Unlike Dropout it does not rescale the values it keeps: the corruption of Vincent et al.

    Args:
        rate: probability that a value is set to 0, in [0, 1).
        seed: seed of the layer's own random stream (its state is saved and resumed with the model).

    Example::

        noisy = MaskingNoise(0.25, seed=0)(keras.ops.ones((2, 4)), training=True)  # about a quarter zeros
    """

    def __init__(self, rate: float, seed: int | None = None, **kwargs):
        super().__init__(**kwargs)
        # === Config ===
        self.rate = float(rate)
        self.seed = seed
        # === State ===
        self.seed_generator = keras.random.SeedGenerator(seed)

    def call(self, inputs, training=False):
        if not training or self.rate == 0.0:
            return inputs
        keep = keras.random.uniform(ops.shape(inputs), seed=self.seed_generator) >= self.rate
        return ops.where(keep, inputs, ops.zeros_like(inputs))

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "rate": self.rate, "seed": self.seed}


def denoising_autoencoder(input_shape: tuple[int, int, int], *, latent: int, filters: int, noise: float,
                          seed: int | None = None) -> keras.Model:
    """Conv(s2)-Conv(s2)-Dense(code), and back with transposed convolutions; sigmoid pixels.

    Args:
        input_shape: (H, W, C) with H and W multiples of 4 (two stride-2 convolutions).
        latent: size of the bottleneck code.
        filters: filters of the first convolution; the second has twice as many.
        noise: masking-noise rate while training (0: a plain autoencoder).
        seed: seed of the masking noise.
    """
    height, width, channels = input_shape
    if height % 4 or width % 4:
        raise ValueError(f"image sides must be multiples of 4 (two stride-2 convolutions), got {height}×{width}")
    deep = 2 * filters
    inputs = keras.Input(shape=input_shape)                                                  # (B, 28, 28, 1)
    x = MaskingNoise(noise, seed=seed, name="masking_noise")(inputs)
    x = layers.Conv2D(filters, 3, strides=2, padding="same", activation="relu")(x)           # (B, 14, 14, F)
    x = layers.Conv2D(deep, 3, strides=2, padding="same", activation="relu")(x)              # (B, 7, 7, 2F)
    code = layers.Dense(latent, name="code")(layers.Flatten()(x))                            # (B, latent)
    x = layers.Dense(height // 4 * width // 4 * deep, activation="relu")(code)
    x = layers.Reshape((height // 4, width // 4, deep))(x)                                   # (B, 7, 7, 2F)
    x = layers.Conv2DTranspose(deep, 3, strides=2, padding="same", activation="relu")(x)     # (B, 14, 14, 2F)
    x = layers.Conv2DTranspose(filters, 3, strides=2, padding="same", activation="relu")(x)  # (B, 28, 28, F)
    outputs = layers.Conv2D(channels, 3, padding="same", activation="sigmoid")(x)            # (B, 28, 28, 1)
    return keras.Model(inputs, outputs, name="autoencoder")
