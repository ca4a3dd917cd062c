"""Checks of dlkit.sample_quality that need Keras on one backend, run as a script (a backend per process).

    KERAS_BACKEND=jax KERAS_HOME=DIR python tests/sample_quality_check.py scores
    KERAS_BACKEND=jax KERAS_HOME=DIR python tests/sample_quality_check.py cache EMPTY_DIR

``scores``: the digits reference classifier (trained into DIR unless cached there: several of these
processes may start at once on an empty DIR) and its numbers on the held-out images, the test images,
the test images with growing noise and one class only, plus the outputs on a few images, and the refusals
of bad images. ``cache``: a second load does not retrain; a corrupt model.keras or a truncated
reference.json is retrained; then, with ``KERAS_HOME=EMPTY_DIR`` and ``DLKIT_OFFLINE=1``, MNIST's reference
refuses in one line. Prints one JSON line of findings; tests/test_sample_quality.py asserts on them.
"""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path

NOISE = (0.0, 0.05, 0.1, 0.2, 0.4)
ONE_CLASS = 3


def scores() -> dict:
    import numpy as np

    from dlkit import data
    from dlkit.errors import DlkitError
    from dlkit.sample_quality import real_data_ceiling, reference_classifier, sample_quality

    echoed: list[str] = []
    reference = reference_classifier("digits", echo=echoed.append)
    digits = data.load("digits")
    rng = np.random.default_rng(0)
    noise = rng.normal(size=digits.x_test.shape).astype("float32")  # one draw, scaled: the noise only grows
    noisy = {str(s): sample_quality(np.clip(digits.x_test + s * noise, 0, 1), "digits", echo=echoed.append)
             for s in NOISE}
    features, probabilities = reference.outputs(digits.x_test[:16])
    refused = {}
    for name, images in {"shape": np.zeros((4, 28, 28, 1), "float32"), "tanh": digits.x_test * 2 - 1,
                         "nan": np.full((4, 8, 8, 1), np.nan, "float32"), "one": digits.x_test[:1]}.items():
        try:
            sample_quality(images, "digits")
        except DlkitError as exc:
            refused[name] = str(exc)
    try:
        sample_quality(digits.x_test, "cifar10")
    except DlkitError as exc:
        refused["dataset"] = str(exc)
    return {"trained": reference.trained, "echoed": echoed, "info": reference.info,
            "ceiling": real_data_ceiling("digits", echo=echoed.append), "noisy": noisy,
            "one_class": sample_quality(digits.x_test[digits.y_test == ONE_CLASS], "digits"),
            "features": features.tolist(), "probabilities": probabilities.tolist(),
            "test_accuracy_here": float((reference.probabilities(digits.x_test).argmax(1) == digits.y_test).mean()),
            "refused": refused}


def cache(empty: str) -> dict:
    from dlkit import sample_quality
    from dlkit.errors import DataUnavailable

    def fresh(echoed: list[str]):
        sample_quality._LOADED.clear()  # as a new process would: only the files on disk count
        return sample_quality.reference_classifier("digits", echo=echoed.append)

    target = sample_quality.reference_dir("digits")
    model_file = target / "model.keras"
    before = model_file.stat().st_mtime_ns
    found = {"reused": {"trained": fresh([]).trained, "mtime_unchanged": model_file.stat().st_mtime_ns == before}}
    for name, damage in (("model", lambda: model_file.write_bytes(b"not a zip file")),
                         ("json", lambda: (target / "reference.json").write_text('{"dataset": "dig'))):
        damage()
        echoed: list[str] = []
        reference = fresh(echoed)
        found[name] = {"trained": reference.trained, "echoed": echoed,
                       "test_accuracy": reference.info["test_accuracy"],
                       "loads_again": not fresh([]).trained}
    found["left_over"] = sorted(p.name for p in target.parent.iterdir() if p.name.startswith(".partial"))
    os.environ.update(KERAS_HOME=empty, DLKIT_OFFLINE="1")
    try:
        sample_quality.reference_classifier("mnist")
    except DataUnavailable as exc:
        found["missing"] = str(exc)
    found["missing_left"] = sorted(str(p.relative_to(empty)) for p in Path(empty).rglob("*") if p.is_file())
    return found


if __name__ == "__main__":
    mode = sys.argv[1]
    result = scores() if mode == "scores" else cache(sys.argv[2])
    print(json.dumps(result))
