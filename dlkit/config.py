"""Config dataclass ↔ CLI options, and validation of user-given values.

The same conversion serves the CLI (``--batch-size 64``) and the Python API
(``dlkit.train("cnn", batch_size=64)``), so both give the same one-line errors.
"""
from __future__ import annotations

import dataclasses
import typing
from typing import Any

import click

from dlkit.api import TrainConfig
from dlkit.errors import DlkitError, suggest


def flag_name(field_name: str) -> str:
    return "--" + field_name.replace("_", "-")


def _field_types(cls: type[TrainConfig]) -> dict[str, type]:
    # get_type_hints resolves the string annotations that `from __future__ import annotations` leaves
    return typing.get_type_hints(cls)


def param_type(f: dataclasses.Field, annotation: type) -> click.ParamType:
    meta = f.metadata
    if meta.get("choices"):
        return click.Choice([str(c) for c in meta["choices"]])
    lo, hi = meta.get("min"), meta.get("max")
    if annotation is bool:
        return click.BOOL
    if annotation is int:
        return click.IntRange(lo, hi) if (lo is not None or hi is not None) else click.INT
    if annotation is float:
        return click.FloatRange(lo, hi) if (lo is not None or hi is not None) else click.FLOAT
    if annotation is str:
        return click.STRING
    raise TypeError(f"config field {f.name!r}: unsupported type {annotation!r} (use int, float, str or bool)")


def click_options(cls: type[TrainConfig]) -> list[click.Option]:
    """One click option per config field, with its type, range, default and help."""
    types = _field_types(cls)
    options = []
    for f in dataclasses.fields(cls):
        ptype = param_type(f, types[f.name])
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[misc]
        if types[f.name] is bool:
            decl = [f"{flag_name(f.name)}/--no-{f.name.replace('_', '-')}", f.name]
            options.append(click.Option(decl, default=default, show_default=True, help=f.metadata.get("help")))
        else:
            options.append(click.Option([flag_name(f.name), f.name], type=ptype, default=default,
                                        show_default=True, help=f.metadata.get("help")))
    return options


def make_config(cls: type[TrainConfig], values: dict[str, Any]) -> TrainConfig:
    """Validate ``values`` against ``cls`` and return the config.

    Unknown keys get a did-you-mean; a wrong type or out-of-range value says what was received.
    """
    fields = {f.name: f for f in dataclasses.fields(cls)}
    types = _field_types(cls)
    converted = {}
    for key, value in values.items():
        if key not in fields:
            raise DlkitError(f"unknown option {flag_name(key)} for this algorithm.{suggest(key, fields)}")
        if value is None:
            continue
        annotation = types[key]
        # bool is an int in Python; refuse True where a number is meant, and 1.5 where an int is
        if annotation in (int, float) and isinstance(value, bool) or annotation is int and isinstance(value, float):
            raise DlkitError(f"option {flag_name(key)} expects {annotation.__name__}, got {value!r}")
        try:
            converted[key] = param_type(fields[key], annotation).convert(value, None, None)
        except click.BadParameter as exc:
            raise DlkitError(f"option {flag_name(key)}: {exc.message}") from None
    return cls(**converted)


def describe(cls: type[TrainConfig]) -> list[dict[str, Any]]:
    """Rows for ``dlkit info``: option, type, default, help."""
    types = _field_types(cls)
    rows = []
    for f in dataclasses.fields(cls):
        ptype = param_type(f, types[f.name])
        rows.append({"option": flag_name(f.name), "type": _type_text(ptype, types[f.name]),
                     "default": f.default, "help": f.metadata.get("help", "")})
    return rows


def _type_text(ptype: click.ParamType, annotation: type) -> str:
    if isinstance(ptype, click.Choice):
        return "|".join(ptype.choices)
    if isinstance(ptype, (click.IntRange, click.FloatRange)):
        lo = "" if ptype.min is None else ptype.min
        hi = "" if ptype.max is None else ptype.max
        return f"{annotation.__name__} [{lo}..{hi}]"
    return annotation.__name__
