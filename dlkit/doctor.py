"""``dlkit doctor``: what is installed, which backends really import, and where data lives."""
from __future__ import annotations

import os
import platform
import subprocess
import sys

from dlkit import data, registry
from dlkit.versions import versions

LIBRARIES = ("dlkit", "keras", "tensorflow", "jax", "jaxlib", "torch", "numpy", "tensorflow-model-optimization",
             "tf-keras", "ai-edge-litert", "gymnasium", "statsmodels")

# Run in a child process: importing a backend here would pin this process, and a broken install
# must be reported, not crash the doctor.
PROBE = {
    "tensorflow": "import tensorflow as tf; print([d.name for d in tf.config.list_logical_devices()])",
    "jax": "import jax; print([str(d) for d in jax.devices()])",
    "torch": "import torch; print(['cpu'] + [f'cuda:{i}' for i in range(torch.cuda.device_count())])",
}


def accelerator(devices: str) -> str:
    """What a backend's device list says about accelerators: the GPUs/TPUs it sees, or that it runs on the CPU."""
    import ast

    try:
        names = [str(d) for d in ast.literal_eval(devices)]
    except (ValueError, SyntaxError):
        names = devices.split()
    found = [n for n in names if any(kind in n.lower() for kind in ("gpu", "cuda", "tpu", "rocm", "metal"))]
    return ", ".join(found) if found else "none: computes on the CPU"


def report(echo=print) -> None:
    echo(f"python     {platform.python_version()} ({sys.executable})")
    for name, version in versions(LIBRARIES).items():
        echo(f"{name:<31}{version}")
    echo("\nbackends:")
    for backend, code in PROBE.items():
        try:
            proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                                  env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
            ok = proc.returncode == 0
            detail = proc.stdout.strip().splitlines()[-1] if ok else (proc.stderr.strip().splitlines() or ["?"])[-1]
        except subprocess.TimeoutExpired:
            ok, detail = False, "import timed out"
        echo(f"  {backend:<11} {'ok' if ok else 'FAILS'}  {detail}")
        if ok:
            echo(f"  {'':<11}     accelerator: {accelerator(detail)}")
    echo(f"\ndataset cache: {data.keras_cache_dir()}")
    rows = data.status()  # every registered dataset, the plugins' included
    for row in rows:
        state = "corrupt" if row["problems"] else "present" if row["present"] else "missing"
        echo(f"  {row['name']:<14} {state:<8} {row['kind']}")
    if not all(row["present"] for row in rows):
        echo("  ('dlkit data list' says where to get what is missing or corrupt)")
    broken = [e for e in registry.discover() if e.error]
    echo(f"\nplugins: {len(registry.discover())} found, {len(broken)} broken")
    for e in broken:
        echo(f"  {e.name} ({e.distribution}): {e.error}")
