"""Installed versions of the libraries a result depends on: recorded in runs and export reports, shown by
``dlkit doctor``. Read from package metadata, so nothing is imported (importing a backend would pin it)."""
from __future__ import annotations

from collections.abc import Iterable
from importlib import metadata

NOT_INSTALLED = "not installed"


def versions(names: Iterable[str]) -> dict[str, str]:
    """``{distribution: version}`` in the order given; ``"not installed"`` for a distribution that is not."""
    found = {}
    for name in names:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = NOT_INSTALLED
    return found
