"""Run folders, and the services a training loop gets from its run.

``runs/<algo>/<run-id>/`` holds config.json, model.keras, metrics.json, history.csv, plots/, the
plugin's own artifacts/ and the resume/ checkpoint. Every file is written atomically (temporary
name, then ``os.replace``), so Ctrl-C, a crash or SIGKILL never leaves a half-written file where a
user (or ``--resume``) would trust it.

The services are the same for ``model.fit`` and for a hand-written loop (a GAN, a DQN agent, a
step-counted GPT)::

    run.log(index, **metrics)            # one row of history.csv (index: epochs or steps done)
    run.checkpoint(index, model, **more) # model.keras + everything --resume needs (optimizers, other
                                         # models, plain values), atomically
    state = run.restore(**more)          # on --resume: the saved values back into those objects
    if run.stop_requested: ...           # Ctrl-C asks the loop to stop at a clean point
    run.fit(model, x, y)                 # model.fit with all of the above as callbacks
"""
from __future__ import annotations

import csv
import io
import json
import os
import shutil
import signal
import sys
import threading
import time
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

from dlkit.errors import DlkitError, first_line
from dlkit.files import atomic_path, write_json, write_text

CONFIG, MODEL, METRICS, HISTORY = "config.json", "model.keras", "metrics.json", "history.csv"
RESUME, ARTIFACTS = "resume", "artifacts"
UNITS = ("epoch", "step")


def save_model(model, path: Path) -> None:
    """Save atomically (Keras insists on the .keras suffix, which atomic_path's temporary name keeps)."""
    with atomic_path(path) as tmp:
        model.save(tmp)


