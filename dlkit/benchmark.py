"""``dlkit benchmark``: the same config trained and evaluated once per backend, one process each, one table.

Modelled on Ultralytics' ``benchmark``: a row per variant (here, per backend) with a ✅/❌ status, the
headline metric and the speeds, so the spread between backends on *this* machine is measured rather than
guessed (on a 2-core CPU it is several-fold, and which backend wins depends on the model). Each cell runs
in a fresh process (``python -m dlkit.benchmark --cell …``): Keras fixes its backend per process, a crash
or a missing backend must not take the other rows down, and the peak RSS is then the cell's own.

A cell trains through ``dlkit.train`` (what ``dlkit train`` runs), reloads ``model.keras`` from disk and
evaluates it again (``dlkit evaluate``), and, for models whose test inputs are arrays, times
``predict_on_batch`` at batch 1 and batch 256. The fastest backend per algorithm (seconds per epoch or
step) is kept in ``fastest.json`` beside the Keras cache, where ``dlkit train NAME --backend auto`` reads it.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

from dlkit import __version__, backends, registry
from dlkit.api import BACKENDS
from dlkit.errors import DlkitError, first_line, one_line
from dlkit.files import write_json

#: Budget of ``--quick`` cells (fields a plugin's config lacks are skipped), on top of its tiny test_config.
QUICK = {"epochs": 1, "train_samples": 2000, "test_samples": 500}
#: What a cell's process is doing, for the ❌ reason of an unexpected error.
STAGE = "starting"
COLUMNS = ("backend", "status", "headline metric", "s/epoch", "train samples/s", "inference samples/s (batch 1)",
           "inference samples/s (batch 256)", "peak RSS MiB", "params")


def fastest_path() -> Path:
    from dlkit.data import keras_cache_dir

    return keras_cache_dir().parent / "dlkit" / "fastest.json"


def parse_backends(text: str) -> tuple[list[str], dict[str, str]]:
    """The backends to run, and a one-line reason for each name that cannot run (it becomes a ❌ row)."""
    wanted, refused = [], {}
    for name in [part.strip() for part in text.split(",") if part.strip()]:
        try:
            backend = backends.normalize(name)
        except DlkitError as exc:
            refused[name] = str(exc)
            continue
        if not backends.is_installed(backend):
            module, extra = backends.MODULES[backend]
            refused[backend] = f"not installed (no module '{module}'): pip install '{extra}'"
        elif backend not in wanted:
            wanted.append(backend)
    return wanted, refused


def quick_options(entry: registry.PluginEntry) -> dict[str, Any]:
    """A plugin's tiny test sizes and a one-epoch, 2,000-example budget (where its config has those fields)."""
    import dataclasses

    fields = {f.name for f in dataclasses.fields(entry.cls.config)}
    return {**{k: v for k, v in QUICK.items() if k in fields}, **entry.cls.test_config}


