"""Scorer quality in every retrieval regime, side by side, with paired intervals.

Usage (from a clean checkout, after ``make setup``):

    python -m benchmarks.quality --proxy gemma-3-270m --n 200            # all sets, eval split
    python -m benchmarks.quality --n 20 --quick      # a quick look (make bench-quality-quick)
    python -m benchmarks.quality --extract-only ...                      # fill the feature cache only
    python -m benchmarks.quality --n 200 --n-e2e 25   # plus compress() end to end on 25 a set

Sets (``benchmarks/regimes.py``): NQ-open with dense / lexical / mixed / random distractors (other
questions' answer-free passages, 20 documents), SQuAD same-topic (same-article paragraphs, 10
documents) and HotpotQA multi-hop in its distractor setting (2 gold + 8 same-topic paragraphs).

Every method ranks the same sentences and is pruned by the same exact-budget greedy selector
(``ctxcomp.compressors.prune``, budgets ``original / ratio`` reader tokens, documents in input
order), so differences are ranking differences. Methods: trained probes (the shipped one and any
``--probe FILE``), the training-free ``attention`` lift, a MiniLM sentence filter (LangChain
EmbeddingsFilter-style cosine), BM25 over the context's sentences, and random.

Metrics per set: sentence AUC (answer-bearing / supporting-fact sentences vs the rest), the same
AUC inside the gold document(s) only, answer recall at 2x/3x/5x/10x, and for multi-hop the share
of questions whose every supporting fact survives. Each comes with a 95% bootstrap interval over
questions, and each method's per-question difference to the MiniLM filter and to BM25 with a 95%
paired bootstrap interval.

Writes ``benchmarks/results/quality-regimes-<proxy>.json`` and a PNG plot beside it.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.regimes import SETS, contexts
from ctxcomp.compressors.features import bm25_scores, build_features
from ctxcomp.compressors.prune import DocCounts, assemble, fit_exactly, select
from ctxcomp.compressors.trained import TrainedProbe, find_shipped_probe, load_probe
from ctxcomp.models.presets import PRESETS
from ctxcomp.models.probed import ProbedLM
from ctxcomp.text.split import split_documents
from ctxcomp.training.contexts import QAContext, all_facts_kept
from ctxcomp.training.embeddings import CachedEmbedder
from ctxcomp.training.examples import ExtractedExample, extract, features_cache
from ctxcomp.training.fit import auc, restrict
from ctxcomp.training.qa import has_answer

HERE = Path(__file__).resolve().parent
RATIOS = (2.0, 3.0, 5.0, 10.0)
#: Pooled hidden layers per proxy (the ``hidden`` family); extraction reads layers 0..deepest.
HIDDEN = {"gemma-3-270m": (5, 8, 11), "qwen2.5-coder-0.5b-instruct": (7, 11, 15)}
DEPTH = {"gemma-3-270m": 11, "qwen2.5-coder-0.5b-instruct": 15}

Scores = Callable[[ExtractedExample], np.ndarray]


# ---------------------------------------------------------------------------------------------- features
def extraction_plan(proxy: str, n_layers: int) -> tuple[list[int], tuple[int, ...]]:
    """Layers (0..deepest) and pooled hidden layers extracted for ``proxy``."""
    deepest = DEPTH.get(proxy, (2 * n_layers) // 3 - 1)
    hidden = HIDDEN.get(proxy, (deepest // 2, deepest))
    return list(range(deepest + 1)), hidden


def extract_set(
    lm: ProbedLM,
    reader: Any,
    name: str,
    ctxs: list[QAContext],
    layers: list[int],
    hidden: Sequence[int],
    only_cached: bool = False,
) -> list[ExtractedExample]:
    """Prefill features of one set (cached per question under the ctxcomp cache, resumable)."""
    cache = features_cache(lm, getattr(reader, "name", ""))
    return extract(
        lm,
        ctxs,
        layers=layers,
        groups=("last", "query"),
        hidden_layers=hidden,
        reader=reader,
        cache=cache,
        progress=sys.stderr.isatty(),
        only_cached=only_cached,
    )


# ---------------------------------------------------------------------------------------------- methods
def probe_method(probe: TrainedProbe, embedder: Any) -> Scores:
    """Scores of a trained probe from cached features."""

    def run(e: ExtractedExample) -> np.ndarray:
        p = restrict(e.probe, probe.layers) if probe.layers else e.probe
        x = build_features(
            e.ctx,
            p,
            families=probe.families,
            heads=probe.heads,
            embedder=embedder,
            doc_vectors=probe.doc_vectors,
            hidden_layers=getattr(probe, "hidden_layers", ()),
        )
        return probe.decision(x)

    return run


def baseline_methods(proxy: str, embedder: Any, seed: int) -> dict[str, Scores]:
    """The training-free attention lift, the MiniLM filter, BM25 and random."""
    layers = PRESETS[proxy].probe_layers if proxy in PRESETS else ()
    rng = np.random.default_rng(seed)

    def attention(e: ExtractedExample) -> np.ndarray:
        lays = [li for li in layers if li in e.probe.layers] or list(e.probe.layers[-2:])
        return restrict(e.probe, lays).lift().mean((0, 1)).astype(np.float64)

    def minilm(e: ExtractedExample) -> np.ndarray:
        v = embedder.embed([e.question, *e.ctx.texts])
        return v[1:] @ v[0]

    return {
        "attention": attention,
        "minilm": minilm,
        "bm25": lambda e: bm25_scores(e.question, e.ctx.texts),
        "random": lambda e: rng.random(len(e.labels)),
    }


# ---------------------------------------------------------------------------------------------- metrics
def keep_at(
    e: ExtractedExample, scores: np.ndarray, ratio: float, reader: Any
) -> tuple[list[bool], str, int]:
    """The library's exact-budget selection at ``ratio`` (documents in input order)."""
    ctx: QAContext = e.source
    docs = list(ctx.docs)
    cands = split_documents(docs)
    original = reader.count("\n\n".join(d.text for d in docs))
    budget = max(1, int(original / ratio))
    n_tok = [int(x) for x in e.n_tokens_reader]
    counts = DocCounts(docs, cands.sentences, cands.doc_of, count=reader.count)
    kept = select(scores, n_tok, budget, count=counts.total)
    order = list(range(len(docs)))
    kept, text, _ = fit_exactly(
        kept, scores, budget, render=lambda k: assemble(docs, order, cands.sentences, k), count=reader.count
    )
    return kept, text, original


