"""Discovery and lazy loading of plugins (entry-point group ``feedbackkit.plugins``).

- Listing names reads package metadata only; no plugin module is imported.
- A plugin is imported on first use by name. One that fails to import is recorded with its
  error; it never breaks the listing or loading of the others.
- Two distributions exporting the same name is an error naming both, unless the caller picks
  one (``get(name, distribution=...)`` or ``FEEDBACKKIT_PLUGIN_CHOICE="name=dist,..."``).
- ``FEEDBACKKIT_DISABLE_PLUGINS="a,b"`` hides plugins by name or by distribution;
  ``FEEDBACKKIT_PLUGIN_AUTOLOAD=0`` keeps only the built-ins shipped with feedbackkit.
- ``register(method)`` adds a method for this process (notebooks, tests) without packaging.
"""

from __future__ import annotations

import os
import traceback
from dataclasses import dataclass
from importlib.metadata import EntryPoint, entry_points

from .plugin import Method

__all__ = [
    "GROUP",
    "DuplicatePluginError",
    "Entry",
    "PluginLoadError",
    "Record",
    "UnknownPluginError",
    "entries",
    "get",
    "names",
    "records",
    "refresh",
    "register",
]

GROUP = "feedbackkit.plugins"
BUILTIN_DISTRIBUTION = "feedbackkit"
RUNTIME_DISTRIBUTION = "<runtime>"


class UnknownPluginError(LookupError):
    """No plugin of that name is installed (or it is disabled)."""


class DuplicatePluginError(LookupError):
    """Several distributions export the same plugin name."""


class PluginLoadError(RuntimeError):
    """A plugin failed to import or does not export a valid Method; ``__cause__`` holds why."""


@dataclass(frozen=True)
class Entry:
    """One discovered plugin, not yet imported."""

    name: str
    distribution: str
    target: str  # "module:attribute", or "<runtime>" for register()
    entry_point: EntryPoint | None = None
    runtime_method: Method | None = None

    @property
    def builtin(self) -> bool:
        return self.distribution == BUILTIN_DISTRIBUTION


@dataclass(frozen=True)
class Record:
    """The outcome of loading one entry: its method, or the error that stopped it."""

    entry: Entry
    method: Method | None
    error: str | None  # one line
    details: str | None = None  # traceback
    duplicate_of: tuple[str, ...] = ()  # other distributions exporting the same name

    @property
    def status(self) -> str:
        if self.error is not None:
            return "failed"
        if self.duplicate_of:
            return "duplicate"
        return "available" if self.method is not None and self.method.available() else "unavailable"


_runtime: dict[str, Method] = {}
_loaded: dict[tuple[str, str], Method] = {}
_failed: dict[tuple[str, str], PluginLoadError] = {}
_discovered: dict[str, list[Entry]] | None = None


def _env_list(variable: str) -> set[str]:
    return {item.strip() for item in os.environ.get(variable, "").split(",") if item.strip()}


def _choices() -> dict[str, str]:
    pairs = (item.split("=", 1) for item in _env_list("FEEDBACKKIT_PLUGIN_CHOICE") if "=" in item)
    return {name.strip(): dist.strip() for name, dist in pairs}


def _discover() -> dict[str, list[Entry]]:
    disabled = _env_list("FEEDBACKKIT_DISABLE_PLUGINS")
    builtins_only = os.environ.get("FEEDBACKKIT_PLUGIN_AUTOLOAD", "1").strip() == "0"
    found: dict[str, list[Entry]] = {}
    for ep in entry_points(group=GROUP):
        dist = ep.dist.name if ep.dist is not None else "<unknown>"
        entry = Entry(name=ep.name, distribution=dist, target=ep.value, entry_point=ep)
        if ep.name in disabled or dist in disabled or (builtins_only and not entry.builtin):
            continue
        bucket = found.setdefault(ep.name, [])
        if all(e.distribution != dist for e in bucket):  # same dist seen twice on sys.path
            bucket.append(entry)
    for name, method in _runtime.items():
        if name not in disabled:
            found.setdefault(name, []).append(
                Entry(name=name, distribution=RUNTIME_DISTRIBUTION, target="<runtime>", runtime_method=method)
            )
    return found