def run_cell(algorithm: str, backend: str, options: dict, out: Path, timeout: float) -> dict:
    """One backend's row, from a fresh process; a failure is a ❌ row with its reason, never an exception."""
    out.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "-m", "dlkit.benchmark", "--cell", algorithm, backend, json.dumps(options), str(out)]
    started = time.perf_counter()
    try:
        proc = subprocess.run(command, capture_output=True, text=True, timeout=timeout,
                              env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    except subprocess.TimeoutExpired:
        return {"backend": backend, "ok": False, "reason": f"timed out after {timeout:.0f} s"}
    lines = proc.stdout.strip().splitlines()
    if proc.returncode or not lines:
        errors = [line for line in proc.stderr.strip().splitlines() if line.strip()]
        return {"backend": backend, "ok": False, "reason": errors[-1] if errors else f"exit code {proc.returncode}"}
    return {**json.loads(lines[-1]), "wall_s": round(time.perf_counter() - started, 1)}


def cell(algorithm: str, backend: str, options: dict, out: str) -> dict:
    """Inside the cell's process: train, reload and evaluate, time inference, measure memory."""
    import resource

    from dlkit import training

    global STAGE
    STAGE = "training"
    run = training.train(algorithm, backend=backend, out=out, echo=lambda *a: None, **options)
    record = run.metrics
    unit = record.get("budget_unit") or run.unit
    STAGE = "reloading and evaluating model.keras"
    reloaded = training.evaluate(str(run.path), echo=lambda *a: None)
    metric = record["headline"]["metric"]
    row = {"backend": record["backend"], "ok": True, "algorithm": algorithm, "unit": unit,
           "metric": metric, "value": record["headline"]["value"],
           "reloaded_value": reloaded["test"].get(metric), "seconds_per_unit": record.get(f"seconds_per_{unit}"),
           "train_samples_per_s": record.get("train_samples_per_s"), "train_time_s": record.get("train_time_s"),
           "device": record.get("device"), "run": str(run.path), "options": options}
    STAGE = "timing inference"
    row.update(_inference_speed(run))
    row["peak_rss_mib"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)  # KiB on Linux
    return row


def _inference_speed(run) -> dict:
    """Samples/s of the reloaded model's ``predict_on_batch`` at batch 1 and 256, for array test inputs."""
    import keras
    import numpy as np

    from dlkit import training

    entry, cfg = training.run_plugin(run)
    plugin, model = training.load_run_model(run, entry, cfg, None)
    data = training.load_prepared(entry, plugin, cfg)
    found = {"params": int(model.count_params())}
    x = data.x_test
    leaves = keras.tree.flatten(x) if x is not None else []
    if not leaves or not all(isinstance(leaf, np.ndarray) for leaf in leaves):
        return found  # a graph, an environment: no batch of test inputs to time
    if not takes(model, leaves):
        return found  # a generator's inputs are noise, a language model's are windows of the test text
    # a test set smaller than the batch is repeated, unless it is one example (a whole graph): 256 copies
    # of a graph measure nothing a user does, and hold gigabytes
    for batch in (1, 256) if len(leaves[0]) > 1 else (1,):
        index = np.arange(batch) % len(leaves[0])
        inputs = keras.tree.map_structure(lambda leaf: leaf[index], x)
        model.predict_on_batch(inputs)  # compile / warm up
        calls, started = 0, time.perf_counter()
        while calls < 3 or time.perf_counter() - started < 1.0:
            model.predict_on_batch(inputs)
            calls += 1
        found[f"inference_per_s_batch_{batch}"] = round(calls * batch / (time.perf_counter() - started), 1)
    return found


def takes(model, leaves: list) -> bool:
    """Whether the test inputs are the model's inputs: as many arrays, each of its input's rank and shape."""
    inputs = getattr(model, "inputs", None) or []
    if len(inputs) != len(leaves):
        return False
    return all(len(spec.shape) == leaf.ndim and all(d is None or d == n for d, n in zip(spec.shape[1:], leaf.shape[1:]))
               for spec, leaf in zip(inputs, leaves))


def benchmark(algorithm: str, backend_list: str = ",".join(BACKENDS), options: dict | None = None,
              out: str | Path | None = None, timeout: float = 3600, echo: Callable = print) -> dict:
    """Every backend's row for ``algorithm``; writes benchmark.json and benchmark.md into ``out``."""
    entry = registry.get(algorithm)
    if entry.cls is None:
        raise DlkitError(f"{algorithm} is broken: {entry.error}")
    options = dict(options or {})
    wanted, refused = parse_backends(backend_list)
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    out = Path(out) if out else Path("runs") / "benchmark" / f"{entry.name}-{stamp}"
    rows = [{"backend": name, "ok": False, "reason": reason} for name, reason in refused.items()]
    for backend in wanted:
        if backend not in entry.cls.backends:
            rows.append({"backend": backend, "ok": False, "reason": f"{entry.name} does not support {backend}"})
            continue
        echo(f"{entry.name} on {backend} …")
        rows.append(run_cell(entry.name, backend, options, out / backend, timeout))
        echo("  " + markdown_row(rows[-1]))
    result = {"algorithm": entry.name, "options": options, "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
              "command": "dlkit benchmark " + " ".join(sys.argv[2:]) if sys.argv[1:2] == ["benchmark"] else None,
              "rows": rows, "fastest": fastest(rows)}
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "benchmark.json", result)
    (out / "benchmark.md").write_text(markdown(result))
    if result["fastest"]:
        remember_fastest(result)
    result["out"] = str(out)
    return result


