"""LangChain integration: a document compressor, a position-bias reorderer and a retriever.

* :class:`CtxcompCompressor` — a ``BaseDocumentCompressor`` for ``ContextualCompressionRetriever``
  or any chain: keeps the sentences the reader needs, under an exact token budget.
* :class:`CtxcompReorder` — a ``BaseDocumentTransformer`` that only reorders documents (U-shape, ...).
* :class:`CtxcompRetriever` — a ``BaseRetriever``: FAISS search, then compression.

Every returned document is a new object: the input metadata (deep-copied) plus ``ctxcomp_score``
(the best kept-sentence score) and ``ctxcomp_sentences`` (one ``{"index", "start", "end", "score"}``
per kept sentence; offsets point into the *input* document's ``page_content``). Documents left with
no kept sentence are dropped. Install with ``pip install 'ctxcomp[langchain]'``.

Example:
    >>> from langchain_core.documents import Document
    >>> from ctxcomp.integrations.langchain import CtxcompCompressor
    >>> compressor = CtxcompCompressor(budget=200)
    >>> docs = compressor.compress_documents(
    ...     [Document("Hamlet is a play by Shakespeare. It is long.")], "Who wrote Hamlet?"
    ... )  # doctest: +SKIP
    >>> docs[0].metadata["ctxcomp_sentences"]  # doctest: +SKIP
    [{'index': 0, 'start': 0, 'end': 32, 'score': 0.71}]
"""

from __future__ import annotations

import asyncio
import copy
import threading
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, NoReturn

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, field_validator

from ctxcomp.errors import ConfigError, CtxcompError, InputError, MissingDependencyError

try:
    from langchain_core.callbacks import (
        AsyncCallbackManagerForRetrieverRun,
        CallbackManagerForRetrieverRun,
        Callbacks,
    )
    from langchain_core.documents import BaseDocumentCompressor, BaseDocumentTransformer
    from langchain_core.documents import Document as LCDocument
    from langchain_core.retrievers import BaseRetriever
except ImportError as _err:  # pragma: no cover - exercised only without the extra
    if _err.name is not None and _err.name.split(".")[0] != "langchain_core":
        raise
    raise MissingDependencyError("langchain_core", "langchain", "ctxcomp.integrations.langchain") from _err

from ctxcomp.api import Compressor, check_query, resolve_budget
from ctxcomp.compressors.reorder import reorder, strategy
from ctxcomp.config import CompressionConfig
from ctxcomp.registry import REORDERERS
from ctxcomp.types import CompressedContext, Document, check_text

#: Metadata key of the document score added by :class:`CtxcompCompressor`.
SCORE_KEY = "ctxcomp_score"
#: Metadata key of the kept-sentence offsets added by :class:`CtxcompCompressor`.
SENTENCES_KEY = "ctxcomp_sentences"


def _raise_config_error(model: type[BaseModel], err: ValidationError) -> NoReturn:
    """Re-raise a pydantic error as a :class:`ConfigError` naming the field and the fix."""
    first = err.errors()[0]
    cause = (first.get("ctx") or {}).get("error")
    if isinstance(cause, CtxcompError):
        raise cause from err
    owner = model.__name__
    loc = ".".join(str(p) for p in first["loc"])
    field = f"{owner}.{loc}" if loc else owner
    if first["type"] == "extra_forbidden":
        fix = f"remove it; valid fields are {', '.join(sorted(model.model_fields))}"
    elif first["type"] == "missing":
        fix = f"pass {loc}=..."
    else:
        fix = f"see the attribute docstrings of {owner}"
    raise ConfigError(field, first["msg"].removeprefix("Value error, "), fix) from err


def _check_budget(budget: int | None, ratio: float | None) -> None:
    if budget is not None or ratio is not None:
        resolve_budget(1, budget, ratio)


def _as_list(documents: Any) -> list[Any]:
    """The ``documents`` argument as a list, or an :class:`InputError` (never a silent ``[]``)."""
    if isinstance(documents, (str, bytes, LCDocument)):
        raise InputError("documents", "must be a sequence of Documents, got one item", "wrap it in a list")
    if documents is None or isinstance(documents, Mapping) or not isinstance(documents, Iterable):
        raise InputError(
            "documents",
            f"must be a sequence of Documents, got {type(documents).__name__}",
            "pass a list of langchain_core Document objects ([] for none)",
        )
    return list(documents)


