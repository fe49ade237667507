"""Recall calibration of approximate indexes: the smallest IVF ``nprobe`` / HNSW ``efSearch`` that works.

The queries are stored vectors sampled with a seed (leave-one-out: each query's own entry is dropped
from both answers), the truth is the exhaustive search, and the knob climbs a doubling ladder and is
then bisected until recall@10 reaches the target plus :data:`CALIBRATION_MARGIN`.

Example:
    >>> import numpy as np
    >>> from ctxcomp.retrieval.vectors import VectorIndex
    >>> rng = np.random.default_rng(0)
    >>> x = rng.standard_normal((400, 8)).astype(np.float32)  # [n, d]
    >>> x /= np.linalg.norm(x, axis=1, keepdims=True)
    >>> vi = VectorIndex.hnsw(8)
    >>> vi.add(x, np.arange(400))
    >>> result = calibrate_search(vi, np.arange(400), recall_target=0.9, seed=1)
    >>> result["param"], result["recall"] >= result["target"]
    ('efSearch', True)
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np

from ctxcomp.retrieval.vectors import VectorIndex

#: Queries (sampled stored vectors, leave-one-out) used to calibrate ``nprobe`` / ``efSearch``.
CALIBRATION_QUERIES = 256
#: Default recall@10 target of the calibration, and the margin added on top of it.
RECALL_TARGET = 0.95
CALIBRATION_MARGIN = 0.01
#: Largest ``efSearch`` the HNSW ladder tries (IVF stops at ``nlist``).
HNSW_EF_MAX = 4096


def _drop(row: np.ndarray, self_id: int) -> list[int]:
    return [int(i) for i in row if i >= 0 and i != self_id]


def calibrate_search(
    vectors: VectorIndex,
    live_ids: np.ndarray,
    *,
    recall_target: float = RECALL_TARGET,
    seed: int = 0,
    n_queries: int = CALIBRATION_QUERIES,
    stacklevel: int = 1,
) -> dict[str, Any]:
    """Set ``vectors.search_value`` to the smallest ``nprobe`` / ``efSearch`` reaching the recall target.

    Args:
        vectors: An IVF or HNSW :class:`~ctxcomp.retrieval.vectors.VectorIndex` (flat: nothing to do).
        live_ids: int64 ``[n]`` ids of the stored vectors to sample queries from.
        recall_target: recall@10 to reach; :data:`CALIBRATION_MARGIN` is added on top (capped at 1).
        seed: The query sample is drawn with ``seed + 1``.
        n_queries: Sample size.
        stacklevel: Where the warning about an unreachable target points, counted as in
            :func:`warnings.warn` but from the caller of this function (1: that caller).

    Returns:
        ``{"param", "value", "recall", "target", "k", "queries", "n"}``, or ``{}`` for flat indexes
        and indexes with fewer than two vectors.

    Example:
        >>> import numpy as np
        >>> calibrate_search(VectorIndex.flat(4), np.arange(0))
        {}
    """
    n = len(live_ids)
    if vectors.kind not in ("ivf", "hnsw") or n < 2:
        return {}
    target = min(1.0, recall_target + CALIBRATION_MARGIN)
    k = min(10, n - 1)
    rng = np.random.default_rng(seed + 1)
    sample = np.sort(rng.choice(live_ids, size=min(n_queries, n), replace=False))  # [m]
    q = vectors.reconstruct(sample)  # [m, d]
    ladder_max = vectors.nlist if vectors.kind == "ivf" else HNSW_EF_MAX

    def top_k_without_self(ids: np.ndarray) -> list[set[int]]:
        return [set(_drop(row, int(s))[:k]) for row, s in zip(ids, sample, strict=True)]

    truth = top_k_without_self(vectors.exact_search(q, k + 1))  # from [m, k+1]

    def recall(value: int) -> float:
        approx = top_k_without_self(vectors.search_at(q, k + 1, value))  # from [m, k+1]
        return float(np.mean([len(a & t) / max(1, len(t)) for a, t in zip(approx, truth, strict=True)]))

    # IVF: nprobe 1, 2, 4, ... up to nlist; HNSW: efSearch 16, 32, ... (always > k), then bisect
    lo, hi = (0, 0) if vectors.kind == "ivf" else (k + 1, 0)
    value = 1 if vectors.kind == "ivf" else max(16, k + 2)
    results: dict[int, float] = {}
    while True:
        value = min(value, ladder_max)
        results[value] = recall(value)
        if results[value] >= target or value == ladder_max:
            hi = value
            break
        lo, value = value, value * 2
    while hi - lo > max(1, lo // 8) and results[hi] >= target:
        mid = (lo + hi) // 2
        results[mid] = recall(mid)
        if results[mid] >= target:
            hi = mid
        else:
            lo = mid
    if results[hi] < target:
        warnings.warn(
            f"calibration reached recall@{k} {results[hi]:.3f} < target {target:.3f} at the largest setting",
            stacklevel=stacklevel + 1,
        )
    vectors.search_value = hi
    return {
        "param": vectors.search_param,
        "value": int(hi),
        "recall": round(results[hi], 4),
        "target": round(target, 4),
        "k": k,
        "queries": len(sample),
        "n": n,
    }


__all__ = ["CALIBRATION_MARGIN", "CALIBRATION_QUERIES", "RECALL_TARGET", "calibrate_search"]
