"""Benchmarks of the diffusion plugin: sample quality of the default runs, seconds per epoch per backend, and
DDIM at 50 steps against DDPM at all 1,000 on the same noise.

    python benchmarks/diffusion.py train [--backend tensorflow] [--data mnist] [-- dlkit diffusion options]
    python benchmarks/diffusion.py speed [--backends tensorflow,jax,torch] [--train-samples 3200]
    python benchmarks/diffusion.py samplers RUN_DIR [--samples 1000] [--backend tensorflow] [--guidance W]
    python benchmarks/diffusion.py ceiling [--data mnist]
    python benchmarks/diffusion.py guidance RUN_DIR [--weights 0,0.5,1,2,3] [--samples 2000] [--backend torch]

``train`` runs ``dlkit train diffusion`` as a user would and reads its metrics.json: the classifier score,
Fréchet distance, classes covered and class KL of the 10,000 DDIM-50 images ``evaluate`` draws, the reference
classifier's test accuracy, the training time and the sampling speed. ``speed`` trains two short epochs on
each backend and reads the second one's time (the first compiles). ``samplers`` generates the same number of
images from one run with DDIM (--steps 50) and with DDPM (all T steps) through ``dlkit.training.generate`` and
scores both with ``dlkit.sample_quality``: Fréchet distance and samples/s side by side. ``ceiling`` scores
10,000 real held-out images, the best a generator can do on these metrics. ``guidance`` draws the same noise and
classes (in turn) from a conditional run at each guidance weight w and scores them: the trade between looking
like the class (classifier score, label accuracy) and covering the data (Fréchet distance). Results are printed
as Markdown and appended as JSON lines to benchmarks/out/diffusion.jsonl with the command and the load average.

The reference runs of the numbers in benchmarks/RESULTS.md:

    python benchmarks/diffusion.py train --backend torch --data mnist             # PyTorch: the fastest here
    python benchmarks/diffusion.py guidance RUN_DIR --weights 0,0.5,1,2 --samples 1000   # RUN_DIR: 'train' made it
    python benchmarks/diffusion.py guidance RUN_DIR --weights 0.5 --samples 10000
    python benchmarks/diffusion.py samplers RUN_DIR --samples 300 --backend torch --guidance 0.5
    python benchmarks/diffusion.py speed
    python benchmarks/diffusion.py train --backend torch --data fashion_mnist -- --guidance 0.5
"""
from __future__ import annotations

import argparse
import re
import sys
import tempfile
import time

import common

KEYS = ("classifier_score", "frechet_distance", "classes_covered", "class_kl", "label_accuracy", "guidance",
        "reference_test_accuracy", "samples", "samples_per_s")
ENV = {"OMP_NUM_THREADS": "2"}


def train(backend: str, data: str, options: list[str]) -> None:
    done = common.train("diffusion", backend, "--data", data, *options, env=ENV)
    m = done.metrics
    test = m["test"]
    row = {"command": done.command, "backend": m["backend"], "data": data, "run": str(done.run),
           **{k: test.get(k) for k in KEYS}, "class_histogram": test.get("class_histogram"),
           "train_time_s": m["train_time_s"], "seconds_per_epoch": m["seconds_per_epoch"],
           "epochs": m["epochs_completed"], "process_wall_s": done.wall_s, "load_before": done.load_before,
           "load_after": done.load_after, "date": time.strftime("%Y-%m-%d %H:%M")}
    common.record("diffusion", row)
    label = "–" if row["label_accuracy"] is None else f"{row['label_accuracy']:.3f} (w = {row['guidance']:g})"
    print("| data | backend | classifier score | FD | classes | KL | label accuracy | ref. acc. | train s | s/epoch | "
          "eval samples/s | load before → after |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    print(f"| {data} | {row['backend']} | {row['classifier_score']:.3f} | {row['frechet_distance']:.2f} | "
          f"{row['classes_covered']} | {row['class_kl']:.4f} | {label} | {row['reference_test_accuracy']:.4f} | "
          f"{row['train_time_s']} | {row['seconds_per_epoch']} | {row['samples_per_s']} | {row['load_before']} → "
          f"{row['load_after']} |")
    print(f"\nrun: {row['run']}  (sample grids: {row['run']}/plots/samples_epoch_*.png, denoising.png)")


def speed(backends: list[str], train_samples: int) -> None:
    print("| backend | images per epoch | s per epoch (2nd) | s per step | load before → after |")
    print("|---|---|---|---|---|")
    for backend in backends:
        done = common.train("diffusion", backend, "--epochs", "2", "--train-samples", str(train_samples),
                            "--eval-samples", "100", env=ENV, tag="-speed")
        second = float(re.search(r"epoch 2: loss [\d.]+, ([\d.]+) s", done.stdout).group(1))
        steps = train_samples // 128  # the default --batch-size
        row = {"command": done.command, "backend": done.metrics["backend"], "train_samples": train_samples,
               "second_epoch_s": second, "seconds_per_step": round(second / steps, 3),
               "load_before": done.load_before, "load_after": done.load_after, "date": time.strftime("%Y-%m-%d %H:%M")}
        common.record("diffusion", row)
        print(f"| {row['backend']} | {train_samples} | {second} | {row['seconds_per_step']} | {row['load_before']} → "
              f"{row['load_after']} |", flush=True)


