"""Measuring a ``.tflite`` file with the LiteRT interpreter: accuracy, size, sparsity, latency.

This module needs only NumPy and ``ai-edge-litert`` — no TensorFlow, no Keras — so it is also what
proves an export runs on a device-like Python (see tests/test_edge.py's LiteRT-only venv)::

    python -m dlkit.edge.verify model.tflite test.npz     # prints accuracy and latency as JSON
"""
from __future__ import annotations

import contextlib
import gzip
import json
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np


def interpreter(path: str | Path, threads: int = 1, xnnpack: bool = True):
    """A LiteRT interpreter. XNNPACK (the default CPU delegate) runs float, fp16 and int8 kernels.

    ``experimental_default_delegate_latest_features`` lets XNNPACK take the quantized ops too; without
    it, an int8 model runs on the slower built-in reference-style int8 kernels (see edge/README.md).
    """
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    kwargs = {"experimental_default_delegate_latest_features": True} if xnnpack else \
        {"experimental_op_resolver_type": OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES}
    with _quiet_stderr():  # XNNPACK's "Created delegate" / deprecated-flag chatter is not an error
        return Interpreter(model_path=str(path), num_threads=threads, **kwargs)


@contextlib.contextmanager
def _quiet_stderr():
    try:
        saved = os.dup(2)
    except OSError:  # no real stderr (some notebooks): nothing to silence
        yield
        return
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def _to_input(x: np.ndarray, detail: dict) -> np.ndarray:
    if detail["dtype"] in (np.int8, np.uint8):  # a model with integer input: quantize the images
        scale, zero = detail["quantization"]
        info = np.iinfo(detail["dtype"])
        return np.clip(np.round(x / scale + zero), info.min, info.max).astype(detail["dtype"])
    return x.astype(detail["dtype"])


def _from_output(y: np.ndarray, detail: dict) -> np.ndarray:
    if detail["dtype"] in (np.int8, np.uint8):
        scale, zero = detail["quantization"]
        return (y.astype(np.float32) - zero) * scale
    return y.astype(np.float32)


def predict(path: str | Path, x: np.ndarray, batch: int = 100, threads: int = 2) -> np.ndarray:
    """Outputs for all of ``x`` (batched: the input is resized to ``batch``; the last batch is padded).

    A file converted with a fixed batch (a recurrent model's loop needs one) is run at that batch.
    """
    interp = interpreter(path, threads=threads)
    inp = interp.get_input_details()[0]
    fixed = int(inp["shape_signature"][0])
    batch = fixed if fixed > 0 else batch
    interp.resize_tensor_input(inp["index"], [batch, *x.shape[1:]])
    interp.allocate_tensors()
    inp, out = interp.get_input_details()[0], interp.get_output_details()[0]
    outputs = []
    for start in range(0, len(x), batch):
        chunk = x[start:start + batch]
        n = len(chunk)
        if n < batch:
            chunk = np.concatenate([chunk, np.zeros((batch - n, *x.shape[1:]), x.dtype)])
        interp.set_tensor(inp["index"], _to_input(chunk, inp))
        interp.invoke()
        outputs.append(_from_output(interp.get_tensor(out["index"]), out)[:n])
    return np.concatenate(outputs)


def accuracy(path: str | Path, x: np.ndarray, y: np.ndarray, batch: int = 100) -> float:
    return float(np.mean(np.argmax(predict(path, x, batch), axis=-1) == y))


def latency_ms(path: str | Path, sample: np.ndarray, runs: int = 200, warmup: int = 20,
               xnnpack: bool = True) -> float:
    """Median wall time of one invoke: batch 1, one thread (how a phone's small core would run it)."""
    interp = interpreter(path, threads=1, xnnpack=xnnpack)
    interp.allocate_tensors()
    inp = interp.get_input_details()[0]
    interp.set_tensor(inp["index"], _to_input(sample[None], inp))
    for _ in range(warmup):
        interp.invoke()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        interp.invoke()
        times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times)


def gzip_size(path: str | Path) -> int:
    return len(gzip.compress(Path(path).read_bytes(), compresslevel=9))


def weight_sparsity(path: str | Path) -> float:
    """Fraction of exact zeros among the constant weight tensors (≥ 2-D: kernels, not biases)."""
    from ai_edge_litert import schema_py_generated as schema

    model = schema.ModelT.InitFromPackedBuf(Path(path).read_bytes(), 0)
    zeros = total = 0
    dtypes = {schema.TensorType.FLOAT32: np.float32, schema.TensorType.FLOAT16: np.float16,
              schema.TensorType.INT8: np.int8}
    for graph in model.subgraphs:
        for tensor in graph.tensors:
            buffer = model.buffers[tensor.buffer]
            if buffer.data is None or tensor.type not in dtypes or tensor.shape is None or len(tensor.shape) < 2:
                continue
            values = np.frombuffer(bytes(buffer.data), dtype=dtypes[tensor.type])
            zeros += int(np.count_nonzero(values == 0))
            total += values.size
    return zeros / total if total else 0.0


def main(argv: list[str]) -> int:
    """``python -m dlkit.edge.verify MODEL.tflite TEST.npz`` (arrays x, y) → JSON on stdout."""
    if len(argv) != 2:
        print("usage: python -m dlkit.edge.verify MODEL.tflite TEST.npz", file=sys.stderr)
        return 2
    path, data = argv
    arrays = np.load(data)
    x, y = arrays["x"], arrays["y"]  # cast to the file's input type when fed (token ids stay integers)
    print(json.dumps({"accuracy": accuracy(path, x, y), "latency_ms": latency_ms(path, x[0], runs=20, warmup=2),
                      "size": Path(path).stat().st_size}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
