"""Encoder–decoder with attention: the layers, the network, and greedy decoding.

Encoder (Bahdanau et al. 2015): character ids x_1..x_S → embeddings → a bidirectional GRU or LSTM,
whose outputs h_j = [→h_j; ←h_j] (2U wide) are the memory the decoder attends over. Padding (id 0)
is masked: the recurrent layers skip it and attention gives it weight 0. The decoder starts from
s_0 = tanh(W_init [→h_S; ←h_1]), both directions' final states (for an LSTM, h and c each).

Decoder, one output character y_t per step (teacher forcing in training: y_{t-1} is the true
previous character; greedy decoding at test time: it is the argmax of the step before):

- ``bahdanau`` (Bahdanau, Cho & Bengio, "Neural Machine Translation by Jointly Learning to Align and
  Translate", ICLR 2015), additive attention, computed from the previous state *before* the step::

      e_tj = v_a^T tanh(W_a s_{t-1} + U_a h_j)        α_tj = softmax_j(e_tj)      c_t = Σ_j α_tj h_j
      s_t  = RNN(s_{t-1}, [E y_{t-1}; c_t])           p(y_t) = softmax(W_o tanh(W_c [s_t; c_t]))

- ``luong`` (Luong, Pham & Manning, "Effective Approaches to Attention-based Neural Machine
  Translation", EMNLP 2015), global attention with the "general" score, computed from the new state
  *after* the step (without Luong's optional input feeding)::

      s_t  = RNN(s_{t-1}, E y_{t-1})
      e_tj = s_t^T W_a h_j                            α_tj = softmax_j(e_tj)      c_t = Σ_j α_tj h_j
      h̃_t  = tanh(W_c [c_t; s_t])                     p(y_t) = softmax(W_o h̃_t)

  ("dot", e_tj = s_t^T h_j, is the special case W_a = I; "general" also works when the memory (2U)
  and the state (U) differ in width.)

- ``none``: the fixed-vector encoder–decoder of Sutskever, Vinyals & Le ("Sequence to Sequence
  Learning with Neural Networks", NeurIPS 2014) and of keras-io's character-level example: the whole
  input reaches the decoder only through s_0; s_t = RNN(s_{t-1}, E y_{t-1}), p(y_t) = softmax(W_o s_t).

The output is always an ISO date, 10 characters, so the decoder runs exactly ``length`` = 10 steps and
needs no end token, no beam and no early stop. Training runs the steps in ``ops.scan`` (one loop body
to compile instead of ten copies: on JAX the first training step took 18 s instead of 24 s here), and
greedy decoding (``GreedyDecoder``) runs the encoder once, then the same 10 steps feeding back its own argmax, in one
compiled call per batch (``jax.jit``/``tf.function``; eager on PyTorch). Both paths call the same
``AttentionDecoder.step``, so the decoder that is trained is the one that decodes. The step also
returns α_t, which is where the attention heatmaps come from.

Only ``keras.ops``: the same file runs on TensorFlow, JAX and PyTorch.
"""
from __future__ import annotations

import weakref

import keras
import numpy as np
from keras import layers, ops

ATTENTIONS = ("bahdanau", "luong", "none")
CELLS = ("gru", "lstm")
#: The score given to padded positions before the softmax: exp(-1e9 - max) is exactly 0 in float32, and
#: a finite number (not -inf) keeps a row that is all padding (the contract test's zeros) free of NaN.
MASKED = -1e9


def masked_softmax(scores, mask):
    """softmax over the input positions (last axis) of ``scores`` (B, S), padding (mask False) at 0."""
    return ops.softmax(ops.where(mask, scores, MASKED), axis=-1)


