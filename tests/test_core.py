"""Unit tests of the core's pieces on tiny data, in this process: prepare (data of any shape),
metrics.classification, and the run services (history, checkpoint and restore, artifacts)."""
from __future__ import annotations

import csv
import json
from dataclasses import dataclass

import numpy as np
import pytest

from dlkit.api import BaseConfig, Dataset, TrainConfig
from dlkit.errors import DlkitError
from dlkit.runs import Run
from dlkit.training import num_examples, prepare


def seq2seq_data(n_train=10, n_test=6) -> Dataset:
    """(encoder, decoder) inputs and decoder targets whose values say which example they are."""
    def split(n, offset):
        ids = np.arange(offset, offset + n)
        return (ids[:, None] * np.ones((1, 3)), ids[:, None] * np.ones((1, 2))), ids * 10

    (x_train, y_train), (x_test, y_test) = split(n_train, 0), split(n_test, 100)
    return Dataset("toy", x_train, y_train, x_test, y_test, info={"vocab": ["a", "b"]})


def test_sample_limits_apply_inside_nested_inputs():
    cfg = TrainConfig(train_samples=4, test_samples=2)
    data = prepare(seq2seq_data(), cfg)
    (enc, dec), y = data.x_train, data.y_train
    assert enc.shape == (4, 3) and dec.shape == (4, 2) and y.tolist() == [0, 10, 20, 30]
    assert data.x_test[0].shape == (2, 3) and data.y_test.tolist() == [1000, 1010]
    assert data.info == {"vocab": ["a", "b"]}  # info passes through untouched


def test_validation_split_moves_the_same_examples_out_of_every_array():
    data = prepare(seq2seq_data(n_train=20), TrainConfig(val_fraction=0.25, seed=3))
    (enc, dec), y = data.x_train, data.y_train
    (val_enc, val_dec), val_y = data.x_val, data.y_val
    assert len(val_y) == 5 and len(y) == 15
    # row i of every array belongs to the same example: encoder id × 10 == target
    for e, d, t in ((enc, dec, y), (val_enc, val_dec, val_y)):
        assert (e[:, 0] * 10 == t).all() and (d[:, 0] * 10 == t).all()
    assert not set(y.tolist()) & set(val_y.tolist())
    again = prepare(seq2seq_data(n_train=20), TrainConfig(val_fraction=0.25, seed=3))
    assert again.y_val.tolist() == val_y.tolist()  # the split is seeded


def test_none_targets_and_datasets_without_arrays():
    images = np.zeros((8, 4, 4, 1), "float32")
    data = prepare(Dataset("gan", images, None, images[:3], None), TrainConfig(train_samples=5, val_fraction=0.2))
    assert data.x_train.shape[0] == 4 and data.y_train is None and data.x_val.shape[0] == 1 and data.y_val is None
    agent = prepare(Dataset("CartPole-v1", info={"env_id": "CartPole-v1"}), BaseConfig())
    assert agent.x_train is None and agent.info["env_id"] == "CartPole-v1"
    assert num_examples((agent.x_train, agent.y_train)) == 0


def test_fixed_splits_refuse_resplitting_in_one_line():
    graph = Dataset("cora", info={"graph": "…"}, fixed_splits=True)
    assert prepare(graph, TrainConfig()) is graph
    with pytest.raises(DlkitError, match="dataset 'cora' comes with fixed .* --train-samples and --val-fraction"):
        prepare(graph, TrainConfig(train_samples=10, val_fraction=0.1))


def test_arrays_of_different_lengths_in_one_split_are_one_line():
    bad = Dataset("bad", (np.zeros((5, 2)), np.zeros((4, 2))), np.zeros(5), np.zeros((2, 2)), np.zeros(2))
    with pytest.raises(DlkitError, match=r"different lengths \[4, 5\]"):
        prepare(bad, TrainConfig())


