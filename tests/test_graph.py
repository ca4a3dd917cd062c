"""gcn and gat: the Planetoid reader (node, edge and feature counts, the public split, CiteSeer's
isolated test nodes); the graph layers against dense NumPy on TensorFlow, JAX and PyTorch; a few
epochs of each plugin on real Cora on each backend, each run reloaded on another backend; gat
interrupted by Ctrl-C and resumed to the uninterrupted result; bad input refused in one line.

Starting a backend costs more than the tiny trainings, so tests/graph_check.py does the Keras work in
one process per backend, two processes at a time.
"""
from __future__ import annotations

import functools
import pickle
import shutil
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from dlkit import data
from dlkit.plugins.planetoid import planetoid_dataset, read_planetoid
from tests.conftest import BACKENDS, run_check, run_cli

pytestmark = pytest.mark.e2e  # about a minute on two cores: six processes, each starting a backend
SCRIPT = Path(__file__).with_name("graph_check.py")
check = functools.partial(run_check, SCRIPT, timeout=400)
#: where each backend's runs are reloaded and evaluated (two processes: each start of a backend costs seconds)
NEXT = {"tensorflow": "torch", "jax": "tensorflow", "torch": "tensorflow"}


@pytest.fixture(scope="module", autouse=True)
def planetoid():
    missing = [f.relpath for name in ("cora", "citeseer", "pubmed") for f in data.missing_files(name)]
    if missing:
        pytest.skip(f"needs the Planetoid files: {', '.join(missing[:3])}… not in {data.keras_cache_dir()} "
                    f"(tests/conftest.py copies them from ../shared/datasets/planetoid)")


@pytest.fixture(scope="module")
def found(tmp_path_factory):
    """Train on each backend (layer checks included), then evaluate each backend's runs on another."""
    out = tmp_path_factory.mktemp("graph")
    with ThreadPoolExecutor(2) as pool:
        trained = dict(zip(BACKENDS, pool.map(lambda b: check("train", str(out / b), backend=b), BACKENDS)))
        targets = sorted(set(NEXT.values()))
        jobs = {t: pool.submit(check, "evaluate", *[r["path"] for b in BACKENDS if NEXT[b] == t
                                                    for r in trained[b]["runs"].values()], backend=t)
                for t in targets}
        evaluated = {t: job.result() for t, job in jobs.items()}
        return {b: {**trained[b], "evaluation": evaluated[NEXT[b]]} for b in BACKENDS}


# -- the reader, without Keras ----------------------------------------------------------------------------
def test_cora_has_the_published_counts_and_the_public_split():
    cora = read_planetoid("cora")
    assert cora["features"].shape == (2708, 1433)
    assert len(cora["edges"]) == 5278  # the 5,429 citations less duplicates; no self-loops
    assert (cora["edges"][:, 0] < cora["edges"][:, 1]).all()
    assert [int(cora[f"{s}_mask"].sum()) for s in ("train", "val", "test")] == [140, 500, 1000]
    assert not (cora["train_mask"] & cora["val_mask"]).any() and not (cora["val_mask"] & cora["test_mask"]).any()
    assert np.bincount(cora["labels"][cora["train_mask"]]).tolist() == [20] * 7
    assert np.allclose(cora["features"].sum(axis=1), 1.0, atol=1e-5)  # row-normalised


def test_test_rows_are_moved_to_the_nodes_named_in_test_index():
    folder = data.fetch("cora")
    with open(folder / "ind.cora.tx", "rb") as fh:
        tx = pickle.load(fh, encoding="latin1").toarray()
    order = [int(v) for v in (folder / "ind.cora.test.index").read_text().split()]
    cora = read_planetoid("cora")
    assert order != sorted(order)  # the file is not sorted: the reordering matters
    # row k of tx is node test.index[k] (not the k-th smallest index)
    node = order[5]
    assert node != sorted(order)[5]
    expected = tx[5] / tx[5].sum()
    assert np.allclose(cora["features"][node], expected, atol=1e-6)
    assert cora["test_mask"][order].all()


