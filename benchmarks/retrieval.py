"""Retrieval benchmark: recall@10 of the automatic FAISS index against exact search, build time,
queries/s, size on disk and peak memory.

Cases, each run in its own subprocess so that peak RSS (``ru_maxrss``) belongs to that case alone:

- ``nq``: the gold passages of NQ-open dev (``--data``), embedded with all-MiniLM-L6-v2, queried with
  the NQ questions; built as ``auto`` (flat at this size) and, to check that the calibration carries
  over to real questions, forced ``ivf`` and ``hnsw``. Also reports gold-passage hit@10.
- ``synthetic-N``: N random unit vectors (384-d) with 1,000 random unit queries, ``kind="auto"``
  (flat below 50k, IVF with calibrated nprobe above).

Usage::

    python benchmarks/retrieval.py --data benchmarks/data/nq-open-dev.jsonl \\
        --sizes 10000 100000 1000000 --out benchmarks/results/retrieval.json

Writes JSON (and a PNG when matplotlib is installed).
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
K = 10


def _rss_peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def _rss_now_mb() -> float:
    try:
        import psutil

        return float(psutil.Process().memory_info().rss) / 2**20
    except ImportError:
        return float("nan")


def _dir_size_mb(path: Path) -> float:
    return sum(p.stat().st_size for p in path.iterdir()) / 2**20


def unit_vectors(n: int, dim: int, seed: int, chunk: int = 100_000) -> np.ndarray:
    """Random unit vectors, generated in chunks to keep the peak at one float32 copy."""
    rng = np.random.default_rng(seed)
    out = np.empty((n, dim), dtype=np.float32)  # [n, d]
    for lo in range(0, n, chunk):
        x = rng.standard_normal((min(chunk, n - lo), dim), dtype=np.float32)  # [b, d]
        out[lo : lo + len(x)] = x / np.linalg.norm(x, axis=1, keepdims=True)
    return out


def exact_topk(base: np.ndarray, queries: np.ndarray, k: int, chunk: int = 20_000) -> np.ndarray:
    """Exact inner-product top-k by chunked NumPy matmul (no copy of ``base``)."""
    m = len(queries)
    best_s = np.full((m, k), -np.inf, dtype=np.float32)  # [m, k]
    best_i = np.zeros((m, k), dtype=np.int64)  # [m, k]
    for lo in range(0, len(base), chunk):
        s = queries @ base[lo : lo + chunk].T  # [m, b]
        kk = min(k, s.shape[1])
        part = np.argpartition(-s, kk - 1, axis=1)[:, :kk]  # [m, kk]
        cand_s = np.concatenate([best_s, np.take_along_axis(s, part, 1)], axis=1)  # [m, k + kk]
        cand_i = np.concatenate([best_i, part + lo], axis=1)  # [m, k + kk]
        order = np.argsort(-cand_s, axis=1, kind="stable")[:, :k]  # [m, k]
        best_s = np.take_along_axis(cand_s, order, 1)
        best_i = np.take_along_axis(cand_i, order, 1)
    return best_i  # [m, k]


def recall_at_k(got: list[list[int]], truth: np.ndarray) -> float:
    k = truth.shape[1]
    return float(np.mean([len(set(g[:k]) & set(t.tolist())) / k for g, t in zip(got, truth, strict=True)]))


class RssSampler:
    """Samples this process's RSS every 20 ms in a thread (ru_maxrss cannot be reset between phases)."""

    def __init__(self, interval: float = 0.02) -> None:
        import threading

        self.interval = interval
        self.peak_mb = _rss_now_mb()
        self.last_mb = self.peak_mb
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.last_mb = _rss_now_mb()
            self.peak_mb = max(self.peak_mb, self.last_mb)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.last_mb = _rss_now_mb()
        self.peak_mb = max(self.peak_mb, self.last_mb)


class FixedEmbedder:
    """Stands in for an embedder when vectors are given directly (queries go through search_vectors)."""

    def __init__(self, embedder_id: str, dim: int) -> None:
        self.id = embedder_id
        self.dim = dim

    def embed(self, texts: Any, *, batch_size: int | None = None) -> np.ndarray:
        raise RuntimeError("vectors are precomputed in this benchmark")

    def embed_query(self, text: str) -> np.ndarray:
        raise RuntimeError("vectors are precomputed in this benchmark")


