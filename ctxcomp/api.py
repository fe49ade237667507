"""The public verbs: :class:`Compressor` and :func:`compress`.

The pipeline, one direction: split -> score (the proxy's probed prefill, one per window) ->
select (greedy under the budget) -> reorder (once, on the selected documents) -> fit (exact count
of the final text; only sentences drop) -> assemble (text, provenance, stats).

Example:
    >>> from ctxcomp import compress
    >>> ctx = compress("Where is the Eiffel Tower?", ["The Eiffel Tower is in Paris. It is tall."],
    ...                ratio=0.5)  # doctest: +SKIP
    >>> ctx.text  # doctest: +SKIP
    'The Eiffel Tower is in Paris.'
"""

from __future__ import annotations

import asyncio
import functools
import logging
import math
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ctxcomp.compressors.probe import Prober, PromptTemplate, prefetch
from ctxcomp.compressors.prune import (
    DOC_SEPARATOR,
    DocCounts,
    assemble,
    doc_scores,
    doc_text,
    fit_exactly,
    select,
)
from ctxcomp.compressors.reader import Reader
from ctxcomp.compressors.reorder import reorder
from ctxcomp.compressors.scorers import Scorer, ScorerSetup, build_scorer
from ctxcomp.config import DEFAULT_RATIO, CompressionConfig
from ctxcomp.errors import ConfigError, InputError
from ctxcomp.models.probed import ProbedLM
from ctxcomp.text.split import split_documents
from ctxcomp.text.tokens import TokenCounter
from ctxcomp.types import (
    Candidates,
    CompressedContext,
    CompressedDocument,
    DocLike,
    Document,
    ScoredSentence,
    Sentence,
    Stats,
    as_documents,
    check_call,
)

logger = logging.getLogger(__name__)


def check_query(query: object) -> str:
    """Validate a question.

    Args:
        query: The value passed as the question.

    Returns:
        The query unchanged.

    Raises:
        InputError: Not a string, or empty/whitespace.

    Example:
        >>> check_query("Who?")
        'Who?'
    """
    if not isinstance(query, str):
        raise InputError(
            "query", f"must be a str, got {type(query).__name__}", "pass the question as a string"
        )
    if not query.strip():
        raise InputError("query", "is empty", "pass the user's question; compression is relative to it")
    return query


def resolve_budget(original_tokens: int, budget: int | None, ratio: float | None) -> int:
    """Turn ``budget``/``ratio`` into a token budget, validating both.

    Args:
        original_tokens: Tokens of the uncompressed context.
        budget: Explicit token budget, or ``None``.
        ratio: Share of the original tokens to keep, in ``(0, 1]``, or ``None``.

    Returns:
        The budget (at least 1).

    Raises:
        InputError: Both given, ``budget <= 0`` or ``ratio`` outside ``(0, 1]``.

    Example:
        >>> resolve_budget(1000, None, 0.2)
        200
    """
    if budget is not None and ratio is not None:
        raise InputError("budget/ratio", "both were given", "pass either budget (tokens) or ratio, not both")
    if budget is not None:
        if isinstance(budget, bool) or not isinstance(budget, (int, np.integer)) or budget <= 0:
            raise InputError("budget", f"must be a positive int, got {budget!r}", "pass a token count >= 1")
        return int(budget)
    r = DEFAULT_RATIO if ratio is None else ratio
    if isinstance(r, bool) or not isinstance(r, (int, float)) or not (0 < r <= 1) or math.isnan(r):
        raise InputError(
            "ratio", f"must be in (0, 1], got {ratio!r}", "pass the share of tokens to keep, e.g. 0.2"
        )
    return max(1, int(r * original_tokens))


