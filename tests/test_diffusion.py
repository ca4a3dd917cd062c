"""diffusion: the schedules and q(x_t | x_0) by hand, two DDIM steps against the formula, one update the same on
TensorFlow, JAX and PyTorch, a tiny training run, generation and evaluation per backend, Ctrl-C and --resume,
evaluate on another backend, bad input in one line.

Starting a backend costs more than the tiny runs, so tests/diffusion_check.py does the checks that need Keras in
one process per backend, two processes at a time; the test process itself never imports Keras.
"""
from __future__ import annotations

import csv
import functools
import io
import json
import math
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import BACKENDS, ONE_THREAD, run_check, run_cli
from tests.diffusion_check import RESUMED, TINY

pytestmark = pytest.mark.e2e
SCRIPT = Path(__file__).with_name("diffusion_check.py")
check = functools.partial(run_check, SCRIPT, timeout=900)


@pytest.fixture(scope="module")
def reports(tmp_path_factory) -> dict:
    """The checks on each backend, then the JAX run evaluated on PyTorch through the CLI, two at a time."""
    out = tmp_path_factory.mktemp("diffusion")
    with ThreadPoolExecutor(2) as pool:
        found = dict(zip(BACKENDS, pool.map(lambda b: check(out / b, backend=b), BACKENDS)))
        jax_run = found["jax"]["train"]["path"]
        found["evaluated"] = run_cli("evaluate", jax_run, "--backend", "torch", "--json", env=ONE_THREAD, cwd=out)
    return found


def linear_alpha_bars() -> np.ndarray:
    return np.cumprod(1.0 - np.linspace(1e-4, 0.02, 1000))


# -- schedules and the forward process, by hand --------------------------------------------------------------
def test_the_linear_schedule_is_ho_et_al(reports):
    found = np.asarray(reports["tensorflow"]["pieces"]["linear_betas"])
    assert found[0] == pytest.approx(1e-4) and found[-1] == pytest.approx(0.02)
    np.testing.assert_allclose(found, np.linspace(1e-4, 0.02, 1000), rtol=1e-12)
    alpha_bar = np.cumprod(1.0 - found)
    assert (np.diff(alpha_bar) < 0).all() and alpha_bar[-1] == pytest.approx(4.04e-5, rel=0.01)  # x_T ≈ pure noise


def test_the_cosine_schedule_follows_nichol_and_dhariwal(reports):
    pieces = reports["tensorflow"]["pieces"]
    beta, alpha_bar = np.asarray(pieces["cosine_betas"]), np.asarray(pieces["cosine_alpha_bars"])
    s = 0.008

    def f(t):
        return math.cos((t / 1000 + s) / (1 + s) * math.pi / 2) ** 2

    for t in (1, 250, 500, 750, 900):  # ᾱ_t = f(t)/f(0) where β is not clipped (index t − 1)
        assert alpha_bar[t - 1] == pytest.approx(f(t) / f(0), rel=1e-9)
    assert alpha_bar[499] == pytest.approx(0.4938, abs=1e-3)  # half-way: about half the signal's variance left
    assert (np.diff(alpha_bar) < 0).all() and (beta > 0).all() and beta.max() == pytest.approx(0.999)
    assert beta[-1] == pytest.approx(0.999)  # the last step would divide by ~0: clipped
    # the cosine schedule destroys information more slowly than the linear one in the middle
    assert alpha_bar[499] > 5 * linear_alpha_bars()[499]  # 0.494 against 0.079


def test_q_sample_has_the_forward_process_mean_and_variance(reports):
    found = reports["tensorflow"]["pieces"]["q_sample"]  # 256,000 pixels x_0 = 0.5, t = 300 (index)
    ab = linear_alpha_bars()[300]
    assert found["mean"] == pytest.approx(math.sqrt(ab) * 0.5, abs=0.01)
    assert found["var"] == pytest.approx(1.0 - ab, rel=0.02)


@pytest.mark.parametrize("backend", BACKENDS)
def test_two_ddim_steps_are_the_formula_and_deterministic(reports, backend):
    ddim = {k: np.asarray(v) for k, v in reports[backend]["pieces"]["ddim"].items()}
    ab = linear_alpha_bars()
    # η = 0 (Song et al., eq. 12): x_{t'} = √ᾱ_{t'} x̂_0 + √(1 − ᾱ_{t'}) ε̂, x̂_0 clipped to [−1, 1] and ε̂ recomputed
    # from the clipped x̂_0 (x_t = √ᾱ_t x̂_0 + √(1 − ᾱ_t) ε̂ still holds); t = 999 → 0 → x_0
    unclipped = (ddim["x_T"] - np.sqrt(1 - ab[999]) * ddim["eps1"]) / np.sqrt(ab[999])
    assert np.abs(unclipped).max() > 1.5  # at t = 999 the clip acts, so the recomputed ε̂ is tested
    x0_hat = np.clip(unclipped, -1, 1)
    eps_hat = (ddim["x_T"] - np.sqrt(ab[999]) * x0_hat) / np.sqrt(1 - ab[999])
    x1 = np.sqrt(ab[0]) * x0_hat + np.sqrt(1 - ab[0]) * eps_hat
    final = np.clip((x1 - np.sqrt(1 - ab[0]) * ddim["eps2"]) / np.sqrt(ab[0]), -1, 1)
    np.testing.assert_allclose(ddim["out"], final, atol=2e-5)
    assert np.array_equal(ddim["out"], ddim["again"])  # no randomness at η = 0
    assert np.abs(ddim["eps1"]).max() > 0.01  # a network that predicts something, so the check could fail


