"""The batch runner behind ``ctxcomp compress-jsonl``: streaming, resumable, every line accounted for.

Reading (:func:`read_lines`, never more than ``--max-line-bytes`` of a line in memory), resuming
(:func:`repair_tail`, :func:`read_done`), planning each line (:class:`Planner`: skip what an
earlier run did, turn bad lines and duplicate ids into error records), compressing in threads
sharing one model (:func:`run_local`; Ray: :func:`ctxcomp.integrations.ray.run_tasks`) and
writing in input order (:class:`Sink`). Record shapes are :mod:`ctxcomp.records`'s.

Every non-blank input line ends up exactly once in OUT or ERRORS. Blank (empty or whitespace-only)
lines are not records: they are skipped, and counted (:attr:`Planner.blank`, the run's summary).

Example:
    >>> import io
    >>> list(read_lines(io.BytesIO(b'a\\n\\nbcdef\\n'), 3))
    [(1, b'a'), (3, Oversize(n_bytes=5))]
"""

from __future__ import annotations

import json
import sys
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from ctxcomp.config import DEFAULT_MAX_INPUT_CHARS
from ctxcomp.errors import InputError
from ctxcomp.records import Fields, SupportsCompress, compress_records, error_record, load_json, valid_id


def max_line_bytes_for(max_input_chars: int | None) -> int:
    """The default ``--max-line-bytes`` for a ``max_input_chars`` limit.

    A UTF-8 character takes at most 4 bytes, and 256 KiB leave room for ids, field names and
    metadata, so a line this long can hold every record the compressor accepts (unless it is
    heavily ``\\u``-escaped); longer lines would be refused anyway and are never read whole.

    Example:
        >>> max_line_bytes_for(200_000), max_line_bytes_for(None)
        (1062144, 67108864)
    """
    return 64 << 20 if max_input_chars is None else 4 * max_input_chars + (256 << 10)


#: Lines longer than this (bytes, without the newline) are reported as errors, never read whole:
#: :func:`max_line_bytes_for` of :data:`ctxcomp.config.DEFAULT_MAX_INPUT_CHARS` (about 1 MiB).
DEFAULT_MAX_LINE_BYTES = max_line_bytes_for(DEFAULT_MAX_INPUT_CHARS)


@dataclass(frozen=True)
class Oversize:
    """Marks a line longer than ``--max-line-bytes`` (only its size was read)."""

    n_bytes: int


def _id_key(ident: str | int | None) -> str | None:
    return None if ident is None else json.dumps(ident)


# ---------------------------------------------------------------------------------------------- reading


