"""dlkit.steps.GradientStep trains what it names, keeps what the forward pass writes, compiles once, and
gives the same numbers on TensorFlow, JAX and PyTorch (each backend in its own process: tests/steps_check.py).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

SCRIPT = Path(__file__).with_name("steps_check.py")
BACKENDS = ("tensorflow", "jax", "torch")


def check(backend: str) -> dict:
    proc = subprocess.run([sys.executable, str(SCRIPT)], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "KERAS_BACKEND": backend})
    assert proc.returncode == 0, f"{backend}:\n{proc.stderr[-3000:]}"
    (line,) = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    return json.loads(line)


@pytest.fixture(scope="module")
def reports() -> dict[str, dict]:
    with ThreadPoolExecutor(max_workers=2) as pool:  # three processes that mostly import their backend
        return dict(zip(BACKENDS, pool.map(check, BACKENDS)))


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_gan_step_trains_only_its_model_and_keeps_batch_norm_statistics(reports, backend):
    for run in ("gan", "gan_dropout"):
        gan = reports[backend][run]
        d_step, g_step = gan["after_d_step"], gan["after_g_step"]
        assert all(d_step["d_trained"]) and not any(d_step["g_trained"]), (run, d_step)
        assert all(g_step["g_trained"]) and not any(g_step["d_trained"]), (run, g_step)
        # the generator's moving mean and variance, written by the forward pass of both steps
        assert d_step["g_stats"] == g_step["g_stats"] == [True, True], (run, d_step, g_step)
        assert np.isfinite(gan["losses"]).all()
    assert reports[backend]["gan"]["after_d_step"]["d_seeds"] == []  # Dropout(0.0) draws nothing
    dropout = reports[backend]["gan_dropout"]
    assert dropout["after_d_step"]["d_seeds"] == dropout["after_g_step"]["d_seeds"] == [True]


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_double_dqn_step_lowers_the_td_loss_and_leaves_the_target_network(reports, backend):
    dqn = reports[backend]["dqn"]
    assert dqn["losses"][-1] < 0.7 * dqn["losses"][0], dqn["losses"]
    assert not dqn["target_changed"]


@pytest.mark.parametrize("backend", BACKENDS)
def test_the_step_compiles_once_per_input_shape(reports, backend):
    # (calls with the same shapes, then one smaller batch); PyTorch runs eagerly: loss_fn runs every call
    expected = {"gan": [3, 3], "dqn": [10, 11]} if backend == "torch" else {"gan": [1, 1], "dqn": [1, 2]}
    assert reports[backend]["gan"]["traces"] == expected["gan"]
    assert reports[backend]["dqn"]["traces"] == expected["dqn"]


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_seed_generator_in_uses_draws_new_numbers_every_call(reports, backend):
    assert reports[backend]["noise_inside"] == {"distinct_losses": 3, "seed_state": [3, 3]}


@pytest.mark.parametrize("backend", BACKENDS)
def test_mistakes_are_named(reports, backend):
    errors = reports[backend]["errors"]
    assert "give each GradientStep its own optimizer" in errors["shared_optimizer"]
    if backend == "jax":  # a pure function of the listed variables: an unlisted one would be a frozen constant
        assert "reads b/dense/bias, b/dense/kernel, which no model" in errors["unlisted_model"]
    else:  # the other backends read the live variable
        assert errors["unlisted_model"] == ""


@pytest.mark.parametrize("other", ["jax", "torch"])
def test_the_same_updates_on_every_backend(reports, other):
    ref, it = reports["tensorflow"], reports[other]
    np.testing.assert_allclose(it["gan"]["losses"], ref["gan"]["losses"], rtol=1e-4)
    # per variable after the last step, the generator's batch-norm moving statistics among them
    np.testing.assert_allclose(it["gan"]["weights"], ref["gan"]["weights"], rtol=1e-4)
    np.testing.assert_allclose(it["dqn"]["losses"], ref["dqn"]["losses"], rtol=1e-4)
