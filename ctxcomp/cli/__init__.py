"""The ``ctxcomp`` command line: one module per subcommand, registered explicitly.

Exit status: 0 success; 2 usage or input error (``ctxcomp: error: <field>: <reason>. Fix: <fix>``
on stderr); 3 some records failed (``compress-jsonl``); 1 unexpected failure.

Example:
    >>> build_parser().parse_args(["compress", "--query", "q", "--docs", "-"]).docs
    '-'
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import warnings
from collections.abc import Sequence

from ctxcomp.cli import cache, calibrate, compress, index, jsonl, serve, train
from ctxcomp.cli.common import EXIT_OK, EXIT_USAGE
from ctxcomp.errors import CtxcompError


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``ctxcomp`` command.

    Returns:
        The parser with every subcommand registered.
    """
    from ctxcomp import __version__

    parser = argparse.ArgumentParser(prog="ctxcomp", description="Compress retrieved context for RAG.")
    parser.add_argument("--version", action="version", version=f"ctxcomp {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress to stderr")
    sub = parser.add_subparsers(dest="command", required=True)
    for module in (compress, jsonl, index, train, calibrate, serve, cache):
        module.add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI.

    Args:
        argv: Arguments (default: ``sys.argv[1:]``).

    Returns:
        The exit status.

    Example:
        >>> main(["compress", "--query", " ", "--docs", "-"])
        2
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(message)s"
    )
    first_run = logging.getLogger("ctxcomp.first_run")  # slow one-time work is always announced
    first_run.setLevel(logging.INFO)
    if not first_run.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("ctxcomp: %(message)s"))
        first_run.addHandler(handler)
        first_run.propagate = False
    if not args.verbose:  # transformers' per-load "Loading weights" bars only with -v
        os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
        if "transformers" in sys.modules:
            sys.modules["transformers"].utils.logging.disable_progress_bar()
    try:
        with warnings.catch_warnings(record=True) as caught:  # printed as "ctxcomp: warning: ..."
            warnings.simplefilter("default")
            try:
                return int(args.func(args))
            finally:
                for w in caught:
                    print(f"ctxcomp: warning: {w.message}", file=sys.stderr)
    except CtxcompError as err:
        print(f"ctxcomp: error: {err}", file=sys.stderr)
        return EXIT_USAGE
    except BrokenPipeError:
        return EXIT_OK


__all__ = ["build_parser", "main"]
