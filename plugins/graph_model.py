"""Graph layers for the gcn and gat plugins: message passing over an edge list, in ``keras.ops`` only.

A graph is given to a layer as three tensors: node features ``x`` (B, N, F) (made dense from their
nonzero entries by :class:`SparseFeatures`) and the edge list
``senders``, ``receivers`` (B, E), where edge k carries a message from node ``senders[k]`` to node
``receivers[k]``. Training is full-batch, so B is 1: the whole graph is one example. B > 1 (a batch
of graphs of the same size, which dlkit's contract test feeds) is handled by numbering the nodes of
graph b from b·N, which makes the batch one graph of B·N nodes with no edges between its parts.

Aggregation is a gather of the senders' rows (``ops.take``) followed by a sum into the receivers'
rows (a segment sum, :func:`scatter_sum`): O(E·F) work and memory instead of the O(N²) of a dense
adjacency, and one scatter-add on TensorFlow, JAX and PyTorch.
Keras 3 has no portable sparse-dense matmul, and a dense adjacency of PubMed would take 1.5 GB.

Layers:
- :class:`GraphConvolution` (Kipf & Welling, ICLR 2017): H' = Â H W with Â = D^-1/2 (A + I) D^-1/2,
  the degrees counted from the edge list (which must hold the self-loops).
- :class:`GraphAttention` (Veličković et al., ICLR 2018): K heads of masked self-attention over each
  node's neighbourhood, concatenated (hidden layer) or averaged (output layer).
"""
from __future__ import annotations

import keras
from keras import layers, ops


def flatten_graphs(x, senders, receivers):
    """(B, N, F) features and (B, E) edges → (B·N, F) features and (B·E,) edges into them, and N."""
    batch, nodes = ops.shape(x)[0], ops.shape(x)[1]
    offsets = ops.expand_dims(ops.arange(batch, dtype="int32") * nodes, 1)                 # (B, 1)
    senders = ops.reshape(ops.cast(senders, "int32") + offsets, (-1,))                   # (B·E,)
    receivers = ops.reshape(ops.cast(receivers, "int32") + offsets, (-1,))
    flat = ops.reshape(x, (batch * nodes, *ops.shape(x)[2:]))                            # (B·N, F)
    return flat, senders, receivers, batch * nodes


def scatter_sum(values, index, size):
    """Row k of ``values`` added into row ``index[k]`` of a zero (size, …) tensor: ``segment_sum``.

    Written with ``ops.scatter_update(..., reduction="add")``, which each backend runs as one
    scatter-add; PyTorch's ``ops.segment_sum`` first repeats the index to the size of ``values``
    and costs several times more."""
    zeros = ops.zeros((size, *ops.shape(values)[1:]), dtype=values.dtype)
    return ops.scatter_update(zeros, ops.expand_dims(index, 1), values, reduction="add")


def symmetric_norm(senders, receivers, num_nodes):
    """Â's entry for each edge: 1 / sqrt(deg(sender) · deg(receiver)), degrees counted in the edge list."""
    ones = ops.ones_like(receivers, dtype="float32")
    degree = scatter_sum(ones, receivers, num_nodes)                                      # (N,)
    inv_sqrt = ops.where(degree > 0, ops.rsqrt(ops.maximum(degree, 1.0)), 0.0)
    return ops.take(inv_sqrt, senders, axis=0) * ops.take(inv_sqrt, receivers, axis=0)    # (E,)


@keras.saving.register_keras_serializable(package="dlkit")
class GraphConvolution(layers.Layer):
    """Kipf & Welling's graph convolution: H' = act(Â H W (+ b)), Â = D^-1/2 (A + I) D^-1/2.

    Args:
        units: output features per node.
        activation: applied after the propagation (None for the output layer's logits).
        use_bias: Kipf & Welling's reference code has none.

    Called as ``layer([x, senders, receivers])`` with x (B, N, F) and an edge list (B, E) that holds
    both directions of every undirected edge and one self-loop per node.
    """

    def __init__(self, units: int, activation=None, use_bias: bool = False, **kwargs):
        super().__init__(**kwargs)
        # === Config ===
        self.units, self.use_bias = units, use_bias
        self.activation = keras.activations.get(activation)

    def build(self, input_shape):
        features = input_shape[0][-1]
        self.kernel = self.add_weight(shape=(features, self.units), initializer="glorot_uniform", name="kernel")
        self.bias = self.add_weight(shape=(self.units,), initializer="zeros", name="bias") if self.use_bias else None

    def call(self, inputs):
        x, senders, receivers = inputs
        batch, nodes = ops.shape(x)[0], ops.shape(x)[1]
        h = ops.matmul(x, self.kernel)                                                   # (B, N, U): W first, F > U
        flat, senders, receivers, total = flatten_graphs(h, senders, receivers)
        weights = symmetric_norm(senders, receivers, total)                              # (B·E,)
        messages = ops.take(flat, senders, axis=0) * weights[:, None]                    # (B·E, U)
        out = ops.reshape(scatter_sum(messages, receivers, total), (batch, nodes, self.units))
        if self.bias is not None:
            out = out + self.bias
        return self.activation(out)

    def compute_output_shape(self, input_shape):
        return (*input_shape[0][:-1], self.units)

    def get_config(self):
        return {**super().get_config(), "units": self.units, "use_bias": self.use_bias,
                "activation": keras.activations.serialize(self.activation)}