@pytest.mark.parametrize("backend", BACKENDS)
def test_guidance_mixes_the_conditional_and_unconditional_noise(reports, backend):
    eps = {k: np.asarray(v) for k, v in reports[backend]["pieces"]["guidance"].items()}
    assert np.abs(eps["labelled"] - eps["unlabelled"]).max() > 1e-3  # the label changes the prediction
    # Ho & Salimans (2022), eq. 6, w = 2: ε̃ = 3 ε(x, t, y) − 2 ε(x, t, ∅); batch of 6 in chunks of 4 (one padded)
    np.testing.assert_allclose(eps["guided"], 3 * eps["labelled"] - 2 * eps["unlabelled"], rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_v_network_is_turned_into_noise_and_its_target_gives_back_the_image(reports, backend):
    v = {k: (np.asarray(x) if k not in ("prediction", "recovered") else x)
         for k, x in reports[backend]["pieces"]["v"].items()}
    assert v["prediction"] == ["eps", "v"]  # the output layer's name says what a saved network predicts
    # the same weights as the ε-network of the pieces: the same raw output, read as v
    np.testing.assert_allclose(v["raw"], v["raw_of_eps_network"], rtol=1e-5, atol=1e-6)
    assert np.abs(v["raw"]).max() > 0.01
    ab = v["alpha_bars"].reshape(-1, 1, 1, 1)  # Salimans & Ho (2022): ε = √(1 − ᾱ_t) x_t + √ᾱ_t v
    np.testing.assert_allclose(v["eps"], np.sqrt(1 - ab) * v["x_t"] + np.sqrt(ab) * v["raw"], rtol=1e-4, atol=1e-5)
    for prediction in ("eps", "v"):  # t up to 999, where 1/√ᾱ_t ≈ 157 magnifies any slip
        np.testing.assert_allclose(v["recovered"][prediction], v["x0"], atol=2e-3)


@pytest.mark.parametrize("other", ["jax", "torch"])
def test_the_network_and_its_update_are_the_same_on_every_backend(reports, other):
    ref, it = reports["tensorflow"]["pieces"], reports[other]["pieces"]
    np.testing.assert_allclose(it["eps"], ref["eps"], rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(it["losses"], ref["losses"], rtol=1e-4)
    assert ref["losses"][2] < ref["losses"][0]  # the GradientStep lowers the denoising loss


# -- training, generation and evaluation ---------------------------------------------------------------
@pytest.mark.parametrize("backend", BACKENDS)
def test_a_tiny_run_trains_plots_and_scores_its_samples(reports, backend):
    found = reports[backend]["train"]
    metrics, run = found["metrics"], Path(found["path"])
    assert metrics["status"] == "completed" and metrics["backend"] == backend
    assert metrics["epochs_completed"] == TINY["epochs"] and metrics["dataset"] == "digits"
    test = metrics["test"]
    assert metrics["headline"] == {"metric": "classifier_score", "value": test["classifier_score"]}
    assert 1.0 <= test["classifier_score"] <= 10.0 and test["samples"] == TINY["eval_samples"]
    assert sum(test["class_histogram"]) == TINY["eval_samples"] and 0 <= test["classes_covered"] <= 10
    assert test["reference_test_accuracy"] > 0.9 and test["frechet_distance"] > 0
    assert test["sampler"] == "ddim" and test["sampling_steps"] == TINY["eval_steps"] and test["samples_per_s"] > 0
    rows = list(csv.DictReader(io.StringIO(found["history"])))
    assert [int(r["epoch"]) for r in rows] == [1, 2]
    assert float(rows[1]["loss"]) < float(rows[0]["loss"]) < 1.5  # the MSE of v (TINY's target) starts below Var ε = 1
    assert 0 < test["test_loss"] < 1.0
    assert {"learning_curves.png", "samples_epoch_1.png", "samples_epoch_2.png", "denoising.png"} <= set(found["plots"])
    assert (run / "model.keras").is_file() and not (run / "resume").exists()


@pytest.mark.parametrize("backend", BACKENDS)
def test_generate_writes_the_grid_the_samples_and_the_denoising_path(reports, backend):
    found = reports[backend]["generate"]
    for name, n, steps in (("ddim", 16, 4), ("ddpm", 16, 1000)):
        made = found[name]
        assert made["files"] == ["denoising.png", "generation.json", "samples.npz", "samples.png"]
        images = np.asarray(made["images"])
        assert images.shape == (n, 8, 8, 1) and images.min() >= 0.0 and images.max() <= 1.0 and images.std() > 0.05
        summary = made["summary"]
        assert summary["sampler"] == name and summary["steps"] == steps and summary["samples_per_s"] > 0
    # x_T, the intermediate states and x_0 per row: 8 intermediate ones over 1000 DDPM steps, 4 over 4 DDIM steps
    assert found["ddpm"]["path_shape"] == [8, 10, 8, 8, 1]
    assert found["ddim"]["path_shape"] == [8, 6, 8, 8, 1]
    assert found["too_many_steps"] == "--steps 1001 is more than the model's 1000 diffusion steps (T); give 1 … 1000"
    assert not found["too_many_steps_left"]


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_conditional_run_generates_the_class_asked_for(reports, backend):
    found = reports[backend]["generate"]
    assert found["ddim"]["labels"] == [i % 10 for i in range(16)]  # by default every class in turn
    made = found["label"]
    assert made["labels"] == [3] * 16 and made["summary"]["label"] == 3 and made["summary"]["guidance"] == 2.0
    # the same noise, asked for one class with guidance: other images than the classes-in-turn ones
    assert not np.allclose(made["images"], found["ddim"]["images"])
    assert found["label_outside"] == "--label 10 is not a class of digits: give 0..9"
    assert not found["label_outside_left"]
    test = reports[backend]["train"]["metrics"]["test"]
    assert 0.0 <= test["label_accuracy"] <= 1.0 and test["guidance"] == TINY["guidance"]


def test_label_on_an_unconditional_run_is_refused(reports):
    assert reports["torch"]["label_on_unconditional"] == (
        "--label needs a conditional diffusion run; this run is unconditional (train one with --conditional)")


def test_ctrl_c_then_resume_continues_to_the_end_of_the_budget(reports):
    found = reports["torch"]["resume"]
    assert found["stopped"].startswith("training interrupted; the model after epoch 1 is in")
    assert found["at_interrupt"] == {"status": "interrupted", "epochs_completed": 1}
    metrics = found["metrics"]
    assert metrics["status"] == "completed" and metrics["epochs_completed"] == RESUMED["epochs"]
    assert [r["from"] for r in metrics["resumed"]] == [1]
    rows = list(csv.DictReader(io.StringIO(found["history"])))
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3]
    # the learning rate continues its schedule (the optimizer's step count was restored): it keeps falling
    rates = [float(r["learning_rate"]) for r in rows]
    assert rates[0] > rates[1] > rates[2] == pytest.approx(0.1 * RESUMED["learning_rate"], rel=1e-3)


def test_evaluate_reloads_the_average_on_another_backend(reports):
    proc = reports["evaluated"]
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout)
    recorded = reports["jax"]["train"]["metrics"]["test"]
    assert result["backend"] == "torch" and result["test"]["samples"] == TINY["eval_samples"]
    # the same seeded noise through the same weights: the same denoising loss and (nearly) the same samples
    assert result["test"]["test_loss"] == pytest.approx(recorded["test_loss"], rel=1e-4)
    assert result["test"]["frechet_distance"] == pytest.approx(recorded["frechet_distance"], rel=0.02)