class Compressor:
    """Holds a proxy model and compresses contexts with it.

    Models load on first use (or on :meth:`load`) and stay loaded; the scorer is resolved once, at
    load. One instance is safe to share between threads; prefills are serialised by the proxy's lock.

    Args:
        config: The configuration; ``None`` means the defaults.

    Attributes:
        config: The configuration.
        template: The proxy's prompt layout.
        proxy: The proxy model holder (:class:`~ctxcomp.models.probed.ProbedLM`).

    Example:
        >>> from ctxcomp import Compressor, CompressionConfig
        >>> comp = Compressor(CompressionConfig(scorer="attention"))
        >>> comp.proxy.loaded
        False
        >>> ctx = comp.compress("Who wrote Hamlet?", ["Hamlet is a play by Shakespeare. It is long."],
        ...                     budget=12)  # doctest: +SKIP
    """

    def __init__(self, config: CompressionConfig | None = None) -> None:
        if config is not None and not isinstance(config, CompressionConfig):
            raise ConfigError(
                "config", f"must be a CompressionConfig, got {type(config).__name__}", "build one"
            )
        self.config = config or CompressionConfig()
        self.template = PromptTemplate()
        cfg = self.config
        self.proxy = ProbedLM(cfg.proxy_model, device=cfg.device, dtype=cfg.dtype, backend=cfg.kernel_backend)
        self._lock = threading.RLock()
        self._reader_tokens: TokenCounter | None = None
        self._scorer: Scorer | None = None
        self._reader: Reader | None = None

    # ------------------------------------------------------------------ loading
    def load(self) -> Compressor:
        """Load the proxy model and tokenizers and resolve the scorer now (otherwise the first call does).

        Returns:
            ``self``.
        """
        with self._lock:
            if self._scorer is None:
                cfg = self.config
                self.proxy.load()
                if cfg.reader_tokenizer is None or cfg.reader_tokenizer == cfg.proxy_model:
                    self._reader_tokens = self.proxy.counter
                else:
                    from ctxcomp.models.loader import load_tokenizer

                    tok = load_tokenizer(cfg.reader_tokenizer)
                    self._reader_tokens = TokenCounter(tok, cfg.reader_tokenizer)
                self._scorer = build_scorer(ScorerSetup(cfg, self.proxy, self.template))
        return self

    @property
    def reader_tokens(self) -> TokenCounter:
        """The reader tokenizer's counter (loads the models if needed)."""
        self.load()
        assert self._reader_tokens is not None
        return self._reader_tokens

    @property
    def scorer(self) -> Scorer:
        """The scorer, resolved once from ``config.scorer`` (loads the models if needed)."""
        self.load()
        assert self._scorer is not None
        return self._scorer

    @property
    def reader(self) -> Reader:
        """The reader model the reorderers use: the proxy itself (shared, never loaded twice) unless
        ``config.reader_model`` names another model, which then loads on first use."""
        with self._lock:
            if self._reader is None:
                cfg = self.config
                if cfg.reader_model is None or cfg.reader_model == cfg.proxy_model:
                    self._reader = Reader(self.proxy)
                else:
                    self._reader = Reader(
                        cfg.reader_model, device=cfg.device, dtype=cfg.dtype, backend=cfg.kernel_backend
                    )
            return self._reader

    # ------------------------------------------------------------------ stages
    def split(self, docs: Sequence[DocLike]) -> Candidates:
        """Split documents into sentences with exact offsets (the pipeline's first step).

        Args:
            docs: Strings or Documents.

        Returns:
            The candidates.

        Example:
            >>> Compressor().split(["One. Two."]).texts
            ['One.', 'Two.']
        """
        return split_documents(as_documents(docs), max_chars=self.config.max_sentence_chars)

    def prober(self, cands: Candidates) -> Prober:
        """A :class:`~ctxcomp.compressors.probe.Prober` over ``cands`` with this compressor's proxy,
        template and window size.

        Args:
            cands: The split documents.

        Returns:
            The prober (nothing runs until its ``features`` is called).
        """
        cfg = self.config
        return Prober(
            self.proxy, cands, self.template, cfg.max_proxy_tokens, batch_tokens=cfg.prefill_batch_tokens
        )

    def score(self, query: str, docs: Sequence[DocLike]) -> tuple[list[Sentence], np.ndarray, int]:
        """Score every sentence of ``docs`` for ``query`` without pruning.

        Args:
            query: The question.
            docs: Strings or Documents.

        Returns:
            ``(sentences, scores [S], number of prefills)``.

        Example:
            >>> sents, scores, _ = Compressor().score("q?", ["A. B."])  # doctest: +SKIP
        """
        query = check_query(query)
        cands = self.split(docs)
        if not cands.sentences:
            return [], np.zeros(0), 0
        prober = self.prober(cands)
        scores = self._checked_scores(query, cands, prober)
        return cands.sentences, scores, prober.n_prefills

    def _checked_scores(self, query: str, cands: Candidates, prober: Prober) -> np.ndarray:
        scores = np.asarray(self.scorer.score(query, cands, prober), dtype=np.float64)  # [S]
        if scores.shape != (len(cands.sentences),):
            raise ConfigError(
                "CompressionConfig.scorer",
                f"scorer {self.scorer.name!r} returned shape {scores.shape} for {len(cands.sentences)} "
                "sentences",
                "return one score per sentence",
            )
        bad = ~np.isfinite(scores)
        if bad.any():
            raise ConfigError(
                "CompressionConfig.scorer",
                f"scorer {self.scorer.name!r} returned {int(bad.sum())} non-finite scores (NaN or inf)",
                "check the probe file (probe_path) or the custom scorer; scores must be finite numbers",
            )
        return scores

    def place(self, query: str, cands: Candidates, scores: np.ndarray, kept: Sequence[bool]) -> list[int]:
        """Order the documents that keep a sentence, by the configured reorder strategy (run once).

        Args:
            query: The question.
            cands: The split documents.
            scores: ``[S]`` sentence scores.
            kept: ``[S]`` keep flags.

        Returns:
            Indices into ``cands.docs`` of the kept documents, in output order.
        """
        best = doc_scores(len(cands.docs), cands.doc_of, scores, kept)
        kept_docs = [i for i, b in enumerate(best) if b is not None]
        by_doc = _group(cands, kept)
        texts = [doc_text(cands.docs[i], [cands.sentences[j] for j in by_doc[i]]) for i in kept_docs]
        cfg = self.config
        order = reorder(
            cfg.reorder,
            [best[i] or 0.0 for i in kept_docs],
            query=query,
            docs=texts,
            reader=lambda: self.reader,
            profile=cfg.position_profile,
            force=cfg.force_position_profile,
        )
        return [kept_docs[j] for j in order]

    # ------------------------------------------------------------------ verbs
    def compress(
        self, query: str, docs: Sequence[DocLike], *, budget: int | None = None, ratio: float | None = None
    ) -> CompressedContext:
        """Compress ``docs`` for ``query`` to a token budget.

        Args:
            query: The question the reader will answer.
            docs: Strings (ids "0", "1", ...) or :class:`~ctxcomp.Document` objects, in retrieval order.
            budget: Maximum tokens of the result under the reader tokenizer.
            ratio: Share of the original tokens to keep, in (0, 1]. With neither, ``DEFAULT_RATIO``.

        Returns:
            The compressed context with provenance and stats.

        Raises:
            InputError: Empty query, bad budget/ratio or bad documents.

        Example:
            >>> docs = ["Ann wrote it. Bob read it."]
            >>> ctx = Compressor().compress("Who?", docs, ratio=0.5)  # doctest: +SKIP
        """
        return self._finish(self._begin(query, docs, budget, ratio))

    def _begin(self, query: Any, docs: Any, budget: Any, ratio: Any) -> _Call:
        """Validate, split and count one call (no prefill yet)."""
        t0 = time.perf_counter()
        query = check_query(query)
        documents = as_documents(docs)
        budget, ratio = check_call(query, documents, budget, ratio, max_chars=self.config.max_input_chars)
        if budget is not None or ratio is not None:
            resolve_budget(1, budget, ratio)  # validate before any work
        self.load()
        t = time.perf_counter()
        cands = split_documents(documents, max_chars=self.config.max_sentence_chars)
        split_s = time.perf_counter() - t
        original = self.reader_tokens.count(DOC_SEPARATOR.join(d.text for d in documents))
        call = _Call(
            query, documents, cands, self.prober(cands), original, resolve_budget(original, budget, ratio), t0
        )
        call.timings["split"] = split_s
        return call

    def _finish(self, call: _Call) -> CompressedContext:
        """Score (reusing prefetched prefills), select, place, fit and assemble one call."""
        query, documents, cands, prober, timings = (
            call.query,
            call.documents,
            call.cands,
            call.prober,
            call.timings,
        )
        reader = self.reader_tokens
        scores = np.zeros(len(cands.sentences))
        t = time.perf_counter()
        seconds_before = prober.seconds
        if cands.sentences:
            scores = self._checked_scores(query, cands, prober)
        timings["probe"] = prober.seconds
        timings["score"] = time.perf_counter() - t - (prober.seconds - seconds_before)
        t = time.perf_counter()
        n_tok = cands.token_counts(reader)
        kept = select(
            scores,
            n_tok,
            call.budget,
            count=DocCounts(documents, cands.sentences, cands.doc_of, count=reader.count).total,
        )
        timings["prune"] = time.perf_counter() - t
        warnings = _budget_warnings(cands, scores, n_tok, kept, call.budget)
        t = time.perf_counter()
        order = self.place(query, cands, scores, kept)
        timings["reorder"] = time.perf_counter() - t
        t = time.perf_counter()
        kept, text, kept_tokens = fit_exactly(
            kept,
            scores,
            call.budget,
            render=lambda k: assemble(documents, order, cands.sentences, k),
            count=reader.count,
        )
        timings["fit"] = time.perf_counter() - t
        timings["total"] = time.perf_counter() - call.t0
        original = call.original
        stats = Stats(
            original_tokens=original,
            kept_tokens=kept_tokens,
            budget=call.budget,
            ratio=(original / kept_tokens) if kept_tokens else (1.0 if original == 0 else math.inf),
            timings=timings,
            proxy_model=self.proxy.model_id,
            reader_tokenizer=reader.name,
            scorer=self.scorer.name,
            n_windows=prober.n_prefills,
            warnings=warnings,
        )
        return _result(cands, scores, n_tok, kept, order, text, stats)

    def compress_batch(
        self,
        items: Iterable[tuple[str, Sequence[DocLike]] | Mapping[str, Any]],
        *,
        budget: int | None = None,
        ratio: float | None = None,
        progress: bool = False,
        return_exceptions: bool = False,
    ) -> list[Any]:
        """Compress several items; results come back in input order.

        Args:
            items: ``(query, docs)`` tuples, or ``{"query", "docs", "budget"?, "ratio"?}`` mappings (a
                mapping's own ``budget``/``ratio`` overrides the call's).
            budget: Token budget per item.
            ratio: Keep ratio per item.
            progress: Show a tqdm progress bar on stderr.
            return_exceptions: Put a failing item's exception in its slot (like ``asyncio.gather``)
                instead of raising it; every other item is still compressed.

        Returns:
            One :class:`~ctxcomp.CompressedContext` per item (or its exception, see above).

        Raises:
            InputError: A malformed item (unless ``return_exceptions``).

        Example:
            >>> Compressor().compress_batch([("q?", ["A. B."])], ratio=0.5)  # doctest: +SKIP
        """
        seq = list(items)
        calls: list[_Call | BaseException] = []
        for n, item in enumerate(seq):
            try:
                q, d, b, r = _batch_item(n, item, budget, ratio)
                calls.append(self._begin(q, d, b, r))
            except Exception as err:
                if not return_exceptions:
                    raise
                calls.append(err)
        live = [c for c in calls if isinstance(c, _Call) and c.cands.sentences]
        requests = getattr(self.scorer, "probe_requests", None)
        batching = self.proxy.batch_tokens(self.config.prefill_batch_tokens) > 0
        if live and requests is not None and batching:  # every item's prefills in shared batches
            # Without batching (CPU default) each item prefills in _finish, where the probe scorer
            # overlaps it with its embedding pass; prefetching would only serialise the two.
            prefetch([(c.prober, req) for c in live for req in requests(c.query)])
        it: Iterable[Any] = calls
        if progress:
            from tqdm.auto import tqdm

            it = tqdm(calls, desc="compress", unit="item")
        out: list[Any] = []
        for c in it:
            if not isinstance(c, _Call):
                out.append(c)
                continue
            try:
                out.append(self._finish(c))
            except Exception as err:
                if not return_exceptions:
                    raise
                out.append(err)
        return out

    async def acompress(
        self, query: str, docs: Sequence[DocLike], *, budget: int | None = None, ratio: float | None = None
    ) -> CompressedContext:
        """Async :meth:`compress`: the model runs in a worker thread, the event loop stays free.

        Args:
            query: The question.
            docs: Strings or Documents.
            budget: Token budget.
            ratio: Keep ratio.

        Returns:
            The compressed context.

        Example:
            >>> import asyncio
            >>> asyncio.run(Compressor().acompress("q?", ["A."]))  # doctest: +SKIP
        """
        return await asyncio.to_thread(self.compress, query, docs, budget=budget, ratio=ratio)


