"""Pictures every run gets: learning curves, and a confusion matrix for classifiers."""
from __future__ import annotations

from pathlib import Path


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # files only; no display needed
    import matplotlib.pyplot as plt

    return plt


def learning_curves(history: dict[str, list], path: Path, title: str, x: list | None = None,
                    unit: str = "epoch") -> Path | None:
    """One panel per metric, training and validation together, against epochs or steps (``x``)."""
    names = [k for k in history if not k.startswith("val_") and k not in ("learning_rate", "lr")]
    names = [k for k in names if any(_is_number(v) for v in history[k])]
    if not names:
        return None
    plt = _pyplot()
    from matplotlib.ticker import MaxNLocator

    fig, axes = plt.subplots(1, len(names), figsize=(4.5 * len(names), 3.5), squeeze=False)
    for ax, name in zip(axes[0], names):
        for key, label in ((name, "train"), ("val_" + name, "validation")):
            values = history.get(key) or []
            steps = x if x is not None and len(x) == len(values) else range(1, len(values) + 1)
            points = [(s, v) for s, v in zip(steps, values) if _is_number(v)]
            if points:
                ax.plot(*zip(*points), marker="o" if len(points) <= 50 else None, label=label)
        ax.set_xlabel(unit)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # epochs and steps are whole numbers
        ax.set_title(name)
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and value == value  # NaN is not plotted


def confusion_matrix(matrix: list[list[int]], class_names: tuple[str, ...], path: Path, title: str) -> Path:
    import numpy as np

    plt = _pyplot()
    m = np.asarray(matrix)
    fig, ax = plt.subplots(figsize=(6.5, 5.5))
    image = ax.imshow(m, cmap="Blues")
    ticks = range(len(m))
    labels = list(class_names) if len(class_names) == len(m) else [str(i) for i in ticks]
    ax.set_xticks(ticks, labels, rotation=45, ha="right")
    ax.set_yticks(ticks, labels)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    threshold = m.max() / 2 if m.size else 0
    for i in ticks:
        for j in ticks:
            ax.text(j, i, int(m[i, j]), ha="center", va="center", fontsize=7,
                    color="white" if m[i, j] > threshold else "black")
    fig.colorbar(image, ax=ax)
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def image_grid(images, path: Path, columns: int | None = None, scale: int = 2) -> Path:
    """Tile images (N, H, W, C) with values in [0, 1] into one PNG, row by row, 2 px gaps.

    ``columns`` defaults to a square-ish grid; ``scale`` enlarges each pixel (28×28 digits are small
    on a screen). Written pixel for pixel (no figure, no axes), so the file is the samples themselves.
    """
    import numpy as np

    plt = _pyplot()
    images = np.clip(np.asarray(images, dtype="float32"), 0.0, 1.0)
    if images.ndim != 4 or len(images) == 0:
        raise ValueError(f"image_grid needs images shaped (N, H, W, C) with N > 0, got {images.shape}")
    n, h, w, c = images.shape
    columns = columns or int(np.ceil(np.sqrt(n)))
    rows = int(np.ceil(n / columns))
    gap = 2
    canvas = np.ones((rows * (h + gap) - gap, columns * (w + gap) - gap, c), dtype="float32")
    for i, image in enumerate(images):
        r, k = divmod(i, columns)
        canvas[r * (h + gap):r * (h + gap) + h, k * (w + gap):k * (w + gap) + w] = image
    canvas = canvas.repeat(scale, axis=0).repeat(scale, axis=1)
    if c == 1:
        plt.imsave(path, canvas[..., 0], cmap="gray", vmin=0.0, vmax=1.0)
    else:
        plt.imsave(path, canvas)
    return path
