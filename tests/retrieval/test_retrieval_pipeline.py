from __future__ import annotations

import asyncio

import pytest
from retrieval_helpers import FakeCompressor

from ctxcomp.errors import ConfigError, InputError
from ctxcomp.retrieval import SCORE_KEY, FaissIndex, HashingEmbedder, Pipeline
from ctxcomp.types import Document


@pytest.fixture
def index(docs: list[Document]) -> FaissIndex:
    return FaissIndex.build(docs, HashingEmbedder(dim=64), progress=False)


def test_run_retrieves_then_compresses(index: FaissIndex) -> None:
    comp = FakeCompressor()
    pipe = Pipeline(index, comp)
    ctx = pipe.run("capital of France", k=4, budget=50)
    assert comp.calls == [
        {
            "query": "capital of France",
            "ids": [d.id for d in index.search("capital of France", k=4)],
            "budget": 50,
            "ratio": None,
        }
    ]
    assert len(ctx.documents) == 4 and ctx.documents[0].text.startswith("Paris")
    assert all(SCORE_KEY in d.metadata and "n" in d.metadata for d in ctx.documents)  # metadata survives
    pipe.run("capital of France", ratio=0.3)
    assert comp.calls[-1]["ratio"] == 0.3 and len(comp.calls[-1]["ids"]) == 20  # type: ignore[arg-type]


def test_arun_matches_run(index: FaissIndex) -> None:
    pipe = Pipeline(index, FakeCompressor())
    assert asyncio.run(pipe.arun("who wrote Hamlet", k=3)) == pipe.run("who wrote Hamlet", k=3)


def test_empty_index_gives_compressor_no_docs(index: FaissIndex) -> None:
    index.remove(index.ids())
    comp = FakeCompressor()
    assert Pipeline(index, comp).run("anything").documents == ()
    assert comp.calls[0]["ids"] == []


def test_bad_arguments(index: FaissIndex) -> None:
    with pytest.raises(ConfigError, match="compressor"):
        Pipeline(index, object())
    with pytest.raises(ConfigError, match="index"):
        Pipeline(object(), FakeCompressor())  # type: ignore[arg-type]
    with pytest.raises(InputError, match="k"):
        Pipeline(index, FakeCompressor()).run("q", k=0)
