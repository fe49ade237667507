"""Records/s with batched prefills on vs off, side by side in one process, on the offline default.

Usage:

    python -m benchmarks.batching [--records 16] [--docs 5] [--rounds 2]

The same records (NQ-open eval questions, ``--docs`` passages each: the gold passage and the next
questions' passages) are compressed four ways, alternating in rounds so all share the machine's
conditions: ``compress()`` one record at a time (batching off); ``compress_batch()`` with the
default config (on a CPU: one prompt per prefill, each overlapped with its embedding pass); and
``compress_batch()`` with ``prefill_batch_tokens=16384`` over chunks of 4 and of 16 records (their
prefills share padded, length-bucketed forward passes, the GPU default). Kept sentences must be
identical across all four (checked). Writes
``benchmarks/results/batching.json`` with records/s per mode (median over rounds) and the ratio to
batching off.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

from benchmarks.regimes import DATA

HERE = Path(__file__).resolve().parent


def records(n: int, docs: int) -> list[tuple[str, list[str]]]:
    """``n`` (question, passages) pairs from the shipped NQ-open file."""
    rows = [
        json.loads(line) for line in (DATA / "nq-open-dev.jsonl").read_text(encoding="utf-8").splitlines()
    ]
    out = []
    for i in range(n):
        passages = [rows[(i + k) % len(rows)]["ctxs"][0]["text"] for k in range(docs)]
        out.append((rows[i]["question"], passages))
    return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--records", type=int, default=16)
    ap.add_argument("--docs", type=int, default=5)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--ratio", type=float, default=0.25)
    ap.add_argument("--out", default=str(HERE / "results" / "batching.json"))
    args = ap.parse_args(argv)

    import torch

    from ctxcomp import CompressionConfig, Compressor

    comp = Compressor(CompressionConfig()).load()
    items = records(args.records, args.docs)
    comp.compress_batch(items[:2], ratio=args.ratio)  # warm-up

    def off() -> list:
        return [comp.compress(q, d, ratio=args.ratio) for q, d in items]

    forced = Compressor(CompressionConfig(prefill_batch_tokens=16384)).load()  # batched prefills on CPU too

    def batched(c: Compressor, size: int):
        def run() -> list:
            out = []
            for i in range(0, len(items), size):
                out += c.compress_batch(items[i : i + size], ratio=args.ratio)
            return out

        return run

    modes = {
        "off (compress per record)": off,
        "compress_batch 16, default (CPU: no padded batches)": batched(comp, 16),
        "compress_batch 4, batched prefills forced": batched(forced, 4),
        "compress_batch 16, batched prefills forced": batched(forced, 16),
    }
    times: dict[str, list[float]] = {m: [] for m in modes}
    kept: dict[str, list] = {}
    for _ in range(args.rounds):
        for name, fn in modes.items():
            t = time.perf_counter()
            res = fn()
            times[name].append(time.perf_counter() - t)
            kept[name] = [[s.kept for s in r.sentences] for r in res]
    identical = all(k == kept["off (compress per record)"] for k in kept.values())
    base = statistics.median(times["off (compress per record)"])
    result = {
        "benchmark": "batching",
        "proxy": comp.config.proxy_model,
        "records": args.records,
        "docs_per_record": args.docs,
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "torch_threads": torch.get_num_threads(),
        },
        "identical_outputs": identical,
        "modes": {
            name: {
                "median_s": statistics.median(ts),
                "records_per_s": args.records / statistics.median(ts),
                "speedup_vs_off": base / statistics.median(ts),
                "times_s": ts,
            }
            for name, ts in times.items()
        },
    }
    Path(args.out).write_text(json.dumps(result, indent=1))
    print(json.dumps({k: round(v["records_per_s"], 2) for k, v in result["modes"].items()}), file=sys.stderr)
    if not identical:
        raise SystemExit("batched outputs differ from unbatched ones")


if __name__ == "__main__":
    main()
