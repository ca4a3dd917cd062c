"""Faster paths for Keras 3 layers whose backend implementations are composed of small operations or copies.

* torch: ``BatchNormalization`` in training computes its moments as ``E[x²] − E[x]²`` and normalizes with
  ``(x − mean) · rsqrt(var + ε) · γ + β``, each an elementwise pass over the activations, and autograd
  differentiates every one of them. PyTorch's ``native_batch_norm`` does the same arithmetic in one
  kernel forward and one backward (channels-last memory included). In cnn's train step the composed
  version's mul/sum/add/copy operations took more CPU than the convolutions.
* torch: convolutions and pooling take channels-last (B, H, W, C) inputs, permute them to PyTorch's
  (B, C, H, W) and, since Keras 3.15, copy the result to channels-first memory (``.contiguous()``); the
  convolution then converts it back to channels-last memory for oneDNN, and the gradients retrace both
  copies. The permuted view of a contiguous NHWC tensor already *is* channels-last memory, so asking
  for that layout (``contiguous(memory_format=torch.channels_last)``) copies nothing and gives every
  kernel a dense tensor. In cnn's train step at one thread the copies took 13–18% of the CPU time, and
  the ReLU gradients, reading one operand in each layout, 3.5× the time of a native twin's.
* jax: ``MaxPooling2D`` lowers to ``reduce_window``, whose gradient XLA's CPU backend runs as a slow
  ``select_and_scatter``. A non-overlapping window (pool = stride, valid padding) is a reshape and a max,
  the same values; the gradient differs only where a window holds equal maxima, and after a ReLU those are
  zeros, whose gradient the ReLU discards.

Only what runs changes: the layers, their configs and model.keras are Keras' own, so a model trained with
these kernels loads anywhere. Anything outside those cases (masks, renorm, float16, other pools) keeps
Keras' path. If Keras renames what is patched, :func:`install` leaves Keras unchanged.
"""
from __future__ import annotations


def install(backend: str) -> bool:
    """Patch Keras for ``backend`` (idempotent); True when a faster path is in use."""
    patches = {"torch": (_torch_batch_norm, _torch_channels_last_layout), "jax": (_jax_max_pool,)}
    installed = False
    for patch in patches.get(backend, ()):
        try:
            installed = patch() or installed
        except (ImportError, AttributeError):  # Keras renamed what is patched: its own path stays
            pass
    return installed


def _torch_batch_norm() -> bool:
    import keras
    import torch

    layer = keras.layers.BatchNormalization
    if getattr(layer.call, "keras_call", None):
        return True
    keras_call = layer.call

    def call(self, inputs, training=None, mask=None):
        if not (training and self.trainable and mask is None and not self.renorm
                and not getattr(self, "synchronized", False) and isinstance(inputs, torch.Tensor)
                and inputs.dtype == torch.float32 and self.compute_dtype == "float32"):
            return keras_call(self, inputs, training=training, mask=mask)
        x = torch.movedim(inputs, self.axis, 1)  # channels second; a view, channels-last memory kept
        gamma = self.gamma.value if self.scale else None
        beta = self.beta.value if self.center else None
        out, mean, invstd = torch.native_batch_norm(x, gamma, beta, None, None, True, 0.0, self.epsilon)
        with torch.no_grad():  # Keras' update of the moving statistics, with the biased batch variance
            variance = invstd.pow(-2) - self.epsilon
            self.moving_mean.assign(self.moving_mean.value * self.momentum + mean * (1.0 - self.momentum))
            self.moving_variance.assign(self.moving_variance.value * self.momentum
                                        + variance * (1.0 - self.momentum))
        return torch.movedim(out, 1, self.axis)

    call.keras_call = keras_call
    layer.call = call
    return True


def _torch_channels_last_layout() -> bool:
    from keras.src.backend.torch import nn

    if getattr(nn._transpose_spatial_inputs, "keras_transpose", None):
        return True
    keras_transpose = nn._transpose_spatial_inputs
    import torch

    def transpose_spatial_inputs(inputs):
        # (B, H, W, C) → (B, C, H, W) in channels-last memory: for a contiguous NHWC input the permuted
        # view already is that layout, so no copy (Keras' .contiguous() copies it to NCHW memory, and the
        # convolution then converts it back to channels-last for oneDNN)
        if inputs.ndim == 4:
            return torch.permute(inputs, (0, 3, 1, 2)).contiguous(memory_format=torch.channels_last)
        if inputs.ndim == 5:
            return torch.permute(inputs, (0, 4, 1, 2, 3)).contiguous(memory_format=torch.channels_last_3d)
        return keras_transpose(inputs)

    transpose_spatial_inputs.keras_transpose = keras_transpose
    nn._transpose_spatial_inputs = transpose_spatial_inputs
    return True


def _jax_max_pool() -> bool:
    import jax.numpy as jnp
    from keras.src import backend as keras_backend
    from keras.src.backend.jax import nn
    from keras.src.utils.argument_validation import standardize_tuple

    if getattr(nn.max_pool, "keras_max_pool", None):
        return True
    keras_max_pool = nn.max_pool

    def max_pool(inputs, pool_size, strides=None, padding="valid", data_format=None):
        if getattr(inputs, "ndim", 0) == 4 and padding == "valid" \
                and keras_backend.standardize_data_format(data_format) == "channels_last":
            pool = standardize_tuple(pool_size, 2, "pool_size")
            if strides is None or standardize_tuple(strides, 2, "strides") == pool:
                n, h, w, c = inputs.shape
                (ph, pw), (oh, ow) = pool, (h // pool[0], w // pool[1])
                windows = inputs[:, :oh * ph, :ow * pw].reshape(n, oh, ph, ow, pw, c)
                return jnp.max(windows, axis=(2, 4))
        return keras_max_pool(inputs, pool_size, strides, padding, data_format)

    max_pool.keras_max_pool = keras_max_pool
    nn.max_pool = max_pool
    return True
