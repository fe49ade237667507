"""Peers benchmark (``make bench-peers``): LongLLMLingua and the earlier single-regime table, on NQ
with MiniLM-nearest distractors (the regime benchmarks/quality.py calls ``nq-dense``).

Usage (from a clean checkout, after ``make setup peers-venv``):

    python -m benchmarks.peers --data benchmarks/data/nq-open-dev.jsonl --split eval --docs 20 \
        --ratios 2 5 10 [--proxy qwen2.5-coder-0.5b-instruct]

All methods see the same inputs: each eval question's gold passage plus 19 hard distractors
(MiniLM neighbours among other questions' passages, answer-free), gold at a seeded random slot.
Budgets are ``original_tokens / ratio`` under the reader tokenizer (the proxy's), and every method
is pruned by the same exact-budget selector, so achieved ratios are comparable.

Methods: ctxcomp ``probe`` (fused default), ``probe_attn`` (attention families only),
``attention`` and ``focus`` (training-free), a MiniLM sentence filter (LangChain
EmbeddingsFilter-style cosine), BM25 over sentences, random, and LongLLMLingua (the ``llmlingua``
package with the SAME proxy). LLMLingua-2 needs xlm-roberta/mBERT token classifiers that cannot
be obtained here; it is reported as unavailable rather than substituted.

Writes ``benchmarks/results/quality-<proxy>.json`` and a PNG plot.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from ctxcomp import CompressionConfig, Compressor
from ctxcomp.compressors.features import bm25_scores, build_features
from ctxcomp.compressors.prune import assemble, select
from ctxcomp.compressors.trained import TrainedProbe, find_shipped_probe, load_probe
from ctxcomp.models.loader import cache_dir
from ctxcomp.training.embeddings import CachedEmbedder
from ctxcomp.training.examples import ExtractedExample, build_examples, extract
from ctxcomp.training.fit import auc, fit_probe, restrict
from ctxcomp.training.qa import has_answer, read_jsonl

HERE = Path(__file__).resolve().parent
DEFAULT_DATA = HERE / "data" / "nq-open-dev.jsonl"


def prune_recall(
    comp: Compressor, ex: Any, sp: Any, scores: np.ndarray, ratio: float
) -> tuple[bool, float, int]:
    """Apply the exact-budget selector; return (answer kept, achieved ratio, kept tokens)."""
    reader = comp.reader_tokens
    original = reader.count("\n\n".join(d.text for d in ex.docs))
    budget = max(1, int(original / ratio))
    n_tok = reader.count_many([s.text for s in sp.sentences])
    kept = select(scores, n_tok, budget, count=_counter(reader, ex.docs, sp.sentences))
    text = assemble(ex.docs, list(range(len(ex.docs))), sp.sentences, kept)
    kt = reader.count(text)
    return has_answer(text, ex.answers), original / max(kt, 1), kt


def _counter(reader: Any, docs: Any, sentences: Any) -> Any:
    order = list(range(len(docs)))
    return lambda k: reader.count(assemble(docs, order, sentences, k))


def probe_scores(probe: TrainedProbe, e: ExtractedExample, embedder: Any) -> np.ndarray:
    p = restrict(e.probe, probe.layers) if probe.layers else None
    return probe.decision(
        build_features(
            e.ctx,
            p,
            families=probe.families,
            heads=probe.heads,
            embedder=embedder,
            doc_vectors=probe.doc_vectors,
        )
    )


def lift_scores(e: ExtractedExample, layers: tuple[int, ...]) -> np.ndarray:
    return restrict(e.probe, layers).lift().mean((0, 1)).astype(np.float64)


class Memo:
    """Per-item results of the slow peers and the reader, kept across runs (a JSONL under the cache).

    A rerun with more questions computes only the new ones; keys hash everything that decides the
    result (model weights, inputs, settings).
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.data: dict[str, Any] = {}
        self._load()

    def _load(self) -> None:
        if self.path.is_file():
            for line in self.path.read_text().splitlines():
                try:
                    rec = json.loads(line)
                except json.JSONDecodeError:  # blank, or a line another run is still writing
                    continue
                self.data[rec["key"]] = rec["value"]

    @staticmethod
    def key(*parts: Any) -> str:
        return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:32]

    def get(self, key: str) -> Any:
        if key not in self.data:
            self._load()  # another run may have added it meanwhile
        return self.data.get(key)

    def put(self, key: str, value: Any) -> None:
        self.data[key] = value
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a") as f:
            f.write(json.dumps({"key": key, "value": value}) + "\n")


_MEMO: Memo | None = None


