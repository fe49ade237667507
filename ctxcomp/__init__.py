"""ctxcomp: compress retrieved context for RAG with a small proxy LLM's attention.

The package import is light: torch, transformers and friends load on first use.

Example:
    >>> import ctxcomp
    >>> ctxcomp.Document(id="a", text="Paris is the capital of France.").id
    'a'
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ctxcomp.config import DEFAULT_PROXY, DEFAULT_RATIO, CompressionConfig
from ctxcomp.errors import CtxcompError
from ctxcomp.types import CompressedContext, CompressedDocument, Document, ScoredSentence, Stats

__version__ = "0.1.0"

if TYPE_CHECKING:
    from ctxcomp.api import Compressor, compress

__all__ = [
    "DEFAULT_PROXY",
    "DEFAULT_RATIO",
    "CompressedContext",
    "CompressedDocument",
    "CompressionConfig",
    "Compressor",
    "CtxcompError",
    "Document",
    "ScoredSentence",
    "Stats",
    "__version__",
    "compress",
]


def __getattr__(name: str) -> Any:
    if name in ("compress", "Compressor"):
        from ctxcomp import api

        return getattr(api, name)
    raise AttributeError(f"module 'ctxcomp' has no attribute {name!r}")
