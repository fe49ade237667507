"""Training a probe end to end on a tiny random model, and loading/checking probe files."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from ctxcomp import CompressionConfig, Compressor
from ctxcomp.cli import main
from ctxcomp.compressors.trained import find_shipped_probe, load_probe, probe_from_dict, shipped_probes
from ctxcomp.errors import ConfigError, ProbeMismatchError
from ctxcomp.training.examples import build_examples
from ctxcomp.training.qa import has_answer, split_of
from ctxcomp.training.train import train_probe

CITIES = ["Paris", "Rome", "Oslo", "Lima", "Kyiv", "Doha", "Bern", "Riga", "Baku", "Sofia"]


def _synthetic(path: Path, n: int = 30) -> Path:
    rows = []
    for i in range(n):
        city = CITIES[i % len(CITIES)]
        gold = f"The capital of country {i} is {city}. It has a river. People like it."
        docs = [f"Country {i + j} exports fruit. Its flag is green." for j in range(1, 4)]
        docs.insert(i % 4, gold)
        rows.append({"question": f"what is the capital of country {i}?", "answers": [city], "docs": docs})
    path.write_text("\n".join(json.dumps(r) for r in rows))
    return path


def test_train_probe_tiny(tiny_qwen: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CTXCOMP_CACHE", str(tmp_path / "cache"))
    data = _synthetic(tmp_path / "train.jsonl")
    out = tmp_path / "probe.json"
    rc = main(
        [
            "train-probe",
            "--model",
            str(tiny_qwen),
            "--data",
            str(data),
            "--out",
            str(out),
            "--split",
            "all",
            "--n-questions",
            "30",
            "--layers",
            "0",
            "1",
            "2",
            "--no-progress",
        ]
    )
    assert rc == 0
    d = json.loads(out.read_text())
    for key in (
        "model",
        "layers",
        "heads",
        "template",
        "normalisation",
        "data",
        "training",
        "cv",
        "ctxcomp_version",
    ):
        assert key in d
    assert d["data"]["files"][0]["sha256"] and d["training"]["n_questions"] == 30
    assert 0.0 <= d["cv"]["auc"] <= 1.0
    # The lexical families alone separate this synthetic data: the CV AUC must show it.
    assert d["cv"]["auc"] > 0.8
    probe = load_probe(out)
    comp = Compressor(CompressionConfig(proxy_model=str(tiny_qwen), scorer="probe", probe_path=str(out)))
    ctx = comp.compress(
        "what is the capital of country 3?", json.loads(data.read_text().splitlines()[3])["docs"], ratio=0.3
    )
    assert ctx.stats.scorer == "probe"
    assert "capital of country 3 is Lima" in ctx.text
    # compress() embeds concurrently with the prefill; with batched prefills on, compress_batch
    # prefetches the prefill and embeds after it: the same scores either way.
    q, docs = "what is the capital of country 3?", json.loads(data.read_text().splitlines()[3])["docs"]
    batching = CompressionConfig(
        proxy_model=str(tiny_qwen), scorer="probe", probe_path=str(out), prefill_batch_tokens=4096
    )
    batched = Compressor(batching).compress_batch([(q, docs)], ratio=0.3)[0]
    assert [s.score for s in batched.sentences] == [s.score for s in ctx.sentences]
    # Depth chosen by CV among the quarter ends of layers 0-2; with a perfect CV AUC at every
    # depth, the shallowest wins (the forward then exits after layer 0).
    assert [c["deepest"] for c in d["depth"]["candidates"]] == [0, 1, 2]
    assert probe.layers == (0,) and d["depth"]["chosen"] == 0
    assert d["doc_vectors"] == "embed" and probe.doc_vectors == "embed"


def test_train_resumes_from_cache(tiny_qwen: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CTXCOMP_CACHE", str(tmp_path / "cache"))
    data = _synthetic(tmp_path / "train.jsonl", 10)
    kwargs = dict(
        split="all",
        n_questions=10,
        layers=[0, 1],
        families=("attention", "bm25"),
        progress=False,
        embedder="ctxcomp/hashing-bow-64",
    )
    a = train_probe(str(tiny_qwen), data, tmp_path / "a.json", **kwargs)  # type: ignore[arg-type]
    files = sorted((tmp_path / "cache" / "features").rglob("*.npz"))
    assert len(files) == 10
    mtimes = [f.stat().st_mtime_ns for f in files]
    b = train_probe(str(tiny_qwen), data, tmp_path / "b.json", **kwargs)  # type: ignore[arg-type]
    assert [f.stat().st_mtime_ns for f in files] == mtimes  # features reused, not recomputed
    np.testing.assert_allclose(a.coef, b.coef)


def test_probe_mismatch(
    tiny_qwen: Path, tiny_gemma: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CTXCOMP_CACHE", str(tmp_path / "cache"))
    data = _synthetic(tmp_path / "train.jsonl", 10)
    out = tmp_path / "p.json"
    train_probe(
        str(tiny_qwen),
        data,
        out,
        split="all",
        n_questions=10,
        layers=[0],
        families=("attention",),
        progress=False,
    )
    with pytest.raises(ProbeMismatchError, match="train-probe"):
        Compressor(CompressionConfig(proxy_model=str(tiny_gemma), scorer="probe", probe_path=str(out))).load()
    forced = Compressor(
        CompressionConfig(proxy_model=str(tiny_gemma), scorer="probe", probe_path=str(out), force_probe=True)
    )
    assert forced.compress("q?", ["A b c. D e f."], ratio=1.0).stats.scorer == "probe"


def test_malformed_probe(tmp_path: Path) -> None:
    p = tmp_path / "bad.json"
    p.write_text("{}")
    with pytest.raises(ConfigError, match="probe_path"):
        load_probe(p)
    with pytest.raises(ConfigError, match="malformed"):
        probe_from_dict({"format": "ctxcomp-probe/1", "feature_names": ["a"]})


def test_helpers() -> None:
    assert has_answer("It is PARIS, France", ["paris"]) and not has_answer("Rome", ["paris"])
    assert {split_of(f"q{i}") for i in range(50)} == {"train", "eval"}
    rows = [{"question": "q", "answers": ["a"], "docs": ["x", {"id": "d", "text": "y"}]}]
    ex = build_examples(rows, split="all")
    assert [d.id for d in ex[0].docs] == ["0", "d"]


def test_shipped_probes_load_and_score(nq_rows: list[dict]) -> None:
    """Every shipped probe parses; probes are found only for the model they were trained on."""
    paths = shipped_probes()
    if not paths:
        pytest.skip("no shipped probes")
    for p in paths:
        probe = load_probe(p)
        assert probe.coef.shape == probe.mean.shape
        assert find_shipped_probe(probe.model_id, probe.weights_sha256) is not None
        assert find_shipped_probe("another-model", "0" * 64) is None


def test_doc_vectors_mean_and_embed() -> None:
    from ctxcomp.compressors.features import SentenceContext, build_features
    from ctxcomp.retrieval import HashingEmbedder

    emb = HashingEmbedder(dim=64)
    ctx = SentenceContext(
        "capital of france",
        ["Paris is the capital of France.", "It is big.", "Berlin is in Germany."],
        [0, 0, 1],
        [0, 1, 0],
        [2, 1],
        ["Paris is the capital of France. It is big.", "Berlin is in Germany."],
    )
    q = emb.embed([ctx.query])[0]
    sv = emb.embed(list(ctx.texts))
    mean0 = sv[:2].sum(0) / np.linalg.norm(sv[:2].sum(0))
    x_mean = build_features(ctx, None, families=["embedding"], heads=[], embedder=emb, doc_vectors="mean")
    x_emb = build_features(ctx, None, families=["embedding"], heads=[], embedder=emb, doc_vectors="embed")
    np.testing.assert_allclose(x_mean[:2, 1], mean0 @ q, rtol=1e-5)
    np.testing.assert_allclose(x_mean[2, 1], sv[2] @ q, rtol=1e-5)  # one-sentence document
    np.testing.assert_allclose(x_emb[:2, 1], emb.embed([ctx.doc_texts[0]])[0] @ q, rtol=1e-5)
    np.testing.assert_array_equal(x_mean[:, [0, 2]], x_emb[:, [0, 2]])  # sentence columns unchanged


def test_unknown_doc_vectors_in_probe_file_is_an_error() -> None:
    from ctxcomp.compressors.trained import TrainedProbe
    from ctxcomp.errors import ConfigError

    p = TrainedProbe(None, "m", "m", None, (), (), ("bm25",), ("a", "b"), np.zeros(2), np.ones(2),
                     np.zeros(2), 0.0, 1, False, meta={"doc_vectors": "sum"})  # fmt: skip
    with pytest.raises(ConfigError, match="doc_vectors"):
        _ = p.doc_vectors


def test_train_without_attention_families(
    tiny_qwen: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # No family reads layers: there is no depth to choose, and the probe records none.
    monkeypatch.setenv("CTXCOMP_CACHE", str(tmp_path / "cache"))
    data = _synthetic(tmp_path / "train.jsonl", 10)
    probe = train_probe(
        str(tiny_qwen),
        data,
        tmp_path / "lex.json",
        split="all",
        n_questions=10,
        layers=[0, 1],
        families=("bm25", "position"),
        progress=False,
    )
    assert probe.layers == ()
    assert probe.meta["depth"]["chosen"] is None
    assert 0.0 <= probe.meta["cv"]["auc"] <= 1.0