def entries() -> dict[str, list[Entry]]:
    """Every discovered plugin name with the entries (one per distribution) that export it."""
    global _discovered
    if _discovered is None:
        _discovered = _discover()
    return _discovered


def names() -> list[str]:
    """Sorted plugin names. Imports nothing."""
    return sorted(entries())


def refresh() -> None:
    """Forgets discovered and loaded plugins (after installing or uninstalling distributions)."""
    global _discovered
    _discovered = None
    _loaded.clear()
    _failed.clear()


def register(method: Method) -> None:
    """Adds `method` for this process, as if a distribution named "<runtime>" exported it."""
    if not isinstance(method, Method):
        raise TypeError(f"register() takes a feedbackkit.Method; got {type(method).__name__}")
    _runtime[method.name] = method
    refresh()


def _load(entry: Entry) -> Method:
    key = (entry.name, entry.distribution)
    if key in _loaded:
        return _loaded[key]
    if key in _failed:
        raise _failed[key]
    try:
        obj = entry.runtime_method if entry.entry_point is None else entry.entry_point.load()
        if not isinstance(obj, Method):
            raise TypeError(f"{entry.target} is a {type(obj).__name__}, not a feedbackkit.Method")
        if obj.name != entry.name:
            raise ValueError(
                f"{entry.target} is the method {obj.name!r}, but its entry point is named {entry.name!r}"
            )
    except (Exception, SystemExit) as cause:
        error = PluginLoadError(
            f"plugin {entry.name!r} from distribution {entry.distribution!r} failed to load: "
            f"{type(cause).__name__}: {cause}"
        )
        error.__cause__ = cause
        _failed[key] = error
        raise error from cause
    _loaded[key] = obj
    return obj


def _resolve(name: str, distribution: str | None) -> Entry:
    found = entries().get(name)
    if not found:
        raise UnknownPluginError(
            f"no feedbackkit plugin named {name!r} (installed: {', '.join(names()) or 'none'}; "
            "disabled ones are hidden by FEEDBACKKIT_DISABLE_PLUGINS / FEEDBACKKIT_PLUGIN_AUTOLOAD=0)"
        )
    distribution = distribution or _choices().get(name)
    if distribution is not None:
        for entry in found:
            if entry.distribution == distribution:
                return entry
        raise UnknownPluginError(
            f"plugin {name!r} is not exported by distribution {distribution!r} "
            f"(it is by: {', '.join(e.distribution for e in found)})"
        )
    if len(found) > 1:
        dists = " and ".join(repr(e.distribution) for e in found)
        raise DuplicatePluginError(
            f"plugin name {name!r} is exported by {dists}; pick one with "
            f"get({name!r}, distribution=...) or FEEDBACKKIT_PLUGIN_CHOICE='{name}=<distribution>'"
        )
    return found[0]


def get(name: str, *, distribution: str | None = None) -> Method:
    """The method called `name`, imported on first use.

    Raises UnknownPluginError, DuplicatePluginError, or PluginLoadError (whose __cause__ is the
    original exception)."""
    return _load(_resolve(name, distribution))


def records(kind: str | None = None) -> list[Record]:
    """Loads every plugin in isolation and reports each one (failed ones included), sorted by
    name. With `kind`, failed plugins are kept (their kind is unknown) and others filtered."""
    out = []
    for _, found in sorted(entries().items()):
        for entry in found:
            others = tuple(e.distribution for e in found if e is not entry)
            try:
                method = _load(entry)
            except PluginLoadError as error:
                details = "".join(traceback.format_exception(error.__cause__)) if error.__cause__ else None
                out.append(Record(entry, None, str(error), details, others))
                continue
            if kind is None or method.kind == kind:
                out.append(Record(entry, method, None, None, others))
    return out
