"""``ctxcomp train-probe``: train a Sentinel-style probe for a proxy model.

Example:
    $ ctxcomp train-probe --model gemma-3-270m --data benchmarks/data/*.jsonl --out my-probe.json
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from ctxcomp.cli.common import EXIT_OK

#: Feature families and NQ regimes (mirrors ctxcomp.compressors.features.FAMILIES and
#: ctxcomp.training.contexts.NQ_REGIMES; kept here so the parser builds without importing numpy).
_FAMILIES = (
    "attention",
    "doc_attention",
    "embedding",
    "bm25",
    "position",
    "query_attention",
    "hidden",
    "within_doc",
    "coverage",
)
_NQ_REGIMES = ("dense", "lexical", "mixed", "random")


def add_parser(sub: Any) -> None:
    """Register ``train-probe``.

    Args:
        sub: What ``ArgumentParser.add_subparsers()`` returned.

    Example:
        >>> import argparse
        >>> p = argparse.ArgumentParser()
        >>> add_parser(p.add_subparsers(dest="command"))
        >>> p.parse_args(["train-probe", "--model", "m", "--data", "d", "--out", "o"]).docs
        [4, 20]
    """
    p = sub.add_parser(
        "train-probe",
        help="train a probe for a proxy model on contexts of several retrieval regimes",
        description="Each --data file is built by its kind: NQ-open rows (question, answers, ctxs) are dealt "
        "to the --nq-regimes distractor regimes; same-topic rows (gold, distractors) and HotpotQA-style rows "
        "(context, supporting_facts) keep their own distractors. See docs/probes.md.",
    )
    p.add_argument("--model", required=True, help="proxy model spec")
    p.add_argument("--data", required=True, nargs="+", help="JSONL(.gz) files (see the description)")
    p.add_argument("--out", required=True, help="probe JSON to write")
    p.add_argument(
        "--split", default="train", choices=["train", "eval", "all"], help="hash split of questions"
    )
    p.add_argument("--n-questions", type=int, default=600, help="NQ-open contexts (default 600)")
    p.add_argument(
        "--docs",
        type=int,
        nargs="+",
        default=[4, 20],
        help="NQ documents per context: N, or LOW HIGH (default 4 20)",
    )
    p.add_argument(
        "--nq-regimes",
        nargs="+",
        default=list(_NQ_REGIMES),
        choices=list(_NQ_REGIMES),
        help="distractor regimes NQ questions are dealt to (default: all four)",
    )
    p.add_argument("--layers", type=int, nargs="+", help="layers to read (default: lower two thirds)")
    p.add_argument(
        "--hidden-layers", type=int, nargs="+", help="pooled hidden layers (default: middle to deepest)"
    )
    p.add_argument(
        "--depths",
        type=int,
        nargs="+",
        help="candidate deepest layers; the shallowest within 0.005 of the best CV objective is kept "
        "(default: the end of each quarter of --layers)",
    )
    p.add_argument("--learner", choices=["pairwise", "logistic"], default="pairwise")
    p.add_argument("--within-doc", type=float, default=0.5, help="share of within-document pairs (pairwise)")
    p.add_argument("--no-balance", action="store_true", help="do not weight data sources equally")
    p.add_argument(
        "--doc-vectors",
        choices=["embed", "mean"],
        default="embed",
        help="document vectors of the embedding family: each document embedded whole (default) or the mean "
        "of its sentence vectors (one MiniLM pass, faster)",
    )
    p.add_argument("--families", nargs="+", default=list(_FAMILIES), choices=list(_FAMILIES))
    p.add_argument("--reader", help="reader tokenizer cached with the features (default: the proxy's)")
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
    from ctxcomp.errors import InputError
    from ctxcomp.training.train import train_probe

    if len(args.docs) not in (1, 2) or min(args.docs) < 1:
        raise InputError("--docs", f"must be N or LOW HIGH (>= 1), got {args.docs}", "pass e.g. --docs 4 20")
    n_docs = args.docs[0] if len(args.docs) == 1 else (min(args.docs), max(args.docs))
    probe = train_probe(
        args.model,
        args.data,
        args.out,
        split=args.split,
        n_questions=args.n_questions,
        n_docs=n_docs,
        nq_regimes=args.nq_regimes,
        layers=args.layers,
        hidden_layers=args.hidden_layers,
        families=args.families,
        learner=args.learner,
        within_doc=args.within_doc,
        balance=not args.no_balance,
        seed=args.seed,
        progress=not args.no_progress,
        depths=args.depths,
        doc_vectors=args.doc_vectors,
        reader=args.reader,
        command="ctxcomp " + " ".join(sys.argv[1:]) if sys.argv[0].endswith("ctxcomp") else None,
    )
    cv = probe.meta["cv"]
    auc = "n/a" if cv["auc"] is None else f"{cv['auc']:.3f}"
    print(
        f"wrote {args.out}: CV objective {auc} (C={cv['C']}, {cv['k_heads']} heads, "
        f"deepest layer {max(probe.layers) if probe.layers else '-'}, "
        f"{probe.meta['training']['n_questions']} contexts)",
        file=sys.stderr,
    )
    return EXIT_OK
