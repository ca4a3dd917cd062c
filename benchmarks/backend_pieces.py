"""Where JAX loses to TensorFlow in a convolutional step: cnn's two costliest pieces timed alone.

    python benchmarks/backend_pieces.py [--repeats 10]

The pieces, at cnn's shapes and batch 128, forward and backward (input and kernel gradients):
the second convolution (26×26×32 → 24×24×64, 3×3, valid) and the 2×2 max pooling of its output. Each
runs on TensorFlow's default CPU path (oneDNN kernels, what Keras uses there: ``jit_compile="auto"``
is off on CPU), on TensorFlow through XLA (``jit_compile=True``), on JAX (XLA's CPU backend: Keras'
only path there), and, for the pooling, on JAX as a reshape and a max (``dlkit.fast_kernels``). The
convolution row is the part of JAX's gap that dlkit cannot close: the same convolution through XLA,
from either framework, against oneDNN. Milliseconds per call, median of ``--repeats`` calls after two
warm-up calls; appended to benchmarks/out/backend_pieces.jsonl with the load average.
"""
from __future__ import annotations

import argparse
import os
import statistics
import time

import common

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def median_ms(fn, args, repeats: int, ready=lambda out: out) -> float:
    for _ in range(2):
        ready(fn(*args))
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        ready(fn(*args))
        times.append(1000 * (time.perf_counter() - started))
    return round(statistics.median(times), 1)


def tensorflow_pieces(x, w, repeats: int) -> dict:
    import tensorflow as tf

    def conv(x, w):
        with tf.GradientTape() as tape:
            tape.watch([x, w])
            y = tf.reduce_sum(tf.nn.conv2d(x, w, 1, "VALID"))
        return tape.gradient(y, [x, w])

    def pool(y):
        with tf.GradientTape() as tape:
            tape.watch(y)
            z = tf.reduce_sum(tf.nn.max_pool2d(y, 2, 2, "VALID"))
        return tape.gradient(z, y)

    x, w = tf.constant(x), tf.constant(w)
    y = tf.nn.conv2d(x, w, 1, "VALID")
    found = {}
    for label, xla in (("tensorflow", False), ("tensorflow + XLA", True)):
        found[f"conv2, {label}"] = median_ms(tf.function(conv, jit_compile=xla), (x, w), repeats, lambda o: o[0].numpy())
        found[f"max pool, {label}"] = median_ms(tf.function(pool, jit_compile=xla), (y,), repeats, lambda o: o.numpy())
    return found


def jax_pieces(x, w, repeats: int) -> dict:
    import jax
    import jax.numpy as jnp

    def conv(x, w):
        return jax.lax.conv_general_dilated(x, w, (1, 1), "VALID", dimension_numbers=("NHWC", "HWIO", "NHWC"))

    def window_pool(y):  # what Keras' MaxPooling2D lowers to
        return jax.lax.reduce_window(y, -jnp.inf, jax.lax.max, (1, 2, 2, 1), (1, 2, 2, 1), "VALID")

    def reshape_pool(y):
        n, h, w_, c = y.shape
        return y.reshape(n, h // 2, 2, w_ // 2, 2, c).max(axis=(2, 4))

    y = conv(jnp.asarray(x), jnp.asarray(w))
    ready = jax.block_until_ready
    return {
        "conv2, jax": median_ms(jax.jit(jax.grad(lambda x, w: conv(x, w).sum(), argnums=(0, 1))),
                                (jnp.asarray(x), jnp.asarray(w)), repeats, ready),
        "max pool, jax": median_ms(jax.jit(jax.grad(lambda y: window_pool(y).sum())), (y,), repeats, ready),
        "max pool, jax as reshape + max": median_ms(jax.jit(jax.grad(lambda y: reshape_pool(y).sum())), (y,),
                                                    repeats, ready),
    }


def main() -> None:
    import numpy as np

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=10)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    x = rng.uniform(size=(128, 26, 26, 32)).astype("float32")
    w = (rng.normal(size=(3, 3, 32, 64)) * 0.05).astype("float32")
    before = common.load_average()
    found = {**tensorflow_pieces(x, w, args.repeats), **jax_pieces(x, w, args.repeats)}
    row = {"what": "pieces", "command": f"python benchmarks/backend_pieces.py --repeats {args.repeats}",
           "ms": found, "load_before": before, "load_after": common.load_average()}
    common.record("backend_pieces", row)
    print("| piece, forward + backward, batch 128 | ms per call |\n|---|---|")
    for name, ms in found.items():
        print(f"| {name} | {ms} |")
    print(f"\nload average {before} → {row['load_after']}")


if __name__ == "__main__":
    main()
