"""Datasets: an open registry of the files each one needs, the real loaders, and the cache they share.

Every dataset is a :class:`DataSource`: a name, the files it needs (each a :class:`CachedFile`: where
it lives in the cache, its upstream URL, sha256 and size) and a description. dlkit registers the ones below;
a plugin module adds its own with :func:`register` at import time (this module imports only the
standard library and ``dlkit.api``, so a plugin may import it at top level), and then ``dlkit data
list``, ``dlkit data add`` and ``dlkit doctor`` cover it like the built-ins.

The cache is the one Keras uses, ``$KERAS_HOME/datasets`` (default ``~/.keras/datasets``), where
``keras.utils.get_file`` and ``keras.datasets`` put their files:

====================  ==================================================================================
dataset               files under ``$KERAS_HOME/datasets``
====================  ==================================================================================
mnist                 ``mnist.npz``
fashion_mnist         ``fashion-mnist/{train,t10k}-{images-idx3,labels-idx1}-ubyte.gz``
cifar10               ``cifar-10-batches-py-target_archive`` (``keras.datasets`` unpacks it on load)
digits                none: scikit-learn's 8×8 digits ship inside scikit-learn
imdb_reviews          ``aclImdb/{train,test}/{pos,neg}/<id>_<rating>.txt``, unpacked from
                      ``aclImdb_v1.tar.gz`` or its ``aclImdb_train_test.tar.gz`` repack (upstream's
                      ``train/unsup`` is left out, so both give the same tree)
tinyshakespeare       ``tinyshakespeare/input.txt``
cora, citeseer,       ``planetoid/ind.<name>.{x,y,tx,ty,allx,ally,graph,test.index}`` (Python 2 pickles:
pubmed                read them with ``pickle.load(f, encoding="latin1")``)
====================  ==================================================================================

Image datasets load as arrays with :func:`load`; a plugin gets a local path to any dataset's files
with :func:`fetch`, which downloads missing files through ``keras.utils.get_file`` unless
``DLKIT_OFFLINE=1``. Offline with a file missing, both raise one line that names the file, where it
goes and where to get it.

Archives are unpacked once, when they enter the cache (``dlkit data add`` or the download in
:func:`fetch`), not by the loaders that read them: loaders just read folders, a bad archive is
reported by the command that brought it, and the archive itself is not kept (only the unpacked
tree is read). Unpacking goes into a temporary folder beside the target, refuses members with
absolute paths, ``..``, links or devices, and is renamed into place only when complete.

Checksums: a file's sha256 is checked when it enters the cache (``data add``, download). After
that, :func:`fetch` compares the size with the published size (a truncated file costs no read) and
re-hashes a file only when its size or modification time differ from those recorded in the
``.<file>.sha256-ok`` marker beside it at its last successful check. A file copied into the cache
by hand is thus hashed once, a later change is still caught, and a normal load costs one ``stat``.
"""
from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from dlkit.api import Dataset
from dlkit.errors import DataUnavailable, DlkitError, first_line, suggest

KERAS_BASE = "https://storage.googleapis.com/tensorflow/tf-keras-datasets/"
PLANETOID_BASE = "https://github.com/kimiyoung/planetoid/raw/master/data/"
PARTIAL = ".partial-"  # prefix of a file or folder still being written; never where a loader looks


@dataclass(frozen=True)
class Accepted:
    """A file ``dlkit data add`` takes for a :class:`CachedFile`: its name, sha256 and size in bytes."""

    name: str
    sha256: str | None = None
    size: int | None = None


