from __future__ import annotations

import json
import sys
import types
from pathlib import Path

import pytest
from retrieval_helpers import FakeCompressor, write_jsonl

from ctxcomp.cli import main
from ctxcomp.retrieval import SCORE_KEY

EMB = "ctxcomp/hashing-bow-64"


def run(argv: list[str]) -> int:
    return main(argv)


@pytest.fixture
def built(tmp_path: Path, corpus_file: Path) -> Path:
    out = tmp_path / "idx"
    assert run(["index", "build", str(corpus_file), str(out), "--embedder", EMB, "--no-progress"]) == 0
    return out


def test_build_and_info(built: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert (built / "manifest.json").is_file()
    capsys.readouterr()
    assert run(["index", "info", str(built)]) == 0
    out = capsys.readouterr().out
    assert "36 documents" in out and "kind=flat" in out and EMB in out
    assert run(["index", "info", str(built), "--json"]) == 0
    manifest = json.loads(capsys.readouterr().out)
    assert manifest["count"] == 36 and manifest["embedder"] == EMB


def test_query_no_compress(built: Path, capsys: pytest.CaptureFixture[str]) -> None:
    capsys.readouterr()
    assert run(["query", str(built), "capital of France", "--k", "3", "--no-compress", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["query"] == "capital of France" and len(out["documents"]) == 3
    top = out["documents"][0]
    assert top["text"].startswith("Paris") and top["metadata"]["n"] % 12 == 0
    assert top["score"] == top["metadata"][SCORE_KEY] > 0
    assert run(["query", str(built), "capital of France", "--k", "2", "--no-compress"]) == 0
    assert capsys.readouterr().out.startswith("[1] d")


def test_query_compresses_with_the_api_compressor(
    built: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    fake_api = types.ModuleType("ctxcomp.api")
    made: list[FakeCompressor] = []

    def compressor(config: object) -> FakeCompressor:
        made.append(FakeCompressor(config))
        return made[-1]

    fake_api.Compressor = compressor  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "ctxcomp.api", fake_api)
    capsys.readouterr()
    assert run(["query", str(built), "who wrote Hamlet", "--k", "4", "--budget", "40", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert set(out) == {"text", "documents", "sentences", "stats"}
    assert len(out["documents"]) == 4 and all(SCORE_KEY in d["metadata"] for d in out["documents"])
    assert made[0].calls[0]["budget"] == 40
    assert run(["query", str(built), "who wrote Hamlet", "--ratio", "0.5"]) == 0
    assert "Shakespeare" in capsys.readouterr().out and made[1].calls[0]["ratio"] == 0.5
    with pytest.raises(SystemExit):  # --budget and --ratio are exclusive
        run(["query", str(built), "q", "--budget", "5", "--ratio", "0.5"])


def test_build_bad_corpus_fails_and_writes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    corpus = write_jsonl(tmp_path / "c.jsonl", [{"id": "a", "text": "x"}, "{bad", {"id": "a", "text": "y"}])
    out = tmp_path / "idx"
    assert run(["index", "build", str(corpus), str(out), "--embedder", EMB]) == 2
    err = capsys.readouterr().err
    assert "c.jsonl:2" in err and "line 3: duplicate id 'a'" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.jsonl"]
    assert run(["index", "build", str(corpus), str(out), "--embedder", EMB, "--skip-invalid"]) == 0
    errors = tmp_path / "idx.errors.jsonl"
    assert [json.loads(line)["line"] for line in errors.read_text().splitlines()] == [2, 3]
    err = capsys.readouterr().err
    assert "see " + str(errors) in err
    assert "ctxcomp: warning: skipped 2" in err and "UserWarning" not in err  # no raw warning


def test_info_and_query_on_damaged_index(built: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (built / "index.faiss").write_bytes(b"x")
    assert run(["query", str(built), "q", "--no-compress"]) == 2
    assert "index.faiss" in capsys.readouterr().err
    assert run(["index", "info", str(built.parent / "nope")]) == 2
