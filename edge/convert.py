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
    # the model's own input type: token ids stay integers, images become float32
    dtype = "float32" if np.issubdtype(x_train.dtype, np.floating) else x_train.dtype

    def batches():
        for i in np.sort(pick):
            yield [x_train[i:i + 1].astype(dtype)]

    return batches


def static_batch(model) -> int | None:
    """The batch size the ``.tflite`` is fixed to: 1 for a model with a recurrent loop, else None (any).

    A Keras recurrent layer becomes a TFLite ``WHILE`` loop over the time steps; its per-step tensor
    list needs a fully static shape, batch included, or the converter asks for Select TF ops. Batch 1
    is also how a device runs a text model: one text at a time.
    """
    import keras

    return 1 if any(isinstance(layer, keras.layers.RNN) for layer in model._flatten_layers()) else None


@contextlib.contextmanager
def _converter(model):
    """Keras 3's own route to TFLite (ExportArchive → SavedModel → converter), variables frozen to constants.

    ``model.export(format="litert")`` takes the same route but keeps resource variables and allows
    Select TF ops; both would make a file the LiteRT runtime alone may not run, or not quantize.

    A Keras LSTM becomes a ``WHILE`` loop of built-in ops here, not TFLite's fused
    ``UNIDIRECTIONAL_SEQUENCE_LSTM`` kernel (the converter fuses only ``tf_keras`` LSTMs). The fused
    route through a ``tf_keras`` mirror was measured and rejected: on the default IMDB LSTM (400
    tokens, 64 units) its file moved class probabilities by up to 0.87 and changed 4% of 300 labels,
    and even on a small one it differed by ~1e-3, while the loop agrees with the model to 1e-6.
    """
    import functools

    import keras
    import tensorflow as tf

    with tempfile.TemporaryDirectory(prefix="dlkit-savedmodel-") as folder:
        archive = keras.export.ExportArchive()
        archive.track(model)
        # the inputs' own dtypes (int32 token ids stay int32: the device feeds ids, not floats)
        spec = [tf.TensorSpec([static_batch(model), *inp.shape[1:]], inp.dtype) for inp in model.inputs]
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


def to_tflite_isolated(model, mode: str, x_train, plugin: str) -> bytes:
    """``to_tflite`` in a child process, for the int8 calibrator: on a recurrent model's ``WHILE`` loop it
    crashes with a segmentation fault (TensorFlow 2.21), which in this process would end the whole export
    and lose the variants already verified. A crash becomes a DlkitError naming the signal instead.
    """
    import os
    import signal
    import subprocess
    import sys

    import numpy as np

    from dlkit.runs import save_model

    with tempfile.TemporaryDirectory(prefix="dlkit-convert-") as tmp:
        tmp = Path(tmp)
        save_model(model, tmp / "model.keras")
        np.save(tmp / "calibration.npy", x_train[:_CALIBRATION_POOL])
        command = [sys.executable, "-m", "dlkit.edge.convert", plugin, str(tmp / "model.keras"), mode,
                   str(tmp / "calibration.npy"), str(tmp / "model.tflite")]
        env = {**os.environ, "KERAS_BACKEND": "tensorflow", "TF_CPP_MIN_LOG_LEVEL": "3"}
        done = subprocess.run(command, capture_output=True, text=True, env=env)
        if done.returncode == 0:
            return (tmp / "model.tflite").read_bytes()
        error = next((line[len(_ERROR):] for line in done.stdout.splitlines() if line.startswith(_ERROR)), None)
        if error is None and done.returncode < 0:
            name = signal.Signals(-done.returncode).name
            error = f"the TFLite converter crashed ({name}) while quantizing to {mode}"
        elif error is None:
            tail = [line for line in done.stderr.strip().splitlines() if line.strip()]
            error = tail[-1] if tail else f"exit status {done.returncode}"
        if error.startswith(_UNSUPPORTED):
            raise UnsupportedOps(error[len(_UNSUPPORTED):])
        raise DlkitError(error)


_CALIBRATION_POOL = 3000  # training examples the child draws its representative batches from
_ERROR, _UNSUPPORTED = "CONVERT-ERROR: ", "unsupported: "


def main(argv: list[str]) -> int:
    """``python -m dlkit.edge.convert PLUGIN MODEL.keras MODE CALIBRATION.npy OUT.tflite`` (see to_tflite_isolated)."""
    plugin, model_path, mode, calibration, out = argv
    import keras
    import numpy as np

    from dlkit import registry

    try:
        entry = registry.get(plugin)  # importing the plugin registers its layers for loading
        custom = entry.algorithm().custom_objects() if entry.cls else {}
        model = keras.saving.load_model(model_path, custom_objects=custom, compile=False)
        write(to_tflite(model, mode, np.load(calibration, allow_pickle=False)), Path(out))
    except UnsupportedOps as exc:
        print(_ERROR + _UNSUPPORTED + str(exc))
        return 1
    except Exception as exc:  # noqa: BLE001 - reported to the parent as one line
        print(_ERROR + (str(exc).strip().splitlines() or [type(exc).__name__])[-1][:300])
        return 1
    return 0


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


if __name__ == "__main__":
    import sys

    sys.exit(main(sys.argv[1:]))
