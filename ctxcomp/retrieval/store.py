"""The on-disk format of an index directory: atomic save, manifest, checksums, checked load.

A directory holds three files, written into a temp folder that is then renamed into place:

* ``index.faiss`` -- the faiss index (``faiss.write_index``);
* ``docstore.jsonl`` -- one ``{"iid", "id", "text", "metadata"}`` object a line, sorted by ``iid``;
* ``manifest.json`` -- format and version, embedder id, dim, kind, counts, search parameters,
  calibration and the size and sha256 of the other two files.

Nothing is pickled. Loading checks the manifest, the file sizes (and checksums when asked), the
embedder, and that the docstore agrees with the faiss index, before anything is used.
:class:`~ctxcomp.retrieval.FaissIndex` ``.save`` / ``.load`` / ``.read_manifest`` call into this module.

Example:
    >>> import tempfile
    >>> import numpy as np
    >>> from ctxcomp import Document
    >>> from ctxcomp.retrieval.docstore import DocStore
    >>> from ctxcomp.retrieval.vectors import VectorIndex
    >>> docs, vectors = DocStore(), VectorIndex.flat(4)
    >>> vectors.add(np.eye(4, dtype=np.float32)[:1], docs.add([Document("a", "x")]))  # [1, 4]
    >>> folder = tempfile.mkdtemp() + "/i"
    >>> _ = save_index(folder, vectors=vectors, docs=docs, embedder_id="ctxcomp/hashing-bow-4")
    >>> read_manifest(folder)["count"], load_index(folder).docs.ids()
    (1, ['a'])
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from ctxcomp.errors import InputError
from ctxcomp.retrieval.docstore import DocStore
from ctxcomp.retrieval.embedders import Embedder, resolve_embedder
from ctxcomp.retrieval.errors import EmbedderMismatchError, IndexFormatError
from ctxcomp.retrieval.tuning import RECALL_TARGET
from ctxcomp.retrieval.vectors import VectorIndex, import_faiss
from ctxcomp.types import Document

INDEX_FILE = "index.faiss"
DOCSTORE_FILE = "docstore.jsonl"
MANIFEST_FILE = "manifest.json"
FORMAT = "ctxcomp-faiss-index"
FORMAT_VERSION = 1


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file, read in 1 MiB blocks.

    Example:
        >>> import tempfile
        >>> p = Path(tempfile.mkdtemp()) / "f"
        >>> _ = p.write_bytes(b"")
        >>> sha256_file(p)[:12]
        'e3b0c44298fc'
    """
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _check_file(path: Path, entry: dict[str, Any], verify: bool, fix: str) -> None:
    if not path.is_file():
        raise IndexFormatError(str(path), "is missing", fix)
    size = path.stat().st_size
    if size != entry["size"]:
        raise IndexFormatError(
            str(path), f"has {size} bytes; the manifest says {entry['size']} (truncated?)", fix
        )
    if verify and sha256_file(path) != entry["sha256"]:
        raise IndexFormatError(
            str(path), "does not match its sha256 checksum in manifest.json (corrupted)", fix
        )


# ---------------------------------------------------------------------- saving


