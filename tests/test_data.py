"""The dataset registry and cache: ``dlkit data list/add``, ``fetch``, checksums, archives, plugin sources.

Fast and offline: every test uses its own empty ``KERAS_HOME``; where a download could be attempted,
``DLKIT_OFFLINE=1`` is set, or the URL is a ``file://`` one.
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from dlkit import data
from dlkit.errors import DataUnavailable, DlkitError
from tests.conftest import SHARED, run_cli

NEW = ("imdb_reviews", "tinyshakespeare", "cora", "citeseer", "pubmed")
needs_shared = pytest.mark.skipif(not SHARED.is_dir(), reason=f"no offline dataset copies at {SHARED}")


@pytest.fixture
def cache(tmp_path, monkeypatch) -> Path:
    """An empty Keras cache, offline, and a registry that forgets what the test registers."""
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    monkeypatch.setenv("DLKIT_OFFLINE", "1")
    monkeypatch.setattr(data, "_SOURCES", dict(data._SOURCES))
    return tmp_path / "keras" / "datasets"


def sha256(payload: bytes) -> str:
    return hashlib.sha256(payload).hexdigest()


def leftovers(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if p.name.startswith(".partial-")] if folder.exists() else []


def toy_source(tmp_path: Path, payload: bytes = b"hello data\n", name: str = "toy") -> tuple[data.DataSource, Path]:
    """A registered one-file dataset and a good copy of its file, named as upstream names it."""
    good = tmp_path / "downloads" / "toy.txt"
    good.parent.mkdir(parents=True, exist_ok=True)
    good.write_bytes(payload)
    source = data.register(data.DataSource(name, (data.CachedFile(
        f"{name}/toy.txt", "https://example.invalid/files/toy.txt", sha256(payload), len(payload)),),
        "a toy text dataset", "text"))
    return source, good


def test_import_loads_no_backend_numpy_or_click():
    code = ("import sys, dlkit.data as d\n"
            "try:\n    d.fetch('cora')\nexcept d.DataUnavailable:\n    pass\n"
            "print(sorted(m for m in sys.modules if m.split('.')[0] in "
            "('keras', 'tensorflow', 'jax', 'torch', 'numpy', 'click')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                         env={**os.environ, "DLKIT_OFFLINE": "1", "KERAS_HOME": "/nonexistent/keras"})
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_builtin_registry_keeps_the_image_sets_and_adds_text_and_graphs(cache):
    assert list(data.IMAGE_DATASETS) == ["mnist", "fashion_mnist", "cifar10", "digits"]
    assert "cora" not in data.IMAGE_DATASETS and set(NEW) <= set(data.sources())
    assert [f.relpath for f in data.missing_files("tinyshakespeare")] == ["tinyshakespeare/input.txt"]
    assert len(data.missing_files("cora")) == 8 and data.missing_files("digits") == []
    imdb = data.get("imdb_reviews").files[0]
    assert imdb.name == "aclImdb_v1.tar.gz" and [a.name for a in imdb.also] == ["aclImdb_train_test.tar.gz"]
    with pytest.raises(DlkitError, match="unknown dataset 'coraa'.*Did you mean 'cora'"):
        data.get("coraa")
    with pytest.raises(DlkitError, match=r"fetch\('cora'\)"):
        data.load("cora")


@needs_shared
def test_builtin_checksums_match_the_offline_copies():
    by_name = {p.name: p for p in SHARED.rglob("*") if p.is_file()}
    checked = 0
    for source in data.sources().values():
        for f in source.files:
            for accepted in f.accepted:
                if accepted.name in by_name and accepted.sha256:
                    path = by_name[accepted.name]
                    assert (data.sha256_of(path), path.stat().st_size) == (accepted.sha256, accepted.size), path
                    checked += 1
    assert checked >= 31  # mnist, 4 Fashion-MNIST, Tiny Shakespeare, 24 Planetoid, the IMDB repack


@needs_shared
def test_added_file_lands_where_fetch_looks(cache):
    shakespeare = SHARED / "tinyshakespeare" / "input.txt"
    cora = sorted((SHARED / "planetoid").glob("ind.cora.*"))
    added = data.add_files([shakespeare, *cora])
    assert cache / "tinyshakespeare" / "input.txt" in map(Path, added)
    assert data.fetch("tinyshakespeare") == cache / "tinyshakespeare"
    assert (data.fetch("tinyshakespeare") / "input.txt").read_bytes() == shakespeare.read_bytes()
    assert data.fetch("cora") == cache / "planetoid"
    assert data.fetch("cora", "ind.cora.graph") == cache / "planetoid" / "ind.cora.graph"
    assert data.missing_files("cora") == [] and not leftovers(cache)
    with pytest.raises(DlkitError, match="has no file 'ind.cora.z'"):
        data.fetch("cora", "ind.cora.z")


def test_wrong_checksum_is_refused_and_leaves_nothing(cache, tmp_path):
    _, good = toy_source(tmp_path)
    fake = tmp_path / "elsewhere" / "toy.txt"
    fake.parent.mkdir()
    for payload in (b"HELLO DATA\n", b"short"):  # same size, other bytes; truncated
        fake.write_bytes(payload)
        with pytest.raises(DlkitError, match="does not match the published sha256 of toy.txt .*corrupt or a "
                                             "different file"):
            data.add_files([fake])
        assert not cache.exists() or not any(cache.rglob("*"))
    with pytest.raises(DlkitError):  # nothing of a batch is copied when one name in it is unknown
        data.add_files([good, tmp_path / "unknown.bin"])
    assert not cache.exists() or not any(cache.rglob("*"))


def test_unknown_file_name_gets_a_did_you_mean_or_the_list(cache, tmp_path):
    typo = tmp_path / "input.text"
    typo.write_text("x")
    with pytest.raises(DlkitError, match=r"'input.text' is not a dataset file dlkit knows.*Did you mean 'input.txt'"):
        data.add_files([typo])
    stranger = tmp_path / "zzz.bin"
    stranger.write_text("x")
    with pytest.raises(DlkitError, match=r"Known: .*ind\.cora\.x.*mnist\.npz"):
        data.add_files([stranger])


def test_offline_message_names_the_file_the_target_and_the_url(cache):
    with pytest.raises(DataUnavailable) as info:
        data.fetch("tinyshakespeare")
    message = str(info.value)
    assert "\n" not in message and "dataset 'tinyshakespeare' is not cached" in message and "DLKIT_OFFLINE=1" in message
    assert ("https://raw.githubusercontent.com/karpathy/char-rnn/master/data/tinyshakespeare/input.txt → "
            f"{cache / 'tinyshakespeare' / 'input.txt'}") in message
    assert "or run 'dlkit data add FILE…'" in message
    with pytest.raises(DataUnavailable) as info:
        data.fetch("citeseer")
    assert ("ind.citeseer.x, ind.citeseer.y" in str(info.value)
            and f"from https://github.com/kimiyoung/planetoid/raw/master/data/ into {cache / 'planetoid'}/"
            in str(info.value))
    with pytest.raises(DataUnavailable, match="aclImdb_v1.tar.gz → .*aclImdb/ \\(unpacked\\)"):
        data.fetch("imdb_reviews")


def test_cached_file_is_hashed_once_and_a_corrupt_one_is_reported(cache, tmp_path, monkeypatch):
    _, good = toy_source(tmp_path)
    (target,) = map(Path, data.add_files([good]))

    def no_hashing(path):
        raise AssertionError(f"hashed {path} again")

    with monkeypatch.context() as patch:
        patch.setattr(data, "sha256_of", no_hashing)
        assert data.fetch("toy") == target.parent  # verified at add time: a stat, no read
        os.utime(target, ns=(target.stat().st_atime_ns, target.stat().st_mtime_ns + 10**9))
        with pytest.raises(AssertionError, match="hashed"):  # changed since: checked again
            data.fetch("toy")
    data.fetch("toy")  # same bytes, newer mtime: verified and recorded again
    target.write_bytes(b"HELLO DATA\n")  # same size, other bytes
    with pytest.raises(DataUnavailable, match=r"toy.txt does not match the published sha256 .*delete it and run "
                                              r"'dlkit data add toy.txt'"):
        data.fetch("toy")
    target.write_bytes(b"hel")
    with pytest.raises(DataUnavailable, match="is 3 bytes, not the published 11: truncated"):
        data.fetch("toy")
    assert next(row for row in data.status() if row["name"] == "toy")["problems"]


def tar_gz(path: Path, members: list[tuple[str, bytes | None, str]]) -> Path:
    """Write a .tar.gz of (name, content, kind) with kind 'file', 'dir' or 'symlink' (content = link target)."""
    with tarfile.open(path, "w:gz") as tar:
        for name, content, kind in members:
            info = tarfile.TarInfo(name)
            if kind == "dir":
                info.type = tarfile.DIRTYPE
                tar.addfile(info)
            elif kind == "symlink":
                info.type, info.linkname = tarfile.SYMTYPE, content.decode()
                tar.addfile(info)
            else:
                info.size = len(content)
                tar.addfile(info, io.BytesIO(content))
    return path


def archive_source(archive: Path, name: str = "toy_archive") -> None:
    payload = archive.read_bytes()
    data.register(data.DataSource(name, (data.CachedFile(
        "pkg", f"https://example.invalid/{archive.name}", sha256(payload), len(payload), unpack=True,
        skip=("unsup",), needs=("train/a.txt",)),), "a toy archive", "text"))


def test_archive_is_unpacked_safely_with_skips_and_replaces_an_older_tree(cache, tmp_path):
    archive = tar_gz(tmp_path / "pkg.tar.gz", [
        ("pkg", None, "dir"), ("pkg/train/a.txt", b"a", "file"), ("pkg/unsup/u.txt", b"u", "file")])
    archive_source(archive)
    (cache / "pkg").mkdir(parents=True)
    (cache / "pkg" / "stale.txt").write_text("from an older copy")
    assert data.add_files([archive]) == [str(cache / "pkg")]
    assert (cache / "pkg" / "train" / "a.txt").read_text() == "a"
    assert not (cache / "pkg" / "unsup").exists() and not (cache / "pkg" / "stale.txt").exists()
    assert data.fetch("toy_archive") == cache / "pkg"
    assert sorted(p.name for p in cache.iterdir()) == ["pkg"]  # no archive, no temporary folder


@pytest.mark.parametrize("member, kind, reason", [
    ("pkg/../../evil.txt", "file", "absolute path or '..'"),
    ("/tmp/evil.txt", "file", "absolute path or '..'"),
    ("pkg/link", "symlink", "a link or device"),
    ("other/evil.txt", "file", "outside the folder 'pkg/'"),
])
def test_unsafe_archive_member_is_refused_and_nothing_is_left(cache, tmp_path, member, kind, reason):
    archive = tar_gz(tmp_path / "pkg.tar.gz", [("pkg/train/a.txt", b"a", "file"),
                                               (member, b"/etc/passwd" if kind == "symlink" else b"evil", kind)])
    archive_source(archive)
    with pytest.raises(DlkitError) as info:
        data.add_files([archive])
    assert reason in str(info.value)
    assert not (cache / "pkg").exists() and not leftovers(cache)
    assert not any(p.name == "evil.txt" for p in tmp_path.rglob("*"))


@needs_shared
def test_imdb_repack_is_accepted_and_unpacked_to_the_aclimdb_layout(cache):
    repack = SHARED / "aclImdb" / "aclImdb_train_test.tar.gz"
    if not repack.is_file():
        pytest.skip(f"no {repack}")
    assert data.add_files([repack]) == [str(cache / "aclImdb")]
    root = data.fetch("imdb_reviews")
    assert root == cache / "aclImdb"
    for split in ("train", "test"):
        for label in ("pos", "neg"):
            assert len(list((root / split / label).glob("*.txt"))) == 12500
    assert (root / "train" / "pos" / "0_9.txt").read_text(encoding="utf-8").startswith("Bromwell High is a cartoon")
    assert sorted(p.name for p in cache.iterdir()) == ["aclImdb"]


def test_download_goes_through_keras_get_file_with_the_checksum(tmp_path):
    """A file:// URL stands in for the network; run in a child so Keras is imported there, not here."""
    upstream = tmp_path / "upstream"
    upstream.mkdir()
    (upstream / "toy.txt").write_bytes(b"hello data\n")
    (upstream / "bad.txt").write_bytes(b"something else")
    good_sha = sha256((upstream / "toy.txt").read_bytes())  # "bad" expects it too, and gets other bytes
    code = f"""
import json, dlkit.data as d
def source(name, file):
    return d.register(d.DataSource(name, (d.CachedFile(f"{{name}}/{{file}}", {(upstream.as_uri() + '/')!r} + file,
        {good_sha!r}),), "toy"))
source("good", "toy.txt"); source("bad", "bad.txt")
result = {{"path": str(d.fetch("good", "toy.txt"))}}
try:
    d.fetch("bad")
except d.DataUnavailable as exc:
    result["error"] = str(exc)
print(json.dumps(result))
"""
    env = {k: v for k, v in os.environ.items() if k != "DLKIT_OFFLINE"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                         env={**env, "KERAS_HOME": str(tmp_path / "keras")})
    assert out.returncode == 0, out.stderr[-2000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    cache = tmp_path / "keras" / "datasets"
    assert Path(result["path"]) == cache / "good" / "toy.txt"
    assert (cache / "good" / "toy.txt").read_bytes() == b"hello data\n"
    assert (cache / "good" / ".toy.txt.sha256-ok").is_file()
    assert "dataset 'bad' is not cached and could not be downloaded" in result["error"]
    assert not (cache / "bad" / "bad.txt").exists() and not leftovers(cache)


@needs_shared
def test_cli_data_add_then_list_covers_every_dataset(tmp_path):
    env = {"KERAS_HOME": str(tmp_path / "keras"), "DLKIT_OFFLINE": "1"}
    keras = SHARED / "keras"
    out = run_cli("data", "add", str(keras / "mnist.npz"), *map(str, sorted((keras / "fashion-mnist").glob("*.gz"))),
                  str(SHARED / "tinyshakespeare" / "input.txt"), env=env)  # what `make data` runs, and more
    assert out.returncode == 0, out.stderr
    cache = tmp_path / "keras" / "datasets"
    assert f"added {cache / 'fashion-mnist' / 'train-images-idx3-ubyte.gz'}" in out.stdout
    out = run_cli("data", "list", env=env)
    assert out.returncode == 0, out.stderr
    rows = {line.split()[0]: line.split()[1:] for line in out.stdout.splitlines() if line.startswith("  ")
            and not line.startswith("   ")}
    assert rows["mnist"] == ["image", "present"] and rows["tinyshakespeare"] == ["text", "present"]
    assert rows["imdb_reviews"] == ["text", "missing"] and rows["cora"] == ["graph", "missing"]
    assert set(NEW) <= set(rows)
    assert (f"get https://ai.stanford.edu/~amaas/data/sentiment/aclImdb_v1.tar.gz (or aclImdb_train_test.tar.gz) "
            f"→ {cache / 'aclImdb'}/") in out.stdout
    assert (f"get https://github.com/kimiyoung/planetoid/raw/master/data/ind.pubmed.test.index → "
            f"{cache / 'planetoid' / 'ind.pubmed.test.index'}") in out.stdout
    assert "dlkit data add FILE…" in out.stdout


def test_cli_refuses_a_known_name_with_another_checksum(tmp_path):
    fake = tmp_path / "ind.cora.x"
    fake.write_bytes(b"x" * 22119)
    out = run_cli("data", "add", str(fake), env={"KERAS_HOME": str(tmp_path / "keras")})
    assert out.returncode == 1 and "Traceback" not in out.stderr
    assert out.stderr.count("\n") == 1 and "corrupt or a different file" in out.stderr
    assert not (tmp_path / "keras").exists() or not any((tmp_path / "keras").rglob("ind.cora.x"))


PLUGIN = '''
"""A third-party plugin that brings its own dataset."""
from dlkit.api import Algorithm
from dlkit.data import CachedFile, DataSource, register

register(DataSource("toy_corpus", (CachedFile("toy-corpus/corpus.txt", "https://example.invalid/corpus.txt",
                                              "{sha}", {size}),), "A toy corpus from a plugin", "text"))


class ToyText(Algorithm):
    name = "toy_text"
    summary = "reads toy_corpus"
    datasets = ("toy_corpus",)
    api_version = 1
'''


def test_a_plugin_registered_source_is_listed_and_can_be_added(tmp_path):
    corpus = b"to be or not to be\n"
    site = tmp_path / "site"
    dist = site / "dlkit_toy_corpus-0.1.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: dlkit-toy-corpus\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[dlkit.algorithms]\ntoy_text = dlkit_toy_corpus:ToyText\n")
    (site / "dlkit_toy_corpus.py").write_text(PLUGIN.format(sha=sha256(corpus), size=len(corpus)))
    (tmp_path / "corpus.txt").write_bytes(corpus)
    env = {"KERAS_HOME": str(tmp_path / "keras"), "DLKIT_OFFLINE": "1", "DLKIT_PLUGINS": "dlkit-toy-corpus",
           "PYTHONPATH": os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")])}
    out = run_cli("data", "list", env=env)
    assert out.returncode == 0, out.stderr
    assert "toy_corpus" in out.stdout and "A toy corpus from a plugin" in out.stdout
    target = tmp_path / "keras" / "datasets" / "toy-corpus" / "corpus.txt"
    assert f"get https://example.invalid/corpus.txt → {target}" in out.stdout
    out = run_cli("data", "add", str(tmp_path / "corpus.txt"), env=env)
    assert out.returncode == 0, out.stderr
    assert target.read_bytes() == corpus


def test_register_refuses_a_taken_name_or_an_unsafe_path(cache, tmp_path):
    source, _ = toy_source(tmp_path)
    assert data.register(source) is source  # the same source again: a module imported twice
    with pytest.raises(DlkitError, match="dataset 'mnist' is already registered"):
        data.register(data.DataSource("mnist", (), "another mnist"))
    replacement = data.DataSource("toy", (), "replaced")
    assert data.register(replacement, replace=True) is replacement and data.get("toy").description == "replaced"
    for relpath in ("../outside.txt", "/etc/passwd", ""):
        with pytest.raises(DlkitError, match="must be relative to the cache"):
            data.CachedFile(relpath, "https://example.invalid/x")
    with pytest.raises(DlkitError, match="dataset name"):
        data.DataSource("two words", (), "bad name")