@dataclass
class _Call:
    """One compression call between its validation and its result."""

    query: str
    documents: list[Document]
    cands: Candidates
    prober: Prober
    original: int
    budget: int
    t0: float
    timings: dict[str, float] = field(default_factory=dict)


def _batch_item(
    n: int, item: Any, budget: int | None, ratio: float | None
) -> tuple[Any, Any, int | None, float | None]:
    """``(query, docs, budget, ratio)`` of one :meth:`Compressor.compress_batch` item."""
    if isinstance(item, Mapping):
        if "query" not in item or "docs" not in item:
            raise InputError(
                f"items[{n}]", "needs keys 'query' and 'docs'", "pass {'query': ..., 'docs': [...]}"
            )
        if "budget" in item or "ratio" in item:
            budget, ratio = item.get("budget"), item.get("ratio")
        return item["query"], item["docs"], budget, ratio
    if isinstance(item, tuple) and len(item) == 2:
        return item[0], item[1], budget, ratio
    raise InputError(
        f"items[{n}]",
        f"must be (query, docs) or a mapping, got {type(item).__name__}",
        "pass (query, docs) tuples",
    )


def _budget_warnings(
    cands: Candidates, scores: np.ndarray, n_tok: Sequence[int], kept: Sequence[bool], budget: int
) -> tuple[str, ...]:
    """Say so when the best-scoring sentence did not fit the budget (the budget stays a hard limit)."""
    if not cands.sentences:
        return ()
    best = int(np.argmax(scores))
    if kept[best] or n_tok[best] <= budget:
        return ()
    s = cands.sentences[best]
    msg = (
        f"the best-scoring sentence (document {s.doc_id!r}, sentence {s.index}) has {n_tok[best]} tokens, "
        f"more than the whole budget of {budget}, and was dropped; raise budget/ratio to keep it"
    )
    logger.warning(msg)
    return (msg,)


