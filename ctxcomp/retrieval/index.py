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
import hashlib
import json
import math
import os
import shutil
import sys
import uuid
import warnings
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime, timezone
from pathlib import Path
from types import ModuleType
from typing import Any, Literal

import numpy as np

from ctxcomp._deps import require
from ctxcomp.errors import ConfigError, InputError
from ctxcomp.retrieval.corpus import check_documents, read_corpus, write_problems
from ctxcomp.retrieval.embedders import Embedder, _normalise, resolve_embedder
from ctxcomp.retrieval.errors import EmbedderMismatchError, EmptyCorpusError, IndexFormatError
from ctxcomp.types import Document

IndexKind = Literal["auto", "flat", "ivf", "hnsw"]

#: ``kind="auto"`` builds an exact flat index below this many vectors, IVF at or above it.
FLAT_MAX_VECTORS = 50_000
#: IVF training sample: this many vectors per inverted list (faiss wants at least 39).
IVF_TRAIN_PER_LIST = 40
#: k-means iterations for the IVF coarse quantiser.
IVF_KMEANS_ITERS = 10
#: HNSW graph degree and construction beam.
HNSW_M = 32
HNSW_EF_CONSTRUCTION = 80
#: Queries (sampled stored vectors, leave-one-out) used to calibrate ``nprobe`` / ``efSearch``.
CALIBRATION_QUERIES = 256
#: Default recall@10 target of the calibration, and the margin added on top of it.
RECALL_TARGET = 0.95
CALIBRATION_MARGIN = 0.01
#: Recalibrate automatically once the index has grown by this factor since the last calibration.
RECALIBRATE_GROWTH = 1.25
#: Documents embedded and added per step.
CHUNK = 1024
#: Score key added to the metadata of search results.
SCORE_KEY = "ctxcomp_retrieval_score"

INDEX_FILE = "index.faiss"
DOCSTORE_FILE = "docstore.jsonl"
MANIFEST_FILE = "manifest.json"
FORMAT = "ctxcomp-faiss-index"
FORMAT_VERSION = 1
_GPU_MAX_K = 2048


