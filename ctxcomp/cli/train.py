"""``ctxcomp train-probe``: train a Sentinel-style probe for a proxy model.

Example:
    $ ctxcomp train-probe --model gemma-3-270m --data benchmarks/data/nq-open-dev.jsonl --out my-probe.json
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from ctxcomp.cli.common import EXIT_OK

#: Feature families a probe may use (mirrors ctxcomp.compressors.features.FAMILIES; kept here so the
#: parser builds without importing numpy-heavy modules).
_FAMILIES = ("attention", "doc_attention", "embedding", "bm25", "position")


def add_parser(sub: Any) -> None:
    """Register ``train-probe``.

    Args:
        sub: What ``ArgumentParser.add_subparsers()`` returned.

    Example:
        >>> import argparse
        >>> p = argparse.ArgumentParser()
        >>> add_parser(p.add_subparsers(dest="command"))
        >>> p.parse_args(["train-probe", "--model", "m", "--data", "d", "--out", "o"]).docs
        6
    """
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
    p.add_argument("--families", nargs="+", default=list(_FAMILIES), choices=list(_FAMILIES))
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Run ``ctxcomp train-probe``.

    Args:
        args: Parsed arguments.

    Returns:
        The exit status.
    """
    from ctxcomp.training.fit import train_probe

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