def memo() -> Memo:
    global _MEMO
    if _MEMO is None:
        _MEMO = Memo(cache_dir() / "bench" / "quality-memo.jsonl")
    return _MEMO


def run_llmlingua(python: str, location: str, comp: Compressor, items: list[Any], ratio: float) -> list[dict]:
    """LongLLMLingua with the same proxy, in the peers environment (see llmlingua_worker.py)."""
    import subprocess

    keys = [
        Memo.key("longllmlingua", location, ratio, [d.text for d in ex.docs], ex.question) for ex in items
    ]
    todo = [i for i, k in enumerate(keys) if memo().get(k) is None]
    if todo:
        payload = "".join(
            json.dumps(
                {"docs": [d.text for d in items[i].docs], "question": items[i].question, "ratio": ratio}
            )
            + "\n"
            for i in todo
        )
        worker = str(HERE / "llmlingua_worker.py")
        res = subprocess.run([python, worker, location], input=payload, capture_output=True, text=True)
        if res.returncode != 0:
            raise RuntimeError(res.stderr[-1500:])
        for i, line in zip(todo, res.stdout.strip().splitlines(), strict=True):
            r = json.loads(line)
            memo().put(keys[i], {"text": r["text"], "seconds": r["seconds"]})
    reader = comp.reader_tokens
    out = []
    for ex, k in zip(items, keys, strict=True):
        r = memo().get(k)
        text = r["text"].replace(ex.question, "")  # judge and count the context only
        original = reader.count("\n\n".join(d.text for d in ex.docs))
        kt = reader.count(text)
        out.append(
            {
                "recall": has_answer(text, ex.answers),
                "achieved_ratio": original / max(kt, 1),
                "seconds": r["seconds"],
            }
        )
    return out


def reader_answer(comp: Compressor, context: str, question: str, max_new_tokens: int = 16) -> str:
    """The reader's greedy answer (memoised per reader weights, context and question)."""
    src = comp.proxy.source
    key = Memo.key("reader", src.model_id, src.weights_sha256, context, question, max_new_tokens)
    hit = memo().get(key)
    if hit is None:
        hit = _reader_answer(comp, context, question, max_new_tokens)
        memo().put(key, hit)
    return str(hit)


def _reader_answer(comp: Compressor, context: str, question: str, max_new_tokens: int) -> str:
    import torch

    tok = comp.proxy.tokenizer
    msg = (
        "Answer the question using the documents. Reply with a short answer only.\n\n"
        f"{context}\n\nQuestion: {question}"
    )
    try:
        ids = tok.apply_chat_template(
            [{"role": "user", "content": msg}],
            add_generation_prompt=True,
            return_tensors="pt",
            return_dict=True,
        )["input_ids"]
    except Exception:  # tokenizer without a chat template
        ids = tok(msg + "\nAnswer:", return_tensors="pt")["input_ids"]
    with torch.inference_mode():
        out = comp.proxy.model.generate(ids, max_new_tokens=max_new_tokens, do_sample=False)
    return str(tok.decode(out[0, ids.shape[1] :], skip_special_tokens=True))


