"""A ``tf_keras`` mirror of a Keras 3 model: same layers, same names, same weights.

tensorflow-model-optimization's QAT (``quantize_model``/``quantize_apply``) accepts only ``tf_keras``
models. Rather than keep a second builder per plugin, the mirror is rebuilt from the Keras 3
model's own graph: each layer's class is looked up in ``tf_keras.layers`` and made from its config
(keys tf_keras does not know are dropped; initializers, regularizers and constraints too, since
the weights are copied), wired exactly as the Keras 3 functional graph is. The mirror is then
checked numerically against the original — a mismatch is an error, never a silent difference.
"""
from __future__ import annotations

import inspect

from dlkit.errors import DlkitError

DROPPED = ("initializer", "regularizer", "constraint")


def _layer_config(cls, config: dict) -> dict:
    accepted = set(inspect.signature(cls.__init__).parameters) | {"name", "trainable"}
    clean = {}
    for key, value in config.items():
        if key not in accepted or any(key.endswith(word) for word in DROPPED) or key == "dtype":
            continue
        clean[key] = value
    return clean


def _make_layer(tf_keras, entry: dict):
    cls = getattr(tf_keras.layers, entry["class_name"], None)
    if cls is None or entry.get("registered_name") not in (None, entry["class_name"]):
        raise DlkitError(f"QAT: layer '{entry['config'].get('name')}' ({entry['class_name']}) has no tf_keras "
                         f"equivalent, so tfmot cannot quantize this model; use post-training --quantize int8")
    return cls(**_layer_config(cls, entry["config"]))


def _tensors(value, produced: dict):
    """Map the Keras 3 config's nested args (``__keras_tensor__`` dicts, lists) to mirror tensors."""
    if isinstance(value, dict) and value.get("class_name") == "__keras_tensor__":
        name, node, index = value["config"]["keras_history"]
        return produced[(name, node, index)]
    if isinstance(value, (list, tuple)):
        return [_tensors(v, produced) for v in value]
    return value


def _nested(spec: list) -> list:
    """Keras 3 writes one input/output as ["name", 0, 0] and several as a list of those."""
    return [spec] if spec and isinstance(spec[0], str) else spec


def build(model, tf_keras):
    """The tf_keras model with ``model``'s graph and weights."""
    config = model.get_config()
    if type(model).__name__ == "Sequential":
        layers = [entry for entry in config["layers"] if entry["class_name"] != "InputLayer"]
        inputs = tf_keras.Input(shape=model.inputs[0].shape[1:], name="input")
        x = inputs
        for entry in layers:
            x = _make_layer(tf_keras, entry)(x)
        mirror = tf_keras.Model(inputs, x, name=model.name)
    else:
        produced = {}
        for entry in config["layers"]:
            name = entry["config"]["name"]
            if entry["class_name"] == "InputLayer":
                shape = entry["config"]["batch_shape"][1:]
                produced[(name, 0, 0)] = tf_keras.Input(shape=shape, name=name)
                continue
            if entry["class_name"] in ("Functional", "Sequential", "Model"):
                raise DlkitError(f"QAT: nested model '{name}' is not supported by the tf_keras mirror; "
                                 f"build the model as one flat graph")
            layer = _make_layer(tf_keras, entry)
            for node_index, node in enumerate(entry["inbound_nodes"]):
                args = _tensors(node["args"], produced)
                out = layer(*args)
                for i, tensor in enumerate(out if isinstance(out, (list, tuple)) else [out]):
                    produced[(name, node_index, i)] = tensor
        outputs = [produced[tuple(o)] for o in _nested(config["output_layers"])]
        inputs = [produced[tuple(i)] for i in _nested(config["input_layers"])]
        mirror = tf_keras.Model(inputs[0] if len(inputs) == 1 else inputs,
                                outputs[0] if len(outputs) == 1 else outputs, name=model.name)
    copy_weights(model, mirror)
    return mirror


def copy_weights(source, target) -> None:
    """Layer by layer, by name (identical order of variables inside each layer in both Keras)."""
    by_name = {layer.name: layer for layer in target.layers}
    for layer in source.layers:
        weights = layer.get_weights()
        if not weights:
            continue
        if layer.name not in by_name:
            raise DlkitError(f"mirror has no layer '{layer.name}'")
        by_name[layer.name].set_weights(weights)


def check(model, mirror, x, atol: float = 1e-4) -> float:
    """Largest output difference between the Keras 3 model and its mirror on ``x``; error above ``atol``."""
    import numpy as np

    import keras

    diff = float(np.max(np.abs(keras.ops.convert_to_numpy(model(x, training=False))
                                - np.asarray(mirror(x, training=False)))))
    if not diff <= atol:
        raise DlkitError(f"QAT: the tf_keras mirror of '{model.name}' differs from the model by {diff:.2g}; "
                         f"refusing to quantize a different network")
    return diff