@keras.saving.register_keras_serializable(package="dlkit")
class AdditiveAttention(layers.Layer):
    """Bahdanau's score e_j = v^T tanh(W q + U h_j); U h_j is computed once per sequence (``keys``)."""

    def __init__(self, units: int, **kwargs):
        super().__init__(**kwargs)
        # === Config ===
        self.units = units
        # === Layers ===
        self.query = layers.Dense(units, use_bias=False, name="query")   # W_a
        self.key = layers.Dense(units, name="key")                       # U_a (its bias is the tanh's bias)
        self.score = layers.Dense(1, use_bias=False, name="score")       # v_a

    def build(self, shapes):
        query_shape, memory_shape = shapes
        self.query.build(query_shape)
        self.key.build(memory_shape)
        self.score.build((*memory_shape[:-1], self.units))

    def keys(self, memory):                                                      # (B, S, 2U)
        return self.key(memory)                                                  # (B, S, A)

    def call(self, query, keys, memory, mask):                                   # (B, U), (B, S, A), (B, S, 2U)
        scores = self.score(ops.tanh(keys + self.query(query)[:, None, :]))[..., 0]   # (B, S)
        weights = masked_softmax(scores, mask)                                   # (B, S)
        return ops.einsum("bs,bsd->bd", weights, memory), weights               # (B, 2U), (B, S)

    def get_config(self):
        return {**super().get_config(), "units": self.units}


@keras.saving.register_keras_serializable(package="dlkit")
class GeneralAttention(layers.Layer):
    """Luong's "general" score e_j = q^T W_a h_j; W_a h_j is computed once per sequence (``keys``)."""

    def __init__(self, units: int, **kwargs):
        super().__init__(**kwargs)
        self.units = units
        self.key = layers.Dense(units, use_bias=False, name="key")       # W_a: memory (2U) → state width (U)

    def build(self, shapes):
        _, memory_shape = shapes
        self.key.build(memory_shape)

    def keys(self, memory):
        return self.key(memory)                                                  # (B, S, U)

    def call(self, query, keys, memory, mask):                                   # (B, U), (B, S, U), (B, S, 2U)
        weights = masked_softmax(ops.einsum("bsu,bu->bs", keys, query), mask)   # (B, S)
        return ops.einsum("bs,bsd->bd", weights, memory), weights               # (B, 2U), (B, S)

    def get_config(self):
        return {**super().get_config(), "units": self.units}


def _rnn(cell: str, units: int, **kwargs):
    return (layers.GRU if cell == "gru" else layers.LSTM)(units, **kwargs)


@keras.saving.register_keras_serializable(package="dlkit")
class Encoder(layers.Layer):
    """Character ids (B, S) → memory (B, S, 2U) and the decoder's initial state(s), each (B, U).

    The state is one tensor for a GRU, two (h and c) for an LSTM. Id 0 is padding.
    """

    def __init__(self, vocab_size: int, embedding_dim: int, units: int, cell: str = "gru", **kwargs):
        super().__init__(**kwargs)
        # === Config ===
        self.vocab_size, self.embedding_dim, self.units, self.cell = vocab_size, embedding_dim, units, cell
        # === Layers ===
        self.embedding = layers.Embedding(vocab_size, embedding_dim, name="embedding")
        self.rnn = layers.Bidirectional(_rnn(cell, units, return_sequences=True, return_state=True), name="birnn")
        # s_0 from both directions' final states (Bahdanau et al. used the backward one alone)
        self.bridge = [layers.Dense(units, activation="tanh", name=f"bridge_{i}") for i in range(self.states)]

    @property
    def states(self) -> int:
        return 2 if self.cell == "lstm" else 1

    def build(self, tokens_shape):
        self.embedding.build(tokens_shape)
        self.rnn.build((*tokens_shape, self.embedding_dim))
        for bridge in self.bridge:
            bridge.build((tokens_shape[0], 2 * self.units))

    def call(self, tokens):                                                      # (B, S)
        mask = ops.not_equal(tokens, 0)
        memory, *finals = self.rnn(self.embedding(tokens), mask=mask)            # (B, S, 2U), 2 × states
        forward, backward = finals[:self.states], finals[self.states:]
        initial = [bridge(ops.concatenate([f, b], axis=-1)) for bridge, f, b in zip(self.bridge, forward, backward)]
        return (memory, *initial)

    def compute_output_spec(self, tokens):
        batch, length = tokens.shape
        # one KerasTensor per state: the same object twice would wire an LSTM's h into both h and c
        states = [keras.KerasTensor((batch, self.units)) for _ in range(self.states)]
        return (keras.KerasTensor((batch, length, 2 * self.units)), *states)

    def get_config(self):
        return {**super().get_config(), "vocab_size": self.vocab_size, "embedding_dim": self.embedding_dim,
                "units": self.units, "cell": self.cell}