def test_citeseer_isolated_test_nodes_get_empty_rows_and_no_split():
    citeseer = read_planetoid("citeseer")
    assert citeseer["features"].shape == (3327, 3703) and len(citeseer["edges"]) == 4552
    unlabelled = np.flatnonzero(citeseer["labels"] < 0)
    assert unlabelled.tolist() == [2407, 2489, 2553, 2682, 2781, 2953, 3042, 3063, 3212, 3214, 3250, 3292, 3305,
                                   3306, 3309]
    assert (citeseer["features"][unlabelled] == 0).all()
    assert not any(citeseer[f"{s}_mask"][unlabelled].any() for s in ("train", "val", "test"))
    assert [int(citeseer[f"{s}_mask"].sum()) for s in ("train", "val", "test")] == [120, 500, 1000]
    assert np.isin(unlabelled, citeseer["edges"]).all()  # their edges are kept


def test_pubmed_counts_and_the_model_inputs():
    pubmed = planetoid_dataset("pubmed")
    values, nodes, columns, senders, receivers = pubmed.x_train
    assert pubmed.input_shape == (500,) and pubmed.num_classes == 3 and pubmed.fixed_splits
    assert len(pubmed.info["labels"]) == 19717 and len(pubmed.info["edges"]) == 44324
    assert senders.shape == receivers.shape == (1, 2 * 44324 + 19717)  # both directions and a self-loop per node
    assert values.shape == nodes.shape == columns.shape == (1, 988_031)  # the nonzero features only (10%)
    assert [int(pubmed.info[f"{s}_mask"].sum()) for s in ("train", "val", "test")] == [60, 500, 1000]


# -- the layers and a few epochs on each backend -----------------------------------------------------------
@pytest.mark.parametrize("backend", BACKENDS)
def test_message_passing_equals_the_dense_formulas(found, backend):
    layers = found[backend]["layers"]
    assert found[backend]["backend"] == backend
    assert layers["gcn_vs_dense"] < 1e-5, layers       # D^-1/2 (A+I) D^-1/2 X W
    assert layers["gat_vs_dense"] < 1e-5, layers       # softmax over each node's neighbours
    assert layers["batch_gap"] < 1e-5, layers          # two graphs in a batch stay apart
    assert layers["sparse_features_gap"] == 0.0, layers


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("algo", ["gcn", "gat"])
def test_trains_on_cora_and_reloads_on_another_backend(found, backend, algo):
    run = found[backend]["runs"][algo]
    metrics = run["metrics"]
    assert metrics["status"] == "completed" and metrics["backend"] == backend and metrics["dataset"] == "cora"
    assert metrics["headline"]["metric"] == "accuracy" and metrics["test"]["test_nodes"] == 1000
    assert metrics["epochs_completed"] in (1, 2, 3)
    path = Path(run["path"])
    history = (path / "history.csv").read_text().splitlines()
    assert history[0] == "epoch,accuracy,loss,val_accuracy,val_loss" and len(history) == 1 + metrics["epochs_completed"]
    assert (path / "plots" / "embedding.png").stat().st_size > 10_000
    evaluated = found[backend]["evaluation"]["evaluated"][run["path"]]
    assert evaluated["backend"] == NEXT[backend]
    assert abs(evaluated["test"]["accuracy"] - metrics["test"]["accuracy"]) < 1e-9
    assert abs(evaluated["test"]["loss"] - metrics["test"]["loss"]) < 1e-4


# -- bad input: one line, exit 1 ------------------------------------------------------------------------------
def test_gat_interrupted_by_ctrl_c_resumes_to_the_uninterrupted_result(found):
    """Ctrl-C after epoch 10 of 20, then --resume: the same 14 history rows (early stopping's patience counts
    across the interruption), the same kept epoch and the same test metrics as a run never interrupted."""
    resumed = found["jax"]["resume"]["gat"]
    assert "--resume" in resumed["message"]
    assert resumed["cut"]["metrics"]["status"] == "interrupted" and resumed["cut"]["metrics"]["epochs_completed"] == 10
    assert len(resumed["cut"]["history"].strip().splitlines()) == 1 + 10
    assert resumed["resumed"]["status"] == "completed" and resumed["resumed"]["resumed"][0]["from"] == 10
    assert resumed["resumed_history"] == resumed["whole_history"]
    assert resumed["resumed"]["epochs_completed"] == resumed["whole"]["epochs_completed"] < 20  # stopped early
    for key in ("accuracy", "loss", "val_accuracy"):
        assert resumed["resumed"]["test"][key] == pytest.approx(resumed["whole"]["test"][key], abs=1e-6)


