"""Checks of the gpt plugin that need Keras on one backend, run as a script (a backend per process).

    KERAS_BACKEND=jax python tests/gpt_check.py model         causality, and cached = uncached decoding
    KERAS_BACKEND=torch python tests/gpt_check.py refusals RUN bad generate options on a trained run

Prints one JSON line of findings; tests/test_gpt.py asserts on them.
"""
from __future__ import annotations

import json
import sys


def model_checks() -> dict:
    import keras
    import numpy as np

    from dlkit.plugins.gpt_model import Sampler, gpt, sample

    keras.utils.set_random_seed(0)
    model = gpt(65, 16, depth=2, heads=2, width=16)
    # larger weights than the N(0, 0.02) start, so attention is far from uniform and every position matters
    rng = np.random.default_rng(0)
    model.set_weights([rng.normal(0, 0.3, w.shape).astype("float32") for w in model.get_weights()])

    tokens = rng.integers(0, 65, size=(2, 16)).astype("int32")
    logits = keras.ops.convert_to_numpy(model(tokens))
    causality = []
    for t in (0, 6, 14):  # change token t+1: positions ≤ t must not move, position t+1 must
        changed = tokens.copy()
        changed[:, t + 1] = (changed[:, t + 1] + 1) % 65
        other = keras.ops.convert_to_numpy(model(changed))
        causality.append({"t": t, "before": float(np.abs(other[:, :t + 1] - logits[:, :t + 1]).max()),
                          "at": float(np.abs(other[:, t + 1] - logits[:, t + 1]).max())})

    # greedy decoding, past the 16-character window several times: the cache must change nothing
    prompt = [int(i) for i in tokens[0, :5]]
    cached, _ = sample(model, prompt, 40, top_k=1, cache=True)
    uncached, _ = sample(model, prompt, 40, top_k=1, cache=False)
    with_cache, without = Sampler(model, cache=True), Sampler(model, cache=False)
    worst = float(np.abs(with_cache.logits(prompt) - without.logits(prompt)).max())
    for token in cached[:30]:
        worst = max(worst, float(np.abs(with_cache.append(token) - without.append(token)).max()))
    drawn = [sample(model, prompt, 20, temperature=1.0, seed=s)[0] for s in (1, 1, 2)]
    return {"backend": keras.backend.backend(), "causality": causality, "cached": cached, "uncached": uncached,
            "logit_gap": worst, "seeded_repeat": drawn[0] == drawn[1], "seeds_differ": drawn[0] != drawn[2]}


def refusals(run_dir: str) -> dict:
    """Options that only the run's vocabulary can refuse: one DlkitError line each, and no samples folder."""
    import os
    from pathlib import Path

    from dlkit import training
    from dlkit.errors import DlkitError

    found = {}
    for name, options in {"prompt": {"prompt": "ROMEO é€"}, "top_k": {"top_k": 66}}.items():
        try:
            training.generate(run_dir, backend=os.environ.get("KERAS_BACKEND"), tokens=5, **options)
            found[name] = None
        except DlkitError as exc:
            found[name] = str(exc)
    found["samples_left"] = sorted(p.name for p in (Path(run_dir) / "samples").glob("*"))
    return found


if __name__ == "__main__":
    result = model_checks() if sys.argv[1] == "model" else refusals(sys.argv[2])
    print(json.dumps(result), flush=True)
