"""The plugin API: the types a plugin subclasses and the hooks the core calls. Nothing else.

A plugin is a class registered under the entry-point group ``dlkit.algorithms``. Its entry module
imports only the standard library and ``dlkit.api`` at top level: Keras (and so the backend) is
imported inside the hooks, after the CLI has chosen the backend. A model that grows past a few
lines lives in a second module that imports Keras at its top and is imported inside the hooks
(see docs/plugins.md, "Model modules").

This module imports nothing heavy and nothing else of dlkit, so ``dlkit list`` stays instant and the
contract has no import cycles: the defaults that need data loaders or metrics are chosen by the core
(``dlkit.tasks``), by ``task``, where it calls the hooks.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

if TYPE_CHECKING:  # only for type checkers; importing keras here would fix the backend too early
    from pathlib import Path

    import keras

    from dlkit.runs import Run

#: Major version of this API. A plugin declares the version it was written for in ``api_version``;
#: a different major version is reported as a broken plugin instead of failing deep inside Keras.
#: Additions that leave old plugins working (new optional hooks, new config types) keep the number.
API_VERSION = 1

BACKENDS = ("tensorflow", "jax", "torch")


def option(default: Any, help: str, *, choices: tuple | None = None,
           min: float | None = None, max: float | None = None, short: str | None = None) -> Any:
    """A config field that becomes a CLI option: ``--kebab-name`` with this help, range and choices.

    Types: ``int``, ``float``, ``str``, ``bool`` (``--flag/--no-flag``), ``tuple[int, ...]`` (and of
    float or str: ``--hidden 512,256``; ``min``/``max`` apply to each item) and ``X | None`` (an
    optional value: default ``None``, ``none`` on the command line). ``short`` adds a one-letter
    spelling such as ``"-n"`` (``dlkit generate RUN -n 64``).
    """
    return field(default=default, metadata={"help": help, "choices": choices, "min": min, "max": max,
                                            "short": short})


@dataclass
class BaseConfig:
    """What every algorithm has: a seed. The budget is the plugin's own (epochs, steps, env steps)."""

    seed: int = option(0, "Random seed for weights, shuffling, sampling and the validation split.", min=0)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass
class TrainConfig(BaseConfig):
    """Options of an algorithm trained for epochs on arrays (the data of most plugins)."""

    epochs: int = option(3, "Passes over the training set.", min=1)
    batch_size: int = option(128, "Examples per gradient step.", min=1)
    data: str = option("", "Dataset to train on (default: the plugin's first).")
    train_samples: int = option(0, "Use only the first N training examples (0 = all).", min=0)
    test_samples: int = option(0, "Evaluate on only the first N test examples (0 = all).", min=0)
    val_fraction: float = option(0.0, "Fraction of the training set held out for validation curves.",
                                 min=0.0, max=0.5)
    patience: int = option(0, "Stop early after N epochs without validation improvement (0 = off; needs a "
                              "validation split).", min=0)
    bn_batches: int = option(50, "After training, set batch-norm statistics to their values over N training "
                                  "batches (0 = keep the moving averages; models without batch norm skip it).", min=0)


@dataclass
class GenerateConfig:
    """Options of ``dlkit generate`` that every generating plugin has; a plugin subclasses it."""

    seed: int = option(0, "Random seed of the sampling.", min=0)


@dataclass
class Dataset:
    """One dataset, split into train / validation / test.

    ``x_*`` and ``y_*`` are NumPy arrays or nested structures of them (a tuple of encoder and decoder
    inputs, a dict), or ``None`` (a diffusion model has no ``y``; an agent has no arrays at all). All
    arrays inside one split have the same first dimension. Images are float32 in [0, 1], (N, H, W, C).
    ``info`` carries whatever else ``build`` needs (a vocabulary size, a graph, environment spaces).
    ``fixed_splits`` says the splits are part of the dataset (Planetoid's public split, a
    time-ordered series): ``--train-samples``, ``--test-samples`` and ``--val-fraction`` are refused.
    """

    name: str
    x_train: Any = None
    y_train: Any = None
    x_test: Any = None
    y_test: Any = None
    x_val: Any = None
    y_val: Any = None
    class_names: tuple[str, ...] = ()
    input_shape: tuple[int, ...] = ()
    info: dict[str, Any] = field(default_factory=dict)
    fixed_splits: bool = False

    @property
    def num_classes(self) -> int:
        return len(self.class_names)


