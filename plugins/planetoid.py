"""What the graph plugins (gcn, gat) share: the Planetoid reader, the full-batch loop, metrics, the plot.

Data: the citation graphs Cora, CiteSeer and PubMed with the public split of Yang, Cohen &
Salakhutdinov ("Revisiting Semi-Supervised Learning with Graph Embeddings", ICML 2016): 20 labelled
nodes per class train (140 / 120 / 60), the next 500 nodes validate, 1,000 given nodes test. The
files are kimiyoung/planetoid's ``data/ind.<name>.*`` (``dlkit.data.fetch``, sha256-checked), read as
Kipf & Welling's ``load_data`` reads them:

- every file but ``test.index`` is a Python 2 pickle (``encoding="latin1"``): ``x``/``tx``/``allx``
  SciPy CSR features, ``y``/``ty``/``ally`` one-hot labels, ``graph`` a dict of adjacency lists;
- node order: ``allx`` covers nodes 0 … len(allx)-1 and ``tx`` the test nodes, row i of ``tx``
  being node ``test.index[i]`` (the file is not sorted): stacked under ``allx``, the rows are moved
  from the sorted positions to those nodes (the "test-index reordering");
- CiteSeer's ``graph`` has 15 nodes in the test range that have no feature row and no label (they are
  in no split): they get zero features, label -1, and keep their edges;
- features are row-normalised (each row sums to 1), as both papers do;
- edges are undirected: self-loops and duplicates in ``graph`` are dropped, and the model's edge list
  holds each edge in both directions plus one self-loop per node (Â = D^-1/2 (A + I) D^-1/2 for GCN,
  each node attending to itself for GAT).

Training is full-batch: the whole graph is one example, the nonzero entries of the feature matrix
and the edge list ``[values, nodes, columns (1, nnz), senders, receivers (1, E)]``; the labels are ``y`` (1, N), and the split is a node mask (``info``). One
epoch is one gradient step (``dlkit.steps.GradientStep``) on the training nodes' mean cross-entropy
plus the L2 penalty, then a forward pass without dropout for the validation loss and accuracy.

Early stopping (``--patience N``, GAT's default 100) watches the validation nodes after every epoch,
in one of three ways (``--monitor``). ``both``, the GAT reference code's rule: an epoch is progress
when the validation accuracy is ≥ its best or the validation loss ≤ its best, and the weights kept
are those of the last epoch that improved *both*. ``accuracy`` counts and keeps by accuracy alone
(what the GAT authors used for CiteSeer, PetarV-/GAT#14); ``loss`` by the validation loss alone (as
PyTorch Geometric's citation benchmark does). After N epochs without progress training stops and the
kept weights are restored. Every epoch is logged and checkpointed with the optimizer, those weights
and the counters, so ``dlkit train --resume`` continues the same early stopping.

spektral is not used: its layers are written for Keras 2 (tf.keras) and fail to build under
Keras 3, and its ``Citation`` loader calls ``csr_matrix.A``, which SciPy 1.14 removed.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from dlkit.api import Algorithm, BaseConfig, Dataset, option

DATASETS = ("cora", "citeseer", "pubmed")
CLASS_NAMES = {
    "cora": ("Case_Based", "Genetic_Algorithms", "Neural_Networks", "Probabilistic_Methods",
             "Reinforcement_Learning", "Rule_Learning", "Theory"),
    "citeseer": ("Agents", "AI", "DB", "IR", "ML", "HCI"),
    "pubmed": ("Experimental", "Type 1", "Type 2"),
}
VALIDATION_NODES = 500


@dataclass
class GraphConfig(BaseConfig):
    """Options both graph plugins have; each plugin redeclares the defaults of its paper."""

    data: str = option("cora", "Citation graph (Planetoid public split).", choices=DATASETS)
    epochs: int = option(200, "Full-batch gradient steps (one per epoch): the most to train for.", min=1)
    patience: int = option(0, "Stop after N epochs without validation progress (see --monitor) and keep "
                              "the weights of the best epoch (0 = off).", min=0)
    monitor: str | None = option(None, "What early stopping watches: validation accuracy and loss (both, the GAT "
                                       "reference), accuracy or loss alone (none: the plugin's choice for --data).",
                                 choices=("both", "accuracy", "loss"))
    hidden: int = option(16, "Hidden units (per head for GAT).", min=1)
    dropout: float = option(0.5, "Dropout of each layer's input features.", min=0.0, max=0.95)
    learning_rate: float | None = option(None, "Adam learning rate (none: the paper's for --data).", min=0.0)
    weight_decay: float | None = option(None, "L2 penalty λ in λ/2·Σw² (none: the paper's for --data).", min=0.0)


# -- reading the Planetoid files ------------------------------------------------------------------------
def read_planetoid(name: str) -> dict[str, Any]:
    """The graph ``name`` as NumPy arrays: row-normalised features (N, F) float32, labels (N,) int32
    (-1: no label), undirected ``edges`` (M, 2) int32 with i < j, and the train/val/test node masks."""
    import pickle

    import numpy as np
    import scipy.sparse as sp

    from dlkit import data

    def load(ext: str):
        with open(data.fetch(name, f"ind.{name}.{ext}"), "rb") as fh:
            return pickle.load(fh, encoding="latin1")

    x, y, tx, ty, allx, ally, graph = (load(ext) for ext in ("x", "y", "tx", "ty", "allx", "ally", "graph"))
    test_index = np.array([int(line) for line in
                           data.fetch(name, f"ind.{name}.test.index").read_text().split()], dtype="int64")
    test_sorted = np.sort(test_index)
    nodes = max(len(graph), int(test_sorted[-1]) + 1)
    first_test = int(test_sorted[0])
    if first_test + len(test_sorted) < nodes or first_test != allx.shape[0]:
        # CiteSeer: graph nodes in the test range without a row in tx; give them empty rows
        full_tx = sp.lil_matrix((nodes - allx.shape[0], tx.shape[1]), dtype="float32")
        full_tx[test_sorted - allx.shape[0], :] = tx
        tx = full_tx.tocsr()
        full_ty = np.zeros((nodes - ally.shape[0], ty.shape[1]), dtype=ty.dtype)
        full_ty[test_sorted - ally.shape[0]] = ty
        ty = full_ty
    features = sp.vstack([allx, tx]).tolil()
    features[test_index, :] = features[test_sorted, :]   # row i of tx is node test_index[i]
    one_hot = np.vstack([ally, ty])
    one_hot[test_index] = one_hot[test_sorted]
    labels = np.where(one_hot.any(axis=1), one_hot.argmax(axis=1), -1).astype("int32")

    features = features.tocsr().astype("float64")
    row_sums = np.asarray(features.sum(axis=1)).ravel()
    scale = np.divide(1.0, row_sums, out=np.zeros_like(row_sums), where=row_sums > 0)
    features = np.asarray(sp.diags(scale) @ features.todense(), dtype="float32")

    pairs = {(min(i, j), max(i, j)) for i, neighbours in graph.items() for j in neighbours if i != j}
    edges = np.array(sorted(pairs), dtype="int32").reshape(-1, 2)

    masks = {split: np.zeros(nodes, bool) for split in ("train", "val", "test")}
    masks["train"][:len(y)] = True
    masks["val"][len(y):len(y) + VALIDATION_NODES] = True
    masks["test"][test_index] = True
    return {"features": features, "labels": labels, "edges": edges, **{f"{k}_mask": v for k, v in masks.items()}}


def planetoid_dataset(name: str) -> Dataset:
    """The graph as a dlkit Dataset: one example, [the features' nonzero entries (values, nodes, columns),
    senders, receivers], with fixed splits."""
    import numpy as np

    graph = read_planetoid(name)
    nodes = len(graph["labels"])
    loops = np.arange(nodes, dtype="int32")
    i, j = graph["edges"][:, 0], graph["edges"][:, 1]
    senders = np.concatenate([i, j, loops])      # both directions of every edge, and a self-loop per node
    receivers = np.concatenate([j, i, loops])
    nodes_of, columns = np.nonzero(graph["features"])
    values = graph["features"][nodes_of, columns]
    x = [values[None], nodes_of.astype("int32")[None], columns.astype("int32")[None], senders[None], receivers[None]]
    y = np.maximum(graph["labels"], 0)[None]     # nodes without a label are in no mask
    return Dataset(name, x_train=x, y_train=y, x_val=x, y_val=y, x_test=x, y_test=y,
                   class_names=CLASS_NAMES[name], input_shape=graph["features"].shape[1:],
                   info=graph, fixed_splits=True)


# -- the shared plugin ---------------------------------------------------------------------------------------
class PlanetoidAlgorithm(Algorithm):
    """A node classifier on a Planetoid graph; subclasses set the config and ``network``/``decayed``."""

    datasets = DATASETS
    task = "node-classification"
    headline_metric = "accuracy"
    #: The paper's (learning rate, weight decay) per dataset, used where the option is none.
    paper: dict[str, tuple[float, float]] = {}
    #: What early stopping watches per dataset where --monitor is none (absent: "both").
    monitors: dict[str, str] = {}

    def network(self, cfg, data: Dataset):
        """The Keras model: [feature values, nodes, columns, senders, receivers] → logits (B, N, C)."""
        raise NotImplementedError

    def decayed(self, model) -> list:
        """The variables the L2 penalty applies to."""
        raise NotImplementedError

    def setting(self, cfg) -> tuple[float, float]:
        lr, decay = self.paper[cfg.data]
        return (lr if cfg.learning_rate is None else cfg.learning_rate,
                decay if cfg.weight_decay is None else cfg.weight_decay)

    def monitor(self, cfg) -> str:
        return cfg.monitor or self.monitors.get(cfg.data, "both")

    def load_data(self, cfg) -> Dataset:
        return planetoid_dataset(cfg.data)

    def build(self, cfg, data: Dataset):
        return self.network(cfg, data)

    def custom_objects(self) -> dict[str, Any]:
        """Importing the model module registers its layers, so model.keras reloads in safe mode."""
        from dlkit.plugins.graph_model import CUSTOM_OBJECTS

        return dict(CUSTOM_OBJECTS)

    # -- training ----------------------------------------------------------------------------------------
    def gradient_step(self, model, data: Dataset, cfg):
        """One epoch's update: returns ``(step, optimizer, batch)``; ``step(*batch)`` trains once on the
        training nodes' mean cross-entropy plus the L2 penalty (benchmarks/graph.py drives it too)."""
        import keras
        from keras import ops

        from dlkit.steps import GradientStep

        learning_rate, weight_decay = self.setting(cfg)
        # tensors once, not a copy of the feature matrix at every step
        x = [ops.convert_to_tensor(a) for a in data.x_train]
        labels = ops.convert_to_tensor(data.y_train)
        train_mask = ops.convert_to_tensor(data.info["train_mask"][None].astype("float32"))
        decayed = self.decayed(model)

        def loss_fn(values, nodes, columns, senders, receivers, labels, mask):
            logits = model([values, nodes, columns, senders, receivers], training=True)  # (1, N, C)
            per_node = keras.losses.sparse_categorical_crossentropy(labels, logits, from_logits=True)
            loss = ops.sum(per_node * mask) / ops.sum(mask)
            penalty = sum(ops.sum(ops.square(w)) for w in decayed) / 2.0
            hits = ops.cast(ops.cast(ops.argmax(logits, axis=-1), "int32") == ops.cast(labels, "int32"), "float32")
            return loss + weight_decay * penalty, {"accuracy": ops.sum(hits * mask) / ops.sum(mask)}

        optimizer = keras.optimizers.Adam(learning_rate)
        optimizer.build(model.trainable_variables)    # before restore, which fills its slots
        return GradientStep(loss_fn, trainable=model, optimizer=optimizer), optimizer, (*x, labels, train_mask)

    def train(self, model, data: Dataset, cfg, run):
        step, optimizer, batch = self.gradient_step(model, data, cfg)
        saved = run.restore(optimizer=optimizer)
        best = EarlyStopping(cfg.patience, saved.get("early_stopping"),
                             [saved[f"best/{i}"] for i in range(len(model.weights)) if f"best/{i}" in saved],
                             monitor=self.monitor(cfg))
        for epoch in range(run.start + 1, cfg.epochs + 1):
            if run.stop_requested:   # Ctrl-C: return between two epochs; the last checkpoint stays
                return None
            if best.exhausted:       # resumed after a Ctrl-C that came with the epoch that ran out of patience
                break
            logs = step(*batch)
            val = node_metrics(predict_logits(model, data), data, "val")
            run.log(epoch, loss=logs["loss"], accuracy=logs["accuracy"], val_loss=val["loss"],
                    val_accuracy=val["accuracy"])
            stop = best.update(val, model)
            run.checkpoint(epoch, model, optimizer=optimizer, early_stopping=best.state(),
                           **{f"best/{i}": w for i, w in enumerate(best.weights)})
            if stop:
                print(f"early stopping after epoch {epoch}: no progress in {cfg.patience} epochs; keeping "
                      f"epoch {best.best_epoch} (val accuracy {best.kept_accuracy:.4f})", flush=True)
                break
        best.restore(model)
        return None

    # -- evaluation and the plot ---------------------------------------------------------------------------
    def evaluate(self, model, data: Dataset, cfg) -> dict[str, Any]:
        logits = predict_logits(model, data)
        test, val = node_metrics(logits, data, "test"), node_metrics(logits, data, "val")
        return {"accuracy": test["accuracy"], "loss": test["loss"], "test_nodes": test["nodes"],
                "val_accuracy": val["accuracy"], "confusion_matrix": test["confusion_matrix"]}

    def extra_plots(self, model, data: Dataset, cfg, run) -> None:
        plot_embedding(model, data, run.plots_dir / "embedding.png",
                       f"{self.name} on {data.name}: t-SNE of the hidden layer, test nodes")


