"""dlkit benchmark: one process per backend, a ❌ row (with its reason) for a backend that cannot run while the
others run, the fastest backend remembered for --backend auto, the --all matrix, and bad requests in one line."""
from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pytest

from dlkit import backends, benchmark, registry
from dlkit.errors import DlkitError
from tests.conftest import requires_dataset, run_cli


def test_unknown_and_missing_backends_become_reasons_not_errors(monkeypatch):
    monkeypatch.setattr(backends, "is_installed", lambda name: name != "torch")
    wanted, refused = benchmark.parse_backends("tf, jax,cntk,pytorch,jax")
    assert wanted == ["tensorflow", "jax"]
    assert refused["cntk"].startswith("unknown backend 'cntk'")
    assert refused["torch"] == "not installed (no module 'torch'): pip install 'dlkit[torch]'"


def test_auto_uses_the_recorded_fastest_backend_and_says_why(tmp_path, monkeypatch):
    record = tmp_path / "fastest.json"
    monkeypatch.setattr(benchmark, "fastest_path", lambda: record)
    monkeypatch.delenv("KERAS_BACKEND", raising=False)
    backend, why = benchmark.auto_backend("cnn", ("tensorflow", "jax", "torch"))
    assert backend == "tensorflow" and "no benchmark of cnn recorded on this machine; using tensorflow" in why
    rows = [{"backend": "tensorflow", "ok": True, "unit": "epoch", "seconds_per_unit": 72.0},
            {"backend": "jax", "ok": True, "unit": "epoch", "seconds_per_unit": 61.5},
            {"backend": "torch", "ok": False, "reason": "boom"}]
    benchmark.remember_fastest({"algorithm": "cnn", "created": "2026-11-23T19:00:00+00:00", "options": {},
                                "rows": rows, "fastest": benchmark.fastest(rows)})
    backend, why = benchmark.auto_backend("cnn", ("tensorflow", "jax", "torch"))
    assert backend == "jax"
    assert why == ("--backend auto: jax, the fastest for cnn on this machine in 'dlkit benchmark' (2026-11-23; "
                   "s/epoch: jax 61.5 s, tensorflow 72.0 s)")
    assert benchmark.auto_backend("cnn", ("tensorflow",))[0] == "tensorflow"  # recorded one unsupported: default
    record.write_text("{not json")
    assert benchmark.auto_backend("cnn", ("tensorflow", "jax"))[0] == "tensorflow"  # corrupt record: default


def test_the_matrix_has_a_cell_per_plugin_and_backend_with_the_reason_of_each_failure(tmp_path, monkeypatch):
    ok = SimpleNamespace(name="good", cls=SimpleNamespace(backends=("tensorflow", "jax"), test_config={},
                                                          config=type("NoFields", (), {"__dataclass_fields__": {}})),
                         shadowed_by=None, disabled=False, error=None)
    broken = SimpleNamespace(name="bad", cls=None, shadowed_by=None, disabled=False, error="ImportError: no module x")
    monkeypatch.setattr(registry, "discover", lambda: [ok, broken])
    monkeypatch.setattr(backends, "is_installed", lambda name: True)
    ran = []

    def fake_cell(algorithm, backend, options, out, timeout):
        ran.append((algorithm, backend))
        return {"backend": backend, "ok": True, "metric": "accuracy", "value": 0.5, "reloaded_value": 0.5,
                "train_time_s": 1.25}

    monkeypatch.setattr(benchmark, "run_cell", fake_cell)
    benchmark.matrix("tensorflow,jax,torch,cntk", tmp_path, echo=lambda *a: None)
    assert ran == [("good", "tensorflow"), ("good", "jax")]
    table = (tmp_path / "MATRIX.md").read_text()
    assert "| good | ✅ accuracy 0.500, 1.2 s | ✅ accuracy 0.500, 1.2 s | ❌ not supported | ❌ unknown backend" in table
    assert "| bad | ❌ plugin broken: ImportError: no module x |" in table
    assert len(json.loads((tmp_path / "matrix.json").read_text())["cells"]) == 8


