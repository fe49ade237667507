"""Document placement after pruning.

``none`` keeps retrieval order. ``u_shape`` is the fixed baseline of LangChain's
LongContextReorder: by relevance rank, documents 1, 3, 5, ... fill the front and ..., 4, 2 the
back, so the two best sit at the two ends.

Example:
    >>> u_shape([0.9, 0.8, 0.7, 0.6, 0.5])
    [0, 2, 4, 3, 1]
"""

from __future__ import annotations

from collections.abc import Sequence


def rank_order(scores: Sequence[float]) -> list[int]:
    """Indices by descending score; ties keep input order.

    Args:
        scores: One score per document.

    Returns:
        Indices, best first.
    """
    return sorted(range(len(scores)), key=lambda i: (-scores[i], i))


def u_shape(scores: Sequence[float]) -> list[int]:
    """The fixed U-shape order: ranks 1,3,5,... at the front, ...,4,2 at the back.

    Args:
        scores: One score per document.

    Returns:
        Document indices in output order.
    """
    ranked = rank_order(scores)
    return ranked[0::2] + ranked[1::2][::-1]


def reorder(name: str, scores: Sequence[float]) -> list[int]:
    """Order documents by a named strategy.

    Args:
        name: ``"none"`` or ``"u_shape"``.
        scores: Relevance score per document (input order).

    Returns:
        Document indices in output order.
    """
    if name == "none":
        return list(range(len(scores)))
    if name == "u_shape":
        return u_shape(scores)
    raise ValueError(f"unknown reorder strategy {name!r}")
