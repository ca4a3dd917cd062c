"""gan: one adversarial update the same on TensorFlow, JAX and PyTorch, a tiny conditional run per backend,
generation with and without --label, Ctrl-C and --resume, evaluate on another backend, bad input in one line.

Starting a backend costs more than the tiny runs, so tests/gan_check.py does the checks that need Keras in one
process per backend, two processes at a time; the test process itself never imports Keras.
"""
from __future__ import annotations

import csv
import functools
import io
import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from dlkit.plugins.gan import GANConfig, latents, slerp
from tests.conftest import BACKENDS, ONE_THREAD, run_check, run_cli
from tests.gan_check import RESUMED, TINY

pytestmark = pytest.mark.e2e
SCRIPT = Path(__file__).with_name("gan_check.py")
check = functools.partial(run_check, SCRIPT, timeout=400)


@pytest.fixture(scope="module")
def reports(tmp_path_factory) -> dict:
    """The checks on each backend, then the JAX run evaluated on PyTorch through the CLI, two at a time."""
    out = tmp_path_factory.mktemp("gan")
    with ThreadPoolExecutor(2) as pool:
        found = dict(zip(BACKENDS, pool.map(lambda b: check(out / b, backend=b), BACKENDS)))
        jax_run = found["jax"]["train"]["path"]
        evaluated = pool.submit(run_cli, "evaluate", jax_run, "--backend", "torch", "--json", env=ONE_THREAD, cwd=out)
        refused = pool.submit(run_cli, "generate", found["tensorflow"]["train"]["path"], "--label", "12",
                              "--backend", "torch", env=ONE_THREAD, cwd=out)
        found["evaluated"], found["refused_cli"] = evaluated.result(), refused.result()
    return found


# -- the pieces without Keras ------------------------------------------------------------------------------
def test_latents_are_gaussian_noise_and_classes_in_turn():
    noise, labels = latents(np.random.default_rng(0), 25, 6, 10)
    assert noise.dtype == np.float32 and noise.shape == (25, 6) and labels.dtype == np.int32
    assert labels.tolist() == [*range(10), *range(10), *range(5)]
    again, _ = latents(np.random.default_rng(0), 25, 6, 10)
    assert np.array_equal(noise, again)  # NumPy's stream: the same on every backend


def test_slerp_keeps_the_norm_where_a_straight_line_would_not():
    rng = np.random.default_rng(1)
    a, b = rng.standard_normal((2, 3, 100), dtype="float32")
    path = slerp(a, b, np.linspace(0.0, 1.0, 9))                               # (3, 9, 100)
    assert path.shape == (3, 9, 100)
    np.testing.assert_allclose(path[:, 0], a, atol=1e-5)
    np.testing.assert_allclose(path[:, -1], b, atol=1e-5)
    norms = np.linalg.norm(path, axis=2)
    ends = np.linalg.norm(a, axis=1)[:, None], np.linalg.norm(b, axis=1)[:, None]
    assert (norms >= np.minimum(*ends) - 1e-3).all()                            # never dips inside the sphere
    assert (np.linalg.norm((a + b) / 2, axis=1) < 0.8 * norms[:, 4]).all()      # the straight line's midpoint does


def test_patience_is_refused_in_one_line():
    from dlkit.errors import DlkitError

    with pytest.raises(DlkitError, match="a GAN has none to stop on"):
        GANConfig(patience=3)


