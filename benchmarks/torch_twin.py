"""`dlkit train cnn` on the torch backend against a hand-written native PyTorch twin of the same recipe.

    python benchmarks/torch_twin.py native [--epochs 1] [--train-samples 0] [--threads 2]
        the twin: cnn's default model and recipe written directly in PyTorch (NCHW, no Keras in the step)
    python benchmarks/torch_twin.py dlkit [--backend torch] [--epochs 1] [--train-samples 0] [--threads 2]
        the same budget through dlkit.train("cnn", ...), dlkit's defaults otherwise
    python benchmarks/torch_twin.py paired --pairs 3 --epochs 1 --train-samples 10000 [--backends tensorflow,jax]
        N interleaved pairs (native, dlkit torch, then each extra backend), each run in a fresh process;
        prints the median ratio dlkit torch / native (and jax / tensorflow when both are timed)

    python benchmarks/torch_twin.py steps --threads 1,2 [--rounds 5] [--steps 20] [--profile 10] [--by-shape]
        one process, both sides built once: rounds of N training steps, native and dlkit torch
        interleaved, timed per step at each thread count; then where each side's time goes (the
        torch.profiler operators with the most self CPU time, over a few more steps)

The twin, layer by layer as plugins/cnn.py builds it: Conv32 (no bias) → BN → ReLU → Conv64 (no bias) →
BN → ReLU → MaxPool 2 → Dropout 0.1 → Flatten → Dense128 (no bias) → BN → ReLU → Dropout 0.2 → Dense10,
with Keras' batch norm (momentum 0.99, i.e. PyTorch's 0.01; epsilon 1e-3) and initialisers (glorot
uniform kernels, zero biases); Adam with Keras' epsilon 1e-7, learning rate rising linearly from 0 over
the first 10% of the steps to 5e-3, then a cosine to 0, set every step; cross-entropy with label
smoothing 0.1; batch 128, reshuffled every epoch; MNIST from keras.datasets.

What is timed, on both sides, is the fit: the epochs' training steps, the running loss/accuracy that
model.fit logs, and a checkpoint written after every epoch (dlkit's run.checkpoint saves model.keras; the
twin saves its model and optimizer state). Not timed: importing, loading and preparing the data,
building the model, the batch-norm re-estimation both run after the last step (50 training batches,
dlkit/batchnorm.py), the final save and the test evaluation. dlkit's figure is metrics.json's
``train_time_s`` minus that re-estimation (``batchnorm_reestimated.seconds`` in metrics.json).

Threads: PyTorch's intra-op thread count is set to ``--threads`` (default 2, torch's own default on the
2-core development machine) in both the twin and the dlkit torch process. TensorFlow and JAX keep their
defaults. Rows go to benchmarks/out/torch_twin.jsonl with the command, the commit and the load average.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402

NAME = "torch_twin"
ROOT = Path(__file__).resolve().parent.parent
# cnn's defaults (plugins/cnn.py, dlkit.api.TrainConfig)
BATCH, PEAK_LR, WARMUP, SMOOTHING, BN_MOMENTUM, BN_EPSILON, ADAM_EPSILON = 128, 5e-3, 0.1, 0.1, 0.99, 1e-3, 1e-7


def commit() -> str:
    return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                          cwd=ROOT).stdout.strip()


def mnist(train_samples: int):
    """MNIST as Keras hands it to dlkit: float32 in [0, 1], the first ``train_samples`` training images."""
    os.environ.setdefault("KERAS_BACKEND", "torch")
    import keras

    (x_train, y_train), (x_test, y_test) = keras.datasets.mnist.load_data()
    if train_samples:
        x_train, y_train = x_train[:train_samples], y_train[:train_samples]
    return (x_train.astype("float32") / 255.0, y_train.astype("int64"),
            x_test.astype("float32") / 255.0, y_test.astype("int64"))


def learning_rate(step: int, total_steps: int) -> float:
    """Keras' CosineDecay(0, total - warmup, warmup_target=PEAK_LR, warmup_steps=warmup) at ``step`` (0-based)."""
    warmup_steps = int(WARMUP * total_steps)
    if step < warmup_steps:
        return PEAK_LR * step / warmup_steps
    decay_steps = total_steps - warmup_steps
    progress = min(step - warmup_steps, decay_steps) / decay_steps
    return PEAK_LR * 0.5 * (1.0 + math.cos(math.pi * progress))


