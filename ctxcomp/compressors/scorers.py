"""Scorers: one relevance score per sentence, chosen by name (:data:`ctxcomp.registry.SCORERS`).

Every scorer implements :class:`Scorer`: ``score(query, candidates, prober) -> [S]`` scores,
higher is more relevant. The :class:`Prober` runs the proxy's probed prefills on demand, so a
scorer that needs no attention costs no prefill. Scorers are built once per
:class:`~ctxcomp.Compressor` by a factory ``(ScorerSetup) -> Scorer`` registered under a name:

* ``attention`` (Sentinel-style) and ``focus`` (AttentionRAG-style) are training-free
  :class:`LiftScorer` s: attention *lift* (attention per token relative to a uniform spread over
  the context), averaged over probe layers and heads; they differ in the probe rows (the
  question's last tokens vs. the last token of an answer hint). With ``null_query`` the lift the
  same context receives from a content-free question is subtracted.
* ``probe`` is a trained probe (:class:`ProbeScorer` over a
  :class:`~ctxcomp.compressors.trained.TrainedProbe`).
* ``auto`` (the default name) is the trained probe when one ships for the proxy, else ``attention``.

Example:
    >>> f = ProbeFeatures(np.array([[[0.75, 0.25]]], dtype=np.float32), np.array([1, 1]), (0,), 1, 2)
    >>> lift_scores(f).round(2).tolist()
    [1.5, 0.5]
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import numpy as np

from ctxcomp.compressors.features import (
    PREFILL_FAMILIES,
    PrecomputedEmbedder,
    SentenceContext,
    build_features,
    embedding_inputs,
)
from ctxcomp.compressors.probe import ProbeFeatures, Prober, ProbeRequest, PromptTemplate
from ctxcomp.compressors.trained import TrainedProbe, find_shipped_probe, load_probe
from ctxcomp.config import CompressionConfig
from ctxcomp.errors import ConfigError
from ctxcomp.models.probed import ProbedLM
from ctxcomp.registry import SCORERS
from ctxcomp.types import Candidates

logger = logging.getLogger(__name__)

#: The question used for the null-query baseline: it asks for nothing in particular.
NULL_QUERY = "What is this text about?"


@runtime_checkable
class Scorer(Protocol):
    """Scores every sentence of a call; higher is more relevant.

    Attributes:
        name: Reported in :attr:`ctxcomp.Stats.scorer`.
    """

    name: str

    def score(self, query: str, cands: Candidates, prober: Prober) -> np.ndarray:
        """``[S]`` float64 scores for ``cands.sentences`` (call ``prober.features`` for attention)."""
        ...


@dataclass(frozen=True)
class ScorerSetup:
    """What a scorer factory may use to build its scorer (once per compressor).

    Attributes:
        config: The compressor's configuration.
        lm: The loaded proxy model (its id, weights hash and depth).
        template: The proxy prompt layout.
    """

    config: CompressionConfig
    lm: ProbedLM
    template: PromptTemplate = field(default_factory=PromptTemplate)


ScorerFactory = Callable[[ScorerSetup], Scorer]


def register_scorer(name: str, factory: ScorerFactory) -> None:
    """Add (or replace) a named scorer; ``CompressionConfig(scorer=name)`` then accepts it.

    Args:
        name: The scorer's name.
        factory: Builds the scorer from a :class:`ScorerSetup` (called once per compressor).

    Example:
        >>> class Longest:
        ...     name = "longest"
        ...     def score(self, query, cands, prober):
        ...         return np.array([len(t) for t in cands.texts], dtype=np.float64)
        >>> register_scorer("longest", lambda setup: Longest())
        >>> CompressionConfig(scorer="longest").scorer
        'longest'
    """
    SCORERS.register(name, factory)


def build_scorer(setup: ScorerSetup) -> Scorer:
    """Resolve ``setup.config.scorer`` (``auto`` included) into a scorer, once.

    Args:
        setup: The compressor's config and loaded proxy.

    Returns:
        The scorer.

    Raises:
        ConfigError: Unknown scorer, or ``probe`` without a probe for this proxy.
        ProbeMismatchError: ``probe_path`` belongs to another proxy (and ``force_probe`` is false).
    """
    name = setup.config.scorer
    if name == "auto":
        probe = resolve_probe(setup)
        if probe is not None:
            return ProbeScorer.for_probe(probe, device=setup.lm.device)
        _warn_once(
            f"no trained probe for {setup.config.proxy_model!r}; using the training-free 'attention' scorer"
        )
        name = "attention"
    scorer: Scorer = SCORERS.get(name)(setup)
    if not isinstance(scorer, Scorer):
        raise ConfigError(
            "CompressionConfig.scorer",
            f"the factory registered as {name!r} returned {type(scorer).__name__}, not a Scorer",
            "return an object with a name and score(query, cands, prober)",
        )
    return scorer


# ---------------------------------------------------------------------------------------- training-free
def lift_scores(features: ProbeFeatures, null: ProbeFeatures | None = None) -> np.ndarray:
    """Mean attention lift over probe layers and heads, minus the null question's when given.

    Args:
        features: Features of the real question.
        null: Features of the content-free question on the same context, or ``None``.

    Returns:
        ``[S]`` float64 scores.
    """
    lift = features.lift().mean(axis=(0, 1)).astype(np.float64)  # [S]
    if null is not None:
        lift = lift - null.lift().mean(axis=(0, 1)).astype(np.float64)
    return lift


@dataclass(frozen=True)
class LiftScorer:
    """Training-free scorer: mean attention lift of the probe layers.

    Attributes:
        name: Registry name.
        focus: Probe from the answer-hint focus token instead of the question's end.
        layers: Probe layers (non-negative).
        m: Trailing positions that read the context.
        null_query: Subtract the lift of :data:`NULL_QUERY` (one more prefill).
    """

    name: str
    focus: bool
    layers: tuple[int, ...]
    m: int = 1
    null_query: bool = False

    def probe_requests(self, query: str) -> list[ProbeRequest]:
        """The prefills :meth:`score` will ask for (so a batch can run them together)."""
        reqs = [ProbeRequest.of(query, layers=self.layers, m=self.m, focus=self.focus)]
        if self.null_query:
            reqs.append(ProbeRequest.of(NULL_QUERY, layers=self.layers, m=self.m, focus=self.focus))
        return reqs

    def score(self, query: str, cands: Candidates, prober: Prober) -> np.ndarray:
        """Lift scores of every sentence (see :func:`lift_scores`)."""
        feats = prober.features(query, layers=self.layers, m=self.m, focus=self.focus)
        null = None
        if self.null_query:
            null = prober.features(NULL_QUERY, layers=self.layers, m=self.m, focus=self.focus)
        return lift_scores(feats, null)


def resolve_layers(config: CompressionConfig, n_layers: int) -> tuple[int, ...]:
    """Probe layers of a training-free scorer: the config's, the preset's, or the middle third.

    Args:
        config: The configuration (``probe_layers`` may use negative indices).
        n_layers: Depth of the proxy.

    Returns:
        Sorted non-negative layer indices.

    Raises:
        ConfigError: A layer is out of range.

    Example:
        >>> resolve_layers(CompressionConfig(proxy_model="x", probe_layers=(-1, 0)), 4)
        (0, 3)
    """
    from ctxcomp.models.presets import PRESETS

    if config.probe_layers is not None:
        raw: Sequence[int] = config.probe_layers
    elif config.proxy_model in PRESETS:
        raw = PRESETS[config.proxy_model].probe_layers
    else:
        raw = tuple(range(n_layers // 3, (2 * n_layers) // 3 + 1))
    out = []
    for li in raw:
        j = li + n_layers if li < 0 else li
        if not 0 <= j < n_layers:
            raise ConfigError(
                "CompressionConfig.probe_layers",
                f"layer {li} is out of range for a {n_layers}-layer model",
                f"use indices in [-{n_layers}, {n_layers - 1}]",
            )
        out.append(j)
    return tuple(sorted(set(out)))


def attention_scorer(setup: ScorerSetup) -> LiftScorer:
    """Factory of the ``attention`` scorer (Sentinel-style: the question's last positions read).

    Args:
        setup: Config and proxy.

    Returns:
        The scorer.
    """
    cfg = setup.config
    layers = resolve_layers(cfg, setup.lm.num_layers)
    return LiftScorer("attention", False, layers, cfg.query_positions, cfg.null_query)


def focus_scorer(setup: ScorerSetup) -> LiftScorer:
    """Factory of the ``focus`` scorer (AttentionRAG-style: the answer hint's last token reads).

    Args:
        setup: Config and proxy.

    Returns:
        The scorer.
    """
    cfg = setup.config
    layers = resolve_layers(cfg, setup.lm.num_layers)
    return LiftScorer("focus", True, layers, cfg.query_positions, cfg.null_query)


# ---------------------------------------------------------------------------------------------- trained
@dataclass
class ProbeScorer:
    """A trained probe: a fusion of attention, embedding, BM25 and position features.

    Attributes:
        probe: The probe file.
        embedder: Embedder for the ``embedding`` family (``None`` when the probe does not use it).
        name: ``"probe"``.
    """

    probe: TrainedProbe
    embedder: Any = None
    name: str = "probe"

    @property
    def layers(self) -> tuple[int, ...]:
        """The proxy layers the probe reads (empty when it reads no attention)."""
        return self.probe.layers

    @classmethod
    def for_probe(cls, probe: TrainedProbe, *, device: str | None = None) -> ProbeScorer:
        """A scorer for ``probe``, with the embedder it was trained with when it needs one.

        Args:
            probe: The probe.
            device: Device for the embedder.

        Returns:
            The scorer.
        """
        emb = None
        if "embedding" in probe.families:
            from ctxcomp.retrieval import resolve_embedder

            emb = resolve_embedder(probe.meta.get("embedder"), device=device)
        return cls(probe, emb)

    @property
    def hidden_layers(self) -> tuple[int, ...]:
        """Pooled hidden layers the ``hidden`` family reads (empty without it)."""
        return tuple(getattr(self.probe, "hidden_layers", ()) or ())

    def _request(self, query: str) -> ProbeRequest | None:
        p = self.probe
        if not (PREFILL_FAMILIES & set(p.families)):
            return None
        groups = ("last", "query") if "query_attention" in p.families else ("last",)
        hidden = self.hidden_layers if "hidden" in p.families else ()
        return ProbeRequest.of(
            query, layers=p.layers, m=p.query_positions, focus=p.focus, groups=groups, hidden_layers=hidden
        )

    def probe_requests(self, query: str) -> list[ProbeRequest]:
        """The prefill :meth:`score` will ask for (none for a probe without prefill families)."""
        req = self._request(query)
        return [] if req is None else [req]

    def features(self, query: str, cands: Candidates, prober: Prober | None) -> np.ndarray:
        """The probe's ``[S, F]`` feature matrix (runs the prefill when attention families are used).

        Args:
            query: The question.
            cands: The call's sentences.
            prober: Runs the prefill; may be ``None`` for probes without attention families.

        Returns:
            float64 features in the probe's column order.
        """
        p = self.probe
        feats = None
        req = self._request(query)
        ctx = SentenceContext.of(query, cands)
        embedder = self.embedder
        if req is not None:
            if prober is None:
                raise ConfigError("prober", "is None but the probe reads the prefill", "pass a Prober")
            if embedder is not None and "embedding" in p.families and not prober.has(req):
                # The embedder runs in a second thread while the proxy prefills (both release the
                # GIL in torch), so the two passes overlap instead of adding up.
                from concurrent.futures import ThreadPoolExecutor

                with ThreadPoolExecutor(max_workers=1, thread_name_prefix="ctxcomp-embed") as pool:
                    lists = embedding_inputs(ctx, p.doc_vectors)
                    futures = {tuple(texts): pool.submit(embedder.embed, texts) for texts in lists}
                    feats = prober.fetch(req)
                embedder = PrecomputedEmbedder(embedder, {k: f.result() for k, f in futures.items()})
            else:
                feats = prober.fetch(req)
        return build_features(
            ctx,
            feats,
            families=p.families,
            heads=p.heads,
            embedder=embedder,
            doc_vectors=p.doc_vectors,
            hidden_layers=req.hidden_layers if req is not None else (),
        )

    def score(self, query: str, cands: Candidates, prober: Prober) -> np.ndarray:
        """The probe's logits for every sentence."""
        return self.probe.decision(self.features(query, cands, prober))


def resolve_probe(setup: ScorerSetup) -> TrainedProbe | None:
    """The trained probe for the proxy: ``probe_path`` (checked against the proxy) or the shipped one.

    Args:
        setup: Config and loaded proxy.

    Returns:
        The probe, or ``None`` when none ships and no ``probe_path`` was given.

    Raises:
        ProbeMismatchError: ``probe_path`` belongs to another proxy (and ``force_probe`` is false).
    """
    cfg = setup.config
    if cfg.probe_path is not None:
        loaded = load_probe(cfg.probe_path)
        loaded.check_model(setup.lm.model_id, setup.lm.weights_sha256, force=cfg.force_probe)
        loaded.check_against(setup.lm.num_layers, setup.lm.model.config.get_text_config().num_attention_heads)
        return loaded
    return find_shipped_probe(setup.lm.model_id, setup.lm.weights_sha256)


def probe_scorer(setup: ScorerSetup) -> ProbeScorer:
    """Factory of the ``probe`` scorer.

    Args:
        setup: Config and loaded proxy.

    Returns:
        The scorer.

    Raises:
        ConfigError: No probe ships for the proxy and no ``probe_path`` was given.
    """
    probe = resolve_probe(setup)
    if probe is None:
        raise ConfigError(
            "CompressionConfig.scorer",
            f"no trained probe ships for proxy {setup.config.proxy_model!r}",
            "train one with `ctxcomp train-probe` and pass probe_path, or use scorer='attention'",
        )
    return ProbeScorer.for_probe(probe, device=setup.lm.device)


_WARNED: set[str] = set()


def _warn_once(msg: str) -> None:
    if msg not in _WARNED:
        _WARNED.add(msg)
        logger.warning(msg)


__all__ = [
    "NULL_QUERY",
    "LiftScorer",
    "ProbeScorer",
    "Scorer",
    "ScorerFactory",
    "ScorerSetup",
    "attention_scorer",
    "build_scorer",
    "focus_scorer",
    "lift_scores",
    "probe_scorer",
    "register_scorer",
    "resolve_layers",
    "resolve_probe",
]
