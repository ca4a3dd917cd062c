"""Run folders: ``runs/<algo>/<run-id>/`` with config, model, metrics, history and plots.

Every file is written atomically (temporary name, then ``os.replace``), so Ctrl-C or a crash never
leaves a half-written ``model.keras`` or ``metrics.json`` where a user would trust it.
"""
from __future__ import annotations

import json
import os
import platform
import signal
import sys
import threading
import time
from datetime import datetime
from importlib import metadata
from pathlib import Path
from typing import Any

from dlkit.errors import DlkitError, first_line

CONFIG, MODEL, METRICS, HISTORY = "config.json", "model.keras", "metrics.json", "history.csv"


def write_json(path: Path, payload: dict) -> None:
    tmp = path.with_name(path.name + ".partial")
    tmp.write_text(json.dumps(payload, indent=2, default=_jsonable) + "\n")
    os.replace(tmp, path)


def _jsonable(value: Any) -> Any:
    if hasattr(value, "tolist"):  # NumPy scalars and arrays
        return value.tolist()
    return str(value)


def save_model(model, path: Path) -> None:
    """Save atomically; Keras insists on the .keras suffix, hence the odd temporary name."""
    tmp = path.with_name(".partial-" + path.name)
    model.save(tmp)
    os.replace(tmp, path)


def library_versions(backend: str) -> dict[str, str]:
    wanted = ["dlkit", "keras", "numpy", {"tensorflow": "tensorflow", "jax": "jax", "torch": "torch"}[backend]]
    if backend == "jax":
        wanted.append("jaxlib")
    versions = {"python": platform.python_version()}
    for dist in wanted:
        try:
            versions[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            versions[dist] = "not installed"
    return versions


class Run:
    """One training run's folder and what the core records in it."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.plots_dir = self.path / "plots"
        # a progress bar on a terminal; one line per epoch in logs and CI
        self.progress_verbosity = 1 if sys.stdout.isatty() else 2
        self.epochs_completed = 0

    # -- creating and opening ----------------------------------------------------------------
    @classmethod
    def create(cls, out: str | Path, algorithm: str, backend: str) -> Run:
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
        run = cls(path)
        run.plots_dir.mkdir()
        return run

    @classmethod
    def open(cls, path: str | Path) -> Run:
        run = cls(Path(path))
        if not run.path.is_dir():
            raise DlkitError(f"run folder '{path}' does not exist")
        if not (run.path / CONFIG).is_file():
            raise DlkitError(f"'{path}' is not a dlkit run folder (no {CONFIG})")
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

    def load_model(self, custom_objects: dict | None = None):
        """Load model.keras with Keras' safe mode on (it refuses pickled lambdas)."""
        import keras

        if not self.model_path.is_file():
            raise DlkitError(f"no {MODEL} in {self.path}: the run saved no model (interrupted before its "
                             f"first epoch ended, or failed)")
        try:
            return keras.saving.load_model(self.model_path, custom_objects=custom_objects, safe_mode=True)
        except Exception as exc:
            raise DlkitError(f"{self.model_path} is not a loadable Keras model ({first_line(exc)[:300]})") from None

    # -- callbacks -------------------------------------------------------------------------------
    def callbacks(self, cfg) -> list:
        """What ``model.fit`` gets by default: per-epoch checkpoint + progress, CSV history, early stop."""
        import keras

        run = self

        class StopBetweenBatches(keras.callbacks.Callback):
            """Ctrl-C stops training at the next batch boundary, not wherever TensorFlow happens to be.

            A KeyboardInterrupt raised inside a backend's C++ call may be swallowed or leave a step
            half-done; here the signal only sets a flag, and the interrupt is raised between batches,
            before the epoch's checkpoint. A second Ctrl-C interrupts at once, as usual.
            """

            def on_train_begin(self, logs=None):
                self.requested = False
                self.previous = None
                if threading.current_thread() is threading.main_thread():
                    self.previous = signal.signal(signal.SIGINT, self._request)

            def _request(self, signum, frame):
                self.requested = True
                signal.signal(signal.SIGINT, self.previous or signal.default_int_handler)

            def on_train_batch_end(self, batch, logs=None):
                if self.requested:
                    self.on_train_end()
                    raise KeyboardInterrupt

            def on_train_end(self, logs=None):
                if self.previous is not None:
                    signal.signal(signal.SIGINT, self.previous)
                    self.previous = None

        class EpochCheckpoint(keras.callbacks.Callback):
            """Saves model.keras after every epoch, atomically, so an interrupt keeps the last one."""

            def on_epoch_end(self, epoch, logs=None):
                save_model(self.model, run.model_path)
                run.epochs_completed = epoch + 1

        callbacks = [StopBetweenBatches(), EpochCheckpoint(), keras.callbacks.CSVLogger(str(self.path / HISTORY))]
        if getattr(cfg, "patience", 0) and getattr(cfg, "val_fraction", 0) > 0:
            callbacks.append(keras.callbacks.EarlyStopping(patience=cfg.patience, restore_best_weights=True))
        return callbacks


class Timer:
    def __enter__(self):
        self.start = time.perf_counter()
        return self

    def __exit__(self, *exc):
        self.seconds = time.perf_counter() - self.start
