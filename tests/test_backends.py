"""Backend selection: names, aliases, errors, and the rule that it happens before Keras is imported."""
from __future__ import annotations

import os
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


# Stand-ins for the frameworks: they write to file descriptor 2 directly, as TensorFlow's C++ start-up does.
FAKE_JAX = ("import os\nos.write(2, b'E0000 failed call to cuInit\\n')\n"
            "def devices():\n    os.write(2, b'An NVIDIA GPU may be present on this machine\\n')\n    return []\n")
FAKE_TF = "import os\nos.write(2, b'I0000 oneDNN custom operations are on\\n')\n"
BROKEN_JAX = "import os\nos.write(2, b'libcudnn.so.9: cannot open shared object file\\n')\nraise ImportError('jaxlib')\n"


def activate_with(tmp_path, jax_source: str, **env) -> subprocess.CompletedProcess:
    for name, source in (("jax", jax_source), ("tensorflow", FAKE_TF)):
        (tmp_path / name).mkdir()
        (tmp_path / name / "__init__.py").write_text(source)
    code = "from dlkit import backends; print(backends.activate('jax'))"
    environment = {k: v for k, v in os.environ.items() if k != "DLKIT_DEBUG"}
    environment.update(PYTHONPATH=str(tmp_path), **env)
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=environment, timeout=60)


def test_activate_imports_the_backend_quietly(tmp_path):
    done = activate_with(tmp_path, FAKE_JAX)
    assert (done.returncode, done.stdout, done.stderr) == (0, "jax\n", "")


def test_debug_shows_the_start_up_output(tmp_path):
    done = activate_with(tmp_path, FAKE_JAX, DLKIT_DEBUG="1")
    assert done.returncode == 0, done.stderr
    assert done.stderr.splitlines() == ["E0000 failed call to cuInit", "An NVIDIA GPU may be present on this machine",
                                        "I0000 oneDNN custom operations are on"]


def test_a_failing_import_shows_what_it_printed(tmp_path):
    done = activate_with(tmp_path, BROKEN_JAX)
    assert done.returncode == 1
    assert "libcudnn.so.9: cannot open shared object file" in done.stderr  # the captured output, not hidden
    assert "backend jax is installed but failed to import: ImportError: jaxlib" in done.stderr


def test_torch_lstm_and_gru_use_pytorchs_fused_kernels_and_agree_with_keras_loop():
    """dlkit.torch_rnn: outputs and gradients (inputs, every weight) as Keras' own CPU loop computes them."""
    import json
    from pathlib import Path

    script = Path(__file__).with_name("torch_rnn_check.py")
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    lines = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    assert lines[0] == {"installed": True, "patched": True}
    cases = {line["case"]: line["max_abs_diff"] for line in lines[1:]}
    assert len(cases) == 8 and {"lstm", "gru backwards", "bidirectional lstm"} <= set(cases)
    for case, diffs in cases.items():
        assert max(diffs) < 1e-4, (case, diffs)
