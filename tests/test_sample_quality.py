"""sample_quality: the metric formulas against closed forms, then the digits reference classifier on TensorFlow,
JAX and PyTorch at once (one trains it, the others wait and load it; all score the same images the same), its
cache reused and retrained when corrupt, a missing dataset refused in one line.

Starting a backend costs more than the checks, so tests/sample_quality_check.py does those that need Keras in
one process per backend; the test process itself never imports Keras.
"""
from __future__ import annotations

import functools
import math
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from dlkit.errors import DlkitError
from dlkit.sample_quality import class_statistics, classifier_score, feature_statistics, frechet_distance
from tests.conftest import BACKENDS, run_check
from tests.sample_quality_check import NOISE, ONE_CLASS

SCRIPT = Path(__file__).with_name("sample_quality_check.py")
check = functools.partial(run_check, SCRIPT, timeout=400)


# -- the formulas ---------------------------------------------------------------------------------------------
def entropy(p, axis=-1):
    return -np.where(p > 0, p * np.log(np.where(p > 0, p, 1)), 0).sum(axis=axis)


def test_classifier_score_is_the_inception_score_identity():
    rng = np.random.default_rng(1)
    p = rng.dirichlet(np.full(10, 0.3), size=500)
    # E_x KL(p(y|x) ‖ p(y)) = H(p(y)) − E_x H(p(y|x)): the mutual information between sample and class
    expected = math.exp(entropy(p.mean(0)) - entropy(p).mean())
    assert classifier_score(p) == pytest.approx(expected, rel=1e-9)
    assert 1 < classifier_score(p) < 10


def test_classifier_score_is_k_for_confident_balanced_and_1_for_one_distribution():
    assert classifier_score(np.eye(10)[np.arange(1000) % 10]) == pytest.approx(10.0, rel=1e-9)
    assert classifier_score(np.eye(10)[np.zeros(1000, int)]) == pytest.approx(1.0, abs=1e-12)
    assert classifier_score(np.tile(np.full(10, 0.1), (50, 1))) == pytest.approx(1.0, abs=1e-12)


def test_frechet_distance_of_diagonal_gaussians_is_the_closed_form():
    mu1, mu2 = np.array([0.0, 1.0, 2.0]), np.array([1.0, 1.0, 0.0])
    sd1, sd2 = np.array([1.0, 2.0, 0.5]), np.array([2.0, 2.0, 1.5])
    # for commuting (diagonal) covariances the trace term is Σ (σ₁ − σ₂)²
    expected = ((mu1 - mu2) ** 2).sum() + ((sd1 - sd2) ** 2).sum()
    assert frechet_distance(mu1, np.diag(sd1 ** 2), mu2, np.diag(sd2 ** 2)) == pytest.approx(expected, rel=1e-9)


def trace_sqrt_product(s1, s2):
    """Tr((Σ₁Σ₂)^½) as the eigenvalues of the symmetric Σ₁^½ Σ₂ Σ₁^½ give it: exact for singular matrices too."""
    w, v = np.linalg.eigh(s1)
    root = (v * np.sqrt(np.clip(w, 0, None))) @ v.T
    return np.sqrt(np.clip(np.linalg.eigvalsh(root @ s2 @ root), 0, None)).sum()


