from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from retrieval_helpers import VectorEmbedder, exact_topk, make_docs, unit_vectors

from ctxcomp.errors import InputError
from ctxcomp.retrieval import SCORE_KEY, CorpusError, FaissIndex, HashingEmbedder, auto_kind, ivf_nlist
from ctxcomp.retrieval import index as index_mod
from ctxcomp.types import Document

QUERIES = ["capital of France", "who wrote Hamlet", "programming language memory safety", "boiling water"]


def brute_force(
    emb: HashingEmbedder, docs: list[Document], query: str, k: int
) -> tuple[np.ndarray, np.ndarray]:
    base = emb.embed([d.text for d in docs])  # [n, d]
    scores = base @ emb.embed_query(query)  # [n]
    order = np.argsort(-scores, kind="stable")[:k]  # [k]
    return scores, order


@pytest.mark.parametrize("k", [1, 5, 36, 100])
def test_flat_search_matches_numpy_bruteforce(emb: HashingEmbedder, docs: list[Document], k: int) -> None:
    index = FaissIndex.build(docs, emb, progress=False)
    assert index.kind == "flat" and len(index) == len(docs)
    for query in QUERIES:
        scores, order = brute_force(emb, docs, query, k)
        hits = index.search(query, k=k)
        assert len(hits) == min(k, len(docs))
        got = np.array([h.metadata[SCORE_KEY] for h in hits])  # [k]
        np.testing.assert_allclose(got, scores[order], atol=1e-5)
        by_id = {d.id: i for i, d in enumerate(docs)}
        for h in hits:  # each reported score is that document's true cosine
            assert abs(h.metadata[SCORE_KEY] - scores[by_id[h.id]]) < 1e-5
        best = {d.id for d, s in zip(docs, scores, strict=True) if s >= scores.max() - 1e-6}  # ties allowed
        assert hits[0].id in best


def test_results_carry_metadata_and_never_mutate_the_store(
    emb: HashingEmbedder, docs: list[Document]
) -> None:
    index = FaissIndex.build(docs, emb, progress=False)
    hit = index.search("capital of Germany", k=1)[0]
    original = next(d for d in docs if d.id == hit.id)
    assert hit.text == original.text
    assert {k: v for k, v in hit.metadata.items() if k != SCORE_KEY} == original.metadata
    hit.metadata["tags"].append("mutated")
    hit.metadata["n"] = -1
    again = index.search("capital of Germany", k=1)[0]
    assert (
        again.metadata["tags"] == original.metadata["tags"] and again.metadata["n"] == original.metadata["n"]
    )
    assert SCORE_KEY not in index.get(hit.id).metadata  # type: ignore[union-attr]
    assert SCORE_KEY not in original.metadata


def test_search_batch_and_input_checks(emb: HashingEmbedder, docs: list[Document]) -> None:
    index = FaissIndex.build(docs, emb, progress=False)
    batch = index.search_batch(QUERIES, k=3)
    assert [[d.id for d in r] for r in batch] == [[d.id for d in index.search(q, k=3)] for q in QUERIES]
    with pytest.raises(InputError, match="query"):
        index.search("  ")
    with pytest.raises(InputError, match="k"):
        index.search("x", k=0)
    with pytest.raises(InputError, match="single string"):
        index.search_batch("abc")


def test_save_load_roundtrip(tmp_path: Path, emb: HashingEmbedder, docs: list[Document]) -> None:
    index = FaissIndex.build(docs, emb, progress=False)
    out = index.save(tmp_path / "idx")
    assert sorted(p.name for p in out.iterdir()) == ["docstore.jsonl", "index.faiss", "manifest.json"]
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["embedder"] == emb.id and manifest["dim"] == 64 and manifest["count"] == len(docs)
    assert manifest["kind"] == "flat" and manifest["metric"] == "inner_product"
    assert set(manifest["files"]) == {"index.faiss", "docstore.jsonl"}
    assert not list(tmp_path.glob(".idx.*"))  # no temp dirs left
    for mmap in (True, False):
        loaded = FaissIndex.load(out, mmap=mmap)  # embedder resolved from the manifest id
        assert len(loaded) == len(docs) and loaded.embedder.id == emb.id
        for q in QUERIES:
            assert loaded.search(q, k=5) == index.search(q, k=5)
    # overwriting an existing index directory replaces it
    index.remove(["d0"])
    index.save(out)
    assert len(FaissIndex.load(out)) == len(docs) - 1


def test_flat_build_is_deterministic(tmp_path: Path, emb: HashingEmbedder, docs: list[Document]) -> None:
    a = FaissIndex.build(docs, emb, progress=False).save(tmp_path / "a")
    b = FaissIndex.build(docs, emb, progress=False).save(tmp_path / "b")
    for name in ("index.faiss", "docstore.jsonl"):
        assert (a / name).read_bytes() == (b / name).read_bytes()


