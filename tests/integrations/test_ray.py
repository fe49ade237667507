"""Ray Data batch compression on a local 2-CPU cluster with the tiny proxy (same contract as the CLI)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

ray = pytest.importorskip("ray")
pytest.importorskip("ray.data")

from test_jsonl import MIXED_LINES, check_exactly_once, read_jsonl, synthetic, write_lines  # noqa: E402

from ctxcomp import CompressionConfig, Compressor  # noqa: E402
from ctxcomp.cli import main  # noqa: E402
from ctxcomp.errors import ConfigError  # noqa: E402
from ctxcomp.integrations.ray import compress_dataset  # noqa: E402

pytestmark = pytest.mark.ray


@pytest.fixture(scope="module")
def cluster() -> Iterator[None]:
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    ctx = ray.data.DataContext.get_current()
    ctx.execution_options.preserve_order = True
    ctx.enable_progress_bars = False
    yield
    ray.shutdown()


def strip_timings(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    for r in rows:
        if "stats" in r:
            r["stats"].pop("timings")
    return rows


def test_compress_dataset_rows_and_errors(cluster: None, tiny_qwen: Path) -> None:
    config = CompressionConfig(proxy_model=str(tiny_qwen), scorer="attention")
    rows = [json.loads(line) for line in synthetic(5)]
    rows[2] = {"id": "bad", "query": "", "docs": rows[2]["docs"]}  # a row that fails validation
    ds = ray.data.from_items([{**r, "n": i + 1} for i, r in enumerate(rows)])
    out = compress_dataset(
        ds, config, num_workers=2, num_cpus_per_worker=0.5, ratio=0.5, batch_size=2, line_field="n"
    ).take_all()
    assert [r["line"] for r in out] == [1, 2, 3, 4, 5]
    assert [r["ok"] for r in out] == [True, True, False, True, True]
    assert [r["id"] for r in out] == ["r0", "r1", "bad", "r3", "r4"]
    err = json.loads(out[2]["record"])
    assert err["field"] == "query" and err["line"] == 3 and "empty" in err["reason"]
    local = Compressor(config)
    first = json.loads(out[0]["record"])
    from ctxcomp.records import Fields, parse_record

    rec = parse_record(rows[0], Fields())
    assert first["text"] == local.compress(rec.query, rec.docs, ratio=0.5).text
    by_id = {d["id"]: d for d in first["documents"]}
    for doc in rows[0]["docs"]:
        if doc["id"] in by_id:
            assert by_id[doc["id"]]["metadata"]["src"] == doc["metadata"]["src"]
    with pytest.raises(ConfigError, match="num_workers"):
        compress_dataset(ds, config, num_workers=0)


def test_cli_ray_engine_matches_local(cluster: None, tmp_path: Path, tiny_qwen: Path) -> None:
    inp = write_lines(tmp_path / "in.jsonl", MIXED_LINES + synthetic(6))
    args = [
        "--proxy",
        str(tiny_qwen),
        "--scorer",
        "attention",
        "--budget",
        "20",
        "--max-line-bytes",
        "2000",
        "--no-progress",
    ]
    assert main(["compress-jsonl", str(inp), str(tmp_path / "local.jsonl"), *args]) == 3
    # The ray run is interrupted after two records (torn last line), then resumed on Ray.
    full = (tmp_path / "local.jsonl").read_text().splitlines(keepends=True)
    (tmp_path / "ray.jsonl").write_text("".join(full[:2]) + full[2][:10])
    ray_args = ["--engine", "ray", "--num-workers", "2", "--cpus-per-worker", "0.5", "--batch-size", "2"]
    assert main(["compress-jsonl", str(inp), str(tmp_path / "ray.jsonl"), "--resume", *ray_args, *args]) == 3
    local, remote = read_jsonl(tmp_path / "local.jsonl"), read_jsonl(tmp_path / "ray.jsonl")
    assert strip_timings(remote) == strip_timings(local)
    errors = read_jsonl(tmp_path / "ray.errors.jsonl")
    assert errors == read_jsonl(tmp_path / "local.errors.jsonl")
    check_exactly_once(inp, remote, errors)
