"""Losses plugins share. Imports Keras at module level: import this only inside ``build``."""
from __future__ import annotations

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="dlkit")
class SparseCategoricalCrossentropySmoothed(keras.losses.Loss):
    """Cross-entropy on integer labels with label smoothing (Szegedy et al., "Rethinking the Inception
    Architecture", CVPR 2016, §7).

    Keras offers ``label_smoothing`` only on the one-hot ``CategoricalCrossentropy``; the datasets here
    carry integer labels, which the accuracy metric and the confusion matrix also read. Registered, so a
    saved model reloads with safe mode on and without ``custom_objects``.
    """

    def __init__(self, label_smoothing: float = 0.1, name: str = "sparse_categorical_crossentropy_smoothed",
                 **kwargs):
        super().__init__(name=name, **kwargs)
        self.label_smoothing = float(label_smoothing)

    def call(self, y_true, y_pred):
        classes = ops.shape(y_pred)[-1]
        one_hot = ops.one_hot(ops.cast(ops.reshape(y_true, (-1,)), "int32"), classes, dtype=y_pred.dtype)
        return keras.losses.categorical_crossentropy(one_hot, y_pred, label_smoothing=self.label_smoothing)

    def get_config(self):
        return {**super().get_config(), "label_smoothing": self.label_smoothing}


def sparse_crossentropy(label_smoothing: float = 0.0):
    """The loss for integer-labelled classifiers: Keras' own, or the smoothed one above when asked for."""
    if label_smoothing:
        return SparseCategoricalCrossentropySmoothed(label_smoothing)
    return "sparse_categorical_crossentropy"
