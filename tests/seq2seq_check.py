"""Checks of the seq2seq plugin that need Keras, run as a script (one backend per process).

    KERAS_BACKEND=jax python tests/seq2seq_check.py OUT ATTENTION CELL [OTHER_RUN ...]

Trains a tiny run through the Python API (the path of ``dlkit train``), reloads its model.keras and
checks the decoder on it: attention weights sum to 1 over the input positions and are 0 on padding,
more padding changes nothing, and greedy decoding agrees with the teacher-forced model fed its own
output. Then predicts with every OTHER_RUN (trained on other backends) on this backend, writes a
heatmap with ``plot``, re-evaluates each, and collects the one-line refusals. Prints one JSON line of
findings last; tests/test_seq2seq.py asserts on them.
"""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import dlkit

#: A few seconds of training: enough for the loss to fall and the fixed characters ("19", "-") to be learnt.
TINY = {"train_size": 1024, "val_size": 64, "test_size": 128, "epochs": 3, "units": 16, "embedding_dim": 8,
        "batch_size": 32, "learning_rate": 1e-2}
INPUTS = ["the 3rd of march 1987", "3/3/87", "Tuesday, 3rd of March 1987", "3 févr. 2001!", "1987.03.03"]


def decoder_checks(run_path: Path) -> dict:
    import keras
    import numpy as np

    from dlkit.plugins.seq2seq import OUTPUT_CHARS, Seq2Seq, dates, encode_pairs
    from dlkit.plugins.seq2seq_model import greedy_decode

    model = keras.saving.load_model(run_path / "model.keras", custom_objects=Seq2Seq().custom_objects(),
                                    safe_mode=True)
    model.jit_compile = keras.backend.backend() != "torch"  # eager on PyTorch, as dlkit's own reload does
    examples = dates.examples("test", 48)
    (encoder, _), _ = encode_pairs(examples, dates.alphabet(), dates.longest_input())
    lengths = (encoder != 0).sum(axis=1)
    ids, probabilities, attention = greedy_decode(model, encoder)
    padded = np.pad(encoder, ((0, 0), (0, 12)))                       # 12 more padding positions
    ids2, probabilities2, attention2 = greedy_decode(model, padded)
    pad = np.arange(encoder.shape[1])[None, None, :] >= lengths[:, None, None]     # (N, 1, S)
    # teacher forcing on the greedy output: <start> and the first 9 chosen characters
    start = np.full((len(ids), 1), len(OUTPUT_CHARS), "int32")
    teacher = np.concatenate([start, ids[:, :-1]], axis=1).astype("int32")
    logits = np.asarray(model.predict([encoder, teacher], verbose=0), "float64")
    softmax = np.exp(logits - logits.max(-1, keepdims=True))
    softmax /= softmax.sum(-1, keepdims=True)
    return {
        "attention_sum_error": float(np.abs(attention.sum(-1) - 1).max()),
        "attention_on_padding": float(np.where(pad, attention, 0).max()),
        "attention_on_extra_padding": float(attention2[:, :, encoder.shape[1]:].max()),
        "extra_padding_changes": float(max(np.abs(probabilities2 - probabilities).max(),
                                           np.abs(attention2[:, :, :encoder.shape[1]] - attention).max())),
        "extra_padding_same_ids": bool((ids2 == ids).all()),
        "teacher_forced_argmax_equal": bool((logits.argmax(-1) == ids).all()),
        "teacher_forced_probability_gap": float(np.abs(softmax.max(-1) - probabilities).max()),
        "attention_max": float(attention.max()),
    }


def main(out: str, attention: str, cell: str, others: list[str]) -> dict:
    from dlkit import training
    from dlkit.errors import DlkitError

    backend = os.environ["KERAS_BACKEND"]
    run = dlkit.train("seq2seq", backend=backend, out=out, echo=lambda *a, **k: None, attention=attention,
                      cell=cell, **TINY)
    found = {"backend": backend, "run": str(run.path), "metrics": run.metrics,
             "plots": sorted(p.name for p in run.plots_dir.iterdir()),
             "checks": decoder_checks(run.path), "predicted": {}, "evaluated": {}, "refused": {}}
    for other in others:
        plot = Path(out) / f"predict-{Path(other).name}.png"
        found["predicted"][other] = {"results": training.predict(other, INPUTS, backend=backend, plot=str(plot)),
                                     "plot_bytes": plot.stat().st_size if plot.exists() else 0}
        found["evaluated"][other] = training.evaluate(other, backend=backend, echo=lambda *a, **k: None)
    refusals = {"unknown_only": (str(run.path), ["€€ ¿?"], {})}
    if attention == "none":
        refusals["plot_without_attention"] = (str(run.path), ["3/3/87"], {"plot": str(Path(out) / "none.png")})
    for name, (path, inputs, options) in refusals.items():
        try:
            training.predict(path, inputs, backend=backend, **options)
            found["refused"][name] = None
        except DlkitError as exc:
            found["refused"][name] = str(exc)
    return found


if __name__ == "__main__":
    print(json.dumps(main(sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4:])), flush=True)
