"""The CLI as a user meets it: fast listing, clear one-line errors, nothing lost on bad input."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.conftest import requires_dataset, run_cli

HEAVY = ("keras", "tensorflow", "jax", "torch")


@pytest.mark.parametrize("args", [["--help"], ["--version"], ["list"], ["info", "cnn"], ["train", "--help"],
                                  ["train", "cnn", "--help"]])
def test_discovery_commands_import_no_backend(args):
    code = ("import sys; from click.testing import CliRunner; from dlkit.cli import main; "
            f"r = CliRunner().invoke(main, {args!r}); assert r.exit_code == 0, r.output; "
            f"print([m for m in {HEAVY!r} if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "[]"


def test_list_shows_builtins_with_distribution_and_status():
    out = run_cli("list")
    assert out.returncode == 0, out.stderr
    lines = {line.split()[0]: line for line in out.stdout.splitlines()[1:]}
    for name in ("mlp", "cnn"):
        assert "dlkit" in lines[name] and lines[name].rstrip().endswith("ok")
    as_json = json.loads(run_cli("list", "--json").stdout)
    cnn = next(p for p in as_json if p["name"] == "cnn")
    assert cnn["distribution"] == "dlkit" and cnn["status"] == "ok" and "MNIST" in cnn["summary"]


def test_list_glob_filters():
    out = run_cli("list", "m*")
    names = [line.split()[0] for line in out.stdout.splitlines()[1:]]
    assert "mlp" in names and "cnn" not in names


def test_info_lists_options_datasets_backends():
    out = run_cli("info", "mlp")
    assert out.returncode == 0
    assert "--activation" in out.stdout and "relu|tanh|sigmoid" in out.stdout
    assert "datasets: mnist (default), fashion_mnist" in out.stdout
    assert "backends: tensorflow, jax, torch" in out.stdout
    assert "Rumelhart" in out.stdout  # the module docstring cites the paper


@pytest.mark.parametrize("args, message", [
    (["train", "cnnn"], "unknown algorithm 'cnnn'. Did you mean 'cnn'?"),
    (["info", "mpl"], "unknown algorithm 'mpl'. Did you mean 'mlp'?"),
    (["train", "cnn", "--backend", "jaxx"], "unknown backend 'jaxx'"),
    (["train", "cnn", "--epochs", "three"], "'three' is not a valid integer"),
    (["train", "cnn", "--epochs", "0"], "0 is not in the range x>=1"),
    (["train", "mlp", "--activation", "gelu"], "'gelu' is not one of 'relu', 'tanh', 'sigmoid'"),
    (["train", "cnn", "--data", "mnits"], "'mnits' is not one of 'mnist', 'fashion_mnist'"),
    (["evaluate", "/nonexistent/run"], "run folder '/nonexistent/run' does not exist"),
])
def test_bad_input_is_one_clear_line(args, message, tmp_path):
    out = run_cli(*args, "--out", str(tmp_path)) if args[0] == "train" and "--help" not in args else run_cli(*args)
    assert out.returncode != 0
    assert message in out.stderr
    assert "Traceback" not in out.stderr
    assert not any(tmp_path.rglob("*.keras"))  # nothing half-made


def test_missing_dataset_offline_says_where_to_put_it(tmp_path):
    out = run_cli("train", "cnn", "--out", str(tmp_path / "runs"),
                  env={"KERAS_HOME": str(tmp_path / "empty"), "DLKIT_OFFLINE": "1"})
    assert out.returncode == 1 and "Traceback" not in out.stderr
    assert "dataset 'mnist' is not cached" in out.stderr
    assert "https://storage.googleapis.com/tensorflow/tf-keras-datasets/mnist.npz" in out.stderr
    assert str(tmp_path / "empty" / "datasets" / "mnist.npz") in out.stderr
    assert not (tmp_path / "runs").exists()  # no empty run folder left behind


def test_data_add_checks_the_hash(tmp_path):
    fake = tmp_path / "mnist.npz"
    fake.write_bytes(b"not mnist")
    out = run_cli("data", "add", str(fake), env={"KERAS_HOME": str(tmp_path / "home")})
    assert out.returncode == 1 and "does not match the published sha256" in out.stderr
    assert not (tmp_path / "home" / "datasets" / "mnist.npz").exists()


def test_corrupt_model_file_is_reported_not_crashed(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.json").write_text(json.dumps({"algorithm": "mlp", "distribution": "dlkit", "backend": "tensorflow",
                                                 "config": {"data": "digits", "epochs": 1}}))
    out = run_cli("evaluate", str(run))
    assert out.returncode == 1 and "no model.keras in" in out.stderr
    (run / "model.keras").write_bytes(b"PK\x03\x04 truncated zip")
    out = run_cli("evaluate", str(run))
    assert out.returncode == 1 and "is not a loadable Keras model" in out.stderr and "Traceback" not in out.stderr
    assert (run / "model.keras").read_bytes() == b"PK\x03\x04 truncated zip"  # evaluate never rewrites it


def test_debug_shows_the_traceback():
    out = run_cli("--debug", "evaluate", "/nonexistent/run")
    assert out.returncode != 0 and "Traceback" in out.stderr


@requires_dataset("mnist")
def test_doctor_reports_backends_and_cache():
    out = run_cli("doctor")
    assert out.returncode == 0, out.stderr
    assert "keras" in out.stdout and "dataset cache:" in out.stdout
    for backend in ("tensorflow", "jax", "torch"):
        assert f"  {backend}" in out.stdout
    assert "mnist          present" in out.stdout
