"""rnn, lstm, gru: the IMDB text pipeline, the vocabulary that travels with a run, the scratch LSTM
cell against Keras' on every backend, and the CO₂ forecaster's time split and baselines."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from dlkit import data
from dlkit.errors import DlkitError
from dlkit.plugins.recurrent import RecurrentConfig, co2_data, forecast_metrics
from tests.conftest import run_cli

HERE = Path(__file__).resolve().parent
BACKENDS = ("tensorflow", "jax", "torch")
needs_imdb = pytest.mark.skipif(bool(data.missing_files("imdb_reviews")),
                                reason="needs the IMDB reviews in the test cache (../shared/datasets/aclImdb/"
                                       "aclImdb_train_test.tar.gz, unpacked by tests/conftest.py)")


def test_list_and_info_describe_the_three(cli):
    listed = cli("list")
    assert listed.returncode == 0, listed.stderr
    for name in ("rnn", "lstm", "gru"):
        assert any(line.split()[:1] == [name] and line.rstrip().endswith("ok") for line in listed.stdout.splitlines())
    info = cli("info", "lstm")
    assert info.returncode == 0, info.stderr
    for option in ("--cell", "--units", "--layers", "--bidirectional", "--dropout", "--sequence-length",
                   "--vocab-size", "--window", "--horizon"):
        assert option in info.stdout
    assert "scratch" in info.stdout and "σ(C_t)" in info.stdout


# -- the time series, on a synthetic series (no statsmodels needed) ---------------------------------------
def synthetic(n=600):
    t = np.arange(n, dtype="float64")
    return 300 + 0.03 * t + 3 * np.sin(2 * np.pi * t / 52), np.arange(n)


def test_co2_windows_are_split_by_time_with_targets_inside_each_split():
    series, dates = synthetic()
    cfg = RecurrentConfig(data="co2", window=60, horizon=5)
    d = co2_data(cfg, series, dates)
    lo_val, lo_test = d.info["bounds"][1:3]
    assert d.fixed_splits and d.x_train.shape[1:] == (60, 1) and d.y_test.shape[1] == 5
    origins = d.info["test_origins"]
    assert origins[0] + 1 == lo_test and origins[-1] + 5 == len(series) - 1  # first and last target of the span
    # inputs end at the origin and are relative to it; targets are the next 5 values, relative too
    t = origins[3]
    assert np.allclose(d.x_test[3, :, 0] * d.info["scale"], series[t - 59:t + 1] - series[t], atol=1e-4)
    assert np.allclose(d.y_test[3] * d.info["scale"], series[t + 1:t + 6] - series[t], atol=1e-4)
    assert len(d.x_train) + len(d.x_val) + len(d.x_test) < len(series)


def test_forecast_metrics_put_the_model_next_to_both_baselines():
    series, dates = synthetic()
    d = co2_data(RecurrentConfig(data="co2", window=60, horizon=5), series, dates)

    class Persistence:  # predicts "no change": the persistence baseline itself
        def predict(self, x, **kwargs):
            return np.zeros((len(x), 5), "float32")

    m = forecast_metrics(Persistence(), d)
    assert m["mae"] == pytest.approx(m["persistence_mae"]) and m["rmse"] == pytest.approx(m["persistence_rmse"])
    # a yearly cycle plus a trend: seasonal-naive is off by one year of trend (0.03 × 52 = 1.56), exactly
    assert m["seasonal_naive_mae"] == pytest.approx(1.56, abs=1e-6)
    assert m["test_forecasts"] == len(d.x_test) and m["horizon"] == 5


def test_a_series_too_short_for_the_window_and_horizon_is_one_line():
    series, dates = synthetic(200)
    with pytest.raises(DlkitError, match="too short for --window 150 and --horizon 5"):
        co2_data(RecurrentConfig(data="co2", window=150, horizon=5), series, dates)
    with pytest.raises(DlkitError, match="too short"):
        co2_data(RecurrentConfig(data="co2", window=10, horizon=40), series, dates)


# -- the text pipeline --------------------------------------------------------------------------------------
def test_encode_keeps_the_last_tokens_front_padded_and_strips_line_breaks():
    from dlkit import text

    vocabulary = ["", "[UNK]", "the", "film", "was", "a", "delight"]
    ids = text.encode([text.clean("The film<br /><br />was a DELIGHT!"), "film", "zebra film"], vocabulary, 4)
    assert ids.dtype == np.int32 and ids.tolist() == [[3, 4, 5, 6], [0, 0, 0, 3], [0, 0, 1, 3]]
    with pytest.raises(DlkitError, match="not a vocabulary"):
        text.check_vocabulary({"the": 2}, "artifacts/vocabulary.json")


@needs_imdb
def test_a_saved_run_encodes_with_its_own_vocabulary(tmp_path):
    from dlkit.plugins.lstm import LSTM, LSTMConfig
    from dlkit.runs import Run

    cfg = LSTMConfig(train_samples=50, test_samples=20, sequence_length=8, vocab_size=50)
    plugin = LSTM()
    fresh = plugin.load_data(cfg)  # a new run: adapted on its 50 training reviews
    assert fresh.x_train.shape == (50, 8) and len(fresh.info["vocabulary"]) == 50
    run = Run.create(tmp_path, "lstm", "tensorflow")
    saved = ["", "[UNK]", "the", "movie"]  # a reloaded run never re-adapts: it encodes with what it saved
    run.save_artifact("vocabulary.json", saved)
    run.model_path.write_bytes(b"")
    plugin.run = run
    reloaded = plugin.load_data(cfg)
    assert reloaded.info["vocabulary"] == saved and reloaded.x_test.max() <= 3
    assert (reloaded.y_test == fresh.y_test).all()  # the same 20 test reviews


# -- end to end on every backend ----------------------------------------------------------------------------
#: Which runs learn IMDB on which backend here. Every plugin and the scratch cell also train on every
#: backend in the contract test (tests/contract_check.py, at their tiny test_config).
PLAN = {"tensorflow": ("lstm", "rnn"), "jax": ("lstm", "gru"), "torch": ("lstm-scratch",)}


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """Small IMDB runs (3,600 reviews, 3 short epochs): one process per backend."""
    runs = {}
    for backend, names in PLAN.items():
        out = tmp_path_factory.mktemp(f"recurrent-{backend}")
        proc = subprocess.run([sys.executable, str(HERE / "recurrent_check.py"), str(out), *names],
                              capture_output=True, text=True, timeout=600, env={**os.environ, "KERAS_BACKEND": backend})
        assert proc.returncode == 0, proc.stderr[-3000:]
        for line in proc.stdout.splitlines():
            if line.startswith("{"):
                row = json.loads(line)
                runs[backend, row["name"]] = row
    return runs


@pytest.mark.e2e
@needs_imdb
@pytest.mark.parametrize("backend", BACKENDS)
def test_the_cells_learn_imdb(trained, backend):
    for algo in PLAN[backend]:
        row = trained[backend, algo]
        metrics = row["metrics"]
        assert metrics["status"] == "completed" and metrics["backend"] == backend
        assert metrics["train_samples"] == 3600 and metrics["test"]["test_samples"] == 500
        # 3,600 real reviews, 3 short epochs: far above chance (50%) only if text and training are real
        assert metrics["test"]["accuracy"] > 0.62, (algo, metrics["test"]["accuracy"])
        vocabulary = json.loads((Path(row["path"]) / "artifacts" / "vocabulary.json").read_text())
        assert vocabulary[:2] == ["", "[UNK]"] and len(vocabulary) == 5000


@pytest.mark.e2e
@needs_imdb
@pytest.mark.parametrize("trained_on, used_on", [("jax", "torch"), ("torch", "tensorflow"), ("tensorflow", "jax")])
def test_predict_and_evaluate_on_another_backend(trained, trained_on, used_on):
    run = trained[trained_on, PLAN[trained_on][0]]
    proc = run_cli("predict", run["path"], "this film was a delight", "a dull, boring waste of two hours",
                   "--backend", used_on, "--json")
    assert proc.returncode == 0, proc.stderr[-2000:]
    results = json.loads(proc.stdout)
    assert [r["label"] for r in results] == ["positive", "negative"]
    assert all(0.5 <= r["probability"] <= 1 and r["known_tokens"] >= 4 for r in results)
    proc = run_cli("evaluate", run["path"], "--backend", used_on, "--json")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert abs(json.loads(proc.stdout)["test"]["accuracy"] - run["metrics"]["test"]["accuracy"]) <= 0.002


@pytest.mark.e2e
@needs_imdb
def test_a_run_without_its_vocabulary_is_one_line(trained, tmp_path):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(trained["jax", "gru"]["path"], run)
    (run / "artifacts" / "vocabulary.json").unlink()
    for command in (("predict", str(run), "a fine film"), ("evaluate", str(run))):
        proc = run_cli(*command)
        assert proc.returncode != 0 and "Traceback" not in proc.stderr
        assert "has no artifacts/vocabulary.json" in proc.stderr and len(proc.stderr.strip().splitlines()) == 1


def test_bad_options_are_one_line(cli, tmp_path):
    proc = cli("train", "lstm", "--sequence-length", "0", "--out", str(tmp_path))
    assert proc.returncode == 2 and "--sequence-length" in proc.stderr and "Traceback" not in proc.stderr
    proc = cli("train", "gru", "--cell", "scratch", "--out", str(tmp_path))
    assert proc.returncode == 2 and "'scratch' is not 'keras'" in proc.stderr
    offline = cli("train", "rnn", "--out", str(tmp_path / "runs"),
                  env={"KERAS_HOME": str(tmp_path / "empty"), "DLKIT_OFFLINE": "1"})
    assert offline.returncode == 1 and len(offline.stderr.strip().splitlines()) == 1
    assert "aclImdb_v1.tar.gz" in offline.stderr and "dlkit data add" in offline.stderr
    assert not (tmp_path / "runs").exists()


@pytest.mark.e2e
def test_lstm_forecasts_co2_against_the_baselines(tmp_path):
    pytest.importorskip("statsmodels")
    proc = run_cli("train", "lstm", "--data", "co2", "--epochs", "3", "--units", "16", "--window", "60",
                   "--backend", "jax", "--out", str(tmp_path))
    assert proc.returncode == 0, proc.stderr[-2000:]
    run = next((tmp_path / "lstm").iterdir())
    metrics = json.loads((run / "metrics.json").read_text())["test"]
    assert metrics["unit"] == "ppm" and metrics["horizon"] == 13
    assert metrics["seasonal_naive_mae"] > 0 and metrics["persistence_mae"] > 0 and np.isfinite(metrics["mae"])
    assert (run / "plots" / "forecast.png").stat().st_size > 10_000
    refused = run_cli("predict", str(run), "a fine film")
    assert refused.returncode == 1 and "not a text classifier" in refused.stderr
    fixed = run_cli("train", "lstm", "--data", "co2", "--train-samples", "100", "--out", str(tmp_path / "x"))
    assert fixed.returncode != 0 and "fixed train/validation/test splits" in fixed.stderr


@pytest.mark.parametrize("backend", BACKENDS)
def test_scratch_cell_matches_keras_lstm_to_1e_5(backend):
    proc = subprocess.run([sys.executable, str(HERE / "scratch_lstm_check.py")], capture_output=True, text=True,
                          timeout=300, env={**os.environ, "KERAS_BACKEND": backend})
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["backend"] == backend
    assert max(result["outputs"], result["h"], result["c"]) <= 1e-5, result
    assert result["sigma_c_output_gate"] > 0.1  # the articles' σ(C_t) output gate is a different cell
