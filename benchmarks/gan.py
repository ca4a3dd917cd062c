"""Benchmarks of the gan plugin: sample quality at the defaults, and seconds per epoch on each backend.

    python benchmarks/gan.py quality --data mnist --backend tensorflow                    # the default run
    python benchmarks/gan.py quality --data mnist --backend tensorflow -- --no-conditional
    python benchmarks/gan.py quality --data fashion_mnist --backend tensorflow
    python benchmarks/gan.py speed --backends tensorflow,jax,torch --train-samples 6400

``quality`` runs ``dlkit train gan`` with the plugin's defaults (plus any options after ``--``) in its own
process and reports what ``evaluate`` measured on 10,000 samples — classifier score, Fréchet distance,
classes covered, class KL, label accuracy (conditional), the reference classifier's test accuracy — the
training time, and the same metrics on 10,000 held-out real images (``real_data_ceiling``), the ceiling.
The run folder (benchmarks/out/runs/gan-…) keeps plots/samples_epoch_NNN.png, the grids a person looks at.
``speed`` trains 2 epochs on the first --train-samples MNIST images per backend, a fresh process each, and
reports seconds per epoch and per step (one D and one G update; the first epoch includes compiling).
Every row is appended to benchmarks/out/gan.jsonl with its command and the load average before and after
(the machine may be shared).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

import common


def quality(args, extra: list[str]) -> None:
    options = ["--data", args.data, *extra]
    trained = common.train("gan", args.backend, *options)
    test, metrics = trained.metrics["test"], trained.metrics
    ceiling = real_ceiling(args.data)
    row = {"mode": "quality", "data": args.data, "backend": metrics["backend"], "options": extra,
           "classifier_score": test["classifier_score"], "frechet_distance": test["frechet_distance"],
           "classes_covered": test["classes_covered"], "class_kl": test["class_kl"],
           "class_histogram": test["class_histogram"], "label_accuracy": test.get("label_accuracy"),
           "reference_test_accuracy": test["reference_test_accuracy"], "samples": test["samples"],
           "epochs": metrics["epochs_completed"], "train_time_s": metrics["train_time_s"],
           "seconds_per_epoch": metrics["seconds_per_epoch"], "wall_s": trained.wall_s,
           "ceiling": {k: ceiling[k] for k in ("classifier_score", "frechet_distance", "classes_covered", "class_kl")},
           "run": str(trained.run), "grid": str(trained.run / "plots" / f"samples_epoch_{metrics['epochs_completed']:03d}.png"),
           "load_before": trained.load_before, "load_after": trained.load_after, "date": time.strftime("%Y-%m-%d %H:%M"),
           "command": f"python benchmarks/gan.py quality --data {args.data} --backend {args.backend}"
                      + (f" -- {' '.join(extra)}" if extra else "")}
    common.record("gan", row)
    print(f"{trained.command}\n"
          f"  classifier score {row['classifier_score']:.3f} (real {row['ceiling']['classifier_score']:.3f}), "
          f"Fréchet distance {row['frechet_distance']:.2f} (real {row['ceiling']['frechet_distance']:.2f}), "
          f"classes covered {row['classes_covered']}, class KL {row['class_kl']:.4f}, "
          f"label accuracy {row['label_accuracy']}, reference test accuracy {row['reference_test_accuracy']:.4f}\n"
          f"  {row['epochs']} epochs, {row['train_time_s']} s training ({row['seconds_per_epoch']} s/epoch), "
          f"load {row['load_before']} → {row['load_after']}\n  grid: {row['grid']}", flush=True)


def real_ceiling(data: str) -> dict:
    """real_data_ceiling on the same backend-neutral reference classifier, in a process of its own."""
    code = ("import json; from dlkit.sample_quality import real_data_ceiling; "
            f"print(json.dumps(real_data_ceiling({data!r}, echo=lambda *a: None)))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=common.OUT,
                          env={**os.environ, "KERAS_BACKEND": os.environ.get("KERAS_BACKEND", "tensorflow")})
    if proc.returncode:
        sys.exit(f"real_data_ceiling({data!r}) failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def speed(args) -> None:
    print("| backend | s/epoch | s/step | steps/epoch | epochs | load before → after |")
    print("|---|---|---|---|---|---|")
    for backend in args.backends.split(","):
        trained = common.train("gan", backend, "--data", args.data, "--epochs", str(args.epochs),
                               "--train-samples", str(args.train_samples), "--eval-samples", "1000")
        metrics = trained.metrics
        steps = args.train_samples // 128
        row = {"mode": "speed", "data": args.data, "backend": metrics["backend"], "epochs": metrics["epochs_completed"],
               "train_samples": args.train_samples, "seconds_per_epoch": metrics["seconds_per_epoch"],
               "seconds_per_step": round(metrics["seconds_per_epoch"] / steps, 4), "steps_per_epoch": steps,
               "load_before": trained.load_before, "load_after": trained.load_after,
               "date": time.strftime("%Y-%m-%d %H:%M"), "command": trained.command}
        common.record("gan", row)
        print(f"| {backend} | {row['seconds_per_epoch']:.2f} | {row['seconds_per_step']:.3f} | {steps} | "
              f"{row['epochs']} | {row['load_before']} → {row['load_after']} |", flush=True)


def main() -> None:
    argv = sys.argv[1:]
    extra = argv[argv.index("--") + 1:] if "--" in argv else []
    argv = argv[:argv.index("--")] if "--" in argv else argv
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="mode", required=True)
    qual = sub.add_parser("quality", help="sample quality of a default run (options after --)")
    qual.add_argument("--data", default="mnist")
    qual.add_argument("--backend", default="tensorflow")
    spd = sub.add_parser("speed", help="seconds per epoch on each backend")
    spd.add_argument("--data", default="mnist")
    spd.add_argument("--backends", default="tensorflow,jax,torch")
    spd.add_argument("--epochs", type=int, default=2)
    spd.add_argument("--train-samples", type=int, default=6400)
    args = parser.parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    quality(args, extra) if args.mode == "quality" else speed(args)


if __name__ == "__main__":
    main()