def _group(cands: Candidates, kept: Sequence[bool]) -> dict[int, list[int]]:
    """Kept sentence indices per document index."""
    by_doc: dict[int, list[int]] = {}
    for j, (di, k) in enumerate(zip(cands.doc_of, kept, strict=True)):
        if k:
            by_doc.setdefault(di, []).append(j)
    return by_doc


def _result(
    cands: Candidates,
    scores: np.ndarray,
    n_tok: Sequence[int],
    kept: Sequence[bool],
    order: Sequence[int],
    text: str,
    stats: Stats,
) -> CompressedContext:
    """The typed result: every sentence with provenance, kept documents in output order."""
    scored = tuple(
        ScoredSentence(s.doc_id, s.index, s.start, s.end, s.text, float(sc), int(nt), bool(k))
        for s, sc, nt, k in zip(cands.sentences, scores, n_tok, kept, strict=True)
    )
    by_doc = _group(cands, kept)
    out_docs = []
    for i in order:
        if i not in by_doc:  # every sentence of it was dropped by the exact fit
            continue
        d = cands.docs[i]
        score = max(float(scores[j]) for j in by_doc[i])
        out_docs.append(
            CompressedDocument(
                id=d.id,
                text=doc_text(d, [cands.sentences[j] for j in by_doc[i]]),
                metadata={**d.metadata, "ctxcomp_score": score},
                score=score,
                sentences=tuple(scored[j] for j in by_doc[i]),
            )
        )
    return CompressedContext(text=text, documents=tuple(out_docs), sentences=scored, stats=stats)


