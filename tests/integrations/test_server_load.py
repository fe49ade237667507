"""A bounded load test of ``ctxcomp serve`` (loopback, stops by itself): ``benchmarks/server.py`` with
the tiny random-weight model, 64 concurrent clients x 10 requests, every answer checked."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("httpx")

ROOT = Path(__file__).resolve().parents[2]


def test_64_clients_10_requests_each(tiny_qwen: Path, tmp_path: Path) -> None:
    out = tmp_path / "server.json"
    cmd = [sys.executable, "-m", "benchmarks.server", "--proxy", str(tiny_qwen), "--name", "tiny"]
    cmd += ["--scorer", "attention", "--clients", "64", "--requests", "10", "--out", str(out)]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false", "HF_HUB_OFFLINE": "1"}
    done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    run = json.loads(out.read_text())["runs"]["tiny"]
    assert run["requests"] == 640 and run["errors"] == 0, run["first_errors"]
    assert 0 < run["latency_ms"]["p50"] <= run["latency_ms"]["p99"]
    assert run["peak_rss_mib"] > 0 and run["server_exit_code_after_sigterm"] == 0
    assert run["batches"] < 640  # concurrent requests were compressed together
