"""gpt: causality on TensorFlow, JAX and PyTorch; the key/value cache changes no greedy decoding; a few
steps on real Tiny Shakespeare with ``dlkit train gpt`` on JAX, then ``dlkit generate`` on PyTorch; bad
generate options refused in one line.

Starting a backend costs more than the tiny models, so tests/gpt_check.py does the checks that need
Keras in one process per backend, two processes at a time.
"""
from __future__ import annotations

import functools
import json
import math
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from dlkit import data
from dlkit.plugins.gpt import GPT, GPTConfig, random_windows, windows_evenly
from tests.conftest import BACKENDS, ONE_THREAD, SHARED, run_check, run_cli

pytestmark = pytest.mark.e2e  # about a minute on two cores: five processes, each starting a backend
SCRIPT = Path(__file__).with_name("gpt_check.py")
check = functools.partial(run_check, SCRIPT, timeout=300)
OFFLINE_COPY = SHARED / "tinyshakespeare" / "input.txt"
#: Enough steps at a high rate, without warmup, for a tiny model to beat the uniform guess (ln 65 = 4.17).
TINY = ["--max-steps", "24", "--eval-interval", "12", "--eval-windows", "4", "--batch-size", "16", "--context", "32",
        "--depth", "1", "--heads", "2", "--width", "32", "--learning-rate", "0.01", "--warmup-steps", "0"]


@pytest.fixture(scope="module")
def shakespeare():
    """Tiny Shakespeare in the test cache (tests/conftest.py seeds only the Keras datasets)."""
    if data.missing_files("tinyshakespeare"):
        if not OFFLINE_COPY.is_file():
            pytest.skip(f"needs Tiny Shakespeare: tinyshakespeare/input.txt is not in {data.keras_cache_dir()} and "
                        f"there is no offline copy at {OFFLINE_COPY} (set DLKIT_SHARED_DATASETS)")
        data.add_files([OFFLINE_COPY])
    return data.keras_cache_dir() / "tinyshakespeare" / "input.txt"


@pytest.fixture(scope="module")
def runs(shakespeare, tmp_path_factory):
    """Every process of the module, two at a time: the model checks on each backend, training on JAX,
    then generating from the trained run on PyTorch, through the CLI and through the Python API."""
    out = tmp_path_factory.mktemp("gpt")
    sample = out / "sample"
    with ThreadPoolExecutor(2) as pool:
        trained = pool.submit(run_cli, "train", "gpt", "--backend", "jax", "--out", str(out), *TINY, env=ONE_THREAD)
        checks = {b: pool.submit(check, "model", backend=b) for b in BACKENDS}
        proc = trained.result()
        assert proc.returncode == 0, proc.stderr[-3000:]
        (run,) = (out / "gpt").iterdir()
        generated = pool.submit(run_cli, "generate", str(run), "--backend", "torch", "--out", str(sample),
                                "--prompt", "ROMEO:", "--tokens", "60", "--seed", "3", env=ONE_THREAD)
        refused = pool.submit(check, "refusals", str(run), backend="torch")
        return {"run": run, "train_stdout": proc.stdout, "generated": generated.result(), "sample": sample,
                "refused": refused.result(), **{b: f.result() for b, f in checks.items()}}


# -- the model, on each backend ---------------------------------------------------------------------------
@pytest.mark.parametrize("backend", BACKENDS)
def test_changing_a_token_leaves_the_logits_before_it_unchanged(runs, backend):
    found = runs[backend]
    assert found["backend"] == backend
    for case in found["causality"]:
        assert case["before"] <= 1e-5, case  # positions ≤ t cannot see token t+1
        assert case["at"] > 1e-3, case       # position t+1 does


@pytest.mark.parametrize("backend", BACKENDS)
def test_cached_greedy_decoding_equals_recomputing_the_window(runs, backend):
    found = runs[backend]
    assert len(found["cached"]) == 40 and found["cached"] == found["uncached"]
    assert found["logit_gap"] < 1e-3
    assert found["seeded_repeat"] and found["seeds_differ"]


