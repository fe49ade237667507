"""One schema for documents and records in, and results out.

Every entry point reads documents and records with these rules and writes results with these
shapes: the ``compress`` CLI (``--docs`` lines), ``compress-jsonl``, Ray, retrieval corpora and
the HTTP server.

Documents in: a bare string, or ``{"id"?, "text", "metadata"?, ...}``. ``id`` is a non-empty
string or an int (kept as its decimal string; default: the document's position); ``metadata`` an
object or null; any other top-level key is folded into ``metadata`` (a key given both ways is an
error). Records in: ``{"id", "query", "docs": [document, ...], ...}`` (field names configurable
with :class:`Fields`); other top-level keys are carried to the output under ``extra``.

Results out: :func:`output_record` (``id``, ``line``, ``text``, kept ``sentences`` with
provenance, kept ``documents`` with metadata, ``stats``, ``extra``); failures:
:func:`error_record` (``line``, ``id``, ``error``, ``field``, ``reason``; ``field`` is never
null). Non-finite numbers become ``null``, so every record is valid JSON.

Text in: strict UTF-8 JSON; numbers must be finite (``NaN``, ``Infinity`` and overflowing literals
such as ``1e999`` are errors); a string holding a lone surrogate (an escape like ``"\\ud800"``)
anywhere in a document or record is an :class:`~ctxcomp.errors.InputError` naming its path,
never repaired (ctxcomp quotes text verbatim).

Example:
    >>> parse_document({"id": 7, "text": "Paris.", "url": "x"}, where="docs[0]")
    Document(id='7', text='Paris.', metadata={'url': 'x'})
    >>> parse_record({"id": "q1", "query": "Who?", "docs": ["Ann did."]}, Fields()).docs[0].id
    '0'
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from ctxcomp.errors import CtxcompError, FieldError, InputError
from ctxcomp.types import CompressedContext, Document, find_lone_surrogate

_DOC_SHAPE = '{"id": "...", "text": "...", "metadata": {...}}'


@dataclass(frozen=True)
class Fields:
    """Names of the record fields.

    Example:
        >>> Fields(query="question").query
        'question'
    """

    query: str = "query"
    docs: str = "docs"
    id: str = "id"


@dataclass(frozen=True)
class Record:
    """A validated input record.

    Attributes:
        id: The record id as given (str or int).
        query: The question.
        docs: Its documents (string docs get ids ``"0"``, ``"1"``, ... by position).
        extra: Other top-level fields, carried to the output unchanged.
    """

    id: str | int
    query: str
    docs: list[Document]
    extra: dict[str, Any] = field(default_factory=dict)


def parse_document(obj: Any, *, where: str, default_id: str | None = None) -> Document:
    """One document from its JSON form.

    Args:
        obj: A string or an object ``{"id"?, "text", "metadata"?, ...}``.
        where: Name of the value for messages (``docs[2]``, ``corpus.jsonl:7``).
        default_id: Id when ``obj`` has none; ``None`` makes ``id`` required.

    Returns:
        The document.

    Raises:
        InputError: Naming the offending field (``docs[2].text``) and the fix.

    Example:
        >>> parse_document("Paris.", where="docs[0]", default_id="0").id
        '0'
    """
    bad = find_lone_surrogate(obj, where)
    if bad is not None:
        raise _surrogate_error(bad)
    if isinstance(obj, str):
        if default_id is None:
            raise InputError(where, "is a bare string but an id is required", f"write {_DOC_SHAPE}")
        return Document(default_id, obj)
    if not isinstance(obj, Mapping):
        raise InputError(
            where, f"must be a string or an object, got {type(obj).__name__}", f"write {_DOC_SHAPE}"
        )
    if "text" not in obj:
        raise InputError(f"{where}.text", "is missing", f"give every document its text: {_DOC_SHAPE}")
    text = obj["text"]
    if not isinstance(text, str):
        raise InputError(
            f"{where}.text", f"must be a string, got {type(text).__name__}", "write the text as a string"
        )
    if "id" in obj:
        raw_id = obj["id"]
        if isinstance(raw_id, bool) or not isinstance(raw_id, (str, int)) or raw_id == "":
            raise InputError(
                f"{where}.id",
                f"must be a non-empty string or an int, got {raw_id!r}",
                "use a unique string id",
            )
        doc_id = str(raw_id)
    elif default_id is None:
        raise InputError(f"{where}.id", "is missing", f"give every document a unique id: {_DOC_SHAPE}")
    else:
        doc_id = default_id
    meta = obj.get("metadata")
    if meta is None:
        meta = {}
    if not isinstance(meta, Mapping):
        raise InputError(
            f"{where}.metadata", f"must be an object, got {type(meta).__name__}", "use {...} or omit it"
        )
    extra = {k: v for k, v in obj.items() if k not in ("id", "text", "metadata")}
    clash = sorted(set(extra) & set(meta))
    if clash:
        raise InputError(
            f"{where}.{clash[0]}", "is given both at the top level and under metadata", "keep one of the two"
        )
    return Document(doc_id, text, {**meta, **extra})


def parse_documents(raw: Any, *, where: str = "docs") -> list[Document]:
    """A list of documents (ids default to positions; duplicates are an error).

    Args:
        raw: A JSON list of documents.
        where: Name of the list for messages.

    Returns:
        The documents.

    Raises:
        InputError: Not a list, a bad document, or a duplicate id.

    Example:
        >>> [d.id for d in parse_documents(["a", {"id": "x", "text": "b"}])]
        ['0', 'x']
    """
    if not isinstance(raw, list):
        raise InputError(where, f"must be a list, got {type(raw).__name__}", 'write ["text", ...]')
    docs: list[Document] = []
    seen: set[str] = set()
    for i, d in enumerate(raw):
        doc = parse_document(d, where=f"{where}[{i}]", default_id=str(i))
        if doc.id in seen:
            raise InputError(
                f"{where}[{i}].id", f"duplicate document id {doc.id!r}", "give documents unique ids"
            )
        seen.add(doc.id)
        docs.append(doc)
    return docs


def valid_id(obj: Any, fields: Fields) -> str | int | None:
    """The record's id when it is a str or an int, else ``None``.

    Example:
        >>> valid_id({"id": 7}, Fields()), valid_id({"id": [7]}, Fields()), valid_id("x", Fields())
        (7, None, None)
    """
    if not isinstance(obj, dict):
        return None
    v = obj.get(fields.id)
    if isinstance(v, bool) or not isinstance(v, (str, int)):
        return None
    return v


def _surrogate_error(path: str) -> InputError:
    return InputError(
        path,
        "holds a lone surrogate (an escape such as \\ud800 that is not valid Unicode)",
        "write valid Unicode text (a surrogate pair, or the character itself in UTF-8); ctxcomp never "
        "repairs text it must quote verbatim",
    )


def _reject_constant(name: str) -> Any:
    raise ValueError(f"non-standard JSON constant {name}")


def _finite_float(text: str) -> float:
    x = float(text)
    if not math.isfinite(x):
        raise ValueError(f"number {text[:20]} is out of range for a double")
    return x


def load_json(text: str | bytes, where: str = "line") -> Any:
    """Parse one JSON value strictly (UTF-8, no NaN/Infinity).

    Args:
        text: The JSON text.
        where: Field name for errors.

    Returns:
        The parsed value.

    Raises:
        InputError: Not UTF-8, not valid JSON, a non-finite number (``NaN``, ``1e999``) or nested
            too deeply (with the full reason).

    Example:
        >>> load_json('{"a": 1}')
        {'a': 1}
        >>> load_json('[1e999]')  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        ctxcomp.errors.InputError: line: is not valid JSON (number 1e999 is out of range for a double)...
    """
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError as err:
            raise InputError(
                where, f"is not valid UTF-8 ({err.reason} at byte {err.start})", "write UTF-8"
            ) from err
    try:
        return json.loads(text, parse_constant=_reject_constant, parse_float=_finite_float)
    except json.JSONDecodeError as err:
        raise InputError(
            where, f"is not valid JSON ({err.msg} at column {err.colno})", "write one JSON object a line"
        ) from err
    except ValueError as err:
        raise InputError(
            where, f"is not valid JSON ({err})", "write null or a finite number instead"
        ) from err
    except RecursionError as err:
        raise InputError(where, "is nested too deeply to parse", "flatten the JSON value") from err


def parse_record(obj: Any, fields: Fields) -> Record:
    """Validate one record.

    Args:
        obj: The parsed JSON record.
        fields: Field names.

    Returns:
        The record with :class:`~ctxcomp.Document` objects.

    Raises:
        InputError: Naming the offending field (``docs[2].text``, ``query``, ...) and the fix.

    Example:
        >>> parse_record({"id": 1, "query": "Who?", "docs": []}, Fields()).id
        1
    """
    shape = f'{{"{fields.id}": ..., "{fields.query}": "...", "{fields.docs}": ["...", ...]}}'
    if not isinstance(obj, dict):
        raise InputError("line", f"must be a JSON object, got {type(obj).__name__}", f"write {shape}")
    for name in (fields.id, fields.query, fields.docs):
        if name not in obj:
            raise InputError(name, "is missing", f"write {shape}")
    bad = find_lone_surrogate(obj)
    if bad is not None:
        raise _surrogate_error(bad)
    ident = valid_id(obj, fields)
    if ident is None:
        raise InputError(
            fields.id, f"must be a str or an int, got {type(obj[fields.id]).__name__}", "use a string id"
        )
    query = obj[fields.query]
    if not isinstance(query, str) or not query.strip():
        problem = "is empty" if isinstance(query, str) else f"must be a str, got {type(query).__name__}"
        raise InputError(fields.query, problem, "write the question as a non-empty string")
    docs = parse_documents(obj[fields.docs], where=fields.docs)
    extra = {k: v for k, v in obj.items() if k not in (fields.id, fields.query, fields.docs)}
    return Record(ident, query, docs, extra)


def finite(x: float) -> float | None:
    """``x`` as a float, or ``None`` when it is NaN or infinite (JSON has no such numbers).

    Example:
        >>> finite(2), finite(float("inf"))
        (2.0, None)
    """
    return float(x) if math.isfinite(x) else None


def result_record(ctx: CompressedContext) -> dict[str, Any]:
    """The JSON form of one compression result: ``text``, kept ``sentences``, ``documents``, ``stats``.

    Args:
        ctx: The result.

    Returns:
        A JSON-serialisable dict (non-finite numbers become ``null``).

    Example:
        >>> result_record(ctx)["stats"]["kept_tokens"]  # doctest: +SKIP
        42
    """
    s = ctx.stats
    return {
        "text": ctx.text,
        "sentences": [
            {
                "doc_id": k.doc_id,
                "index": k.index,
                "start": k.start,
                "end": k.end,
                "score": finite(k.score),
                "text": k.text,
            }
            for k in ctx.kept_sentences
        ],
        "documents": [{"id": d.id, "text": d.text, "metadata": d.metadata} for d in ctx.documents],
        "stats": {
            "original_tokens": s.original_tokens,
            "kept_tokens": s.kept_tokens,
            "budget": s.budget,
            "ratio": finite(s.ratio),
            "compression": finite(s.compression),
            "kept_share": finite(s.kept_share),
            "warnings": list(s.warnings),
            "timings": {k: round(v, 6) for k, v in s.timings.items()},
            "proxy_model": s.proxy_model,
            "reader_tokenizer": s.reader_tokenizer,
            "scorer": s.scorer,
            "n_windows": s.n_windows,
        },
    }


def output_record(line: int | None, rec: Record, ctx: CompressedContext) -> dict[str, Any]:
    """The output line of one compressed record.

    Args:
        line: Input line number (``None`` when unknown).
        rec: The input record.
        ctx: Its :class:`~ctxcomp.CompressedContext`.

    Returns:
        ``{"id", "line", "text", "sentences", "documents", "stats", "extra"}``.

    Example:
        >>> output_record(1, rec, ctx)["text"]  # doctest: +SKIP
    """
    return {"id": rec.id, "line": line, **result_record(ctx), "extra": rec.extra}


_FIELD_PREFIX = re.compile(r"^([A-Za-z_$][\w.\[\]'\"$/-]*): ")


def error_field(err: BaseException) -> str:
    """The field an error is about: a :class:`~ctxcomp.errors.FieldError`'s ``field``, the
    ``field:`` prefix of another ctxcomp error's message (``proxy_model``, ``probe_path``), else
    ``"record"`` (the record as a whole, e.g. an unexpected failure while compressing it).

    Example:
        >>> error_field(InputError("docs[0].text", "is empty", "x")), error_field(KeyError("k"))
        ('docs[0].text', 'record')
    """
    if isinstance(err, FieldError):
        return err.field
    if isinstance(err, CtxcompError):
        m = _FIELD_PREFIX.match(str(err))
        if m:
            return m.group(1)
    return "record"


def error_reason(err: BaseException) -> str:
    """A readable reason: a ctxcomp error's message, or the type and message of anything else.

    Example:
        >>> error_reason(TypeError("bad operand"))
        'unexpected TypeError while compressing this record: bad operand. Fix: report it as a ctxcomp bug.'
    """
    if isinstance(err, CtxcompError):
        return str(err)
    detail = str(err) or repr(err)
    return (
        f"unexpected {type(err).__name__} while compressing this record: {detail}. "
        "Fix: report it as a ctxcomp bug."
    )


def error_record(line: int | None, ident: str | int | None, err: BaseException) -> dict[str, Any]:
    """The errors-file line of a record that was not compressed (``field`` and ``reason`` always set).

    Example:
        >>> error_record(3, "q1", InputError("query", "is empty", "write it"))["field"]
        'query'
    """
    return {
        "line": line,
        "id": ident,
        "error": type(err).__name__,
        "field": error_field(err),
        "reason": error_reason(err),
    }


class SupportsCompress(Protocol):
    """Anything with :meth:`ctxcomp.Compressor.compress`'s signature."""

    def compress(
        self, query: str, docs: Any, *, budget: int | None = None, ratio: float | None = None
    ) -> CompressedContext: ...


