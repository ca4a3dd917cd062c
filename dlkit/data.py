"""Real datasets through their real loaders, cached where those loaders cache.

Image datasets come from ``keras.datasets`` (cache: ``$KERAS_HOME/datasets``, default ``~/.keras``);
``digits`` is scikit-learn's 8×8 digits, shipped inside the scikit-learn package, so it works
with no download at all. Offline with no cached file, :func:`load` raises one clear line that
names the missing file, where to put it and where to get it. ``DLKIT_OFFLINE=1`` skips the
download attempt altogether.
"""
from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

from dlkit.api import Dataset
from dlkit.errors import DataUnavailable, DlkitError, first_line, suggest

KERAS_BASE = "https://storage.googleapis.com/tensorflow/tf-keras-datasets/"


@dataclass(frozen=True)
class CachedFile:
    """A file a loader downloads: where it lands under the Keras cache, its origin and sha256."""

    relpath: str  # relative to $KERAS_HOME/datasets
    url: str
    sha256: str | None = None


@dataclass(frozen=True)
class ImageSource:
    loader: str  # attribute of keras.datasets, or "sklearn-digits"
    files: tuple[CachedFile, ...]
    class_names: tuple[str, ...]
    description: str


DIGITS = tuple(str(i) for i in range(10))
FASHION = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
           "Ankle boot")
CIFAR10 = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")

IMAGE_DATASETS: dict[str, ImageSource] = {
    "mnist": ImageSource("mnist", (CachedFile(
        "mnist.npz", KERAS_BASE + "mnist.npz",
        "731c5ac602752760c8e48fbffcf8c3b850d9dc2a2aedcf2cc48468fc17b673d1"),), DIGITS,
        "MNIST handwritten digits, 28×28 grey, 60k train / 10k test"),
    "fashion_mnist": ImageSource("fashion_mnist", tuple(
        CachedFile(f"fashion-mnist/{name}", KERAS_BASE + name, sha) for name, sha in (
            ("train-labels-idx1-ubyte.gz", "a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845"),
            ("train-images-idx3-ubyte.gz", "3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84"),
            ("t10k-labels-idx1-ubyte.gz", "67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5"),
            ("t10k-images-idx3-ubyte.gz", "346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073"))),
        FASHION, "Fashion-MNIST clothing, 28×28 grey, 60k train / 10k test"),
    "cifar10": ImageSource("cifar10", (CachedFile(
        "cifar-10-batches-py-target_archive", "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
        "6d958be074577803d12ecdefd02955f39262c83c16fe9348329d7fe0b5c001ce"),), CIFAR10,
        "CIFAR-10 objects, 32×32 colour, 50k train / 10k test"),
    "digits": ImageSource("sklearn-digits", (), DIGITS,
                          "scikit-learn's 8×8 digits (1,797 images, ships with scikit-learn; no download)"),
}


def keras_cache_dir() -> Path:
    """Where keras.datasets keeps its files (mirrors keras.utils.get_file, without importing Keras)."""
    base = Path(os.path.expanduser(os.environ.get("KERAS_HOME", "~/.keras")))
    if base.exists() and not os.access(base, os.W_OK):
        base = Path("/tmp/.keras")  # Keras falls back here when the home cache is read-only
    return base / "datasets"


def missing_files(name: str) -> list[CachedFile]:
    source = IMAGE_DATASETS[name]
    return [f for f in source.files if not (keras_cache_dir() / f.relpath).exists()]


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _unavailable(name: str, files: list[CachedFile], reason: str) -> DataUnavailable:
    cache = keras_cache_dir()
    wanted = "; ".join(f"{f.url} → {cache / f.relpath}" for f in files)
    return DataUnavailable(f"dataset '{name}' is not cached and could not be downloaded ({reason}). "
                           f"Download {wanted} (or run 'dlkit data add FILE…'), or set KERAS_HOME to a "
                           f"folder whose datasets/ holds it.")


def load(name: str) -> Dataset:
    """Load an image dataset by name: float32 images in [0, 1] of shape (N, H, W, C), int labels."""
    if name not in IMAGE_DATASETS:
        raise DlkitError(f"unknown dataset '{name}'; known: {', '.join(IMAGE_DATASETS)}.{suggest(name, IMAGE_DATASETS)}")
    source = IMAGE_DATASETS[name]
    if source.loader == "sklearn-digits":
        return _load_digits()
    import numpy as np
    from keras import datasets

    missing = missing_files(name)
    if missing and os.environ.get("DLKIT_OFFLINE") == "1":  # like HF_HUB_OFFLINE: never touch the network
        raise _unavailable(name, missing, "DLKIT_OFFLINE=1")
    try:
        (x_train, y_train), (x_test, y_test) = getattr(datasets, source.loader).load_data()
    except Exception as exc:  # offline, or a corrupt cache file Keras could not re-download
        reason = first_line(exc)
        if missing:
            raise _unavailable(name, missing, reason) from None
        raise DataUnavailable(f"dataset '{name}' could not be read from {keras_cache_dir()} ({reason}); the cached "
                              f"file may be corrupt: delete it and download it again.") from None
    x_train, x_test = (_as_images(x, np) for x in (x_train, x_test))
    return Dataset(name, x_train, y_train.reshape(-1).astype("int64"), x_test, y_test.reshape(-1).astype("int64"),
                   class_names=source.class_names, input_shape=tuple(x_train.shape[1:]))


def _as_images(x, np):
    x = x.astype("float32") / 255.0
    return x[..., None] if x.ndim == 3 else x  # grey images get a channel axis


def _load_digits() -> Dataset:
    import numpy as np
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    bunch = load_digits()
    images = (bunch.images / 16.0).astype("float32")[..., None]
    # a fixed stratified split, so every run and every backend sees the same test set
    x_train, x_test, y_train, y_test = train_test_split(images, bunch.target.astype("int64"), test_size=0.2,
                                                        random_state=0, stratify=bunch.target)
    return Dataset("digits", np.ascontiguousarray(x_train), y_train, np.ascontiguousarray(x_test), y_test,
                   class_names=DIGITS, input_shape=(8, 8, 1))


def add_files(paths: list[Path]) -> list[str]:
    """Copy downloaded files into the Keras cache where their loader looks, checking sha256."""
    import shutil

    known = {}
    for source in IMAGE_DATASETS.values():
        for f in source.files:
            known[Path(f.url).name] = f
    done = []
    for path in paths:
        entry = known.get(path.name)
        if entry is None:
            raise DlkitError(f"'{path.name}' is not a file dlkit knows; known: {', '.join(sorted(known))}")
        if entry.sha256 and sha256_of(path) != entry.sha256:
            raise DlkitError(f"'{path}' does not match the published sha256 of {path.name}; it is corrupt or "
                             f"a different file")
        target = keras_cache_dir() / entry.relpath
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(target.name + ".partial")
        shutil.copyfile(path, tmp)
        os.replace(tmp, target)  # atomic: a half-copied file never sits where the loader looks
        done.append(str(target))
    return done


def status() -> list[dict]:
    """For ``dlkit doctor`` / ``dlkit data``: each dataset and whether its files are cached."""
    rows = []
    for name, source in IMAGE_DATASETS.items():
        missing = missing_files(name) if source.files else []
        rows.append({"name": name, "present": not missing, "description": source.description,
                     "missing": [str(keras_cache_dir() / f.relpath) for f in missing]})
    return rows