class EarlyStopping:
    """Early stopping on the validation nodes; ``monitor`` says what counts as progress.

    ``both`` (the GAT reference code): progress = val accuracy ≥ best or val loss ≤ best, and the
    weights kept are those of the last epoch that improved both. ``accuracy`` or ``loss``: progress,
    and the weights kept, by that metric alone. Stop after ``patience`` epochs without progress."""

    def __init__(self, patience: int, state: dict | None, weights: list, monitor: str = "both"):
        self.patience, self.monitor = patience, monitor
        state = state or {}
        self.best_accuracy = state.get("best_accuracy", -1.0)
        self.best_loss = state.get("best_loss", float("inf"))
        self.waited = state.get("waited", 0)
        self.best_epoch = state.get("best_epoch", 0)
        self.kept_accuracy = state.get("kept_accuracy", 0.0)
        self.epoch = state.get("epoch", 0)
        self.weights = weights

    def update(self, val: dict, model) -> bool:
        """Record one epoch's validation metrics; True when training should stop."""
        self.epoch += 1
        if not self.patience:
            return False
        accuracy, loss = val["accuracy"], val["loss"]
        better_accuracy, better_loss = accuracy >= self.best_accuracy, loss <= self.best_loss
        progress, keep = {"both": (better_accuracy or better_loss, better_accuracy and better_loss),
                          "accuracy": (better_accuracy, better_accuracy),
                          "loss": (better_loss, better_loss)}[self.monitor]
        if keep:
            self.weights = [w.copy() for w in model.get_weights()]
            self.best_epoch, self.kept_accuracy = self.epoch, accuracy
        self.best_accuracy = max(accuracy, self.best_accuracy)
        self.best_loss = min(loss, self.best_loss)
        if progress:
            self.waited = 0
            return False
        self.waited += 1
        return self.exhausted

    @property
    def exhausted(self) -> bool:
        """Patience ran out: training is over (also when a resumed run finds it so in its checkpoint)."""
        return bool(self.patience) and self.waited >= self.patience

    def restore(self, model) -> None:
        if self.patience and self.weights:
            model.set_weights(self.weights)

    def state(self) -> dict:
        return {"best_accuracy": self.best_accuracy, "best_loss": self.best_loss, "waited": self.waited,
                "best_epoch": self.best_epoch, "kept_accuracy": self.kept_accuracy, "epoch": self.epoch}


