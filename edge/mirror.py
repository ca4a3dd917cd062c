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
FOLDABLE = ("Conv2D", "DepthwiseConv2D", "Dense")


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


def _graph(model) -> list[tuple[dict, list]]:
    """(layer entry, inbound nodes) in topological order; a Sequential becomes the chain it is."""
    config = model.get_config()
    if type(model).__name__ != "Sequential":
        return [(entry, entry["inbound_nodes"]) for entry in config["layers"]]
    chain, previous = [], None
    for entry in config["layers"]:
        name = entry["config"]["name"]
        if entry["class_name"] == "InputLayer":
            previous = name
            chain.append((entry, []))
            continue
        if previous is None:  # a Sequential given its input shape by build(), not by an Input
            previous = "input"
            chain.append(({"class_name": "InputLayer", "config": {"name": previous,
                                                                  "batch_shape": [None, *model.inputs[0].shape[1:]]}}, []))
        arg = {"class_name": "__keras_tensor__", "config": {"keras_history": [previous, 0, 0]}}
        chain.append((entry, [{"args": [arg]}]))
        previous = name
    return chain


def _histories(value) -> list[tuple]:
    if isinstance(value, dict) and value.get("class_name") == "__keras_tensor__":
        return [tuple(value["config"]["keras_history"])]
    if isinstance(value, (list, tuple)):
        return [h for v in value for h in _histories(v)]
    return []


def _foldable(graph) -> dict[str, str]:
    """conv/dense layer → the batch norm right after it, when the BN is its only consumer and it has no activation."""
    uses: dict[str, int] = {}
    kinds = {entry["config"]["name"]: entry for entry, _ in graph}
    for _, nodes in graph:
        for node in nodes:
            for history in _histories(node["args"]):
                uses[history[0]] = uses.get(history[0], 0) + 1
    pairs = {}
    for entry, nodes in graph:
        if entry["class_name"] != "BatchNormalization" or len(nodes) != 1:
            continue
        source = _histories(nodes[0]["args"])[0][0]
        producer = kinds[source]
        if (producer["class_name"] in FOLDABLE and uses.get(source) == 1
                and producer["config"].get("activation", "linear") == "linear"):
            pairs[source] = entry["config"]["name"]
    return pairs


def build(model, tf_keras, fold_batch_norm: bool = False):
    """The tf_keras model with ``model``'s graph and weights.

    ``fold_batch_norm``: a batch norm that directly follows a Conv2D / DepthwiseConv2D / Dense is folded
    into that layer's kernel and bias (Jacob et al. 2018, §3.2), as the int8 converter does anyway;
    tfmot's QAT then trains the kernel the device will run, and no stray MUL/ADD pairs reach the file.
    """
    graph = _graph(model)
    folds = _foldable(graph) if fold_batch_norm else {}
    folded_bn = set(folds.values())
    produced = {}
    for entry, nodes in graph:
        name = entry["config"]["name"]
        if entry["class_name"] == "InputLayer":
            produced[(name, 0, 0)] = tf_keras.Input(shape=entry["config"]["batch_shape"][1:], name=name)
            continue
        if entry["class_name"] in ("Functional", "Sequential", "Model"):
            raise DlkitError(f"QAT: nested model '{name}' is not supported by the tf_keras mirror; "
                             f"build the model as one flat graph")
        if name in folded_bn:  # its input tensor already is the folded layer's output
            produced[(name, 0, 0)] = produced[_histories(nodes[0]["args"])[0]]
            continue
        if name in folds:
            entry = {**entry, "config": {**entry["config"], "use_bias": True}}
        layer = _make_layer(tf_keras, entry)
        for node_index, node in enumerate(nodes):
            out = layer(*_tensors(node["args"], produced))
            for i, tensor in enumerate(out if isinstance(out, (list, tuple)) else [out]):
                produced[(name, node_index, i)] = tensor
    config = model.get_config()
    if type(model).__name__ == "Sequential":
        inputs, outputs = [produced[(graph[0][0]["config"]["name"], 0, 0)]], [produced[(graph[-1][0]["config"]["name"], 0, 0)]]
    else:
        outputs = [produced[tuple(o)] for o in _nested(config["output_layers"])]
        inputs = [produced[tuple(i)] for i in _nested(config["input_layers"])]
    mirror = tf_keras.Model(inputs[0] if len(inputs) == 1 else inputs,
                            outputs[0] if len(outputs) == 1 else outputs, name=model.name)
    copy_weights(model, mirror, folds)
    return mirror


def _folded(layer, bn):
    """Kernel and bias of ``layer`` with the batch norm ``bn`` (inference mode) folded in."""
    import numpy as np

    import keras

    def value(var, default):
        return keras.ops.convert_to_numpy(var) if var is not None else default

    channels = bn.moving_mean.shape[-1]
    gamma = value(getattr(bn, "gamma", None), np.ones(channels, "float32"))
    beta = value(getattr(bn, "beta", None), np.zeros(channels, "float32"))
    scale = gamma / np.sqrt(keras.ops.convert_to_numpy(bn.moving_variance) + bn.epsilon)
    weights = layer.get_weights()
    kernel = weights[0]
    bias = weights[1] if len(weights) > 1 else np.zeros(channels, "float32")
    if type(layer).__name__ == "DepthwiseConv2D":  # (kh, kw, in, multiplier): output channel = in·mult + m
        kernel = kernel * scale.reshape(kernel.shape[2], kernel.shape[3])
    else:  # Conv2D (kh, kw, in, out), Dense (in, out)
        kernel = kernel * scale
    return [kernel, beta + (bias - keras.ops.convert_to_numpy(bn.moving_mean)) * scale]


def copy_weights(source, target, folds: dict | None = None) -> None:
    """Layer by layer, by name (identical order of variables inside each layer in both Keras)."""
    folds = folds or {}
    skip = set(folds.values())
    by_name = {layer.name: layer for layer in target.layers}
    for layer in source.layers:
        weights = _folded(layer, source.get_layer(folds[layer.name])) if layer.name in folds else layer.get_weights()
        if not weights or layer.name in skip:
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
