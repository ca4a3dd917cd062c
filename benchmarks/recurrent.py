"""Benchmarks of the recurrent networks (rnn, lstm, gru) on IMDB and on the Mauna Loa CO₂ series.

    python benchmarks/recurrent.py defaults --algos lstm,gru,rnn --backend tensorflow
    python benchmarks/recurrent.py speed --backends tensorflow,jax,torch [--train-samples 2000]
    python benchmarks/recurrent.py lengths --lengths 50,200,500 --epochs 2 --backend tensorflow
    python benchmarks/recurrent.py scratch --backends tensorflow,jax [--train-samples 0]
    python benchmarks/recurrent.py co2 --algos lstm,gru,rnn
    python benchmarks/recurrent.py custom lstm -- --bidirectional --sequence-length 600

Every training is a fresh ``dlkit train`` process, exactly what a user runs, on the full 25,000-review
test set unless asked otherwise. Each result is printed as a Markdown row and appended as a JSON line
to benchmarks/out/recurrent.jsonl, with the command and the load average before and after.
"""
from __future__ import annotations

import argparse
import time

import common


def train(algo: str, backend: str, *options: str) -> dict:
    """One ``dlkit train`` process; returns its metrics.json plus the command and load averages."""
    done = common.train(algo, backend, *options)
    metrics = done.metrics
    row = {"command": done.command, "algo": algo, "backend": backend, "run": str(done.run),
           "load_before": done.load_before, "load_after": done.load_after, "process_wall_s": done.wall_s,
           "date": time.strftime("%Y-%m-%d %H:%M"), "test": metrics["test"],
           "seconds_per_epoch": metrics.get("seconds_per_epoch"), "train_time_s": metrics.get("train_time_s"),
           "train_samples": metrics.get("train_samples")}
    row["test"].pop("confusion_matrix", None)
    common.record("recurrent", row)
    return row


def show(row: dict) -> None:
    test = row["test"]
    score = (f"{100 * test['accuracy']:.2f}%" if "accuracy" in test else
             f"MAE {test['mae']:.3f} (seasonal-naive {test['seasonal_naive_mae']:.3f}, persistence "
             f"{test['persistence_mae']:.3f}) RMSE {test['rmse']:.3f}")
    print(f"| `{row['command']}` | {score} | {row['seconds_per_epoch']} | {row['train_time_s']} | "
          f"{row['load_before']} → {row['load_after']} |", flush=True)


HEADER = "| command | test | s/epoch | train s | load average (before → after) |\n|---|---|---|---|---|"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("bench", choices=("defaults", "speed", "lengths", "scratch", "co2", "custom"))
    parser.add_argument("algo", nargs="?", default="lstm", help="custom: the algorithm")
    parser.add_argument("--algos", default="lstm,gru,rnn")
    parser.add_argument("--backend", default="tensorflow")
    parser.add_argument("--backends", default="tensorflow,jax,torch")
    parser.add_argument("--lengths", default="50,200,500")
    parser.add_argument("--epochs", type=int, default=0, help="0: the plugin's default")
    parser.add_argument("--train-samples", type=int, default=0)
    parser.add_argument("--test-samples", type=int, default=0)
    args, rest = parser.parse_known_args(argv)  # custom: the other options go to dlkit train
    budget = ([f"--epochs={args.epochs}"] if args.epochs else []) + \
        ([f"--train-samples={args.train_samples}"] if args.train_samples else []) + \
        ([f"--test-samples={args.test_samples}"] if args.test_samples else [])
    print(HEADER)
    if args.bench == "defaults":
        for algo in args.algos.split(","):
            show(train(algo, args.backend, *budget))
    elif args.bench == "speed":  # one epoch on a subset per backend: which backend is fastest
        subset = budget or ["--epochs=1", "--train-samples=2000", "--test-samples=500"]
        for algo in args.algos.split(","):
            for backend in args.backends.split(","):
                show(train(algo, backend, *subset))
    elif args.bench == "lengths":  # the vanishing-gradient table: same budget, three lengths
        for length in args.lengths.split(","):
            for algo in args.algos.split(","):
                show(train(algo, args.backend, f"--sequence-length={length}", *budget))
    elif args.bench == "scratch":  # the scratch cell against Keras' on each backend
        for backend in args.backends.split(","):
            for cell in ("keras", "scratch"):
                show(train("lstm", backend, f"--cell={cell}", *budget))
    elif args.bench == "co2":
        for algo in args.algos.split(","):
            show(train(algo, args.backend, "--data=co2", *budget))
    else:
        show(train(args.algo, args.backend, *[r for r in rest if r != "--"], *budget))


if __name__ == "__main__":
    main()