def fastest(rows: list[dict]) -> str | None:
    timed = [r for r in rows if r.get("ok") and r.get("seconds_per_unit")]
    return min(timed, key=lambda r: r["seconds_per_unit"])["backend"] if timed else None


def remember_fastest(result: dict) -> None:
    """Record this machine's fastest backend for the algorithm, for ``--backend auto``."""
    path = fastest_path()
    try:
        known = json.loads(path.read_text()) if path.is_file() else {}
    except (OSError, ValueError):
        known = {}  # a corrupt record is replaced, not fatal
    known[result["algorithm"]] = {
        "backend": result["fastest"], "created": result["created"], "options": result["options"],
        "seconds_per_unit": {r["backend"]: r["seconds_per_unit"] for r in result["rows"] if r.get("seconds_per_unit")},
        "unit": next(r["unit"] for r in result["rows"] if r.get("ok"))}
    path.parent.mkdir(parents=True, exist_ok=True)
    write_json(path, known)


def auto_backend(algorithm: str, supported: tuple[str, ...]) -> tuple[str, str]:
    """(backend, the one line that says why) for ``--backend auto``."""
    path = fastest_path()
    try:
        known = json.loads(path.read_text()).get(algorithm) if path.is_file() else None
    except (OSError, ValueError):
        known = None
    default = backends.normalize(None)
    if not known or known.get("backend") not in supported or not backends.is_installed(known["backend"]):
        return default, (f"--backend auto: no benchmark of {algorithm} recorded on this machine; using {default} "
                         f"(run 'dlkit benchmark {algorithm}' to measure)")
    unit = known.get("unit", "epoch")
    spread = ", ".join(f"{b} {s} s" for b, s in sorted(known["seconds_per_unit"].items(), key=lambda kv: kv[1]))
    return known["backend"], (f"--backend auto: {known['backend']}, the fastest for {algorithm} on this machine "
                              f"in 'dlkit benchmark' ({known['created'][:10]}; s/{unit}: {spread})")


def _fmt(value: Any, digits: int = 1) -> str:
    if value is None:
        return "-"
    if isinstance(value, float) and 0 < abs(value) < 10 ** -digits:
        return f"{value:.2g}"  # seconds per environment step: 0.0041, not 0.00
    return f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def markdown_row(row: dict) -> str:
    if not row.get("ok"):
        return f"| {row['backend']} | ❌ {row['reason']} |" + " - |" * (len(COLUMNS) - 2)
    value = row["value"]
    shown = f"{row['metric']} {value:.4f}" if isinstance(value, float) else f"{row['metric']} {value}"
    if row.get("reloaded_value") is not None and row["reloaded_value"] != value:
        shown += f" (reloaded {_fmt(row['reloaded_value'], 4)})"
    cells = [row["backend"], "✅", shown, _fmt(row.get("seconds_per_unit"), 2), _fmt(row.get("train_samples_per_s")),
             _fmt(row.get("inference_per_s_batch_1")), _fmt(row.get("inference_per_s_batch_256")),
             _fmt(row.get("peak_rss_mib"), 0), f"{row.get('params', 0):,}"]
    return "| " + " | ".join(cells) + " |"


def markdown(result: dict) -> str:
    unit = next((r["unit"] for r in result["rows"] if r.get("ok")), "epoch")
    header = [c.replace("s/epoch", f"s/{unit}") for c in COLUMNS]
    lines = [f"# dlkit benchmark: {result['algorithm']}", "",
             f"Options: `{json.dumps(result['options'])}`; {result['created']}"
             + (f"; `{result['command']}`" if result.get("command") else ""), "",
             "| " + " | ".join(header) + " |", "|" + "---|" * len(header),
             *[markdown_row(r) for r in result["rows"]], ""]
    if result["fastest"]:
        lines.append(f"Fastest on this machine: **{result['fastest']}** (s/{unit}).")
    else:
        lines.append("No backend completed.")
    return "\n".join(lines) + "\n"