def measure_index(
    base: np.ndarray, queries: np.ndarray, truth: np.ndarray, kind: str, embedder_id: str, n_single: int = 50
) -> dict[str, Any]:
    """Build, search, save and reload one index; return its numbers."""
    from ctxcomp.retrieval import FaissIndex
    from ctxcomp.types import Document

    docs = [Document(str(i), "") for i in range(len(base))]
    rss_before = _rss_now_mb()
    sampler = RssSampler()
    t0 = time.perf_counter()
    with sampler:
        index = FaissIndex(FixedEmbedder(embedder_id, base.shape[1]), kind=kind)  # type: ignore[arg-type]
        index.add_embeddings(docs, base)
    build_s = time.perf_counter() - t0

    t0 = time.perf_counter()
    hits = index.search_vectors(queries, k=K)
    batch_s = time.perf_counter() - t0
    got = [[int(d.id) for d in row] for row in hits]
    import faiss

    single: dict[int, list[float]] = {}
    threads = faiss.omp_get_max_threads()
    for n_threads in sorted({threads, 1}, reverse=True):
        faiss.omp_set_num_threads(n_threads)
        single[n_threads] = []
        for q in queries[:n_single]:
            t1 = time.perf_counter()
            index.search_vectors(q, k=K)
            single[n_threads].append(time.perf_counter() - t1)
    faiss.omp_set_num_threads(threads)

    tmp = Path(tempfile.mkdtemp(prefix="ctxcomp-bench-"))
    try:
        t0 = time.perf_counter()
        index.save(tmp / "idx")
        save_s = time.perf_counter() - t0
        size_mb = _dir_size_mb(tmp / "idx")
        t0 = time.perf_counter()
        loaded = FaissIndex.load(tmp / "idx", embedder=FixedEmbedder(embedder_id, base.shape[1]), mmap=True)  # type: ignore[arg-type]
        load_s = time.perf_counter() - t0
        reloaded_ok = [int(d.id) for d in loaded.search_vectors(queries[0], k=K)[0]] == got[0]
        del loaded
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    info = index.info()
    return {
        "kind_requested": kind,
        "kind": info["kind"],
        "n": len(base),
        "dim": int(base.shape[1]),
        "search_params": {k: info[k] for k in ("nlist", "nprobe", "ef_search", "hnsw_m") if k in info},
        "calibration": info["calibration"],
        "recall_at_10": round(recall_at_k(got, truth), 4),
        "build_s": round(build_s, 2),
        "queries": len(queries),
        "batch_qps": round(len(queries) / batch_s, 1),
        "single_query_ms_p50": round(1000 * float(np.median(single[threads])), 3),
        "single_query_ms_p50_omp1": round(1000 * float(np.median(single[1])), 3),
        "loadavg_1min_after": round(os.getloadavg()[0], 2),
        "save_s": round(save_s, 2),
        "load_mmap_verify_s": round(load_s, 2),
        "reload_same_results": reloaded_ok,
        "size_on_disk_mb": round(size_mb, 1),
        "rss_before_build_mb": round(rss_before, 1),
        "peak_rss_mb": round(_rss_peak_mb(), 1),
        "build_peak_rss_delta_mb": round(sampler.peak_mb - rss_before, 1),
        "rss_after_build_mb": round(sampler.last_mb, 1),
        "_got": got,
    }


def child_synthetic(n: int, n_queries: int, dim: int) -> list[dict[str, Any]]:
    t0 = time.perf_counter()
    base = unit_vectors(n, dim, seed=1)  # [n, d]
    queries = unit_vectors(n_queries, dim, seed=2)  # [m, d]
    truth = exact_topk(base, queries, K)  # [m, K]
    exact_s = time.perf_counter() - t0
    out = measure_index(base, queries, truth, "auto", f"synthetic/random-unit-{dim}")
    out.pop("_got")
    out.update(case=f"synthetic-{n}", data="random unit vectors", data_and_exact_s=round(exact_s, 1))
    return [out]


def child_nq(path: str, kinds: list[str]) -> list[dict[str, Any]]:
    from ctxcomp.retrieval import SentenceTransformerEmbedder

    questions: list[str] = []
    gold_text: list[str] = []
    with gzip.open(path, "rt", encoding="utf-8") as fh:
        for line in fh:
            rec = json.loads(line)
            ctx = rec["ctxs"][0]
            questions.append(rec["question"])
            gold_text.append(f"{ctx['title']}\n{ctx['text']}")
    passages = sorted(set(gold_text))
    pid = {t: i for i, t in enumerate(passages)}
    gold = np.array([pid[t] for t in gold_text])  # [q]
    emb = SentenceTransformerEmbedder(device="cpu")
    t0 = time.perf_counter()
    base = emb.embed(passages, batch_size=64)  # [n, 384]
    embed_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    queries = emb.embed(questions, batch_size=128)  # [q, 384]
    query_embed_s = time.perf_counter() - t0
    truth = exact_topk(base, queries, K)  # [q, K]
    results = []
    for kind in kinds:
        out = measure_index(base, queries, truth, kind, emb.id)
        got = out.pop("_got")
        out.update(
            case=f"nq-{kind}",
            data=f"NQ-open dev: {len(passages)} gold passages, {len(questions)} questions, all-MiniLM-L6-v2",
            passage_embed_per_s=round(len(passages) / embed_s, 1),
            query_embed_per_s=round(len(questions) / query_embed_s, 1),
            gold_hit_at_10=round(float(np.mean([g in row for g, row in zip(gold, got, strict=True)])), 4),
            exact_gold_hit_at_10=round(
                float(np.mean([g in row for g, row in zip(gold, truth, strict=True)])), 4
            ),
        )
        results.append(out)
    return results


