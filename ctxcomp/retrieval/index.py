"""A FAISS index of Documents: build, add, remove, search, save, load.

Cosine similarity is the inner product of L2-normalised vectors. The index type is chosen by corpus
size (``kind="auto"``): exact ``IndexFlatIP`` below :data:`FLAT_MAX_VECTORS` vectors, ``IndexIVFFlat``
above it (``nlist ~ 4 * sqrt(n)``, trained on a random sample, ``nprobe`` calibrated at build time so
that recall@10 on held-out queries drawn from the index's own vectors reaches ``recall_target``).
``kind="hnsw"`` gives ``IndexHNSWFlat`` with a calibrated ``efSearch``. faiss is imported on first use;
when it has GPU support and a GPU is visible, flat and IVF searches run on the GPU.

Internal ids are int64; every Document keeps its string id. A directory written by :meth:`FaissIndex.save`
holds ``index.faiss``, ``docstore.jsonl`` and ``manifest.json`` (checksums, sizes, embedder) and is
written atomically. Nothing is pickled.

:class:`FaissIndex` ties together an embedder, a :class:`~ctxcomp.retrieval.docstore.DocStore` (the
documents and their ids) and a :class:`~ctxcomp.retrieval.vectors.VectorIndex` (the faiss index);
:mod:`ctxcomp.retrieval.tuning` calibrates the search parameters and :mod:`ctxcomp.retrieval.store`
owns the on-disk format.

Example:
    >>> from ctxcomp import Document
    >>> from ctxcomp.retrieval import FaissIndex, HashingEmbedder
    >>> docs = [Document("p", "Paris is the capital of France."), Document("b", "Berlin is in Germany.")]
    >>> index = FaissIndex.build(docs, HashingEmbedder(), progress=False)
    >>> [d.id for d in index.search("capital of France", k=1)]
    ['p']
"""

from __future__ import annotations

import copy
import math
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np

from ctxcomp.errors import ConfigError, InputError
from ctxcomp.retrieval.corpus import check_documents
from ctxcomp.retrieval.docstore import DocStore
from ctxcomp.retrieval.embedders import Embedder, embed_query_batch, normalise_rows, resolve_embedder
from ctxcomp.retrieval.ingest import CHUNK as CHUNK
from ctxcomp.retrieval.ingest import (
    RowEmbedder,
    embed_in_chunks,
    embed_sample,
    read_source,
    text_embedder,
)
from ctxcomp.retrieval.store import DOCSTORE_FILE as DOCSTORE_FILE
from ctxcomp.retrieval.store import FORMAT as FORMAT
from ctxcomp.retrieval.store import FORMAT_VERSION as FORMAT_VERSION
from ctxcomp.retrieval.store import INDEX_FILE as INDEX_FILE
from ctxcomp.retrieval.store import MANIFEST_FILE as MANIFEST_FILE
from ctxcomp.retrieval.store import load_index, save_index
from ctxcomp.retrieval.store import read_manifest as read_index_manifest
from ctxcomp.retrieval.tuning import CALIBRATION_MARGIN as CALIBRATION_MARGIN
from ctxcomp.retrieval.tuning import CALIBRATION_QUERIES, RECALL_TARGET, calibrate_search
from ctxcomp.retrieval.vectors import HNSW_EF_CONSTRUCTION as HNSW_EF_CONSTRUCTION
from ctxcomp.retrieval.vectors import HNSW_M as HNSW_M
from ctxcomp.retrieval.vectors import IVF_KMEANS_ITERS as IVF_KMEANS_ITERS
from ctxcomp.retrieval.vectors import VectorIndex, import_faiss
from ctxcomp.types import Document

IndexKind = Literal["auto", "flat", "ivf", "hnsw"]

