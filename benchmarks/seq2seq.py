"""Benchmarks of seq2seq on the generated dates: accuracy of each attention, by input length, and speed.

    python benchmarks/seq2seq.py defaults --attentions bahdanau,luong,none --backend jax
    python benchmarks/seq2seq.py speed --backends tensorflow,jax,torch [--epochs 2]
    python benchmarks/seq2seq.py defaults --attentions none --backend jax -- --units 256   # options passed on

Every training is a fresh ``dlkit train seq2seq`` process, exactly what a user runs, at the plugin's
defaults unless options follow ``--``. Each result is printed as Markdown and appended as a JSON line to
benchmarks/out/seq2seq.jsonl with the command and the load average before and after. ``speed`` reads
Keras' per-epoch lines: the first epoch includes compiling, the later ones are the steady state.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time

import common

EPOCH_LINE = re.compile(r"^\s*\d+/\d+ - (\d+(?:\.\d+)?)(m?s) - (\d+(?:\.\d+)?)(m?s)/step")  # "313/313 - 25s - 80ms/step"


def train(backend: str, *options: str) -> dict:
    """One ``dlkit train seq2seq`` process; its metrics.json plus the command, epoch times and load averages."""
    done = common.train("seq2seq", backend, *options)
    metrics = done.metrics
    lines = [m for m in map(EPOCH_LINE.match, done.stdout.splitlines()) if m]
    epochs = [float(m[1]) / (1000 if m[2] == "ms" else 1) for m in lines]
    steps = [float(m[3]) / (1000 if m[4] == "ms" else 1) for m in lines]
    row = {"command": done.command, "backend": backend, "run": str(done.run), "load_before": done.load_before,
           "load_after": done.load_after, "process_wall_s": done.wall_s, "date": time.strftime("%Y-%m-%d %H:%M"),
           "config": json.loads((done.run / "config.json").read_text())["config"], "test": metrics["test"],
           "epoch_seconds": epochs, "step_seconds": steps, "seconds_per_epoch": metrics.get("seconds_per_epoch"),
           "train_time_s": metrics.get("train_time_s"), "wall_time_s": metrics.get("wall_time_s")}
    common.record("seq2seq", row)
    return row


def defaults(args, extra: list[str]) -> None:
    rows = []
    for attention in args.attentions.split(","):
        row = train(args.backend, "--attention", attention, *extra)
        rows.append(row)
        test = row["test"]
        print(f"| {attention} | {row['config']['cell']} | {100 * test['exact_match']:.2f}% | "
              f"{100 * test['char_accuracy']:.2f}% | {row['seconds_per_epoch']} | {row['train_time_s']} | "
              f"{row['wall_time_s']} | {row['load_before']} → {row['load_after']} |", flush=True)
    buckets = list(rows[0]["test"]["exact_match_by_length"])
    print("\n| input length | " + " | ".join(buckets) + " |")
    print("|---|" + "---|" * len(buckets))
    print("| test examples | " + " | ".join(str(rows[0]["test"]["exact_match_by_length"][b]["count"])
                                          for b in buckets) + " |")
    for row in rows:
        by = row["test"]["exact_match_by_length"]
        print(f"| {row['config']['attention']} | " + " | ".join(f"{100 * by[b]['exact_match']:.2f}%" for b in buckets)
              + " |")
    for row in rows:
        worst = sorted(row["test"]["exact_match_by_format"].items(), key=lambda kv: kv[1])[:3]
        print(f"{row['config']['attention']}: worst formats {worst}; mistakes {row['test']['mistakes'][:3]}")


def speed(args, extra: list[str]) -> None:
    """Epoch 1 (compiling included) and the later epochs' mean, in seconds and per step, per backend."""
    for backend in args.backends.split(","):
        row = train(backend, "--epochs", str(args.epochs), *extra)
        later, later_steps = row["epoch_seconds"][1:], row["step_seconds"][1:]
        steady = f"{sum(later) / len(later):.0f} s, {1000 * sum(later_steps) / len(later_steps):.0f} ms/step" \
            if later else "n/a"
        print(f"| {backend} | {os.environ.get('OMP_NUM_THREADS', 'default')} | {row['epoch_seconds'][0]:.0f} s | "
              f"{steady} | {100 * row['test']['exact_match']:.2f}% | {row['load_before']} → {row['load_after']} |",
              flush=True)


def main() -> None:
    argv = sys.argv[1:]
    extra = argv[argv.index("--") + 1:] if "--" in argv else []
    argv = argv[:argv.index("--")] if "--" in argv else argv
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="mode", required=True)
    d = sub.add_parser("defaults", help="each attention at the defaults: accuracy, by input length, time")
    d.add_argument("--attentions", default="bahdanau,luong,none")
    d.add_argument("--backend", default="jax")
    s = sub.add_parser("speed", help="seconds per epoch on each backend (first epoch and the steady state)")
    s.add_argument("--backends", default="tensorflow,jax,torch")
    s.add_argument("--epochs", type=int, default=2)
    args = parser.parse_args(argv)
    {"defaults": defaults, "speed": speed}[args.mode](args, extra)


if __name__ == "__main__":
    main()
