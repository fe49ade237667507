"""The ``ctxcomp compress`` command."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from ctxcomp.cli import main


@pytest.fixture()
def docs_file(tmp_path: Path) -> Path:
    p = tmp_path / "docs.jsonl"
    p.write_text(
        json.dumps({"id": "a", "text": "Paris is the capital of France. It is big.", "metadata": {"u": 1}})
        + "\n"
        + json.dumps("A bare string document. With two sentences.")
        + "\n\n"
    )
    return p


def test_compress_text_and_json(docs_file: Path, tiny_qwen: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc = main(
        [
            "compress",
            "--query",
            "capital of France?",
            "--docs",
            str(docs_file),
            "--ratio",
            "1.0",
            "--proxy",
            str(tiny_qwen),
            "--scorer",
            "attention",
        ]
    )
    out = capsys.readouterr()
    assert rc == 0
    assert "Paris is the capital of France." in out.out
    assert "\nctxcomp: " in "\n" + out.err and " tokens (" in out.err and "x smaller" in out.err
    rc = main(
        [
            "compress",
            "--query",
            "capital?",
            "--docs",
            str(docs_file),
            "--budget",
            "12",
            "--json",
            "--proxy",
            str(tiny_qwen),
            "--scorer",
            "attention",
        ]
    )
    data = json.loads(capsys.readouterr().out)
    assert rc == 0
    assert data["stats"]["kept_tokens"] <= 12
    assert {s["doc_id"] for s in data["sentences"]} == {"a", "1"}
    for d in data["documents"]:
        if d["id"] == "a":
            assert d["metadata"]["u"] == 1 and "ctxcomp_score" in d["metadata"]


def test_stdin(tiny_qwen: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO('"One sentence. Two sentences."\n'))
    rc = main(
        [
            "compress",
            "--query",
            "q?",
            "--docs",
            "-",
            "--ratio",
            "1",
            "--proxy",
            str(tiny_qwen),
            "--scorer",
            "attention",
        ]
    )
    assert rc == 0
    assert capsys.readouterr().out == "One sentence. Two sentences.\n"


@pytest.mark.parametrize(
    ("content", "needle"),
    [("{bad json\n", "not valid JSON"), ('{"id": "x"}\n', "text"), ("[1, 2]\n", "string or an object")],
)
def test_bad_docs_lines(
    tmp_path: Path, tiny_qwen: Path, content: str, needle: str, capsys: pytest.CaptureFixture[str]
) -> None:
    p = tmp_path / "d.jsonl"
    p.write_text(content)
    rc = main(["compress", "--query", "q?", "--docs", str(p), "--proxy", str(tiny_qwen)])
    err = capsys.readouterr().err
    assert rc == 2
    assert needle in err and ":1" in err


def test_usage_errors(tmp_path: Path, tiny_qwen: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["compress", "--query", " ", "--docs", str(tmp_path / "none.jsonl")]) == 2
    assert "query" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        main(["compress", "--query", "q", "--docs", "-", "--budget", "5", "--ratio", "0.5"])
    assert exc.value.code == 2
    p = tmp_path / "d.jsonl"
    p.write_text('"x."\n')
    assert (
        main(["compress", "--query", "q", "--docs", str(p), "--ratio", "2", "--proxy", str(tiny_qwen)]) == 2
    )
    assert "ratio" in capsys.readouterr().err


def test_compress_reorder_attnrank_flags(
    tiny_qwen: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from ctxcomp.compressors.profile import PositionProfile

    docs = tmp_path / "d.jsonl"
    texts = ["Paris is in France. It is big.", "Bob slept. He snored.", "Tokyo is large. It is in Japan."]
    docs.write_text("".join(json.dumps(t) + "\n" for t in texts))
    peak_last = PositionProfile("other-model", None, 3, (0.2, 0.2, 0.6), (0.1,) * 3, (0.7,) * 3, 30, "h")
    prof = peak_last.save(tmp_path / "p.json")
    base = ["compress", "--query", "Where is Paris?", "--docs", str(docs), "--ratio", "1.0", "--json"]
    base += ["--proxy", str(tiny_qwen), "--scorer", "attention", "--reorder", "attnrank"]
    base += ["--position-profile", str(prof)]
    assert main(base) == 2  # calibrated on another model: an input error naming the fix
    assert "force" in capsys.readouterr().err
    assert main([*base, "--force-position-profile"]) == 0
    data = json.loads(capsys.readouterr().out)
    best = max(data["documents"], key=lambda d: d["score"])
    assert data["documents"][-1]["id"] == best["id"]  # the best document sits at the profile's peak


def test_empty_docs_is_a_usage_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n\n")
    assert main(["compress", "--query", "q?", "--docs", str(empty)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("ctxcomp: error: --docs:") and "holds no documents" in err and "Fix:" in err


def test_best_sentence_over_budget_is_reported(tiny_qwen: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from ctxcomp import CompressionConfig, Compressor

    comp = Compressor(CompressionConfig(proxy_model=str(tiny_qwen), scorer="attention"))
    long = "This single sentence is far too long to fit into a tiny budget of only a few tokens at all."
    ctx = comp.compress("q?", [long, "Short."], budget=4)
    best = max(ctx.sentences, key=lambda s: s.score)
    if best.text == long:
        assert ctx.stats.warnings and "raise budget/ratio" in ctx.stats.warnings[0]
    assert ctx.stats.kept_tokens <= 4  # the budget stays a hard promise
    assert ctx.stats.compression == ctx.stats.ratio and 0 <= ctx.stats.kept_share <= 1


def test_version_flag(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["--version"])
    assert info.value.code == 0 and capsys.readouterr().out.startswith("ctxcomp ")