def test_a_checkpoint_saved_as_patience_ran_out_resumes_to_no_more_epochs():
    """Ctrl-C that arrives with the epoch that exhausts the patience: the checkpoint holds the counters,
    and the resumed loop must stop, not train on (it did, when the stop decision lived only in the loop)."""
    from dlkit.plugins.planetoid import EarlyStopping

    stopping = EarlyStopping(3, {"best_accuracy": 0.5, "best_loss": 1.0, "epoch": 1}, [])
    assert not stopping.exhausted
    decisions = [stopping.update({"accuracy": 0.4, "loss": 2.0}, model=None) for _ in range(3)]  # no progress
    assert decisions == [False, False, True] and stopping.exhausted
    assert EarlyStopping(3, stopping.state(), []).exhausted           # what --resume rebuilds from the checkpoint
    assert not EarlyStopping(0, {"waited": 9}, []).exhausted          # patience 0: early stopping off


class _Weights:
    """Stands in for a model: its "weights" are the number of the epoch that set them."""

    def __init__(self):
        self.epoch = 0

    def get_weights(self):
        import numpy as np

        return [np.array(self.epoch)]


@pytest.mark.parametrize("monitor, kept, stopped_after", [
    ("both", 1, 5),       # epoch 2 improves only the accuracy, 3 only the loss: progress, but nothing new kept
    ("accuracy", 2, 4),   # the accuracy peaks at epoch 2; patience 2 runs out at epoch 4
    ("loss", 3, 5),       # the loss bottoms at epoch 3; patience 2 runs out at epoch 5
])
def test_early_stopping_keeps_and_stops_by_what_it_monitors(monitor, kept, stopped_after):
    from dlkit.plugins.planetoid import EarlyStopping

    history = [(0.70, 1.00), (0.75, 1.10), (0.72, 0.90), (0.71, 0.95), (0.70, 0.97), (0.69, 0.99)]
    model, stopping = _Weights(), EarlyStopping(2, None, [], monitor=monitor)
    for model.epoch, (accuracy, loss) in enumerate(history, start=1):
        if stopping.update({"accuracy": accuracy, "loss": loss}, model):
            break
    assert (int(stopping.weights[0]), stopping.best_epoch, model.epoch) == (kept, kept, stopped_after)


@pytest.mark.parametrize("args, message", [
    (["gcn", "--hidden", "0"], "'--hidden': 0 is not in the range x>=1"),
    (["gat", "--heads", "0"], "'--heads': 0 is not in the range x>=1"),
    (["gcn", "--data", "karate"], "'karate' is not one of 'cora', 'citeseer', 'pubmed'"),
])
def test_bad_options_are_one_line(args, message, tmp_path):
    proc = run_cli("train", *args, cwd=tmp_path)  # not the repository root, where a stale dlkit.egg-info may be
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    assert message in proc.stderr, proc.stderr


def test_a_truncated_or_missing_graph_file_is_named_in_one_line(tmp_path):
    cache = tmp_path / "keras" / "datasets" / "planetoid"
    cache.mkdir(parents=True)
    for source in data.fetch("cora").glob("ind.cora.*"):
        shutil.copyfile(source, cache / source.name)
    graph = cache / "ind.cora.graph"
    graph.write_bytes(graph.read_bytes()[:1000])
    env = {"KERAS_HOME": str(tmp_path / "keras"), "DLKIT_OFFLINE": "1"}
    proc = run_cli("train", "gcn", "--epochs", "1", "--out", str(tmp_path / "runs"), env=env, cwd=tmp_path)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert "ind.cora.graph is 1000 bytes, not the published 59847" in proc.stderr
    graph.unlink()
    proc = run_cli("train", "gcn", "--epochs", "1", "--out", str(tmp_path / "runs"), env=env, cwd=tmp_path)
    assert proc.returncode == 1 and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert "ind.cora.graph" in proc.stderr and "DLKIT_OFFLINE=1" in proc.stderr