@dataclass(frozen=True)
class CachedFile:
    """One file a dataset needs: where it lives in the cache, where to get it, how to check it.

    ``relpath`` is relative to ``$KERAS_HOME/datasets``. ``data add`` recognises the file by the
    name at the end of ``url`` (or a name in ``also``) and checks it against the matching sha256.
    With ``unpack=True`` the file is a tar archive whose top folder becomes ``relpath`` (its last
    part is that folder's name), members under ``skip`` (paths inside that folder) are left out,
    and the data counts as present when every path in ``needs`` exists inside the folder.
    """

    relpath: str
    url: str
    sha256: str | None = None
    size: int | None = None
    also: tuple[Accepted, ...] = ()  # other packagings of the same data (mirrors, repacks)
    unpack: bool = False
    skip: tuple[str, ...] = ()
    needs: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        parts = PurePosixPath(self.relpath).parts
        if not parts or PurePosixPath(self.relpath).is_absolute() or ".." in parts or "\\" in self.relpath:
            raise DlkitError(f"dataset file path '{self.relpath}' must be relative to the cache, without '..'")
        if not self.url:
            raise DlkitError(f"dataset file '{self.relpath}' needs the url it is downloaded from")

    @property
    def name(self) -> str:
        """The upstream file name, which ``dlkit data add`` recognises."""
        return self.url.rstrip("/").rsplit("/", 1)[-1]

    @property
    def accepted(self) -> tuple[Accepted, ...]:
        return (Accepted(self.name, self.sha256, self.size), *self.also)


@dataclass(frozen=True)
class DataSource:
    """A dataset: its name, the files it needs, one line of description.

    ``kind`` is free text shown by ``dlkit data list`` ("image", "text", "graph", …). ``loader`` is
    set for the image datasets :func:`load` returns as arrays (a ``keras.datasets`` module name, or
    ``"sklearn-digits"``); other datasets are read by their plugin from :func:`fetch`'s path.
    """

    name: str
    files: tuple[CachedFile, ...]
    description: str
    kind: str = "other"
    loader: str = ""
    class_names: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "files", tuple(self.files))
        object.__setattr__(self, "class_names", tuple(self.class_names))
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", self.name or ""):
            raise DlkitError(f"dataset name {self.name!r} must be letters, digits, '_', '.' or '-'")
        relpaths = [f.relpath for f in self.files]
        if len(set(relpaths)) != len(relpaths):
            raise DlkitError(f"dataset '{self.name}' lists the same file path twice")


_SOURCES: dict[str, DataSource] = {}


def register(source: DataSource, *, replace: bool = False) -> DataSource:
    """Make ``source`` known to ``load``/``fetch``/``data list``/``data add``; returns it.

    Registering an equal source again is a no-op (a module imported twice); another source under a
    taken name is an error unless ``replace=True``.
    """
    if not isinstance(source, DataSource):
        raise DlkitError(f"register() takes a dlkit.data.DataSource, not {type(source).__name__}")
    old = _SOURCES.get(source.name)
    if old is not None and old != source and not replace:
        raise DlkitError(f"dataset '{source.name}' is already registered ({old.description}); "
                         f"choose another name or pass replace=True")
    _SOURCES[source.name] = source
    return source


def sources() -> dict[str, DataSource]:
    """Every registered dataset, in registration order (plugins' sources once their modules are imported)."""
    return dict(_SOURCES)


def get(name: str) -> DataSource:
    """The registered dataset ``name``, or one line listing the known ones."""
    if name not in _SOURCES:
        _discover_plugins()  # a plugin module may register it on import
    if name not in _SOURCES:
        raise DlkitError(f"unknown dataset '{name}'; known: {', '.join(_SOURCES)}.{suggest(name, _SOURCES)}")
    return _SOURCES[name]


def _discover_plugins() -> None:
    """Import the plugin modules (through the algorithm registry) so the sources they register are known."""
    from dlkit import registry

    registry.discover()


class _ImageView(Mapping):
    """``IMAGE_DATASETS``: the registered datasets :func:`load` returns as image arrays (a live view)."""

    def __getitem__(self, name: str) -> DataSource:
        source = _SOURCES[name]
        if not source.loader:
            raise KeyError(name)
        return source

    def __iter__(self) -> Iterator[str]:
        return (name for name, source in _SOURCES.items() if source.loader)

    def __len__(self) -> int:
        return sum(1 for _ in self)


IMAGE_DATASETS: Mapping[str, DataSource] = _ImageView()

# -- the built-in datasets --------------------------------------------------------------------------------
DIGITS = tuple(str(i) for i in range(10))
FASHION = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
           "Ankle boot")
CIFAR10 = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")

