"""Writing files so that a reader never sees half of one: write a temporary sibling, then rename.

``os.replace`` is atomic on POSIX and Windows within one file system, so Ctrl-C, a crash or SIGKILL
leaves either the old file or the new one where a user (or ``--resume``) looks, never a torn one.
"""
from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any


@contextmanager
def atomic_path(path: str | Path, prefix: str = ".partial-") -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it replaces ``path``, on error it is removed.

    The temporary name keeps the suffix (Keras insists on ``.keras``): ``dir/.partial-model.keras``.
    """
    path = Path(path)
    tmp = path.with_name(prefix + path.name)
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if tmp.is_dir():
            shutil.rmtree(tmp, ignore_errors=True)
        elif tmp.exists():
            tmp.unlink()


def write_text(path: str | Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def write_json(path: str | Path, payload: Any) -> None:
    write_text(path, json.dumps(payload, indent=2, default=_jsonable) + "\n")


def copy_file(source: str | Path, target: str | Path) -> None:
    with atomic_path(target) as tmp:
        shutil.copyfile(source, tmp)


def _jsonable(value: Any) -> Any:
    if hasattr(value, "tolist"):  # NumPy scalars and arrays
        return value.tolist()
    return str(value)
