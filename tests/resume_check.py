"""Ctrl-C after a checkpoint, then --resume: the helper the per-backend check scripts share.

Imported by tests/dqn_check.py, gan_check.py and diffusion_check.py when they run as scripts (their folder
is then first on sys.path); it imports Keras only through dlkit, after the script's backend is fixed.
"""
from __future__ import annotations

import json
import os
import signal
from pathlib import Path


def interrupted_and_resumed(algorithm: str, out: str, backend: str, options: dict, *, after: int) -> dict:
    """SIGINT, as Ctrl-C, right after checkpoint ``after`` (an epoch or a step); then dlkit's resume to the end.

    Returns the interruption's one line, the run's status and progress when it stopped, and the resumed
    run's metrics and history.
    """
    import dlkit
    from dlkit import training
    from dlkit.errors import TrainingInterrupted
    from dlkit.runs import Run

    checkpoint = Run.checkpoint

    def checkpoint_then_ctrl_c(run, index, model, **more):
        checkpoint(run, index, model, **more)
        if index == after:
            os.kill(os.getpid(), signal.SIGINT)  # the handler the run installed sets run.stop_requested

    Run.checkpoint = checkpoint_then_ctrl_c
    try:
        dlkit.train(algorithm, backend=backend, out=out, echo=lambda *_: None, **options)
        stopped = None
    except TrainingInterrupted as exc:
        stopped = str(exc)
    finally:
        Run.checkpoint = checkpoint
    (path,) = Path(out, algorithm).iterdir()
    at_interrupt = json.loads((path / "metrics.json").read_text())
    run = training.resume(path, echo=lambda *_: None)
    done = f"{run.unit}s_completed"  # epochs_completed or steps_completed, by the plugin's budget unit
    return {"stopped": stopped, "at_interrupt": {k: at_interrupt.get(k) for k in ("status", done)},
            "metrics": run.metrics, "history": (path / "history.csv").read_text()}
