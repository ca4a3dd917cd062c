"""Backend selection: names, aliases, errors, and the rule that it happens before Keras is imported."""
from __future__ import annotations

import subprocess
import sys

import pytest

from dlkit import backends
from dlkit.errors import DlkitError


@pytest.mark.parametrize("given, canonical", [("tf", "tensorflow"), ("TensorFlow", "tensorflow"), ("jax", "jax"),
                                               ("pytorch", "torch"), ("torch", "torch")])
def test_aliases(given, canonical):
    assert backends.normalize(given) == canonical


def test_default_comes_from_keras_backend_env(monkeypatch):
    monkeypatch.setenv("KERAS_BACKEND", "jax")
    assert backends.normalize(None) == "jax"
    monkeypatch.delenv("KERAS_BACKEND")
    assert backends.normalize(None) == "tensorflow"


def test_unknown_backend_suggests():
    with pytest.raises(DlkitError, match="unknown backend 'jaxx'.*Did you mean 'jax'"):
        backends.normalize("jaxx")


def test_uninstalled_backend_names_the_extra(monkeypatch):
    monkeypatch.setattr(backends, "is_installed", lambda b: b != "jax")
    with pytest.raises(DlkitError, match=r"backend jax is not installed .*pip install 'dlkit\[jax\]'"):
        backends.activate("jax")


def test_plugin_may_restrict_backends():
    with pytest.raises(DlkitError, match="supports the tensorflow backend"):
        backends.activate("torch", supported=("tensorflow",))


def test_activate_sets_env_and_refuses_to_switch_after_keras_is_imported():
    code = ("import os; from dlkit import backends; b = backends.activate('torch'); "
            "assert os.environ['KERAS_BACKEND'] == 'torch'; import keras; "
            "assert keras.backend.backend() == 'torch'\n"
            "try:\n    backends.activate('jax')\nexcept Exception as e:\n    print(e)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert "already imported with the torch backend" in out.stdout
