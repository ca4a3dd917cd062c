"""In one process with KERAS_BACKEND set: dlkit/fast_kernels.py's kernels against Keras' own, as JSON.

torch: BatchNormalization in training (output, moving statistics, input gradient, and under
stateless_call as GradientStep runs it); convolutions and pooling with the channels-last transpose
(outputs and input gradients). jax: non-overlapping max pooling (values and gradient).
"""
import json
import os
import sys

import numpy as np

from dlkit import backends

backends.activate(os.environ["KERAS_BACKEND"])
import keras  # noqa: E402  (after the backend is chosen)


def biggest(a, b) -> float:
    return float(np.abs(keras.ops.convert_to_numpy(a) - keras.ops.convert_to_numpy(b)).max())


def torch_batch_norm() -> dict:
    import torch

    x = (np.random.default_rng(0).normal(size=(16, 9, 9, 6)) * 0.1 + 0.3).astype("float32")
    keras_call = keras.layers.BatchNormalization.call.keras_call  # Keras' own, kept by install()
    fused, plain = keras.layers.BatchNormalization(momentum=0.9), keras.layers.BatchNormalization(momentum=0.9)
    fused.build(x.shape), plain.build(x.shape)
    inputs = [torch.tensor(x, requires_grad=True) for _ in range(2)]
    out_fused, out_plain = fused(inputs[0], training=True), keras_call(plain, inputs[1], training=True)
    out_fused.square().sum().backward(), out_plain.square().sum().backward()
    state = [v.value for v in fused.non_trainable_variables]
    _, stateless = fused.stateless_call([v.value for v in fused.trainable_variables], state, x, training=True)
    batch = [x.mean(axis=(0, 1, 2)), x.var(axis=(0, 1, 2))]  # Keras updates with the biased variance
    expected = [0.9 * s + 0.1 * b for s, b in zip(fused.get_weights()[2:], batch)]
    return {"output": biggest(out_fused, out_plain), "input_gradient": biggest(inputs[0].grad, inputs[1].grad),
            "gradient_scale": float(inputs[1].grad.abs().max()),
            "moving": max(biggest(a, b) for a, b in zip(fused.get_weights(), plain.get_weights())),
            "stateless_moving": max(biggest(a, b) for a, b in zip(stateless, expected)),
            "eval_unchanged": biggest(fused(x, training=False), keras_call(plain, x, training=False))}


def torch_layout() -> dict:
    """Spatial layers with the channels-last transpose against Keras' own (NCHW copy): outputs and input
    gradients, and whether the transpose of a contiguous (B, H, W, C) tensor copies it."""
    import torch
    from keras.src.backend.torch import nn

    patched, keras_transpose = nn._transpose_spatial_inputs, nn._transpose_spatial_inputs.keras_transpose
    rng = np.random.default_rng(1)
    layers = {"conv": keras.layers.Conv2D(5, 3),
              "conv_same_strided": keras.layers.Conv2D(4, 3, strides=2, padding="same"),
              "depthwise": keras.layers.DepthwiseConv2D(3, padding="same"),
              "transposed": keras.layers.Conv2DTranspose(3, 3, strides=2),
              "max_pool": keras.layers.MaxPooling2D(2),
              "average_pool_same": keras.layers.AveragePooling2D(3, 2, padding="same"),
              "conv3d": keras.layers.Conv3D(2, 2)}
    gaps = {}
    for name, layer in layers.items():
        x = rng.normal(size=(3, 6, 7, 8, 4) if name == "conv3d" else (3, 11, 10, 4)).astype("float32")
        results = []
        for transpose in (patched, keras_transpose):
            nn._transpose_spatial_inputs = transpose
            inputs = torch.tensor(x, requires_grad=True)
            out = layer(inputs)
            out.square().sum().backward()
            results.append((out.detach(), inputs.grad))
        nn._transpose_spatial_inputs = patched
        gaps[name] = max(biggest(a, b) for a, b in zip(*results))
    nhwc = torch.zeros(2, 5, 5, 3)
    return {"gaps": gaps, "copies_nhwc": patched(nhwc).data_ptr() != nhwc.data_ptr()}


def jax_max_pool() -> dict:
    import jax
    from keras.src.backend.jax import nn

    x = np.random.default_rng(0).normal(size=(4, 9, 9, 3)).astype("float32")
    keras_pool = nn.max_pool.keras_max_pool

    def loss(pool):
        return jax.grad(lambda t: (pool(t) ** 2).sum())(x)

    return {"values": biggest(keras.layers.MaxPooling2D(2)(x), keras_pool(x, 2, 2, "valid", None)),
            "gradient": biggest(loss(lambda t: nn.max_pool(t, 2, 2)), loss(lambda t: keras_pool(t, 2, 2, "valid", None))),
            "overlapping_shape": list(nn.max_pool(x, 3, 2).shape)}


if __name__ == "__main__":
    checks = {"torch": lambda: {**torch_batch_norm(), "layout": torch_layout()}, "jax": jax_max_pool}
    print(json.dumps(checks[keras.backend.backend()]()), flush=True)
    sys.exit(0)
