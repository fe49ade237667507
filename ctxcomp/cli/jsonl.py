"""``ctxcomp compress-jsonl``: compress a JSONL corpus of questions, one record a line, streaming.

Each input line is ``{"id": str|int, "query": str, "docs": [str | {"id"?, "text", "metadata"?}, ...]}``
(field names configurable); other top-level keys are carried to the output under ``extra``. Each
output line (input order) holds the id, the input ``line`` number, the compressed ``text``, the kept
``sentences`` with provenance (``doc_id``, ``index``, ``start``, ``end``, ``score``, ``text``), the kept
``documents`` (``id``, ``text``, ``metadata``) and ``stats`` (:mod:`ctxcomp.records`).

A bad line never stops the run: it becomes one ``{"line", "id", "error", "field", "reason"}`` record
in the errors file, so every non-blank input line ends up exactly once in OUT or ERRORS. Blank
lines are not records: they are skipped and counted in the summary on stderr. OUT and the errors
file are checked to be writable before the model loads. Exit status: 0 when every record was
compressed, 3 when any record is in the errors file, 2 on usage errors (bad arguments, unreadable
input, unwritable output, a model that does not load, a write that fails midway: rerun with
``--resume``), 1 on an unexpected failure (rerun with ``--resume``; nothing written so far is lost).
The runner is :mod:`ctxcomp.integrations.jsonl`.

Example:
    $ ctxcomp compress-jsonl questions.jsonl compressed.jsonl --ratio 0.3
    $ ctxcomp compress-jsonl questions.jsonl compressed.jsonl --ratio 0.3 --resume   # after a crash
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import io
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import IO, Any

from ctxcomp.cli.common import (
    EXIT_OK,
    EXIT_RECORD_ERRORS,
    add_budget_args,
    add_config_args,
    config_from_args,
)
from ctxcomp.errors import InputError
from ctxcomp.integrations.jsonl import (
    DEFAULT_MAX_LINE_BYTES,
    Planner,
    Sink,
    count_lines,
    default_errors_path,
    max_line_bytes_for,
    planned,
    read_done,
    read_lines,
    repair_tail,
    run_local,
)
from ctxcomp.records import Fields


def add_parser(subparsers: Any) -> None:
    """Register ``compress-jsonl`` on an argparse subparsers object.

    Args:
        subparsers: What ``ArgumentParser.add_subparsers()`` returned.

    Example:
        >>> import argparse
        >>> p = argparse.ArgumentParser()
        >>> add_parser(p.add_subparsers(dest="command"))
        >>> p.parse_args(["compress-jsonl", "in.jsonl", "-", "--ratio", "0.3"]).ratio
        0.3
    """
    p = subparsers.add_parser(
        "compress-jsonl",
        help="compress a JSONL corpus of {id, query, docs} records (streaming, resumable)",
        description=(
            'Each IN line: {"id", "query", "docs": [str | {"id", "text", "metadata"}]}. '
            "Each OUT line: id, line, text, sentences (provenance), documents, stats. Bad lines go to "
            "the errors file and the run goes on; blank lines are skipped (counted in the summary). "
            "Exit 0: all compressed; 3: some records in the errors file; 2: usage error."
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
        help="records per batch: one compress_batch call, whose prefills share padded forward passes "
        "where batching pays (GPU); default 16",
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
        default=None,
        metavar="N",
        help=f"longer lines are errors, never read whole (default {DEFAULT_MAX_LINE_BYTES}: "
        "4 bytes a character of --max-input-chars plus 256 KiB)",
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
    add_budget_args(p)
    add_config_args(p)
    p.set_defaults(func=run)


def _check_writable(what: str, path: Path) -> None:
    """Raise unless ``path`` can be written (appended to, or created with its parent folders);
    leaves nothing behind."""
    fix = "pass a path in a writable folder"
    if path.is_dir():
        raise InputError(what, f"{str(path)!r} is a directory", "pass a file path")
    if path.exists():
        try:
            with open(path, "ab"):
                pass
        except OSError as err:
            raise InputError(what, f"{str(path)!r} is not writable ({err.strerror or err})", fix) from err
        return
    parent = path.parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise InputError(what, f"cannot create {str(path)!r}: {str(parent)!r} is not a directory", fix)
    try:
        fd, probe = tempfile.mkstemp(dir=parent, prefix=".ctxcomp-write-check-")
    except OSError as err:
        raise InputError(
            what, f"cannot create {str(path)!r} ({err.strerror or err} in {str(parent)!r})", fix
        ) from err
    os.close(fd)
    os.unlink(probe)


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
    for what, path in (("OUT", out_path), ("--errors", err_path)):
        if path is not None:
            _check_writable(what, path)
    return out_path, err_path


def _close(fh: IO[str], failed: list[bool]) -> None:
    """Close an output file; after a failed write, a close that fails on the same unwritten bytes is
    not a second error (the write's error is the one reported)."""
    try:
        fh.close()
    except OSError as err:
        if failed:
            return
        raise InputError(
            "OUT",
            f"cannot finish writing {fh.name!r} ({err.strerror or err})",
            "free space, then rerun with --resume",
        ) from err


def _nothing_left(spec: str, planner: Planner, max_bytes: int) -> bool:
    """Whether every non-blank line of the input file is already done (only for a file, not stdin)."""
    if spec == "-":
        return False
    with open(spec, "rb") as fh:
        return all(line in planner.done for line, _ in read_lines(fh, max_bytes))


def _open_input(spec: str) -> IO[bytes]:
    if spec != "-":
        return open(spec, "rb")  # closed by the caller's ExitStack
    buffer = getattr(sys.stdin, "buffer", None)
    return buffer if buffer is not None else io.BytesIO(sys.stdin.read().encode("utf-8"))


def run(args: argparse.Namespace) -> int:
    """Run ``ctxcomp compress-jsonl``.

    Args:
        args: Parsed arguments.

    Returns:
        0 when every record was compressed, 3 when some are in the errors file.
    """
    from tqdm.auto import tqdm

    config = config_from_args(args)
    if args.max_line_bytes is None:
        args.max_line_bytes = max_line_bytes_for(config.max_input_chars)
    out_path, err_path = _check_args(args)
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
    if args.resume and _nothing_left(args.input, planner, args.max_line_bytes):
        print(
            f"compress-jsonl: nothing left to do: every line of {args.input} is already in OUT or the errors "
            "file (the model was not loaded)",
            file=sys.stderr,
        )
        return EXIT_RECORD_ERRORS if previous_errors else EXIT_OK
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
    failed: list[bool] = []  # set when a write failed: closing may then fail again on the same bytes

    def opened(path: Path) -> IO[str]:
        path.parent.mkdir(parents=True, exist_ok=True)
        fh = open(path, mode, encoding="utf-8", newline="\n")  # noqa: SIM115 (closed by _close)
        stack.callback(_close, fh, failed)
        return fh

    with contextlib.ExitStack() as stack:
        out = real_stdout if out_path is None else opened(out_path)
        errors = None if err_path is None else functools.partial(opened, err_path)
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
        sink = Sink(out, errors, progress, on_failure=lambda: failed.append(True))
        stream = stack.enter_context(contextlib.closing(_open_input(args.input)))

        def on_blank(line: int) -> None:
            planner.note_blank(line)
            progress.update(1)

        items = planned(planner, read_lines(stream, args.max_line_bytes, on_blank), progress)
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
            assert compressor is not None
            run_local(
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
        f"{planner.blank} blank lines skipped, in {elapsed:.2f}s{loaded} "
        f"({done / elapsed if elapsed > 0 else 0.0:.1f} records/s){where}",
        file=sys.stderr,
    )
    return EXIT_RECORD_ERRORS if sink.n_errors + previous_errors else EXIT_OK


__all__ = ["add_parser", "run"]
