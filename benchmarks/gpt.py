"""Benchmarks of the gpt plugin: step time per backend, validation loss against wall time, generation speed.

    python benchmarks/gpt.py speed [--backends tensorflow,jax,torch] [-- dlkit gpt options]
    python benchmarks/gpt.py train --backend tensorflow [--time-limit S] [-- dlkit gpt options]
    python benchmarks/gpt.py generate RUN_DIR [--backend tensorflow] [--tokens 500]

``speed`` times gradient steps of the default model in a fresh process per backend, with
``model.train_on_batch`` (what the plugin uses) and with ``dlkit.steps.GradientStep``. ``train`` runs
``dlkit train gpt`` as a user would and reads its progress lines, so each validation loss gets the
wall time since the process started (start-up and data loading included); ``--time-limit S`` presses
Ctrl-C for the run after S seconds (it stops at its next step, as a user's run would) and records the
curve so far, to compare backends on the same wall-clock budget. ``generate`` runs
``dlkit generate`` with and without the key/value cache. Results are printed as Markdown and appended
as JSON lines to benchmarks/out/gpt.jsonl with the command and the load average before and after.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import common

HERE = Path(__file__).resolve().parent
OUT = HERE / "out"
DLKIT = [sys.executable, "-m", "dlkit"]
PROGRESS = re.compile(r"^step (\d+): loss ([\d.]+), val_loss ([\d.]+), lr ([\d.e+-]+), ([\d.]+) s$")

STEP_TIMER = r"""
import json, os, sys, time
import keras, numpy as np
from dlkit.config import make_config
from dlkit.plugins.gpt import GPT, GPTConfig, random_windows
from dlkit.steps import GradientStep

cfg = make_config(GPTConfig, json.loads(sys.argv[1]))
plugin = GPT()
data = plugin.load_data(cfg)
rng = np.random.default_rng(0)
batches = [random_windows(data.x_train, cfg.context, cfg.batch_size, rng) for _ in range(40)]
result = {"backend": keras.backend.backend()}
for way in ("train_on_batch", "GradientStep"):
    keras.utils.set_random_seed(0)
    model = plugin.build(cfg, data)
    if way == "GradientStep":
        loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
        step = GradientStep(lambda x, y: loss(y, model(x, training=True)), trainable=model, optimizer=model.optimizer)
        run = lambda x, y: step(x, y)["loss"]
    else:
        run = lambda x, y: float(model.train_on_batch(x, y))
    for x, y in batches[:3]:  # compile
        run(x, y)
    started, n = time.perf_counter(), 0
    for x, y in batches[3:]:
        run(x, y)
        n += 1
        if time.perf_counter() - started > float(os.environ.get("GPT_TIME_S", "30")):
            break
    result[way] = round((time.perf_counter() - started) / n * 1000, 1)
