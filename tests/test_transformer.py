"""transformer: the padding mask, the position embeddings, a small IMDB run on every backend, predict
across backends, batches by length, and the one-line errors."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from dlkit import data
from tests.conftest import run_cli

HERE = Path(__file__).resolve().parent
#: The CLI runs from outside the checkout: ``python -m dlkit`` puts the working directory first on
#: sys.path, and a source checkout's stale dlkit.egg-info there would hide plugins registered since
ELSEWHERE = Path(__file__).resolve().parents[2]
BACKENDS = ("tensorflow", "jax", "torch")
needs_imdb = pytest.mark.skipif(bool(data.missing_files("imdb_reviews")),
                                reason="needs the IMDB reviews in the test cache (../shared/datasets/aclImdb/"
                                       "aclImdb_train_test.tar.gz, unpacked by tests/conftest.py)")


@pytest.fixture(scope="module")
def checked(tmp_path_factory):
    """tests/transformer_check.py once per backend: {(backend, check): result}."""
    results = {}
    for backend in BACKENDS:
        out = tmp_path_factory.mktemp(f"transformer-{backend}")
        proc = subprocess.run([sys.executable, str(HERE / "transformer_check.py"), str(out)], capture_output=True,
                              text=True, timeout=600, env={**os.environ, "KERAS_BACKEND": backend})
        assert proc.returncode == 0, proc.stderr[-3000:]
        for line in proc.stdout.splitlines():
            if line.startswith("{"):
                row = json.loads(line)
                results[backend, row["check"]] = row
    return results


@pytest.mark.parametrize("backend", BACKENDS)
def test_padding_is_ignored(checked, backend):
    row = checked[backend, "padding"]
    assert row["wide_vs_narrow"] <= 1e-5, row          # 32 more padding tokens in front: the same output
    assert row["noise_with_mask"] <= 1e-5, row         # anything in the padded positions: the same output
    assert row["noise_without_mask"] > 1e-3, row       # ...which is the mask's doing


@pytest.mark.parametrize("backend", BACKENDS)
def test_position_embeddings_make_order_matter(checked, backend):
    row = checked[backend, "order"]
    assert row["reversed"] > 1e-4, row
    assert row["reversed_without_positions"] <= 1e-5, row


@pytest.mark.e2e
@needs_imdb
@pytest.mark.parametrize("backend", BACKENDS)
def test_learns_imdb_and_draws_the_attention(checked, backend):
    row = checked[backend, "train"]
    metrics, run = row["metrics"], Path(row["path"])
    assert metrics["status"] == "completed" and metrics["backend"] == backend
    assert metrics["train_samples"] == 2700 and metrics["test"]["test_samples"] == 500  # 10% held out
    assert metrics["test"]["accuracy"] > 0.65, metrics["test"]["accuracy"]  # chance is 50%
    vocabulary = json.loads((run / "artifacts" / "vocabulary.json").read_text())
    assert vocabulary[:2] == ["", "[UNK]"] and len(vocabulary) == 5000
    assert (run / "plots" / "attention.png").stat().st_size > 20_000
    assert row["p_positive"][0] > 0.5 > row["p_positive"][1], row["p_positive"]


@pytest.mark.e2e
@needs_imdb
@pytest.mark.parametrize("trained_on, used_on", [("jax", "torch"), ("torch", "tensorflow"), ("tensorflow", "jax")])
def test_predict_on_another_backend_gives_the_same_probabilities(checked, trained_on, used_on):
    from tests.transformer_check import TEXTS

    row = checked[trained_on, "train"]
    proc = run_cli("predict", row["path"], *TEXTS, "--backend", used_on, "--json", cwd=ELSEWHERE)
    assert proc.returncode == 0, proc.stderr[-2000:]
    results = json.loads(proc.stdout)
    assert [r["label"] for r in results] == ["positive", "negative"]
    p_positive = [r["probability"] if r["label"] == "positive" else 1 - r["probability"] for r in results]
    assert np.allclose(p_positive, row["p_positive"], atol=1e-4), (p_positive, row["p_positive"])
    assert all(r["known_tokens"] >= 8 for r in results)


@pytest.mark.e2e
@needs_imdb
def test_predict_with_an_empty_string_is_one_line(checked):
    proc = run_cli("predict", checked["jax", "train"]["path"], "a fine film", "  ", cwd=ELSEWHERE)
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines() == ["Error: input 2 is empty; give the text to predict on"]


def test_heads_must_divide_the_width(tmp_path):
    proc = run_cli("train", "transformer", "--width", "30", "--heads", "4", "--out", str(tmp_path), cwd=ELSEWHERE)
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    assert "--heads 4 must divide --width 30" in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "transformer").exists()


@pytest.mark.parametrize("backend", ["tensorflow"])
def test_length_batches_cut_only_padding_and_cover_every_review(checked, backend):
    row = checked[backend, "batches"]
    assert row["widths_400"] == [80, 160, 240, 320, 400] and row["widths_16"] == [8, 16]
    assert row["batch_widths"] == [80, 160, 240, 320, 400]
    assert row["largest_batch"] == 64 and row["tokens_cut"] == 0        # only padding is cut
    assert row["wider_than_needed"] == 0                                # the narrowest width that holds each batch
    assert row["reviews_seen"] == list(range(1000))                     # every review once per epoch
    assert row["first_two_widths_differ"]  # TensorFlow fixes any width the first two batches share
    assert row["new_order_next_epoch"] and row["order_matches_batches"]
