"""Benchmarks for the foundation issue: accuracy and speed of `dlkit train`, its overhead over plain
Keras, and the start-up time of `dlkit list`. Every figure in benchmarks/RESULTS.md comes from here.

    python benchmarks/train.py list                      # dlkit list wall time (median of 20)
    python benchmarks/train.py cnn --backends tensorflow,torch,jax --epochs 3 [--seeds 0,1,2]
    python benchmarks/train.py mlp --backends tensorflow
    python benchmarks/train.py overhead --backend tensorflow --epochs 1 --pairs 2

Each training is a fresh process (`dlkit train …`), exactly what a user runs. Results are appended as
JSON lines to benchmarks/out/results.jsonl and printed as a Markdown table.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
OUT = HERE / "out"
DLKIT = [sys.executable, "-m", "dlkit"]


def timed(cmd: list[str], env: dict | None = None) -> tuple[float, str]:
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, **(env or {})})
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        sys.exit(f"failed ({proc.returncode}): {' '.join(cmd)}\n{proc.stderr[-3000:]}")
    return seconds, proc.stdout


def record(row: dict) -> None:
    OUT.mkdir(exist_ok=True)
    row["date"] = time.strftime("%Y-%m-%d %H:%M")
    with open(OUT / "results.jsonl", "a") as fh:
        fh.write(json.dumps(row) + "\n")


def latest_run(algo: str, backend: str) -> Path:
    runs = sorted((OUT / "runs" / algo).glob(f"*-{backend}*"), key=lambda p: p.stat().st_mtime)
    return runs[-1]


def bench_list(args) -> None:
    times = [timed(DLKIT + ["list"])[0] for _ in range(args.repeat)]
    row = {"bench": "list", "median_s": round(statistics.median(times), 3), "max_s": round(max(times), 3),
           "repeat": args.repeat}
    record(row)
    print(f"| dlkit list | median {row['median_s']} s | max {row['max_s']} s | n={args.repeat} |")


def bench_train(args) -> None:
    print("| algorithm | backend | epochs | test accuracy | s/epoch | train samples/s | wall s |")
    print("|---|---|---|---|---|---|---|")
    for backend, seed in [(b, s) for s in args.seeds.split(",") for b in args.backends.split(",")]:
        extra = (args.extra.split() if args.extra else []) + (["--seed", seed] if seed else [])
        wall, _ = timed(DLKIT + ["train", args.algo, "--backend", backend, "--epochs", str(args.epochs),
                                 "--out", str(OUT / "runs")] + extra)
        metrics = json.loads((latest_run(args.algo, backend) / "metrics.json").read_text())
        row = {"bench": args.algo, "backend": metrics["backend"], "epochs": metrics["epochs_completed"],
               "accuracy": metrics["test"]["accuracy"], "seconds_per_epoch": metrics["seconds_per_epoch"],
               "train_samples_per_s": metrics["train_samples_per_s"], "wall_s": round(wall, 1),
               "extra": " ".join(extra), "versions": metrics["versions"]}
        record(row)
        print(f"| {args.algo} {row['extra']} | {row['backend']} | {row['epochs']} | {100 * row['accuracy']:.2f}% | "
              f"{row['seconds_per_epoch']} | {row['train_samples_per_s']} | {row['wall_s']} |", flush=True)


def bench_overhead(args) -> None:
    """Paired, interleaved runs (dlkit, plain, dlkit, plain…) so drifting machine load hits both alike."""
    env = {"KERAS_BACKEND": args.backend}
    pairs = []
    for _ in range(args.pairs):
        t_dlkit, _ = timed(DLKIT + ["train", "cnn", "--backend", args.backend, "--epochs", str(args.epochs),
                                    "--out", str(OUT / "runs")], env)
        t_plain, _ = timed([sys.executable, str(HERE / "plain_keras_cnn.py"), "--epochs", str(args.epochs)], env)
        pairs.append((t_dlkit, t_plain))
        print(f"pair: dlkit {t_dlkit:.1f} s, plain keras {t_plain:.1f} s, ratio {t_dlkit / t_plain:.3f}", flush=True)
    ratio = statistics.median(d / p for d, p in pairs)
    row = {"bench": "overhead", "backend": args.backend, "epochs": args.epochs,
           "pairs": [[round(d, 1), round(p, 1)] for d, p in pairs], "median_ratio": round(ratio, 3)}
    record(row)
    print(f"| overhead cnn | {args.backend} | {args.epochs} epoch(s) | median ratio dlkit/plain {ratio:.3f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="what", required=True)
    p = sub.add_parser("list")
    p.add_argument("--repeat", type=int, default=20)
    p.set_defaults(fn=bench_list)
    for algo in ("cnn", "mlp"):
        p = sub.add_parser(algo)
        p.add_argument("--backends", default="tensorflow,torch,jax")
        p.add_argument("--epochs", type=int, default=3 if algo == "cnn" else 10)
        p.add_argument("--extra", default="", help="more dlkit train options, e.g. '--activation tanh'")
        p.add_argument("--seeds", default="", help="comma list of seeds, one run each per backend (default: "
                                                   "the plugin's default seed)")
        p.set_defaults(fn=bench_train, algo=algo)
    p = sub.add_parser("overhead")
    p.add_argument("--backend", default="tensorflow")
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--pairs", type=int, default=2)
    p.set_defaults(fn=bench_overhead)
    args = parser.parse_args()
    args.fn(args)


if __name__ == "__main__":
    main()
