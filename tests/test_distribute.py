"""--distribute data-parallel: keras.distribution.DataParallel on two simulated CPU devices (JAX) gives the loss
curve of one device, the model reloads on TensorFlow and PyTorch, and what cannot work is refused in one line."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import run_cli

pytestmark = pytest.mark.e2e  # about 40 s: one JAX process training three tiny runs, two reloads
SCRIPT = Path(__file__).with_name("distribute_check.py")
TWO_CPUS = {"XLA_FLAGS": "--xla_force_host_platform_device_count=2"}


@pytest.fixture(scope="module")
def found(tmp_path_factory) -> dict:
    out = tmp_path_factory.mktemp("distribute")
    proc = subprocess.run([sys.executable, str(SCRIPT), str(out)], capture_output=True, text=True, timeout=400,
                          env={**os.environ, **TWO_CPUS, "KERAS_BACKEND": "jax"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_two_devices_follow_the_loss_curve_of_one(found):
    one, two = found["1"], found["2"]
    assert one["metrics"]["distribute"]["devices"] == ["cpu:0"]
    assert two["metrics"]["distribute"] == {"mode": "data-parallel", "devices": ["cpu:0", "cpu:1"],
                                            "batches_split": True, "examples_dropped": 0}
    # the same global batch: only the order of the float32 sums differs (the gradient all-reduce)
    assert two["loss"] == pytest.approx(one["loss"], rel=1e-5)
    assert two["metrics"]["test"]["accuracy"] == pytest.approx(one["metrics"]["test"]["accuracy"], abs=1 / 360)


@pytest.mark.parametrize("backend", ["tensorflow", "torch"])
def test_the_data_parallel_model_reloads_on_the_other_backends(found, backend):
    proc = run_cli("evaluate", found["2"]["path"], "--backend", backend, "--json")
    assert proc.returncode == 0, proc.stderr[-2000:]
    evaluated = json.loads(proc.stdout)
    assert evaluated["backend"] == backend
    assert evaluated["test"]["accuracy"] == pytest.approx(found["2"]["metrics"]["test"]["accuracy"], abs=1e-9)


def test_more_devices_than_present_or_an_indivisible_batch_is_one_line(found):
    assert found["refused {'devices': 3}"] == (
        "--devices 3, but jax sees 2 device(s) (cpu:0, cpu:1); on a CPU, simulate 3 with "
        "XLA_FLAGS=--xla_force_host_platform_device_count=3")
    assert found["refused {'devices': 2, 'batch_size': 33}"].startswith(
        "--batch-size 33 does not split evenly over 2 devices")


@pytest.mark.parametrize("args, message", [
    (["--backend", "tensorflow", "--distribute", "data-parallel"], "data-parallel training needs the jax backend"),
    (["--backend", "torch", "--distribute", "data-parallel"], "data-parallel training needs the jax backend"),
    (["--backend", "jax", "--devices", "2"], "--devices needs --distribute data-parallel"),
    (["--backend", "jax", "--distribute", "data-parallel", "--devices", "0"], "--devices must be at least 1"),
    (["--backend", "jax", "--distribute", "model-parallel"], "'model-parallel' is not 'data-parallel'"),
])
def test_unsupported_requests_are_refused_before_anything_is_written(args, message, tmp_path):
    proc = run_cli("train", "mlp", "--data", "digits", *args, "--out", str(tmp_path))
    assert proc.returncode != 0 and message in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr and not any(tmp_path.iterdir())