def save_index(
    directory: str | os.PathLike[str],
    *,
    vectors: VectorIndex,
    docs: DocStore,
    embedder_id: str,
    recall_target: float = RECALL_TARGET,
    seed: int = 0,
    calibration: dict[str, Any] | None = None,
) -> Path:
    """Write an index directory atomically (a temp dir, then a rename).

    An existing ctxcomp index there is replaced; any other non-empty directory is refused. A
    memory-mapped ``vectors`` is first read into memory (see ``VectorIndex.ensure_in_memory``).

    Args:
        directory: Target folder.
        vectors: The faiss index.
        docs: Its documents.
        embedder_id: Id of the embedder that made the vectors.
        recall_target: Recorded in the manifest.
        seed: Recorded in the manifest.
        calibration: Last calibration result, recorded in the manifest.

    Returns:
        The folder written.

    Raises:
        InputError: A document's metadata is not JSON-serialisable.
        IndexFormatError: ``directory`` is a file or a non-empty folder that is not an index.

    Example:
        >>> import tempfile
        >>> folder = save_index(
        ...     tempfile.mkdtemp() + "/i", vectors=VectorIndex.flat(4), docs=DocStore(), embedder_id="e"
        ... )
        >>> sorted(p.name for p in folder.iterdir())
        ['docstore.jsonl', 'index.faiss', 'manifest.json']
    """
    import_faiss()
    vectors.ensure_in_memory()
    target = Path(directory)
    if target.exists() and not target.is_dir():
        raise IndexFormatError(str(target), "is a file, not a directory", "pass a directory path")
    if target.is_dir() and any(target.iterdir()) and not (target / MANIFEST_FILE).is_file():
        raise IndexFormatError(
            str(target),
            "is a non-empty directory that is not a ctxcomp index",
            "pass a new or empty directory",
        )
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.parent / f".{target.name}.tmp-{uuid.uuid4().hex[:12]}"
    tmp.mkdir()
    try:
        _write_docstore(tmp / DOCSTORE_FILE, docs)
        vectors.write(tmp / INDEX_FILE)
        manifest = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "ctxcomp_version": _ctxcomp_version(),
            "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "embedder": embedder_id,
            "dim": vectors.dim,
            "metric": "inner_product",
            "normalized": True,
            "kind": vectors.kind,
            "count": len(docs),
            "next_id": docs.next_id,
            "recall_target": recall_target,
            "seed": seed,
            "calibration": calibration or {},
            "search": vectors.search_params(),
            "files": {
                name: {"size": (tmp / name).stat().st_size, "sha256": sha256_file(tmp / name)}
                for name in (INDEX_FILE, DOCSTORE_FILE)
            },
        }
        with (tmp / MANIFEST_FILE).open("w", encoding="utf-8") as fh:
            json.dump(manifest, fh, indent=2, sort_keys=True)
            fh.write("\n")
            fh.flush()
            os.fsync(fh.fileno())
        if target.exists():
            old = target.parent / f".{target.name}.old-{uuid.uuid4().hex[:12]}"
            os.replace(target, old)
            os.replace(tmp, target)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target


def _ctxcomp_version() -> str:
    from ctxcomp import __version__

    return __version__


def _write_docstore(path: Path, docs: DocStore) -> None:
    with path.open("w", encoding="utf-8") as fh:
        for iid, doc in docs.items():
            try:
                line = json.dumps(
                    {"iid": iid, "id": doc.id, "text": doc.text, "metadata": doc.metadata},
                    ensure_ascii=False,
                    allow_nan=False,
                )
            except (TypeError, ValueError) as err:
                raise InputError(
                    f"Document[{doc.id!r}].metadata",
                    f"is not JSON-serialisable ({err})",
                    "keep only str, int, finite float, bool, None, list and dict values in metadata",
                ) from err
            fh.write(line + "\n")
        fh.flush()
        os.fsync(fh.fileno())


# ---------------------------------------------------------------------- loading


