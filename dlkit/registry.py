"""Plugin discovery through the ``dlkit.algorithms`` entry-point group.

Built-in algorithms are registered in dlkit's own pyproject exactly like third-party ones, so every
run exercises the path a ``pip install dlkit-foo`` takes. Discovery loads each entry point's small
plugin class (stdlib-only modules), never Keras. A plugin that fails to load is kept as *broken*
with a one-line reason; the others keep working.

Environment:
  DLKIT_PLUGINS  comma list of third-party plugin or distribution names to load ("" = built-ins only)
  DLKIT_STRICT   "1" re-raises plugin load errors with their traceback (for plugin authors)

Two distributions registering one name: the built-in wins, else the first distribution by name, and a
warning names both; ``DIST:NAME`` (or ``dlkit --plugin DIST:NAME``, see :func:`choose`) picks another.
"""
from __future__ import annotations

import dataclasses
import os
import re
import sys
import warnings
from dataclasses import dataclass
from functools import lru_cache
from importlib.metadata import EntryPoint, entry_points

from dlkit.api import API_VERSION, BACKENDS, Algorithm, BaseConfig, GenerateConfig
from dlkit.config import describe
from dlkit.errors import suggest
from dlkit.errors import DlkitError, one_line

GROUP = "dlkit.algorithms"
CORE_DIST = "dlkit"
HEAVY_MODULES = ("keras", "tensorflow", "jax", "torch")


class DuplicatePluginWarning(UserWarning):
    """Two distributions register the same algorithm name."""


@dataclass
class PluginEntry:
    name: str
    distribution: str
    version: str
    target: str  # "module:Class" as the entry point names it
    cls: type[Algorithm] | None = None
    error: str | None = None  # why it is broken
    disabled: bool = False  # filtered out by DLKIT_PLUGINS
    shadowed_by: str | None = None  # another distribution's plugin of the same name won

    @property
    def builtin(self) -> bool:
        return self.distribution == CORE_DIST

    @property
    def status(self) -> str:
        if self.disabled:
            return "disabled (DLKIT_PLUGINS)"
        if self.error:
            return f"broken: {self.error}"
        if self.shadowed_by:
            return f"ok (shadowed by {self.shadowed_by}:{self.name})"
        return "ok"

    @property
    def summary(self) -> str:
        return getattr(self.cls, "summary", "") if self.cls else ""

    def algorithm(self) -> Algorithm:
        if self.cls is None:
            raise DlkitError(f"plugin '{self.name}' from {self.distribution} is {self.status}")
        try:
            return self.cls()
        except Exception as exc:  # plugin code: one line naming plugin and distribution, as for hooks
            raise DlkitError(f"plugin '{self.name}' ({self.distribution}) failed in __init__(): "
                             f"{one_line(exc)}") from exc


def normalize_dist(name: str) -> str:
    """PEP 503 form, so 'dlkit_Foo', 'dlkit.foo' and 'dlkit-foo' name the same distribution."""
    return re.sub(r"[-_.]+", "-", name).lower()


def _allowed_third_party() -> set[str] | None:
    raw = os.environ.get("DLKIT_PLUGINS")
    if raw is None:
        return None
    return {normalize_dist(part.strip()) for part in raw.split(",") if part.strip()}


def _check_class(obj: object, ep_name: str) -> str | None:
    """Why ``obj`` is not a usable plugin class, or None."""
    if not (isinstance(obj, type) and issubclass(obj, Algorithm)):
        return f"{obj!r} is not a subclass of dlkit.api.Algorithm"
    if obj.api_version != API_VERSION:
        return (f"written for dlkit plugin API {obj.api_version}, this dlkit provides API {API_VERSION}; "
                f"install a matching version of the plugin or of dlkit")
    if isinstance(obj.backends, str) or not obj.backends:
        return f"backends must be a non-empty tuple of backend names, e.g. {BACKENDS}; got {obj.backends!r}"
    unknown = [b for b in obj.backends if b not in BACKENDS]
    if unknown:
        return f"declares unknown backend(s) {unknown}; known: {list(BACKENDS)}"
    if obj.name and obj.name != ep_name:
        return f"class says name '{obj.name}' but its entry point is '{ep_name}'"
    if obj.budget_unit not in ("epoch", "step"):
        return f"budget_unit must be 'epoch' or 'step'; got {obj.budget_unit!r}"
    return _check_config(obj.config, BaseConfig, obj.datasets) or (
        _check_config(obj.generate_config, GenerateConfig) if obj.generate_config is not None else None) or (
        _check_config(obj.predict_config, object) if obj.predict_config is not None else None)


def _check_config(config: object, base: type, datasets: tuple[str, ...] = ()) -> str | None:
    """A config must turn into CLI options now, not when someone types ``dlkit train``."""
    if not (isinstance(config, type) and issubclass(config, base) and dataclasses.is_dataclass(config)):
        return f"config {config!r} is not a @dataclass subclass of dlkit.api.{base.__name__}"
    try:
        describe(config, datasets)
    except Exception as exc:  # unsupported field type, unresolvable annotation…
        return f"config {config.__name__}: {one_line(exc)}"
    return None


