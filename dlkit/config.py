"""Config dataclass ↔ CLI options, and validation of user-given values.

The same conversion serves the CLI (``--batch-size 64``) and the Python API
(``dlkit.train("cnn", batch_size=64)``), so both give the same one-line errors. Field types:
int, float, str, bool, ``tuple[int, ...]`` (float, str: comma-separated on the command line) and
``X | None`` (optional; ``none`` on the command line).
"""
from __future__ import annotations

import dataclasses
import types
import typing
from typing import Any

import click

from dlkit.errors import DlkitError, suggest

SCALARS = (int, float, str, bool)


def flag_name(field_name: str) -> str:
    return "--" + field_name.replace("_", "-")


@dataclasses.dataclass(frozen=True)
class FieldType:
    """What a field's annotation means: its item type, and whether it is a tuple and/or optional."""

    item: type
    is_tuple: bool = False
    optional: bool = False

    @property
    def text(self) -> str:
        name = self.item.__name__ + (",…" if self.is_tuple else "")
        return name + " | none" if self.optional else name


def field_type(name: str, annotation: Any) -> FieldType:
    optional = False
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        optional = len(args) < len(typing.get_args(annotation))
        if len(args) != 1:
            raise TypeError(f"config field {name!r}: unsupported type {annotation!r}")
        annotation = args[0]
    if typing.get_origin(annotation) is tuple:
        args = typing.get_args(annotation)
        if len(args) == 2 and args[1] is Ellipsis and args[0] in (int, float, str):
            return FieldType(args[0], True, optional)
        raise TypeError(f"config field {name!r}: unsupported type {annotation!r} (a tuple is tuple[int, ...])")
    if annotation in SCALARS and not (optional and annotation is bool):
        return FieldType(annotation, False, optional)
    raise TypeError(f"config field {name!r}: unsupported type {annotation!r} "
                    f"(use int, float, str, bool, tuple[int, ...] or X | None)")


def field_types(cls: type) -> dict[str, FieldType]:
    # get_type_hints resolves the string annotations that `from __future__ import annotations` leaves
    hints = typing.get_type_hints(cls)
    return {f.name: field_type(f.name, hints[f.name]) for f in dataclasses.fields(cls)}


class CommaList(click.ParamType):
    """``512,256`` → (512, 256), each item checked by the item type (with its range)."""

    def __init__(self, item: click.ParamType, item_name: str):
        self.item = item
        self.name = f"{item_name},…"

    def convert(self, value, param, ctx):
        if isinstance(value, (tuple, list)):
            parts = list(value)
        else:
            parts = [p.strip() for p in str(value).split(",") if p.strip()]
        if not parts:
            self.fail(f"expects one or more comma-separated values, got {value!r}", param, ctx)
        return tuple(self.item.convert(p, param, ctx) for p in parts)


class Optional(click.ParamType):
    """``none`` (or None) → None; anything else by the inner type."""

    def __init__(self, inner: click.ParamType):
        self.inner = inner
        self.name = f"{inner.name} | none"

    def convert(self, value, param, ctx):
        if value is None or (isinstance(value, str) and value.strip().lower() == "none"):
            return None
        return self.inner.convert(value, param, ctx)


def param_type(f: dataclasses.Field, ftype: FieldType, choices: tuple | None = None) -> click.ParamType:
    meta = f.metadata
    choices = choices or meta.get("choices")
    lo, hi = meta.get("min"), meta.get("max")
    if choices:
        ptype: click.ParamType = click.Choice([str(c) for c in choices])
    elif ftype.item is bool:
        ptype = click.BOOL
    elif ftype.item is int:
        ptype = click.IntRange(lo, hi) if (lo is not None or hi is not None) else click.INT
    elif ftype.item is float:
        ptype = click.FloatRange(lo, hi) if (lo is not None or hi is not None) else click.FLOAT
    else:
        ptype = click.STRING
    if ftype.is_tuple:
        ptype = CommaList(ptype, ftype.item.__name__)
    return Optional(ptype) if ftype.optional else ptype


def _default(f: dataclasses.Field) -> Any:
    return f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[misc]


