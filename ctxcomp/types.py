"""Typed, immutable values that flow through the pipeline.

Example:
    >>> from ctxcomp.types import Document
    >>> Document(id="a", text="Paris is in France.", metadata={"url": "x"}).id
    'a'
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from ctxcomp.errors import InputError


@dataclass(frozen=True)
class Document:
    """A retrieved passage.

    Attributes:
        id: Caller-chosen identifier, unique within one compression call.
        text: The passage text; kept sentences are exact substrings of it.
        metadata: Arbitrary JSON-like data; it is copied, never mutated, and survives every path.

    Example:
        >>> Document("d1", "Some text.").metadata
        {}
    """

    id: str
    text: str
    metadata: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.id, str):
            raise InputError("Document.id", f"must be a str, got {type(self.id).__name__}", "pass str(id)")
        if not isinstance(self.text, str):
            raise InputError(
                f"Document[{self.id!r}].text",
                f"must be a str, got {type(self.text).__name__}",
                "pass the text as a str",
            )
        if not isinstance(self.metadata, Mapping):
            raise InputError(
                f"Document[{self.id!r}].metadata",
                f"must be a mapping, got {type(self.metadata).__name__}",
                "pass a dict (or omit it)",
            )
        object.__setattr__(self, "metadata", dict(self.metadata))


DocLike = Document | str


def as_documents(docs: Iterable[DocLike], *, field_name: str = "docs") -> list[Document]:
    """Normalise strings and Documents into Documents with unique ids.

    Plain strings get ids ``"0"``, ``"1"``, ... by position.

    Args:
        docs: Strings or :class:`Document` objects (mixing is allowed).
        field_name: Name used in error messages.

    Returns:
        A new list of Documents.

    Raises:
        InputError: An item is neither str nor Document, or two documents share an id.

    Example:
        >>> [d.id for d in as_documents(["a", "b"])]
        ['0', '1']
    """
    if isinstance(docs, (str, bytes, Document)):
        raise InputError(
            field_name, "must be a list of documents, got a single item", f"wrap it: [{field_name}]"
        )
    out: list[Document] = []
    seen: set[str] = set()
    for i, d in enumerate(docs):
        if isinstance(d, Document):
            doc = d
        elif isinstance(d, str):
            doc = Document(id=str(i), text=d)
        else:
            raise InputError(
                f"{field_name}[{i}]",
                f"must be a str or ctxcomp.Document, got {type(d).__name__}",
                "pass plain strings or Document(id, text, metadata)",
            )
        if doc.id in seen:
            raise InputError(
                f"{field_name}[{i}].id", f"duplicate id {doc.id!r}", "give every document a unique id"
            )
        seen.add(doc.id)
        out.append(doc)
    return out


@dataclass(frozen=True)
class Sentence:
    """A sentence span inside a document: ``doc.text[start:end] == text``.

    Attributes:
        doc_id: Id of the document it comes from.
        index: Position of the sentence within its document (0-based).
        start: Character offset of the first character in the document text.
        end: Character offset one past the last character.
        text: The exact substring.
    """

    doc_id: str
    index: int
    start: int
    end: int
    text: str


@dataclass
class Candidates:
    """The documents of one call and their sentences: what the scorer ranks and the pruner keeps.

    Token counts of the sentences are memoised per counter (:meth:`token_counts`), so the proxy's
    window packing and the reader's budget share one count when they use the same tokenizer.

    Attributes:
        docs: The documents, in input order.
        sentences: Every sentence, grouped by document in source order.
        doc_of: ``[S]`` index into ``docs`` of each sentence's document.

    Example:
        >>> from ctxcomp.text.split import split_documents
        >>> c = split_documents([Document("a", "One. Two."), Document("b", "Three.")])
        >>> c.doc_of, c.doc_sizes
        ([0, 0, 1], [2, 1])
    """

    docs: list[Document]
    sentences: list[Sentence]
    doc_of: list[int]
    _counts: dict[int, list[int]] = field(default_factory=dict, repr=False)

    @property
    def texts(self) -> list[str]:
        """Sentence texts, ``[S]``."""
        return [s.text for s in self.sentences]

    @property
    def doc_sizes(self) -> list[int]:
        """Number of sentences of each document."""
        sizes = [0] * len(self.docs)
        for d in self.doc_of:
            sizes[d] += 1
        return sizes

    def token_counts(self, counter: Any) -> list[int]:
        """Tokens of each sentence under ``counter`` (a :class:`~ctxcomp.text.tokens.TokenCounter`),
        counted once per counter.

        Args:
            counter: Anything with ``count_many(texts) -> list[int]``.

        Returns:
            ``[S]`` counts.
        """
        key = id(counter)
        if key not in self._counts:
            self._counts[key] = list(counter.count_many(self.texts))
        return self._counts[key]


@dataclass(frozen=True)
class ScoredSentence:
    """A sentence with its relevance score and whether it was kept.

    Attributes:
        doc_id: Id of the document it comes from.
        index: Position within its document.
        start: Character offset into the document text.
        end: Character offset one past the end.
        text: The exact substring ``doc.text[start:end]``.
        score: Relevance score (higher is more relevant); comparable within one call.
        n_tokens: Tokens of the sentence under the reader's tokenizer.
        kept: Whether the sentence is in the compressed context.
    """

    doc_id: str
    index: int
    start: int
    end: int
    text: str
    score: float
    n_tokens: int
    kept: bool


@dataclass(frozen=True)
class CompressedDocument:
    """One document of the compressed context.

    Attributes:
        id: The input document's id.
        text: Its kept sentences, in source order, verbatim.
        metadata: The input metadata plus ``ctxcomp_score`` (the best sentence score of the document).
        score: Same as ``metadata["ctxcomp_score"]``.
        sentences: Kept sentences of this document, in source order.
    """

    id: str
    text: str
    metadata: dict[str, Any]
    score: float
    sentences: tuple[ScoredSentence, ...]


@dataclass(frozen=True)
class Stats:
    """Numbers about one compression call.

    Attributes:
        original_tokens: Tokens of the uncompressed context (all documents, joined) under the
            reader tokenizer.
        kept_tokens: Tokens of :attr:`CompressedContext.text` under the reader tokenizer.
        budget: The token budget that was enforced.
        ratio: ``original_tokens / kept_tokens`` (``inf`` when nothing is kept, 1.0 for empty input).
        timings: Seconds spent per stage (``split``, ``probe``, ``score``, ``prune``, ``reorder``, ``total``).
        proxy_model: The proxy model spec.
        reader_tokenizer: The tokenizer used for budgets.
        scorer: The scorer that produced the scores.
        n_windows: Number of proxy prefills (more than one when the context exceeded ``max_proxy_tokens``).
    """

    original_tokens: int
    kept_tokens: int
    budget: int
    ratio: float
    timings: dict[str, float]
    proxy_model: str
    reader_tokenizer: str
    scorer: str
    n_windows: int


@dataclass(frozen=True)
class CompressedContext:
    """The result of a compression call.

    Attributes:
        text: The final context string for the reader LLM.
        documents: Kept documents in output order, each with its kept text and metadata.
        sentences: Every input sentence (kept or not), in input order, with provenance and score.
        stats: Token counts, ratio and timings.

    Example:
        >>> ctx = CompressedContext(text="", documents=(), sentences=(), stats=None)  # doctest: +SKIP
    """

    text: str
    documents: tuple[CompressedDocument, ...]
    sentences: tuple[ScoredSentence, ...]
    stats: Stats

    @property
    def kept_sentences(self) -> tuple[ScoredSentence, ...]:
        """Only the kept sentences, in input order."""
        return tuple(s for s in self.sentences if s.kept)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable dict of the whole result.

        Returns:
            ``{"text", "documents", "sentences", "stats"}`` with plain Python values.
        """
        return asdict(self)