def test_all_with_no_plugins_is_one_line(monkeypatch):
    monkeypatch.setattr(registry, "discover", lambda: [])
    with pytest.raises(DlkitError, match="no algorithm plugins are installed"):
        benchmark.matrix("jax", "unused", echo=lambda *a: None)


@pytest.mark.parametrize("args, message", [
    (["--all"], "--all needs --quick"),
    (["mlp", "--all", "--quick"], "--all runs every plugin at the --quick budget"),
    ([], "name an algorithm"),
    (["mlp", "--epochs", "0"], "0 is not in the range x>=1"),
    (["nosuch"], "unknown algorithm 'nosuch'"),
    (["mlp", "--no-such-option", "1"], "dlkit benchmark mlp: No such option '--no-such-option'"),
    (["mlp", "--dropout", "lots"], "'lots' is not a valid float"),
    (["--all", "--quick", "--dropout", "0"], "give no NAME, --epochs, --train-samples or plugin options"),
])
def test_bad_requests_are_one_line(args, message, tmp_path):
    proc = run_cli("benchmark", *args, "--out", str(tmp_path / "out"))
    assert proc.returncode != 0 and message in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr and not (tmp_path / "out").exists()


@pytest.mark.e2e
@requires_dataset("mnist")
def test_benchmark_rows_per_backend_then_train_auto_picks_the_fastest(tmp_path):
    proc = run_cli("benchmark", "mlp", "--backends", "jax,tf,cntk", "--epochs", "1", "--train-samples", "256",
                   "--dropout", "0", "--out", str(tmp_path / "bench"))  # --dropout: the plugin's own option
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads((tmp_path / "bench" / "benchmark.json").read_text())
    rows = {row["backend"]: row for row in result["rows"]}
    assert result["options"] == {"epochs": 1, "train_samples": 256, "dropout": 0.0}  # the plugin's defaults stay out
    assert set(rows) == {"jax", "tensorflow", "cntk"} and not rows["cntk"]["ok"]
    for backend in ("jax", "tensorflow"):
        row = rows[backend]
        assert row["ok"] and row["metric"] == "accuracy" and 0.0 < row["value"] <= 1.0
        assert row["reloaded_value"] == pytest.approx(row["value"], abs=1e-9)  # model.keras reloaded, same result
        assert row["seconds_per_unit"] > 0 and row["train_samples_per_s"] > 0 and row["peak_rss_mib"] > 100
        assert row["inference_per_s_batch_256"] > row["inference_per_s_batch_1"] > 0
    assert rows["jax"]["params"] == rows["tensorflow"]["params"] == 535_818
    fastest = min(("jax", "tensorflow"), key=lambda b: rows[b]["seconds_per_unit"])
    assert result["fastest"] == fastest and f"Fastest on this machine: **{fastest}**" in proc.stdout
    assert "| cntk | ❌ unknown backend 'cntk'" in (tmp_path / "bench" / "benchmark.md").read_text()

    trained = run_cli("train", "mlp", "--backend", "auto", "--epochs", "1", "--train-samples", "128",
                      "--test-samples", "128", "--out", str(tmp_path / "runs"))
    assert trained.returncode == 0, trained.stderr[-3000:]
    assert f"--backend auto: {fastest}, the fastest for mlp on this machine" in trained.stdout
    metrics = json.loads(next((tmp_path / "runs" / "mlp").glob("*/metrics.json")).read_text())
    assert metrics["backend"] == fastest


def test_inference_is_timed_only_where_the_test_inputs_are_the_models_inputs():
    Spec = SimpleNamespace
    classifier = Spec(inputs=[Spec(shape=(None, 28, 28, 1))])
    generator = Spec(inputs=[Spec(shape=(None, 8)), Spec(shape=(None,))])   # noise and label
    language_model = Spec(inputs=[Spec(shape=(None, None))])                # windows of tokens
    images, tokens = np.zeros((5, 28, 28, 1)), np.zeros(100, dtype="int32")
    assert benchmark.takes(classifier, [images])
    assert not benchmark.takes(classifier, [np.zeros((5, 32, 32, 3))])
    assert not benchmark.takes(generator, [images])
    assert not benchmark.takes(language_model, [tokens])
    assert benchmark.takes(language_model, [np.zeros((4, 128), dtype="int32")])