def _to_ctxcomp(documents: Sequence[LCDocument]) -> list[Document]:
    """LangChain documents -> ctxcomp Documents; ids from ``doc.id`` when set, else the position."""
    documents = _as_list(documents)
    explicit = {d.id for d in documents if isinstance(d, LCDocument) and d.id}
    out = []
    for i, d in enumerate(documents):
        if not isinstance(d, LCDocument):
            raise InputError(
                f"documents[{i}]",
                f"must be a langchain_core Document, got {type(d).__name__}",
                "pass Document(page_content=..., metadata=...)",
            )
        doc_id = d.id or (str(i) if str(i) not in explicit else f"#{i}")
        check_text(f"documents[{i}].id", doc_id)
        check_text(f"documents[{i}].page_content", d.page_content)
        out.append(Document(doc_id, d.page_content, d.metadata))
    return out


def _to_langchain(
    result: CompressedContext, originals: Sequence[LCDocument], ids: Sequence[str]
) -> list[LCDocument]:
    """Compressed documents -> new LangChain documents (output order, metadata deep-copied)."""
    position = {doc_id: i for i, doc_id in enumerate(ids)}
    out = []
    for cd in result.documents:
        if not cd.sentences:
            continue
        src = originals[position[cd.id]]
        metadata = copy.deepcopy(dict(src.metadata))
        metadata[SCORE_KEY] = cd.score
        metadata[SENTENCES_KEY] = [
            {"index": s.index, "start": s.start, "end": s.end, "score": s.score} for s in cd.sentences
        ]
        out.append(LCDocument(page_content=cd.text, metadata=metadata, id=src.id))
    return out


class CtxcompCompressor(BaseDocumentCompressor):
    """Compress retrieved documents for a query with a small proxy LLM's attention.

    The proxy model loads on first use and is reused. The async path runs the model in a worker
    thread, so the event loop is never blocked.

    Example:
        >>> from ctxcomp import CompressionConfig
        >>> comp = CtxcompCompressor(config=CompressionConfig(scorer="attention"), ratio=0.3)
        >>> comp.ratio
        0.3
    """

    model_config = ConfigDict(extra="forbid", arbitrary_types_allowed=True)

    config: CompressionConfig = Field(default_factory=CompressionConfig)
    """Proxy model, scorer, reorder strategy, ... (default: ``ctxcomp.DEFAULT_PROXY``)."""

    budget: int | None = None
    """Maximum tokens of all returned documents together, counted with the reader's tokenizer."""

    ratio: float | None = None
    """Share of the input tokens to keep, in (0, 1]. With neither budget nor ratio: 0.25."""

    _compressor: Compressor | None = PrivateAttr(default=None)
    _lock: threading.Lock = PrivateAttr(default_factory=threading.Lock)

    def __init__(self, **data: Any) -> None:
        try:
            super().__init__(**data)
        except ValidationError as err:
            _raise_config_error(type(self), err)
        _check_budget(self.budget, self.ratio)

    @property
    def compressor(self) -> Compressor:
        """The :class:`~ctxcomp.Compressor` (created on first access; the model loads on first use)."""
        with self._lock:
            if self._compressor is None:
                self._compressor = Compressor(self.config)
            return self._compressor

    def _budget(self, budget: int | None, ratio: float | None) -> tuple[int | None, float | None]:
        if budget is None and ratio is None:
            return self.budget, self.ratio
        _check_budget(budget, ratio)
        return budget, ratio

    def compress_documents(
        self,
        documents: Sequence[LCDocument],
        query: str,
        callbacks: Callbacks | None = None,
        *,
        budget: int | None = None,
        ratio: float | None = None,
    ) -> Sequence[LCDocument]:
        """Keep the sentences of ``documents`` that matter for ``query``.

        Args:
            documents: Retrieved documents, best first; never mutated.
            query: The question.
            callbacks: Accepted for the LangChain interface; unused.
            budget: Overrides the field for this call (with ``ratio``, both fields are ignored).
            ratio: Overrides the field for this call.

        Returns:
            New documents with kept text, the input metadata, ``ctxcomp_score`` and
            ``ctxcomp_sentences``; documents with nothing kept are dropped.

        Raises:
            InputError: Empty query, bad budget/ratio, ``documents`` not a sequence of Documents
                (``None`` included), text that is not valid Unicode, or two documents with the same ``id``.

        Example:
            >>> CtxcompCompressor().compress_documents([], "q?")
            []
        """
        check_query(query)
        budget, ratio = self._budget(budget, ratio)
        documents = _as_list(documents)
        if not documents:
            return []
        docs = _to_ctxcomp(documents)
        result = self.compressor.compress(query, docs, budget=budget, ratio=ratio)
        return _to_langchain(result, documents, [d.id for d in docs])

    async def acompress_documents(
        self,
        documents: Sequence[LCDocument],
        query: str,
        callbacks: Callbacks | None = None,
        *,
        budget: int | None = None,
        ratio: float | None = None,
    ) -> Sequence[LCDocument]:
        """Async :meth:`compress_documents`; the model runs in a worker thread.

        Example:
            >>> import asyncio
            >>> asyncio.run(CtxcompCompressor().acompress_documents([], "q?"))
            []
        """
        check_query(query)
        budget, ratio = self._budget(budget, ratio)
        documents = _as_list(documents)
        if not documents:
            return []
        docs = _to_ctxcomp(documents)
        result = await self.compressor.acompress(query, docs, budget=budget, ratio=ratio)
        return _to_langchain(result, documents, [d.id for d in docs])


