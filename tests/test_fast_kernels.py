"""dlkit/fast_kernels.py: PyTorch's fused batch norm and the channels-last transpose of convolutions and
pooling (torch), and max pooling as a reshape and a max (jax) give what Keras' own layers give, in
training, under stateless_call, and in their gradients.

The kernels run in tests/fast_kernels_check.py, one process per backend.
"""
from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import run_check

pytestmark = pytest.mark.e2e
SCRIPT = Path(__file__).with_name("fast_kernels_check.py")


def test_torch_fused_batch_norm_is_keras_batch_norm():
    found = run_check(SCRIPT, backend="torch", timeout=300)
    assert found["output"] < 1e-5 and found["eval_unchanged"] < 1e-6
    assert found["moving"] < 1e-6 and found["stateless_moving"] < 1e-6  # Keras' momentum update, both ways
    assert found["input_gradient"] < 1e-4 * found["gradient_scale"]


def test_torch_channels_last_transpose_changes_the_memory_layout_only():
    found = run_check(SCRIPT, backend="torch", timeout=300)["layout"]
    assert set(found["gaps"]) == {"conv", "conv_same_strided", "depthwise", "transposed", "max_pool",
                                  "average_pool_same", "conv3d"}
    for name, gap in found["gaps"].items():
        assert gap < 1e-5, (name, gap)   # outputs and input gradients, against Keras' NCHW copy
    assert not found["copies_nhwc"]      # the permuted view of an NHWC tensor is used as it is


def test_jax_max_pool_is_keras_max_pool():
    found = run_check(SCRIPT, backend="jax", timeout=300)
    assert found["values"] == 0.0 and found["gradient"] == 0.0
    assert found["overlapping_shape"] == [4, 4, 4, 3]  # pool 3, stride 2: Keras' own path
