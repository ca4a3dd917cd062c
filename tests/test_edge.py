"""The edge pipeline: export to every quantize mode verified by LiteRT, pruning, QAT, bad input, and a
LiteRT-only environment (no TensorFlow, no Keras) running the exported file."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from dlkit.errors import DlkitError
from tests.conftest import REPO, requires_dataset

TINY = ("--test-samples", "200", "--latency-runs", "5")
MNIST = requires_dataset("mnist")  # cnn_run and full_export train the cnn on it


def train(cli, out: Path, *args: str) -> Path:
    done = cli("train", *args, "--out", str(out))
    assert done.returncode == 0, done.stderr[-2000:]
    algorithm = args[0]
    return next((out / algorithm).iterdir())


@pytest.fixture(scope="module")
def cnn_run(tmp_path_factory):
    from tests.conftest import run_cli

    return train(run_cli, tmp_path_factory.mktemp("runs"), "cnn", "--epochs", "1", "--train-samples", "1000",
                 "--test-samples", "200")


@pytest.fixture(scope="module")
def full_export(cnn_run, tmp_path_factory):
    """One export exercising everything: all quantize modes, 50% pruning, pruning-preserving QAT."""
    from tests.conftest import run_cli

    out = tmp_path_factory.mktemp("export") / "cnn"
    done = run_cli("export", str(cnn_run), "--tflite", "--quantize", "all", "--prune", "0.5", "--qat",
                   "--fine-tune-epochs", "2", "--learning-rate", "1e-3", "--tolerance", "10", "--out", str(out),
                   *TINY)
    return out, done


@MNIST
def test_export_every_mode_verified_by_litert(full_export):
    out, done = full_export
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    report = json.loads((out / "export_report.json").read_text())
    rows = {r["variant"]: r for r in report["variants"]}
    for variant in ("float32-dense", "float32-pruned50", "float16-pruned50", "dynamic-pruned50", "int8-pruned50",
                    "int8-qat-pruned50"):
        row = rows[variant]
        assert row["status"] == "✅", row
        assert (out / row["file"]).is_file() and row["size"] > 0 and row["latency_ms"] > 0
        assert row["gzip_size"] < row["size"] and 0.5 < row["accuracy"] <= 1
    assert rows["int8-pruned50"]["size"] < 0.35 * rows["float32-pruned50"]["size"]
    assert (out / "export_report.md").read_text().count("✅") >= 7
    assert "variant" in done.stdout and "report:" in done.stdout  # the table is printed
    assert list(report["versions"]) == ["keras", "numpy", "tensorflow", "ai-edge-litert", "tensorflow-model-optimization"]
    assert "not installed" not in report["versions"].values()


@MNIST
def test_pruning_reaches_the_requested_sparsity(full_export):
    out, _ = full_export
    rows = {r["variant"]: r for r in json.loads((out / "export_report.json").read_text())["variants"]}
    assert abs(rows["keras float32 pruned50"]["sparsity"] - 0.5) < 0.01
    assert rows["float32-pruned50"]["sparsity"] > 0.45  # the zeros survive conversion
    assert rows["int8-qat-pruned50"]["sparsity"] > 0.45  # pruning-preserving QAT keeps them
    assert rows["float32-pruned50"]["gzip_size"] < 0.75 * rows["float32-dense"]["gzip_size"]


@MNIST
@pytest.mark.parametrize("backend", ["jax", "torch"])
def test_pruned_keras_file_loads_on_other_backends(full_export, backend):
    out, _ = full_export
    code = ("import keras, numpy as np; m = keras.saving.load_model(%r); "
            "w = m.get_layer('dense').kernel; print(keras.backend.backend(), float(np.mean(np.asarray(w) == 0)))"
            % str(out / "cnn_pruned.keras"))
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env={**os.environ, "KERAS_BACKEND": backend}, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    name, zeros = done.stdout.split()
    assert name == backend and abs(float(zeros) - 0.5) < 0.01


@MNIST
def test_structured_2_of_4(cnn_run, tmp_path):
    import keras

    from dlkit.edge import prune

    model = keras.saving.load_model(cnn_run / "model.keras")
    x = np.random.default_rng(0).random((64, 28, 28, 1), dtype=np.float32)
    summary = prune.prune(model, x, np.zeros(64, "int64"), 0.5, pattern=prune.Pattern(2, 4), epochs=1,
                          echo=lambda *_: None)
    assert "conv2d" not in summary["layers"]  # its single input channel cannot be split into groups of 4
    kernel = keras.ops.convert_to_numpy(model.get_layer("dense").kernel)  # (9216, 128)
    groups = (np.moveaxis(kernel, -2, -1).reshape(128, -1, 4) != 0).sum(-1)
    assert np.all(groups <= 2)


@MNIST
def test_block_pruning(cnn_run):
    import keras

    from dlkit.edge import prune

    model = keras.saving.load_model(cnn_run / "model.keras")
    x = np.random.default_rng(0).random((64, 28, 28, 1), dtype=np.float32)
    summary = prune.prune(model, x, np.zeros(64, "int64"), 0.5, pattern=prune.Block(4), epochs=1,
                          echo=lambda *_: None)
    assert "conv2d" not in summary["layers"] and abs(summary["kernel_sparsity"] - 0.5) < 0.01
    kernel = keras.ops.convert_to_numpy(model.get_layer("dense").kernel)  # (9216, 128)
    nonzero = (np.moveaxis(kernel, -2, -1).reshape(128, -1, 4) != 0).sum(-1)
    assert set(np.unique(nonzero)) <= {0, 4}


def test_magnitude_mask_and_schedule():
    from dlkit.edge.prune import Block, Pattern, magnitude_mask, polynomial_sparsity

    w = np.random.default_rng(0).normal(size=(3, 3, 8, 16)).astype("float32")
    mask = magnitude_mask(w, 0.7)
    assert mask.mean() == pytest.approx(0.3, abs=1 / w.size)
    assert np.abs(w[mask == 0]).max() <= np.abs(w[mask == 1]).min()
    nm = magnitude_mask(w, 0.5, Pattern(2, 4))
    assert np.all(np.moveaxis(nm, -2, -1).reshape(3, 3, 16, 2, 4).sum(-1) == 2)
    blocks = magnitude_mask(w, 0.5, Block(4))
    grouped = np.moveaxis(blocks, -2, -1).reshape(3, 3, 16, 2, 4)
    assert np.all((grouped.sum(-1) == 0) | (grouped.sum(-1) == 4))  # whole blocks, kept or pruned
    assert blocks.mean() == pytest.approx(0.5)
    l1 = np.moveaxis(np.abs(w), -2, -1).reshape(3, 3, 16, 2, 4).sum(-1)
    assert l1[grouped.sum(-1) == 0].max() <= l1[grouped.sum(-1) == 4].min()
    assert polynomial_sparsity(0, 100, 0.5) == 0 and polynomial_sparsity(100, 100, 0.5) == 0.5
    assert polynomial_sparsity(50, 100, 0.5) == pytest.approx(0.5 * (1 - 0.5 ** 3))


def test_qat_optimizer_is_the_shared_adam_cosine_on_tf_keras():
    import tf_keras

    from dlkit.optimizers import adam_cosine

    optimizer = adam_cosine(1e-4, 2, 1000, 128, keras=tf_keras)
    assert isinstance(optimizer, tf_keras.optimizers.Adam)
    schedule = optimizer.get_config()["learning_rate"]
    assert schedule["class_name"] == "CosineDecay"
    assert (schedule["config"]["initial_learning_rate"], schedule["config"]["decay_steps"]) == (1e-4, 2 * 8)


def test_tf_keras_mirror_matches_mobilenet_exactly():
    import keras
    import tf_keras

    from dlkit import registry
    from dlkit.api import Dataset
    from dlkit.config import make_config
    from dlkit.edge import mirror

    x = np.random.default_rng(0).random((8, 28, 28, 1), dtype=np.float32)
    data = Dataset("fake", x, np.zeros(8, "int64"), x, np.zeros(8, "int64"), class_names=tuple("abcdefghij"),
                   input_shape=(28, 28, 1))
    entry = registry.get("mobilenet")
    model = entry.algorithm().build(make_config(entry.cls.config, {"alpha": 0.35}), data)
    twin = mirror.build(model, tf_keras)
    assert mirror.check(model, twin, x) <= 1e-5
    assert len(twin.get_weights()) == len(model.get_weights())
    folded = mirror.build(model, tf_keras, fold_batch_norm=True)  # what QAT trains: no batch norm left
    assert mirror.check(model, folded, x) <= 1e-4
    assert not any(isinstance(layer, tf_keras.layers.BatchNormalization) for layer in folded.layers)
    del keras


# -- a device-like environment ----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def litert_only_python(tmp_path_factory) -> Path:
    """A venv that sees ai-edge-litert and its dependencies (NumPy among them) and nothing else: no pip, no
    system site-packages; those distributions are linked from this environment, so nothing is downloaded."""
    from importlib import metadata

    from packaging.requirements import Requirement

    root = tmp_path_factory.mktemp("litert-only")
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(root / "venv")], check=True, timeout=300)
    python = root / "venv" / "bin" / "python"
    site = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          capture_output=True, text=True, check=True).stdout.strip()
    linked = root / "site-packages"
    linked.mkdir()
    todo, seen = ["ai-edge-litert"], set()
    while todo:
        dist = metadata.distribution(todo.pop())
        if dist.name in seen:
            continue
        seen.add(dist.name)
        for top in {f.parts[0] for f in dist.files or () if f.parts[0] not in ("..", "__pycache__")}:
            if not (linked / top).exists():  # a namespace folder (google/, backports/) shared by two
                (linked / top).symlink_to(dist.locate_file(top))
        todo += [req.name for req in map(Requirement, dist.requires or ())
                 if req.marker is None or req.marker.evaluate({"extra": ""})]
    (Path(site) / "litert_only.pth").write_text(f"{linked}\n")
    return python


@MNIST
def test_tflite_runs_with_only_litert_and_numpy(full_export, litert_only_python, tmp_path):
    out, _ = full_export
    python = litert_only_python
    absent = subprocess.run([str(python), "-c", "import tensorflow"], capture_output=True)
    assert absent.returncode != 0  # no TensorFlow there
    absent = subprocess.run([str(python), "-c", "import keras"], capture_output=True)
    assert absent.returncode != 0
    from dlkit import data as datasets

    mnist = datasets.load("mnist")
    np.savez(tmp_path / "test.npz", x=mnist.x_test[:200], y=mnist.y_test[:200])
    report = json.loads((out / "export_report.json").read_text())
    for row in report["variants"]:
        if row["variant"] not in ("int8-pruned50", "float32-dense"):
            continue
        done = subprocess.run([str(python), str(REPO / "edge" / "verify.py"), str(out / row["file"]),
                               str(tmp_path / "test.npz")], capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr[-2000:]
        measured = json.loads(done.stdout.strip().splitlines()[-1])
        assert measured["accuracy"] == pytest.approx(row["accuracy"], abs=1e-9)  # same test set, same numbers


# -- bad input: one line, exit 1, nothing left behind ------------------------------------------------------
def one_line_error(done) -> str:
    assert done.returncode == 1, done.stdout + done.stderr
    lines = [line for line in done.stderr.strip().splitlines() if line.startswith("Error:")]
    assert len(lines) == 1, done.stderr
    assert "Traceback" not in done.stderr
    return lines[0]


@MNIST
@pytest.mark.parametrize("args,message", [
    (["--quantize", "int4"], "unknown quantize mode 'int4'"),
    (["--prune", "1.5"], "strictly between 0 and 1"),
    (["--prune", "0"], "strictly between 0 and 1"),
    (["--structured", "2:4"], "--structured N:M needs --prune"),
    (["--prune", "0.3", "--structured", "2:4"], "pass --prune 0.5"),
    (["--prune", "0.5", "--structured", "4:2"], "N:M with 0 < N < M"),
    (["--block", "4"], "--block K needs --prune"),
    (["--prune", "0.5", "--block", "1"], "at least 2 weights"),
    (["--prune", "0.5", "--block", "4", "--structured", "2:4"], "choose one"),
])
def test_bad_options(cli, cnn_run, tmp_path, args, message):
    out = tmp_path / "exp"
    line = one_line_error(cli("export", str(cnn_run), "--tflite", "--out", str(out), *args))
    assert message in line
    assert not out.exists() and not list(tmp_path.glob(".partial-*"))


def test_no_format_and_unknown_targets(cli, tmp_path):
    assert "--tflite" in one_line_error(cli("export", "cnn", "--runs", str(tmp_path)))
    line = one_line_error(cli("export", "cnn", "--tflite", "--runs", str(tmp_path)))
    assert "no completed run of 'cnn'" in line and "dlkit train cnn" in line
    assert "Did you mean 'mobilenet'" in one_line_error(cli("export", "mobilenett", "--tflite"))


@MNIST
def test_run_folder_without_model(cli, cnn_run, tmp_path):
    run = tmp_path / "broken-run"
    run.mkdir()
    shutil.copy(cnn_run / "config.json", run / "config.json")
    line = one_line_error(cli("export", str(run), "--tflite", "--out", str(tmp_path / "exp")))
    assert "no model.keras" in line and not (tmp_path / "exp").exists()


def test_structured_that_cannot_apply(cli, tmp_path):
    run = train(cli, tmp_path / "runs", "mlp", "--data", "digits", "--hidden", "6", "--epochs", "1")
    out = tmp_path / "exp"
    line = one_line_error(cli("export", str(run), "--tflite", "--prune", "0.4", "--structured", "3:5",
                              "--out", str(out), *TINY))
    assert "no layer 3:5 structured sparsity" in line
    assert not out.exists() and not list(tmp_path.glob(".partial-*"))
    line = one_line_error(cli("export", str(run), "--tflite", "--prune", "0.5", "--block", "4",
                              "--out", str(out), *TINY))
    assert "no layer 4-weight block sparsity" in line
    assert not out.exists() and not list(tmp_path.glob(".partial-*"))


def fake_run(tmp_path: Path, model, data: str) -> Path:
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.json").write_text(json.dumps({"algorithm": "mlp", "distribution": "dlkit", "backend": "tensorflow",
                                                 "config": {"data": data, "epochs": 1}}))
    (run / "metrics.json").write_text(json.dumps({"status": "completed", "backend": "tensorflow"}))
    model.save(run / "model.keras")
    return run


def test_unsupported_op_is_named(cli, tmp_path):
    import keras
    from keras import layers

    inputs = keras.Input((8, 8, 1))
    hashed = keras.ops.cast(layers.Hashing(16)(inputs), "float32")  # string ops: not in TFLite's built-ins
    model = keras.Model(inputs, layers.Dense(10, activation="softmax")(layers.Flatten()(hashed)))
    out = tmp_path / "exp"
    line = one_line_error(cli("export", str(fake_run(tmp_path, model, "digits")), "--tflite", "--out", str(out),
                              *TINY))
    assert "ops TFLite cannot convert" in line and "StringToHashBucketFast" in line
    assert not out.exists() and not list(tmp_path.glob(".partial-*"))


def without(*modules: str) -> list[str]:
    """``python -c`` running the dlkit CLI as if ``modules`` were not installed (None in sys.modules makes both
    ``import`` and ``importlib.util.find_spec`` say so)."""
    hide = "; ".join(f"sys.modules[{name!r}] = None" for name in modules)
    return [sys.executable, "-c", f"import sys; {hide}; from dlkit.cli import main; main(prog_name='dlkit')"]


@pytest.mark.parametrize("missing, qat, named", [
    (("ai_edge_litert",), False, "ai_edge_litert"),
    (("tensorflow_model_optimization", "tf_keras"), True, "tensorflow_model_optimization, tf_keras"),
])
def test_without_the_edge_extra(tmp_path, missing, qat, named):
    import keras

    model = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Flatten(),
                              keras.layers.Dense(10, activation="softmax")])
    run = fake_run(tmp_path, model, "digits")
    out = tmp_path / "exp"
    args = ["export", str(run), "--tflite", "--out", str(out), *TINY, *(["--qat"] if qat else [])]
    done = subprocess.run(without(*missing) + args, capture_output=True, text=True, timeout=300, cwd=tmp_path)
    line = one_line_error(done)
    assert line == f"Error: dlkit export needs the edge extra (missing: {named}): pip install 'dlkit[edge]'"
    assert not out.exists() and not list(tmp_path.glob(".partial-*")) and not (tmp_path / "exports").exists()


def test_qat_modules_are_asked_for_only_with_qat(monkeypatch):
    from dlkit.edge.pipeline import ExportOptions, check_installed

    for name in ("tensorflow_model_optimization", "tf_keras"):
        monkeypatch.setitem(sys.modules, name, None)
    check_installed(ExportOptions())  # no --qat: nothing missing
    with pytest.raises(DlkitError, match=r"missing: tensorflow_model_optimization, tf_keras\)"):
        check_installed(ExportOptions(qat=True))


@MNIST
@pytest.mark.skipif(not __import__("dlkit.data").data.missing_files("cifar10"), reason="CIFAR-10 is cached here")
def test_no_data_for_calibration(cli, cnn_run, tmp_path):
    import keras

    model = keras.saving.load_model(cnn_run / "model.keras")
    line = one_line_error(cli("export", str(fake_run(tmp_path, model, "cifar10")), "--tflite", "--quantize", "int8",
                              "--out", str(tmp_path / "exp")))
    assert "needs mlp's data to verify the model and calibrate int8" in line and "cifar10" in line
    assert not (tmp_path / "exp").exists()


@pytest.mark.parametrize("backend", ["jax", "torch"])
def test_run_trained_on_another_backend_exports(cli, tmp_path, backend):
    run = train(cli, tmp_path / "runs", "mlp", "--backend", backend, "--data", "digits", "--epochs", "2")
    out = tmp_path / "exp"
    done = cli("export", "mlp", "--runs", str(tmp_path / "runs"), "--tflite", "--quantize", "int8", "--out", str(out),
               "--latency-runs", "5")
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    report = json.loads((out / "export_report.json").read_text())
    assert report["trained_on"] == backend and report["run"] == str(run)
    assert [r["status"] for r in report["variants"]] == ["✅", "✅", "✅"]


# -- recurrent text classifiers -------------------------------------------------------------------------
IMDB = requires_dataset("imdb_reviews")
TINY_TEXT = ("--epochs", "1", "--train-samples", "600", "--test-samples", "100", "--sequence-length", "40",
             "--vocab-size", "2000", "--units", "8", "--embedding", "8")


def tflite_ops(path: Path) -> set[str]:
    from dlkit.edge import verify

    return {op["op_name"] for op in verify.interpreter(path)._get_ops_details()}


@IMDB
def test_lstm_exports_as_a_verified_loop_and_int8_fails_in_one_row(cli, tmp_path):
    run = train(cli, tmp_path / "runs", "lstm", *TINY_TEXT)
    out = tmp_path / "exp"
    done = cli("export", str(run), "--tflite", "--quantize", "dynamic,int8", "--out", str(out), "--latency-runs", "5")
    report = json.loads((out / "export_report.json").read_text())
    rows = {r["variant"]: r for r in report["variants"]}
    assert [rows[v]["status"] for v in ("keras float32", "float32", "dynamic")] == ["✅", "✅", "✅"]
    assert rows["float32"]["accuracy"] == rows["keras float32"]["accuracy"]  # the same labels on all 100 reviews
    assert "WHILE" in tflite_ops(out / "lstm_float32.tflite")
    # int8 of the loop: TensorFlow 2.21's calibrator crashes; in a child process, so it is one ❌ row and the
    # export still completes (exit 1: a variant did not verify). A TensorFlow that can calibrate it makes a ✅
    assert rows["int8"]["status"] in ("✅", "❌")
    if rows["int8"]["status"] == "❌":
        assert done.returncode == 1 and "crashed (SIGSEGV) while quantizing to int8" in rows["int8"]["note"]
    # a device feeds int32 token ids, one text at a time, made with the vocabulary written beside the file
    from dlkit.edge import verify

    detail = verify.interpreter(out / "lstm_dynamic.tflite").get_input_details()[0]
    assert detail["dtype"] == np.int32 and list(detail["shape_signature"]) == [1, 40]
    assert json.loads((out / "vocabulary.json").read_text()) == json.loads(
        (run / "artifacts" / "vocabulary.json").read_text())
    assert "int32 token ids [1, 40]" in (out / "export_report.md").read_text()


def test_a_recurrent_loop_converts_to_a_litert_while_loop_at_batch_one(tmp_path):
    """A GRU (and any Keras recurrent layer) becomes a WHILE loop of built-in ops, at batch 1."""
    import keras

    from dlkit.edge import convert, verify

    inputs = keras.Input((12,), dtype="int32")
    x = keras.layers.Embedding(50, 4)(inputs)
    x = keras.layers.Bidirectional(keras.layers.GRU(3, return_sequences=True))(x)
    model = keras.Model(inputs, keras.layers.Dense(2, activation="softmax")(keras.layers.GlobalMaxPooling1D()(x)))
    tokens = np.random.default_rng(0).integers(0, 50, (7, 12)).astype("int32")
    path = convert.write(convert.to_tflite(model, "none", tokens), tmp_path / "gru.tflite")
    assert "WHILE" in tflite_ops(path)
    detail = verify.interpreter(path).get_input_details()[0]
    assert detail["dtype"] == np.int32 and list(detail["shape_signature"]) == [1, 12]
    np.testing.assert_allclose(verify.predict(path, tokens), model.predict(tokens, verbose=0), atol=1e-5)


def test_a_forecaster_is_refused(tmp_path):
    import keras

    from dlkit.edge.pipeline import ExportOptions, export

    inputs = keras.Input((4, 1))
    model = keras.Model(inputs, keras.layers.Dense(2)(keras.layers.Flatten()(inputs)))
    run = fake_run(tmp_path, model, "co2")
    config = json.loads((run / "config.json").read_text())
    config["algorithm"], config["config"] = "lstm", {"data": "co2", "epochs": 1, "window": 4, "horizon": 2}
    (run / "config.json").write_text(json.dumps(config))
    with pytest.raises(DlkitError, match="this lstm run was trained on 'co2', whose test targets are not class labels"):
        export(str(run), ExportOptions(out=str(tmp_path / "exp")))
    assert not (tmp_path / "exp").exists()
