"""Fusion models that turn a probe's feature matrix into sentence scores.

Three learners, all on standardised features and all exportable as plain numbers (never pickle):

* ``logistic``: class-balanced L2 logistic regression on single sentences (pointwise);
* ``pairwise``: the same model fitted to feature differences of (kept, dropped) sentence pairs of
  one context (RankNet-style, no intercept): it learns to order sentences *within* a context,
  which is what a compressor does, instead of separating contexts;
* ``mlp``: one hidden layer of ReLU units (a small non-linear fusion), class-balanced by
  oversampling the positives.

Example:
    >>> rng = np.random.default_rng(0)
    >>> x = rng.normal(size=(200, 3)); y = x[:, 0] > 0.5; g = np.arange(200) // 10
    >>> m = fit_learner("pairwise", x, y, g, c=1.0)
    >>> bool(auc_of(m.decision(x), y) > 0.9)
    True
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ctxcomp.errors import ConfigError

LEARNERS = ("logistic", "pairwise", "mlp")


@dataclass
class Fitted:
    """A fitted learner: standardisation plus a linear or one-hidden-layer head.

    Attributes:
        kind: One of :data:`LEARNERS`.
        mean: ``[F]`` standardisation mean.
        scale: ``[F]`` standardisation scale.
        coef: ``[F]`` linear weights (``logistic``/``pairwise``), or the output weights ``[Hd]`` (``mlp``).
        intercept: Linear intercept (0 for ``pairwise``), or the output bias (``mlp``).
        hidden_weights: ``[F, Hd]`` first-layer weights (``mlp`` only).
        hidden_bias: ``[Hd]`` first-layer bias (``mlp`` only).
    """

    kind: str
    mean: np.ndarray
    scale: np.ndarray
    coef: np.ndarray
    intercept: float
    hidden_weights: np.ndarray | None = None
    hidden_bias: np.ndarray | None = None
    info: dict[str, Any] = field(default_factory=dict)

    def decision(self, x: np.ndarray) -> np.ndarray:
        """``[S]`` scores of a ``[S, F]`` feature matrix (monotone in relevance).

        Args:
            x: Features.

        Returns:
            Scores.
        """
        z = (x - self.mean) / self.scale  # [S, F]
        if self.hidden_weights is not None and self.hidden_bias is not None:
            z = np.maximum(z @ self.hidden_weights + self.hidden_bias, 0.0)  # [S, Hd]
        return np.asarray(z @ self.coef + self.intercept, dtype=np.float64)  # [S]


def _pairs(
    y: np.ndarray,
    groups: np.ndarray,
    rng: np.random.Generator,
    per_pos: int,
    docs: np.ndarray | None = None,
    within_doc: float = 0.0,
) -> tuple[np.ndarray, np.ndarray]:
    """Index pairs (positive, negative) within each group, at most ``per_pos`` negatives a positive.

    With ``docs``, a share ``within_doc`` of each positive's negatives comes from its own document
    (when it has any): the pairs that teach ranking *inside* a document.
    """
    a: list[int] = []
    b: list[int] = []
    for g in np.unique(groups):
        idx = np.flatnonzero(groups == g)
        pos, neg = idx[y[idx]], idx[~y[idx]]
        if len(pos) == 0 or len(neg) == 0:
            continue
        for p in pos:
            take: list[int] = []
            if docs is not None and within_doc > 0:
                same = neg[docs[neg] == docs[p]]
                k = min(len(same), max(1, round(per_pos * within_doc)))
                if k:
                    take = [int(i) for i in rng.choice(same, size=k, replace=False)]
            rest = np.setdiff1d(neg, take)
            k = min(len(rest), per_pos - len(take))
            if k > 0:
                take += [int(i) for i in rng.choice(rest, size=k, replace=False)]
            a += [int(p)] * len(take)
            b += take
    return np.asarray(a, dtype=np.int64), np.asarray(b, dtype=np.int64)


def fit_learner(
    kind: str,
    x: np.ndarray,
    y: np.ndarray,
    groups: np.ndarray,
    *,
    c: float = 0.1,
    hidden: int = 16,
    seed: int = 0,
    per_pos: int = 24,
    docs: np.ndarray | None = None,
    within_doc: float = 0.0,
    group_weight: np.ndarray | None = None,
) -> Fitted:
    """Fit one learner.

    Args:
        kind: ``logistic``, ``pairwise`` or ``mlp``.
        x: ``[N, F]`` features.
        y: ``[N]`` bool labels.
        groups: ``[N]`` context id of each row (pairs are formed within a context).
        c: Inverse L2 strength (``mlp``: ``alpha = 1 / (c * N)``-style weight decay).
        hidden: Hidden units of ``mlp``.
        seed: Seed of the pair sampling / MLP initialisation.
        per_pos: Negatives paired with each positive (``pairwise``).
        docs: ``[N]`` document id of each row within its context (``pairwise`` within-document pairs).
        within_doc: Share of each positive's negatives drawn from its own document (``pairwise``).
        group_weight: ``[N]`` weight of each row's context (e.g. to balance data sources);
            ``logistic`` and ``pairwise`` only.

    Returns:
        The fitted learner.

    Raises:
        ConfigError: Unknown ``kind``.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    if kind not in LEARNERS:
        raise ConfigError("model", f"unknown learner {kind!r}", f"use one of {list(LEARNERS)}")
    y = np.asarray(y, dtype=bool)
    scaler = StandardScaler().fit(x)
    mean, scale = scaler.mean_.astype(np.float64), np.where(scaler.scale_ > 0, scaler.scale_, 1.0)
    z = (x - mean) / scale  # [N, F]
    rng = np.random.default_rng(seed)
    w = np.ones(len(y)) if group_weight is None else np.asarray(group_weight, dtype=np.float64)
    if kind == "logistic":
        balance = np.where(y, len(y) / max(2 * y.sum(), 1), len(y) / max(2 * (~y).sum(), 1))
        lr = LogisticRegression(C=c, max_iter=3000).fit(z, y, sample_weight=w * balance)
        return Fitted(kind, mean, scale, lr.coef_[0].astype(np.float64), float(lr.intercept_[0]))
    if kind == "pairwise":
        a, b = _pairs(y, groups, rng, per_pos, docs, within_doc)
        d = z[a] - z[b]  # [P, F]
        dx = np.concatenate([d, -d])
        dy = np.concatenate([np.ones(len(d), dtype=bool), np.zeros(len(d), dtype=bool)])
        pw = np.concatenate([w[a], w[a]])
        lr = LogisticRegression(C=c, fit_intercept=False, max_iter=3000).fit(dx, dy, sample_weight=pw)
        return Fitted(kind, mean, scale, lr.coef_[0].astype(np.float64), 0.0, info={"pairs": len(d)})
    from sklearn.neural_network import MLPClassifier

    pos, neg = np.flatnonzero(y), np.flatnonzero(~y)
    reps = max(1, len(neg) // max(len(pos), 1))
    idx = np.concatenate([neg, np.repeat(pos, reps)])
    mlp = MLPClassifier(
        hidden_layer_sizes=(hidden,),
        alpha=1.0 / max(c * 100.0, 1e-6),
        solver="lbfgs",
        max_iter=500,
        random_state=seed,
    ).fit(z[idx], y[idx])
    w1, w2 = mlp.coefs_
    b1, b2 = mlp.intercepts_
    return Fitted(
        kind,
        mean,
        scale,
        w2[:, 0].astype(np.float64),
        float(b2[0]),
        w1.astype(np.float64),
        b1.astype(np.float64),
    )


def auc_of(scores: np.ndarray, labels: np.ndarray) -> float:
    """AUC with ties counted one half (NaN with a single class).

    Args:
        scores: ``[n]`` scores.
        labels: ``[n]`` bool labels.

    Returns:
        The AUC.

    Example:
        >>> auc_of(np.array([0.1, 0.9]), np.array([False, True]))
        1.0
    """
    labels = np.asarray(labels, dtype=bool)
    npos, nneg = int(labels.sum()), int((~labels).sum())
    if npos == 0 or nneg == 0:
        return float("nan")
    from scipy.stats import rankdata

    r = rankdata(scores)
    return float((r[labels].sum() - npos * (npos + 1) / 2) / (npos * nneg))


def grouped_folds(n_groups: int, folds: int, seed: int = 0) -> np.ndarray:
    """Fold id of each group (a seeded permutation, round-robin).

    Args:
        n_groups: Number of groups (questions).
        folds: Number of folds.
        seed: Seed.

    Returns:
        ``[n_groups]`` fold ids.

    Example:
        >>> sorted(grouped_folds(6, 3).tolist())
        [0, 0, 1, 1, 2, 2]
    """
    return np.random.default_rng(seed).permutation(n_groups) % max(folds, 1)


def per_group_auc(
    scores: np.ndarray, y: np.ndarray, groups: np.ndarray, keep: Sequence[bool] | None = None
) -> dict[int, float]:
    """AUC of each group (optionally over a subset of rows).

    Args:
        scores: ``[N]`` scores.
        y: ``[N]`` labels.
        groups: ``[N]`` group ids.
        keep: ``[N]`` rows to use (e.g. the gold document's sentences), or ``None`` for all.

    Returns:
        ``{group: auc}`` (NaN where a group lacks one class).
    """
    mask = np.ones(len(y), dtype=bool) if keep is None else np.asarray(keep, dtype=bool)
    return {int(g): auc_of(scores[(groups == g) & mask], y[(groups == g) & mask]) for g in np.unique(groups)}


__all__ = ["LEARNERS", "Fitted", "auc_of", "fit_learner", "grouped_folds", "per_group_auc"]
