"""Errors raised by ctxcomp.

Every error is a :class:`CtxcompError`. Messages name the offending field and say how to fix it,
so a user can act on them without reading the source.

Example:
    >>> from ctxcomp.errors import InputError
    >>> try:
    ...     raise InputError("query", "must be a non-empty string", "pass the user's question")
    ... except InputError as err:
    ...     print(err.field)
    query
"""

from __future__ import annotations


class CtxcompError(Exception):
    """Base class of every error ctxcomp raises on purpose."""


class FieldError(CtxcompError, ValueError):
    """A value supplied by the caller is wrong.

    Args:
        field: Name of the offending argument, config field or input field.
        problem: What is wrong with it.
        fix: What to do instead.
    """

    def __init__(self, field: str, problem: str, fix: str) -> None:
        self.field = field
        self.problem = problem
        self.fix = fix
        super().__init__(f"{field}: {problem}. Fix: {fix}.")


class InputError(FieldError):
    """Bad query, documents, budget or ratio passed to a compression call."""


class ConfigError(FieldError):
    """A :class:`~ctxcomp.config.CompressionConfig` field is invalid."""


class ModelError(CtxcompError):
    """A model spec cannot be resolved or loaded."""


class UnknownModelError(ModelError, ValueError):
    """The model spec is not a preset, a local path, a GGUF file or a loadable hub id."""


class IntegrityError(ModelError):
    """A downloaded or assembled weights file does not have the expected sha256."""


class MissingDependencyError(CtxcompError, ImportError):
    """An optional dependency is not installed; the message names the extra that provides it."""

    def __init__(self, module: str, extra: str, purpose: str) -> None:
        self.module = module
        self.extra = extra
        super().__init__(
            f"{purpose} needs the Python package '{module}', which is not installed. "
            f"Fix: pip install 'ctxcomp[{extra}]'."
        )


class ProbeMismatchError(CtxcompError):
    """A trained probe or calibration profile does not belong to the model it is used with."""


__all__ = [
    "ConfigError",
    "CtxcompError",
    "FieldError",
    "InputError",
    "IntegrityError",
    "MissingDependencyError",
    "ModelError",
    "ProbeMismatchError",
    "UnknownModelError",
]
