"""Text utilities: sentence splitting with exact character offsets (token counting lives beside it).

Example:
    >>> from ctxcomp.text import split_spans
    >>> split_spans("One. Two.")
    [(0, 4), (5, 9)]
"""

from __future__ import annotations

from ctxcomp.text.split import split_documents, split_sentences, split_spans

__all__ = ["split_documents", "split_sentences", "split_spans"]
