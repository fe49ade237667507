"""Throughput and peak memory of ``ctxcomp compress-jsonl`` as the corpus grows.

Each run is a fresh ``compress-jsonl`` subprocess; its wall time and peak RSS (``os.wait4``) are
recorded, together with the records/s the CLI reports after loading its model.

1. Pipeline overhead: synthetic records (3 documents x 3 sentences) at 1k and 10k records with a tiny
   random-weight Qwen2 proxy (built like ``tests/conftest.py``), so the proxy costs little and the
   numbers show the CLI's own cost: reading, validation, splitting, pruning, JSON out. Peak RSS must
   stay flat from 1k to 10k records (the CLI streams; only the ids are remembered).
2. The offline default preset on a small real sample (20 NQ questions x 5 passages; synthetic if the
   data is missing).

Usage: python -m benchmarks.throughput [--sizes 1000 10000] [--preset-records 20] [--skip-preset]
Writes benchmarks/results/throughput.json.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
OUT_DEFAULT = ROOT / "benchmarks" / "results" / "throughput.json"
WORDS = ["harbour", "lamp", "ferry", "market", "cheese", "bread", "tower", "river", "bridge", "museum"]


def _sentence(i: int, j: int, k: int) -> str:
    return (
        f"The {WORDS[(i + j + k) % 10]} near the {WORDS[(i * 7 + k) % 10]} is {k + j + i % 50} metres long."
    )


def synthetic_corpus(path: Path, n: int) -> Path:
    """Write ``n`` deterministic records of 3 documents with 3 sentences each (~100 tokens a record)."""
    with path.open("w", encoding="utf-8") as fh:
        for i in range(n):
            docs = [
                {
                    "id": f"d{j}",
                    "text": " ".join(_sentence(i, j, k) for k in range(3)),
                    "metadata": {"rank": j, "source": f"synthetic-{i % 97}"},
                }
                for j in range(3)
            ]
            q = f"How long is the {WORDS[i % 10]}?"
            fh.write(json.dumps({"id": f"r{i}", "query": q, "docs": docs}) + "\n")
    return path


def nq_corpus(path: Path, n: int) -> tuple[Path, str]:
    """``n`` NQ-open questions with 5 passages each, or synthetic records when the data is missing."""
    try:
        from benchmarks.nqdata import load_examples

        examples = load_examples(n_docs=5, limit=n)
    except (OSError, ValueError) as err:
        print(f"NQ data unavailable ({err}); using synthetic records", file=sys.stderr)
        return synthetic_corpus(path, n), "synthetic"
    with path.open("w", encoding="utf-8") as fh:
        for i, ex in enumerate(examples[:n]):
            fh.write(json.dumps({"id": f"nq{i}", "query": ex.question, "docs": ex.docs}) + "\n")
    return path, "nq-open-dev (5 passages/question)"


def build_tiny_proxy(path: Path) -> Path:
    """The tests' tiny random Qwen2 (tests/conftest.py ``build_tiny``)."""
    spec = importlib.util.spec_from_file_location("_ctxcomp_test_conftest", ROOT / "tests" / "conftest.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return Path(module.build_tiny("qwen2", path))


def _sig(x: float, digits: int = 3) -> float:
    return float(f"{x:.{digits}g}")


def run_cli(corpus: Path, out: Path, proxy: str, extra: list[str]) -> dict[str, Any]:
    """Run compress-jsonl in a subprocess; wall time, peak RSS and the CLI's own summary."""
    cmd = [
        sys.executable,
        "-m",
        "ctxcomp",
        "compress-jsonl",
        str(corpus),
        str(out),
        "--overwrite",
        "--no-progress",
        "--ratio",
        "0.4",
        "--proxy",
        proxy,
        *extra,
    ]
    env = {**os.environ, "TOKENIZERS_PARALLELISM": "false"}
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    assert proc.stderr is not None
    stderr = proc.stderr.read()
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    summary = next((ln for ln in stderr.splitlines() if ln.startswith("compress-jsonl:")), "")
    m = re.search(r"in ([\d.]+)s after a ([\d.]+)s model load", summary)
    if proc.returncode not in (0, 3) or m is None:
        raise RuntimeError(f"compress-jsonl failed ({proc.returncode}):\n{stderr[-3000:]}")
    n_out = sum(1 for _ in out.open(encoding="utf-8"))
    records = sum(1 for _ in corpus.open(encoding="utf-8"))
    compress_s = float(m.group(1))
    return {
        "records": records,
        "compressed": n_out,
        "exit_status": proc.returncode,
        "wall_s": round(wall, 2),
        "model_load_s": float(m.group(2)),
        "compress_s": compress_s,
        "records_per_s": _sig(records / compress_s) if compress_s > 0 else None,
        "seconds_per_record": _sig(compress_s / records) if records else None,
        "records_per_s_wall": _sig(records / wall),
        "peak_rss_mb": round(usage.ru_maxrss / 1024, 1),
        "output_mb": round(out.stat().st_size / 2**20, 2),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000])
    parser.add_argument("--preset", default=None, help="offline preset (default: ctxcomp.DEFAULT_PROXY)")
    parser.add_argument("--preset-records", type=int, default=20)
    parser.add_argument("--skip-preset", action="store_true")
    parser.add_argument(
        "--torch-threads",
        type=int,
        default=1,
        help="torch threads for the tiny-model runs (1: no OpenMP oversubscription)",
    )
    parser.add_argument("--out", type=Path, default=OUT_DEFAULT)
    args = parser.parse_args(argv)

    import torch

    import ctxcomp

    result: dict[str, Any] = {
        "benchmark": "compress-jsonl throughput and peak RSS (fresh subprocess per run)",
        "machine": {
            "cpus": os.cpu_count(),
            "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
            "python": platform.python_version(),
            "torch": torch.__version__,
            "ctxcomp": ctxcomp.__version__,
        },
        "notes": (
            "records_per_s excludes the model load (the CLI reports it separately); peak_rss_mb is the "
            "subprocess's maximum resident set. The machine is shared, so absolute rates vary with its load; "
            "on it one torch thread was ~2x faster than two for the preset (OpenMP spin under contention)."
        ),
    }
    with tempfile.TemporaryDirectory(prefix="ctxcomp-throughput-") as tmp:
        work = Path(tmp)
        tiny = build_tiny_proxy(work / "tiny-qwen2")
        runs = []
        for n in args.sizes:
            corpus = synthetic_corpus(work / f"synthetic-{n}.jsonl", n)
            print(f"tiny proxy, {n} records ...", file=sys.stderr, flush=True)
            r = run_cli(
                corpus,
                work / f"out-{n}.jsonl",
                str(tiny),
                ["--scorer", "attention", "--torch-threads", str(args.torch_threads)],
            )
            print(f"  {r}", file=sys.stderr, flush=True)
            runs.append(r)
        section: dict[str, Any] = {
            "proxy": "tiny random Qwen2 (4 layers, hidden 64, 400-token BPE)",
            "record_shape": "3 documents x 3 sentences (~100 words)",
            "torch_threads": args.torch_threads,
            "runs": runs,
        }
        if len(runs) >= 2:
            lo, hi = runs[0], runs[-1]
            growth = hi["peak_rss_mb"] - lo["peak_rss_mb"]
            section["peak_rss_growth_mb"] = round(growth, 1)
            section["memory_flat"] = growth < max(50.0, 0.1 * lo["peak_rss_mb"])
            section["rate_ratio_largest_vs_smallest"] = round(hi["records_per_s"] / lo["records_per_s"], 2)
        result["pipeline_overhead_tiny_proxy"] = section

        if not args.skip_preset:
            preset = args.preset or ctxcomp.DEFAULT_PROXY
            corpus, source = nq_corpus(work / "preset.jsonl", args.preset_records)
            print(f"preset {preset}, {args.preset_records} records ...", file=sys.stderr, flush=True)
            r = run_cli(
                corpus, work / "out-preset.jsonl", preset, ["--torch-threads", str(args.torch_threads)]
            )
            print(f"  {r}", file=sys.stderr, flush=True)
            result["offline_preset"] = {
                "proxy": preset,
                "data": source,
                "torch_threads": "torch default",
                "runs": [r],
            }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