@keras.saving.register_keras_serializable(package="dlkit")
class GraphAttention(layers.Layer):
    """Veličković et al.'s graph attention layer, K heads.

    For each head k and edge j → i (self-loops included):

        e_ij = LeakyReLU_0.2(a_kᵀ [W_k h_i ‖ W_k h_j]),   α_ij = softmax over i's incoming edges of e_ij
        h'_i = act(Σ_j α_ij W_k h_j + b_k)

    then the K results are concatenated (``concat=True``, a hidden layer) or averaged (the output
    layer). As in the reference code (PetarV-/GAT), dropout acts on the attention coefficients α and
    on the transformed features W h before they are summed.

    Args:
        heads: attention heads K.
        units: features per head.
        concat: concatenate the heads (K·units outputs) or average them (units outputs).
        activation: applied to each head before concatenating or averaging (ELU in the hidden layer).
        attention_dropout: dropout rate of the attention coefficients (and of W h).
    """

    def __init__(self, heads: int, units: int, concat: bool = True, activation=None,
                 attention_dropout: float = 0.0, **kwargs):
        super().__init__(**kwargs)
        # === Config ===
        self.heads, self.units, self.concat = heads, units, concat
        self.activation = keras.activations.get(activation)
        self.attention_dropout = attention_dropout
        # === Layers ===
        self.dropout = layers.Dropout(attention_dropout)

    def build(self, input_shape):
        features = input_shape[0][-1]
        self.kernel = self.add_weight(shape=(features, self.heads * self.units), initializer="glorot_uniform",
                                      name="kernel")
        # a = [a_receiver ‖ a_sender]: the two halves of each head's attention vector
        self.attend_receiver = self.add_weight(shape=(self.heads, self.units), initializer="glorot_uniform",
                                               name="attend_receiver")
        self.attend_sender = self.add_weight(shape=(self.heads, self.units), initializer="glorot_uniform",
                                             name="attend_sender")
        self.bias = self.add_weight(shape=(self.heads, self.units), initializer="zeros", name="bias")

    def call(self, inputs, training=False):
        x, senders, receivers = inputs
        batch, nodes = ops.shape(x)[0], ops.shape(x)[1]
        h = ops.reshape(ops.matmul(x, self.kernel), (batch, nodes, self.heads, self.units))  # (B, N, K, U)
        flat, senders, receivers, total = flatten_graphs(h, senders, receivers)          # (B·N, K, U)
        score_receiver = ops.sum(flat * self.attend_receiver, axis=-1)                   # (B·N, K)
        score_sender = ops.sum(flat * self.attend_sender, axis=-1)
        logits = ops.leaky_relu(ops.take(score_receiver, receivers, axis=0)
                                + ops.take(score_sender, senders, axis=0), negative_slope=0.2)  # (E, K)
        # softmax over each receiver's incoming edges; the max is a constant for stability, not learned
        peak = ops.stop_gradient(ops.segment_max(logits, receivers, num_segments=total))  # (B·N, K)
        weights = ops.exp(logits - ops.take(peak, receivers, axis=0))
        alpha = weights / ops.take(scatter_sum(weights, receivers, total), receivers, axis=0)
        alpha = self.dropout(alpha, training=training)
        values = self.dropout(ops.take(flat, senders, axis=0), training=training)        # (E, K, U)
        out = scatter_sum(values * alpha[..., None], receivers, total)                   # (B·N, K, U)
        out = self.activation(out + self.bias)
        out = ops.reshape(out, (batch, nodes, self.heads, self.units))
        if self.concat:
            return ops.reshape(out, (batch, nodes, self.heads * self.units))             # (B, N, K·U)
        return ops.mean(out, axis=2)                                                     # (B, N, U)

    def compute_output_shape(self, input_shape):
        return (*input_shape[0][:-1], self.heads * self.units if self.concat else self.units)

    def get_config(self):
        return {**super().get_config(), "heads": self.heads, "units": self.units, "concat": self.concat,
                "activation": keras.activations.serialize(self.activation),
                "attention_dropout": self.attention_dropout}


