"""``ctxcomp compress-jsonl``: compress a JSONL corpus of questions, one record a line, streaming.

Each input line is ``{"id": str|int, "query": str, "docs": [str | {"id"?, "text", "metadata"?}, ...]}``
(field names configurable); other top-level keys are carried to the output under ``extra``. Each
output line (input order) holds the id, the input ``line`` number, the compressed ``text``, the kept
``sentences`` with provenance (``doc_id``, ``index``, ``start``, ``end``, ``score``, ``text``), the kept
``documents`` (``id``, ``text``, ``metadata``) and ``stats``.

A bad line never stops the run: it becomes one ``{"line", "id", "error", "field", "reason"}`` record
in the errors file, so every input line ends up exactly once in OUT or ERRORS. Exit status: 0 when
every record was compressed, 3 when any record is in the errors file, 2 on usage errors (bad
arguments, unreadable input, a model that does not load), 1 on an unexpected failure (rerun with
``--resume``; nothing written so far is lost).

Example:
    $ ctxcomp compress-jsonl questions.jsonl compressed.jsonl --ratio 0.3
    $ ctxcomp compress-jsonl questions.jsonl compressed.jsonl --ratio 0.3 --resume   # after a crash
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import logging
import math
import sys
import time
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from ctxcomp.errors import CtxcompError, FieldError, InputError
from ctxcomp.types import Document

logger = logging.getLogger(__name__)

EXIT_OK, EXIT_FAILURE, EXIT_USAGE, EXIT_RECORD_ERRORS = 0, 1, 2, 3
#: Lines longer than this (bytes, without the newline) are reported as errors, never read whole.
DEFAULT_MAX_LINE_BYTES = 10 * 1024 * 1024
_DOC_KEYS = frozenset({"id", "text", "metadata"})


# ---------------------------------------------------------------------------------------------- records


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


@dataclass(frozen=True)
class Oversize:
    """Marks a line longer than ``--max-line-bytes`` (only its size was read)."""

    n_bytes: int


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


def _id_key(ident: str | int | None) -> str | None:
    return None if ident is None else json.dumps(ident)


def _reject_constant(name: str) -> Any:
    raise ValueError(f"non-standard JSON constant {name}")


def load_json(text: str | bytes, where: str = "line") -> Any:
    """Parse one JSON line strictly (UTF-8, no NaN/Infinity).

    Args:
        text: The line.
        where: Field name for errors.

    Returns:
        The parsed value.

    Raises:
        InputError: Not UTF-8 or not valid JSON.

    Example:
        >>> load_json('{"a": 1}')
        {'a': 1}
    """
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError as err:
            raise InputError(
                where, f"is not valid UTF-8 ({err.reason} at byte {err.start})", "write UTF-8"
            ) from err
    try:
        return json.loads(text, parse_constant=_reject_constant)
    except json.JSONDecodeError as err:
        raise InputError(
            where, f"is not valid JSON ({err.msg} at column {err.colno})", "write one JSON object a line"
        ) from err
    except ValueError as err:
        raise InputError(
            where, f"is not valid JSON ({err})", "write null or a finite number instead"
        ) from err


def parse_record(obj: Any, fields: Fields) -> Record:
    """Validate one record.

    Args:
        obj: The parsed JSON line.
        fields: Field names.

    Returns:
        The record with :class:`~ctxcomp.Document` objects.

    Raises:
        InputError: Naming the offending field (``docs[2].text``, ``query``, ...) and the fix.

    Example:
        >>> parse_record({"id": "q1", "query": "Who?", "docs": ["Ann did."]}, Fields()).docs[0].id
        '0'
    """
    shape = f'{{"{fields.id}": ..., "{fields.query}": "...", "{fields.docs}": ["...", ...]}}'
    if not isinstance(obj, dict):
        raise InputError("line", f"must be a JSON object, got {type(obj).__name__}", f"write {shape}")
    for name in (fields.id, fields.query, fields.docs):
        if name not in obj:
            raise InputError(name, "is missing", f"write {shape}")
    ident = valid_id(obj, fields)
    if ident is None:
        raise InputError(
            fields.id, f"must be a str or an int, got {type(obj[fields.id]).__name__}", "use a string id"
        )
    query = obj[fields.query]
    if not isinstance(query, str) or not query.strip():
        problem = "is empty" if isinstance(query, str) else f"must be a str, got {type(query).__name__}"
        raise InputError(fields.query, problem, "write the question as a non-empty string")
    raw_docs = obj[fields.docs]
    if not isinstance(raw_docs, list):
        raise InputError(fields.docs, f"must be a list, got {type(raw_docs).__name__}", 'write ["text", ...]')
    docs: list[Document] = []
    seen: set[str] = set()
    for i, d in enumerate(raw_docs):
        where = f"{fields.docs}[{i}]"
        if isinstance(d, str):
            doc = Document(str(i), d)
        elif isinstance(d, dict):
            unknown = sorted(set(d) - _DOC_KEYS)
            if unknown:
                raise InputError(f"{where}.{unknown[0]}", "is not a document field", "move it into metadata")
            text, doc_id, meta = d.get("text"), d.get("id", i), d.get("metadata")
            if not isinstance(text, str):
                problem = "is missing" if "text" not in d else f"must be a str, got {type(text).__name__}"
                raise InputError(f"{where}.text", problem, "give every document its text")
            if isinstance(doc_id, bool) or not isinstance(doc_id, (str, int)):
                raise InputError(
                    f"{where}.id", f"must be a str or an int, got {type(doc_id).__name__}", "use a str"
                )
            if meta is not None and not isinstance(meta, dict):
                raise InputError(
                    f"{where}.metadata", f"must be an object, got {type(meta).__name__}", "use {...}"
                )
            doc = Document(str(doc_id), text, meta or {})
        else:
            raise InputError(
                where, f"must be a str or an object, got {type(d).__name__}", 'write {"text": ...}'
            )
        if doc.id in seen:
            raise InputError(f"{where}.id", f"duplicate document id {doc.id!r}", "give documents unique ids")
        seen.add(doc.id)
        docs.append(doc)
    extra = {k: v for k, v in obj.items() if k not in (fields.id, fields.query, fields.docs)}
    return Record(ident, query, docs, extra)


def _finite(x: float) -> float | None:
    return float(x) if math.isfinite(x) else None


def output_record(line: int | None, rec: Record, ctx: Any) -> dict[str, Any]:
    """The output line of one compressed record.

    Args:
        line: Input line number (``None`` when unknown).
        rec: The input record.
        ctx: Its :class:`~ctxcomp.CompressedContext`.

    Returns:
        A JSON-serialisable dict (non-finite numbers become ``null``).

    Example:
        >>> output_record(1, rec, ctx)["text"]  # doctest: +SKIP
    """
    s = ctx.stats
    return {
        "id": rec.id,
        "line": line,
        "text": ctx.text,
        "sentences": [
            {
                "doc_id": k.doc_id,
                "index": k.index,
                "start": k.start,
                "end": k.end,
                "score": _finite(k.score),
                "text": k.text,
            }
            for k in ctx.kept_sentences
        ],
        "documents": [{"id": d.id, "text": d.text, "metadata": d.metadata} for d in ctx.documents],
        "stats": {
            "original_tokens": s.original_tokens,
            "kept_tokens": s.kept_tokens,
            "budget": s.budget,
            "ratio": _finite(s.ratio),
            "timings": {k: round(v, 6) for k, v in s.timings.items()},
            "proxy_model": s.proxy_model,
            "reader_tokenizer": s.reader_tokenizer,
            "scorer": s.scorer,
            "n_windows": s.n_windows,
        },
        "extra": rec.extra,
    }


def error_record(line: int | None, ident: str | int | None, err: BaseException) -> dict[str, Any]:
    """The errors-file line of a record that was not compressed.

    Example:
        >>> error_record(3, "q1", InputError("query", "is empty", "write it"))["field"]
        'query'
    """
    return {
        "line": line,
        "id": ident,
        "error": type(err).__name__,
        "field": err.field if isinstance(err, FieldError) else None,
        "reason": str(err),
    }


_UNEXPECTED_LOGGED: set[str] = set()


def process(
    compressor: Any, line: int | None, obj: Any, fields: Fields, budget: int | None, ratio: float | None
) -> tuple[bool, dict[str, Any]]:
    """Validate and compress one record; any failure becomes an error record.

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
        >>> process(comp, 1, {"id": 1, "query": "q?", "docs": []}, Fields(), None, 0.5)[0]  # doctest: +SKIP
        True
    """
    ident = valid_id(obj, fields)
    try:
        rec = parse_record(obj, fields)
        ctx = compressor.compress(rec.query, rec.docs, budget=budget, ratio=ratio)
    except Exception as err:
        if not isinstance(err, CtxcompError) and type(err).__name__ not in _UNEXPECTED_LOGGED:
            _UNEXPECTED_LOGGED.add(type(err).__name__)
            logger.warning(
                "line %s: unexpected %s (recorded in the errors file)",
                line,
                type(err).__name__,
                exc_info=True,
            )
        return False, error_record(line, ident, err)
    return True, output_record(line, rec, ctx)


# ---------------------------------------------------------------------------------------------- reading


def read_lines(stream: IO[bytes], max_bytes: int) -> Iterator[tuple[int, bytes | Oversize]]:
    """Yield ``(line number, bytes without the newline)``, never holding more than ``max_bytes`` of a line.

    Blank lines are counted but not yielded. A longer line yields :class:`Oversize` (its rest is skipped).

    Example:
        >>> list(read_lines(io.BytesIO(b'a\\n\\nbcdef\\n'), 3))
        [(1, b'a'), (3, Oversize(n_bytes=5))]
    """
    lineno = 0
    while True:
        chunk = stream.readline(max_bytes + 1)
        if not chunk:
            return
        lineno += 1
        if len(chunk) > max_bytes and not chunk.endswith(b"\n"):
            n = len(chunk)
            while not chunk.endswith(b"\n"):
                chunk = stream.readline(1 << 20)
                if not chunk:
                    break
                n += len(chunk)
            yield lineno, Oversize(n - (1 if chunk.endswith(b"\n") else 0))
            continue
        body = chunk.rstrip(b"\r\n")
        if body.strip():
            yield lineno, body


def count_lines(path: Path) -> int:
    """Count newline-terminated lines (plus a last unterminated one) in 8 MiB chunks.

    Example:
        >>> count_lines(Path("corpus.jsonl"))  # doctest: +SKIP
        10000
    """
    n, last = 0, b"\n"
    with path.open("rb") as fh:
        while chunk := fh.read(8 << 20):
            n += chunk.count(b"\n")
            last = chunk[-1:]
    return n + (last != b"\n")


def repair_tail(path: Path) -> int:
    """Cut an unterminated last line (a write killed midway) off ``path``; return the bytes removed.

    Example:
        >>> repair_tail(Path("out.jsonl"))  # doctest: +SKIP
        0
    """
    size = path.stat().st_size
    if size == 0:
        return 0
    with path.open("r+b") as fh:
        pos = size
        while pos > 0:
            step = min(1 << 16, pos)
            fh.seek(pos - step)
            block = fh.read(step)
            if pos == size and block.endswith(b"\n"):
                return 0
            cut = block.rfind(b"\n")
            if cut >= 0:
                keep = pos - step + cut + 1
                fh.truncate(keep)
                return size - keep
            pos -= step
        fh.truncate(0)
        return size


def read_done(path: Path, what: str) -> Iterator[tuple[int | None, str | None]]:
    """``(line, id key)`` of every record already in an OUT or ERRORS file (after :func:`repair_tail`).

    Raises:
        InputError: A complete line that is not a JSON object (the file was not written by this command).
    """
    with path.open("rb") as fh:
        for n, raw in enumerate(fh, start=1):
            if not raw.strip():
                continue
            try:
                obj = json.loads(raw)
            except ValueError as err:
                raise InputError(
                    f"{what} line {n}",
                    f"of {str(path)!r} is not valid JSON",
                    "remove that line, or start afresh with --overwrite",
                ) from err
            if not isinstance(obj, dict) or "line" not in obj:
                raise InputError(
                    f"{what} line {n}",
                    f"of {str(path)!r} is not a compress-jsonl record",
                    "pass the OUT/ERRORS files of an earlier run",
                )
            ident = obj.get("id")
            yield (
                obj["line"],
                _id_key(ident if isinstance(ident, (str, int)) and not isinstance(ident, bool) else None),
            )


# ---------------------------------------------------------------------------------------------- planning


@dataclass
class Task:
    """A line to compress."""

    line: int
    id: str | int | None
    obj: Any
    raw: bytes


@dataclass
class Planner:
    """Decides per line: skip (done before, ``--resume``), error now (bad line, duplicate id) or compress.

    Memory grows with the number of ids (for duplicate detection), never with record contents.
    """

    fields: Fields
    max_line_bytes: int
    seen: dict[str, int] = field(default_factory=dict)  # id key -> first line
    done: dict[int, str | None] = field(default_factory=dict)  # line -> id key, from an earlier run
    skipped: int = 0

    def remember(self, line: int | None, key: str | None) -> None:
        """Register a record of an earlier run (from OUT or ERRORS)."""
        if line is not None:
            self.done[line] = key
        if key is not None:
            first = self.seen.get(key)
            if line is not None and (first is None or line < first):
                self.seen[key] = line
            elif first is None:
                self.seen[key] = 0

    def plan(self, line: int, raw: bytes | Oversize) -> Task | dict[str, Any] | None:
        """A :class:`Task`, an error record, or ``None`` to skip the line."""
        obj: Any = None
        err: InputError | None = None
        if isinstance(raw, Oversize):
            err = InputError(
                "line",
                f"is {raw.n_bytes} bytes, over the limit of {self.max_line_bytes}",
                "split the record or raise --max-line-bytes",
            )
        else:
            try:
                obj = load_json(raw)
            except InputError as e:
                err = e
        ident = valid_id(obj, self.fields) if err is None else None
        key = _id_key(ident)
        if line in self.done and self.done[line] == key:
            self.skipped += 1
            return None
        if err is not None:
            return error_record(line, None, err)
        if key is not None:
            first = self.seen.get(key)
            if first is not None:
                where = f"line {first}" if first else "an earlier run"
                dup = InputError(
                    self.fields.id,
                    f"duplicate id {ident!r} (first seen on {where})",
                    "make ids unique; this record was not compressed",
                )
                return error_record(line, ident, dup)
            self.seen[key] = line
        assert not isinstance(raw, Oversize)
        return Task(line, ident, obj, raw)


# ---------------------------------------------------------------------------------------------- writing


class Sink:
    """Writes output and error records, one JSON line each, flushed per record."""

    def __init__(self, out: IO[str], errors: IO[str] | None, progress: Any) -> None:
        self.out = out
        self.errors = errors
        self.progress = progress
        self.n_ok = 0
        self.n_errors = 0

    def write(self, ok: bool, rec: dict[str, Any]) -> None:
        """Write one record to OUT (``ok``) or ERRORS."""
        line = json.dumps(rec, ensure_ascii=False, allow_nan=False)
        if ok:
            self.out.write(line + "\n")
            self.out.flush()
            self.n_ok += 1
        else:
            if self.errors is not None:
                self.errors.write(line + "\n")
                self.errors.flush()
            else:
                self.progress.write(line, file=sys.stderr)
            self.n_errors += 1
            self.progress.set_postfix(errors=self.n_errors, refresh=False)
        self.progress.update(1)


# ---------------------------------------------------------------------------------------------- command


def add_commands(subparsers: Any) -> None:
    """Register ``compress-jsonl`` on an argparse subparsers object.

    Args:
        subparsers: What ``ArgumentParser.add_subparsers()`` returned.

    Example:
        >>> import argparse
        >>> p = argparse.ArgumentParser()
        >>> add_commands(p.add_subparsers(dest="command"))
        >>> p.parse_args(["compress-jsonl", "in.jsonl", "-", "--ratio", "0.3"]).ratio
        0.3
    """
    from ctxcomp.integrations.cli import _add_budget_args, _add_config_args

    p = subparsers.add_parser(
        "compress-jsonl",
        help="compress a JSONL corpus of {id, query, docs} records (streaming, resumable)",
        description=(
            'Each IN line: {"id", "query", "docs": [str | {"id", "text", "metadata"}]}. '
            "Each OUT line: id, line, text, sentences (provenance), documents, stats. Bad lines go to "
            "the errors file and the run goes on. Exit 0: all compressed; 3: some records in the "
            "errors file; 2: usage error."
        ),
    )
    p.add_argument("input", metavar="IN", help="JSONL file, or - for stdin")
    p.add_argument("output", metavar="OUT", help="JSONL file, or - for stdout")
    p.add_argument(
        "--query-field", default="query", help="record field holding the question (default: query)"
    )
    p.add_argument("--docs-field", default="docs", help="record field holding the documents (default: docs)")
    p.add_argument("--id-field", default="id", help="record field holding the unique id (default: id)")
    p.add_argument(
        "--errors",
        default=None,
        metavar="FILE",
        help="errors file (default: OUT with .errors.jsonl; with OUT=- error records go to stderr)",
    )
    p.add_argument("--resume", action="store_true", help="skip records already in OUT/ERRORS and append")
    p.add_argument("--overwrite", action="store_true", help="replace existing OUT/ERRORS files")
    p.add_argument(
        "--batch-size",
        type=int,
        default=16,
        metavar="B",
        help="records in flight at once (local) / per worker batch (ray); default 16",
    )
    p.add_argument(
        "--num-workers",
        type=int,
        default=1,
        metavar="N",
        help="compression threads (local, sharing one model) or Ray actors (ray); default 1",
    )
    p.add_argument(
        "--max-line-bytes",
        type=int,
        default=DEFAULT_MAX_LINE_BYTES,
        metavar="N",
        help=f"longer lines are errors, never read whole (default {DEFAULT_MAX_LINE_BYTES})",
    )
    p.add_argument(
        "--engine", choices=["local", "ray"], default="local", help="where to compress (default local)"
    )
    p.add_argument("--gpus-per-worker", type=float, default=0.0, help="ray: GPUs per actor (default 0)")
    p.add_argument("--cpus-per-worker", type=float, default=1.0, help="ray: CPUs per actor (default 1)")
    p.add_argument(
        "--ray-address",
        default=None,
        help="ray: cluster address (default $RAY_ADDRESS, else a local cluster)",
    )
    p.add_argument(
        "--torch-threads",
        type=int,
        default=None,
        metavar="N",
        help="local: torch intra-op threads (default: torch's choice; 1 helps on busy or small machines)",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    _add_budget_args(p)
    _add_config_args(p)
    p.set_defaults(func=_cmd_compress_jsonl)


def default_errors_path(output: str) -> Path:
    """``out.jsonl`` -> ``out.errors.jsonl``; other names get ``.errors.jsonl`` appended.

    Example:
        >>> str(default_errors_path("runs/out.jsonl"))
        'runs/out.errors.jsonl'
    """
    path = Path(output)
    stem = path.name[: -len(".jsonl")] if path.name.endswith(".jsonl") else path.name
    return path.with_name(stem + ".errors.jsonl")


def _check_args(args: argparse.Namespace) -> tuple[Path | None, Path | None]:
    from ctxcomp.api import resolve_budget

    if args.budget is not None or args.ratio is not None:
        resolve_budget(1, args.budget, args.ratio)
    for name in ("batch_size", "num_workers", "max_line_bytes", "torch_threads"):
        v = getattr(args, name)
        if v is not None and v < 1:
            raise InputError(
                f"--{name.replace('_', '-')}", f"must be >= 1, got {v}", "pass a positive number"
            )
    out_path = None if args.output == "-" else Path(args.output)
    err_path = Path(args.errors) if args.errors else (default_errors_path(args.output) if out_path else None)
    if args.input != "-" and not Path(args.input).is_file():
        raise InputError("IN", f"{args.input!r} is not a readable file", "pass a JSONL file, or - for stdin")
    if args.resume and (out_path is None or err_path is None):
        raise InputError("--resume", "needs OUT and the errors file on disk", "pass a file path as OUT")
    if args.resume and args.overwrite:
        raise InputError("--resume/--overwrite", "both were given", "pick one")
    for what, path in (("OUT", out_path), ("--errors", err_path)):
        if path is None:
            continue
        if args.input != "-" and path.resolve() == Path(args.input).resolve():
            raise InputError(what, "is the input file", "write to another path")
        if not args.resume and not args.overwrite and path.is_file() and path.stat().st_size > 0:
            raise InputError(
                what, f"{str(path)!r} already exists", "pass --resume to finish it, --overwrite to replace it"
            )
    if out_path is not None and err_path is not None and out_path.resolve() == err_path.resolve():
        raise InputError("--errors", "is the same file as OUT", "pass another path")
    return out_path, err_path


def _open_input(spec: str) -> IO[bytes]:
    if spec != "-":
        return open(spec, "rb")  # closed by the caller's ExitStack
    buffer = getattr(sys.stdin, "buffer", None)
    return buffer if buffer is not None else io.BytesIO(sys.stdin.read().encode("utf-8"))


def _cmd_compress_jsonl(args: argparse.Namespace) -> int:
    from tqdm.auto import tqdm

    from ctxcomp.integrations.cli import _config_from

    out_path, err_path = _check_args(args)
    config = _config_from(args)
    fields = Fields(query=args.query_field, docs=args.docs_field, id=args.id_field)
    planner = Planner(fields, args.max_line_bytes)
    previous_errors = 0
    if args.resume:
        for what, path in (("OUT", out_path), ("ERRORS", err_path)):
            assert path is not None
            if path.is_file():
                cut = repair_tail(path)
                if cut:
                    print(
                        f"ctxcomp: dropped an incomplete last line of {path} ({cut} bytes); it is redone",
                        file=sys.stderr,
                    )
                for line, key in read_done(path, what):
                    planner.remember(line, key)
                    previous_errors += what == "ERRORS"
    total = None if args.input == "-" else count_lines(Path(args.input))
    compressor = None
    load_s = 0.0
    if args.engine == "local":  # load first: a model that does not load leaves no files behind
        from ctxcomp.api import Compressor

        if args.torch_threads is not None:
            import torch

            torch.set_num_threads(args.torch_threads)
        t_load = time.perf_counter()
        with contextlib.redirect_stdout(sys.stderr):
            compressor = Compressor(config).load()
        load_s = time.perf_counter() - t_load
    t0 = time.perf_counter()
    real_stdout = sys.stdout
    mode = "a" if args.resume else "w"
    with contextlib.ExitStack() as stack:
        if out_path is not None:
            out_path.parent.mkdir(parents=True, exist_ok=True)
        out = (
            real_stdout
            if out_path is None
            else stack.enter_context(open(out_path, mode, encoding="utf-8", newline="\n"))
        )
        errors = None
        if err_path is not None:
            err_path.parent.mkdir(parents=True, exist_ok=True)
            errors = stack.enter_context(open(err_path, mode, encoding="utf-8", newline="\n"))
        # Nothing but records reaches stdout: stray prints (libraries, Ray workers) go to stderr.
        stack.enter_context(contextlib.redirect_stdout(sys.stderr))
        # Error records on a non-terminal stderr stay one clean JSON line each: no bar then.
        quiet = args.no_progress or (errors is None and not sys.stderr.isatty())
        progress = stack.enter_context(
            tqdm(
                total=total,
                desc="compress-jsonl",
                unit="rec",
                file=sys.stderr,
                disable=quiet,
                mininterval=0.5,
                dynamic_ncols=True,
            )
        )
        sink = Sink(out, errors, progress)
        stream = stack.enter_context(contextlib.closing(_open_input(args.input)))
        items = _planned(planner, read_lines(stream, args.max_line_bytes), progress)
        if args.engine == "ray":
            from ctxcomp.integrations.ray import run_tasks

            run_tasks(
                items,
                sink.write,
                config,
                fields=fields,
                budget=args.budget,
                ratio=args.ratio,
                num_workers=args.num_workers,
                num_gpus_per_worker=args.gpus_per_worker,
                num_cpus_per_worker=args.cpus_per_worker,
                batch_size=args.batch_size,
                address=args.ray_address,
            )
        else:
            _run_local(
                items,
                sink.write,
                compressor,
                fields,
                args.budget,
                args.ratio,
                args.num_workers,
                args.batch_size,
            )
    elapsed = time.perf_counter() - t0
    done = sink.n_ok + sink.n_errors
    where = f"; errors in {err_path}" if err_path is not None and sink.n_errors + previous_errors else ""
    loaded = f" after a {load_s:.1f}s model load" if compressor is not None else ""
    print(
        f"compress-jsonl: {sink.n_ok} compressed, {sink.n_errors} errors, {planner.skipped} already done, "
        f"in {elapsed:.2f}s{loaded} ({done / elapsed if elapsed > 0 else 0.0:.1f} records/s){where}",
        file=sys.stderr,
    )
    return EXIT_RECORD_ERRORS if sink.n_errors + previous_errors else EXIT_OK


def _planned(
    planner: Planner, lines: Iterator[tuple[int, bytes | Oversize]], progress: Any
) -> Iterator[Task | dict[str, Any]]:
    last = 0
    for line, raw in lines:
        if line > last + 1:
            progress.update(line - last - 1)  # blank lines
        last = line
        item = planner.plan(line, raw)
        if item is None:
            progress.update(1)
            continue
        yield item


def _run_local(
    items: Iterator[Task | dict[str, Any]],
    write: Callable[[bool, dict[str, Any]], None],
    compressor: Any,
    fields: Fields,
    budget: int | None,
    ratio: float | None,
    num_workers: int,
    batch_size: int,
) -> None:
    """Compress in threads sharing one model; at most ``batch_size`` records in flight; input order out."""

    pending: deque[Future[tuple[bool, dict[str, Any]]] | tuple[bool, dict[str, Any]]] = deque()

    def drain(limit: int) -> None:
        while len(pending) > limit:
            head = pending.popleft()
            write(*(head.result() if isinstance(head, Future) else head))

    with ThreadPoolExecutor(max_workers=num_workers, thread_name_prefix="ctxcomp") as pool:
        try:
            for item in items:
                if isinstance(item, Task):
                    pending.append(
                        pool.submit(process, compressor, item.line, item.obj, fields, budget, ratio)
                    )
                else:
                    pending.append((False, item))
                drain(batch_size - 1)
            drain(0)
        finally:
            for f in pending:
                if isinstance(f, Future):
                    f.cancel()


__all__ = [
    "DEFAULT_MAX_LINE_BYTES",
    "EXIT_RECORD_ERRORS",
    "Fields",
    "Oversize",
    "Planner",
    "Record",
    "Task",
    "add_commands",
    "count_lines",
    "default_errors_path",
    "error_record",
    "load_json",
    "output_record",
    "parse_record",
    "process",
    "read_done",
    "read_lines",
    "repair_tail",
]
