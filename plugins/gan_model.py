"""DCGAN's generator and discriminator (Radford, Metz & Chintala, ICLR 2016), optionally class-conditional
(Mirza & Osindero, "Conditional Generative Adversarial Nets", 2014).

The DCGAN rules, as the paper lists them: no pooling (strided convolutions in the discriminator, transposed
convolutions in the generator), batch norm in both networks except the generator's output and the
discriminator's input layer, ReLU in the generator with tanh at its output, LeakyReLU(0.2) in the
discriminator, weights drawn from N(0, 0.02).

The networks scale to the image: a side of 28 (MNIST, Fashion-MNIST) starts the generator at 7×7, a side
of 8 (scikit-learn's digits) at 2×2; two stride-2 layers double it twice. The generator's output and the
discriminator's input are images in the data's own range [0, 1]: tanh is rescaled at the end of one and
undone at the start of the other, so ``model.keras`` produces images a user (or a classifier) can take as
they are.

Conditioning follows Mirza & Osindero: the generator sees its label as an embedding concatenated with the
noise, the discriminator as one extra image channel (an embedding of the label reshaped to H×W), so both
networks answer "is this a real image *of this class*". Only ``keras.ops`` and built-in layers: the models
run and reload on TensorFlow, JAX and PyTorch.
"""
from __future__ import annotations

import keras
from keras import layers

#: DCGAN's initialisation: every convolution and dense weight from N(0, 0.02).
INIT = {"mean": 0.0, "stddev": 0.02}


def _init(seed: int):
    return keras.initializers.RandomNormal(**INIT, seed=seed)


def generator(image_shape: tuple[int, int, int], *, latent: int, width: int, num_classes: int = 0,
              seed: int = 0) -> keras.Model:
    """z (and a label) → an image in [0, 1] of ``image_shape``.

    Args:
        image_shape: (H, W, C) with H and W divisible by 4 (28×28×1 or 8×8×1).
        latent: size of the noise vector z ~ N(0, I).
        width: channels of the last hidden layer; the first has twice as many.
        num_classes: > 0 makes a conditional generator taking ``[z, label]`` (label int32, shape (B,)).
        seed: seeds the weight initialisers, so a build is the same on every backend.

    Example: ``generator((28, 28, 1), latent=64, width=32)(np.zeros((2, 64), "float32"))`` → (2, 28, 28, 1).
    """
    height, wide, channels = image_shape
    if height % 4 or wide % 4:
        raise ValueError(f"the generator doubles its side twice: image sides must be divisible by 4, got {image_shape}")
    h0, w0 = height // 4, wide // 4                                          # 7×7 for MNIST, 2×2 for digits
    noise = keras.Input((latent,), name="noise")
    inputs, z = [noise], noise
    if num_classes:
        label = keras.Input((), dtype="int32", name="label")
        inputs.append(label)
        embedded = layers.Embedding(num_classes, latent, embeddings_initializer=_init(seed + 1),
                                    name="label_embedding")(label)          # (B, latent)
        z = layers.Concatenate(name="noise_and_label")([noise, embedded])   # (B, 2·latent)
    x = layers.Dense(h0 * w0 * 2 * width, use_bias=False, kernel_initializer=_init(seed + 2), name="project")(z)
    x = layers.BatchNormalization(name="project_bn")(x)
    x = layers.ReLU()(x)
    x = layers.Reshape((h0, w0, 2 * width))(x)                               # (B, 7, 7, 2W)
    x = layers.Conv2DTranspose(width, 4, strides=2, padding="same", use_bias=False,
                               kernel_initializer=_init(seed + 3), name="up1")(x)  # (B, 14, 14, W)
    x = layers.BatchNormalization(name="up1_bn")(x)
    x = layers.ReLU()(x)
    x = layers.Conv2DTranspose(channels, 4, strides=2, padding="same", activation="tanh",
                               kernel_initializer=_init(seed + 4), name="up2")(x)  # (B, 28, 28, C) in [-1, 1]
    image = layers.Rescaling(0.5, offset=0.5, name="to_unit_range")(x)     # [0, 1], the data's range
    return keras.Model(inputs if num_classes else noise, image, name="generator")


def discriminator(image_shape: tuple[int, int, int], *, width: int, num_classes: int = 0,
                  seed: int = 0) -> keras.Model:
    """An image in [0, 1] (and a label) → one logit: real (> 0) or generated (< 0).

    Two stride-2 convolutions (W then 2W channels; no batch norm on the first, as DCGAN), then one dense
    logit. Conditional: ``[image, label]``, the label as an extra channel beside the image's.
    """
    height, wide, _ = image_shape
    image = keras.Input(image_shape, name="image")
    inputs = [image]
    x = layers.Rescaling(2.0, offset=-1.0, name="to_tanh_range")(image)    # [-1, 1], the generator's tanh
    if num_classes:
        label = keras.Input((), dtype="int32", name="label")
        inputs.append(label)
        plane = layers.Embedding(num_classes, height * wide, embeddings_initializer=_init(seed + 11),
                                 name="label_embedding")(label)             # (B, H·W)
        plane = layers.Reshape((height, wide, 1))(plane)                     # (B, H, W, 1)
        x = layers.Concatenate(name="image_and_label")([x, plane])          # (B, H, W, C + 1)
    x = layers.Conv2D(width, 4, strides=2, padding="same", kernel_initializer=_init(seed + 12), name="down1")(x)
    x = layers.LeakyReLU(0.2)(x)                                             # (B, 14, 14, W)
    x = layers.Conv2D(2 * width, 4, strides=2, padding="same", use_bias=False,
                      kernel_initializer=_init(seed + 13), name="down2")(x)  # (B, 7, 7, 2W)
    x = layers.BatchNormalization(name="down2_bn")(x)
    x = layers.LeakyReLU(0.2)(x)
    x = layers.Flatten()(x)
    logit = layers.Dense(1, kernel_initializer=_init(seed + 14), name="logit")(x)  # (B, 1)
    return keras.Model(inputs if num_classes else image, logit, name="discriminator")