register(DataSource("mnist", (CachedFile(
    "mnist.npz", KERAS_BASE + "mnist.npz",
    "731c5ac602752760c8e48fbffcf8c3b850d9dc2a2aedcf2cc48468fc17b673d1", 11490434),),
    "MNIST handwritten digits, 28×28 grey, 60k train / 10k test", "image", "mnist", DIGITS))
register(DataSource("fashion_mnist", tuple(
    CachedFile(f"fashion-mnist/{name}", KERAS_BASE + name, sha, size) for name, sha, size in (
        ("train-labels-idx1-ubyte.gz", "a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845", 29515),
        ("train-images-idx3-ubyte.gz", "3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84", 26421880),
        ("t10k-labels-idx1-ubyte.gz", "67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5", 5148),
        ("t10k-images-idx3-ubyte.gz", "346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073", 4422102))),
    "Fashion-MNIST clothing, 28×28 grey, 60k train / 10k test", "image", "fashion_mnist", FASHION))
register(DataSource("cifar10", (CachedFile(
    "cifar-10-batches-py-target_archive", "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
    "6d958be074577803d12ecdefd02955f39262c83c16fe9348329d7fe0b5c001ce"),),
    "CIFAR-10 objects, 32×32 colour, 50k train / 10k test", "image", "cifar10", CIFAR10))
register(DataSource("digits", (), "scikit-learn's 8×8 digits (1,797 images, ships with scikit-learn; no download)",
                    "image", "sklearn-digits", DIGITS))
register(DataSource("imdb_reviews", (CachedFile(
    "aclImdb", "https://ai.stanford.edu/~amaas/data/sentiment/aclImdb_v1.tar.gz",
    "c40f74a18d3b61f90feba1e17730e0d38e8b97c05fde7008942e91923d1658fe", 84125825,
    also=(Accepted("aclImdb_train_test.tar.gz",
                   "8071fe7cc17d21b19a3c9718ed68ffc8bb6c7490959bbe8c8994e5217ea99046", 28379859),),
    unpack=True, skip=("train/unsup",), needs=("train/pos", "train/neg", "test/pos", "test/neg")),),
    "Large Movie Review Dataset (Maas et al. 2011): raw IMDB reviews, 25k train / 25k test, pos/neg",
    "text"))
register(DataSource("tinyshakespeare", (CachedFile(
    "tinyshakespeare/input.txt",
    "https://raw.githubusercontent.com/karpathy/char-rnn/master/data/tinyshakespeare/input.txt",
    "86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed", 1115394),),
    "Tiny Shakespeare (char-rnn): 1.1 MB of plain text for character-level language models", "text"))

