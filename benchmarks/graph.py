"""Benchmarks of the graph plugins (gcn, gat) on the Planetoid citation graphs.

    python benchmarks/graph.py accuracy --algos gcn,gat --data cora,citeseer,pubmed --seeds 10 --backend tensorflow
    python benchmarks/graph.py speed --algos gcn,gat --data cora --backends tensorflow,jax,torch --epochs 30
    python benchmarks/graph.py monitors --algo gat --data pubmed --seeds 10 --backend tensorflow

``accuracy`` trains each (plugin, dataset) with its defaults (the papers' settings) for seeds 0 … N-1
through ``dlkit.train``, the path ``dlkit train`` takes, in one process per backend (Keras fixes its
backend per process), and prints test accuracy as mean ± std over the seeds, with the epochs trained
and the seconds per epoch (gradient step, validation pass, log and checkpoint). ``speed`` trains a
fixed number of epochs without early stopping in a fresh process per backend and reports seconds per
epoch. ``monitors`` compares what early stopping watches (``--monitor both|accuracy|loss``) on the
same training: one run per seed, the three rules applied side by side to its validation metrics, each
rule's kept epoch scored on the test nodes, until every rule has run out of patience (the training of
an epoch does not depend on the rule, so each column is what ``dlkit train --monitor M`` gives for
that seed). Every run is appended as a JSON line to benchmarks/out/graph.jsonl with its command and the
load average before and after (the machine may be shared).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import common

HERE = Path(__file__).resolve().parent
OUT = HERE / "out"


def train_seeds(algo: str, data: str, backend: str, seeds: int, options: dict, first_seed: int = 0) -> list[dict]:
    """Train ``algo`` on ``data`` for seeds first_seed … first_seed+seeds-1 in this process; one row per run."""
    import dlkit

    rows = []
    with tempfile.TemporaryDirectory() as out:
        for seed in range(first_seed, first_seed + seeds):
            before, start = common.load_average(), time.perf_counter()
            run = dlkit.train(algo, backend=backend, out=out, echo=lambda *a: None, data=data, seed=seed, **options)
            metrics = run.metrics
            row = {"mode": "accuracy", "algo": algo, "data": data, "backend": metrics["backend"], "seed": seed,
                   "options": options, "accuracy": metrics["test"]["accuracy"],
                   "val_accuracy": metrics["test"]["val_accuracy"], "epochs": metrics["epochs_completed"],
                   "seconds_per_epoch": metrics.get("seconds_per_epoch"), "train_time_s": metrics["train_time_s"],
                   "wall_s": round(time.perf_counter() - start, 1), "load_before": before, "load_after": common.load_average(),
                   "date": time.strftime("%Y-%m-%d %H:%M")}
            common.record("graph", row)
            print(f"  {algo} {data} seed {seed}: {100 * row['accuracy']:.1f}% after {row['epochs']} epochs, "
                  f"{row['seconds_per_epoch']} s/epoch, {row['wall_s']} s (load {before} → {row['load_after']})",
                  flush=True)
            rows.append(row)
    return rows


def summary(rows: list[dict]) -> str:
    acc = [100 * r["accuracy"] for r in rows]
    epochs = [r["epochs"] for r in rows]
    spe = [r["seconds_per_epoch"] for r in rows]
    std = statistics.stdev(acc) if len(acc) > 1 else 0.0
    return (f"| {rows[0]['algo']} | {rows[0]['data']} | {statistics.mean(acc):.1f} ± {std:.1f} | "
            f"{min(acc):.1f}–{max(acc):.1f} | {statistics.mean(epochs):.0f} ({min(epochs)}–{max(epochs)}) | "
            f"{statistics.median(spe):.3f} | {statistics.median([r['wall_s'] for r in rows]):.0f} | "
            f"{rows[0]['backend']} | {len(rows)} |")


def accuracy(args) -> None:
    print("| plugin | data | test accuracy % (mean ± std) | min–max | epochs (range) | s/epoch (median) | "
          "s per run (median) | backend | seeds |", flush=True)
    lines = []
    for algo in args.algos.split(","):
        for data in args.data.split(","):
            rows = train_seeds(algo, data, args.backend, args.seeds, {}, args.first_seed)
            lines.append(summary(rows))
            print(lines[-1], flush=True)
    print("\n".join(["", "| plugin | data | test accuracy % (mean ± std) | min–max | epochs (range) | "
                     "s/epoch (median) | s per run (median) | backend | seeds |", "|---|---|---|---|---|---|---|---|---|",
                     *lines]))


def speed(args) -> None:
    """Seconds per epoch on each backend: a fresh process each, a fixed number of epochs."""
    OUT.mkdir(exist_ok=True)
    print("| plugin | data | backend | s/epoch | epochs | load before → after |")
    print("|---|---|---|---|---|---|")
    for algo in args.algos.split(","):
        for data in args.data.split(","):
            for backend in args.backends.split(","):
                before = common.load_average()
                code = (f"import dlkit, json; r = dlkit.train({algo!r}, backend={backend!r}, out={str(OUT / 'runs')!r}, "
                        f"echo=lambda *a: None, data={data!r}, epochs={args.epochs}, patience=0); "
                        f"print(json.dumps(r.metrics))")
                # outside the repository: a stale dlkit.egg-info there would shadow the installed entry points
                proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=OUT)
                if proc.returncode:
                    sys.exit(f"{algo} {data} {backend} failed:\n{proc.stderr[-3000:]}")
                metrics = json.loads(proc.stdout.strip().splitlines()[-1])
                row = {"mode": "speed", "algo": algo, "data": data, "backend": metrics["backend"],
                       "epochs": metrics["epochs_completed"], "seconds_per_epoch": metrics["seconds_per_epoch"],
                       "load_before": before, "load_after": common.load_average(), "date": time.strftime("%Y-%m-%d %H:%M"),
                       "command": f"python benchmarks/graph.py speed --algos {algo} --data {data} "
                                  f"--backends {backend} --epochs {args.epochs}"}
                common.record("graph", row)
                print(f"| {algo} | {data} | {backend} | {row['seconds_per_epoch']:.3f} | {row['epochs']} | "
                      f"{before} → {row['load_after']} |", flush=True)


def monitors(args) -> None:
    """Test accuracy of each early-stopping rule on the same training trajectory, per seed."""
    from dlkit import backends, registry

    backend = backends.activate(args.backend)
    import keras

    from dlkit.plugins.planetoid import EarlyStopping, node_metrics, predict_logits

    rules = ("both", "accuracy", "loss")
    algo = registry.get(args.algo).algorithm()
    if not algo.config(data=args.data).patience:
        sys.exit(f"{args.algo} trains without early stopping by default (patience 0): nothing to compare")
    rows = []
    for seed in range(args.first_seed, args.first_seed + args.seeds):
        before, start = common.load_average(), time.perf_counter()
        cfg = algo.config(data=args.data, seed=seed)
        keras.utils.set_random_seed(seed)           # as dlkit.train: seed, then data, then the model
        data = algo.load_data(cfg)
        model = algo.build(cfg, data)
        step, _, batch = algo.gradient_step(model, data, cfg)
        stoppers = {rule: EarlyStopping(cfg.patience, None, [], monitor=rule) for rule in rules}
        test_accuracy = []                          # per epoch
        for _ in range(cfg.epochs):
            step(*batch)
            logits = predict_logits(model, data)
            val = node_metrics(logits, data, "val")
            test_accuracy.append(node_metrics(logits, data, "test")["accuracy"])
            for stopper in stoppers.values():
                if not stopper.exhausted:
                    stopper.update(val, model)
            if all(stopper.exhausted for stopper in stoppers.values()):
                break
        row = {"mode": "monitors", "algo": args.algo, "data": args.data, "backend": backend, "seed": seed,
               "patience": cfg.patience, "epochs_trained": len(test_accuracy),
               **{rule: test_accuracy[stopper.best_epoch - 1] for rule, stopper in stoppers.items()},
               **{f"{rule}_kept_epoch": stopper.best_epoch for rule, stopper in stoppers.items()},
               **{f"{rule}_stopped_epoch": stopper.epoch for rule, stopper in stoppers.items()},
               "wall_s": round(time.perf_counter() - start, 1), "load_before": before,
               "load_after": common.load_average(), "date": time.strftime("%Y-%m-%d %H:%M"),
               "command": f"python benchmarks/graph.py monitors --algo {args.algo} --data {args.data} --seeds 1 "
                          f"--first-seed {seed} --backend {args.backend}"}
        common.record("graph", row)
        rows.append(row)
        print(f"  seed {seed}: " + ", ".join(f"{rule} {100 * row[rule]:.1f}% (kept epoch {row[rule + '_kept_epoch']}, "
                                             f"stopped {row[rule + '_stopped_epoch']})" for rule in rules)
              + f"; {row['wall_s']} s (load {before} → {row['load_after']})", flush=True)
    print(f"\n| monitor | {args.algo} {args.data} test accuracy % (mean ± std) | min–max | epochs to stop (mean) | seeds |")
    print("|---|---|---|---|---|")
    for rule in rules:
        acc = [100 * r[rule] for r in rows]
        std = statistics.stdev(acc) if len(acc) > 1 else 0.0
        stopped = statistics.mean(r[f"{rule}_stopped_epoch"] for r in rows)
        print(f"| {rule} | {statistics.mean(acc):.2f} ± {std:.2f} | {min(acc):.1f}–{max(acc):.1f} | {stopped:.0f} | {len(rows)} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="mode", required=True)
    acc = sub.add_parser("accuracy", help="test accuracy over seeds, papers' settings")
    acc.add_argument("--algos", default="gcn,gat")
    acc.add_argument("--data", default="cora,citeseer,pubmed")
    acc.add_argument("--seeds", type=int, default=10)
    acc.add_argument("--first-seed", type=int, default=0,
                     help="continue a stopped series: seeds first … first+seeds-1 (rows append to graph.jsonl)")
    acc.add_argument("--backend", default="tensorflow")
    spd = sub.add_parser("speed", help="seconds per epoch on each backend")
    spd.add_argument("--algos", default="gcn,gat")
    spd.add_argument("--data", default="cora")
    spd.add_argument("--backends", default="tensorflow,jax,torch")
    spd.add_argument("--epochs", type=int, default=30)
    mon = sub.add_parser("monitors", help="test accuracy of each early-stopping rule on the same runs")
    mon.add_argument("--algo", default="gat")
    mon.add_argument("--data", default="pubmed")
    mon.add_argument("--seeds", type=int, default=10)
    mon.add_argument("--first-seed", type=int, default=0)
    mon.add_argument("--backend", default="tensorflow")
    args = parser.parse_args()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    {"accuracy": accuracy, "speed": speed, "monitors": monitors}[args.mode](args)


if __name__ == "__main__":
    main()