def read_lines(
    stream: IO[bytes], max_bytes: int, on_blank: Callable[[int], None] | None = None
) -> Iterator[tuple[int, bytes | Oversize]]:
    """Yield ``(line number, bytes without the newline)``, never holding more than ``max_bytes`` of a line.

    Blank lines are numbered but not yielded (``on_blank`` is called with their number). A longer
    line yields :class:`Oversize` (its rest is skipped).

    Example:
        >>> import io
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
        elif on_blank is not None:
            on_blank(lineno)


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
    blank: int = 0

    def note_blank(self, line: int) -> None:
        """Count a blank line (skipped: it is not a record)."""
        self.blank += 1

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

    def __init__(
        self,
        out: IO[str],
        errors: IO[str] | Callable[[], IO[str]] | None,
        progress: Any,
        on_failure: Callable[[], None] | None = None,
    ) -> None:
        self.out = out
        # A callable opens the errors file on the first error record: a clean run leaves none behind.
        self._errors = errors
        self.progress = progress
        self.on_failure = on_failure
        self.n_ok = 0
        self.n_errors = 0

    @property
    def errors(self) -> IO[str] | None:
        """The errors stream (opened now if it was given as an opener)."""
        if callable(self._errors):
            self._errors = self._errors()
        return self._errors

    def write(self, ok: bool, rec: dict[str, Any]) -> None:
        """Write one record to OUT (``ok``) or ERRORS.

        A record that cannot be serialised as JSON (a non-finite number or an unserialisable value
        from a custom compressor) becomes an error record for its line instead: never a crash,
        never a lost line. A failing write (disk full, a closed pipe) raises
        :class:`~ctxcomp.errors.InputError` naming the file; what was written stays, so ``--resume``
        finishes the run.
        """
        try:
            line = dump_line(rec)
        except (TypeError, ValueError) as err:
            if not ok:
                raise
            ok = False
            line = dump_line(error_record(rec.get("line"), rec.get("id"), err))
        target = self.out if ok else self.errors
        try:
            if target is not None:
                target.write(line + "\n")
                target.flush()
            else:
                self.progress.write(line, file=sys.stderr)
        except OSError as err:
            if self.on_failure is not None:
                self.on_failure()
            name = getattr(target, "name", "OUT" if ok else "ERRORS")
            raise InputError(
                "OUT" if ok else "--errors",
                f"cannot write to {name!r} ({err.strerror or err})",
                "free space or fix the path, then rerun with --resume (nothing written so far is lost)",
            ) from err
        if ok:
            self.n_ok += 1
        else:
            self.n_errors += 1
            self.progress.set_postfix(errors=self.n_errors, refresh=False)
        self.progress.update(1)


def dump_line(rec: dict[str, Any]) -> str:
    """One record as one line of valid JSON (UTF-8; a lone surrogate is written as a ``\\u`` escape).

    Raises:
        ValueError: A non-finite number (JSON has none).
        TypeError: A value JSON cannot hold.

    Example:
        >>> print(dump_line({"a": "é", "b": "\\udc80"}))
        {"a": "\\u00e9", "b": "\\udc80"}
        >>> dump_line({"a": "é"})
        '{"a": "é"}'
    """
    line = json.dumps(rec, ensure_ascii=False, allow_nan=False)
    try:
        line.encode("utf-8")
    except UnicodeEncodeError:
        return json.dumps(rec, ensure_ascii=True, allow_nan=False)
    return line


def default_errors_path(output: str) -> Path:
    """``out.jsonl`` -> ``out.errors.jsonl``; other names get ``.errors.jsonl`` appended.

    Example:
        >>> str(default_errors_path("runs/out.jsonl"))
        'runs/out.errors.jsonl'
    """
    path = Path(output)
    stem = path.name[: -len(".jsonl")] if path.name.endswith(".jsonl") else path.name
    return path.with_name(stem + ".errors.jsonl")


def planned(
    planner: Planner, lines: Iterator[tuple[int, bytes | Oversize]], progress: Any
) -> Iterator[Task | dict[str, Any]]:
    """Tasks and error records of the lines to do, in line order (skipped lines tick ``progress``;
    blank lines tick it through :func:`read_lines`'s ``on_blank``).

    Args:
        planner: Decides per line.
        lines: From :func:`read_lines`.
        progress: A tqdm bar (or anything with ``update``).

    Yields:
        :class:`Task` objects and error records.
    """
    for line, raw in lines:
        item = planner.plan(line, raw)
        if item is None:
            progress.update(1)
            continue
        yield item


def run_local(
    items: Iterator[Task | dict[str, Any]],
    write: Callable[[bool, dict[str, Any]], None],
    compressor: SupportsCompress,
    fields: Fields,
    budget: int | None,
    ratio: float | None,
    num_workers: int,
    batch_size: int,
) -> None:
    """Compress batches of ``batch_size`` records in threads sharing one model; input order out.

    Each batch is one :meth:`~ctxcomp.Compressor.compress_batch` call (its prefills share padded
    forward passes where the compressor batches); at most ``num_workers`` batches are in flight.

    Args:
        items: Tasks and error records in line order.
        write: Called with ``(ok, record)`` for every item, in order.
        compressor: The loaded compressor.
        fields: Record field names.
        budget: Token budget per record.
        ratio: Keep ratio per record.
        num_workers: Threads.
        batch_size: Records per batch.
    """
    pending: deque[Future[list[tuple[bool, dict[str, Any]]]] | list[tuple[bool, dict[str, Any]]]] = deque()
    chunk: list[Task | dict[str, Any]] = []

    def run(group: list[Task | dict[str, Any]]) -> list[tuple[bool, dict[str, Any]]]:
        tasks = [(t.line, t.obj) for t in group if isinstance(t, Task)]
        done = iter(compress_records(compressor, tasks, fields, budget, ratio))
        return [next(done) if isinstance(t, Task) else (False, t) for t in group]

    def drain(limit: int) -> None:
        while len(pending) > limit:
            head = pending.popleft()
            for ok, rec in head.result() if isinstance(head, Future) else head:
                write(ok, rec)

    with ThreadPoolExecutor(max_workers=num_workers, thread_name_prefix="ctxcomp") as pool:
        try:
            for item in items:
                chunk.append(item)
                if len(chunk) >= batch_size:
                    pending.append(pool.submit(run, chunk))
                    chunk = []
                    drain(num_workers)
            if chunk:
                pending.append(pool.submit(run, chunk))
            drain(0)
        finally:
            for f in pending:
                if isinstance(f, Future):
                    f.cancel()


__all__ = [
    "DEFAULT_MAX_LINE_BYTES",
    "Oversize",
    "Planner",
    "Sink",
    "Task",
    "count_lines",
    "default_errors_path",
    "dump_line",
    "max_line_bytes_for",
    "planned",
    "read_done",
    "read_lines",
    "repair_tail",
    "run_local",
]