def read_manifest(directory: str | os.PathLike[str]) -> dict[str, Any]:
    """Read and sanity-check ``manifest.json`` of an index directory (no faiss needed).

    Args:
        directory: The index folder.

    Returns:
        The manifest dict.

    Raises:
        IndexFormatError: Missing folder or manifest, invalid JSON, unknown format or missing keys.

    Example:
        >>> import tempfile
        >>> try:
        ...     read_manifest(tempfile.mkdtemp())
        ... except IndexFormatError as err:
        ...     print(err.problem)
        is missing (not a ctxcomp index, or a half-written one)
    """
    folder = Path(directory)
    fix = "rebuild it with `ctxcomp index build` or FaissIndex.build(...).save(dir)"
    if not folder.is_dir():
        raise IndexFormatError(
            str(folder), "is not a directory", "pass the folder written by FaissIndex.save"
        )
    path = folder / MANIFEST_FILE
    if not path.is_file():
        raise IndexFormatError(str(path), "is missing (not a ctxcomp index, or a half-written one)", fix)
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise IndexFormatError(str(path), f"is not valid JSON ({err})", fix) from err
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise IndexFormatError(str(path), f"is not a {FORMAT} manifest", fix)
    if manifest.get("format_version") != FORMAT_VERSION:
        raise IndexFormatError(
            str(path),
            f"has format_version {manifest.get('format_version')!r}; this ctxcomp reads {FORMAT_VERSION}",
            "rebuild the index with this ctxcomp version",
        )
    required = {"embedder": str, "dim": int, "kind": str, "count": int, "next_id": int, "files": dict}
    for key, typ in required.items():
        if not isinstance(manifest.get(key), typ):
            raise IndexFormatError(f"{path}:{key}", f"is missing or not a {typ.__name__}", fix)
    if manifest["kind"] not in ("flat", "ivf", "hnsw"):
        raise IndexFormatError(f"{path}:kind", f"unknown kind {manifest['kind']!r}", fix)
    for name in (INDEX_FILE, DOCSTORE_FILE):
        entry = manifest["files"].get(name)
        if (
            not isinstance(entry, dict)
            or not isinstance(entry.get("size"), int)
            or not isinstance(entry.get("sha256"), str)
        ):
            raise IndexFormatError(f"{path}:files.{name}", "is missing its size or sha256", fix)
    return manifest


@dataclass
class LoadedIndex:
    """The checked parts of an index directory, as returned by :func:`load_index`.

    Attributes:
        manifest: The manifest (see :func:`read_manifest`).
        embedder: The query embedder; its id and dim match the manifest.
        vectors: The faiss index (memory-mapped when loaded with ``mmap=True``).
        docs: The documents, their ids matching the faiss index.

    Example:
        >>> import tempfile
        >>> folder = tempfile.mkdtemp() + "/i"
        >>> empty = VectorIndex.flat(4)
        >>> _ = save_index(folder, vectors=empty, docs=DocStore(), embedder_id="ctxcomp/hashing-bow-4")
        >>> loaded = load_index(folder)
        >>> loaded.vectors.kind, len(loaded.docs), loaded.embedder.dim
        ('flat', 0, 4)
    """

    manifest: dict[str, Any]
    embedder: Embedder
    vectors: VectorIndex
    docs: DocStore