def test_patience_needs_a_validation_split():
    with pytest.raises(DlkitError, match="--patience .* add --val-fraction"):
        prepare(seq2seq_data(), TrainConfig(patience=2))
    assert prepare(seq2seq_data(), TrainConfig(patience=2, val_fraction=0.2)).x_val is not None


def test_classification_metrics_on_known_predictions():
    from dlkit import metrics

    class Fixed:
        def predict(self, x, batch_size=None, verbose=0):
            return np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4], [0.5, 0.5]])

    data = Dataset("toy", None, None, np.zeros((4, 1)), np.array([0, 1, 1, 0]), class_names=("a", "b"))
    result = metrics.classification(Fixed(), data)
    assert result["accuracy"] == pytest.approx(0.75)  # the third is wrong; a tie goes to class 0
    assert result["confusion_matrix"] == [[2, 0], [1, 1]]
    assert result["loss"] == pytest.approx(-np.mean(np.log([0.9, 0.8, 0.4, 0.5])))
    assert result["test_samples"] == 4


def test_log_writes_history_with_its_index_column_and_late_metrics(tmp_path):
    run = new_run(tmp_path, unit="step")
    run.log(100, loss=2.0)
    run.log(200, loss=1.5, val_loss=1.7)
    rows = list(csv.DictReader(open(run.path / "history.csv")))
    assert [r["step"] for r in rows] == ["100", "200"]
    assert rows[0]["val_loss"] == "" and float(rows[1]["val_loss"]) == 1.7
    assert run.metric_history() == {"loss": [2.0, 1.5], "val_loss": [None, 1.7]}


def new_run(tmp_path, unit="epoch") -> Run:
    run = Run.create(tmp_path, "toy", "tensorflow", unit=unit)
    run.write_config({"algorithm": "toy", "budget_unit": unit, "config": {}})
    return run


def tiny_model(seed=0):
    import keras

    keras.utils.set_random_seed(seed)
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(4), keras.layers.BatchNormalization(),
                              keras.layers.Dropout(0.5), keras.layers.Dense(2)])
    model.compile(keras.optimizers.Adam(1e-2), "mse")
    return model


def test_checkpoint_and_restore_bring_back_models_optimizers_and_values(tmp_path):
    import keras

    x, y = np.random.default_rng(0).normal(size=(16, 3)), np.zeros((16, 2))
    model, other = tiny_model(0), tiny_model(1)
    model.fit(x, y, epochs=2, verbose=0)
    other_opt = keras.optimizers.SGD(0.1)
    other_opt.build(other.trainable_variables)
    run = new_run(tmp_path)
    run.log(1, loss=1.0)
    run.log(2, loss=0.5)
    run.checkpoint(2, model, other=other, other_opt=other_opt, epsilon=0.25, buffer=np.arange(5))
    run.log(3, loss=0.25)  # logged after the last checkpoint: dropped on resume

    again = Run.open(run.path)
    assert again.prepare_resume() == 2 and again.history["epoch"] == [1, 2]
    fresh, fresh_other = tiny_model(5), tiny_model(6)
    again.restore_model(fresh)
    fresh_other_opt = keras.optimizers.SGD(0.1)
    fresh_other_opt.build(fresh_other.trainable_variables)
    values = again.restore(other=fresh_other, other_opt=fresh_other_opt)
    assert values["epsilon"] == 0.25 and values["buffer"].tolist() == [0, 1, 2, 3, 4]
    for a, b in zip(model.variables + other.variables, fresh.variables + fresh_other.variables):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))  # incl. BN statistics, seed state
    assert int(fresh.optimizer.iterations) == int(model.optimizer.iterations) == 2
    for a, b in zip(model.optimizer.variables, fresh.optimizer.variables):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert keras.saving.load_model(run.model_path).count_params() == model.count_params()


def test_restore_refuses_a_different_model_in_one_line(tmp_path):
    import keras

    run = new_run(tmp_path)
    run.checkpoint(1, tiny_model())
    run = Run.open(run.path)
    run.prepare_resume()
    wider = keras.Sequential([keras.Input((3,)), keras.layers.Dense(5), keras.layers.BatchNormalization(),
                              keras.layers.Dropout(0.5), keras.layers.Dense(2)])
    with pytest.raises(DlkitError, match="has shape .* the run was made by a different model"):
        run.restore(model=wider)
    with pytest.raises(DlkitError, match="holds no 'critic'"):
        run.restore(critic=wider)