def test_remove(tmp_path: Path, emb: HashingEmbedder, docs: list[Document]) -> None:
    index = FaissIndex.build(docs, emb, progress=False)
    top = index.search("capital of France", k=1)[0].id
    assert index.remove(top) == 1
    assert top not in index and len(index) == len(docs) - 1
    assert top not in [d.id for d in index.search("capital of France", k=len(docs))]
    assert index.remove(["nope", top]) == 0
    assert index.remove(index.ids()) == len(docs) - 1
    assert len(index) == 0 and index.search("capital of France") == []
    loaded = FaissIndex.load(index.save(tmp_path / "empty"))
    assert len(loaded) == 0 and loaded.search("anything", k=3) == []
    loaded.add(docs[:2])
    assert {d.id for d in loaded.search("capital", k=5)} == {"d0", "d1"}


def test_add_rejects_duplicates_and_is_all_or_nothing(emb: HashingEmbedder, docs: list[Document]) -> None:
    index = FaissIndex.build(docs[:10], emb, progress=False)
    with pytest.raises(CorpusError, match="duplicate id 'd3'"):
        index.add([docs[20], docs[3]])
    assert len(index) == 10 and "d20" not in index
    assert index.add([docs[20], docs[3], "junk"], skip_invalid=True) == 1  # type: ignore[list-item]
    assert [p["reason"][:12] for p in index.skipped] == ["duplicate id", "must be a ct"]

    class Boom(HashingEmbedder):
        calls = 0

        def embed(self, texts, *, batch_size=None):  # type: ignore[no-untyped-def]
            Boom.calls += 1
            if Boom.calls > 1:
                raise RuntimeError("embedder died")
            return super().embed(texts)

    flaky = FaissIndex(Boom(dim=64))
    flaky.add(docs[:3])
    many = make_docs(3000)[3:]
    with pytest.raises(RuntimeError, match="died"):
        flaky.add(many)
    assert len(flaky) == 3 and flaky.ids() == ["d0", "d1", "d2"]
    Boom.calls = -100
    assert len(flaky.search("capital", k=10)) == 3


def test_add_embeddings_and_search_vectors() -> None:
    vecs = unit_vectors(200, 16, seed=1)  # [200, 16]
    index = FaissIndex(VectorEmbedder(vecs), kind="flat")
    assert index.add_embeddings([Document(str(i), str(i)) for i in range(200)], vecs) == 200
    got = index.search_vectors(vecs[:5], k=4)
    ref = exact_topk(vecs, vecs[:5], 4)  # [5, 4]
    assert [[d.id for d in row] for row in got] == [[str(i) for i in row] for row in ref]
    with pytest.raises(InputError, match="vectors"):
        index.add_embeddings([Document("x", "")], vecs[:2])


def _recall(index: FaissIndex, base: np.ndarray, queries: np.ndarray, k: int = 10) -> float:
    truth = exact_topk(base, queries, k)  # [m, k]
    got = index.search_vectors(queries, k=k)
    return float(
        np.mean([len({int(d.id) for d in g} & set(t.tolist())) / k for g, t in zip(got, truth, strict=True)])
    )


@pytest.mark.parametrize("clusters", [0, 50])
def test_ivf_recall_vs_exact(clusters: int) -> None:
    data = unit_vectors(6300, 32, seed=2, clusters=clusters)  # [n + m, 32]
    base, queries = data[:6000], data[6000:]  # [n, 32], [m, 32]: queries from the same distribution
    index = FaissIndex(VectorEmbedder(base), kind="ivf")
    index.add_embeddings([Document(str(i), str(i)) for i in range(len(base))], base)
    info = index.info()
    assert info["kind"] == "ivf" and info["nlist"] == ivf_nlist(6000)
    assert index.calibration["recall"] >= 0.96 and 1 <= info["nprobe"] <= info["nlist"]
    assert _recall(index, base, queries) >= 0.93  # fresh queries, calibrated on the index's own vectors


def test_ivf_save_mmap_load_then_mutate(tmp_path: Path) -> None:
    base = unit_vectors(3000, 16, seed=4, clusters=20)  # [n, 16]
    emb = VectorEmbedder(base)
    docs = [Document(str(i), str(i), {"i": i}) for i in range(2500)]
    index = FaissIndex.build(docs, emb, kind="ivf", progress=False)
    nprobe = index.info()["nprobe"]
    loaded = FaissIndex.load(index.save(tmp_path / "ivf"), embedder=emb, mmap=True)
    assert loaded.kind == "ivf" and loaded.info()["nprobe"] == nprobe
    assert loaded.search("7", k=3) == index.search("7", k=3)
    # the first change re-reads the memory-mapped (read-only) index into RAM
    assert loaded.add([Document(str(i), str(i)) for i in range(2500, 3000)]) == 500
    assert loaded.remove(["7", "2999"]) == 2 and len(loaded) == 2998
    assert "7" not in [d.id for d in loaded.search("7", k=10)]
    assert loaded.search("2998", k=1)[0].id == "2998"
    again = FaissIndex.load(loaded.save(tmp_path / "ivf"), embedder=emb)
    assert len(again) == 2998 and again.search("2998", k=1)[0].id == "2998"