#: ``kind="auto"`` builds an exact flat index below this many vectors, IVF at or above it.
FLAT_MAX_VECTORS = 50_000
#: IVF training sample: this many vectors per inverted list (faiss wants at least 39).
IVF_TRAIN_PER_LIST = 40
#: Recalibrate automatically once the index has grown by this factor since the last calibration.
RECALIBRATE_GROWTH = 1.25
#: Score key added to the metadata of search results.
SCORE_KEY = "ctxcomp_retrieval_score"


def ivf_nlist(n: int) -> int:
    """Number of IVF lists for ``n`` vectors: ``round(4 * sqrt(n))``, at most ``n // 39``, at least 1.

    Example:
        >>> ivf_nlist(1_000_000)
        4000
    """
    return max(1, min(round(4 * math.sqrt(n)), n // 39))


def auto_kind(n: int) -> Literal["flat", "ivf"]:
    """Index type ``kind="auto"`` picks for ``n`` vectors.

    Example:
        >>> auto_kind(10_000), auto_kind(100_000)
        ('flat', 'ivf')
    """
    return "flat" if n < FLAT_MAX_VECTORS else "ivf"


def _check_k(k: int) -> None:
    if not isinstance(k, int) or isinstance(k, bool) or k < 1:
        raise InputError("k", f"must be a positive int, got {k!r}", "pass e.g. k=10")


class FaissIndex:
    """Documents in a FAISS index, searchable by text with any :class:`~ctxcomp.retrieval.Embedder`.

    Args:
        embedder: An :class:`~ctxcomp.retrieval.Embedder`, an embedder id, or ``None`` for the default
            (all-MiniLM-L6-v2, offline).
        kind: ``"auto"`` (flat below :data:`FLAT_MAX_VECTORS`, else IVF), ``"flat"``, ``"ivf"`` or
            ``"hnsw"``. Decided when the first documents are added.
        recall_target: recall@10 that IVF/HNSW search parameters are calibrated to reach.
        use_gpu: Search flat/IVF indexes on a GPU; ``None`` = when faiss has GPU support and sees a GPU.
        seed: Seed of the training and calibration samples (builds are deterministic).

    Raises:
        ConfigError: Unknown ``kind`` or ``recall_target`` outside (0, 1].

    Example:
        >>> from ctxcomp.retrieval import HashingEmbedder
        >>> index = FaissIndex(HashingEmbedder(), kind="flat")
        >>> len(index), index.search("anything")
        (0, [])
    """

    def __init__(
        self,
        embedder: Embedder | str | None = None,
        *,
        kind: IndexKind = "auto",
        recall_target: float = RECALL_TARGET,
        use_gpu: bool | None = None,
        seed: int = 0,
    ) -> None:
        if kind not in ("auto", "flat", "ivf", "hnsw"):
            raise ConfigError(
                "kind", f"must be 'auto', 'flat', 'ivf' or 'hnsw', got {kind!r}", "pass kind='auto'"
            )
        if not isinstance(recall_target, (int, float)) or not 0.0 < recall_target <= 1.0:
            raise ConfigError("recall_target", f"must be in (0, 1], got {recall_target!r}", "pass e.g. 0.95")
        self.embedder: Embedder = resolve_embedder(embedder)
        self.requested_kind: IndexKind = kind
        self.kind: Literal["flat", "ivf", "hnsw"] | None = None
        self.recall_target = float(recall_target)
        self.seed = seed
        self.skipped: list[dict[str, Any]] = []
        self.calibration: dict[str, Any] = {}
        self._use_gpu = use_gpu
        self._vectors: VectorIndex | None = None
        self._docs = DocStore()
        self._calibrated_at = 0

    # ------------------------------------------------------------------ building

    @classmethod
    def build(
        cls,
        source: Iterable[Document] | str | os.PathLike[str],
        embedder: Embedder | str | None = None,
        *,
        kind: IndexKind = "auto",
        batch_size: int | None = None,
        progress: bool | None = None,
        skip_invalid: bool = False,
        errors_path: str | os.PathLike[str] | None = None,
        recall_target: float = RECALL_TARGET,
        use_gpu: bool | None = None,
        seed: int = 0,
    ) -> FaissIndex:
        """Build an index from Documents or a JSONL corpus file.

        The corpus is validated completely before anything is embedded. Vectors are computed and added
        in chunks of :data:`CHUNK` documents with a tqdm bar on stderr; IVF is trained on a random
        sample embedded first (and reused, never embedded twice).

        Args:
            source: Iterable of :class:`~ctxcomp.types.Document`, or a path to a ``.jsonl(.gz)`` file with
                one ``{"id", "text", "metadata"?}`` object a line.
            embedder: See :class:`FaissIndex`.
            kind: See :class:`FaissIndex`.
            batch_size: Passages per embedder forward pass (``None``: the embedder's default).
            progress: Show the progress bar (``None``: only on a terminal).
            skip_invalid: Skip bad records instead of failing; they are listed in ``index.skipped``
                and, with ``errors_path``, written there as JSONL (``line``, ``id``, ``reason``).
            errors_path: Where to write skipped records (written even when there are none).
            recall_target: See :class:`FaissIndex`.
            use_gpu: See :class:`FaissIndex`.
            seed: See :class:`FaissIndex`.

        Returns:
            The built, in-memory index (call :meth:`save` to persist it).

        Raises:
            CorpusError: Invalid record (strict mode), with its line number.
            EmptyCorpusError: No valid document.

        Example:
            >>> from ctxcomp.retrieval import HashingEmbedder
            >>> idx = FaissIndex.build([Document("a", "alpha beta")], HashingEmbedder(), progress=False)
            >>> len(idx), idx.kind
            (1, 'flat')
        """
        index = cls(embedder, kind=kind, recall_target=recall_target, use_gpu=use_gpu, seed=seed)
        docs, index.skipped = read_source(
            source, skip_invalid=skip_invalid, errors_path=errors_path, stacklevel=2
        )
        index._ingest(docs, text_embedder(index.embedder, docs, batch_size), progress)
        return index

    def add(
        self,
        docs: Iterable[Document],
        *,
        batch_size: int | None = None,
        progress: bool | None = False,
        skip_invalid: bool = False,
    ) -> int:
        """Embed and add documents. Ids must be new; all are validated before any is added.

        The first call on an empty index decides its type (see ``kind``) and trains IVF. IVF/HNSW search
        parameters are recalibrated once the index has grown by :data:`RECALIBRATE_GROWTH`.

        Args:
            docs: Documents to add.
            batch_size: Passages per embedder forward pass.
            progress: Show a progress bar.
            skip_invalid: Skip non-Documents and repeated ids (appended to ``self.skipped``) instead of
                raising.

        Returns:
            Number of documents added.

        Raises:
            CorpusError: A non-Document or an id already present (strict mode).

        Example:
            >>> from ctxcomp.retrieval import HashingEmbedder
            >>> idx = FaissIndex(HashingEmbedder())
            >>> idx.add([Document("a", "alpha")]), len(idx)
            (1, 1)
        """
        valid, problems = check_documents(docs, skip_invalid=skip_invalid, existing_ids=self._docs)
        self.skipped.extend(problems)
        if not valid:
            return 0
        return self._ingest(valid, text_embedder(self.embedder, valid, batch_size), progress)

    def add_embeddings(
        self, docs: Sequence[Document], vectors: np.ndarray, *, progress: bool | None = False
    ) -> int:
        """Add documents with precomputed vectors (from this index's embedder, or one with the same space).

        Args:
            docs: Documents, one per row of ``vectors``.
            vectors: float ``[n, dim]``; rows are L2-normalised here.
            progress: Show a progress bar.

        Returns:
            Number of documents added.

        Raises:
            InputError: Shape mismatch or non-finite values.
            CorpusError: Bad or repeated ids.

        Example:
            >>> import numpy as np
            >>> from ctxcomp.retrieval import HashingEmbedder
            >>> idx = FaissIndex(HashingEmbedder(dim=4))
            >>> idx.add_embeddings([Document("a", "")], np.ones((1, 4)))
            1
        """
        valid, _ = check_documents(docs, existing_ids=self._docs)
        vecs = np.asarray(vectors)  # [n, d]
        if vecs.ndim != 2 or vecs.shape[0] != len(valid):
            raise InputError(
                "vectors", f"must have shape [{len(valid)}, dim], got {vecs.shape}", "pass one row per doc"
            )
        if not valid:
            return 0
        return self._ingest(valid, lambda rows: vecs[rows], progress)

    def _ingest(self, docs: Sequence[Document], embed_rows: RowEmbedder, progress: bool | None) -> int:
        """Embed (via ``embed_rows(positions)``) and add ``docs``; all-or-nothing."""
        if self._vectors is not None:
            self._vectors.ensure_in_memory()
        created = self._vectors is None
        start_id = self._docs.next_id
        known = None
        try:
            if created:
                known = self._create(len(docs), embed_rows, progress)
            vectors = self._require_vectors()

            def add_chunk(rows: np.ndarray, vecs: np.ndarray) -> None:
                # faiss first: if it fails, the DocStore has not moved and the rollback below is exact
                ids = np.arange(self._docs.next_id, self._docs.next_id + len(rows), dtype=np.int64)  # [b]
                vectors.add(vecs, ids)  # [b, d]
                self._docs.add([docs[int(r)] for r in rows])

            embed_in_chunks(
                embed_rows, len(docs), vectors.dim, sink=add_chunk, known=known, progress=progress
            )
        except BaseException:
            added = list(range(start_id, self._docs.next_id))
            if created:
                self._reset()
            elif added:
                self._remove_iids(added)
            raise
        if self.kind in ("ivf", "hnsw") and len(self) >= RECALIBRATE_GROWTH * max(1, self._calibrated_at):
            self.calibrate()
        return len(docs)

    def _require_vectors(self) -> VectorIndex:
        if self._vectors is None:
            raise RuntimeError("FaissIndex has no faiss index yet")
        return self._vectors

    def _reset(self) -> None:
        self._vectors, self.kind = None, None
        self._docs.clear()
        self._calibrated_at = 0
        self.calibration = {}

    def _create(
        self, n: int, embed_rows: RowEmbedder, progress: bool | None
    ) -> tuple[np.ndarray, np.ndarray] | None:
        """Create (and for IVF train) the faiss index; return IVF's (sorted rows, vectors) for reuse."""
        import_faiss()  # fail on a missing faiss before embedding an IVF training sample
        dim = int(self.embedder.dim)
        kind = auto_kind(n) if self.requested_kind == "auto" else self.requested_kind
        self.kind = kind
        if kind in ("flat", "hnsw"):
            make = VectorIndex.flat if kind == "flat" else VectorIndex.hnsw
            self._vectors = make(dim, use_gpu=self._use_gpu)
            return None
        nlist = ivf_nlist(n)
        rows, train = embed_sample(  # [t], [t, d]
            embed_rows, n, min(n, nlist * IVF_TRAIN_PER_LIST), dim, seed=self.seed, progress=progress
        )
        self._vectors = VectorIndex.ivf(train, nlist, seed=self.seed, use_gpu=self._use_gpu)
        return rows, train

    # ------------------------------------------------------------------ removing

    def remove(self, ids: str | Iterable[str]) -> int:
        """Remove documents by their string ids; unknown ids are ignored.

        On HNSW (which faiss cannot delete from) the graph is rebuilt from the remaining vectors.

        Args:
            ids: One id or an iterable of ids.

        Returns:
            Number of documents removed.

        Example:
            >>> from ctxcomp.retrieval import HashingEmbedder
            >>> docs = [Document("a", "x"), Document("b", "y")]
            >>> idx = FaissIndex.build(docs, HashingEmbedder(), progress=False)
            >>> idx.remove(["a", "zzz"]), len(idx)
            (1, 1)
        """
        wanted = [ids] if isinstance(ids, str) else list(ids)
        iids = sorted({iid for i in wanted if isinstance(i, str) and (iid := self._docs.iid(i)) is not None})
        if not iids:
            return 0
        self._require_vectors().ensure_in_memory()
        self._remove_iids(iids)
        return len(iids)

    def _remove_iids(self, iids: list[int]) -> None:
        self._require_vectors().remove(np.asarray(iids, dtype=np.int64))  # [r]
        self._docs.remove(iids)

    # ------------------------------------------------------------------ searching

    def __len__(self) -> int:
        return len(self._docs)

    def __contains__(self, doc_id: object) -> bool:
        return doc_id in self._docs

    def ids(self) -> list[str]:
        """String ids of the indexed documents, in insertion order.

        Example:
            >>> from ctxcomp.retrieval import HashingEmbedder
            >>> FaissIndex.build([Document("a", "x")], HashingEmbedder(), progress=False).ids()
            ['a']
        """
        return self._docs.ids()

    def get(self, doc_id: str) -> Document | None:
        """The stored document with this id (a copy), or ``None``.

        Example:
            >>> from ctxcomp.retrieval import HashingEmbedder
            >>> FaissIndex.build([Document("a", "x")], HashingEmbedder(), progress=False).get("a").text
            'x'
        """
        iid = self._docs.iid(doc_id)
        doc = None if iid is None else self._docs.by_iid(iid)
        if doc is None:
            return None
        return Document(doc.id, doc.text, copy.deepcopy(doc.metadata))

    def search(self, query: str, k: int = 10) -> list[Document]:
        """The ``k`` documents most similar to ``query``, best first.

        Args:
            query: The question.
            k: How many documents to return (fewer if the index is smaller).

        Returns:
            New Documents carrying the stored metadata plus ``ctxcomp_retrieval_score`` (cosine
            similarity); ``[]`` for an empty index. Stored documents are never mutated.

        Raises:
            InputError: ``query`` is not a non-empty string or ``k`` is not a positive int.

        Example:
            >>> from ctxcomp.retrieval import HashingEmbedder
            >>> docs = [Document("a", "red apple", {"src": 1})]
            >>> idx = FaissIndex.build(docs, HashingEmbedder(), progress=False)
            >>> hit = idx.search("apple", k=5)[0]
            >>> hit.metadata["src"], round(hit.metadata["ctxcomp_retrieval_score"], 2) > 0
            (1, True)
        """
        return self.search_batch([query], k=k)[0]

    def search_batch(self, queries: Sequence[str], k: int = 10) -> list[list[Document]]:
        """:meth:`search` for several queries at once (one embedding call, one faiss call).

        Args:
            queries: Questions.
            k: Documents per question.

        Returns:
            One result list per query.

        Example:
            >>> from ctxcomp.retrieval import HashingEmbedder
            >>> idx = FaissIndex.build([Document("a", "x y")], HashingEmbedder(), progress=False)
            >>> [len(r) for r in idx.search_batch(["x", "y"], k=3)]
            [1, 1]
        """
        if isinstance(queries, (str, bytes)):
            raise InputError("queries", "must be a list of strings, got a single string", "wrap it: [query]")
        qs = list(queries)
        for i, q in enumerate(qs):
            if not isinstance(q, str) or not q.strip():
                raise InputError(
                    f"queries[{i}]" if len(qs) > 1 else "query",
                    "must be a non-empty string",
                    "pass a question",
                )
        _check_k(k)
        if not qs:
            return []
        if len(self) == 0:
            return [[] for _ in qs]
        return self.search_vectors(embed_query_batch(self.embedder, qs), k=k)  # [m, d] queries

    def search_vectors(self, vectors: np.ndarray, k: int = 10) -> list[list[Document]]:
        """Search with precomputed query vectors.

        Args:
            vectors: float ``[m, dim]`` (or ``[dim]``), normalised here.
            k: Documents per query.

        Returns:
            One result list per row.

        Example:
            >>> import numpy as np
            >>> from ctxcomp.retrieval import HashingEmbedder
            >>> idx = FaissIndex(HashingEmbedder(dim=4))
            >>> _ = idx.add_embeddings([Document("a", "")], np.eye(4)[:1])
            >>> idx.search_vectors(np.eye(4)[:1], k=1)[0][0].id
            'a'
        """
        _check_k(k)
        q = np.asarray(vectors, dtype=np.float32)  # [m, d] or [d]
        if q.ndim == 1:
            q = q[None, :]  # [1, d]
        if len(self) == 0:
            return [[] for _ in range(q.shape[0])]
        index = self._require_vectors()
        if q.ndim != 2 or q.shape[1] != index.dim:
            raise InputError(
                "vectors", f"must have shape [m, {index.dim}], got {q.shape}", "use the index's embedder"
            )
        scores, iids = index.search(normalise_rows(q), min(k, len(self)))  # [m, k], [m, k]
        return self._docs.results(scores, iids, score_key=SCORE_KEY)

    @property
    def on_gpu(self) -> bool:
        """Whether searches currently run on a GPU.

        Example:
            >>> from ctxcomp.retrieval import HashingEmbedder
            >>> FaissIndex(HashingEmbedder(), use_gpu=False).on_gpu
            False
        """
        return self._vectors is not None and self._vectors.on_gpu

    # ------------------------------------------------------------------ calibration

    def calibrate(
        self, recall_target: float | None = None, *, n_queries: int = CALIBRATION_QUERIES
    ) -> dict[str, Any]:
        """Choose the smallest IVF ``nprobe`` / HNSW ``efSearch`` reaching the recall@10 target.

        Queries are ``n_queries`` stored vectors sampled with ``seed``; each one's own entry is left
        out of both the exact and the approximate top-10. The exact answer is the exhaustive search
        (all IVF lists; HNSW's flat storage). The target gets :data:`CALIBRATION_MARGIN` on top.

        Args:
            recall_target: Overrides the index's target.
            n_queries: Sample size.

        Returns:
            ``{"param", "value", "recall", "target", "queries", "n"}`` (``{}`` for flat indexes).

        Example:
            >>> from ctxcomp.retrieval import HashingEmbedder
            >>> FaissIndex.build([Document("a", "x")], HashingEmbedder(), progress=False).calibrate()
            {}
        """
        if self._vectors is None:
            return {}
        result = calibrate_search(
            self._vectors,
            self._docs.iids(),
            recall_target=recall_target or self.recall_target,
            seed=self.seed,
            n_queries=n_queries,
            stacklevel=2,
        )
        if result:
            self._calibrated_at = result["n"]
            self.calibration = result
        return dict(result)

    # ------------------------------------------------------------------ persistence

    def info(self) -> dict[str, Any]:
        """A summary: kind, count, dim, embedder, search parameters, calibration.

        Example:
            >>> from ctxcomp.retrieval import HashingEmbedder
            >>> FaissIndex(HashingEmbedder(dim=8)).info()["count"]
            0
        """
        out: dict[str, Any] = {
            "kind": self.kind,
            "count": len(self),
            "dim": self._vectors.dim if self._vectors is not None else self.embedder.dim,
            "metric": "inner_product (cosine on L2-normalised vectors)",
            "embedder": self.embedder.id,
        }
        if self._vectors is not None:
            out.update(self._vectors.search_params())
        out["calibration"] = dict(self.calibration)
        return out

    def save(self, directory: str | os.PathLike[str]) -> Path:
        """Write the index to ``directory`` atomically (a temp dir, then a rename).

        An existing ctxcomp index there is replaced; any other non-empty directory is refused.

        Args:
            directory: Target folder.

        Returns:
            The folder written.

        Raises:
            InputError: Nothing was ever added, or a document's metadata is not JSON-serialisable.
            IndexFormatError: ``directory`` is a file or a non-empty folder that is not an index.

        Example:
            >>> import tempfile
            >>> from ctxcomp.retrieval import HashingEmbedder
            >>> idx = FaissIndex.build([Document("a", "x")], HashingEmbedder(), progress=False)
            >>> (idx.save(tempfile.mkdtemp() + "/idx") / "manifest.json").is_file()
            True
        """
        if self._vectors is None:
            raise InputError("index", "is empty: nothing was ever added", "add documents before saving")
        return save_index(
            directory,
            vectors=self._vectors,
            docs=self._docs,
            embedder_id=self.embedder.id,
            recall_target=self.recall_target,
            seed=self.seed,
            calibration=self.calibration,
        )

    @staticmethod
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
            >>> from ctxcomp.retrieval import HashingEmbedder
            >>> idx = FaissIndex.build([Document("a", "x")], HashingEmbedder(), progress=False)
            >>> d = idx.save(tempfile.mkdtemp() + "/i")
            >>> FaissIndex.read_manifest(d)["count"]
            1
        """
        return read_index_manifest(directory)

    @classmethod
    def load(
        cls,
        directory: str | os.PathLike[str],
        *,
        embedder: Embedder | str | None = None,
        mmap: bool = True,
        verify: bool = True,
        use_gpu: bool | None = None,
    ) -> FaissIndex:
        """Load an index written by :meth:`save`, checking it before faiss reads it.

        Sizes of all files are always checked, sha256 checksums when ``verify``; the docstore must agree
        with the index. With ``mmap`` faiss memory-maps what it can (``IO_FLAG_MMAP``); the first
        :meth:`add` or :meth:`remove` then re-reads the index into memory.

        Args:
            directory: The index folder.
            embedder: Embedder for queries; must match the manifest's id and dim. ``None`` resolves the
                manifest's embedder id (see :func:`~ctxcomp.retrieval.resolve_embedder`).
            mmap: Memory-map the index file.
            verify: Check sha256 checksums (reads every byte once).
            use_gpu: See :class:`FaissIndex`.

        Returns:
            The loaded index.

        Raises:
            IndexFormatError: Missing, truncated or corrupted files, or files that disagree.
            EmbedderMismatchError: ``embedder`` differs from the one the index was built with.

        Example:
            >>> import tempfile
            >>> from ctxcomp.retrieval import HashingEmbedder
            >>> idx = FaissIndex.build([Document("a", "x")], HashingEmbedder(), progress=False)
            >>> d = idx.save(tempfile.mkdtemp() + "/i")
            >>> len(FaissIndex.load(d))
            1
        """
        loaded = load_index(directory, embedder=embedder, mmap=mmap, verify=verify, use_gpu=use_gpu)
        manifest = loaded.manifest
        self = cls(loaded.embedder, kind=manifest["kind"], use_gpu=use_gpu, seed=int(manifest.get("seed", 0)))
        self.recall_target = float(manifest.get("recall_target", RECALL_TARGET))
        self.kind = loaded.vectors.kind
        self._vectors = loaded.vectors
        self._docs = loaded.docs
        self.calibration = dict(manifest.get("calibration") or {})
        self._calibrated_at = int(self.calibration.get("n", 0))
        return self

    def __repr__(self) -> str:
        return f"FaissIndex(kind={self.kind!r}, count={len(self)}, embedder={self.embedder.id!r})"


__all__ = ["FLAT_MAX_VECTORS", "SCORE_KEY", "FaissIndex", "IndexKind", "auto_kind", "ivf_nlist"]
