from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from ctxcomp.errors import ConfigError, InputError, MissingDependencyError
from ctxcomp.retrieval import (
    Embedder,
    HashingEmbedder,
    SentenceTransformerEmbedder,
    packaged_model_dir,
    register_embedder,
    resolve_embedder,
)


def test_import_is_light() -> None:
    code = (
        "import sys, ctxcomp.retrieval, ctxcomp.cli, ctxcomp.retrieval.pipeline\n"
        "bad = [m for m in ('faiss', 'torch', 'sentence_transformers') if m in sys.modules]\n"
        "assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_hashing_embedder_is_deterministic_and_normalised() -> None:
    emb = HashingEmbedder(dim=32)
    a = emb.embed(["The cat sat.", "", "dogs and cats"])  # [3, 32]
    assert a.shape == (3, 32) and a.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(a[[0, 2]], axis=1), 1.0, rtol=1e-6)
    assert not a[1].any()  # no words -> zero vector, not NaN
    np.testing.assert_array_equal(a, HashingEmbedder(dim=32).embed(["The cat sat.", "", "dogs and cats"]))
    assert isinstance(emb, Embedder)
    assert emb.embed_query("x").shape == (32,)


def test_embedder_input_validation() -> None:
    with pytest.raises(InputError, match="single string"):
        HashingEmbedder().embed("abc")
    with pytest.raises(InputError, match=r"texts\[1\]"):
        HashingEmbedder().embed(["a", 3])  # type: ignore[list-item]
    with pytest.raises(ConfigError, match="dim"):
        HashingEmbedder(dim=0)
    with pytest.raises(ConfigError, match="batch_size"):
        SentenceTransformerEmbedder(batch_size=0)


def test_resolve_embedder() -> None:
    assert resolve_embedder("ctxcomp/hashing-bow-16").dim == 16
    register_embedder("test/registered", lambda: HashingEmbedder(dim=8))
    assert resolve_embedder("test/registered").dim == 8
    default = resolve_embedder(None)
    assert isinstance(default, SentenceTransformerEmbedder)
    assert default.id == "sentence-transformers/all-MiniLM-L6-v2" and default.dim == 384
    assert SentenceTransformerEmbedder("sentence-transformers/all-MiniLM-L6-v2").id == default.id


def test_packaged_model_folder_found() -> None:
    folder = packaged_model_dir()
    if folder is None:
        pytest.skip("no pip-packaged all-MiniLM-L6-v2 installed")
    assert (folder / "modules.json").is_file()


def test_missing_sentence_transformers_names_the_extra(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # A folder that is not the plain Transformer -> mean Pooling -> Normalize shape needs
    # sentence-transformers itself (the packaged MiniLM does not: MeanPooledEncoder runs it).
    (tmp_path / "modules.json").write_text('[{"type": "sentence_transformers.models.Transformer"}]')
    monkeypatch.setitem(sys.modules, "sentence_transformers", None)
    with pytest.raises(MissingDependencyError, match=r"ctxcomp\[faiss\]"):
        SentenceTransformerEmbedder(str(tmp_path)).embed(["x"])


def test_packaged_minilm_needs_no_sentence_transformers(monkeypatch: pytest.MonkeyPatch) -> None:
    if packaged_model_dir() is None:
        pytest.skip("no pip-packaged all-MiniLM-L6-v2 installed")
    monkeypatch.setitem(sys.modules, "sentence_transformers", None)
    v = SentenceTransformerEmbedder(device="cpu").embed(["Paris is in France."])
    assert v.shape == (1, 384)


@pytest.mark.slow
def test_minilm_offline_embeddings(monkeypatch: pytest.MonkeyPatch) -> None:
    if packaged_model_dir() is None:
        pytest.skip("no pip-packaged all-MiniLM-L6-v2 installed")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    emb = SentenceTransformerEmbedder(device="cpu")
    texts = ["Paris is the capital of France.", "The mitochondria is the powerhouse of the cell."]
    a = emb.embed(texts)  # [2, 384]
    assert a.shape == (2, 384) and a.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(a, axis=1), 1.0, rtol=1e-5)
    np.testing.assert_array_equal(a, emb.embed(texts))
    q = emb.embed_query("What is the capital of France?")  # [384]
    assert float(q @ a[0]) > float(q @ a[1]) + 0.2