def _choices(f: dataclasses.Field, datasets: tuple[str, ...]) -> tuple | None:
    """``--data`` is a choice among the plugin's own datasets."""
    return tuple(datasets) if f.name == "data" and datasets else None


def dataset_default(f: dataclasses.Field, datasets: tuple[str, ...]) -> Any:
    default = _default(f)
    return datasets[0] if f.name == "data" and datasets and not default else default


def click_options(cls: type, datasets: tuple[str, ...] = ()) -> list[click.Option]:
    """One click option per config field, with its type, range, default and help."""
    types_ = field_types(cls)
    options = []
    for f in dataclasses.fields(cls):
        ftype = types_[f.name]
        default = dataset_default(f, datasets)
        if ftype.item is bool and not ftype.is_tuple:
            decl = [f"{flag_name(f.name)}/--no-{f.name.replace('_', '-')}", f.name]
            options.append(click.Option(decl, default=default, show_default=True, help=f.metadata.get("help")))
        else:
            shown = ",".join(map(str, default)) if isinstance(default, tuple) else \
                ("none" if default is None else default)
            short = [f.metadata["short"]] if f.metadata.get("short") else []
            options.append(click.Option([flag_name(f.name), *short, f.name],
                                        type=param_type(f, ftype, _choices(f, datasets)),
                                        default=default, show_default=str(shown), help=f.metadata.get("help")))
    return options


def make_config(cls: type, values: dict[str, Any], datasets: tuple[str, ...] = ()) -> Any:
    """Validate ``values`` against ``cls`` and return the config.

    Unknown keys get a did-you-mean; a wrong type or out-of-range value says what was received.
    ``--data`` defaults to the plugin's first dataset and must be one of ``datasets``.
    """
    fields = {f.name: f for f in dataclasses.fields(cls)}
    types_ = field_types(cls)
    converted = {}
    for key, value in values.items():
        if key not in fields:
            raise DlkitError(f"unknown option {flag_name(key)} for this algorithm.{suggest(key, fields)}")
        ftype = types_[key]
        if value is None and not ftype.optional:
            continue
        if key == "data" and not value:
            continue  # "" means the default dataset
        # bool is an int in Python; refuse True where a number is meant, and 1.5 where an int is
        items = value if ftype.is_tuple and isinstance(value, (tuple, list)) else (value,)
        for item in items:
            if ftype.item in (int, float) and isinstance(item, bool) or ftype.item is int and isinstance(item, float):
                raise DlkitError(f"option {flag_name(key)} expects {ftype.text}, got {value!r}")
        try:
            converted[key] = param_type(fields[key], ftype, _choices(fields[key], datasets)).convert(value, None, None)
        except click.BadParameter as exc:
            message = exc.message + (suggest(str(value), datasets) if key == "data" else "")
            raise DlkitError(f"option {flag_name(key)}: {message}") from None
    if "data" in fields and "data" not in converted and datasets:
        converted["data"] = datasets[0]
    return cls(**converted)


def describe(cls: type, datasets: tuple[str, ...] = ()) -> list[dict[str, Any]]:
    """Rows for ``dlkit info``: option, type, default, help."""
    types_ = field_types(cls)
    rows = []
    for f in dataclasses.fields(cls):
        ptype = param_type(f, types_[f.name], _choices(f, datasets))
        rows.append({"option": flag_name(f.name), "type": _type_text(ptype, types_[f.name]),
                     "default": dataset_default(f, datasets), "help": f.metadata.get("help", "")})
    return rows


def _type_text(ptype: click.ParamType, ftype: FieldType) -> str:
    inner = ptype.inner if isinstance(ptype, Optional) else ptype
    inner = inner.item if isinstance(inner, CommaList) else inner
    if isinstance(inner, click.Choice):
        text = "|".join(inner.choices)
    elif isinstance(inner, (click.IntRange, click.FloatRange)):
        lo = "" if inner.min is None else inner.min
        hi = "" if inner.max is None else inner.max
        text = f"{ftype.item.__name__} [{lo}..{hi}]"
    else:
        text = ftype.item.__name__
    if ftype.is_tuple:
        text += ",…"
    return text + " | none" if ftype.optional else text
