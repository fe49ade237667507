"""Typed, immutable values that flow through the pipeline, and the checks on what callers pass.

Text policy: ctxcomp never alters text (kept sentences are quoted verbatim), so text that is not
valid Unicode is rejected, never repaired: a lone surrogate (``"\\ud800"``, what Python makes of
undecodable bytes with ``surrogateescape`` and what a JSON ``"\\ud800"`` escape decodes to) in a
query, a document id or text raises :class:`~ctxcomp.errors.InputError` naming the field and the
character position. Files are decoded as strict UTF-8 by their readers, which name ``FILE:line``.

Example:
    >>> from ctxcomp.types import Document
    >>> Document(id="a", text="Paris is in France.", metadata={"url": "x"}).id
    'a'
"""

from __future__ import annotations

import numbers
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from ctxcomp.errors import InputError

_SURROGATE = re.compile("[\ud800-\udfff]")
_UNICODE_FIX = (
    "pass valid Unicode: decode input bytes as UTF-8 with errors='strict' (or repair them yourself, "
    "e.g. errors='replace'); ctxcomp quotes text verbatim, so it never repairs it"
)


def lone_surrogate(text: str) -> int | None:
    """Index of the first lone surrogate in ``text`` (text that cannot be encoded as UTF-8), or ``None``.

    Example:
        >>> lone_surrogate("ok"), lone_surrogate("a\\ud800b")
        (None, 1)
    """
    m = _SURROGATE.search(text)
    return None if m is None else m.start()


def check_text(field_name: str, text: str) -> str:
    """Raise unless ``text`` is valid Unicode (no lone surrogate).

    Args:
        field_name: Name for the message (``query``, ``docs[2].text``).
        text: The string.

    Returns:
        ``text`` unchanged.

    Raises:
        InputError: ``text`` holds a lone surrogate; the message gives its position.

    Example:
        >>> check_text("query", "caf\\udce9?")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        ctxcomp.errors.InputError: query: holds a lone surrogate U+DCE9 at character 3 ...
    """
    at = lone_surrogate(text)
    if at is not None:
        raise InputError(
            field_name,
            f"holds a lone surrogate U+{ord(text[at]):04X} at character {at} (not valid Unicode; "
            "undecodable bytes or a broken \\ud800-style escape)",
            _UNICODE_FIX,
        )
    return text


def find_lone_surrogate(obj: Any, path: str = "") -> str | None:
    """Path of the first string (key or value) holding a lone surrogate in a JSON-like value.

    Iterative, so deeply nested values cannot exhaust the stack.

    Args:
        obj: Strings, lists, tuples and dicts, nested.
        path: Path of ``obj`` itself (``docs[0]``); ``""`` for the root.

    Returns:
        The path (``docs[1].metadata.title``), or ``None``.

    Example:
        >>> find_lone_surrogate({"docs": ["ok", {"text": "\\udc80"}]})
        'docs[1].text'
    """
    stack: list[tuple[Any, str]] = [(obj, path)]
    while stack:
        value, where = stack.pop()
        if isinstance(value, str):
            if _SURROGATE.search(value):
                return where or "value"
        elif isinstance(value, Mapping):
            items = list(value.items())
            for k, v in reversed(items):
                key = str(k)
                if isinstance(k, str) and _SURROGATE.search(k):
                    return f"{where}.<key>" if where else "<key>"
                stack.append((v, f"{where}.{key}" if where else key))
        elif isinstance(value, (list, tuple)):
            stack.extend((v, f"{where}[{i}]") for i, v in reversed(list(enumerate(value))))
    return None


def json_path(loc: Sequence[Any]) -> str:
    """A JSONPath (``$.heads[3][0]``) from a pydantic error location.

    Example:
        >>> json_path(("heads", 3, 0)), json_path(()), json_path(("groups", "a b"))
        ('$.heads[3][0]', '$', "$.groups['a b']")
    """
    out = "$"
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif str(part).isidentifier():
            out += f".{part}"
        else:
            out += f"[{str(part)!r}]"
    return out


