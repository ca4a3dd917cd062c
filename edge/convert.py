"""Keras 3 model (TensorFlow backend) → ``.tflite``: float32, float16, dynamic-range or full int8.

Only TFLite built-in ops are allowed (no Select TF ops): a model that needs TensorFlow kernels
would not run on the LiteRT runtime alone, so that is reported as an unsupported op instead.
"""
from __future__ import annotations

import contextlib
import re
import tempfile
from pathlib import Path

from dlkit.errors import DlkitError
from dlkit.files import atomic_path

MODES = ("none", "float16", "dynamic", "int8")


class UnsupportedOps(DlkitError):
    """The model has ops TFLite's built-in op set cannot express."""


def representative(x_train, count: int = 300, seed: int = 0):
    """Calibration batches for full-integer quantization, drawn from the plugin's own training data."""
    import numpy as np

    if x_train is None or len(x_train) == 0:
        raise DlkitError("int8 quantization needs representative data, and the plugin's training set is empty; "
                         "export with --quantize float16 or dynamic instead")
    pick = np.random.default_rng(seed).choice(len(x_train), size=min(count, len(x_train)), replace=False)

    def batches():
        for i in np.sort(pick):
            yield [x_train[i:i + 1].astype("float32")]

    return batches


@contextlib.contextmanager
def _converter(model):
    """Keras 3's own route to TFLite (ExportArchive → SavedModel → converter), variables frozen to constants.

    ``model.export(format="litert")`` takes the same route but keeps resource variables and allows
    Select TF ops; both would make a file the LiteRT runtime alone may not run, or not quantize.
    """
    import functools

    import keras
    import tensorflow as tf

    with tempfile.TemporaryDirectory(prefix="dlkit-savedmodel-") as folder:
        archive = keras.export.ExportArchive()
        archive.track(model)
        spec = [tf.TensorSpec([None, *inp.shape[1:]], "float32") for inp in model.inputs]
        archive.add_endpoint("serve", functools.partial(model.__call__, training=False),
                             input_signature=spec if len(spec) > 1 else spec[:1])
        archive.write_out(folder, verbose=False)
        yield tf.lite.TFLiteConverter.from_saved_model(folder)


def to_tflite(model, mode: str, x_train=None) -> bytes:
    """Convert ``model`` with post-training quantization ``mode`` (one of MODES)."""
    import tensorflow as tf

    if mode not in MODES:
        raise DlkitError(f"unknown quantize mode '{mode}'; choose one of {', '.join(MODES)}")
    with _converter(model) as converter:
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
        if mode == "float16":
            converter.optimizations = [tf.lite.Optimize.DEFAULT]
            converter.target_spec.supported_types = [tf.float16]
        elif mode == "dynamic":
            converter.optimizations = [tf.lite.Optimize.DEFAULT]
        elif mode == "int8":
            converter.optimizations = [tf.lite.Optimize.DEFAULT]
            converter.representative_dataset = representative(x_train)
            # every op in int8, or conversion fails: a silent float fallback would not be "full integer"
            converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        return convert(converter)


def convert(converter) -> bytes:
    """Run a converter; an op outside the built-in set becomes UnsupportedOps with the op names."""
    try:
        return converter.convert()
    except Exception as exc:
        text = str(exc)
        ops = sorted(set(re.findall(r"\b(?:tf|tfl)\.([A-Z]\w+)", text)))
        if "not supported" in text or "Select TF" in text or "neither a custom op nor a flex op" in text:
            names = ", ".join(ops) or "see --debug"
            raise UnsupportedOps(f"the model has ops TFLite cannot convert with its built-in op set: {names} "
                                 f"(LiteRT alone cannot run them; change those layers)") from exc
        first = text.strip().splitlines()[-1] if text.strip() else type(exc).__name__
        raise DlkitError(f"TFLite conversion failed: {first[:300]}") from exc


def write(data: bytes, path: Path) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return path