@keras.saving.register_keras_serializable(package="dlkit")
class SparseFeatures(layers.Layer):
    """The node features (B, N, F), dense, from their nonzero entries, with dropout on those entries.

    Bag-of-words features are 98-99% zeros. Dropout of a zero changes nothing in X·W, so dropping
    only the nonzero entries (Kipf & Welling's "sparse dropout") is the same regulariser as dropout
    of the dense matrix, for 1% of the random numbers: on CiteSeer (3,327 × 3,703) dense dropout
    costs more than the rest of a training step.

    Called as ``layer([values, nodes, columns])``, each (B, nnz): entry k is X[nodes[k], columns[k]].
    """

    def __init__(self, nodes: int, features: int, dropout: float = 0.0, **kwargs):
        super().__init__(**kwargs)
        # === Config ===
        self.nodes, self.features, self.dropout = nodes, features, dropout
        # === Layers ===
        self.drop = layers.Dropout(dropout)

    def call(self, inputs, training=False):
        values, nodes, columns = inputs
        batch = ops.shape(values)[0]
        values = self.drop(values, training=training)
        # each entry's position in the flattened (B, N, F) tensor (ops.scatter would place them too, but
        # PyTorch's Keras backend scatters in a Python loop, one entry at a time)
        graph = ops.arange(batch, dtype="int32")[:, None] * self.nodes                            # (B, 1)
        position = (graph + ops.cast(nodes, "int32")) * self.features + ops.cast(columns, "int32")  # (B, nnz)
        dense = scatter_sum(ops.reshape(values, (-1,)), ops.reshape(position, (-1,)),
                            batch * self.nodes * self.features)
        return ops.reshape(dense, (batch, self.nodes, self.features))                             # (B, N, F)

    def compute_output_shape(self, input_shape):
        return (input_shape[0][0], self.nodes, self.features)

    def get_config(self):
        return {**super().get_config(), "nodes": self.nodes, "features": self.features, "dropout": self.dropout}


def graph_inputs():
    """The five inputs of a graph model, each (B, ·): the features' nonzero entries (values, nodes,
    columns) and the edge list (senders, receivers)."""
    return [keras.Input((None,), name="feature_values"), keras.Input((None,), dtype="int32", name="feature_nodes"),
            keras.Input((None,), dtype="int32", name="feature_columns"),
            keras.Input((None,), dtype="int32", name="senders"), keras.Input((None,), dtype="int32", name="receivers")]


def gcn(nodes: int, features: int, classes: int, *, hidden: int, dropout: float) -> keras.Model:
    """Two graph convolutions: logits = Â · ReLU(Â X W₀) · W₁, with dropout before each."""
    inputs = graph_inputs()
    values, feature_nodes, columns, senders, receivers = inputs
    h = SparseFeatures(nodes, features, dropout, name="features")([values, feature_nodes, columns])  # (B, N, F)
    h = GraphConvolution(hidden, activation="relu", name="hidden")([h, senders, receivers])     # (B, N, hidden)
    h = layers.Dropout(dropout)(h)
    logits = GraphConvolution(classes, name="logits")([h, senders, receivers])                 # (B, N, C)
    return keras.Model(inputs, logits, name="gcn")


def gat(nodes: int, features: int, classes: int, *, heads: int, hidden: int, output_heads: int, dropout: float,
        attention_dropout: float) -> keras.Model:
    """Two attention layers: K heads of ``hidden`` units with ELU, concatenated, then ``output_heads``
    heads of the class logits, averaged; dropout on each layer's input."""
    inputs = graph_inputs()
    values, feature_nodes, columns, senders, receivers = inputs
    h = SparseFeatures(nodes, features, dropout, name="features")([values, feature_nodes, columns])  # (B, N, F)
    h = GraphAttention(heads, hidden, activation="elu", attention_dropout=attention_dropout,
                       name="hidden")([h, senders, receivers])                            # (B, N, K·hidden)
    h = layers.Dropout(dropout)(h)
    logits = GraphAttention(output_heads, classes, concat=False, attention_dropout=attention_dropout,
                            name="logits")([h, senders, receivers])                       # (B, N, C)
    return keras.Model(inputs, logits, name="gat")


CUSTOM_OBJECTS = {"dlkit>GraphConvolution": GraphConvolution, "dlkit>GraphAttention": GraphAttention,
                  "dlkit>SparseFeatures": SparseFeatures}
