"""Turning documents into checked unit vectors, chunk by chunk, for :class:`~ctxcomp.retrieval.FaissIndex`.

Corpus intake for ``FaissIndex.build`` (validate everything first, report skipped records), embedding
in chunks of :data:`CHUNK` documents behind a tqdm bar on stderr, the IVF training sample (embedded
once and handed back so it is never embedded twice), and the shape/finiteness check plus L2
normalisation every vector goes through. Nothing here touches faiss.

Example:
    >>> from ctxcomp import Document
    >>> from ctxcomp.retrieval import HashingEmbedder
    >>> docs = [Document("a", "red apple"), Document("b", "blue sky")]
    >>> chunks = []
    >>> embed_in_chunks(
    ...     text_embedder(HashingEmbedder(dim=8), docs), len(docs), 8,
    ...     sink=lambda rows, vecs: chunks.append(vecs.shape), progress=False,
    ... )
    >>> chunks
    [(2, 8)]
"""

from __future__ import annotations

import os
import sys
import warnings
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import numpy as np

from ctxcomp.errors import InputError
from ctxcomp.retrieval.corpus import check_documents, read_corpus, write_problems
from ctxcomp.retrieval.embedders import Embedder, normalise_rows
from ctxcomp.retrieval.errors import EmptyCorpusError
from ctxcomp.types import Document

#: Documents embedded and added per step.
CHUNK = 1024

#: ``embed_rows(positions)``: vectors ``[len(positions), dim]`` of the documents at those positions.
RowEmbedder = Callable[[np.ndarray], np.ndarray]


def progress_bar(total: int, desc: str, progress: bool | None) -> Any:
    """A tqdm bar counting documents on stderr.

    Args:
        total: Number of documents.
        desc: Label.
        progress: Show it (``None``: only on a terminal).

    Returns:
        The bar (a context manager with ``update(n)``).

    Example:
        >>> with progress_bar(3, "indexing", False) as bar:
        ...     bar.update(3)
    """
    from tqdm.auto import tqdm

    return tqdm(
        total=total,
        desc=desc,
        unit="doc",
        file=sys.stderr,
        disable=None if progress is None else not progress,
    )


def read_source(
    source: Iterable[Document] | str | os.PathLike[str],
    *,
    skip_invalid: bool = False,
    errors_path: str | os.PathLike[str] | None = None,
    stacklevel: int = 1,
) -> tuple[list[Document], list[dict[str, Any]]]:
    """Validate a whole corpus (Documents or a JSONL file) before anything is embedded.

    Args:
        source: Iterable of Documents, or a path to a ``.jsonl(.gz)`` corpus.
        skip_invalid: Skip bad records (returned as problems, with a warning) instead of failing.
        errors_path: Where to write the problems as JSONL (written even when there are none).
        stacklevel: Where the warning about skipped records points, counted as in
            :func:`warnings.warn` but from the caller of this function (1: that caller).

    Returns:
        ``(documents, problems)``.

    Raises:
        CorpusError: Invalid record (strict mode), with its line number.
        EmptyCorpusError: No valid document.

    Example:
        >>> docs, problems = read_source([Document("a", "x")])
        >>> [d.id for d in docs], problems
        (['a'], [])
    """
    if isinstance(source, (str, os.PathLike)):
        docs, problems = read_corpus(source, skip_invalid=skip_invalid)
        where = str(source)
    else:
        docs, problems = check_documents(source, skip_invalid=skip_invalid)
        where = "docs"
    if errors_path is not None:
        write_problems(errors_path, problems)
    if problems:
        hint = f" (see {errors_path})" if errors_path is not None else " (see index.skipped)"
        warnings.warn(
            f"skipped {len(problems)} invalid record(s) of {where}{hint}", stacklevel=stacklevel + 1
        )
    if not docs:
        raise EmptyCorpusError(
            where,
            "has no valid documents" + (f" ({len(problems)} invalid record(s) skipped)" if problems else ""),
            'pass at least one document ({"id": ..., "text": ...})',
        )
    return docs, problems


def text_embedder(embedder: Embedder, docs: Sequence[Document], batch_size: int | None = None) -> RowEmbedder:
    """A :data:`RowEmbedder` that embeds the texts of ``docs`` at the given positions.

    Example:
        >>> from ctxcomp.retrieval import HashingEmbedder
        >>> rows = text_embedder(HashingEmbedder(dim=8), [Document("a", "x"), Document("b", "y")])
        >>> rows(np.array([1])).shape
        (1, 8)
    """

    def embed_rows(rows: np.ndarray) -> np.ndarray:
        return embedder.embed([docs[int(i)].text for i in rows], batch_size=batch_size)  # [len(rows), d]

    return embed_rows