def compress_record(
    compressor: SupportsCompress,
    line: int | None,
    obj: Any,
    fields: Fields,
    budget: int | None,
    ratio: float | None,
) -> tuple[bool, dict[str, Any]]:
    """Validate and compress one record; any failure becomes an error record (never raised).

    Args:
        compressor: A :class:`~ctxcomp.Compressor`.
        line: Input line number (``None`` when unknown).
        obj: The parsed record.
        fields: Field names.
        budget: Token budget per record.
        ratio: Keep ratio per record.

    Returns:
        ``(True, output record)`` or ``(False, error record)``.

    Example:
        >>> rec = {"id": 1, "query": "q?", "docs": []}
        >>> compress_record(comp, 1, rec, Fields(), None, 0.5)[0]  # doctest: +SKIP
        True
    """
    ident = valid_id(obj, fields)
    try:
        rec = parse_record(obj, fields)
        ctx = compressor.compress(rec.query, rec.docs, budget=budget, ratio=ratio)
    except Exception as err:
        _log_unexpected(err, line)
        return False, error_record(line, ident, err)
    return True, output_record(line, rec, ctx)


def compress_records(
    compressor: Any,
    items: Sequence[tuple[int | None, Any]],
    fields: Fields,
    budget: int | None,
    ratio: float | None,
) -> list[tuple[bool, dict[str, Any]]]:
    """Validate and compress several records in one :meth:`~ctxcomp.Compressor.compress_batch` call
    (their prefills share padded batches where the compressor batches); failures become error records.

    Args:
        compressor: A :class:`~ctxcomp.Compressor` (anything with only ``compress`` is served one by one).
        items: ``(line, parsed record)`` pairs.
        fields: Field names.
        budget: Token budget per record.
        ratio: Keep ratio per record.

    Returns:
        ``(ok, record)`` per item, in order.

    Example:
        >>> items = [(1, {"id": 1, "query": "q?", "docs": ["A."]})]
        >>> compress_records(comp, items, Fields(), None, 0.5)  # doctest: +SKIP
    """
    batch = getattr(compressor, "compress_batch", None)
    if batch is None:
        return [compress_record(compressor, line, obj, fields, budget, ratio) for line, obj in items]
    out: list[tuple[bool, dict[str, Any]] | None] = [None] * len(items)
    parsed: list[tuple[int, int | None, Record]] = []
    for k, (line, obj) in enumerate(items):
        try:
            parsed.append((k, line, parse_record(obj, fields)))
        except Exception as err:
            _log_unexpected(err, line)
            out[k] = (False, error_record(line, valid_id(obj, fields), err))
    results = batch(
        [{"query": r.query, "docs": r.docs, "budget": budget, "ratio": ratio} for _, _, r in parsed],
        return_exceptions=True,
    )
    for (k, line, rec), res in zip(parsed, results, strict=True):
        if isinstance(res, BaseException):
            if isinstance(res, Exception):
                _log_unexpected(res, line)
            out[k] = (False, error_record(line, rec.id, res))
        else:
            out[k] = (True, output_record(line, rec, res))
    return [o for o in out if o is not None]


_UNEXPECTED_LOGGED: set[str] = set()


def _log_unexpected(err: Exception, line: int | None) -> None:
    if isinstance(err, CtxcompError) or type(err).__name__ in _UNEXPECTED_LOGGED:
        return
    import logging

    _UNEXPECTED_LOGGED.add(type(err).__name__)
    logging.getLogger(__name__).warning(
        "line %s: unexpected %s (recorded in the errors file)", line, type(err).__name__, exc_info=err
    )


__all__ = [
    "Fields",
    "Record",
    "SupportsCompress",
    "compress_record",
    "compress_records",
    "error_field",
    "error_reason",
    "error_record",
    "finite",
    "load_json",
    "output_record",
    "parse_document",
    "parse_documents",
    "parse_record",
    "result_record",
    "valid_id",
]