@functools.lru_cache(maxsize=4)
def _cached(config: CompressionConfig) -> Compressor:
    return Compressor(config)


def compress(
    query: str,
    docs: Sequence[DocLike],
    *,
    budget: int | None = None,
    ratio: float | None = None,
    config: CompressionConfig | None = None,
) -> CompressedContext:
    """Compress retrieved documents for a question, reusing one loaded :class:`Compressor` per config.

    Args:
        query: The question the reader will answer.
        docs: Strings or :class:`~ctxcomp.Document` objects in retrieval order.
        budget: Maximum tokens of the result (reader tokenizer). Give at most one of budget/ratio.
        ratio: Share of tokens to keep in (0, 1]; default :data:`ctxcomp.DEFAULT_RATIO` (0.25).
        config: Configuration; default :class:`~ctxcomp.CompressionConfig()` (``DEFAULT_PROXY``).

    Returns:
        The compressed context.

    Example:
        >>> import ctxcomp
        >>> ctx = ctxcomp.compress("What is the capital of France?",
        ...     ["Paris is the capital of France. It has many museums.", "Berlin is in Germany."],
        ...     ratio=0.3)  # doctest: +SKIP
        >>> print(ctx.text)  # doctest: +SKIP
        Paris is the capital of France.
    """
    return _cached(config or CompressionConfig()).compress(query, docs, budget=budget, ratio=ratio)
