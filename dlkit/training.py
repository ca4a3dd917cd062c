"""The one code path behind ``dlkit train`` / ``evaluate`` / ``generate`` / ``predict`` and their Python twins.

Order matters: the backend is activated before anything imports Keras; then data → build → train →
save → evaluate → plots, with the run folder kept consistent at every step (see dlkit.runs).
``--resume`` re-enters the same path at the last checkpoint.
"""
from __future__ import annotations

import dataclasses
import os
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from dlkit import backends, registry, tasks
from dlkit import distribute as distribute_lib
from dlkit.api import Algorithm, BaseConfig, Dataset, overrides
from dlkit.config import make_config
from dlkit.errors import DlkitError, TrainingInterrupted, first_line, one_line
from dlkit.files import write_json
from dlkit.registry import PluginEntry
from dlkit.runs import Run, Timer
from dlkit.versions import versions


def library_versions(backend: str) -> dict[str, str]:
    """Python and the libraries this run depends on, with the backend's framework."""
    import platform

    framework = {"tensorflow": ["tensorflow"], "jax": ["jax", "jaxlib"], "torch": ["torch"]}[backend]
    return {"python": platform.python_version(), **versions(["dlkit", "keras", "numpy", *framework])}


def call_hook(entry: PluginEntry, plugin: Algorithm, hook: str, *args):
    """Run a plugin hook (or its task's default); an exception from plugin code becomes one line."""
    function = tasks.hook(plugin, hook)
    try:
        return function(*args)
    except (DlkitError, KeyboardInterrupt):
        raise
    except Exception as exc:
        raise DlkitError(f"plugin '{entry.name}' ({entry.distribution}) failed in {hook}(): {one_line(exc)}") from exc


# -- data of any shape ---------------------------------------------------------------------------
def num_examples(tree: Any) -> int:
    """Examples in one split: the shared first dimension of every array in the (nested) structure."""
    import keras

    lengths = {len(leaf) for leaf in keras.tree.flatten(tree) if leaf is not None}
    if len(lengths) > 1:
        raise DlkitError(f"the arrays of one split have different lengths {sorted(lengths)}; every array in "
                         f"x and y of a split needs one entry per example")
    return lengths.pop() if lengths else 0


def take(tree: Any, index) -> Any:
    import keras

    return None if tree is None else keras.tree.map_structure(lambda a: None if a is None else a[index], tree)


def prepare(data: Dataset, cfg: BaseConfig) -> Dataset:
    """Apply --train-samples / --test-samples and carve the seeded validation split, inside every array.

    A dataset with fixed splits refuses those options; ``--patience`` needs a validation split.
    """
    import numpy as np

    train_n, test_n = getattr(cfg, "train_samples", 0), getattr(cfg, "test_samples", 0)
    val_fraction = getattr(cfg, "val_fraction", 0.0)
    if data.fixed_splits:
        asked = [flag for flag, value in (("--train-samples", train_n), ("--test-samples", test_n),
                                          ("--val-fraction", val_fraction)) if value]
        if asked:
            raise DlkitError(f"dataset '{data.name}' comes with fixed train/validation/test splits; "
                             f"{' and '.join(asked)} would change them")
        prepared = data
    else:
        x_train, y_train, x_test, y_test = data.x_train, data.y_train, data.x_test, data.y_test
        num_examples((x_train, y_train)), num_examples((x_test, y_test))  # one length per split, or one line
        if train_n:
            x_train, y_train = take(x_train, slice(train_n)), take(y_train, slice(train_n))
        if test_n:
            x_test, y_test = take(x_test, slice(test_n)), take(y_test, slice(test_n))
        x_val, y_val = data.x_val, data.y_val  # a loader may bring its own validation split
        if val_fraction > 0 and data.x_val is None:
            n = num_examples((x_train, y_train))
            order = np.random.default_rng(cfg.seed).permutation(n)
            n_val = max(1, int(round(n * val_fraction)))
            val_idx, train_idx = np.sort(order[:n_val]), np.sort(order[n_val:])
            x_val, y_val = take(x_train, val_idx), take(y_train, val_idx)
            x_train, y_train = take(x_train, train_idx), take(y_train, train_idx)
        prepared = dataclasses.replace(data, x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test,
                                       x_val=x_val, y_val=y_val)
    if getattr(cfg, "patience", 0) and prepared.x_val is None:
        raise DlkitError("--patience stops on the validation loss, and this run has no validation split: "
                         "add --val-fraction (e.g. 0.1)")
    return prepared


