"""Benchmarks of the Transformer encoder classifier (``dlkit train transformer``) on IMDB.

    python benchmarks/transformer.py defaults [--backend tensorflow]
    python benchmarks/transformer.py speed [--backends tensorflow,jax,torch] [--train-samples 5000] [--epochs 1]
    python benchmarks/transformer.py custom -- --depth 2 --sequence-length 512

``defaults``: the default run (25,000 training reviews less the 10% validation split, early stopping),
tested on the full 25,000-review test set. ``speed``: the same model on a subset, one fresh process per
backend, for seconds per epoch (the first epoch, so compilation is included, as a user would see it).
Every training is a fresh ``dlkit train`` process, exactly what a user runs. Each result is printed as
a Markdown row and appended as a JSON line to benchmarks/out/transformer.jsonl, with the command and
the load average before and after (the machine may be shared: the seconds are only as good as it was idle).
"""
from __future__ import annotations

import argparse
import time

import common


def train(backend: str, *options: str) -> dict:
    """One ``dlkit train transformer`` process; returns its metrics plus the command and load averages."""
    done = common.train("transformer", backend, *options)
    metrics = done.metrics
    row = {"command": done.command, "backend": backend, "run": str(done.run), "load_before": done.load_before,
           "load_after": done.load_after, "process_wall_s": done.wall_s, "date": time.strftime("%Y-%m-%d %H:%M"),
           "test": metrics["test"], "epochs_completed": metrics.get("epochs_completed"),
           "seconds_per_epoch": metrics.get("seconds_per_epoch"), "train_time_s": metrics.get("train_time_s"),
           "train_samples": metrics.get("train_samples")}
    row["test"].pop("confusion_matrix", None)
    common.record("transformer", row)
    return row


HEADER = ("| command | test accuracy | test reviews | epochs | s/epoch | train s | process wall s | load average "
          "(before → after) |\n|---|---|---|---|---|---|---|---|")


def show(row: dict) -> None:
    test = row["test"]
    print(f"| `{row['command']}` | {100 * test['accuracy']:.2f}% | {test['test_samples']} | {row['epochs_completed']} "
          f"| {row['seconds_per_epoch']} | {row['train_time_s']} | {row['process_wall_s']} | "
          f"{row['load_before']} → {row['load_after']} |", flush=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("bench", choices=("defaults", "speed", "custom"))
    parser.add_argument("--backend", default="tensorflow")
    parser.add_argument("--backends", default="tensorflow,jax,torch")
    parser.add_argument("--train-samples", type=int, default=5000)
    parser.add_argument("--test-samples", type=int, default=1000)
    parser.add_argument("--epochs", type=int, default=1)
    args, rest = parser.parse_known_args(argv)  # custom: the other options go to dlkit train
    rest = [r for r in rest if r != "--"]
    print(HEADER)
    if args.bench == "defaults":
        show(train(args.backend))
    elif args.bench == "speed":
        for backend in args.backends.split(","):
            show(train(backend, f"--train-samples={args.train_samples}", f"--test-samples={args.test_samples}",
                       f"--epochs={args.epochs}", "--patience=0"))
    else:
        show(train(args.backend, *rest))


if __name__ == "__main__":
    main()
