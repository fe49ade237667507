"""Retrieve then compress: ``Pipeline(index, compressor).run(query)``.

The compressor is anything with ``compress(query, docs, *, budget=None, ratio=None)`` and an async
``acompress`` of the same signature, such as :class:`ctxcomp.Compressor`. Retrieval scores travel in
each document's metadata (``ctxcomp_retrieval_score``), so they survive compression.

Example:
    >>> from ctxcomp import Compressor, CompressionConfig, Document  # doctest: +SKIP
    >>> from ctxcomp.retrieval import FaissIndex, Pipeline  # doctest: +SKIP
    >>> pipe = Pipeline(FaissIndex.load("my-index"), Compressor(CompressionConfig()))  # doctest: +SKIP
    >>> print(pipe.run("who wrote Hamlet?", k=20, budget=300).text)  # doctest: +SKIP
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any, Protocol, runtime_checkable

from ctxcomp.errors import ConfigError
from ctxcomp.retrieval.index import FaissIndex
from ctxcomp.types import CompressedContext, Document


@runtime_checkable
class SupportsCompress(Protocol):
    """What :class:`Pipeline` needs from a compressor (``ctxcomp.Compressor`` has it)."""

    def compress(
        self, query: str, docs: Sequence[Document], *, budget: int | None = None, ratio: float | None = None
    ) -> CompressedContext:
        """Compress ``docs`` for ``query``."""
        ...

    async def acompress(
        self, query: str, docs: Sequence[Document], *, budget: int | None = None, ratio: float | None = None
    ) -> CompressedContext:
        """Async :meth:`compress`."""
        ...


class Pipeline:
    """A retriever (:class:`~ctxcomp.retrieval.FaissIndex`) followed by a compressor.

    Args:
        index: Where passages come from.
        compressor: Any object with ``compress`` and ``acompress`` (see :class:`SupportsCompress`).

    Raises:
        ConfigError: ``compressor`` lacks ``compress``/``acompress`` or ``index`` has no ``search``.

    Example:
        >>> from ctxcomp.retrieval import HashingEmbedder
        >>> class KeepAll:  # a stand-in compressor
        ...     def compress(self, query, docs, *, budget=None, ratio=None):
        ...         return [d.id for d in docs]
        ...     async def acompress(self, query, docs, *, budget=None, ratio=None):
        ...         return self.compress(query, docs)
        >>> index = FaissIndex.build([Document("a", "red apple")], HashingEmbedder(), progress=False)
        >>> Pipeline(index, KeepAll()).run("apple", k=3)
        ['a']
    """

    def __init__(self, index: FaissIndex, compressor: SupportsCompress | Any) -> None:
        if not callable(getattr(index, "search", None)):
            raise ConfigError(
                "index", f"must have a search() method, got {type(index).__name__}", "pass a FaissIndex"
            )
        for name in ("compress", "acompress"):
            if not callable(getattr(compressor, name, None)):
                raise ConfigError(
                    "compressor",
                    f"{type(compressor).__name__} has no {name}() method",
                    "pass a ctxcomp.Compressor (or an object with compress() and async acompress())",
                )
        self.index = index
        self.compressor = compressor

    def retrieve(self, query: str, k: int = 20) -> list[Document]:
        """The top-``k`` documents for ``query`` (scores in ``metadata["ctxcomp_retrieval_score"]``).

        Example:
            >>> pipe.retrieve("apple", k=5)  # doctest: +SKIP
        """
        return self.index.search(query, k=k)

    def run(
        self, query: str, k: int = 20, budget: int | None = None, ratio: float | None = None
    ) -> CompressedContext:
        """Retrieve ``k`` passages and compress them to ``budget`` tokens (or keep ``ratio`` of them).

        Args:
            query: The question.
            k: Passages to retrieve.
            budget: Token budget under the reader's tokenizer (exclusive with ``ratio``).
            ratio: Share of tokens to keep (exclusive with ``budget``); neither = the compressor's default.

        Returns:
            The compressor's :class:`~ctxcomp.types.CompressedContext`.

        Raises:
            InputError: Bad ``query`` or ``k`` (from the index), or bad budget/ratio (from the compressor).

        Example:
            >>> ctx = pipe.run("who wrote Hamlet?", k=20, budget=300)  # doctest: +SKIP
        """
        docs = self.retrieve(query, k)
        return self.compressor.compress(query, docs, budget=budget, ratio=ratio)

    async def arun(
        self, query: str, k: int = 20, budget: int | None = None, ratio: float | None = None
    ) -> CompressedContext:
        """Async :meth:`run`: the search runs in a worker thread, then ``await compressor.acompress``.

        Example:
            >>> ctx = await pipe.arun("who wrote Hamlet?", budget=300)  # doctest: +SKIP
        """
        docs = await asyncio.to_thread(self.retrieve, query, k)
        return await self.compressor.acompress(query, docs, budget=budget, ratio=ratio)

    def __repr__(self) -> str:
        return f"Pipeline(index={self.index!r}, compressor={type(self.compressor).__name__})"


__all__ = ["Pipeline", "SupportsCompress"]