def load_prepared(entry: PluginEntry, plugin: Algorithm, cfg: BaseConfig) -> Dataset:
    data = call_hook(entry, plugin, "load_data", cfg)
    if not isinstance(data, Dataset):
        raise DlkitError(f"plugin '{entry.name}' ({entry.distribution}): load_data() returned "
                         f"{type(data).__name__}, not a dlkit.api.Dataset")
    try:
        return prepare(data, cfg)
    except DlkitError:
        raise
    except Exception as exc:  # a structure prepare cannot slice: say whose data it was
        raise DlkitError(f"plugin '{entry.name}' ({entry.distribution}): its dataset cannot be split "
                         f"({one_line(exc)})") from exc


def headline(plugin: Algorithm, metrics: dict) -> str:
    """``accuracy 0.9912``: the plugin's headline metric (an instance may choose it per dataset)."""
    name = plugin.headline_metric
    value = metrics.get(name)
    return f"{name} {value:.4f}" if isinstance(value, float) else f"{name} {value}"


# -- train and resume ------------------------------------------------------------------------------
def train(algorithm: str | PluginEntry, *, backend: str | None = None, out: str = "runs",
          echo=print, distribute: str | None = None, devices: int | None = None, **options: Any) -> Run:
    """Train ``algorithm`` and return its :class:`~dlkit.runs.Run` (path, config, metrics, model).

    ``options`` are the plugin's config fields (``epochs=1, batch_size=64, data="mnist"`` …), checked
    exactly as the CLI checks them. ``distribute="data-parallel"`` (with ``devices=N``) trains on several
    devices through keras.distribution (see dlkit.distribute). Example::

        run = dlkit.train("cnn", backend="jax", epochs=1, train_samples=2000)
        run.metrics["test"]["accuracy"]
    """
    entry = registry.get(algorithm) if isinstance(algorithm, str) else algorithm
    algo, plugin = entry.cls, entry.algorithm()  # one instance, so hooks may share state
    cfg = make_config(algo.config, options, algo.datasets)
    if backend == "auto":  # the fastest backend 'dlkit benchmark' measured for this algorithm on this machine
        from dlkit.benchmark import auto_backend

        backend, why = auto_backend(entry.name, algo.backends)
        echo(why)
    distribute_lib.check(distribute, devices, backends.normalize(backend))
    backend = backends.activate(backend, algo.backends)  # before the first Keras import

    started = time.perf_counter()
    import keras

    keras.utils.set_random_seed(cfg.seed)
    placement = distribute_lib.apply(distribute, devices)  # before the model is built: its variables are placed
    if placement:
        try:
            distribute_lib.check_batch_size(getattr(cfg, "batch_size", None), len(placement["devices"]))
        except DlkitError:
            distribute_lib.reset()
            raise
    data = load_prepared(entry, plugin, cfg)
    run = Run.create(out, entry.name, backend, algo.budget_unit)
    record: dict[str, Any] = {
        "algorithm": entry.name, "plugin": {"distribution": entry.distribution, "version": entry.version},
        "backend": backends.running_backend(), "seed": cfg.seed,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "versions": library_versions(backend), "dataset": data.name,
        "train_samples": num_examples((data.x_train, data.y_train)),
        "test_samples": num_examples((data.x_test, data.y_test)),
        "device": backends.device(),
    }
    if placement:
        record["distribute"] = placement
    run.write_config({"algorithm": entry.name, "distribution": entry.distribution, "version": entry.version,
                      "backend": backend, "budget_unit": algo.budget_unit, "config": cfg.to_dict(),
                      **({"distribute": {"mode": distribute, "devices": devices}} if placement else {})})
    examples = f" ({record['train_samples']} examples)" if record["train_samples"] else ""
    on = f" on {len(placement['devices'])} devices (data-parallel)" if placement else ""
    echo(f"training {entry.name} on {data.name}{examples} with the {record['backend']} backend{on} → {run.path}")
    with distribute_lib.placed(placement):
        return _fit(entry, plugin, cfg, data, run, record, echo, started)