def per_question(e: ExtractedExample, scores: np.ndarray, reader: Any) -> dict[str, float]:
    """Every metric of one question for one method (NaN where undefined)."""
    ctx: QAContext = e.source
    y = e.labels
    out = {"auc": auc(scores, y) if 0 < y.sum() < len(y) else float("nan")}
    gold = np.isin(np.asarray(e.ctx.doc_of), np.asarray(ctx.gold))
    yg = y[gold]
    out["gold_auc"] = auc(scores[gold], yg) if 0 < yg.sum() < len(yg) else float("nan")
    cands = split_documents(list(ctx.docs))
    for r in RATIOS:
        kept, text, _ = keep_at(e, scores, r, reader)
        out[f"recall@{r:g}x"] = float(has_answer(text, ctx.answers))
        if ctx.support:
            out[f"facts@{r:g}x"] = float(all_facts_kept(ctx, cands, kept))
    return out


def bootstrap(x: np.ndarray, n_boot: int = 2000, seed: int = 0) -> tuple[float, float, float]:
    """Mean and 95% percentile bootstrap interval of ``x`` (NaNs dropped)."""
    x = np.asarray(x, dtype=np.float64)
    x = x[np.isfinite(x)]
    if len(x) == 0:
        return float("nan"), float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    means = x[rng.integers(0, len(x), size=(n_boot, len(x)))].mean(axis=1)
    return float(x.mean()), float(np.quantile(means, 0.025)), float(np.quantile(means, 0.975))


