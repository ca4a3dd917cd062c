"""dlkit — classic deep-learning algorithms that actually work, on the Keras 3 backend of your choice.

Importing dlkit is cheap: Keras (and TensorFlow, JAX or PyTorch) is imported only when a model is
built, after the backend has been chosen. The Python API runs the same code path as the CLI::

    import dlkit
    run = dlkit.train("cnn", backend="jax", epochs=1)
    print(run.path, run.metrics["test"]["accuracy"])
"""
from __future__ import annotations

from dlkit.api import API_VERSION, Algorithm, BaseConfig, Dataset, GenerateConfig, TrainConfig, option
from dlkit.errors import DlkitError

__version__ = "0.1.0"
__all__ = ["API_VERSION", "Algorithm", "BaseConfig", "Dataset", "DlkitError", "GenerateConfig", "TrainConfig",
           "evaluate", "generate", "option", "predict", "resume", "train"]


def train(algorithm: str, *, backend: str | None = None, out: str = "runs", **options):
    """Train a registered algorithm; returns a :class:`dlkit.runs.Run`. See :func:`dlkit.training.train`."""
    from dlkit import training

    return training.train(algorithm, backend=backend, out=out, **options)


def evaluate(run_dir: str, *, backend: str | None = None) -> dict:
    """Reload a run's model on ``backend`` and recompute its test metrics."""
    from dlkit import training

    return training.evaluate(run_dir, backend=backend)


def resume(run_dir: str, *, backend: str | None = None):
    """Continue an interrupted or failed run from its last checkpoint; returns its :class:`dlkit.runs.Run`."""
    from dlkit import training

    return training.resume(run_dir, backend=backend)


def generate(run_dir: str, *, backend: str | None = None, out: str | None = None, **options) -> dict:
    """Samples from a saved run (the plugin's generate options as keywords); returns where they went."""
    from dlkit import training

    return training.generate(run_dir, backend=backend, out=out, **options)


def predict(run_dir: str, inputs: list[str], *, backend: str | None = None, **options) -> list[dict]:
    """A saved run's model on ``inputs`` (texts…); one result dict per input."""
    from dlkit import training

    return training.predict(run_dir, inputs, backend=backend, **options)
