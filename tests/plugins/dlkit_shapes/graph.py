"""shape_graph: the shape of a graph plugin (a two-layer GCN, Kipf & Welling, 2017) on one small graph.

The dataset is one graph, in ``info``: its edge list, the symmetrically normalised adjacency with
self-loops, node features and Planetoid-style train/validation/test node masks. The splits belong to
the dataset (``fixed_splits=True``), so the core refuses ``--train-samples``, ``--test-samples`` and
``--val-fraction``. Training is full-batch: the whole graph is one example, the masks are sample
weights. The graph is a stochastic block model of three communities whose noisy features alone
classify poorly; the neighbours' features, averaged by the graph convolution, do better.
"""
from __future__ import annotations

from dataclasses import dataclass

from dlkit.api import Algorithm, Dataset, TrainConfig, option

GRAPH_SEED = 7
COMMUNITIES = ("a", "b", "c")


@dataclass
class GraphConfig(TrainConfig):
    epochs: int = option(100, "Full-batch gradient steps.", min=1)
    nodes: int = option(150, "Nodes of the synthetic graph.", min=3 * len(COMMUNITIES))
    units: int = option(16, "Width of the hidden graph convolution.", min=1)
    learning_rate: float = option(0.01, "Adam learning rate.", min=0.0)


class Graph(Algorithm):
    name = "shape_graph"
    summary = "Shape test: two-layer GCN on a synthetic 3-community graph (fixed splits, full-batch)"
    config = GraphConfig
    datasets = ("communities",)
    task = "node-classification"
    test_config = {"epochs": 5, "nodes": 60}
    api_version = 1

    def load_data(self, cfg: GraphConfig) -> Dataset:
        import numpy as np

        rng = np.random.default_rng(GRAPH_SEED)
        k, n = len(COMMUNITIES), cfg.nodes
        labels = np.arange(n) % k
        same = labels[:, None] == labels[None, :]
        upper = np.triu(rng.random((n, n)) < np.where(same, 8.0 / n * k, 1.0 / n), 1)
        edges = np.argwhere(upper).astype("int32")
        adjacency = np.eye(n, dtype="float32")
        adjacency[edges[:, 0], edges[:, 1]] = adjacency[edges[:, 1], edges[:, 0]] = 1.0
        scale = 1.0 / np.sqrt(adjacency.sum(axis=1))
        normalized = (adjacency * scale[:, None] * scale[None, :]).astype("float32")
        features = (np.eye(k, 8)[labels] + rng.normal(0.0, 1.0, (n, 8))).astype("float32")
        order = rng.permutation(n)
        train = np.zeros(n, bool)
        for c in range(k):  # the same number of training nodes per class, as in Planetoid's split
            train[[i for i in order if labels[i] == c][:max(1, n // (5 * k))]] = True
        rest = [i for i in order if not train[i]]
        val = np.isin(np.arange(n), rest[:len(rest) // 3])
        return Dataset(name="communities", class_names=COMMUNITIES, fixed_splits=True,
                       info={"edges": edges, "adjacency": normalized, "features": features,
                             "labels": labels.astype("int32"), "train_mask": train, "val_mask": val,
                             "test_mask": ~(train | val)})

    def build(self, cfg: GraphConfig, data: Dataset):
        import keras
        from keras import layers

        n, f = data.info["features"].shape
        features = keras.Input((n, f), name="features")
        adjacency = keras.Input((n, n), name="adjacency")
        hidden = layers.Dense(cfg.units, use_bias=False)(features)
        hidden = layers.Activation("relu")(layers.Dot(axes=(2, 1))([adjacency, hidden]))  # Â · H · W
        logits = layers.Dot(axes=(2, 1))([adjacency, layers.Dense(data.num_classes, use_bias=False)(hidden)])
        model = keras.Model([features, adjacency], layers.Softmax()(logits), name="gcn")
        model.compile(optimizer=keras.optimizers.Adam(cfg.learning_rate), loss="sparse_categorical_crossentropy",
                      weighted_metrics=["accuracy"])
        return model

    def train(self, model, data: Dataset, cfg: GraphConfig, run):
        x, y = graph_batch(data)
        mask = {split: data.info[f"{split}_mask"][None].astype("float32") for split in ("train", "val")}
        return run.fit(model, x, y, sample_weight=mask["train"], validation_data=(x, y, mask["val"]),
                       batch_size=1, shuffle=False)

    def evaluate(self, model, data: Dataset, cfg: GraphConfig) -> dict:
        import keras

        x, y = graph_batch(data)
        predicted = keras.ops.convert_to_numpy(model(x, training=False))[0].argmax(axis=-1)
        test = data.info["test_mask"]
        return {"accuracy": float((predicted[test] == y[0][test]).mean()), "test_nodes": int(test.sum())}


def graph_batch(data: Dataset):
    """The whole graph as one example: ([features, adjacency], labels), each with a batch axis of 1."""
    info = data.info
    return [info["features"][None], info["adjacency"][None]], info["labels"][None]