def _llmlingua_section(
    args: argparse.Namespace, src: Any, comp: Compressor, examples: list, splits: list, probe: list
) -> dict[str, Any]:
    """LongLLMLingua at each requested ratio on the first ``n_llmlingua`` examples, plus ctxcomp's probe
    on the same subset at LongLLMLingua's ACHIEVED ratio."""
    try:
        ll: dict[str, Any] = {"n": args.n_llmlingua, "env": "side venv: transformers 4.46.3, llmlingua 0.2.2"}
        for r in args.llmlingua_ratios:
            runs = run_llmlingua(args.peers_python, src.location, comp, examples[: args.n_llmlingua], r)
            ll[f"recall@{r:g}x"] = float(np.mean([x["recall"] for x in runs]))
            ach = float(np.mean([x["achieved_ratio"] for x in runs]))
            ll[f"achieved_ratio@{r:g}x"] = ach
            ll[f"seconds_per_example@{r:g}x"] = float(np.median([x["seconds"] for x in runs]))
            ll["seconds_per_example"] = float(
                np.median([ll[k] for k in ll if k.startswith("seconds_per_example@")])
            )
            ll[f"probe_recall_same_subset_at_achieved@{r:g}x"] = float(
                np.mean(
                    [prune_recall(comp, examples[i], splits[i], probe[i], ach)[0] for i in range(len(runs))]
                )
            )
            print("longllmlingua", json.dumps(ll), file=sys.stderr, flush=True)
        return ll
    except Exception as err:  # the peer failing must not lose our numbers; record why
        return {"error": f"{type(err).__name__}: {err}"[-3000:]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=str(DEFAULT_DATA))
    ap.add_argument("--split", default="eval")
    ap.add_argument("--docs", type=int, default=20)
    ap.add_argument("--ratios", type=float, nargs="+", default=[2, 5, 10])
    ap.add_argument("--proxy", default="qwen2.5-coder-0.5b-instruct")
    ap.add_argument(
        "--reader",
        default="qwen2.5-coder-0.5b-instruct",
        help="reader model: its tokenizer counts every budget and ratio, and it answers for the reader "
        "accuracy (the same reader for every proxy, so proxies compare on equal terms)",
    )
    ap.add_argument("--probe", help="fused probe JSON (default: the probe shipped for the proxy)")
    ap.add_argument(
        "--probe-attn", help="attention-only probe JSON (default benchmarks/probes/<proxy>-attn.json)"
    )
    ap.add_argument("--n", type=int, default=60, help="eval questions")
    ap.add_argument("--n-focus", type=int, default=20)
    ap.add_argument("--n-llmlingua", type=int, default=20)
    ap.add_argument("--n-reader", type=int, default=30)
    ap.add_argument("--llmlingua-ratios", type=float, nargs="+", default=[5, 10])
    ap.add_argument(
        "--peers-python",
        default=str(HERE.parent / ".venv-peers" / "bin" / "python"),
        help="python of the side environment with llmlingua + transformers 4.x (make peers-venv)",
    )
    ap.add_argument("--n-latency", type=int, default=5)
    ap.add_argument(
        "--only-llmlingua", action="store_true", help="run only LongLLMLingua (merged into --out)"
    )
    ap.add_argument("--only-curves", action="store_true", help="compute only the curves (into --out)")
    ap.add_argument(
        "--curves", action="store_true", help="learning curve and AUC vs deepest layer (train split)"
    )
    ap.add_argument("--n-train", type=int, default=500)
    ap.add_argument("--train-docs", type=int, default=4)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--out")
    args = ap.parse_args()
    out_path = Path(args.out or HERE / "results" / f"quality-{args.proxy}.json")

    rows = read_jsonl(args.data)
    from ctxcomp.retrieval import resolve_embedder

    emb = CachedEmbedder(resolve_embedder(None))
    examples = build_examples(
        rows, split=args.split, n_docs=args.docs, seed=args.seed, limit=args.n, embedder=emb
    )
    comp = Compressor(
        CompressionConfig(proxy_model=args.proxy, scorer="attention", reader_tokenizer=args.reader)
    ).load()
    src = comp.proxy.source
    probe = load_probe(args.probe) if args.probe else find_shipped_probe(src.model_id, src.weights_sha256)
    if probe is None:
        sys.exit(f"no shipped probe for {args.proxy}; train one first (docs/probes.md)")
    attn_path = Path(args.probe_attn or HERE / "probes" / f"{args.proxy}-attn.json")
    probe_attn = load_probe(attn_path) if attn_path.is_file() else None
    from ctxcomp.models.presets import PRESETS

    att_layers = PRESETS[args.proxy].probe_layers if args.proxy in PRESETS else probe.layers
    layers = sorted(set(probe.layers) | set(att_layers) | set(probe_attn.layers if probe_attn else ()))
    key = hashlib.sha256(
        json.dumps([src.model_id, args.split, args.docs, args.seed, layers]).encode()
    ).hexdigest()[:16]
    t0 = time.perf_counter()
    ext = extract(
        comp.proxy,
        examples,
        reader=comp.reader_tokens,
        layers=layers,
        cache=cache_dir() / "features" / f"eval-{key}",
    )
    print(f"extracted {len(ext)} in {time.perf_counter() - t0:.0f}s", file=sys.stderr)
    if args.only_curves:
        prev = json.loads(out_path.read_text()) if out_path.is_file() else {}
        prev["curves"] = curves(comp, rows, args, ext, emb)
        out_path.write_text(json.dumps(prev, indent=1))
        print(f"wrote curves into {out_path}", file=sys.stderr)
        return
    if args.only_llmlingua:
        splits = [comp.split(list(ex.docs)) for ex in examples]
        probe_only = [probe_scores(probe, e, emb) for e in ext[: args.n_llmlingua]]
        prev = json.loads(out_path.read_text()) if out_path.is_file() else {"methods": {}}
        prev["methods"]["longllmlingua"] = _llmlingua_section(args, src, comp, examples, splits, probe_only)
        out_path.write_text(json.dumps(prev, indent=1))
        plot(prev, out_path.with_suffix(".png"), args.ratios)
        print(f"wrote longllmlingua into {out_path}", file=sys.stderr)
        return
    rng = np.random.default_rng(args.seed)
    methods: dict[str, list[np.ndarray]] = {
        m: [] for m in ["probe", "probe_attn", "attention", "minilm", "bm25", "random"]
    }
    if probe_attn is None:
        del methods["probe_attn"]
    for e in ext:
        methods["probe"].append(probe_scores(probe, e, emb))
        if probe_attn is not None:
            methods["probe_attn"].append(probe_scores(probe_attn, e, emb))
        methods["attention"].append(lift_scores(e, tuple(att_layers)))
        vec = emb.embed([e.question, *e.ctx.texts])
        methods["minilm"].append(vec[1:] @ vec[0])
        methods["bm25"].append(bm25_scores(e.question, e.ctx.texts))
        methods["random"].append(rng.random(len(e.labels)))
    # focus: its own prefill with the answer-hint template, on a subset
    focus_ext = extract(
        comp.proxy,
        examples[: args.n_focus],
        reader=comp.reader_tokens,
        layers=list(att_layers),
        focus=True,
        cache=cache_dir() / "features" / f"eval-focus-{key}",
    )
    focus_scores = [lift_scores(e, tuple(att_layers)) for e in focus_ext]

    splits = [comp.split(list(ex.docs)) for ex in examples]
    result: dict[str, Any] = {
        "benchmark": "quality",
        "proxy": args.proxy,
        "reader_tokenizer": comp.reader_tokens.name,
        "data": {
            "path": Path(args.data).name,
            "split": args.split,
            "docs": args.docs,
            "n": len(examples),
            "seed": args.seed,
            "n_focus": len(focus_ext),
        },
        "probe": {
            "path": probe.path.name if probe.path else None,
            "cv_auc": probe.meta.get("cv", {}).get("auc"),
            "layers": list(probe.layers),
            "families": list(probe.families),
        },
        "llmlingua2": "unavailable: its xlm-roberta-large / mBERT token-classifier weights cannot be "
        "obtained offline here; not substituted",
        "methods": {},
    }
    all_methods = dict(methods)
    for name, per_q in [*all_methods.items(), ("focus", focus_scores)]:
        subset = list(range(len(per_q)))
        row: dict[str, Any] = {"n": len(subset)}
        aucs = [auc(per_q[i], ext[i].labels) for i in subset]
        row["sentence_auc"] = float(np.nanmean(aucs))
        for r in args.ratios:
            hits, ratios = [], []
            for i in subset:
                ok, ach, _ = prune_recall(comp, examples[i], splits[i], per_q[i], r)
                hits.append(ok)
                ratios.append(ach)
            row[f"recall@{r:g}x"] = float(np.mean(hits))
            row[f"achieved_ratio@{r:g}x"] = float(np.mean(ratios))
        result["methods"][name] = row
        print(name, json.dumps(row), file=sys.stderr, flush=True)

    # latency per example (full compress() call, same inputs)
    lat: dict[str, float] = {}
    for name, cfg in [
        ("probe", CompressionConfig(proxy_model=args.proxy, reader_tokenizer=args.reader)),
        (
            "attention",
            CompressionConfig(proxy_model=args.proxy, scorer="attention", reader_tokenizer=args.reader),
        ),
    ]:
        c = Compressor(cfg)
        c.proxy = comp.proxy  # share the loaded proxy
        times = []
        for ex in examples[: args.n_latency]:
            t = time.perf_counter()
            c.compress(ex.question, list(ex.docs), ratio=0.2)
            times.append(time.perf_counter() - t)
        lat[name] = float(np.median(times))
    t = time.perf_counter()
    for ex in examples[: args.n_latency]:
        emb.inner.embed([ex.question, *[s.text for s in comp.split(list(ex.docs)).sentences]])  # not memoised
    lat["minilm"] = (time.perf_counter() - t) / max(args.n_latency, 1)
    for name, v in lat.items():
        result["methods"].setdefault(name, {})["seconds_per_example"] = v

    # LongLLMLingua with the same proxy
    if args.n_llmlingua > 0:
        result["methods"]["longllmlingua"] = _llmlingua_section(
            args, src, comp, examples, splits, methods["probe"]
        )

    # End-to-end reader accuracy at 5x (the qwen preset as reader)
    if args.n_reader > 0:
        reader_comp = (
            comp
            if args.reader == args.proxy
            else Compressor(CompressionConfig(proxy_model=args.reader, scorer="attention")).load()
        )
        full_ok, comp_ok = [], []
        for i, ex in enumerate(examples[: args.n_reader]):
            full = "\n\n".join(d.text for d in ex.docs)
            reader = comp.reader_tokens
            budget = max(1, int(reader.count(full) / 5))
            n_tok = reader.count_many([s.text for s in splits[i].sentences])
            kept = select(
                methods["probe"][i], n_tok, budget, count=_counter(reader, ex.docs, splits[i].sentences)
            )
            small = assemble(ex.docs, list(range(len(ex.docs))), splits[i].sentences, kept)
            full_ok.append(has_answer(reader_answer(reader_comp, full, ex.question), ex.answers))
            comp_ok.append(has_answer(reader_answer(reader_comp, small, ex.question), ex.answers))
        result["reader_accuracy@5x"] = {
            "n": len(full_ok),
            "full_context": float(np.mean(full_ok)),
            "probe_compressed": float(np.mean(comp_ok)),
        }
        print("reader", json.dumps(result["reader_accuracy@5x"]), file=sys.stderr, flush=True)

    if args.curves:
        result["curves"] = curves(comp, rows, args, ext, emb)

    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.write_text(json.dumps(result, indent=1))
    plot(result, out_path.with_suffix(".png"), args.ratios)
    print(f"wrote {out_path}", file=sys.stderr)