def resume(run_dir: str | Path, *, backend: str | None = None, echo=print) -> Run:
    """Continue an interrupted or failed run from its last checkpoint, to the end of its budget.

    The model, its optimizer (and so the learning-rate schedule's position) and whatever a custom
    loop checkpointed are restored; history.csv continues; the run ends as an uninterrupted one would.
    """
    run = Run.open(run_dir)
    entry, cfg = run_plugin(run)
    record = run.metrics
    status = record.get("status")
    if status == "completed":
        raise DlkitError(f"{run.path} has already completed; nothing to resume (train a new run instead)")
    if status == "running" and _alive(record.get("pid")):
        raise DlkitError(f"{run.path} is still being trained by process {record['pid']}")
    saved_version = run.config.get("version") or record.get("plugin", {}).get("version")
    if saved_version and saved_version != entry.version:
        raise DlkitError(f"{run.path} was trained by {entry.distribution} {saved_version}; the installed plugin is "
                         f"{entry.version}, whose model may differ: install {entry.distribution}=={saved_version} "
                         f"to resume it")
    if run.checkpoint_index() is None:
        raise DlkitError(f"{run.path} has no checkpoint to resume from (no {run.unit} was completed before it "
                         f"stopped): train a new run instead")
    plugin = entry.algorithm()
    parallel = run.config.get("distribute") or {}  # a data-parallel run continues data-parallel
    distribute_lib.check(parallel.get("mode"), parallel.get("devices"),
                         backends.normalize(backend or run.config.get("backend")))
    backend = backends.activate(backend or run.config.get("backend"), entry.cls.backends)
    started = time.perf_counter()
    import keras

    start = run.prepare_resume()
    keras.utils.set_random_seed(cfg.seed + start)  # a fresh stream for the epochs/steps still to come
    placement = distribute_lib.apply(parallel.get("mode"), parallel.get("devices"))
    plugin.run, run.cfg = run, cfg  # load_data may read the run's artifacts (a vocabulary)
    data = load_prepared(entry, plugin, cfg)
    record.setdefault("resumed", []).append({"from": start, "backend": backends.running_backend(),
                                             "at": datetime.now(timezone.utc).isoformat(timespec="seconds")})
    record.update(backend=backends.running_backend(), device=backends.device())
    if placement:
        record["distribute"] = placement
    for stale in ("error", "test", "headline"):
        record.pop(stale, None)
    echo(f"resuming {entry.name} at {run.unit} {start} with the {record['backend']} backend → {run.path}")
    with distribute_lib.placed(placement):
        return _fit(entry, plugin, cfg, data, run, record, echo, started)