def test_hnsw_recall_remove_and_roundtrip(tmp_path: Path) -> None:
    data = unit_vectors(3200, 32, seed=5, clusters=30)  # [n + m, 32]
    base, queries = data[:3000], data[3000:]  # [n, 32], [m, 32]
    index = FaissIndex(VectorEmbedder(base), kind="hnsw")
    index.add_embeddings([Document(str(i), str(i)) for i in range(len(base))], base)
    assert index.kind == "hnsw" and index.calibration["param"] == "efSearch"
    assert _recall(index, base, queries) >= 0.93
    assert index.remove([str(i) for i in range(100)]) == 100
    assert len(index) == 2900
    hits = index.search_vectors(base[:100], k=5)
    assert all(int(d.id) >= 100 for row in hits for d in row)
    loaded = FaissIndex.load(index.save(tmp_path / "h"), embedder=VectorEmbedder(base), mmap=True)
    assert loaded.kind == "hnsw" and len(loaded) == 2900
    assert loaded.search_vectors(base[500], k=1)[0][0].id == "500"


def test_auto_kind_threshold(monkeypatch: pytest.MonkeyPatch) -> None:
    assert (
        auto_kind(index_mod.FLAT_MAX_VECTORS - 1) == "flat" and auto_kind(index_mod.FLAT_MAX_VECTORS) == "ivf"
    )
    monkeypatch.setattr(index_mod, "FLAT_MAX_VECTORS", 1000)
    base = unit_vectors(1500, 16, seed=7, clusters=10)  # [n, 16]
    index = FaissIndex.build(
        [Document(str(i), str(i)) for i in range(1500)], VectorEmbedder(base), progress=False
    )
    assert index.kind == "ivf"
    small = FaissIndex.build(
        [Document(str(i), str(i)) for i in range(999)], VectorEmbedder(base), progress=False
    )
    assert small.kind == "flat"


def test_use_gpu_without_gpu_falls_back(emb: HashingEmbedder, docs: list[Document]) -> None:
    index = FaissIndex.build(docs, emb, use_gpu=True, progress=False)
    with pytest.warns(UserWarning, match="no GPU"):
        hits = index.search("capital", k=2)
    assert len(hits) == 2 and not index.on_gpu


def test_progress_bar_goes_to_stderr(
    capsys: pytest.CaptureFixture[str], emb: HashingEmbedder, docs: list[Document]
) -> None:
    FaissIndex.build(docs, emb, progress=True)
    captured = capsys.readouterr()
    assert "indexing" in captured.err and captured.out == ""


@pytest.mark.slow
def test_real_minilm_index(tmp_path: Path, docs: list[Document]) -> None:
    from ctxcomp.retrieval import SentenceTransformerEmbedder, packaged_model_dir

    if packaged_model_dir() is None:
        pytest.skip("no pip-packaged all-MiniLM-L6-v2 installed")
    index = FaissIndex.build(docs[:12], SentenceTransformerEmbedder(device="cpu"), progress=False)
    assert index.search("Who wrote Hamlet?", k=1)[0].id == "d6"
    assert index.search("What is the capital of Germany?", k=1)[0].id == "d1"
    loaded = FaissIndex.load(index.save(tmp_path / "mini"))
    assert loaded.search("Who wrote Hamlet?", k=3) == index.search("Who wrote Hamlet?", k=3)


def test_ivf_training_sample_is_embedded_once_and_reused() -> None:
    base = unit_vectors(30_000, 8, seed=8, clusters=40)  # [n, 8]; n > 40 * nlist, so the sample is partial

    seen: list[int] = []

    class Counting(VectorEmbedder):
        def embed(self, texts, *, batch_size=None):  # type: ignore[no-untyped-def]
            seen.extend(int(t) for t in texts)
            return super().embed(texts)

    index = FaissIndex.build([Document(str(i), str(i)) for i in range(len(base))], Counting(base), kind="ivf")
    assert ivf_nlist(30_000) * 40 < 30_000
    assert sorted(seen) == list(range(30_000))  # every document embedded exactly once
    got = index.search_vectors(base[::1000], k=1)
    assert [row[0].id for row in got] == [str(i) for i in range(0, 30_000, 1000)]
