"""Trained probes: a calibrated logistic fusion of attention and retrieval features.

A probe file is JSON (never pickle). It names the proxy it was trained on (spec, model id and
weights sha256), the probe layers and selected heads, the prompt template, the feature families
and their standardisation, the weights, the training data hash and size, and the CV AUC.
:func:`load_probe` refuses a probe for another model unless forced.

Example:
    >>> from ctxcomp.compressors.trained import shipped_probes
    >>> isinstance(shipped_probes(), list)
    True
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ctxcomp.compressors.features import DOC_VECTORS, DocVectors
from ctxcomp.errors import ConfigError, ProbeMismatchError
from ctxcomp.models.identity import same_model

logger = logging.getLogger(__name__)

PROBE_FORMAT = "ctxcomp-probe/1"
PROBE_DIR = Path(__file__).resolve().parent / "probes"


@dataclass(frozen=True)
class TrainedProbe:
    """A loaded probe file.

    Attributes:
        path: Where it was loaded from (``None`` if built in memory).
        model_spec: Spec of the proxy it was trained on.
        model_id: Stable id of that proxy.
        weights_sha256: sha256 of the proxy's weights, when known.
        layers: Probe layers read.
        heads: Selected ``(layer, head)`` pairs.
        families: Enabled feature families.
        feature_names: Column names.
        mean: Standardisation mean per column.
        scale: Standardisation scale per column.
        coef: Logistic weights per column.
        intercept: Logistic intercept.
        query_positions: Probe rows used in training.
        focus: Whether the answer-hint template was used.
        meta: Everything else in the file (training data hash, CV AUC, version, command...).
    """

    path: Path | None
    model_spec: str
    model_id: str
    weights_sha256: str | None
    layers: tuple[int, ...]
    heads: tuple[tuple[int, int], ...]
    families: tuple[str, ...]
    feature_names: tuple[str, ...]
    mean: np.ndarray
    scale: np.ndarray
    coef: np.ndarray
    intercept: float
    query_positions: int
    focus: bool
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def doc_vectors(self) -> DocVectors:
        """How the ``embedding`` family built document vectors in training (``meta["doc_vectors"]``;
        files written before the field existed embedded whole documents: ``"embed"``)."""
        mode = self.meta.get("doc_vectors", "embed")
        if mode not in DOC_VECTORS:
            raise ConfigError(
                "probe_path",
                f"probe {self.path or '<memory>'} has meta.doc_vectors={mode!r}, "
                f"not one of {list(DOC_VECTORS)}",
                "retrain it with `ctxcomp train-probe` from this ctxcomp version",
            )
        return mode

    def decision(self, x: np.ndarray) -> np.ndarray:
        """Logit of relevance for each row of a ``[S, F]`` feature matrix.

        Args:
            x: Features in :attr:`feature_names` order.

        Returns:
            ``[S]`` logits (monotone in the probability; used as scores).
        """
        z = (x - self.mean) / self.scale  # [S, F]
        return z @ self.coef + self.intercept  # [S]

    def check_model(self, model_id: str, weights_sha256: str | None, *, force: bool = False) -> None:
        """Raise unless this probe was trained on the given proxy.

        Args:
            model_id: Id of the proxy in use.
            weights_sha256: Its weights hash, when known.
            force: Skip the check (logs a warning).

        Raises:
            ProbeMismatchError: The probe belongs to another model.
        """
        if same_model(model_id, weights_sha256, self.model_id, self.weights_sha256):
            return
        msg = (
            f"probe {self.path or '<memory>'} was trained on {self.model_id!r} "
            f"(sha256 {self.weights_sha256}), not on proxy {model_id!r} (sha256 {weights_sha256})"
        )
        if force:
            logger.warning("%s; used anyway because force=True", msg)
            return
        raise ProbeMismatchError(
            f"probe_path: {msg}. Fix: train one with `ctxcomp train-probe --model <proxy>`, use the proxy it "
            "was trained on, or a training-free scorer (scorer='attention')."
        )

    def to_dict(self) -> dict[str, Any]:
        """The JSON form.

        Returns:
            A JSON-serialisable dict.
        """
        return {
            "format": PROBE_FORMAT,
            "model": {"spec": self.model_spec, "id": self.model_id, "weights_sha256": self.weights_sha256},
            "layers": list(self.layers),
            "heads": [list(h) for h in self.heads],
            "families": list(self.families),
            "feature_names": list(self.feature_names),
            "normalisation": {"mean": self.mean.tolist(), "scale": self.scale.tolist()},
            "coef": self.coef.tolist(),
            "intercept": self.intercept,
            "query_positions": self.query_positions,
            "focus": self.focus,
            **self.meta,
        }


def probe_from_dict(d: dict[str, Any], path: Path | None = None) -> TrainedProbe:
    """Build a :class:`TrainedProbe` from its JSON form, validating it.

    Args:
        d: The parsed JSON.
        path: Source path, for messages.

    Returns:
        The probe.

    Raises:
        ConfigError: The file is not a ctxcomp probe or is inconsistent.
    """
    where = str(path or "<dict>")
    if d.get("format") != PROBE_FORMAT:
        raise ConfigError(
            "probe_path", f"{where} is not a {PROBE_FORMAT} file", "pass a file written by train-probe"
        )
    known = {
        "format",
        "model",
        "layers",
        "heads",
        "families",
        "feature_names",
        "normalisation",
        "coef",
        "intercept",
        "query_positions",
        "focus",
    }
    try:
        names = tuple(d["feature_names"])
        mean = np.asarray(d["normalisation"]["mean"], dtype=np.float64)
        scale = np.asarray(d["normalisation"]["scale"], dtype=np.float64)
        coef = np.asarray(d["coef"], dtype=np.float64)
        if not (len(names) == len(mean) == len(scale) == len(coef)):
            raise ValueError("feature_names, normalisation and coef lengths differ")
        return TrainedProbe(
            path=path,
            model_spec=str(d["model"]["spec"]),
            model_id=str(d["model"]["id"]),
            weights_sha256=d["model"].get("weights_sha256"),
            layers=tuple(int(x) for x in d["layers"]),
            heads=tuple((int(a), int(b)) for a, b in d["heads"]),
            families=tuple(d["families"]),
            feature_names=names,
            mean=mean,
            scale=np.where(scale > 0, scale, 1.0),
            coef=coef,
            intercept=float(d["intercept"]),
            query_positions=int(d.get("query_positions", 1)),
            focus=bool(d.get("focus", False)),
            meta={k: v for k, v in d.items() if k not in known},
        )
    except (KeyError, TypeError, ValueError) as err:
        raise ConfigError(
            "probe_path", f"{where} is malformed ({err})", "retrain it with train-probe"
        ) from err


def load_probe(path: str | Path) -> TrainedProbe:
    """Load a probe JSON file.

    Args:
        path: The file.

    Returns:
        The probe.

    Raises:
        ConfigError: Missing, unreadable or malformed file.

    Example:
        >>> load_probe("/nonexistent.json")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        ctxcomp.errors.ConfigError: probe_path: cannot read /nonexistent.json ...
    """
    p = Path(path)
    try:
        data = json.loads(p.read_text())
    except OSError as err:
        raise ConfigError(
            "probe_path",
            f"cannot read {p} ({err.strerror})",
            "pass a probe JSON written by `ctxcomp train-probe`",
        ) from err
    except json.JSONDecodeError as err:
        raise ConfigError(
            "probe_path", f"{p} is not JSON ({err.msg})", "retrain it with train-probe"
        ) from err
    return probe_from_dict(data, p)


def shipped_probes() -> list[Path]:
    """Probe files that ship inside the package.

    Returns:
        Paths, sorted.
    """
    return sorted(PROBE_DIR.glob("*.json"))


def find_shipped_probe(model_id: str, weights_sha256: str | None) -> TrainedProbe | None:
    """The shipped probe trained on this proxy, if any.

    Args:
        model_id: Proxy id.
        weights_sha256: Proxy weights hash.

    Returns:
        The probe or ``None``.
    """
    for p in shipped_probes():
        probe = load_probe(p)
        try:
            probe.check_model(model_id, weights_sha256)
        except ProbeMismatchError:
            continue
        return probe
    return None