def _load(ep: EntryPoint, entry: PluginEntry) -> None:
    heavy_before = {m for m in HEAVY_MODULES if m in sys.modules}
    try:
        obj = ep.load()
    except (Exception, SystemExit) as exc:  # a broken plugin must not take the CLI down
        if os.environ.get("DLKIT_STRICT") == "1":  # the plugin's own traceback, then this line
            raise RuntimeError(f"plugin '{entry.name}' from {entry.distribution} failed to import") from exc
        entry.error = f"import failed: {one_line(exc)}"
        return
    problem = _check_class(obj, entry.name)
    if problem:
        if os.environ.get("DLKIT_STRICT") == "1":
            raise DlkitError(f"plugin '{entry.name}' from {entry.distribution}: {problem}")
        entry.error = problem
        return
    entry.cls = obj
    heavy = sorted({m for m in HEAVY_MODULES if m in sys.modules} - heavy_before)
    if heavy:
        warnings.warn(f"plugin '{entry.name}' ({entry.distribution}) imports {', '.join(heavy)} at module level; "
                      f"import it inside the hooks so listing stays fast and the backend can still be chosen",
                      stacklevel=2)


#: NAME → distribution chosen with ``dlkit --plugin DIST:NAME`` (see :func:`choose`).
_chosen: dict[str, str] = {}


@lru_cache(maxsize=1)
def discover() -> tuple[PluginEntry, ...]:
    """Every entry point of the group, loaded or marked broken/disabled, sorted by name."""
    allowed = _allowed_third_party()
    entries: list[PluginEntry] = []
    seen: set[tuple[str, str, str]] = set()
    for ep in entry_points(group=GROUP):
        dist = ep.dist.name if ep.dist is not None else "unknown"
        version = ep.dist.version if ep.dist is not None else "?"
        key = (ep.name, normalize_dist(dist), ep.value)
        if key in seen:  # the same distribution found twice on sys.path
            continue
        seen.add(key)
        entry = PluginEntry(ep.name, dist, version, ep.value)
        wanted = allowed is None or {normalize_dist(ep.name), normalize_dist(dist)} & allowed
        if not entry.builtin and not wanted:
            entry.disabled = True
        else:
            _load(ep, entry)
        entries.append(entry)
    if allowed:
        known = {normalize_dist(n) for e in entries for n in (e.name, e.distribution)}
        for unknown in sorted(allowed - known):  # a typo here would silently load nothing
            warnings.warn(f"DLKIT_PLUGINS names '{unknown}', which is no installed plugin or distribution."
                          f"{suggest(unknown, known)}", stacklevel=2)
    _resolve_duplicates(entries)
    return tuple(sorted(entries, key=lambda e: (e.name, not e.builtin, e.distribution.lower())))


def _resolve_duplicates(entries: list[PluginEntry]) -> None:
    """Same name from several distributions: the --plugin choice, else built-in, else by distribution name."""
    by_name: dict[str, list[PluginEntry]] = {}
    for e in entries:
        if not e.disabled:
            by_name.setdefault(e.name, []).append(e)
    for name, group in by_name.items():
        if len(group) < 2:
            continue
        chosen = _chosen.get(name)
        group.sort(key=lambda e: (normalize_dist(e.distribution) != chosen, not e.builtin, e.cls is None,
                                  e.distribution.lower()))
        winner = group[0]
        for loser in group[1:]:
            loser.shadowed_by = winner.distribution
        if chosen == normalize_dist(winner.distribution):
            continue  # the user settled it with --plugin
        dists = ", ".join(e.distribution for e in group)
        warnings.warn(f"algorithm '{name}' is registered by {dists}; using {winner.distribution} "
                      f"(choose another with DIST:{name}, e.g. {group[1].distribution}:{name})",
                      DuplicatePluginWarning, stacklevel=2)


def get(spec: str) -> PluginEntry:
    """Find a plugin by ``NAME`` or ``DIST:NAME``; a clear error if unknown, disabled or broken."""
    entries = discover()
    dist, _, name = spec.rpartition(":")
    same_name = [e for e in entries if e.name == name]
    candidates = [e for e in same_name if not dist or normalize_dist(e.distribution) == normalize_dist(dist)]
    if not candidates:
        if same_name:  # the name exists, but not in that distribution
            raise DlkitError(f"distribution '{dist}' provides no algorithm '{name}'; '{name}' comes from "
                             f"{', '.join(e.distribution for e in same_name)}")
        names = sorted({e.name for e in entries})
        raise DlkitError(f"unknown algorithm '{name}'.{suggest(name, names)} "
                         f"Run 'dlkit list' to see the installed algorithms.")
    usable = [e for e in candidates if not e.disabled and e.shadowed_by is None] or candidates
    entry = usable[0]
    if entry.disabled:
        raise DlkitError(f"plugin '{name}' from {entry.distribution} is disabled by DLKIT_PLUGINS")
    if entry.error:
        raise DlkitError(f"plugin '{name}' from {entry.distribution} is broken: {entry.error}")
    return entry


def choose(spec: str) -> PluginEntry:
    """Make ``DIST:NAME`` the plugin that plain ``NAME`` means in this process (``dlkit --plugin``)."""
    dist, sep, name = spec.rpartition(":")
    if not sep or not dist or not name:
        raise DlkitError(f"--plugin expects DIST:NAME (e.g. dlkit-foo:cnn), got '{spec}'")
    _chosen[name] = normalize_dist(dist)
    discover.cache_clear()  # re-resolve duplicates with the choice (warnings only where still ambiguous)
    return get(spec)
