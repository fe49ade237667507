"""Probe ablations on the TRAIN split: which features and which fusion carry across regimes.

Usage:

    python -m benchmarks.probe_lab extract --proxy gemma-3-270m        # fill the feature cache
    python -m benchmarks.probe_lab ablate --proxy gemma-3-270m         # grouped-CV table -> JSON

Training contexts come from ``benchmarks/data`` through the package's own builder
(:func:`ctxcomp.training.contexts.training_contexts`): NQ-open questions dealt round-robin to the
dense / lexical / mixed / random regimes (4-20 documents), SQuAD same-topic contexts and HotpotQA
multi-hop contexts, train split only. Every variant is scored by 5-fold CV grouped by question,
reported per regime (mean per-question sentence AUC and within-gold-document AUC), so the choice
of the shipped probe never looks at the eval split. Writes ``benchmarks/results/ablation-<proxy>.json``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.quality import extract_set, extraction_plan
from benchmarks.regimes import DATA
from ctxcomp.training.contexts import training_contexts

HERE = Path(__file__).resolve().parent


def train_data_files() -> list[Path]:
    """The data files probes train on (every shipped set)."""
    return [
        DATA / "nq-open-dev.jsonl",
        *sorted(DATA.glob("samehop-*.jsonl")),
        *sorted(DATA.glob("multihop-*.jsonl")),
    ]


def load(proxy: str, reader_name: str, n_nq: int, only_cached: bool = False) -> list[Any]:
    """Training contexts of every file, extracted (cached)."""
    from ctxcomp.models.loader import load_tokenizer
    from ctxcomp.models.probed import ProbedLM
    from ctxcomp.retrieval import resolve_embedder
    from ctxcomp.text.tokens import TokenCounter
    from ctxcomp.training.embeddings import CachedEmbedder

    lm = ProbedLM(proxy).load()
    reader = TokenCounter(load_tokenizer(reader_name), reader_name)
    layers, hidden = extraction_plan(proxy, lm.num_layers)
    emb = CachedEmbedder(resolve_embedder(None))
    out = []
    for path in train_data_files():
        limit = n_nq if path.name.startswith("nq-") else None
        ctxs = training_contexts([path], split="train", n_docs=(4, 20), limit=limit, embedder=emb)
        t = time.perf_counter()
        out += extract_set(lm, reader, path.stem, ctxs, layers, hidden, only_cached=only_cached)
        print(
            f"{path.name}: {len(ctxs)} contexts in {time.perf_counter() - t:.0f}s",
            file=sys.stderr,
            flush=True,
        )
    return out


BASE = ("attention", "doc_attention", "embedding", "bm25", "position")
ALL = (*BASE, "within_doc", "query_attention", "hidden")
COV = (*ALL, "coverage")
NO_MINILM = ("attention", "doc_attention", "bm25", "position", "within_doc", "query_attention", "hidden")
#: name -> (families, learner, options); options: within_doc (share of within-document pairs),
#: balance (weight each data source equally: NQ pool, same-topic, multi-hop).
VARIANTS: dict[str, tuple[tuple[str, ...], str, dict[str, Any]]] = {
    "previous shipped families, logistic": (BASE, "logistic", {}),
    "no attention (MiniLM+BM25+position), logistic": (("embedding", "bm25", "position"), "logistic", {}),
    "no attention + within_doc, pairwise balanced": (
        ("embedding", "bm25", "position", "within_doc"),
        "pairwise",
        {"within_doc": 0.5, "balance": True},
    ),
    "shipped + within_doc, pairwise": ((*BASE, "within_doc"), "pairwise", {}),
    "all families, logistic": (ALL, "logistic", {}),
    "all families, pairwise": (ALL, "pairwise", {}),
    "all families, pairwise balanced": (ALL, "pairwise", {"balance": True}),
    "all families, pairwise balanced, within-doc pairs": (
        ALL,
        "pairwise",
        {"within_doc": 0.5, "balance": True},
    ),
    "all families, mlp": (ALL, "mlp", {}),
    "no MiniLM, pairwise balanced, within-doc pairs": (
        NO_MINILM,
        "pairwise",
        {"within_doc": 0.5, "balance": True},
    ),
    # the question-coverage family (idf-weighted share of question words; within-document relative)
    "all+cov, pairwise bal wd0.5 (shipped)": (COV, "pairwise", {"within_doc": 0.5, "balance": True}),
    "all-hidden+cov, pairwise bal wd0.5": (
        (*BASE, "within_doc", "query_attention", "coverage"),
        "pairwise",
        {"within_doc": 0.5, "balance": True},
    ),
    "all+cov, logistic bal": (COV, "logistic", {"balance": True}),
    "base+wd+cov, pairwise bal wd0.5": (
        (*BASE, "within_doc", "coverage"),
        "pairwise",
        {"within_doc": 0.5, "balance": True},
    ),
    "all+cov, mlp": (COV, "mlp", {}),
    "all+cov, pairwise bal wd0.25": (COV, "pairwise", {"within_doc": 0.25, "balance": True}),
    "all+cov, pairwise bal wd1.0": (COV, "pairwise", {"within_doc": 1.0, "balance": True}),
    "all+cov, pairwise bal wd2.0": (COV, "pairwise", {"within_doc": 2.0, "balance": True}),
}


def source_of(ctx: Any) -> str:
    """The data source a context came from (NQ pool regimes count as one source)."""
    return "nq" if ctx.regime in ("dense", "lexical", "mixed", "random") else ctx.regime


def run_ablation(
    data: list[Any], hidden: Sequence[int], *, folds: int = 5, k_heads: int = 16, c: float = 0.1
) -> dict:
    """Out-of-fold scores of every variant; per regime mean sentence AUC and within-gold AUC."""
    from ctxcomp.compressors.features import bm25_scores
    from ctxcomp.models.loader import cache_dir
    from ctxcomp.retrieval import resolve_embedder
    from ctxcomp.training.embeddings import CachedEmbedder
    from ctxcomp.training.fit import feature_matrix, rank_heads
    from ctxcomp.training.learners import auc_of, fit_learner, grouped_folds

    emb = CachedEmbedder(resolve_embedder(None), store=cache_dir() / "embeddings" / "probe-lab-memo.npz")
    data = [e for e in data if e.labels.any() and not e.labels.all()]
    layers = list(data[0].probe.layers)
    regimes = np.array([e.source.regime for e in data])
    fold_of = grouped_folds(len(data), folds)
    gold_masks = [np.isin(np.asarray(e.ctx.doc_of), np.asarray(e.source.gold)) for e in data]

    def report(oof: list[np.ndarray]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for r in [*sorted(set(regimes)), "all"]:
            idx = [i for i in range(len(data)) if r == "all" or regimes[i] == r]
            a = [auc_of(oof[i], data[i].labels) for i in idx]
            g = [auc_of(oof[i][gold_masks[i]], data[i].labels[gold_masks[i]]) for i in idx]
            out[r] = {"n": len(idx), "auc": float(np.nanmean(a)), "gold_auc": float(np.nanmean(g))}
        return out

    results: dict[str, Any] = {
        "baselines": {
            "minilm": report([(lambda v: v[1:] @ v[0])(emb.embed([e.question, *e.ctx.texts])) for e in data]),
            "bm25": report([bm25_scores(e.question, e.ctx.texts) for e in data]),
        },
        "variants": {},
    }
    print("baselines", json.dumps(results["baselines"]), file=sys.stderr, flush=True)
    emb.save()
    sources = np.array([source_of(e.source) for e in data])
    share = {src: float((sources == src).mean()) for src in set(sources)}
    balance_w = np.array([1.0 / (len(share) * share[src]) for src in sources])  # per context
    for name, (families, learner, opts) in VARIANTS.items():
        t = time.perf_counter()
        oof: list[np.ndarray] = [np.zeros(0)] * len(data)
        for f in range(folds):
            tr = [i for i in range(len(data)) if fold_of[i] != f]
            te = [i for i in range(len(data)) if fold_of[i] == f]
            heads = rank_heads([data[i] for i in tr], layers)[:k_heads] if "attention" in families else []
            kw = {
                "families": families,
                "layers": layers,
                "heads": heads,
                "embedder": emb,
                "hidden_layers": hidden,
            }
            xtr, ytr, gtr = feature_matrix([data[i] for i in tr], **kw)
            dtr = np.concatenate([np.asarray(data[i].ctx.doc_of) for i in tr])
            wtr = (
                np.concatenate([np.full(len(data[i].labels), balance_w[i]) for i in tr])
                if opts.get("balance")
                else None
            )
            model = fit_learner(
                learner,
                xtr,
                ytr,
                gtr,
                c=opts.get("c", c),
                docs=dtr,
                within_doc=opts.get("within_doc", 0.0),
                group_weight=wtr,
            )
            for i in te:
                x, _, _ = feature_matrix([data[i]], **kw)
                oof[i] = model.decision(x)
        results["variants"][name] = report(oof)
        brief = {r: round(v["auc"], 3) for r, v in results["variants"][name].items()}
        print(f"{name} ({time.perf_counter() - t:.0f}s)", json.dumps(brief), file=sys.stderr, flush=True)
    return results


def main(argv: Sequence[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("command", choices=["extract", "ablate"])
    ap.add_argument("--proxy", default="gemma-3-270m")
    ap.add_argument("--reader", default="qwen2.5-coder-0.5b-instruct")
    ap.add_argument("--n-nq", type=int, default=600, help="NQ training contexts (all four regimes together)")
    ap.add_argument("--only-cached", action="store_true", help="use only contexts already extracted")
    ap.add_argument("--out")
    args = ap.parse_args(argv)
    data = load(args.proxy, args.reader, args.n_nq, only_cached=args.only_cached)
    if args.command == "extract":
        return
    from ctxcomp.models.probed import ProbedLM

    _, hidden = extraction_plan(args.proxy, ProbedLM(args.proxy).load().num_layers)
    result = {
        "proxy": args.proxy,
        "split": "train",
        "cv": "5-fold grouped by question",
        **run_ablation(data, hidden),
    }
    out = Path(args.out or HERE / "results" / f"ablation-{args.proxy}.json")
    out.write_text(json.dumps(result, indent=1))
    print(f"wrote {out}", file=sys.stderr)


if __name__ == "__main__":
    main()