def twin_model():
    from torch import nn

    momentum = 1.0 - BN_MOMENTUM  # Keras keeps 0.99 of the old average, PyTorch mixes in 0.01 of the new batch
    model = nn.Sequential(
        nn.Conv2d(1, 32, 3, bias=False), nn.BatchNorm2d(32, eps=BN_EPSILON, momentum=momentum), nn.ReLU(),
        nn.Conv2d(32, 64, 3, bias=False), nn.BatchNorm2d(64, eps=BN_EPSILON, momentum=momentum), nn.ReLU(),
        nn.MaxPool2d(2), nn.Dropout(0.1), nn.Flatten(),
        nn.Linear(64 * 12 * 12, 128, bias=False), nn.BatchNorm1d(128, eps=BN_EPSILON, momentum=momentum), nn.ReLU(),
        nn.Dropout(0.2), nn.Linear(128, 10),
    )
    for module in model.modules():  # Keras' defaults: glorot_uniform kernels, zero biases
        if isinstance(module, (nn.Conv2d, nn.Linear)):
            # PyTorch's fans of a (out, in, kh, kw) kernel are Keras' fans of its (kh, kw, in, out) one
            nn.init.xavier_uniform_(module.weight)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
    return model


def twin_step(model, optimizer, images, labels):
    """One training step of the twin (cross-entropy with cnn's label smoothing); returns (logits, loss)."""
    import torch.nn.functional as F

    logits = model(images)
    loss = F.cross_entropy(logits, labels, label_smoothing=SMOOTHING)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return logits, loss


def reestimate_batch_norm(model, x_train, seed: int, batches: int = 50) -> None:
    """Batch-norm statistics set to their averages over 50 training batches, after the last step, as dlkit
    does after model.fit (dlkit/batchnorm.py): the moving averages of a short run lag the weights.
    PyTorch's cumulative average (momentum None) over batches in training mode, dropout off."""
    import torch
    from torch import nn

    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    for norm in norms:
        norm.reset_running_stats()
        norm.momentum = None
    model.eval()
    for norm in norms:
        norm.train()
    order = torch.randperm(len(x_train), generator=torch.Generator().manual_seed(seed))[:batches * BATCH]
    with torch.no_grad():
        for first in range(0, len(order), BATCH):
            model(x_train[order[first:first + BATCH]])


def native(args) -> dict:
    """Train the twin; returns the row (fit seconds, test accuracy)."""
    import torch

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    x_train, y_train, x_test, y_test = mnist(args.train_samples)
    x_train, x_test = torch.from_numpy(x_train[:, None]), torch.from_numpy(x_test[:, None])  # NCHW
    y_train, y_test = torch.from_numpy(y_train), torch.from_numpy(y_test)
    model = twin_model()
    optimizer = torch.optim.Adam(model.parameters(), lr=0.0, eps=ADAM_EPSILON)
    n = len(x_train)
    steps_per_epoch = math.ceil(n / BATCH)
    total_steps = args.epochs * steps_per_epoch
    generator = torch.Generator().manual_seed(args.seed)
    checkpoint = Path(tempfile.mkdtemp()) / "checkpoint.pt"
    step, epochs = 0, []

    started = time.perf_counter()
    for epoch in range(args.epochs):
        model.train()
        order = torch.randperm(n, generator=generator)
        loss_sum, correct = torch.zeros(()), torch.zeros((), dtype=torch.int64)
        for first in range(0, n, BATCH):
            index = order[first:first + BATCH]
            images, labels = x_train[index], y_train[index]
            for group in optimizer.param_groups:
                group["lr"] = learning_rate(step, total_steps)
            logits, loss = twin_step(model, optimizer, images, labels)
            step += 1
            with torch.no_grad():  # what model.fit's progress logs: mean loss and accuracy so far
                loss_sum += loss.detach() * len(labels)
                correct += (logits.argmax(1) == labels).sum()
        torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict()}, checkpoint)
        epochs.append({"loss": round(loss_sum.item() / n, 4), "accuracy": round(correct.item() / n, 4)})
    fit_s = time.perf_counter() - started

    reestimate_batch_norm(model, x_train, args.seed)
    model.eval()
    with torch.no_grad():
        correct = sum(int((model(x_test[i:i + 1000]).argmax(1) == y_test[i:i + 1000]).sum())
                      for i in range(0, len(x_test), 1000))
    checkpoint.unlink()
    checkpoint.parent.rmdir()
    return {"side": "native", "backend": "torch", "threads": torch.get_num_threads(), "fit_s": round(fit_s, 2),
            "s_per_step": round(fit_s / total_steps, 4), "steps": total_steps, "epochs_log": epochs,
            "test_accuracy": round(correct / len(x_test), 4)}


