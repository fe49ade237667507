"""Trained probes: a calibrated logistic fusion of attention and retrieval features.

A probe file is JSON (never pickle). It names the proxy it was trained on (spec, model id and
weights sha256), the probe layers and selected heads, the prompt template, the feature families
and their standardisation, the weights, the training data hash and size, and the CV AUC.
:func:`load_probe` refuses a probe for another model unless forced.

Loading validates the whole file against a schema (:class:`ProbeFileSchema`): strict UTF-8, types
and shapes, finite numbers, known families, embedder and ``doc_vectors``, heads inside the probe
layers, feature names that match the families, and the ``checksum`` (sha256 of the canonical JSON
of every other field, written by :meth:`TrainedProbe.to_dict`; it catches an edited or damaged
file, e.g. a swapped ``embedder``; it is integrity, not authenticity: whoever edits the file can
recompute it). Layer and head bounds need the proxy: :meth:`TrainedProbe.check_against`. Every
violation is a :class:`ProbeFileError` naming the file, the JSON path and the fix, raised at load.

Example:
    >>> from ctxcomp.compressors.trained import shipped_probes
    >>> isinstance(shipped_probes(), list)
    True
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ctxcomp.compressors.features import DOC_VECTORS, FAMILIES, DocVectors, feature_names
from ctxcomp.errors import ConfigError, ProbeMismatchError
from ctxcomp.models.identity import same_model
from ctxcomp.types import first_problem

logger = logging.getLogger(__name__)

PROBE_FORMAT = "ctxcomp-probe/1"
PROBE_DIR = Path(__file__).resolve().parent / "probes"
_RETRAIN = "retrain it with `ctxcomp train-probe` (or restore the file as train-probe wrote it)"


class ProbeFileError(ConfigError):
    """A probe file violates its schema; names the file, the JSON path and the fix.

    Args:
        source: The file (or ``<dict>``).
        path: JSONPath of the offending value (``$.heads[3][1]``).
        problem: What is wrong.
        fix: What to do.

    Example:
        >>> str(ProbeFileError("p.json", "$.intercept", "must be finite", "retrain it"))
        'probe_path (p.json) $.intercept: must be finite. Fix: retrain it.'
    """

    def __init__(self, source: str, path: str, problem: str, fix: str = _RETRAIN) -> None:
        self.source = source
        self.json_path = path
        super().__init__(f"probe_path ({source}) {path}", problem, fix)


#: Bounds that keep ``(x - mean) / scale @ coef + intercept`` finite for any real features (trained
#: probes sit far inside them: weights of order 1, scales of order 0.1-10).
_MAX_WEIGHT, _MIN_SCALE, _MAX_SCALE = 1e6, 1e-6, 1e6
_Weight = Annotated[float, Field(ge=-_MAX_WEIGHT, le=_MAX_WEIGHT, allow_inf_nan=False)]
_NonNegInt = Annotated[int, Field(ge=0)]
_NonEmpty = Annotated[str, Field(min_length=1)]


class _ProbeModelRef(BaseModel):
    model_config = ConfigDict(strict=True, extra="allow")
    spec: _NonEmpty
    id: _NonEmpty
    weights_sha256: Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")] | None = None


class _Normalisation(BaseModel):
    model_config = ConfigDict(strict=True, extra="allow")
    mean: list[_Weight]
    scale: list[Annotated[float, Field(ge=0, le=_MAX_SCALE, allow_inf_nan=False)]]


class ProbeFileSchema(BaseModel):
    """The schema of a probe file (``format`` ``ctxcomp-probe/1``); unknown keys are kept as metadata.

    Example:
        >>> sorted(ProbeFileSchema.model_fields)[:4]
        ['checksum', 'coef', 'doc_vectors', 'embedder']
    """

    model_config = ConfigDict(strict=True, extra="allow")
    format: str
    model: _ProbeModelRef
    layers: list[_NonNegInt]
    heads: list[Annotated[list[_NonNegInt], Field(min_length=2, max_length=2)]]
    families: Annotated[list[str], Field(min_length=1)]
    feature_names: list[str]
    normalisation: _Normalisation
    coef: list[_Weight]
    intercept: _Weight
    query_positions: Annotated[int, Field(ge=1, le=256)] = 1
    focus: bool = False
    doc_vectors: str = "embed"
    embedder: _NonEmpty | None = None
    hidden_layers: list[_NonNegInt] = Field(default_factory=list)
    checksum: str | None = None


def probe_checksum(d: dict[str, Any]) -> str:
    """``sha256:<hex>`` of the canonical JSON of a probe dict without its ``checksum`` field.

    Example:
        >>> probe_checksum({"b": 1, "a": [1.5], "checksum": "x"}) == probe_checksum({"a": [1.5], "b": 1})
        True
    """
    body = {k: v for k, v in d.items() if k != "checksum"}
    canon = json.dumps(body, sort_keys=True, ensure_ascii=False, separators=(",", ":"), allow_nan=True)
    return "sha256:" + hashlib.sha256(canon.encode("utf-8", "surrogatepass")).hexdigest()


def _known_embedder(spec: str) -> bool:
    """Whether a probe's ``embedder`` names something :func:`ctxcomp.retrieval.resolve_embedder` resolves."""
    from ctxcomp.retrieval.embedders import DEFAULT_EMBEDDER, DEFAULT_EMBEDDER_HUB_ID

    if spec in (DEFAULT_EMBEDDER, DEFAULT_EMBEDDER_HUB_ID):
        return True
    if re.fullmatch(r"ctxcomp/hashing-bow-[1-9][0-9]{0,5}", spec):
        return True
    if re.fullmatch(r"[A-Za-z0-9][\w.-]*/[A-Za-z0-9][\w.-]*", spec) and ".." not in spec:
        return True  # a hub id (org/name), or an id registered with register_embedder
    return Path(spec).expanduser().is_dir()