@pytest.mark.parametrize("rank", [40, 12])  # full rank, then singular (fewer samples than features, like dead units)
def test_frechet_distance_of_full_and_singular_covariances(rank):
    rng = np.random.default_rng(rank)
    a, b = rng.normal(size=(rank + 1, 40)), rng.normal(size=(rank + 1, 40)) * 1.5 + 0.3
    (mu1, s1), (mu2, s2) = feature_statistics(a), feature_statistics(b)
    expected = ((mu1 - mu2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * trace_sqrt_product(s1, s2)
    assert frechet_distance(mu1, s1, mu2, s2) == pytest.approx(expected, rel=1e-4)
    assert frechet_distance(mu1, s1, mu1, s1) == pytest.approx(0.0, abs=1e-6 * np.trace(s1))


def test_feature_statistics_need_two_samples():
    with pytest.raises(DlkitError, match="at least 2 samples"):
        feature_statistics(np.ones((1, 5)))


def test_one_class_covers_one_class_at_kl_log_10():
    balanced = np.full(10, 0.1)
    one = class_statistics(np.full(1000, 7), balanced)
    assert one == {"classes_covered": 1, "class_kl": pytest.approx(math.log(10)),
                   "class_histogram": [0] * 7 + [1000] + [0] * 2}
    every = class_statistics(np.arange(1000) % 10, balanced)
    assert every["classes_covered"] == 10 and every["class_kl"] == pytest.approx(0.0, abs=1e-12)


def test_classifier_errors_on_a_collapsed_set_do_not_count_as_covered_classes():
    # one mode, and a 99%-accurate classifier's 1% of errors spread over the nine other classes
    predicted = np.concatenate([np.zeros(9900, int), np.repeat(np.arange(1, 10), 11), np.full(1, 5)])
    assert class_statistics(predicted, np.full(10, 0.1))["classes_covered"] == 1
    # the share is relative to the test set's: a class with half the usual frequency counts at half the samples
    q = np.array([0.05] + [0.95 / 9] * 9)
    assert class_statistics(np.r_[np.full(6, 0), np.arange(994) % 9 + 1], q)["classes_covered"] == 10


def test_the_module_imports_no_keras():
    code = "import sys, dlkit.sample_quality; print(sorted({'keras', 'tensorflow', 'jax', 'torch'} & set(sys.modules)))"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.stdout.strip() == "[]", proc.stderr[-2000:]


# -- the reference classifier on every backend -------------------------------------------------------------
@pytest.fixture(scope="module")
def reports(tmp_path_factory) -> dict:
    """The three backends at once on an empty cache, then the cache checks on a copy of what they left."""
    home = tmp_path_factory.mktemp("keras-home")
    with ThreadPoolExecutor(3) as pool:
        found = dict(zip(BACKENDS, pool.map(
            lambda b: check("scores", backend=b, env={"KERAS_HOME": str(home)}), BACKENDS)))
    found["cache"] = check("cache", tmp_path_factory.mktemp("empty"), backend="jax", env={"KERAS_HOME": str(home)})
    return found


@pytest.mark.e2e
def test_one_process_trains_the_classifier_the_others_load_it(reports):
    trained = [b for b in BACKENDS if reports[b]["trained"]]
    assert len(trained) == 1, trained
    assert any("training the digits reference classifier" in line for line in reports[trained[0]]["echoed"])
    assert {reports[b]["info"]["backend"] for b in BACKENDS} == {trained[0]}
    info = reports[trained[0]]["info"]
    assert info["train_images"] == [0, 1077] and info["held_out_images"] == [1077, 1437]
    assert "seed 0" in info["recipe"] and info["versions"]["keras"]


@pytest.mark.e2e
@pytest.mark.parametrize("backend", BACKENDS)
def test_reference_classifier_is_accurate_and_real_images_score_near_10(reports, backend):
    report = reports[backend]
    assert report["info"]["test_accuracy"] >= 0.97
    assert report["test_accuracy_here"] == pytest.approx(report["info"]["test_accuracy"], abs=1 / 360)
    ceiling = report["ceiling"]
    assert ceiling["samples"] == 360 and ceiling["reference"]["test_accuracy"] == report["info"]["test_accuracy"]
    assert ceiling["classifier_score"] > 9.3 and ceiling["classes_covered"] == 10 and ceiling["class_kl"] < 0.02
    assert ceiling["frechet_distance"] < 15  # two samples of 360 real digits: near, not 0 (small-N bias)
    assert sum(ceiling["class_histogram"]) == 360


@pytest.mark.e2e
@pytest.mark.parametrize("backend", BACKENDS)
def test_frechet_distance_is_0_on_the_test_images_and_grows_with_noise(reports, backend):
    distances = [reports[backend]["noisy"][str(s)]["frechet_distance"] for s in NOISE]
    assert distances[0] == pytest.approx(0.0, abs=1e-3)  # the test images' own features are the reference
    assert all(a < b for a, b in zip(distances, distances[1:])), distances
    assert distances[-1] > 5 * reports[backend]["ceiling"]["frechet_distance"]
    scores = [reports[backend]["noisy"][str(s)]["classifier_score"] for s in NOISE]
    assert scores[-1] < scores[0]


@pytest.mark.e2e
@pytest.mark.parametrize("backend", BACKENDS)
def test_one_class_covers_one_with_score_near_1(reports, backend):
    one = reports[backend]["one_class"]
    freq = reports[backend]["info"]["test_class_frequencies"][ONE_CLASS]
    assert one["classes_covered"] == 1 and one["class_histogram"][ONE_CLASS] == one["samples"] == 37
    assert one["class_kl"] == pytest.approx(-math.log(freq), abs=0.02)  # ≈ log 10
    assert one["classifier_score"] < 1.1
    assert one["frechet_distance"] > 10 * reports[backend]["ceiling"]["frechet_distance"]


@pytest.mark.e2e
@pytest.mark.parametrize("backend", ["jax", "torch"])
def test_the_same_images_score_the_same_on_every_backend(reports, backend):
    ref, other = reports["tensorflow"], reports[backend]
    np.testing.assert_allclose(other["features"], ref["features"], rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(other["probabilities"], ref["probabilities"], rtol=1e-4, atol=1e-6)
    for name in ("ceiling", "one_class", *(f"noisy/{s}" for s in NOISE)):
        a, b = (r[name] if "/" not in name else r["noisy"][name.split("/")[1]] for r in (ref, other))
        assert b["classifier_score"] == pytest.approx(a["classifier_score"], rel=1e-4), name
        assert b["frechet_distance"] == pytest.approx(a["frechet_distance"], rel=1e-3, abs=1e-3), name
        assert b["class_histogram"] == a["class_histogram"], name


@pytest.mark.e2e
def test_bad_images_are_refused_in_one_line(reports):
    refused = reports["jax"]["refused"]
    assert "(N, 8, 8, 1), got (4, 28, 28, 1)" in refused["shape"]
    assert "in [0, 1]" in refused["tanh"] and "NaN" in refused["nan"] and "cifar10" in refused["dataset"]
    assert "at least 2 images" in refused["one"]
    assert all("\n" not in line for line in refused.values())


@pytest.mark.e2e
def test_the_cache_is_reused_and_a_corrupt_one_retrained(reports):
    cache = reports["cache"]
    assert cache["reused"] == {"trained": False, "mtime_unchanged": True}
    for damaged in ("model", "json"):
        found = cache[damaged]
        assert found["trained"] and found["loads_again"] and found["test_accuracy"] >= 0.97
        assert any("unusable" in line and "training it again" in line for line in found["echoed"]), found["echoed"]
    assert cache["left_over"] == []


@pytest.mark.e2e
def test_a_missing_dataset_names_the_file_and_the_reference_classifier(reports):
    message = reports["cache"]["missing"]
    assert "\n" not in message and "mnist.npz" in message and "reference classifier" in message
    assert reports["cache"]["missing_left"] == []  # refused before anything was written
