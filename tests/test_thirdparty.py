"""Third-party plugins the way users get them: scaffolded with ``dlkit new plugin`` or built as a wheel,
installed with pip into a fresh virtual environment, listed, trained on every backend, evaluated across
backends. Nothing is installed into the environment running the tests.
"""
from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.conftest import REPO, requires_dataset, run_cli

BACKENDS = ("tensorflow", "jax", "torch")
EXAMPLE = REPO / "examples" / "dlkit-autoencoder"
NAME = "tiny_convnet"  # a name no installed plugin has


def run(python: Path, *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("DLKIT_PLUGINS", "DLKIT_STRICT")}
    return subprocess.run([str(python), *args], capture_output=True, text=True, env=env, cwd=cwd, timeout=600)


def ok(result: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    assert result.returncode == 0, f"{result.args}\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result


def in_parallel(*commands: tuple) -> list[subprocess.CompletedProcess]:
    """Run (python, *args) commands side by side, as many at once as there are cores: each is one process
    that mostly imports its backend, so this halves the wall time on two cores."""
    with ThreadPoolExecutor(max_workers=min(len(commands), os.cpu_count() or 1)) as pool:
        return list(pool.map(lambda command: run(*command), commands))


@pytest.fixture(scope="module")
def venv(tmp_path_factory) -> Path:
    """A fresh venv that installs into itself and sees this environment's dlkit, Keras and backends.

    ``--system-site-packages`` reaches only the base interpreter; when the tests run in a venv (as here),
    a .pth file adds this interpreter's site directories too (with their own .pth files, such as editable
    installs) — after the new venv's own, so what pip installs into the new venv wins over anything of
    the same name outside it.
    """
    root = tmp_path_factory.mktemp("venv")
    ok(run(Path(sys.executable), "-m", "venv", "--system-site-packages", "--without-pip", str(root)))
    python = root / "bin" / "python"
    purelib = Path(ok(run(python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])")).stdout.strip())
    site_dirs = [p for p in sys.path if Path(p).name in ("site-packages", "dist-packages") and Path(p).is_dir()]
    parents = "; ".join(f"site.addsitedir({path!r})" for path in site_dirs)
    (purelib / "_dlkit_test_parent.pth").write_text(f"import site; {parents}\n")
    return python


def pip_install(python: Path, *args: str) -> None:
    # pip itself comes from the parent environment; it installs into the interpreter running it
    ok(run(python, "-m", "pip", "install", "--quiet", "--no-deps", "--no-index", "--no-build-isolation", *args))


def listed(python: Path) -> dict[str, dict]:
    return {row["name"]: row for row in json.loads(ok(run(python, "-m", "dlkit", "list", "--json")).stdout)}


def only_run(out: Path) -> Path:
    (path,) = [p for p in out.iterdir() if p.is_dir()]
    return path


# -- dlkit new plugin ------------------------------------------------------------------------------------
def test_new_plugin_refuses_bad_names_and_existing_folders(tmp_path):
    cases = {
        "9lives": "Error: '9lives' is not a valid plugin name: use a lowercase Python identifier",
        "My-Net": "Error: 'My-Net' is not a valid plugin name",
        "class": "Error: 'class' is a Python keyword",
        "mlp": "Error: an algorithm 'mlp' is already installed (from dlkit); choose another name",
    }
    for name, error in cases.items():
        result = run_cli("new", "plugin", name, cwd=tmp_path)
        assert result.returncode == 1, name
        assert result.stderr.startswith(error) and result.stderr.count("\n") == 1, result.stderr
    taken = tmp_path / "taken"
    taken.mkdir()
    (taken / "keep.txt").write_text("mine")
    result = run_cli("new", "plugin", NAME, "--dir", str(taken))
    assert result.returncode == 1 and "already exists and is not an empty folder" in result.stderr
    assert [p.name for p in taken.iterdir()] == ["keep.txt"]
    assert list(tmp_path.iterdir()) == [taken]  # no staging folder left behind


def test_scaffold_module_stays_light():
    code = ("import sys, dlkit.scaffold; heavy = {'keras', 'tensorflow', 'jax', 'torch'} & set(sys.modules); "
            "print(sorted(heavy))")
    assert ok(run(Path(sys.executable), "-c", code)).stdout.strip() == "[]"


def test_scaffold_installs_lists_trains_on_every_backend_and_passes_its_own_test(venv, tmp_path):
    made = ok(run_cli("new", "plugin", NAME, cwd=tmp_path))
    dist = tmp_path / "dlkit-tiny-convnet"
    assert "created dlkit-tiny-convnet/" in made.stdout
    assert sorted(str(p.relative_to(dist)) for p in dist.rglob("*") if p.is_file()) == [
        "README.md", "dlkit_tiny_convnet/__init__.py", "dlkit_tiny_convnet/model.py", "pyproject.toml",
        "tests/test_tiny_convnet.py"]

    pip_install(venv, "-e", str(dist))
    row = listed(venv)[NAME]
    assert (row["distribution"], row["version"], row["status"]) == ("dlkit-tiny-convnet", "0.1.0", "ok")
    assert NAME not in {e["name"] for e in json.loads(ok(run_cli("list", "--json")).stdout)}  # only in the venv

    *trained, own_test = in_parallel(
        *[(venv, "-m", "dlkit", "train", NAME, "--backend", backend, "--epochs", "1", "--train-samples", "256",
           "--test-samples", "128", "--out", str(tmp_path / f"runs-{backend}")) for backend in BACKENDS],
        (venv, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(dist)))
    for backend, result in zip(BACKENDS, trained):
        assert "done: test accuracy" in ok(result).stdout
        metrics = json.loads((only_run(tmp_path / f"runs-{backend}" / NAME) / "metrics.json").read_text())
        assert (metrics["status"], metrics["backend"], metrics["dataset"]) == ("completed", backend, "digits")
        assert metrics["plugin"]["distribution"] == "dlkit-tiny-convnet"
        # 8 steps: accuracy is still 12-30% (15 runs, seeds 0-4 x 3 backends), but the test loss was below ln(10),
        # the least a model that ignores its input scores on 10 balanced classes, in every one (at most 2.27)
        assert metrics["test"]["loss"] < math.log(10) and metrics["test_samples"] == 128
    assert "2 passed" in ok(own_test).stdout


# -- examples/dlkit-autoencoder as a wheel -------------------------------------------------------------------
@requires_dataset("mnist")  # the autoencoder's default data
def test_autoencoder_wheel_trains_and_evaluates_across_backends(venv, tmp_path):
    source = tmp_path / "src"  # build from a copy: building writes build/ and *.egg-info beside the sources
    shutil.copytree(EXAMPLE, source, ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
    ok(run(Path(sys.executable), "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-index", "--no-build-isolation",
           "--wheel-dir", str(tmp_path / "wheels"), str(source)))
    (wheel,) = (tmp_path / "wheels").glob("dlkit_autoencoder-0.1.0-*.whl")
    pip_install(venv, str(wheel))
    where = ok(run(venv, "-c", "import dlkit_autoencoder; print(dlkit_autoencoder.__file__)")).stdout.strip()
    assert Path(where).is_relative_to(venv.parent.parent), where  # the wheel's copy, not a checkout's
    row = listed(venv)["autoencoder"]
    assert (row["distribution"], row["status"]) == ("dlkit-autoencoder", "ok")

    runs = {}
    trained = in_parallel(*[(venv, "-m", "dlkit", "train", "autoencoder", "--backend", backend, "--epochs", "1",
                             "--train-samples", "256", "--test-samples", "64", "--filters", "8", "--latent", "8",
                             "--out", str(tmp_path / f"runs-{backend}")) for backend in BACKENDS])
    for backend, result in zip(BACKENDS, trained):
        assert "done: test psnr" in ok(result).stdout
        runs[backend] = path = only_run(tmp_path / f"runs-{backend}" / "autoencoder")
        metrics = json.loads((path / "metrics.json").read_text())
        assert (metrics["status"], metrics["backend"], metrics["dataset"]) == ("completed", backend, "mnist")
        assert metrics["headline"]["metric"] == "psnr" and metrics["test"]["psnr"] > 0
        assert 0 < metrics["test"]["mse"] < 1 and "accuracy" not in metrics["test"]
        assert (path / "plots" / "reconstructions.png").stat().st_size > 10_000
        assert (path / "model.keras").is_file() and (path / "history.csv").is_file()
        assert not (path / "plots" / "confusion_matrix.png").exists()

    # every model reloads (custom layer, safe mode) on another backend and scores as it did when trained
    others = BACKENDS[1:] + BACKENDS[:1]
    evaluated = in_parallel(*[(venv, "-m", "dlkit", "evaluate", str(runs[backend]), "--backend", other, "--json")
                              for backend, other in zip(BACKENDS, others)])
    for other, output in zip(others, evaluated):
        result = json.loads(ok(output).stdout)
        assert result["backend"] == other
        assert result["test"]["psnr"] == pytest.approx(result["recorded"]["psnr"], abs=1e-3)
        assert result["test"]["test_samples"] == 64
