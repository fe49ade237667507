"""The ``ctxcomp`` command line.

Exit status: 0 success; 2 usage or input error (message on stderr names the field and the fix);
1 unexpected failure.

Example:
    $ echo '{"id": "a", "text": "Paris is the capital of France. It is big."}' \\
        | ctxcomp compress --query "What is the capital of France?" --docs - --ratio 0.5
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Iterator, Sequence
from typing import IO, Any, get_args

from ctxcomp.errors import CtxcompError, InputError

EXIT_OK, EXIT_FAILURE, EXIT_USAGE = 0, 1, 2


def _read_docs(stream: IO[str], source: str) -> Iterator[Any]:
    from ctxcomp.types import Document

    for lineno, line in enumerate(stream, start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as err:
            raise InputError(
                f"{source}:{lineno}", f"invalid JSON ({err.msg})", "write one JSON value per line"
            ) from err
        if isinstance(obj, str):
            yield obj
        elif isinstance(obj, dict):
            if "text" not in obj:
                raise InputError(f"{source}:{lineno}.text", "is missing", 'write {"id": ..., "text": ...}')
            yield Document(
                id=str(obj.get("id", lineno - 1)), text=obj["text"], metadata=obj.get("metadata") or {}
            )
        else:
            raise InputError(
                f"{source}:{lineno}",
                f"must be a string or an object, got {type(obj).__name__}",
                'write a bare JSON string or {"id", "text", "metadata"}',
            )


def _config_from(args: argparse.Namespace) -> Any:
    from ctxcomp.config import CompressionConfig

    fields: dict[str, Any] = {}
    for name in (
        "proxy_model",
        "scorer",
        "reader_tokenizer",
        "device",
        "reorder",
        "reader_model",
        "position_profile",
        "probe_path",
    ):
        v = getattr(args, name, None)
        if v is not None:
            fields[name] = v
    for flag in ("force_probe", "force_position_profile"):
        if getattr(args, flag, False):
            fields[flag] = True
    return CompressionConfig(**fields)


def _add_config_args(p: argparse.ArgumentParser) -> None:
    from ctxcomp.config import DEFAULT_PROXY, ReorderName, ScorerName

    p.add_argument("--proxy", dest="proxy_model", help=f"proxy model spec (default: {DEFAULT_PROXY})")
    p.add_argument("--scorer", choices=list(get_args(ScorerName)))
    p.add_argument("--reader-tokenizer", dest="reader_tokenizer", help="tokenizer that counts the budget")
    p.add_argument("--device", help="auto, cpu, cuda or cuda:N")
    p.add_argument(
        "--reorder",
        choices=list(get_args(ReorderName)),
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


def _add_budget_args(p: argparse.ArgumentParser) -> None:
    g = p.add_mutually_exclusive_group()
    g.add_argument("--budget", type=int, help="maximum tokens of the result (reader tokenizer)")
    g.add_argument("--ratio", type=float, help="share of tokens to keep, in (0, 1] (default 0.25)")


def _cmd_compress(args: argparse.Namespace) -> int:
    from ctxcomp.api import Compressor, check_query

    check_query(args.query)
    if args.docs == "-":
        docs = list(_read_docs(sys.stdin, "<stdin>"))
    else:
        try:
            with open(args.docs, encoding="utf-8") as fh:
                docs = list(_read_docs(fh, args.docs))
        except OSError as err:
            raise InputError(
                "--docs", f"cannot read {args.docs!r} ({err.strerror})", "pass a JSONL file or -"
            ) from err
    result = Compressor(_config_from(args)).compress(args.query, docs, budget=args.budget, ratio=args.ratio)
    if args.json:
        json.dump(result.to_dict(), sys.stdout, ensure_ascii=False)
        sys.stdout.write("\n")
    else:
        sys.stdout.write(result.text + "\n")
    s = result.stats
    print(
        f"kept {s.kept_tokens}/{s.original_tokens} tokens ({s.ratio:.1f}x) in {s.timings['total']:.2f}s",
        file=sys.stderr,
    )
    return EXIT_OK


def _cmd_train_probe(args: argparse.Namespace) -> int:
    from ctxcomp.compressors.train import train_probe

    probe = train_probe(
        args.model,
        args.data,
        args.out,
        split=args.split,
        n_questions=args.n_questions,
        n_docs=args.docs,
        layers=args.layers,
        families=args.families,
        seed=args.seed,
        progress=not args.no_progress,
        depths=args.depths,
        doc_vectors=args.doc_vectors,
        command="ctxcomp " + " ".join(sys.argv[1:]) if sys.argv[0].endswith("ctxcomp") else None,
    )
    cv = probe.meta["cv"]
    print(
        f"wrote {args.out}: CV AUC {cv['auc']:.3f} (C={cv['C']}, {cv['k_heads']} heads, "
        f"deepest layer {max(probe.layers) if probe.layers else '-'}, "
        f"{probe.meta['training']['n_questions']} questions)",
        file=sys.stderr,
    )
    return EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``ctxcomp`` command.

    Returns:
        The parser with every subcommand registered.

    Example:
        >>> build_parser().parse_args(["compress", "--query", "q", "--docs", "-"]).docs
        '-'
    """
    parser = argparse.ArgumentParser(prog="ctxcomp", description="Compress retrieved context for RAG.")
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress to stderr")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("compress", help="compress documents for one question")
    p.add_argument("--query", required=True, help="the question")
    p.add_argument(
        "--docs", required=True, help='JSONL file (or - for stdin): {"id","text","metadata"?} or strings'
    )
    p.add_argument("--json", action="store_true", help="print the full result as JSON")
    _add_budget_args(p)
    _add_config_args(p)
    p.set_defaults(func=_cmd_compress)

    from ctxcomp.compressors.features import FAMILIES

    p = sub.add_parser("train-probe", help="train a Sentinel-style probe for a proxy model")
    p.add_argument("--model", required=True, help="proxy model spec")
    p.add_argument("--data", required=True, help="NQ-style JSONL(.gz): question, answers, ctxs (gold first)")
    p.add_argument("--out", required=True, help="probe JSON to write")
    p.add_argument(
        "--split", default="train", choices=["train", "eval", "all"], help="hash split of questions"
    )
    p.add_argument("--n-questions", type=int, default=500)
    p.add_argument(
        "--docs", type=int, default=6, help="documents per training context (gold + hard distractors)"
    )
    p.add_argument("--layers", type=int, nargs="+", help="layers to read (default: lower two thirds)")
    p.add_argument(
        "--depths",
        type=int,
        nargs="+",
        help="candidate deepest layers; the shallowest within 0.005 CV AUC of the best is kept "
        "(default: the end of each quarter of --layers)",
    )
    p.add_argument(
        "--doc-vectors",
        choices=["embed", "mean"],
        default="embed",
        help="document vectors of the embedding family: each document embedded whole (default, more "
        "accurate) or the mean of its sentence vectors (one MiniLM pass, faster)",
    )
    p.add_argument("--families", nargs="+", default=list(FAMILIES), choices=list(FAMILIES))
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=_cmd_train_probe)

    for module in (
        "ctxcomp.retrieval.cli",
        "ctxcomp.integrations.jsonl",
        "ctxcomp.compressors.calibrate_cli",
    ):
        try:
            mod = __import__(module, fromlist=["add_commands"])
        except ImportError as err:
            if err.name != module:
                raise
            continue
        mod.add_commands(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI.

    Args:
        argv: Arguments (default: ``sys.argv[1:]``).

    Returns:
        The exit status.

    Example:
        >>> main(["compress", "--query", "", "--docs", "/nonexistent"])  # doctest: +SKIP
        2
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(message)s"
    )
    try:
        return int(args.func(args))
    except CtxcompError as err:
        print(f"ctxcomp: error: {err}", file=sys.stderr)
        return EXIT_USAGE
    except BrokenPipeError:
        return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