def _alive(pid: Any) -> bool:
    if not isinstance(pid, int) or pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _fit(entry: PluginEntry, plugin: Algorithm, cfg: BaseConfig, data: Dataset, run: Run, record: dict,
         echo, started: float) -> Run:
    """build → (restore) → train → save → evaluate → plots, recording every state in metrics.json."""
    plugin.run, run.cfg = run, cfg
    unit = run.unit
    record.update(status="running", pid=os.getpid())
    run.write_metrics(record)
    try:
        model = call_hook(entry, plugin, "build", cfg, data)
        if run.start:
            run.restore_model(model)
        with run.interruptible(), Timer() as fit_time:
            history = call_hook(entry, plugin, "train", model, data, cfg, run)
            if run.stop_requested:  # a custom loop that saw the flag and returned
                raise KeyboardInterrupt
        if record.get("distribute"):
            distribute_lib.reset()  # evaluation and plots on one device: their batches need not split evenly
            record["distribute"].update(batches_split=run.fitted, examples_dropped=run.dropped_for_devices)
            if not run.fitted:
                echo("note: this plugin trains in a loop of its own, not model.fit: its variables were replicated "
                     "on the devices but its batches were not split across them")
            elif run.dropped_for_devices:
                echo(f"note: {run.dropped_for_devices} example(s) were left out so that every batch splits evenly "
                     f"over the devices")
    except KeyboardInterrupt:
        record.update(status="interrupted", **{f"{unit}s_completed": run.completed},
                      wall_time_s=round(time.perf_counter() - started, 2))
        record.pop("pid", None)
        run.write_metrics(record)
        kept = (f"the model after {unit} {run.completed} is in {run.model_path}; continue with "
                f"'dlkit train --resume {run.path}'") if run.completed else f"no {unit} had finished, so no model was saved"
        raise TrainingInterrupted(f"training interrupted; {kept}") from None
    except Exception as exc:
        record.update(status="failed", error=first_line(exc), **{f"{unit}s_completed": run.completed})
        record.pop("pid", None)
        run.write_metrics(record)
        raise

    if run.batchnorm:  # statistics re-estimated after the last step (dlkit/batchnorm.py)
        record["batchnorm_reestimated"] = run.batchnorm
        echo(f"batch norm: statistics of {run.batchnorm['layers']} layer(s) re-estimated over "
             f"{run.batchnorm['batches']} training batches in {run.batchnorm['seconds']} s")
    run.save_model(model)
    run.discard_checkpoint()  # completed: model.keras is the result, and --resume is refused
    # what run.log recorded covers a resumed run's earlier epochs too; a plugin's own history otherwise
    history = run.metric_history() if run.history else (history or {})
    logged = run.history.get(unit) or [0]
    done = max(run.completed, logged[-1]) or len(next(iter(history.values()), [])) or getattr(cfg, "epochs", 0)
    metrics = call_hook(entry, plugin, "evaluate", model, data, cfg)
    train_time = record.get("train_time_s", 0.0) * bool(run.start) + fit_time.seconds
    record.pop("pid", None)
    record.update(status="completed", **{f"{unit}s_completed": done}, test=metrics,
                  headline={"metric": plugin.headline_metric, "value": metrics.get(plugin.headline_metric)},
                  train_time_s=round(train_time, 2),
                  wall_time_s=round(record.get("wall_time_s", 0.0) * bool(run.start)
                                    + time.perf_counter() - started, 2))
    if done > run.start:
        record[f"seconds_per_{unit}"] = round(fit_time.seconds / (done - run.start), 3)
    if unit == "epoch" and record.get("train_samples"):
        record["train_samples_per_s"] = round(record["train_samples"] * (done - run.start) / fit_time.seconds, 1)
    run.write_metrics(record)
    _plots(entry, plugin, model, data, cfg, run, history, metrics)
    echo(f"done: test {headline(plugin, metrics)} | {record['backend']} | {done} {unit}(s), "
         f"{record['train_time_s']} s training | run: {run.path}")
    return run


def _plots(entry, plugin, model, data, cfg, run, history, metrics) -> None:
    from dlkit import plots

    algo = entry.cls
    title = f"{entry.name} on {data.name} ({backends.running_backend()})"
    steps = run.history.get(run.unit) or None
    plots.learning_curves(history, run.plots_dir / "learning_curves.png", title, x=steps, unit=run.unit)
    if algo.task == "classification" and "confusion_matrix" in metrics:
        plots.confusion_matrix(metrics["confusion_matrix"], data.class_names,
                               run.plots_dir / "confusion_matrix.png",
                               f"{title}: test {headline(plugin, metrics)}")
    call_hook(entry, plugin, "extra_plots", model, data, cfg, run)


# -- saved runs: evaluate, generate, predict ---------------------------------------------------------
def run_plugin(run: Run) -> tuple[PluginEntry, BaseConfig]:
    """The plugin that trained ``run`` (from the same distribution) and the run's resolved config."""
    saved = run.config
    spec = f"{saved['distribution']}:{saved['algorithm']}" if saved.get("distribution") else saved["algorithm"]
    entry = registry.get(spec)
    cfg = make_config(entry.cls.config, saved.get("config", {}), entry.cls.datasets)
    return entry, cfg


def open_run(run_dir: str | Path) -> tuple[Run, PluginEntry, BaseConfig]:
    """A saved run's folder, the plugin that trained it and its config (Keras not imported yet)."""
    run = Run.open(run_dir)
    entry, cfg = run_plugin(run)
    return run, entry, cfg


