"""Retrieval: embedders, a FAISS index of Documents, and a retrieve-then-compress Pipeline.

Importing this package is light: faiss, torch and sentence-transformers load on first use, and a
missing one raises :class:`~ctxcomp.errors.MissingDependencyError` naming the ``faiss`` extra
(``pip install 'ctxcomp[faiss]'``).

Example:
    >>> from ctxcomp import Document
    >>> from ctxcomp.retrieval import FaissIndex, HashingEmbedder
    >>> docs = [Document("a", "red apple"), Document("b", "blue sky")]
    >>> index = FaissIndex.build(docs, HashingEmbedder(), progress=False)
    >>> index.search("apple", k=1)[0].id
    'a'
"""

from __future__ import annotations

from ctxcomp.retrieval.corpus import check_documents, iter_corpus, read_corpus, write_problems
from ctxcomp.retrieval.embedders import (
    DEFAULT_EMBEDDER,
    Embedder,
    HashingEmbedder,
    SentenceTransformerEmbedder,
    packaged_model_dir,
    register_embedder,
    resolve_embedder,
)
from ctxcomp.retrieval.errors import CorpusError, EmbedderMismatchError, EmptyCorpusError, IndexFormatError
from ctxcomp.retrieval.index import FLAT_MAX_VECTORS, SCORE_KEY, FaissIndex, IndexKind, auto_kind, ivf_nlist
from ctxcomp.retrieval.pipeline import Pipeline, SupportsCompress

__all__ = [
    "DEFAULT_EMBEDDER",
    "FLAT_MAX_VECTORS",
    "SCORE_KEY",
    "CorpusError",
    "Embedder",
    "EmbedderMismatchError",
    "EmptyCorpusError",
    "FaissIndex",
    "HashingEmbedder",
    "IndexFormatError",
    "IndexKind",
    "Pipeline",
    "SentenceTransformerEmbedder",
    "SupportsCompress",
    "auto_kind",
    "check_documents",
    "iter_corpus",
    "ivf_nlist",
    "packaged_model_dir",
    "read_corpus",
    "register_embedder",
    "resolve_embedder",
    "write_problems",
]
