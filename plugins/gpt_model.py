"""GPT: a decoder-only Transformer language model, and its sampler with a key/value cache.

Radford, Narasimhan, Salimans & Sutskever, "Improving Language Understanding by Generative
Pre-Training" (OpenAI, 2018): a stack of Transformer decoder blocks (Vaswani et al., "Attention Is
All You Need", NeurIPS 2017) with masked self-attention, trained to predict the next token. As in
GPT-2 (Radford et al., 2019) and nanoGPT, the layer norms come before each sub-layer (pre-norm) and
once more before the head, positions are learned embeddings, and the weights start from N(0, 0.02)
with the residual projections scaled down by 1/sqrt(2 * depth).

The network is a functional Keras model (token ids (B, T) → logits (B, T, vocab)), so it saves,
reloads on any backend and passes dlkit's contract test like any other. Decoding calls the same
layers one piece at a time: ``GPTBlock.decode`` appends the new positions' keys and values to a
fixed-size cache and attends over it, so each new character costs one position's work instead of
the whole window's.

Only ``keras.ops``: the same file runs on TensorFlow, JAX and PyTorch.
"""
from __future__ import annotations

import math
import time
import weakref
from typing import Callable

import keras
import numpy as np
from keras import layers, ops


def normal(std: float = 0.02) -> keras.initializers.Initializer:
    return keras.initializers.RandomNormal(stddev=std)


@keras.saving.register_keras_serializable(package="dlkit")
class GPTEmbedding(layers.Layer):
    """Token embedding plus a learned embedding of each position: (B, T) ids → (B, T, C)."""

    def __init__(self, vocab_size: int, context: int, width: int, **kwargs):
        super().__init__(**kwargs)
        # === Config ===
        self.vocab_size, self.context, self.width = vocab_size, context, width
        # === Layers ===
        self.tokens = layers.Embedding(vocab_size, width, embeddings_initializer=normal(), name="tokens")

    def build(self, input_shape):
        self.tokens.build(input_shape)
        self.positions = self.add_weight(shape=(self.context, self.width), initializer=normal(), name="positions")

    def call(self, token_ids, start: int = 0):                                          # (B, T)
        length = ops.shape(token_ids)[1]
        positions = ops.slice(ops.convert_to_tensor(self.positions), (start, 0), (length, self.width))         # (T, C)
        return self.tokens(token_ids) + positions[None]                                 # (B, T, C)

    def compute_output_shape(self, input_shape):
        return (*input_shape, self.width)

    def get_config(self):
        return {**super().get_config(), "vocab_size": self.vocab_size, "context": self.context,
                "width": self.width}


@keras.saving.register_keras_serializable(package="dlkit")
class CausalSelfAttention(layers.Layer):
    """Multi-head self-attention in which position t attends to positions ≤ t only.

    ``ops.dot_product_attention`` is each backend's fused kernel where it has one (PyTorch's
    scaled_dot_product_attention, jax.nn.dot_product_attention); it takes no dropout of the
    attention weights, so dropout is applied to this layer's output (nanoGPT's residual dropout).
    """

    def __init__(self, heads: int, width: int, depth: int = 1, dropout: float = 0.0, **kwargs):
        super().__init__(**kwargs)
        if width % heads:
            raise ValueError(f"width {width} is not a multiple of heads {heads}")
        # === Config ===
        self.heads, self.width, self.depth, self.dropout = heads, width, depth, dropout
        self.head_size = width // heads
        # === Layers ===
        self.qkv = layers.Dense(3 * width, kernel_initializer=normal(), name="qkv")
        self.out = layers.Dense(width, kernel_initializer=normal(0.02 / math.sqrt(2 * depth)), name="out")
        self.drop = layers.Dropout(dropout)

    def build(self, input_shape):
        self.qkv.build(input_shape)
        self.out.build(input_shape)

    def project(self, x):                                                               # (B, T, C)
        q, k, v = ops.split(self.qkv(x), 3, axis=-1)                                    # 3 × (B, T, C)
        heads = ops.shape(x)[:-1] + (self.heads, self.head_size)
        return ops.reshape(q, heads), ops.reshape(k, heads), ops.reshape(v, heads)      # 3 × (B, T, nh, hs)

    def merge(self, y, training=False):                                                # (B, T, nh, hs)
        y = ops.reshape(y, ops.shape(y)[:-2] + (self.width,))                           # (B, T, C)
        return self.drop(self.out(y), training=training)

    def call(self, x, training=False):
        q, k, v = self.project(x)
        return self.merge(ops.dot_product_attention(q, k, v, is_causal=True), training)

    def decode(self, x, cache, start: int):
        """Attention of the new positions ``start …`` (x: (B, t, C)) over themselves and the cache.

        ``cache`` is ``(keys, values)``, each (B, context, nh, hs); the new keys and values are
        written at ``start`` and the updated cache is returned with the output.
        """
        q, k, v = self.project(x)                                                       # (B, t, nh, hs)
        keys = ops.slice_update(cache[0], (0, start, 0, 0), k)                          # (B, ctx, nh, hs)
        values = ops.slice_update(cache[1], (0, start, 0, 0), v)
        context, length = ops.shape(keys)[1], ops.shape(x)[1]
        visible = ops.arange(context)[None, :] <= (start + ops.arange(length))[:, None]  # (t, ctx)
        y = ops.dot_product_attention(q, keys, values, mask=visible[None, None])
        return self.merge(y), (keys, values)

    def get_config(self):
        return {**super().get_config(), "heads": self.heads, "width": self.width, "depth": self.depth,
                "dropout": self.dropout}