def summarise(
    table: dict[str, list[dict[str, float]]], baselines: Sequence[str] = ("minilm", "bm25")
) -> dict:
    """Per method: each metric's mean with CI, and paired differences to the baselines."""
    out: dict[str, Any] = {}
    for method, rows in table.items():
        entry: dict[str, Any] = {"n": len(rows)}
        for metric in rows[0]:
            vals = np.array([r[metric] for r in rows])
            m, lo, hi = bootstrap(vals)
            entry[metric] = {"mean": m, "ci95": [lo, hi], "n": int(np.isfinite(vals).sum())}
            for b in baselines:
                if b == method or b not in table:
                    continue
                diff = vals - np.array([r[metric] for r in table[b]])
                dm, dlo, dhi = bootstrap(diff)
                entry[metric][f"minus_{b}"] = {"mean": dm, "ci95": [dlo, dhi]}
        out[method] = entry
    return out


def end_to_end(
    comp: Any, exs: Sequence[ExtractedExample], n: int, ratios: Sequence[float] = (5.0, 10.0)
) -> dict[str, Any]:
    """The library's own ``compress()`` (default scorer, real prefills, reader-token budgets) on
    the first ``n`` questions of a set: answer recall (facts for multi-hop), achieved compression
    and seconds per call, each with a 95% bootstrap interval."""
    rows: list[dict[str, float]] = []
    for e in list(exs)[:n]:
        ctx: QAContext = e.source
        cands = split_documents(list(ctx.docs))
        row: dict[str, float] = {}
        for r in ratios:
            t = time.perf_counter()
            res = comp.compress(ctx.question, list(ctx.docs), ratio=1.0 / r)
            row[f"seconds@{r:g}x"] = time.perf_counter() - t
            row[f"recall@{r:g}x"] = float(has_answer(res.text, ctx.answers))
            row[f"compression@{r:g}x"] = res.stats.compression
            if ctx.support:
                kept = [s.kept for s in res.sentences]
                row[f"facts@{r:g}x"] = float(all_facts_kept(ctx, cands, kept))
        rows.append(row)
    out: dict[str, Any] = {"n": len(rows), "scorer": comp.config.scorer}
    for metric in rows[0] if rows else []:
        m, lo, hi = bootstrap(np.array([r[metric] for r in rows]))
        out[metric] = {"mean": m, "ci95": [lo, hi]}
    return out