_PLANETOID = {  # (description, {extension: (sha256, size)})
    "cora": ("Cora citation graph, Planetoid split: 2,708 papers, 1,433 word features, 7 classes", {
        "x": ("23cfa55d91c6f624233f5eb7b6e3f141f1bd2b2ae39608a63cf5d084bb27baab", 22119),
        "y": ("94465c14eb53e04ca262198dcbb2521ee8af60fb3f3d546cd6ca24a511b0e7d1", 4054),
        "tx": ("b9afbaa4a400df991f6f02ef677e1e44da55ffc04801fd02f9e673987829226a", 148025),
        "ty": ("41f5ac76596a1699cc33f53084a2419e92961c42bb75f36fc38e616d348532ad", 28135),
        "allx": ("9419ba2f26f5c35243db64aba110e0f35a04851609e0dc5433450676ca6b8543", 257305),
        "ally": ("2b998f5cc7fedc86e7f97ca2498f47a1ffc1462c29e2d578b23bf3f62b6e7d71", 47959),
        "graph": ("58f13302f39dde8852dad6fe6d15b89b077b6d7f837626bce671ef80344b383d", 59847),
        "test.index": ("297ce89af2b51a6a194181c7dbe1796c6a1cf9cd9349a88383b1b1e227867875", 5000)}),
    "citeseer": ("CiteSeer citation graph, Planetoid split: 3,327 papers, 3,703 word features, 6 classes", {
        "x": ("d20de19150741e555de0ed037195630fc194114ebc7fd72ced62810148aa22f6", 31087),
        "y": ("8ba87e515d8e3ee3cf52f6d2c5b86aa73f11ecad825a808455209ec26cd54924", 3014),
        "tx": ("539a8906a2da97628d212f2fdd668c109a8b3f0d36574b59e5d3fd5b5303da21", 260321),
        "ty": ("55e5bd1ba1e733a04598753ad1a8d57957f4b8f89e74519f41f4f4938767e4ce", 24135),
        "allx": ("2ac30345d95c9ec933a817ee0bdd6a5f077f8c184a20e696910192d534414668", 595021),
        "ally": ("f704b2d986dde6c2669934de1f3ae5696a6cf9455c0f6b2646a2d135ea0a1c95", 55623),
        "graph": ("d79a4ef9d3e7169aee8946145f6b7306e35bc79bffad26346cfb94e10e9912a7", 61987),
        "test.index": ("2af990671580b6b2df5d158d1038f8292e30c9cd821b5453f399659b25b723d4", 5000)}),
    "pubmed": ("PubMed diabetes citation graph, Planetoid split: 19,717 papers, 500 TF-IDF features, 3 classes", {
        "x": ("fbe9cb5c47200d1b7769a26e579be3b7130b556831f9d850e77c4c74f2599b33", 23172),
        "y": ("e6c807633307a07ed659249006536a147c7999c797f11a2560752990181b41b3", 854),
        "tx": ("4eb5f5d0f30f26497eb0ac6ac9719d09c67e284f1ed0385c93f3ef27a671da3d", 405505),
        "ty": ("ee2e0d4819d9fbcc403689c3bf2e49face401b605932f093bc58ab6461130fdd", 12135),
        "allx": ("508e538e2abdccdd54c4d3e9f49d638b4af7107d85845f66ddea5a5152658b7e", 7578385),
        "ally": ("0c37bbe3b5014ec365e9d393cf4791925e5ed94fb194305d74f064a8d7b50f0e", 224739),
        "graph": ("5b89f0036ca22909471f1e6558eb42fa06e0c730a577bde5b058b40638f81dc9", 471808),
        "test.index": ("b101d421688bbaecbd82e8a18f1e282378d6830f3a37666f28ebc47f844341b5", 6000)}),
}
for _name, (_description, _files) in _PLANETOID.items():
    register(DataSource(_name, tuple(
        CachedFile(f"planetoid/ind.{_name}.{ext}", f"{PLANETOID_BASE}ind.{_name}.{ext}", sha, size)
        for ext, (sha, size) in _files.items()), _description, "graph"))
del _name, _description, _files


# -- the cache ----------------------------------------------------------------------------------------------
def keras_cache_dir() -> Path:
    """Where keras.datasets keeps its files (mirrors keras.utils.get_file, without importing Keras)."""
    base = Path(os.path.expanduser(os.environ.get("KERAS_HOME", "~/.keras")))
    if base.exists() and not os.access(base, os.W_OK):
        base = Path("/tmp/.keras")  # Keras falls back here when the home cache is read-only
    return base / "datasets"


def _is_present(f: CachedFile, path: Path) -> bool:
    if f.unpack:
        return path.is_dir() and all((path / need).exists() for need in f.needs)
    return path.is_file()


def missing_files(name: str) -> list[CachedFile]:
    """The files of dataset ``name`` not in the cache (existence only; :func:`fetch` also checks them)."""
    cache = keras_cache_dir()
    return [f for f in get(name).files if not _is_present(f, cache / f.relpath)]


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _marker(path: Path) -> Path:
    return path.with_name(f".{path.name}.sha256-ok")


def _record_ok(path: Path, digest: str) -> None:
    """Note that ``path`` had ``digest`` at its current size and mtime (best effort: the cache may be read-only)."""
    try:
        st = path.stat()
        marker = _marker(path)
        tmp = marker.with_name(PARTIAL + marker.name)
        tmp.write_text(f"{digest} {st.st_size} {st.st_mtime_ns}\n")
        os.replace(tmp, marker)
    except OSError:
        pass