print(json.dumps(result))
"""


def options_dict(options: list[str]) -> dict:
    """``--width 256 --context 64`` → {"width": 256, "context": 64} (numbers only: what speed needs)."""
    values = {}
    for flag, value in zip(options[::2], options[1::2]):
        values[flag.lstrip("-").replace("-", "_")] = float(value) if "." in value or "e" in value else int(value)
    return values


def speed(backends: list[str], options: list[str]) -> None:
    print("| backend | train_on_batch ms/step | GradientStep ms/step | load before → after |")
    print("|---|---|---|---|")
    for backend in backends:
        before = common.load_average()
        proc = subprocess.run([sys.executable, "-c", STEP_TIMER, json.dumps(options_dict(options))],
                              capture_output=True, text=True, env={**os.environ, "KERAS_BACKEND": backend})
        if proc.returncode != 0:
            sys.exit(f"{backend} failed:\n{proc.stderr[-3000:]}")
        result = json.loads(proc.stdout.strip().splitlines()[-1])
        row = {"kind": "speed", "options": options, "load_before": before, "load_after": common.load_average(),
               "date": time.strftime("%Y-%m-%d %H:%M"), **result}
        common.record("gpt", row)
        print(f"| {backend} | {result['train_on_batch']} | {result['GradientStep']} | {before} → {row['load_after']} |",
              flush=True)


def train(backend: str, options: list[str], time_limit: float | None = None) -> None:
    out = common.run_folder("gpt", backend)
    cmd = ["dlkit", "train", "gpt", "--backend", backend, *options]
    before, started = common.load_average(), time.perf_counter()
    proc = subprocess.Popen(DLKIT + cmd[1:] + ["--out", str(out)], stdout=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
    if time_limit:  # the same Ctrl-C a user presses: the run returns between two steps and keeps its checkpoint
        timer = threading.Timer(time_limit, proc.send_signal, (signal.SIGINT,))
        timer.daemon = True
        timer.start()
    curve = []
    print("| step | wall s | loop s | train loss | val loss | load |")
    print("|---|---|---|---|---|---|")
    for line in proc.stdout:
        match = PROGRESS.match(line.strip())
        if match:
            step, loss, val, _, loop = match.groups()
            point = {"step": int(step), "wall_s": round(time.perf_counter() - started, 1), "loop_s": float(loop),
                     "loss": float(loss), "val_loss": float(val), "load": common.load_average()}
            curve.append(point)
            print(f"| {step} | {point['wall_s']} | {loop} | {loss} | {val} | {point['load']} |", flush=True)
        else:
            print(line.rstrip(), file=sys.stderr)
    stopped = proc.wait() != 0 and time_limit and time.perf_counter() - started >= time_limit
    if proc.returncode != 0 and not stopped:
        sys.exit(f"failed ({proc.returncode}): {' '.join(cmd)}")
    run = next((out / "gpt").iterdir())
    row = {"kind": "train", "command": " ".join(cmd), "backend": backend, "run": str(run), "curve": curve,
           "load_before": before, "load_after": common.load_average(), "process_wall_s": round(time.perf_counter() - started, 1),
           "date": time.strftime("%Y-%m-%d %H:%M")}
    if stopped:
        row["stopped_after_s"] = time_limit
        common.record("gpt", row)
        last = curve[-1] if curve else {}
        print(f"\nstopped after {time_limit} s at step {last.get('step')}: probe val_loss {last.get('val_loss')} | "
              f"load {before} → {row['load_after']} | run {run}")
        return
    metrics = json.loads((run / "metrics.json").read_text())
    row.update(test=metrics["test"], train_time_s=metrics["train_time_s"], seconds_per_step=metrics.get("seconds_per_step"))
    common.record("gpt", row)
    print(f"\nfinal: val_loss {metrics['test']['val_loss']:.4f} on the whole validation text | "
          f"{row['process_wall_s']} s wall | load {before} → {row['load_after']} | run {run}")


def generate(run: str, backend: str | None, tokens: int, options: list[str]) -> None:
    print("| cache | tokens/s | compile s | load before → after |")
    print("|---|---|---|---|")
    for cache in ("--cache", "--no-cache"):
        out = OUT / "samples" / f"gpt-{time.strftime('%Y%m%d-%H%M%S')}{cache}"
        cmd = ["dlkit", "generate", run, "--tokens", str(tokens), cache, "--out", str(out), *options]
        if backend:
            cmd += ["--backend", backend]
        before = common.load_average()
        proc = subprocess.run(DLKIT + cmd[1:], capture_output=True, text=True)
        if proc.returncode != 0:
            sys.exit(f"failed ({proc.returncode}): {' '.join(cmd)}\n{proc.stderr[-3000:]}")
        summary = json.loads((out / "generation.json").read_text())
        row = {"kind": "generate", "command": " ".join(cmd), "load_before": before, "load_after": common.load_average(),
               "date": time.strftime("%Y-%m-%d %H:%M"), "backend": summary["backend"], **summary["summary"],
               "sample": (out / "sample.txt").read_text(encoding="utf-8")}
        common.record("gpt", row)
        print(f"| {cache} | {row['tokens_per_s']} | {row['compile_s']} | {before} → {row['load_after']} |", flush=True)
    print(f"\nsample ({summary['backend']}):\n{row['sample']}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="what", required=True)
    p = sub.add_parser("speed")
    p.add_argument("--backends", default="tensorflow,jax,torch")
    p = sub.add_parser("train")
    p.add_argument("--backend", default="tensorflow")
    p.add_argument("--time-limit", type=float, default=None, help="press Ctrl-C for the run after S seconds")
    p = sub.add_parser("generate")
    p.add_argument("run")
    p.add_argument("--backend", default=None)
    p.add_argument("--tokens", type=int, default=500)
    args, rest = parser.parse_known_args()
    rest = [r for r in rest if r != "--"]
    if args.what == "speed":
        speed(args.backends.split(","), rest)
    elif args.what == "train":
        train(args.backend, rest, args.time_limit)
    else:
        generate(args.run, args.backend, args.tokens, rest)


if __name__ == "__main__":
    main()
