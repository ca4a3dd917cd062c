"""Checks of the gan plugin that need Keras on one backend, run as a script (a backend per process).

    KERAS_BACKEND=jax python tests/gan_check.py OUT

does, in one process: one discriminator and one generator GradientStep on tiny networks whose weights
come from NumPy (so the numbers can be compared across backends); a tiny conditional training run on
scikit-learn's 8×8 digits into OUT through dlkit.train; samples drawn from it with and without --label;
the same run interrupted (SIGINT, as Ctrl-C) right after its first checkpoint and resumed with
dlkit.resume; on TensorFlow also an unconditional run and a cnn run, and the generate requests that
must be refused in one line. Prints one JSON line of findings.
"""
from __future__ import annotations

import json
import sys

#: A run of a few seconds: 4-channel networks, 1,437 digits in batches of 128 (11 steps an epoch).
TINY = {"data": "digits", "epochs": 2, "batch_size": 128, "latent": 8, "width": 4, "eval_samples": 200,
        "bn_batches": 4}
#: Interrupted right after its first checkpoint (epoch 1), then resumed to epoch 2: TINY's run interrupted.
RESUMED = TINY
#: The step check's batch: 6 images 8×8, their labels, noise and fake labels.
STEP_BATCH, STEP_LATENT = 6, 4


def step_problem():
    """Weights for the tiny conditional networks' variables, and one batch, all from NumPy."""
    import numpy as np

    rng = np.random.default_rng(3)
    batch = (rng.random((STEP_BATCH, 8, 8, 1), dtype="float32"), np.arange(STEP_BATCH, dtype="int32") % 10,
             rng.standard_normal((STEP_BATCH, STEP_LATENT), dtype="float32"),
             (np.arange(STEP_BATCH, dtype="int32") + 3) % 10)
    return rng, batch


def steps() -> dict:
    """One D and one G update from the same weights and batch: losses, D(x), D(G(z)) and the new weights."""
    import keras
    import numpy as np

    from dlkit.plugins.gan import adversarial_losses
    from dlkit.plugins.gan_model import discriminator, generator
    from dlkit.steps import GradientStep

    rng, (real, labels, noise, fake_labels) = step_problem()
    g = generator((8, 8, 1), latent=STEP_LATENT, width=4, num_classes=10)
    d = discriminator((8, 8, 1), width=4, num_classes=10)
    for model in (g, d):  # every variable from NumPy, in a fixed order: the same numbers on every backend
        model.set_weights([rng.normal(0.0, 0.2, w.shape).astype("float32") if "variance" not in v.path
                           else np.ones(w.shape, "float32") for v, w in zip(model.weights, model.get_weights())])
    d_loss, g_loss = adversarial_losses(g, d, conditional=True)
    # plain SGD: the weights move by the gradients themselves (Adam's first step is lr·sign(g) for all but
    # the tiniest gradients, where float32 noise between backends could flip the sign)
    d_step = GradientStep(d_loss, trainable=d, optimizer=keras.optimizers.SGD(0.5), uses=g)
    g_step = GradientStep(g_loss, trainable=g, optimizer=keras.optimizers.SGD(0.5), uses=d)
    g_before = [keras.ops.convert_to_numpy(v) for v in g.trainable_weights]
    d_logs = d_step(real, labels, noise, fake_labels)  # G's batch-norm statistics move, its weights must not
    g_kept = all(np.array_equal(a, keras.ops.convert_to_numpy(v)) for a, v in zip(g_before, g.trainable_weights))
    d_after = [w.tolist() for w in d.get_weights()]
    g_logs = g_step(noise, fake_labels)
    return {"d": d_logs, "g": g_logs, "g_kept_by_d_step": g_kept, "d_after": d_after,
            "g_after": [w.tolist() for w in g.get_weights()]}


def train(out: str, backend: str, **options) -> dict:
    """A tiny run through dlkit.train, as `dlkit train gan` would make it."""
    import dlkit

    run = dlkit.train("gan", backend=backend, out=out, echo=lambda *_: None, **{**TINY, **options})
    return {"path": str(run.path), "metrics": run.metrics, "plots": sorted(p.name for p in run.plots_dir.iterdir()),
            "history": (run.path / "history.csv").read_text()}


def generated(run_dir: str, out: str) -> dict:
    """dlkit.training.generate with the defaults and with --label 3: the arrays it saved."""
    from pathlib import Path

    import numpy as np

    from dlkit.training import generate

    found = {}
    for name, options in (("all", {"samples": 12}), ("three", {"samples": 5, "label": 3, "seed": 1})):
        summary = generate(run_dir, out=str(Path(out) / name), echo=lambda *_: None, **options)
        folder = Path(summary["out"])
        with np.load(folder / "samples.npz") as arrays:
            images = arrays["images"]
            found[name] = {"files": sorted(p.name for p in folder.iterdir()), "shape": list(images.shape),
                           "range": [float(images.min()), float(images.max())],
                           "labels": arrays["labels"].tolist(), "summary": summary}
    return found


def refusals(out: str, backend: str, conditional_run: str) -> dict:
    """Bad generate requests on an unconditional gan run, the conditional one and a cnn run: each one line."""
    from pathlib import Path

    import dlkit
    from dlkit.errors import DlkitError
    from dlkit.training import generate

    unconditional = dlkit.train("gan", backend=backend, out=out, echo=lambda *_: None,
                                **{**TINY, "epochs": 1, "conditional": False, "eval_samples": 100})
    cnn = dlkit.train("cnn", backend=backend, out=out, echo=lambda *_: None, data="digits", epochs=1,
                      train_samples=64, test_samples=32)
    found = {}
    for name, run_dir, options in (("label_unconditional", unconditional.path, {"label": 3}),
                                   ("label_12", conditional_run, {"label": 12}),
                                   ("label_negative", conditional_run, {"label": -1}),
                                   ("samples_0", conditional_run, {"samples": 0}),
                                   ("cnn", cnn.path, {})):
        try:
            generate(str(run_dir), echo=lambda *_: None, **options)
            found[name] = None
        except DlkitError as exc:
            found[name] = str(exc)
    samples = [Path(unconditional.path, "samples"), Path(conditional_run, "samples"), Path(cnn.path, "samples")]
    left = sorted(str(p) for folder in samples if folder.is_dir() for p in folder.rglob("*"))
    return {"messages": found, "left_behind": left, "unconditional": str(unconditional.path),
            "unconditional_test": unconditional.metrics["test"], "unconditional_plots": sorted(
                p.name for p in unconditional.plots_dir.iterdir())}


if __name__ == "__main__":
    from resume_check import interrupted_and_resumed  # this folder is first on sys.path
    import os
    import time
    from pathlib import Path

    import keras

    backend = os.environ["KERAS_BACKEND"]
    out = Path(sys.argv[1])
    seconds, started = {}, time.perf_counter()

    def timed(name, value):
        global started
        seconds[name], started = round(time.perf_counter() - started, 1), time.perf_counter()
        return value

    report = {"backend": keras.backend.backend(), "steps": timed("steps", steps())}
    report["train"] = timed("train", train(str(out / "train"), backend))
    report["generated"] = timed("generated", generated(report["train"]["path"], str(out / "generated")))
    resumed = interrupted_and_resumed("gan", str(out / "resume"), backend, RESUMED, after=1)
    report["resume"] = timed("resume", resumed)
    if backend == "tensorflow":
        report["refusals"] = timed("refusals", refusals(str(out / "others"), backend, report["train"]["path"]))
    report["seconds"] = seconds
    print(json.dumps(report), flush=True)
