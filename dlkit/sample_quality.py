"""Sample quality of generated images, measured with a reference classifier dlkit trains itself.

What generative plugins (``gan``, ``diffusion``) report from ``evaluate``, so ``dlkit evaluate RUN``
recomputes it on any backend::

    from dlkit.sample_quality import sample_quality
    metrics.update(sample_quality(images, cfg.data))   # images: (N, H, W, 1) float32 in [0, 1]

* **classifier score** — the Inception Score (Salimans et al., "Improved Techniques for Training
  GANs", NeurIPS 2016), ``exp(E_x KL(p(y|x) ‖ p(y)))``, with the reference classifier below in place
  of Inception (which cannot be downloaded here and knows nothing of digits). It lies in [1, K]: K
  when every sample is classified confidently and the classes are equally used, 1 when all samples
  get the same class distribution. Computed once over the whole set, not as the mean of 10 splits:
  splits only add a spread, and the whole set gives the lower-variance estimate of the same quantity.
* **Fréchet distance** (Heusel et al., "GANs Trained by a Two Time-Scale Update Rule Converge to a
  Local Nash Equilibrium", NeurIPS 2017 — the FID formula) between Gaussians fitted to the
  classifier's penultimate features (128 of them) of the samples and of the dataset's test images:
  ``‖μ₁ − μ₂‖² + Tr(Σ₁ + Σ₂ − 2 (Σ₁Σ₂)^½)``. Like FID it is biased upwards at small N: compare
  numbers computed on the same number of samples (10,000 for MNIST and Fashion-MNIST).
* **class histogram** — how many samples the classifier puts in each class; ``classes_covered``
  counts the classes holding at least a tenth of their test-set share (1% of the samples for ten
  balanced classes). Counting any single sample would not see mode collapse: a 99%-accurate
  classifier scatters ~1% of a one-mode generator's samples over the other classes (about ten per
  class in 10,000), so a collapsed generator would "cover" every class. ``class_kl`` is
  ``KL(histogram ‖ test-set class frequencies)``: 0 for the test set's own balance, ``log 10`` ≈ 2.30
  when every sample falls in one of ten balanced classes.

:func:`real_data_ceiling` gives the same numbers for real images the classifier never trained on,
the ceiling to print beside a generator's numbers.

The reference classifier, one per dataset (``mnist``, ``fashion_mnist``, ``digits``), is trained by
a fixed recipe (:data:`RECIPE`): the same network for 28×28 and 8×8 images — two 3×3 "same"
convolutions with batch norm, each followed by 2×2 max pooling (28 → 14 → 7, 8 → 4 → 2), then a
128-unit dense layer whose ReLU output is the feature vector and a softmax. Adam with a cosine decay,
seed 0, a fixed number of epochs per dataset. It trains on the training images *minus the last
held-out slice* as large as the test set (MNIST and Fashion-MNIST: the first 50,000 of 60,000;
digits: the first 1,077 of 1,437), so the ceiling is measured on images it has not memorised.

It trains once per dataset per machine, on whatever backend asks first, and is cached beside the
Keras dataset cache in ``$KERAS_HOME/dlkit/reference/<dataset>-<RECIPE_VERSION>/``: ``model.keras``
(a .keras file loads on every backend, so every backend scores against the same weights),
``test_statistics.npz`` (mean and covariance of the test images' features, float64: the FD reference,
kept binary as it is 16k numbers) and ``reference.json`` (the recipe, the test accuracy, the backend
and library versions that trained it, the test set's class frequencies). It is written into a
temporary folder and renamed into place, under a file lock, so two processes asking at once train it
once and a reader never sees half a cache; an unreadable cache is trained again.
Changing the recipe means a new ``RECIPE_VERSION``, hence a new folder.

The ceiling (:func:`real_data_ceiling` on the whole held-out slice) with the classifiers as measured:

=============  =======  ==========  ================  ==========  ========  ===============
dataset        images   classifier  Fréchet distance  classes     class KL  reference test
                        score                         covered               accuracy
=============  =======  ==========  ================  ==========  ========  ===============
mnist          10,000   9.68        1.94              10          0.0008    98.87% (JAX)
fashion_mnist  10,000   7.82        0.37              10          0.0016    90.97% (JAX)
digits         360      9.74        2.88              10          0.0043    99.17% (TF)
=============  =======  ==========  ================  ==========  ========  ===============

Fashion-MNIST's score is lower because its classifier is less sure (shirts, T-shirts, pullovers and
coats look alike), not because its images are worse: compare a generator with the ceiling of its own
dataset. The three backends give the same numbers to about 1e-6 (relative) on the same images with the
same cached classifier; a classifier trained by another backend has other weights (the digits one trained
on JAX gives 9.87 and 4.59 above), so numbers are compared within one cache, as ``reference`` records.
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
import warnings
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dlkit import data as datasets
from dlkit.backends import running_backend
from dlkit.errors import DataUnavailable, DlkitError, first_line

RECIPE_VERSION = "v1"
SEED = 0
FEATURES = 128  # width of the penultimate layer: the FD's feature space
#: Epochs of the reference training per dataset. Measured test accuracy (JAX, seed 0): MNIST 98.87%,
#: Fashion-MNIST 90.97%, digits 99.17% (1,077 images: 34 steps an epoch, 12 s). On two CPU cores shared with
#: a load average of 13-18 MNIST took 20 min and Fashion-MNIST 50 min: once per machine.
EPOCHS = {"mnist": 3, "fashion_mnist": 6, "digits": 20}
BATCH = {"mnist": 128, "fashion_mnist": 128, "digits": 32}
LEARNING_RATE = 3e-3
RECIPE = ("conv3x3(32)-BN-ReLU-maxpool2, conv3x3(64)-BN-ReLU-maxpool2, dropout 0.3, dense 128-ReLU (features), "
          "dropout 0.3, dense softmax; Adam {lr} with cosine decay to 0, batch {batch}, {epochs} epochs, seed {seed}; "
          "trained on the training images [0, {train}), the last {held} held out")
#: A class is covered when it holds at least this fraction of its test-set share of the samples.
COVERED_SHARE = 0.1


def reference_dir(dataset: str) -> Path:
    """Where the reference classifier of ``dataset`` is cached: beside the Keras dataset cache."""
    return datasets.keras_cache_dir().parent / "dlkit" / "reference" / f"{dataset}-{RECIPE_VERSION}"


# -- the metrics, in NumPy ------------------------------------------------------------------------------------
def classifier_score(probabilities) -> float:
    """``exp(E_x KL(p(y|x) ‖ p(y)))`` over the whole set, ``p(y)`` the mean of the rows (Salimans et al. 2016)."""
    import numpy as np

    p = np.asarray(probabilities, dtype="float64")
    p_y = p.mean(axis=0, keepdims=True)
    # 0·log 0 = 0: a class a sample gives no probability adds nothing to its KL
    kl = np.where(p > 0, p * (np.log(np.maximum(p, 1e-300)) - np.log(np.maximum(p_y, 1e-300))), 0.0).sum(axis=1)
    return float(np.exp(kl.mean()))


def feature_statistics(features) -> tuple[Any, Any]:
    """Mean and covariance (float64) of (N, D) features: the Gaussian the Fréchet distance compares."""
    import numpy as np

    f = np.asarray(features, dtype="float64")
    if len(f) < 2:
        raise DlkitError(f"the Fréchet distance needs at least 2 samples to estimate a covariance, got {len(f)}")
    return f.mean(axis=0), np.cov(f, rowvar=False)


def frechet_distance(mu1, sigma1, mu2, sigma2, eps: float = 1e-6) -> float:
    """``‖μ₁ − μ₂‖² + Tr(Σ₁ + Σ₂ − 2 (Σ₁Σ₂)^½)`` (Heusel et al. 2017), with FID's usual numerical care.

    ``scipy.linalg.sqrtm`` of a product of two covariances may fail to give a finite result when they
    are singular (dead ReLU features, fewer samples than features): then ``eps`` is added to both
    diagonals, as in the reference FID code. Round-off leaves tiny imaginary parts in the root; they
    are dropped, and a large one (a sign of a real failure) is an error rather than a silent number.
    """
    import numpy as np
    from scipy import linalg

    mu1, mu2 = np.atleast_1d(mu1).astype("float64"), np.atleast_1d(mu2).astype("float64")
    sigma1, sigma2 = np.atleast_2d(sigma1).astype("float64"), np.atleast_2d(sigma2).astype("float64")
    diff = mu1 - mu2
    with warnings.catch_warnings():  # "matrix is singular" is expected (dead features) and handled here
        warnings.simplefilter("ignore", linalg.LinAlgWarning)
        covmean = linalg.sqrtm(sigma1 @ sigma2)
        if not np.isfinite(covmean).all():
            offset = np.eye(len(sigma1)) * eps
            covmean = linalg.sqrtm((sigma1 + offset) @ (sigma2 + offset))
    if np.iscomplexobj(covmean):
        if not np.allclose(np.diagonal(covmean).imag, 0, atol=1e-3):
            raise DlkitError(f"the Fréchet distance's matrix square root has an imaginary part of "
                             f"{np.abs(covmean.imag).max():.3g}: the covariances are numerically broken")
        covmean = covmean.real
    distance = diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2 * np.trace(covmean)
    return float(max(distance, 0.0))  # never below 0 except by round-off on identical sets


def class_statistics(predicted, reference_frequencies) -> dict[str, Any]:
    """The histogram of predicted classes, the classes covered and ``KL(histogram ‖ reference frequencies)``."""
    import numpy as np

    q = np.asarray(reference_frequencies, dtype="float64")
    histogram = np.bincount(np.asarray(predicted, dtype="int64"), minlength=len(q))
    share = histogram / max(1, histogram.sum())
    kl = np.where(share > 0, share * (np.log(np.maximum(share, 1e-300)) - np.log(q)), 0.0).sum()
    return {"classes_covered": int((share >= COVERED_SHARE * q).sum()), "class_kl": float(max(kl, 0.0)),
            "class_histogram": [int(c) for c in histogram]}


# -- the reference classifier ------------------------------------------------------------------------------
@dataclass
class ReferenceClassifier:
    """A trained reference classifier: ``model`` (images → class probabilities) and what it was trained with.

    ``info`` is ``reference.json`` plus ``path``; ``trained`` says whether this call trained it (else
    it came from the cache).
    """

    model: Any
    info: dict[str, Any]
    mu: Any
    sigma: Any
    trained: bool = False

    def __post_init__(self) -> None:
        import keras

        # one pass gives both outputs: the penultimate features and the probabilities
        self._both = keras.Model(self.model.input, [self.model.get_layer("features").output, self.model.output])

    def outputs(self, images, batch_size: int = 500, *, at_least: int = 1) -> tuple[Any, Any]:
        """``(features (N, 128), probabilities (N, K))`` as float64 NumPy arrays."""
        import numpy as np

        images = _checked_images(images, self.info, at_least)
        features, probabilities = [], []
        for start in range(0, len(images), batch_size):
            f, p = self._both(images[start:start + batch_size], training=False)
            features.append(_numpy(f))
            probabilities.append(_numpy(p))
        return np.concatenate(features).astype("float64"), np.concatenate(probabilities).astype("float64")

    def features(self, images, batch_size: int = 500):
        """(N, 128) penultimate features: the ReLU output of the dense layer before the softmax."""
        return self.outputs(images, batch_size)[0]

    def probabilities(self, images, batch_size: int = 500):
        """(N, K) class probabilities."""
        return self.outputs(images, batch_size)[1]


def _numpy(tensor):
    import keras

    return keras.ops.convert_to_numpy(tensor)


def _checked_images(images, info: dict, at_least: int = 1):
    """The images as float32 (N, H, W, C) NumPy; one line for a wrong shape, NaN, or a range far from [0, 1]."""
    import numpy as np

    images = np.asarray(_numpy(images) if not isinstance(images, np.ndarray) else images, dtype="float32")
    shape = tuple(info["input_shape"])
    if images.ndim != 4 or images.shape[1:] != shape:
        raise DlkitError(f"sample quality on {info['dataset']} takes images shaped (N, {', '.join(map(str, shape))}), "
                         f"got {images.shape}")
    if len(images) < at_least:
        why = "s (the Fréchet distance estimates a covariance)" if at_least > 1 else ""
        raise DlkitError(f"sample quality needs at least {at_least} image{why}, got {len(images)}")
    if not np.isfinite(images).all():
        raise DlkitError(f"sample quality: {int((~np.isfinite(images)).sum())} pixel values are NaN or infinite")
    low, high = float(images.min()), float(images.max())
    if low < -0.5 or high > 1.5:  # [-1, 1] (tanh) or [0, 255] images: a scaling forgotten, not an overshoot
        raise DlkitError(f"sample quality takes images in [0, 1]; these range over [{low:.3g}, {high:.3g}]")
    # small overshoots (a diffusion sample at 1.02) are clipped, as they are when the image is saved
    return np.clip(images, 0.0, 1.0)


def _known(dataset: str) -> None:
    if dataset not in EPOCHS:
        raise DlkitError(f"sample quality has reference classifiers for {', '.join(EPOCHS)}, not '{dataset}'")


def _split(data) -> tuple[int, int]:
    """(images the classifier trains on, images held out after them): the held-out slice is test-set sized."""
    held = len(data.x_test)
    return len(data.x_train) - held, held


def _recipe(dataset: str, train: int, held: int) -> str:
    return RECIPE.format(lr=LEARNING_RATE, batch=BATCH[dataset], epochs=EPOCHS[dataset], seed=SEED, train=train,
                         held=held)


def _build(input_shape: tuple[int, ...], num_classes: int):
    import keras
    from keras import layers

    inputs = keras.Input(shape=input_shape)                                       # (B, 28, 28, 1) or (B, 8, 8, 1)
    x = inputs
    for filters in (32, 64):  # batch norm makes a few epochs at a high Adam rate enough; its beta replaces the bias
        x = layers.Conv2D(filters, 3, padding="same", use_bias=False)(x)          # (B, 28, 28, 32) → (B, 14, 14, 64)
        x = layers.BatchNormalization()(x)
        x = layers.ReLU()(x)
        x = layers.MaxPooling2D(2)(x)                                             # (B, 14, 14, 32) → (B, 7, 7, 64)
    x = layers.Flatten()(x)                                                       # (B, 3136); digits (B, 256)
    x = layers.Dropout(0.3)(x)
    x = layers.Dense(FEATURES)(x)
    x = layers.ReLU(name="features")(x)                                           # (B, 128): the FD's features
    x = layers.Dropout(0.3)(x)
    outputs = layers.Dense(num_classes, activation="softmax")(x)                  # (B, K)
    return keras.Model(inputs, outputs, name=f"reference_classifier_{RECIPE_VERSION}")


def _load_data(dataset: str):
    try:
        return datasets.load(dataset)
    except DataUnavailable as exc:
        raise DataUnavailable(f"the {dataset} reference classifier of the sample-quality metrics has to be trained "
                              f"first, on its dataset: {first_line(exc)}") from None


def _train(dataset: str, data, target: Path, echo) -> ReferenceClassifier:
    """Train the reference classifier by the recipe and write its cache folder atomically."""
    import keras
    import numpy as np

    from dlkit.optimizers import adam_cosine
    from dlkit.training import library_versions

    train, held = _split(data)
    echo(f"training the {dataset} reference classifier for sample quality ({EPOCHS[dataset]} epochs on {train:,} "
         f"images, once; cached in {target}) …")
    started = time.perf_counter()
    keras.utils.set_random_seed(SEED)
    model = _build(data.input_shape, data.num_classes)
    model.compile(optimizer=adam_cosine(LEARNING_RATE, EPOCHS[dataset], train, BATCH[dataset]),
                  loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(data.x_train[:train], data.y_train[:train], batch_size=BATCH[dataset], epochs=EPOCHS[dataset],
              shuffle=True, verbose=0)
    seconds = time.perf_counter() - started
    backend = running_backend()
    info = {"dataset": dataset, "recipe_version": RECIPE_VERSION, "recipe": _recipe(dataset, train, held),
            "input_shape": list(data.input_shape), "classes": list(data.class_names),
            "train_images": [0, train], "held_out_images": [train, train + held],
            "backend": backend, "versions": library_versions(backend), "train_seconds": round(seconds, 1)}
    reference = ReferenceClassifier(model, info, None, None, trained=True)
    features, probabilities = reference.outputs(data.x_test)
    held_probabilities = reference.probabilities(data.x_train[train:])
    info["test_accuracy"] = float((probabilities.argmax(1) == data.y_test).mean())
    info["held_out_accuracy"] = float((held_probabilities.argmax(1) == data.y_train[train:]).mean())
    info["test_class_frequencies"] = (np.bincount(data.y_test, minlength=data.num_classes) / len(data.y_test)).tolist()
    info["test_images"] = len(data.x_test)
    reference.mu, reference.sigma = feature_statistics(features)

    target.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f"{datasets.PARTIAL}{target.name}-", dir=target.parent))
    try:
        new = work / "new"
        new.mkdir()
        model.save(new / "model.keras")
        np.savez(new / "test_statistics.npz", mu=reference.mu, sigma=reference.sigma)
        (new / "reference.json").write_text(json.dumps(info, indent=2) + "\n")  # last: its presence means complete
        if target.exists() or target.is_symlink():  # a corrupt copy: moved aside, then replaced
            os.replace(target, work / "old")
        os.replace(new, target)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    reference.info = {**info, "path": str(target)}
    echo(f"{dataset} reference classifier: test accuracy {info['test_accuracy']:.2%} ({seconds:.0f} s on {backend})")
    return reference


def _load(dataset: str, target: Path) -> ReferenceClassifier:
    """The cached reference classifier; raises whatever makes the cache unusable."""
    import keras
    import numpy as np

    info = json.loads((target / "reference.json").read_text())
    if info.get("recipe_version") != RECIPE_VERSION or info.get("dataset") != dataset:
        raise ValueError(f"reference.json is for {info.get('dataset')} {info.get('recipe_version')}")
    with np.load(target / "test_statistics.npz") as stats:
        mu, sigma = stats["mu"], stats["sigma"]
    if mu.shape != (FEATURES,) or sigma.shape != (FEATURES, FEATURES) or not np.isfinite(sigma).all():
        raise ValueError(f"test_statistics.npz holds a mean {mu.shape} and covariance {sigma.shape}")
    model = keras.saving.load_model(target / "model.keras", compile=False)
    return ReferenceClassifier(model, {**info, "path": str(target)}, mu, sigma)


@contextmanager
def _lock(target: Path):
    """Exclusive while one process trains: another asking for the same classifier waits, then loads it."""
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        import fcntl
    except ImportError:  # not POSIX: the atomic rename alone keeps the cache whole
        yield
        return
    with open(target.parent / f".{target.name}.lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


_LOADED: dict[tuple[str, str], ReferenceClassifier] = {}


def reference_classifier(dataset: str, echo=print) -> ReferenceClassifier:
    """The reference classifier of ``dataset`` ("mnist", "fashion_mnist" or "digits"): cached, else trained.

    Trained by the fixed recipe on first use on this machine (see the module docstring), then loaded
    from ``$KERAS_HOME/dlkit/reference/``; kept in memory for the rest of the process. A cache that
    cannot be read is trained again (``echo`` says why). Raises :class:`DataUnavailable` (one line
    naming the missing file) when it must be trained and its dataset is missing offline.
    """
    _known(dataset)
    target = reference_dir(dataset)
    key = (str(target), running_backend())
    if key in _LOADED and (target / "reference.json").exists():
        return _LOADED[key]
    try:
        reference = _load(dataset, target)
    except Exception:  # noqa: BLE001 - absent, partial or corrupt: all mean "train it"
        data = _load_data(dataset)  # first: a dataset missing offline is refused before anything is written
        with _lock(target):
            try:  # another process may have trained it while this one waited for the lock
                reference = _load(dataset, target)
            except Exception as exc:  # noqa: BLE001
                if target.exists():
                    echo(f"the cached {dataset} reference classifier in {target} is unusable ({first_line(exc)}); "
                         f"training it again")
                reference = _train(dataset, data, target, echo)
    _LOADED[key] = reference
    return reference


# -- the metrics on images -----------------------------------------------------------------------------------
def _scores(reference: ReferenceClassifier, images, batch_size: int) -> dict[str, Any]:
    features, probabilities = reference.outputs(images, batch_size, at_least=2)
    mu, sigma = feature_statistics(features)
    info = reference.info
    return {"classifier_score": classifier_score(probabilities),
            "frechet_distance": frechet_distance(mu, sigma, reference.mu, reference.sigma),
            **class_statistics(probabilities.argmax(axis=1), info["test_class_frequencies"]),
            "samples": int(len(features)),
            "reference": {**{key: info[key] for key in ("dataset", "recipe", "recipe_version", "test_accuracy",
                                                         "held_out_accuracy", "path")}, "trained_on": info["backend"]}}


def sample_quality(images, dataset: str, *, echo=print, batch_size: int = 500) -> dict[str, Any]:
    """Classifier score, Fréchet distance to the test images and class histogram of generated ``images``.

    ``images``: float32 in [0, 1], shaped like ``dataset``'s images, (N, H, W, 1), N ≥ 2 (10,000 for
    numbers comparable with :func:`real_data_ceiling`'s). Returns ``classifier_score``,
    ``frechet_distance``, ``classes_covered``, ``class_kl``, ``class_histogram`` (K counts), ``samples``
    and ``reference`` (the classifier's dataset, recipe and test accuracy); see the module docstring.
    """
    return _scores(reference_classifier(dataset, echo), images, batch_size)


def real_data_ceiling(dataset: str, samples: int = 10000, *, echo=print, batch_size: int = 500) -> dict[str, Any]:
    """:func:`sample_quality` of real images: the first ``samples`` of the held-out training slice.

    These are the last training images (MNIST and Fashion-MNIST: 50,000–59,999; digits: the last 360 of
    its 1,437), which the reference classifier did not train on, so its score here is not inflated by
    memorised images, and which are not the test images the Fréchet distance compares with. At most the
    slice's size is used (10,000; 360 for digits): ``samples`` in the result says how many.
    """
    reference = reference_classifier(dataset, echo)
    start, end = reference.info["held_out_images"]
    data = _load_data(dataset)
    return _scores(reference, data.x_train[start:min(end, start + samples)], batch_size)


__all__ = ["ReferenceClassifier", "class_statistics", "classifier_score", "feature_statistics", "frechet_distance",
           "real_data_ceiling", "reference_classifier", "reference_dir", "sample_quality"]