def _scores(documents: Sequence[LCDocument], score_key: str) -> list[float]:
    """Scores from the first metadata key every document carries, else from the retrieval rank."""
    for key in dict.fromkeys((score_key, "relevance_score")):
        if documents and all(key in d.metadata for d in documents):
            out = []
            for i, d in enumerate(documents):
                v = d.metadata[key]
                if isinstance(v, bool) or not isinstance(v, (int, float)):
                    raise InputError(
                        f"documents[{i}].metadata[{key!r}]",
                        f"must be a number, got {type(v).__name__}",
                        "store a float score there, or set score_key to another key",
                    )
                out.append(float(v))
            return out
    return [float(len(documents) - i) for i in range(len(documents))]


class CtxcompReorder(BaseDocumentTransformer, BaseModel):
    """Reorder documents against the reader's position bias, without compressing them.

    Scores come from ``metadata[score_key]`` when every document has it, else from
    ``metadata["relevance_score"]`` (e.g. a cross-encoder reranker), else from the input order
    (the retrieval rank). Documents are returned as they are, only in a new order. Strategies that
    read the documents or run a reader model (e.g. ``attnrank`` with ``options={"profile": ...}``,
    or attention sorting with ``options={"reader": ...}`` and ``transform_documents(docs, query=q)``)
    get ``docs`` (the page contents), ``query`` and ``options`` as keyword arguments; the async path
    runs them in a worker thread.

    Example:
        >>> from langchain_core.documents import Document
        >>> docs = [Document(str(i), metadata={"ctxcomp_score": s}) for i, s in enumerate([0.9, 0.8, 0.7])]
        >>> [d.page_content for d in CtxcompReorder().transform_documents(docs)]
        ['0', '2', '1']
    """

    model_config = ConfigDict(extra="forbid", arbitrary_types_allowed=True)

    strategy: str = "u_shape"
    """Name of a strategy of :func:`ctxcomp.compressors.reorder.reorder` (``u_shape``: best at both ends)."""

    score_key: str = SCORE_KEY
    """Metadata key read first for each document's relevance score."""

    options: dict[str, Any] = Field(default_factory=dict)
    """Keyword arguments passed to the strategy (e.g. ``profile`` for ``attnrank``); none for ``u_shape``."""

    def __init__(self, **data: Any) -> None:
        try:
            super().__init__(**data)
        except ValidationError as err:
            _raise_config_error(type(self), err)

    @field_validator("strategy")
    @classmethod
    def _known(cls, v: str) -> str:
        if v not in REORDERERS:
            raise ValueError(f"unknown reorder strategy {v!r}; use one of {REORDERERS.names()}")
        return v

    def transform_documents(
        self, documents: Sequence[LCDocument], query: str | None = None, **kwargs: Any
    ) -> Sequence[LCDocument]:
        """Return ``documents`` in the strategy's order.

        Args:
            documents: Documents, in retrieval order; never mutated.
            query: The question, for strategies that read it (attention sorting, ...).
            **kwargs: Ignored (LangChain interface).

        Returns:
            A new list holding the same documents.

        Raises:
            InputError: A score in the chosen metadata key is not a number.
            ConfigError: The strategy lacks what it needs (e.g. a profile or a reader).

        Example:
            >>> CtxcompReorder(strategy="none").transform_documents([])
            []
        """
        docs = _as_list(documents)
        scores = _scores(docs, self.score_key)
        extra: dict[str, Any] = {"docs": [d.page_content for d in docs], **self.options}
        if query is not None:
            extra["query"] = query
        return [docs[i] for i in reorder(self.strategy, scores, **extra)]

    async def atransform_documents(
        self, documents: Sequence[LCDocument], query: str | None = None, **kwargs: Any
    ) -> Sequence[LCDocument]:
        """Async :meth:`transform_documents`: inline unless the strategy runs a model (then in a thread).

        Example:
            >>> import asyncio
            >>> asyncio.run(CtxcompReorder().atransform_documents([]))
            []
        """
        if not strategy(self.strategy).needs_reader:
            return self.transform_documents(documents, query, **kwargs)
        return await asyncio.to_thread(self.transform_documents, documents, query, **kwargs)


