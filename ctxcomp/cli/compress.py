"""``ctxcomp compress``: compress documents for one question.

Example:
    $ echo '{"id": "a", "text": "Paris is the capital of France. It is big."}' \\
        | ctxcomp compress --query "What is the capital of France?" --docs - --ratio 0.5
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from ctxcomp.cli.common import (
    EXIT_OK,
    add_budget_args,
    add_config_args,
    config_from_args,
    open_docs,
    print_json,
    report,
)
from ctxcomp.errors import InputError


def add_parser(sub: Any) -> None:
    """Register ``compress``.

    Args:
        sub: What ``ArgumentParser.add_subparsers()`` returned.

    Example:
        >>> import argparse
        >>> p = argparse.ArgumentParser()
        >>> add_parser(p.add_subparsers(dest="command"))
        >>> p.parse_args(["compress", "--query", "q", "--docs", "-"]).docs
        '-'
    """
    p = sub.add_parser("compress", help="compress documents for one question")
    p.add_argument("--query", required=True, help="the question")
    p.add_argument(
        "--docs", required=True, help='JSONL file (or - for stdin): {"id","text","metadata"?} or strings'
    )
    p.add_argument(
        "--json", action="store_true", help="print the full result as JSON (always valid: NaN/inf -> null)"
    )
    add_budget_args(p)
    add_config_args(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Run ``ctxcomp compress``.

    Args:
        args: Parsed arguments.

    Returns:
        The exit status.
    """
    from ctxcomp.api import Compressor, check_query
    from ctxcomp.types import check_text

    check_query(args.query)
    check_text("--query", args.query)  # undecodable bytes in argv arrive as lone surrogates
    docs = open_docs(args.docs)
    if not docs:
        source = "stdin" if args.docs == "-" else repr(args.docs)
        raise InputError(
            "--docs",
            f"{source} holds no documents",
            'give one JSON document a line: {"id", "text"} or a string',
        )
    result = Compressor(config_from_args(args)).compress(
        args.query, docs, budget=args.budget, ratio=args.ratio
    )
    if args.json:
        print_json(result.to_dict())
    else:
        sys.stdout.write(result.text + "\n")
    report(result.stats)
    return EXIT_OK