class Algorithm:
    """Base class of every algorithm plugin.

    Class attributes describe the plugin (read by ``dlkit list``/``info`` without importing Keras);
    the hooks below are called by the core in this order::

        data = load_data(cfg)                   # real data, cached where its loader caches it
        model = build(cfg, data)                # a Keras 3 model (compiled, if train() uses fit)
        history = train(model, data, cfg, run)  # default: run.fit — checkpoints, history.csv, Ctrl-C
        metrics = evaluate(model, data, cfg)    # dict of test metrics; headline_metric must be in it
        extra_plots(model, data, cfg, run)      # optional pictures beside the learning curves

    and, on a saved run: ``custom_objects()`` before loading ``model.keras``, ``generate(...)`` for
    ``dlkit generate``, ``predict(...)`` for ``dlkit predict``. ``self.run`` is the run being trained or
    reloaded, for hooks that read or write files of their own in it (a vocabulary, an environment id).
    """

    name: ClassVar[str] = ""
    summary: ClassVar[str] = ""
    config: ClassVar[type[BaseConfig]] = TrainConfig
    #: Dataset names this plugin trains on; the first is the default.
    datasets: ClassVar[tuple[str, ...]] = ()
    backends: ClassVar[tuple[str, ...]] = BACKENDS
    #: Picks the core's default load_data/evaluate: "classification" gets image datasets, accuracy,
    #: log-loss and a confusion matrix. Any other value is free text; override those hooks.
    task: ClassVar[str] = "classification"
    #: The key of evaluate()'s dict printed and recorded as the headline; a plugin may set it per dataset on
    #: its instance (self.headline_metric = "mae" in load_data for a forecasting dataset).
    headline_metric: ClassVar[str] = "accuracy"
    #: What ``run.log``/``run.checkpoint`` count: "epoch" or "step" (a GPT's iterations, an agent's env steps).
    budget_unit: ClassVar[str] = "epoch"
    #: Options of ``dlkit generate`` for this plugin (a GenerateConfig subclass); None: it does not generate.
    generate_config: ClassVar[type[GenerateConfig] | None] = None
    #: Options of ``dlkit predict`` beyond the inputs (a dataclass of option() fields), if any.
    predict_config: ClassVar[type | None] = None
    #: Config values that make the plugin tiny for the contract test (keras-hub's small ``init_kwargs``).
    test_config: ClassVar[dict[str, Any]] = {}
    api_version: ClassVar[int] = API_VERSION

    #: The run being trained or reloaded; set by the core before any hook runs.
    run: Run | None = None

    # -- hooks -------------------------------------------------------------------------------
    def load_data(self, cfg: BaseConfig) -> Dataset:
        """Load the data through its real loader. Default: ``cfg.data`` from dlkit.data's array loaders."""
        raise NotImplementedError(f"{type(self).__name__}.load_data")

    def build(self, cfg: BaseConfig, data: Dataset) -> keras.Model:
        """Return the Keras 3 model for ``data`` (compiled, if ``train`` uses ``fit``)."""
        raise NotImplementedError(f"{type(self).__name__}.build")

    def train(self, model: keras.Model, data: Dataset, cfg: BaseConfig, run: Run) -> dict[str, list] | None:
        """Fit the model. Default: ``run.fit`` on ``x_train``/``y_train`` (validation when there is some).

        A custom loop calls ``run.log``, ``run.checkpoint`` and checks ``run.stop_requested``; it may
        return None (the core then uses what ``run.log`` recorded).
        """
        validation = (data.x_val, data.y_val) if data.x_val is not None else None
        return run.fit(model, data.x_train, data.y_train, validation_data=validation)

    def evaluate(self, model: keras.Model, data: Dataset, cfg: BaseConfig) -> dict[str, Any]:
        """Test metrics. Default (by ``task``): accuracy, log-loss and the confusion matrix."""
        raise NotImplementedError(f"{type(self).__name__}.evaluate")

    def extra_plots(self, model: keras.Model, data: Dataset, cfg: BaseConfig, run: Run) -> None:
        """Write extra pictures (samples, reconstructions…) into ``run.plots_dir``. Default: none."""

    def custom_objects(self) -> dict[str, Any]:
        """Custom layers/losses needed to load this plugin's ``model.keras`` (registered ones need none)."""
        return {}

    def generate(self, model: keras.Model, cfg: BaseConfig, options: GenerateConfig, out: Path,
                 echo) -> dict[str, Any]:
        """Produce samples (text from a prompt, images from noise) into the folder ``out``.

        ``echo(text, nl=True)`` prints (stream text with ``nl=False``). Returns a summary for
        ``generation.json`` (files written, tokens per second…). Needs ``generate_config``.
        """
        raise NotImplementedError(f"{type(self).__name__}.generate")

    def predict(self, model: keras.Model, cfg: BaseConfig, inputs: list[str], options: Any) -> list[dict[str, Any]]:
        """One result per input given on the command line (a label and its probability…)."""
        raise NotImplementedError(f"{type(self).__name__}.predict")


def overrides(plugin: Algorithm | type[Algorithm], hook: str) -> bool:
    """Whether the plugin (an instance or its class) defines ``hook`` rather than inheriting the base's."""
    cls = plugin if isinstance(plugin, type) else type(plugin)
    return getattr(cls, hook) is not getattr(Algorithm, hook)