def run_child(argv: list[str], timeout: float) -> list[dict[str, Any]]:
    cmd = [sys.executable, str(Path(__file__).resolve()), *argv]
    print("running:", " ".join(argv), file=sys.stderr, flush=True)
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=ROOT)
    except subprocess.TimeoutExpired:
        return [{"case": " ".join(argv), "error": f"timed out after {timeout:.0f} s"}]
    if proc.returncode != 0:
        print(proc.stderr[-3000:], file=sys.stderr)
        return [{"case": " ".join(argv), "error": proc.stderr.strip().splitlines()[-1:] or ["failed"]}]
    results: list[dict[str, Any]] = json.loads(proc.stdout.strip().splitlines()[-1])
    print(
        f"  done in {time.perf_counter() - t0:.0f} s: {json.dumps(results)[:400]}",
        file=sys.stderr,
        flush=True,
    )
    return results


def machine() -> dict[str, Any]:
    import faiss

    try:
        import psutil

        ram_gb = round(psutil.virtual_memory().total / 2**30, 1)
    except ImportError:
        ram_gb = None
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "ram_gb": ram_gb,
        "faiss": faiss.__version__,
        "faiss_gpus": faiss.get_num_gpus(),
        "faiss_omp_threads": faiss.omp_get_max_threads(),
        "numpy": np.__version__,
    }


def plot(results: list[dict[str, Any]], path: Path) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib not installed: no plot", file=sys.stderr)
        return
    syn = [r for r in results if r.get("case", "").startswith("synthetic") and "error" not in r]
    if not syn:
        return
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
    ns = [r["n"] for r in syn]
    for ax, key, label in zip(
        axes,
        ("recall_at_10", "batch_qps", "build_s"),
        ("recall@10 vs exact", "queries/s (batch)", "build time (s)"),
        strict=True,
    ):
        ax.plot(ns, [r[key] for r in syn], "o-")
        ax.set_xscale("log")
        ax.set_xlabel("vectors")
        ax.set_title(label)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default=None, help="nq-open-dev.jsonl.gz (skipped when absent)")
    p.add_argument("--sizes", type=int, nargs="*", default=[10_000, 100_000, 1_000_000])
    p.add_argument("--queries", type=int, default=1000)
    p.add_argument("--dim", type=int, default=384)
    p.add_argument("--nq-kinds", nargs="*", default=["auto", "ivf", "hnsw"])
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "retrieval.json")
    p.add_argument("--timeout", type=float, default=1800)
    p.add_argument("--child", choices=["nq", "synthetic"], default=None, help=argparse.SUPPRESS)
    p.add_argument("--n", type=int, default=None, help=argparse.SUPPRESS)
    args = p.parse_args()

    if args.child == "synthetic":
        print(json.dumps(child_synthetic(args.n, args.queries, args.dim)))
        return
    if args.child == "nq":
        print(json.dumps(child_nq(args.data, args.nq_kinds)))
        return

    results: list[dict[str, Any]] = []
    if args.data and Path(args.data).is_file():
        results += run_child(
            ["--child", "nq", "--data", str(Path(args.data).resolve()), "--nq-kinds", *args.nq_kinds],
            args.timeout,
        )
    elif args.data:
        print(f"{args.data} not found: skipping the NQ case", file=sys.stderr)
    for n in args.sizes:
        results += run_child(
            ["--child", "synthetic", "--n", str(n), "--queries", str(args.queries), "--dim", str(args.dim)],
            args.timeout,
        )
    from ctxcomp.retrieval.index import CALIBRATION_QUERIES, FLAT_MAX_VECTORS, HNSW_M, RECALL_TARGET

    report = {
        "benchmark": "retrieval",
        "created_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "machine": machine(),
        "settings": {
            "k": K,
            "recall_target": RECALL_TARGET,
            "flat_max_vectors": FLAT_MAX_VECTORS,
            "calibration_queries": CALIBRATION_QUERIES,
            "hnsw_m": HNSW_M,
            "queries": args.queries,
            "notes": (
                "recall@10 is against exact inner-product search over the same vectors; peak_rss_mb is the "
                "case subprocess's ru_maxrss (data + exact ground truth + index); build_peak_rss_delta_mb is "
                "how much the build raised it. build_s includes IVF training and nprobe/efSearch calibration."
            ),
        },
        "results": results,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.out}", file=sys.stderr)
    plot(results, args.out.with_suffix(".png"))


if __name__ == "__main__":
    main()