def matrix(backend_list: str = ",".join(BACKENDS), out: str | Path = "benchmarks", timeout: float = 600,
           echo: Callable = print) -> dict:
    """``--all --quick``: every installed plugin on every backend at a small budget → MATRIX.md and matrix.json."""
    entries = [e for e in registry.discover() if not e.shadowed_by and not e.disabled]
    if not entries:
        raise DlkitError("no algorithm plugins are installed: nothing to benchmark (dlkit list shows what was found)")
    wanted, refused = parse_backends(backend_list)
    started, cells = time.perf_counter(), {}
    with tempfile.TemporaryDirectory(prefix="dlkit-matrix-") as scratch:
        scratch = Path(scratch)
        for entry in entries:
            for name, reason in refused.items():
                cells[(entry.name, name)] = {"backend": name, "ok": False, "reason": reason}
            for backend in wanted:
                if entry.cls is None:
                    cells[(entry.name, backend)] = {"backend": backend, "ok": False,
                                                    "reason": f"plugin broken: {entry.error}"}
                    continue
                if backend not in entry.cls.backends:
                    cells[(entry.name, backend)] = {"backend": backend, "ok": False, "reason": "not supported"}
                    continue
                echo(f"{entry.name} on {backend} …")
                cells[(entry.name, backend)] = run_cell(entry.name, backend, quick_options(entry),
                                                        scratch / entry.name / backend, timeout)
    elapsed = time.perf_counter() - started
    columns = wanted + list(refused)
    lines = ["# Which algorithm trains and reloads on which backend", "",
             f"`dlkit benchmark --all --quick` on {datetime.now(timezone.utc).date()}, dlkit {__version__}"
             f" ({elapsed / 60:.1f} min for {len(cells)} cells; each cell: the plugin's tiny test sizes, "
             "1 epoch of ≤ 2,000 examples or its small step budget, trained, reloaded from model.keras and "
             "evaluated in a fresh process). ✅ shows the headline metric after the reload and the training "
             "time; these budgets test that a backend works, not how good the model gets.", "",
             "| algorithm | " + " | ".join(columns) + " |", "|---|" + "---|" * len(columns)]
    for entry in entries:
        shown = []
        for backend in columns:
            c = cells[(entry.name, backend)]
            if c.get("ok"):
                value = c.get("reloaded_value", c.get("value"))
                shown.append(f"✅ {c['metric']} {_fmt(value, 3)}, {_fmt(c.get('train_time_s'))} s")
            else:  # the full reason is in matrix.json
                reason = c["reason"]
                shown.append(f"❌ {reason if len(reason) <= 160 else reason[:159] + '…'}")
        lines.append(f"| {entry.name} | " + " | ".join(shown) + " |")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "MATRIX.md").write_text("\n".join(lines) + "\n")
    write_json(out / "matrix.json", {"seconds": round(elapsed, 1), "backends": columns,
                                     "cells": [{"algorithm": a, **c} for (a, _), c in cells.items()]})
    return {"out": str(out), "seconds": elapsed, "cells": len(cells)}


if __name__ == "__main__":  # one cell, in its own process: python -m dlkit.benchmark --cell ALGO BACKEND OPTIONS OUT
    if sys.argv[1:2] != ["--cell"] or len(sys.argv) != 6:
        sys.exit("usage: python -m dlkit.benchmark --cell ALGORITHM BACKEND OPTIONS_JSON OUT")
    try:
        print(json.dumps(cell(sys.argv[2], sys.argv[3], json.loads(sys.argv[4]), sys.argv[5])), flush=True)
    except Exception as exc:  # the parent shows the last stderr line as the ❌ reason
        reason = first_line(exc) if isinstance(exc, DlkitError) else f"{STAGE}: {one_line(exc)}"
        print(reason, file=sys.stderr, flush=True)
        sys.exit(1)
