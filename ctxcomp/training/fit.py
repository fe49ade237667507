"""Fitting probes (the Sentinel recipe) with a calibrated fusion of feature families.

Positives are sentences containing an answer, negatives the other sentences of the same context.
An L2 logistic regression, class-balanced, on standardised features; ``C``, the number of
selected heads and the depth are picked by grouped 5-fold CV on AUC (heads ranked by univariate
AUC inside each training fold, in the manner of retrieval/QR heads). :func:`train_probe` is the
``ctxcomp train-probe`` command.

Example:
    >>> auc(np.array([0.1, 0.9, 0.5]), np.array([False, True, False]))
    1.0
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ctxcomp.compressors.features import FAMILIES, DocVectors, build_features, feature_names
from ctxcomp.compressors.probe import ProbeFeatures
from ctxcomp.compressors.trained import TrainedProbe
from ctxcomp.errors import ConfigError, InputError
from ctxcomp.training.embeddings import CachedEmbedder
from ctxcomp.training.examples import ExtractedExample


def auc(scores: np.ndarray, labels: np.ndarray) -> float:
    """Area under the ROC curve (ties count one half).

    Args:
        scores: ``[n]`` scores.
        labels: ``[n]`` bool labels.

    Returns:
        AUC, or NaN with a single class.

    Example:
        >>> auc(np.array([0.1, 0.9, 0.5]), np.array([False, True, False]))
        1.0
    """
    labels = labels.astype(bool)
    npos, nneg = int(labels.sum()), int((~labels).sum())
    if npos == 0 or nneg == 0:
        return float("nan")
    from scipy.stats import rankdata

    r = rankdata(scores)
    return float((r[labels].sum() - npos * (npos + 1) / 2) / (npos * nneg))


def feature_matrix(
    data: Sequence[ExtractedExample],
    *,
    families: Sequence[str],
    layers: Sequence[int],
    heads: Sequence[tuple[int, int]],
    embedder: Any,
    doc_vectors: DocVectors = "embed",
    hidden_layers: Sequence[int] = (),
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Stacked features, labels and context ids of several examples.

    Args:
        data: Extracted examples.
        families: Feature families.
        layers: Probe layers (a subset of the extracted ones).
        heads: Selected ``(layer, head)`` pairs.
        embedder: Embedder of the ``embedding`` family.
        doc_vectors: Document vectors of the ``embedding`` family.
        hidden_layers: Pooled hidden layers of the ``hidden`` family.

    Returns:
        ``(x [N, F], y [N], groups [N])``.
    """
    xs, ys, gs = [], [], []
    for g, ex in enumerate(data):
        probe = restrict(ex.probe, layers)
        xs.append(
            build_features(
                ex.ctx,
                probe,
                families=families,
                heads=heads,
                embedder=embedder,
                doc_vectors=doc_vectors,
                hidden_layers=hidden_layers,
            )
        )
        ys.append(ex.labels)
        gs.append(np.full(len(ex.labels), g))
    return np.concatenate(xs), np.concatenate(ys), np.concatenate(gs)


