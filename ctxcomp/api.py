"""The public verbs: :class:`Compressor` and :func:`compress`.

Data flow: split -> probe (one truncated prefill per window) -> score -> prune -> reorder.

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

from ctxcomp.compressors.probe import ProbeFeatures, PromptTemplate, Unit
from ctxcomp.compressors.prune import DocCounts, assemble, doc_text, fit_exactly, select
from ctxcomp.compressors.reorder import reorder_for
from ctxcomp.compressors.scorers import NULL_QUERY, SCORERS, LiftScorer
from ctxcomp.compressors.trained import TrainedProbe
from ctxcomp.config import DEFAULT_RATIO, CompressionConfig
from ctxcomp.errors import ConfigError, InputError
from ctxcomp.text.split import split_sentences
from ctxcomp.text.tokens import TokenCounter
from ctxcomp.types import (
    CompressedContext,
    CompressedDocument,
    DocLike,
    Document,
    ScoredSentence,
    Sentence,
    Stats,
    as_documents,
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


@dataclass
class _Split:
    docs: list[Document]
    sentences: list[Sentence]
    doc_of: list[int]  # [S] document index of each sentence
    token_counts: dict[int, list[int]] = field(default_factory=dict)  # id(TokenCounter) -> [S]


class Compressor:
    """Holds a proxy model and compresses contexts with it.

    Models load on first use (or on :meth:`load`) and stay loaded. One instance is safe to share
    between threads; prefills are serialised by a lock.

    Args:
        config: The configuration; ``None`` means the defaults.

    Example:
        >>> from ctxcomp import Compressor, CompressionConfig
        >>> comp = Compressor(CompressionConfig(scorer="attention"))
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
        self._lock = threading.RLock()
        self._model: Any = None
        self._source: Any = None
        self._proxy_tok: TokenCounter | None = None
        self._reader_tok: TokenCounter | None = None
        self._layers: tuple[int, ...] = ()
        self._probe_model: TrainedProbe | None = None
        self._embedder: Any = None
        self._device = "cpu"

    # ------------------------------------------------------------------ loading
    def load(self) -> Compressor:
        """Load the proxy model and tokenizers now (otherwise the first call does).

        Returns:
            ``self``.
        """
        with self._lock:
            if self._model is None:
                self._load()
        return self

    def _load(self) -> None:
        import torch

        from ctxcomp.compressors.probe import register_attention
        from ctxcomp.models.loader import load_causal_lm, load_tokenizer

        cfg = self.config
        device = cfg.device
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        dtype = cfg.dtype if cfg.dtype != "auto" else ("bfloat16" if device.startswith("cuda") else "float32")
        base = "sdpa"
        if device.startswith("cuda"):
            import importlib.util

            if importlib.util.find_spec("flash_attn") is not None and dtype != "float32":
                base = "flash_attention_2"
        attn = register_attention(base)
        model, source = load_causal_lm(cfg.proxy_model, device=device, dtype=dtype, attn_implementation=attn)
        tok = load_tokenizer(cfg.proxy_model)
        self._proxy_tok = TokenCounter(tok, source.model_id)
        self._proxy_tokenizer = tok
        if cfg.reader_tokenizer is None or cfg.reader_tokenizer == cfg.proxy_model:
            self._reader_tok = self._proxy_tok
        else:
            self._reader_tok = TokenCounter(load_tokenizer(cfg.reader_tokenizer), cfg.reader_tokenizer)
        self._probe_model = self._resolve_probe(source)
        self._layers = self._resolve_layers(model)
        self._device = device
        self._source = source
        self._model = model

    def _resolve_probe(self, source: Any) -> TrainedProbe | None:
        """The trained probe to use, or ``None`` for a training-free scorer."""
        from ctxcomp.compressors.trained import find_shipped_probe, load_probe

        cfg = self.config
        if cfg.scorer not in ("probe", "auto"):
            return None
        if cfg.probe_path is not None:
            loaded = load_probe(cfg.probe_path)
            loaded.check_model(source.model_id, source.weights_sha256, force=cfg.force_probe)
            return loaded
        probe = find_shipped_probe(source.model_id, source.weights_sha256)
        if probe is None and cfg.scorer == "probe":
            raise ConfigError(
                "CompressionConfig.scorer",
                f"no trained probe ships for proxy {cfg.proxy_model!r}",
                "train one with `ctxcomp train-probe` and pass probe_path, or use scorer='attention'",
            )
        if probe is None:
            _warn_once(
                f"no trained probe for {cfg.proxy_model!r}; using the training-free 'attention' scorer"
            )
        return probe

    def _resolve_layers(self, model: Any) -> tuple[int, ...]:
        from ctxcomp.models.presets import PRESETS

        n = int(model.config.get_text_config().num_hidden_layers)
        if self._probe_model is not None:
            return self._probe_model.layers
        if self.config.probe_layers is not None:
            raw = self.config.probe_layers
        elif self.config.proxy_model in PRESETS:
            raw = PRESETS[self.config.proxy_model].probe_layers
        else:
            raw = tuple(range(n // 3, (2 * n) // 3 + 1))
        out = []
        for li in raw:
            j = li + n if li < 0 else li
            if not 0 <= j < n:
                raise ConfigError(
                    "CompressionConfig.probe_layers",
                    f"layer {li} is out of range for a {n}-layer model",
                    f"use indices in [-{n}, {n - 1}]",
                )
            out.append(j)
        return tuple(sorted(set(out)))

    @property
    def reader_tokens(self) -> TokenCounter:
        """The reader tokenizer's counter (loads the models if needed)."""
        self.load()
        assert self._reader_tok is not None
        return self._reader_tok

    # ------------------------------------------------------------------ stages
    def _split(self, docs: list[Document]) -> _Split:
        sentences: list[Sentence] = []
        doc_of: list[int] = []
        for i, d in enumerate(docs):
            for s in split_sentences(d, max_chars=self.config.max_sentence_chars):
                sentences.append(s)
                doc_of.append(i)
        return _Split(docs, sentences, doc_of)

    @staticmethod
    def _sentence_tokens(sp: _Split, counter: TokenCounter) -> list[int]:
        """Tokens of each sentence under ``counter``, counted once per call (proxy = reader shares)."""
        key = id(counter)
        if key not in sp.token_counts:
            sp.token_counts[key] = counter.count_many([s.text for s in sp.sentences])
        return sp.token_counts[key]

    def _windows(self, sp: _Split, query: str, focus: bool) -> list[list[Unit]]:
        """Pack whole documents (or sentence runs of over-long ones) into prompts that fit the proxy."""
        assert self._proxy_tok is not None
        ntok = self._sentence_tokens(sp, self._proxy_tok)
        overhead = self._proxy_tok.count(self.template.head + self.template.tail(query, focus=focus)) + 8
        cap = max(32, self.config.max_proxy_tokens - overhead)
        header = 6  # "Document [n]: " plus the separator
        units: list[tuple[Unit, int]] = []
        i = 0
        while i < len(sp.sentences):
            d = sp.doc_of[i]
            run: list[Sentence] = []
            cost = header
            first = i
            while i < len(sp.sentences) and sp.doc_of[i] == d:
                c = ntok[i] + 1
                if run and cost + c > cap:
                    break
                run.append(sp.sentences[i])
                cost += c
                i += 1
            units.append((Unit(d, first, tuple(run)), cost))
        windows: list[list[Unit]] = []
        cur: list[Unit] = []
        used = 0
        for unit, cost in units:
            if cur and used + cost > cap:
                windows.append(cur)
                cur, used = [], 0
            cur.append(unit)
            used += cost
        if cur:
            windows.append(cur)
        return windows

    def _probe(self, sp: _Split, query: str, focus: bool, m: int | None = None) -> ProbeFeatures:
        import torch

        from ctxcomp.compressors.probe import build_prompt, run_probe, token_segments

        s_total = len(sp.sentences)
        layers = self._layers
        cfg = self.config
        windows = self._windows(sp, query, focus)
        n_tokens = np.zeros(s_total, dtype=np.int64)
        parts: list[tuple[np.ndarray, np.ndarray, int]] = []  # (global ids, [L, H, S_w] mass, n ctx tokens)
        for units in windows:
            prompt, char_seg = build_prompt(query, units, sp.docs, self.template, focus=focus)
            enc = self._proxy_tokenizer(prompt, return_offsets_mapping=True, add_special_tokens=True)
            seg = token_segments(enc["offset_mapping"], char_seg)  # [N] global ids
            gids = np.arange(units[0].first, units[-1].first + len(units[-1].sentences))
            local = np.where(seg >= 0, seg - gids[0], -1)  # [N]
            np.add.at(n_tokens, seg[seg >= 0], 1)
            ids = torch.tensor([enc["input_ids"]], device=self._device)  # [1, N]
            with self._lock:
                out = run_probe(
                    self._model,
                    ids,
                    local,
                    len(gids),
                    layers=layers,
                    m=m or cfg.query_positions,
                    backend=cfg.kernel_backend,
                )
            mass = np.stack([out[li] for li in layers])  # [L, H, S_w]
            parts.append((gids, mass, int((seg >= 0).sum())))
        n_ctx = sum(p[2] for p in parts)
        first = parts[0][1]
        full = np.zeros((first.shape[0], first.shape[1], s_total), dtype=np.float32)  # [L, H, S]
        for gids, mass, n_w in parts:
            full[:, :, gids] = mass * (n_w / max(n_ctx, 1))
        return ProbeFeatures(full, n_tokens, layers, len(windows), n_ctx)

    def _score(
        self, sp: _Split, query: str, timings: dict[str, float] | None = None
    ) -> tuple[np.ndarray, int, str]:
        """Scores of every sentence, the number of prefills, and the scorer's name."""
        probe = self._probe_model
        t = time.perf_counter()
        if probe is None:
            scorer: LiftScorer = SCORERS["attention" if self.config.scorer == "auto" else self.config.scorer]
            feats = self._probe(sp, query, scorer.focus)
            null = self._probe(sp, NULL_QUERY, scorer.focus) if self.config.null_query else None
            if timings is not None:
                timings["probe"] = time.perf_counter() - t
            return scorer.score(feats, null), feats.n_windows, scorer.name
        from ctxcomp.compressors.features import SentenceContext, build_features

        needs_attention = bool({"attention", "doc_attention"} & set(probe.families))
        feats_p = self._probe(sp, query, probe.focus, m=probe.query_positions) if needs_attention else None
        if timings is not None:
            timings["probe"] = time.perf_counter() - t
        if "embedding" in probe.families and self._embedder is None:
            from ctxcomp.retrieval import resolve_embedder

            self._embedder = resolve_embedder(probe.meta.get("embedder"), device=self._device)
        sizes = np.bincount(np.asarray(sp.doc_of, dtype=np.int64), minlength=len(sp.docs))
        ctx = SentenceContext(
            query,
            [s.text for s in sp.sentences],
            sp.doc_of,
            [s.index for s in sp.sentences],
            sizes.tolist(),
            [d.text for d in sp.docs],
        )
        x = build_features(
            ctx,
            feats_p,
            families=probe.families,
            heads=probe.heads,
            embedder=self._embedder,
            doc_vectors=probe.doc_vectors,
        )
        return probe.decision(x), feats_p.n_windows if feats_p is not None else 0, "probe"

    def score(self, query: str, docs: Sequence[DocLike]) -> tuple[list[Sentence], np.ndarray, int]:
        """Score every sentence of ``docs`` for ``query`` without pruning.

        Args:
            query: The question.
            docs: Strings or Documents.

        Returns:
            ``(sentences, scores [S], n_windows)``.

        Example:
            >>> sents, scores, _ = Compressor().score("q?", ["A. B."])  # doctest: +SKIP
        """
        query = check_query(query)
        sp = self._split(as_documents(docs))
        if not sp.sentences:
            return [], np.zeros(0), 0
        self.load()
        scores, n_windows, _ = self._score(sp, query)
        return sp.sentences, scores, n_windows

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
        t0 = time.perf_counter()
        timings: dict[str, float] = {}
        query = check_query(query)
        documents = as_documents(docs)
        if budget is not None or ratio is not None:
            resolve_budget(1, budget, ratio)  # validate before any work
        self.load()
        assert self._reader_tok is not None and self._source is not None
        reader = self._reader_tok
        t = time.perf_counter()
        sp = self._split(documents)
        timings["split"] = time.perf_counter() - t
        original = reader.count("\n\n".join(d.text for d in documents))
        token_budget = resolve_budget(original, budget, ratio)
        n_windows = 0
        scores = np.zeros(len(sp.sentences))
        scorer_name: str = (
            "probe"
            if self._probe_model is not None
            else ("attention" if self.config.scorer == "auto" else self.config.scorer)
        )
        if sp.sentences:
            t = time.perf_counter()
            scores, n_windows, scorer_name = self._score(sp, query, timings)
            timings["score"] = time.perf_counter() - t - timings["probe"]
        t = time.perf_counter()
        n_tok = self._sentence_tokens(sp, reader)
        counts = DocCounts(documents, sp.sentences, sp.doc_of, count=reader.count)
        kept = select(scores, n_tok, token_budget, count=counts.total)
        timings["prune"] = time.perf_counter() - t
        t = time.perf_counter()

        def arrange(
            flags: list[bool],
        ) -> tuple[str, tuple[list[int], list[float | None], dict[int, list[int]]]]:
            """The final text (documents reordered, sentences in source order), its document order,
            document scores and kept sentence indices per document."""
            doc_scores = _doc_scores(len(documents), sp.doc_of, scores, flags)
            kept_docs = [i for i in range(len(documents)) if doc_scores[i] is not None]
            by_doc: dict[int, list[int]] = {}
            for j, (di, k) in enumerate(zip(sp.doc_of, flags, strict=True)):
                if k:
                    by_doc.setdefault(di, []).append(j)
            texts = [doc_text(documents[i], [sp.sentences[j] for j in by_doc[i]]) for i in kept_docs]
            kept_scores = [doc_scores[i] or 0.0 for i in kept_docs]
            order = [kept_docs[j] for j in reorder_for(self, query, texts, kept_scores)]
            return assemble(documents, order, sp.sentences, flags), (order, doc_scores, by_doc)

        kept, text, kept_tokens, (order, doc_scores, by_doc) = fit_exactly(
            kept, scores, token_budget, render=arrange, count=reader.count
        )
        timings["reorder"] = time.perf_counter() - t
        scored = tuple(
            ScoredSentence(s.doc_id, s.index, s.start, s.end, s.text, float(sc), int(nt), bool(k))
            for s, sc, nt, k in zip(sp.sentences, scores, n_tok, kept, strict=True)
        )
        out_docs = []
        for i in order:
            ds = tuple(scored[j] for j in by_doc[i])
            d = documents[i]
            score = float(doc_scores[i] or 0.0)
            out_docs.append(
                CompressedDocument(
                    id=d.id,
                    text=doc_text(d, [sp.sentences[j] for j in by_doc[i]]),
                    metadata={**d.metadata, "ctxcomp_score": score},
                    score=score,
                    sentences=ds,
                )
            )
        timings["total"] = time.perf_counter() - t0
        stats = Stats(
            original_tokens=original,
            kept_tokens=kept_tokens,
            budget=token_budget,
            ratio=(original / kept_tokens) if kept_tokens else (1.0 if original == 0 else math.inf),
            timings=timings,
            proxy_model=self._source.model_id,
            reader_tokenizer=reader.name,
            scorer=scorer_name,
            n_windows=n_windows,
        )
        return CompressedContext(text=text, documents=tuple(out_docs), sentences=scored, stats=stats)

    def compress_batch(
        self,
        items: Iterable[tuple[str, Sequence[DocLike]] | Mapping[str, Any]],
        *,
        budget: int | None = None,
        ratio: float | None = None,
        progress: bool = False,
    ) -> list[CompressedContext]:
        """Compress several ``(query, docs)`` items with the same budget rule.

        Args:
            items: ``(query, docs)`` tuples or ``{"query", "docs"}`` mappings.
            budget: Token budget per item.
            ratio: Keep ratio per item.
            progress: Show a tqdm progress bar on stderr.

        Returns:
            One result per item, in order. The first bad item raises (for a batch that records
            errors per item and carries on, use the ``compress-jsonl`` CLI).

        Example:
            >>> Compressor().compress_batch([("q?", ["A. B."])], ratio=0.5)  # doctest: +SKIP
        """
        seq = list(items)
        it: Iterable[Any] = seq
        if progress:
            from tqdm.auto import tqdm

            it = tqdm(seq, desc="compress", unit="item")
        out = []
        for n, item in enumerate(it):
            if isinstance(item, Mapping):
                if "query" not in item or "docs" not in item:
                    raise InputError(
                        f"items[{n}]", "needs keys 'query' and 'docs'", "pass {'query': ..., 'docs': [...]}"
                    )
                q, d = item["query"], item["docs"]
            elif isinstance(item, tuple) and len(item) == 2:
                q, d = item
            else:
                raise InputError(
                    f"items[{n}]",
                    f"must be (query, docs) or a mapping, got {type(item).__name__}",
                    "pass (query, docs) tuples",
                )
            out.append(self.compress(q, d, budget=budget, ratio=ratio))
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


def _doc_scores(
    n_docs: int, doc_of: Sequence[int], scores: np.ndarray, kept: Sequence[bool]
) -> list[float | None]:
    """Best kept-sentence score per document, ``None`` for documents with nothing kept."""
    out: list[float | None] = [None] * n_docs
    for d, sc, k in zip(doc_of, scores, kept, strict=True):
        if k:
            cur = out[d]
            out[d] = float(sc) if cur is None else max(cur, float(sc))
    return out


_WARNED: set[str] = set()


def _warn_once(msg: str) -> None:
    if msg not in _WARNED:
        _WARNED.add(msg)
        logger.warning(msg)


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