def first_problem(err: Any) -> tuple[str, str]:
    """``(JSONPath, problem)`` of the first error of a pydantic ``ValidationError``.

    Args:
        err: The ``ValidationError`` (anything with ``errors()``).

    Returns:
        The path of the offending value and a readable problem (``is missing``, ``must be ...``).

    Example:
        >>> from pydantic import BaseModel, ValidationError
        >>> class M(BaseModel):
        ...     x: int
        >>> try:
        ...     M.model_validate({})
        ... except ValidationError as e:
        ...     first_problem(e)
        ('$.x', 'is missing')
    """
    first = err.errors()[0]
    loc = tuple(p for p in first["loc"] if not (isinstance(p, str) and p.startswith(("function-", "list["))))
    msg = str(first["msg"]).removeprefix("Value error, ")
    if first["type"] == "missing":
        return json_path(loc), "is missing"
    if first["type"] == "extra_forbidden":
        return json_path(loc), "is not a known field"
    got = first.get("input")
    shown = repr(got) if not isinstance(got, (dict, list)) else type(got).__name__
    if len(shown) > 60:
        shown = shown[:57] + "..."
    return json_path(loc), f"{msg[0].lower() + msg[1:] if msg else 'is invalid'} (got {shown})"


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
        check_text("Document.id", self.id)
        check_text(f"Document[{self.id!r}].text", self.text)
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
        InputError: ``docs`` is not a list (``None``, a number, a dict, a single string), an item is
            neither str nor Document, a text is not valid Unicode, or two documents share an id.

    Example:
        >>> [d.id for d in as_documents(["a", "b"])]
        ['0', '1']
    """
    if isinstance(docs, (str, bytes, Document)):
        raise InputError(
            field_name, "must be a list of documents, got a single item", f"wrap it: [{field_name}]"
        )
    if docs is None or isinstance(docs, Mapping) or not isinstance(docs, Iterable):
        raise InputError(
            field_name,
            f"must be a list of documents, got {type(docs).__name__}",
            "pass a list of strings or ctxcomp.Document objects ([] for none)",
        )
    out: list[Document] = []
    seen: set[str] = set()
    for i, d in enumerate(docs):
        if isinstance(d, Document):
            doc = d
        elif isinstance(d, str):
            doc = Document(id=str(i), text=check_text(f"{field_name}[{i}]", d))
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


def plain_number(value: Any) -> Any:
    """``value`` as a plain ``int``/``float`` when it is a numpy or other ``numbers`` scalar.

    Leaves ``None``, ``bool`` and non-numbers alone (the budget check names those).

    Example:
        >>> import numpy as np
        >>> plain_number(np.float32(0.5)), type(plain_number(np.int64(3)))
        (0.5, <class 'int'>)
    """
    if value is None or isinstance(value, (bool, int, float)) or not isinstance(value, numbers.Real):
        return value
    return int(value) if isinstance(value, numbers.Integral) else float(value)


def check_call(
    query: str,
    documents: Sequence[Document],
    budget: Any,
    ratio: Any,
    *,
    max_chars: int | None,
) -> tuple[Any, Any]:
    """The checks of one compression call that need no model: text validity and total size.

    Args:
        query: The question (already checked to be a non-empty str).
        documents: The documents (from :func:`as_documents`).
        budget: The ``budget`` argument; numpy integers become ``int``.
        ratio: The ``ratio`` argument; numpy floats become ``float``.
        max_chars: ``CompressionConfig.max_input_chars`` (``None``: no limit).

    Returns:
        ``(budget, ratio)`` as plain Python numbers.

    Raises:
        InputError: The query holds a lone surrogate, or the query and documents together exceed
            ``max_chars`` characters.

    Example:
        >>> check_call("q?", [Document("a", "x" * 10)], None, 0.5, max_chars=5)  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        ctxcomp.errors.InputError: docs: hold 12 characters with the query, over the limit of 5 ...
    """
    check_text("query", query)
    if max_chars is not None:
        total = len(query) + sum(len(d.text) for d in documents)
        if total > max_chars:
            raise InputError(
                "docs",
                f"hold {total} characters with the query, over the limit of {max_chars} "
                "(CompressionConfig.max_input_chars; about 4 characters a token)",
                "split the documents over several calls, or raise max_input_chars (CLI: --max-input-chars) "
                "if this machine compresses that much in acceptable time",
            )
    return plain_number(budget), plain_number(ratio)


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
        ratio: Deprecated alias of :attr:`compression` (kept for one release; note that the
            ``ratio`` *argument* of ``compress`` is the share kept, the other way round).
        timings: Seconds spent per stage (``split``, ``probe``, ``score``, ``prune``, ``reorder``,
            ``fit``, ``total``).
        proxy_model: The proxy model spec.
        reader_tokenizer: The tokenizer used for budgets.
        scorer: The scorer that produced the scores.
        n_windows: Number of proxy prefills (more than one when the context exceeded ``max_proxy_tokens``).
        warnings: Things the caller should know about this result (e.g. the best-scoring sentence
            did not fit the budget); also logged once per call.

    Example:
        >>> s = Stats(200, 50, 50, 4.0, {}, "m", "m", "probe", 1)
        >>> s.compression, s.kept_share
        (4.0, 0.25)
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
    warnings: tuple[str, ...] = ()

    @property
    def compression(self) -> float:
        """How many times smaller the result is: ``original_tokens / kept_tokens`` (``inf`` when
        nothing is kept, 1.0 for empty input)."""
        if self.kept_tokens:
            return self.original_tokens / self.kept_tokens
        return 1.0 if self.original_tokens == 0 else float("inf")

    @property
    def kept_share(self) -> float:
        """Share of the original tokens kept: ``kept_tokens / original_tokens`` (1.0 for empty input)."""
        return self.kept_tokens / self.original_tokens if self.original_tokens else 1.0


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