def load_run_model(run: Run, entry: PluginEntry, cfg: BaseConfig, backend: str | None):
    """The plugin (``plugin.run`` set) and the run's model.keras, loaded on ``backend`` (default: the run's)."""
    plugin = entry.algorithm()
    plugin.run, run.cfg = run, cfg
    backends.activate(backend or run.config.get("backend"), entry.cls.backends)
    import keras

    keras.utils.set_random_seed(cfg.seed)
    model = run.load_model(call_hook(entry, plugin, "custom_objects"))
    if keras.backend.backend() == "torch" and getattr(model, "jit_compile", False):
        # saved on TensorFlow or JAX, where "auto" means XLA; on PyTorch it would mean torch.compile,
        # which compiles a recurrent loop for minutes. PyTorch's own default is eager
        model.jit_compile = False
    return plugin, model


def evaluate(run_dir: str, *, backend: str | None = None, echo=print) -> dict[str, Any]:
    """Reload a run's model.keras on ``backend`` and recompute its test metrics on the same test set."""
    run, entry, cfg = open_run(run_dir)
    plugin, model = load_run_model(run, entry, cfg, backend)
    data = load_prepared(entry, plugin, cfg)
    metrics = call_hook(entry, plugin, "evaluate", model, data, cfg)
    recorded = run.metrics.get("test", {})
    name = plugin.headline_metric
    echo(f"{run.path}: trained on {run.metrics.get('backend', '?')}, evaluated on {backends.running_backend()}: "
         f"{headline(plugin, metrics)} (recorded at training: {recorded.get(name, 'n/a')})")
    return {"backend": backends.running_backend(), "test": metrics, "recorded": recorded}


def _which_plugins(hook: str) -> str:
    names = [e.name for e in registry.discover() if e.cls is not None and overrides(e.cls, hook)]
    return ", ".join(names) or "none installed"


def generate(run_dir: str, *, backend: str | None = None, out: str | None = None, echo=print,
             **options: Any) -> dict[str, Any]:
    """Samples from a saved run (text from a prompt, images from noise) into ``out``.

    ``out`` defaults to ``RUN_DIR/samples/<time>/``; the folder appears only once generation succeeded.
    """
    run, entry, cfg = open_run(run_dir)
    algo = entry.cls
    if algo.generate_config is None or not overrides(algo, "generate"):
        raise DlkitError(f"{entry.name} runs do not generate samples (its plugin has no generate hook); "
                         f"plugins that do: {_which_plugins('generate')}")
    opts = make_config(algo.generate_config, options)
    target = Path(out) if out else run.path / "samples" / datetime.now().strftime("%Y%m%d-%H%M%S")
    if target.exists() and any(target.iterdir()):
        raise DlkitError(f"{target} already exists and is not empty; choose another --out")
    plugin, model = load_run_model(run, entry, cfg, backend)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = target.with_name(f".partial-{target.name}")
    import shutil

    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    try:
        summary = call_hook(entry, plugin, "generate", model, cfg, opts, staging, echo) or {}
        write_json(staging / "generation.json", {"run": str(run.path), "algorithm": entry.name,
                                                 "backend": backends.running_backend(),
                                                 "options": dataclasses.asdict(opts), "summary": summary})
        if target.exists():
            target.rmdir()
        os.replace(staging, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return {"out": str(target), "backend": backends.running_backend(), **summary}


def predict(run_dir: str, inputs: list[str], *, backend: str | None = None, **options: Any) -> list[dict[str, Any]]:
    """One result per input (a text to classify, a date to normalise…) from a saved run, on any backend."""
    run, entry, cfg = open_run(run_dir)
    algo = entry.cls
    if not overrides(algo, "predict"):
        raise DlkitError(f"{entry.name} runs do not take inputs on the command line (its plugin has no predict "
                         f"hook); plugins that do: {_which_plugins('predict')}")
    if not inputs:
        raise DlkitError("give at least one input to predict")
    for i, text in enumerate(inputs, 1):
        if not text.strip():
            raise DlkitError(f"input {i} is empty; give the text to predict on")
    opts = make_config(algo.predict_config, options) if algo.predict_config else None
    if opts is None and options:
        raise DlkitError(f"{entry.name} predict takes no options (got {', '.join('--' + k for k in options)})")
    plugin, model = load_run_model(run, entry, cfg, backend)
    results = call_hook(entry, plugin, "predict", model, cfg, list(inputs), opts)
    if not isinstance(results, list) or len(results) != len(inputs):
        raise DlkitError(f"plugin '{entry.name}' ({entry.distribution}): predict() must return one result per input")
    return results