@keras.saving.register_keras_serializable(package="dlkit")
class AttentionDecoder(layers.Layer):
    """The decoder, a step at a time: previous character, state, memory → next-character logits.

    ``call([decoder_tokens, encoder_tokens, memory, *states])`` runs ``length`` teacher-forced steps
    and returns logits (B, length, vocab_size); ``greedy`` runs them on its own predictions. The
    decoder's input ids are the output characters (0 … vocab_size - 1) and ``start`` = vocab_size.
    """

    def __init__(self, vocab_size: int, embedding_dim: int, units: int, memory_dim: int, length: int,
                 cell: str = "gru", attention: str = "bahdanau", **kwargs):
        super().__init__(**kwargs)
        if attention not in ATTENTIONS or cell not in CELLS:
            raise ValueError(f"attention must be one of {ATTENTIONS} and cell one of {CELLS}")
        # === Config ===
        self.vocab_size, self.embedding_dim, self.units = vocab_size, embedding_dim, units
        self.memory_dim, self.length, self.cell_kind, self.attention_kind = memory_dim, length, cell, attention
        self.start = vocab_size
        # === Layers ===
        self.embedding = layers.Embedding(vocab_size + 1, embedding_dim, name="embedding")  # + the start id
        self.cell = (layers.GRUCell if cell == "gru" else layers.LSTMCell)(units, name="cell")
        score = {"bahdanau": AdditiveAttention, "luong": GeneralAttention}.get(attention)
        self.attention = None if score is None else score(units, name="attention")
        self.combine = None if score is None else layers.Dense(units, activation="tanh", name="combine")  # W_c
        self.head = layers.Dense(vocab_size, name="head")                             # W_o
        # the encoder's outputs carry its padding mask; this layer reads the padding from encoder_tokens
        # itself and its logits carry no mask (compute_mask), so Keras need not warn that one is dropped
        self.supports_masking = True

    def build(self, shapes):
        batch = shapes[0][0]
        self.embedding.build((batch,))
        cell_input = self.embedding_dim + (self.memory_dim if self.attention_kind == "bahdanau" else 0)
        self.cell.build((batch, cell_input))
        if self.attention is not None:
            self.attention.build(((batch, self.units), (batch, None, self.memory_dim)))
            self.combine.build((batch, self.units + self.memory_dim))
        self.head.build((batch, self.units))

    def keys(self, memory):
        """What the attention precomputes from the memory once per sequence (None without attention)."""
        return None if self.attention is None else self.attention.keys(memory)

    def step(self, previous, states: list, memory, keys, mask):
        """One output character: ids (B,) of y_{t-1}, states s_{t-1} → logits (B, V), s_t, α_t (B, S) or None."""
        embedded = self.embedding(previous)                                        # (B, E)
        if self.attention_kind == "bahdanau":  # attend with s_{t-1}, feed the context into the step
            context, weights = self.attention(states[0], keys, memory, mask)       # (B, 2U), (B, S)
            output, states = self.cell(ops.concatenate([embedded, context], axis=-1), states)
            hidden = self.combine(ops.concatenate([output, context], axis=-1))    # (B, U)
        elif self.attention_kind == "luong":   # step first, then attend with s_t
            output, states = self.cell(embedded, states)
            context, weights = self.attention(output, keys, memory, mask)
            hidden = self.combine(ops.concatenate([context, output], axis=-1))
        else:
            hidden, states = self.cell(embedded, states)
            weights = None
        return self.head(hidden), list(states), weights

    def compute_mask(self, inputs, mask=None):
        return None

    def call(self, inputs, mask=None):
        tokens, encoder_tokens, memory, *states = inputs                           # (B, T), (B, S), (B, S, 2U)
        mask, keys = ops.not_equal(encoder_tokens, 0), self.keys(memory)

        def teacher_forced(carry, previous):                                       # previous: (B,) true y_{t-1}
            logits, states, _ = self.step(previous, carry[1], memory, keys, mask)
            return (logits, states), (logits, states)  # TensorFlow's scan emits what it carries

        start = (ops.zeros((ops.shape(tokens)[0], self.vocab_size)), states)
        (_, _), (logits, _) = ops.scan(teacher_forced, start, ops.transpose(tokens))   # logits (T, B, V)
        return ops.transpose(logits, (1, 0, 2))                                    # (B, T, V)

    def greedy(self, encoder_tokens, memory, states: list):
        """Decode without teacher forcing: ids (B, T), their probabilities (B, T), attention (B, T, S)."""
        mask, keys = ops.not_equal(encoder_tokens, 0), self.keys(memory)
        no_attention = ops.zeros(ops.shape(encoder_tokens))

        def own_prediction(carry, _):
            previous, states, _, _ = carry
            logits, states, weights = self.step(previous, states, memory, keys, mask)
            chosen = ops.cast(ops.argmax(logits, axis=-1), "int32")                # (B,)
            probability = ops.max(ops.softmax(logits, axis=-1), axis=-1)           # (B,)
            carry = (chosen, states, probability, no_attention if weights is None else weights)
            return carry, carry

        batch = ops.shape(encoder_tokens)[0]
        start = (ops.full((batch,), self.start, dtype="int32"), states, ops.zeros((batch,)), no_attention)
        _, (ids, _, probabilities, attention) = ops.scan(own_prediction, start, length=self.length)
        return (ops.transpose(ids), ops.transpose(probabilities),                  # (B, T), (B, T)
                ops.transpose(attention, (1, 0, 2)))                               # (B, T, S)

    def compute_output_spec(self, inputs, mask=None):
        return keras.KerasTensor((inputs[0].shape[0], self.length, self.vocab_size))

    def get_config(self):
        return {**super().get_config(), "vocab_size": self.vocab_size, "embedding_dim": self.embedding_dim,
                "units": self.units, "memory_dim": self.memory_dim, "length": self.length,
                "cell": self.cell_kind, "attention": self.attention_kind}


