"""Fused kernels for two Keras 3 layers whose backend implementations are composed of small operations.

* torch: ``BatchNormalization`` in training computes its moments as ``E[x²] − E[x]²`` and normalizes with
  ``(x − mean) · rsqrt(var + ε) · γ + β``, each an elementwise pass over the activations, and autograd
  differentiates every one of them. PyTorch's ``native_batch_norm`` does the same arithmetic in one
  kernel forward and one backward (channels-last memory included). In cnn's train step the composed
  version's mul/sum/add/copy operations took more CPU than the convolutions.
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
    """Patch Keras for ``backend`` (idempotent); True when a fused kernel is in use."""
    try:
        if backend == "torch":
            return _torch_batch_norm()
        if backend == "jax":
            return _jax_max_pool()
    except (ImportError, AttributeError):
        pass
    return False


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
