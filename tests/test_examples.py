"""The scripts in examples/ run end to end (offline, with the tiny random proxy instead of the preset)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def run(cmd: list[str], tiny: Path, **env: str) -> subprocess.CompletedProcess[str]:
    bin_dir = str(Path(sys.executable).parent)
    full_env = {
        **os.environ,
        "CTXCOMP_PROXY": str(tiny),
        "PYTHON": sys.executable,
        "PATH": bin_dir + os.pathsep + os.environ.get("PATH", ""),
        "TOKENIZERS_PARALLELISM": "false",
        **env,
    }
    proc = subprocess.run(cmd, env=full_env, capture_output=True, text=True, timeout=300, cwd=EXAMPLES.parent)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def test_quickstart(tiny_qwen: Path) -> None:
    out = run([sys.executable, str(EXAMPLES / "quickstart.py"), "--budget", "30"], tiny_qwen).stdout
    assert "Compressed context:" in out and "tokens kept (budget 30" in out
    assert "'source': 'town-guide'" in out or "'source': 'timetable'" in out or "'source': 'museum" in out


def test_langchain_rag(tiny_qwen: Path) -> None:
    pytest.importorskip("langchain_core")
    pytest.importorskip("faiss")
    out = run(
        [sys.executable, str(EXAMPLES / "langchain_rag.py"), "Who built the lighthouse?"],
        tiny_qwen,
        CTXCOMP_EMBEDDER="ctxcomp/hashing-bow-256",
    ).stdout
    assert "--- system ---" in out and "--- human ---\nWho built the lighthouse?" in out
    assert "--- provenance ---" in out and "kept char spans" in out


def test_compress_corpus_sh(tiny_qwen: Path, tmp_path: Path) -> None:
    out_path = tmp_path / "out.jsonl"
    out = run(["bash", str(EXAMPLES / "compress_corpus.sh"), str(out_path)], tiny_qwen).stdout
    rows = [json.loads(line) for line in out_path.read_text().splitlines()]
    ids = [json.loads(line)["id"] for line in (EXAMPLES / "sample_corpus.jsonl").read_text().splitlines()]
    assert [r["id"] for r in rows] == ids and 3 <= len(ids) <= 5
    assert f"[{ids[0]}]" in out and "from " in out
    assert not (tmp_path / "out.errors.jsonl").exists()  # nothing failed: no errors file
