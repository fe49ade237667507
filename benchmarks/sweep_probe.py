"""Tune training-free scorer defaults on the TRAIN split: AUC per layer, layer ranges, score forms.

Usage: python benchmarks/sweep_probe.py --proxy qwen2.5-coder-0.5b-instruct --n 16 --docs 10
Writes benchmarks/results/sweep-<proxy>.json.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from benchmarks.nqdata import has_answer, load_examples


def auc(scores: np.ndarray, labels: np.ndarray) -> float:
    pos, neg = scores[labels], scores[~labels]
    if len(pos) == 0 or len(neg) == 0:
        return float("nan")
    order = np.argsort(np.concatenate([pos, neg]), kind="mergesort")
    ranks = np.empty(len(order))
    ranks[order] = np.arange(1, len(order) + 1)
    return float((ranks[: len(pos)].sum() - len(pos) * (len(pos) + 1) / 2) / (len(pos) * len(neg)))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--proxy", default="qwen2.5-coder-0.5b-instruct")
    ap.add_argument("--n", type=int, default=16)
    ap.add_argument("--docs", type=int, default=10)
    ap.add_argument("--m", type=int, default=1)
    args = ap.parse_args()
    from ctxcomp import CompressionConfig, Compressor
    from ctxcomp.types import Document

    exs = load_examples(split="train", n_docs=args.docs, limit=args.n)
    results: dict = {"proxy": args.proxy, "n": len(exs), "docs": args.docs, "split": "train"}
    for focus in (False, True):
        comp = Compressor(
            CompressionConfig(
                proxy_model=args.proxy, scorer="focus" if focus else "attention", query_positions=args.m
            )
        ).load()
        n_layers = comp.proxy.num_layers
        per_q = []
        t0 = time.time()
        for ex in exs:
            docs = [Document(d["id"], d["text"], d["metadata"]) for d in ex.docs]
            cands = comp.split(docs)
            feats = comp.prober(cands).features(ex.question, layers=range(n_layers), m=args.m, focus=focus)
            labels = np.array([has_answer(s.text, ex.answers) for s in cands.sentences])
            per_q.append((feats, labels))
        name = "focus" if focus else "attention"
        res: dict = {"seconds_per_q": (time.time() - t0) / len(exs)}
        lifts = [(f.lift(), f.mass, f.n_tokens, y) for f, y in per_q]
        res["auc_per_layer"] = [
            float(np.nanmean([auc(lf[li].mean(0), y) for lf, _, _, y in lifts])) for li in range(n_layers)
        ]
        ranges = {}
        for a in range(0, n_layers, 2):
            for b in range(a + 2, n_layers + 1, 2):
                ranges[f"{a}-{b - 1}"] = float(
                    np.nanmean([auc(lf[a:b].mean((0, 1)), y) for lf, _, _, y in lifts])
                )
        res["auc_ranges_top"] = dict(sorted(ranges.items(), key=lambda kv: -kv[1])[:15])
        forms = {}
        for alpha in (0, 2, 5, 10):
            vals = []
            for _, mass, ntok, _y in lifts:
                n_ctx = ntok.sum()
                sm = (mass * n_ctx + alpha) / (ntok[None, None, :] + alpha)  # smoothed lift
                vals.append(sm)
            for key, (a, b) in {"all": (0, n_layers), "mid": (n_layers // 3, 2 * n_layers // 3 + 1)}.items():
                forms[f"alpha{alpha}-{key}"] = float(
                    np.nanmean(
                        [auc(v[a:b].mean((0, 1)), y) for v, (_, _, _, y) in zip(vals, lifts, strict=True)]
                    )
                )
        forms["mass-all"] = float(np.nanmean([auc(m.mean((0, 1)), y) for _, m, _, y in lifts]))
        res["forms"] = forms
        results[name] = res
        print(name, json.dumps(res, indent=1), flush=True)
    out = Path("benchmarks/results") / f"sweep-{args.proxy}.json"
    out.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