def _check_probe_dict(d: Any, where: str) -> ProbeFileSchema:
    """Validate a probe file's parsed JSON; every problem a :class:`ProbeFileError` with its path."""
    if not isinstance(d, dict):
        raise ProbeFileError(where, "$", f"must be a JSON object, got {type(d).__name__}")
    if d.get("format") != PROBE_FORMAT:
        raise ProbeFileError(
            where,
            "$.format",
            f"is {d.get('format')!r}, not {PROBE_FORMAT!r}: not a ctxcomp probe file",
            "pass a file written by `ctxcomp train-probe`",
        )
    try:
        m = ProbeFileSchema.model_validate(d)
    except ValidationError as err:
        path, problem = first_problem(err)
        raise ProbeFileError(where, path, f"malformed probe file: {problem}") from err
    families = m.families
    for i, fam in enumerate(families):
        if fam not in FAMILIES:
            raise ProbeFileError(
                where, f"$.families[{i}]", f"unknown feature family {fam!r} (known: {list(FAMILIES)})"
            )
        if fam in families[:i]:
            raise ProbeFileError(where, f"$.families[{i}]", f"repeats family {fam!r}")
    for name, values in (("layers", m.layers), ("hidden_layers", m.hidden_layers)):
        for i, li in enumerate(values):
            if li in values[:i]:
                raise ProbeFileError(where, f"$.{name}[{i}]", f"repeats layer {li}")
    seen: set[tuple[int, int]] = set()
    for i, (li, h) in enumerate(m.heads):
        if li not in m.layers:
            raise ProbeFileError(
                where, f"$.heads[{i}][0]", f"head layer {li} is not one of the probe layers {m.layers}"
            )
        if (li, h) in seen:
            raise ProbeFileError(where, f"$.heads[{i}]", f"repeats head ({li}, {h})")
        seen.add((li, h))
    if m.doc_vectors not in DOC_VECTORS:
        raise ProbeFileError(where, "$.doc_vectors", f"is {m.doc_vectors!r}, not one of {list(DOC_VECTORS)}")
    if m.embedder is not None and not _known_embedder(m.embedder):
        raise ProbeFileError(
            where,
            "$.embedder",
            f"{m.embedder!r} is not a known embedder",
            "use 'sentence-transformers/all-MiniLM-L6-v2' (the default), 'ctxcomp/hashing-bow-<dim>', "
            "a hub id 'org/name' or a local sentence-transformers folder, as train-probe wrote it",
        )
    heads = [(a, b) for a, b in m.heads]
    expected = (
        feature_names(families, m.layers, heads, m.hidden_layers)
        if m.hidden_layers
        else feature_names(families, m.layers, heads)
    )
    if list(m.feature_names) != list(expected):
        missing = [n for n in expected if n not in m.feature_names]
        extra = [n for n in m.feature_names if n not in expected]
        detail = (
            f"missing {missing[:5]}" if missing else f"unexpected {extra[:5]}" if extra else "out of order"
        )
        raise ProbeFileError(
            where,
            "$.feature_names",
            f"do not match the families, layers and heads ({len(m.feature_names)} names for {len(expected)} "
            f"columns; {detail})",
        )
    n = len(expected)
    for path, column in (
        ("$.normalisation.mean", m.normalisation.mean),
        ("$.normalisation.scale", m.normalisation.scale),
        ("$.coef", m.coef),
    ):
        if len(column) != n:
            raise ProbeFileError(where, path, f"has {len(column)} values for {n} feature columns")
    for i, v in enumerate(m.normalisation.scale):
        if 0 < v < _MIN_SCALE:
            raise ProbeFileError(
                where,
                f"$.normalisation.scale[{i}]",
                f"{v!r} is too small to divide by (0, or >= {_MIN_SCALE})",
            )
    if m.checksum is not None and m.checksum != probe_checksum(d):
        raise ProbeFileError(
            where,
            "$.checksum",
            "does not match the file's content: it was edited or damaged after training "
            "(a checksum is integrity, not authenticity)",
            f"{_RETRAIN}; to keep a deliberate edit, delete the checksum field",
        )
    return m


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
    def hidden_layers(self) -> tuple[int, ...]:
        """Pooled hidden layers of the ``hidden`` family (the file's top-level ``hidden_layers``, kept
        in :attr:`meta`; empty for probes without it).

        Example:
            >>> TrainedProbe(None, "m", "m", None, (), (), ("bm25",), ("a", "b"), np.zeros(2), np.ones(2),
            ...              np.zeros(2), 0.0, 1, False, meta={"hidden_layers": [3, 5]}).hidden_layers
            (3, 5)
        """
        return tuple(int(x) for x in self.meta.get("hidden_layers") or ())

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

    def check_against(self, num_layers: int, num_heads: int) -> None:
        """Raise unless the probe's layers and heads exist in a proxy of this shape.

        Args:
            num_layers: The proxy's decoder layers.
            num_heads: Its query heads per layer.

        Raises:
            ProbeFileError: A probe layer, head or hidden layer is out of range (naming its JSON path).

        Example:
            >>> p = TrainedProbe(None, "m", "m", None, (0, 9), ((9, 1),), ("attention",), ("a",),
            ...                  np.zeros(1), np.ones(1), np.zeros(1), 0.0, 1, False)
            >>> p.check_against(4, 2)  # doctest: +ELLIPSIS
            Traceback (most recent call last):
            ...
            ctxcomp.compressors.trained.ProbeFileError: probe_path (<memory>) $.layers[1]: layer 9 ...
        """
        where = str(self.path or "<memory>")
        fix = "use the proxy it was trained on, or retrain it with `ctxcomp train-probe --model <proxy>`"
        for i, li in enumerate(self.layers):
            if not 0 <= li < num_layers:
                raise ProbeFileError(
                    where, f"$.layers[{i}]", f"layer {li} is out of range for a {num_layers}-layer proxy", fix
                )
        for i, (_, h) in enumerate(self.heads):
            if not 0 <= h < num_heads:
                raise ProbeFileError(
                    where,
                    f"$.heads[{i}][1]",
                    f"head {h} is out of range: the proxy has {num_heads} heads",
                    fix,
                )
        for i, li in enumerate(self.hidden_layers):
            if not 0 <= int(li) <= num_layers:
                raise ProbeFileError(
                    where,
                    f"$.hidden_layers[{i}]",
                    f"hidden layer {li} is out of range (0..{num_layers})",
                    fix,
                )

    def to_dict(self) -> dict[str, Any]:
        """The JSON form, with its ``checksum`` (see :func:`probe_checksum`).

        Returns:
            A JSON-serialisable dict.
        """
        d = {
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
            **{k: v for k, v in self.meta.items() if k != "checksum"},
        }
        d["checksum"] = probe_checksum(d)
        return d