# -- the adversarial update ---------------------------------------------------------------------------------
@pytest.mark.parametrize("other", ["jax", "torch"])
def test_one_d_and_one_g_step_give_the_same_numbers_on_every_backend(reports, other):
    ref, it = reports["tensorflow"]["steps"], reports[other]["steps"]
    for step in ("d", "g"):
        for name, value in ref[step].items():
            assert it[step][name] == pytest.approx(value, rel=1e-4), (step, name)
    for part in ("d_after", "g_after"):
        for mine, theirs in zip(it[part], ref[part]):
            np.testing.assert_allclose(mine, theirs, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("backend", BACKENDS)
def test_the_d_step_trains_d_only_and_reports_its_two_scores(reports, backend):
    found = reports[backend]["steps"]
    assert found["g_kept_by_d_step"]  # G is in the D step's `uses`: read, never trained
    assert 0.0 < found["d"]["d_real"] < 1.0 and 0.0 < found["d"]["d_fake"] < 1.0
    # L_D = mean softplus(-ℓ_real) + mean softplus(ℓ_fake) ≥ -log D(x) - log(1 - D(G(z))) by Jensen
    assert found["d"]["loss"] >= -np.log(found["d"]["d_real"]) - np.log(1 - found["d"]["d_fake"]) - 1e-5


# -- training, generation, resume, evaluation ---------------------------------------------------------------
@pytest.mark.parametrize("backend", BACKENDS)
def test_a_tiny_conditional_run_trains_logs_plots_and_scores_its_samples(reports, backend):
    found = reports[backend]["train"]
    metrics, run = found["metrics"], Path(found["path"])
    assert metrics["status"] == "completed" and metrics["backend"] == backend
    assert metrics["epochs_completed"] == TINY["epochs"] and metrics["dataset"] == "digits"
    test = metrics["test"]
    assert metrics["headline"] == {"metric": "classifier_score", "value": test["classifier_score"]}
    assert 1.0 <= test["classifier_score"] <= 10.0 and test["frechet_distance"] > 0
    assert test["samples"] == TINY["eval_samples"] == sum(test["class_histogram"])
    assert 0 <= test["classes_covered"] <= 10 and 0.0 <= test["label_accuracy"] <= 1.0
    assert test["reference_test_accuracy"] > 0.9  # the reference classifier's own figure is kept beside
    rows = list(csv.DictReader(io.StringIO(found["history"])))
    assert [int(r["epoch"]) for r in rows] == [1, 2]
    for row in rows:
        assert float(row["d_loss"]) > 0 and float(row["g_loss"]) > 0
        assert 0 < float(row["d_real"]) < 1 and 0 < float(row["d_fake"]) < 1
    assert {"learning_curves.png", "samples_epoch_001.png", "samples_epoch_002.png"} <= set(found["plots"])
    assert (run / "model.keras").is_file() and not (run / "resume").exists()
    # the generator's batch-norm layers, recomputed over --bn-batches batches of its own noise
    assert metrics["batchnorm_reestimated"]["layers"] == 2  # project_bn and up1_bn (D's is not sampled)
    assert metrics["batchnorm_reestimated"]["batches"] == TINY["bn_batches"]
    assert metrics["batchnorm_reestimated"]["examples"] == TINY["bn_batches"] * TINY["batch_size"]


@pytest.mark.parametrize("backend", BACKENDS)
def test_generate_writes_a_grid_the_samples_and_an_interpolation_and_honours_label(reports, backend):
    found = reports[backend]["generated"]
    for name in ("all", "three"):
        assert found[name]["files"] == ["generation.json", "interpolation.png", "samples.npz", "samples.png"]
        low, high = found[name]["range"]
        assert 0.0 <= low < high <= 1.0
    assert found["all"]["shape"] == [12, 8, 8, 1] and found["all"]["labels"] == [*range(10), 0, 1]
    assert found["three"]["shape"] == [5, 8, 8, 1] and found["three"]["labels"] == [3] * 5
    assert found["three"]["summary"]["label"] == 3 and found["three"]["summary"]["conditional"]


@pytest.mark.parametrize("backend", BACKENDS)
def test_ctrl_c_then_resume_continues_as_an_uninterrupted_run(reports, backend):
    found = reports[backend]["resume"]
    assert found["stopped"].startswith("training interrupted; the model after epoch 1 is in")
    assert found["at_interrupt"] == {"status": "interrupted", "epochs_completed": 1}
    metrics = found["metrics"]
    assert metrics["status"] == "completed" and metrics["epochs_completed"] == RESUMED["epochs"]
    assert [r["from"] for r in metrics["resumed"]] == [1]
    resumed = list(csv.DictReader(io.StringIO(found["history"])))
    assert [int(r["epoch"]) for r in resumed] == [1, 2]
    # G, D, both optimizers restored and the batches drawn from (seed, epoch): epoch 2 after the resume is
    # epoch 2 of the uninterrupted run
    straight = list(csv.DictReader(io.StringIO(reports[backend]["train"]["history"])))
    for name in ("d_loss", "g_loss", "d_real", "d_fake"):
        assert float(resumed[1][name]) == pytest.approx(float(straight[1][name]), rel=1e-4), name


def test_evaluate_on_another_backend_gives_the_same_sample_quality(reports):
    proc = reports["evaluated"]
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout)
    recorded = reports["jax"]["train"]["metrics"]["test"]
    test = result["test"]
    assert result["backend"] == "torch" and test["samples"] == recorded["samples"]
    # the same NumPy noise through the same weights: float32 differences between backends only
    assert test["classifier_score"] == pytest.approx(recorded["classifier_score"], rel=1e-3)
    assert test["frechet_distance"] == pytest.approx(recorded["frechet_distance"], rel=1e-3)
    assert test["class_kl"] == pytest.approx(recorded["class_kl"], abs=1e-3)
    assert np.abs(np.subtract(test["class_histogram"], recorded["class_histogram"])).sum() <= 2
    assert test["label_accuracy"] == pytest.approx(recorded["label_accuracy"], abs=2 / recorded["samples"])


# -- bad input -----------------------------------------------------------------------------------------------
def test_bad_generate_requests_are_refused_in_one_line_and_leave_nothing(reports):
    found = reports["tensorflow"]["refusals"]
    messages = found["messages"]
    assert messages["label_unconditional"] == ("--label needs a conditional GAN; this run is unconditional "
                                               "(train one with --conditional)")
    assert messages["label_12"] == "--label 12 is not a class of digits: give 0..9"
    assert messages["label_negative"] == "--label -1 is not a class of digits: give 0..9"
    assert "--samples" in messages["samples_0"] and "0" in messages["samples_0"]
    assert messages["cnn"].startswith("cnn runs do not generate samples")
    assert found["left_behind"] == []
    assert "label_accuracy" not in found["unconditional_test"]  # no labels asked, none to check
    assert "samples_epoch_001.png" in found["unconditional_plots"]


def test_the_cli_refuses_a_label_outside_the_classes_in_one_line(reports):
    proc = reports["refused_cli"]
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    lines = [line for line in proc.stderr.strip().splitlines() if line.strip()]
    assert lines == ["Error: --label 12 is not a class of digits: give 0..9"], proc.stderr


@pytest.mark.parametrize("n", ["0", "-3"])
def test_the_cli_refuses_no_or_negative_samples(reports, n, tmp_path):
    proc = run_cli("generate", reports["tensorflow"]["train"]["path"], "-n", n, env=ONE_THREAD, cwd=tmp_path)
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    lines = [line for line in proc.stderr.strip().splitlines() if line.strip() and not line.startswith(("Usage:", "Try "))]
    assert len(lines) == 1 and "-n" in lines[0] and "x>=1" in lines[0], proc.stderr
