"""One epoch on a few MNIST images through dlkit's real training path, then a reload in safe mode."""
from __future__ import annotations

import dlkit


def test_reconstructs_and_reloads(tmp_path):
    run = dlkit.train("autoencoder", out=str(tmp_path), epochs=1, train_samples=256, test_samples=64,
                      filters=8, latent=8)
    metrics = run.metrics
    assert metrics["status"] == "completed" and metrics["headline"]["metric"] == "psnr"
    test = metrics["test"]
    assert test["psnr"] > 0 and 0 < test["mse"] < 1 and "accuracy" not in test
    assert (run.path / "plots" / "reconstructions.png").is_file()
    assert not (run.path / "plots" / "confusion_matrix.png").exists()
    again = dlkit.evaluate(str(run.path))  # the MaskingNoise layer must deserialize with safe_mode on
    assert abs(again["test"]["psnr"] - test["psnr"]) < 1e-4


def test_entry_module_is_light_and_the_model_module_registers_the_layer():
    """`dlkit list` imports only the entry module; the model module brings Keras and the layer."""
    import subprocess
    import sys

    code = ("import sys, dlkit_autoencoder; print('keras' in sys.modules); "
            "import dlkit_autoencoder.model, keras; "
            "print(keras.saving.get_registered_object('dlkit_autoencoder>MaskingNoise').__name__)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.split() == ["False", "MaskingNoise"]
