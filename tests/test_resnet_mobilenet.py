"""Contract tests of the resnet and mobilenet plugins: build, forward shape, no NaN, one step, save/load."""
from __future__ import annotations

import numpy as np
import pytest

from dlkit import data as datasets
from dlkit import registry
from dlkit.api import Dataset
from dlkit.config import make_config
from dlkit.errors import DlkitError
from tests.conftest import requires_dataset

pytestmark = requires_dataset("fashion_mnist")


@pytest.fixture(scope="module")
def fashion():
    full = datasets.load("fashion_mnist")
    return Dataset("fashion_mnist", full.x_train[:64], full.y_train[:64], full.x_test[:32], full.y_test[:32],
                   class_names=full.class_names, input_shape=full.input_shape)


def contract(name: str, data: Dataset, tmp_path, **options):
    import keras

    entry = registry.get(name)
    cfg = make_config(entry.cls.config, {"epochs": 1, "batch_size": 32, **options})
    model = entry.algorithm().build(cfg, data)
    probs = model.predict(data.x_test, verbose=0)
    assert probs.shape == (len(data.x_test), data.num_classes)
    assert np.all(np.isfinite(probs)) and np.allclose(probs.sum(-1), 1, atol=1e-4)
    loss = model.train_on_batch(data.x_train[:32], data.y_train[:32])
    assert np.all(np.isfinite(loss))
    path = tmp_path / "model.keras"
    model.save(path)
    again = keras.saving.load_model(path, safe_mode=True)
    np.testing.assert_allclose(again.predict(data.x_test, verbose=0), model.predict(data.x_test, verbose=0),
                               atol=1e-5)
    return model


@pytest.mark.parametrize("depth", [20])
def test_resnet_contract(fashion, tmp_path, depth):
    model = contract("resnet", fashion, tmp_path, depth=depth, schedule="paper")
    convs = [layer for layer in model.layers if type(layer).__name__ == "Conv2D" and "proj" not in layer.name]
    assert len(convs) + 1 == depth  # 6n+1 convolutions and the classifier
    assert sum("proj" in layer.name and type(layer).__name__ == "Conv2D" for layer in model.layers) == 2


def test_resnet_depth_must_be_6n_plus_2(fashion):
    entry = registry.get("resnet")
    with pytest.raises(DlkitError, match="6n\\+2"):
        entry.algorithm().build(make_config(entry.cls.config, {"depth": 21}), fashion)


def test_resnet_augmentation_keeps_shapes_and_labels(fashion):
    from dlkit.plugins.resnet import augmented_batches

    cfg = make_config(registry.get("resnet").cls.config, {"batch_size": 16, "schedule": "paper"})
    batches = augmented_batches(fashion, cfg)
    x, y = batches[0]
    assert len(batches) == 4 and x.shape == (16, 28, 28, 1) and y.shape == (16,)
    assert x.min() >= 0 and x.max() <= 1


@pytest.mark.parametrize("variant,alpha", [("v1", 0.25), ("v2", 0.35), ("v3small", 0.75)])
def test_mobilenet_contract(fashion, tmp_path, variant, alpha):
    model = contract("mobilenet", fashion, tmp_path, variant=variant, alpha=alpha)
    assert model.get_layer("resize").output.shape[1:3] == (32, 32)  # 28×28 resized for keras.applications


@pytest.mark.skipif(not datasets.missing_files("cifar10"), reason="CIFAR-10 is cached here")
def test_resnet_without_cifar_says_which_file_is_missing(cli, tmp_path):
    done = cli("train", "resnet", "--epochs", "1", "--out", str(tmp_path))
    assert done.returncode == 1
    line = done.stderr.strip().splitlines()[-1]
    assert line.startswith("Error: dataset 'cifar10' is not cached") and "cifar-10-python.tar.gz" in line
