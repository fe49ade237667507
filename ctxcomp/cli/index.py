"""Command-line verbs for retrieval: ``index build``, ``index info`` and ``query``.

The main ``ctxcomp`` CLI calls :func:`add_parser` on its subparsers. Handlers return the exit code
(0 on success); a ctxcomp error propagates to :func:`ctxcomp.cli.main`, which prints it and exits 2.

Example:
    >>> import argparse
    >>> parser = argparse.ArgumentParser(prog="ctxcomp")
    >>> add_parser(parser.add_subparsers(dest="command"))
    >>> args = parser.parse_args(["index", "info", "my-index"])
    >>> args.func.__name__
    '_cmd_index_info'
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from ctxcomp.cli.common import EXIT_OK, add_config_args, config_from_args, report
from ctxcomp.errors import InputError

#: The embedder used when none is given (mirrors ctxcomp.retrieval.embedders.DEFAULT_EMBEDDER, which
#: is not imported here so the parser builds without numpy).
DEFAULT_EMBEDDER = "all-MiniLM-L6-v2"


def add_parser(subparsers: Any) -> None:
    """Register ``index build``, ``index info`` and ``query`` on an argparse subparsers object.

    Args:
        subparsers: What ``ArgumentParser.add_subparsers()`` returned.

    Example:
        >>> import argparse
        >>> p = argparse.ArgumentParser()
        >>> add_parser(p.add_subparsers(dest="command"))
        >>> p.parse_args(["query", "idx", "who?", "--no-compress"]).no_compress
        True
    """
    index = subparsers.add_parser("index", help="build or inspect a FAISS index of a corpus")
    index_sub = index.add_subparsers(dest="index_command", required=True)

    build = index_sub.add_parser(
        "build",
        help="embed a JSONL corpus and write an index directory",
        description='CORPUS is JSONL(.gz), one {"id": str, "text": str, "metadata": {...}} object a line.',
    )
    build.add_argument("corpus", type=Path, metavar="CORPUS.jsonl")
    build.add_argument("index_dir", type=Path, metavar="INDEX_DIR")
    build.add_argument(
        "--embedder",
        default=DEFAULT_EMBEDDER,
        help="sentence-transformers id or path, or ctxcomp/hashing-bow-<dim> "
        f"(default: {DEFAULT_EMBEDDER}, offline)",
    )
    build.add_argument("--kind", choices=["auto", "flat", "ivf", "hnsw"], default="auto", help="index type")
    build.add_argument("--skip-invalid", action="store_true", help="skip bad lines into the errors file")
    build.add_argument(
        "--errors", type=Path, default=None, metavar="FILE", help="default: INDEX_DIR.errors.jsonl"
    )
    build.add_argument(
        "--batch-size", type=int, default=None, metavar="N", help="passages per embedding batch"
    )
    build.add_argument("--device", default=None, help="embedder device (cpu, cuda, ...)")
    build.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    build.set_defaults(func=_cmd_index_build)

    info = index_sub.add_parser("info", help="describe an index directory")
    info.add_argument("index_dir", type=Path, metavar="INDEX_DIR")
    info.add_argument("--json", action="store_true", help="print the manifest as JSON")
    info.set_defaults(func=_cmd_index_info)

    query = subparsers.add_parser("query", help="retrieve from an index, then compress")
    query.add_argument("index_dir", type=Path, metavar="INDEX_DIR")
    query.add_argument("question")
    query.add_argument("--k", type=int, default=20, help="passages to retrieve (default 20)")
    size = query.add_mutually_exclusive_group()
    size.add_argument("--budget", type=int, default=None, help="token budget of the compressed context")
    size.add_argument("--ratio", type=float, default=None, help="share of tokens to keep")
    query.add_argument("--json", action="store_true", help="print JSON (CompressedContext.to_dict() shape)")
    query.add_argument("--no-compress", action="store_true", help="print the retrieved passages as they are")
    add_config_args(query)  # --device places the query embedder too
    query.set_defaults(func=_cmd_query)


def _cmd_index_build(args: argparse.Namespace) -> int:
    from ctxcomp.retrieval.embedders import resolve_embedder
    from ctxcomp.retrieval.index import FaissIndex

    errors_path = args.errors
    if args.skip_invalid and errors_path is None:
        errors_path = args.index_dir.with_name(args.index_dir.name + ".errors.jsonl")
    if args.batch_size is not None and args.batch_size < 1:
        raise InputError("--batch-size", "must be a positive int", "pass e.g. --batch-size 64")
    index = FaissIndex.build(
        args.corpus,
        resolve_embedder(args.embedder, device=args.device),
        kind=args.kind,
        batch_size=args.batch_size,
        progress=False if args.no_progress else None,
        skip_invalid=args.skip_invalid,
        errors_path=errors_path if args.skip_invalid else None,
    )
    index.save(args.index_dir)
    if index.skipped:
        print(f"skipped {len(index.skipped)} invalid line(s); see {errors_path}", file=sys.stderr)
    print(f"indexed {len(index)} documents into {args.index_dir} ({_describe(index.info())})")
    return EXIT_OK


def _describe(info: dict[str, Any]) -> str:
    parts = [f"kind={info.get('kind')}", f"dim={info.get('dim')}", f"embedder={info.get('embedder')}"]
    search = info.get("search", info)
    parts += [f"{key}={search[key]}" for key in ("nlist", "nprobe", "ef_search") if key in search]
    cal = info.get("calibration") or {}
    if cal:
        parts.append(f"calibrated recall@{cal.get('k')}={cal.get('recall')}")
    return ", ".join(parts)


def _cmd_index_info(args: argparse.Namespace) -> int:
    from ctxcomp.retrieval.index import FaissIndex

    manifest = FaissIndex.read_manifest(args.index_dir)
    if args.json:
        print(json.dumps(manifest, indent=2, sort_keys=True))
        return EXIT_OK
    size = sum(int(f.get("size", 0)) for f in manifest["files"].values())
    print(f"{args.index_dir}: {manifest['count']} documents, {size / 1e6:.1f} MB")
    print(f"  {_describe(manifest)}")
    print(f"  built by ctxcomp {manifest.get('ctxcomp_version')} at {manifest.get('created_at')}")
    return EXIT_OK


def _cmd_query(args: argparse.Namespace) -> int:
    from ctxcomp.retrieval.index import FaissIndex

    index = FaissIndex.load(args.index_dir, embedder=_query_embedder(args))
    if args.no_compress:
        docs = index.search(args.question, k=args.k)
        if args.json:
            out = {
                "query": args.question,
                "documents": [
                    {
                        "id": d.id,
                        "text": d.text,
                        "metadata": d.metadata,
                        "score": d.metadata["ctxcomp_retrieval_score"],
                    }
                    for d in docs
                ],
            }
            print(json.dumps(out, ensure_ascii=False, indent=2))
        else:
            for rank, d in enumerate(docs, start=1):
                print(f"[{rank}] {d.id}  score={d.metadata['ctxcomp_retrieval_score']:.4f}\n{d.text}\n")
        return EXIT_OK
    from ctxcomp.api import Compressor
    from ctxcomp.retrieval.pipeline import Pipeline

    ctx = Pipeline(index, Compressor(config_from_args(args))).run(
        args.question, k=args.k, budget=args.budget, ratio=args.ratio
    )
    if args.json:
        print(json.dumps(ctx.to_dict(), ensure_ascii=False, indent=2))
    else:
        print(ctx.text)
        report(ctx.stats)
    return EXIT_OK


def _query_embedder(args: argparse.Namespace) -> Any:
    if args.device is None:
        return None
    from ctxcomp.retrieval.embedders import resolve_embedder
    from ctxcomp.retrieval.index import FaissIndex

    return resolve_embedder(FaissIndex.read_manifest(args.index_dir)["embedder"], device=args.device)


__all__ = ["add_parser"]