def curves(
    comp: Compressor, rows: list, args: argparse.Namespace, ev: list[ExtractedExample], emb: Any
) -> dict:
    """Learning curve (AUC vs training questions) and AUC vs deepest probe layer, on the eval set."""
    from ctxcomp.training.fit import default_extraction_layers

    n_layers = comp.proxy.num_layers
    layers = default_extraction_layers(args.proxy, n_layers)
    src = comp.proxy.source
    train_ex = build_examples(
        rows, split="train", n_docs=args.train_docs, seed=0, limit=args.n_train, embedder=emb
    )
    data_sha = hashlib.sha256(Path(args.data).read_bytes()).hexdigest()
    key = hashlib.sha256(
        json.dumps(
            [
                src.model_id,
                src.weights_sha256,
                data_sha,
                "train",
                args.train_docs,
                0,
                list(layers),
                comp.template.__dict__,
            ]
        ).encode()
    ).hexdigest()[:16]
    tr = extract(
        comp.proxy, train_ex, reader=comp.reader_tokens, layers=layers, cache=cache_dir() / "features" / key
    )
    common = dict(
        model_spec=args.proxy,
        model_id=src.model_id,
        weights_sha256=src.weights_sha256,
        c_grid=(0.1,),
        k_grid=(16,),
        folds=0,
        embedder=emb,
    )
    out: dict[str, Any] = {"learning_curve": [], "deepest_layer": []}
    ev_ok = [e for e in ev if e.probe.layers[: len(layers)] == tuple(layers)]
    for n in [50, 100, 200, len(tr)]:
        p = fit_probe(tr[:n], layers=layers, **common)  # type: ignore[arg-type]
        a = float(np.nanmean([auc(probe_scores(p, e, emb), e.labels) for e in ev_ok]))
        out["learning_curve"].append({"n_train": n, "eval_auc": a, "cv_auc": p.meta["cv"]["auc"]})
    for deepest in sorted({3, 7, 11, layers[-1]}):
        sub = [li for li in layers if li <= deepest]
        p = fit_probe(tr, layers=sub, **common)  # type: ignore[arg-type]
        a = float(np.nanmean([auc(probe_scores(p, e, emb), e.labels) for e in ev_ok]))
        out["deepest_layer"].append(
            {
                "deepest": deepest,
                "eval_auc": a,
                "cv_auc": p.meta["cv"]["auc"],
                "depth_fraction": (deepest + 1) / n_layers,
            }
        )
    return out


def plot(result: dict, path: Path, ratios: list[float]) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib not installed; skipping the plot", file=sys.stderr)
        return
    fig, ax = plt.subplots(figsize=(6, 4))
    for name, row in result["methods"].items():
        xs = [r for r in ratios if f"recall@{r:g}x" in row]
        if xs:
            ax.plot(xs, [row[f"recall@{r:g}x"] for r in xs], marker="o", label=f"{name} (n={row.get('n')})")
    ax.set_xlabel("compression ratio (original / kept tokens)")
    ax.set_ylabel("answer recall")
    ax.set_title(f"NQ, {result['data']['docs']} docs, hard distractors — proxy {result['proxy']}")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


if __name__ == "__main__":
    random.seed(0)
    main()
