"""Named, lazily imported extension points: scorers and reorderers.

A :class:`Registry` maps names to objects. Built-in entries are ``"module:attribute"`` strings
imported on first use (so ``import ctxcomp`` and config validation stay light); user entries are
registered objects. :class:`~ctxcomp.config.CompressionConfig` validates ``scorer`` and
``reorder`` against these registries, so ``register_scorer`` / ``register_reorderer`` really
extend what a config accepts.

Example:
    >>> "u_shape" in REORDERERS.names() and "attention" in SCORERS.names()
    True
"""

from __future__ import annotations

import importlib
import threading
from typing import Any, Generic, TypeVar

from ctxcomp.errors import ConfigError

T = TypeVar("T")


class Registry(Generic[T]):
    """Names -> objects, built-ins imported lazily.

    Args:
        kind: What the entries are, for messages (``"scorer"``).
        field: The config field that names an entry, for messages (``"CompressionConfig.scorer"``).
        builtins: ``{name: "module:attribute"}`` imported on first :meth:`get`.

    Example:
        >>> r: Registry[int] = Registry("number", "n", {})
        >>> r.register("one", 1)
        >>> r.get("one"), r.names()
        (1, ['one'])
    """

    def __init__(self, kind: str, field: str, builtins: dict[str, str]) -> None:
        self.kind = kind
        self.field = field
        self._entries: dict[str, T | str] = dict(builtins)
        self._lock = threading.Lock()

    def names(self) -> list[str]:
        """Registered names, sorted.

        Returns:
            The names.
        """
        return sorted(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def register(self, name: str, obj: T) -> None:
        """Add or replace an entry.

        Args:
            name: The name configs will use.
            obj: The entry.

        Raises:
            ConfigError: ``name`` is not a non-empty string.
        """
        if not isinstance(name, str) or not name.strip():
            raise ConfigError(f"{self.kind} name", f"must be a non-empty str, got {name!r}", "pass a name")
        with self._lock:
            self._entries[name] = obj

    def get(self, name: str) -> T:
        """The entry called ``name`` (imported on first use for built-ins).

        Args:
            name: A registered name.

        Returns:
            The entry.

        Raises:
            ConfigError: No such entry (the message lists the names).
        """
        with self._lock:
            entry = self._entries.get(name)
            if entry is None:
                raise ConfigError(self.field, f"unknown {self.kind} {name!r}", f"use one of {self.names()}")
            if isinstance(entry, str):
                module, _, attr = entry.partition(":")
                loaded: Any = getattr(importlib.import_module(module), attr)
                self._entries[name] = loaded
                return loaded
            return entry


#: Scorers by name (``CompressionConfig.scorer``); ``"auto"`` is resolved by the compressor.
SCORERS: Registry[Any] = Registry(
    "scorer",
    "CompressionConfig.scorer",
    {
        "attention": "ctxcomp.compressors.scorers:attention_scorer",
        "focus": "ctxcomp.compressors.scorers:focus_scorer",
        "probe": "ctxcomp.compressors.scorers:probe_scorer",
    },
)

#: Reorder strategies by name (``CompressionConfig.reorder``).
REORDERERS: Registry[Any] = Registry(
    "reorder strategy",
    "CompressionConfig.reorder",
    {
        name: f"ctxcomp.compressors.reorder:{name.upper()}"
        for name in ("none", "u_shape", "attnrank", "attention_sort", "found_in_middle")
    },
)

__all__ = ["REORDERERS", "SCORERS", "Registry"]