def test_a_kill_between_the_two_renames_keeps_the_previous_checkpoint(tmp_path):
    run = new_run(tmp_path)
    run.checkpoint(1, tiny_model())
    (run.path / "resume").rename(run.path / ".resume-old")  # as if killed right after the first rename
    assert Run.open(run.path).checkpoint_index() == 1


def test_artifacts_round_trip_and_a_missing_one_is_one_line(tmp_path):
    run = new_run(tmp_path)
    run.save_artifact("vocab.json", {"tokens": ["a", "b"]})
    run.save_artifact("env.txt", "CartPole-v1")
    reopened = Run.open(run.path)
    assert reopened.load_artifact("vocab.json") == {"tokens": ["a", "b"]}
    assert reopened.load_artifact("env.txt", kind="text") == "CartPole-v1"
    with pytest.raises(DlkitError, match="has no artifacts/tokenizer.json"):
        reopened.load_artifact("tokenizer.json")
    with pytest.raises(DlkitError, match="plain file names"):
        run.save_artifact("../escape.txt", "x")
    assert not list(run.path.rglob(".partial-*"))


@dataclass
class AgentConfig(BaseConfig):
    total_steps: int = 10


def test_an_agent_config_has_no_array_options():
    from dlkit.config import click_options

    names = {o.name for o in click_options(AgentConfig)}
    assert names == {"seed", "total_steps"}
    assert json.loads(json.dumps(AgentConfig().to_dict())) == {"seed": 0, "total_steps": 10}


def test_default_hooks_are_chosen_by_task():
    from dlkit import tasks
    from dlkit.api import Algorithm

    class Classifier(Algorithm):
        name = "c"

    class Sampler(Algorithm):
        name = "s"
        task = "generation"

    assert tasks.hook(Classifier(), "evaluate") is tasks.DEFAULTS["evaluate"]["classification"]
    assert tasks.hook(Sampler(), "load_data") is tasks.DEFAULTS["load_data"]["*"]  # arrays for any task
    with pytest.raises(DlkitError, match="plugin 's' has task 'generation', which has no default evaluate"):
        tasks.hook(Sampler(), "evaluate")
    assert tasks.hook(Sampler(), "extra_plots").__self__.__class__ is Sampler


def test_image_grid_tiles_the_samples_pixel_for_pixel(tmp_path):
    import matplotlib.image

    from dlkit.plots import image_grid

    images = np.zeros((5, 4, 3, 1), dtype="float32")
    images[4] = 1.0  # the last image white, the others black
    grid = matplotlib.image.imread(image_grid(images, tmp_path / "grid.png", columns=2, scale=1))
    assert grid.shape[:2] == (3 * 4 + 2 * 2, 2 * 3 + 2)     # 3 rows, 2 columns, 2-pixel gaps
    assert grid[12:16, 0:3, 0].min() == 1.0 and grid[0:4, 0:3, 0].max() == 0.0
    with pytest.raises(ValueError, match=r"\(N, H, W, C\)"):
        image_grid(np.zeros((0, 4, 4, 1)), tmp_path / "empty.png")


def test_an_error_keras_wrapped_is_reported_by_its_own_line():
    from dlkit.errors import first_line, one_line

    wrapped = ValueError("Exception encountered when calling Functional.call().\n\n\x1b[1mInvalid input shape "
                         "(1,)\x1b[0m\n\nArguments received by Functional.call():\n  • inputs=...")
    assert first_line(wrapped) == "Invalid input shape (1,)"
    assert one_line(wrapped) == "ValueError: Invalid input shape (1,)"
    assert first_line(ValueError("\n  plain\nsecond")) == "plain" and first_line(KeyError()) == "KeyError"