# -- data and windows, without Keras ------------------------------------------------------------------------
def test_splits_are_nanogpts_and_the_windows_shift_by_one(shakespeare):
    split = GPT().load_data(GPTConfig())
    text = shakespeare.read_text(encoding="utf-8")
    assert len(split.info["vocab"]) == 65 and split.fixed_splits
    assert len(split.x_train) == len(text) * 9 // 10 and len(split.x_train) + len(split.x_val) == len(text)
    vocab = split.info["vocab"]
    assert "".join(vocab[i] for i in split.x_val[:40]) == text[len(split.x_train):][:40]
    import numpy as np

    x, y = random_windows(split.x_train, 8, 4, np.random.default_rng(0))
    assert x.shape == y.shape == (4, 8) and (x[:, 1:] == y[:, :-1]).all()
    x, y = windows_evenly(split.x_val, 100, 10 ** 6)  # as many as fit, without overlap: the final evaluation's
    count = (len(split.x_val) - 1) // 100
    stride = (len(split.x_val) - 101) // (count - 1)
    assert len(x) == count and stride >= 100
    assert (x[0] == split.x_val[:100]).all() and (x[-1] == split.x_val[stride * (count - 1):][:100]).all()


# -- train on JAX, generate on PyTorch ---------------------------------------------------------------------
def test_a_few_steps_train_and_record_a_step_budget(runs):
    run = runs["run"]
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["status"] == "completed" and metrics["backend"] == "jax" and metrics["steps_completed"] == 24
    assert metrics["headline"]["metric"] == "val_loss"
    assert metrics["test"]["val_loss"] < math.log(65) - 0.3  # better than a uniform guess over 65 characters
    assert metrics["test"]["val_chars"] > 100_000  # the whole validation text
    history = (run / "history.csv").read_text().splitlines()
    assert history[0].split(",")[0] == "step" and [r.split(",")[0] for r in history[1:]] == ["12", "24"]
    assert json.loads((run / "artifacts" / "vocab.json").read_text())["chars"][:3] == ["\n", " ", "!"]
    assert "step 24: loss" in runs["train_stdout"]


def test_generate_on_another_backend_streams_the_requested_characters(runs):
    proc, out = runs["generated"], runs["sample"]
    assert proc.returncode == 0, proc.stderr[-3000:]
    text = (out / "sample.txt").read_text(encoding="utf-8")
    assert text.startswith("ROMEO:") and len(text) == len("ROMEO:") + 60
    assert text in proc.stdout  # streamed as it was drawn
    summary = json.loads((out / "generation.json").read_text())
    assert summary["backend"] == "torch" and summary["summary"]["tokens"] == 60
    assert summary["summary"]["tokens_per_s"] > 0 and summary["options"]["cache"] is True


# -- bad input: one line, exit 1, no samples folder ----------------------------------------------------------
@pytest.mark.parametrize("args, message", [
    (["--tokens", "0"], "'--tokens': 0 is not in the range x>=1"),
    (["--temperature", "0"], "--temperature must be greater than 0, got 0"),
    (["--temperature", "-0.5"], "--temperature must be greater than 0, got -0.5"),
    (["--prompt", ""], "--prompt is empty"),
])
def test_bad_generate_options_are_one_line(runs, args, message):
    proc = run_cli("generate", str(runs["run"]), *args)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert message in proc.stderr and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert not list((runs["run"] / "samples").glob("*"))


def test_prompt_and_top_k_outside_the_vocabulary_are_refused(runs):
    found = runs["refused"]
    assert found["prompt"] == ("the prompt has characters the model never saw: 'é', '€' (its vocabulary is the "
                               "65 characters of Tiny Shakespeare)")
    assert found["top_k"] == "--top-k 66 is larger than the vocabulary (65 characters)"
    assert found["samples_left"] == []