def probe_from_dict(d: dict[str, Any], path: Path | None = None) -> TrainedProbe:
    """Build a :class:`TrainedProbe` from its JSON form, validating it (see the module docstring).

    Args:
        d: The parsed JSON.
        path: Source path, for messages.

    Returns:
        The probe.

    Raises:
        ProbeFileError: (a :class:`~ctxcomp.errors.ConfigError`) The file is not a ctxcomp probe,
            violates the schema or fails its checksum; the message names the JSON path.

    Example:
        >>> probe_from_dict([1])  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        ctxcomp.compressors.trained.ProbeFileError: probe_path (<dict>) $: must be a JSON object, got list...
    """
    where = str(path or "<dict>")
    m = _check_probe_dict(d, where)
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
        "checksum",
    }
    scale = np.asarray(m.normalisation.scale, dtype=np.float64)
    return TrainedProbe(
        path=path,
        model_spec=m.model.spec,
        model_id=m.model.id,
        weights_sha256=m.model.weights_sha256,
        layers=tuple(m.layers),
        heads=tuple((a, b) for a, b in m.heads),
        families=tuple(m.families),
        feature_names=tuple(m.feature_names),
        mean=np.asarray(m.normalisation.mean, dtype=np.float64),
        scale=np.where(scale > 0, scale, 1.0),
        coef=np.asarray(m.coef, dtype=np.float64),
        intercept=float(m.intercept),
        query_positions=m.query_positions,
        focus=m.focus,
        meta={k: v for k, v in d.items() if k not in known},
    )


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
        raw = p.read_bytes()
    except OSError as err:
        raise ConfigError(
            "probe_path",
            f"cannot read {p} ({err.strerror})",
            "pass a probe JSON written by `ctxcomp train-probe`",
        ) from err
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        raise ProbeFileError(str(p), "$", f"is not valid UTF-8 ({err.reason} at byte {err.start})") from err
    try:
        data = json.loads(text)
    except json.JSONDecodeError as err:
        raise ProbeFileError(
            str(p), "$", f"is not JSON ({err.msg} at line {err.lineno} column {err.colno})"
        ) from err
    except (ValueError, RecursionError) as err:
        raise ProbeFileError(str(p), "$", f"is not JSON ({err})") from err
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
