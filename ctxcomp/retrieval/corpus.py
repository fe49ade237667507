"""Reading and validating corpora: JSONL files (``{"id", "text", "metadata"?}`` per line) or Documents.

Other top-level fields of a line (``title``, ``url``, ...) are moved into the metadata.

Every bad record is reported with its line number (or position) and reason; nothing is dropped
silently. Strict mode raises :class:`~ctxcomp.retrieval.errors.CorpusError` before anything is
embedded or written; ``skip_invalid=True`` returns the problems instead, for an errors file.

Example:
    >>> import json, tempfile, pathlib
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "c.jsonl"
    >>> _ = p.write_text(json.dumps({"id": "a", "text": "x"}) + "\\n" + "{oops\\n")
    >>> docs, problems = read_corpus(p, skip_invalid=True)
    >>> [d.id for d in docs], problems[0]["line"]
    (['a'], 2)
"""

from __future__ import annotations

import gzip
import json
import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO, Any

from ctxcomp.errors import InputError
from ctxcomp.records import load_json, parse_document
from ctxcomp.retrieval.errors import CorpusError
from ctxcomp.types import Document

_MAX_LISTED = 10
_FIX = 'write one JSON object per line: {"id": "<unique str>", "text": "<str>", "metadata": {...}}'


def _open_text(path: Path) -> IO[str]:
    if path.suffix == ".gz":
        return gzip.open(path, "rt", encoding="utf-8")
    return path.open("r", encoding="utf-8")


def _problem(line: int, doc_id: str | None, reason: str) -> dict[str, Any]:
    return {"line": line, "id": doc_id, "reason": reason}


def _parse_line(raw: str) -> tuple[Document | None, str | None, str | None]:
    """(document, id if known, reason if invalid) for one non-blank line (:mod:`ctxcomp.records` rules;
    a corpus document needs an explicit id)."""
    obj: Any = None
    try:
        obj = load_json(raw, where="line")
        return parse_document(obj, where="line", default_id=None), None, None
    except InputError as err:
        raw_id = obj.get("id") if isinstance(obj, dict) else None
        known = (
            str(raw_id)
            if isinstance(raw_id, (str, int)) and not isinstance(raw_id, bool) and raw_id != ""
            else None
        )
        field = err.field.removeprefix("line").lstrip(".")
        return None, known, f"field {field!r} {err.problem}" if field else f"line {err.problem}"


def iter_corpus(path: str | os.PathLike[str]) -> Iterator[tuple[int, Document | None, dict[str, Any] | None]]:
    """Yield ``(line_number, document, problem)`` for every non-blank line of a JSONL(.gz) corpus.

    Exactly one of ``document`` and ``problem`` is set. Duplicate ids are not checked here.

    Args:
        path: The corpus file (``.jsonl`` or ``.jsonl.gz``).

    Yields:
        1-based line number, the parsed :class:`~ctxcomp.types.Document` or ``None``, and the problem
        dict (``{"line", "id", "reason"}``) or ``None``.

    Raises:
        CorpusError: The file does not exist or is not UTF-8 text.

    Example:
        >>> import tempfile, pathlib
        >>> p = pathlib.Path(tempfile.mkdtemp()) / "c.jsonl"
        >>> _ = p.write_text('{"id": "a", "text": "x"}\\n')
        >>> [(n, d.id) for n, d, _ in iter_corpus(p)]
        [(1, 'a')]
    """
    p = Path(path)
    if not p.is_file():
        raise CorpusError("corpus", f"file {str(p)!r} does not exist", "pass the path of a JSONL corpus")
    lineno = 0
    try:
        with _open_text(p) as fh:
            for lineno, raw in enumerate(fh, start=1):
                if not raw.strip():
                    continue
                doc, doc_id, reason = _parse_line(raw)
                if reason is not None:
                    yield lineno, None, _problem(lineno, doc_id, reason)
                else:
                    yield lineno, doc, None
    except (UnicodeDecodeError, OSError, EOFError) as err:
        raise CorpusError(
            f"{p}:{lineno + 1}",
            f"cannot be read as UTF-8 JSONL ({err})",
            "pass an uncorrupted UTF-8 JSONL(.gz) file",
        ) from err


