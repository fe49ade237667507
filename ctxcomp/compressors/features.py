"""Sentence features for the trained probe, grouped in switchable families.

Families:

* ``attention``: log attention lift of each selected (layer, head), per-layer head means, and the
  within-context z-score of the overall mean (from :class:`~ctxcomp.compressors.probe.ProbeFeatures`);
* ``doc_attention``: log of the sentence's document's total attention mass relative to a uniform
  share of documents;
* ``embedding``: MiniLM cosine of the sentence and of its document to the question, and the
  sentence cosine's within-context z-score. The document vector is either the normalised mean of
  its sentence vectors (``doc_vectors="mean"``: one embedder pass over the sentences only, and the
  whole document counts, not just the first 256 word pieces MiniLM reads) or the document embedded
  as one text (``"embed"``, probes trained before ctxcomp 0.1.0's mean vectors);
* ``bm25``: Okapi BM25 of the sentence against the question over the context's sentences, raw and
  relative to the context's best;
* ``position``: relative document slot, relative sentence index, first-sentence flag, log length;
* ``query_attention``: like ``attention`` (per-layer means and the overall z-score) but read from
  every question token instead of the last position (the prefill's ``"query"`` probe-row group);
* ``hidden``: for each pooled hidden layer, the cosine of each sentence's mean hidden state with the
  question's (last token, and mean over question tokens), both centred on the context's mean
  sentence state (raw LLM states share a large common direction);
* ``coverage``: the idf-weighted share of the question's words the sentence contains (idf over
  the context's sentences), and that share minus its maximum within the sentence's document;
* ``within_doc``: each available base score (overall attention, MiniLM cosine, BM25, deepest hidden
  cosine) minus its maximum within the sentence's document: ranks sentences inside a document,
  which document-level evidence cannot do.

Example:
    >>> s = bm25_scores("capital of france", ["paris is the capital of france", "berlin is big"])
    >>> s.round(2).tolist()
    [1.83, 0.0]
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal, get_args

import numpy as np

from ctxcomp.compressors.probe import ProbeFeatures
from ctxcomp.types import Candidates

FAMILIES = (
    "attention",
    "doc_attention",
    "embedding",
    "bm25",
    "position",
    "query_attention",
    "hidden",
    "within_doc",
    "coverage",
)
#: Families whose features come from the proxy's prefill.
PREFILL_FAMILIES = frozenset({"attention", "doc_attention", "query_attention", "hidden"})
DocVectors = Literal["mean", "embed"]
DOC_VECTORS: tuple[str, ...] = get_args(DocVectors)
_WORD = re.compile(r"\w+", re.UNICODE)
_EPS = 1e-2


def _tokens(text: str) -> list[str]:
    return [w.lower() for w in _WORD.findall(text)]


def bm25_scores(query: str, sentences: Sequence[str], *, k1: float = 1.2, b: float = 0.75) -> np.ndarray:
    """Okapi BM25 of each sentence for ``query``, with the sentences as the collection.

    Args:
        query: The question.
        sentences: The candidate texts.
        k1: Term-frequency saturation.
        b: Length normalisation.

    Returns:
        ``[S]`` float64 scores.
    """
    docs = [_tokens(s) for s in sentences]
    n = len(docs)
    if n == 0:
        return np.zeros(0)
    avg = max(sum(len(d) for d in docs) / n, 1e-9)
    df: Counter[str] = Counter()
    for d in docs:
        df.update(set(d))
    q = set(_tokens(query))
    out = np.zeros(n)
    for i, d in enumerate(docs):
        tf = Counter(d)
        s = 0.0
        for w in q:
            f = tf.get(w, 0)
            if not f:
                continue
            idf = math.log(1 + (n - df[w] + 0.5) / (df[w] + 0.5))
            s += idf * f * (k1 + 1) / (f + k1 * (1 - b + b * len(d) / avg))
        out[i] = s
    return out


def _zscore(x: np.ndarray) -> np.ndarray:
    sd = x.std()
    return (x - x.mean()) / sd if sd > 1e-9 else np.zeros_like(x)


@dataclass(frozen=True)
class SentenceContext:
    """What the non-attention features need about one compression call.

    Attributes:
        query: The question.
        texts: Sentence texts, ``[S]``.
        doc_of: Document index of each sentence, ``[S]``.
        index_in_doc: Sentence index within its document, ``[S]``.
        doc_sizes: Number of sentences of each document.
        doc_texts: Text of each document.
    """

    query: str
    texts: Sequence[str]
    doc_of: Sequence[int]
    index_in_doc: Sequence[int]
    doc_sizes: Sequence[int]
    doc_texts: Sequence[str]

    @classmethod
    def of(cls, query: str, cands: Candidates) -> SentenceContext:
        """The context of one call's candidates.

        Args:
            query: The question.
            cands: The split documents.

        Returns:
            The sentence context.

        Example:
            >>> from ctxcomp.text.split import split_documents
            >>> from ctxcomp.types import Document
            >>> SentenceContext.of("q", split_documents([Document("a", "Ann ran. Bob sat.")])).index_in_doc
            [0, 1]
        """
        return cls(
            query,
            cands.texts,
            list(cands.doc_of),
            [s.index for s in cands.sentences],
            cands.doc_sizes,
            [d.text for d in cands.docs],
        )


def feature_names(
    families: Sequence[str],
    layers: Sequence[int],
    heads: Sequence[tuple[int, int]],
    hidden_layers: Sequence[int] = (),
) -> list[str]:
    """Names of the feature columns, in order.

    Args:
        families: Enabled families.
        layers: Probe layers (for per-layer means).
        heads: Selected ``(layer, head)`` pairs.
        hidden_layers: Pooled hidden layers (``hidden`` family).

    Returns:
        Column names.

    Example:
        >>> feature_names(["bm25", "within_doc"], [], [])
        ['bm25', 'bm25_rel', 'wd_bm25']
    """
    names: list[str] = []
    if "attention" in families:
        names += [f"att_L{li}H{h}" for li, h in heads]
        names += [f"att_L{li}_mean" for li in layers]
        names += ["att_all_z"]
    if "doc_attention" in families:
        names += ["doc_att"]
    if "embedding" in families:
        names += ["cos_sent", "cos_doc", "cos_sent_z"]
    if "bm25" in families:
        names += ["bm25", "bm25_rel"]
    if "position" in families:
        names += ["pos_doc", "pos_sent", "first_sent", "log_len"]
    if "query_attention" in families:
        names += [f"qatt_L{li}_mean" for li in layers]
        names += ["qatt_all_z"]
    if "hidden" in families:
        for li in hidden_layers:
            names += [f"hid_L{li}_last", f"hid_L{li}_query"]
    if "within_doc" in families:
        names += [f"wd_{b}" for b in _within_doc_bases(families, hidden_layers)]
    if "coverage" in families:
        names += ["qcov", "wd_qcov"]
    return names


def question_coverage(query: str, sentences: Sequence[str]) -> np.ndarray:
    """Idf-weighted share of the question's words that each sentence contains (idf over the sentences).

    Args:
        query: The question.
        sentences: The candidate texts.

    Returns:
        ``[S]`` shares in ``[0, 1]``.

    Example:
        >>> cov = question_coverage("capital of france", ["paris is the capital of france", "berlin"])
        >>> cov.round(2).tolist()
        [1.0, 0.0]
    """
    docs = [set(_tokens(t)) for t in sentences]
    n = len(docs)
    if n == 0:
        return np.zeros(0)
    q = set(_tokens(query))
    idf = {w: math.log(1 + (n + 1) / (sum(w in d for d in docs) + 0.5)) for w in q}
    total = sum(idf.values())
    if total <= 0:
        return np.zeros(n)
    return np.array([sum(idf[w] for w in q if w in d) / total for d in docs])


def embedding_inputs(ctx: SentenceContext, doc_vectors: str = "embed") -> list[list[str]]:
    """The text lists :func:`build_features` embeds for the ``embedding`` family, in call order.

    A scorer can embed these ahead of time (e.g. concurrently with the proxy's prefill) and hand
    :func:`build_features` an embedder that already holds them (:class:`PrecomputedEmbedder`).

    Args:
        ctx: The call's sentences.
        doc_vectors: ``"embed"`` (documents embedded whole: a second list) or ``"mean"``.

    Returns:
        ``[[query, *sentences]]``, plus ``[documents]`` when documents are embedded whole.

    Example:
        >>> ctx = SentenceContext("q?", ["A.", "B."], [0, 1], [0, 0], [1, 1], ["A.", "B."])
        >>> embedding_inputs(ctx, "mean")
        [['q?', 'A.', 'B.']]
    """
    lists = [[ctx.query, *ctx.texts]]
    if doc_vectors != "mean":
        lists.append(list(ctx.doc_texts))
    return lists


class PrecomputedEmbedder:
    """An embedder whose answers for known text lists are already computed.

    ``embed(texts)`` returns the stored result for exactly that list and falls back to the inner
    embedder for anything else.

    Args:
        inner: The embedder to fall back to (its ``id`` is kept).
        results: ``tuple(texts) -> [len(texts), dim]`` embeddings.

    Example:
        >>> from ctxcomp.retrieval import HashingEmbedder
        >>> inner = HashingEmbedder(8)
        >>> pre = PrecomputedEmbedder(inner, {("a b",): inner.embed(["a b"])})
        >>> pre.embed(["a b"]).shape, pre.embed(["c"]).shape
        ((1, 8), (1, 8))
    """

    def __init__(self, inner: Any, results: dict[tuple[str, ...], np.ndarray]) -> None:
        self.inner = inner
        self.id = getattr(inner, "id", "embedder")
        self.results = results

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """Embeddings of ``texts`` (stored when known, else computed by the inner embedder)."""
        found = self.results.get(tuple(texts))
        if found is None:
            return np.asarray(self.inner.embed(list(texts)))
        return np.asarray(found)


def _within_doc_bases(families: Sequence[str], hidden_layers: Sequence[int]) -> list[str]:
    bases = []
    if "attention" in families:
        bases.append("att")
    if "embedding" in families:
        bases.append("cos")
    bases.append("bm25")
    if "hidden" in families and hidden_layers:
        bases.append("hid")
    return bases


def _doc_max(x: np.ndarray, doc_of: np.ndarray, n_docs: int) -> np.ndarray:
    """``[S]`` the maximum of ``x`` over each sentence's document."""
    out = np.full(n_docs, -np.inf)
    np.maximum.at(out, doc_of, x)
    return out[doc_of]


def centred_cosine(vectors: np.ndarray, query: np.ndarray) -> np.ndarray:
    """Cosine of each row with ``query`` after subtracting the rows' mean from both.

    Args:
        vectors: ``[S, D]``.
        query: ``[D]``.

    Returns:
        ``[S]`` cosines (0 where a centred vector is zero).

    Example:
        >>> centred_cosine(np.array([[1.0, 0.0], [0.0, 1.0]]), np.array([1.0, 0.0])).round(2).tolist()
        [1.0, -1.0]
    """
    c = vectors.mean(axis=0)  # [D]
    v = vectors - c  # [S, D]
    q = query - c  # [D]
    denom = np.linalg.norm(v, axis=1) * max(float(np.linalg.norm(q)), 1e-12)  # [S]
    return np.where(denom > 1e-12, v @ q / np.maximum(denom, 1e-12), 0.0)


def build_features(
    ctx: SentenceContext,
    probe: ProbeFeatures | None,
    *,
    families: Sequence[str],
    heads: Sequence[tuple[int, int]],
    embedder: Any = None,
    doc_vectors: DocVectors = "embed",
    hidden_layers: Sequence[int] = (),
) -> np.ndarray:
    """The ``[S, F]`` feature matrix of one call (columns as in :func:`feature_names`).

    Args:
        ctx: Sentences and documents.
        probe: Prefill features (needed by the :data:`PREFILL_FAMILIES`).
        families: Enabled families.
        heads: Selected ``(layer, head)`` pairs; layer is a probe layer id.
        embedder: A :class:`ctxcomp.retrieval.Embedder` (``embed(texts) -> [n, d]``, normalised);
            needed by the ``embedding`` family.
        doc_vectors: ``"mean"`` (normalised mean of the document's sentence vectors) or ``"embed"``
            (the document embedded as one text); a probe records which one it was trained with.
        hidden_layers: Pooled hidden layers used by the ``hidden`` family (in ``probe.hidden``).

    Returns:
        float64 features.
    """
    s = len(ctx.texts)
    cols: list[np.ndarray] = []
    if "attention" in families or "doc_attention" in families:
        assert probe is not None, "attention families need probe features"
        lift = probe.lift()  # [L, H, S]
        lidx = {li: i for i, li in enumerate(probe.layers)}
    if "attention" in families:
        assert probe is not None
        for li, h in heads:
            cols.append(np.log(lift[lidx[li], h] + _EPS))
        for li in probe.layers:
            cols.append(np.log(lift[lidx[li]].mean(0) + _EPS))
        cols.append(_zscore(np.log(lift.mean((0, 1)) + _EPS)))
    if "doc_attention" in families:
        assert probe is not None
        mass = probe.mass.mean((0, 1))  # [S]
        n_docs = max(len(ctx.doc_sizes), 1)
        per_doc = np.bincount(np.asarray(ctx.doc_of), weights=mass, minlength=n_docs)
        cols.append(np.log(per_doc[np.asarray(ctx.doc_of)] * n_docs + _EPS))
    if "embedding" in families:
        assert embedder is not None, "the embedding family needs an embedder"
        # Short and long texts in separate calls: one padded batch of both made MiniLM ~5x slower.
        sv = embedder.embed([ctx.query, *ctx.texts])  # [1 + S, dim]
        qv, sv = sv[0], sv[1:]
        if doc_vectors == "mean":
            n_docs = max(len(ctx.doc_sizes), 1)
            dv = np.zeros((n_docs, sv.shape[1]), dtype=np.float64)  # [D, dim]
            np.add.at(dv, np.asarray(ctx.doc_of), sv)
            dv /= np.maximum(np.linalg.norm(dv, axis=1, keepdims=True), 1e-12)
        else:
            dv = embedder.embed(list(ctx.doc_texts))  # [D, dim]
        cos_s = sv @ qv
        cols += [cos_s, (dv @ qv)[np.asarray(ctx.doc_of)], _zscore(cos_s)]
    bm = bm25_scores(ctx.query, ctx.texts) if {"bm25", "within_doc"} & set(families) else np.zeros(s)
    if "bm25" in families:
        cols += [bm, bm / bm.max() if bm.max() > 0 else bm]
    if "position" in families:
        n_docs = max(len(ctx.doc_sizes), 1)
        doc_of = np.asarray(ctx.doc_of)
        idx = np.asarray(ctx.index_in_doc, dtype=np.float64)
        sizes = np.asarray(ctx.doc_sizes, dtype=np.float64)[doc_of]
        cols += [
            doc_of / max(n_docs - 1, 1),
            idx / np.maximum(sizes - 1, 1),
            (idx == 0).astype(np.float64),
            np.log1p(np.array([len(_tokens(t)) for t in ctx.texts], dtype=np.float64)),
        ]
    if "query_attention" in families:
        assert probe is not None and "query" in probe.group_mass, "query_attention needs the 'query' group"
        qlift = probe.lift("query")  # [L, H, S]
        for i in range(len(probe.layers)):
            cols.append(np.log(qlift[i].mean(0) + _EPS))
        cols.append(_zscore(np.log(qlift.mean((0, 1)) + _EPS)))
    hid: dict[int, np.ndarray] = {}
    if "hidden" in families:
        assert probe is not None, "the hidden family needs prefill features"
        for li in hidden_layers:
            hv = probe.hidden[li].astype(np.float64)  # [S, D]
            hid[li] = centred_cosine(hv, probe.query_hidden[li]["last"])
            cols += [hid[li], centred_cosine(hv, probe.query_hidden[li]["query"])]
    if "within_doc" in families:
        doc_of = np.asarray(ctx.doc_of)
        n_docs = max(len(ctx.doc_sizes), 1)
        base = {"bm25": bm}
        if "attention" in families:
            base["att"] = np.log(lift.mean((0, 1)) + _EPS)
        if "embedding" in families:
            base["cos"] = cos_s
        if hid:
            base["hid"] = hid[max(hid)]
        for name in _within_doc_bases(families, hidden_layers):
            x = base[name]
            cols.append(x - _doc_max(x, doc_of, n_docs))
    if "coverage" in families:
        cov = question_coverage(ctx.query, ctx.texts)
        cols += [cov, cov - _doc_max(cov, np.asarray(ctx.doc_of), max(len(ctx.doc_sizes), 1))]
    if not cols:
        return np.zeros((s, 0))
    return np.stack(cols, axis=1).astype(np.float64)