def check_vectors(vectors: np.ndarray, n: int, dim: int) -> np.ndarray:
    """Check that ``vectors`` is a finite ``[n, dim]`` array and L2-normalise its rows.

    Args:
        vectors: What an embedder (or the caller) produced.
        n: Expected number of rows.
        dim: Expected dimension.

    Returns:
        float32 ``[n, dim]``, rows of unit length (all-zero rows stay zero).

    Raises:
        InputError: Wrong shape, NaN or infinite values.

    Example:
        >>> check_vectors(np.array([[3.0, 4.0]]), 1, 2).tolist()
        [[0.6000000238418579, 0.800000011920929]]
    """
    vecs = np.asarray(vectors)  # [n, d]
    if vecs.shape != (n, dim):
        raise InputError(
            "vectors", f"expected shape ({n}, {dim}), got {vecs.shape}", "match the embedder's dim"
        )
    if not np.isfinite(vecs).all():
        raise InputError("vectors", "contain NaN or infinite values", "check the embedder's output")
    return normalise_rows(vecs)  # [n, d]


def embed_sample(
    embed_rows: RowEmbedder, n: int, size: int, dim: int, *, seed: int = 0, progress: bool | None = False
) -> tuple[np.ndarray, np.ndarray]:
    """Embed a random sample of ``size`` of the ``n`` documents (the IVF training set).

    Args:
        embed_rows: Embeds documents by position.
        n: Number of documents.
        size: Sample size, at most ``n``.
        dim: Vector dimension.
        seed: Seed of the sample.
        progress: Show a progress bar.

    Returns:
        ``(rows, vectors)``: sorted int64 positions ``[size]`` and their checked vectors ``[size, dim]``.

    Example:
        >>> rows, vecs = embed_sample(lambda r: np.ones((len(r), 2)), 10, 3, 2, seed=0)
        >>> rows.shape, vecs.shape
        ((3,), (3, 2))
    """
    rng = np.random.default_rng(seed)
    rows = np.sort(rng.choice(n, size=size, replace=False))  # [t]
    train = np.empty((size, dim), dtype=np.float32)  # [t, d]
    with progress_bar(size, "embedding IVF training sample", progress) as bar:
        for lo in range(0, size, CHUNK):
            part = rows[lo : lo + CHUNK]  # [b]
            train[lo : lo + len(part)] = check_vectors(embed_rows(part), len(part), dim)  # [b, d]
            bar.update(len(part))
    return rows.astype(np.int64), train


def embed_in_chunks(
    embed_rows: RowEmbedder,
    n: int,
    dim: int,
    *,
    sink: Callable[[np.ndarray, np.ndarray], None],
    known: tuple[np.ndarray, np.ndarray] | None = None,
    progress: bool | None = False,
) -> None:
    """Embed ``n`` documents :data:`CHUNK` at a time and hand each chunk to ``sink(rows, vectors)``.

    Args:
        embed_rows: Embeds documents by position.
        n: Number of documents.
        dim: Vector dimension.
        sink: Receives int positions ``[b]`` and checked float32 vectors ``[b, dim]``, in order.
        known: ``(sorted rows [t], vectors [t, dim])`` already embedded (see :func:`embed_sample`);
            they are reused, not embedded again.
        progress: Show a progress bar ("indexing").

    Example:
        >>> seen = []
        >>> embed_in_chunks(lambda r: np.ones((len(r), 2)), 3, 2, sink=lambda r, v: seen.append(r.tolist()))
        >>> seen
        [[0, 1, 2]]
    """
    known_rows, known_vecs = known if known is not None else (np.zeros(0, dtype=np.int64), None)  # [t]
    with progress_bar(n, "indexing", progress) as bar:
        for lo in range(0, n, CHUNK):
            rows = np.arange(lo, min(n, lo + CHUNK))  # [b]
            vecs = np.empty((len(rows), dim), dtype=np.float32)  # [b, d]
            have = np.isin(rows, known_rows)  # [b]
            if have.any() and known_vecs is not None:
                vecs[have] = known_vecs[np.searchsorted(known_rows, rows[have])]  # [b_known, d]
            if not have.all():
                todo = rows[~have]  # [b_new]
                vecs[~have] = check_vectors(embed_rows(todo), len(todo), dim)  # [b_new, d]
            sink(rows, vecs)
            bar.update(len(rows))


__all__ = [
    "CHUNK",
    "RowEmbedder",
    "check_vectors",
    "embed_in_chunks",
    "embed_sample",
    "progress_bar",
    "read_source",
    "text_embedder",
]
