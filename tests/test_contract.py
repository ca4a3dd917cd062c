"""Every registered plugin honours the contract on every backend (see tests/contract_check.py)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

from dlkit import registry

SCRIPT = Path(__file__).with_name("contract_check.py")


@pytest.mark.parametrize("backend", ["tensorflow", "jax", "torch"])
def test_every_plugin_on_every_backend(backend):
    proc = subprocess.run([sys.executable, str(SCRIPT)], capture_output=True, text=True, timeout=900,
                          env={**os.environ, "KERAS_BACKEND": backend})
    results = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    failed = [f"{r['plugin']}: {r['error']}\n{r['traceback']}" for r in results if not r["ok"]]
    assert not failed, "\n".join(failed)
    assert proc.returncode == 0, proc.stderr[-3000:]
    expected = {e.name for e in registry.discover() if e.cls and not e.shadowed_by and backend in e.cls.backends}
    assert {r["plugin"] for r in results} == expected
    assert {"mlp", "cnn"} <= expected
    skipped = [f"{r['plugin']}: {r['skipped']}" for r in results if r.get("skipped")]
    if skipped:  # a dataset that is neither cached nor downloadable here: say which, loudly
        warnings.warn("contract not checked for " + "; ".join(skipped), stacklevel=1)