def samplers(run_dir: str, samples: int, backend: str, weight: float | None) -> None:
    import numpy as np

    from dlkit import backends, training

    backends.activate(backend)
    from dlkit.sample_quality import sample_quality

    data = training.open_run(run_dir)[2].data
    print("| sampler | steps | samples | seconds | samples/s | classifier score | FD | classes | load before → after |")
    print("|---|---|---|---|---|---|---|---|---|")
    for sampler, steps in (("ddim", 50), ("ddpm", 1000)):
        before = common.load_average()
        with tempfile.TemporaryDirectory() as tmp:
            out = f"{tmp}/samples"
            made = training.generate(run_dir, out=out, echo=lambda *_: None, samples=samples, sampler=sampler,
                                     steps=steps, seed=1, guidance=weight, backend=backend)
            images = np.load(f"{out}/samples.npz")["images"]
        quality = sample_quality(images, data, echo=lambda *_: None)
        asked = "" if weight is None else f" --guidance {weight:g}"
        row = {"command": f"dlkit generate {run_dir} -n {samples} --sampler {sampler} --steps {steps} --seed 1{asked}",
               "backend": made["backend"], "sampler": sampler, "guidance": made["guidance"], "steps": made["steps"],
               "samples": samples, "seconds": made["seconds"], "samples_per_s": made["samples_per_s"],
               **{k: quality[k] for k in ("classifier_score", "frechet_distance", "classes_covered", "class_kl")},
               "load_before": before, "load_after": common.load_average(), "date": time.strftime("%Y-%m-%d %H:%M")}
        common.record("diffusion", row)
        print(f"| {sampler} | {row['steps']} | {samples} | {row['seconds']} | {row['samples_per_s']} | "
              f"{row['classifier_score']:.3f} | {row['frechet_distance']:.2f} | {row['classes_covered']} | "
              f"{before} → {row['load_after']} |", flush=True)


def guidance(run_dir: str, weights: list[float], samples: int, backend: str) -> None:
    import numpy as np

    from dlkit import backends, training

    backends.activate(backend)
    from dlkit.sample_quality import reference_classifier, sample_quality

    data = training.open_run(run_dir)[2].data
    print("| guidance w | samples | samples/s | classifier score | FD | classes | label accuracy | load before → after |")
    print("|---|---|---|---|---|---|---|---|")
    for weight in weights:
        before = common.load_average()
        with tempfile.TemporaryDirectory() as tmp:
            made = training.generate(run_dir, out=f"{tmp}/samples", echo=lambda *_: None, samples=samples, steps=50,
                                     guidance=weight, seed=1, backend=backend)
            saved = np.load(f"{tmp}/samples/samples.npz")
            images, labels = saved["images"], saved["labels"]
        quality = sample_quality(images, data, echo=lambda *_: None)
        predicted = reference_classifier(data, echo=lambda *_: None).probabilities(images).argmax(axis=1)
        row = {"command": f"dlkit generate {run_dir} -n {samples} --steps 50 --guidance {weight} --seed 1",
               "backend": made["backend"], "guidance": weight, "samples": samples,
               "samples_per_s": made["samples_per_s"], "label_accuracy": float(np.mean(predicted == labels)),
               **{k: quality[k] for k in ("classifier_score", "frechet_distance", "classes_covered", "class_kl")},
               "load_before": before, "load_after": common.load_average(), "date": time.strftime("%Y-%m-%d %H:%M")}
        common.record("diffusion", row)
        print(f"| {weight:g} | {samples} | {row['samples_per_s']} | {row['classifier_score']:.3f} | "
              f"{row['frechet_distance']:.2f} | {row['classes_covered']} | {row['label_accuracy']:.3f} | "
              f"{before} → {row['load_after']} |", flush=True)


def ceiling(data: str, backend: str) -> None:
    from dlkit import backends

    backends.activate(backend)
    from dlkit.sample_quality import real_data_ceiling

    q = real_data_ceiling(data)
    row = {"command": f"real_data_ceiling('{data}')", "data": data, "real_images": True,
           **{k: q[k] for k in ("classifier_score", "frechet_distance", "classes_covered", "class_kl", "samples")},
           "reference_test_accuracy": q["reference"]["test_accuracy"], "date": time.strftime("%Y-%m-%d %H:%M")}
    common.record("diffusion", row)
    print(f"| real {data} | {q['samples']} | {q['classifier_score']:.3f} | {q['frechet_distance']:.2f} | "
          f"{q['classes_covered']} | {q['class_kl']:.4f} |")


def main() -> None:
    argv = sys.argv[1:]
    options = argv[argv.index("--") + 1:] if "--" in argv else []
    argv = argv[:argv.index("--")] if "--" in argv else argv
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="what", required=True)
    t = sub.add_parser("train")
    t.add_argument("--backend", default="tensorflow")
    t.add_argument("--data", default="mnist")
    s = sub.add_parser("speed")
    s.add_argument("--backends", default="tensorflow,jax,torch")
    s.add_argument("--train-samples", type=int, default=3200)
    c = sub.add_parser("samplers")
    c.add_argument("run")
    c.add_argument("--samples", type=int, default=1000)
    c.add_argument("--backend", default="tensorflow")
    c.add_argument("--guidance", type=float, default=None, help="guidance weight w (default: the run's)")
    g = sub.add_parser("guidance")
    g.add_argument("run")
    g.add_argument("--weights", default="0,0.5,1,2,3")
    g.add_argument("--samples", type=int, default=2000)
    g.add_argument("--backend", default="torch")
    r = sub.add_parser("ceiling")
    r.add_argument("--data", default="mnist")
    r.add_argument("--backend", default="tensorflow")
    args = parser.parse_args(argv)
    if args.what == "train":
        train(args.backend, args.data, options)
    elif args.what == "speed":
        speed(args.backends.split(","), args.train_samples)
    elif args.what == "samplers":
        samplers(args.run, args.samples, args.backend, args.guidance)
    elif args.what == "guidance":
        guidance(args.run, [float(w) for w in args.weights.split(",")], args.samples, args.backend)
    else:
        ceiling(args.data, args.backend)


if __name__ == "__main__":
    main()