def through_dlkit(args) -> dict:
    """The same budget through dlkit's Python API; fit seconds from the run's metrics.json."""
    import dlkit

    threads = None
    if args.backend == "torch":
        import torch

        torch.set_num_threads(args.threads)
        threads = torch.get_num_threads()
    options = {"epochs": args.epochs, "seed": args.seed}
    if args.train_samples:
        options["train_samples"] = args.train_samples
    run = dlkit.train("cnn", backend=args.backend, out=str(common.OUT / "runs" / f"{NAME}-{args.backend}"),
                      echo=lambda *_: None, **options)
    metrics = run.metrics
    reestimated = (metrics.get("batchnorm_reestimated") or {}).get("seconds", 0.0)
    fit_s = metrics["train_time_s"] - reestimated
    steps = args.epochs * math.ceil(metrics["train_samples"] / BATCH)
    return {"side": "dlkit", "backend": args.backend, "threads": threads, "fit_s": round(fit_s, 2),
            "s_per_step": round(fit_s / steps, 4), "steps": steps, "train_time_s": metrics["train_time_s"],
            "batchnorm_reestimate_s": reestimated, "test_accuracy": round(metrics["test"]["accuracy"], 4),
            "run": str(run.path)}


def one_run(args, side: str, backend: str = "torch") -> dict:
    """``side`` in a fresh process of this script (its own Keras backend, nothing cached); returns its row."""
    cmd = [sys.executable, __file__, side, "--epochs", str(args.epochs), "--train-samples", str(args.train_samples),
           "--threads", str(args.threads), "--seed", str(args.seed), "--quiet"]
    if side == "dlkit":
        cmd += ["--backend", backend]
    env = {**os.environ, "KERAS_BACKEND": backend}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=common.OUT)
    if proc.returncode != 0:
        sys.exit(f"failed ({proc.returncode}): {' '.join(cmd)}\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def label(row: dict) -> str:
    return "native torch" if row["side"] == "native" else f"dlkit {row['backend']}"


def paired(args) -> None:
    backends = [b for b in args.backends.split(",") if b and b != "torch"] if args.backends else []
    sides = [("native", "torch"), ("dlkit", "torch")] + [("dlkit", b) for b in backends]
    rows = []
    for pair in range(args.pairs):
        for side, backend in sides:
            row = one_run(args, side, backend)
            row["pair"] = pair
            rows.append(row)
            print(f"pair {pair}: {label(row)} {row['fit_s']} s fit, test accuracy {row['test_accuracy']} "
                  f"(load {row['load_before']})", flush=True)

    def fits(side, backend):
        return [r["fit_s"] for r in rows if r["side"] == side and r["backend"] == backend]

    def ratios(num, den):
        return [round(a / b, 3) for a, b in zip(fits(*num), fits(*den))]

    summary = {"command": "python benchmarks/torch_twin.py " + " ".join(sys.argv[1:]), "commit": commit(),
               "side": "paired", "pairs": args.pairs, "epochs": args.epochs, "train_samples": args.train_samples,
               "threads": args.threads, "load_before": rows[0]["load_before"], "load_after": common.load_average(),
               "fit_s": {label({"side": s, "backend": b}): fits(s, b) for s, b in sides},
               "ratio_dlkit_torch_over_native": ratios(("dlkit", "torch"), ("native", "torch"))}
    summary["median_ratio_dlkit_torch_over_native"] = statistics.median(summary["ratio_dlkit_torch_over_native"])
    if {"tensorflow", "jax"} <= set(backends):
        summary["ratio_jax_over_tensorflow"] = ratios(("dlkit", "jax"), ("dlkit", "tensorflow"))
        summary["median_ratio_jax_over_tensorflow"] = statistics.median(summary["ratio_jax_over_tensorflow"])
    common.record(NAME, summary)

    print(f"\n{args.pairs} pair(s), {args.epochs} epoch(s), {args.train_samples or 60000} training images, "
          f"torch threads {args.threads}; load average {summary['load_before']} → {summary['load_after']}\n")
    print("| run | fit s per pair | median fit s | test accuracy |")
    print("| --- | --- | --- | --- |")
    for side, backend in sides:
        accuracies = [r["test_accuracy"] for r in rows if r["side"] == side and r["backend"] == backend]
        name = label({"side": side, "backend": backend})
        print(f"| {name} | {' / '.join(map(str, fits(side, backend)))} | {statistics.median(fits(side, backend))} "
              f"| {' / '.join(map(str, accuracies))} |")
    print(f"\nmedian ratio dlkit torch / native: **{summary['median_ratio_dlkit_torch_over_native']}** "
          f"(per pair {summary['ratio_dlkit_torch_over_native']}; target ≤ 1.10)")
    if "median_ratio_jax_over_tensorflow" in summary:
        print(f"median ratio dlkit jax / dlkit tensorflow: **{summary['median_ratio_jax_over_tensorflow']}** "
              f"(per pair {summary['ratio_jax_over_tensorflow']}; target ≤ 1.5)")


def steps(args) -> None:
    """Per-step seconds of the two sides in one process, interleaved, at each thread count; then a profile."""
    import numpy as np
    import torch

    from dlkit import backends, registry
    from dlkit.config import make_config
    from dlkit.training import load_prepared

    backends.activate("torch")  # what dlkit.train does first: Keras on PyTorch with dlkit.fast_kernels
    import keras

    entry = registry.get("cnn")
    plugin = entry.algorithm()
    cfg = make_config(entry.cls.config, {"epochs": 1}, entry.cls.datasets)
    data = load_prepared(entry, plugin, cfg)
    keras.utils.set_random_seed(args.seed)
    keras_model = plugin.build(cfg, data)                              # compiled as dlkit trains it
    x = data.x_train[:BATCH * args.steps]
    y = keras.utils.to_categorical(data.y_train[:BATCH * args.steps], data.num_classes)  # cnn's smoothed loss

    torch.manual_seed(args.seed)
    twin = twin_model()
    optimizer = torch.optim.Adam(twin.parameters(), lr=1e-3, eps=ADAM_EPSILON)
    images = torch.from_numpy(np.ascontiguousarray(np.moveaxis(x, -1, 1)))                  # NCHW
    labels = torch.from_numpy(data.y_train[:BATCH * args.steps].astype("int64"))

    def native_step(i):
        batch = slice(i * BATCH, (i + 1) * BATCH)
        twin_step(twin, optimizer, images[batch], labels[batch])

    def dlkit_step(i):
        batch = slice(i * BATCH, (i + 1) * BATCH)
        keras_model.train_on_batch(x[batch], y[batch])

    def timed(step) -> float:
        started = time.perf_counter()
        for i in range(args.steps):
            step(i)
        return (time.perf_counter() - started) / args.steps

    sides = {"native torch": native_step, "dlkit torch": dlkit_step}
    for threads in [int(t) for t in args.threads.split(",")]:
        torch.set_num_threads(threads)
        for step in sides.values():
            step(0), step(1)                                              # warm-up: first-call costs
        per_step = {name: [] for name in sides}
        before = common.load_average()
        for _ in range(args.rounds):
            for name, step in sides.items():
                per_step[name].append(timed(step))
        ratios = [d / n for d, n in zip(per_step["dlkit torch"], per_step["native torch"])]
        row = {"command": "python benchmarks/torch_twin.py " + " ".join(sys.argv[1:]), "commit": commit(),
               "side": "steps", "threads": threads, "rounds": args.rounds, "steps": args.steps,
               "s_per_step": {k: [round(v, 4) for v in vs] for k, vs in per_step.items()},
               "ratio_dlkit_torch_over_native": [round(r, 3) for r in ratios],
               "median_ratio": round(statistics.median(ratios), 3),
               "load_before": before, "load_after": common.load_average()}
        common.record(NAME, row)
        print(f"threads {threads}: s/step native {statistics.median(per_step['native torch']):.4f}, dlkit torch "
              f"{statistics.median(per_step['dlkit torch']):.4f}; ratio per round {row['ratio_dlkit_torch_over_native']}, "
              f"median **{row['median_ratio']}** (load {before} → {row['load_after']})", flush=True)
        if args.profile:
            from torch.profiler import ProfilerActivity, profile

            for name, step in sides.items():
                with profile(activities=[ProfilerActivity.CPU], record_shapes=args.by_shape) as prof:
                    for i in range(args.profile):
                        step(i)
                print(f"\n{name}, {threads} thread(s), {args.profile} steps:")
                print(prof.key_averages(group_by_input_shape=args.by_shape).table(sort_by="self_cpu_time_total",
                                                                                  row_limit=args.top))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    for name in ("native", "dlkit", "paired"):
        sub = commands.add_parser(name)
        sub.add_argument("--epochs", type=int, default=1)
        sub.add_argument("--train-samples", type=int, default=0, help="the first N training images (0 = all 60,000)")
        sub.add_argument("--threads", type=int, default=2, help="PyTorch intra-op threads, both sides")
        sub.add_argument("--seed", type=int, default=0)
        if name == "dlkit":
            sub.add_argument("--backend", default="torch")
        if name == "paired":
            sub.add_argument("--pairs", type=int, default=3)
            sub.add_argument("--backends", default="", help="also time dlkit on these backends (tensorflow,jax)")
        else:
            sub.add_argument("--quiet", action="store_true", help="print the row only (how paired reads it)")
    sub = commands.add_parser("steps")
    sub.add_argument("--threads", default="1,2", help="PyTorch intra-op thread counts to time, comma-separated")
    sub.add_argument("--rounds", type=int, default=5)
    sub.add_argument("--steps", type=int, default=20, help="training steps per side per round")
    sub.add_argument("--profile", type=int, default=0, help="then profile N steps of each side (0 = no profile)")
    sub.add_argument("--top", type=int, default=15, help="operators shown per profile")
    sub.add_argument("--by-shape", action="store_true", help="one profile row per operator and input shapes")
    sub.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if args.command == "steps":
        steps(args)
        return
    if args.command == "paired":
        paired(args)
        return
    before = common.load_average()
    row = native(args) if args.command == "native" else through_dlkit(args)
    row = {"command": f"python benchmarks/torch_twin.py {args.command} --epochs {args.epochs} --train-samples "
                      f"{args.train_samples} --threads {args.threads}"
                      + (f" --backend {args.backend}" if args.command == "dlkit" else ""),
           "commit": commit(), "epochs": args.epochs, "train_samples": args.train_samples or 60000,
           "load_before": before, "load_after": common.load_average(), **row}
    common.record(NAME, row)
    if not args.quiet:
        print(f"{label(row)}: {row['fit_s']} s fit ({row['s_per_step']} s/step over {row['steps']} steps), "
              f"test accuracy {row['test_accuracy']}, load average {row['load_before']} → {row['load_after']}")
    print(json.dumps(row))


if __name__ == "__main__":
    main()