def _faiss() -> ModuleType:
    return require("faiss", "faiss", "FAISS retrieval")


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


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _progress(total: int, desc: str, progress: bool | None) -> Any:
    from tqdm.auto import tqdm

    return tqdm(
        total=total,
        desc=desc,
        unit="doc",
        file=sys.stderr,
        disable=None if progress is None else not progress,
    )


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
        self._index: Any = None
        self._dim: int | None = None
        self._docs: dict[int, Document] = {}
        self._iid: dict[str, int] = {}
        self._next_id = 0
        self._calibrated_at = 0
        self._gpu: Any = None
        self._gpu_res: Any = None
        self._mmap_source: tuple[Path, dict[str, Any]] | None = None

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
        if isinstance(source, (str, os.PathLike)):
            docs, problems = read_corpus(source, skip_invalid=skip_invalid)
            where = str(source)
        else:
            docs, problems = check_documents(source, skip_invalid=skip_invalid)
            where = "docs"
        index.skipped = problems
        if errors_path is not None:
            write_problems(errors_path, problems)
        if problems:
            hint = f" (see {errors_path})" if errors_path is not None else " (see index.skipped)"
            warnings.warn(f"skipped {len(problems)} invalid record(s) of {where}{hint}", stacklevel=2)
        if not docs:
            raise EmptyCorpusError(
                where,
                "has no valid documents"
                + (f" ({len(problems)} invalid record(s) skipped)" if problems else ""),
                'pass at least one document ({"id": ..., "text": ...})',
            )
        index._ingest(docs, index._text_embedder(docs, batch_size), progress)
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
        valid, problems = check_documents(docs, skip_invalid=skip_invalid, existing_ids=self._iid)
        self.skipped.extend(problems)
        if not valid:
            return 0
        return self._ingest(valid, self._text_embedder(valid, batch_size), progress)

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
        valid, _ = check_documents(docs, existing_ids=self._iid)
        vecs = np.asarray(vectors)  # [n, d]
        if vecs.ndim != 2 or vecs.shape[0] != len(valid):
            raise InputError(
                "vectors", f"must have shape [{len(valid)}, dim], got {vecs.shape}", "pass one row per doc"
            )
        if not valid:
            return 0
        return self._ingest(valid, lambda rows: vecs[rows], progress)

    def _text_embedder(
        self, docs: Sequence[Document], batch_size: int | None
    ) -> Callable[[np.ndarray], np.ndarray]:
        def embed_rows(rows: np.ndarray) -> np.ndarray:
            return self.embedder.embed(
                [docs[int(i)].text for i in rows], batch_size=batch_size
            )  # [len(rows), d]

        return embed_rows

    def _check_vectors(self, vecs: np.ndarray, n: int) -> np.ndarray:
        vecs = np.asarray(vecs)  # [n, d]
        dim = self._dim if self._dim is not None else self.embedder.dim
        if vecs.shape != (n, dim):
            raise InputError(
                "vectors", f"expected shape ({n}, {dim}), got {vecs.shape}", "match the embedder's dim"
            )
        if not np.isfinite(vecs).all():
            raise InputError("vectors", "contain NaN or infinite values", "check the embedder's output")
        return _normalise(vecs)  # [n, d]

    def _ingest(
        self, docs: Sequence[Document], embed_rows: Callable[[np.ndarray], np.ndarray], progress: bool | None
    ) -> int:
        """Embed (via ``embed_rows(positions)``) and add ``docs``; all-or-nothing."""
        self._ensure_in_memory()
        n = len(docs)
        created = self._index is None
        start_id = self._next_id
        train_rows = np.zeros(0, dtype=np.int64)  # [t] sorted rows already embedded for IVF training
        train = np.zeros((0, 0), dtype=np.float32)  # [t, d]
        try:
            if created:
                train_rows, train = self._create(n, embed_rows, progress)
            bar = _progress(n, "indexing", progress)
            with bar:
                for lo in range(0, n, CHUNK):
                    rows = np.arange(lo, min(n, lo + CHUNK))  # [b]
                    vecs = np.empty((len(rows), self._dim or 0), dtype=np.float32)  # [b, d]
                    known = np.isin(rows, train_rows)  # [b]
                    if known.any():
                        vecs[known] = train[np.searchsorted(train_rows, rows[known])]  # [b_known, d]
                    if not known.all():
                        todo = rows[~known]  # [b_new]
                        vecs[~known] = self._check_vectors(embed_rows(todo), len(todo))  # [b_new, d]
                    ids = np.arange(self._next_id, self._next_id + len(rows), dtype=np.int64)  # [b]
                    self._index.add_with_ids(vecs, ids)
                    for r, iid in zip(rows, ids, strict=True):
                        doc = docs[int(r)]
                        self._docs[int(iid)] = doc
                        self._iid[doc.id] = int(iid)
                    self._next_id += len(rows)
                    bar.update(len(rows))
        except BaseException:
            added = list(range(start_id, self._next_id))
            if created:
                self._reset()
            elif added:
                self._remove_iids(added)
            raise
        self._gpu = None
        if self.kind in ("ivf", "hnsw") and len(self) >= RECALIBRATE_GROWTH * max(1, self._calibrated_at):
            self.calibrate()
        return n

    def _reset(self) -> None:
        self._index, self.kind, self._dim, self._gpu = None, None, None, None
        self._docs.clear()
        self._iid.clear()
        self._next_id = 0
        self._calibrated_at = 0
        self.calibration = {}

    def _create(
        self, n: int, embed_rows: Callable[[np.ndarray], np.ndarray], progress: bool | None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Create (and for IVF train) the faiss index; return (sorted rows, their vectors) for reuse."""
        faiss = _faiss()
        dim = int(self.embedder.dim)
        self._dim = dim
        kind = auto_kind(n) if self.requested_kind == "auto" else self.requested_kind
        self.kind = kind
        if kind == "flat":
            self._index = faiss.IndexIDMap2(faiss.IndexFlatIP(dim))
            return np.zeros(0, dtype=np.int64), np.zeros((0, dim), dtype=np.float32)
        if kind == "hnsw":
            self._index = self._new_hnsw(dim)
            return np.zeros(0, dtype=np.int64), np.zeros((0, dim), dtype=np.float32)
        nlist = ivf_nlist(n)
        n_train = min(n, nlist * IVF_TRAIN_PER_LIST)
        rng = np.random.default_rng(self.seed)
        rows = np.sort(rng.choice(n, size=n_train, replace=False))  # [t]
        train = np.empty((n_train, dim), dtype=np.float32)  # [t, d]
        with _progress(n_train, "embedding IVF training sample", progress) as bar:
            for lo in range(0, n_train, CHUNK):
                part = rows[lo : lo + CHUNK]  # [b]
                train[lo : lo + len(part)] = self._check_vectors(embed_rows(part), len(part))  # [b, d]
                bar.update(len(part))
        quantizer = faiss.IndexFlatIP(dim)
        ivf = faiss.IndexIVFFlat(quantizer, dim, nlist, faiss.METRIC_INNER_PRODUCT)
        ivf.cp.niter = IVF_KMEANS_ITERS
        ivf.cp.seed = self.seed
        ivf.train(train)
        ivf.set_direct_map_type(faiss.DirectMap.Hashtable)
        ivf.nprobe = min(nlist, 8)
        self._index = ivf
        return rows.astype(np.int64), train

    @staticmethod
    def _new_hnsw(dim: int) -> Any:
        faiss = _faiss()
        hnsw = faiss.IndexHNSWFlat(dim, HNSW_M, faiss.METRIC_INNER_PRODUCT)
        hnsw.hnsw.efConstruction = HNSW_EF_CONSTRUCTION
        return faiss.IndexIDMap2(hnsw)

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
        iids = sorted({self._iid[i] for i in wanted if isinstance(i, str) and i in self._iid})
        if not iids:
            return 0
        self._ensure_in_memory()
        self._remove_iids(iids)
        return len(iids)

    def _remove_iids(self, iids: list[int]) -> None:
        faiss = _faiss()
        arr = np.asarray(iids, dtype=np.int64)  # [r]
        if self.kind == "hnsw":
            inner = faiss.downcast_index(self._index.index)
            ef = inner.hnsw.efSearch
            storage = faiss.downcast_index(inner.storage)
            vecs = storage.reconstruct_n(0, storage.ntotal)  # [n, d]
            ext = faiss.vector_to_array(self._index.id_map).astype(np.int64)  # [n]
            keep = ~np.isin(ext, arr)  # [n]
            fresh = self._new_hnsw(int(self._dim or vecs.shape[1]))
            faiss.downcast_index(fresh.index).hnsw.efSearch = ef
            if keep.any():
                fresh.add_with_ids(np.ascontiguousarray(vecs[keep]), ext[keep])
            self._index = fresh
        else:
            self._index.remove_ids(arr)
        for iid in iids:
            doc = self._docs.pop(iid, None)
            if doc is not None:
                self._iid.pop(doc.id, None)
        self._gpu = None

    # ------------------------------------------------------------------ searching

    def __len__(self) -> int:
        return len(self._docs)

    def __contains__(self, doc_id: object) -> bool:
        return doc_id in self._iid

    def ids(self) -> list[str]:
        """String ids of the indexed documents, in insertion order.

        Example:
            >>> from ctxcomp.retrieval import HashingEmbedder
            >>> FaissIndex.build([Document("a", "x")], HashingEmbedder(), progress=False).ids()
            ['a']
        """
        return [d.id for _, d in sorted(self._docs.items())]

    def get(self, doc_id: str) -> Document | None:
        """The stored document with this id (a copy), or ``None``.

        Example:
            >>> from ctxcomp.retrieval import HashingEmbedder
            >>> FaissIndex.build([Document("a", "x")], HashingEmbedder(), progress=False).get("a").text
            'x'
        """
        iid = self._iid.get(doc_id)
        if iid is None:
            return None
        doc = self._docs[iid]
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
        many = getattr(self.embedder, "embed_queries", None)
        if callable(many):
            vecs = np.asarray(many(qs))  # [m, d]
        else:
            vecs = np.stack([np.asarray(self.embedder.embed_query(q)) for q in qs])  # [m, d]
        return self.search_vectors(vecs, k=k)

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
        if q.ndim != 2 or q.shape[1] != self._dim:
            raise InputError(
                "vectors", f"must have shape [m, {self._dim}], got {q.shape}", "use the index's embedder"
            )
        scores, iids = self._search_raw(_normalise(q), min(k, len(self)))  # [m, k], [m, k]
        out: list[list[Document]] = []
        for row_s, row_i in zip(scores, iids, strict=True):
            hits = []
            for s, iid in zip(row_s, row_i, strict=True):
                doc = self._docs.get(int(iid))
                if iid < 0 or doc is None:
                    continue
                meta = copy.deepcopy(doc.metadata)
                meta[SCORE_KEY] = float(s)
                hits.append(Document(doc.id, doc.text, meta))
            out.append(hits)
        return out

    def _params(self, k: int) -> Any:
        faiss = _faiss()
        if self.kind == "ivf":
            return faiss.SearchParametersIVF(nprobe=int(self._index.nprobe))
        if self.kind == "hnsw":
            ef = int(faiss.downcast_index(self._index.index).hnsw.efSearch)
            return faiss.SearchParametersHNSW(efSearch=max(ef, k))
        return None

    def _search_raw(self, q: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        gpu = self._gpu_index() if k <= _GPU_MAX_K else None
        if gpu is not None:
            scores, iids = gpu.search(q, k)  # [m, k], [m, k]
        else:
            params = self._params(k)
            if params is None:
                scores, iids = self._index.search(q, k)  # [m, k], [m, k]
            else:
                scores, iids = self._index.search(q, k, params=params)  # [m, k], [m, k]
        return scores, iids

    def _gpu_index(self) -> Any:
        if self.kind not in ("flat", "ivf") or self._use_gpu is False:
            return None
        if self._gpu is not None:
            return self._gpu
        faiss = _faiss()
        has_gpu = hasattr(faiss, "StandardGpuResources") and faiss.get_num_gpus() > 0
        if not has_gpu:
            if self._use_gpu:
                warnings.warn("use_gpu=True but faiss sees no GPU; searching on CPU", stacklevel=3)
            self._use_gpu = False
            return None
        try:
            if self._gpu_res is None:
                self._gpu_res = faiss.StandardGpuResources()
            gpu = faiss.index_cpu_to_gpu(self._gpu_res, 0, self._index)
            if self.kind == "ivf":
                faiss.GpuParameterSpace().set_index_parameter(gpu, "nprobe", int(self._index.nprobe))
        except Exception as err:  # a faiss GPU build that cannot clone this index: stay on CPU
            warnings.warn(f"faiss GPU search unavailable ({err}); searching on CPU", stacklevel=3)
            self._use_gpu = False
            return None
        self._gpu = gpu
        return gpu

    @property
    def on_gpu(self) -> bool:
        """Whether searches currently run on a GPU.

        Example:
            >>> from ctxcomp.retrieval import HashingEmbedder
            >>> FaissIndex(HashingEmbedder(), use_gpu=False).on_gpu
            False
        """
        return self._gpu is not None or (len(self) > 0 and self._gpu_index() is not None)

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
        if self.kind not in ("ivf", "hnsw") or len(self) < 2:
            return {}
        faiss = _faiss()
        target = min(1.0, (recall_target or self.recall_target) + CALIBRATION_MARGIN)
        n = len(self)
        k = min(10, n - 1)
        live = np.fromiter(self._docs.keys(), dtype=np.int64, count=n)  # [n]
        rng = np.random.default_rng(self.seed + 1)
        sample = np.sort(rng.choice(live, size=min(n_queries, n), replace=False))  # [m]
        if self.kind == "ivf":
            ivf = self._index
            q = ivf.reconstruct_batch(sample)  # [m, d]
            _, exact = ivf.search(
                q, k + 1, params=faiss.SearchParametersIVF(nprobe=int(ivf.nlist))
            )  # [m, k+1]
            ladder_max = int(ivf.nlist)
        else:
            inner = faiss.downcast_index(self._index.index)
            storage = faiss.downcast_index(inner.storage)
            id_map = faiss.vector_to_array(self._index.id_map).astype(np.int64)  # [n]
            pos = {int(e): i for i, e in enumerate(id_map)}
            q = np.stack([storage.reconstruct(pos[int(s)]) for s in sample])  # [m, d]
            _, exact_pos = storage.search(q, k + 1)  # [m, k+1]
            exact = np.where(exact_pos >= 0, id_map[np.maximum(exact_pos, 0)], -1)  # [m, k+1]
            ladder_max = 4096

        def top_k_without_self(ids: np.ndarray) -> list[set[int]]:
            return [set(_drop(row, int(s))[:k]) for row, s in zip(ids, sample, strict=True)]

        truth = top_k_without_self(exact)

        def recall(value: int) -> float:
            if self.kind == "ivf":
                params = faiss.SearchParametersIVF(nprobe=value)
            else:
                params = faiss.SearchParametersHNSW(efSearch=value)
            _, got = self._index.search(q, k + 1, params=params)  # [m, k+1]
            approx = top_k_without_self(got)
            return float(np.mean([len(a & t) / max(1, len(t)) for a, t in zip(approx, truth, strict=True)]))

        # IVF: nprobe 1, 2, 4, ... up to nlist; HNSW: efSearch 16, 32, ... (always > k), then bisect
        lo, hi = (0, 0) if self.kind == "ivf" else (k + 1, 0)
        value = 1 if self.kind == "ivf" else max(16, k + 2)
        results: dict[int, float] = {}
        while True:
            value = min(value, ladder_max)
            results[value] = recall(value)
            if results[value] >= target or value == ladder_max:
                hi = value
                break
            lo, value = value, value * 2
        while hi - lo > max(1, lo // 8) and results[hi] >= target:
            mid = (lo + hi) // 2
            results[mid] = recall(mid)
            if results[mid] >= target:
                hi = mid
            else:
                lo = mid
        if results[hi] < target:
            warnings.warn(
                f"calibration reached recall@{k} {results[hi]:.3f} < target {target:.3f} "
                "at the largest setting",
                stacklevel=2,
            )
        if self.kind == "ivf":
            self._index.nprobe = hi
            param = "nprobe"
        else:
            faiss.downcast_index(self._index.index).hnsw.efSearch = hi
            param = "efSearch"
        self._gpu = None
        self._calibrated_at = n
        self.calibration = {
            "param": param,
            "value": int(hi),
            "recall": round(results[hi], 4),
            "target": round(target, 4),
            "k": k,
            "queries": len(sample),
            "n": n,
        }
        return dict(self.calibration)

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
            "dim": self._dim if self._dim is not None else self.embedder.dim,
            "metric": "inner_product (cosine on L2-normalised vectors)",
            "embedder": self.embedder.id,
        }
        if self.kind == "ivf":
            out["nlist"] = int(self._index.nlist)
            out["nprobe"] = int(self._index.nprobe)
        elif self.kind == "hnsw":
            out["hnsw_m"] = HNSW_M
            out["ef_search"] = int(_faiss().downcast_index(self._index.index).hnsw.efSearch)
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
        if self._index is None:
            raise InputError("index", "is empty: nothing was ever added", "add documents before saving")
        faiss = _faiss()
        self._ensure_in_memory()
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
            with (tmp / DOCSTORE_FILE).open("w", encoding="utf-8") as fh:
                for iid, doc in sorted(self._docs.items()):
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
            faiss.write_index(self._index, str(tmp / INDEX_FILE))
            manifest = self._manifest(tmp)
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

    def _manifest(self, folder: Path) -> dict[str, Any]:
        from ctxcomp import __version__

        files = {
            name: {"size": (folder / name).stat().st_size, "sha256": _sha256(folder / name)}
            for name in (INDEX_FILE, DOCSTORE_FILE)
        }
        return {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "ctxcomp_version": __version__,
            "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "embedder": self.embedder.id,
            "dim": self._dim,
            "metric": "inner_product",
            "normalized": True,
            "kind": self.kind,
            "count": len(self),
            "next_id": self._next_id,
            "recall_target": self.recall_target,
            "seed": self.seed,
            "calibration": self.calibration,
            "search": {
                k: v for k, v in self.info().items() if k in ("nlist", "nprobe", "hnsw_m", "ef_search")
            },
            "files": files,
        }

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
        faiss = _faiss()
        folder = Path(directory)
        manifest = cls.read_manifest(folder)
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
            raise IndexFormatError(
                str(index_path), f"cannot be read by faiss ({str(err)[:200]})", fix
            ) from err
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
        self = cls(emb, kind=manifest["kind"], use_gpu=use_gpu, seed=int(manifest.get("seed", 0)))
        self.recall_target = float(manifest.get("recall_target", RECALL_TARGET))
        self.kind = manifest["kind"]
        self._dim = manifest["dim"]
        self._index = raw
        self._next_id = manifest["next_id"]
        self.calibration = dict(manifest.get("calibration") or {})
        self._calibrated_at = int(self.calibration.get("n", 0))
        self._read_docstore(folder / DOCSTORE_FILE, manifest["count"], fix)
        if self.kind in ("flat", "hnsw"):
            stored = np.sort(faiss.vector_to_array(raw.id_map).astype(np.int64))  # [n]
            if not np.array_equal(
                stored, np.fromiter(sorted(self._docs), dtype=np.int64, count=len(self._docs))
            ):
                raise IndexFormatError(
                    str(folder / DOCSTORE_FILE), "ids do not match the ids in index.faiss", fix
                )
        if mmap:
            self._mmap_source = (index_path, dict(manifest["files"][INDEX_FILE]))
        return self

    def _read_docstore(self, path: Path, count: int, fix: str) -> None:
        with path.open("r", encoding="utf-8") as fh:
            for lineno, raw in enumerate(fh, start=1):
                try:
                    rec = json.loads(raw)
                    iid, doc = int(rec["iid"]), Document(rec["id"], rec["text"], rec.get("metadata") or {})
                except (json.JSONDecodeError, KeyError, TypeError, ValueError) as err:
                    raise IndexFormatError(
                        f"{path}:{lineno}", f"is not a valid docstore record ({err})", fix
                    ) from err
                if iid in self._docs or doc.id in self._iid or not 0 <= iid < self._next_id:
                    raise IndexFormatError(
                        f"{path}:{lineno}", f"repeats or misnumbers document {doc.id!r}", fix
                    )
                self._docs[iid] = doc
                self._iid[doc.id] = iid
        if len(self._docs) != count:
            raise IndexFormatError(
                str(path), f"holds {len(self._docs)} documents; the manifest says {count}", fix
            )

    def _ensure_in_memory(self) -> None:
        """Re-read a memory-mapped index into RAM before changing or saving it (mmapped IVF is read-only)."""
        if self._mmap_source is None:
            return
        faiss = _faiss()
        path, entry = self._mmap_source
        _check_file(path, entry, True, "load the index again: its files changed on disk after loading")
        try:
            fresh = faiss.read_index(str(path), 0)
        except RuntimeError as err:
            raise IndexFormatError(
                str(path), f"cannot be read by faiss ({str(err)[:200]})", "rebuild it"
            ) from err
        if self.kind == "ivf":
            fresh.nprobe = self._index.nprobe
        elif self.kind == "hnsw":
            faiss.downcast_index(fresh.index).hnsw.efSearch = faiss.downcast_index(
                self._index.index
            ).hnsw.efSearch
        self._index = fresh
        self._gpu = None
        self._mmap_source = None

    def __repr__(self) -> str:
        return f"FaissIndex(kind={self.kind!r}, count={len(self)}, embedder={self.embedder.id!r})"


def _drop(row: np.ndarray, self_id: int) -> list[int]:
    return [int(i) for i in row if i >= 0 and i != self_id]


def _check_k(k: int) -> None:
    if not isinstance(k, int) or isinstance(k, bool) or k < 1:
        raise InputError("k", f"must be a positive int, got {k!r}", "pass e.g. k=10")


def _check_file(path: Path, entry: dict[str, Any], verify: bool, fix: str) -> None:
    if not path.is_file():
        raise IndexFormatError(str(path), "is missing", fix)
    size = path.stat().st_size
    if size != entry["size"]:
        raise IndexFormatError(
            str(path), f"has {size} bytes; the manifest says {entry['size']} (truncated?)", fix
        )
    if verify and _sha256(path) != entry["sha256"]:
        raise IndexFormatError(
            str(path), "does not match its sha256 checksum in manifest.json (corrupted)", fix
        )


__all__ = ["FLAT_MAX_VECTORS", "SCORE_KEY", "FaissIndex", "IndexKind", "auto_kind", "ivf_nlist"]
