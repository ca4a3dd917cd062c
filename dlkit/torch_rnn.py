"""PyTorch's own LSTM and GRU kernels for Keras' LSTM and GRU layers on a CPU.

On the torch backend, Keras 3 runs ``keras.layers.LSTM``/``GRU`` with PyTorch's fused kernels
(``torch._VF.lstm``/``gru``) only on CUDA. On a CPU it takes a Python loop over the time steps that
reads step t as ``x_proj[t]``; the backward pass of each such index allocates a zero gradient of the
*whole* projected sequence, so one training step costs O(L²) memory traffic in the sequence length
L. Measured with an IMDB LSTM (400 tokens, batch 64, 64 units, 2 threads): 24 s per training step on
PyTorch against 0.17 s on TensorFlow, which made the recurrent plugins unusable on PyTorch.

PyTorch's fused kernels run on the CPU too, and the functions Keras already has for CUDA
(``_cudnn_lstm``, ``_cudnn_gru``: the weight layout conversion, the gate reordering, the states)
are device-agnostic. :func:`install` routes Keras' CPU fallbacks to them wherever they compute the
same thing: the standard activations (tanh, sigmoid), a bias, batch-major inputs. Anything else
(custom activations, masks, ``reset_after=False``) keeps Keras' own path. The equivalence with
Keras' loop, outputs and gradients, is checked by tests/torch_rnn_check.py.

This reaches into ``keras.src.backend.torch.rnn``: if a Keras release renames those functions,
:func:`install` leaves Keras unchanged (and the test says so) rather than fail.
"""
from __future__ import annotations


def install() -> bool:
    """Patch Keras' torch CPU fallbacks (idempotent); True when the fused kernels are in use."""
    import importlib

    try:
        from keras.src import activations, ops

        # by module path: keras.src.backend.torch re-exports a *function* named rnn over the submodule
        rnn = importlib.import_module("keras.src.backend.torch.rnn")
    except ImportError:
        return False
    if hasattr(getattr(rnn, "_fallback_lstm", None), "keras_loop"):  # installed already: the wrappers keep Keras' originals
        return True
    names = ("_fallback_lstm", "_fallback_gru", "_cudnn_lstm", "_cudnn_gru")
    if not all(callable(getattr(rnn, name, None)) for name in names):
        return False
    import torch

    tanh = (activations.tanh, torch.tanh, ops.tanh)
    sigmoid = (activations.sigmoid, torch.sigmoid, ops.sigmoid)
    keras_lstm, keras_gru = rnn._fallback_lstm, rnn._fallback_gru

    def fallback_lstm(inputs, initial_state_h, initial_state_c, kernel, recurrent_kernel, bias, activation,
                      recurrent_activation, return_sequences, batch_first):
        if batch_first and bias is not None and activation in tanh and recurrent_activation in sigmoid:
            return rnn._cudnn_lstm(inputs, initial_state_h, initial_state_c, kernel, recurrent_kernel, bias,
                                   return_sequences=return_sequences, device=inputs.device)
        return keras_lstm(inputs, initial_state_h, initial_state_c, kernel, recurrent_kernel, bias, activation,
                          recurrent_activation, return_sequences, batch_first)

    def fallback_gru(inputs, initial_state, kernel, recurrent_kernel, bias, activation, recurrent_activation,
                     return_sequences):
        # Keras reaches this fallback only with reset_after=True, PyTorch's own GRU formulation
        if bias is not None and activation in tanh and recurrent_activation in sigmoid:
            return rnn._cudnn_gru(inputs, initial_state, kernel, recurrent_kernel, bias,
                                  return_sequences=return_sequences, device=inputs.device)
        return keras_gru(inputs, initial_state, kernel, recurrent_kernel, bias, activation, recurrent_activation,
                         return_sequences)

    fallback_lstm.keras_loop, fallback_gru.keras_loop = keras_lstm, keras_gru  # the reference, for the test
    rnn._fallback_lstm, rnn._fallback_gru = fallback_lstm, fallback_gru
    return True
