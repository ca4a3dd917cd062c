"""Checks of the diffusion plugin that need Keras on one backend, run as a script (a backend per process).

    KERAS_BACKEND=jax python tests/diffusion_check.py OUT

does, in one process: the schedules and q(x_t | x_0) as the model module computes them; one denoising loss and
one GradientStep update of a tiny U-Net whose weights NumPy drew (the same on every backend); two DDIM steps from
a fixed x_T with the ε the network predicted at each; a tiny training run on the 8×8 digits into OUT through
dlkit.train; generation with DDIM and with DDPM; a --steps beyond T refused; on PyTorch the same run interrupted
(SIGINT, as Ctrl-C) right after its first checkpoint and resumed with dlkit.resume; on TensorFlow `generate` on
an mlp run. Prints one JSON line of findings; tests/test_diffusion.py asserts on them.
"""
from __future__ import annotations

import json
import sys

#: A run of a few seconds on scikit-learn's digits: a U-Net of 8 and 16 channels, T = 1000 as by default.
TINY = {"data": "digits", "widths": (8, 16), "attention": False, "epochs": 2, "batch_size": 32,
        "train_samples": 256, "test_samples": 16, "preview_steps": 4, "eval_samples": 16, "eval_steps": 10,
        "warmup_steps": 2, "learning_rate": 3e-3, "guidance": 1.0, "prediction": "v"}
#: Interrupted right after its first checkpoint (epoch 1), then resumed to epoch 3; unconditional and predicting ε,
#: so every kind of network trains somewhere in the suite (TINY is conditional, the default, and predicts v).
RESUMED = {**TINY, "epochs": 3, "eval_steps": 2, "conditional": False, "prediction": "eps"}
#: Every batch the tiny runs sample is 16 images (previews, evaluation, generation): one compilation on JAX.


def tiny_unet_inputs():
    """A U-Net (8, 16) with attention on 8×8 images, its weights and a batch (x_t, t, ε), all from NumPy."""
    import numpy as np

    from dlkit.plugins.diffusion_model import unet

    model = unet((8, 8, 1), (8, 16), 1, True)
    rng = np.random.default_rng(3)
    weights = [rng.normal(0, 0.2, w.shape).astype("float32") for w in model.get_weights()]
    model.set_weights(weights)
    batch = (rng.standard_normal((6, 8, 8, 1)).astype("float32"), np.array([0, 10, 100, 500, 900, 999], "int32"),
             rng.standard_normal((6, 8, 8, 1)).astype("float32"))
    return model, batch


def pieces() -> dict:
    """Schedules, q_sample statistics, one update, and two DDIM steps, as plain numbers."""
    import keras
    import numpy as np

    from dlkit.plugins.diffusion import denoising_loss
    from dlkit.plugins.diffusion_model import (alpha_bars, betas, eps_from_v, predict, predict_eps, predicted_x0,
                                               prediction_of, q_sample, sample, training_target, unet)
    from dlkit.steps import GradientStep

    found = {"linear_betas": betas("linear", 1000).tolist(), "cosine_betas": betas("cosine", 1000).tolist(),
             "cosine_alpha_bars": alpha_bars("cosine", 1000).tolist()}
    rng = np.random.default_rng(0)
    x0 = np.full((4000, 8, 8, 1), 0.5, "float32")
    t = np.full(4000, 300)
    x_t = q_sample(x0, t, rng.standard_normal(x0.shape, dtype="float32"), alpha_bars("linear", 1000))
    found["q_sample"] = {"mean": float(x_t.mean()), "var": float(x_t.var())}

    model, batch = tiny_unet_inputs()
    step = GradientStep(denoising_loss(model), trainable=model, optimizer=keras.optimizers.Adam(1e-3))
    found["eps"] = np.asarray(keras.ops.convert_to_numpy(model.predict_on_batch(list(batch[:2])))).tolist()
    found["losses"] = [step(*batch)["loss"] for _ in range(3)]

    # two DDIM steps (T − 1 → 0 → x_0) from a fixed x_T, and the ε the network gave at each
    x_T = np.random.default_rng(1).standard_normal((3, 8, 8, 1)).astype("float32")
    out = [sample(model, x_T, "linear", 1000, steps=2).tolist() for _ in range(2)]
    eps1 = predict_eps(model, x_T, 999, 3)
    ab = alpha_bars("linear", 1000)
    x1 = np.sqrt(ab[0]) * np.clip((x_T - np.sqrt(1 - ab[999]) * eps1) / np.sqrt(ab[999]), -1, 1) \
        + np.sqrt(1 - ab[0]) * eps1  # only to ask the network for its second ε; the test redoes the formula
    eps2 = predict_eps(model, x1.astype("float32"), 0, 3)
    found["ddim"] = {"x_T": x_T.tolist(), "eps1": eps1.tolist(), "eps2": eps2.tolist(), "out": out[0],
                     "again": out[1]}

    # classifier-free guidance: the conditional ε, the unconditional one ("no label") and the guided mix
    conditional = unet((8, 8, 1), (8, 16), 1, False, num_classes=10)
    conditional.set_weights([rng.normal(0, 0.2, w.shape).astype("float32") for w in conditional.get_weights()])
    labels = np.array([0, 3, 9, 5, 5, 1], "int32")
    found["guidance"] = {name: predict_eps(conditional, batch[0], batch[1], 4, **options).tolist() for name, options in
                         (("labelled", {"labels": labels}), ("unlabelled", {}),
                          ("guided", {"labels": labels, "guidance": 2.0}))}

    # v-prediction: the same weights under the name "v"; its ε is √(1 − ᾱ) x_t + √ᾱ v; and a v (or ε) that hits
    # its training target gives back x_0 through the ε form the samplers use
    v_model = unet((8, 8, 1), (8, 16), 1, True, prediction="v")
    v_model.set_weights(model.get_weights())
    ab = alpha_bars("linear", 1000)
    x0 = np.clip(rng.normal(0, 0.5, batch[0].shape), -1, 1).astype("float32")
    x_t = q_sample(x0, batch[1], batch[2], ab)
    recovered = {p: predicted_x0(x_t, eps_from_v(target, x_t, ab[batch[1]]) if p == "v" else target,
                                 ab[batch[1]].reshape(-1, 1, 1, 1)).tolist()
                 for p in ("eps", "v") for target in [training_target(x0, batch[1], batch[2], ab, p)]}
    found["v"] = {"prediction": [prediction_of(model), prediction_of(v_model)], "x_t": batch[0].tolist(),
                  "t": batch[1].tolist(), "alpha_bars": ab[batch[1]].tolist(),
                  "raw": predict(v_model, batch[0], batch[1], 4).tolist(),
                  "raw_of_eps_network": predict(model, batch[0], batch[1], 4).tolist(),
                  "eps": predict_eps(v_model, batch[0], batch[1], 4, alpha_bars_=ab).tolist(),
                  "x0": x0.tolist(), "recovered": recovered}
    return found


