"""dlkit.batchnorm: statistics re-estimated after training equal the exact mean and variance of each layer's
inputs on TensorFlow, JAX and PyTorch; a model without batch norm is untouched; model.keras holds the
re-estimated values; --bn-batches 0 turns it off; a run interrupted during the re-estimate resumes to them.

tests/batchnorm_check.py does the checks that need Keras in one process per backend, two at a time; the
test process itself never imports Keras.
"""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.batchnorm_check import SIZES
from tests.conftest import BACKENDS, run_check

pytestmark = pytest.mark.e2e
SCRIPT = Path(__file__).with_name("batchnorm_check.py")
#: The run-level checks (--bn-batches 0, a model without batch norm, resume) are the core's logic, the same on
#: every backend: one backend does them.
FULL = "tensorflow"


def check(backend: str, out: Path) -> dict:
    return run_check(SCRIPT, out, *(["--full"] if backend == FULL else []), backend=backend, timeout=400)


@pytest.fixture(scope="module")
def reports(tmp_path_factory) -> dict:
    out = tmp_path_factory.mktemp("batchnorm")
    with ThreadPoolExecutor(2) as pool:
        return dict(zip(BACKENDS, pool.map(lambda b: check(b, out / b), BACKENDS)))


@pytest.mark.parametrize("backend", BACKENDS)
def test_statistics_are_the_exact_ones_of_the_layer_inputs(reports, backend):
    found = reports[backend]["reestimated"]
    assert reports[backend]["backend"] == backend
    # the first layer's inputs from a sub-model, the second's by hand in NumPy, pooled over unequal batches
    assert found["relative_error"] < 1e-4
    assert found["info"]["batches"] == len(SIZES) and found["info"]["examples"] == sum(SIZES)
    assert found["layers"] == ["bn", "inner_bn"]  # one inside a custom layer; the frozen one is left out
    assert found["frozen_unchanged"]
    assert found["momentum"] == 0.9 and found["dropout"] == 0.5  # put back after the pass
    assert found["two_batches"]["batches"] == 2 and found["two_batches"]["examples"] == sum(SIZES[:2])


@pytest.mark.parametrize("backend", BACKENDS)
def test_models_without_batch_norm_and_empty_batches_change_nothing(reports, backend):
    found = reports[backend]["reestimated"]
    assert found["plain"] is None and found["plain_unchanged"]
    assert found["empty"] is None


@pytest.mark.parametrize("backend", BACKENDS)
def test_trained_model_keras_holds_the_reestimated_statistics(reports, backend):
    found = reports[backend]
    # digits: 1,437 training images in batches of 64, all 23 of them (fewer than --bn-batches 50)
    assert found["train"]["batchnorm"]["layers"] == 3
    assert found["train"]["batchnorm"]["batches"] == 23 and found["train"]["batchnorm"]["examples"] == 1437
    assert found["train"]["distance"] < 1e-5


def test_bn_batches_0_and_models_without_batch_norm_keep_their_statistics(reports):
    found = reports[FULL]
    # --bn-batches 0: the moving averages are kept, and they are not the re-estimated values
    assert found["off"]["batchnorm"] is None and found["off"]["distance"] > 1e-3
    assert found["mlp"]["batchnorm"] is None and found["mlp"]["status"] == "completed"


def test_interrupted_during_the_reestimate_resumes_to_it(reports):
    found = reports[FULL]
    assert "continue with 'dlkit train --resume" in found["interrupted"]
    resumed = found["resumed"]
    assert resumed["status_before"] == "interrupted" and resumed["epochs_before"] == 2
    assert resumed["status"] == "completed" and resumed["epochs"] == 2 and resumed["history_rows"] == 2
    assert resumed["batchnorm"]["batches"] == 23
    assert resumed["distance"] < 1e-5
