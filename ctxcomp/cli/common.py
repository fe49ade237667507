"""What every ``ctxcomp`` subcommand shares: exit codes, the config and budget flags, docs files.

Example:
    >>> import argparse
    >>> p = argparse.ArgumentParser()
    >>> add_config_args(p)
    >>> add_budget_args(p)
    >>> config_from_args(p.parse_args(["--scorer", "attention", "--ratio", "0.2"])).scorer
    'attention'
"""

from __future__ import annotations

import argparse
import json
import math
import numbers
from collections.abc import Iterator
from typing import IO, Any

from ctxcomp.errors import InputError

EXIT_OK, EXIT_FAILURE, EXIT_USAGE, EXIT_RECORD_ERRORS = 0, 1, 2, 3

#: CompressionConfig fields set by string-valued flags (dest name = field name).
_CONFIG_FIELDS = (
    "proxy_model",
    "scorer",
    "reader_tokenizer",
    "device",
    "reorder",
    "reader_model",
    "position_profile",
    "probe_path",
)


def add_config_args(p: argparse.ArgumentParser) -> None:
    """Add the flags that build a :class:`~ctxcomp.CompressionConfig` (``--proxy``, ``--scorer``, ...).

    Args:
        p: The subcommand's parser.
    """
    from ctxcomp.config import DEFAULT_PROXY
    from ctxcomp.registry import REORDERERS, SCORERS

    p.add_argument("--proxy", dest="proxy_model", help=f"proxy model spec (default: {DEFAULT_PROXY})")
    p.add_argument("--scorer", choices=["auto", *SCORERS.names()])
    p.add_argument("--reader-tokenizer", dest="reader_tokenizer", help="tokenizer that counts the budget")
    p.add_argument("--device", help="auto, cpu, cuda or cuda:N")
    p.add_argument(
        "--reorder",
        choices=REORDERERS.names(),
        help="placement of the kept documents (default none; see CompressionConfig.reorder)",
    )
    p.add_argument(
        "--reader-model",
        dest="reader_model",
        help="reader LLM whose attention/position profile the reorderers use (default: the proxy)",
    )
    p.add_argument(
        "--position-profile",
        dest="position_profile",
        help="profile JSON from `ctxcomp calibrate` for --reorder attnrank (default: the shipped one)",
    )
    p.add_argument(
        "--force-position-profile",
        dest="force_position_profile",
        action="store_true",
        help="use --position-profile even if it was calibrated on another model",
    )
    p.add_argument(
        "--probe", dest="probe_path", help="trained probe JSON (default: the one shipped for the proxy)"
    )
    p.add_argument(
        "--force-probe", dest="force_probe", action="store_true", help="use --probe even for another proxy"
    )
    p.add_argument(
        "--max-input-chars",
        dest="max_input_chars",
        type=int,
        metavar="N",
        help="most characters one call may hold, query and documents together (default 200000, about "
        "50k tokens; 0: no limit)",
    )


def add_budget_args(p: argparse.ArgumentParser) -> None:
    """Add ``--budget`` / ``--ratio`` (mutually exclusive).

    Args:
        p: The subcommand's parser.
    """
    g = p.add_mutually_exclusive_group()
    g.add_argument("--budget", type=int, help="maximum tokens of the result (reader tokenizer)")
    g.add_argument("--ratio", type=float, help="share of tokens to keep, in (0, 1] (default 0.25)")


def config_from_args(args: argparse.Namespace) -> Any:
    """The :class:`~ctxcomp.CompressionConfig` the parsed flags ask for (unset flags keep defaults).

    Args:
        args: Parsed arguments of a parser given :func:`add_config_args`.

    Returns:
        The config.

    Raises:
        ConfigError: A flag's value is invalid (naming the field).
    """
    from ctxcomp.config import CompressionConfig

    fields: dict[str, Any] = {}
    for name in _CONFIG_FIELDS:
        v = getattr(args, name, None)
        if v is not None:
            fields[name] = v
    for flag in ("force_probe", "force_position_profile"):
        if getattr(args, flag, False):
            fields[flag] = True
    limit = getattr(args, "max_input_chars", None)
    if limit is not None:
        fields["max_input_chars"] = None if limit == 0 else limit
    return CompressionConfig(**fields)