# ---------------------------------------------------------------------------------------------- main
def main(argv: Sequence[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--proxy", default="gemma-3-270m")
    ap.add_argument(
        "--reader",
        default="qwen2.5-coder-0.5b-instruct",
        help="tokenizer that counts every budget (the reader's); the same for every proxy",
    )
    ap.add_argument("--sets", nargs="+", default=list(SETS), choices=list(SETS))
    ap.add_argument("--n", type=int, default=200, help="eval questions per set (at most)")
    ap.add_argument("--probe", nargs="*", default=[], help="extra probe JSON files to evaluate")
    ap.add_argument("--no-shipped", action="store_true", help="skip the probe shipped for the proxy")
    ap.add_argument("--extract-only", action="store_true", help="fill the feature cache, report nothing")
    ap.add_argument("--quick", action="store_true", help="a quick look: no plot, results under a -quick name")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--n-e2e", type=int, default=0, help="questions per set also run through compress() end to end"
    )
    ap.add_argument("--out")
    args = ap.parse_args(argv)
    suffix = "-quick" if args.quick else ""
    out_path = Path(args.out or HERE / "results" / f"quality-regimes-{args.proxy}{suffix}.json")

    from ctxcomp.models.loader import load_tokenizer
    from ctxcomp.retrieval import resolve_embedder
    from ctxcomp.text.tokens import TokenCounter

    lm = ProbedLM(args.proxy).load()
    reader = TokenCounter(load_tokenizer(args.reader), args.reader)
    layers, hidden = extraction_plan(args.proxy, lm.num_layers)
    from ctxcomp.models.loader import cache_dir

    emb = CachedEmbedder(resolve_embedder(None), store=cache_dir() / "embeddings" / "quality-memo.npz")
    data: dict[str, list[ExtractedExample]] = {}
    for name in args.sets:
        t = time.perf_counter()
        ctxs = contexts(name, split="eval", n=args.n, seed=args.seed, embedder=emb)
        data[name] = extract_set(lm, reader, name, ctxs, layers, hidden)
        print(f"{name}: {len(ctxs)} contexts in {time.perf_counter() - t:.0f}s", file=sys.stderr, flush=True)
    if args.extract_only:
        emb.save()
        return

    methods = baseline_methods(args.proxy, emb, args.seed)
    probes: dict[str, TrainedProbe] = {}
    if not args.no_shipped:
        shipped = find_shipped_probe(lm.model_id, lm.weights_sha256)
        if shipped is not None:
            probes["probe-shipped"] = shipped
    for path in args.probe:
        probes[f"probe:{Path(path).stem}"] = load_probe(path)
    for name, p in probes.items():
        methods[name] = probe_method(p, emb)

    result: dict[str, Any] = {
        "benchmark": "quality-regimes",
        "proxy": args.proxy,
        "reader_tokenizer": args.reader,
        "ratios": list(RATIOS),
        "selection": "greedy by score under the exact reader-token budget, documents in input order",
        "intervals": "95% percentile bootstrap over questions (2000 resamples); minus_<b>: paired",
        "probes": {
            k: {"path": str(p.path.name) if p.path else None, "families": list(p.families)}
            for k, p in probes.items()
        },
        "sets": {},
    }
    for name, exs in data.items():
        table = {m: [per_question(e, fn(e), reader) for e in exs] for m, fn in methods.items()}
        result["sets"][name] = {"n": len(exs), "methods": summarise(table)}
        brief = {m: round(v["auc"]["mean"], 3) for m, v in result["sets"][name]["methods"].items()}
        print(name, "AUC", json.dumps(brief), file=sys.stderr, flush=True)
        emb.save()
    if args.n_e2e:
        from ctxcomp import CompressionConfig, Compressor

        comp = Compressor(CompressionConfig(proxy_model=args.proxy, reader_tokenizer=args.reader)).load()
        for name, exs in data.items():
            result["sets"][name]["end_to_end"] = e2e = end_to_end(comp, exs, args.n_e2e)
            key = "facts" if name == "multihop" else "recall"
            print(
                name,
                "end-to-end",
                key,
                {k: round(v["mean"], 3) for k, v in e2e.items() if key in k},
                file=sys.stderr,
                flush=True,
            )
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.write_text(json.dumps(result, indent=1))
    if not args.quick:
        plot(result, out_path.with_suffix(".png"))
    print(f"wrote {out_path}", file=sys.stderr)


def plot(result: dict, path: Path) -> None:
    """Recall (facts for multi-hop) vs ratio per set, one line per method."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib not installed; skipping the plot", file=sys.stderr)
        return
    sets = list(result["sets"])
    fig, axes = plt.subplots(1, len(sets), figsize=(3.2 * len(sets), 3.2), squeeze=False)
    for ax, name in zip(axes[0], sets, strict=True):
        methods = result["sets"][name]["methods"]
        key = "facts" if name == "multihop" else "recall"
        for m, v in methods.items():
            ys = [v[f"{key}@{r:g}x"]["mean"] for r in result["ratios"]]
            ax.plot(result["ratios"], ys, marker="o", label=m)
        ax.set_title(f"{name} ({key})", fontsize=9)
        ax.set_xlabel("compression (x)")
        ax.set_ylim(0, 1.02)
    axes[0][0].legend(fontsize=6)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    main()
