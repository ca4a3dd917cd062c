"""Choosing the Keras backend — once, in one place, before Keras is imported.

Keras reads ``KERAS_BACKEND`` when it is first imported and cannot switch afterwards, so the
CLI calls :func:`activate` before any plugin hook runs.
"""
from __future__ import annotations

import importlib.util
import os
import sys

from dlkit.api import BACKENDS
from dlkit.errors import suggest
from dlkit.errors import DlkitError

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


def activate(name: str | None, supported: tuple[str, ...] = BACKENDS) -> str:
    """Select the backend for this process and return its canonical name.

    Raises a one-line error when it is unknown, not installed, not supported by the plugin, or
    when Keras was already imported with another backend (it cannot switch in-process).
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
    os.environ["KERAS_BACKEND"] = backend
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TensorFlow's C++ start-up chatter hides the progress
    return backend


def running_backend() -> str:
    """The backend Keras actually runs — recorded in every run, not the one that was asked for."""
    import keras

    return keras.backend.backend()
