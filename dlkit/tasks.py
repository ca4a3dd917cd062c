"""The core's default hooks, chosen by an algorithm's ``task`` where the core calls its hooks.

A plugin that does not override ``load_data`` or ``evaluate`` gets the default of its task. Keeping
these out of ``dlkit.api`` keeps the contract free of data loaders and metrics (and of import cycles).
"""
from __future__ import annotations

from typing import Any

from dlkit.api import Algorithm, BaseConfig, Dataset, overrides
from dlkit.errors import DlkitError


def _image_classification_data(cfg: BaseConfig) -> Dataset:
    from dlkit import data

    return data.load(cfg.data)


def _classification_metrics(model, data: Dataset, cfg: BaseConfig) -> dict[str, Any]:
    from dlkit import metrics

    return metrics.classification(model, data, batch_size=getattr(cfg, "batch_size", 256))


DEFAULT_LOAD_DATA = {"classification": _image_classification_data}
DEFAULT_EVALUATE = {"classification": _classification_metrics}


def hook(plugin: Algorithm, name: str):
    """The plugin's own ``name`` hook, else its task's default, else a one-line error."""
    if overrides(plugin, name):
        return getattr(plugin, name)
    defaults = {"load_data": DEFAULT_LOAD_DATA, "evaluate": DEFAULT_EVALUATE}.get(name, {})
    if plugin.task in defaults:
        return defaults[plugin.task]
    if name in defaults:
        raise DlkitError(f"plugin '{plugin.name}' has task '{plugin.task}', which has no default {name}(); "
                         f"the plugin must define {name}()")
    return getattr(plugin, name)
