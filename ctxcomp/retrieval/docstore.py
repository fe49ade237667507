"""The documents of an index, keyed both by their string id and by the int64 id FAISS stores.

:class:`DocStore` hands out consecutive int64 ids (never reused, even after removals) and keeps the
two-way mapping. It knows nothing about vectors or files: :class:`~ctxcomp.retrieval.FaissIndex`
pairs it with a FAISS index, and :mod:`ctxcomp.retrieval.store` writes it as ``docstore.jsonl``.

Example:
    >>> from ctxcomp import Document
    >>> store = DocStore()
    >>> store.add([Document("a", "x"), Document("b", "y")]).tolist()
    [0, 1]
    >>> store.remove([0]), store.ids(), store.next_id
    (1, ['b'], 2)
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Iterator, Sequence

import numpy as np

from ctxcomp.types import Document


class DocStore:
    """Documents by int64 internal id and by string id; ids are handed out consecutively from 0.

    Args:
        next_id: First internal id :meth:`add` hands out (a loaded store continues where it left off).

    Example:
        >>> from ctxcomp import Document
        >>> store = DocStore()
        >>> ids = store.add([Document("a", "x")])  # [1]
        >>> "a" in store, store.iid("a"), store.by_iid(0).text
        (True, 0, 'x')
    """

    def __init__(self, next_id: int = 0) -> None:
        self._docs: dict[int, Document] = {}
        self._iid: dict[str, int] = {}
        self._next_id = int(next_id)

    @property
    def next_id(self) -> int:
        """The internal id the next added document gets (one past the largest ever handed out).

        Example:
            >>> DocStore(next_id=7).next_id
            7
        """
        return self._next_id

    def __len__(self) -> int:
        return len(self._docs)

    def __contains__(self, doc_id: object) -> bool:
        return doc_id in self._iid

    def __iter__(self) -> Iterator[str]:
        """String ids, in the order the documents were added."""
        return iter(self._iid)

    def add(self, docs: Sequence[Document]) -> np.ndarray:
        """Store ``docs`` under the next consecutive internal ids.

        The caller guarantees the string ids are new (see :func:`~ctxcomp.retrieval.check_documents`).

        Args:
            docs: Documents to store.

        Returns:
            Their internal ids, int64 ``[len(docs)]``.

        Example:
            >>> from ctxcomp import Document
            >>> store = DocStore(next_id=5)
            >>> store.add([Document("a", "x")]).tolist()
            [5]
        """
        ids = np.arange(self._next_id, self._next_id + len(docs), dtype=np.int64)  # [n]
        for iid, doc in zip(ids.tolist(), docs, strict=True):
            self._docs[iid] = doc
            self._iid[doc.id] = iid
        self._next_id += len(docs)
        return ids

    def put(self, iid: int, doc: Document) -> None:
        """Store ``doc`` under a given internal id (used when reading a saved store).

        Args:
            iid: Internal id, ``0 <= iid < next_id``, not yet used in this store.
            doc: The document; its string id must be new too.

        Raises:
            ValueError: ``iid`` is out of range, or ``iid`` or ``doc.id`` is already present.

        Example:
            >>> from ctxcomp import Document
            >>> store = DocStore(next_id=3)
            >>> store.put(2, Document("c", "z"))
            >>> store.ids()
            ['c']
        """
        if iid in self._docs or doc.id in self._iid or not 0 <= iid < self._next_id:
            raise ValueError(f"internal id {iid} or document id {doc.id!r} is repeated or out of range")
        self._docs[iid] = doc
        self._iid[doc.id] = iid

    def remove(self, iids: Iterable[int]) -> int:
        """Drop documents by internal id; unknown ids are ignored. Ids are never handed out again.

        Args:
            iids: Internal ids.

        Returns:
            Number of documents dropped.

        Example:
            >>> from ctxcomp import Document
            >>> store = DocStore()
            >>> _ = store.add([Document("a", "x")])
            >>> store.remove([0, 9]), len(store)
            (1, 0)
        """
        dropped = 0
        for iid in iids:
            doc = self._docs.pop(int(iid), None)
            if doc is not None:
                self._iid.pop(doc.id, None)
                dropped += 1
        return dropped

    def clear(self) -> None:
        """Forget every document and start handing out ids from 0 again.

        Example:
            >>> from ctxcomp import Document
            >>> store = DocStore()
            >>> _ = store.add([Document("a", "x")])
            >>> store.clear()
            >>> len(store), store.next_id
            (0, 0)
        """
        self._docs.clear()
        self._iid.clear()
        self._next_id = 0

    def iid(self, doc_id: str) -> int | None:
        """Internal id of the document with string id ``doc_id``, or ``None``.

        Example:
            >>> DocStore().iid("missing") is None
            True
        """
        return self._iid.get(doc_id)

    def by_iid(self, iid: int) -> Document | None:
        """The stored document (not a copy) with internal id ``iid``, or ``None``.

        Example:
            >>> DocStore().by_iid(0) is None
            True
        """
        return self._docs.get(int(iid))

    def iids(self) -> np.ndarray:
        """Internal ids of the stored documents, int64 ``[n]``, in the order they were stored.

        Example:
            >>> from ctxcomp import Document
            >>> store = DocStore()
            >>> _ = store.add([Document("a", "x"), Document("b", "y")])
            >>> store.iids().tolist()
            [0, 1]
        """
        return np.fromiter(self._docs.keys(), dtype=np.int64, count=len(self._docs))  # [n]

    def items(self) -> list[tuple[int, Document]]:
        """``(internal id, document)`` pairs sorted by internal id.

        Example:
            >>> from ctxcomp import Document
            >>> store = DocStore()
            >>> _ = store.add([Document("a", "x")])
            >>> store.items()
            [(0, Document(id='a', text='x', metadata={}))]
        """
        return sorted(self._docs.items())

    def ids(self) -> list[str]:
        """String ids sorted by internal id (insertion order).

        Example:
            >>> from ctxcomp import Document
            >>> store = DocStore()
            >>> _ = store.add([Document("b", "x"), Document("a", "y")])
            >>> store.ids()
            ['b', 'a']
        """
        return [doc.id for _, doc in self.items()]

    def results(self, scores: np.ndarray, iids: np.ndarray, *, score_key: str) -> list[list[Document]]:
        """Search hits as new Documents: stored metadata (deep-copied) plus ``score_key: score``.

        Args:
            scores: float ``[m, k]`` similarity of each hit.
            iids: int64 ``[m, k]`` internal ids; ``-1`` (no hit) and unknown ids are skipped.
            score_key: Metadata key for the score.

        Returns:
            One list per row, in hit order. Stored documents are never mutated.

        Example:
            >>> from ctxcomp import Document
            >>> store = DocStore()
            >>> _ = store.add([Document("a", "x", {"src": 1})])
            >>> store.results(np.array([[0.5, 0.0]]), np.array([[0, -1]]), score_key="score")
            [[Document(id='a', text='x', metadata={'src': 1, 'score': 0.5})]]
        """
        out: list[list[Document]] = []
        for row_s, row_i in zip(scores, iids, strict=True):  # [k], [k]
            hits = []
            for s, iid in zip(row_s, row_i, strict=True):
                doc = self._docs.get(int(iid))
                if iid < 0 or doc is None:
                    continue
                meta = copy.deepcopy(doc.metadata)
                meta[score_key] = float(s)
                hits.append(Document(doc.id, doc.text, meta))
            out.append(hits)
        return out

    def __repr__(self) -> str:
        return f"DocStore(count={len(self)}, next_id={self._next_id})"


__all__ = ["DocStore"]
