"""An encoder-only Transformer that classifies a sequence of token ids.

Vaswani, Shazeer, Parmar, Uszkoreit, Jones, Gomez, Kaiser & Polosukhin, "Attention Is All You Need",
NeurIPS 2017: the encoder half. Each block is multi-head self-attention and a position-wise
feed-forward network, each followed by dropout, a residual connection and layer normalization
(the paper's post-norm order). For one head, with the queries, keys and values Q = XW_Q, K = XW_K,
V = XW_V of the block's input X (T × d_model) and d_k = d_model / heads:

    Attention(Q, K, V) = softmax(Q Kᵀ / √d_k + M) V

where M is 0 for a real token's key and −10⁹ for a padding key, so no position attends to padding.
The heads' outputs are concatenated and projected back to d_model. Positions are learned
embeddings added to the token embeddings (the paper found them as good as its sinusoids): without
them self-attention and the mean over positions would not see word order at all. A position counts
the text's tokens from its first one, not the slots of the padded array, so the amount of padding in
front of a review changes nothing: the model gives the same output for a review padded to 400 tokens
or to 100, and ``LengthBatches`` trains on batches cut only as wide as their longest review (most
reviews are far shorter than the longest, and attention costs the square of the width).

The classifier averages the block outputs over the real tokens (the padding mask again) and ends in
a softmax over the classes. The padding mask is Keras' own: ``TokenAndPositionEmbedding`` computes it
from the ids (id 0 is padding) and Keras hands it to every later layer's ``mask`` argument, on every
backend. Only ``keras.ops``: the same file runs on TensorFlow, JAX and PyTorch, and its layers are
registered so a saved ``model.keras`` reloads on any of them.
"""
from __future__ import annotations

import keras
import numpy as np
from keras import layers, ops

#: Added to the attention scores of padding keys: large enough that softmax gives them 0, finite so
#: that a sequence of padding only (whose every key is masked) gets uniform weights, not NaN.
MASKED = -1e9


@keras.saving.register_keras_serializable(package="dlkit_transformer")
class TokenAndPositionEmbedding(layers.Layer):
    """Token embedding plus a learned embedding of each position: (B, T) ids → (B, T, C), and the
    padding mask (B, T), True on real tokens. Ids are front-padded with 0; the first real token has
    position 0, whatever the padding before it. ``length`` is the most positions a text can have."""

    def __init__(self, vocab_size: int, length: int, width: int, **kwargs):
        super().__init__(**kwargs)
        # === Config ===
        self.vocab_size, self.length, self.width = vocab_size, length, width
        # === Layers ===
        self.tokens = layers.Embedding(vocab_size, width, name="tokens")
        self.positions = layers.Embedding(length, width, name="positions")
        self.supports_masking = True

    def build(self, input_shape):
        self.tokens.build(input_shape)
        self.positions.build((self.length,))

    def call(self, token_ids):                                                          # (B, T)
        real = ops.cast(ops.not_equal(token_ids, 0), "int32")
        positions = ops.maximum(ops.cumsum(real, axis=1) - 1, 0)                        # (B, T): 0 at the first token
        return self.tokens(token_ids) + self.positions(positions)                       # (B, T, C)

    def compute_mask(self, token_ids, mask=None):
        return ops.not_equal(token_ids, 0)                                              # (B, T)

    def compute_output_shape(self, input_shape):
        return (*input_shape, self.width)

    def get_config(self):
        return {**super().get_config(), "vocab_size": self.vocab_size, "length": self.length, "width": self.width}


@keras.saving.register_keras_serializable(package="dlkit_transformer")
class SelfAttention(layers.Layer):
    """Multi-head self-attention over the real tokens: softmax(Q Kᵀ / √d_k + M) V for each head.

    Written out rather than ``keras.layers.MultiHeadAttention`` so the equation above is the code,
    and the weights come back for the attention plot (``return_weights=True``). No dropout on the
    weights (the paper drops only sub-layer outputs and embeddings): on a CPU, drawing a random
    mask for every (head, query, key) triple cost more than the rest of the attention.
    """

    def __init__(self, heads: int, width: int, **kwargs):
        super().__init__(**kwargs)
        if width % heads:
            raise ValueError(f"width {width} is not a multiple of heads {heads}")
        # === Config ===
        self.heads, self.width = heads, width
        self.head_size = width // heads
        # === Layers ===
        self.qkv = layers.Dense(3 * width, name="qkv")
        self.out = layers.Dense(width, name="out")
        self.supports_masking = True

    def build(self, input_shape):
        self.qkv.build(input_shape)
        self.out.build(input_shape)

    def call(self, x, mask=None, return_weights=False):                                # (B, T, C)
        batch, length = ops.shape(x)[0], ops.shape(x)[1]
        q, k, v = ops.split(self.qkv(x), 3, axis=-1)                                    # 3 × (B, T, C)
        q, k, v = (ops.reshape(t, (batch, length, self.heads, self.head_size)) for t in (q, k, v))  # (B, T, nh, hs)
        scores = ops.einsum("bqhd,bkhd->bhqk", q, k) / np.sqrt(self.head_size)          # (B, nh, T, T)
        if mask is not None:  # keys that are padding get no weight, from any query
            scores = ops.where(ops.cast(mask, "bool")[:, None, None, :], scores, MASKED)
        weights = ops.softmax(scores, axis=-1)                                          # (B, nh, T, T)
        y = ops.einsum("bhqk,bkhd->bqhd", weights, v)                                   # (B, T, nh, hs)
        y = self.out(ops.reshape(y, (batch, length, self.width)))                       # (B, T, C)
        return (y, weights) if return_weights else y

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "heads": self.heads, "width": self.width}