# -- bad input -------------------------------------------------------------------------------------------------
def test_generate_on_a_classifier_run_is_refused(reports):
    assert reports["tensorflow"]["not_a_generator"].startswith("mlp runs do not generate samples")


@pytest.mark.parametrize("args, message", [
    (["-n", "0"], "0 is not in the range x>=1"),
    (["--steps", "0"], "0 is not in the range x>=1"),
    (["--sampler", "euler"], "'euler' is not one of 'ddim', 'ddpm'"),
])
def test_bad_generate_options_are_one_line_and_write_nothing(reports, tmp_path, args, message):
    run = reports["tensorflow"]["train"]["path"]
    proc = run_cli("generate", run, "--out", str(tmp_path / "samples"), *args, env=ONE_THREAD, cwd=tmp_path)
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    lines = [line for line in proc.stderr.strip().splitlines()
             if line.strip() and not line.startswith(("Usage:", "Try "))]
    assert len(lines) == 1 and message in lines[0], proc.stderr
    assert not (tmp_path / "samples").exists()


def test_bad_training_options_are_one_line(tmp_path):
    proc = run_cli("train", "diffusion", "--out", str(tmp_path), "--widths", "12,16", env=ONE_THREAD, cwd=tmp_path)
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    assert "--widths needs two or more multiples of 8 (group norm uses 8 groups), got 12,16" in proc.stderr
    assert not (tmp_path / "diffusion").exists()
