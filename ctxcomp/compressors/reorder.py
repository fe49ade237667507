"""Document placement after pruning: put the kept documents where the reader looks.

Reordering moves whole documents; the kept sentences inside a document keep their source order.
Strategies, by name (:data:`ctxcomp.registry.REORDERERS`, extensible with :func:`register_reorderer`;
each says whether it needs a reader model):

``none``
    Keep retrieval order.
``u_shape``
    The fixed baseline of LangChain's LongContextReorder: by relevance rank, documents 1, 3, 5, ...
    fill the front and ..., 4, 2 the back, so the two best sit at the two ends. Deterministic
    (ties keep input order); needs no model.
``attnrank``
    The document of relevance rank ``i`` goes to the ``i``-th most attended slot of the reader's
    measured :class:`~ctxcomp.compressors.profile.PositionProfile` (interpolated to the number
    of kept documents). Needs a profile: the one shipped for the reader, or one written by
    ``ctxcomp calibrate``. No prefill.
``attention_sort``
    Attention sorting (Peysakhovich & Lerer, 2023): one step of the reader over
    ``[documents ; question]``, documents sorted by the attention they received with the most
    attended LAST (nearest the question), repeated ``rounds`` times (default 2). One prefill per round.
``found_in_middle``
    Found-in-the-middle calibration (Hsieh et al., 2024): relevance = the reader's attention to a
    document minus the attention a content-free dummy document of the same length gets at the
    same slot (:func:`~ctxcomp.compressors.reader.calibrated_scores`); documents sorted by it with
    the best LAST, as in attention sorting. Two prefills.

Example:
    >>> u_shape([0.9, 0.8, 0.7, 0.6, 0.5])
    [0, 2, 4, 3, 1]
    >>> reorder("attnrank", [0.1, 0.9, 0.5], profile=PositionProfile(
    ...     "m", None, 3, (0.2, 0.3, 0.5), (0.1, 0.2, 0.4), (0.3, 0.4, 0.6), 20, "x"))
    [0, 2, 1]
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ctxcomp.compressors.profile import PositionProfile, resolve_profile
from ctxcomp.compressors.reader import Reader, calibrated_scores
from ctxcomp.errors import ConfigError
from ctxcomp.registry import REORDERERS


def rank_order(scores: Sequence[float]) -> list[int]:
    """Indices by descending score; ties keep input order.

    Args:
        scores: One score per document.

    Returns:
        Indices, best first.

    Example:
        >>> rank_order([0.1, 0.5, 0.5])
        [1, 2, 0]
    """
    return sorted(range(len(scores)), key=lambda i: (-scores[i], i))


def u_shape(scores: Sequence[float]) -> list[int]:
    """The fixed U-shape order: ranks 1,3,5,... at the front, ...,4,2 at the back.

    Args:
        scores: One score per document.

    Returns:
        Document indices in output order.

    Example:
        >>> u_shape([0.1, 0.2, 0.3, 0.4])
        [3, 1, 0, 2]
    """
    ranked = rank_order(scores)
    return ranked[0::2] + ranked[1::2][::-1]


def attnrank(scores: Sequence[float], profile: PositionProfile) -> list[int]:
    """Place the rank-``i`` document in the ``i``-th most attended slot of ``profile``.

    Args:
        scores: Relevance per document (input order).
        profile: The reader's positional profile (any ``K``; interpolated to ``len(scores)``).

    Returns:
        Document indices in output order.

    Example:
        >>> p = PositionProfile("m", None, 2, (0.3, 0.7), (0.2, 0.6), (0.4, 0.8), 20, "x")
        >>> attnrank([0.9, 0.1, 0.5], p)  # 3 slots (0.2, 0.33, 0.47): best last, worst first
        [1, 2, 0]
    """
    k = len(scores)
    if k <= 1:
        return list(range(k))
    slots = profile.at(k).slot_preference()
    out = [0] * k
    for doc, slot in zip(rank_order(scores), slots, strict=True):
        out[slot] = doc
    return out


def _sort_by(values: np.ndarray, order: list[int]) -> list[int]:
    """Reorder ``order`` ascending by ``values`` (aligned with ``order``), most valued last; stable."""
    idx = sorted(range(len(order)), key=lambda j: (float(values[j]), j))
    return [order[j] for j in idx]


def attention_sort(query: str, docs: Sequence[str], reader: Reader, *, rounds: int = 2) -> list[int]:
    """Attention sorting: sort by the reader's attention, most attended last, ``rounds`` times.

    Args:
        query: The question.
        docs: Document texts (input order).
        reader: The reader.
        rounds: Number of sort rounds (prefills), >= 1.

    Returns:
        Document indices in output order.

    Example:
        >>> attention_sort("Who?", ["Ann did it.", "Rain."], Reader("gemma-3-270m"))  # doctest: +SKIP
        [1, 0]
    """
    if rounds < 1:
        raise ConfigError(
            "attention_sort.rounds", f"must be >= 1, got {rounds}", "pass 1 or more (default 2)"
        )
    order = list(range(len(docs)))
    if len(docs) <= 1:
        return order
    for _ in range(rounds):
        att = reader.doc_attention(query, [docs[i] for i in order])  # [K] by slot
        new = _sort_by(att, order)
        if new == order:
            break
        order = new
    return order


def found_in_middle(query: str, docs: Sequence[str], reader: Reader) -> list[int]:
    """Sort by found-in-the-middle calibrated attention, best last.

    Args:
        query: The question.
        docs: Document texts (input order).
        reader: The reader.

    Returns:
        Document indices in output order.

    Example:
        >>> found_in_middle("Who?", ["Ann did it.", "Rain."], Reader("gemma-3-270m"))  # doctest: +SKIP
        [1, 0]
    """
    if len(docs) <= 1:
        return list(range(len(docs)))
    return _sort_by(calibrated_scores(reader, query, docs), list(range(len(docs))))


# ---------------------------------------------------------------------------------------------- registry
@dataclass(frozen=True)
class ReorderRequest:
    """Everything a reorderer may use.

    Attributes:
        scores: Relevance per document (input order).
        query: The question (attention-based strategies).
        docs: Document texts as the reader will see them (attention-based strategies).
        reader: The reader, or a zero-argument function returning it (called only when needed).
        profile: A profile, a path to one, or ``None`` for the one shipped for the reader.
        force: Accept a profile measured on another model.
        rounds: Rounds of ``attention_sort``.
    """

    scores: Sequence[float]
    query: str | None = None
    docs: Sequence[str] | None = None
    reader: Reader | Callable[[], Reader] | None = None
    profile: PositionProfile | str | Path | None = None
    force: bool = False
    rounds: int = 2

    def get_reader(self, strategy: str) -> Reader:
        """The reader, resolving a lazy one; raises naming the strategy when there is none."""
        r = self.reader
        if r is None:
            raise ConfigError(
                "CompressionConfig.reorder",
                f"{strategy!r} needs a reader model",
                "use it through Compressor (reader_model) or pass reader=Reader(spec)",
            )
        return r if isinstance(r, Reader) else r()

    def texts(self, strategy: str) -> tuple[str, Sequence[str]]:
        """The query and document texts; raises naming the strategy when they are missing."""
        if self.query is None or self.docs is None:
            raise ConfigError(
                "CompressionConfig.reorder",
                f"{strategy!r} needs the query and the document texts",
                "pass query= and docs= to reorder()",
            )
        if len(self.docs) != len(self.scores):
            raise ConfigError(
                "reorder.docs",
                f"has {len(self.docs)} texts for {len(self.scores)} scores",
                "pass one text per score",
            )
        return self.query, self.docs


Reorderer = Callable[[ReorderRequest], list[int]]


@dataclass(frozen=True)
class Strategy:
    """A named reordering strategy.

    Attributes:
        fn: From a :class:`ReorderRequest` to a permutation of ``range(len(scores))``.
        needs_reader: Whether it runs the reader model (a prefill; callers pass ``reader=``).
    """

    fn: Reorderer
    needs_reader: bool = False

    def __call__(self, req: ReorderRequest) -> list[int]:
        return self.fn(req)


def _attnrank(req: ReorderRequest) -> list[int]:
    if len(req.scores) <= 1:
        return list(range(len(req.scores)))
    prof = req.profile
    if req.reader is None:  # no reader to check against: use the profile as given
        if prof is None:
            raise ConfigError(
                "CompressionConfig.position_profile",
                "reorder='attnrank' needs a position profile",
                "pass profile= (a file from `ctxcomp calibrate`) or a reader whose profile ships",
            )
        return attnrank(req.scores, prof if isinstance(prof, PositionProfile) else PositionProfile.load(prof))
    reader = req.get_reader("attnrank")
    profile = resolve_profile(
        prof, reader.model_id, reader.weights_sha256, force=req.force, reader_spec=reader.spec
    )
    return attnrank(req.scores, profile)


def _attention_sort(req: ReorderRequest) -> list[int]:
    if len(req.scores) <= 1:
        return list(range(len(req.scores)))
    query, docs = req.texts("attention_sort")
    return attention_sort(query, docs, req.get_reader("attention_sort"), rounds=req.rounds)


def _found_in_middle(req: ReorderRequest) -> list[int]:
    if len(req.scores) <= 1:
        return list(range(len(req.scores)))
    query, docs = req.texts("found_in_middle")
    return found_in_middle(query, docs, req.get_reader("found_in_middle"))


# The built-in strategies, registered lazily by name in ctxcomp.registry.REORDERERS.
NONE = Strategy(lambda req: list(range(len(req.scores))))
U_SHAPE = Strategy(lambda req: u_shape(req.scores))
# attnrank reads only the reader's identity (to find its profile), never runs it.
ATTNRANK = Strategy(_attnrank)
ATTENTION_SORT = Strategy(_attention_sort, needs_reader=True)
FOUND_IN_MIDDLE = Strategy(_found_in_middle, needs_reader=True)


def strategy(name: str) -> Strategy:
    """The strategy registered as ``name``.

    Args:
        name: A registered name.

    Returns:
        The strategy.

    Raises:
        ConfigError: Unknown name (the message lists the known ones).

    Example:
        >>> strategy("attention_sort").needs_reader
        True
    """
    return _as_strategy(REORDERERS.get(name))


def _as_strategy(obj: Strategy | Reorderer) -> Strategy:
    return obj if isinstance(obj, Strategy) else Strategy(obj)


def register_reorderer(name: str, fn: Reorderer, *, needs_reader: bool = False) -> None:
    """Add (or replace) a named reordering strategy; ``CompressionConfig(reorder=name)`` then accepts it.

    Args:
        name: Strategy name.
        fn: Function from a :class:`ReorderRequest` to a permutation of ``range(len(scores))``.
        needs_reader: Whether it runs the reader model (then it gets ``req.reader``).

    Example:
        >>> register_reorderer("reverse", lambda req: list(range(len(req.scores)))[::-1])
        >>> reorder("reverse", [1.0, 2.0])
        [1, 0]
    """
    REORDERERS.register(name, Strategy(fn, needs_reader))


def reorder(
    name: str,
    scores: Sequence[float],
    *,
    query: str | None = None,
    docs: Sequence[str] | None = None,
    reader: Reader | Callable[[], Reader] | None = None,
    profile: PositionProfile | str | Path | None = None,
    force: bool = False,
    rounds: int = 2,
) -> list[int]:
    """Order documents by a named strategy.

    Args:
        name: A registered strategy (``none``, ``u_shape``, ``attnrank``, ``attention_sort``,
            ``found_in_middle``, or one added with :func:`register_reorderer`).
        scores: Relevance score per document (input order).
        query: The question (attention-based strategies).
        docs: Document texts (attention-based strategies).
        reader: The reader or a function returning it (loaded only if the strategy needs it).
        profile: Position profile or path for ``attnrank`` (``None``: the one shipped for the reader).
        force: Accept a profile measured on another model.
        rounds: Rounds of ``attention_sort``.

    Returns:
        Document indices in output order (a permutation of ``range(len(scores))``).

    Raises:
        ConfigError: Unknown strategy, or a strategy missing what it needs.
        ProbeMismatchError: The profile belongs to another model (and ``force`` is false).

    Example:
        >>> reorder("u_shape", [0.9, 0.8, 0.7])
        [0, 2, 1]
    """
    fn = strategy(name)
    req = ReorderRequest(list(scores), query, docs, reader, profile, force, rounds)
    order = fn(req)
    if sorted(order) != list(range(len(req.scores))):
        raise RuntimeError(f"reorder strategy {name!r} returned {order}, not a permutation")
    return order


__all__ = [
    "ATTENTION_SORT",
    "ATTNRANK",
    "FOUND_IN_MIDDLE",
    "NONE",
    "U_SHAPE",
    "ReorderRequest",
    "Reorderer",
    "Strategy",
    "attention_sort",
    "attnrank",
    "found_in_middle",
    "rank_order",
    "register_reorderer",
    "reorder",
    "strategy",
    "u_shape",
]