def train(out: str, backend: str) -> dict:
    """A tiny run through dlkit.train, as `dlkit train diffusion` would make it."""
    import dlkit

    run = dlkit.train("diffusion", backend=backend, out=out, echo=lambda *_: None, **TINY)
    return {"path": str(run.path), "metrics": run.metrics, "history": (run.path / "history.csv").read_text(),
            "plots": sorted(p.name for p in run.plots_dir.iterdir())}


def generate(run_dir: str, out: str) -> dict:
    """DDIM and DDPM samples, one class asked for, and a --steps beyond T or a --label outside the classes refused."""
    from pathlib import Path

    import numpy as np

    from dlkit import training
    from dlkit.errors import DlkitError

    found = {}
    for name, options in (("ddim", {"samples": 16, "steps": 4, "seed": 2}),
                          ("ddpm", {"samples": 16, "sampler": "ddpm", "seed": 2}),
                          ("label", {"samples": 16, "steps": 4, "seed": 2, "label": 3, "guidance": 2.0})):
        made = training.generate(run_dir, out=f"{out}/{name}", echo=lambda *_: None, **options)
        saved = np.load(f"{out}/{name}/samples.npz")
        found[name] = {"summary": made, "files": sorted(p.name for p in Path(out, name).iterdir()),
                       "images": saved["images"].tolist(), "path_shape": list(saved["denoising_path"].shape),
                       "labels": saved["labels"].tolist() if "labels" in saved else None}
    for name, options in (("too_many_steps", {"steps": 1001}), ("label_outside", {"label": 10})):
        try:
            training.generate(run_dir, out=f"{out}/{name}", echo=lambda *_: None, **options)
            found[name] = None
        except DlkitError as exc:
            found[name] = str(exc)
        found[f"{name}_left"] = Path(out, name).exists()
    return found


def label_on_unconditional(run_dir: str, out: str) -> str | None:
    """`generate --label` on an unconditional run."""
    from dlkit import training
    from dlkit.errors import DlkitError

    try:
        training.generate(run_dir, out=out, echo=lambda *_: None, label=1)
    except DlkitError as exc:
        return str(exc)
    return None


def not_a_generator(out: str, backend: str) -> str | None:
    """`generate` on a classifier's run."""
    import dlkit
    from dlkit import training
    from dlkit.errors import DlkitError

    run = dlkit.train("mlp", backend=backend, out=out, echo=lambda *_: None, data="digits", epochs=1,
                      train_samples=64, test_samples=32)
    try:
        training.generate(str(run.path), out=f"{out}/samples", echo=lambda *_: None)
    except DlkitError as exc:
        return str(exc)
    return None


if __name__ == "__main__":
    from resume_check import interrupted_and_resumed  # this folder is first on sys.path
    import os
    from pathlib import Path

    import keras

    backend = os.environ["KERAS_BACKEND"]
    out = Path(sys.argv[1])
    trained = train(str(out / "train"), backend)
    report = {"backend": keras.backend.backend(), "pieces": pieces(), "train": trained,
              "generate": generate(trained["path"], str(out / "generated"))}
    # one backend each, to keep the suite short: resuming (on PyTorch, which compiles nothing) and a classifier's
    # run (on TensorFlow)
    if backend == "torch":
        report["resume"] = interrupted_and_resumed("diffusion", str(out / "resume"), backend, RESUMED, after=1)
        (resumed,) = Path(out, "resume", "diffusion").iterdir()
        report["label_on_unconditional"] = label_on_unconditional(str(resumed), str(out / "unconditional"))
    if backend == "tensorflow":
        report["not_a_generator"] = not_a_generator(str(out / "mlp"), backend)
    print(json.dumps(report), flush=True)
