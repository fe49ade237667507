"""Lazy imports of optional dependencies with an install hint."""

from __future__ import annotations

import importlib
from types import ModuleType

from ctxcomp.errors import MissingDependencyError


def require(module: str, extra: str, purpose: str) -> ModuleType:
    """Import ``module`` or raise :class:`MissingDependencyError` naming ``extra``.

    Args:
        module: Dotted module name, e.g. ``"faiss"``.
        extra: The ctxcomp extra that installs it, e.g. ``"faiss"``.
        purpose: What needs it, for the message.

    Returns:
        The imported module.

    Example:
        >>> json = require("json", "core", "reading JSON")
        >>> json.dumps([1])
        '[1]'
    """
    try:
        return importlib.import_module(module)
    except ImportError as err:
        top = module.split(".")[0]
        if err.name is not None and err.name.split(".")[0] != top:
            raise
        raise MissingDependencyError(top, extra, purpose) from err
