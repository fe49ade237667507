"""Load test of ``ctxcomp serve``'s ``/v1/compress``: concurrent clients on loopback, bounded, checked.

A fresh ``ctxcomp serve`` subprocess per run (port 0, loopback only). ``--clients`` asyncio clients
each send ``--requests`` requests one after another, all clients at once; every request has its own
documents (ids ``c<client>-r<request>-d<j>``, metadata naming the request), and every answer is
checked: status 200, only that request's document ids, each kept sentence the exact substring of its
document at its offsets and present in ``text``, metadata kept, ``kept_tokens <= budget``. Reported:
latency percentiles (client side, queueing in the server included), throughput, the server's time to
``/readyz``, its resident memory when ready and its peak (``VmHWM``), the batch sizes it formed
(``/metrics``), and its exit status after SIGTERM.

Usage:
    python -m benchmarks.server --proxy tiny --clients 64 --requests 10          # tiny random Qwen2
    python -m benchmarks.server --proxy gemma-3-270m --clients 8 --requests 4    # the offline default
Runs merge into ``benchmarks/results/server.json`` under their ``--name`` (default: the proxy).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
OUT_DEFAULT = ROOT / "benchmarks" / "results" / "server.json"
WORDS = ["harbour", "lamp", "ferry", "market", "cheese", "bread", "tower", "river", "bridge", "museum"]
BUDGET = 40


def make_request(c: int, i: int) -> dict[str, Any]:
    """Request ``i`` of client ``c``: 3 documents x 3 sentences of its own (~100 tokens)."""
    docs = [
        {
            "id": f"c{c}-r{i}-d{j}",
            "text": " ".join(
                f"The {WORDS[(c + j + k) % 10]} near the {WORDS[(i * 7 + k) % 10]} is {c + i + j + k} m long."
                for k in range(3)
            ),
            "metadata": {"client": c, "request": i},
        }
        for j in range(3)
    ]
    return {"query": f"How long is the {WORDS[(c + i) % 10]}?", "docs": docs, "budget": BUDGET}


def check(req: dict[str, Any], status: int, out: Any) -> str | None:
    """Why the answer to ``req`` is wrong, or ``None`` when it is right."""
    if status != 200:
        return f"status {status}: {str(out)[:200]}"
    texts = {d["id"]: d["text"] for d in req["docs"]}
    if not isinstance(out, dict) or set(out) != {"text", "sentences", "documents", "stats"}:
        return "not a result record"
    if not 0 <= out["stats"]["kept_tokens"] <= req["budget"]:
        return f"kept_tokens {out['stats']['kept_tokens']} over budget {req['budget']}"
    for s in out["sentences"]:
        if s["doc_id"] not in texts:
            return f"sentence from a foreign document {s['doc_id']!r}"
        if texts[s["doc_id"]][s["start"] : s["end"]] != s["text"] or s["text"] not in out["text"]:
            return f"sentence {s['doc_id']}:{s['index']} is not verbatim"
    for d in out["documents"]:
        want = next(x["metadata"] for x in req["docs"] if x["id"] == d["id"])
        if {k: d["metadata"].get(k) for k in want} != want:
            return f"metadata of {d['id']} lost"
    return None


def _proc_kib(pid: int, field: str) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def _metric(text: str, name: str) -> float:
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return 0.0


async def _load(url: str, clients: int, requests: int) -> tuple[list[float], list[str], float]:
    import httpx

    latencies: list[float] = []
    failures: list[str] = []
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=600) as http:

        async def client(c: int) -> None:
            for i in range(requests):
                req = make_request(c, i)
                t0 = time.perf_counter()
                try:
                    r = await http.post("/v1/compress", json=req)
                    status, body = r.status_code, r.json()
                except Exception as err:  # counted, never fatal: the run reports it
                    status, body = 0, f"{type(err).__name__}: {err}"
                latencies.append(time.perf_counter() - t0)
                problem = check(req, status, body)
                if problem:
                    failures.append(f"c{c} r{i}: {problem}")

        t0 = time.perf_counter()
        await asyncio.gather(*(client(c) for c in range(clients)))
        return latencies, failures, time.perf_counter() - t0


def _wait_url(proc: subprocess.Popen[bytes], log: Path, timeout: float) -> str:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        for line in log.read_text(errors="replace").splitlines():
            if "listening on " in line:
                return line.split("listening on ")[1].split()[0]
        if proc.poll() is not None:
            break
        time.sleep(0.05)
    raise RuntimeError(f"ctxcomp serve did not start:\n{log.read_text(errors='replace')[-3000:]}")


def _wait_ready(url: str, proc: subprocess.Popen[bytes], timeout: float) -> None:
    import httpx

    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if proc.poll() is not None:
            raise RuntimeError("ctxcomp serve exited before it was ready")
        try:
            if httpx.get(f"{url}/readyz", timeout=5).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{url}/readyz never answered 200")


def run(proxy: str, clients: int, requests: int, serve_args: list[str], work: Path) -> dict[str, Any]:
    """One load run against a fresh server; the result record."""
    import httpx

    log = work / "serve.log"
    cmd = [sys.executable, "-m", "ctxcomp", "serve", "--port", "0", "--proxy", proxy, *serve_args]
    env = {
        **os.environ,
        "TOKENIZERS_PARALLELISM": "false",
        "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1"),
    }
    t0 = time.perf_counter()
    with log.open("wb") as fh:
        proc = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, env=env, cwd=ROOT)
    try:
        url = _wait_url(proc, log, 120)
        _wait_ready(url, proc, 600)
        startup = time.perf_counter() - t0
        rss_ready = _proc_kib(proc.pid, "VmRSS")
        latencies, failures, wall = asyncio.run(_load(url, clients, requests))
        metrics = httpx.get(f"{url}/metrics").text
        peak = _proc_kib(proc.pid, "VmHWM")
        proc.send_signal(signal.SIGTERM)
        exit_code = proc.wait(120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    lat = sorted(latencies)
    q = statistics.quantiles(lat, n=100, method="inclusive") if len(lat) > 1 else lat * 99
    batches = _metric(metrics, "ctxcomp_batch_size_count")
    return {
        "proxy": proxy,
        "clients": clients,
        "requests_per_client": requests,
        "requests": len(lat),
        "errors": len(failures),
        "first_errors": failures[:5],
        "latency_ms": {
            "p50": round(q[49] * 1000, 1),
            "p90": round(q[89] * 1000, 1),
            "p99": round(q[98] * 1000, 1),
            "max": round(lat[-1] * 1000, 1),
            "mean": round(statistics.fmean(lat) * 1000, 1),
        },
        "throughput_rps": round(len(lat) / wall, 2),
        "wall_s": round(wall, 2),
        "startup_to_ready_s": round(startup, 2),
        "rss_ready_mib": round(rss_ready / 1024, 1) if rss_ready else None,
        "peak_rss_mib": round(peak / 1024, 1) if peak else None,
        "batches": int(batches),
        "mean_batch_size": round(_metric(metrics, "ctxcomp_batch_size_sum") / batches, 2)
        if batches
        else None,
        "server_exit_code_after_sigterm": exit_code,
        "serve_args": serve_args,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--proxy", default="tiny", help="'tiny' (random Qwen2 built here), a preset or a path"
    )
    parser.add_argument("--name", help="key of the run in the JSON (default: the proxy)")
    parser.add_argument("--clients", type=int, default=64)
    parser.add_argument("--requests", type=int, default=10, help="requests per client")
    parser.add_argument("--max-batch", type=int, default=16)
    parser.add_argument("--max-wait-ms", type=float, default=5.0)
    parser.add_argument("--scorer", default=None, help="--scorer for the server (tiny: attention)")
    parser.add_argument("--out", type=Path, default=OUT_DEFAULT)
    args = parser.parse_args(argv)
    load_at_start = [round(x, 2) for x in os.getloadavg()]

    with tempfile.TemporaryDirectory(prefix="ctxcomp-server-bench-") as tmp:
        work = Path(tmp)
        proxy, scorer = args.proxy, args.scorer
        if proxy == "tiny":
            from benchmarks.throughput import build_tiny_proxy

            proxy, scorer = str(build_tiny_proxy(work / "tiny-qwen2")), scorer or "attention"
        serve_args = ["--max-batch", str(args.max_batch), "--max-wait-ms", str(args.max_wait_ms)]
        if scorer:
            serve_args += ["--scorer", scorer]
        print(
            f"{args.proxy}: {args.clients} clients x {args.requests} requests ...",
            file=sys.stderr,
            flush=True,
        )
        result = run(proxy, args.clients, args.requests, serve_args, work)
    result["proxy"] = args.proxy
    name = args.name or args.proxy
    data: dict[str, Any] = {}
    if args.out.is_file():
        data = json.loads(args.out.read_text())
    data["benchmark"] = "ctxcomp serve /v1/compress under concurrent loopback load (benchmarks/server.py)"
    data.setdefault("runs", {})[name] = {
        **result,
        "machine": {
            "cpus": os.cpu_count(),
            "load_average_at_start": load_at_start,
            "python": platform.python_version(),
        },
        "date": time.strftime("%Y-%m-%d"),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(data, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return 0 if result["errors"] == 0 and result["server_exit_code_after_sigterm"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
