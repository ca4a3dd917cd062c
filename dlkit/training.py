"""The one code path behind ``dlkit train`` / ``dlkit evaluate`` and ``dlkit.train()`` / ``dlkit.evaluate()``.

Order matters: the backend is activated before anything imports Keras; then data → build → train →
save → evaluate → plots, with the run folder kept consistent at every step (see dlkit.runs).
"""
from __future__ import annotations

import time
from datetime import datetime, timezone
from typing import Any

from dlkit import backends, registry
from dlkit.api import Algorithm, Dataset, TrainConfig
from dlkit.config import make_config
from dlkit.errors import DlkitError, TrainingInterrupted, first_line, one_line, suggest
from dlkit.registry import PluginEntry
from dlkit.runs import Run, Timer, library_versions, save_model


def call_hook(entry: PluginEntry, plugin: Algorithm, hook: str, *args):
    """Run a plugin hook; an exception from plugin code becomes one line naming plugin and hook."""
    try:
        return getattr(plugin, hook)(*args)
    except (DlkitError, KeyboardInterrupt):
        raise
    except Exception as exc:
        raise DlkitError(f"plugin '{entry.name}' ({entry.distribution}) failed in {hook}(): {one_line(exc)}") from exc


def resolve_dataset(algo: type[Algorithm], cfg: TrainConfig) -> None:
    if not cfg.data:
        cfg.data = algo.datasets[0] if algo.datasets else ""
    if algo.datasets and cfg.data not in algo.datasets:
        raise DlkitError(f"{algo.name} does not train on dataset '{cfg.data}'; choose one of "
                         f"{', '.join(algo.datasets)}.{suggest(cfg.data, algo.datasets)}")


def prepare(data: Dataset, cfg: TrainConfig) -> Dataset:
    """Apply --train-samples / --test-samples and carve the seeded validation split."""
    import numpy as np

    x_train, y_train, x_test, y_test = data.x_train, data.y_train, data.x_test, data.y_test
    if cfg.train_samples:
        x_train, y_train = x_train[: cfg.train_samples], y_train[: cfg.train_samples]
    if cfg.test_samples:
        x_test, y_test = x_test[: cfg.test_samples], y_test[: cfg.test_samples]
    x_val, y_val = data.x_val, data.y_val  # a plugin's loader may bring its own validation split
    if cfg.val_fraction > 0 and data.x_val is None:
        order = np.random.default_rng(cfg.seed).permutation(len(x_train))
        n_val = max(1, int(round(len(x_train) * cfg.val_fraction)))
        val_idx, train_idx = np.sort(order[:n_val]), np.sort(order[n_val:])
        x_val, y_val = x_train[val_idx], y_train[val_idx]
        x_train, y_train = x_train[train_idx], y_train[train_idx]
    return Dataset(data.name, x_train, y_train, x_test, y_test, x_val, y_val, data.class_names, data.input_shape)


def headline(algo: type[Algorithm], metrics: dict) -> str:
    value = metrics.get(algo.headline_metric)
    return f"{algo.headline_metric} {value:.4f}" if isinstance(value, float) else f"{algo.headline_metric} {value}"