def read_corpus(
    path: str | os.PathLike[str], *, skip_invalid: bool = False, existing_ids: Iterable[str] = ()
) -> tuple[list[Document], list[dict[str, Any]]]:
    """Read and validate a whole JSONL corpus.

    Args:
        path: ``.jsonl`` or ``.jsonl.gz`` file, one ``{"id", "text", "metadata"?}`` object a line.
        skip_invalid: Return bad lines as problems instead of raising.
        existing_ids: Ids already indexed; repeating one is a duplicate.

    Returns:
        ``(documents, problems)``; ``problems`` is empty in strict mode.

    Raises:
        CorpusError: A line is invalid (strict mode); the message gives the line number and reason,
            and ``err.problems`` lists every bad line.

    Example:
        >>> import tempfile, pathlib
        >>> p = pathlib.Path(tempfile.mkdtemp()) / "c.jsonl"
        >>> _ = p.write_text('{"id": "a", "text": "x"}\\n{"id": "a", "text": "y"}\\n')
        >>> read_corpus(p, skip_invalid=True)[1][0]["reason"]
        "duplicate id 'a' (first on line 1)"
    """
    first_line: dict[str, int | str] = {i: "the existing index" for i in existing_ids}
    docs: list[Document] = []
    problems: list[dict[str, Any]] = []
    for lineno, doc, problem in iter_corpus(path):
        if doc is not None and doc.id in first_line:
            where = first_line[doc.id]
            where_s = f"line {where}" if isinstance(where, int) else str(where)
            problem = _problem(lineno, doc.id, f"duplicate id {doc.id!r} (first on {where_s})")
            doc = None
        if problem is not None:
            problems.append(problem)
            continue
        assert doc is not None
        first_line[doc.id] = lineno
        docs.append(doc)
    if problems and not skip_invalid:
        raise _corpus_error(str(path), problems)
    return docs, problems


def check_documents(
    items: Iterable[Any], *, skip_invalid: bool = False, existing_ids: Iterable[str] = ()
) -> tuple[list[Document], list[dict[str, Any]]]:
    """Validate in-memory documents: each must be a :class:`~ctxcomp.types.Document`, ids unique.

    Args:
        items: Documents (anything else is a problem).
        skip_invalid: Return bad items as problems instead of raising.
        existing_ids: Ids already indexed.

    Returns:
        ``(documents, problems)``; problem ``line`` is the 0-based position.

    Raises:
        CorpusError: An item is not a Document or repeats an id (strict mode).

    Example:
        >>> check_documents([Document("a", "x"), "b"], skip_invalid=True)[1][0]["line"]
        1
    """
    if isinstance(items, (str, bytes, Document)):
        raise CorpusError("docs", "must be an iterable of Documents, got a single item", "wrap it: [doc]")
    seen: dict[str, int | str] = {i: "the existing index" for i in existing_ids}
    docs: list[Document] = []
    problems: list[dict[str, Any]] = []
    for pos, item in enumerate(items):
        if not isinstance(item, Document):
            problems.append(_problem(pos, None, f"must be a ctxcomp.Document, got {type(item).__name__}"))
            continue
        if item.id in seen:
            where = seen[item.id]
            where_s = f"position {where}" if isinstance(where, int) else str(where)
            problems.append(_problem(pos, item.id, f"duplicate id {item.id!r} (first at {where_s})"))
            continue
        seen[item.id] = pos
        docs.append(item)
    if problems and not skip_invalid:
        raise _corpus_error("docs", problems, sep="[", end="]")
    return docs, problems


def _corpus_error(source: str, problems: list[dict[str, Any]], sep: str = ":", end: str = "") -> CorpusError:
    first = problems[0]
    listed = "; ".join(f"line {p['line']}: {p['reason']}" for p in problems[:_MAX_LISTED])
    more = f" (and {len(problems) - _MAX_LISTED} more)" if len(problems) > _MAX_LISTED else ""
    summary = f"{len(problems)} invalid record(s): {listed}{more}"
    fix = f"{_FIX}; or pass skip_invalid=True (CLI: --skip-invalid) to skip them into an errors file"
    return CorpusError(f"{source}{sep}{first['line']}{end}", summary, fix, problems)


def write_problems(path: str | os.PathLike[str], problems: list[dict[str, Any]]) -> Path:
    """Write problems as JSONL (``{"line", "id", "reason"}`` per line).

    Args:
        path: Output file (parent folders are created).
        problems: As returned by :func:`read_corpus`.

    Returns:
        The path written.

    Example:
        >>> import tempfile, pathlib
        >>> folder = pathlib.Path(tempfile.mkdtemp())
        >>> out = write_problems(folder / "e.jsonl", [{"line": 2, "id": None, "reason": "r"}])
        >>> out.read_text()
        '{"line": 2, "id": null, "reason": "r"}\\n'
    """
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("w", encoding="utf-8") as fh:
        for p in problems:
            fh.write(json.dumps(p, ensure_ascii=False) + "\n")
    return out


__all__ = ["check_documents", "iter_corpus", "read_corpus", "write_problems"]
