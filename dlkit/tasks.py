"""The core's default hooks, chosen by an algorithm's ``task`` where the core calls its hooks.

A plugin that does not override ``load_data`` or ``evaluate`` gets the default of its task. Keeping
these out of ``dlkit.api`` keeps the contract free of data loaders and metrics (and of import cycles).
"""
from __future__ import annotations

from typing import Any

from dlkit.api import Algorithm, BaseConfig, Dataset, overrides
from dlkit.errors import DlkitError


def _image_data(cfg: BaseConfig) -> Dataset:
    from dlkit import data

    return data.load(cfg.data)


def _classification_metrics(model, data: Dataset, cfg: BaseConfig) -> dict[str, Any]:
    from dlkit import metrics

    return metrics.classification(model, data, batch_size=getattr(cfg, "batch_size", 256))


DEFAULTS = {
    # every task: arrays from dlkit.data's loaders (the image sets), as plugins written before had it
    "load_data": {"*": _image_data},
    "evaluate": {"classification": _classification_metrics},
}


def hook(plugin: Algorithm, name: str):
    """The plugin's own ``name`` hook, else its task's default, else a one-line error."""
    if overrides(plugin, name) or name not in DEFAULTS:
        return getattr(plugin, name)
    defaults = DEFAULTS[name]
    if plugin.task in defaults or "*" in defaults:
        return defaults.get(plugin.task, defaults.get("*"))
    raise DlkitError(f"plugin '{plugin.name}' has task '{plugin.task}', which has no default {name}(); "
                     f"the plugin must define {name}()")
