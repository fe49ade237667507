"""Fuzz every input surface: a ``CtxcompError`` subclass or a valid result, never another exception.

The strategies and targets live in ``benchmarks/fuzz.py`` (which runs them much longer and commits
the counts to ``benchmarks/results/fuzz.json``); here each target runs a few dozen examples against
a module-scoped tiny compressor. A crash is re-raised, so hypothesis shrinks it to a minimal case.
"""

from __future__ import annotations

import importlib.util
import json
from collections import Counter
from pathlib import Path
from types import ModuleType

import pytest

from ctxcomp import CompressionConfig, Compressor

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = {
    "compress": 60,
    "config": 8,
    "probe_file": 60,
    "profile_file": 60,
    "jsonl_record": 60,
    "docs_file": 60,
    "langchain": 40,
}


def _harness() -> ModuleType:
    spec = importlib.util.spec_from_file_location("ctxcomp_fuzz_harness", ROOT / "benchmarks" / "fuzz.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


fuzz = _harness()


@pytest.fixture(scope="module")
def comp(tiny_qwen: Path) -> Compressor:
    return Compressor(
        CompressionConfig(proxy_model=str(tiny_qwen), scorer="attention", probe_layers=(1, 2))
    ).load()


@pytest.mark.parametrize("target", sorted(EXAMPLES))
def test_fuzz_target(target: str, comp: Compressor, tiny_qwen: Path) -> None:
    tally = fuzz.Tally(strict=True)
    n = EXAMPLES[target]
    fns = fuzz.targets(comp, tiny_qwen, n if target != "config" else 8 * n, tally)
    fns[target]()
    counts: Counter[str] = tally.outcomes[target]
    assert "CRASH" not in counts and not tally.crashes
    assert sum(counts.values()) >= min(n, 5)
    # Known outcome names only: "ok" or a ctxcomp error class.
    assert set(counts) <= {"ok"} | fuzz._CTXCOMP_NAMES, counts


def test_committed_fuzz_results_have_no_crashes() -> None:
    path = ROOT / "benchmarks" / "results" / "fuzz.json"
    if not path.is_file():
        pytest.skip("run benchmarks/fuzz.py to produce the results")
    result = json.loads(path.read_text())
    assert result["crashes"] == 0 and result["cases"] >= 1000
    assert result["cases"] == result["ok"] + sum(result["errors_by_class"].values())
