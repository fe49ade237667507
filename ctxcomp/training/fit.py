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

import hashlib
import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ctxcomp.compressors.features import FAMILIES, DocVectors, build_features, feature_names
from ctxcomp.compressors.probe import ProbeFeatures, PromptTemplate
from ctxcomp.compressors.trained import TrainedProbe
from ctxcomp.errors import ConfigError, InputError
from ctxcomp.training.embeddings import CachedEmbedder
from ctxcomp.training.examples import ExtractedExample, build_examples, extract
from ctxcomp.training.qa import read_jsonl


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
) -> TrainedProbe:
    """Fit a probe on extracted examples, choosing ``C``, the head count and the depth by grouped CV AUC.

    The depth is the deepest layer the probe reads: the proxy's forward pass stops after it, so a
    shallower probe is proportionally cheaper. Of the candidate ``depths``, the shallowest whose
    CV AUC is within ``depth_tolerance`` of the best is chosen (accuracy first, then speed).

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
        seed: Seed of the fold assignment.
        meta: Extra fields stored in the file.
        depths: Candidate deepest layers (each restricts ``layers`` to those <= it); ``None`` uses
            the deepest of ``layers`` only.
        depth_tolerance: CV AUC a shallower depth may give up against the best depth.
        doc_vectors: Document vectors of the ``embedding`` family (see :func:`build_features`).

    Returns:
        The fitted probe.

    Raises:
        InputError: Too few usable questions.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

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
    rng = np.random.default_rng(seed)
    fold_of = rng.permutation(len(usable)) % max(folds, 1)
    use_att = "attention" in families
    grid_k = list(k_grid) if use_att else [0]
    uses_layers = use_att or "doc_attention" in families
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

    def cv_grid(lays: list[int]) -> dict[tuple[float, int], list[float]]:
        results: dict[tuple[float, int], list[float]] = {}
        if folds <= 1:  # no model selection: the single grid point, no CV estimate
            results[(c_grid[0], grid_k[0])] = [float("nan")]
        for f in range(folds if folds > 1 else 0):
            tr = [ex for ex, fo in zip(usable, fold_of, strict=True) if fo != f]
            te = [ex for ex, fo in zip(usable, fold_of, strict=True) if fo == f]
            ranked = rank_heads(tr, lays) if use_att else []
            for k in grid_k:
                heads = ranked[:k]
                xtr, ytr, _ = _matrix(tr, families, lays, heads, embedder, doc_vectors)
                xte, yte, gte = _matrix(te, families, lays, heads, embedder, doc_vectors)
                scaler = StandardScaler().fit(xtr)
                for c in c_grid:
                    lr = LogisticRegression(C=c, class_weight="balanced", max_iter=2000)
                    lr.fit(scaler.transform(xtr), ytr)
                    s = lr.decision_function(scaler.transform(xte))
                    per_q = [auc(s[gte == g], yte[gte == g]) for g in np.unique(gte)]
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
    x, y, _ = _matrix(usable, families, layers, heads, embedder, doc_vectors)
    scaler = StandardScaler().fit(x)
    lr = LogisticRegression(C=best_c, class_weight="balanced", max_iter=2000).fit(scaler.transform(x), y)
    from ctxcomp import __version__

    all_meta = {
        "cv": {
            "auc": cv if folds > 1 else None,
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
        "training": {"n_questions": len(usable), "n_sentences": len(y), "n_positive": int(y.sum())},
        "ctxcomp_version": __version__,
        **(meta or {}),
    }
    kept_layers = tuple(layers) if use_att or "doc_attention" in families else ()
    return TrainedProbe(
        path=None,
        model_spec=model_spec,
        model_id=model_id,
        weights_sha256=weights_sha256,
        layers=kept_layers,
        heads=tuple(heads),
        families=tuple(families),
        feature_names=tuple(feature_names(families, kept_layers, heads)),
        mean=scaler.mean_.astype(np.float64),
        scale=scaler.scale_.astype(np.float64),
        coef=lr.coef_[0].astype(np.float64),
        intercept=float(lr.intercept_[0]),
        query_positions=query_positions,
        focus=focus,
        meta=all_meta,
    )


def train_probe(
    model: str,
    data: str | Path,
    out: str | Path,
    *,
    split: str = "train",
    n_questions: int = 500,
    n_docs: int = 6,
    layers: Sequence[int] | None = None,
    families: Sequence[str] = FAMILIES,
    seed: int = 0,
    progress: bool = True,
    command: str | None = None,
    embedder: str | None = None,
    depths: Sequence[int] | None = None,
    doc_vectors: DocVectors = "embed",
) -> TrainedProbe:
    """Train a probe for a proxy and write it as JSON (the ``ctxcomp train-probe`` command).

    Args:
        model: Proxy model spec.
        data: NQ-style JSONL(.gz) (see :func:`build_examples`).
        out: Output probe JSON path.
        split: Question split to train on.
        n_questions: Number of training questions.
        n_docs: Documents per training context.
        layers: Layers to read (default: the preset's extraction layers, or the lower two thirds).
        families: Feature families.
        seed: Seed for positions and folds.
        progress: Progress bars.
        command: The command line, recorded for reproducibility.
        embedder: Embedder id for hard negatives and the ``embedding`` family (default MiniLM);
            recorded in the probe so scoring uses the same one.
        depths: Candidate deepest layers, chosen by CV (see :func:`fit_probe`). Default: the last
            extraction layer of each quarter of ``layers`` (features are extracted once, for all).
        doc_vectors: ``"embed"`` (each document embedded whole; the default: 1-1.6 points higher
            CV AUC on the shipped probes) or ``"mean"`` (mean of its sentence vectors: one MiniLM
            pass over the sentences only, faster). See :func:`build_features`.

    Returns:
        The trained probe (also written to ``out``).

    Example:
        >>> train_probe("qwen2.5-coder-0.5b-instruct", "nq.jsonl.gz", "probe.json")  # doctest: +SKIP
    """
    from ctxcomp.models.loader import cache_dir
    from ctxcomp.models.probed import ProbedLM

    unknown = set(families) - set(FAMILIES)
    if unknown:
        raise ConfigError("families", f"unknown families {sorted(unknown)}", f"choose from {list(FAMILIES)}")
    t0 = time.perf_counter()
    rows = read_jsonl(data)
    data_sha = hashlib.sha256(Path(data).read_bytes()).hexdigest()
    from ctxcomp.retrieval import resolve_embedder

    emb = resolve_embedder(embedder)
    examples = build_examples(rows, split=split, n_docs=n_docs, seed=seed, limit=n_questions, embedder=emb)
    lm = ProbedLM(model).load()
    template = PromptTemplate()
    n_layers = lm.num_layers
    if layers is None:
        layers = default_extraction_layers(model, n_layers)
    layers = sorted({li + n_layers if li < 0 else li for li in layers})
    src = lm.source
    key = hashlib.sha256(
        json.dumps(
            [
                src.model_id,
                src.weights_sha256,
                data_sha,
                split,
                n_docs,
                seed,
                list(layers),
                template.__dict__,
            ]
        ).encode()
    ).hexdigest()[:16]
    extracted = extract(
        lm,
        examples,
        layers=layers,
        template=template,
        cache=cache_dir() / "features" / key,
        progress=progress,
    )
    if depths is None:
        depths = sorted({layers[max(0, round(q * len(layers)) - 1)] for q in (0.25, 0.5, 0.75, 1.0)})
    probe = fit_probe(
        extracted,
        model_spec=model,
        model_id=src.model_id,
        weights_sha256=src.weights_sha256,
        layers=layers,
        families=families,
        seed=seed,
        embedder=emb,
        depths=depths,
        doc_vectors=doc_vectors,
        meta={
            "embedder": emb.id,
            "template": template.__dict__,
            "data": {
                "path": Path(data).name,
                "sha256": data_sha,
                "split": split,
                "n_docs": n_docs,
                "n_questions_requested": n_questions,
                "seed": seed,
            },
            "command": command,
            "train_seconds": round(time.perf_counter() - t0, 1),
        },
    )
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    Path(out).write_text(json.dumps(probe.to_dict(), indent=1))
    return probe


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
    "train_probe",
]
