"""Quantization-aware training with tensorflow-model-optimization, in a process of its own.

Importing tfmot switches ``tf.keras`` to legacy Keras (tf_keras) for the whole process (tfmot issue
#1119), so this runs as ``python -m dlkit.edge.qat`` from the export: the Keras 3 model is loaded,
mirrored into tf_keras (edge/mirror.py), annotated, fine-tuned with fake-quantization, and
converted to a full-integer ``.tflite``. With ``--preserve-sparsity`` a pruned model's zeros are
re-applied after every step, so it stays pruned.

Jacob et al., "Quantization and Training of Neural Networks for Efficient Integer-Arithmetic-Only
Inference", CVPR 2018.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path


def keep_zeros(qat, tf_keras):
    """A callback re-zeroing each pruned kernel after every step, so QAT keeps the sparsity.

    tfmot's own pruning-preserving scheme (Default8BitPrunePreserveQuantizeScheme) was tried first and
    measured to keep only 17% zeros of a 50%-pruned cnn once its batch norms were folded; a mask taken
    from the kernels' zeros before QAT, re-applied like edge/prune.py's, keeps them exactly.
    """
    import numpy as np

    masked = []
    for variable in qat.weights:  # the wrappers swap layer.kernel for its fake-quantized tensor: find the variable
        name = variable.name.split("/")[-1]
        if name.startswith("kernel") and np.mean(variable.numpy() == 0) > 0.1:
            masked.append((variable, (variable.numpy() != 0).astype(variable.numpy().dtype)))

    class KeepZeros(tf_keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            for kernel, mask in masked:
                kernel.assign(kernel * mask)

    return KeepZeros()


def run(args) -> dict:
    os.environ["KERAS_BACKEND"] = "tensorflow"
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import keras
    import numpy as np

    from dlkit.edge import convert, mirror
    from dlkit.optimizers import adam_cosine

    # compile=False: QAT compiles its own loss; the run's (e.g. a plugin's own class) is not needed here
    model = keras.saving.load_model(args.model, safe_mode=True, compile=False)
    arrays = np.load(args.data)
    x, y = arrays["x_train"], arrays["y_train"]

    import tensorflow as tf
    import tensorflow_model_optimization as tfmot
    import tf_keras

    twin = mirror.build(model, tf_keras, fold_batch_norm=True)
    diff = mirror.check(model, twin, x[:16])
    for layer in twin.layers:  # a batch norm left unfolded runs in inference mode, as in edge/prune.py
        if isinstance(layer, tf_keras.layers.BatchNormalization):
            layer.trainable = False
    quantize = tfmot.quantization.keras
    registry = quantize.default_8bit.Default8BitQuantizeRegistry()

    def annotate(layer):  # layers tfmot has no recipe for (Resizing, Rescaling…) stay float in training
        return quantize.quantize_annotate_layer(layer) if registry.supports(layer) else layer

    annotated = tf_keras.models.clone_model(twin, clone_function=annotate)
    annotated.set_weights(twin.get_weights())
    with quantize.quantize_scope():
        qat = quantize.quantize_apply(annotated)
    callbacks = [keep_zeros(qat, tf_keras)] if args.preserve_sparsity else []
    qat.compile(optimizer=adam_cosine(args.learning_rate, args.epochs, len(x), args.batch_size, keras=tf_keras),
                loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    print(f"QAT: fine-tuning {args.epochs} epoch(s) on {len(x)} examples (mirror max diff {diff:.1e})", flush=True)
    qat.fit(x, y, batch_size=args.batch_size, epochs=args.epochs, verbose=2, callbacks=callbacks)

    converter = tf.lite.TFLiteConverter.from_keras_model(qat)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = convert.representative(x)  # ranges for the layers left float
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    convert.write(convert.convert(converter), Path(args.out))
    return {"mirror_max_diff": diff, "epochs": args.epochs, "examples": int(len(x))}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m dlkit.edge.qat", description=__doc__.splitlines()[0])
    parser.add_argument("model")
    parser.add_argument("data", help=".npz with x_train, y_train")
    parser.add_argument("out")
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--learning-rate", type=float, default=1e-4)
    parser.add_argument("--preserve-sparsity", action="store_true")
    args = parser.parse_args(argv)
    from dlkit.errors import DlkitError

    try:
        summary = run(args)
    except DlkitError as exc:
        print(f"QAT-ERROR: {exc}", flush=True)
        return 1
    print("QAT-RESULT: " + json.dumps(summary), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