def train(algorithm: str | PluginEntry, *, backend: str | None = None, out: str = "runs",
          echo=print, **options: Any) -> Run:
    """Train ``algorithm`` and return its :class:`~dlkit.runs.Run` (path, config, metrics, model).

    ``options`` are the plugin's config fields (``epochs=1, batch_size=64, data="mnist"`` …), checked
    exactly as the CLI checks them. Example::

        run = dlkit.train("cnn", backend="jax", epochs=1, train_samples=2000)
        run.metrics["test"]["accuracy"]
    """
    entry = registry.get(algorithm) if isinstance(algorithm, str) else algorithm
    algo, plugin = entry.cls, entry.algorithm()  # one instance, so hooks may share state
    cfg = make_config(algo.config, options)
    resolve_dataset(algo, cfg)
    backend = backends.activate(backend, algo.backends)  # before the first Keras import

    started = time.perf_counter()
    import keras

    keras.utils.set_random_seed(cfg.seed)
    data = prepare(call_hook(entry, plugin, "load_data", cfg), cfg)
    run = Run.create(out, entry.name, backend)
    record: dict[str, Any] = {
        "algorithm": entry.name, "plugin": {"distribution": entry.distribution, "version": entry.version},
        "backend": backends.running_backend(), "seed": cfg.seed, "status": "running",
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "versions": library_versions(backend), "dataset": data.name,
        "train_samples": int(len(data.x_train)), "test_samples": int(len(data.x_test)),
    }
    run.write_config({"algorithm": entry.name, "distribution": entry.distribution, "backend": backend,
                      "config": cfg.to_dict()})
    run.write_metrics(record)
    echo(f"training {entry.name} on {data.name} ({len(data.x_train)} examples) with the {record['backend']} "
         f"backend → {run.path}")

    try:
        model = call_hook(entry, plugin, "build", cfg, data)
        with Timer() as fit_time:
            history = call_hook(entry, plugin, "train", model, data, cfg, run) or {}
    except KeyboardInterrupt:
        record.update(status="interrupted", epochs_completed=run.epochs_completed,
                      wall_time_s=round(time.perf_counter() - started, 2))
        run.write_metrics(record)
        kept = f"the model after epoch {run.epochs_completed} is in {run.model_path}" if run.epochs_completed \
            else "no epoch had finished, so no model was saved"
        raise TrainingInterrupted(f"training interrupted; {kept}") from None
    except Exception as exc:
        record.update(status="failed", error=first_line(exc))
        run.write_metrics(record)
        raise

    save_model(model, run.model_path)
    epochs_done = len(next(iter(history.values()), [])) or cfg.epochs
    metrics = call_hook(entry, plugin, "evaluate", model, data, cfg)
    record.update(status="completed", epochs_completed=epochs_done, test=metrics,
                  headline={"metric": algo.headline_metric, "value": metrics.get(algo.headline_metric)},
                  train_time_s=round(fit_time.seconds, 2),
                  seconds_per_epoch=round(fit_time.seconds / max(epochs_done, 1), 2),
                  train_samples_per_s=round(len(data.x_train) * epochs_done / fit_time.seconds, 1),
                  wall_time_s=round(time.perf_counter() - started, 2))
    run.write_metrics(record)
    _plots(entry, plugin, model, data, cfg, run, history, metrics)
    echo(f"done: test {headline(algo, metrics)} | {record['backend']} | {epochs_done} epoch(s), "
         f"{record['train_time_s']} s training | run: {run.path}")
    return run


def _plots(entry, plugin, model, data, cfg, run, history, metrics) -> None:
    from dlkit import plots

    algo = entry.cls
    title = f"{entry.name} on {data.name} ({backends.running_backend()})"
    plots.learning_curves(history, run.plots_dir / "learning_curves.png", title)
    if algo.task == "classification" and "confusion_matrix" in metrics:
        plots.confusion_matrix(metrics["confusion_matrix"], data.class_names,
                               run.plots_dir / "confusion_matrix.png",
                               f"{title}: test {headline(algo, metrics)}")
    call_hook(entry, plugin, "extra_plots", model, data, cfg, run)


def run_plugin(run: Run) -> tuple[PluginEntry, TrainConfig]:
    """The plugin that trained ``run`` (from the same distribution) and the run's resolved config."""
    saved = run.config
    spec = f"{saved['distribution']}:{saved['algorithm']}" if saved.get("distribution") else saved["algorithm"]
    entry = registry.get(spec)
    cfg = make_config(entry.cls.config, saved.get("config", {}))
    resolve_dataset(entry.cls, cfg)
    return entry, cfg


def evaluate(run_dir: str, *, backend: str | None = None, echo=print) -> dict[str, Any]:
    """Reload a run's model.keras on ``backend`` and recompute its test metrics on the same test set."""
    run = Run.open(run_dir)
    entry, cfg = run_plugin(run)
    plugin = entry.algorithm()
    backend = backends.activate(backend or run.config.get("backend"), entry.cls.backends)
    import keras

    keras.utils.set_random_seed(cfg.seed)
    model = run.load_model(call_hook(entry, plugin, "custom_objects"))
    data = prepare(call_hook(entry, plugin, "load_data", cfg), cfg)
    metrics = call_hook(entry, plugin, "evaluate", model, data, cfg)
    recorded = run.metrics.get("test", {})
    name = entry.cls.headline_metric
    echo(f"{run.path}: trained on {run.metrics.get('backend', '?')}, evaluated on {backends.running_backend()}: "
         f"{headline(entry.cls, metrics)} (recorded at training: {recorded.get(name, 'n/a')})")
    return {"backend": backends.running_backend(), "test": metrics, "recorded": recorded}
