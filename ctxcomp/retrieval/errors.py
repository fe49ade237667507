"""Errors raised by :mod:`ctxcomp.retrieval`.

All of them are :class:`~ctxcomp.errors.CtxcompError` subclasses whose message names the offending
field (a corpus line, a file of the index directory, the embedder) and says how to fix it.

Example:
    >>> from ctxcomp.retrieval.errors import CorpusError
    >>> err = CorpusError("corpus.jsonl:3.id", "is missing", "give every line a string 'id'")
    >>> str(err)
    "corpus.jsonl:3.id: is missing. Fix: give every line a string 'id'."
"""

from __future__ import annotations

from typing import Any

from ctxcomp.errors import ConfigError, FieldError, InputError


class CorpusError(InputError):
    """One or more corpus records are invalid (bad JSON, missing or mistyped field, duplicate id).

    Attributes:
        problems: Every problem found, as ``{"line", "id", "reason"}`` dicts (``line`` is 1-based
            for JSONL files and the 0-based position for in-memory iterables).
    """

    def __init__(
        self, field: str, problem: str, fix: str, problems: list[dict[str, Any]] | None = None
    ) -> None:
        super().__init__(field, problem, fix)
        self.problems = list(problems or [])


class EmptyCorpusError(InputError):
    """The corpus has no (valid) documents, so there is nothing to index."""


class IndexFormatError(FieldError):
    """An index directory is missing, truncated, corrupted or not a ctxcomp index."""


class EmbedderMismatchError(ConfigError):
    """The embedder given at load time differs (id or dimension) from the one the index was built with."""


__all__ = ["CorpusError", "EmbedderMismatchError", "EmptyCorpusError", "IndexFormatError"]