@keras.saving.register_keras_serializable(package="dlkit")
class GPTBlock(layers.Layer):
    """Pre-norm Transformer decoder block: x + attention(norm(x)), then x + MLP(norm(x))."""

    def __init__(self, heads: int, width: int, depth: int = 1, dropout: float = 0.0, **kwargs):
        super().__init__(**kwargs)
        # === Config ===
        self.heads, self.width, self.depth, self.dropout = heads, width, depth, dropout
        # === Layers ===
        self.norm1 = layers.LayerNormalization(epsilon=1e-5, name="norm1")
        self.attention = CausalSelfAttention(heads, width, depth, dropout, name="attention")
        self.norm2 = layers.LayerNormalization(epsilon=1e-5, name="norm2")
        self.expand = layers.Dense(4 * width, activation="gelu", kernel_initializer=normal(), name="expand")
        self.contract = layers.Dense(width, kernel_initializer=normal(0.02 / math.sqrt(2 * depth)), name="contract")
        self.drop = layers.Dropout(dropout)

    def build(self, input_shape):  # build the sub-layers, so a reloaded block has its variables
        self.norm1.build(input_shape)
        self.attention.build(input_shape)
        self.norm2.build(input_shape)
        self.expand.build(input_shape)
        self.contract.build((*input_shape[:-1], 4 * self.width))

    def mlp(self, x, training=False):
        return self.drop(self.contract(self.expand(x)), training=training)

    def call(self, x, training=False):                                                 # (B, T, C)
        x = x + self.attention(self.norm1(x), training=training)
        return x + self.mlp(self.norm2(x), training=training)

    def decode(self, x, cache, start: int):
        """``call`` for new positions ``start …`` given the cached keys and values of the earlier ones."""
        attended, cache = self.attention.decode(self.norm1(x), cache, start)
        x = x + attended
        return x + self.mlp(self.norm2(x)), cache

    def get_config(self):
        return {**super().get_config(), "heads": self.heads, "width": self.width, "depth": self.depth,
                "dropout": self.dropout}


def gpt(vocab_size: int, context: int, *, depth: int, heads: int, width: int, dropout: float = 0.0) -> keras.Model:
    """The network: token ids (B, T ≤ context) → next-token logits (B, T, vocab_size).

    Example::

        model = gpt(65, 64, depth=2, heads=2, width=32)
        model(np.zeros((1, 10), "int32")).shape   # (1, 10, 65)
    """
    tokens = keras.Input((None,), dtype="int32", name="tokens")
    x = GPTEmbedding(vocab_size, context, width, name="embedding")(tokens)             # (B, T, C)
    x = layers.Dropout(dropout, name="embedding_dropout")(x)
    for i in range(depth):
        x = GPTBlock(heads, width, depth, dropout, name=f"block_{i}")(x)               # (B, T, C)
    x = layers.LayerNormalization(epsilon=1e-5, name="final_norm")(x)
    logits = layers.Dense(vocab_size, use_bias=False, kernel_initializer=normal(), name="head")(x)  # (B, T, V)
    return keras.Model(tokens, logits, name="gpt")


# -- sampling ----------------------------------------------------------------------------------------
class CachedDecoder(keras.Model):
    """The trained layers run on new positions with the key/value cache: (ids, start, caches) → (logits, caches).

    A model of its own only so that ``predict_on_batch`` compiles it (``jax.jit``, ``tf.function``;
    PyTorch runs it eagerly): it is never saved, and shares its variables with the trained model.
    ``ids`` (1, t) are the positions ``start …``; ``caches`` (depth, 2, 1, context, nh, hs) the keys and
    values of every block.
    """

    def __init__(self, model: keras.Model):
        super().__init__(name="gpt_decoder")
        self.embedding = model.get_layer("embedding")
        self.blocks = [layer for layer in model.layers if isinstance(layer, GPTBlock)]
        self.final_norm, self.head = model.get_layer("final_norm"), model.get_layer("head")

    def call(self, inputs):
        ids, start, caches = inputs                                                     # (1, t), (1,), (L, 2, ...)
        start = start[0]
        x = self.embedding(ids, start=start)                                            # (1, t, C)
        updated = []
        for i, block in enumerate(self.blocks):
            x, (keys, values) = block.decode(x, (caches[i, 0], caches[i, 1]), start)
            updated.append(ops.stack([keys, values]))
        return self.head(self.final_norm(x)), ops.stack(updated)                        # (1, t, V), caches