def seq2seq(input_vocab: int, output_vocab: int, length: int, *, units: int, embedding_dim: int,
            cell: str = "gru", attention: str = "bahdanau") -> keras.Model:
    """The trained network: (encoder ids (B, S), decoder ids (B, length)) → logits (B, length, output_vocab).

    Input id 0 is padding; decoder ids are output characters, with ``output_vocab`` as the start id.

    Example::

        model = seq2seq(60, 11, 10, units=32, embedding_dim=16, attention="luong")
        model([np.ones((2, 17), "int32"), np.zeros((2, 10), "int32")]).shape   # (2, 10, 11)
    """
    encoder_tokens = keras.Input((None,), dtype="int32", name="encoder_tokens")
    decoder_tokens = keras.Input((length,), dtype="int32", name="decoder_tokens")
    memory, *states = Encoder(input_vocab, embedding_dim, units, cell, name="encoder")(encoder_tokens)
    decoder = AttentionDecoder(output_vocab, embedding_dim, units, 2 * units, length, cell, attention, name="decoder")
    logits = decoder([decoder_tokens, encoder_tokens, memory, *states])
    return keras.Model([encoder_tokens, decoder_tokens], logits, name=f"seq2seq_{attention}")


# -- greedy decoding -----------------------------------------------------------------------------------
class GreedyDecoder(keras.Model):
    """The trained layers decoding on their own: encoder ids (B, S) → ids, probabilities, attention.

    A model of its own only so that ``predict`` compiles the whole decode (encoder once, then the
    ``length`` steps): it is never saved and shares its variables with the trained model.
    """

    def __init__(self, model: keras.Model):
        super().__init__(name="greedy_decoder")
        self.encoder, self.decoder = model.get_layer("encoder"), model.get_layer("decoder")

    def call(self, encoder_tokens):
        memory, *states = self.encoder(encoder_tokens)
        return self.decoder.greedy(encoder_tokens, memory, states)


_greedy: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def greedy_decode(model: keras.Model, encoder_tokens: np.ndarray, batch_size: int = 256):
    """Greedy decoding of a batch of padded ids (N, S): ids (N, T), probabilities (N, T), attention (N, T, S).

    One ``GreedyDecoder`` per model, so its compiled function serves every later call; ``batch_size``
    rows per compiled call.
    """
    decoder = _greedy.get(model)
    if decoder is None:
        decoder = _greedy[model] = GreedyDecoder(model)
    if keras.backend.backend() == "torch":
        # eager on PyTorch, as dlkit runs every reloaded model there (training.load_run_model)
        decoder.jit_compile = False
    ids, probabilities, attention = decoder.predict(np.asarray(encoder_tokens, "int32"), batch_size=batch_size,
                                                    verbose=0)
    return np.asarray(ids), np.asarray(probabilities), np.asarray(attention)