def _problem(f: CachedFile, path: Path) -> str | None:
    """Why a cached file cannot be used (truncated, checksum mismatch), or None; see the module docstring."""
    if f.unpack:
        return None  # a tree is checked as an archive, before it is unpacked
    st = path.stat()
    sizes = {a.size for a in f.accepted if a.size is not None}
    fix = f"delete it and run 'dlkit data add {f.name}' with a good copy (or let dlkit download it again)"
    if sizes and st.st_size not in sizes:
        return (f"{path} is {st.st_size} bytes, not the published {' or '.join(map(str, sorted(sizes)))}: "
                f"truncated or a different file; {fix}")
    hashes = {a.sha256 for a in f.accepted if a.sha256}
    if not hashes:
        return None
    try:
        digest, size, mtime = _marker(path).read_text().split()
        if digest in hashes and (int(size), int(mtime)) == (st.st_size, st.st_mtime_ns):
            return None
    except (OSError, ValueError):
        pass
    digest = sha256_of(path)
    if digest not in hashes:
        return f"{path} does not match the published sha256 of {f.name} (corrupt or a different file); {fix}"
    _record_ok(path, digest)
    return None


def _where(files: list[CachedFile], cache: Path) -> str:
    """'URL → path' for each file, or 'a, b from URL_DIR/ into DIR/' when they share both folders."""
    url_dirs = {f.url.rsplit("/", 1)[0] for f in files}
    dirs = {(cache / f.relpath).parent for f in files}
    if (len(files) > 1 and len(url_dirs) == len(dirs) == 1
            and all(not f.unpack and Path(f.relpath).name == f.name for f in files)):
        return f"{', '.join(f.name for f in files)} from {url_dirs.pop()}/ into {dirs.pop()}/"
    return "; ".join(f"{f.url} → {cache / f.relpath}" + ("/ (unpacked)" if f.unpack else "") for f in files)


def _unavailable(name: str, files: list[CachedFile], reason: str) -> DataUnavailable:
    return DataUnavailable(f"dataset '{name}' is not cached and could not be downloaded ({reason}). "
                           f"Download {_where(files, keras_cache_dir())} (or run 'dlkit data add FILE…'), or set "
                           f"KERAS_HOME to a folder whose datasets/ holds it.")


def _offline() -> bool:
    return os.environ.get("DLKIT_OFFLINE") == "1"  # like HF_HUB_OFFLINE: never touch the network


# -- getting files: fetch (plugins), load (image arrays) --------------------------------------------------------
def fetch(name: str, file: str | None = None) -> Path:
    """A local path to dataset ``name``'s files, downloading what is missing unless ``DLKIT_OFFLINE=1``.

    Without ``file``: every file of the dataset, and the folder that holds them (for an unpacked
    archive, the unpacked folder: ``fetch("imdb_reviews") / "train" / "pos"``; for Tiny Shakespeare,
    ``fetch("tinyshakespeare") / "input.txt"``). With ``file`` (a file name such as ``"ind.cora.x"``):
    that file only, and its path. Cached files are checked (see the module docstring); downloads go
    through ``keras.utils.get_file`` with the published sha256. Raises :class:`DataUnavailable` with
    one line when a file is missing and cannot be downloaded, or is corrupt.
    """
    source = get(name)
    if not source.files:
        raise DlkitError(f"dataset '{name}' has no files to fetch: {source.description}")
    files = source.files if file is None else (_file_named(source, file),)
    cache = keras_cache_dir()
    missing = [f for f in files if not _is_present(f, cache / f.relpath)]
    for f in files:
        problem = None if f in missing else _problem(f, cache / f.relpath)
        if problem:
            raise DataUnavailable(f"dataset '{name}': {problem}")
    if missing and _offline():
        raise _unavailable(name, missing, "DLKIT_OFFLINE=1")
    for i, f in enumerate(missing):
        try:
            _download(f, cache / f.relpath)
        except Exception as exc:  # offline, HTTP error, checksum mismatch, unsafe archive
            raise _unavailable(name, missing[i:], first_line(exc)) from None
    if file is not None:
        return cache / files[0].relpath
    return Path(os.path.commonpath([cache / f.relpath if f.unpack else (cache / f.relpath).parent for f in files]))