def predict_logits(model, data: Dataset):
    """The logits of every node, (N, C), from one forward pass without dropout."""
    import numpy as np

    return np.asarray(model.predict_on_batch(data.x_test), dtype="float64")[0]


def node_metrics(logits, data: Dataset, split: str) -> dict[str, Any]:
    """Accuracy, mean cross-entropy and confusion matrix over the nodes of ``split`` (NumPy)."""
    import numpy as np

    mask = data.info[f"{split}_mask"]
    labels = data.info["labels"][mask].astype("int64")
    z = logits[mask] - logits[mask].max(axis=1, keepdims=True)
    log_p = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
    predicted = z.argmax(axis=1)
    confusion = np.zeros((data.num_classes,) * 2, dtype="int64")
    np.add.at(confusion, (labels, predicted), 1)
    return {"accuracy": float((predicted == labels).mean()), "loss": float(-log_p[np.arange(len(labels)), labels].mean()),
            "nodes": int(mask.sum()), "confusion_matrix": confusion.tolist()}


def plot_embedding(model, data: Dataset, path, title: str, seed: int = 0):
    """A 2-D t-SNE (scikit-learn) of the hidden layer's output for the test nodes, coloured by class."""
    import keras
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np
    from sklearn.manifold import TSNE

    hidden = keras.Model(model.inputs, model.get_layer("hidden").output)
    mask = data.info["test_mask"]
    h = np.asarray(hidden.predict_on_batch(data.x_test), dtype="float32")[0][mask]      # (1000, hidden)
    labels = data.info["labels"][mask]
    points = TSNE(n_components=2, init="pca", perplexity=30, random_state=seed).fit_transform(h)
    fig, ax = plt.subplots(figsize=(6.5, 5.5))
    colours = plt.get_cmap("tab10")
    for c, name in enumerate(data.class_names):
        chosen = labels == c
        ax.scatter(points[chosen, 0], points[chosen, 1], s=6, color=colours(c), label=name)
    ax.set_xticks([])
    ax.set_yticks([])
    ax.legend(markerscale=2.5, fontsize=7, loc="best")
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
