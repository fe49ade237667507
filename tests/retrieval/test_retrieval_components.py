"""The parts FaissIndex is made of: DocStore, VectorIndex, tuning, store and ingest, used directly."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from retrieval_helpers import VectorEmbedder, make_docs, unit_vectors

from ctxcomp.errors import InputError
from ctxcomp.retrieval import EmptyCorpusError, FaissIndex, HashingEmbedder, IndexFormatError
from ctxcomp.retrieval.docstore import DocStore
from ctxcomp.retrieval.embedders import embed_query_batch, normalise_rows
from ctxcomp.retrieval.ingest import CHUNK, check_vectors, embed_in_chunks, read_source
from ctxcomp.retrieval.store import load_index, read_manifest, save_index, sha256_file
from ctxcomp.retrieval.tuning import calibrate_search
from ctxcomp.retrieval.vectors import VectorIndex
from ctxcomp.types import Document


def test_docstore_ids_never_reused_and_results_copy_metadata() -> None:
    store = DocStore()
    ids = store.add(make_docs(4))  # [4]
    assert ids.tolist() == [0, 1, 2, 3] and ids.dtype == np.int64
    assert store.remove([1, 99]) == 1 and "d1" not in store and len(store) == 3
    assert store.add([Document("new", "x")]).tolist() == [4]
    assert store.ids() == ["d0", "d2", "d3", "new"] and store.iids().tolist() == [0, 2, 3, 4]
    assert list(store) == ["d0", "d2", "d3", "new"] and store.iid("d3") == 3 and store.iid("d1") is None
    hits = store.results(np.array([[0.9, 0.1, 0.5]]), np.array([[3, 1, -1]]), score_key="s")
    assert [(d.id, d.metadata["s"]) for d in hits[0]] == [("d3", 0.9)]
    hits[0][0].metadata["tags"].append("changed")
    stored = store.by_iid(3)
    assert stored is not None and "s" not in stored.metadata and "changed" not in stored.metadata["tags"]
    store.clear()
    assert len(store) == 0 and store.next_id == 0


def test_docstore_put_refuses_repeats_and_out_of_range() -> None:
    store = DocStore(next_id=3)
    store.put(1, Document("a", "x"))
    for iid, doc_id in [(1, "b"), (2, "a"), (3, "c"), (-1, "d")]:
        with pytest.raises(ValueError, match="repeated or out of range"):
            store.put(iid, Document(doc_id, "y"))
    assert store.ids() == ["a"]


def test_docstore_round_trip_through_store(tmp_path: Path) -> None:
    docs, vectors = DocStore(), VectorIndex.flat(64, use_gpu=False)
    emb = HashingEmbedder(dim=64)
    batch = make_docs(10)
    vectors.add(emb.embed([d.text for d in batch]), docs.add(batch))  # [10, 64]
    removed = np.array([2, 5])
    vectors.remove(removed)
    docs.remove(removed.tolist())
    folder = save_index(tmp_path / "i", vectors=vectors, docs=docs, embedder_id=emb.id, seed=3)
    manifest = read_manifest(folder)
    assert manifest["count"] == 8 and manifest["next_id"] == 10 and manifest["seed"] == 3
    assert manifest["files"]["docstore.jsonl"]["sha256"] == sha256_file(folder / "docstore.jsonl")
    loaded = load_index(folder, mmap=False)
    assert loaded.docs.items() == docs.items() and loaded.docs.next_id == 10
    assert loaded.embedder.id == emb.id and loaded.vectors.stored_ids().tolist() == docs.iids().tolist()
    lines = (folder / "docstore.jsonl").read_text(encoding="utf-8").splitlines()
    assert [json.loads(line)["iid"] for line in lines] == [0, 1, 3, 4, 6, 7, 8, 9]


def test_store_refuses_a_file_target(tmp_path: Path) -> None:
    target = tmp_path / "file"
    target.write_text("x")
    with pytest.raises(IndexFormatError, match="is a file, not a directory"):
        save_index(target, vectors=VectorIndex.flat(4), docs=DocStore(), embedder_id="e")


@pytest.mark.parametrize("kind", ["flat", "hnsw", "ivf"])
def test_vector_index_add_search_remove(kind: str) -> None:
    base = unit_vectors(600, 16, seed=2, clusters=8)  # [n, 16]
    if kind == "ivf":
        vi = VectorIndex.ivf(base, 8, seed=0, use_gpu=False)
    else:
        vi = VectorIndex.flat(16, use_gpu=False) if kind == "flat" else VectorIndex.hnsw(16)
    vi.add(base, np.arange(100, 700))
    assert vi.kind == kind and vi.ntotal == 600 and vi.dim == 16
    assert vi.exact_search(base[:5], 1)[:, 0].tolist() == [100, 101, 102, 103, 104]
    scores, ids = vi.search(base[:5], 3)  # [5, 3], [5, 3]
    assert ids[:, 0].tolist() == [100, 101, 102, 103, 104] and scores.shape == (5, 3)
    np.testing.assert_allclose(vi.reconstruct(np.array([105])), base[5:6], atol=1e-6)
    vi.remove(np.array([100, 101, 9999]))
    assert vi.ntotal == 598 and 100 not in vi.search(base[:1], 5)[1][0].tolist()
    if kind != "ivf":
        assert sorted(vi.stored_ids().tolist()) == list(range(102, 700))


def test_vector_index_search_value_and_params() -> None:
    base = unit_vectors(400, 8, seed=4)  # [n, 8]
    ivf = VectorIndex.ivf(base, 10, use_gpu=False)
    assert ivf.search_param == "nprobe" and ivf.search_value == 8
    ivf.search_value = 3
    assert ivf.search_params() == {"nlist": 10, "nprobe": 3}
    hnsw = VectorIndex.hnsw(8)
    hnsw.add(base, np.arange(400))
    hnsw.search_value = 40
    hnsw.remove(np.array([0]))  # the rebuilt graph keeps efSearch
    assert hnsw.search_params() == {"hnsw_m": 32, "ef_search": 40}
    flat = VectorIndex.flat(8)
    assert flat.search_param is None and flat.search_value is None and flat.search_params() == {}
    with pytest.raises(ValueError, match="does not list its ids"):
        ivf.stored_ids()


def test_mmapped_vectors_reload_once_and_recheck_the_file(tmp_path: Path) -> None:
    base = unit_vectors(400, 8, seed=5)  # [n, 8]
    emb = VectorEmbedder(base)
    index = FaissIndex(emb, kind="ivf")
    index.add_embeddings([Document(str(i), str(i)) for i in range(400)], base)
    folder = index.save(tmp_path / "i")
    loaded = load_index(folder, embedder=emb, mmap=True)
    assert loaded.vectors.mmapped and not load_index(folder, embedder=emb, mmap=False).vectors.mmapped
    loaded.vectors.search_value = 5
    loaded.vectors.ensure_in_memory()
    assert not loaded.vectors.mmapped and loaded.vectors.search_value == 5
    loaded.vectors.ensure_in_memory()  # nothing left to do
    stale = load_index(folder, embedder=emb, mmap=True)
    swapped = tmp_path / "swapped"
    swapped.write_bytes(b"\0" * (folder / "index.faiss").stat().st_size)
    swapped.replace(folder / "index.faiss")  # a new file: the old mapping stays valid
    with pytest.raises(IndexFormatError, match="changed on disk after loading"):
        stale.vectors.ensure_in_memory()
    assert stale.vectors.mmapped


def test_calibrate_search_reaches_target_and_sets_knob() -> None:
    base = unit_vectors(2000, 16, seed=6, clusters=30)  # [n, 16]
    vi = VectorIndex.ivf(base, 40, seed=0, use_gpu=False)
    vi.add(base, np.arange(2000))
    result = calibrate_search(vi, np.arange(2000), recall_target=0.9, seed=0, n_queries=100)
    assert result["param"] == "nprobe" and result["value"] == vi.search_value
    assert result["recall"] >= result["target"] == 0.91 and result["queries"] == 100 and result["n"] == 2000
    assert calibrate_search(vi, np.arange(1)) == {}
    assert calibrate_search(VectorIndex.flat(16), np.arange(10)) == {}


def test_faiss_index_calibrate_records_the_result() -> None:
    base = unit_vectors(1500, 16, seed=8, clusters=20)  # [n, 16]
    index = FaissIndex(VectorEmbedder(base), kind="hnsw", seed=2)
    index.add_embeddings([Document(str(i), str(i)) for i in range(1500)], base)
    again = index.calibrate(0.8, n_queries=64)
    assert again["param"] == "efSearch" and again["queries"] == 64 and again["target"] == 0.81
    assert index.calibration == again and index.info()["ef_search"] == again["value"]


def test_normalise_rows_and_embed_query_batch() -> None:
    out = normalise_rows(np.array([[3.0, 4.0], [0.0, 0.0]]))  # [2, 2]
    assert out.dtype == np.float32 and out.flags["C_CONTIGUOUS"]
    np.testing.assert_allclose(out, [[0.6, 0.8], [0.0, 0.0]], atol=1e-7)
    base = unit_vectors(5, 4, seed=1)  # [5, 4]
    np.testing.assert_array_equal(embed_query_batch(VectorEmbedder(base), ["3", "1"]), base[[3, 1]])
    assert embed_query_batch(HashingEmbedder(dim=8), ["a", "b"]).shape == (2, 8)


def test_check_vectors_and_chunks_reuse_known_rows() -> None:
    with pytest.raises(InputError, match=r"expected shape \(2, 4\)"):
        check_vectors(np.ones((2, 3)), 2, 4)
    with pytest.raises(InputError, match="NaN or infinite"):
        check_vectors(np.full((1, 4), np.nan), 1, 4)
    n = CHUNK + 5
    embedded: list[int] = []

    def embed_rows(rows: np.ndarray) -> np.ndarray:
        embedded.extend(rows.tolist())
        return np.ones((len(rows), 2))  # [b, 2]

    known_rows = np.array([0, 7, CHUNK + 1])  # [3]
    known_vecs = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0]], dtype=np.float32)  # [3, 2]
    chunks: list[tuple[list[int], np.ndarray]] = []
    embed_in_chunks(
        embed_rows, n, 2, sink=lambda r, v: chunks.append((r.tolist(), v)), known=(known_rows, known_vecs)
    )
    assert [len(r) for r, _ in chunks] == [CHUNK, 5]
    assert sorted(set(embedded) | set(known_rows.tolist())) == list(range(n))
    assert not set(embedded) & set(known_rows.tolist())
    np.testing.assert_array_equal(chunks[0][1][7], [0.0, 1.0])


def test_read_source_reports_and_refuses_empty(tmp_path: Path) -> None:
    with pytest.warns(UserWarning, match="skipped 1 invalid record"):
        docs, problems = read_source(
            [Document("a", "x"), "junk"], skip_invalid=True, errors_path=tmp_path / "e.jsonl"
        )
    assert [d.id for d in docs] == ["a"] and len(problems) == 1
    assert (tmp_path / "e.jsonl").read_text().count("\n") == 1
    with pytest.raises(EmptyCorpusError, match="has no valid documents"):
        read_source([])