_decoders: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


class Sampler:
    """Next-character logits for a growing text, from a (reloaded) ``gpt`` model.

    Both ways see the same window of text, so they give the same logits (up to float rounding):

    * ``cache=True``: each new character runs through the blocks alone, attending over the keys and
      values cached for the window (``CachedDecoder``);
    * ``cache=False``: the whole window runs through the model again for every character.

    The window is at most ``context`` characters, the positions the model has embeddings for. When
    it is full, it restarts from the last three quarters of the text (recomputed once, into a fresh
    cache), so that with a cache only one character in ``context // 4`` costs a whole window. Every
    call has one of two shapes (a window padded to ``context``, or one character), so each is
    compiled once: causality makes the padding after the text harmless, and the cache slots it
    fills are overwritten before any query can see them.
    """

    def __init__(self, model: keras.Model, cache: bool = True):
        self.model, self.cache = model, cache
        self.context = model.get_layer("embedding").context
        self.keep = self.context - self.context // 4
        if cache:
            self.decoder = _decoders.get(model)
            if self.decoder is None:  # one per model: its compiled steps serve every later sample
                self.decoder = _decoders[model] = CachedDecoder(model)
            attention = self.decoder.blocks[0].attention
            self.cache_shape = (len(self.decoder.blocks), 2, 1, self.context, attention.heads, attention.head_size)

    def logits(self, ids: list[int]) -> np.ndarray:
        """Logits of the character after ``ids`` (a prompt: the window restarts on it)."""
        self.window = list(ids[-self.context:])
        padded = np.zeros((1, self.context), "int32")
        padded[0, :len(self.window)] = self.window
        if not self.cache:
            return self.model.predict_on_batch(padded)[0, len(self.window) - 1]
        empty = np.zeros(self.cache_shape, "float32")
        logits, self.caches = self.decoder.predict_on_batch([padded, np.zeros(1, "int32"), empty])
        return logits[0, len(self.window) - 1]

    def append(self, token: int) -> np.ndarray:
        """Add ``token`` to the text; the logits of the character after it."""
        self.window.append(token)
        if len(self.window) > self.context or not self.cache:
            return self.logits(self.window[-self.keep:] if len(self.window) > self.context else self.window)
        start = np.asarray([len(self.window) - 1], "int32")
        logits, self.caches = self.decoder.predict_on_batch([np.asarray([[token]], "int32"), start, self.caches])
        return logits[0, -1]


def sample(model: keras.Model, prompt: list[int], tokens: int, *, temperature: float = 1.0,
           top_k: int | None = None, seed: int = 0, cache: bool = True,
           on_token: Callable[[int], None] | None = None) -> tuple[list[int], dict[str, float]]:
    """``tokens`` new ids after ``prompt``, and how long they took.

    Each id is drawn from softmax(logits / temperature) restricted to the ``top_k`` likeliest
    (``top_k=1``: greedy decoding, no randomness), with NumPy's generator seeded by ``seed``, so the
    draw is the same on every backend. ``on_token`` sees each id as soon as it is chosen. The
    timings: ``compile_s`` (both shapes compiled before the clock starts), then ``seconds`` for the
    prompt and every new id, and ``tokens_per_s``.
    """
    rng = np.random.default_rng(seed)
    sampler = Sampler(model, cache=cache)
    started = time.perf_counter()
    sampler.logits([0])           # compile the window's shape, then the one-character step
    sampler.append(0)
    compiled = time.perf_counter()
    out: list[int] = []
    logits = sampler.logits(prompt)
    for n in range(tokens):
        token = choose(logits, temperature, top_k, rng)
        out.append(token)
        if on_token is not None:
            on_token(token)
        if n + 1 < tokens:
            logits = sampler.append(token)
    seconds = time.perf_counter() - compiled
    return out, {"compile_s": round(compiled - started, 3), "seconds": round(seconds, 3),
                 "tokens_per_s": round(tokens / seconds, 1)}


def choose(logits: np.ndarray, temperature: float, top_k: int | None, rng: np.random.Generator) -> int:
    logits = np.asarray(logits, "float64")
    if top_k == 1:
        return int(np.argmax(logits))
    logits = logits / temperature
    if top_k is not None and top_k < len(logits):
        logits[logits < np.sort(logits)[-top_k]] = -np.inf
    p = np.exp(logits - logits.max())
    return int(rng.choice(len(p), p=p / p.sum()))
