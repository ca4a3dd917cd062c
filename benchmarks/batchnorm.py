"""Batch-norm statistics after short runs: the moving averages against statistics re-estimated after training.

    python benchmarks/batchnorm.py analyse RUN [--batches 10,25,50,100,200]
        one saved run (best trained with --bn-batches 0, so model.keras holds the moving averages):
        per batch-norm layer, moving mean/variance against the exact ones over 5,120 training images,
        then test accuracy with the moving averages and after re-estimating over N batches (dropout off
        and on). Same weights throughout, so "before" and "after" differ only by the statistics.
    python benchmarks/batchnorm.py trace [--momentum 0.99] [--every 10]
        cnn's default recipe, one MNIST epoch on TensorFlow, with the first batch norm's moving variance
        and the true variance of its inputs (1,024 fixed training images) every 10 steps.
    python benchmarks/batchnorm.py train NAME [--backends tensorflow,jax,torch] [--analyse]
        the trainings behind the figures (NAME in TRAININGS), one process at a time, niced; with
        --analyse each is trained with --bn-batches 0 and then analysed.

Rows go to benchmarks/out/batchnorm.jsonl with the command and the load average.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402

#: The runs the targets are about: cnn's first try and its default, and the short budgets RESULTS.md reports.
TRAININGS = {
    "cnn1": ("cnn", "--epochs", "1"),
    "cnn3": ("cnn",),
    "resnet": ("resnet", "--data", "fashion_mnist", "--train-samples", "8000", "--epochs", "3"),
    "mobilenet-v1": ("mobilenet", "--data", "fashion_mnist", "--train-samples", "12000", "--epochs", "3"),
    "mobilenet-v2": ("mobilenet", "--variant", "v2", "--alpha", "0.5", "--data", "fashion_mnist",
                     "--train-samples", "12000", "--epochs", "3"),
}
STATS_IMAGES = 5120  # 40 batches of 128: the "true" statistics the moving averages are compared with


def analyse(run_dir: str, batch_counts: list[int]) -> dict:
    """The comparison for one run, in this process (on the run's backend)."""
    from dlkit import training

    run, entry, cfg = training.open_run(run_dir)
    plugin, model = training.load_run_model(run, entry, cfg, None)
    import keras
    import numpy as np

    from dlkit import batchnorm

    data = training.load_prepared(entry, plugin, cfg)
    layers = batchnorm.batch_norm_layers(model)
    saved = [(keras.ops.convert_to_numpy(layer.moving_mean), keras.ops.convert_to_numpy(layer.moving_variance))
             for layer in layers]

    def reset():
        for layer, (mean, variance) in zip(layers, saved):
            layer.moving_mean.assign(mean)
            layer.moving_variance.assign(variance)

    def accuracy():
        return round(training.call_hook(entry, plugin, "evaluate", model, data, cfg)[plugin.headline_metric], 4)

    def batches(n):
        return batchnorm.training_batches(data.x_train, 128, n, seed=1)

    # the "true" statistics: exact over 5,120 training images (upstream layers in training mode)
    batchnorm.reestimate(model, batches(STATS_IMAGES // 128), num_batches=None)
    per_layer = []
    for layer, (mean, variance) in zip(layers, saved):
        true_mean = keras.ops.convert_to_numpy(layer.moving_mean)
        true_var = keras.ops.convert_to_numpy(layer.moving_variance)
        ratio = variance / np.maximum(true_var, 1e-12)
        per_layer.append({"layer": layer.name, "channels": int(true_mean.shape[0]), "momentum": layer.momentum,
                          "var_ratio_median": round(float(np.median(ratio)), 3),
                          "var_ratio_mean": round(float(np.mean(ratio)), 3),
                          "mean_shift_in_std": round(float(np.mean(np.abs(mean - true_mean) / np.sqrt(true_var + 1e-12))), 3)})
    reset()
    rows = {"moving averages": accuracy()}
    for n in batch_counts:
        for dropout in (False, True):
            if dropout and n != batchnorm.BATCHES:
                continue  # dropout on: measured at the default only
            reset()
            info = batchnorm.reestimate(model, batches(n), num_batches=n, dropout=dropout)
            rows[f"{n} batches" + (", dropout on" if dropout else "")] = accuracy()
            rows[f"{n} batches" + (", dropout on" if dropout else "") + " seconds"] = info["seconds"]
    return {"run": str(run.path), "algorithm": entry.name, "backend": keras.backend.backend(),
            "config": run.config["config"], "layers": per_layer, "test": rows}


def trace(epochs: int, momentum: float, every: int, dataset: str = "mnist") -> dict:
    """Train cnn's default recipe on MNIST here (TensorFlow) and follow its first batch norm every ``every`` steps.

    Each point: the learning rate, the norm of the first convolution's kernel, the layer's moving
    variance and the true variance of its inputs over a fixed probe of 1,024 training images (both
    averaged over channels), so the lag can be seen as it builds up.
    """
    import dataclasses

    from dlkit import backends

    backends.activate("tensorflow")
    import keras
    import numpy as np

    from dlkit import data as datasets
    from dlkit.plugins.cnn import CNN, CNNConfig

    cfg = CNNConfig(epochs=epochs, bn_momentum=momentum)
    keras.utils.set_random_seed(cfg.seed)
    mnist = datasets.load(dataset)
    model = CNN().build(cfg, mnist)
    conv, bn = model.layers[0], model.layers[1]
    probe_model = keras.Model(model.inputs, conv.output)
    probe = mnist.x_train[:1024]
    points = []

    class Follow(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            step = int(model.optimizer.iterations.numpy() if hasattr(model.optimizer.iterations, "numpy")
                       else keras.ops.convert_to_numpy(model.optimizer.iterations))
            if step % every:
                return
            out = keras.ops.convert_to_numpy(probe_model(probe))
            points.append({"step": step,
                           "learning_rate": float(keras.ops.convert_to_numpy(model.optimizer.learning_rate)),
                           "kernel_norm": round(float(np.linalg.norm(keras.ops.convert_to_numpy(conv.kernel))), 4),
                           "moving_var": round(float(np.mean(keras.ops.convert_to_numpy(bn.moving_variance))), 5),
                           "true_var": round(float(np.mean(out.var(axis=(0, 1, 2)))), 5)})

    labels = keras.utils.to_categorical(mnist.y_train, mnist.num_classes)
    data = dataclasses.replace(mnist, y_train=labels)
    model.fit(data.x_train, data.y_train, batch_size=cfg.batch_size, epochs=epochs, callbacks=[Follow()], verbose=2)
    from dlkit import batchnorm

    def accuracy():
        predicted = model.predict(mnist.x_test, batch_size=500, verbose=0).argmax(axis=1)
        return round(float((predicted == mnist.y_test).mean()), 4)

    moving = accuracy()
    batchnorm.reestimate(model, batchnorm.training_batches(mnist.x_train, cfg.batch_size, batchnorm.BATCHES, 1))
    return {"what": "trace", "momentum": momentum, "epochs": epochs, "points": points,
            "test": {"moving averages": moving, f"{batchnorm.BATCHES} batches": accuracy()}}


def train_one(name: str, backend: str, analysed: bool) -> None:
    algo, *options = TRAININGS[name]
    if analysed:
        options += ["--bn-batches", "0"]
    trained = common.train(algo, backend, *options, tag=f"-{name}")
    metrics = trained.metrics
    row = {"what": "train", "name": name, "command": trained.command, "run": str(trained.run),
           "test": metrics["test"].get(metrics["headline"]["metric"]), "batchnorm": metrics.get("batchnorm_reestimated"),
           "train_time_s": metrics["train_time_s"], "wall_s": trained.wall_s,
           "load_before": trained.load_before, "load_after": trained.load_after}
    common.record("batchnorm", row)
    print(json.dumps(row), flush=True)
    if analysed:  # in its own process: the run's backend is chosen before Keras is imported
        proc = subprocess.run([sys.executable, __file__, "analyse", str(trained.run)], capture_output=True, text=True)
        if proc.returncode:
            sys.exit(f"analyse failed: {proc.stderr[-3000:]}")
        print(proc.stdout, flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    one = sub.add_parser("analyse")
    one.add_argument("run")
    one.add_argument("--batches", default="10,50,200")
    follow = sub.add_parser("trace")
    follow.add_argument("--epochs", type=int, default=1)
    follow.add_argument("--momentum", type=float, default=0.99)
    follow.add_argument("--every", type=int, default=10)
    follow.add_argument("--data", default="mnist")
    many = sub.add_parser("train")
    many.add_argument("name", choices=sorted(TRAININGS))
    many.add_argument("--backends", default="tensorflow,jax,torch")
    many.add_argument("--analyse", action="store_true")
    args = parser.parse_args()
    if args.command == "analyse":
        before, started = common.load_average(), time.perf_counter()
        result = analyse(args.run, [int(n) for n in args.batches.split(",")])
        result.update(what="analyse", command=f"python benchmarks/batchnorm.py analyse {args.run}",
                      wall_s=round(time.perf_counter() - started, 1), load_before=before,
                      load_after=common.load_average())
        common.record("batchnorm", result)
        print(json.dumps(result, indent=1))
        return
    os.nice(5)
    if args.command == "trace":
        before, started = common.load_average(), time.perf_counter()
        result = trace(args.epochs, args.momentum, args.every, args.data)
        result.update(command=f"python benchmarks/batchnorm.py trace --epochs {args.epochs} --momentum "
                              f"{args.momentum} --every {args.every}", wall_s=round(time.perf_counter() - started, 1),
                      load_before=before, load_after=common.load_average())
        common.record("batchnorm", result)
        print(json.dumps(result))
        return
    for backend in args.backends.split(","):
        train_one(args.name, backend, args.analyse)


if __name__ == "__main__":
    main()
