"""Positional profile of a reader LLM: where its answer position looks across document slots.

A :class:`PositionProfile` holds, for ``K`` document slots, the mean share of context attention
that the reader's answer position (the last prompt token) gives to each slot, with 95% intervals.
``ctxcomp calibrate`` (:func:`ctxcomp.training.calibrate.calibrate`) measures it; the ``attnrank``
reorderer places documents by it. Profiles for the offline presets ship in ``profiles/``.

Example:
    >>> p = PositionProfile("m", None, 3, (0.5, 0.2, 0.3), (0.4, 0.1, 0.2), (0.6, 0.3, 0.4), 20, "d")
    >>> p.slot_preference()
    [0, 2, 1]
    >>> [round(x, 4) for x in p.at(2).means]  # first and last slot, renormalised
    [0.625, 0.375]
"""

from __future__ import annotations

import functools
import json
import logging
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Annotated, Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ctxcomp.errors import ConfigError, CtxcompError, InputError, ProbeMismatchError
from ctxcomp.models.identity import same_model
from ctxcomp.types import first_problem

logger = logging.getLogger(__name__)

#: Folder of the profiles that ship with the package, one ``<model id>.json`` per reader.
PROFILES_DIR = Path(__file__).resolve().parent / "profiles"

PROFILE_FORMAT = "ctxcomp-position-profile"
_RECREATE = "re-create it with `ctxcomp calibrate` (or restore the file as calibrate wrote it)"


class ProfileFileError(InputError, ConfigError):
    """A position-profile file violates its schema; names the file, the JSON path and the fix.

    Both an :class:`~ctxcomp.errors.InputError` (as profile errors always were) and a
    :class:`~ctxcomp.errors.ConfigError` (it is the ``position_profile`` setting's file).

    Example:
        >>> ProfileFileError("p.json", "$.means[1]", "must be >= 0").field
        'position_profile (p.json) $.means[1]'
    """

    def __init__(self, source: str, path: str, problem: str, fix: str = _RECREATE) -> None:
        self.source = source
        self.json_path = path
        super().__init__(f"position_profile ({source}) {path}", problem, fix)


_Finite = Annotated[float, Field(allow_inf_nan=False)]


class ProfileFileSchema(BaseModel):
    """The schema of a position-profile file; unknown keys are ignored.

    Example:
        >>> sorted(ProfileFileSchema.model_fields)[:3]
        ['ci_high', 'ci_low', 'ctxcomp_version']
    """

    model_config = ConfigDict(strict=True, extra="ignore")
    format: str = PROFILE_FORMAT
    model_id: Annotated[str, Field(min_length=1)]
    weights_sha256: str | None = None
    k: Annotated[int, Field(ge=1, le=100_000)]
    means: list[Annotated[float, Field(ge=0, allow_inf_nan=False)]]
    ci_low: list[_Finite]
    ci_high: list[_Finite]
    n: Annotated[int, Field(ge=0)]
    data_hash: str
    layer_groups: dict[str, list[_Finite]] | None = None
    ctxcomp_version: str | None = None
    meta: dict[str, Any] | None = None


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
            ProfileFileError: Not a position profile, or fields missing or malformed (an
                :class:`~ctxcomp.errors.InputError` and a :class:`~ctxcomp.errors.ConfigError`, naming
                the JSON path).

        Example:
            >>> PositionProfile.from_dict({"model_id": "m", "k": 1, "means": [1.0], "ci_low": [1.0],
            ...     "ci_high": [1.0], "n": 3, "data_hash": "x"}).k
            1
        """
        if not isinstance(d, Mapping):
            raise ProfileFileError(source, "$", f"must be a JSON object, got {type(d).__name__}")
        if d.get("format", PROFILE_FORMAT) != PROFILE_FORMAT:
            raise ProfileFileError(
                source, "$.format", f"is {d.get('format')!r}", f"pass a {PROFILE_FORMAT!r} file"
            )
        missing = [f for f in ("model_id", "k", "means", "ci_low", "ci_high", "n", "data_hash") if f not in d]
        if missing:
            raise ProfileFileError(source, "$", f"lacks fields {missing}")
        try:
            m = ProfileFileSchema.model_validate(dict(d))
        except ValidationError as err:
            path, problem = first_problem(err)
            raise ProfileFileError(source, path, f"malformed position profile: {problem}") from err
        for name in ("means", "ci_low", "ci_high"):
            if len(getattr(m, name)) != m.k:
                raise ProfileFileError(source, f"$.{name}", f"has {len(getattr(m, name))} values for k={m.k}")
        for g, vals in (m.layer_groups or {}).items():
            if len(vals) != m.k:
                raise ProfileFileError(
                    source, f"$.layer_groups[{g!r}]", f"has {len(vals)} values for k={m.k}"
                )
        try:
            return cls(
                model_id=m.model_id,
                weights_sha256=m.weights_sha256,
                k=m.k,
                means=tuple(m.means),
                ci_low=tuple(m.ci_low),
                ci_high=tuple(m.ci_high),
                n=m.n,
                data_hash=m.data_hash,
                layer_groups={g: tuple(v) for g, v in (m.layer_groups or {}).items()},
                ctxcomp_version=m.ctxcomp_version or "",
                meta=dict(m.meta or {}),
            )
        except (TypeError, ValueError) as err:
            if isinstance(err, CtxcompError):
                raise
            raise ProfileFileError(source, "$", f"is malformed ({err})") from err

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
            raise ProfileFileError(
                source, "$", f"is not valid JSON ({err.msg})", "pass a file written by `ctxcomp calibrate`"
            ) from err
        except (ValueError, RecursionError) as err:
            raise ProfileFileError(source, "$", f"is not valid JSON ({err})") from err
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
            raw = p.read_bytes()
        except OSError as err:
            raise InputError(
                "position_profile",
                f"cannot read {str(p)!r} ({err.strerror})",
                "pass the path of a profile written by `ctxcomp calibrate --out`",
            ) from err
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as err:
            raise ProfileFileError(
                str(p), "$", f"is not valid UTF-8 ({err.reason} at byte {err.start})"
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


__all__ = [
    "PROFILES_DIR",
    "PROFILE_FORMAT",
    "PositionProfile",
    "ProfileFileError",
    "ProfileFileSchema",
    "resolve_profile",
    "shipped_profile_path",
]