def _file_named(source: DataSource, file: str) -> CachedFile:
    for f in source.files:
        if file in (f.relpath, Path(f.relpath).name, f.name):
            return f
    names = [Path(f.relpath).name for f in source.files]
    raise DlkitError(f"dataset '{source.name}' has no file '{file}'; its files: {', '.join(names)}."
                     f"{suggest(file, names)}")


def _download(f: CachedFile, target: Path) -> None:
    """Download ``f`` with keras.utils.get_file (sha256-checked) beside ``target``, then move or unpack it there."""
    from keras.utils import get_file

    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.parent / f"{PARTIAL}{f.name}"
    try:
        get_file(fname=tmp.name, origin=f.url, file_hash=f.sha256, cache_subdir=str(target.parent))
        if f.unpack:
            _unpack(tmp, f, target)
        else:
            os.replace(tmp, target)
            if f.sha256:
                _record_ok(target, f.sha256)
    finally:
        tmp.unlink(missing_ok=True)


def load(name: str) -> Dataset:
    """Load an image dataset by name: float32 images in [0, 1] of shape (N, H, W, C), int labels."""
    source = get(name)
    if not source.loader:
        raise DlkitError(f"dataset '{name}' is not an image dataset dlkit loads as arrays; a plugin reads its "
                         f"files from dlkit.data.fetch('{name}')")
    if source.loader == "sklearn-digits":
        return _load_digits()
    import numpy as np
    from keras import datasets

    missing = missing_files(name)
    if missing and _offline():
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


# -- adding files downloaded elsewhere ------------------------------------------------------------------------
def _known_files() -> dict[str, list[tuple[DataSource, CachedFile, Accepted]]]:
    """Every name ``data add`` recognises → the (dataset, file, accepted packaging) it may be."""
    known: dict[str, list[tuple[DataSource, CachedFile, Accepted]]] = {}
    for source in _SOURCES.values():
        for f in source.files:
            for accepted in f.accepted:
                known.setdefault(accepted.name, []).append((source, f, accepted))
    return known


def add_files(paths: list[Path], echo: Callable[[str], None] | None = None) -> list[str]:
    """Put files downloaded elsewhere where their loaders look; returns the cache paths written.

    A file is recognised by its name and must match the sha256 published for that name (and for
    one of the datasets using it); an archive is unpacked (see the module docstring), which ``echo``
    announces, as it takes a few seconds. Every name is checked before anything is copied; a refused
    file leaves nothing in the cache.
    """
    _discover_plugins()
    known = _known_files()
    paths = [Path(p) for p in paths]
    for path in paths:
        if path.name not in known:
            hint = suggest(path.name, known) or f" Known: {', '.join(sorted(known))}."
            raise DlkitError(f"'{path.name}' is not a dataset file dlkit knows (files are recognised by their "
                             f"upstream names; 'dlkit data list' says where each comes from).{hint}")
        if not path.is_file():
            raise DlkitError(f"'{path}' is not a file")
    cache = keras_cache_dir()
    done: list[str] = []
    for path in paths:
        candidates = known[path.name]
        size = path.stat().st_size
        digest = None
        if any(a.size in (None, size) for _, _, a in candidates):
            digest = sha256_of(path)
        matches = [(s, f) for s, f, a in candidates if a.size in (None, size) and a.sha256 in (None, digest)]
        if not matches:
            users = ", ".join(dict.fromkeys(s.name for s, _, _ in candidates))
            expected = " or ".join(str(a.size) for _, _, a in candidates if a.size is not None)
            raise DlkitError(f"'{path}' does not match the published sha256 of {path.name} (dataset {users}"
                             f"{f'; {size} bytes, expected {expected}' if expected else ''}); it is corrupt or "
                             f"a different file")
        for f in {f.relpath: f for _, f in matches}.values():  # one copy per place in the cache
            target = cache / f.relpath
            if f.unpack:
                if echo:
                    echo(f"unpacking {path.name} into {target}/ …")
                _unpack(path, f, target)
            else:
                _copy_checked(path, target, digest)
            done.append(str(target))
    return done


