"""Run several dlkit commands in one process, for tests/test_shapes.py (a backend per process).

    KERAS_BACKEND=jax python tests/shapes_check.py PLAN.json

PLAN.json is a list of steps, run in order; each prints one JSON line (the step, its result and its
"seconds") as soon as it is done:

    {"cli": ["train", "shape_gan", "--epochs", "2"]}  the dlkit command line, run in this process:
                                                       {"code": exit status, "stdout": ..., "stderr": ...}
    {"load": "RUN_DIR/model.keras"}                    keras.saving.load_model (safe mode), as a user would:
                                                       {"loaded": model name, "params": parameter count}

Most of a tiny run's time is starting Python, Keras and the backend; here the commands share one start.
``dlkit.cli.main`` is the same code path as ``python -m dlkit``; the backend stays the process's.
"""
from __future__ import annotations

import io
import json
import sys
import time
from contextlib import redirect_stderr, redirect_stdout


def cli(args: list[str]) -> dict:
    from dlkit.cli import main

    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        try:
            main.main(args, prog_name="dlkit")
            code = 0
        except SystemExit as exc:  # click ends every command with one, as the real process does
            code = exc.code if isinstance(exc.code, int) else int(exc.code is not None)
    return {"code": code, "stdout": out.getvalue(), "stderr": err.getvalue()}


def load(path: str) -> dict:
    import keras

    model = keras.saving.load_model(path, safe_mode=True)
    return {"loaded": model.name, "params": model.count_params()}


def main(plan_path: str) -> int:
    with open(plan_path) as fh:
        plan = json.load(fh)
    for step in plan:
        started = time.perf_counter()
        try:
            result = cli(step["cli"]) if "cli" in step else load(step["load"])
        except Exception as exc:  # reported, and the next step still runs
            result = {"error": f"{type(exc).__name__}: {exc}"}
        print(json.dumps({**step, **result, "seconds": round(time.perf_counter() - started, 2)}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