class CtxcompRetriever(BaseRetriever):
    """Search a FAISS index, then compress the hits for the query.

    Returns at most ``k`` documents: the ``k`` nearest passages, minus those left with no kept
    sentence. Each keeps its stored metadata (with ``ctxcomp_retrieval_score``) and gains
    ``ctxcomp_score`` and ``ctxcomp_sentences``. ``invoke(query, k=..., budget=..., ratio=...)``
    overrides the fields for one call.

    Example:
        >>> from ctxcomp import Document
        >>> from ctxcomp.retrieval import FaissIndex, HashingEmbedder
        >>> docs = [Document("a", "red apple. green pear.")]
        >>> index = FaissIndex.build(docs, HashingEmbedder(), progress=False)
        >>> retriever = CtxcompRetriever(index=index, k=5, budget=100)
        >>> retriever.invoke("apple")[0].id  # doctest: +SKIP
        'a'
    """

    model_config = ConfigDict(extra="forbid", arbitrary_types_allowed=True)

    index: Any
    """A :class:`~ctxcomp.retrieval.FaissIndex` (or anything with ``search(query, k) -> list[Document]``)."""

    k: int = Field(default=10, ge=1)
    """Passages to retrieve before compression."""

    config: CompressionConfig = Field(default_factory=CompressionConfig)
    """Compression settings (proxy model, scorer, reorder strategy, ...)."""

    budget: int | None = None
    """Maximum tokens of all returned documents together (reader tokenizer)."""

    ratio: float | None = None
    """Share of the retrieved tokens to keep, in (0, 1]. With neither budget nor ratio: 0.25."""

    _compressor: CtxcompCompressor | None = PrivateAttr(default=None)

    def __init__(self, **data: Any) -> None:
        try:
            super().__init__(**data)
        except ValidationError as err:
            _raise_config_error(type(self), err)
        _check_budget(self.budget, self.ratio)
        self._compressor = CtxcompCompressor(config=self.config, budget=self.budget, ratio=self.ratio)

    @field_validator("index")
    @classmethod
    def _searchable(cls, v: Any) -> Any:
        if not callable(getattr(v, "search", None)):
            raise ValueError(f"must have a search(query, k) method, got {type(v).__name__}; use a FaissIndex")
        return v

    @property
    def compressor(self) -> CtxcompCompressor:
        """The document compressor built from this retriever's fields."""
        assert self._compressor is not None
        return self._compressor

    def _hits(self, query: str, k: int | None) -> list[LCDocument]:
        hits = self.index.search(query, k=self.k if k is None else k)
        return [LCDocument(page_content=d.text, metadata=d.metadata, id=d.id) for d in hits]

    def _get_relevant_documents(
        self,
        query: str,
        *,
        run_manager: CallbackManagerForRetrieverRun,
        k: int | None = None,
        budget: int | None = None,
        ratio: float | None = None,
    ) -> list[LCDocument]:
        docs = self._hits(query, k)
        return list(self.compressor.compress_documents(docs, query, budget=budget, ratio=ratio))

    async def _aget_relevant_documents(
        self,
        query: str,
        *,
        run_manager: AsyncCallbackManagerForRetrieverRun,
        k: int | None = None,
        budget: int | None = None,
        ratio: float | None = None,
    ) -> list[LCDocument]:
        docs = await asyncio.to_thread(self._hits, query, k)
        return list(await self.compressor.acompress_documents(docs, query, budget=budget, ratio=ratio))


__all__ = ["SCORE_KEY", "SENTENCES_KEY", "CtxcompCompressor", "CtxcompReorder", "CtxcompRetriever"]