def _copy_checked(source: Path, target: Path, digest: str | None) -> None:
    """Copy under a temporary name, check the copy's sha256, then rename: a loader never sees half a file."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(PARTIAL + target.name)
    try:
        hasher = hashlib.sha256()
        with open(source, "rb") as src, open(tmp, "wb") as dst:
            for block in iter(lambda: src.read(1 << 20), b""):
                hasher.update(block)
                dst.write(block)
        if digest is not None and hasher.hexdigest() != digest:
            raise DlkitError(f"'{source}' changed while it was copied; try again")
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
    _record_ok(target, hasher.hexdigest())


def _member_path(member, top: str, archive: Path) -> str | None:
    """The member's path inside the ``top`` folder ('' for the folder itself); None to skip; refuses unsafe ones."""
    path = PurePosixPath(member.name)
    if not path.parts and member.isdir():
        return None  # the archive's own root, "./"
    if path.is_absolute() or member.name.startswith("\\") or ".." in path.parts or ":" in (path.parts or ("",))[0]:
        raise DlkitError(f"{archive.name}: refusing to unpack member '{member.name}' (absolute path or '..'); the "
                         f"archive is not safe to unpack")
    if not (member.isfile() or member.isdir()):
        raise DlkitError(f"{archive.name}: refusing to unpack member '{member.name}' (a link or device, not a "
                         f"plain file)")
    if not path.parts or path.parts[0] != top:
        raise DlkitError(f"{archive.name}: member '{member.name}' is outside the folder '{top}/' it should unpack to")
    return "/".join(path.parts[1:])


def _unpack(archive: Path, f: CachedFile, target: Path) -> None:
    """Unpack ``archive``'s top folder to ``target`` safely: a temporary folder beside it, then a rename."""
    import shutil
    import tarfile
    import tempfile

    top = target.name
    target.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f"{PARTIAL}{top}-", dir=target.parent))
    safe = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}  # a second guard where Python has it
    try:
        try:
            with tarfile.open(archive, "r:*") as tar:
                for member in tar:
                    inner = _member_path(member, top, archive)
                    if inner is None or any(inner == s or inner.startswith(s + "/") for s in f.skip):
                        continue
                    tar.extract(member, work, **safe)
        except (tarfile.TarError, EOFError, OSError) as exc:
            raise DlkitError(f"{archive.name} could not be unpacked ({first_line(exc)}); it is corrupt or a different "
                             f"file") from None
        unpacked = work / top
        lacking = [need for need in f.needs if not (unpacked / need).exists()]
        if lacking or not unpacked.is_dir():
            raise DlkitError(f"{archive.name} does not hold {top}/{lacking[0] if lacking else ''}; it is a different "
                             f"file")
        if target.exists() or target.is_symlink():  # replace an older copy: move it aside, move in, then delete it
            old = work / f"old-{top}"
            os.replace(target, old)
        os.replace(unpacked, target)
    finally:
        shutil.rmtree(work, ignore_errors=True)


# -- what is cached ------------------------------------------------------------------------------------------
def status() -> list[dict]:
    """For ``dlkit doctor`` / ``dlkit data list``: every registered dataset and the state of its files.

    Each row: ``name``, ``kind``, ``description``, ``present`` (all files cached and sound),
    ``missing`` (cache paths of absent files), ``get`` (for each absent file: ``file``, ``url``,
    ``also`` (other accepted names), ``path``) and ``problems`` (one line per corrupt file).
    """
    _discover_plugins()
    cache = keras_cache_dir()
    rows = []
    for source in _SOURCES.values():
        missing = [f for f in source.files if not _is_present(f, cache / f.relpath)]
        problems = [p for f in source.files if f not in missing and (p := _problem(f, cache / f.relpath))]
        rows.append({"name": source.name, "kind": source.kind, "description": source.description,
                     "present": not missing and not problems, "files": len(source.files),
                     "missing": [str(cache / f.relpath) for f in missing],
                     "get": [{"file": f.name, "url": f.url, "also": [a.name for a in f.also],
                              "path": str(cache / f.relpath) + ("/" if f.unpack else "")} for f in missing],
                     "problems": problems})
    return rows