@keras.saving.register_keras_serializable(package="dlkit_transformer")
class EncoderBlock(layers.Layer):
    """Post-norm Transformer encoder block: x = norm(x + attention(x)), then x = norm(x + FFN(x))."""

    def __init__(self, heads: int, width: int, ff: int, dropout: float = 0.0, **kwargs):
        super().__init__(**kwargs)
        # === Config ===
        self.heads, self.width, self.ff, self.dropout = heads, width, ff, dropout
        # === Layers ===
        self.attention = SelfAttention(heads, width, name="attention")
        self.norm1 = layers.LayerNormalization(epsilon=1e-6, name="norm1")
        self.expand = layers.Dense(ff, activation="relu", name="expand")
        self.contract = layers.Dense(width, name="contract")
        self.norm2 = layers.LayerNormalization(epsilon=1e-6, name="norm2")
        self.drop = layers.Dropout(dropout)
        self.supports_masking = True  # the mask passes through to the next block and the pooling

    def build(self, input_shape):  # build the sub-layers, so a reloaded block has its variables
        self.attention.build(input_shape)
        self.norm1.build(input_shape)
        self.expand.build(input_shape)
        self.contract.build((*input_shape[:-1], self.ff))
        self.norm2.build(input_shape)

    def call(self, x, mask=None, training=False, return_weights=False):                # (B, T, C)
        attended, weights = self.attention(x, mask=mask, return_weights=True)
        x = self.norm1(x + self.drop(attended, training=training))
        x = self.norm2(x + self.drop(self.contract(self.expand(x)), training=training))
        return (x, weights) if return_weights else x

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "heads": self.heads, "width": self.width, "ff": self.ff,
                "dropout": self.dropout}