def load_index(
    directory: str | os.PathLike[str],
    *,
    embedder: Embedder | str | None = None,
    mmap: bool = True,
    verify: bool = True,
    use_gpu: bool | None = None,
) -> LoadedIndex:
    """Read an index directory, checking it before faiss reads it.

    Sizes of all files are always checked, sha256 checksums when ``verify``; the docstore must agree
    with the index. With ``mmap`` faiss memory-maps what it can (``IO_FLAG_MMAP``); the returned
    ``vectors`` re-reads (and re-checks) the file into memory the first time it is changed.

    Args:
        directory: The index folder.
        embedder: Embedder for queries; must match the manifest's id and dim. ``None`` resolves the
            manifest's embedder id (see :func:`~ctxcomp.retrieval.resolve_embedder`).
        mmap: Memory-map the index file.
        verify: Check sha256 checksums (reads every byte once).
        use_gpu: Passed to the :class:`~ctxcomp.retrieval.vectors.VectorIndex`.

    Returns:
        The manifest, embedder, vectors and documents.

    Raises:
        IndexFormatError: Missing, truncated or corrupted files, or files that disagree.
        EmbedderMismatchError: ``embedder`` differs from the one the index was built with.

    Example:
        >>> import tempfile
        >>> folder = save_index(
        ...     tempfile.mkdtemp() + "/i", vectors=VectorIndex.flat(4), docs=DocStore(), embedder_id="e"
        ... )
        >>> try:
        ...     load_index(folder, embedder="ctxcomp/hashing-bow-4")
        ... except EmbedderMismatchError as err:
        ...     print(err.problem)
        the index was built with 'e' but 'ctxcomp/hashing-bow-4' was given
    """
    faiss = import_faiss()
    folder = Path(directory)
    manifest = read_manifest(folder)
    fix = "rebuild the index (the directory is damaged or was edited)"
    for name in (INDEX_FILE, DOCSTORE_FILE):
        _check_file(folder / name, manifest["files"][name], verify, fix)
    emb = resolve_embedder(embedder if embedder is not None else manifest["embedder"])
    if emb.id != manifest["embedder"]:
        raise EmbedderMismatchError(
            "embedder",
            f"the index was built with {manifest['embedder']!r} but {emb.id!r} was given",
            f"load with embedder={manifest['embedder']!r} (or the same Embedder object), "
            "or rebuild the index",
        )
    if int(emb.dim) != manifest["dim"]:
        raise EmbedderMismatchError(
            "embedder.dim",
            f"the index holds {manifest['dim']}-d vectors but the embedder gives {emb.dim}-d",
            "use the embedder the index was built with",
        )
    index_path = folder / INDEX_FILE
    try:
        raw = faiss.read_index(str(index_path), faiss.IO_FLAG_MMAP if mmap else 0)
    except RuntimeError as err:
        raise IndexFormatError(str(index_path), f"cannot be read by faiss ({str(err)[:200]})", fix) from err
    expected = "IndexIVFFlat" if manifest["kind"] == "ivf" else "IndexIDMap2"
    if type(raw).__name__ != expected:
        raise IndexFormatError(str(index_path), f"holds a {type(raw).__name__}, expected {expected}", fix)
    if raw.d != manifest["dim"] or raw.ntotal != manifest["count"]:
        raise IndexFormatError(
            str(index_path),
            f"holds {raw.ntotal} {raw.d}-d vectors; "
            f"the manifest says {manifest['count']} {manifest['dim']}-d",
            fix,
        )
    entry = dict(manifest["files"][INDEX_FILE])
    vectors = VectorIndex(
        raw, manifest["kind"], use_gpu=use_gpu, reload=(lambda: _reread(index_path, entry)) if mmap else None
    )
    docs = _read_docstore(folder / DOCSTORE_FILE, manifest["count"], manifest["next_id"], fix)
    if vectors.kind in ("flat", "hnsw"):
        stored = np.sort(vectors.stored_ids())  # [n]
        if not np.array_equal(stored, np.sort(docs.iids())):
            raise IndexFormatError(
                str(folder / DOCSTORE_FILE), "ids do not match the ids in index.faiss", fix
            )
    return LoadedIndex(manifest, emb, vectors, docs)


def _reread(path: Path, entry: dict[str, Any]) -> Any:
    """An in-memory copy of the faiss index at ``path``, if the file is still the one that was loaded."""
    _check_file(path, entry, True, "load the index again: its files changed on disk after loading")
    try:
        return import_faiss().read_index(str(path), 0)
    except RuntimeError as err:
        raise IndexFormatError(
            str(path), f"cannot be read by faiss ({str(err)[:200]})", "rebuild it"
        ) from err


def _read_docstore(path: Path, count: int, next_id: int, fix: str) -> DocStore:
    docs = DocStore(next_id=next_id)
    with path.open("r", encoding="utf-8") as fh:
        for lineno, raw in enumerate(fh, start=1):
            try:
                rec = json.loads(raw)
                iid, doc = int(rec["iid"]), Document(rec["id"], rec["text"], rec.get("metadata") or {})
            except (json.JSONDecodeError, KeyError, TypeError, ValueError) as err:
                raise IndexFormatError(
                    f"{path}:{lineno}", f"is not a valid docstore record ({err})", fix
                ) from err
            try:
                docs.put(iid, doc)
            except ValueError:
                raise IndexFormatError(
                    f"{path}:{lineno}", f"repeats or misnumbers document {doc.id!r}", fix
                ) from None
    if len(docs) != count:
        raise IndexFormatError(str(path), f"holds {len(docs)} documents; the manifest says {count}", fix)
    return docs


__all__ = [
    "DOCSTORE_FILE",
    "FORMAT",
    "FORMAT_VERSION",
    "INDEX_FILE",
    "MANIFEST_FILE",
    "LoadedIndex",
    "load_index",
    "read_manifest",
    "save_index",
    "sha256_file",
]
