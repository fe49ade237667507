from __future__ import annotations

import gzip
import json
import sys
from pathlib import Path

import pytest
from retrieval_helpers import write_jsonl

from ctxcomp.errors import CtxcompError, InputError, MissingDependencyError
from ctxcomp.retrieval import (
    CorpusError,
    EmbedderMismatchError,
    EmptyCorpusError,
    FaissIndex,
    HashingEmbedder,
    IndexFormatError,
    read_corpus,
    register_embedder,
)
from ctxcomp.retrieval.store import sha256_file
from ctxcomp.types import Document

BAD_LINES = [
    ({"id": "a", "text": "fine"}, None),
    ('{"id": "b", "text": "unterminated', "not valid JSON"),
    ({"text": "no id"}, "field 'id' is missing"),
    ({"id": "c"}, "field 'text' is missing"),
    ({"id": "", "text": "empty id"}, "field 'id' must be a non-empty string or an int"),
    ({"id": "d", "text": ["a", "list"]}, "field 'text' must be a string"),
    ({"id": "e", "text": "x", "metadata": "nope"}, "field 'metadata' must be an object"),
    ('["not", "an", "object"]', "must be a string or an object"),
    ({"id": "a", "text": "again"}, "duplicate id 'a' (first on line 1)"),
    ({"id": "f", "text": "ok too", "title": "T"}, None),
]


@pytest.fixture
def bad_corpus(tmp_path: Path) -> Path:
    rows: list[object] = [row for row, _ in BAD_LINES]
    rows.insert(3, "   ")  # blank lines are not records and keep the numbering honest
    return write_jsonl(tmp_path / "bad.jsonl", rows)


def _expected_problems() -> list[tuple[int, str]]:
    out = []
    for i, (_, reason) in enumerate(BAD_LINES):
        lineno = i + 1 if i < 3 else i + 2
        if reason is not None:
            out.append((lineno, reason))
    return out


def test_every_bad_line_is_reported_with_its_number(bad_corpus: Path, tmp_path: Path) -> None:
    with pytest.raises(CorpusError) as info:
        FaissIndex.build(bad_corpus, HashingEmbedder(), progress=False)
    err = info.value
    assert isinstance(err, InputError) and isinstance(err, CtxcompError)
    assert err.field == f"{bad_corpus}:2" and "Fix:" in str(err) and "--skip-invalid" in str(err)
    got = [(p["line"], p["reason"]) for p in err.problems]
    expected = _expected_problems()
    assert [n for n, _ in got] == [n for n, _ in expected]
    for (_, reason), (_, want) in zip(got, expected, strict=True):
        assert reason.startswith(want) or want in reason
    assert "line 3: field 'id' is missing" in str(err)


def test_skip_invalid_writes_errors_file_and_keeps_good_lines(bad_corpus: Path, tmp_path: Path) -> None:
    errors = tmp_path / "out" / "errors.jsonl"
    with pytest.warns(UserWarning, match="skipped 8 invalid"):
        index = FaissIndex.build(
            bad_corpus, HashingEmbedder(), skip_invalid=True, errors_path=errors, progress=False
        )
    assert sorted(index.ids()) == ["a", "f"]
    assert index.get("f").metadata == {"title": "T"}  # type: ignore[union-attr]
    rows = [json.loads(line) for line in errors.read_text().splitlines()]
    assert [(r["line"], r["id"]) for r in rows] == [
        (2, None),
        (3, None),
        (5, "c"),
        (6, None),
        (7, "d"),
        (8, "e"),
        (9, None),
        (10, "a"),
    ]
    assert all(set(r) == {"line", "id", "reason"} and r["reason"] for r in rows)
    assert len(index) + len(rows) == len(BAD_LINES)  # every record is accounted for


def test_gzip_corpus(tmp_path: Path) -> None:
    path = tmp_path / "c.jsonl.gz"
    with gzip.open(path, "wt", encoding="utf-8") as fh:
        fh.write(json.dumps({"id": "z", "text": "zipped"}) + "\n")
    docs, problems = read_corpus(path)
    assert [d.id for d in docs] == ["z"] and problems == []


@pytest.mark.parametrize("content", ["", "\n\n  \n"])
def test_empty_corpus(tmp_path: Path, content: str) -> None:
    path = tmp_path / "empty.jsonl"
    path.write_text(content)
    with pytest.raises(EmptyCorpusError, match="no valid documents"):
        FaissIndex.build(path, HashingEmbedder(), progress=False)
    with pytest.raises(EmptyCorpusError):
        FaissIndex.build([], HashingEmbedder(), progress=False)


def test_all_invalid_with_skip_is_empty(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "bad.jsonl", ["{nope", {"id": 1}])
    with pytest.warns(UserWarning), pytest.raises(EmptyCorpusError, match="2 invalid record"):
        FaissIndex.build(path, HashingEmbedder(), skip_invalid=True, progress=False)


def test_missing_corpus_file(tmp_path: Path) -> None:
    with pytest.raises(CorpusError, match="does not exist"):
        FaissIndex.build(tmp_path / "nope.jsonl", HashingEmbedder(), progress=False)


def test_in_memory_duplicates_and_non_documents() -> None:
    with pytest.raises(CorpusError, match=r"docs\[2\]"):
        FaissIndex.build([Document("a", "x"), Document("b", "y"), Document("a", "z")], HashingEmbedder())
    with pytest.raises(CorpusError, match=r"must be a ctxcomp\.Document"):
        FaissIndex.build([Document("a", "x"), {"id": "b"}], HashingEmbedder())  # type: ignore[list-item]