def _matrix(
    data: Sequence[ExtractedExample],
    families: Sequence[str],
    layers: Sequence[int],
    heads: Sequence[tuple[int, int]],
    embedder: Any,
    doc_vectors: DocVectors = "embed",
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return feature_matrix(
        data, families=families, layers=layers, heads=heads, embedder=embedder, doc_vectors=doc_vectors
    )


def restrict(probe: ProbeFeatures, layers: Sequence[int]) -> ProbeFeatures:
    """The features of a subset of the extracted layers.

    Args:
        probe: Features over several layers.
        layers: The layers to keep (each must be in ``probe.layers``).

    Returns:
        The restricted features.
    """
    idx = [probe.layers.index(li) for li in layers]
    return ProbeFeatures(
        probe.mass[idx],
        probe.n_tokens,
        tuple(layers),
        probe.n_windows,
        probe.n_context_tokens,
        {g: v[idx] for g, v in probe.group_mass.items()},
        probe.hidden,
        probe.query_hidden,
    )


def rank_heads(data: Sequence[ExtractedExample], layers: Sequence[int]) -> list[tuple[int, int]]:
    """All ``(layer, head)`` pairs of ``layers`` by mean per-question AUC of their lift, best first.

    Args:
        data: Extracted examples.
        layers: Candidate layers.

    Returns:
        Ranked pairs.
    """
    from scipy.stats import rankdata

    total: np.ndarray | None = None
    count = 0
    n_heads = 0
    for ex in data:
        y = ex.labels
        npos, nneg = int(y.sum()), int((~y).sum())
        if npos == 0 or nneg == 0:
            continue
        lift = restrict(ex.probe, layers).lift()  # [L, H, S]
        n_heads = lift.shape[1]
        flat = lift.reshape(-1, lift.shape[-1])  # [L*H, S]
        r = rankdata(flat, axis=1)  # [L*H, S]
        aucs = (r[:, y].sum(1) - npos * (npos + 1) / 2) / (npos * nneg)  # [L*H]
        total = aucs if total is None else total + aucs
        count += 1
    if total is None:
        return []
    mean = total / count
    pairs = [(li, h) for li in layers for h in range(n_heads)]
    return [pairs[i] for i in sorted(range(len(pairs)), key=lambda i: (-float(mean[i]), pairs[i]))]


def source_of(example: ExtractedExample) -> str:
    """The data source of an example, for balancing (the NQ-pool regimes count as one source)."""
    regime = getattr(example.source, "regime", "")
    return "nq" if regime in ("", "dense", "lexical", "mixed", "random") else str(regime)


def _objective(scores: np.ndarray, ex: ExtractedExample) -> float:
    """Per-context selection objective: mean of the sentence AUC and the AUC inside the gold document(s)
    (the sentence AUC alone where the gold documents hold a single class)."""
    a = auc(scores, ex.labels)
    gold = getattr(ex.source, "gold", ()) or ()
    if not gold:
        return a
    mask = np.isin(np.asarray(ex.ctx.doc_of), np.asarray(gold))
    y = ex.labels[mask]
    g = auc(scores[mask], y) if 0 < y.sum() < len(y) else float("nan")
    return a if not np.isfinite(g) else (a + g) / 2


def fit_probe(
    data: Sequence[ExtractedExample],
    *,
    model_spec: str,
    model_id: str,
    weights_sha256: str | None,
    layers: Sequence[int],
    families: Sequence[str] = FAMILIES,
    embedder: Any = None,
    c_grid: Sequence[float] = (0.01, 0.1, 1.0),
    k_grid: Sequence[int] = (0, 16, 48),
    folds: int = 5,
    query_positions: int = 1,
    focus: bool = False,
    seed: int = 0,
    meta: dict[str, Any] | None = None,
    depths: Sequence[int] | None = None,
    depth_tolerance: float = 0.005,
    doc_vectors: DocVectors = "embed",
    hidden_layers: Sequence[int] = (),
    learner: str = "logistic",
    within_doc: float = 0.0,
    balance: bool = False,
) -> TrainedProbe:
    """Fit a probe on extracted examples, choosing ``C``, the head count and the depth by grouped CV.

    The CV objective is, per context, the mean of the sentence AUC and the AUC inside the gold
    document(s) (a compressor must rank sentences inside a document, not only pick the document).
    The depth is the deepest layer the probe reads: the proxy's forward pass stops after it, so a
    shallower probe is proportionally cheaper. Of the candidate ``depths``, the shallowest whose
    objective is within ``depth_tolerance`` of the best is chosen (accuracy first, then speed).

    Args:
        data: Extracted examples (at least ``folds`` questions with a positive).
        model_spec: Proxy spec, recorded in the file.
        model_id: Proxy id.
        weights_sha256: Proxy weights hash.
        layers: Layers the probe may read.
        families: Feature families to use.
        embedder: Embedder for the ``embedding`` family.
        c_grid: Inverse regularisation strengths tried.
        k_grid: Numbers of selected heads tried (0: per-layer means only).
        folds: CV folds (grouped by question); 0 or 1 fits the first grid point without CV.
        query_positions: Probe rows used in extraction.
        focus: Whether extraction used the answer-hint template.
        seed: Seed of the fold assignment and the pair sampling.
        meta: Extra fields stored in the file.
        depths: Candidate deepest layers (each restricts ``layers`` to those <= it); ``None`` uses
            the deepest of ``layers`` only.
        depth_tolerance: Objective a shallower depth may give up against the best depth.
        doc_vectors: Document vectors of the ``embedding`` family (see :func:`build_features`).
        hidden_layers: Pooled hidden layers of the ``hidden`` family.
        learner: ``logistic`` (pointwise) or ``pairwise`` (ranking within a context); see
            :mod:`ctxcomp.training.learners`.
        within_doc: Share of within-document negatives in each positive's pairs (``pairwise``).
        balance: Weight each data source (NQ pool, same-topic, multi-hop) equally.

    Returns:
        The fitted probe.

    Raises:
        InputError: Too few usable questions.
        ConfigError: A learner the probe file cannot hold.
    """
    from ctxcomp.training.learners import fit_learner

    if learner not in ("logistic", "pairwise"):
        raise ConfigError(
            "learner", f"{learner!r} cannot be stored in a probe file", "use logistic or pairwise"
        )
    usable = [ex for ex in data if ex.labels.any() and not ex.labels.all()]
    if len(usable) < max(folds, 2):
        raise InputError(
            "data",
            f"only {len(usable)} questions have both answer and non-answer sentences",
            f"provide at least {folds}",
        )
    if "embedding" in families and not isinstance(embedder, CachedEmbedder):
        from ctxcomp.retrieval import resolve_embedder

        embedder = CachedEmbedder(resolve_embedder(embedder))
    sources = [source_of(ex) for ex in usable]
    counts = {src: sources.count(src) for src in set(sources)}
    ctx_w = [len(usable) / (len(counts) * counts[src]) if balance else 1.0 for src in sources]
    rng = np.random.default_rng(seed)
    fold_of = rng.permutation(len(usable)) % max(folds, 1)
    use_att = "attention" in families
    grid_k = list(k_grid) if use_att else [0]
    uses_layers = bool({"attention", "doc_attention", "query_attention"} & set(families))
    all_layers = sorted(layers)
    # Candidate deepest layers; ``None`` (no depth to choose) when no family reads layers.
    candidates: list[int | None] = [None]
    if uses_layers:
        deep = sorted({d for d in (depths or [all_layers[-1]]) if d >= all_layers[0]})
        if not deep:
            raise InputError(
                "depths", f"no candidate depth is >= the first layer {all_layers[0]}", "pass deeper ones"
            )
        candidates = [*deep]
    kw: dict[str, Any] = {"embedder": embedder, "doc_vectors": doc_vectors, "hidden_layers": hidden_layers}

    def fit(idx: Sequence[int], lays: list[int], heads: list[tuple[int, int]], c: float) -> Any:
        x, y, g = feature_matrix([usable[i] for i in idx], families=families, layers=lays, heads=heads, **kw)
        docs = np.concatenate([np.asarray(usable[i].ctx.doc_of) for i in idx])
        w = np.concatenate([np.full(len(usable[i].labels), ctx_w[i]) for i in idx])
        return fit_learner(learner, x, y, g, c=c, docs=docs, within_doc=within_doc, group_weight=w, seed=seed)

    def cv_grid(lays: list[int]) -> dict[tuple[float, int], list[float]]:
        results: dict[tuple[float, int], list[float]] = {}
        if folds <= 1:  # no model selection: the single grid point, no CV estimate
            results[(c_grid[0], grid_k[0])] = [float("nan")]
        for f in range(folds if folds > 1 else 0):
            tr = [i for i in range(len(usable)) if fold_of[i] != f]
            te = [i for i in range(len(usable)) if fold_of[i] == f]
            ranked = rank_heads([usable[i] for i in tr], lays) if use_att else []
            for k in grid_k:
                heads = ranked[:k]
                xs = [
                    feature_matrix([usable[i]], families=families, layers=lays, heads=heads, **kw)[0]
                    for i in te
                ]
                for c in c_grid:
                    model = fit(tr, lays, heads, c)
                    per_q = [_objective(model.decision(x), usable[i]) for x, i in zip(xs, te, strict=True)]
                    results.setdefault((c, k), []).append(float(np.nanmean(per_q)))
        return results

    def best_of(results: dict[tuple[float, int], list[float]]) -> tuple[tuple[float, int], float]:
        return max(
            ((key, float(np.mean(v))) for key, v in results.items()),
            key=lambda kv: (kv[1], -kv[0][1], -kv[0][0]),
        )

    per_depth: list[dict[str, Any]] = []
    for d in candidates:
        lays = [li for li in all_layers if d is None or li <= d]
        res = cv_grid(lays)
        (c_d, k_d), auc_d = best_of(res)
        per_depth.append({"deepest": d, "layers": lays, "C": c_d, "k_heads": k_d, "auc": auc_d, "grid": res})
    top = max(r["auc"] for r in per_depth)
    chosen = next(
        (r for r in per_depth if not np.isfinite(top) or r["auc"] >= top - depth_tolerance), per_depth[-1]
    )
    layers = chosen["layers"] if uses_layers else list(layers)
    best_c, best_k, cv, results = chosen["C"], chosen["k_heads"], chosen["auc"], chosen["grid"]
    heads = rank_heads(usable, layers)[:best_k] if use_att else []
    model = fit(range(len(usable)), list(layers), heads, best_c)
    n_sent = sum(len(ex.labels) for ex in usable)
    n_pos = sum(int(ex.labels.sum()) for ex in usable)
    from ctxcomp import __version__

    all_meta = {
        "cv": {
            "auc": cv if folds > 1 else None,
            "objective": "per context: mean of sentence AUC and within-gold-document AUC",
            "C": best_c,
            "k_heads": best_k,
            "folds": folds,
            "grid": [
                {"C": c, "k_heads": k, "auc": float(np.mean(v))} for (c, k), v in sorted(results.items())
            ]
            if folds > 1
            else [],
        },
        "depth": {
            "chosen": chosen["deepest"],
            "tolerance": depth_tolerance,
            "candidates": [
                {"deepest": r["deepest"], "auc": r["auc"] if folds > 1 else None} for r in per_depth
            ],
        },
        "doc_vectors": doc_vectors,
        "learner": {"kind": learner, "within_doc": within_doc, "balance": balance},
        "training": {
            "n_questions": len(usable),
            "n_sentences": n_sent,
            "n_positive": n_pos,
            "sources": {src: counts[src] for src in sorted(counts)},
        },
        "ctxcomp_version": __version__,
        **(meta or {}),
    }
    if "hidden" in families:
        all_meta["hidden_layers"] = [int(x) for x in hidden_layers]
    kept_layers = tuple(layers) if uses_layers else ()
    return TrainedProbe(
        path=None,
        model_spec=model_spec,
        model_id=model_id,
        weights_sha256=weights_sha256,
        layers=kept_layers,
        heads=tuple(heads),
        families=tuple(families),
        feature_names=tuple(
            feature_names(families, kept_layers, heads, hidden_layers if "hidden" in families else ())
        ),
        mean=model.mean.astype(np.float64),
        scale=model.scale.astype(np.float64),
        coef=model.coef.astype(np.float64),
        intercept=float(model.intercept),
        query_positions=query_positions,
        focus=focus,
        meta=all_meta,
    )


def default_extraction_layers(model: str, n_layers: int) -> list[int]:
    """Layers a probe reads by default: up to two thirds of the depth (early exit after them).

    Args:
        model: Proxy spec.
        n_layers: Its depth.

    Returns:
        Layer indices.

    Example:
        >>> default_extraction_layers("x", 24)[-1]
        15
    """
    return list(range(0, (2 * n_layers) // 3))


__all__ = [
    "CachedEmbedder",
    "auc",
    "default_extraction_layers",
    "fit_probe",
    "rank_heads",
    "restrict",
]
