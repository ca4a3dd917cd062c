"""What the benchmark scripts share: the load average, raw rows, and one ``dlkit train`` process.

Each script appends its rows to ``benchmarks/out/<name>.jsonl`` with the command that produced them and
the load average before and after (the machine may be shared: a timing is only as good as it was idle).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

OUT = Path(__file__).resolve().parent / "out"
# ``python -m dlkit`` started in OUT, not in the repository: -m puts the working directory first on
# sys.path, where a stale dlkit.egg-info of a source checkout would hide newly registered plugins
DLKIT = [sys.executable, "-m", "dlkit"]


def load_average() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def record(name: str, row: dict) -> None:
    """Append ``row`` to benchmarks/out/<name>.jsonl."""
    OUT.mkdir(exist_ok=True)
    with open(OUT / f"{name}.jsonl", "a") as fh:
        fh.write(json.dumps(row) + "\n")


@dataclass
class Trained:
    command: str        # what a user would type
    run: Path           # the run folder
    metrics: dict       # its metrics.json
    stdout: str
    wall_s: float       # the whole process
    load_before: str
    load_after: str


def run_folder(algo: str, backend: str, tag: str = "") -> Path:
    """A fresh benchmarks/out/runs/ folder for one ``dlkit train`` process."""
    # the pid keeps two benchmarks started in the same second (one per core) out of each other's folder
    return OUT / "runs" / f"{algo}-{backend}-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}{tag}"


def train(algo: str, backend: str, *options: str, env: dict | None = None, tag: str = "") -> Trained:
    """One ``dlkit train ALGO --backend BACKEND OPTIONS`` process into benchmarks/out/runs/; exits on failure."""
    out = run_folder(algo, backend, tag)
    cmd = ["dlkit", "train", algo, "--backend", backend, *options]
    OUT.mkdir(exist_ok=True)
    before, started = load_average(), time.perf_counter()
    proc = subprocess.run(DLKIT + cmd[1:] + ["--out", str(out)], capture_output=True, text=True, cwd=OUT,
                          env={**os.environ, **(env or {})})
    wall = time.perf_counter() - started
    if proc.returncode != 0:
        sys.exit(f"failed ({proc.returncode}): {' '.join(cmd)}\n{proc.stderr[-3000:]}")
    run = next((out / algo).iterdir())
    return Trained(" ".join(cmd), run, json.loads((run / "metrics.json").read_text()), proc.stdout, round(wall, 1),
                   before, load_average())
