"""``dlkit train --resume``: a run killed mid-epoch (SIGKILL: no handler runs) keeps a loadable model and
resumes to completion, close to an uninterrupted run; every refusal is one line."""
from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import requires_dataset, run_cli

pytestmark = [pytest.mark.e2e, requires_dataset("mnist")]
# 4 epochs of 12,000 real MNIST digits: long enough to kill in the middle, short enough for the suite
RECIPE = ["mlp", "--hidden", "128", "--epochs", "4", "--train-samples", "12000", "--test-samples", "2000",
          "--batch-size", "64", "--backend", "jax"]


def only_run(out: Path) -> Path:
    runs = list((out / "mlp").iterdir())
    assert len(runs) == 1, runs
    return runs[0]


def history(run: Path) -> list[dict]:
    return list(csv.DictReader(open(run / "history.csv")))


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory) -> dict:
    out = tmp_path_factory.mktemp("whole")
    proc = run_cli("train", *RECIPE, "--out", str(out))
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads((only_run(out) / "metrics.json").read_text())


def test_sigkill_mid_epoch_then_resume_completes_like_an_uninterrupted_run(tmp_path, uninterrupted):
    proc = subprocess.Popen([sys.executable, "-m", "dlkit", "train", *RECIPE, "--out", str(tmp_path)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None:
        rows = list(tmp_path.glob("mlp/*/history.csv"))
        if rows and len(history(rows[0].parent)) >= 2:
            break  # epoch 2 logged: its checkpoint is being written or epoch 3 has begun
        time.sleep(0.02)
    assert proc.poll() is None, "training ended before it could be killed"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    run = only_run(tmp_path)
    killed = json.loads((run / "metrics.json").read_text())
    assert killed["status"] == "running"  # nothing could record the kill
    loads = subprocess.run([sys.executable, "-c", "import sys, keras; keras.saving.load_model(sys.argv[1])",
                            str(run / "model.keras")], capture_output=True, text=True, timeout=300)
    assert loads.returncode == 0, loads.stderr[-2000:]  # atomic writes: never a torn model.keras

    resumed = run_cli("train", "--resume", str(run))
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert f"resuming mlp at epoch {killed.get('epochs_completed', 2)}" in resumed.stdout or "resuming mlp at epoch" \
        in resumed.stdout
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["status"] == "completed" and metrics["epochs_completed"] == 4
    assert metrics["resumed"][0]["from"] in (1, 2, 3) and "pid" not in metrics
    assert [int(r["epoch"]) for r in history(run)] == [1, 2, 3, 4]  # continued, no duplicate rows
    assert not (run / "resume").exists()  # a completed run keeps model.keras only
    # same recipe, same seed; only the data order after the resume point differs
    whole = uninterrupted["test"]["accuracy"]
    assert abs(metrics["test"]["accuracy"] - whole) <= 0.01, (metrics["test"]["accuracy"], whole)
    # the optimizer and the schedule resumed where they were: the first resumed epoch's loss continues
    # the curve instead of jumping back to a first epoch's
    losses = [float(r["loss"]) for r in history(run)]
    assert losses[-1] < losses[0] / 2 and losses[metrics["resumed"][0]["from"]] < losses[0]


def fake_run(tmp_path: Path, *, status: str, version: str = "0.1.0", checkpoint: bool = True, pid=None) -> Path:
    """A real short run, then its records edited to the state under test."""
    proc = run_cli("train", "mlp", "--data", "digits", "--hidden", "8", "--epochs", "1", "--out", str(tmp_path))
    assert proc.returncode == 0, proc.stderr[-2000:]
    run = only_run(tmp_path)
    metrics = json.loads((run / "metrics.json").read_text())
    metrics["status"] = status
    if pid:
        metrics["pid"] = pid
    (run / "metrics.json").write_text(json.dumps(metrics))
    config = json.loads((run / "config.json").read_text())
    config["version"] = version
    (run / "config.json").write_text(json.dumps(config))
    if not checkpoint:
        (run / "model.keras").unlink()
    return run


@pytest.mark.parametrize("state, message", [
    (dict(status="completed"), "has already completed; nothing to resume"),
    (dict(status="interrupted", checkpoint=False), "has no checkpoint to resume from (no epoch was completed"),
    (dict(status="failed", version="0.0.9"), "was trained by dlkit 0.0.9; the installed plugin is 0.1.0"),
    (dict(status="running", pid="this process"), "is still being trained by process {pid}"),
], ids=["completed", "no checkpoint", "other version", "still running"])  # ids the same in every xdist worker
def test_resume_refusals_are_one_line(tmp_path, state, message):
    if state.get("pid") == "this process":  # a live pid: the test's own
        state, message = {**state, "pid": os.getpid()}, message.format(pid=os.getpid())
    run = fake_run(tmp_path, **state)
    proc = run_cli("train", "--resume", str(run))
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert message in proc.stderr, proc.stderr[-1000:]


def test_resume_needs_a_run_folder_and_no_algorithm(tmp_path):
    missing = run_cli("train", "--resume", str(tmp_path / "nope"))
    assert missing.returncode == 1 and "does not exist" in missing.stderr
    both = run_cli("train", "--resume", str(tmp_path), "mlp")
    assert both.returncode != 0 and "give the run folder only" in both.stderr
