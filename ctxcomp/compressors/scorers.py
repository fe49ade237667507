"""Training-free scorers: attention features -> one relevance score per sentence.

Scorers are chosen by name from :data:`SCORERS`. ``attention`` (Sentinel-style) and ``focus``
(AttentionRAG-style) share the same reduction; they differ in the probe rows (the question's last
tokens vs. the focus token of an answer hint), which the probe decides from the scorer's
``focus`` flag.

Attention-sink and question/template mass are already removed by the probe's renormalisation over
context tokens; scores are *lift*: attention per token relative to a uniform spread over the
context, averaged over the probe layers and heads. With ``null_query`` the lift the same context
receives from a content-free question is subtracted.

Example:
    >>> import numpy as np
    >>> from ctxcomp.compressors.probe import ProbeFeatures
    >>> f = ProbeFeatures(np.array([[[0.75, 0.25]]], dtype=np.float32), np.array([1, 1]), (0,), 1, 2)
    >>> SCORERS["attention"].score(f).round(2).tolist()
    [1.5, 0.5]
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ctxcomp.compressors.probe import ProbeFeatures


@dataclass(frozen=True)
class LiftScorer:
    """Mean attention lift over probe layers and heads.

    Attributes:
        name: Registry name.
        focus: Probe from the answer-hint focus token instead of the question's end.
    """

    name: str
    focus: bool

    def score(self, features: ProbeFeatures, null: ProbeFeatures | None = None) -> np.ndarray:
        """Score every sentence.

        Args:
            features: Features of the real question.
            null: Features of the content-free question on the same context, or ``None``.

        Returns:
            ``[S]`` float64 scores, higher is more relevant.
        """
        lift = features.lift().mean(axis=(0, 1)).astype(np.float64)  # [S]
        if null is not None:
            lift = lift - null.lift().mean(axis=(0, 1)).astype(np.float64)
        return lift


SCORERS: dict[str, LiftScorer] = {
    "attention": LiftScorer("attention", focus=False),
    "focus": LiftScorer("focus", focus=True),
}

#: The question used for the null-query baseline: it asks for nothing in particular.
NULL_QUERY = "What is this text about?"