@keras.saving.register_keras_serializable(package="dlkit_transformer")
class MaskedMeanPooling(layers.Layer):
    """Mean over the real tokens: (B, T, C) and the padding mask (B, T) → (B, C). No mask: over all T."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.supports_masking = True

    def call(self, x, mask=None):
        if mask is None:
            return ops.mean(x, axis=1)
        weights = ops.cast(mask, x.dtype)[..., None]                                    # (B, T, 1)
        # a sequence of padding only would divide 0 by 0: it averages to 0 instead
        return ops.sum(x * weights, axis=1) / ops.maximum(ops.sum(weights, axis=1), 1.0)

    def compute_mask(self, x, mask=None):
        return None  # one vector per sequence: nothing left to mask

    def compute_output_shape(self, input_shape):
        return (input_shape[0], input_shape[2])


def transformer_classifier(vocab_size: int, length: int, num_classes: int, *, depth: int, heads: int, width: int,
                           ff: int, dropout: float = 0.0) -> keras.Model:
    """The network: token ids (B, T ≤ length), front-padded with 0 → class probabilities (B, num_classes).

    Example::

        model = transformer_classifier(200, 16, 2, depth=1, heads=2, width=8, ff=16)
        model(np.ones((3, 16), "int32")).shape   # (3, 2)
    """
    tokens = keras.Input((None,), dtype="int32", name="tokens")  # any width up to length: see LengthBatches
    x = TokenAndPositionEmbedding(vocab_size, length, width, name="embedding")(tokens)  # (B, T, C), mask (B, T)
    x = layers.Dropout(dropout, name="embedding_dropout")(x)
    for i in range(depth):
        x = EncoderBlock(heads, width, ff, dropout, name=f"block_{i}")(x)               # (B, T, C)
    x = MaskedMeanPooling(name="pool")(x)                                               # (B, C)
    x = layers.Dropout(dropout, name="head_dropout")(x)
    probs = layers.Dense(num_classes, activation="softmax", name="head")(x)             # (B, classes)
    return keras.Model(tokens, probs, name="transformer")


def attention_weights(model: keras.Model, token_ids) -> list[np.ndarray]:
    """Every block's attention weights on ``token_ids`` (B, T): one (B, heads, T, T) array per block.

    Runs the trained layers one after the other (inference: no dropout), with the same padding mask
    the model uses, so the weights are those behind the model's prediction.
    """
    embedding = model.get_layer("embedding")
    token_ids = ops.convert_to_tensor(np.asarray(token_ids, "int32"))
    mask = embedding.compute_mask(token_ids)
    x = embedding(token_ids)
    found = []
    for layer in model.layers:
        if isinstance(layer, EncoderBlock):
            x, weights = layer(x, mask=mask, return_weights=True)
            found.append(np.asarray(ops.convert_to_numpy(weights)))
    return found


# -- batches as wide as their longest text ------------------------------------------------------------
def widths(length: int, buckets: int = 5) -> list[int]:
    """The batch widths: ``buckets`` steps up to ``length``, multiples of 8 (few shapes, few compilations)."""
    return sorted({min(length, -(-length * i // buckets // 8) * 8) for i in range(1, buckets + 1)})


class LengthBatches(keras.utils.PyDataset):
    """Batches of front-padded token ids grouped by length, each cut to the narrowest of ``widths``
    that holds its longest text. The model ignores the padding (and its amount), so a batch gives
    what it would at full width, in a fraction of the time: the width is the attention's cost squared.

    Training (``shuffle=True``): every epoch the texts are shuffled within each width group, the
    groups are cut into full batches in order (the last batch alone may be short, so the shapes
    stay few), and the batches are visited in a random order. Prediction: the same cut, no shuffling;
    ``order`` holds the input rows in the order the batches deliver them.
    """

    def __init__(self, x, y=None, batch_size: int = 64, *, shuffle: bool = False, seed: int = 0, epoch: int = 0,
                 **kwargs):
        super().__init__(**kwargs)
        self.x, self.y, self.batch_size, self.shuffle, self.seed = np.asarray(x), y, batch_size, shuffle, seed
        self.widths = np.asarray(widths(self.x.shape[1]))
        self.group = np.searchsorted(self.widths, (self.x != 0).sum(axis=1))               # narrowest width that fits
        self.epoch = epoch  # the order of epoch e is the same in a run resumed there
        self._arrange()

    def _arrange(self):
        rng = np.random.default_rng([self.seed, self.epoch])
        start = rng.permutation(len(self.x)) if self.shuffle else np.arange(len(self.x))
        grouped = start[np.argsort(self.group[start], kind="stable")]                     # by group, shuffled within
        batches = [grouped[i:i + self.batch_size] for i in range(0, len(grouped), self.batch_size)]
        if self.shuffle:
            batches = [batches[i] for i in rng.permutation(len(batches))]
        # On TensorFlow, Keras fixes the input's shape from the first two batches and leaves free only
        # the dimensions in which they differ: they must differ in width, or wider batches are refused
        first = self.group[batches[0]].max()
        other = next((i for i, rows in enumerate(batches) if self.group[rows].max() != first), None)
        if other is not None:
            batches.insert(1, batches.pop(other))
        self.batches = batches
        self.order = np.concatenate(batches) if batches else np.zeros(0, "int64")

    def __len__(self):
        return len(self.batches)

    def __getitem__(self, index):
        rows = self.batches[index]
        width = self.widths[self.group[rows].max()]
        x = self.x[rows, -width:]                                                          # only padding is cut
        return x if self.y is None else (x, np.asarray(self.y)[rows])

    def on_epoch_end(self):
        self.epoch += 1
        if self.shuffle:
            self._arrange()


class ByLength:
    """``model.predict`` on texts batched by ``LengthBatches``, rows back in the input's order: what
    dlkit.metrics and ``predict`` call instead of the model itself (same signature)."""

    def __init__(self, model: keras.Model):
        self.model = model

    def predict(self, x, batch_size: int = 256, verbose=0):
        batches = LengthBatches(x, batch_size=batch_size)
        probs = np.asarray(self.model.predict(batches, verbose=verbose))
        out = np.empty_like(probs)
        out[batches.order] = probs
        return out


def custom_objects() -> dict[str, type]:
    return {f"dlkit_transformer>{cls.__name__}": cls
            for cls in (TokenAndPositionEmbedding, SelfAttention, EncoderBlock, MaskedMeanPooling)}