@pytest.fixture
def saved(tmp_path: Path, docs: list[Document]) -> Path:
    return FaissIndex.build(docs, HashingEmbedder(dim=64), progress=False).save(tmp_path / "idx")


def test_load_with_other_embedder(saved: Path) -> None:
    with pytest.raises(EmbedderMismatchError, match="hashing-bow-64"):
        FaissIndex.load(saved, embedder=HashingEmbedder(dim=32))
    with pytest.raises(EmbedderMismatchError, match="all-MiniLM"):
        FaissIndex.load(saved, embedder="all-MiniLM-L6-v2")

    class SameIdOtherDim(HashingEmbedder):
        @property
        def id(self) -> str:
            return "ctxcomp/hashing-bow-64"

    register_embedder("liar", lambda: SameIdOtherDim(dim=16))
    with pytest.raises(EmbedderMismatchError, match="64-d vectors but the embedder gives 16-d"):
        FaissIndex.load(saved, embedder="liar")


def _rewrite_manifest(folder: Path, **files: bytes) -> None:
    manifest = json.loads((folder / "manifest.json").read_text())
    for name, data in files.items():
        path = folder / name.replace("_", ".")
        path.write_bytes(data)
        manifest["files"][path.name] = {"size": len(data), "sha256": sha256_file(path)}
    (folder / "manifest.json").write_text(json.dumps(manifest))


@pytest.mark.parametrize(
    ("damage", "match"),
    [
        (lambda d: (d / "manifest.json").unlink(), "manifest.json: is missing"),
        (lambda d: (d / "index.faiss").unlink(), "index.faiss: is missing"),
        (lambda d: (d / "docstore.jsonl").unlink(), "docstore.jsonl: is missing"),
        (lambda d: (d / "manifest.json").write_text("{not json"), "not valid JSON"),
        (lambda d: (d / "manifest.json").write_text('{"format": "other"}'), "not a ctxcomp-faiss-index"),
        (lambda d: (d / "index.faiss").write_bytes((d / "index.faiss").read_bytes()[:100]), "truncated"),
        (
            lambda d: (d / "index.faiss").write_bytes(b"\0" * (d / "index.faiss").stat().st_size),
            "sha256",
        ),
        (lambda d: _rewrite_manifest(d, index_faiss=b"garbage" * 50), "cannot be read by faiss"),
        (
            lambda d: _rewrite_manifest(
                d, docstore_jsonl=b"".join((d / "docstore.jsonl").read_bytes().splitlines(keepends=True)[:-1])
            ),
            "holds 35 documents; the manifest says 36",
        ),
        (
            lambda d: _rewrite_manifest(d, docstore_jsonl=b'{"iid": 0, "id": "d0"\n'),
            "not a valid docstore record",
        ),
    ],
)
@pytest.mark.parametrize("mmap", [True, False])
def test_damaged_index_directory(saved: Path, damage, match: str, mmap: bool) -> None:  # type: ignore[no-untyped-def]
    damage(saved)
    with pytest.raises(IndexFormatError, match=match) as info:
        FaissIndex.load(saved, mmap=mmap)
    assert "Fix:" in str(info.value)


def test_manifest_count_disagrees_with_index(saved: Path) -> None:
    manifest = json.loads((saved / "manifest.json").read_text())
    manifest["count"] = 5
    (saved / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(IndexFormatError, match="holds 36 64-d vectors; the manifest says 5"):
        FaissIndex.load(saved)


def test_load_not_a_directory(tmp_path: Path) -> None:
    with pytest.raises(IndexFormatError, match="not a directory"):
        FaissIndex.load(tmp_path / "missing")


def test_save_refuses_foreign_directory_and_unserialisable_metadata(tmp_path: Path) -> None:
    index = FaissIndex.build([Document("a", "x", {"obj": object()})], HashingEmbedder(), progress=False)
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "thesis.tex").write_text("precious")
    with pytest.raises(IndexFormatError, match="not a ctxcomp index"):
        index.save(foreign)
    assert (foreign / "thesis.tex").read_text() == "precious"
    with pytest.raises(InputError, match=r"Document\['a'\].metadata: is not JSON-serialisable"):
        index.save(tmp_path / "new")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["foreign"]  # nothing half-written
    with pytest.raises(InputError, match="nothing was ever added"):
        FaissIndex(HashingEmbedder()).save(tmp_path / "never")


def test_crash_while_saving_keeps_old_index(
    saved: Path, docs: list[Document], monkeypatch: pytest.MonkeyPatch
) -> None:
    import faiss

    before = {p.name: p.read_bytes() for p in saved.iterdir()}
    index = FaissIndex.build(docs[:3], HashingEmbedder(dim=64), progress=False)

    def crash(*args: object, **kwargs: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(faiss, "write_index", crash)
    with pytest.raises(OSError, match="disk full"):
        index.save(saved)
    assert {p.name: p.read_bytes() for p in saved.iterdir()} == before
    assert sorted(p.name for p in saved.parent.iterdir()) == ["idx"]
    assert len(FaissIndex.load(saved)) == 36


def test_missing_faiss_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "faiss", None)
    with pytest.raises(MissingDependencyError, match=r"pip install 'ctxcomp\[faiss\]'"):
        FaissIndex.build([Document("a", "x")], HashingEmbedder(), progress=False)
