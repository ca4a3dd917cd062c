"""Shared test set-up: a Keras dataset cache seeded from the offline copies, and a CLI runner.

The real loaders (keras.datasets) are used unchanged; only their cache is pointed at a copy of
../shared/datasets (override with DLKIT_SHARED_DATASETS), exactly as a user without internet would.
A test that loads such a dataset says so with ``@requires_dataset("mnist")``: without the file it is
skipped, and the reason names the file and where it was looked for.
"""
from __future__ import annotations

import functools
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("DLKIT_SHARED_DATASETS", REPO.parent / "shared" / "datasets"))
CACHE = Path(os.environ.get("DLKIT_TEST_CACHE", REPO / ".dlkit-cache"))
BACKENDS = ("tensorflow", "jax", "torch")
#: Tiny models run faster on one thread than on two that other processes keep busy.
ONE_THREAD = {"OMP_NUM_THREADS": "1"}


def _seed_keras_cache() -> Path:
    keras_home = CACHE / "keras"
    target = keras_home / "datasets"
    source = SHARED / "keras"
    if source.is_dir():
        for path in source.rglob("*"):
            dest = target / path.relative_to(source)
            if path.is_file() and not dest.exists():
                dest.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(path, dest)
    # the other offline copies, put in the cache the way 'dlkit data add' does (the IMDB archive is
    # unpacked once, ~10 s): the contract test and the recurrent, GPT and graph tests read them
    offline = {SHARED / "aclImdb" / "aclImdb_train_test.tar.gz": target / "aclImdb" / "test" / "neg",
               SHARED / "tinyshakespeare" / "input.txt": target / "tinyshakespeare" / "input.txt"}
    # the Planetoid graphs (Cora, CiteSeer, PubMed) of the gcn and gat plugins: 24 small pickles
    offline.update({copy: target / "planetoid" / copy.name for copy in sorted((SHARED / "planetoid").glob("ind.*"))})
    wanted = [copy for copy, present in offline.items() if copy.is_file() and not present.exists()]
    if wanted:
        from dlkit import data

        os.environ["KERAS_HOME"] = str(keras_home)
        data.add_files(wanted)
    return keras_home


def pytest_configure(config):
    # tests/plugins holds the test distribution dlkit-shapes unpacked (a package beside its dist-info):
    # on sys.path, importlib.metadata finds its entry points like an installed wheel's; PYTHONPATH
    # does the same for the dlkit processes the tests start. First: seeding the cache below may
    # discover the plugins (dataset sources are registered on import), and discovery is cached.
    plugins = str(REPO / "tests" / "plugins")
    if plugins not in sys.path:
        sys.path.insert(0, plugins)
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [plugins, os.environ.get("PYTHONPATH")]))
    # before anything imports Keras: Keras reads KERAS_HOME at import. Under pytest-xdist every worker
    # gets here too: one seeds, the others wait for it and then find everything present
    import fcntl

    CACHE.mkdir(parents=True, exist_ok=True)
    with open(CACHE / ".seeding.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        os.environ["KERAS_HOME"] = str(_seed_keras_cache())
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    # PyTorch's OpenMP pool spins while it waits: with two test workers on two cores, a torch process
    # at its default two threads ran small recurrent and Q-network steps 10-40x slower than at one
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    from dlkit import registry

    registry.discover.cache_clear()  # whatever was found before the paths above were set is forgotten


def requires_dataset(*names: str) -> pytest.MarkDecorator:
    """Mark a test (or a module, through ``pytestmark``) that loads these Keras datasets."""
    return pytest.mark.requires_dataset(*names)


def pytest_collection_modifyitems(config, items):
    for item in items:
        for mark in item.iter_markers("requires_dataset"):
            missing = [reason for reason in map(_missing_dataset, mark.args) if reason]
            if missing:
                item.add_marker(pytest.mark.skip(reason="; ".join(missing)))


@functools.cache
def _missing_dataset(name: str) -> str:
    """Why dataset ``name`` cannot be loaded offline here, or '' when its files are in the test cache."""
    from dlkit import data

    files = data.missing_files(name)
    if not files:
        return ""
    return (f"needs the {name} dataset: {', '.join(f.relpath for f in files)} is not in {data.keras_cache_dir()} "
            f"(no offline copy in {SHARED / 'keras'}; set DLKIT_SHARED_DATASETS to a folder holding keras/)")


def run_cli(*args: str, env: dict | None = None, timeout: float = 600, cwd: Path | None = None):
    """Run ``python -m dlkit ARGS`` in a fresh process (a backend is fixed per process)."""
    full_env = {**os.environ, **(env or {})}
    return subprocess.run([sys.executable, "-m", "dlkit", *args], capture_output=True, text=True,
                          env=full_env, timeout=timeout, cwd=cwd)


def run_check(script: Path, *args, backend: str | None = None, env: dict | None = None, timeout: float = 400,
              cwd: Path | None = None) -> dict:
    """Run a tests/*_check.py script in a fresh process, on one thread, and return the JSON report it prints last.

    The checks that need Keras run in such scripts: a backend is fixed per process, and one process that
    starts its backend once does all of a backend's checks. A failure shows the script's stderr.
    """
    selected = {"KERAS_BACKEND": backend} if backend else {}
    proc = subprocess.run([sys.executable, str(script), *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, cwd=cwd, env={**os.environ, **ONE_THREAD, **(env or {}), **selected})
    assert proc.returncode == 0, f"{script.name} {backend or ''}:\n{proc.stderr[-3000:]}"
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.fixture
def cli():
    return run_cli

