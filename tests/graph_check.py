"""Checks of the graph plugins that need Keras on one backend, run as a script (a backend per process).

    KERAS_BACKEND=jax python tests/graph_check.py train OUT      layers vs dense NumPy; gcn and gat trained tiny
    KERAS_BACKEND=torch python tests/graph_check.py evaluate RUN…  reload runs trained on another backend

Prints one JSON line of findings; tests/test_graph.py asserts on them.
"""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path


def dense_reference(x, senders, receivers, kernel):
    """D^-1/2 (A + I) D^-1/2 X W with a dense adjacency, in NumPy (the edge list holds the self-loops)."""
    import numpy as np

    n = len(x)
    a = np.zeros((n, n))
    a[receivers, senders] = 1.0
    d = 1.0 / np.sqrt(a.sum(axis=1))
    return (d[:, None] * a * d[None, :]) @ x @ kernel


def attention_reference(x, senders, receivers, kernel, a_receiver, a_sender, bias):
    """One GAT head with a dense adjacency: softmax over each row's neighbours of LeakyReLU(a·[Wh_i ‖ Wh_j])."""
    import numpy as np

    n = len(x)
    h = x @ kernel                                                     # (N, U)
    e = (h @ a_receiver)[:, None] + (h @ a_sender)[None, :]           # e[i, j]: receiver i, sender j
    e = np.where(e > 0, e, 0.2 * e)
    adjacency = np.zeros((n, n), bool)
    adjacency[receivers, senders] = True
    e = np.where(adjacency, e, -np.inf)
    alpha = np.exp(e - e.max(axis=1, keepdims=True))
    alpha /= alpha.sum(axis=1, keepdims=True)
    return alpha @ h + bias


def layer_checks() -> dict:
    import keras
    import numpy as np

    from dlkit.plugins.graph_model import GraphAttention, GraphConvolution, SparseFeatures

    rng = np.random.default_rng(0)
    n, f = 12, 5
    pairs = {(int(min(i, j)), int(max(i, j))) for i, j in rng.integers(0, n, (20, 2)) if i != j}  # as the reader
    i, j = np.array(sorted(pairs)).T
    loops = np.arange(n)
    senders, receivers = np.concatenate([i, j, loops]), np.concatenate([j, i, loops])
    x = rng.normal(size=(n, f)).astype("float32")
    edges = [senders[None].astype("int32"), receivers[None].astype("int32")]

    gcn = GraphConvolution(3)
    out = keras.ops.convert_to_numpy(gcn([x[None], *edges]))[0]
    gcn_gap = float(np.abs(out - dense_reference(x, senders, receivers, keras.ops.convert_to_numpy(gcn.kernel))).max())

    gat = GraphAttention(1, 4, concat=False)
    gat.build([(1, n, f), (1, None), (1, None)])
    rng_weights = [rng.normal(0, 0.5, w.shape).astype("float32") for w in gat.get_weights()]
    gat.set_weights(rng_weights)
    kernel, a_receiver, a_sender, bias = (keras.ops.convert_to_numpy(w) for w in
                                          (gat.kernel, gat.attend_receiver, gat.attend_sender, gat.bias))
    out = keras.ops.convert_to_numpy(gat([x[None], *edges]))[0]
    expected = attention_reference(x, senders, receivers, kernel, a_receiver[0], a_sender[0], bias[0])
    gat_gap = float(np.abs(out - expected).max())

    # two graphs in one batch give what each gives alone (node numbering offset per graph)
    y = rng.normal(size=(n, f)).astype("float32")
    reversed_edges = [receivers[None].astype("int32"), senders[None].astype("int32")]
    both = keras.ops.convert_to_numpy(gcn([np.stack([x, y]), np.concatenate([edges[0], reversed_edges[0]]),
                                           np.concatenate([edges[1], reversed_edges[1]])]))
    alone = keras.ops.convert_to_numpy(gcn([y[None], *reversed_edges]))[0]
    batch_gap = float(np.abs(both[1] - alone).max())

    sparse = np.where(rng.random((n, f)) < 0.3, x, 0.0).astype("float32")
    rows, cols = np.nonzero(sparse)
    dense = keras.ops.convert_to_numpy(SparseFeatures(n, f)([sparse[rows, cols][None], rows[None].astype("int32"),
                                                            cols[None].astype("int32")]))[0]
    return {"gcn_vs_dense": gcn_gap, "gat_vs_dense": gat_gap, "batch_gap": batch_gap,
            "sparse_features_gap": float(np.abs(dense - sparse).max())}


def train(out: str) -> dict:
    """gcn and gat a few epochs on Cora through dlkit.train, as `dlkit train` runs them."""
    import dlkit

    backend = os.environ["KERAS_BACKEND"]
    found = {"backend": backend, "layers": layer_checks(), "runs": {}}
    for algo, options in {"gcn": {"epochs": 3, "hidden": 8},
                          "gat": {"epochs": 3, "heads": 2, "hidden": 4, "patience": 2}}.items():
        run = dlkit.train(algo, backend=backend, out=out, echo=lambda *a: None, data="cora", **options)
        found["runs"][algo] = {"path": str(run.path), "metrics": run.metrics}
    if backend == "jax":  # resume is backend-independent core + plugin code: one backend is enough
        found["resume"] = interrupted_then_resumed(f"{out}/resume")
    return found


def interrupted_then_resumed(out: str) -> dict:
    """gat stopped by Ctrl-C after epoch 10 of 20 (SIGINT raised from run.log), then resumed, beside an
    uninterrupted run of the same config: the history, the early-stopping state and the metrics. (gcn trains
    through the same loop in planetoid.py, without early stopping.)"""
    import signal

    import dlkit
    from dlkit.errors import TrainingInterrupted
    from dlkit.runs import Run

    backend = os.environ["KERAS_BACKEND"]
    found = {}
    original_log = Run.log

    def log_then_interrupt(self, index, **metrics):
        original_log(self, index, **metrics)
        if index == 10:
            signal.raise_signal(signal.SIGINT)  # what Ctrl-C does: the loop stops before epoch 11

    for algo, options in {"gat": {"heads": 2, "hidden": 4, "patience": 5}}.items():
        options = {"data": "cora", "epochs": 20, **options}
        whole = dlkit.train(algo, backend=backend, out=f"{out}/whole", echo=lambda *a: None, **options)
        Run.log = log_then_interrupt
        try:
            dlkit.train(algo, backend=backend, out=f"{out}/cut", echo=lambda *a: None, **options)
            raise AssertionError("the run was not interrupted")
        except TrainingInterrupted as exc:
            message = str(exc)
        finally:
            Run.log = original_log
        cut_path = next(Path(out, "cut", algo).iterdir())
        cut = {"metrics": json.loads((cut_path / "metrics.json").read_text()),
               "history": (cut_path / "history.csv").read_text()}
        resumed = dlkit.training.resume(cut_path, echo=lambda *a: None)
        found[algo] = {"message": message, "cut": cut, "resumed": resumed.metrics,
                       "resumed_history": (cut_path / "history.csv").read_text(), "whole": whole.metrics,
                       "whole_history": (whole.path / "history.csv").read_text()}
    return found


def evaluate(runs: list[str]) -> dict:
    from dlkit import training

    backend = os.environ["KERAS_BACKEND"]
    return {"backend": backend, "evaluated": {run: training.evaluate(run, backend=backend) for run in runs}}


if __name__ == "__main__":
    result = train(sys.argv[2]) if sys.argv[1] == "train" else evaluate(sys.argv[2:])
    print(json.dumps(result, default=str), flush=True)
