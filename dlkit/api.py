"""The plugin API: what an algorithm plugin subclasses and what the core gives it.

A plugin is a class registered under the entry-point group ``dlkit.algorithms``. Its module may
import only the standard library and ``dlkit.api`` at top level: Keras (and so the backend) is
imported inside the hooks, after the CLI has chosen the backend. See docs/plugins.md.

This module itself imports nothing heavy, so ``dlkit list`` stays instant.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

if TYPE_CHECKING:  # only for type checkers; importing keras here would fix the backend too early
    import keras

    from dlkit.runs import Run

#: Major version of this API. A plugin declares the version it was written for in ``api_version``;
#: a different major version is reported as a broken plugin instead of failing deep inside Keras.
API_VERSION = 1

BACKENDS = ("tensorflow", "jax", "torch")


def option(default: Any, help: str, *, choices: tuple | None = None,
           min: float | None = None, max: float | None = None) -> Any:
    """A config field that becomes a CLI option: ``--kebab-name`` with this help, range and choices."""
    return field(default=default, metadata={"help": help, "choices": choices, "min": min, "max": max})


@dataclass
class TrainConfig:
    """Options every algorithm has. A plugin subclasses this dataclass to add its own."""

    epochs: int = option(3, "Passes over the training set.", min=1)
    batch_size: int = option(128, "Examples per gradient step.", min=1)
    data: str = option("", "Dataset to train on (default: the plugin's first).")
    seed: int = option(0, "Random seed for weights, shuffling and the validation split.", min=0)
    train_samples: int = option(0, "Use only the first N training examples (0 = all).", min=0)
    test_samples: int = option(0, "Evaluate on only the first N test examples (0 = all).", min=0)
    val_fraction: float = option(0.0, "Fraction of the training set held out for validation curves.",
                                 min=0.0, max=0.5)
    patience: int = option(0, "Stop early after N epochs without validation improvement (0 = off).", min=0)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass
class Dataset:
    """Arrays for one dataset, split into train / validation / test.

    ``x_*`` are NumPy arrays (images as float32 in [0, 1], shape (N, H, W, C)); ``y_*`` integer labels.
    """

    name: str
    x_train: Any
    y_train: Any
    x_test: Any
    y_test: Any
    x_val: Any = None
    y_val: Any = None
    class_names: tuple[str, ...] = ()
    input_shape: tuple[int, ...] = ()

    @property
    def num_classes(self) -> int:
        return len(self.class_names)


class Algorithm:
    """Base class of every algorithm plugin.

    Class attributes describe the plugin (read by ``dlkit list``/``info`` without importing Keras);
    the hooks below are called by the core in this order::

        data = load_data(cfg)                 # real data, cached where its loader caches it
        model = build(cfg, data)              # a compiled keras.Model (Keras 3, any backend)
        history = train(model, data, cfg, run)  # default: model.fit with checkpoints and CSV log
        metrics = evaluate(model, data, cfg)  # dict of test metrics; headline_metric must be in it
        extra_plots(model, data, cfg, run)    # optional pictures beside the learning curves
    """

    name: ClassVar[str] = ""
    summary: ClassVar[str] = ""
    config: ClassVar[type[TrainConfig]] = TrainConfig
    #: Dataset names this plugin trains on; the first is the default.
    datasets: ClassVar[tuple[str, ...]] = ()
    backends: ClassVar[tuple[str, ...]] = BACKENDS
    #: "classification" gets accuracy, log-loss and a confusion matrix from the default evaluate().
    task: ClassVar[str] = "classification"
    headline_metric: ClassVar[str] = "accuracy"
    api_version: ClassVar[int] = API_VERSION

    # -- hooks -------------------------------------------------------------------------------
    def load_data(self, cfg: TrainConfig) -> Dataset:
        """Load ``cfg.data`` through its real loader. Default: the image datasets in dlkit.data."""
        from dlkit import data

        return data.load(cfg.data)

    def build(self, cfg: TrainConfig, data: Dataset) -> keras.Model:
        """Return a compiled Keras 3 model for ``data``."""
        raise NotImplementedError(f"{type(self).__name__}.build")

    def train(self, model: keras.Model, data: Dataset, cfg: TrainConfig, run: Run) -> dict[str, list]:
        """Fit the model; return the per-epoch history. Default: ``model.fit`` with the run's callbacks."""
        validation = (data.x_val, data.y_val) if data.x_val is not None else None
        history = model.fit(data.x_train, data.y_train, batch_size=cfg.batch_size, epochs=cfg.epochs,
                            validation_data=validation, callbacks=run.callbacks(cfg),
                            verbose=run.progress_verbosity)
        return history.history

    def evaluate(self, model: keras.Model, data: Dataset, cfg: TrainConfig) -> dict[str, Any]:
        """Test metrics. Default (classification): accuracy, log-loss and the confusion matrix."""
        from dlkit import metrics

        return metrics.classification(model, data, batch_size=cfg.batch_size)

    def extra_plots(self, model: keras.Model, data: Dataset, cfg: TrainConfig, run: Run) -> None:
        """Write extra pictures (samples, reconstructions…) into ``run.plots_dir``. Default: none."""

    def custom_objects(self) -> dict[str, Any]:
        """Custom layers/losses needed to load this plugin's ``model.keras`` (registered ones need none)."""
        return {}
