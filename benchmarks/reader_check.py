"""Reader accuracy at 5x: does the reader answer as well from the compressed context as from the full one?

Usage (after ``python -m benchmarks.quality`` filled the feature cache):

    python -m benchmarks.reader_check --sets nq-dense same-topic --n 20

For the first ``--n`` eval questions of each set, the Qwen preset (the reader) answers greedily
(16 new tokens, one chat turn: "Answer the question using the documents...") from (a) the full
context, (b) the MiniLM filter's 5x selection and (c) the shipped probe's 5x selection. Both
selections go through the same exact-budget selector as ``benchmarks/quality.py`` (budget = full
context / 5 reader tokens). A question counts as answered when a gold answer string appears in the
reply (normalised substring). Intervals: 95% bootstrap over questions; ``probe_minus_minilm`` and
``probe_minus_full`` are paired. Writes ``benchmarks/results/reader-accuracy-<proxy>.json``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from benchmarks.quality import (
    HERE,
    baseline_methods,
    bootstrap,
    extract_set,
    extraction_plan,
    keep_at,
    probe_method,
)
from benchmarks.regimes import SETS, contexts


def main(argv: Sequence[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--proxy", default="gemma-3-270m")
    ap.add_argument("--reader", default="qwen2.5-coder-0.5b-instruct")
    ap.add_argument("--sets", nargs="+", default=["nq-dense", "same-topic"], choices=list(SETS))
    ap.add_argument("--n", type=int, default=20)
    ap.add_argument("--ratio", type=float, default=5.0)
    ap.add_argument("--out")
    args = ap.parse_args(argv)

    from benchmarks.peers import reader_answer
    from ctxcomp import CompressionConfig, Compressor
    from ctxcomp.compressors.trained import find_shipped_probe
    from ctxcomp.models.loader import cache_dir
    from ctxcomp.models.probed import ProbedLM
    from ctxcomp.retrieval import resolve_embedder
    from ctxcomp.training.embeddings import CachedEmbedder
    from ctxcomp.training.qa import has_answer

    lm = ProbedLM(args.proxy).load()
    reader_comp = Compressor(CompressionConfig(proxy_model=args.reader, scorer="attention")).load()
    reader = reader_comp.reader_tokens
    layers, hidden = extraction_plan(args.proxy, lm.num_layers)
    emb = CachedEmbedder(resolve_embedder(None), store=cache_dir() / "embeddings" / "quality-memo.npz")
    probe = find_shipped_probe(lm.model_id, lm.weights_sha256)
    if probe is None:
        raise SystemExit(f"no probe ships for {args.proxy}")
    methods = {"minilm": baseline_methods(args.proxy, emb, 0)["minilm"], "probe": probe_method(probe, emb)}
    result: dict = {
        "benchmark": "reader-accuracy",
        "proxy": args.proxy,
        "reader": args.reader,
        "ratio": args.ratio,
        "sets": {},
    }
    for name in args.sets:
        ctxs = contexts(name, split="eval", n=args.n, seed=0, embedder=emb)
        exs = extract_set(lm, reader, name, ctxs, layers, hidden)
        rows = []
        t = time.perf_counter()
        for e in exs:
            ctx = e.source
            full = "\n\n".join(d.text for d in ctx.docs)
            row = {"full": float(has_answer(reader_answer(reader_comp, full, ctx.question), ctx.answers))}
            for m, fn in methods.items():
                _, text, _ = keep_at(e, fn(e), args.ratio, reader)
                row[m] = float(has_answer(reader_answer(reader_comp, text, ctx.question), ctx.answers))
            rows.append(row)
        entry: dict = {"n": len(rows), "seconds": time.perf_counter() - t}
        for key in ("full", "minilm", "probe"):
            m, lo, hi = bootstrap(np.array([r[key] for r in rows]))
            entry[key] = {"mean": m, "ci95": [lo, hi]}
        for other in ("minilm", "full"):
            m, lo, hi = bootstrap(np.array([r["probe"] - r[other] for r in rows]))
            entry[f"probe_minus_{other}"] = {"mean": m, "ci95": [lo, hi]}
        result["sets"][name] = entry
        print(
            name,
            json.dumps({k: round(entry[k]["mean"], 3) for k in ("full", "minilm", "probe")}),
            file=sys.stderr,
        )
    emb.save()
    out = Path(args.out or HERE / "results" / f"reader-accuracy-{args.proxy}.json")
    out.write_text(json.dumps(result, indent=1))
    print(f"wrote {out}", file=sys.stderr)


if __name__ == "__main__":
    main()