class Run:
    """One training run's folder and what the core records in it."""

    def __init__(self, path: Path, unit: str = "epoch"):
        self.path = Path(path)
        self.plots_dir = self.path / "plots"
        # a progress bar on a terminal; one line per epoch in logs and CI
        self.progress_verbosity = 1 if sys.stdout.isatty() else 2
        if unit not in UNITS:
            raise DlkitError(f"budget_unit must be one of {', '.join(UNITS)}; got {unit!r}")
        self.unit = unit
        self.cfg: Any = None          # the resolved config, set by the core
        self.start = 0                # epochs/steps done before this process (non-zero on --resume)
        self.completed = 0            # epochs/steps done and checkpointed
        self.history: dict[str, list] = {}
        self.stop_requested = False
        self.fitted = False           # whether the plugin trained through fit (data-parallel splits its batches)
        self.dropped_for_devices = 0  # examples fit left out so that batches split evenly over the devices
        self.batchnorm: dict | None = None  # what reestimate_batch_norm did, for metrics.json

    @property
    def epochs_completed(self) -> int:
        """Epochs done and checkpointed (the name plugins written before the step budgets use)."""
        return self.completed

    # -- creating and opening ----------------------------------------------------------------
    @classmethod
    def create(cls, out: str | Path, algorithm: str, backend: str, unit: str = "epoch") -> Run:
        stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
        base = Path(out) / algorithm
        base.mkdir(parents=True, exist_ok=True)
        for n in range(1000):
            path = base / (f"{stamp}-{backend}" + (f"-{n}" if n else ""))
            try:
                path.mkdir()
                break
            except FileExistsError:
                continue
        run = cls(path, unit)
        run.plots_dir.mkdir()
        return run

    @classmethod
    def open(cls, path: str | Path) -> Run:
        run = cls(Path(path))
        if not run.path.is_dir():
            raise DlkitError(f"run folder '{path}' does not exist")
        if not (run.path / CONFIG).is_file():
            raise DlkitError(f"'{path}' is not a dlkit run folder (no {CONFIG})")
        run.unit = run.config.get("budget_unit", "epoch")
        return run

    # -- files --------------------------------------------------------------------------------
    @property
    def model_path(self) -> Path:
        return self.path / MODEL

    @property
    def config(self) -> dict:
        return self._read(CONFIG)

    @property
    def metrics(self) -> dict:
        return self._read(METRICS) if (self.path / METRICS).exists() else {}

    def _read(self, name: str) -> dict:
        try:
            return json.loads((self.path / name).read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise DlkitError(f"{self.path / name} is unreadable: {exc}") from None

    def write_config(self, payload: dict) -> None:
        write_json(self.path / CONFIG, payload)

    def write_metrics(self, payload: dict) -> None:
        write_json(self.path / METRICS, payload)

    def save_model(self, model) -> None:
        save_model(model, self.model_path)

    def load_model(self, custom_objects: dict | None = None):
        """Load model.keras with Keras' safe mode on (it refuses pickled lambdas)."""
        import keras

        if not self.model_path.is_file():
            raise DlkitError(f"no {MODEL} in {self.path}: the run saved no model (interrupted before its "
                             f"first {self.unit} ended, or failed)")
        try:
            return keras.saving.load_model(self.model_path, custom_objects=custom_objects, safe_mode=True)
        except Exception as exc:
            raise DlkitError(f"{self.model_path} is not a loadable Keras model ({first_line(exc)[:300]})") from None

    # -- artifacts: files a plugin keeps with its run (a vocabulary, an environment id) ------
    def artifact_path(self, name: str) -> Path:
        """Where the artifact ``name`` lives (``artifacts/name``); the folder is created on demand."""
        if Path(name).name != name or name in ("", ".", ".."):
            raise DlkitError(f"artifact names are plain file names, got {name!r}")
        folder = self.path / ARTIFACTS
        folder.mkdir(exist_ok=True)
        return folder / name

    def save_artifact(self, name: str, content: str | bytes | dict | list) -> Path:
        """Write an artifact atomically: text, bytes, or JSON for a dict or list."""
        path = self.artifact_path(name)
        if isinstance(content, (dict, list)):
            write_json(path, content)
        elif isinstance(content, bytes):
            with atomic_path(path) as tmp:
                tmp.write_bytes(content)
        else:
            write_text(path, content)
        return path

    def load_artifact(self, name: str, kind: str = "json") -> Any:
        """Read back an artifact saved with the run: ``kind`` is "json", "text" or "bytes"."""
        path = self.path / ARTIFACTS / name
        if not path.is_file():
            raise DlkitError(f"{self.path} has no {ARTIFACTS}/{name}, which this run's plugin needs "
                             f"(the run folder is incomplete: was the file deleted?)")
        try:
            if kind == "bytes":
                return path.read_bytes()
            text = path.read_text()
            return json.loads(text) if kind == "json" else text
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise DlkitError(f"{path} is unreadable: {first_line(exc)}") from None

    # -- history ------------------------------------------------------------------------------
    def log(self, index: int, **metrics: float) -> None:
        """Record metrics after ``index`` epochs/steps: one row of history.csv, in memory too.

        Rows come in increasing ``index``; new metric names may appear later (their earlier cells
        stay empty). The CSV is rewritten atomically, so it is never torn.
        """
        values = {k: _number(v) for k, v in metrics.items()}
        index_column = self.history.setdefault(self.unit, [])
        n = len(index_column)
        for key in values:
            self.history.setdefault(key, [None] * n)
        for key, column in self.history.items():
            column.append(int(index) if key == self.unit else values.get(key))
        self._write_history()

    def _write_history(self) -> None:
        columns = [self.unit] + sorted(k for k in self.history if k != self.unit)
        buffer = io.StringIO()
        writer = csv.writer(buffer)
        writer.writerow(columns)
        for row in zip(*(self.history[c] for c in columns)):
            writer.writerow(["" if v is None else v for v in row])
        write_text(self.path / HISTORY, buffer.getvalue())

    def _read_history(self, upto: int) -> None:
        """Load history.csv's rows up to ``upto`` (resume: later rows were not checkpointed)."""
        self.history = {}
        path = self.path / HISTORY
        if not path.is_file():
            return
        with open(path, newline="") as fh:
            rows = list(csv.DictReader(fh))
        if rows and self.unit not in rows[0]:
            return  # not written by run.log (an older run): start a fresh one
        kept = [r for r in rows if int(float(r[self.unit])) <= upto]
        for column in (rows[0].keys() if rows else ()):
            self.history[column] = [_parse(r[column]) for r in kept]
        if self.unit in self.history:
            self.history[self.unit] = [int(v) for v in self.history[self.unit]]

    def metric_history(self) -> dict[str, list]:
        """history without its index column: what ``fit`` returns and the learning curves plot."""
        return {k: v for k, v in self.history.items() if k != self.unit}

    # -- checkpoints and resume -----------------------------------------------------------------
    def checkpoint(self, index: int, model, **more: Any) -> None:
        """Save everything needed to continue after ``index`` epochs/steps, then ``model.keras``.

        ``more`` may hold other Keras models, Keras optimizers, and plain values (numbers, strings,
        lists, dicts, NumPy arrays: an ε schedule position, a replay buffer). ``model``'s own
        optimizer (if compiled) is saved with it. The resume/ folder is replaced as a whole, so a
        kill at any moment leaves the previous complete checkpoint or the new one.
        """
        import numpy as np

        arrays: dict[str, Any] = {}
        manifest: dict[str, Any] = {"unit": self.unit, "index": int(index), "objects": {}, "values": {}}
        objects = {"model": model, **more}
        optimizer = getattr(model, "optimizer", None)
        if optimizer is not None and optimizer.built:  # compiled: its state is part of the model's
            objects = {"model": model, "model.optimizer": optimizer, **more}
        for name, obj in objects.items():
            kind = _kind(obj)
            if kind in ("model", "optimizer"):
                variables = _state_variables(obj) if kind == "model" else list(obj.variables)
                manifest["objects"][name] = {"kind": kind, "paths": [v.path for v in variables]}
                for i, v in enumerate(variables):
                    arrays[f"{name}/{i}"] = np.asarray(_numpy(v))
            elif isinstance(obj, np.ndarray):
                manifest["values"][name] = {"array": True}
                arrays[f"values/{name}"] = obj
            else:
                manifest["values"][name] = {"json": obj}
        staging = self.path / f".{RESUME}-partial"
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir()
        np.savez(staging / "arrays.npz", **arrays)
        write_json(staging / "state.json", manifest)
        current, old = self.path / RESUME, self.path / f".{RESUME}-old"
        shutil.rmtree(old, ignore_errors=True)
        if current.exists():
            os.replace(current, old)
        os.replace(staging, current)
        shutil.rmtree(old, ignore_errors=True)
        self.save_model(model)
        self.completed = int(index)

    def discard_checkpoint(self) -> None:
        for name in (RESUME, f".{RESUME}-old", f".{RESUME}-partial"):
            shutil.rmtree(self.path / name, ignore_errors=True)

    def _checkpoint_dir(self) -> Path | None:
        for name in (RESUME, f".{RESUME}-old"):  # -old: killed between the two renames of checkpoint()
            folder = self.path / name
            if (folder / "state.json").is_file() and (folder / "arrays.npz").is_file():
                return folder
        return None

    def _load_checkpoint(self) -> tuple[dict, Any]:
        import numpy as np

        folder = self._checkpoint_dir()
        if folder is None:
            raise DlkitError(f"{self.path} has no checkpoint to resume from (no {self.unit} was completed)")
        try:
            manifest = json.loads((folder / "state.json").read_text())
            arrays = np.load(folder / "arrays.npz", allow_pickle=False)
        except Exception as exc:
            raise DlkitError(f"{folder} is not a readable checkpoint ({first_line(exc)})") from None
        return manifest, arrays

    def checkpoint_index(self) -> int | None:
        """Epochs/steps done at the last checkpoint, or None if there is none."""
        if self._checkpoint_dir() is None:
            return None
        return int(self._load_checkpoint()[0]["index"])

    def prepare_resume(self) -> int:
        """Point this run at its last checkpoint: history trimmed to it; returns epochs/steps done."""
        self.start = self.completed = self.checkpoint_index() or 0
        self._read_history(self.start)
        return self.start

    def restore(self, **objects: Any) -> dict[str, Any]:
        """On a resumed run, load the checkpoint into ``objects`` (models, optimizers); else do nothing.

        Returns the plain values saved with the checkpoint (``{}`` on a fresh run). The core restores
        the main model (and its optimizer) itself before ``train()``; a loop passes what else it
        checkpointed, under the same names.
        """
        if not self.start:
            return {}
        manifest, arrays = self._load_checkpoint()
        for name, obj in objects.items():
            saved = manifest["objects"].get(name)
            if saved is None:
                raise DlkitError(f"the checkpoint in {self.path} holds no '{name}' (it has "
                                 f"{', '.join(manifest['objects']) or 'nothing'}); was the plugin changed?")
            if saved["kind"] == "optimizer" and not obj.built:
                raise DlkitError(f"optimizer '{name}' must be built (optimizer.build(variables)) before restore")
            variables = _state_variables(obj) if saved["kind"] == "model" else list(obj.variables)
            if len(variables) != len(saved["paths"]):
                raise DlkitError(f"the checkpoint's '{name}' has {len(saved['paths'])} variables, the rebuilt one "
                                 f"{len(variables)}: the run was made by a different model")
            for i, v in enumerate(variables):
                value = arrays[f"{name}/{i}"]
                if tuple(value.shape) != tuple(v.shape):
                    raise DlkitError(f"the checkpoint's {saved['paths'][i]} has shape {value.shape}, the rebuilt "
                                     f"model's {tuple(v.shape)}: the run was made by a different model")
                v.assign(value)
        values = {}
        for name, spec in manifest["values"].items():
            values[name] = arrays[f"values/{name}"] if spec.get("array") else spec["json"]
        return values

    def restore_model(self, model) -> None:
        """The core's part of resume: the main model's variables and its compiled optimizer's state."""
        self.restore(model=model)
        optimizer = getattr(model, "optimizer", None)
        if optimizer is not None and "model.optimizer" in self._load_checkpoint()[0]["objects"]:
            if not optimizer.built:
                optimizer.build(model.trainable_variables)
            self.restore(**{"model.optimizer": optimizer})

    # -- Ctrl-C ----------------------------------------------------------------------------------
    @contextmanager
    def interruptible(self):
        """While training: Ctrl-C sets ``stop_requested`` (the loop stops at a clean point); a second
        Ctrl-C interrupts at once, as usual. A KeyboardInterrupt raised inside a backend's C++ call may
        be swallowed or leave a step half-done; a flag read between steps does not."""
        self.stop_requested = False
        previous = None
        if threading.current_thread() is threading.main_thread():
            def request(signum, frame):
                self.stop_requested = True
                signal.signal(signal.SIGINT, previous or signal.default_int_handler)

            previous = signal.signal(signal.SIGINT, request)
        try:
            yield self
        finally:
            if previous is not None:
                signal.signal(signal.SIGINT, previous)

    # -- model.fit with the run's services -------------------------------------------------------
    def fit(self, model, x, y=None, *, validation_data=None, epochs: int | None = None,
            batch_size: int | None = None, callbacks: list | None = None, **fit_kwargs) -> dict[str, list]:
        """``model.fit`` for ``cfg.epochs`` (from the resume point) with checkpoints, history and Ctrl-C.

        ``x`` may be arrays, nested arrays, a ``keras.utils.PyDataset`` or a ``tf.data.Dataset``
        (then ``batch_size`` is not passed). Returns the history of the whole run, resumed or not.
        """
        if self.unit != "epoch":
            raise DlkitError("run.fit counts epochs; a plugin with budget_unit 'step' logs and checkpoints "
                             "in its own loop (docs/plugins.md)")
        cfg = self.cfg
        self.fitted = True  # keras.distribution splits model.fit's batches, not a custom loop's
        epochs = epochs if epochs is not None else cfg.epochs
        if batch_size is None and _is_arrays(x):
            batch_size = getattr(cfg, "batch_size", None)
        if _is_arrays(x):  # data-parallel: every batch must split evenly over the devices
            from dlkit import distribute

            x, y, validation_data, self.dropped_for_devices = distribute.even_batches(x, y, batch_size,
                                                                                      validation_data)
        model.fit(x, y, batch_size=batch_size, epochs=epochs, initial_epoch=self.start,
                  validation_data=validation_data, callbacks=self.callbacks(cfg, offset=0) + list(callbacks or []),
                  verbose=self.progress_verbosity, **fit_kwargs)
        from dlkit import batchnorm

        count = getattr(cfg, "bn_batches", batchnorm.BATCHES)
        if count and batchnorm.batch_norm_layers(model):
            self.reestimate_batch_norm(model, batchnorm.training_batches(x, batch_size, count, cfg.seed), count)
        return self.metric_history()

    def reestimate_batch_norm(self, model, batches, num_batches: int | None = None) -> dict | None:
        """After the last step: batch-norm statistics set to their exact values over training ``batches``.

        The moving averages lag the weights, most in short runs (dlkit/batchnorm.py). ``run.fit`` calls
        this with ``cfg.bn_batches`` batches; a hand-written loop calls it with batches of its model's
        inputs. Recorded in metrics.json; a model without batch norm is left alone.
        """
        from dlkit import batchnorm

        self.batchnorm = batchnorm.reestimate(model, batches, num_batches=num_batches) or self.batchnorm
        return self.batchnorm

    def callbacks(self, cfg, offset: int | None = None) -> list:
        """Callbacks for ``model.fit``: stop on Ctrl-C, log and checkpoint every epoch, early stopping.

        ``run.fit`` passes ``initial_epoch`` itself (``offset=0``). A plugin that calls ``model.fit``
        with these callbacks counts its epochs from 0: on a resumed run they are shifted by the epochs
        already done, and fit is stopped once ``cfg.epochs`` are reached.
        """
        import keras

        run = self
        offset = self.start if offset is None else offset

        class RunServices(keras.callbacks.Callback):
            def on_train_batch_end(self, batch, logs=None):
                if run.stop_requested:
                    raise KeyboardInterrupt

            def on_epoch_end(self, epoch, logs=None):
                done = offset + epoch + 1
                run.log(done, **(logs or {}))
                run.checkpoint(done, self.model)
                if offset and done >= cfg.epochs:
                    self.model.stop_training = True

        callbacks = [RunServices()]
        if getattr(cfg, "patience", 0):
            callbacks.append(keras.callbacks.EarlyStopping(patience=cfg.patience, restore_best_weights=True))
        return callbacks


def _kind(obj: Any) -> str:
    import keras

    if isinstance(obj, keras.optimizers.Optimizer):
        return "optimizer"
    if isinstance(obj, keras.layers.Layer):
        return "model"
    return "value"


def _state_variables(model) -> list:
    """A model's variables: weights, batch-norm statistics and seed-generator states."""
    return list(model.variables)


def _numpy(variable):
    import keras

    return keras.ops.convert_to_numpy(variable.value)


def _is_arrays(x: Any) -> bool:
    if isinstance(x, (tuple, list)):
        return all(_is_arrays(v) for v in x)
    if isinstance(x, dict):
        return all(_is_arrays(v) for v in x.values())
    return hasattr(x, "shape") and hasattr(x, "dtype") and not hasattr(x, "element_spec")


def _number(value: Any) -> Any:
    """Logged values as plain Python numbers: counters stay integers, tensors and NumPy scalars become floats."""
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int) or type(value).__name__.startswith(("int", "uint")):
        return int(value)
    try:
        return float(value)
    except (TypeError, ValueError):
        return value


def _parse(text: str) -> Any:
    if text == "":
        return None
    if text.lstrip("-").isdigit():
        return int(text)
    try:
        return float(text)
    except ValueError:
        return text


class Timer:
    def __enter__(self):
        self.start = time.perf_counter()
        return self

    def __exit__(self, *exc):
        self.seconds = time.perf_counter() - self.start
