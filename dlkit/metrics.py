"""Test metrics computed the same way on every backend (NumPy on the model's predictions)."""
from __future__ import annotations

from typing import Any


def classification(model, data, batch_size: int = 256) -> dict[str, Any]:
    """Accuracy, mean log-loss and confusion matrix of a softmax classifier on the test set."""
    import numpy as np

    probs = np.asarray(model.predict(data.x_test, batch_size=batch_size, verbose=0), dtype="float64")
    y = np.asarray(data.y_test).astype("int64")
    predicted = probs.argmax(axis=-1)
    n = probs.shape[-1]
    confusion = np.zeros((n, n), dtype="int64")
    np.add.at(confusion, (y, predicted), 1)
    picked = np.clip(probs[np.arange(len(y)), y], 1e-12, 1.0)
    return {"accuracy": float((predicted == y).mean()), "loss": float(-np.log(picked).mean()),
            "test_samples": int(len(y)), "confusion_matrix": confusion.tolist()}
