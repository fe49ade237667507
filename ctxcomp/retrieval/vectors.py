"""One FAISS index of unit vectors under int64 ids: create, add, remove, search (on a GPU when it can).

:class:`VectorIndex` hides the faiss object and the differences between the three index types
(exact ``IndexFlatIP`` and ``IndexHNSWFlat`` behind an ``IndexIDMap2``; ``IndexIVFFlat`` with a hash
table direct map). Similarity is the inner product, i.e. cosine on L2-normalised rows. It knows nothing
about documents, embedders or files; :class:`~ctxcomp.retrieval.FaissIndex` puts those around it.
faiss is imported on first use.

Example:
    >>> import numpy as np
    >>> vi = VectorIndex.flat(4)
    >>> vi.add(np.eye(4, dtype=np.float32)[:2], np.array([10, 11]))
    >>> vi.search(np.eye(4, dtype=np.float32)[1:2], 1)[1].tolist()
    [[11]]
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any, Literal

import numpy as np

from ctxcomp._deps import require

#: A concrete index type (``"auto"`` is resolved before a :class:`VectorIndex` is made).
VectorKind = Literal["flat", "ivf", "hnsw"]

#: k-means iterations for the IVF coarse quantiser.
IVF_KMEANS_ITERS = 10
#: HNSW graph degree and construction beam.
HNSW_M = 32
HNSW_EF_CONSTRUCTION = 80
_GPU_MAX_K = 2048


def import_faiss() -> ModuleType:
    """Import faiss, or raise :class:`~ctxcomp.errors.MissingDependencyError` naming the ``faiss`` extra.

    Returns:
        The faiss module.

    Example:
        >>> import_faiss().__name__
        'faiss'
    """
    return require("faiss", "faiss", "FAISS retrieval")


def _new_hnsw(dim: int) -> Any:
    faiss = import_faiss()
    hnsw = faiss.IndexHNSWFlat(dim, HNSW_M, faiss.METRIC_INNER_PRODUCT)
    hnsw.hnsw.efConstruction = HNSW_EF_CONSTRUCTION
    return faiss.IndexIDMap2(hnsw)


class VectorIndex:
    """A faiss index of float32 unit vectors with int64 ids, of one :data:`VectorKind`.

    Use :meth:`flat`, :meth:`hnsw` or :meth:`ivf` to create one; the constructor wraps a faiss index
    that already exists (e.g. one read from disk).

    Args:
        raw: The faiss index: ``IndexIDMap2`` over ``IndexFlatIP`` / ``IndexHNSWFlat``, or ``IndexIVFFlat``.
        kind: Its type.
        use_gpu: Search flat/IVF indexes on a GPU; ``None`` = when faiss has GPU support and sees a GPU.
        reload: For a memory-mapped ``raw``: returns a fresh in-memory copy of it, which
            :meth:`ensure_in_memory` swaps in before the index is changed.

    Example:
        >>> import numpy as np
        >>> vi = VectorIndex.hnsw(8)
        >>> vi.add(np.eye(8, dtype=np.float32), np.arange(8))
        >>> vi.kind, vi.ntotal, vi.search_param
        ('hnsw', 8, 'efSearch')
    """

    def __init__(
        self,
        raw: Any,
        kind: VectorKind,
        *,
        use_gpu: bool | None = None,
        reload: Callable[[], Any] | None = None,
    ) -> None:
        self.kind: VectorKind = kind
        self._raw = raw
        self._use_gpu = use_gpu
        self._reload = reload
        self._gpu: Any = None
        self._gpu_res: Any = None

    # ------------------------------------------------------------------ creating

    @classmethod
    def flat(cls, dim: int, *, use_gpu: bool | None = None) -> VectorIndex:
        """An empty exact index (``IndexIDMap2(IndexFlatIP)``).

        Example:
            >>> VectorIndex.flat(16).dim
            16
        """
        faiss = import_faiss()
        return cls(faiss.IndexIDMap2(faiss.IndexFlatIP(dim)), "flat", use_gpu=use_gpu)

    @classmethod
    def hnsw(cls, dim: int, *, use_gpu: bool | None = None) -> VectorIndex:
        """An empty HNSW graph (``M`` = :data:`HNSW_M`, ``efConstruction`` = :data:`HNSW_EF_CONSTRUCTION`).

        Example:
            >>> VectorIndex.hnsw(16).search_params()["hnsw_m"]
            32
        """
        return cls(_new_hnsw(dim), "hnsw", use_gpu=use_gpu)

    @classmethod
    def ivf(cls, train: np.ndarray, nlist: int, *, seed: int = 0, use_gpu: bool | None = None) -> VectorIndex:
        """An empty ``IndexIVFFlat`` whose coarse quantiser is trained on ``train``; ``nprobe`` starts at 8.

        Args:
            train: float32 ``[t, dim]`` unit vectors, ``t >= nlist`` (faiss wants 39 per list).
            nlist: Number of inverted lists.
            seed: k-means seed.
            use_gpu: See :class:`VectorIndex`.

        Example:
            >>> import numpy as np
            >>> rng = np.random.default_rng(0)
            >>> vi = VectorIndex.ivf(rng.standard_normal((80, 4)).astype(np.float32), 2)
            >>> vi.search_params()
            {'nlist': 2, 'nprobe': 2}
        """
        faiss = import_faiss()
        dim = int(train.shape[1])
        quantizer = faiss.IndexFlatIP(dim)
        ivf = faiss.IndexIVFFlat(quantizer, dim, nlist, faiss.METRIC_INNER_PRODUCT)
        ivf.cp.niter = IVF_KMEANS_ITERS
        ivf.cp.seed = seed
        ivf.train(train)
        ivf.set_direct_map_type(faiss.DirectMap.Hashtable)
        ivf.nprobe = min(nlist, 8)
        return cls(ivf, "ivf", use_gpu=use_gpu)

    # ------------------------------------------------------------------ describing

    @property
    def dim(self) -> int:
        """Vector dimension."""
        return int(self._raw.d)

    @property
    def ntotal(self) -> int:
        """Number of stored vectors."""
        return int(self._raw.ntotal)

    @property
    def type_name(self) -> str:
        """Class name of the faiss index (``"IndexIDMap2"`` or ``"IndexIVFFlat"``)."""
        return type(self._raw).__name__

    @property
    def nlist(self) -> int:
        """Number of IVF lists (IVF only)."""
        return int(self._raw.nlist)

    @property
    def search_param(self) -> str | None:
        """Name of the speed/recall knob: ``"nprobe"`` (IVF), ``"efSearch"`` (HNSW), ``None`` (flat)."""
        return {"ivf": "nprobe", "hnsw": "efSearch"}.get(self.kind)

    @property
    def search_value(self) -> int | None:
        """Current ``nprobe`` / ``efSearch`` (``None`` for flat). Setting it drops the GPU copy."""
        if self.kind == "ivf":
            return int(self._raw.nprobe)
        if self.kind == "hnsw":
            return int(self._hnsw().efSearch)
        return None

    @search_value.setter
    def search_value(self, value: int) -> None:
        if self.kind == "ivf":
            self._raw.nprobe = int(value)
        elif self.kind == "hnsw":
            self._hnsw().efSearch = int(value)
        self._gpu = None

    def search_params(self) -> dict[str, int]:
        """The search parameters as reported by ``info()`` and the manifest.

        Returns:
            ``{"nlist", "nprobe"}`` for IVF, ``{"hnsw_m", "ef_search"}`` for HNSW, ``{}`` for flat.

        Example:
            >>> VectorIndex.flat(4).search_params()
            {}
        """
        if self.kind == "ivf":
            return {"nlist": self.nlist, "nprobe": int(self._raw.nprobe)}
        if self.kind == "hnsw":
            return {"hnsw_m": HNSW_M, "ef_search": int(self._hnsw().efSearch)}
        return {}

    def _hnsw(self) -> Any:
        """The ``faiss.HNSW`` graph of an HNSW index."""
        return import_faiss().downcast_index(self._raw.index).hnsw

    # ------------------------------------------------------------------ changing

    @property
    def mmapped(self) -> bool:
        """Whether the faiss index is still the memory-mapped one it was loaded as."""
        return self._reload is not None

    def ensure_in_memory(self) -> None:
        """Swap a memory-mapped index for an in-memory copy (mmapped IVF is read-only); keeps the knob.

        Example:
            >>> vi = VectorIndex.flat(4)
            >>> vi.ensure_in_memory()  # not memory-mapped: nothing to do
            >>> vi.mmapped
            False
        """
        if self._reload is None:
            return
        value = self.search_value
        self._raw = self._reload()
        self._reload = None
        if value is not None:
            self.search_value = value
        self._gpu = None

    def add(self, vectors: np.ndarray, ids: np.ndarray) -> None:
        """Add float32 unit ``vectors`` ``[n, dim]`` under int64 ``ids`` ``[n]``.

        Example:
            >>> import numpy as np
            >>> vi = VectorIndex.flat(2)
            >>> vi.add(np.eye(2, dtype=np.float32), np.array([3, 4]))
            >>> vi.ntotal
            2
        """
        self._raw.add_with_ids(vectors, np.asarray(ids, dtype=np.int64))
        self._gpu = None

    def remove(self, ids: np.ndarray) -> None:
        """Remove vectors by id; unknown ids are ignored. HNSW (no deletion in faiss) is rebuilt.

        Example:
            >>> import numpy as np
            >>> vi = VectorIndex.hnsw(2)
            >>> vi.add(np.eye(2, dtype=np.float32), np.array([3, 4]))
            >>> vi.remove(np.array([3]))
            >>> vi.stored_ids().tolist()
            [4]
        """
        arr = np.asarray(ids, dtype=np.int64)  # [r]
        if self.kind == "hnsw":
            faiss = import_faiss()
            inner = faiss.downcast_index(self._raw.index)
            ef = inner.hnsw.efSearch
            storage = faiss.downcast_index(inner.storage)
            vecs = storage.reconstruct_n(0, storage.ntotal)  # [n, d]
            ext = faiss.vector_to_array(self._raw.id_map).astype(np.int64)  # [n]
            keep = ~np.isin(ext, arr)  # [n]
            fresh = _new_hnsw(self.dim)
            faiss.downcast_index(fresh.index).hnsw.efSearch = ef
            if keep.any():
                fresh.add_with_ids(np.ascontiguousarray(vecs[keep]), ext[keep])  # [n_keep, d]
            self._raw = fresh
        else:
            self._raw.remove_ids(arr)
        self._gpu = None

    def write(self, path: Path) -> None:
        """Write the faiss index to ``path`` (``faiss.write_index``).

        Example:
            >>> import tempfile
            >>> VectorIndex.flat(4).write(Path(tempfile.mkdtemp()) / "index.faiss")
        """
        import_faiss().write_index(self._raw, str(path))

    # ------------------------------------------------------------------ reading

    def stored_ids(self) -> np.ndarray:
        """Ids of all stored vectors, int64 ``[n]``, in storage order (flat and HNSW only).

        Raises:
            ValueError: On IVF, whose ids sit in its inverted lists.

        Example:
            >>> VectorIndex.flat(4).stored_ids().tolist()
            []
        """
        if self.kind == "ivf":
            raise ValueError("an IVF index does not list its ids")
        return import_faiss().vector_to_array(self._raw.id_map).astype(np.int64)  # [n]

    def reconstruct(self, ids: np.ndarray) -> np.ndarray:
        """The stored vectors of ``ids`` (flat/HNSW: via their storage position).

        Args:
            ids: int64 ``[m]`` ids present in the index.

        Returns:
            float32 ``[m, dim]``.

        Example:
            >>> import numpy as np
            >>> vi = VectorIndex.flat(2)
            >>> vi.add(np.eye(2, dtype=np.float32), np.array([3, 4]))
            >>> vi.reconstruct(np.array([4])).tolist()
            [[0.0, 1.0]]
        """
        if self.kind == "ivf":
            return self._raw.reconstruct_batch(np.asarray(ids, dtype=np.int64))  # [m, d]
        storage = self._storage()
        pos = {int(e): i for i, e in enumerate(self.stored_ids())}
        return np.stack([storage.reconstruct(pos[int(s)]) for s in ids])  # [m, d]

    def _storage(self) -> Any:
        """The flat vector storage under the id map (flat and HNSW)."""
        faiss = import_faiss()
        inner = faiss.downcast_index(self._raw.index)
        return faiss.downcast_index(inner.storage) if self.kind == "hnsw" else inner

    def exact_search(self, queries: np.ndarray, k: int) -> np.ndarray:
        """Exhaustive top-``k`` ids (IVF: all lists; HNSW: its flat storage); ``-1`` pads missing hits.

        Args:
            queries: float32 ``[m, dim]`` unit vectors.
            k: Hits per query.

        Returns:
            int64 ``[m, k]``.

        Example:
            >>> import numpy as np
            >>> vi = VectorIndex.hnsw(2)
            >>> vi.add(np.eye(2, dtype=np.float32), np.array([3, 4]))
            >>> vi.exact_search(np.eye(2, dtype=np.float32)[:1], 2).tolist()
            [[3, 4]]
        """
        if self.kind == "ivf":
            params = import_faiss().SearchParametersIVF(nprobe=self.nlist)
            return self._raw.search(queries, k, params=params)[1]  # [m, k]
        if self.kind == "flat":
            return self._raw.search(queries, k)[1]  # [m, k]
        id_map = self.stored_ids()  # [n]
        _, pos = self._storage().search(queries, k)  # [m, k]
        return np.where(pos >= 0, id_map[np.maximum(pos, 0)], -1)  # [m, k]

    def search_at(self, queries: np.ndarray, k: int, value: int) -> np.ndarray:
        """Top-``k`` ids on the CPU with ``nprobe`` / ``efSearch`` = ``value`` (ignored for flat).

        Args:
            queries: float32 ``[m, dim]``.
            k: Hits per query.
            value: The search knob to try.

        Returns:
            int64 ``[m, k]``.

        Example:
            >>> import numpy as np
            >>> vi = VectorIndex.hnsw(2)
            >>> vi.add(np.eye(2, dtype=np.float32), np.array([3, 4]))
            >>> vi.search_at(np.eye(2, dtype=np.float32)[1:], 1, 16).tolist()
            [[4]]
        """
        faiss = import_faiss()
        if self.kind == "ivf":
            params = faiss.SearchParametersIVF(nprobe=value)
        elif self.kind == "hnsw":
            params = faiss.SearchParametersHNSW(efSearch=value)
        else:
            return self._raw.search(queries, k)[1]  # [m, k]
        return self._raw.search(queries, k, params=params)[1]  # [m, k]

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Top-``k`` with the current knob (HNSW: ``efSearch`` at least ``k``), on the GPU when possible.

        Args:
            queries: float32 ``[m, dim]`` unit vectors.
            k: Hits per query.

        Returns:
            ``(scores, ids)``, float32 ``[m, k]`` and int64 ``[m, k]``; id ``-1`` pads missing hits.

        Example:
            >>> import numpy as np
            >>> vi = VectorIndex.flat(2, use_gpu=False)
            >>> vi.add(np.eye(2, dtype=np.float32), np.array([3, 4]))
            >>> vi.search(np.eye(2, dtype=np.float32)[:1], 2)[1].tolist()
            [[3, 4]]
        """
        gpu = self._gpu_index(stacklevel=3) if k <= _GPU_MAX_K else None
        if gpu is not None:
            return gpu.search(queries, k)  # [m, k], [m, k]
        faiss = import_faiss()
        if self.kind == "ivf":
            params = faiss.SearchParametersIVF(nprobe=int(self._raw.nprobe))
        elif self.kind == "hnsw":
            params = faiss.SearchParametersHNSW(efSearch=max(int(self._hnsw().efSearch), k))
        else:
            return self._raw.search(queries, k)  # [m, k], [m, k]
        return self._raw.search(queries, k, params=params)  # [m, k], [m, k]

    # ------------------------------------------------------------------ GPU

    def _gpu_index(self, stacklevel: int) -> Any:
        if self.kind not in ("flat", "ivf") or self._use_gpu is False:
            return None
        if self._gpu is not None:
            return self._gpu
        faiss = import_faiss()
        has_gpu = hasattr(faiss, "StandardGpuResources") and faiss.get_num_gpus() > 0
        if not has_gpu:
            if self._use_gpu:
                warnings.warn("use_gpu=True but faiss sees no GPU; searching on CPU", stacklevel=stacklevel)
            self._use_gpu = False
            return None
        try:
            if self._gpu_res is None:
                self._gpu_res = faiss.StandardGpuResources()
            gpu = faiss.index_cpu_to_gpu(self._gpu_res, 0, self._raw)
            if self.kind == "ivf":
                faiss.GpuParameterSpace().set_index_parameter(gpu, "nprobe", int(self._raw.nprobe))
        except Exception as err:  # a faiss GPU build that cannot clone this index: stay on CPU
            warnings.warn(f"faiss GPU search unavailable ({err}); searching on CPU", stacklevel=stacklevel)
            self._use_gpu = False
            return None
        self._gpu = gpu
        return gpu

    @property
    def on_gpu(self) -> bool:
        """Whether searches run on a GPU (makes the GPU copy if there is none yet and one is possible).

        Example:
            >>> VectorIndex.flat(4, use_gpu=False).on_gpu
            False
        """
        return self._gpu is not None or (self.ntotal > 0 and self._gpu_index(stacklevel=4) is not None)

    def __repr__(self) -> str:
        return f"VectorIndex(kind={self.kind!r}, ntotal={self.ntotal}, dim={self.dim})"


__all__ = [
    "HNSW_EF_CONSTRUCTION",
    "HNSW_M",
    "IVF_KMEANS_ITERS",
    "VectorIndex",
    "VectorKind",
    "import_faiss",
]