def read_docs(stream: IO[bytes] | IO[str], source: str) -> Iterator[Any]:
    """Documents from a ``--docs`` JSONL stream (:func:`ctxcomp.records.parse_document` rules).

    Each non-blank line is a bare JSON string or ``{"id"?, "text", "metadata"?}``; ids default to
    the line's position among documents. Byte streams are decoded line by line as strict UTF-8.

    Args:
        stream: The open stream (binary, or text).
        source: Its name for messages (a path or ``<stdin>``).

    Yields:
        :class:`~ctxcomp.Document` objects.

    Raises:
        InputError: Invalid UTF-8, invalid JSON or a bad document (a lone surrogate included),
            naming ``source:line``.

    Example:
        >>> import io
        >>> [d.id for d in read_docs(io.BytesIO(b'"a"\\n\\n{"id": "x", "text": "b"}\\n'), "f")]
        ['0', 'x']
        >>> list(read_docs(io.BytesIO(b'"caf\\xe9"\\n'), "f"))  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        ctxcomp.errors.InputError: f:1: is not valid UTF-8 ...
    """
    from ctxcomp.records import load_json, parse_document

    n = 0
    lines: Iterator[str | bytes] = iter(stream)
    for lineno, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        where = f"{source}:{lineno}"
        yield parse_document(load_json(line, where=where), where=where, default_id=str(n))
        n += 1


def open_docs(spec: str) -> list[Any]:
    """All documents of a ``--docs`` argument (a JSONL path, or ``-`` for stdin).

    Args:
        spec: The path or ``-``.

    Returns:
        The documents.

    Raises:
        InputError: Unreadable file or bad content.
    """
    import sys

    if spec == "-":
        return list(read_docs(getattr(sys.stdin, "buffer", sys.stdin), "<stdin>"))
    try:
        with open(spec, "rb") as fh:
            return list(read_docs(fh, spec))
    except OSError as err:
        raise InputError(
            "--docs", f"cannot read {spec!r} ({err.strerror})", "pass a JSONL file or -"
        ) from err


def summary_line(stats: Any) -> str:
    """The one-line summary every subcommand prints for a compression result.

    Args:
        stats: A :class:`~ctxcomp.Stats`.

    Returns:
        ``"ctxcomp: 191 -> 51 tokens (3.7x smaller, 27% kept) in 8.12 s"``.

    Example:
        >>> from ctxcomp import Stats
        >>> summary_line(Stats(191, 51, 60, 3.7, {"total": 8.1234}, "m", "m", "probe", 1))
        'ctxcomp: 191 -> 51 tokens (3.7x smaller, 27% kept) in 8.12 s'
    """
    total = stats.timings.get("total", 0.0)
    return (
        f"ctxcomp: {stats.original_tokens} -> {stats.kept_tokens} tokens "
        f"({stats.compression:.1f}x smaller, {stats.kept_share:.0%} kept) in {total:.2f} s"
    )


def report(stats: Any) -> None:
    """Print :func:`summary_line` and any warnings of a result to stderr.

    Args:
        stats: A :class:`~ctxcomp.Stats`.
    """
    import sys

    print(summary_line(stats), file=sys.stderr)
    for w in stats.warnings:
        print(f"ctxcomp: warning: {w}", file=sys.stderr)


def print_json(obj: Any) -> None:
    """Print ``obj`` as one line of valid JSON, always: non-finite numbers become ``null``, numpy
    scalars plain numbers, other objects their ``str``; text that is not valid Unicode is escaped.

    Args:
        obj: A JSON-like value.

    Example:
        >>> print_json({"score": float("nan"), "n": [1, float("inf")]})
        {"score": null, "n": [1, null]}
    """
    import sys

    text = json.dumps(json_safe(obj), ensure_ascii=False, allow_nan=False)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        text = json.dumps(json_safe(obj), ensure_ascii=True, allow_nan=False)
    sys.stdout.write(text + "\n")


def json_safe(obj: Any) -> Any:
    """``obj`` with every value JSON can hold: NaN/inf -> ``None``, numpy scalars -> numbers,
    tuples -> lists, non-string keys -> strings, anything else -> its ``str``.

    Example:
        >>> import numpy as np
        >>> json_safe({"a": np.float32("nan"), 1: (np.int64(2), object.__new__(type("X", (), {})))})["1"][0]
        2
    """
    if obj is None or isinstance(obj, (bool, str, int)):
        return obj
    if isinstance(obj, numbers.Integral):
        return int(obj)
    if isinstance(obj, numbers.Real):
        x = float(obj)
        return x if math.isfinite(x) else None
    if isinstance(obj, dict):
        return {k if isinstance(k, str) else str(k): json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    return str(obj)


__all__ = [
    "EXIT_FAILURE",
    "EXIT_OK",
    "EXIT_RECORD_ERRORS",
    "EXIT_USAGE",
    "add_budget_args",
    "add_config_args",
    "config_from_args",
    "json_safe",
    "open_docs",
    "print_json",
    "read_docs",
    "report",
    "summary_line",
]
