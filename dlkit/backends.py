"""Choosing the Keras backend — once, in one place, before Keras is imported.

Keras reads ``KERAS_BACKEND`` when it is first imported and cannot switch afterwards, so the
CLI calls :func:`activate` before any plugin hook runs.

:func:`activate` also imports the backend there and then, with the process's stderr sent to a
temporary file: TensorFlow's C++ start-up lines (oneDNN, cudart stub, ``failed call to cuInit``) are
printed before its logging is initialised, so ``TF_CPP_MIN_LOG_LEVEL`` cannot silence them. If the
import fails, what was captured is printed, so no real error is hidden. ``DLKIT_DEBUG=1`` (what
``dlkit --debug`` sets) leaves stderr alone.
"""
from __future__ import annotations

import contextlib
import importlib
import importlib.util
import os
import sys
import tempfile
from collections.abc import Iterator

from dlkit.api import BACKENDS
from dlkit.errors import DlkitError, first_line, suggest

ALIASES = {"tensorflow": "tensorflow", "tf": "tensorflow", "jax": "jax", "torch": "torch", "pytorch": "torch"}
#: The Python module each backend needs, and the extra that installs it.
MODULES = {"tensorflow": ("tensorflow", "dlkit (tensorflow is a core dependency)"),
           "jax": ("jax", "dlkit[jax]"), "torch": ("torch", "dlkit[torch]")}


def normalize(name: str | None) -> str:
    """'tf' → 'tensorflow', 'pytorch' → 'torch'; None → $KERAS_BACKEND or tensorflow."""
    if name is None or name == "":
        name = os.environ.get("KERAS_BACKEND") or "tensorflow"
    key = name.strip().lower()
    if key not in ALIASES:
        raise DlkitError(f"unknown backend '{name}'; choose one of tensorflow (tf), jax, torch (pytorch)."
                         + suggest(key, ALIASES))
    return ALIASES[key]


def is_installed(backend: str) -> bool:
    return importlib.util.find_spec(MODULES[backend][0]) is not None


def activate(name: str | None, supported: tuple[str, ...] = BACKENDS, quiet: bool | None = None) -> str:
    """Select the backend for this process, import it, and return its canonical name.

    Raises a one-line error when it is unknown, not installed, not supported by the plugin, fails to
    import, or when Keras was already imported with another backend (it cannot switch in-process).
    ``quiet`` (default: unless ``$DLKIT_DEBUG`` is set) hides the frameworks' start-up noise.
    """
    backend = normalize(name)
    if backend not in supported:
        raise DlkitError(f"this algorithm supports the {', '.join(supported)} backend(s), not {backend}.")
    if not is_installed(backend):
        module, extra = MODULES[backend]
        raise DlkitError(f"backend {backend} is not installed (no module '{module}'): "
                         f"pip install '{extra}'")
    if "keras" in sys.modules:
        current = sys.modules["keras"].backend.backend()
        if current != backend:
            raise DlkitError(f"Keras is already imported with the {current} backend in this process and cannot "
                             f"switch to {backend}; start a new process (or set KERAS_BACKEND={backend}).")
    if quiet is None:
        quiet = not debugging()
    os.environ["KERAS_BACKEND"] = backend
    if quiet:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TensorFlow's C++ INFO/WARNING lines while training
    _import(backend, quiet)
    return backend


def debugging() -> bool:
    """``dlkit --debug`` (or ``DLKIT_DEBUG=1``): show the frameworks' own start-up output."""
    return os.environ.get("DLKIT_DEBUG", "") not in ("", "0")


def _import(backend: str, quiet: bool) -> None:
    """Import the backend's framework now, with its start-up output swallowed when ``quiet``.

    TensorFlow comes too when it is installed, whatever the backend: Keras imports it for its file
    utilities (``gfile``) the first time a model is saved or loaded, and its start-up lines would
    appear there instead. Listing TensorFlow's devices is what prints ``failed call to cuInit`` on a
    machine without a GPU; it happens here rather than at the first operation. JAX's "no GPU/TPU
    found, falling back to cpu" warning comes from ``jax.devices()``, also called here.
    """
    with _stderr_captured() if quiet else contextlib.nullcontext():
        try:
            framework = importlib.import_module(MODULES[backend][0])
            if backend == "tensorflow":
                framework.config.list_physical_devices()
            elif backend == "jax" and not os.environ.get("KERAS_DISTRIBUTION_NUM_PROCESSES"):
                # (a multi-host job must start JAX's distributed runtime before the first device query:
                # dlkit.distribute.apply does that through keras.distribution.initialize)
                framework.devices()
        except Exception as exc:
            raise DlkitError(f"backend {backend} is installed but failed to import: {type(exc).__name__}: "
                             f"{first_line(exc)}") from exc
        if backend == "torch":  # PyTorch's fused LSTM/GRU kernels on the CPU too (see dlkit.torch_rnn)
            from dlkit import torch_rnn

            torch_rnn.install()
        if backend in ("torch", "jax"):  # fused batch norm (torch), max pooling without select_and_scatter (jax)
            from dlkit import fast_kernels

            fast_kernels.install(backend)
        if backend != "tensorflow" and importlib.util.find_spec("tensorflow") is not None:
            with contextlib.suppress(Exception):  # Keras does without it (LazyModule), so may this
                importlib.import_module("tensorflow")


@contextlib.contextmanager
def _stderr_captured() -> Iterator[None]:
    """Point file descriptor 2 at a temporary file (C++ libraries write there directly, not through
    ``sys.stderr``); restore it afterwards and, when the block raised, write out what it captured."""
    try:
        saved = os.dup(2)
    except OSError:  # no stderr at all (a detached process): nothing to silence
        yield
        return
    with tempfile.TemporaryFile() as capture:
        sys.stderr.flush()
        os.dup2(capture.fileno(), 2)
        failed = True
        try:
            yield
            failed = False
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            if failed:
                capture.seek(0)
                os.write(2, capture.read())


def running_backend() -> str:
    """The backend Keras actually runs — recorded in every run, not the one that was asked for."""
    import keras

    return keras.backend.backend()


def device() -> str:
    """The device Keras computes on in this process ("cpu (2 cores)", "gpu:0 (NVIDIA H100 …)"), for metrics.json."""
    import keras

    backend = keras.backend.backend()
    if backend == "jax":
        import jax

        first = jax.devices()[0]
        if first.platform != "cpu":
            return f"{first.platform}:{first.id} ({first.device_kind}; {len(jax.devices())} device(s))"
    elif backend == "tensorflow":
        import tensorflow as tf

        gpus = tf.config.list_logical_devices("GPU")
        if gpus:
            details = tf.config.experimental.get_device_details(tf.config.list_physical_devices("GPU")[0])
            return f"gpu:0 ({details.get('device_name', 'GPU')}; {len(gpus)} device(s))"
    elif backend == "torch":
        import torch

        if torch.cuda.is_available():  # Keras' torch backend computes on the first CUDA device when there is one
            return f"cuda:0 ({torch.cuda.get_device_name(0)}; {torch.cuda.device_count()} device(s))"
    return f"cpu ({os.cpu_count()} cores)"
