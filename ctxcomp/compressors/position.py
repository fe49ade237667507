"""Positional bias of a reader LLM: measure where it looks, and the tools to place context there.

A :class:`PositionProfile` holds, for ``K`` document slots, the mean share of context attention
that the reader's answer position (the last prompt token) gives to each slot. :func:`calibrate`
measures it with the attention probe (:func:`ctxcomp.compressors.probe.run_probe`, one segment
per document slot, every layer) over ``N`` prompts of ``K`` documents. Content effects are
averaged out by cyclically rotating each prompt's documents through the slots (all ``K``
rotations, or a balanced Latin-square subset: prompt ``p`` uses offsets ``p, p + K/R, ...``).
Intervals are bootstrap percentiles over prompts.

:class:`Reader` wraps the reader model for the attention-based reorderers
(:mod:`ctxcomp.compressors.reorder`): :meth:`Reader.slot_attention` is one truncated prefill of
``[documents ; question]``; :func:`calibrated_scores` is the found-in-the-middle calibration
(attention minus the attention content-free dummy documents of the same lengths receive).

Example:
    >>> p = PositionProfile("m", None, 3, (0.5, 0.2, 0.3), (0.4, 0.1, 0.2), (0.6, 0.3, 0.4), 20, "d")
    >>> p.slot_preference()
    [0, 2, 1]
    >>> [round(x, 4) for x in p.at(2).means]  # first and last slot, renormalised
    [0.625, 0.375]
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import json
import logging
import math
import random
import threading
import time
import warnings
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from ctxcomp.compressors.probe import PromptTemplate, token_segments
from ctxcomp.errors import ConfigError, CtxcompError, InputError, MissingDependencyError, ProbeMismatchError
from ctxcomp.models.identity import same_model

logger = logging.getLogger(__name__)

#: Prompt layout shared by calibration, the attention reorderers and the position benchmark. The
#: last token (the ``:`` of ``Answer:``) is the answer position whose attention is measured.
READER_TEMPLATE = PromptTemplate(
    head="Answer the question using the documents below. Reply with a short answer.\n\n",
    question="Question: {q}",
    focus_hint="\nAnswer:",
)

#: Folder of the profiles that ship with the package, one ``<model id>.json`` per reader.
PROFILES_DIR = Path(__file__).resolve().parent / "profiles"

PROFILE_FORMAT = "ctxcomp-position-profile"

#: Filler tokenised into content-free dummy documents (found-in-the-middle baseline).
DUMMY_FILLER = " This placeholder text carries no information."


class CalibrationWarning(UserWarning):
    """The calibration data is too small for stable per-slot estimates."""


class PlotDependencyError(MissingDependencyError):
    """matplotlib is needed for a plot and is not installed."""

    def __init__(self, purpose: str) -> None:
        self.module = "matplotlib"
        self.extra = ""
        CtxcompError.__init__(
            self,
            f"{purpose} needs matplotlib, which is not installed. Fix: pip install matplotlib (or omit it).",
        )


# ---------------------------------------------------------------------------------------------- profile
@dataclass(frozen=True)
class PositionProfile:
    """Per-slot attention share of a reader's answer position, with 95% intervals.

    Attributes:
        model_id: Id of the reader it was measured on (preset name, file or directory name, hub id).
        weights_sha256: sha256 of the reader's weights when known, else ``None``.
        k: Number of document slots.
        means: ``[K]`` mean share of context attention per slot (sums to 1).
        ci_low: ``[K]`` lower bounds of the 95% intervals.
        ci_high: ``[K]`` upper bounds of the 95% intervals.
        n: Number of calibration prompts (the unit of the intervals).
        data_hash: sha256 of the calibration prompts actually used.
        layer_groups: ``{group name: [K] means}`` per depth group (e.g. thirds of the layers).
        ctxcomp_version: Version of ctxcomp that measured it.
        meta: Free-form provenance (data source, rotations, template, timing, command).

    Example:
        >>> PositionProfile("m", None, 2, (0.4, 0.6), (0.3, 0.5), (0.5, 0.7), 10, "x").slot_preference()
        [1, 0]
    """

    model_id: str
    weights_sha256: str | None
    k: int
    means: tuple[float, ...]
    ci_low: tuple[float, ...]
    ci_high: tuple[float, ...]
    n: int
    data_hash: str
    layer_groups: Mapping[str, tuple[float, ...]] = field(default_factory=dict)
    ctxcomp_version: str = ""
    meta: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.k, int) or self.k < 1:
            raise InputError(
                "PositionProfile.k", f"must be an int >= 1, got {self.k!r}", "measure at least 1 slot"
            )
        for name in ("means", "ci_low", "ci_high"):
            vals = tuple(float(v) for v in getattr(self, name))
            if len(vals) != self.k:
                raise InputError(
                    f"PositionProfile.{name}",
                    f"has {len(vals)} values for k={self.k}",
                    "give one value per slot",
                )
            if not all(math.isfinite(v) for v in vals):
                raise InputError(
                    f"PositionProfile.{name}", "contains NaN or infinity", "re-run the calibration"
                )
            object.__setattr__(self, name, vals)
        groups = {str(g): tuple(float(v) for v in vals) for g, vals in dict(self.layer_groups).items()}
        for g, vals in groups.items():
            if len(vals) != self.k:
                raise InputError(
                    f"PositionProfile.layer_groups[{g!r}]",
                    f"has {len(vals)} values for k={self.k}",
                    "give one value per slot",
                )
        object.__setattr__(self, "layer_groups", groups)
        object.__setattr__(self, "meta", dict(self.meta))
        if not self.ctxcomp_version:
            from ctxcomp import __version__

            object.__setattr__(self, "ctxcomp_version", __version__)

    # -------------------------------------------------------------------- queries
    def slot_preference(self) -> list[int]:
        """Slots from most to least attended; ties go to the earlier slot.

        Returns:
            Slot indices.

        Example:
            >>> PositionProfile("m", None, 3, (0.2, 0.2, 0.6), (0, 0, 0), (1, 1, 1), 5, "x").slot_preference()
            [2, 0, 1]
        """
        return sorted(range(self.k), key=lambda i: (-self.means[i], i))

    def at(self, k: int) -> PositionProfile:
        """The profile for ``k`` slots, linearly interpolated over relative slot positions.

        Slot ``i`` of ``K`` sits at relative position ``i / (K - 1)`` (a single slot at 0.5). The
        interpolated means are rescaled to sum to 1; intervals and layer groups get the same scale.

        Args:
            k: Number of slots wanted (>= 1).

        Returns:
            A new profile (``self`` when ``k`` equals :attr:`k`).

        Raises:
            InputError: ``k < 1``.

        Example:
            >>> p = PositionProfile("m", None, 2, (0.25, 0.75), (0.2, 0.7), (0.3, 0.8), 9, "x")
            >>> p.at(3).means
            (0.16666666666666666, 0.3333333333333333, 0.5)
        """
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise InputError("k", f"must be an int >= 1, got {k!r}", "pass the number of documents to place")
        if k == self.k:
            return self
        src = _relative_positions(self.k)
        dst = _relative_positions(k)

        def interp(v: Sequence[float]) -> np.ndarray:
            return np.interp(dst, src, np.asarray(v, dtype=np.float64))  # [k]

        def normalised(v: np.ndarray) -> np.ndarray:
            total = float(v.sum())
            return v / total if total > 0 else np.full(k, 1.0 / k)

        m = interp(self.means)  # [k]
        total = float(m.sum())
        scale = 1.0 / total if total > 0 else 1.0
        groups = {g: tuple(normalised(interp(vals)).tolist()) for g, vals in self.layer_groups.items()}
        meta = {**self.meta, "interpolated_from_k": self.k}
        return replace(
            self,
            k=k,
            means=tuple(normalised(m).tolist()),
            ci_low=tuple((interp(self.ci_low) * scale).tolist()),
            ci_high=tuple((interp(self.ci_high) * scale).tolist()),
            layer_groups=groups,
            meta=meta,
        )

    def check_model(self, model_id: str, weights_sha256: str | None, *, force: bool = False) -> None:
        """Raise unless this profile was measured on the given reader.

        Weights hashes are compared when both are known, else model ids.

        Args:
            model_id: Id of the reader in use.
            weights_sha256: Its weights hash, when known.
            force: Use the profile anyway (logs a warning instead of raising).

        Raises:
            ProbeMismatchError: The profile belongs to another model.

        Example:
            >>> p = PositionProfile("a", None, 1, (1.0,), (1.0,), (1.0,), 5, "x")
            >>> p.check_model("a", None)
        """
        if same_model(model_id, weights_sha256, self.model_id, self.weights_sha256):
            return
        msg = (
            f"the position profile was calibrated on {self.model_id!r} (sha256 {self.weights_sha256}), "
            f"not on reader {model_id!r} (sha256 {weights_sha256})"
        )
        if force:
            logger.warning("%s; used anyway because force=True", msg)
            return
        raise ProbeMismatchError(
            f"position_profile: {msg}. Fix: run `ctxcomp calibrate --model <reader> --data <file> "
            "--slots 10 --out profile.json` and pass position_profile='profile.json', or set "
            "force_position_profile=True (CLI: --force) to use it anyway."
        )

    # -------------------------------------------------------------------- JSON
    def to_dict(self) -> dict[str, Any]:
        """The JSON form (floats written exactly, so a round trip is lossless).

        Returns:
            A JSON-serialisable dict with a top-level ``"means"`` list of ``K`` floats.

        Example:
            >>> PositionProfile("m", None, 1, (1.0,), (1.0,), (1.0,), 5, "x").to_dict()["means"]
            [1.0]
        """

        def r(v: Iterable[float]) -> list[float]:
            return [float(x) for x in v]

        return {
            "format": PROFILE_FORMAT,
            "ctxcomp_version": self.ctxcomp_version,
            "model_id": self.model_id,
            "weights_sha256": self.weights_sha256,
            "k": self.k,
            "means": r(self.means),
            "ci_low": r(self.ci_low),
            "ci_high": r(self.ci_high),
            "n": self.n,
            "data_hash": self.data_hash,
            "layer_groups": {g: r(v) for g, v in self.layer_groups.items()},
            "meta": dict(self.meta),
        }

    def to_json(self) -> str:
        """Serialise to a JSON string.

        Returns:
            The JSON text (indented, keys in a fixed order).

        Example:
            >>> p = PositionProfile("m", None, 1, (1.0,), (1.0,), (1.0,), 5, "x")
            >>> PositionProfile.from_json(p.to_json()) == p
            True
        """
        return json.dumps(self.to_dict(), indent=2, ensure_ascii=False) + "\n"

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], *, source: str = "<dict>") -> PositionProfile:
        """Build a profile from its JSON form, validating it.

        Args:
            d: The parsed JSON object.
            source: Where it came from, for error messages.

        Returns:
            The profile.

        Raises:
            InputError: Not a position profile, or fields missing or malformed.

        Example:
            >>> PositionProfile.from_dict({"model_id": "m", "k": 1, "means": [1.0], "ci_low": [1.0],
            ...     "ci_high": [1.0], "n": 3, "data_hash": "x"}).k
            1
        """
        if not isinstance(d, Mapping):
            raise InputError(source, "is not a JSON object", "pass a profile written by `ctxcomp calibrate`")
        if d.get("format", PROFILE_FORMAT) != PROFILE_FORMAT:
            raise InputError(f"{source}.format", f"is {d.get('format')!r}", f"pass a {PROFILE_FORMAT!r} file")
        missing = [f for f in ("model_id", "k", "means", "ci_low", "ci_high", "n", "data_hash") if f not in d]
        if missing:
            raise InputError(f"{source}", f"lacks fields {missing}", "re-create it with `ctxcomp calibrate`")
        try:
            return cls(
                model_id=str(d["model_id"]),
                weights_sha256=None if d.get("weights_sha256") is None else str(d["weights_sha256"]),
                k=int(d["k"]),
                means=tuple(d["means"]),
                ci_low=tuple(d["ci_low"]),
                ci_high=tuple(d["ci_high"]),
                n=int(d["n"]),
                data_hash=str(d["data_hash"]),
                layer_groups={str(g): tuple(v) for g, v in dict(d.get("layer_groups") or {}).items()},
                ctxcomp_version=str(d.get("ctxcomp_version") or ""),
                meta=dict(d.get("meta") or {}),
            )
        except (TypeError, ValueError) as err:
            if isinstance(err, CtxcompError):
                raise
            raise InputError(
                source, f"is malformed ({err})", "re-create it with `ctxcomp calibrate`"
            ) from err

    @classmethod
    def from_json(cls, text: str, *, source: str = "<json>") -> PositionProfile:
        """Parse a profile from JSON text.

        Args:
            text: The JSON text.
            source: Where it came from, for error messages.

        Returns:
            The profile.

        Raises:
            InputError: Invalid JSON or not a position profile.

        Example:
            >>> PositionProfile.from_json('{"model_id": "m", "k": 1, "means": [1], "ci_low": [1], '
            ...     '"ci_high": [1], "n": 1, "data_hash": "x"}').means
            (1.0,)
        """
        try:
            d = json.loads(text)
        except json.JSONDecodeError as err:
            raise InputError(
                source, f"is not valid JSON ({err.msg})", "pass a file written by `ctxcomp calibrate`"
            ) from err
        return cls.from_dict(d, source=source)

    def save(self, path: str | Path) -> Path:
        """Write the JSON form to ``path`` (parent folders are created).

        Args:
            path: Output file.

        Returns:
            The path written.

        Example:
            >>> prof = PositionProfile("m", None, 1, (1.0,), (1.0,), (1.0,), 1, "x")
            >>> prof.save("/tmp/p.json")  # doctest: +SKIP
        """
        p = Path(path)
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(self.to_json(), encoding="utf-8")
        return p

    @classmethod
    def load(cls, path: str | Path) -> PositionProfile:
        """Read a profile JSON file.

        Args:
            path: The file.

        Returns:
            The profile.

        Raises:
            InputError: The file is missing or not a profile.

        Example:
            >>> PositionProfile.load(shipped_profile_path("gemma-3-270m")).k  # doctest: +SKIP
            10
        """
        p = Path(path)
        try:
            text = p.read_text(encoding="utf-8")
        except OSError as err:
            raise InputError(
                "position_profile",
                f"cannot read {str(p)!r} ({err.strerror})",
                "pass the path of a profile written by `ctxcomp calibrate --out`",
            ) from err
        return cls.from_json(text, source=str(p))


def _relative_positions(k: int) -> np.ndarray:
    return np.linspace(0.0, 1.0, k) if k > 1 else np.array([0.5])


def _load_cached(path: str) -> PositionProfile:
    """Load a profile, re-reading the file only when its modification time changes."""
    try:
        mtime = Path(path).stat().st_mtime_ns
    except OSError:
        return PositionProfile.load(path)  # raises the usual InputError
    return _load_at(path, mtime)


@functools.lru_cache(maxsize=32)
def _load_at(path: str, mtime: int) -> PositionProfile:
    return PositionProfile.load(path)


def shipped_profile_path(model_id: str) -> Path | None:
    """The profile shipped with the package for a reader, if any.

    Args:
        model_id: Reader id (an offline preset name for the shipped ones).

    Returns:
        The file, or ``None``.

    Example:
        >>> shipped_profile_path("no-such-model") is None
        True
    """
    if not model_id or "/" in model_id or model_id.startswith("."):
        return None
    p = PROFILES_DIR / f"{model_id}.json"
    return p if p.is_file() else None


def resolve_profile(
    profile: PositionProfile | str | Path | None,
    model_id: str,
    weights_sha256: str | None,
    *,
    force: bool = False,
    reader_spec: str | None = None,
) -> PositionProfile:
    """Find the profile to use for a reader and check that it belongs to it.

    Args:
        profile: A profile, a path to one, or ``None`` for the profile shipped for the reader.
        model_id: The reader's id.
        weights_sha256: The reader's weights hash, if known.
        force: Accept a profile measured on another model.
        reader_spec: The reader's spec, for the error message.

    Returns:
        The profile.

    Raises:
        ConfigError: No profile was given and none ships for this reader.
        ProbeMismatchError: The profile belongs to another model (and ``force`` is false).

    Example:
        >>> resolve_profile(None, "qwen2.5-coder-0.5b-instruct", None).k  # doctest: +SKIP
        10
    """
    if profile is None:
        path = shipped_profile_path(model_id)
        if path is None:
            spec = reader_spec or model_id
            raise ConfigError(
                "CompressionConfig.position_profile",
                f"no position profile ships for reader {model_id!r}, and reorder='attnrank' needs one",
                f"measure it with `ctxcomp calibrate --model {spec} --data <jsonl> --slots 10 "
                "--out profile.json` and pass position_profile='profile.json' (or use reorder='u_shape')",
            )
        prof = _load_cached(str(path))
    elif isinstance(profile, PositionProfile):
        prof = profile
    else:
        prof = _load_cached(str(profile))
    prof.check_model(model_id, weights_sha256, force=force)
    return prof


# ---------------------------------------------------------------------------------------------- prompts
def slot_prompt(
    query: str, docs: Sequence[str], template: PromptTemplate = READER_TEMPLATE
) -> tuple[str, np.ndarray]:
    """Lay out ``[documents ; question]`` and map each character to its document slot.

    Each slot covers its header (``Document [n]: ``) and its text; everything else maps to -1.

    Args:
        query: The question.
        docs: Document texts in slot order.
        template: The prompt layout.

    Returns:
        ``(prompt, char_slot)`` with ``char_slot[c]`` the slot of character ``c`` or -1.

    Example:
        >>> prompt, cs = slot_prompt("Who?", ["A.", "B."])
        >>> prompt.endswith("Question: Who?\\nAnswer:"), int(cs.max())
        (True, 1)
    """
    parts = [template.head]
    pos = len(template.head)
    spans: list[tuple[int, int]] = []
    for i, text in enumerate(docs):
        header = template.doc_header.format(n=i + 1)
        parts += [header, text, template.doc_sep]
        spans.append((pos, pos + len(header) + len(text)))
        pos += len(header) + len(text) + len(template.doc_sep)
    parts.append(template.tail(query, focus=True))
    prompt = "".join(parts)
    char_slot = np.full(len(prompt), -1, dtype=np.int64)
    for i, (a, b) in enumerate(spans):
        char_slot[a:b] = i
    return prompt, char_slot


# ---------------------------------------------------------------------------------------------- reader
class Reader:
    """The reader LLM, loaded lazily, for attention-based placement and calibration.

    Build it from a model spec (loaded on first use, float32 on CPU) or around an already loaded
    model (the :class:`~ctxcomp.Compressor` shares its proxy this way, so it is never loaded twice).
    The model must use a ``ctxcomp_*`` attention implementation
    (:func:`ctxcomp.compressors.probe.register_attention`).

    Args:
        spec: Model spec (preset name, directory, ``.gguf`` file or hub id).
        model: An already loaded model (then ``tokenizer`` and ``source`` are needed too).
        tokenizer: Its tokenizer (a fast one, with offsets).
        source: Its :class:`~ctxcomp.models.loader.ModelSource` (id and weights hash).
        device: ``auto``, ``cpu``, ``cuda`` or ``cuda:N`` for a model loaded here.
        dtype: ``auto``, ``float32``, ``float16`` or ``bfloat16`` for a model loaded here.
        backend: Probe kernel backend (``auto``, ``torch``, ``triton``).
        template: Prompt layout.
        lock: Lock serialising prefills (share the owner's when sharing the model).

    Example:
        >>> r = Reader("gemma-3-270m")  # doctest: +SKIP
        >>> r.doc_attention("Who?", ["Ann did it.", "Bob slept."]).round(2)  # doctest: +SKIP
        array([0.7, 0.3], dtype=float32)
    """

    def __init__(
        self,
        spec: str,
        *,
        model: Any = None,
        tokenizer: Any = None,
        source: Any = None,
        device: str = "auto",
        dtype: str = "auto",
        backend: str = "auto",
        template: PromptTemplate = READER_TEMPLATE,
        lock: Any = None,
    ) -> None:
        if model is not None and (tokenizer is None or source is None):
            raise ConfigError("Reader", "a loaded model needs its tokenizer and source", "pass all three")
        self.spec = spec
        self.template = template
        self.backend = backend
        self._device = device
        self._dtype = dtype
        self._model = model
        self._tokenizer = tokenizer
        self._source = source
        self._lock = lock if lock is not None else threading.RLock()
        self._memo: OrderedDict[tuple[str, tuple[str, ...]], np.ndarray] = OrderedDict()

    # ----------------------------------------------------------------- identity and loading
    @property
    def source(self) -> Any:
        """The model's :class:`~ctxcomp.models.loader.ModelSource` (resolved without loading weights)."""
        if self._source is None:
            from ctxcomp.models.loader import materialise

            self._source = materialise(self.spec)
        return self._source

    @property
    def model_id(self) -> str:
        """Stable id of the reader (preset name, file or directory name, hub id)."""
        return str(self.source.model_id)

    @property
    def weights_sha256(self) -> str | None:
        """sha256 of the reader's weights, when known."""
        sha = self.source.weights_sha256
        return None if sha is None else str(sha)

    def load(self) -> Reader:
        """Load the model and tokenizer now (otherwise the first prefill does).

        Returns:
            ``self``.
        """
        with self._lock:
            if self._model is None:
                import torch

                from ctxcomp.compressors.probe import register_attention
                from ctxcomp.models.loader import load_causal_lm, load_tokenizer

                device = self._device
                if device == "auto":
                    device = "cuda" if torch.cuda.is_available() else "cpu"
                dtype = self._dtype
                if dtype == "auto":
                    dtype = "bfloat16" if device.startswith("cuda") else "float32"
                model, source = load_causal_lm(
                    self.spec, device=device, dtype=dtype, attn_implementation=register_attention("sdpa")
                )
                self._tokenizer = load_tokenizer(self.spec)
                self._source = source
                self._model = model
        return self

    @property
    def model(self) -> Any:
        """The loaded causal LM."""
        self.load()
        return self._model

    @property
    def tokenizer(self) -> Any:
        """The reader's tokenizer."""
        self.load()
        return self._tokenizer

    @property
    def num_layers(self) -> int:
        """Number of decoder layers."""
        return int(self.model.config.get_text_config().num_hidden_layers)

    # ----------------------------------------------------------------- attention
    def slot_attention(self, query: str, docs: Sequence[str]) -> np.ndarray:
        """Attention of the answer position to each document slot, per layer (one prefill).

        Args:
            query: The question.
            docs: Document texts in slot order.

        Returns:
            ``[L, K]`` float32: per layer, the head-averaged share of context attention of the
            prompt's last token that falls in each slot (each row sums to 1).

        Example:
            >>> Reader("gemma-3-270m").slot_attention("Who?", ["A.", "B."]).shape  # doctest: +SKIP
            (18, 2)
        """
        key = (query, tuple(docs))
        with self._lock:
            hit = self._memo.get(key)
            if hit is not None:
                self._memo.move_to_end(key)
                return hit
        k = len(docs)
        n_layers = self.num_layers
        if k == 0:
            return np.zeros((n_layers, 0), dtype=np.float32)
        import torch

        from ctxcomp.compressors.probe import run_probe

        prompt, char_slot = slot_prompt(query, docs, self.template)
        enc = self.tokenizer(prompt, return_offsets_mapping=True, add_special_tokens=True)
        seg = token_segments(enc["offset_mapping"], char_slot)  # [N]
        device = next(self.model.parameters()).device
        ids = torch.tensor([enc["input_ids"]], device=device)  # [1, N]
        layers = tuple(range(n_layers))
        with self._lock:
            out = run_probe(self.model, ids, seg, k, layers=layers, m=1, backend=self.backend)
        arr = np.stack([out[li].mean(axis=0) for li in layers]).astype(np.float32)  # [L, K]
        with self._lock:
            self._memo[key] = arr
            while len(self._memo) > 16:
                self._memo.popitem(last=False)
        return arr

    def doc_attention(self, query: str, docs: Sequence[str]) -> np.ndarray:
        """Attention each document receives from the answer position, averaged over layers and heads.

        Args:
            query: The question.
            docs: Document texts in slot order.

        Returns:
            ``[K]`` shares summing to 1 (empty for no documents).

        Example:
            >>> Reader("gemma-3-270m").doc_attention("Who?", ["A.", "B."]).sum()  # doctest: +SKIP
            1.0
        """
        return self.slot_attention(query, docs).mean(axis=0) if docs else np.zeros(0, dtype=np.float32)


def dummy_documents(tokenizer: Any, docs: Sequence[str], filler: str = DUMMY_FILLER) -> list[str]:
    """Content-free stand-ins with the same token lengths as ``docs`` (empty stays empty).

    Args:
        tokenizer: The reader's tokenizer.
        docs: The real documents.
        filler: Neutral text repeated to length.

    Returns:
        One dummy text per document.

    Example:
        >>> dummy_documents(tok, ["Paris is in France."])  # doctest: +SKIP
        [' This placeholder text']
    """
    base = tokenizer(filler, add_special_tokens=False)["input_ids"]
    out = []
    for d in docs:
        n = len(tokenizer(d, add_special_tokens=False)["input_ids"]) if d else 0
        if n == 0:
            out.append("")
            continue
        ids = (base * (n // len(base) + 1))[:n]
        out.append(tokenizer.decode(ids).strip() or filler.strip())
    return out


def calibrated_scores(reader: Reader, query: str, docs: Sequence[str]) -> np.ndarray:
    """Found-in-the-middle calibrated relevance: attention minus its positional baseline.

    The baseline is the attention that content-free dummy documents of the same token lengths,
    at the same slots, receive for the same question (Hsieh et al., 2024). Two prefills; usable as a
    reranking score (higher is more relevant).

    Args:
        reader: The reader.
        query: The question.
        docs: Document texts in their current order.

    Returns:
        ``[K]`` calibrated scores (float64).

    Example:
        >>> calibrated_scores(Reader("gemma-3-270m"), "Who?", ["Ann did.", "Rain fell."])  # doctest: +SKIP
        array([ 0.21, -0.21])
    """
    if not docs:
        return np.zeros(0)
    raw = reader.doc_attention(query, docs).astype(np.float64)  # [K]
    base = reader.doc_attention(query, dummy_documents(reader.tokenizer, docs)).astype(np.float64)  # [K]
    return raw - base


# ---------------------------------------------------------------------------------------------- data
@dataclass(frozen=True)
class CalibrationPrompt:
    """One calibration prompt: a question and its documents (documents are rotated through slots).

    Attributes:
        query: The question.
        docs: ``K`` document texts.
    """

    query: str
    docs: tuple[str, ...]


def _read_jsonl(path: Path) -> Iterable[tuple[int, Any]]:
    opener: Callable[..., Any] = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rt", encoding="utf-8") as fh:
            for lineno, line in enumerate(fh, start=1):
                if line.strip():
                    try:
                        yield lineno, json.loads(line)
                    except json.JSONDecodeError as err:
                        raise InputError(
                            f"{path}:{lineno}", f"invalid JSON ({err.msg})", "write one object a line"
                        ) from err
    except OSError as err:
        raise InputError(
            "--data", f"cannot read {str(path)!r} ({err})", "pass a JSONL (or .jsonl.gz) file"
        ) from err


def _normalise(text: str) -> str:
    import re
    import string
    import unicodedata

    text = unicodedata.normalize("NFKC", text).lower()
    text = "".join(ch for ch in text if ch not in set(string.punctuation))
    return " ".join(re.sub(r"\b(a|an|the)\b", " ", text).split())


def _is_train(question: str) -> bool:
    """The benchmarks' split rule: eval is sha256(question) % 5 == 0; calibration uses the rest."""
    return int(hashlib.sha256(question.encode()).hexdigest(), 16) % 5 != 0


def load_calibration_data(
    path: str | Path, *, k: int, n: int, seed: int = 0, records_per_doc: int = 1
) -> tuple[list[CalibrationPrompt], str, str]:
    """Build ``n`` prompts of ``k`` documents from a JSONL file.

    Three formats are recognised from the first record:

    * kv-retrieval (``ordered_kv_records``/``key``/``value``): each document holds
      ``records_per_doc`` key-value records; one of them holds the queried key.
    * NQ-open (``question``/``ctxs``): the gold passage plus ``k - 1`` other questions' passages
      that contain no answer string (seeded choice). Only the training split of the benchmarks
      (``sha256(question) % 5 != 0``) is used, so evaluation questions stay unseen.
    * your own: ``{"query": str, "docs": [str | {"text": str}, ...]}``; the first ``k`` documents
      are used and lines with fewer are skipped.

    Args:
        path: The file (``.gz`` is decompressed).
        k: Documents per prompt.
        n: Number of prompts wanted.
        seed: Seed of the document choices.
        records_per_doc: kv-retrieval records per document.

    Returns:
        ``(prompts, data_hash, kind)``: the prompts (possibly fewer than ``n``), the sha256 of their
        canonical JSON, and ``"kv"``, ``"nq"`` or ``"jsonl"``.

    Raises:
        InputError: Unreadable file, unknown format, or no usable prompt.

    Example:
        >>> prompts, h, kind = load_calibration_data("kv.jsonl.gz", k=10, n=20)  # doctest: +SKIP
    """
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise InputError(
            "--slots", f"must be an int >= 1, got {k!r}", "pass the number of document slots, e.g. 10"
        )
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise InputError("--n", f"must be an int >= 1, got {n!r}", "pass the number of calibration prompts")
    p = Path(path)
    rows = list(_read_jsonl(p))
    if not rows:
        raise InputError("--data", f"{str(p)!r} has no records", "pass a non-empty JSONL file")
    first = rows[0][1]
    rng = random.Random(seed)
    prompts: list[CalibrationPrompt] = []
    skipped = 0
    if isinstance(first, dict) and "ordered_kv_records" in first:
        kind = "kv"
        per = max(1, int(records_per_doc))
        for _, r in rows:
            recs = [tuple(x) for x in r["ordered_kv_records"]]
            gold = next((i for i, (key, _) in enumerate(recs) if key == r["key"]), None)
            if gold is None or len(recs) < k * per:
                skipped += 1
                continue
            others = [i for i in range(len(recs)) if i != gold]
            chosen = rng.sample(others, k * per - 1)
            slot_in_doc = rng.randrange(per)
            gold_recs = chosen[: per - 1]
            gold_recs.insert(slot_in_doc, gold)
            groups = [gold_recs] + [chosen[per - 1 + j * per : per - 1 + (j + 1) * per] for j in range(k - 1)]
            docs = tuple("\n".join(f'Key: "{recs[i][0]}" Value: "{recs[i][1]}"' for i in g) for g in groups)
            prompts.append(CalibrationPrompt(f'What is the value of key "{r["key"]}"?', docs))
            if len(prompts) == n:
                break
    elif isinstance(first, dict) and "question" in first and "ctxs" in first:
        kind = "nq"

        def passage(c: Mapping[str, Any]) -> str:
            return f"{c['title']}. {c['text']}" if c.get("title") else str(c["text"])

        passages = [passage(r["ctxs"][0]) for _, r in rows]
        for qi, (_, r) in enumerate(rows):
            if not _is_train(r["question"]):
                continue
            answers = [_normalise(a) for a in r.get("answers", []) if _normalise(a)]
            picks: list[str] = []
            tries = 0
            while len(picks) < k - 1 and tries < 50 * k:
                tries += 1
                j = rng.randrange(len(passages))
                cand = passages[j]
                if j == qi or cand == passages[qi] or cand in picks:
                    continue
                if any(a in _normalise(cand) for a in answers):
                    continue
                picks.append(cand)
            if len(picks) < k - 1:
                skipped += 1
                continue
            prompts.append(CalibrationPrompt(str(r["question"]), (passages[qi], *picks)))
            if len(prompts) == n:
                break
    elif isinstance(first, dict) and "query" in first and "docs" in first:
        kind = "jsonl"
        for lineno, r in rows:
            if (
                not isinstance(r, dict)
                or not isinstance(r.get("query"), str)
                or not isinstance(r.get("docs"), list)
            ):
                raise InputError(
                    f"{p}:{lineno}",
                    "needs a string 'query' and a list 'docs'",
                    'write {"query": "...", "docs": ["...", ...]}',
                )
            docs_raw = r["docs"]
            texts = []
            for j, d in enumerate(docs_raw):
                t = d.get("text") if isinstance(d, dict) else d
                if not isinstance(t, str):
                    raise InputError(
                        f"{p}:{lineno}.docs[{j}]", "must be a string or {'text': str}", "fix the record"
                    )
                texts.append(t)
            if len(texts) < k:
                skipped += 1
                continue
            prompts.append(CalibrationPrompt(r["query"], tuple(texts[:k])))
            if len(prompts) == n:
                break
    else:
        raise InputError(
            "--data",
            f"{str(p)!r} is not a known format (first record keys: "
            f"{sorted(first) if isinstance(first, dict) else type(first).__name__})",
            'pass kv-retrieval or NQ-open JSONL from the shared data, or lines of {"query", "docs"}',
        )
    if skipped:
        logger.info("skipped %d records of %s that could not give %d documents", skipped, p, k)
    if not prompts:
        raise InputError(
            "--data", f"{str(p)!r} gave no prompt with {k} documents", "pass more documents per record"
        )
    canon = json.dumps([[q.query, list(q.docs)] for q in prompts], ensure_ascii=False, separators=(",", ":"))
    return prompts, hashlib.sha256(canon.encode("utf-8")).hexdigest(), kind


# ---------------------------------------------------------------------------------------------- calibrate
def rotation_offsets(prompt_index: int, k: int, rotations: int) -> list[int]:
    """Cyclic offsets used for one prompt: all ``k``, or a balanced Latin-square subset.

    Prompt ``p`` with ``R < k`` rotations uses offsets ``p, p + k/R, p + 2k/R, ... (mod k)``, so
    over consecutive prompts every offset is used equally often.

    Args:
        prompt_index: Index ``p`` of the prompt.
        k: Number of slots.
        rotations: Rotations per prompt (clipped to ``[1, k]``).

    Returns:
        The offsets (document 0 goes to slot ``offset``).

    Example:
        >>> rotation_offsets(3, 10, 2)
        [3, 8]
    """
    r = max(1, min(k, rotations))
    if r == k:
        return list(range(k))
    return sorted({(prompt_index + (j * k) // r) % k for j in range(r)})


def rotate(docs: Sequence[str], offset: int) -> list[str]:
    """Rotate documents so that document 0 lands in slot ``offset``.

    Args:
        docs: The documents.
        offset: Target slot of document 0.

    Returns:
        The rotated list.

    Example:
        >>> rotate(["a", "b", "c"], 1)
        ['c', 'a', 'b']
    """
    k = len(docs)
    if k == 0:
        return []
    o = offset % k
    return list(docs[k - o :]) + list(docs[: k - o])


def layer_groups(n_layers: int, groups: int = 3) -> dict[str, list[int]]:
    """Split layers into depth groups (thirds by default): ``early``, ``middle``, ``late``.

    Args:
        n_layers: Number of decoder layers.
        groups: 3 gives early/middle/late; other values give ``g0``, ``g1``, ...

    Returns:
        ``{name: layer indices}`` (empty groups dropped).

    Example:
        >>> layer_groups(6)
        {'early': [0, 1], 'middle': [2, 3], 'late': [4, 5]}
    """
    names = ["early", "middle", "late"] if groups == 3 else [f"g{i}" for i in range(groups)]
    out: dict[str, list[int]] = {}
    for i, name in enumerate(names):
        idx = list(range((i * n_layers) // groups, ((i + 1) * n_layers) // groups))
        if idx:
            out[name] = idx
    return out


def bootstrap_ci(
    x: np.ndarray, *, n_boot: int = 2000, seed: int = 0, level: float = 0.95
) -> tuple[np.ndarray, np.ndarray]:
    """Percentile bootstrap interval of the column means of ``x`` (rows are the resampled units).

    Args:
        x: ``[N, K]`` per-unit values.
        n_boot: Bootstrap resamples.
        seed: RNG seed.
        level: Coverage.

    Returns:
        ``(low [K], high [K])``; a single row gives a zero-width interval.

    Example:
        >>> lo, hi = bootstrap_ci(np.array([[0.0], [1.0], [0.5], [0.5]]))
        >>> bool(lo[0] < 0.5 < hi[0])
        True
    """
    x = np.asarray(x, dtype=np.float64)
    if x.shape[0] <= 1:
        m = x.mean(axis=0) if x.shape[0] else np.zeros(x.shape[1])
        return m.copy(), m.copy()
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, x.shape[0], size=(n_boot, x.shape[0]))  # [B, N]
    means = x[idx].mean(axis=1)  # [B, K]
    a = (1.0 - level) / 2.0
    return np.quantile(means, a, axis=0), np.quantile(means, 1.0 - a, axis=0)


def calibrate(
    model: str | Reader,
    data: str | Path | Sequence[CalibrationPrompt],
    k: int,
    n: int = 24,
    *,
    rotations: int | None = None,
    max_prefills: int = 120,
    seed: int = 0,
    records_per_doc: int = 1,
    device: str = "auto",
    backend: str = "auto",
    n_boot: int = 2000,
    warn_relative_width: float = 0.5,
    progress: bool = False,
    meta: Mapping[str, Any] | None = None,
) -> PositionProfile:
    """Measure a reader's positional attention profile over ``k`` document slots.

    For each of ``n`` prompts and each of its rotations, one truncated prefill reads, in every
    layer, the attention of the last prompt token (the answer position) to each document slot
    (context-renormalised, head-averaged). A prompt's value is the mean over its rotations; the
    profile is the mean over prompts, with bootstrap intervals over prompts.

    Args:
        model: Reader spec (loaded here) or a :class:`Reader`.
        data: A JSONL file (see :func:`load_calibration_data`) or prompts of ``k`` documents.
        k: Document slots.
        n: Calibration prompts.
        rotations: Rotations per prompt; ``None``: all ``k`` if ``n * k <= max_prefills``, else the
            largest ``R`` with ``n * R <= max_prefills`` (a Latin-square subset, at least 1).
        max_prefills: Cap used by ``rotations=None``.
        seed: Seed of the data choices and the bootstrap.
        records_per_doc: kv-retrieval records per document.
        device: Device for a model loaded here.
        backend: Probe kernel backend.
        n_boot: Bootstrap resamples.
        warn_relative_width: Warn (:class:`CalibrationWarning`) when the widest interval's
            half-width exceeds this share of a uniform slot's share ``1/k``, or when ``n < 5``.
        progress: Show a progress bar.
        meta: Extra provenance stored in the profile (e.g. the command line).

    Returns:
        The profile.

    Raises:
        InputError: Bad ``k``/``n``/data, or a prompt without ``k`` documents.

    Example:
        >>> prof = calibrate("gemma-3-270m", "nq-open-dev.jsonl.gz", k=10, n=24)  # doctest: +SKIP
        >>> len(prof.means)  # doctest: +SKIP
        10
    """
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise InputError("k", f"must be an int >= 1, got {k!r}", "pass the number of document slots, e.g. 10")
    if isinstance(data, (str, Path)):
        prompts, data_hash, kind = load_calibration_data(
            data, k=k, n=n, seed=seed, records_per_doc=records_per_doc
        )
        source_name = Path(data).name
    else:
        prompts = list(data)[:n]
        for i, pr in enumerate(prompts):
            if len(pr.docs) != k:
                raise InputError(
                    f"data[{i}].docs", f"has {len(pr.docs)} documents, not k={k}", f"give {k} documents"
                )
        if not prompts:
            raise InputError("data", "is empty", "pass at least one CalibrationPrompt")
        canon = json.dumps(
            [[q.query, list(q.docs)] for q in prompts], ensure_ascii=False, separators=(",", ":")
        )
        data_hash, kind, source_name = (
            hashlib.sha256(canon.encode("utf-8")).hexdigest(),
            "prompts",
            "<prompts>",
        )
    n_used = len(prompts)
    if n_used < n:
        logger.warning("only %d of the %d requested calibration prompts could be built", n_used, n)
    if rotations is None:
        rotations = k if n_used * k <= max_prefills else max(1, max_prefills // n_used)
    rotations = max(1, min(k, int(rotations)))
    reader = model if isinstance(model, Reader) else Reader(model, device=device, backend=backend)
    reader.load()
    n_layers = reader.num_layers
    per_prompt = np.zeros((n_used, n_layers, k), dtype=np.float64)  # [N, L, K]
    it: Iterable[int] = range(n_used)
    if progress:
        from tqdm.auto import tqdm

        it = tqdm(it, desc="calibrate", unit="prompt")
    t0 = time.perf_counter()
    prefills = 0
    for p in it:
        offs = rotation_offsets(p, k, rotations)
        acc = np.zeros((n_layers, k), dtype=np.float64)
        for o in offs:
            acc += reader.slot_attention(prompts[p].query, rotate(prompts[p].docs, o))
            prefills += 1
        per_prompt[p] = acc / len(offs)
    seconds = time.perf_counter() - t0
    overall = per_prompt.mean(axis=1)  # [N, K]
    means = overall.mean(axis=0)  # [K]
    lo, hi = bootstrap_ci(overall, n_boot=n_boot, seed=seed)
    groups = layer_groups(n_layers)
    group_means = {g: tuple(per_prompt[:, idx].mean(axis=(0, 1)).tolist()) for g, idx in groups.items()}
    half = float(np.max(hi - lo)) / 2.0
    rel = half * k
    if n_used < 5 or rel > warn_relative_width:
        msg = (
            f"position profile from {n_used} prompts is unstable: the widest 95% interval is "
            f"±{half:.4f} (±{rel:.0%} of a uniform slot's share 1/{k}); calibrate with more prompts (--n)"
        )
        warnings.warn(msg, CalibrationWarning, stacklevel=2)
        logger.warning(msg)
    info = {
        "data": source_name,
        "data_kind": kind,
        "rotations_per_prompt": rotations,
        "prefills": prefills,
        "seconds": round(seconds, 1),
        "layers": n_layers,
        "layer_groups": {g: [idx[0], idx[-1]] for g, idx in groups.items()},
        "query_position": "last prompt token (answer position)",
        "template": {
            "head": reader.template.head,
            "doc_header": reader.template.doc_header,
            "doc_sep": reader.template.doc_sep,
            "tail": reader.template.tail("{q}", focus=True),
        },
        "seed": seed,
        "interval": "95% percentile bootstrap over prompts",
        "max_relative_half_width": round(rel, 4),
        **dict(meta or {}),
    }
    return PositionProfile(
        model_id=reader.model_id,
        weights_sha256=reader.weights_sha256,
        k=k,
        means=tuple(means.tolist()),
        ci_low=tuple(lo.tolist()),
        ci_high=tuple(hi.tolist()),
        n=n_used,
        data_hash=data_hash,
        layer_groups=group_means,
        meta=info,
    )


# ---------------------------------------------------------------------------------------------- plot
def pyplot() -> Any:
    """matplotlib's pyplot on the non-interactive Agg backend.

    Returns:
        The ``matplotlib.pyplot`` module.

    Raises:
        PlotDependencyError: matplotlib is not installed (the message names the fix).

    Example:
        >>> plt = pyplot()  # doctest: +SKIP
    """
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as err:
        raise PlotDependencyError("Plotting a position profile") from err
    return plt


def plot_profile(profile: PositionProfile, path: str | Path, *, title: str | None = None) -> Path:
    """Plot the per-slot attention curve with its 95% interval and the per-depth-group curves.

    Args:
        profile: The profile.
        path: Output image (``.png``).
        title: Plot title (default: the model id and sample size).

    Returns:
        The path written.

    Raises:
        PlotDependencyError: matplotlib is not installed.

    Example:
        >>> plot_profile(prof, "profile.png")  # doctest: +SKIP
    """
    plt = pyplot()
    x = np.arange(1, profile.k + 1)
    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    ax.fill_between(x, profile.ci_low, profile.ci_high, alpha=0.25, label="95% interval")
    ax.plot(x, profile.means, marker="o", lw=2, label="all layers")
    for g, vals in profile.layer_groups.items():
        ax.plot(x, vals, lw=1, ls="--", label=f"{g} layers")
    ax.axhline(1.0 / profile.k, color="grey", lw=0.8, ls=":", label="uniform")
    ax.set_xlabel("document slot (1 = first)")
    ax.set_ylabel("share of context attention (answer position)")
    ax.set_title(title or f"{profile.model_id}: positional attention, n={profile.n} prompts")
    ax.set_xticks(x)
    ax.legend(fontsize=8)
    fig.tight_layout()
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(p, dpi=120)
    plt.close(fig)
    return p


__all__ = [
    "PROFILES_DIR",
    "READER_TEMPLATE",
    "CalibrationPrompt",
    "CalibrationWarning",
    "PlotDependencyError",
    "PositionProfile",
    "Reader",
    "bootstrap_ci",
    "calibrate",
    "calibrated_scores",
    "dummy_documents",
    "layer_groups",
    "load_calibration_data",
    "plot_profile",
    "resolve_profile",
    "rotate",
    "rotation_offsets",
    "shipped_profile_path",
    "slot_prompt",
]
